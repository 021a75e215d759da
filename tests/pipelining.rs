//! Pipelined connections: a device that writes a backlog of 1,000 frames at once has them read
//! while earlier ones are being committed, so the backlog takes a few commits, not one per
//! frame; every reply still comes in the order of the frames and only after its frame is in the
//! store.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{gateway, Device, Service};
use ewall_protocol::gt06::encode::{self, Fix};

const BACKLOG: u16 = 1000;
/// The bound for a 1,000-frame backlog.
const MAX_COMMITS: u64 = 50;
const COMMITS: &str = "ewall_batch_commit_duration_seconds_count";

fn fix_time(i: u16) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap() + chrono::Duration::seconds(i.into())
}

#[tokio::test]
async fn a_backlog_drains_in_few_commits_with_replies_in_order_after_commit() {
    let service = Service::start().await;
    let imei = "864717003283581";
    service.person_with_device(imei, &[]).await;
    let store = gateway::read_store(&service.data_dir()).await;
    let mut device = Device::connect(service.listener("gt06")).await;
    assert_eq!(
        device.exchange(&encode::login(imei, 1, None), 10).await,
        encode::ack(0x01, 1)
    );
    let commits_before = service.metric(COMMITS).await;

    let backlog: Vec<u8> = (0..BACKLOG)
        .flat_map(|i| {
            let fix = Fix::new(fix_time(i), 25.5 + f64::from(i) * 1e-5, 112.36);
            encode::location(i + 2, &fix)
        })
        .collect();
    device.send(&backlog).await;
    for i in 0..BACKLOG {
        let reply = device.read_exact(10).await;
        assert_eq!(reply, encode::ack(0x12, i + 2), "reply {i} out of order");
        let stored = gateway::stored(&store, imei).await;
        assert!(
            stored > i64::from(i),
            "reply {i} came before its frame was committed ({stored} stored)"
        );
    }
    assert_eq!(gateway::stored(&store, imei).await, i64::from(BACKLOG));
    let commits = service.metric(COMMITS).await - commits_before;
    assert!(
        commits <= MAX_COMMITS,
        "{commits} commits for a backlog of {BACKLOG} frames"
    );
}
