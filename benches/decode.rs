//! Decode benchmarks: every protocol on real captured frames from `fixtures/frames/`, through
//! the path the listeners use.
//!
//! The stream protocols (GT06, JT/T 808, H02, watch) go through `Protocol::session(..).decode`
//! on a `BytesMut`, as the TCP listener's codec does: one session per connection, reused, and
//! each read appended to its buffer. Every timed iteration copies the bytes into the buffer and
//! decodes until the session asks for more, so the figures include that copy, the framing, the
//! un-escaping and checksum, the decode proper and the reply bytes. OsmAnd is HTTP: one request
//! target through `osmand::decode_request`, one JSON body through `osmand::decode_json`.
//!
//! Per protocol: the location report, one other frame a tracker sends all day, and (stream
//! protocols) 1,000 location reports back to back in one buffer, the read path of a busy
//! connection or a device emptying its backlog. Throughput is in bytes; divide the time by the
//! frame count for ns per frame. Results and the machine: `benches/README.md`.
//!
//! Run with `cargo bench --bench decode`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ewall_protocol::{osmand, Item, Protocol, Session, SessionOptions};

/// Frames in the back-to-back stream cases.
const STREAM_FRAMES: usize = 1_000;

/// A stream protocol's cases: (fixture, what it is, in words).
struct Cases {
    protocol: Protocol,
    location: &'static str,
    other: (&'static str, &'static str),
}

const STREAM_PROTOCOLS: [Cases; 4] = [
    Cases {
        protocol: Protocol::Gt06,
        location: "a location report (0x12)",
        other: ("heartbeat", "a heartbeat (0x13)"),
    },
    Cases {
        protocol: Protocol::Jt808,
        location: "a location report (0x0200)",
        other: (
            "batch_blind",
            "a blind-area batch upload (0x0704, one report)",
        ),
    },
    Cases {
        protocol: Protocol::H02,
        location: "a text location report (V1)",
        other: ("location_binary", "a binary location record (32 bytes)"),
    },
    Cases {
        protocol: Protocol::Watch,
        location: "a location report (UD)",
        other: ("alarm_sos", "an SOS alarm (AL_LTE)"),
    },
];

fn session(protocol: Protocol) -> Box<dyn Session> {
    protocol
        .session(&SessionOptions::default())
        .expect("a stream protocol")
}

/// Appends `bytes` to the session's buffer and decodes every frame in it; returns how many
/// frames decoded. Panics on a rejected frame or a stream error: the inputs are golden frames.
fn decode_all(session: &mut dyn Session, buf: &mut BytesMut, bytes: &[u8]) -> usize {
    buf.extend_from_slice(bytes);
    let mut frames = 0;
    while let Some(item) = session.decode(buf).expect("a clean stream") {
        match item {
            Item::Frame(decoded) => {
                black_box(decoded);
                frames += 1;
            }
            Item::Rejected(e) => panic!("golden frame rejected: {e}"),
        }
    }
    frames
}

/// Times decoding `bytes` (which hold `frames` frames) on one long-lived session.
fn bench_bytes(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: String,
    protocol: Protocol,
    bytes: &[u8],
    frames: usize,
) {
    // Checked once, untimed: the case decodes to the frames it claims, none rejected.
    let mut check = session(protocol);
    let decoded = decode_all(check.as_mut(), &mut BytesMut::new(), bytes);
    assert_eq!(decoded, frames, "{name}: frames decoded");

    let mut s = session(protocol);
    let mut buf = BytesMut::with_capacity(bytes.len());
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| decode_all(s.as_mut(), &mut buf, black_box(bytes)))
    });
}

fn stream_protocols(c: &mut Criterion) {
    for cases in STREAM_PROTOCOLS {
        let p = cases.protocol;
        let location = common::frame(p.name(), "location");
        let (other_case, other_name) = cases.other;
        let other = common::frame(p.name(), other_case);
        let stream = location.repeat(STREAM_FRAMES);
        // Checked once, untimed: the location fixture carries a position.
        let mut check = session(p);
        let Some(Item::Frame(decoded)) = check
            .decode(&mut BytesMut::from(&location[..]))
            .expect("a clean stream")
        else {
            panic!("{p} location fixture does not decode");
        };
        assert!(decoded.messages.iter().any(|m| m.position.is_some()));

        let mut g = c.benchmark_group(format!("decode {p}"));
        bench_bytes(
            &mut g,
            format!(
                "{}, {} bytes, one frame per read",
                cases.location,
                location.len()
            ),
            p,
            &location,
            1,
        );
        bench_bytes(
            &mut g,
            format!("{other_name}, {} bytes, one frame per read", other.len()),
            p,
            &other,
            1,
        );
        bench_bytes(
            &mut g,
            "1,000 location reports back to back in one read".to_owned(),
            p,
            &stream,
            STREAM_FRAMES,
        );
        g.finish();
    }
}

fn osmand(c: &mut Criterion) {
    let target = String::from_utf8(common::frame("osmand", "location")).expect("a request target");
    let json = common::frame("osmand", "location_json");
    // Checked once, untimed: both carry a position.
    for decoded in [
        osmand::decode_request(&target).expect("decodes"),
        osmand::decode_json(&json).expect("decodes"),
    ] {
        assert!(decoded.messages.iter().any(|m| m.position.is_some()));
    }

    let mut g = c.benchmark_group("decode osmand");
    g.throughput(Throughput::Bytes(target.len() as u64));
    g.bench_function(
        format!(
            "a GET request target with a position, {} bytes",
            target.len()
        ),
        |b| b.iter(|| osmand::decode_request(black_box(&target))),
    );
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function(
        format!("a JSON body with a position, {} bytes", json.len()),
        |b| b.iter(|| osmand::decode_json(black_box(&json))),
    );
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
}

criterion_group! {
    name = benches;
    config = config();
    targets = stream_protocols, osmand
}
criterion_main!(benches);
