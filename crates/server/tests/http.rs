//! The HTTP surface of a real server: health, readiness, the OpenAPI document, metrics, the
//! event stream's token and heartbeats; keys and the audit chain across a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use doorward_proto::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_readiness_openapi_and_metrics_answer() {
    let ts = TestServer::start(Broker::Embedded).await;
    let (code, body) = http_get(ts.http, "/healthz", None).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = http_get(ts.http, "/readyz", None).await;
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["database"]["ok"], true);
    assert_eq!(ready["broker"]["ok"], true);

    let (code, body) = http_get(ts.http, "/api/openapi.json", None).await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    for (method, path) in doorward_server::http::route_list() {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }

    let (code, body) = http_get(ts.http, "/metrics", None).await;
    assert_eq!(code, 200);
    for family in [
        "doorward_supervised_devices",
        "doorward_alarms_total",
        "doorward_messages_dropped_total",
        "doorward_unlock_decisions_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    assert_eq!(http_get(ts.http, "/nope", None).await.0, 404);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i14_event_stream_needs_the_home_token_and_beats_every_500_ms() {
    let ts = TestServer::start(Broker::Embedded).await;
    let home = provision(&ts.handle).await;
    let other = provision(&ts.handle).await;
    let path = format!("/api/homes/{}/events", home.id);
    assert_eq!(http_get(ts.http, &path, None).await.0, 401);
    assert_eq!(http_get(ts.http, &path, Some("00")).await.0, 401);
    assert_eq!(
        http_get(ts.http, &path, Some(&other.token)).await.0,
        401,
        "another home's token opens nothing here (I11)"
    );
    assert_eq!(
        http_get(ts.http, "/api/homes/nohome/events", Some(&home.token))
            .await
            .0,
        401
    );
    let mut sse = Sse::open(ts.http, &home.id, &home.token).await;
    assert_eq!(sse.status, 200);
    let t0 = Instant::now();
    let mut beats = 0;
    while beats < 4 {
        let (name, data) = tokio::time::timeout(Duration::from_secs(2), sse.next())
            .await
            .expect("a heartbeat at least every 2 s")
            .expect("the stream stays open");
        if name == "heartbeat" {
            assert!(data["server_ms"].as_u64().unwrap() > 0);
            beats += 1;
        }
    }
    let took = t0.elapsed();
    // The first beat is immediate, then one per 500 ms.
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_millis(5_000),
        "4 heartbeats took {took:?}"
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_and_the_audit_chain_survive_a_restart() {
    let ts = TestServer::start(Broker::Embedded).await;
    let key = ts.server.as_ref().unwrap().server_key();
    assert!(ts.server.as_ref().unwrap().server_key_created());
    let home = provision(&ts.handle).await;
    let store = ts.handle.store();
    let dir = ts.stop().await;
    let head = store.audit_head(&home.id).unwrap();
    assert!(
        head.next_index >= 4,
        "home, door, opt-in, delivery on record: {head:?}"
    );
    assert!(
        head.last_checkpoint
            .as_ref()
            .is_some_and(|c| c.body.count == head.next_index),
        "shutdown signs a checkpoint of the whole chain"
    );
    drop(store);

    let ts = TestServer::start_in(Broker::Embedded, dir).await;
    assert_eq!(ts.server.as_ref().unwrap().server_key(), key);
    assert!(!ts.server.as_ref().unwrap().server_key_created());
    let server_chain = Id::new(doorward_server::runtime::SERVER_CHAIN).unwrap();
    let store = ts.handle.store();
    let h2 = ts.handle.clone();
    let _ = h2;
    eventually(
        Duration::from_secs(5),
        "the second start is on record",
        || {
            let store = store.clone();
            let c = server_chain.clone();
            async move { store.audit_head(&c).unwrap().next_index >= 2 }
        },
    )
    .await;
    // The whole record verifies offline.
    let mut out = Vec::new();
    store.export_audit(&home.id, key, &mut out).expect("export");
    let report = doorward_control::audit::verify_export(&out[..], Some(&key))
        .expect("the exported record verifies");
    let _ = report;
    ts.stop().await;
}
