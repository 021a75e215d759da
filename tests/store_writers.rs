//! Several store writers committing at once on PostgreSQL (`store.writers`): GT06 wristbands
//! spread over four fence shards and three writers, each fix acknowledged after its commit.
//! Every acknowledged fix is stored once, every breach is raised once with its return, the
//! alert feed's `seq` has no gap and no repeat, and the hash chains verify: concurrent
//! commits fork no device's chain and the alerts chain stays one line.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{north_of, Backend, Device, Service};
use ewall_protocol::gt06::{crc_itu, encode};

const HOME_LON: f64 = 112.3625;
const HOME_LAT: f64 = 25.515;
const WEARERS: usize = 24;
const FIXES: u16 = 12;

/// The 5-byte acknowledgement GT06 devices expect for `protocol` and `serial`.
fn ack(protocol: u8, serial: u16) -> Vec<u8> {
    let body = [0x05, protocol, (serial >> 8) as u8, serial as u8];
    let mut out = vec![0x78, 0x78];
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc_itu(&body).to_be_bytes());
    out.extend_from_slice(&[0x0d, 0x0a]);
    out
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 9, 0, 0).unwrap()
}

/// Logs in and sends `FIXES` reports 30 s apart, each waiting for its acknowledgement; a
/// breaching wearer is 2 km out for the middle four.
async fn wear(service_addr: std::net::SocketAddr, imei: String, breaching: bool) {
    let mut device = Device::connect(service_addr).await;
    assert_eq!(
        device.exchange(&encode::login(&imei, 1, None), 10).await,
        ack(0x01, 1)
    );
    for i in 0..FIXES {
        let out = breaching && (4..8).contains(&i);
        let (lon, lat) = if out {
            north_of(HOME_LON, HOME_LAT, 2_000.0)
        } else {
            north_of(HOME_LON, HOME_LAT, f64::from(i))
        };
        let mut fix = encode::Fix::new(
            start_time() + Duration::seconds(30 * i64::from(i)),
            lat,
            lon,
        );
        fix.satellites = 9;
        let serial = i + 2;
        let reply = device.exchange(&encode::location(serial, &fix), 10).await;
        assert_eq!(reply, ack(0x12, serial), "{imei} fix {i} acknowledged");
    }
}

#[tokio::test]
async fn concurrent_writers_store_each_fix_once_and_keep_the_chains_whole() {
    let Some(backend) = Backend::postgres("concurrent store writers").await else {
        return;
    };
    let Backend::Postgres(database) = &backend else {
        unreachable!()
    };
    let url = database.url.clone();
    let service = Service::start_on_with(backend, |config| {
        config.store.writers = 3;
        config.fence.shards = 4;
        // The fix count alone confirms (30 s fixes; the dwell has tests of its own).
        config.levels.normal.confirm_seconds = 0;
    })
    .await;
    let zone = service
        .circle_zone("home", "inclusion", HOME_LON, HOME_LAT, 500.0)
        .await;
    let mut wearers = Vec::new();
    for n in 0..WEARERS {
        let body = format!("8647170{:07}", 3_000 + n);
        let imei = format!("{body}{}", ewall::identity::luhn_check_digit(&body));
        let person = service
            .person_with_device(&imei, std::slice::from_ref(&zone))
            .await;
        wearers.push((person, imei, n % 3 == 0));
    }

    let addr = service.listener("gt06");
    let sending: Vec<_> = wearers
        .iter()
        .map(|(_, imei, breaching)| tokio::spawn(wear(addr, imei.clone(), *breaching)))
        .collect();
    for task in sending {
        task.await.unwrap();
    }

    let mut seqs = Vec::new();
    for (person, imei, breaching) in &wearers {
        assert_eq!(
            service.track_of(person).await.len(),
            usize::from(FIXES),
            "{imei}: every acknowledged fix stored once"
        );
        let alerts = service.alerts_of(person).await;
        let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
        let expected: &[&str] = if *breaching {
            &["zone_exit", "returned"]
        } else {
            &[]
        };
        assert_eq!(kinds, expected, "{imei}");
        seqs.extend(alerts.iter().map(|a| a["seq"].as_i64().unwrap()));
    }
    let feed = service.get("/api/v1/alerts?after=0&limit=1000").await;
    let feed: Vec<i64> = feed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    assert!(feed.windows(2).all(|w| w[0] < w[1]), "{feed:?}");
    seqs.sort_unstable();
    assert_eq!(feed, seqs, "the feed holds every alert once, in seq order");

    let store = ewall::store::open(&url).await.unwrap();
    let summary = ewall::audit::verify(store.as_ref(), &Default::default())
        .await
        .unwrap();
    assert!(summary.ok, "{:?}", summary.broken);
    // Every fix and alert was hashed into a chain: one per device, the alerts' and the
    // actions' (the registrations).
    assert!(
        summary.records_checked as usize >= WEARERS * usize::from(FIXES) + seqs.len(),
        "{summary:?}"
    );
    assert!(summary.chains as usize >= WEARERS + 2, "{summary:?}");
}
