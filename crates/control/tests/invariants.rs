//! The decision core against its invariants, each with a hand-played lock and camera.

mod harness;

use doorward_control::*;
use doorward_proto::guard::{self, Guard};
use doorward_proto::session;
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

/// The broker redelivers (or replays) the camera's last proof after the camera went silent:
/// an identical message proves nothing new, so the witness deadline stays where the original
/// put it.
#[test]
fn i4_replayed_last_proof_does_not_delay_witness_lost() {
    let mut w = World::new();
    open_entry(&mut w);
    let body = w.proof_body();
    let last = w.proof_envelope(body);
    let cam_id = w.cam.id.clone();
    assert!(rejected(&w.device(&cam_id, &last)).is_empty());
    let last_proof = w.now;
    // The camera falls silent; the broker plays its last proof again and again.
    for at in [100, 250, 400, 499] {
        w.now = last_proof + at;
        let out = w.device(&cam_id, &last);
        assert_eq!(rejected(&out), vec![RejectReason::Duplicate]);
        assert!(alarms(&out).is_empty());
        w.lock_report(LockEvent::Periodic);
    }
    w.now = last_proof + 500;
    assert_eq!(alarms(&w.feed(Input::Tick)), vec![AlarmKind::WitnessLost]);
}

#[test]
fn i4_guard_off_replayed_last_proof_keeps_a_dead_witness_alive() {
    let _off = guard::disable(Guard::StreamSequence);
    let mut w = World::new();
    open_entry(&mut w);
    let body = w.proof_body();
    let last = w.proof_envelope(body);
    let cam_id = w.cam.id.clone();
    w.device(&cam_id, &last);
    let last_proof = w.now;
    let mut seen = Vec::new();
    for at in (100..=2_000).step_by(100) {
        w.now = last_proof + at;
        seen.extend(alarms(&w.device(&cam_id, &last)));
        w.lock_report(LockEvent::Periodic);
        seen.extend(alarms(&w.feed(Input::Tick)));
    }
    assert!(!seen.contains(&AlarmKind::WitnessLost), "{seen:?}");
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

/// Mid-entry the door's state rests on the lock and on the camera watching the door: with the
/// witness silent past its gap, the lock's own fresh reports are not enough (the app must not
/// keep showing the door as the lock says while nobody sees it).
#[test]
fn i5_unwitnessed_entry_shows_lock_and_door_unknown_until_the_witness_is_back() {
    let mut w = World::new();
    open_entry(&mut w);
    // The camera falls silent; the lock keeps reporting every 125 ms.
    w.run(375, false, true);
    assert!(w.door().lock.value.known().is_some());
    assert!(w.door().door.value.known().is_some());
    w.run(250, false, true);
    let d = w.door();
    match d.lock.value {
        Shown::Unknown { last, age_ms } => {
            assert!(last.is_some(), "the last reported value is kept");
            assert!(
                age_ms.is_some_and(|a| a <= 125),
                "the lock's report is fresh: {age_ms:?}"
            );
        }
        v => panic!("expected Unknown while unwitnessed, got {v:?}"),
    }
    assert!(d.door.value.known().is_none(), "{:?}", d.door.value);
    assert!(d.camera.value.known().is_none());
    // The witness comes back: the lock's reports are proved again.
    w.run(250, true, true);
    assert!(w.door().lock.value.known().is_some());
    assert!(w.door().door.value.known().is_some());
}

#[test]
fn i5_guard_off_unwitnessed_entry_keeps_showing_the_locks_word() {
    let _off = guard::disable(Guard::TruthfulState);
    let mut w = World::new();
    open_entry(&mut w);
    w.run(1_000, false, true);
    assert!(w.door().lock.value.known().is_some());
    assert!(w.door().door.value.known().is_some());
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

// ----- I9 the customer decides -----

fn policy_world(policy: HomePolicy, kind: DoorKind) -> World {
    World::with(Config::default(), policy, kind)
}

#[test]
fn i9_carrier_not_opted_in_is_denied() {
    let mut w = World::new();
    w.admin(Admin::AddDriver {
        driver: w.root.public(),
        carrier: id("other"),
    });
    let d2 = id("d-2");
    w.admin(Admin::Schedule(DeliverySetup {
        delivery: d2.clone(),
        home: w.home.clone(),
        lock: w.lock.id.clone(),
        carrier: id("other"),
        driver: w.root.public(),
        not_before_ms: T0,
        not_after_ms: T0 + 3_600_000,
        max_open_ms: None,
    }));
    let k = w.root.clone();
    let out = w.request_entry_as(&k, d2);
    assert_eq!(denied(&out), Some(DenyReason::CarrierNotOptedIn));
}

#[test]
fn i9_outside_allowed_window_is_denied() {
    // T0 is Tuesday 22:13 UTC; allow only Monday.
    let monday = WeeklyWindow {
        start_min: 0,
        end_min: 24 * 60,
    };
    let mut w = policy_world(
        HomePolicy {
            windows: vec![monday],
            ..HomePolicy::default()
        },
        DoorKind::Front,
    );
    assert_eq!(
        denied(&w.request_entry()),
        Some(DenyReason::OutsideAllowedWindow)
    );
    let tuesday_evening = WeeklyWindow {
        start_min: 24 * 60 + 22 * 60,
        end_min: 2 * 24 * 60,
    };
    let mut w = policy_world(
        HomePolicy {
            windows: vec![tuesday_evening],
            ..HomePolicy::default()
        },
        DoorKind::Front,
    );
    assert!(command(&{
        w.request_entry();
        w.proof();
        w.attest()
    })
    .is_some());
}

#[test]
fn i9_garage_only_denies_the_front_door() {
    let garage_only = HomePolicy {
        garage_only: true,
        ..HomePolicy::default()
    };
    let mut w = policy_world(garage_only.clone(), DoorKind::Front);
    assert_eq!(denied(&w.request_entry()), Some(DenyReason::GarageOnly));
    let mut w = policy_world(garage_only, DoorKind::Garage);
    w.authorise();
}

#[test]
fn i9_vacation_mode_blocks_all() {
    let mut w = policy_world(
        HomePolicy {
            vacation: true,
            ..HomePolicy::default()
        },
        DoorKind::Front,
    );
    assert_eq!(denied(&w.request_entry()), Some(DenyReason::VacationMode));
}

#[test]
fn i9_guard_off_vacation_mode_lets_the_driver_in() {
    let _off = guard::disable(Guard::Policy);
    let mut w = policy_world(
        HomePolicy {
            vacation: true,
            ..HomePolicy::default()
        },
        DoorKind::Front,
    );
    w.authorise();
}

fn approval_world() -> World {
    policy_world(
        HomePolicy {
            live_approval: true,
            ..HomePolicy::default()
        },
        DoorKind::Front,
    )
}

fn approval_request(out: &[Output]) -> ApprovalRequest {
    out.iter()
        .find_map(|o| match o {
            Output::ApprovalRequest(a) => Some(a.clone()),
            _ => None,
        })
        .expect("an approval request")
}

#[test]
fn i9_live_approval_waits_for_the_homeowner() {
    let mut w = approval_world();
    let out = w.request_entry();
    let a = approval_request(&out);
    assert!(
        sent(&out).is_empty(),
        "nothing goes to the camera before approval"
    );
    let out = w.feed(Input::Approve { request: a.request });
    assert!(sent(&out)
        .iter()
        .any(|(_, b)| matches!(b, Body::WitnessRequest(_))));
    w.proof();
    assert!(command(&w.attest()).is_some());
}

#[test]
fn i9_live_approval_denied_or_timed_out() {
    let mut w = approval_world();
    let a = approval_request(&w.request_entry());
    assert_eq!(
        denied(&w.feed(Input::Deny { request: a.request })),
        Some(DenyReason::ApprovalDenied)
    );
    // The lock is free again; this time nobody answers.
    let a = approval_request(&w.request_entry());
    w.now = a.deadline_ms - 1;
    assert_eq!(denied(&w.feed(Input::Tick)), None);
    w.now = a.deadline_ms;
    assert_eq!(
        denied(&w.feed(Input::Tick)),
        Some(DenyReason::ApprovalTimedOut)
    );
}

#[test]
fn i9_blocked_driver_is_denied() {
    let mut w = World::new();
    w.admin(Admin::SetDriverBlocked {
        driver: w.driver.public(),
        blocked: true,
    });
    assert_eq!(denied(&w.request_entry()), Some(DenyReason::DriverBlocked));
}

#[test]
fn i9_delivery_assigned_to_another_driver_is_denied() {
    let mut w = World::new();
    let other = KeyPair::from_seed(&[9; 32]);
    w.admin(Admin::AddDriver {
        driver: other.public(),
        carrier: w.carrier.clone(),
    });
    let d = w.delivery.clone();
    assert_eq!(
        denied(&w.request_entry_as(&other, d)),
        Some(DenyReason::WrongDriver)
    );
    // An unregistered key, a forged driver signature and an unknown delivery are refused too.
    let stranger = KeyPair::from_seed(&[10; 32]);
    let d = w.delivery.clone();
    assert_eq!(
        denied(&w.request_entry_as(&stranger, d)),
        Some(DenyReason::UnknownKey)
    );
    let driver = w.driver.clone();
    assert_eq!(
        denied(&w.request_entry_as(&driver, id("nope"))),
        Some(DenyReason::DeliveryUnknown)
    );
    let nonce = w.last_nonce.clone().unwrap();
    let out = w.feed(Input::EntryRequest(EntryRequest {
        delivery: w.delivery.clone(),
        driver: w.driver.public(),
        nonce,
        driver_sig: other.sign(DRIVER_NONCE_CONTEXT, b"x"),
    }));
    assert_eq!(denied(&out), Some(DenyReason::BadSignature));
}

#[test]
fn i9_one_entry_in_progress_per_lock() {
    let mut w = World::new();
    open_entry(&mut w);
    let d2 = id("d-2");
    w.admin(Admin::Schedule(DeliverySetup {
        delivery: d2.clone(),
        home: w.home.clone(),
        lock: w.lock.id.clone(),
        carrier: w.carrier.clone(),
        driver: w.driver.public(),
        not_before_ms: T0,
        not_after_ms: T0 + 3_600_000,
        max_open_ms: None,
    }));
    let driver = w.driver.clone();
    assert_eq!(
        denied(&w.request_entry_as(&driver, d2)),
        Some(DenyReason::CycleInProgress)
    );
}

// ----- S16 revocation -----

#[test]
fn s16_revocation_bumps_the_epoch_and_sends_a_signed_revocation() {
    let mut w = World::new();
    let out = w.admin(Admin::Revoke {
        home: w.home.clone(),
        item: Revoked::Driver(w.driver.public()),
    });
    assert_eq!(w.c.epoch(&w.home), Some(1));
    let env = out
        .iter()
        .find_map(|o| match o {
            Output::Send { device, envelope } if *device == w.lock.id => Some(envelope.clone()),
            _ => None,
        })
        .expect("a revocation for the lock");
    env.verify_sig(&w.server_pub).unwrap();
    match &env.body {
        Body::Revocation(r) => {
            assert_eq!(r.epoch, 1);
            assert_eq!(r.items, vec![Revoked::Driver(w.driver.public())]);
        }
        b => panic!("{b:?}"),
    }
    // The lock has not applied it yet: its nonce carries epoch 0. Denied, and the lock is
    // sent what it missed.
    let out = w.request_entry();
    assert_eq!(denied(&out), Some(DenyReason::Revoked));
    // The revoked driver stays out once the lock is current too.
    w.lock.epoch = 1;
    assert_eq!(denied(&w.request_entry()), Some(DenyReason::Revoked));
}

#[test]
fn s16_a_lock_behind_the_epoch_is_denied_and_brought_up_to_date() {
    let mut w = World::new();
    w.admin(Admin::Revoke {
        home: w.home.clone(),
        item: Revoked::Carrier(id("someone-else")),
    });
    let out = w.request_entry();
    assert_eq!(denied(&out), Some(DenyReason::StaleEpoch));
    assert!(sent(&out)
        .iter()
        .any(|(d, b)| *d == w.lock.id && matches!(b, Body::Revocation(r) if r.epoch == 1)));
    w.lock.epoch = 1;
    w.authorise();
}

// ----- S22 / I1 fresh receipt -----

#[test]
fn s22_no_fresh_receipt_is_denied() {
    // The camera's uplink is cut: its attestation reaches the server (say over the lock),
    // but no proof has arrived for a while.
    let mut w = World::new();
    w.idle(10_000);
    w.request_entry();
    let out = w.attest();
    assert!(command(&out).is_none());
    w.now += 1_999;
    assert_eq!(denied(&w.feed(Input::Tick)), None);
    w.now += 1;
    assert_eq!(
        denied(&w.feed(Input::Tick)),
        Some(DenyReason::WitnessUnavailable)
    );
}

#[test]
fn s22_guard_off_a_stale_receipt_is_issued() {
    let _off = guard::disable(Guard::WitnessReceipt);
    let mut w = World::new();
    w.idle(10_000);
    w.request_entry();
    let cmd = command(&w.attest()).expect("issued on a stale receipt");
    assert!(cmd.context.body.server_ms - cmd.context.body.receipt.received_ms >= 10_000);
}

#[test]
fn i1_the_command_binds_nonce_driver_epoch_and_receipt() {
    let mut w = World::new();
    let cmd = w.authorise();
    let nonce = w.last_nonce.clone().unwrap();
    let ctx = cmd.context.verify(&w.server_pub).unwrap();
    assert_eq!(ctx.nonce, nonce.body.nonce);
    assert_eq!(ctx.lock, w.lock.id);
    assert_eq!(ctx.driver, w.driver.public());
    assert_eq!(ctx.epoch, 0);
    assert_eq!(ctx.server_ms, w.now);
    assert_eq!(ctx.receipt.camera, w.cam.id);
    assert_eq!(ctx.receipt.seq, w.cam.seq);
    assert_eq!(ctx.receipt.head, w.cam.head);
    cmd.witness.verify(&w.cam.key.public()).unwrap();
    let issuer = grant::verify_cert(&cmd.issuer, &w.root.public(), &w.home, w.now).unwrap();
    let g = grant::verify(
        &cmd.grant,
        &issuer.issuer,
        &w.lock.id,
        &w.driver.public(),
        w.now,
    )
    .unwrap();
    assert_eq!(g.id, ctx.grant);
    assert_eq!(g.purpose, grant::Purpose::Delivery(w.delivery.clone()));
}

// ----- I10 untrusted transport -----

#[test]
fn i10_forged_lock_report_is_dropped_recorded_and_alarmed() {
    let mut w = World::new();
    let before = w.door();
    // S8: a report saying "unlocked… no, locked" signed by a key that is not the lock's.
    let mut body = w.report_body(LockEvent::BoltChanged);
    body.bolt = Bolt::Retracted;
    let forger = KeyPair::from_seed(&[7; 32]);
    let env = Envelope::signed(Body::LockReport(body), &forger);
    let lock_id = w.lock.id.clone();
    let out = w.device(&lock_id, &env);
    assert_eq!(alarms(&out), vec![AlarmKind::ForgedReport]);
    assert_eq!(rejected(&out), vec![RejectReason::BadSignature]);
    assert_eq!(w.door().lock, before.lock);
    // A MAC from a device that holds no session.
    w.idle(1);
    let body = w.proof_body();
    let body_l = w.report_body(LockEvent::Periodic);
    let key = w.cam.session.clone().unwrap();
    let env = Envelope::maced(Body::LockReport(body_l), &key);
    let out = w.device(&lock_id, &env);
    assert_eq!(rejected(&out), vec![RejectReason::BadMac]);
    // What must be signed may not travel under the session MAC.
    let att = Signed::sign(
        WitnessAttestation {
            camera: w.cam.id.clone(),
            lock: w.lock.id.clone(),
            nonce: Nonce([0; 32]),
            seq: 0,
            head: Digest::ZERO,
            recording: true,
        },
        &w.cam.key,
    );
    let cam_id = w.cam.id.clone();
    let out = w.device(
        &cam_id,
        &Envelope::maced(Body::WitnessAttestation(att), &key),
    );
    assert_eq!(rejected(&out), vec![RejectReason::SignatureRequired]);
    // A camera proof with a bad MAC.
    let bad = doorward_proto::session::SessionKey::from_parts(key.id(), [1; 32]);
    let env = Envelope::maced(Body::CameraProof(body), &bad);
    let out = w.device(&cam_id, &env);
    assert_eq!(rejected(&out), vec![RejectReason::BadMac]);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

#[test]
fn i10_unknown_device_and_wrong_topic_are_dropped() {
    let mut w = World::new();
    let stranger = KeyPair::from_seed(&[8; 32]);
    let env = Envelope::signed(
        Body::LockReport(LockReport {
            lock: id("lock-x"),
            seq: 1,
            mono_ms: 1,
            bolt: Bolt::Retracted,
            door: Door::Open,
            battery_pct: 50,
            epoch: 0,
            event: LockEvent::BoltChanged,
            cycle: None,
        }),
        &stranger,
    );
    let out = w.device(&id("lock-x"), &env);
    assert_eq!(rejected(&out), vec![RejectReason::UnknownDevice]);
    assert!(alarms(&out).is_empty(), "no home to tell");
    // A real lock's report published on a foreign topic claims to be ours: that home is told.
    let body = w.report_body(LockEvent::Periodic);
    let env = Envelope::signed(Body::LockReport(body), &w.lock.key);
    let out = w.device(&id("lock-x"), &env);
    assert_eq!(alarms(&out), vec![AlarmKind::ForgedReport]);
    // The camera's topic carrying the lock's report.
    let body = w.report_body(LockEvent::Periodic);
    let env = Envelope::signed(Body::LockReport(body), &w.lock.key);
    let cam_id = w.cam.id.clone();
    let out = w.device(&cam_id, &env);
    assert_eq!(rejected(&out), vec![RejectReason::WrongSource]);
    // Garbage.
    let out = w.feed(Input::Device {
        from: w.lock.id.clone(),
        bytes: vec![0xff, 0x00],
    });
    assert_eq!(rejected(&out), vec![RejectReason::Malformed]);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

// ----- I7 tamper-evident streams -----

#[test]
fn i7_replayed_lock_report_is_dropped_and_alarmed() {
    let mut w = World::new();
    // Captured: the lock's signed "bolt retracted" report.
    w.lock.bolt = Bolt::Retracted;
    let old = w.report_body(LockEvent::BoltChanged);
    let old_env = Envelope::signed(Body::LockReport(old), &w.lock.key);
    let lock_id = w.lock.id.clone();
    w.device(&lock_id, &old_env);
    w.set_lock(Bolt::Thrown, Door::Closed, LockEvent::BoltChanged);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
    // Replayed later.
    let out = w.device(&lock_id, &old_env);
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    assert_eq!(rejected(&out), vec![RejectReason::Replay]);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
}

#[test]
fn i7_duplicate_fork_gap_and_loss() {
    let mut w = World::new();
    let lock_id = w.lock.id.clone();
    let body = w.report_body(LockEvent::Periodic);
    let env = Envelope::signed(Body::LockReport(body.clone()), &w.lock.key);
    w.device(&lock_id, &env);
    let out = w.device(&lock_id, &env);
    assert_eq!(rejected(&out), vec![RejectReason::Duplicate]);
    assert!(alarms(&out).is_empty());
    // Fork: another message under the same sequence number.
    let mut fork = body;
    fork.battery_pct = 89;
    let out = w.device(
        &lock_id,
        &Envelope::signed(Body::LockReport(fork), &w.lock.key),
    );
    assert_eq!(rejected(&out), vec![RejectReason::Fork]);
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    // Loss within max_seq_gap: recorded, accepted, no alarm.
    w.lock.seq += 8;
    let out = w.lock_report(LockEvent::Periodic);
    assert!(rejected(&out).is_empty());
    assert!(audits(&out)
        .iter()
        .any(|a| matches!(a.what, AuditKind::StreamLoss { missing: 8, .. })));
    // A jump past it is tampering (acknowledge the open alarm first so it is raised anew).
    let id = w.c.open_alarms().next().unwrap().alarm.id;
    w.feed(Input::AckAlarm { id });
    w.lock.seq += 9;
    w.lock.bolt = Bolt::Retracted;
    let out = w.lock_report(LockEvent::BoltChanged);
    assert_eq!(rejected(&out), vec![RejectReason::Gap]);
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Locked));
    // The stream goes on from there.
    let out = w.lock_report(LockEvent::BoltChanged);
    assert!(rejected(&out).is_empty());
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Unlocked));
}

