//! The agents in-process against a real server and its embedded broker: pairing by setup
//! codes, then a delivery through the real lock and camera cores that opens, records and
//! relocks.

mod common;

use std::time::Duration;

use common::*;
use doorward_agent::hardware::VirtualLock;
use doorward_agent::scene::SceneDir;
use doorward_control::{EntryDecision, LockValue, Phase, Shown};
use doorward_proto::{Bolt, Door};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_agents_make_a_delivery_that_opens_records_and_relocks() {
    let ceiling = Duration::from_secs(10);
    let ts = TestServer::start(None).await;
    let home = add_home(&ts.handle).await;
    let scene = SceneDir::open(&ts.path("scene")).unwrap();
    // The lock starts unpaired: its local channel listens at once, and it waits for pairing.
    let agents = start_agents(&ts, &home, &scene, None).await;
    let (lock_st, cam_st) = (&agents.lock_st, &agents.cam_st);
    pair_door(&ts.handle, &home, &agents.cam_data, &agents.lock_data).await;

    // Paired, both serve: the lock has the server's time, the camera a session.
    eventually(ceiling, "the lock syncs its time and connects", || {
        let s = lock_st.borrow().clone();
        async move { s.is_some_and(|s| s.time_synced && s.connected) }
    })
    .await;
    let delivery = deliver_through(&ts, &home, &scene, &agents).await;
    eventually(
        ceiling,
        "the lock relocks by itself when the door closes",
        || {
            let s = lock_st.borrow().clone();
            async move {
                s.is_some_and(|s| {
                    s.bolt == Bolt::Thrown
                        && s.door == Door::Closed
                        && s.relocks == 1
                        && !s.in_cycle
                })
            }
        },
    )
    .await;
    eventually(ceiling, "the server records the relock", || {
        let (h, hid, d) = (ts.handle.clone(), home.id.clone(), delivery.clone());
        async move {
            let s = h.home_state(&hid).await.unwrap().unwrap();
            let door = &s.doors[0];
            door.lock.value == Shown::Known(LockValue::Locked)
                && door.delivery.as_ref().is_none_or(|(id, p)| {
                    id == &d && matches!(p, Phase::Relocked | Phase::EgressWitnessed | Phase::Done)
                })
        }
    })
    .await;
    let state = ts.handle.home_state(&home.id).await.unwrap().unwrap();
    assert!(
        state.open_alarms.is_empty(),
        "a normal delivery raises no alarm: {state:?}"
    );
    // Every state-change report was acknowledged by the server.
    eventually(ceiling, "the lock's outbox drains", || {
        let s = lock_st.borrow().clone();
        async move { s.is_some_and(|s| s.outbox == 0) }
    })
    .await;
    assert!(
        cam_st.borrow().as_ref().unwrap().checkpoints_to_lock > 0,
        "the lock heard its camera over the local link"
    );

    agents.stop().await;
    ts.stop().await;
}

/// I3 with the real agent: the server stops mid-entry, and the lock still relocks by itself
/// when the door closes (its core ticked from the agent's clock); when the lock agent then
/// restarts from its data directory it needs no pairing and boots locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_relocks_with_no_server_and_restarts_from_its_data() {
    let ceiling = Duration::from_secs(10);
    let ts = TestServer::start(None).await;
    let home = add_home(&ts.handle).await;
    let scene = SceneDir::open(&ts.path("scene")).unwrap();
    let agents = start_agents(&ts, &home, &scene, None).await;
    let (lock_st, cam_st, local) = (agents.lock_st.clone(), agents.cam_st.clone(), agents.local);
    let (lock_cfg, lock_data) = (lock_config(&ts, &home), agents.lock_data.clone());
    pair_door(&ts.handle, &home, &agents.cam_data, &agents.lock_data).await;
    eventually(ceiling, "the lock syncs its time", || {
        let s = lock_st.borrow().clone();
        async move { s.is_some_and(|s| s.time_synced) }
    })
    .await;
    let delivery = schedule(&ts.handle, &home).await;
    arrive(&scene);
    eventually(ceiling, "the camera proves at the entry pace", || {
        let s = cam_st.borrow().clone();
        async move { s.is_some_and(|s| s.entry && s.session) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let req = entry_request(&home, &delivery, local).await;
    let d = ts.handle.request_entry(req).await;
    assert!(matches!(d, EntryDecision::Authorised { .. }), "{d:?}");
    scene.push_door(true).unwrap();
    eventually(ceiling, "the door opens", || {
        let s = lock_st.borrow().clone();
        async move { s.is_some_and(|s| s.door == Door::Open) }
    })
    .await;

    // No server from here on (and no broker: it ran inside the server).
    let TestServer { server, dir, .. } = ts;
    server.unwrap().shutdown().await.unwrap();
    scene.push_door(false).unwrap();
    eventually(ceiling, "the lock relocks by itself", || {
        let s = lock_st.borrow().clone();
        async move {
            s.is_some_and(|s| s.bolt == Bolt::Thrown && s.door == Door::Closed && !s.in_cycle)
        }
    })
    .await;
    agents.stop().await;

    // The lock agent starts again from its data directory: paired, bolt thrown, no code.
    let (stop_tx, stop) = watch::channel(false);
    let (lock_st_tx, lock_st) = watch::channel(None);
    let lock_task = tokio::spawn(doorward_agent::lock_agent::run(
        lock_cfg,
        Box::new(VirtualLock::new(Some(scene.clone()), 100)),
        stop,
        lock_st_tx,
        say("lock again"),
    ));
    eventually(ceiling, "the lock boots from its pairing", || {
        let s = lock_st.borrow().clone();
        async move { s.is_some_and(|s| s.paired && s.bolt == Bolt::Thrown) }
    })
    .await;
    assert!(!lock_data.join("setup-code").exists(), "no new pairing");
    stop_tx.send(true).unwrap();
    lock_task.await.unwrap().unwrap();
    drop(dir);
}
