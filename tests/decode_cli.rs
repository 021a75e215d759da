//! `ewall decode` as an engineer runs it: one JSON line per message with the reply bytes, and a
//! clear error with a non-zero exit for a frame that cannot be decoded.

use std::process::{Command, Output};

use serde_json::Value;

fn ewall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ewall"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run ewall")
}

fn decode(protocol: &str, extra: &[&str], frame: &str) -> Vec<Value> {
    let mut args = vec!["decode", "--protocol", protocol];
    args.extend_from_slice(extra);
    args.push(frame);
    let out = ewall(&args);
    assert!(
        out.status.success(),
        "{protocol} {frame}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The hex of a fixture frame (comment lines dropped).
fn fixture(path: &str) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/fixtures/frames/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("")
}

#[test]
fn jt808_location_with_its_general_response() {
    let lines = decode("jt808", &[], &fixture("jt808/location.hex"));
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["type"], "position");
    assert_eq!(line["device_id"], "13833501744");
    assert_eq!(line["integrity"], "verified");
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let reply = line["reply_hex"].as_str().unwrap();
    assert!(reply.starts_with("7e8001"), "{reply}");
}

#[test]
fn jt808_batch_gives_one_line_per_position() {
    // Three packets of one multi-packet batch: the first two only get their 0x8001, the last
    // completes the message and gives its three positions.
    let lines = decode("jt808", &["--hex"], &fixture("jt808/batch_packets.hex"));
    let positions: Vec<&Value> = lines.iter().filter(|l| l["type"] == "position").collect();
    assert_eq!(positions.len(), 3, "{lines:?}");
    assert!(positions.iter().all(|l| l["archived"] == true));
    assert!(lines
        .iter()
        .all(|l| l["reply_hex"].as_str().unwrap().starts_with("7e8001")));
}

#[test]
fn h02_text_as_text_and_as_hex_agree() {
    let text = "*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF,712,01,0,0,6#";
    let as_text = decode("h02", &[], text);
    let as_hex = decode("h02", &["--hex"], &fixture("h02/location.hex"));
    // The reply carries the current time, so compare the decoded fields only.
    for key in [
        "type",
        "device_id",
        "time",
        "lat",
        "lon",
        "valid",
        "speed_kmh",
        "course",
    ] {
        assert_eq!(
            as_text.last().unwrap()[key],
            as_hex.last().unwrap()[key],
            "{key}"
        );
    }
    let position = as_text.last().unwrap();
    assert_eq!(position["time"], "2015-12-22T16:45:49Z");
    assert!((position["lat"].as_f64().unwrap() - 9.939_781_666).abs() < 1e-6);
    assert!((position["lon"].as_f64().unwrap() + 84.111_78).abs() < 1e-6);
    assert!(position["reply_text"]
        .as_str()
        .unwrap()
        .starts_with("*HQ,4210051415,V4,V1,"));
}

#[test]
fn watch_alarm_names_the_alarm_and_the_reply() {
    let lines = decode("watch", &["--hex"], &fixture("watch/alarm_sos.hex"));
    let alarm = lines
        .iter()
        .find(|l| l["alarm"].is_string())
        .expect("an alarm line");
    assert_eq!(alarm["alarm"], "sos");
    assert!(alarm["reply_text"].as_str().unwrap().ends_with("*0002*AL]"));
}

#[test]
fn osmand_request_target_and_json_body() {
    let lines = decode(
        "osmand",
        &[],
        "/?id=123456&lat=59.9&lon=30.3&timestamp=1700000000&speed=10&accuracy=7",
    );
    assert_eq!(lines[0]["device_id"], "123456");
    assert_eq!(lines[0]["time"], "2023-11-14T22:13:20Z");
    assert_eq!(lines[0]["accuracy_m"], 7.0);
    assert!((lines[0]["speed_kmh"].as_f64().unwrap() - 18.52).abs() < 1e-9);
    let json = r#"{"device_id":"abc","location":{"timestamp":"2024-01-02T03:04:05Z","coords":{"latitude":1.5,"longitude":2.5,"speed":-1}}}"#;
    let lines = decode("osmand", &[], json);
    assert_eq!(lines[0]["lat"], 1.5);
    assert_eq!(lines[0]["time"], "2024-01-02T03:04:05Z");
}

