//! Every position is checked for plausibility before it counts: coordinates in range, finite
//! numbers within sane bounds, a time near the receipt time. What fails is stored with its
//! reason (`implausible` in the track) and never moves the fence; a device clock ahead of the
//! receipt time is stored as `clock_skew` and evaluated as late, so it cannot pin the state.
//! And a frame whose position cannot be read is never acknowledged and then lost.

mod common;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::{north_of, Device, Service};
use ewall_protocol::gt06::encode;
use serde_json::Value;

const HOME_LON: f64 = 112.3625;
const HOME_LAT: f64 = 25.515;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Sends an OsmAnd query report and returns the HTTP status.
async fn osmand(service: &Service, query: &str) -> u16 {
    let url = format!("http://{}/?{query}", service.listener("osmand"));
    service
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn implausible(feature: &Value) -> &str {
    feature["properties"]["implausible"]
        .as_str()
        .unwrap_or_else(|| panic!("not flagged implausible: {feature}"))
}

#[tokio::test]
async fn osmand_numbers_beyond_any_device_are_stored_flagged_and_never_fenced() {
    let service = Service::start().await;
    let home = service
        .circle_zone("home", "inclusion", HOME_LON, HOME_LAT, 300.0)
        .await;
    let person = service.person_with_device("phone-1e308", &[home]).await;
    let (lon, lat) = north_of(HOME_LON, HOME_LAT, 3_000.0);
    let now = Utc::now() - Duration::minutes(5);
    for (i, extra) in [
        "speed=1e308",
        "accuracy=1e308",
        "speed=1e308&accuracy=1e308",
    ]
    .iter()
    .enumerate()
    {
        let time = rfc3339(now + Duration::seconds(i as i64));
        let status = osmand(
            &service,
            &format!("id=phone-1e308&lat={lat}&lon={lon}&timestamp={time}&{extra}"),
        )
        .await;
        assert_eq!(status, 200, "{extra}");
    }
    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 3);
    assert!(implausible(&track[0]).contains("speed"), "{}", track[0]);
    assert!(implausible(&track[1]).contains("accuracy"), "{}", track[1]);
    for feature in &track {
        // The value that cannot be true is not kept as a measurement.
        assert!(feature["properties"]["speed_kmh"].is_null(), "{feature}");
        assert!(feature["properties"]["accuracy_m"].is_null(), "{feature}");
    }
    // Three fixes 3 km outside home, none believable: no breach.
    assert!(service.alerts_of(&person).await.is_empty());
    service
        .expect_metric(
            "ewall_fixes_implausible_total{protocol=\"osmand\",reason=\"speed\"}",
            2,
        )
        .await;
    service
        .expect_metric(
            "ewall_fixes_implausible_total{protocol=\"osmand\",reason=\"accuracy\"}",
            2,
        )
        .await;
}

#[tokio::test]
async fn osmand_times_far_from_the_receipt_are_stored_at_receipt_and_flagged() {
    let service = Service::start().await;
    let home = service
        .circle_zone("home", "inclusion", HOME_LON, HOME_LAT, 300.0)
        .await;
    let person = service.person_with_device("phone-time", &[home]).await;
    let (lon, lat) = north_of(HOME_LON, HOME_LAT, 3_000.0);
    let before = Utc::now();
    for time in [
        "1000-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
        "%2B262000-01-01T00:00:00Z",
        "-262000-01-01T00:00:00Z",
    ] {
        let status = osmand(
            &service,
            &format!("id=phone-time&lat={lat}&lon={lon}&timestamp={time}"),
        )
        .await;
        assert_eq!(status, 200, "{time}");
    }
    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 4, "{track:?}");
    for (feature, year) in track.iter().zip(["1000", "2200", "262000", "-262000"]) {
        let reason = implausible(feature);
        assert!(reason.contains("time") && reason.contains(year), "{reason}");
        let stored: DateTime<Utc> = feature["properties"]["time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(stored >= before - Duration::seconds(1), "{feature}");
    }
    assert!(service.alerts_of(&person).await.is_empty());
}

