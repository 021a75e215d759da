//! The operator console in a real headless Chromium, driven over WebDriver (chromedriver named
//! by `EWALL_TEST_CHROMEDRIVER`; without it the test says so and skips): an operator signs in
//! with a token in the fragment, which leaves the address bar at once, and is not offered the
//! admin pages; an alert raised by a GT06 device over TCP appears in the queue without a reload;
//! the operator acknowledges, verifies and disposes of it with notes, and the API records each
//! step; the alert opens the person's page at its minute, whose track renders its points; a
//! polygon drawn in the zone editor is created through the API; an admin is offered the token
//! page. The console's pages carry a strict Content-Security-Policy and its data routes refuse
//! a request without a token. A screenshot of the live scenario is kept in `docs/console.png`.
//! The report pages of a small month (a person's, the county's) render the API's figures and
//! print through WebDriver's Print Page to an A4 PDF of the expected page count, in both
//! languages.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::{north_of, Device, Service};
use ewall_protocol::gt06::encode;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const HOME: (f64, f64) = (112.3625, 25.515);
const IMEI: &str = "864717003287038";
/// Longest the page may take to show what the API already holds, before the test gives up.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// A chromedriver process on an ephemeral port, ended with the test. Chromium's scratch
/// directories go to the driver's own temporary directory, removed with it.
struct Driver {
    _child: tokio::process::Child,
    _scratch: tempfile::TempDir,
    url: String,
}