#[test]
fn i7_guard_off_replay_rewrites_the_state() {
    let _off = guard::disable(Guard::StreamSequence);
    let mut w = World::new();
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::BoltChanged);
    let old = w.report_body(LockEvent::Periodic);
    let old_env = Envelope::signed(Body::LockReport(old), &w.lock.key);
    let lock_id = w.lock.id.clone();
    w.device(&lock_id, &old_env);
    w.set_lock(Bolt::Thrown, Door::Closed, LockEvent::BoltChanged);
    let out = w.device(&lock_id, &old_env);
    assert!(alarms(&out).is_empty());
    assert_eq!(w.door().lock.value, Shown::Known(LockValue::Unlocked));
}

#[test]
fn i7_broken_camera_chain_is_alarmed() {
    let mut w = World::new();
    let mut p = w.proof_body();
    p.head = Digest([3; 32]);
    let out = w.send_proof(p);
    assert_eq!(rejected(&out), vec![RejectReason::ChainBroken]);
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    // A segment digest that is not the digest of its frames.
    let mut w = World::new();
    let mut p = w.proof_body();
    p.frames.pop();
    let out = w.send_proof(p);
    assert_eq!(rejected(&out), vec![RejectReason::ChainBroken]);
}

#[test]
fn i7_frozen_digests_are_alarmed() {
    // S4: the last frame repeated.
    let mut w = World::new();
    let f = frame_digest(b"closed door");
    w.cam.fixed_frames = Some(vec![f, f]);
    let out = w.proof();
    assert!(alarms(&out).contains(&AlarmKind::FrozenFootage));
}

