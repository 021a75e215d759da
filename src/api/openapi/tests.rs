//! The description against the real router: every route described, nothing described that is
//! not routed, every reference resolved, every error a problem document.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::api::{router, AppState, HttpConfig};
use crate::registry::Registry;
use crate::telemetry::Metrics;

async fn app() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = crate::store::open(&url).await.unwrap();
    let registry = Arc::new(Registry::load(store.as_ref()).await.unwrap());
    let metrics = Arc::new(Metrics::new());
    let commands = crate::commands::CommandDispatcher::new(
        store.clone(),
        Arc::new(crate::ingest::links::Links::default()),
        metrics.clone(),
    );
    let state = AppState {
        store,
        registry,
        metrics,
        token_uses: Arc::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        webhooks: Arc::from(Vec::<String>::new()),
        integration: Arc::default(),
        commands,
        levels: Arc::default(),
        default_timezone: chrono_tz::Asia::Shanghai,
        notices: Default::default(),
        supervision: Default::default(),
        store_health: Arc::default(),
        live: Default::default(),
        console: Arc::default(),
        cluster: None,
    };
    (router(state, &HttpConfig::default()), dir)
}

/// The router's paths, read from its `Debug` form, which lists each route's path as a quoted
/// string (axum has no other way to list a router's routes); the fallback's own catch-all
/// routes, listed after `fallback_router`, are not the API's.
fn router_paths(router: &Router) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let routes = text
        .split_once("fallback_router")
        .map_or(text.as_str(), |(routes, _)| routes);
    let mut paths = BTreeSet::new();
    let mut rest = routes;
    while let Some(start) = rest.find(": \"/") {
        let tail = &rest[start + 3..];
        let end = tail.find('"').unwrap();
        paths.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    paths
}

/// Methods the router answers on `path` with something other than 405, probed without a token.
async fn routed_methods(router: &Router, path: &str) -> Vec<Method> {
    // Any id will do: a route answers 401 (or its open answer) before it looks the id up.
    let mut concrete = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                concrete.push_str("00000000-0000-0000-0000-000000000000");
            }
            c if !in_param => concrete.push(c),
            _ => {}
        }
    }
    let mut methods = Vec::new();
    for method in [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
    ] {
        let response = router
            .clone()
            .oneshot(
                Request::builder()
                    .method(method.clone())
                    .uri(&concrete)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        if response.status() != StatusCode::METHOD_NOT_ALLOWED {
            methods.push(method);
        }
    }
    methods
}

fn spec_json_value() -> Value {
    serde_json::from_slice(spec_json()).unwrap()
}

#[tokio::test]
async fn every_route_of_the_router_is_described_and_nothing_else() {
    let (router, _dir) = app().await;
    let paths = router_paths(&router);
    // If axum's Debug form changes, the walk finds nothing: fail rather than pass vacuously.
    for expected in ["/api/v1/persons", "/api/v1/openapi.json", "/healthz"] {
        assert!(
            paths.contains(expected),
            "the router walk did not find {expected}; found {paths:?}"
        );
    }
    let mut routed = BTreeSet::new();
    for path in &paths {
        for method in routed_methods(&router, path).await {
            routed.insert(format!("{method} {path}"));
        }
    }
    let spec = spec_json_value();
    let mut described = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let undescribed: Vec<_> = routed.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routed).collect();
    assert!(
        undescribed.is_empty(),
        "routes missing from the OpenAPI description (add a #[utoipa::path] to the handler and \
         list it in ApiDoc): {undescribed:?}"
    );
    assert!(
        unrouted.is_empty(),
        "described but not routed: {unrouted:?}"
    );
}

#[test]
fn the_description_is_openapi_3_1_and_every_reference_resolves() {
    let spec = spec_json_value();
    assert_eq!(spec["openapi"], "3.1.0");
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&spec, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let pointer = reference.strip_prefix('#').unwrap();
        assert!(
            spec.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

#[test]
fn every_operation_answers_errors_as_problem_documents() {
    let spec = spec_json_value();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path} lacks 500");
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
                assert!(secured, "{method} {path} needs a token but says not");
            }
            if secured {
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                assert!(responses.contains_key("403"), "{method} {path} lacks 403");
            }
            for (status, response) in responses {
                if status.starts_with('2') {
                    continue;
                }
                let response = match response.get("$ref").and_then(Value::as_str) {
                    Some(r) => spec.pointer(r.strip_prefix('#').unwrap()).unwrap(),
                    None => response,
                };
                let content = response["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    vec![PROBLEM_JSON],
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_description_is_served_without_a_token() {
    let (router, _dir) = app().await;
    let response = router
        .oneshot(
            Request::builder()
                .uri("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(response.into_body(), 10_000_000)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, spec_json_value());
}
