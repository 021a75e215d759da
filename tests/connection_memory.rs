//! What one connected, logged-in GT06 wristband costs the service in heap: the bytes the
//! allocator holds for it, counted by dhat's global allocator in this test process, between the
//! service with the wearers registered and the same service with each of them connected,
//! logged in and answered a heartbeat. The wristbands are blocking std sockets, which allocate
//! nothing, so what the count grows by is the service's alone.
//!
//! This is heap, not resident memory: the allocator's own overhead and the kernel's socket
//! buffers are left out (`benches/idle_connections.py` measures those on a release build).
//! The bound is for the test build, whose futures are larger than a release build's.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Service;
use ewall_protocol::gt06::encode;
use serde_json::json;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Wristbands measured; a few more warm up the service's lazily built state first.
const DEVICES: usize = 1_000;
const WARM_UP: usize = 20;

/// Heap held per connected wristband in the test build, bytes.
const HEAP_PER_DEVICE_MAX: isize = 4_096;

fn luhn(body: &str) -> char {
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap();
            if i % 2 == 0 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10).unwrap()
}

fn imei(i: usize) -> String {
    let body = format!("8647170{i:07}");
    let mut imei = body.clone();
    imei.push(luhn(&body));
    imei
}

/// Connects wristbands `range`, logs each in and has one heartbeat answered; returns the
/// open sockets.
fn connect(addr: std::net::SocketAddr, range: std::ops::Range<usize>) -> Vec<std::net::TcpStream> {
    range
        .map(|i| {
            let mut socket = std::net::TcpStream::connect(addr).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut reply = [0u8; 10];
            socket.write_all(&encode::login(&imei(i), 1, None)).unwrap();
            socket.read_exact(&mut reply).unwrap();
            assert_eq!(reply, encode::ack(0x01, 1).as_slice(), "login of {i}");
            socket
                .write_all(&encode::heartbeat(2, &encode::Status::default()))
                .unwrap();
            socket.read_exact(&mut reply).unwrap();
            assert_eq!(reply, encode::ack(0x13, 2).as_slice(), "heartbeat of {i}");
            socket
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_wristband_holds_a_few_kilobytes_of_heap() {
    // With CONNECTION_MEMORY_PROFILE set, dhat writes dhat-heap.json (every allocation site
    // and what it holds) once the count is taken, for dh_view.html.
    let profiling = std::env::var_os("CONNECTION_MEMORY_PROFILE").is_some();
    let profiler = if profiling {
        dhat::Profiler::builder().build()
    } else {
        dhat::Profiler::builder().testing().build()
    };
    let mut service = Service::start_with(|config| {
        config.listeners.gt06.max_connections = DEVICES + WARM_UP + 10;
    })
    .await;
    for chunk in (0..DEVICES + WARM_UP).collect::<Vec<_>>().chunks(1_000) {
        let persons: Vec<_> = chunk
            .iter()
            .map(|&i| json!({"name": format!("wearer {i}"), "devices": [{"imei": imei(i)}]}))
            .collect();
        service
            .post("/api/v1/persons/bulk", json!({ "persons": persons }))
            .await;
    }
    let addr = service.listener("gt06");
    let warm = tokio::task::spawn_blocking(move || connect(addr, 0..WARM_UP))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = dhat::HeapStats::get().curr_bytes as isize;
    let held = tokio::task::spawn_blocking(move || connect(addr, WARM_UP..WARM_UP + DEVICES))
        .await
        .unwrap();
    // Let the last heartbeats' work settle (their batch committed and released).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = dhat::HeapStats::get().curr_bytes as isize;
    let per_device = (after - before) / DEVICES as isize;
    eprintln!("heap per connected wristband: {per_device} bytes");
    drop(profiler);
    assert!(
        per_device <= HEAP_PER_DEVICE_MAX,
        "{per_device} bytes of heap per connected wristband, more than {HEAP_PER_DEVICE_MAX}"
    );
    drop(held);
    drop(warm);
    service.stop().await;
}
