//! The decision core against its invariants, each with a hand-played lock and camera.

mod harness;

use doorward_control::*;
use doorward_proto::guard::{self, Guard};
use doorward_proto::*;
use harness::*;

#[test]
fn normal_delivery_ends_done_without_alarms() {
    let mut w = World::new();
    w.enter_and_relock();
    assert_eq!(w.phase(), Phase::Relocked);
    w.run(250, true, false);
    assert_eq!(w.phase(), Phase::EgressWitnessed);
    // The camera returns to the idle pace; nothing happens in the zone.
    for _ in 0..2 {
        w.idle(20_000);
        w.proof();
        w.lock_report(LockEvent::Periodic);
    }
    assert_eq!(w.phase(), Phase::Done);
    assert_eq!(w.alarm_kinds(), vec![]);
    let d = w.door();
    assert_eq!(d.lock.value, Shown::Known(LockValue::Locked));
    assert_eq!(d.door.value, Shown::Known(DoorValue::Closed));
}

// ----- I4 supervised witness -----

/// Authorises and confirms the unlock; returns the grant.
fn open_entry(w: &mut World) -> GrantId {
    let cmd = w.authorise();
    let grant = cmd.context.body.grant;
    w.lock.cycle = Some(grant);
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::Unlocked(grant));
    w.run(250, true, true);
    assert_eq!(w.phase(), Phase::Entry);
    grant
}

#[test]
fn i4_witness_lost_after_500ms_of_silence_mid_entry_and_not_before() {
    let mut w = World::new();
    open_entry(&mut w);
    let last_proof = w.now;
    // The camera goes silent (de-auth); the lock keeps reporting.
    let out = w.run(375, false, true);
    assert!(alarms(&out).is_empty());
    w.now = last_proof + 499;
    assert!(alarms(&w.feed(Input::Tick)).is_empty());
    w.now = last_proof + 500;
    let out = w.feed(Input::Tick);
    assert_eq!(alarms(&out), vec![AlarmKind::WitnessLost]);
    assert!(w
        .c
        .delivery(&w.delivery)
        .unwrap()
        .alarm_kinds
        .contains(&AlarmKind::WitnessLost));
    // The entry is unwitnessed: this driver gets no further grant.
    w.run(125, true, true);
    let out = w.request_entry();
    assert_eq!(denied(&out), Some(DenyReason::DriverBlocked));
    // Not raised twice for the same entry.
    w.run(1_000, false, true);
    assert_eq!(
        w.alarm_kinds()
            .iter()
            .filter(|k| **k == AlarmKind::WitnessLost)
            .count(),
        1
    );
}

#[test]
fn i4_guard_off_witness_loss_goes_unnoticed() {
    let _off = guard::disable(Guard::WitnessSupervision);
    let mut w = World::new();
    open_entry(&mut w);
    let out = w.run(2_000, false, true);
    assert!(!alarms(&out).contains(&AlarmKind::WitnessLost));
}

#[test]
fn i4_idle_device_silent_after_90s() {
    let mut w = World::new();
    let out = w.idle(89_999);
    assert!(alarms(&out).is_empty());
    let out = w.idle(1);
    let kinds = alarms(&out);
    assert_eq!(
        kinds,
        vec![AlarmKind::DeviceSilent, AlarmKind::DeviceSilent]
    );
}

// ----- I5 truthful state -----

#[test]
fn i5_locked_only_with_bolt_thrown_and_door_closed() {
    let mut w = World::new();
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
    let ev = w.door().lock.evidence.unwrap();
    assert_eq!(ev.device, w.lock.id);
    assert_eq!(ev.seq, w.lock.seq);
    w.set_lock(Bolt::Thrown, Door::Open, LockEvent::DoorChanged);
    // The camera agrees the door is open, so only the lock rule is at work.
    w.cam.obs.door_open = true;
    w.proof();
    assert_eq!(
        w.door().lock.value,
        Shown::Known(LockValue::BoltThrownDoorOpen)
    );
    w.cam.obs.door_open = false;
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::BoltChanged);
    w.proof();
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Unlocked));
    w.set_lock(Bolt::Thrown, Door::Closed, LockEvent::BoltChanged);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

#[test]
fn i5_unlocking_until_a_report_confirms_never_the_commanded_state() {
    let mut w = World::new();
    w.authorise();
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Unlocking));
    w.run(1_000, true, false);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Unlocking));
    // No report ever confirms: past confirm_ms the lock is unknown, with the last report.
    w.run(1_125, true, false);
    match w.door().lock.value {
        Shown::Unknown { last, .. } => assert_eq!(last, Some(LockValue::Locked)),
        v => panic!("expected Unknown, got {v:?}"),
    }
}

