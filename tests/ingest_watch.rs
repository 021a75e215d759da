//! Smartwatches over TCP: LK is answered, UD positions are stored, and an AL alarm with the
//! SOS bit is answered and becomes an alert.

mod common;

use chrono::{TimeZone, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::watch::encode;

const ID: &str = "8800000015";

#[tokio::test]
async fn keep_alive_positions_and_an_sos() {
    let mut service = Service::start().await;
    let person = service.person_with_device(ID, &[]).await;
    let mut device = Device::connect(service.listener("watch")).await;

    device.send(&encode::lk(ID, 120, 87)).await;
    assert_eq!(
        device.read_until(b"]").await,
        format!("[3G*{ID}*0002*LK]").as_bytes()
    );

    let time = Utc.with_ymd_and_hms(2026, 6, 1, 1, 2, 3).unwrap();
    for i in 0..3 {
        let t = time + chrono::Duration::seconds(i * 10);
        device
            .send(&encode::ud(
                ID,
                t,
                true,
                25.58 + i as f64 * 1e-4,
                112.36,
                3.5,
                90.0,
                80,
            ))
            .await;
    }
    let sos_bit = 1 << 16;
    device
        .send(&encode::al(
            ID,
            time + chrono::Duration::seconds(40),
            true,
            25.59,
            112.37,
            0.0,
            0.0,
            79,
            sos_bit,
        ))
        .await;
    assert_eq!(
        device.read_until(b"]").await,
        format!("[3G*{ID}*0002*AL]").as_bytes()
    );

    let track = eventually(|| async {
        let track = service.track_of(&person).await;
        (track.len() == 4).then_some(track)
    })
    .await;
    assert_eq!(track[0]["properties"]["time"], "2026-06-01T01:02:03Z");
    assert_eq!(track[0]["properties"]["battery_pct"], 80);
    let lat = track[2]["geometry"]["coordinates"][1].as_f64().unwrap();
    assert!((lat - 25.5802).abs() < 1e-9, "{lat}");
    let alerts = service.alerts_of(&person).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "sos");
    assert!((alerts[0]["position"]["lat"].as_f64().unwrap() - 25.59).abs() < 1e-9);
    service.stop().await;
}
