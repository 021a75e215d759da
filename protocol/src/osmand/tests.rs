//! OsmAnd decoding tests: golden requests from `fixtures/frames/osmand/`, the JSON body, and
//! round trips through the encoders.

use chrono::{TimeZone, Utc};

use super::*;
use crate::test_support;
use crate::PositionSource;

/// The text of one golden request (`fixtures/frames/osmand/<name>.hex`).
fn fixture(name: &str) -> String {
    String::from_utf8(test_support::fixture("osmand", name)).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn one(decoded: &Decoded) -> &Message {
    assert_eq!(decoded.messages.len(), 1);
    assert_eq!(decoded.reply, None);
    assert_eq!(decoded.integrity, Integrity::Unchecked);
    &decoded.messages[0]
}

#[test]
fn typical_request() {
    // id=123456 timestamp=1377177267 lat=60.0 lon=30.0 speed=0.0 bearing=0.0 altitude=0 hdop=0.0
    let d = decode_request_at(&fixture("location"), now()).unwrap();
    let m = one(&d);
    assert_eq!(m.kind, MessageKind::Position);
    assert_eq!(m.device_id.as_deref(), Some("123456"));
    let p = m.position.as_ref().unwrap();
    assert_eq!(p.time, Utc.timestamp_opt(1_377_177_267, 0).unwrap());
    assert_eq!((p.lat, p.lon), (60.0, 30.0));
    assert!(p.valid);
    assert_eq!(p.source, PositionSource::Gps);
    assert_eq!(p.speed_kmh, Some(0.0));
    assert_eq!(p.course, Some(0.0));
    assert_eq!(p.altitude_m, Some(0.0));
    assert_eq!(p.hdop, Some(0.0));
}

#[test]
fn timestamp_forms_in_requests() {
    let d = decode_request_at(&fixture("location_iso_time"), now()).unwrap();
    let p = one(&d).position.clone().unwrap();
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2016, 1, 27, 18, 55, 47).unwrap()
    );
    assert_eq!((p.lat, p.lon), (42.06288, -88.23412));

    let d = decode_request_at(&fixture("location_form_time"), now()).unwrap();
    let m = one(&d);
    assert_eq!(m.device_id.as_deref(), Some("353861053849681"));
    let p = m.position.as_ref().unwrap();
    assert_eq!(p.time, Utc.with_ymd_and_hms(2014, 6, 4, 9, 10, 11).unwrap());
    assert_eq!(p.altitude_m, Some(384.7));

    // no timestamp: the time of receipt
    let d = decode_request_at("/?id=1&lat=1&lon=2", now()).unwrap();
    assert_eq!(one(&d).position.as_ref().unwrap().time, now());
}

#[test]
fn every_documented_key() {
    let target = concat!(
        "/?deviceid=dev%201",
        "&location=-33.5%2C151.25", // lat,lon
        "&timestamp=1442068686579", // milliseconds
        "&speed=10",                // knots
        "&heading=370",             // wraps to 10
        "&altitude=12.5&accuracy=8&hdop=1.2",
        "&batt=87.4&charge=true&valid=false",
        "&cell=257,02,16,2224&wifi=00-14-22-01-23-45,-80",
        "&driverUniqueId=x&rpm=933" // not modelled
    );
    let d = decode_request_at(target, now()).unwrap();
    let m = one(&d);
    assert_eq!(m.device_id.as_deref(), Some("dev 1"));
    let p = m.position.as_ref().unwrap();
    assert_eq!((p.lat, p.lon), (-33.5, 151.25));
    assert_eq!(p.time.timestamp_millis(), 1_442_068_686_579);
    assert!((p.speed_kmh.unwrap() - 18.52).abs() < 1e-9);
    assert_eq!(p.course, Some(10.0));
    assert_eq!(p.altitude_m, Some(12.5));
    assert_eq!(p.accuracy_m, Some(8.0));
    assert_eq!(p.hdop, Some(1.2));
    assert!(!p.valid);
    assert_eq!(m.status.battery_pct, Some(87));
    assert_eq!(m.status.charging, Some(true));
    assert_eq!(m.cells.len(), 1);
    assert_eq!(m.wifi[0].mac, "00:14:22:01:23:45");
}

#[test]
fn bare_query_string_and_form_body() {
    let d = decode_request_at("id=7&lat=1.25&lon=2.5&batt=50", now()).unwrap();
    let m = one(&d);
    assert_eq!(m.device_id.as_deref(), Some("7"));
    assert_eq!(m.status.battery_pct, Some(50));
}

#[test]
fn network_only_request() {
    let d = decode_request_at(&fixture("lbs_wifi"), now()).unwrap();
    let m = one(&d);
    assert_eq!(m.kind, MessageKind::Wifi);
    assert_eq!(m.position, None);
    assert_eq!(m.cells.len(), 2);
    assert_eq!(m.cells[1].rssi, Some(-90));
    assert_eq!(m.wifi.len(), 2);
    assert_eq!(m.wifi[1].mac, "00:1c:b3:09:85:15");

    let d = decode_request_at("/?id=1&batt=20", now()).unwrap();
    assert_eq!(one(&d).kind, MessageKind::Heartbeat);
}

#[test]
fn alarm_parameter() {
    let d = decode_request_at("/?id=1&lat=1&lon=1&alarm=sos", now()).unwrap();
    let m = one(&d);
    assert_eq!(m.kind, MessageKind::Alarm);
    assert_eq!(m.alarms, vec![Alarm::Sos]);
    let d = decode_request_at("/?id=1&alarm=somethingElse", now()).unwrap();
    assert_eq!(one(&d).alarms, vec![Alarm::General]);
}

