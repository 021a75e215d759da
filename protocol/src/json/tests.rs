use super::*;

fn one(payload: &str) -> Result<Report, DecodeError> {
    let mut reports = decode(payload.as_bytes())?;
    assert_eq!(reports.len(), 1);
    Ok(reports.remove(0))
}

fn refused(payload: &[u8]) -> String {
    decode(payload).expect_err("refused").to_string()
}

#[test]
fn a_minimal_object_is_a_valid_gps_position_in_wgs84() {
    let report =
        one(r#"{"time": "2026-11-26T08:01:00+08:00", "lat": 25.515, "lon": 112.3625}"#).unwrap();
    assert_eq!(report.crs, Crs::Wgs84);
    assert_eq!(report.message.kind, MessageKind::Position);
    assert_eq!(report.message.device_id, None);
    let position = report.message.position.unwrap();
    // The offset is applied: 08:01 in GMT+8 is 00:01 UTC.
    assert_eq!(position.time.to_rfc3339(), "2026-11-26T00:01:00+00:00");
    assert_eq!((position.lat, position.lon), (25.515, 112.3625));
    assert!(position.valid);
    assert_eq!(position.source, PositionSource::Gps);
    assert_eq!(position.accuracy_m, None);
}

#[test]
fn every_optional_field_is_read() {
    let report = one(
        r#"{"time": "2026-11-26T00:01:00Z", "lat": -33.5, "lon": -70.25, "accuracy_m": 12.5,
            "speed_kmh": 3.5, "course": 270, "altitude_m": -20, "battery_pct": 81,
            "source": "wifi", "alarm": ["sos", "removal"], "crs": "gcj02"}"#,
    )
    .unwrap();
    assert_eq!(report.crs, Crs::Gcj02);
    assert_eq!(report.message.kind, MessageKind::Alarm);
    assert_eq!(report.message.alarms, vec![Alarm::Sos, Alarm::Removal]);
    assert_eq!(report.message.status.battery_pct, Some(81));
    let p = report.message.position.unwrap();
    assert_eq!(p.accuracy_m, Some(12.5));
    assert_eq!(p.speed_kmh, Some(3.5));
    assert_eq!(p.course, Some(270.0));
    assert_eq!(p.altitude_m, Some(-20.0));
    assert_eq!(p.source, PositionSource::Wifi);
}

#[test]
fn null_optional_fields_count_as_absent() {
    let report = one(
        r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "accuracy_m": null,
            "alarm": null, "crs": null}"#,
    )
    .unwrap();
    assert_eq!(report.message.position.unwrap().accuracy_m, None);
    assert!(report.message.alarms.is_empty());
}

#[test]
fn an_array_keeps_the_order_sent() {
    let reports = decode(
        br#"[{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2},
             {"time": "2026-11-26T00:00:00Z", "lat": 3, "lon": 4}]"#,
    )
    .unwrap();
    let lats: Vec<f64> = reports
        .iter()
        .map(|r| r.message.position.as_ref().unwrap().lat)
        .collect();
    assert_eq!(lats, [1.0, 3.0]);
}

#[test]
fn coordinates_keep_every_digit_sent() {
    let p = one(r#"{"time": "2026-11-26T00:01:00Z", "lat": 25.123456789012345, "lon": 112.1}"#)
        .unwrap()
        .message
        .position
        .unwrap();
    assert_eq!(p.lat, 25.123456789012345);
}

#[test]
fn bytes_that_are_not_json_are_refused_as_such() {
    for payload in [
        &b"lat=25.5&lon=112.3"[..],
        br#"{"time": "2026-11-26T00:01:00Z", "lat": NaN, "lon": 2}"#,
        br#"{"time": "2026-11-26T00:01:00Z", "lat": Infinity, "lon": 2}"#,
        br#"{"time": "2026-11-26T00:01:00Z", "lat": 1e999, "lon": 2}"#,
        b"",
        &[0xff, 0xfe, 0x00],
    ] {
        let error = decode(payload).unwrap_err();
        assert_eq!(reason_label(&error), "not_json", "{error}");
    }
}

#[test]
fn wrong_types_name_the_field() {
    let cases = [
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": "25.5", "lon": 2}"#,
            "lat",
        ),
        (r#"{"time": 1764115260, "lat": 1, "lon": 2}"#, "time"),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "speed_kmh": true}"#,
            "speed_kmh",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "source": 3}"#,
            "source",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "alarm": 7}"#,
            "alarm",
        ),
        (r#"{"time": "2026-11-26T00:01:00Z", "lon": 2}"#, "lat"),
        (r#"{"lat": 1, "lon": 2}"#, "time"),
    ];
    for (payload, field) in cases {
        let error = decode(payload.as_bytes()).unwrap_err();
        assert!(
            matches!(&error, DecodeError::InvalidField { field: f, .. } if *f == field),
            "{payload}: {error}"
        );
        assert_eq!(reason_label(&error), "invalid_field");
    }
}