#[test]
fn i7_looped_digests_are_alarmed() {
    // S5: A/B alternation during an entry.
    let mut w = World::new();
    open_entry(&mut w);
    let (a, b) = (frame_digest(b"A"), frame_digest(b"B"));
    w.cam.fixed_frames = Some(vec![a, b]);
    let out = w.proof();
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    let out = w.proof();
    assert!(
        alarms(&out).contains(&AlarmKind::LoopedFootage),
        "{:?}",
        alarms(&out)
    );
}

#[test]
fn i7_guard_off_frozen_and_looped_footage_pass() {
    let _f = guard::disable(Guard::FreezeDetection);
    let _l = guard::disable(Guard::LoopDetection);
    let mut w = World::new();
    open_entry(&mut w);
    let (a, b) = (frame_digest(b"A"), frame_digest(b"B"));
    w.cam.fixed_frames = Some(vec![a, b]);
    let mut out = w.proof();
    out.extend(w.proof());
    w.cam.fixed_frames = Some(vec![a, a]);
    out.extend(w.proof());
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
}

#[test]
fn i7_camera_observations_raise_their_alarms() {
    let mut w = World::new();
    w.cam.obs.blinded = true;
    assert_eq!(alarms(&w.proof()), vec![AlarmKind::BlindedCamera]);
    w.cam.obs.blinded = false;
    w.cam.obs.frozen = true;
    assert_eq!(alarms(&w.proof()), vec![AlarmKind::FrozenFootage]);
    w.cam.obs.frozen = false;
    w.cam.obs.looped = true;
    assert_eq!(alarms(&w.proof()), vec![AlarmKind::LoopedFootage]);
}