#[test]
fn i5_unknown_past_freshness() {
    let mut w = World::new();
    w.proof();
    w.idle(65_000);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
    w.idle(1);
    match w.door().lock.value {
        Shown::Unknown { last, age_ms } => {
            assert_eq!(last, Some(LockValue::Locked));
            assert_eq!(age_ms, Some(65_001));
        }
        v => panic!("expected Unknown, got {v:?}"),
    }
    // During an entry the lock must be fresher: 1 s.
    let mut w = World::new();
    open_entry(&mut w);
    w.run(1_000, true, false);
    assert!(w.door().lock.value.known().is_some());
    w.run(125, true, false);
    assert!(w.door().lock.value.known().is_none());
}

#[test]
fn i5_guard_off_stale_lock_still_shows_locked() {
    let _off = guard::disable(Guard::TruthfulState);
    let mut w = World::new();
    w.idle(80_000);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

#[test]
fn i5_scene_mismatch_shows_unknown_and_alarms() {
    // S17: a magnet holds the door sensor "closed" while the camera sees the door open.
    let mut w = World::new();
    w.cam.obs.door_open = true;
    w.proof();
    assert!(w.door().door.value.known().is_none());
    assert!(w.door().lock.value.known().is_none());
    let out = w.run(875, true, false);
    assert!(alarms(&out).is_empty());
    let out = w.run(125, true, false);
    assert_eq!(alarms(&out), vec![AlarmKind::SceneMismatch]);
}

#[test]
fn i5_guard_off_scene_mismatch_shows_locked() {
    let _off = guard::disable(Guard::SceneCheck);
    let mut w = World::new();
    w.cam.obs.door_open = true;
    let out = w.run(3_000, true, false);
    assert!(alarms(&out).is_empty());
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

// ----- I6 confirmed actuation -----

#[test]
fn i6_unconfirmed_unlock_raises_alarm_at_confirm_ms() {
    let mut w = World::new();
    w.authorise();
    let t = w.now;
    w.run(1_875, true, false);
    w.now = t + 1_999;
    assert!(alarms(&w.feed(Input::Tick)).is_empty());
    w.now = t + 2_000;
    assert_eq!(
        alarms(&w.feed(Input::Tick)),
        vec![AlarmKind::UnconfirmedActuation]
    );
}

#[test]
fn i6_unconfirmed_relock_raises_alarm() {
    // S3: the door closes, the bolt motor runs, the bolt never arrives.
    let mut w = World::new();
    open_entry(&mut w);
    w.set_lock(Bolt::Retracted, Door::Open, LockEvent::DoorChanged);
    w.cam.obs.door_open = true;
    w.run(500, true, true);
    w.cam.obs.door_open = false;
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
    w.set_lock(Bolt::Moving, Door::Closed, LockEvent::BoltChanged);
    let out = w.run(1_875, true, true);
    assert!(alarms(&out).is_empty());
    let out = w.run(125, true, true);
    let kinds = alarms(&out);
    assert!(
        kinds.contains(&AlarmKind::UnconfirmedActuation),
        "{kinds:?}"
    );
    assert!(kinds.contains(&AlarmKind::NotRelocked), "{kinds:?}");
    assert_ne!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

#[test]
fn i6_guard_off_unconfirmed_actuation_is_not_raised() {
    let _off = guard::disable(Guard::ConfirmedActuation);
    let mut w = World::new();
    w.authorise();
    let out = w.run(3_000, true, false);
    assert!(!alarms(&out).contains(&AlarmKind::UnconfirmedActuation));
}

// ----- I12 supervised lock -----

#[test]
fn i12_lock_silent_mid_entry() {
    let mut w = World::new();
    open_entry(&mut w);
    let last = w.now;
    let out = w.run(375, true, false);
    assert!(alarms(&out).is_empty());
    w.now = last + 499;
    w.proof();
    assert!(alarms(&w.feed(Input::Tick)).is_empty());
    w.now = last + 500;
    assert_eq!(alarms(&w.feed(Input::Tick)), vec![AlarmKind::LockSilent]);
}

#[test]
fn i12_closed_door_without_thrown_report_is_not_relocked() {
    let mut w = World::new();
    open_entry(&mut w);
    w.set_lock(Bolt::Retracted, Door::Open, LockEvent::DoorChanged);
    w.cam.obs.door_open = true;
    w.run(500, true, true);
    w.cam.obs.door_open = false;
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
    let out = w.run(2_000, true, true);
    assert_eq!(alarms(&out), vec![AlarmKind::NotRelocked]);
}

#[test]
fn i12_guard_off_lock_silence_and_missing_relock_go_unnoticed() {
    let _off = guard::disable(Guard::LockSupervision);
    let mut w = World::new();
    open_entry(&mut w);
    w.set_lock(Bolt::Retracted, Door::Open, LockEvent::DoorChanged);
    w.cam.obs.door_open = true;
    w.run(500, true, true);
    w.cam.obs.door_open = false;
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
    let out = w.run(3_000, true, false);
    let kinds = alarms(&out);
    assert!(
        !kinds.contains(&AlarmKind::LockSilent) && !kinds.contains(&AlarmKind::NotRelocked),
        "{kinds:?}"
    );
}