#[tokio::test]
async fn a_clock_ahead_of_the_receipt_does_not_pin_the_fence_state() {
    let service = Service::start().await;
    let home = service
        .circle_zone("home", "inclusion", HOME_LON, HOME_LAT, 300.0)
        .await;
    let person = service.person_with_device("phone-skew", &[home]).await;
    let now = Utc::now();
    let report = |time: DateTime<Utc>, (lon, lat): (f64, f64)| {
        format!(
            "id=phone-skew&lat={lat}&lon={lon}&accuracy=10&timestamp={}",
            rfc3339(time)
        )
    };
    // A device clock a day ahead, at home.
    let skewed = report(now + Duration::days(1), (HOME_LON, HOME_LAT));
    assert_eq!(osmand(&service, &skewed).await, 200);
    // Then honest fixes: two at home, then two 2 km out at walking-to-cycling speed and
    // four minutes apart (longer than the normal level's dwell), which must be judged live.
    let outside = north_of(HOME_LON, HOME_LAT, 2_000.0);
    for (seconds, position) in [
        (-600, (HOME_LON, HOME_LAT)),
        (-540, (HOME_LON, HOME_LAT)),
        (-300, outside),
        (-60, outside),
    ] {
        let honest = report(now + Duration::seconds(seconds), position);
        assert_eq!(osmand(&service, &honest).await, 200);
    }
    let alerts = service.alerts_of(&person).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "zone_exit");
    assert_eq!(alerts[0]["late"], false, "{}", alerts[0]);

    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 5);
    let skew_flags: Vec<bool> = track
        .iter()
        .map(|f| f["properties"]["clock_skew"].as_bool().unwrap())
        .collect();
    // Ordered by time: the skewed fix, a day ahead, comes last.
    assert_eq!(skew_flags, [false, false, false, false, true]);
    assert!(track[4]["properties"]["implausible"].is_null());
    service
        .expect_metric(
            "ewall_fixes_implausible_total{protocol=\"osmand\",reason=\"clock_skew\"}",
            1,
        )
        .await;
}

/// The content of a GT06 0x12 report at `time`, with its six date bytes replaced by `date`.
fn location_with_date(serial: u16, lat: f64, lon: f64, date: [u8; 6]) -> Vec<u8> {
    let mut fix = encode::Fix::new(Utc::now(), lat, lon);
    fix.satellites = 9;
    let frame = encode::location(serial, &fix);
    let mut content = frame[4..frame.len() - 6].to_vec();
    content[..6].copy_from_slice(&date);
    encode::frame(0x12, &content, serial)
}

#[tokio::test]
async fn gt06_dates_that_are_no_date_or_far_off_are_acknowledged_and_stored_flagged() {
    let service = Service::start().await;
    let home = service
        .circle_zone("home", "inclusion", HOME_LON, HOME_LAT, 300.0)
        .await;
    let imei = "864717003283581";
    let person = service.person_with_device(imei, &[home]).await;
    let mut device = Device::connect(service.listener("gt06")).await;
    let reply = device.exchange(&encode::login(imei, 1, None), 10).await;
    assert_eq!(reply, encode::ack(0x01, 1));
    let (lon, lat) = north_of(HOME_LON, HOME_LAT, 3_000.0);
    // Month 13, then the year byte 0xFF (2255), twice each: no breach from either.
    let dates = [
        [26, 13, 1, 8, 0, 0],
        [26, 13, 1, 8, 0, 1],
        [0xff, 1, 1, 8, 0, 0],
        [0xff, 1, 1, 8, 0, 1],
    ];
    for (i, date) in dates.into_iter().enumerate() {
        let serial = 2 + i as u16;
        let reply = device
            .exchange(&location_with_date(serial, lat, lon, date), 10)
            .await;
        assert_eq!(reply, encode::ack(0x12, serial), "{date:?}");
    }
    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 4, "{track:?}");
    assert!(
        implausible(&track[0]).contains("26-13-01 08:00:00"),
        "{}",
        track[0]
    );
    assert!(implausible(&track[2]).contains("2255"), "{}", track[2]);
    assert!(service.alerts_of(&person).await.is_empty());
    service
        .expect_metric(
            "ewall_fixes_implausible_total{protocol=\"gt06\",reason=\"time\"}",
            4,
        )
        .await;
}