#[test]
fn i7_guard_off_blinded_camera_raises_nothing() {
    // S18 with the blind check switched off: the camera says its lens is covered and the
    // server lets it pass, so the alarm above is the guard's doing.
    let _off = guard::disable(Guard::BlindDetection);
    let mut w = World::new();
    w.cam.obs.blinded = true;
    let out = w.proof();
    assert!(rejected(&out).is_empty());
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    let out = w.run(1_000, true, false);
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
}

// ----- I7, I10 signed checkpoints over the MAC'd stream -----

fn reanchored(out: &[Output]) -> usize {
    audits(out)
        .iter()
        .filter(|a| matches!(a.what, AuditKind::Reanchored { .. }))
        .count()
}

fn mismatches(out: &[Output]) -> usize {
    audits(out)
        .iter()
        .filter(|a| matches!(a.what, AuditKind::CheckpointMismatch { .. }))
        .count()
}

/// The session key has leaked: the attacker drops the camera's next proof (which saw someone
/// at the door) and sends, under the same MAC key, the same proof with nobody in view. Returns
/// the outputs of the forged proof.
fn replace_next_proof(w: &mut World) -> Vec<Output> {
    w.idle(125);
    w.cam.obs.people_in_zone = 1;
    let real = w.proof_body();
    w.cam.obs.people_in_zone = 0;
    let _dropped = w.proof_envelope(real.clone());
    let mut forged = real;
    forged.obs.people_in_zone = 0;
    let env = Envelope::maced(Body::CameraProof(forged), w.cam.session.as_ref().unwrap());
    let cam_id = w.cam.id.clone();
    w.device(&cam_id, &env)
}