impl Driver {
    async fn start(path: &str) -> Driver {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let mut child = tokio::process::Command::new(path)
            .arg("--port=0")
            .env("TMPDIR", scratch.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // "ChromeDriver was started successfully on port 41235."
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().unwrap();
                }
            }
            panic!("chromedriver ended without naming its port");
        })
        .await
        .expect("chromedriver names its port");
        // Its further output is not needed, but the pipe must not fill up.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            _child: child,
            _scratch: scratch,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900", "--lang=en-GB", "--autoplay-policy=no-user-gesture-required"],
        });
        if let Ok(binary) = std::env::var("EWALL_TEST_CHROMIUM") {
            options["binary"] = json!(binary);
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// Waits until `script` (a function body returning a value) returns something truthy.
async fn until(browser: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let value = browser.execute(script, vec![]).await.unwrap();
        let truthy = match &value {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(Instant::now() < deadline, "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Clicks the map at each offset from its centre, in turn.
async fn click_map(browser: &Client, map: &fantoccini::elements::Element, points: &[(f64, f64)]) {
    for &(x, y) in points {
        let click = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: map.clone(),
                duration: None,
                x,
                y,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        browser.perform_actions(click).await.unwrap();
        // Two clicks in quick succession would read as a double click (a zoom).
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// Takes one handling step on the alert's row through the dialog.
async fn take_step(
    browser: &Client,
    alert: &str,
    step: &str,
    note: &str,
    disposition: Option<&str>,
) {
    click(
        browser,
        &format!("tr[data-alert-id='{alert}'] button[data-step='{step}']"),
    )
    .await;
    until(
        browser,
        "the handling dialog",
        "return document.getElementById('handle-dialog').open",
    )
    .await;
    if let Some(disposition) = disposition {
        browser
            .find(Locator::Css("#handle-disposition"))
            .await
            .unwrap()
            .select_by_value(disposition)
            .await
            .unwrap();
    }
    fill(browser, "#handle-note", note).await;
    click(browser, "#handle-confirm").await;
    until(
        browser,
        "the dialog closed",
        "return !document.getElementById('handle-dialog').open",
    )
    .await;
}

/// A GT06 device walking through fixes 30 s apart from a fixed start; returns the fix times.
async fn walk(service: &Service, points: &[(f64, f64)]) -> Vec<chrono::DateTime<Utc>> {
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 20, 0, 0).unwrap();
    let mut times = Vec::new();
    for (i, (lon, lat)) in points.iter().enumerate() {
        let time = start + chrono::Duration::seconds(30 * i as i64);
        let fix = encode::Fix::new(time, *lat, *lon);
        let reply = device
            .exchange(&encode::location(2 + i as u16, &fix), 10)
            .await;
        assert_eq!(reply[3], 0x12, "position acknowledged");
        times.push(time);
    }
    times
}

#[tokio::test]
async fn an_operator_works_an_alert_through_the_console() {
    let Ok(chromedriver) = std::env::var("EWALL_TEST_CHROMEDRIVER") else {
        println!("skipped: EWALL_TEST_CHROMEDRIVER is not set (the path of chromedriver)");
        return;
    };
    let service = Service::start_with(|c| c.levels.normal.confirm_seconds = 0).await;
    let zone = service
        .circle_zone("home", "inclusion", HOME.0, HOME.1, 500.0)
        .await;
    let person = service.person_with_device(IMEI, &[zone]).await;
    let operator = service.token("operator").await;

    let driver = Driver::start(&chromedriver).await;
    let browser = driver.browser().await;

    // Signing in with the fragment; the token leaves the address bar at once.
    browser
        .goto(&service.url(&format!("/console/#token={operator}")))
        .await
        .unwrap();
    until(
        &browser,
        "the navigation",
        "return !document.getElementById('nav').hidden",
    )
    .await;
    let address = browser.current_url().await.unwrap();
    assert!(!address.as_str().contains("token="), "{address}");
    assert_eq!(
        browser
            .execute("return sessionStorage.getItem('ewall.token')", vec![])
            .await
            .unwrap(),
        json!(operator)
    );
    // An operator is not offered the admin pages, not even by their address.
    let tokens_link = browser
        .find(Locator::Css("a[data-page='tokens']"))
        .await
        .unwrap();
    assert!(!tokens_link.is_displayed().await.unwrap());
    browser
        .execute("location.hash = '#/tokens'", vec![])
        .await
        .unwrap();
    until(
        &browser,
        "the alert queue instead of the token page",
        "return !document.getElementById('page-alerts').hidden \
         && document.getElementById('page-tokens').hidden",
    )
    .await;
    // Both live streams are open before the device reports.
    until(
        &browser,
        "the streams live",
        "return document.getElementById('live').classList.contains('on')",
    )
    .await;
    browser
        .execute("window.notReloaded = true", vec![])
        .await
        .unwrap();

    // A GT06 device leaves its home zone: the alert reaches the queue without a reload.
    let away = north_of(HOME.0, HOME.1, 1_500.0);
    let times = walk(&service, &[HOME, HOME, away, away, away]).await;
    let alert = common::eventually(|| async {
        service
            .alerts_of(&person)
            .await
            .into_iter()
            .find(|a| a["kind"] == "zone_exit")
    })
    .await;
    let committed = Instant::now();
    let alert_id = alert["id"].as_str().unwrap().to_owned();
    until(
        &browser,
        "the new alert in the queue",
        &format!("return document.querySelector(\"tr[data-alert-id='{alert_id}']\") !== null"),
    )
    .await;
    println!(
        "the alert appeared in the queue {:?} after the API held it",
        committed.elapsed()
    );
    assert_eq!(
        browser
            .execute("return window.notReloaded === true", vec![])
            .await
            .unwrap(),
        json!(true),
        "the page was not reloaded"
    );
    let title = browser.title().await.unwrap();
    if alert["severity"] == "high" || alert["severity"] == "critical" {
        assert!(title.starts_with("(1)"), "title badge: {title}");
    }

    // Times are shown in the centre's time zone (Asia/Shanghai by default).
    let raised: chrono::DateTime<Utc> = alert["time"].as_str().unwrap().parse().unwrap();
    let local = raised
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%H:%M:%S")
        .to_string();
    let shown = browser
        .find(Locator::Css(&format!("tr[data-alert-id='{alert_id}'] td")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains(&local), "{shown} shows {local}");
    // The texts switch to Chinese and back.
    let language = browser.find(Locator::Css("#language")).await.unwrap();
    language.select_by_value("zh-CN").await.unwrap();
    until(
        &browser,
        "the Chinese texts",
        "return document.querySelector(\"a[data-page='alerts']\").textContent === '告警'",
    )
    .await;
    language.select_by_value("en").await.unwrap();
    until(
        &browser,
        "the English texts",
        "return document.querySelector(\"a[data-page='alerts']\").textContent === 'Alerts'",
    )
    .await;

    // Acknowledge, verify and dispose with notes; the API records each step.
    take_step(&browser, &alert_id, "ack", "seen on the console", None).await;
    until(
        &browser,
        "the acknowledged state",
        &format!("return document.querySelector(\"tr[data-alert-id='{alert_id}'] button[data-step='verify']\") !== null"),
    )
    .await;
    take_step(&browser, &alert_id, "verify", "called the person", None).await;
    until(
        &browser,
        "the verified state",
        &format!("return document.querySelector(\"tr[data-alert-id='{alert_id}'] button[data-step='dispose']\") !== null"),
    )
    .await;
    take_step(
        &browser,
        &alert_id,
        "dispose",
        "warned by phone",
        Some("warned"),
    )
    .await;
    until(
        &browser,
        "the disposed state",
        &format!("return document.querySelector(\"tr[data-alert-id='{alert_id}'] button[data-step='close']\") !== null"),
    )
    .await;
    let actions = service
        .get(&format!("/api/v1/alerts/{alert_id}/actions"))
        .await;
    let steps: Vec<(&str, &str)> = actions["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap(),
                a["note"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        steps.contains(&("acknowledged", "seen on the console")),
        "{steps:?}"
    );
    assert!(
        steps.contains(&("disposed", "warned by phone")),
        "{steps:?}"
    );
    let disposed = service.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(disposed["state"], "disposed");
    assert_eq!(disposed["disposition"], "warned");

    // The state filter hides the disposed alert and shows it again.
    let state_filter = browser.find(Locator::Css("#filter-state")).await.unwrap();
    state_filter.select_by_value("open").await.unwrap();
    until(
        &browser,
        "the alert filtered out",
        &format!("return document.querySelector(\"tr[data-alert-id='{alert_id}']\") === null"),
    )
    .await;
    state_filter.select_by_value("disposed").await.unwrap();
    until(
        &browser,
        "the alert filtered in",
        &format!("return document.querySelector(\"tr[data-alert-id='{alert_id}']\") !== null"),
    )
    .await;

    // The alert opens the person at its minute; the track shows every point around it.
    click(
        &browser,
        &format!("tr[data-alert-id='{alert_id}'] a.person-link"),
    )
    .await;
    let stored = service.track_of(&person).await.len();
    assert_eq!(stored, times.len());
    let drawn = until(
        &browser,
        "the track's points",
        &format!("const n = document.querySelectorAll('#person-map path.track-point').length; return n >= {stored} ? n : 0"),
    )
    .await;
    assert_eq!(drawn, json!(stored), "one marker per stored point");
    until(
        &browser,
        "the alert on the track",
        "return document.querySelectorAll('#person-map path.track-alert').length",
    )
    .await;
    until(
        &browser,
        "the map at rest",
        "return document.querySelector('#person-map .leaflet-zoom-anim') === null",
    )
    .await;
    let screenshot = browser.screenshot().await.unwrap();
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("console.png"), screenshot).unwrap();

    // A message to the device goes to the commands API, whose answer the page shows: one too
    // long for a GT06 frame is refused with the API's reason, a short one is taken.
    let too_long = "x".repeat(ewall_protocol::gt06::command::MAX_MESSAGE_UNITS + 1);
    fill(&browser, "#message-text", &too_long).await;
    click(&browser, "#message-form button[type='submit']").await;
    let status = until(
        &browser,
        "the command's refusal",
        "return document.getElementById('message-status').textContent",
    )
    .await;
    let (code, refusal) = service
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{IMEI}/commands"),
            Some(json!({"type": "message", "text": too_long})),
        )
        .await;
    assert_eq!(code, 422, "{refusal}");
    assert_eq!(status, refusal["detail"], "the API's reason, as it gave it");
    fill(&browser, "#message-text", "Please go home now").await;
    click(&browser, "#message-form button[type='submit']").await;
    let status = until(
        &browser,
        "the command's status",
        "const s = document.getElementById('message-status').textContent;
         return s.startsWith('Message ') ? s : null;",
    )
    .await;
    assert!(
        status == "Message sent." || status == "Message queued (the device is not connected).",
        "{status}"
    );
    let commands = service
        .get(&format!("/api/v1/devices/{IMEI}/commands"))
        .await;
    let messages: Vec<_> = commands["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "message")
        .collect();
    assert_eq!(messages.len(), 1, "{commands}");
    assert_eq!(messages[0]["text"], "Please go home now");

    // The console's datum shift is the server's (a GCJ-02 map shows points where they are).
    let shifted = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             import('/console/geo.js').then((g) => {
               const gcj = g.wgsToGcj(25.515, 112.3625);
               done([gcj, g.gcjToWgs(gcj[0], gcj[1])]);
             });",
            vec![],
        )
        .await
        .unwrap();
    let (lon, lat) = ewall::fence::crs::wgs84_to_gcj02(112.3625, 25.515);
    assert!(
        (shifted[0][0].as_f64().unwrap() - lat).abs() < 1e-9,
        "{shifted}"
    );
    assert!(
        (shifted[0][1].as_f64().unwrap() - lon).abs() < 1e-9,
        "{shifted}"
    );
    assert!(
        (shifted[1][0].as_f64().unwrap() - 25.515).abs() < 1e-7,
        "{shifted}"
    );
    assert!(
        (shifted[1][1].as_f64().unwrap() - 112.3625).abs() < 1e-7,
        "{shifted}"
    );

    // Positions close together on screen are drawn as one cluster, apart ones alone.
    let groups = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             import('/console/geo.js').then((g) => {
               const flat = { getZoom: () => 1, project: (p) => p, unproject: ([x, y]) => ({ x, y }) };
               const items = [{ latlng: { x: 5, y: 5 } }, { latlng: { x: 10, y: 12 } },
                              { latlng: { x: 20, y: 30 } }, { latlng: { x: 500, y: 500 } }];
               done(g.cluster(flat, items).map((c) => c.items.length).sort());
             });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(groups, json!([1, 3]));

    // The map shows the person where they last were, in the state the server reports.
    browser
        .execute("location.hash = '#/map'", vec![])
        .await
        .unwrap();
    until(
        &browser,
        "the person's position as a breach",
        "return document.querySelectorAll('#overview-map path.position.state-breach').length",
    )
    .await;

    // A polygon drawn in the zone editor is created through the API.
    browser
        .execute("location.hash = '#/zones'", vec![])
        .await
        .unwrap();
    until(
        &browser,
        "the zone editor",
        "return !document.getElementById('page-zones').hidden",
    )
    .await;
    click(&browser, "#draw-polygon").await;
    let map = browser.find(Locator::Css("#zone-map")).await.unwrap();
    click_map(
        &browser,
        &map,
        &[
            (-120.0, -80.0),
            (120.0, -80.0),
            (120.0, 80.0),
            (-120.0, 80.0),
        ],
    )
    .await;
    fill(&browser, "#zone-name", "drawn in the console").await;
    click(&browser, "#zone-save").await;
    until(
        &browser,
        "the zone created",
        "return document.getElementById('zone-status').textContent",
    )
    .await;
    let zones = service.get("/api/v1/zones").await;
    let drawn = zones["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["properties"]["name"] == "drawn in the console")
        .expect("the drawn zone is stored");
    assert_eq!(drawn["geometry"]["type"], "Polygon");
    assert_eq!(
        drawn["geometry"]["coordinates"][0]
            .as_array()
            .unwrap()
            .len(),
        5,
        "four corners and the closing position"
    );
    // An invalid shape gets the API's message: two corners enclose no area.
    click(&browser, "#draw-polygon").await;
    click_map(&browser, &map, &[(-60.0, 0.0), (60.0, 0.0)]).await;
    fill(&browser, "#zone-name", "a line").await;
    click(&browser, "#zone-save").await;
    let message = until(
        &browser,
        "the API's message",
        "return document.getElementById('zone-error').textContent",
    )
    .await;
    let message = message.as_str().unwrap();
    assert!(
        message.contains("ring"),
        "the API's reason is shown: {message}"
    );
    let zones = service.get("/api/v1/zones").await;
    assert!(
        !zones["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|z| z["properties"]["name"] == "a line"),
        "nothing stored for the refused shape"
    );

    // A circle: its centre, then a point on its edge.
    click(&browser, "#draw-circle").await;
    click_map(&browser, &map, &[(0.0, 0.0), (80.0, 0.0)]).await;
    fill(&browser, "#zone-name", "circle in the console").await;
    click(&browser, "#zone-days input[value='mon']").await;
    browser
        .execute(
            "document.getElementById('zone-from').value = '22:00';
             document.getElementById('zone-to').value = '06:00';",
            vec![],
        )
        .await
        .unwrap();
    browser
        .find(Locator::Css("#zone-kind"))
        .await
        .unwrap()
        .select_by_value("exclusion")
        .await
        .unwrap();
    click(&browser, "#zone-save").await;
    until(
        &browser,
        "the circle created",
        "return document.getElementById('zone-status').textContent.includes('circle in the console')",
    )
    .await;

    // A GeoJSON file drawn in GCJ-02 (a county boundary), shared with everyone.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/zones/jiahe-county-431024.gcj02.geojson");
    browser
        .find(Locator::Css("#zone-file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    until(
        &browser,
        "the file loaded",
        "return document.getElementById('draw-hint').textContent",
    )
    .await;
    browser
        .find(Locator::Css("#zone-crs"))
        .await
        .unwrap()
        .select_by_value("gcj02")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#zone-assign"))
        .await
        .unwrap()
        .select_by_value("everyone")
        .await
        .unwrap();
    fill(&browser, "#zone-name", "Jiahe county").await;
    click(&browser, "#zone-save").await;
    until(
        &browser,
        "the imported zone created",
        "return document.getElementById('zone-status').textContent.includes('Jiahe county')",
    )
    .await;
    let zones = service.get("/api/v1/zones").await;
    let named = |name: &str| {
        zones["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["properties"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} is stored: {zones}"))
            .clone()
    };
    let circle = named("circle in the console");
    assert_eq!(circle["geometry"]["type"], "Point");
    assert_eq!(circle["properties"]["kind"], "exclusion");
    assert!(
        circle["properties"]["radius_m"].as_f64().unwrap() > 100.0,
        "{circle}"
    );
    assert_eq!(
        circle["properties"]["schedule"],
        json!([{"days": ["mon"], "from": "22:00", "to": "06:00"}])
    );
    let county = named("Jiahe county");
    assert_eq!(county["properties"]["source_crs"], "gcj02");
    assert_eq!(
        county["properties"]["assigned_to"],
        json!({"scope": "everyone"})
    );
    let source: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let first = &source["coordinates"][0][0][0];
    let (lon, lat) =
        ewall::fence::crs::gcj02_to_wgs84(first[0].as_f64().unwrap(), first[1].as_f64().unwrap());
    // One part comes back as a Polygon, several as a MultiPolygon.
    let stored = match county["geometry"]["type"].as_str().unwrap() {
        "Polygon" => &county["geometry"]["coordinates"][0][0],
        _ => &county["geometry"]["coordinates"][0][0][0],
    };
    assert!(
        (stored[0].as_f64().unwrap() - lon).abs() < 1e-6,
        "{stored} against {lon}"
    );
    assert!(
        (stored[1].as_f64().unwrap() - lat).abs() < 1e-6,
        "{stored} against {lat}"
    );

    // An admin is offered the token page.
    click(&browser, "#sign-out").await;
    until(
        &browser,
        "the sign-in form",
        "return !document.getElementById('signin').hidden",
    )
    .await;
    fill(&browser, "#signin-token", &service.admin_token).await;
    click(&browser, "#signin-form button[type='submit']").await;
    until(
        &browser,
        "the token link",
        "return !document.querySelector(\"a[data-page='tokens']\").hidden",
    )
    .await;
    browser
        .execute("location.hash = '#/tokens'", vec![])
        .await
        .unwrap();
    let rows = until(
        &browser,
        "the token list",
        "return document.querySelectorAll('#token-rows tr').length",
    )
    .await;
    assert!(rows.as_u64().unwrap() >= 2, "the admin and operator tokens");

    browser.close().await.unwrap();
    drop(driver);
}

/// Reads server-sent events from `response` until `wanted` accepts one's data.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    wanted: impl Fn(&str, &Value) -> bool,
) -> Value {
    tokio::time::timeout(PAGE_WAIT, async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let name = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))
                    .map(str::trim)
                    .unwrap_or("message")
                    .to_owned();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if let Ok(data) = serde_json::from_str::<Value>(&data) {
                    if wanted(&name, &data) {
                        return data;
                    }
                }
            }
            let chunk = response.chunk().await.unwrap().expect("the stream goes on");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the event arrives")
}

#[tokio::test]
async fn the_positions_stream_sends_latest_positions_and_state_changes() {
    let service = Service::start_with(|c| c.levels.normal.confirm_seconds = 0).await;
    let zone = service
        .circle_zone("home", "inclusion", HOME.0, HOME.1, 500.0)
        .await;
    let person = service.person_with_device(IMEI, &[zone]).await;
    walk(&service, &[HOME]).await;
    common::eventually(|| async { (service.track_of(&person).await.len() == 1).then_some(()) })
        .await;
    let operator = service.token("operator").await;
    let integration = service.token("integration").await;

    // Who the token is, and what the console is told to draw on.
    let (status, me) = service
        .call_as(&operator, reqwest::Method::GET, "/api/v1/whoami", None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["timezone"], "Asia/Shanghai");
    assert_eq!(me["map"], json!({"tile_url": null, "tile_crs": "wgs84"}));
    let capabilities = me["capabilities"].as_array().unwrap();
    assert!(capabilities.contains(&json!("handle_alerts")));
    assert!(!capabilities.contains(&json!("manage_tokens")));
    let (status, _) = service
        .call_as(&operator, reqwest::Method::GET, "/api/v1/tokens", None)
        .await;
    assert_eq!(status, 403, "what whoami leaves out, the API refuses");
    let (_, admin) = service
        .call(reqwest::Method::GET, "/api/v1/whoami", None)
        .await;
    assert!(admin["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("manage_tokens")));

    // The integration may not follow positions.
    let (status, problem) = service
        .call_as(
            &integration,
            reqwest::Method::GET,
            "/api/v1/positions/stream",
            None,
        )
        .await;
    assert_eq!(status, 403, "{problem}");

    let mut stream = service
        .client
        .get(service.url("/api/v1/positions/stream"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buffer = String::new();
    let first = next_event(&mut stream, &mut buffer, |name, _| name == "position").await;
    assert_eq!(first["person_id"], json!(person));
    assert_eq!(first["device_id"], IMEI);
    assert_eq!(first["state"], "compliant");
    assert!(
        (first["lat"].as_f64().unwrap() - HOME.1).abs() < 1e-4,
        "{first}"
    );

    // Leaving the zone moves the person and turns the state to breach.
    let away = north_of(HOME.0, HOME.1, 1_500.0);
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 21, 0, 0).unwrap();
    for i in 0..3 {
        let fix = encode::Fix::new(start + chrono::Duration::seconds(30 * i), away.1, away.0);
        device
            .exchange(&encode::location(10 + i as u16, &fix), 10)
            .await;
    }
    let breach = next_event(&mut stream, &mut buffer, |name, data| {
        name == "position" && data["state"] == "breach"
    })
    .await;
    assert!(
        (breach["lat"].as_f64().unwrap() - away.1).abs() < 1e-4,
        "{breach}"
    );
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_its_data_needs_a_token() {
    let service = Service::start_with(|c| {
        c.console.tile_url = Some("https://tiles.example.test/{z}/{x}/{y}.png".into());
        c.console.tile_crs = ewall::console::TileCrs::Gcj02;
    })
    .await;
    // The console's pages: a strict policy, no inline code; its data needs a token.
    let page = service.client.get(service.url("/")).send().await.unwrap();
    assert_eq!(page.url().path(), "/console/", "/ redirects to the console");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(policy.contains("connect-src 'self';"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(
        policy.contains("img-src 'self' data: https://tiles.example.test;"),
        "only the tile server's origin besides this one: {policy}"
    );
    let me = service.get("/api/v1/whoami").await;
    assert_eq!(
        me["map"],
        json!({"tile_url": "https://tiles.example.test/{z}/{x}/{y}.png", "tile_crs": "gcj02"})
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    for path in ["/api/v1/whoami", "/api/v1/positions/stream"] {
        let status = service
            .client
            .get(service.url(path))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{path} without a token");
    }

    // Every embedded file is served with the policy; an unknown one is a problem document.
    for path in [
        "/console/app.js",
        "/console/vendor/leaflet/leaflet.js",
        "/console/console.css",
    ] {
        let response = service.client.get(service.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers().contains_key("content-security-policy"),
            "{path}"
        );
    }
    let missing = service
        .client
        .get(service.url("/console/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing = service
        .client
        .get(service.url("/console/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}

/// The pages of a PDF: its `/Type /Page` objects (not `/Pages`), which must agree with the
/// page tree's `/Count`.
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    let mut pages = 0;
    for (at, _) in text.match_indices("/Type") {
        let rest = text[at + "/Type".len()..].trim_start();
        if rest.starts_with("/Page") && !rest.starts_with("/Pages") {
            pages += 1;
        }
    }
    let counts: Vec<usize> = text
        .match_indices("/Count ")
        .filter_map(|(at, _)| {
            let digits: String = text[at + "/Count ".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect();
    assert!(
        counts.contains(&pages),
        "{pages} page objects, page tree counts {counts:?}"
    );
    pages
}

async fn print_a4(browser: &Client) -> Vec<u8> {
    use fantoccini::wd::{PrintConfiguration, PrintSize};
    let pdf = browser
        .print(
            PrintConfiguration::builder()
                .size(PrintSize::A4)
                .background(true)
                .build()
                .unwrap(),
        )
        .await
        .expect("the page prints");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    pdf
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_month_reports_render_and_print_on_a4() {
    let Ok(chromedriver) = std::env::var("EWALL_TEST_CHROMEDRIVER") else {
        println!("skipped: EWALL_TEST_CHROMEDRIVER is not set (the path of chromedriver)");
        return;
    };
    let service = Service::start_with(|c| c.levels.normal.confirm_seconds = 0).await;
    let zone = service
        .circle_zone("home", "inclusion", HOME.0, HOME.1, 500.0)
        .await;
    let person = service.person_with_device(IMEI, &[zone]).await;
    let operator = service.token("operator").await;

    // A small month: five fixes (two at home, three away, so one zone exit), dated as they
    // are sent, after the enrolment, so the month's record counts each.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let away = north_of(HOME.0, HOME.1, 1_500.0);
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    for (i, (lon, lat)) in [HOME, HOME, away, away, away].iter().enumerate() {
        let fix = encode::Fix::new(Utc::now(), *lat, *lon);
        let reply = device
            .exchange(&encode::location(2 + i as u16, &fix), 10)
            .await;
        assert_eq!(reply[3], 0x12, "position acknowledged");
        // GT06 dates to the second; one fix a second keeps them apart.
        tokio::time::sleep(Duration::from_millis(1_050)).await;
    }
    let alert = common::eventually(|| async {
        service
            .alerts_of(&person)
            .await
            .into_iter()
            .find(|a| a["kind"] == "zone_exit")
    })
    .await;
    let alert_id = alert["id"].as_str().unwrap().to_owned();
    service
        .post(&format!("/api/v1/alerts/{alert_id}/ack"), json!({}))
        .await;
    service
        .post(&format!("/api/v1/alerts/{alert_id}/verify"), json!({}))
        .await;
    service
        .post(
            &format!("/api/v1/alerts/{alert_id}/dispose"),
            json!({"disposition": "false_alarm", "note": "the wristband's fix drifted"}),
        )
        .await;
    let checkin = service
        .post(
            &format!("/api/v1/persons/{person}/checkins"),
            json!({"time": Utc::now().to_rfc3339(), "method": "kiosk"}),
        )
        .await;
    let month = Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m")
        .to_string();
    service
        .post(
            &format!("/api/v1/persons/{person}/assessments"),
            json!({"kind": "praise", "reason": "reported to the office on time", "month": month}),
        )
        .await;
    let record = service
        .get(&format!("/api/v1/persons/{person}/record?month={month}"))
        .await;
    assert_eq!(record["reporting"]["fixes_received"], 5, "{record}");
    assert_eq!(record["alerts"]["false_alarms"], 1, "{record}");
    assert_eq!(record["checkins"]["made"], 1, "{record}");
    let review = service
        .get(&format!(
            "/api/v1/persons/{person}/level-review?month={month}"
        ))
        .await;
    let county = service
        .get(&format!("/api/v1/stats/county?month={month}"))
        .await;

    let driver = Driver::start(&chromedriver).await;
    let browser = driver.browser().await;
    browser
        .goto(&service.url(&format!("/console/#token={operator}")))
        .await
        .unwrap();
    until(
        &browser,
        "the navigation",
        "return !document.getElementById('nav').hidden",
    )
    .await;
    // The person's page offers the month report.
    browser
        .execute(&format!("location.hash = '#/person/{person}'"), vec![])
        .await
        .unwrap();
    until(
        &browser,
        "the report link",
        &format!("return document.getElementById('person-report').getAttribute('href') === '#/report/{person}?month={month}'"),
    )
    .await;
    click(&browser, "#person-report").await;
    until(
        &browser,
        "the person's month",
        &format!("return document.getElementById('page-report').dataset.ready === '{month}'"),
    )
    .await;

    // The record table shows the API's figures.
    assert_eq!(
        text_of(&browser, "#report-record tr[data-item='fixes_received'] td").await,
        "5"
    );
    assert_eq!(
        text_of(&browser, "#report-record tr[data-item='false_alarms'] td").await,
        "1"
    );
    assert_eq!(
        text_of(&browser, "#report-record tr[data-item='checkins_made'] td").await,
        "1"
    );
    let exits = browser
        .execute(
            "return [...document.querySelectorAll(\"#report-kinds tr[data-kind='zone_exit'] td\")].map((td) => td.textContent)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(exits, json!(["left zone", "1", "1", "0", "0", "0", "0"]));
    // The timeline holds the disposed alert and the check-in, oldest first.
    let timeline = browser
        .execute(
            "return [...document.querySelectorAll('#report-timeline li.entry')].map((li) => li.dataset.alertId || li.dataset.checkinId)",
            vec![],
        )
        .await
        .unwrap();
    let mut expected: Vec<(String, Value)> = service
        .alerts_of(&person)
        .await
        .into_iter()
        .map(|a| (a["time"].as_str().unwrap().to_owned(), a["id"].clone()))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<Value> = expected.into_iter().map(|(_, id)| id).collect();
    expected.push(checkin["id"].clone());
    assert!(expected.contains(&json!(alert_id)));
    assert_eq!(timeline, json!(expected));
    let entry = text_of(
        &browser,
        &format!("#report-timeline li[data-alert-id='{alert_id}']"),
    )
    .await;
    assert!(
        entry.contains("left zone") && entry.contains("false alarm"),
        "{entry}"
    );
    // The density grid: cells at home and away, their counts summing to the five fixes.
    let cells = until(
        &browser,
        "the density cells",
        "return document.querySelectorAll('#report-map path.density').length",
    )
    .await;
    assert_eq!(cells, json!(2), "one cell at home, one away");
    let legend = text_of(&browser, "#report-density-legend").await;
    assert!(legend.starts_with("5 fixes"), "{legend}");
    // The officer's entries, and one more from the form, which the API records.
    let first = text_of(&browser, "#report-entries li.assessment").await;
    assert!(
        first.starts_with("praise reported to the office on time"),
        "{first}"
    );
    browser
        .find(Locator::Css("#assessment-kind"))
        .await
        .unwrap()
        .select_by_value("reward")
        .await
        .unwrap();
    fill(&browser, "#assessment-reason", "helped a neighbour").await;
    click(&browser, "#assessment-save").await;
    until(
        &browser,
        "the new entry",
        "return document.querySelectorAll('#report-entries li.assessment').length === 2",
    )
    .await;
    let entries = service
        .get(&format!("/api/v1/persons/{person}/assessments"))
        .await;
    assert_eq!(entries["assessments"][1]["kind"], "reward");
    assert_eq!(entries["assessments"][1]["reason"], "helped a neighbour");
    // The level review with its reasons.
    let reasons = browser
        .execute(
            "return [...document.querySelectorAll('#review-reasons li')].map((li) => li.textContent)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(reasons, review["reasons"]);
    assert!(!text_of(&browser, "#review-summary").await.is_empty());

    // On A4: the map and timeline, the record, the entries and review, a page each.
    let pdf = print_a4(&browser).await;
    assert_eq!(pdf_pages(&pdf), 3, "the person's month on A4");

    // The county's month, from the navigation: bars for this month and the one before.
    click(&browser, "a[data-page='county']").await;
    until(
        &browser,
        "the county's month",
        &format!("return document.getElementById('page-county').dataset.ready === '{month}'"),
    )
    .await;
    let bar = |item: &str, which: &str| {
        format!("return document.querySelector(\"#county-charts rect.bar-{which}[data-item='{item}']\")?.dataset.value ?? null")
    };
    assert_eq!(
        browser
            .execute(&bar("persons", "current"), vec![])
            .await
            .unwrap(),
        json!(county["month"]["persons"].to_string())
    );
    assert_eq!(
        browser
            .execute(&bar("persons", "previous"), vec![])
            .await
            .unwrap(),
        json!(county["previous"]["persons"].to_string())
    );
    // The rate falls as the month's person-days grow: the page's lies between the API's
    // before and after it.
    let shown: f64 = browser
        .execute(&bar("alert.zone_exit", "current"), vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let later = service
        .get(&format!("/api/v1/stats/county?month={month}"))
        .await;
    let rate = |figures: &Value| {
        figures["month"]["alerts_per_100_person_days"]["zone_exit"]
            .as_f64()
            .unwrap()
    };
    assert!(
        rate(&later) <= shown && shown <= rate(&county),
        "{} <= {shown} <= {}",
        rate(&later),
        rate(&county)
    );
    let width = browser
        .execute(
            "return Number(document.querySelector(\"#county-charts rect.bar-current[data-item='false_alarm_share']\").getAttribute('width'))",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        width.as_f64().unwrap() > 0.0,
        "a bar for the false-alarm share"
    );
    assert_eq!(
        text_of(
            &browser,
            "#county-table tr[data-item='false_alarm_share'] td"
        )
        .await,
        "100.0 %"
    );
    let pdf = print_a4(&browser).await;
    assert_eq!(pdf_pages(&pdf), 1, "the county's month on A4");

    // In Chinese, both pages print on as many pages.
    browser
        .find(Locator::Css("#language"))
        .await
        .unwrap()
        .select_by_value("zh-CN")
        .await
        .unwrap();
    until(
        &browser,
        "the county's month in Chinese",
        "return document.getElementById('county-title').textContent.startsWith('全县月度统计')",
    )
    .await;
    assert_eq!(pdf_pages(&print_a4(&browser).await), 1);
    browser
        .execute(
            &format!("location.hash = '#/report/{person}?month={month}'"),
            vec![],
        )
        .await
        .unwrap();
    until(
        &browser,
        "the person's month in Chinese",
        &format!("return document.getElementById('page-report').dataset.ready === '{month}' \
                  && document.querySelector(\"#report-record tr[data-item='fixes_received'] th\").textContent === '收到定位点'"),
    )
    .await;
    assert_eq!(pdf_pages(&print_a4(&browser).await), 3);
    browser.close().await.unwrap();
}