#[tokio::test]
async fn gt06_position_text_with_a_latitude_beyond_the_pole_is_flagged() {
    let service = Service::start().await;
    let imei = "864717003283581";
    let person = service.person_with_device(imei, &[]).await;
    let mut device = Device::connect(service.listener("gt06")).await;
    let reply = device.exchange(&encode::login(imei, 1, None), 10).await;
    assert_eq!(reply, encode::ack(0x01, 1));
    let when = (Utc::now() - Duration::minutes(1)).format("%Y-%m-%d %H:%M:%S");
    for (serial, lat) in [(2u16, "N170.000000"), (3, "S180.000000")] {
        let text = format!(
            "Current position!Lat:{lat},Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:{when}"
        );
        let mut content = vec![0, 0, 0, 0, 1];
        content.extend_from_slice(text.as_bytes());
        device
            .send(&encode::frame_long(0x21, &content, serial))
            .await;
    }
    let track = common::eventually(|| async {
        let track = service.track_of(&person).await;
        (track.len() == 2).then_some(track)
    })
    .await;
    for feature in &track {
        assert!(implausible(feature).contains("latitude"), "{feature}");
    }
}

#[tokio::test]
async fn jt808_a_report_dated_month_13_is_acknowledged_and_stored_flagged() {
    use ewall_protocol::jt808::encode::{self as jt808, Edition, Location};
    let service = Service::start().await;
    let terminal = "13912345678";
    let person = service.person_with_device(terminal, &[]).await;
    let mut device = Device::connect(service.listener("jt808")).await;
    let report = Location::new(Utc::now(), 25.583_111, 112.361_222);
    let mut body = report.body();
    body[23] = 0x13; // BCD month 13
    device
        .send(&jt808::frame(0x0200, terminal, Edition::V2013, 7, &body))
        .await;
    // A general response (0x8001) with result 0.
    let reply = device.read_until(&[0x7e]).await;
    let reply = [&reply[..], &device.read_until(&[0x7e]).await[..]].concat();
    assert_eq!(&reply[1..3], &[0x80, 0x01], "{reply:02x?}");
    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 1);
    assert!(implausible(&track[0]).contains("-13-"), "{}", track[0]);
}

#[tokio::test]
async fn watch_an_alarm_dated_day_32_keeps_its_position_flagged_and_its_sos() {
    use ewall_protocol::watch::encode as watch;
    let service = Service::start().await;
    let id = "8800000015";
    let person = service.person_with_device(id, &[]).await;
    let mut device = Device::connect(service.listener("watch")).await;
    let time = Utc::now();
    let frame = watch::al(id, time, true, 25.59, 112.37, 0.0, 0.0, 79, 1 << 16);
    let date = time.format("%d%m%y").to_string();
    let text = String::from_utf8(frame).unwrap();
    let at = text.find(&format!("AL,{date},")).unwrap() + 3;
    let spoiled = format!("{}321326{}", &text[..at], &text[at + 6..]);
    device.send(spoiled.as_bytes()).await;
    assert_eq!(
        device.read_until(b"]").await,
        format!("[3G*{id}*0002*AL]").as_bytes()
    );
    let track = common::eventually(|| async {
        let track = service.track_of(&person).await;
        (track.len() == 1).then_some(track)
    })
    .await;
    assert!(implausible(&track[0]).contains("321326"), "{}", track[0]);
    let alerts = service.alerts_of(&person).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["kind"], "sos");
    // The alarm is dated at receipt and carries no position that cannot be believed.
    assert!(alerts[0]["position"].is_null(), "{}", alerts[0]);
}