#[test]
fn json_payload_gives_one_line_per_position_in_wgs84() {
    let payload = std::fs::read_to_string(format!(
        "{}/fixtures/frames/json/gateway-backlog.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let lines = decode("json", &[], &payload);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "position");
    assert_eq!(lines[0]["time"], "2026-11-26T00:01:00Z");
    assert_eq!(lines[0]["lat"], 25.515);
    assert_eq!(lines[0]["crs"], "wgs84");
    assert_eq!(lines[0]["speed_kmh"], 3.5);
    assert_eq!(lines[1]["type"], "alarm");
    assert_eq!(lines[1]["alarm"], "sos");
    assert_eq!(lines[1]["battery_pct"], 64);
    assert_eq!(lines[1]["source"], "wifi");
    // GCJ-02 as sent, WGS-84 as stored: a few hundred metres apart here.
    assert_eq!(lines[1]["crs"], "gcj02");
    assert_eq!(lines[1]["sent"]["lat"], 25.516);
    let lon = lines[1]["lon"].as_f64().unwrap();
    assert!(
        (112.3625 - lon) > 0.003 && (112.3625 - lon) < 0.007,
        "{lon}"
    );
    assert!(
        lines[1].get("device_id").is_none(),
        "the IMEI is in the topic"
    );
}

#[test]
fn undecodable_frames_exit_non_zero_with_a_message() {
    for (protocol, frame, expect) in [
        ("jt808", "zz", "not valid hex"),
        ("jt808", "7e0200002a0138", "do not make a whole"),
        ("h02", "hello", "jt808"),
        ("watch", "[3G*8800000015*0002*LK", "whole"),
        ("osmand", "/?lat=1&lon=2", "id"),
        (
            "json",
            r#"{"time": "2026-11-26T00:00:00Z", "lat": 91, "lon": 2}"#,
            "91 is outside",
        ),
        ("json", "lat=1", "not a json frame"),
        ("teltonika", "00", "unknown protocol"),
    ] {
        let out = ewall(&["decode", "--protocol", protocol, frame]);
        assert!(!out.status.success(), "{protocol} {frame} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if expect != "jt808" {
            assert!(stderr.contains(expect), "{protocol} {frame}: {stderr}");
        }
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout for a failed decode"
        );
    }
}

#[test]
fn gt06_login_position_alarm_and_a_wrong_crc() {
    let login = decode("gt06", &[], "78780d01086471700328358100093f040d0a");
    assert_eq!(login[0]["type"], "login");
    assert_eq!(login[0]["device_id"], "864717003283581");
    // The reply protocol-notes gives for this login.
    assert_eq!(login[0]["reply_hex"], "78780501000955940d0a");

    let position = &decode("gt06", &[], &fixture("gt06/location.hex"))[0];
    assert_eq!(position["type"], "position");
    assert_eq!(position["time"], "2015-10-20T14:21:11Z");
    assert!((position["lat"].as_f64().unwrap() - 54.94535).abs() < 1e-5);
    assert!((position["lon"].as_f64().unwrap() - 24.01762).abs() < 1e-5);
    assert_eq!(position["valid"], true);
    // The generic ack for a position with serial 3, as protocol-notes gives it.
    assert_eq!(position["reply_hex"], "787805120003903f0d0a");

    let alarm = &decode("gt06", &[], &fixture("gt06/alarm_sos.hex"))[0];
    assert_eq!(alarm["alarm"], "sos");

    let flagged = &decode("gt06", &[], &fixture("gt06/bad_crc.hex"))[0];
    assert_eq!(flagged["integrity"], "mismatch");
    assert_eq!(flagged["mismatch"]["check"], "checksum");
}

#[test]
fn a_model_changes_what_an_alarm_code_means_and_command_replies_show_their_reference() {
    // Gt06ProtocolDecoderTest.java line 579: alarm byte 0x19.
    let frame =
        "78782516180516150812c804b50ee80880e40805dcf909012e000000986633460604190106c393490d0a";
    let plain = decode("gt06", &[], frame);
    assert_eq!(plain[0]["alarm"], "low_battery");
    let lw = decode("gt06", &["--model", "LW4G-4B"], frame);
    assert_eq!(lw[0]["alarm"], "harsh_acceleration");

    let reply = decode("gt06", &[], &fixture("gt06/command_reply.hex"));
    assert_eq!(reply[0]["type"], "command_reply");
    assert_eq!(reply[0]["command_reply"]["reference"]["by"], "server_flag");
    assert_eq!(reply[0]["command_reply"]["accepted"], true);
}
