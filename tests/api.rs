//! The HTTP API through a real socket: authentication, roles, validation and problem details.

mod common;

use common::Service;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn requests_without_a_valid_token_get_401_problem_json() {
    let mut service = Service::start().await;
    let response = service
        .client
        .get(service.url("/api/v1/persons"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(
        body["detail"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );

    let (status, body) = service
        .call_as(
            "ewall_not_a_real_token",
            Method::GET,
            "/api/v1/persons",
            None,
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // The open endpoints need no token.
    let health = service
        .client
        .get(service.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = service
        .client
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("ewall_batch_commit_duration_seconds"),
        "{text}"
    );
    service.stop().await;
}

#[tokio::test]
async fn roles_limit_what_a_token_can_do() {
    let mut service = Service::start().await;
    let operator = service.token("operator").await;
    let integration = service.token("integration").await;

    let (status, body) = service
        .call_as(
            &operator,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("admin"), "{body}");

    let zone = service
        .circle_zone("school", "exclusion", 112.3, 25.5, 300.0)
        .await;
    let (status, body) = service
        .call_as(
            &operator,
            Method::DELETE,
            &format!("/api/v1/zones/{zone}"),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // An operator can create persons and read zones; an integration can read alerts only.
    let (status, body) = service
        .call_as(
            &operator,
            Method::POST,
            "/api/v1/persons",
            Some(json!({"name": "Zhang San"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = service
        .call_as(
            &operator,
            Method::GET,
            &format!("/api/v1/zones/{zone}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = service
        .call_as(&integration, Method::GET, "/api/v1/alerts?after=0", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = service
        .call_as(
            &integration,
            Method::POST,
            "/api/v1/persons",
            Some(json!({"name": "X"})),
        )
        .await;
    assert_eq!(status, 403);

    // The admin can delete the zone.
    let (status, body) = service
        .call(Method::DELETE, &format!("/api/v1/zones/{zone}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    service.stop().await;
}

#[tokio::test]
async fn invalid_geojson_is_422_with_the_reason() {
    let mut service = Service::start().await;
    let cases = [
        (
            json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "properties": {"name": "x", "kind": "inclusion"}}),
            "ring",
        ),
        (
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [112.3, 25.5]}, "properties": {"name": "x", "kind": "inclusion"}}),
            "radius",
        ),
        (
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [112.3, 25.5]}, "properties": {"name": "x", "kind": "sideways", "radius_m": 100}}),
            "kind",
        ),
        (
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [112.3, 95.5]}, "properties": {"name": "x", "kind": "inclusion", "radius_m": 100}}),
            "latitude",
        ),
        (
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [112.3, 25.5]}, "properties": {"name": "x", "kind": "inclusion", "radius_m": 100, "crs": "mars"}}),
            "crs",
        ),
        (
            json!({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "properties": {"name": "x", "kind": "inclusion"}}),
            "LineString",
        ),
        (
            json!({"type": "Feature", "properties": {"name": "x", "kind": "inclusion"}}),
            "geometry",
        ),
        (json!({"hello": "world"}), ""),
    ];
    for (body, reason) in cases {
        let (status, problem) = service
            .call(Method::POST, "/api/v1/zones", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body} -> {problem}");
        let detail = problem["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            detail.contains(&reason.to_lowercase()),
            "{body}: detail {detail:?} lacks {reason:?}"
        );
    }
    service.stop().await;
}

#[tokio::test]
async fn persons_devices_and_assignments_are_validated() {
    let mut service = Service::start().await;
    let (status, body) = service
        .call(
            Method::POST,
            "/api/v1/persons",
            Some(json!({"name": "Li", "level": "extreme"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = service
        .call(
            Method::POST,
            "/api/v1/persons",
            Some(json!({"name": "Li", "timezone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let person = service
        .post(
            "/api/v1/persons",
            json!({"name": "Li", "level": "strict", "timezone": "Asia/Shanghai"}),
        )
        .await;
    let id = person["id"].as_str().unwrap();
    assert_eq!(person["level"], "strict");
    let (status, body) = service
        .call(
            Method::PATCH,
            &format!("/api/v1/persons/{id}"),
            Some(json!({"level": "lenient"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["level"], "lenient");
    assert_eq!(body["name"], "Li");

    let (status, _) = service
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(json!({"imei": "861234567890127", "person_id": id})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = service
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(json!({"imei": "861234567890127", "person_id": id})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = service
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(json!({"imei": "864717003283573", "person_id": "0191c7a0-0000-7000-8000-000000000000"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = service
        .call(
            Method::PUT,
            &format!("/api/v1/persons/{id}/zones"),
            Some(json!({"zone_ids": ["0191c7a0-0000-7000-8000-000000000000"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("0191c7a0"),
        "{body}"
    );

    // A person with a device cannot be deleted; their record would lose its wearer.
    let (status, body) = service
        .call(Method::DELETE, &format!("/api/v1/persons/{id}"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = service
        .call(Method::DELETE, "/api/v1/devices/861234567890127", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = service
        .call(Method::DELETE, &format!("/api/v1/persons/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = service
        .call(Method::GET, &format!("/api/v1/persons/{id}"), None)
        .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = service
        .call(Method::GET, "/api/v1/alerts?limit=0", None)
        .await;
    assert_eq!(status, 400, "{body}");
    for bad in ["order=sideways", "open=maybe"] {
        let (status, body) = service
            .call(Method::GET, &format!("/api/v1/alerts?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = service
        .call(Method::GET, "/api/v1/alerts?order=desc&open=true", None)
        .await;
    // Unbinding the device above left the person unsupervised: the one alert still open.
    assert_eq!(status, 200, "{body}");
    let open = body["alerts"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{body}");
    assert_eq!(open[0]["kind"], "unsupervised", "{body}");
    assert_eq!(body["next"], open[0]["seq"], "{body}");
    let (status, body) = service
        .call(Method::GET, "/api/v1/nothing-here", None)
        .await;
    assert_eq!(status, 404, "{body}");
    service.stop().await;
}
