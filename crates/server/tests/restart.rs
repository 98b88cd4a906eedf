//! The registry survives a clean restart: homes, doors, carriers, drivers and deliveries are
//! read back from the store, so the restarted server is in the same registry state.

mod common;

use common::*;
use doorward_control::{AdminError, DeliverySetup, HomePolicy, WeeklyWindow};
use doorward_server::ServerError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_survives_a_clean_restart() {
    let ts = TestServer::start(Broker::Embedded).await;
    let home = provision(&ts.handle).await;
    let policy = HomePolicy {
        windows: vec![WeeklyWindow {
            start_min: 0,
            end_min: 10_080,
        }],
        live_approval: true,
        ..HomePolicy::default()
    };
    ts.handle
        .admin(doorward_control::Admin::SetPolicy {
            home: home.id.clone(),
            policy,
        })
        .await
        .unwrap();
    let before = ts.handle.home_state(&home.id).await.unwrap().unwrap();
    let dir = ts.stop().await;

    let ts = TestServer::start_in(Broker::Embedded, dir).await;
    let after = ts
        .handle
        .home_state(&home.id)
        .await
        .unwrap()
        .expect("the home is back after the restart");
    assert_eq!(after.doors.len(), 1);
    assert_eq!(after.doors[0].lock_id, home.lock_id);
    assert_eq!(after.doors[0].camera_id, home.cam_id);
    assert_eq!(after.epoch, before.epoch);

    // The delivery, the driver and the home are registered: doing it again is refused.
    let now = wall_ms();
    let again = ts
        .handle
        .schedule(DeliverySetup {
            delivery: home.delivery.clone(),
            home: home.id.clone(),
            lock: home.lock_id.clone(),
            carrier: home.carrier.clone(),
            driver: home.driver.public(),
            not_before_ms: now,
            not_after_ms: now + 60_000,
            max_open_ms: None,
        })
        .await;
    assert!(
        matches!(again, Err(ServerError::Admin(AdminError::Exists(_)))),
        "the scheduled delivery was forgotten: {again:?}"
    );
    let again = ts
        .handle
        .add_driver(home.driver.public(), home.carrier.clone())
        .await;
    assert!(
        matches!(again, Err(ServerError::Admin(AdminError::Exists(_)))),
        "the driver was forgotten: {again:?}"
    );
    let again = ts
        .handle
        .add_home_with_root(home.id.clone(), &home.root, 60_000, HomePolicy::default())
        .await;
    assert!(
        matches!(again, Err(ServerError::Admin(AdminError::Exists(_)))),
        "the home was forgotten: {again:?}"
    );
    // The door is routed again: the lock's messages reach the core.
    assert_eq!(ts.metric("doorward_supervised_devices ").await, 2);
    ts.stop().await;
}

/// A message the server accepted before a restart is refused as a replay after it (I5): the
/// device's sequence number and chain head are kept in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i5_a_message_accepted_before_a_restart_is_a_replay_after_it() {
    let ts = TestServer::start(Broker::Embedded).await;
    let home = provision(&ts.handle).await;
    let conn = Mqttc::connect(&ts.mqtt, &home.id, &home.lock_id).await;
    let mut sim = LockSim::booted();
    let first = sim.report(
        &home.lock_id,
        &home.lock_key,
        doorward_proto::LockEvent::Boot,
    );
    let second = sim.report(
        &home.lock_id,
        &home.lock_key,
        doorward_proto::LockEvent::Periodic,
    );
    conn.send(first.clone()).await;
    conn.send(second).await;
    let (h, hid) = (ts.handle.clone(), home.id.clone());
    eventually(
        std::time::Duration::from_secs(5),
        "the lock's reports are accepted",
        || {
            let (h, hid) = (h.clone(), hid.clone());
            async move {
                let s = h.home_state(&hid).await.unwrap().unwrap();
                s.doors[0]
                    .lock
                    .evidence
                    .as_ref()
                    .is_some_and(|e| e.seq == 2)
            }
        },
    )
    .await;
    let dir = ts.stop().await;

    let ts = TestServer::start_in(Broker::Embedded, dir).await;
    let conn = Mqttc::connect(&ts.mqtt, &home.id, &home.lock_id).await;
    conn.send(first).await;
    let t = &ts;
    eventually(
        std::time::Duration::from_secs(5),
        "the old report is dropped as a replay",
        || async move {
            t.metric("doorward_messages_dropped_total{reason=\"replay\"} ")
                .await
                >= 1
        },
    )
    .await;
    ts.stop().await;
}

/// I2 (one open cycle per delivery): a delivery the server authorised before a restart comes
/// back in its open entry (restored from the record), so it cannot be authorised a second
/// time with a new grant the lock has never spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_an_authorised_delivery_is_not_authorised_again_after_a_restart() {
    const CEILING: std::time::Duration = std::time::Duration::from_secs(5);
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (lock, _cam) = open_entry(&ts, &mut home, CEILING).await;
    let dir = ts.stop().await;

    let ts = TestServer::start_in(Broker::Embedded, dir).await;
    let again = tokio::time::timeout(
        CEILING,
        ts.handle.request_entry(entry_request(&mut home, &lock)),
    )
    .await
    .expect("a decision within the ceiling");
    assert!(
        matches!(
            again,
            doorward_control::EntryDecision::Denied {
                reason: doorward_proto::DenyReason::CycleInProgress,
                ..
            }
        ),
        "{again:?}"
    );
    ts.stop().await;
}
