//! End to end: the real server (SQLite in a temp dir) with a real broker — the embedded one,
//! and Mosquitto on 127.0.0.1:1883 — and devices speaking docs/PROTOCOL.md over real MQTT
//! clients. Every scenario runs against both brokers.

mod common;

use std::time::Duration;

use common::*;
use doorward_proto::*;

/// Generous ceiling for cause and effect (the latency figures come from benchmarks).
const CEILING: Duration = Duration::from_secs(5);

async fn camera_proofs_reach_the_server(broker: Broker) {
    let ts = TestServer::start(broker).await;
    let home = provision(&ts.handle).await;
    let cam = CameraDev::start(&ts.mqtt, &home, false).await;
    let h = ts.handle.clone();
    let hid = home.id.clone();
    eventually(
        CEILING,
        "the camera's proof is the evidence of its state",
        || {
            let (h, hid) = (h.clone(), hid.clone());
            async move {
                let s = h.home_state(&hid).await.unwrap().unwrap();
                s.doors[0].camera.evidence.is_some()
            }
        },
    )
    .await;
    assert!(cam.proofs_sent() >= 1);
    let s = ts.handle.home_state(&home.id).await.unwrap().unwrap();
    let ev = s.doors[0].camera.evidence.clone().unwrap();
    assert_eq!(ev.device, home.cam_id);
    assert!(ts.metric("doorward_messages_received_total").await >= 1);
    assert_eq!(ts.metric("doorward_supervised_devices").await, 2);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn camera_proofs_reach_the_server_embedded() {
    camera_proofs_reach_the_server(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn camera_proofs_reach_the_server_mosquitto() {
    if mosquitto_or_skip("camera_proofs_reach_the_server_mosquitto") {
        camera_proofs_reach_the_server(Broker::Mosquitto).await;
    }
}

/// S1/S11 through the real stack: an entry is authorised with the camera's attestation and
/// receipt, the lock reports the bolt retracted, then the camera just stops publishing (no
/// disconnect): the homeowner's stream shows WitnessLost (I4).
async fn i4_silent_camera_mid_entry_raises_witness_lost_on_sse(broker: Broker) {
    let ts = TestServer::start(broker).await;
    let mut home = provision(&ts.handle).await;
    let mut sse = Sse::open(ts.http, &home.id, &home.token).await;
    assert_eq!(sse.status, 200);
    let (name, _) = sse.next().await.unwrap();
    assert_eq!(
        name, "heartbeat",
        "the stream starts with a heartbeat (I14)"
    );
    let (_lock, cam) = open_entry(&ts, &mut home, CEILING).await;

    // The de-auth: packets stop, the connection stays.
    cam.silent.store(true, std::sync::atomic::Ordering::Relaxed);
    let alarm = sse
        .alarm("witness_lost", CEILING)
        .await
        .unwrap_or_else(|seen| panic!("no witness_lost within {CEILING:?}; saw {seen:?}"));
    assert_eq!(alarm["device"], home.cam_id.as_str());
    assert_eq!(alarm["home"], home.id.as_str());
    assert!(
        ts.metric("doorward_alarms_total{kind=\"witness_lost\"}")
            .await
            >= 1
    );
    assert_eq!(
        ts.metric("doorward_unlock_decisions_total{outcome=\"authorised\",reason=\"\"}")
            .await,
        1
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i4_silent_camera_mid_entry_raises_witness_lost_on_sse_embedded() {
    i4_silent_camera_mid_entry_raises_witness_lost_on_sse(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i4_silent_camera_mid_entry_raises_witness_lost_on_sse_mosquitto() {
    if mosquitto_or_skip("i4_silent_camera_mid_entry_raises_witness_lost_on_sse_mosquitto") {
        i4_silent_camera_mid_entry_raises_witness_lost_on_sse(Broker::Mosquitto).await;
    }
}

/// S8: a lock report signed by another key, injected at the broker, is rejected and alarmed
/// (I10); the state does not move.
async fn i10_forged_report_is_rejected_and_alarmed(broker: Broker) {
    let ts = TestServer::start(broker).await;
    let mut home = provision(&ts.handle).await;
    let mut sse = Sse::open(ts.http, &home.id, &home.token).await;
    let forger = Mqttc::connect(&ts.mqtt, &home.id, &home.lock_id).await;
    let wrong = KeyPair::generate(&mut home.rng);
    let mut sim = LockSim::booted();
    forger
        .send(sim.report(&home.lock_id, &wrong, LockEvent::Boot))
        .await;
    let alarm = sse
        .alarm("forged_report", CEILING)
        .await
        .unwrap_or_else(|seen| panic!("no forged_report alarm; saw {seen:?}"));
    assert_eq!(alarm["home"], home.id.as_str());
    assert!(
        ts.metric("doorward_messages_dropped_total{reason=\"bad_signature\"}")
            .await
            >= 1
    );
    let s = ts.handle.home_state(&home.id).await.unwrap().unwrap();
    assert!(
        s.doors[0].lock.evidence.is_none(),
        "a forged report is no evidence"
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i10_forged_report_is_rejected_and_alarmed_embedded() {
    i10_forged_report_is_rejected_and_alarmed(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i10_forged_report_is_rejected_and_alarmed_mosquitto() {
    if mosquitto_or_skip("i10_forged_report_is_rejected_and_alarmed_mosquitto") {
        i10_forged_report_is_rejected_and_alarmed(Broker::Mosquitto).await;
    }
}

/// An oversized and a malformed message are dropped and counted, and the server goes on:
/// the device's next genuine message is accepted.
async fn oversized_and_malformed_messages_are_dropped_and_counted(broker: Broker) {
    let ts = TestServer::start(broker).await;
    let home = provision(&ts.handle).await;
    let conn = Mqttc::connect(&ts.mqtt, &home.id, &home.lock_id).await;
    conn.send(vec![0xa5; MAX_ENVELOPE_BYTES + 1]).await;
    conn.send(b"not an envelope".to_vec()).await;
    let http = ts.http;
    eventually(CEILING, "both drops counted", || async move {
        let (_, m) = http_get(http, "/metrics", None).await;
        m.contains("doorward_messages_dropped_total{reason=\"oversized\"} 1")
            && m.contains("doorward_messages_dropped_total{reason=\"malformed\"} 1")
    })
    .await;
    assert_eq!(http_get(ts.http, "/healthz", None).await.0, 200);
    let mut sim = LockSim::booted();
    conn.send(sim.report(&home.lock_id, &home.lock_key, LockEvent::Boot))
        .await;
    let (h, hid) = (ts.handle.clone(), home.id.clone());
    eventually(
        CEILING,
        "a genuine report after the garbage is accepted",
        || {
            let (h, hid) = (h.clone(), hid.clone());
            async move {
                let s = h.home_state(&hid).await.unwrap().unwrap();
                s.doors[0].lock.evidence.is_some()
            }
        },
    )
    .await;
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_malformed_messages_are_dropped_and_counted_embedded() {
    oversized_and_malformed_messages_are_dropped_and_counted(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_malformed_messages_are_dropped_and_counted_mosquitto() {
    if mosquitto_or_skip("oversized_and_malformed_messages_are_dropped_and_counted_mosquitto") {
        oversized_and_malformed_messages_are_dropped_and_counted(Broker::Mosquitto).await;
    }
}

/// A lock whose acknowledgement was lost sends its newest report again: the server drops the
/// copy without an alarm and acknowledges it again, so that the lock stops re-sending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_report_received_twice_is_acknowledged_again_without_an_alarm() {
    let ts = TestServer::start(Broker::Embedded).await;
    let home = provision(&ts.handle).await;
    let mut lock = Mqttc::connect(&ts.mqtt, &home.id, &home.lock_id).await;
    let mut sim = LockSim::booted();
    let boot = sim.report(&home.lock_id, &home.lock_key, LockEvent::Boot);
    for copy in ["the report", "its copy"] {
        lock.send(boot.clone()).await;
        let ack = loop {
            let bytes = tokio::time::timeout(CEILING, lock.down.recv())
                .await
                .unwrap_or_else(|_| panic!("no acknowledgement of {copy} within {CEILING:?}"))
                .expect("the down topic is open");
            let env = Envelope::decode(&bytes).expect("the server's message decodes");
            if let Body::Ack(a) = env.body {
                break a;
            }
        };
        assert_eq!((ack.device.as_str(), ack.seq), (home.lock_id.as_str(), 1));
    }
    let s = ts.handle.home_state(&home.id).await.unwrap().unwrap();
    assert!(s.open_alarms.is_empty(), "{:?}", s.open_alarms);
    assert!(s.doors[0].lock.evidence.is_some(), "the report is evidence");
    ts.stop().await;
}
