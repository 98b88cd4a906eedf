//! The HTTP surface (axum): health, readiness, metrics, the OpenAPI 3.1 document and the
//! homeowner's live event stream. Routes are added through [`Routes`], which records each
//! one, so a test can check that the OpenAPI document lists every route the router serves.
//!
//! The homeowner, carrier and driver API is [`crate::api`]; its routes are added here too.
//! A home's event stream takes the owner's session (cookie or bearer) or the home's event
//! token (generated when the home is added, kept in the keystore). Every request body is
//! limited to [`MAX_REQUEST_BODY_BYTES`] and every answer must start within
//! [`crate::api::REQUEST_TIMEOUT_MS`].

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use doorward_proto::Id;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::hub::SSE_HEARTBEAT_MS;
use crate::metrics::Metrics;
use crate::runtime::wall_ms;
use crate::server::Shared;

/// Largest request body accepted, in bytes.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

/// A router that remembers its routes, for the OpenAPI check.
pub struct Routes {
    router: Router<Arc<Shared>>,
    listed: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            listed: Vec::new(),
        }
    }

    pub(crate) fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        r: MethodRouter<Arc<Shared>>,
    ) -> Self {
        self.listed.push((method, path));
        self.router = self.router.route(path, r);
        self
    }
}

/// The routes served, as `(method, path)` in OpenAPI path syntax.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    routes().listed
}

fn routes() -> Routes {
    let ops = Routes::new()
        .add("get", "/healthz", get(healthz))
        .add("get", "/readyz", get(readyz))
        .add("get", "/metrics", get(metrics))
        .add("get", "/api/openapi.json", get(openapi_json))
        .add("get", "/api/homes/{home}/events", get(events));
    let ops = crate::api::routes(ops);
    crate::footage::routes()
        .into_iter()
        .fold(ops, |r, (method, path, handler)| {
            r.add(method, path, handler)
        })
}

/// The HTTP application.
pub fn app(shared: Arc<Shared>) -> Router {
    routes()
        .router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        // The web app sets its own body limits and security headers.
        .merge(crate::web::router())
        .layer(axum::middleware::from_fn(timeout))
        .layer(axum::middleware::from_fn(crate::metrics::trace_request))
        .with_state(shared)
}

/// Answers 503 when a handler takes longer than [`crate::api::REQUEST_TIMEOUT_MS`] to start
/// its response (a live event stream starts at once and is not cut).
async fn timeout(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let limit = Duration::from_millis(crate::api::REQUEST_TIMEOUT_MS);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => crate::api::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} ms: try again",
                crate::api::REQUEST_TIMEOUT_MS
            ),
        )
        .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let store = s.store.clone();
    let db = tokio::task::spawn_blocking(move || store.schema_version())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let broker = s.gateway.connected();
    let body = json!({
        "database": match &db { Ok(v) => json!({"ok": true, "schema": v}), Err(e) => json!({"ok": false, "error": e}) },
        "broker": {"ok": broker},
    });
    let code = if db.is_ok() && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut text = s.metrics.render();
    s.footage.metrics.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi_json() -> Json<Value> {
    Json(openapi())
}

