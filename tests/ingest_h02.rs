//! H02 trackers over TCP: text V1 reports are answered with `V4,V1` and stored, binary `$`
//! records are stored, and an SOS in the status word becomes an alert.

mod common;

use chrono::{TimeZone, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::h02::encode::{self, Report};

const ID: &str = "4210051415";

#[tokio::test]
async fn text_and_binary_reports_are_stored_and_answered() {
    let mut service = Service::start().await;
    let person = service.person_with_device(ID, &[]).await;
    let mut device = Device::connect(service.listener("h02")).await;

    let time = Utc.with_ymd_and_hms(2026, 4, 1, 12, 0, 0).unwrap();
    let report = Report::new(time, 25.583_333, 112.366_667);
    device.send(&encode::text_v1(ID, &report)).await;
    let reply = String::from_utf8(device.read_until(b"#").await).unwrap();
    assert!(reply.starts_with(&format!("*HQ,{ID},V4,V1,")), "{reply}");

    let later = Report::new(time + chrono::Duration::seconds(30), 25.6, 112.4);
    device.send(&encode::binary_record(ID, &later, 6)).await;

    let mut sos = Report::new(time + chrono::Duration::seconds(60), 25.61, 112.41);
    sos.status = encode::STATUS_IDLE & !(1 << 1);
    device.send(&encode::text_v1(ID, &sos)).await;
    device.read_until(b"#").await;

    let track = eventually(|| async {
        let track = service.track_of(&person).await;
        (track.len() == 3).then_some(track)
    })
    .await;
    let coordinates: Vec<(f64, f64)> = track
        .iter()
        .map(|f| {
            let c = &f["geometry"]["coordinates"];
            (c[0].as_f64().unwrap(), c[1].as_f64().unwrap())
        })
        .collect();
    // Text coordinates are DDMM.MMMM (1e-4 minute); binary DDMM.mmmm likewise.
    assert!(
        (coordinates[0].0 - 112.366_667).abs() < 2e-6,
        "{coordinates:?}"
    );
    assert!(
        (coordinates[0].1 - 25.583_333).abs() < 2e-6,
        "{coordinates:?}"
    );
    assert!((coordinates[1].1 - 25.6).abs() < 2e-6, "{coordinates:?}");
    assert_eq!(track[1]["properties"]["time"], "2026-04-01T12:00:30Z");

    let alerts = service.alerts_of(&person).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "sos");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["device_id"], ID);
    service.stop().await;
}
