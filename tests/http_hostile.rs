//! Both HTTP ports (the API and the OsmAnd listener) against clients that do not play fair:
//! connection caps and idle timeouts, headers trickled a byte at a time, oversize requests, and
//! every error answered as an `application/problem+json` document.

mod common;

use std::time::Duration;

use common::{eventually, Service};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw socket.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Asserts a problem document with `status` and returns it.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.head);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.head
        );
        let body: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)));
        assert_eq!(body["status"], status, "{body}");
        assert!(body["title"].is_string(), "{body}");
        assert!(body["detail"].is_string(), "{body}");
        body
    }
}

/// Writes `request` as it is and reads one response (head, then the body by content-length or
/// to the end of the stream).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer before it has read everything (an early 413); a failed write is
    // then expected, and the response is still there to read.
    let _ = stream.write_all(request).await;
    read_response(&mut stream).await
}

async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response within 10 s")
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut response = RawResponse {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    let length: Option<usize> = response
        .header("content-length")
        .and_then(|v| v.parse().ok());
    loop {
        if length.is_some_and(|l| response.body.len() >= l) {
            break;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("body within 10 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        response.body.extend_from_slice(&chunk[..n]);
    }
    response
}

/// True when the server closes `stream` within ten seconds.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Sends `head` one byte a second and returns how many bytes went out before the server
/// closed the connection (all of them when it never did).
async fn trickle(addr: std::net::SocketAddr, head: &[u8]) -> usize {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (sent, byte) in head.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return sent;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            // Closed, or answered (a 408) and then closed.
            Ok(Ok(0)) | Ok(Err(_)) => return sent + 1,
            Ok(Ok(_)) => return sent + 1,
            Err(_) => {}
        }
    }
    head.len()
}

#[tokio::test]
async fn a_header_sent_one_byte_a_second_is_closed_at_the_header_timeout() {
    let mut service = Service::start_with(|c| {
        c.http.header_read_timeout = Duration::from_secs(2);
    })
    .await;
    let head = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nuser-agent: slow-client/1.0\r\n\r\n";
    let sent = trickle(service.http, head).await;
    assert!(
        sent < head.len() / 2,
        "API: {sent} of {} bytes sent before the close",
        head.len()
    );
    let sent = trickle(service.listener("osmand"), head).await;
    assert!(
        sent < head.len() / 2,
        "OsmAnd: {sent} of {} bytes sent before the close",
        head.len()
    );
    service.stop().await;
}

