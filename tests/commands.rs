//! Downlink commands over real sockets: a simulated GT06 wristband and a simulated JT/T 808
//! terminal take commands queued while offline and sent live, answer them, and the API shows
//! each status move (pending → sent → acknowledged | failed | expired). Commands a protocol
//! cannot carry are refused with 422, or fail when a never-seen device turns out not to
//! support them.

mod common;

use chrono::{TimeZone, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::gt06::{crc_itu, encode as gt06};
use ewall_protocol::jt808::encode::{self as jt808, Edition, Location};
use ewall_protocol::jt808::framer::unescape;
use reqwest::Method;
use serde_json::{json, Value};

/// POSTs a command; returns status and body.
async fn command(service: &Service, imei: &str, body: Value) -> (u16, Value) {
    service
        .call(
            Method::POST,
            &format!("/api/v1/devices/{imei}/commands"),
            Some(body),
        )
        .await
}

/// Waits until the command has `status`; returns it.
async fn wait_for(service: &Service, imei: &str, id: &str, status: &str) -> Value {
    eventually(|| async {
        let c = service
            .get(&format!("/api/v1/devices/{imei}/commands/{id}"))
            .await;
        (c["status"] == status).then_some(c)
    })
    .await
}

/// Reads one GT06 short frame: `78 78 len ... 0d 0a`.
async fn read_gt06(device: &mut Device) -> Vec<u8> {
    let head = device.read_exact(3).await;
    assert_eq!(&head[..2], [0x78, 0x78]);
    let mut frame = head.clone();
    frame.extend(device.read_exact(usize::from(head[2]) + 2).await);
    frame
}

/// A GT06 0x15 command answer under `flag` with `text`.
fn gt06_answer(flag: u32, text: &str, serial: u16) -> Vec<u8> {
    let mut body = vec![0, 0x15, u8::try_from(4 + text.len()).unwrap()];
    body.extend_from_slice(&flag.to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(&serial.to_be_bytes());
    // The length byte counts protocol number .. serial plus the CRC.
    body[0] = u8::try_from(body.len() + 1).unwrap();
    let mut frame = vec![0x78, 0x78];
    frame.extend_from_slice(&body);
    let crc = crc_itu(&body);
    frame.extend_from_slice(&crc.to_be_bytes());
    frame.extend_from_slice(&[0x0d, 0x0a]);
    frame
}

/// The online command's server flag and text.
fn online_command(frame: &[u8]) -> (u32, String) {
    assert_eq!(frame[3], 0x80, "an online command: {frame:02x?}");
    let flag = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
    let text_len = usize::from(frame[4]) - 4;
    let text = String::from_utf8(frame[9..9 + text_len].to_vec()).unwrap();
    (flag, text)
}

#[tokio::test]
async fn gt06_wristband_command_round_trips_and_expiry() {
    let mut service = Service::start().await;
    let imei = "864717003283581";
    service.person_with_device(imei, &[]).await;

    // Never seen: its protocol is unknown, so both queue, even the one GT06 cannot carry.
    let (status, vibrate) = command(&service, imei, json!({"type": "vibrate"})).await;
    assert_eq!(status, 201, "{vibrate}");
    assert_eq!(vibrate["status"], "pending");
    let (status, locate) = command(&service, imei, json!({"type": "locate_now"})).await;
    assert_eq!(status, 201, "{locate}");
    let locate_id = locate["id"].as_str().unwrap();

    // It logs in: the login is answered, then the queued command arrives.
    let mut device = Device::connect(service.listener("gt06")).await;
    let login_ack = device.exchange(&gt06::login(imei, 1, None), 10).await;
    assert_eq!(login_ack[3], 0x01);
    let (flag, text) = online_command(&read_gt06(&mut device).await);
    assert_eq!(text, "WHERE#");
    let sent = wait_for(&service, imei, locate_id, "sent").await;
    assert_eq!(sent["protocol"], "gt06");
    assert!(sent["sent_at"].is_string());
    // Vibrate could not be sent on GT06 and says why.
    let failed = wait_for(&service, imei, vibrate["id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("vibration"),
        "{failed}"
    );

    // The device answers under the same server flag; its 0x15 is acknowledged as usual.
    let answer = gt06_answer(flag, "Lat:N25.515,Lon:E112.3625", 2);
    let ack = device.exchange(&answer, 10).await;
    assert_eq!(ack[3], 0x15);
    let done = wait_for(&service, imei, locate_id, "acknowledged").await;
    assert_eq!(done["reply"], "Lat:N25.515,Lon:E112.3625");
    assert!(done["completed_at"].is_string());

    // Its protocol is now known: vibrate is refused at once.
    let device_json = service.get(&format!("/api/v1/devices/{imei}")).await;
    assert_eq!(device_json["protocol"], "gt06");
    let (status, problem) = command(&service, imei, json!({"type": "vibrate"})).await;
    assert_eq!(status, 422);
    assert!(
        problem["detail"].as_str().unwrap().contains("vibrat"),
        "{problem}"
    );

    // Sent live while connected; the device never answers, and the timer expires it.
    let (status, interval) = command(
        &service,
        imei,
        json!({"type": "set_interval", "interval_s": 60, "expires_in": 1}),
    )
    .await;
    assert_eq!(status, 201, "{interval}");
    let (interval_flag, text) = online_command(&read_gt06(&mut device).await);
    assert_eq!(text, "TIMER,60#");
    let expired = wait_for(&service, imei, interval["id"].as_str().unwrap(), "expired").await;
    assert!(
        expired["sent_at"].is_string(),
        "it was sent before it expired"
    );

    // An answer that arrives after the expiry changes nothing.
    device
        .exchange(&gt06_answer(interval_flag, "OK", 3), 10)
        .await;
    let list = service
        .get(&format!("/api/v1/devices/{imei}/commands"))
        .await;
    let statuses: Vec<&str> = list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["expired", "acknowledged", "failed"],
        "newest first"
    );
    for (status, count) in [
        ("pending", 3),
        ("sent", 2),
        ("acknowledged", 1),
        ("failed", 1),
        ("expired", 1),
    ] {
        service
            .expect_metric(
                &format!("ewall_commands_total{{status=\"{status}\"}}"),
                count,
            )
            .await;
    }

    // Bad requests are problems, not commands.
    for bad in [
        json!({"type": "reboot"}),
        json!({"type": "message"}),
        json!({"type": "set_interval", "interval_s": 0}),
        json!({"type": "locate_now", "expires_in": 0}),
        // Valid for the API, but shorter than GT06 firmware takes.
        json!({"type": "set_interval", "interval_s": 2}),
    ] {
        let (status, _) = command(&service, imei, bad).await;
        assert_eq!(status, 422);
    }
    let (status, _) = command(&service, "000000000000000", json!({"type": "locate_now"})).await;
    assert_eq!(status, 404);
    service.stop().await;
}

const TERMINAL: &str = "13912345678";

/// Reads one JT/T 808 frame: message id, serial, body.
async fn read_jt808(device: &mut Device) -> (u16, u16, Vec<u8>) {
    let first = device.read_exact(1).await;
    assert_eq!(first, [0x7e]);
    let rest = device.read_until(&[0x7e]).await;
    let mut frame = vec![0x7e];
    frame.extend(rest);
    let raw = unescape(&frame).unwrap();
    let content = &raw[1..raw.len() - 2];
    let id = u16::from_be_bytes([content[0], content[1]]);
    let body_len = usize::from(u16::from_be_bytes([content[2], content[3]]) & 0x03ff);
    let serial = u16::from_be_bytes([content[10], content[11]]);
    (id, serial, content[12..12 + body_len].to_vec())
}

/// A 0x0001 general response to our `msg_id` / `serial` with `result`.
fn general_response(serial: u16, msg_id: u16, result: u8, own_serial: u16) -> Vec<u8> {
    let mut body = serial.to_be_bytes().to_vec();
    body.extend_from_slice(&msg_id.to_be_bytes());
    body.push(result);
    jt808::frame(0x0001, TERMINAL, Edition::V2013, own_serial, &body)
}

#[tokio::test]
async fn jt808_terminal_command_round_trips_and_expiry() {
    let mut service = Service::start().await;
    let person = service.person_with_device(TERMINAL, &[]).await;
    // Queued before the terminal is ever seen.
    let (status, early) = command(&service, TERMINAL, json!({"type": "locate_now"})).await;
    assert_eq!(status, 201, "{early}");
    let mut device = Device::connect(service.listener("jt808")).await;
    let edition = Edition::V2013;
    device
        .send(&jt808::registration(
            TERMINAL, edition, 1, "EWALL", "W1", "T0001", "",
        ))
        .await;
    let (id, _, body) = read_jt808(&mut device).await;
    assert_eq!(id, 0x8100);
    let auth = String::from_utf8(body[3..].to_vec()).unwrap();
    device
        .send(&jt808::authentication(TERMINAL, edition, 2, &auth))
        .await;
    // Nothing is sent between registration and authentication: the next frame is the
    // authentication's answer, and only then the queued query.
    assert_eq!(read_jt808(&mut device).await.0, 0x8001);
    let (id, serial, _) = read_jt808(&mut device).await;
    assert_eq!(id, 0x8201);
    device.send(&general_response(serial, 0x8201, 0, 9)).await;
    wait_for(
        &service,
        TERMINAL,
        early["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;

    // A text message, in GBK, answered with success.
    let (status, message) = command(
        &service,
        TERMINAL,
        json!({"type": "message", "text": "请回家"}),
    )
    .await;
    assert_eq!(status, 201, "{message}");
    let (id, serial, body) = read_jt808(&mut device).await;
    assert_eq!(id, 0x8300);
    assert_eq!(
        body,
        [0x0d, 0xc7, 0xeb, 0xbb, 0xd8, 0xbc, 0xd2],
        "flag, then 请回家 in GBK"
    );
    device.send(&general_response(serial, 0x8300, 0, 3)).await;
    wait_for(
        &service,
        TERMINAL,
        message["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;

    // A reporting interval the terminal refuses (result 1): failed, with the reason.
    let (_, interval) = command(
        &service,
        TERMINAL,
        json!({"type": "set_interval", "interval_s": 30}),
    )
    .await;
    let (id, serial, body) = read_jt808(&mut device).await;
    assert_eq!(id, 0x8103);
    assert_eq!(body, [1, 0, 0, 0, 0x29, 4, 0, 0, 0, 30]);
    device.send(&general_response(serial, 0x8103, 1, 4)).await;
    let failed = wait_for(
        &service,
        TERMINAL,
        interval["id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert!(
        failed["error"].as_str().unwrap().contains("failure"),
        "{failed}"
    );

    // A position query, answered by 0x0201 with the position: acknowledged, position stored.
    let (_, locate) = command(&service, TERMINAL, json!({"type": "locate_now"})).await;
    let (id, serial, body) = read_jt808(&mut device).await;
    assert_eq!((id, body.len()), (0x8201, 0));
    let time = Utc.with_ymd_and_hms(2026, 5, 4, 3, 2, 1).unwrap();
    let mut answer = serial.to_be_bytes().to_vec();
    answer.extend(Location::new(time, 25.583_111, 112.361_222).body());
    device
        .send(&jt808::frame(0x0201, TERMINAL, edition, 5, &answer))
        .await;
    wait_for(
        &service,
        TERMINAL,
        locate["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;
    eventually(|| async { (service.track_of(&person).await.len() == 1).then_some(()) }).await;

    // JT/T 808 cannot vibrate: refused at once, saying so.
    let (status, problem) = command(&service, TERMINAL, json!({"type": "vibrate"})).await;
    assert_eq!(status, 422);
    assert!(
        problem["detail"].as_str().unwrap().contains("jt808"),
        "{problem}"
    );

    // Offline: a command queues, is never sent, and expires on the timer.
    drop(device);
    eventually(|| async {
        let (status, queued) = command(
            &service,
            TERMINAL,
            json!({"type": "locate_now", "expires_in": 1}),
        )
        .await;
        assert_eq!(status, 201);
        let expired = wait_for(
            &service,
            TERMINAL,
            queued["id"].as_str().unwrap(),
            "expired",
        )
        .await;
        // Until the server has seen the connection close, the command may still go out.
        expired["sent_at"].is_null().then_some(())
    })
    .await;
    service.stop().await;
}

#[tokio::test]
async fn an_osmand_phone_is_refused_commands_once_heard() {
    let mut service = Service::start().await;
    let id = "phone-7";
    service.person_with_device(id, &[]).await;
    let (status, _) = command(&service, id, json!({"type": "vibrate"})).await;
    assert_eq!(status, 201, "never heard: queued");

    let time = Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap();
    let target = ewall_protocol::osmand::encode::request_target(
        id, time, 25.583_21, 112.361_09, 5.0, 45.0, None, None,
    );
    let url = format!("http://{}{target}", service.listener("osmand"));
    let response = service.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let problem = eventually(|| async {
        let (status, body) = command(&service, id, json!({"type": "locate_now"})).await;
        (status == 422).then_some(body)
    })
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("osmand"),
        "{problem}"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_watch_takes_a_message_and_a_locate_and_answers_by_keyword() {
    let mut service = Service::start().await;
    let id = "8800000015";
    service.person_with_device(id, &[]).await;
    let mut watch = Device::connect(service.listener("watch")).await;
    watch.send(format!("[3G*{id}*0002*LK]").as_bytes()).await;
    assert_eq!(
        watch.read_until(b"]").await,
        format!("[3G*{id}*0002*LK]").as_bytes()
    );

    let (status, message) = command(&service, id, json!({"type": "message", "text": "回家"})).await;
    assert_eq!(status, 201, "{message}");
    assert_eq!(
        watch.read_until(b"]").await,
        format!("[3G*{id}*0010*MESSAGE,56DE5BB6]").as_bytes()
    );
    let (_, locate) = command(&service, id, json!({"type": "locate_now"})).await;
    assert_eq!(
        watch.read_until(b"]").await,
        format!("[3G*{id}*0002*CR]").as_bytes()
    );
    watch.send(format!("[3G*{id}*0002*CR]").as_bytes()).await;
    wait_for(&service, id, locate["id"].as_str().unwrap(), "acknowledged").await;
    let message = service
        .get(&format!(
            "/api/v1/devices/{id}/commands/{}",
            message["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        message["status"], "sent",
        "the CR answer is not the message's"
    );
    watch
        .send(format!("[3G*{id}*0007*MESSAGE]").as_bytes())
        .await;
    wait_for(
        &service,
        id,
        message["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn a_command_queued_before_a_restart_goes_out_after_it() {
    let mut service = Service::start().await;
    let imei = "864717003283599";
    service.person_with_device(imei, &[]).await;
    let (status, queued) = command(&service, imei, json!({"type": "locate_now"})).await;
    assert_eq!(status, 201);

    // Only the monitoring centre sends and reads commands.
    let integration = service.token("integration").await;
    let path = format!("/api/v1/devices/{imei}/commands");
    let (status, _) = service
        .call_as(
            &integration,
            Method::POST,
            &path,
            Some(json!({"type": "locate_now"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = service
        .call_as(&integration, Method::GET, &path, None)
        .await;
    assert_eq!(status, 403);

    service.restart().await;
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&gt06::login(imei, 1, None), 10).await;
    let (flag, text) = online_command(&read_gt06(&mut device).await);
    assert_eq!(text, "WHERE#");
    device.exchange(&gt06_answer(flag, "OK", 2), 10).await;
    wait_for(
        &service,
        imei,
        queued["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn an_h02_tracker_takes_an_interval_and_echoes_it_in_a_v4() {
    let mut service = Service::start().await;
    let id = "4210051415";
    let person = service.person_with_device(id, &[]).await;
    let mut device = Device::connect(service.listener("h02")).await;
    let time = Utc.with_ymd_and_hms(2026, 4, 1, 12, 0, 0).unwrap();
    let report = ewall_protocol::h02::encode::Report::new(time, 25.583_333, 112.366_667);
    device
        .send(&ewall_protocol::h02::encode::text_v1(id, &report))
        .await;
    device.read_until(b"#").await;

    let (status, problem) = command(&service, id, json!({"type": "locate_now"})).await;
    assert_eq!(status, 422, "H02 has no single-position request: {problem}");
    let (status, interval) = command(
        &service,
        id,
        json!({"type": "set_interval", "interval_s": 30}),
    )
    .await;
    assert_eq!(status, 201, "{interval}");
    let sent = String::from_utf8(device.read_until(b"#").await).unwrap();
    assert!(sent.starts_with(&format!("*HQ,{id},S71,")), "{sent}");
    assert!(sent.ends_with(",22,30#"), "{sent}");
    // The tracker's echo, as real ones send it: the command, its arguments, then a position.
    device
        .send(
            format!(
                "*HQ,{id},V4,S71,22,30,120005,A,2535.0000,N,11222.0000,E,0.00,000,010426,FFFFFBFF#"
            )
            .as_bytes(),
        )
        .await;
    wait_for(
        &service,
        id,
        interval["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;
    eventually(|| async { (service.track_of(&person).await.len() == 2).then_some(()) }).await;
    service.stop().await;
}