#[test]
fn values_out_of_range_are_refused() {
    for (payload, needle) in [
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 91, "lon": 2}"#,
            "91 is outside -90..=90",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": -180.5}"#,
            "outside -180..=180",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "accuracy_m": -1}"#,
            "accuracy_m",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "course": 361}"#,
            "course",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "battery_pct": 101}"#,
            "battery_pct",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "battery_pct": 50.5}"#,
            "whole percent",
        ),
        (
            r#"{"time": "yesterday", "lat": 1, "lon": 2}"#,
            "not RFC 3339",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "source": "gsm"}"#,
            "\"gsm\"",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "crs": "bd09"}"#,
            "\"bd09\"",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "alarm": "panic"}"#,
            "unknown alarm",
        ),
        (
            r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2, "latitude": 1}"#,
            "unknown field \"latitude\"",
        ),
    ] {
        let message = refused(payload.as_bytes());
        assert!(message.contains(needle), "{payload}: {message}");
    }
}

#[test]
fn a_bad_element_is_named_by_its_index() {
    let message = refused(
        br#"[{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2},
             {"time": "2026-11-26T00:01:00Z", "lat": 91, "lon": 2}, 5]"#,
    );
    assert!(message.contains("[1].lat: 91"), "{message}");
    let message = refused(br#"[{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2}, 5]"#);
    assert!(
        message.contains("[1]: expected an object, found a number"),
        "{message}"
    );
}

#[test]
fn shapes_other_than_an_object_or_an_array_of_objects_are_refused() {
    assert!(refused(b"[]").contains("empty array"));
    assert!(refused(b"42").contains("found a number"));
    assert!(refused(b"\"x\"").contains("found a string"));
}

#[test]
fn oversize_payloads_and_arrays_are_refused_before_any_position_is_read() {
    let position = r#"{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2}"#;
    let megabyte = format!("[{}]", vec![position; 20_000].join(","));
    assert!(megabyte.len() > 1_000_000);
    let error = decode(megabyte.as_bytes()).unwrap_err();
    assert_eq!(reason_label(&error), "too_large");
    assert!(error.to_string().contains("the most is 262144"), "{error}");

    let many = format!("[{}]", vec![position; MAX_POSITIONS + 1].join(","));
    assert!(many.len() <= MAX_PAYLOAD_BYTES);
    let error = decode(many.as_bytes()).unwrap_err();
    assert_eq!(reason_label(&error), "too_large");

    let most = format!("[{}]", vec![position; MAX_POSITIONS].join(","));
    assert_eq!(decode(most.as_bytes()).unwrap().len(), MAX_POSITIONS);
}

#[test]
fn decode_messages_gives_one_message_per_position() {
    let decoded = decode_messages(
        br#"[{"time": "2026-11-26T00:01:00Z", "lat": 1, "lon": 2},
             {"time": "2026-11-26T00:02:00Z", "lat": 1, "lon": 2, "alarm": "fall"}]"#,
    )
    .unwrap();
    assert_eq!(decoded.messages.len(), 2);
    assert_eq!(decoded.reply, None);
    assert_eq!(decoded.integrity, Integrity::Unchecked);
    assert_eq!(decoded.messages[1].alarms, vec![Alarm::Fall]);
}