#[test]
fn missing_id_is_an_error() {
    for target in [
        fixture("no_id"),
        "/?id=&lat=1&lon=2".into(),
        "/?id=%20&lat=1&lon=2".into(),
        "/".into(),
        "".into(),
    ] {
        assert!(
            matches!(
                decode_request_at(&target, now()),
                Err(DecodeError::InvalidField { field: "id", .. })
            ),
            "{target}"
        );
    }
}

#[test]
fn incomplete_or_out_of_range_coordinates_are_errors() {
    for target in [
        "/?id=1&lat=1",
        "/?id=1&lon=1",
        "/?id=1&lat=91&lon=0",
        "/?id=1&lat=0&lon=-180.5",
    ] {
        assert!(decode_request_at(target, now()).is_err(), "{target}");
    }
}

#[test]
fn json_body() {
    let body = fixture("location_json");
    let d = decode_json_at(body.as_bytes(), now()).unwrap();
    let m = one(&d);
    assert_eq!(m.kind, MessageKind::Position);
    assert_eq!(m.device_id.as_deref(), Some("8737767034"));
    let p = m.position.as_ref().unwrap();
    assert_eq!(
        p.time.timestamp_millis(),
        Utc.with_ymd_and_hms(2021, 7, 21, 8, 6, 34)
            .unwrap()
            .timestamp_millis()
            + 444
    );
    assert_eq!((p.lat, p.lon), (-6.1148096, 106.6837015));
    assert!((p.speed_kmh.unwrap() - 18.67 * 3.6).abs() < 1e-9);
    assert_eq!(p.course, Some(63.0));
    assert_eq!(p.accuracy_m, Some(3.8));
    assert_eq!(p.altitude_m, Some(35.7));
    assert_eq!(m.status.battery_pct, Some(79));
    assert_eq!(m.status.charging, Some(false));
    assert_eq!(m.status.odometer_m, Some(0.0));
}

#[test]
fn json_coordinates_are_parsed_exactly() {
    // the last digit matters: a fast float parser gives ...843 here
    let body = br#"{"device_id": "1", "location": {"coords": {"latitude": 0.0,
        "longitude": 179.58940179295845}}}"#;
    let d = decode_json_at(body, now()).unwrap();
    assert_eq!(
        one(&d).position.as_ref().unwrap().lon,
        179.589_401_792_958_45
    );
}

#[test]
fn json_batch() {
    let body = br#"{"device_id": "x", "location": [
        {"timestamp": "2021-07-21T08:06:34Z", "coords": {"latitude": 1, "longitude": 2}},
        {"timestamp": 1626854800, "coords": {"latitude": 3, "longitude": 4}, "alarm": "sos"}]}"#;
    let d = decode_json_at(body, now()).unwrap();
    assert_eq!(d.messages.len(), 2);
    assert_eq!(d.messages[1].kind, MessageKind::Alarm);
    assert!(d
        .messages
        .iter()
        .all(|m| m.device_id.as_deref() == Some("x")));
}

#[test]
fn json_without_device_id_is_an_error() {
    let body = br#"{"location": {"coords": {"latitude": 1, "longitude": 2}}}"#;
    assert!(matches!(
        decode_json_at(body, now()),
        Err(DecodeError::InvalidField { field: "id", .. })
    ));
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        (946_684_800i64..2_147_483_647).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn request_target_round_trips(
            id in "[ -~]{1,20}",
            time in time(),
            lat in -90.0f64..=90.0,
            lon in -180.0f64..=180.0,
            speed in 0.0f64..300.0,
            bearing in 0.0f64..360.0,
            accuracy in proptest::option::of(0.0f64..5000.0),
            battery in proptest::option::of(0u8..=100),
        ) {
            prop_assume!(!id.trim().is_empty());
            let target = encode::request_target(&id, time, lat, lon, speed, bearing, accuracy, battery);
            let d = decode_request_at(&target, now()).unwrap();
            let m = &d.messages[0];
            prop_assert_eq!(m.device_id.as_deref(), Some(id.trim()));
            prop_assert_eq!(m.status.battery_pct, battery);
            let p = m.position.as_ref().unwrap();
            prop_assert_eq!(p.time, time);
            prop_assert_eq!((p.lat, p.lon), (lat, lon));
            prop_assert!((p.speed_kmh.unwrap() - speed).abs() <= 1e-9 * speed.max(1.0));
            prop_assert_eq!(p.course, Some(bearing));
            prop_assert_eq!(p.accuracy_m, accuracy);
        }

        #[test]
        fn json_body_round_trips(
            id in "[0-9]{1,15}",
            millis in 946_684_800_000i64..4_102_444_800_000,
            lat in -90.0f64..=90.0,
            lon in -180.0f64..=180.0,
            speed in 0.0f64..300.0,
            heading in 0.0f64..360.0,
            battery in proptest::option::of(0u8..=100),
        ) {
            let time = DateTime::from_timestamp_millis(millis).unwrap();
            let body = encode::json_body(&id, time, lat, lon, speed, heading, Some(5.0), battery);
            let d = decode_json_at(&body, now()).unwrap();
            let m = &d.messages[0];
            prop_assert_eq!(m.device_id.as_deref(), Some(id.as_str()));
            prop_assert_eq!(m.status.battery_pct, battery);
            let p = m.position.as_ref().unwrap();
            prop_assert_eq!(p.time, time);
            prop_assert_eq!((p.lat, p.lon), (lat, lon));
            prop_assert!((p.speed_kmh.unwrap() - speed).abs() <= 1e-9 * speed.max(1.0));
            prop_assert_eq!(p.course, Some(heading));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = decode_request_at(&text, now());
            let _ = decode_json_at(text.as_bytes(), now());
        }
    }
}