#[test]
fn i10_checkpoints_that_match_the_stream_pass() {
    let mut w = World::new();
    // The server met the camera mid-stream: its first checkpoint anchors the chain.
    let out = w.checkpoint();
    assert_eq!(reanchored(&out), 1);
    let out = w.run(5_000, true, false);
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    assert_eq!((reanchored(&out), mismatches(&out)), (0, 0));
    let checkpoints = sent_checkpoints(&out);
    assert!(checkpoints >= 4, "{checkpoints} checkpoints");
}

fn sent_checkpoints(out: &[Output]) -> usize {
    audits(out)
        .iter()
        .filter(|a| match &a.what {
            AuditKind::Accepted { envelope, .. } => matches!(
                Envelope::decode(envelope).map(|e| e.body),
                Ok(Body::Checkpoint(_))
            ),
            _ => false,
        })
        .count()
}

#[test]
fn i10_a_proof_replaced_under_a_leaked_session_key_is_caught_by_the_next_checkpoint() {
    let mut w = World::new();
    w.checkpoint();
    w.run(1_000, true, false);
    // The forged proof passes every per-message check: MAC, sequence, footage chain.
    let out = replace_next_proof(&mut w);
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
    assert!(alarms(&out).is_empty());
    w.idle(125);
    w.proof();
    let cp = w.checkpoint_envelope();
    let cam_id = w.cam.id.clone();
    let out = w.device(&cam_id, &cp);
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    assert_eq!(mismatches(&out), 1);
    // The alarm rests on the signed checkpoint itself.
    let notice = out
        .iter()
        .find_map(|o| match o {
            Output::Alarm(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    let ev = notice.evidence.unwrap();
    assert_eq!((ev.device, ev.seq), (cam_id, w.cam.seq));
    assert_eq!(ev.digest, Digest(*blake3::hash(&cp.to_bytes()).as_bytes()));
    // Anchored on the camera's word again: the next window is checked on its own and is clean.
    let out = w.run(2_000, true, false);
    assert_eq!((mismatches(&out), reanchored(&out)), (0, 0));
}

#[test]
fn i10_guard_off_a_replaced_proof_passes_the_checkpoint() {
    let _off = guard::disable(Guard::CheckpointChain);
    let mut w = World::new();
    w.checkpoint();
    w.run(1_000, true, false);
    let mut out = replace_next_proof(&mut w);
    out.extend(w.proof());
    out.extend(w.checkpoint());
    out.extend(w.run(2_000, true, false));
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    assert_eq!(mismatches(&out), 0);
}

#[test]
fn i10_a_checkpoint_after_loss_reanchors_without_alarm_and_checking_resumes() {
    let mut w = World::new();
    w.checkpoint();
    w.run(1_000, true, false);
    // One proof lost on the way (1 % loss is normal), then the camera's checkpoint.
    w.idle(125);
    let body = w.proof_body();
    let _lost = w.proof_envelope(body);
    w.idle(125);
    let mut out = w.proof();
    out.extend(w.checkpoint());
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    assert!(audits(&out)
        .iter()
        .any(|a| matches!(a.what, AuditKind::StreamLoss { missing: 1, .. })));
    assert_eq!((reanchored(&out), mismatches(&out)), (1, 0));
    // The next window holds every message again: a replaced proof in it is caught.
    replace_next_proof(&mut w);
    w.idle(125);
    w.proof();
    let out = w.checkpoint();
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
}

#[test]
fn i10_a_replaced_proof_is_caught_even_when_the_checkpoints_come_out_of_line() {
    let mut w = World::new();
    w.checkpoint();
    w.run(1_000, true, false);
    // The checkpoint overtakes the proof it names (reordered by the broker): it is deferred.
    w.idle(125);
    let body = w.proof_body();
    let env = w.proof_envelope(body);
    let early = w.checkpoint_envelope();
    let cam_id = w.cam.id.clone();
    let mut out = w.device(&cam_id, &early);
    out.extend(w.device(&cam_id, &env));
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    assert_eq!((reanchored(&out), mismatches(&out)), (0, 0));
    // A proof replaced, then the checkpoint held back behind a later proof: deferred too.
    replace_next_proof(&mut w);
    let late = w.checkpoint_envelope();
    w.idle(125);
    let mut out = w.proof();
    out.extend(w.device(&cam_id, &late));
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    // The chain runs from the camera's boot, so the next checkpoint in line covers both
    // windows and exposes the replaced proof.
    w.idle(125);
    w.proof();
    let out = w.checkpoint();
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    assert_eq!(mismatches(&out), 1);
}

// ----- I10 session hellos -----

fn session_events(out: &[Output]) -> Vec<AuditKind> {
    audits(out)
        .into_iter()
        .filter(|a| {
            matches!(
                a.what,
                AuditKind::SessionOpened { .. } | AuditKind::SessionActive { .. }
            )
        })
        .map(|a| a.what)
        .collect()
}

fn accepts_sent(out: &[Output]) -> usize {
    sent(out)
        .iter()
        .filter(|(_, b)| matches!(b, Body::SessionAccept(_)))
        .count()
}

#[test]
fn i10_a_replayed_session_hello_does_not_displace_the_working_session() {
    let mut w = World::new();
    let old = w.last_hello.clone().unwrap();
    // The camera moves to a new session; its first proof under the new key puts it in force.
    let out = w.open_camera_session();
    assert_eq!(session_events(&out).len(), 1);
    let out = w.proof();
    assert!(matches!(
        session_events(&out)[..],
        [AuditKind::SessionActive { .. }]
    ));
    // Someone on the broker replays the old hello.
    let cam_id = w.cam.id.clone();
    let out = w.device(&cam_id, &old);
    assert_eq!(rejected(&out), vec![RejectReason::Replay]);
    assert_eq!(alarms(&out), vec![AlarmKind::StreamTampered]);
    assert_eq!(accepts_sent(&out), 0);
    // The camera's MAC'd proofs go on verifying.
    let out = w.run(2_000, true, false);
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    // A redelivery of the hello behind the key in force is a duplicate: no alarm.
    let current = w.last_hello.clone().unwrap();
    let out = w.device(&cam_id, &current);
    assert_eq!(rejected(&out), vec![RejectReason::Duplicate]);
    assert!(alarms(&out).is_empty());
}

#[test]
fn i10_a_hello_replayed_after_it_is_forgotten_still_displaces_nothing() {
    let cfg = Config {
        max_recent_hellos: 1,
        ..Config::default()
    };
    let mut w = World::with(cfg, HomePolicy::default(), DoorKind::Front);
    let old = w.last_hello.clone().unwrap();
    w.open_camera_session();
    w.proof();
    // The old hello has left the recent set: it is answered, and its key waits for a first
    // use that never comes, since nobody holds its ephemeral secret.
    let cam_id = w.cam.id.clone();
    let out = w.device(&cam_id, &old);
    assert!(rejected(&out).is_empty());
    assert_eq!(accepts_sent(&out), 1);
    let out = w.run(2_000, true, false);
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    // Nor does a replay in the middle of a handshake: the camera's own new key still wins.
    let (init, hello) = session::Initiator::start(w.cam.id.clone(), &mut w.rng);
    let env = Envelope::signed(Body::SessionHello(hello), &w.cam.key);
    let out = w.device(&cam_id, &env);
    let accept = sent(&out)
        .into_iter()
        .find_map(|(_, b)| match b {
            Body::SessionAccept(a) => Some(a),
            _ => None,
        })
        .unwrap();
    let out = w.device(&cam_id, &old);
    assert_eq!(accepts_sent(&out), 1);
    w.cam.session = Some(init.finish(&accept).unwrap());
    let out = w.run(2_000, true, false);
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
    assert!(alarms(&out).is_empty(), "{:?}", alarms(&out));
    assert!(session_events(&out).iter().any(
        |e| matches!(e, AuditKind::SessionActive { session, .. } if *session == accept.session)
    ));
}

#[test]
fn i10_guard_off_a_replayed_hello_replaces_the_key_and_the_cameras_proofs_fail() {
    let _off = guard::disable(Guard::SessionReplay);
    let mut w = World::new();
    let old = w.last_hello.clone().unwrap();
    w.open_camera_session();
    w.proof();
    let cam_id = w.cam.id.clone();
    let out = w.device(&cam_id, &old);
    assert!(rejected(&out).is_empty());
    // The server now holds a key the camera does not: its genuine proofs are refused.
    let out = w.proof();
    assert_eq!(rejected(&out), vec![RejectReason::BadMac]);
    assert_eq!(alarms(&out), vec![AlarmKind::ForgedReport]);
}

#[test]
fn i8_device_clock_jumping_ahead_is_refused() {
    let mut w = World::new();
    w.idle(1_000);
    let mut p = w.proof_body();
    p.mono_ms += 60_000;
    let out = w.send_proof(p);
    assert_eq!(rejected(&out), vec![RejectReason::ClockSkew]);
    assert_eq!(alarms(&out), vec![AlarmKind::ClockSkew]);
}

// ----- I13 witnessed egress -----

#[test]
fn i13_driver_staying_in_the_zone_is_activity_after_entry() {
    // S19: the door closes and relocks with the driver still in the zone.
    let mut w = World::new();
    w.enter_and_relock();
    w.cam.obs.people_in_zone = 1;
    let out = w.run(4_875, true, false);
    assert!(alarms(&out).is_empty());
    assert_eq!(w.phase(), Phase::Relocked);
    let out = w.run(125, true, false);
    assert_eq!(alarms(&out), vec![AlarmKind::ActivityAfterEntry]);
    assert_eq!(w.phase(), Phase::Incident);
}

#[test]
fn i13_activity_after_the_egress_is_alarmed() {
    let mut w = World::new();
    w.enter_and_relock();
    w.run(250, true, false);
    assert_eq!(w.phase(), Phase::EgressWitnessed);
    w.idle(10_000);
    w.cam.obs.people_in_zone = 1;
    let out = w.proof();
    assert_eq!(alarms(&out), vec![AlarmKind::ActivityAfterEntry]);
    assert_eq!(w.phase(), Phase::Incident);
}

#[test]
fn i13_more_in_than_out_is_alarmed() {
    // S20: a second person follows the driver in and stays.
    let mut w = World::new();
    let cmd = w.authorise();
    let grant = cmd.context.body.grant;
    w.lock.cycle = Some(grant);
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::Unlocked(grant));
    w.cam.obs.door_open = true;
    w.cam.obs.entered += 2;
    w.set_lock(Bolt::Retracted, Door::Open, LockEvent::DoorChanged);
    w.run(1_000, true, true);
    w.cam.obs.door_open = false;
    w.cam.obs.exited += 1;
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
    w.run(250, true, true);
    w.set_lock(Bolt::Thrown, Door::Closed, LockEvent::Relocked(grant));
    let out = w.run(125, true, false);
    assert_eq!(alarms(&out), vec![AlarmKind::MoreInThanOut]);
    w.idle(31_000);
    assert_eq!(w.phase(), Phase::Incident);
}

#[test]
fn i13_guard_off_driver_stays_and_delivery_is_done() {
    let _off = guard::disable(Guard::EgressCheck);
    let mut w = World::new();
    w.enter_and_relock();
    w.cam.obs.people_in_zone = 1;
    w.run(6_000, true, false);
    w.idle(31_000);
    assert_eq!(w.phase(), Phase::Done);
    assert!(w.alarm_kinds().is_empty());
}

// ----- I14 alarms re-sent until acknowledged -----

#[test]
fn i14_alarm_resent_until_acknowledged() {
    let mut w = World::new();
    w.cam.obs.blinded = true;
    let out = w.proof();
    let first = match &out.iter().find(|o| matches!(o, Output::Alarm(_))) {
        Some(Output::Alarm(a)) => a.clone(),
        _ => panic!("no alarm"),
    };
    assert_eq!(first.sent, 1);
    assert!(!first.action.is_empty());
    assert_eq!(first.evidence.as_ref().unwrap().device, w.cam.id);
    let resends = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Alarm(a) if a.alarm.id == first.alarm.id))
            .count()
    };
    assert_eq!(resends(&w.idle(9_999)), 0);
    assert_eq!(resends(&w.idle(1)), 1);
    assert_eq!(resends(&w.idle(10_000)), 1);
    w.feed(Input::AckAlarm { id: first.alarm.id });
    assert_eq!(resends(&w.idle(30_000)), 0);
    // Still blinded: once acknowledged, a new proof raises it again.
    assert_eq!(alarms(&w.proof()), vec![AlarmKind::BlindedCamera]);
}