#[tokio::test]
async fn the_osmand_listener_counts_caps_and_times_out_its_connections() {
    let mut service = Service::start_with(|c| {
        c.listeners.osmand.max_connections = 3;
        c.listeners.osmand.idle_timeout = Duration::from_secs(1);
        c.http.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let osmand = service.listener("osmand");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(TcpStream::connect(osmand).await.unwrap());
    }
    service
        .expect_metric("ewall_connections_open{protocol=\"osmand\"}", 3)
        .await;
    let mut fourth = TcpStream::connect(osmand).await.unwrap();
    assert!(closed_by_server(&mut fourth).await, "over the cap");
    service
        .expect_metric(
            "ewall_connections_refused_total{protocol=\"osmand\",reason=\"connection_cap\"}",
            1,
        )
        .await;
    // Idle connections are closed after idle_timeout, and their slots come back.
    for stream in &mut open {
        assert!(closed_by_server(stream).await, "idle connection closed");
    }
    service
        .expect_metric("ewall_connections_open{protocol=\"osmand\"}", 0)
        .await;
    let response = raw(osmand, b"GET /?lat=1 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    response.problem(400);
    service.stop().await;
}

#[tokio::test]
async fn the_api_caps_and_times_out_its_connections() {
    let mut service = Service::start_with(|c| {
        c.http.max_connections = 2;
        c.http.idle_timeout = Duration::from_secs(1);
        c.http.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    // Read in-process: a request for /metrics would need a connection of its own.
    let open = |service: &Service| {
        service
            .running()
            .metrics
            .connections_open
            .with_label_values(&["api"])
            .get()
    };
    let mut first = TcpStream::connect(service.http).await.unwrap();
    let _second = TcpStream::connect(service.http).await.unwrap();
    eventually(|| async { (open(&service) == 2).then_some(()) }).await;
    let mut third = TcpStream::connect(service.http).await.unwrap();
    assert!(closed_by_server(&mut third).await, "over the cap");
    assert!(closed_by_server(&mut first).await, "idle connection closed");
    eventually(|| async { (open(&service) == 0).then_some(()) }).await;
    let response = raw(service.http, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(response.status, 200);
    service.stop().await;
}

#[tokio::test]
async fn every_api_error_is_a_problem_document() {
    let mut service = Service::start().await;
    let token = service.admin_token.clone();
    let api = service.http;

    // 405, with the methods that would work.
    let response = raw(
        api,
        format!(
            "DELETE /api/v1/alerts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    response.problem(405);
    assert!(response.header("allow").is_some(), "{}", response.head);

    // 413 for a body over the limit, announced by content-length (50 MB of JSON) ...
    let response = raw(
        api,
        format!(
            "POST /api/v1/persons HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: 50000000\r\n\r\n{{\"name\": \""
        )
        .as_bytes(),
    )
    .await;
    response.problem(413);
    // ... and sent chunked, without one.
    let mut chunked = format!(
        "POST /api/v1/persons HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let piece = vec![b' '; 1 << 20];
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(&piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    raw(api, &chunked).await.problem(413);

    // 414 for a 16 KiB target.
    let long = "a".repeat(16 * 1024);
    raw(
        api,
        format!("GET /api/v1/persons?q={long} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await
    .problem(414);

    // 431 for 100 KiB of headers, and for far more than the server ever buffers.
    for size in [100 * 1024, 600 * 1024] {
        let big = "b".repeat(size);
        raw(
            api,
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {big}\r\n\r\n").as_bytes(),
        )
        .await
        .problem(431);
    }

    // Invalid UTF-8 in a path segment is a problem 400, not plain text.
    raw(
        api,
        format!(
            "GET /api/v1/persons/%FF%FE HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .problem(400);

    // A request line that is not HTTP.
    raw(api, b"NOT HTTP AT ALL\r\n\r\n").await.problem(400);

    // 401 says how to authenticate.
    let response = raw(api, b"GET /api/v1/persons HTTP/1.1\r\nhost: x\r\n\r\n").await;
    response.problem(401);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{}", response.head);
    service.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let mut service = Service::start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = service
            .client
            .get(service.url("/api/v1/persons"))
            .header("authorization", format!("{scheme} {}", service.admin_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "scheme {scheme}");
    }
    let response = service
        .client
        .get(service.url("/api/v1/persons"))
        .header("authorization", format!("Basic {}", service.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    service.stop().await;
}

#[tokio::test]
async fn every_osmand_error_is_a_problem_document() {
    let mut service = Service::start().await;
    let osmand = service.listener("osmand");
    raw(
        osmand,
        b"PUT /?id=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    )
    .await
    .problem(405);
    raw(osmand, b"GET /?lat=25.1 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .problem(400);
    raw(
        osmand,
        b"GET /?id=nobody&lat=25.1&lon=112.3&timestamp=1700000000 HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await
    .problem(404);
    let long = "a".repeat(16 * 1024);
    raw(
        osmand,
        format!("GET /?id={long} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await
    .problem(414);
    raw(
        osmand,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000000\r\n\r\n{",
    )
    .await
    .problem(413);
    service.stop().await;
}

/// A square ring of `n` vertices around (112.36, 25.51), about 1 km across.
fn many_vertex_ring(n: usize) -> Vec<[f64; 2]> {
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            [112.36 + 0.005 * a.cos(), 25.51 + 0.005 * a.sin()]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

#[tokio::test]
async fn zones_have_their_own_body_limit() {
    let mut service = Service::start().await;
    // About 5 MB: over the general limit, well under the zones' one.
    let zone = json!({
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [many_vertex_ring(120_000)]},
        "properties": {"name": "detailed", "kind": "inclusion"}
    });
    let (status, body) = service
        .call(Method::POST, "/api/v1/zones", Some(zone))
        .await;
    assert_eq!(status, 201, "{body}");

    let person = json!({"name": "x".repeat(5_000_000), "level": "normal"});
    let (status, body) = service
        .call(Method::POST, "/api/v1/persons", Some(person))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["status"], 413, "{body}");
    service.stop().await;
}

#[tokio::test]
async fn zones_crossing_the_antimeridian_are_refused() {
    let mut service = Service::start().await;
    let polygon = json!({
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[
            [179.5, -17.0], [-179.5, -17.0], [-179.5, -16.0], [179.5, -16.0], [179.5, -17.0]
        ]]},
        "properties": {"name": "Taveuni", "kind": "inclusion"}
    });
    let circle = json!({
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [179.99, -16.8]},
        "properties": {"name": "near the line", "kind": "inclusion", "radius_m": 5000.0}
    });
    for zone in [polygon, circle] {
        let (status, body) = service
            .call(Method::POST, "/api/v1/zones", Some(zone))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("antimeridian"),
            "{body}"
        );
    }
    // Close to the line on one side is fine.
    let (status, body) = service
        .call(
            Method::POST,
            "/api/v1/zones",
            Some(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [179.9, -16.8]},
                "properties": {"name": "west of the line", "kind": "inclusion", "radius_m": 5000.0}
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    service.stop().await;
}

#[tokio::test]
async fn names_have_a_length_limit_and_refuse_control_characters() {
    let mut service = Service::start().await;
    let zone = |name: &str| {
        json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [112.36, 25.51]},
            "properties": {"name": name, "kind": "inclusion", "radius_m": 500.0}
        })
    };
    let bad_names = [
        "z".repeat(201),
        "home\u{0}".to_owned(),
        "home\u{7}bell".to_owned(),
        "home\u{202E}emoh".to_owned(),
        "\u{2066}isolated".to_owned(),
        "line\nbreak".to_owned(),
    ];
    for name in &bad_names {
        let (status, body) = service
            .call(Method::POST, "/api/v1/zones", Some(zone(name)))
            .await;
        assert_eq!(status, 422, "zone {name:?}: {body}");
        let (status, body) = service
            .call(
                Method::POST,
                "/api/v1/persons",
                Some(json!({"name": name, "level": "normal"})),
            )
            .await;
        assert_eq!(status, 422, "person {name:?}: {body}");
        let (status, body) = service
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"role": "operator", "label": name})),
            )
            .await;
        assert_eq!(status, 422, "token label {name:?}: {body}");
    }
    // 200 characters of any script are fine.
    let (status, body) = service
        .call(Method::POST, "/api/v1/zones", Some(zone(&"家".repeat(200))))
        .await;
    assert_eq!(status, 201, "{body}");
    service.stop().await;
}

#[tokio::test]
async fn tokens_are_listed_revoked_and_expire() {
    let mut service = Service::start().await;
    let created = service
        .post(
            "/api/v1/tokens",
            json!({"role": "operator", "label": "night shift"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["token"].as_str().unwrap().to_owned();
    let (status, _) = service
        .call_as(&secret, Method::GET, "/api/v1/persons", None)
        .await;
    assert_eq!(status, 200);

    // The listing shows the token without its secret, with its last use.
    let listed = eventually(|| async {
        let list = service.get("/api/v1/tokens").await;
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str() && t["last_used_at"].is_string())
            .cloned()
    })
    .await;
    assert_eq!(listed["role"], "operator");
    assert_eq!(listed["label"], "night shift");
    assert!(listed["revoked_at"].is_null(), "{listed}");
    assert!(listed.get("token").is_none(), "{listed}");
    assert!(!listed.to_string().contains(&secret));

    // An operator may not list or revoke.
    let (status, _) = service
        .call_as(&secret, Method::GET, "/api/v1/tokens", None)
        .await;
    assert_eq!(status, 403);

    let (status, body) = service
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = service
        .call_as(&secret, Method::GET, "/api/v1/persons", None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let list = service.get("/api/v1/tokens").await;
    let revoked = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (status, _) = service
        .call(
            Method::DELETE,
            "/api/v1/tokens/0190a0b0-0000-7000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Expiry: a token that is already past its expiry cannot be created; one that expires
    // soon works until then and is refused after.
    let (status, body) = service
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"role": "operator", "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = service
        .post(
            "/api/v1/tokens",
            json!({"role": "integration", "expires_at": expires_at}),
        )
        .await;
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].is_string(), "{created}");
    let (status, _) = service
        .call_as(&secret, Method::GET, "/api/v1/alerts", None)
        .await;
    assert_eq!(status, 200);
    let refused = eventually(|| async {
        let (status, body) = service
            .call_as(&secret, Method::GET, "/api/v1/alerts", None)
            .await;
        (status == 401).then_some(body)
    })
    .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("expired"),
        "{refused}"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_connection_waiting_for_its_next_request_is_closed_at_the_header_timeout() {
    let mut service = Service::start_with(|c| {
        c.http.header_read_timeout = Duration::from_secs(1);
        c.http.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut stream = TcpStream::connect(service.http).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    // Kept alive after the response, then closed long before the hour-long idle timeout.
    assert!(closed_by_server(&mut stream).await);
    service.stop().await;
}