/// Counts a live event-stream client while it is connected.
struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn events(
    State(s): State<Arc<Shared>>,
    Path(home): Path<String>,
    headers: HeaderMap,
) -> Response {
    let unauthorised = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token for this home is required\n",
        )
            .into_response()
    };
    let Ok(home) = Id::new(home) else {
        return unauthorised();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // The home's owner (session cookie or bearer session token), or the home's event token.
    // An unknown home, another tenant's home and a wrong token look the same (I11).
    let owner = match crate::api::homeowner::owns_home(&s, &headers, &home).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    if !owner {
        let expected = match s.keystore.existing_events_token(&home) {
            Ok(Some(t)) => t,
            Ok(None) => return unauthorised(),
            Err(e) => {
                tracing::error!(error = %e, "keystore");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        if !same_secret(given.as_bytes(), expected.as_bytes()) {
            return unauthorised();
        }
    }
    let rx = s.hub.subscribe(&home);
    s.metrics.sse_clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientGuard(s.metrics.clone());
    let mut beat = tokio::time::interval(Duration::from_millis(SSE_HEARTBEAT_MS));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = s.stopping.clone();
    let state = (rx, beat, guard, stop);
    let stream =
        futures_util::stream::unfold(state, |(mut rx, mut beat, g, mut stop)| async move {
            let ev = tokio::select! {
                // A stream that never ended would keep a graceful shutdown waiting forever.
                _ = stop.wait_for(|s| *s) => return None,
                _ = beat.tick() => Event::default()
                    .event("heartbeat")
                    .data(json!({"server_ms": wall_ms()}).to_string()),
                r = rx.recv() => match r {
                    Ok(e) => Event::default().event(e.name).data(e.data.to_string()),
                    Err(RecvError::Lagged(n)) => Event::default()
                        .event("lagged")
                        .data(json!({"missed": n}).to_string()),
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok::<_, Infallible>(ev), (rx, beat, g, stop)))
        });
    Sse::new(stream).into_response()
}

/// The OpenAPI 3.1 document of every route [`app`] serves.
pub fn openapi() -> Value {
    let mut doc = operations_openapi();
    let api = crate::api::openapi::paths();
    doc["paths"]
        .as_object_mut()
        .expect("paths is an object")
        .extend(api);
    doc["paths"]
        .as_object_mut()
        .expect("paths is an object")
        .extend(crate::footage::openapi_paths());
    let schemes = crate::api::openapi::security_schemes();
    doc["components"]["securitySchemes"]
        .as_object_mut()
        .expect("securitySchemes is an object")
        .extend(schemes.as_object().expect("an object").clone());
    doc["components"]["schemas"]
        .as_object_mut()
        .expect("schemas is an object")
        .extend(crate::api::openapi::schemas());
    doc
}

/// The operational endpoints and the event stream.
fn operations_openapi() -> Value {
    let text = |d: &str| json!({"description": d, "content": {"text/plain": {"schema": {"type": "string"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Doorward server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Witnessed, time-limited access to a home: the server's operational \
                endpoints, the homeowner's live event stream, and the homeowner (session), \
                carrier (API key) and driver (signed request) APIs. Errors are JSON \
                {\"error\", \"code\"}.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "paths": {
            "/healthz": {"get": {
                "operationId": "healthz",
                "summary": "Liveness: the process answers.",
                "responses": {"200": text("ok")}
            }},
            "/readyz": {"get": {
                "operationId": "readyz",
                "summary": "Readiness: the database and the MQTT broker are reachable.",
                "responses": {
                    "200": {"description": "ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
                    "503": {"description": "not ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}
                }
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition of the doorward_* series.",
                "responses": {"200": text("metrics")}
            }},
            "/api/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}
            }},
            "/api/homes/{home}/events": {"get": {
                "operationId": "homeEvents",
                "summary": "The home's live events (server-sent events).",
                "description": "Events: `heartbeat` every 500 ms (`{server_ms}`; a client that \
                    sees none for 2 s must show \"connection lost — states unknown\", I14), \
                    `alarm` (re-sent until acknowledged), `approval` (an entry waiting for \
                    the homeowner), `lagged` (the client fell behind; open alarms are re-sent). \
                    The owner's session (cookie or bearer) or the home's event token from \
                    provisioning.",
                "security": [{"sessionCookie": []}, {"sessionBearer": []}, {"homeToken": []}],
                "parameters": [{"name": "home", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}}],
                "responses": {
                    "200": {"description": "an event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "401": text("missing or wrong token, or no such home")
                }
            }}
        },
        "webhooks": {"alarm": crate::webhook::openapi_webhook()},
        "components": {
            "securitySchemes": {
                "homeToken": {"type": "http", "scheme": "bearer", "description": "The home's event token."}
            },
            "schemas": {
                "AlarmWebhook": crate::webhook::openapi_schema(),
                "UploadResult": crate::footage::openapi_schema(),
                "Readiness": {
                    "type": "object",
                    "required": ["database", "broker"],
                    "properties": {
                        "database": {"type": "object", "properties": {"ok": {"type": "boolean"}, "schema": {"type": "integer"}, "error": {"type": "string"}}},
                        "broker": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_is_3_1_and_lists_every_route() {
        let doc = openapi();
        let v = doc["openapi"].as_str().unwrap();
        assert!(v.starts_with("3.1."), "{v}");
        let paths = doc["paths"].as_object().unwrap();
        let served = route_list();
        assert!(!served.is_empty());
        for (method, path) in &served {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is served but not in the OpenAPI document"
            );
        }
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(
            documented,
            served.len(),
            "the document lists a route nobody serves"
        );
        // Every operation answers something and names itself.
        for (path, item) in paths {
            for (m, op) in item.as_object().unwrap() {
                assert!(op["responses"].is_object(), "{m} {path}");
                assert!(op["operationId"].is_string(), "{m} {path}");
            }
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