/// I8, I14: the server's own storage failure is an alarm like the others: one per home until
/// acknowledged, re-sent every `alarm_resend_ms`, raised again by the next failure once
/// acknowledged.
#[test]
fn i8_storage_failure_alarm_is_resent_until_acknowledged() {
    let mut w = World::new();
    let now = w.now;
    let out = w.c.storage_failure(now, "disk full");
    let raised: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Alarm(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(raised.len(), 1, "one home, one alarm");
    let first = &raised[0];
    assert_eq!(first.alarm.kind, AlarmKind::StorageFailure);
    assert_eq!(first.alarm.home, w.home);
    assert!(audits(&out).iter().any(
        |a| matches!(&a.what, AuditKind::AlarmRaised { alarm, .. } if alarm.id == first.alarm.id)
    ));
    // Another failure while it is open is the same alarm.
    let again = w.c.storage_failure(now + 1, "disk full");
    assert!(alarms(&again).is_empty());
    let resends = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Alarm(a) if a.alarm.id == first.alarm.id && a.sent > 1))
            .count()
    };
    assert_eq!(resends(&w.idle(9_999)), 0);
    assert_eq!(resends(&w.idle(1)), 1);
    assert_eq!(resends(&w.idle(10_000)), 1);
    w.feed(Input::AckAlarm { id: first.alarm.id });
    assert_eq!(resends(&w.idle(30_000)), 0);
    let now = w.now;
    assert_eq!(
        alarms(&w.c.storage_failure(now, "disk full")),
        vec![AlarmKind::StorageFailure]
    );
}

