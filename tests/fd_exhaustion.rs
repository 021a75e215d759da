//! Descriptor exhaustion: the real binary runs under a low open-file limit (`prlimit`), and 300
//! idle connections are opened to the public OsmAnd port. The listener may refuse most of them,
//! but the API must still answer and a GT06 wristband must still log in: one exhausted listener
//! cannot take the others down.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ewall_protocol::gt06::{crc_itu, encode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The open-file limit the service runs under (soft and hard, so it cannot raise it).
const NOFILE: u32 = 256;
/// Idle connections opened to the OsmAnd port.
const IDLE: usize = 300;

fn write_config(dir: &Path) -> std::path::PathBuf {
    let mut text = format!(
        "data_dir = {:?}\n\n[http]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"5m\"\n",
        dir.join("data").display().to_string()
    );
    for protocol in ["gt06", "jt808", "h02", "watch", "osmand"] {
        text.push_str(&format!(
            "\n[listeners.{protocol}]\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    text.push_str("\n[mqtt]\nembedded_listen = \"127.0.0.1:0\"\n");
    let path = dir.join("ewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn admin_token(config: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ewall"))
        .args(["token", "create", "--role", "admin", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.split_whitespace().last().unwrap().to_owned()
}

async fn serve_limited(config: &Path, log: &Path) -> (Child, Value) {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(env!("CARGO_BIN_EXE_ewall"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("listening line within 20 s")
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "no listening line; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    let event: Value = serde_json::from_str(&line).unwrap();
    (child, event["addresses"].clone())
}

fn addr(addresses: &Value, name: &str) -> std::net::SocketAddr {
    addresses[name].as_str().unwrap().parse().unwrap()
}

fn ack(protocol: u8, serial: u16) -> Vec<u8> {
    let body = [0x05, protocol, (serial >> 8) as u8, serial as u8];
    let crc = crc_itu(&body);
    let mut out = vec![0x78, 0x78];
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[0x0d, 0x0a]);
    out
}

#[tokio::test]
async fn idle_connections_on_the_osmand_port_do_not_starve_the_api_or_gt06() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let token = admin_token(&config);
    let log = dir.path().join("ewall.log");
    let (mut child, addresses) = serve_limited(&config, &log).await;
    let api = format!("http://{}", addr(&addresses, "http"));
    // The service runs in a child process; this one needs its own TLS crypto provider before
    // an HTTP client can be built (reqwest is built without one).
    ewall::alert::dispatch::webhook::install_tls_provider();
    let client = reqwest::Client::new();

    let person: Value = client
        .post(format!("{api}/api/v1/persons"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Wearer", "level": "normal"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let imei = "864717003283581";
    let status = client
        .post(format!("{api}/api/v1/devices"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"imei": imei, "person_id": person["id"]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);

    // The flood: connections that never send a byte. Some are refused; keep what stays open.
    let osmand = addr(&addresses, "osmand");
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        if let Ok(stream) = TcpStream::connect(osmand).await {
            idle.push(stream);
        }
    }
    // Let the listener accept (and refuse) what it will.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let health = client.get(format!("{api}/healthz")).send().await;
    let health = health.unwrap_or_else(|e| {
        panic!(
            "API unreachable: {e}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(health.status(), 200);
    let persons = client
        .get(format!("{api}/api/v1/persons"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(persons.status(), 200);

    let mut wristband = TcpStream::connect(addr(&addresses, "gt06")).await.unwrap();
    wristband
        .write_all(&encode::login(imei, 1, None))
        .await
        .unwrap();
    let mut reply = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), wristband.read_exact(&mut reply))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no login ack; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .unwrap();
    assert_eq!(reply.to_vec(), ack(0x01, 1));

    let metrics = client
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ewall_connections_open{protocol=\"osmand\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        open > 0 && open < IDLE as u64,
        "osmand connections open: {open}"
    );

    drop(idle);
    child.kill().await.unwrap();
}