// ----- I7 the record -----

#[test]
fn i7_audit_events_chain_export_and_verify_offline() {
    use doorward_control::audit::*;
    let mut w = World::new();
    w.enter_and_relock();
    w.run(250, true, false);
    w.idle(31_000);
    assert_eq!(w.phase(), Phase::Done);
    let key = KeyPair::from_seed(&[5; 32]);
    let mut chain = AuditChain::new(w.home.clone(), AuditConfig::default());
    let mut items = Vec::new();
    let events: Vec<AuditEvent> = audits(&w.log)
        .into_iter()
        .filter(|e| e.home.as_ref() == Some(&w.home))
        .collect();
    assert!(events
        .iter()
        .any(|e| matches!(e.what, AuditKind::Authorised { .. })));
    assert!(events.iter().any(|e| matches!(
        e.what,
        AuditKind::Phase {
            phase: Phase::Done,
            ..
        }
    )));
    for e in &events {
        let bytes = e.to_bytes();
        // Canonical: the payload decodes back to the same event.
        let back: AuditEvent =
            doorward_proto::codec::decode(&bytes, MAX_AUDIT_PAYLOAD_BYTES).unwrap();
        assert_eq!(&back, e);
        let a = chain
            .append(e.at_ms, EntryKind::EVENT, None, bytes, &key)
            .unwrap();
        items.push(ExportItem::Entry(a.entry));
        if let Some(c) = a.checkpoint {
            items.push(ExportItem::Checkpoint(c));
        }
    }
    items.push(ExportItem::Checkpoint(chain.checkpoint(w.now, &key)));
    let header = ExportHeader {
        version: EXPORT_VERSION,
        server: key.public(),
        home: w.home.clone(),
        first_index: 0,
        first_prev: genesis_head(&w.home),
    };
    let mut buf = Vec::new();
    export(&mut buf, &header, &items).unwrap();
    verify_export(&buf[..], Some(&key.public())).unwrap();
}
