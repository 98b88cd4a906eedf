//! The open cycle and what survives it: single use across reboots, self-relocking, battery
//! reserve (I3), confirmed actuation (I6), durable decisions (I8), supervision reports (I12) and
//! witness lockout (I4), each with its guard-off twin.

mod common;

use common::*;
use doorward_lock::testkit::{
    actuations, events, reports, BoltMode, PersistMode, GRANT_MAX_OPEN_MS,
};
use doorward_lock::{BoltCommand, Input, LockState, Output, Sensors, MAX_RELOCK_ATTEMPTS};
use doorward_proto::guard::{disable, Guard};
use doorward_proto::{Bolt, DenyReason, Door, LockEvent};

/// Unlocks with a valid command, walks in and out, and returns the command.
fn full_entry(h: &mut H) -> doorward_proto::UnlockCommand {
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.advance(500);
    h.input(Input::Door(Door::Open));
    h.advance(500);
    h.input(Input::Door(Door::Closed));
    assert!(!h.lock.in_cycle());
    cmd
}

// ----- I3: single use, across reboots --------------------------------------------------------

/// S21: the lock is power-cycled mid-entry; later the same grant comes back with a fresh
/// nonce (a fresh context for it, as a replaying server or a copied grant would bring).
fn same_grant_after_reboot(h: &mut H) -> Vec<Output> {
    let (cmd, spec, token) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.advance(300);
    h.reboot();
    // Relock on boot: the door is closed, so the bolt goes out.
    assert_eq!(h.lock.bolt(), Bolt::Thrown);
    let nonce = h.nonce();
    let again = h.command_for(nonce, &spec, &token);
    h.send(&again)
}

#[test]
fn i3_s21_spent_grant_is_refused_after_reboot() {
    let mut h = harness(100);
    assert_denied(&same_grant_after_reboot(&mut h), DenyReason::GrantSpent);
}

#[test]
fn i3_s21_without_the_spent_guard_a_spent_grant_opens_again() {
    let mut h = harness(100);
    let _off = disable(Guard::SpentGrants);
    assert_unlocked(&same_grant_after_reboot(&mut h));
}

#[test]
fn i3_relock_on_boot_when_the_door_is_closed() {
    let h = harness(101);
    let sensors = Sensors {
        bolt: Bolt::Retracted,
        door: Door::Closed,
        battery_pct: 90,
    };
    let (lock, out) = doorward_lock::Lock::boot(h.kit.config(), LockState::default(), 5, sensors);
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
    assert!(lock.in_cycle());
    // With the door open, it relocks as soon as the door closes.
    let sensors = Sensors {
        door: Door::Open,
        ..sensors
    };
    let (mut lock, out) =
        doorward_lock::Lock::boot(h.kit.config(), LockState::default(), 5, sensors);
    assert_eq!(actuations(&out), vec![]);
    let out = lock.handle(9, Input::Door(Door::Closed), &mut rng(1));
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
}

#[test]
fn i3_without_the_relock_guard_a_lock_boots_unlocked() {
    let h = harness(101);
    let sensors = Sensors {
        bolt: Bolt::Retracted,
        door: Door::Closed,
        battery_pct: 90,
    };
    let _off = disable(Guard::AutoRelock);
    let (lock, out) = doorward_lock::Lock::boot(h.kit.config(), LockState::default(), 5, sensors);
    assert_eq!(actuations(&out), vec![]);
    assert!(!lock.in_cycle());
}

#[test]
fn i3_spent_table_full_denies_rather_than_forgets() {
    let mut rng = rng(102);
    let kit = doorward_lock::testkit::Kit::new(&mut rng);
    let mut cfg = kit.config();
    cfg.max_spent_grants = 2;
    let mut h = doorward_lock::testkit::Harness::with_config(kit, cfg, rng);
    full_entry(&mut h);
    full_entry(&mut h);
    let (cmd, _, _) = h.valid_command();
    assert_denied(&h.send(&cmd), DenyReason::QueueFull);
    assert_eq!(h.lock.state().spent.len(), 2);
    // Once the first grants' windows (an hour) have passed, they are dropped and room returns.
    h.advance(3_600_000 + 60_000);
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    assert_eq!(h.lock.state().spent.len(), 1);
}

// ----- I3: self-relocking -----------------------------------------------------------------------

fn open_then_close(h: &mut H) -> Vec<Output> {
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.advance(1_000);
    h.input(Input::Door(Door::Open));
    h.advance(1_000);
    h.input(Input::Door(Door::Closed))
}

#[test]
fn i3_auto_relock_on_door_close() {
    let mut h = harness(110);
    let out = open_then_close(&mut h);
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
    assert_eq!(h.lock.bolt(), Bolt::Thrown);
}

#[test]
fn i3_without_the_relock_guard_the_door_closes_unlocked() {
    let mut h = harness(110);
    let _off = disable(Guard::AutoRelock);
    let out = open_then_close(&mut h);
    assert_eq!(actuations(&out), vec![]);
    assert_eq!(h.lock.bolt(), Bolt::Retracted);
}

fn door_never_opens(h: &mut H) -> Vec<Output> {
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    let wait = h.lock.config().door_open_wait_ms;
    h.advance(wait + 10)
}

#[test]
fn i3_relock_when_the_door_never_opens() {
    let mut h = harness(111);
    let out = door_never_opens(&mut h);
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
    assert!(!h.lock.in_cycle());
}

#[test]
fn i3_without_the_relock_guard_an_unopened_door_stays_unlocked() {
    let mut h = harness(111);
    let _off = disable(Guard::AutoRelock);
    let out = door_never_opens(&mut h);
    assert_eq!(actuations(&out), vec![]);
    assert!(h.lock.in_cycle());
}

#[test]
fn i3_held_open_past_max_open_is_reported_and_relocks_on_close() {
    let mut h = harness(112);
    let (cmd, spec, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.input(Input::Door(Door::Open));
    let out = h.advance(GRANT_MAX_OPEN_MS - 1);
    assert!(!events(&out).contains(&LockEvent::HeldOpen));
    let out = h.advance(2);
    assert_eq!(
        events(&out)
            .iter()
            .filter(|e| **e == LockEvent::HeldOpen)
            .count(),
        1
    );
    let out = h.advance(60_000);
    assert!(
        !events(&out).contains(&LockEvent::HeldOpen),
        "reported once"
    );
    let out = h.input(Input::Door(Door::Closed));
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
    assert!(events(&out).contains(&LockEvent::Relocked(spec.id)));
}

#[test]
fn i3_door_opened_while_bolt_thrown_is_forced_open() {
    let mut h = harness(113);
    let out = h.input(Input::Door(Door::Open));
    assert_eq!(events(&out), vec![LockEvent::ForcedOpen]);
}

// ----- I3: battery reserve ------------------------------------------------------------------------

fn low_battery_unlock(h: &mut H) -> Vec<Output> {
    let reserve = h.lock.config().battery_reserve_pct;
    h.input(Input::Battery(reserve - 1));
    let (cmd, _, _) = h.valid_command();
    h.send(&cmd)
}

#[test]
fn i3_battery_below_reserve_is_denied() {
    let mut h = harness(120);
    assert_denied(&low_battery_unlock(&mut h), DenyReason::LowBattery);
}

#[test]
fn i3_without_the_battery_guard_a_flat_lock_unlocks() {
    let mut h = harness(120);
    let _off = disable(Guard::BatteryReserve);
    assert_unlocked(&low_battery_unlock(&mut h));
}

#[test]
fn i3_battery_at_reserve_unlocks() {
    let mut h = harness(121);
    let reserve = h.lock.config().battery_reserve_pct;
    h.input(Input::Battery(reserve));
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
}

// ----- I6: confirmed actuation ------------------------------------------------------------------

fn stuck_retract(h: &mut H) -> Vec<Output> {
    h.bolt_mode = BoltMode::Stuck;
    let (cmd, _, _) = h.valid_command();
    let mut out = h.send(&cmd);
    assert!(retracted(&out));
    let confirm = h.lock.config().confirm_ms;
    out.extend(h.advance(confirm + 10));
    out
}

#[test]
fn i6_s12_unconfirmed_retract_is_reported_jammed() {
    let mut h = harness(130);
    let out = stuck_retract(&mut h);
    assert!(events(&out).contains(&LockEvent::Jammed));
    assert!(h.lock.jammed());
    // The bolt never left Thrown, so the cycle ends without an Unlocked report.
    assert!(!events(&out)
        .iter()
        .any(|e| matches!(e, LockEvent::Unlocked(_))));
    assert!(!h.lock.in_cycle());
}

#[test]
fn i6_s12_without_the_actuation_guard_a_jam_goes_unnoticed() {
    let mut h = harness(130);
    let _off = disable(Guard::ConfirmedActuation);
    let out = stuck_retract(&mut h);
    assert!(!events(&out).contains(&LockEvent::Jammed));
    assert!(!h.lock.jammed());
}

#[test]
fn i6_jammed_lock_refuses_grants() {
    let mut h = harness(131);
    stuck_retract(&mut h);
    h.bolt_mode = BoltMode::Follow;
    let (cmd, _, _) = h.valid_command();
    assert_denied(&h.send(&cmd), DenyReason::Jammed);
}

#[test]
fn i6_without_the_actuation_guard_a_jammed_lock_unlocks() {
    let mut h = harness(131);
    stuck_retract(&mut h);
    h.bolt_mode = BoltMode::Follow;
    let (cmd, _, _) = h.valid_command();
    let _off = disable(Guard::ConfirmedActuation);
    assert_unlocked(&h.send(&cmd));
}

/// S3: the 2018 dropbox. The relock command is jammed and the bolt never moves.
fn jammed_relock(h: &mut H) -> Vec<Output> {
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.input(Input::Door(Door::Open));
    h.bolt_mode = BoltMode::Stuck;
    let mut out = h.input(Input::Door(Door::Closed));
    let confirm = h.lock.config().confirm_ms;
    out.extend(h.advance(confirm * u64::from(MAX_RELOCK_ATTEMPTS + 2)));
    out
}

#[test]
fn i6_s3_unconfirmed_relock_is_reported_and_never_relocked() {
    let mut h = harness(132);
    let out = jammed_relock(&mut h);
    let ev = events(&out);
    assert_eq!(ev.iter().filter(|e| **e == LockEvent::Jammed).count(), 1);
    assert!(!ev.iter().any(|e| matches!(e, LockEvent::Relocked(_))));
    // Retried a bounded number of times, then waits for the sensor with the cycle open.
    assert_eq!(
        actuations(&out),
        vec![BoltCommand::Throw; MAX_RELOCK_ATTEMPTS as usize]
    );
    assert!(h.lock.in_cycle());
    assert!(reports(&out).iter().all(|r| r.bolt == Bolt::Retracted));
    // When the bolt finally moves, the relock is confirmed.
    let out = h.input(Input::Bolt(Bolt::Thrown));
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, LockEvent::Relocked(_))));
    assert!(!h.lock.jammed());
}

#[test]
fn i6_s3_without_the_actuation_guard_a_jammed_relock_goes_unnoticed() {
    let mut h = harness(132);
    let _off = disable(Guard::ConfirmedActuation);
    let out = jammed_relock(&mut h);
    assert!(!events(&out).contains(&LockEvent::Jammed));
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
}

// ----- I8: storage failure ------------------------------------------------------------------------

#[test]
fn i8_storage_failure_denies() {
    let mut h = harness(140);
    let (cmd, spec, _) = h.valid_command();
    h.persist_mode = PersistMode::Fail;
    assert_denied(&h.send(&cmd), DenyReason::StorageFailure);
    assert!(!h.lock.in_cycle());
    // The grant stays spent in memory: a failed write never gives a second chance.
    assert!(h.lock.state().spent.iter().any(|s| s.id == spec.id));
}

#[test]
fn i8_without_the_spent_guard_the_bolt_moves_before_the_write() {
    let mut h = harness(140);
    let (cmd, _, _) = h.valid_command();
    h.persist_mode = PersistMode::Fail;
    let _off = disable(Guard::SpentGrants);
    let out = h.send(&cmd);
    assert!(retracted(&out));
}

#[test]
fn i8_hung_storage_denies_after_persist_timeout() {
    let mut h = harness(141);
    let (cmd, _, _) = h.valid_command();
    h.persist_mode = PersistMode::Hold;
    let out = h.send(&cmd);
    assert_eq!(actuations(&out), vec![]);
    let timeout = h.lock.config().persist_timeout_ms;
    let out = h.advance(timeout - 1);
    assert_eq!(denials(&out), vec![]);
    let out = h.advance(1);
    assert_denied(&out, DenyReason::StorageFailure);
    // A late acknowledgement does not move the bolt any more.
    let v = match h
        .log
        .iter()
        .rev()
        .find(|o| matches!(o, Output::Persist { .. }))
    {
        Some(Output::Persist { version, .. }) => *version,
        _ => unreachable!(),
    };
    assert_eq!(
        actuations(&h.input(Input::Persisted { version: v })),
        vec![]
    );
}

use doorward_lock::testkit::denials;

// ----- I12: supervision reports --------------------------------------------------------------------

fn reports_in_first_second_of_cycle(h: &mut H) -> Vec<doorward_proto::LockReport> {
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.input(Input::Door(Door::Open));
    reports(&h.advance(1_000))
}

#[test]
fn i12_reports_every_proof_interval_during_a_cycle() {
    let mut h = harness(150);
    let rs = reports_in_first_second_of_cycle(&mut h);
    let periodic: Vec<_> = rs
        .iter()
        .filter(|r| r.event == LockEvent::Periodic)
        .collect();
    let expect = 1_000 / h.lock.config().proof_interval_ms;
    assert!(
        periodic.len() as u64 >= expect,
        "{} reports",
        periodic.len()
    );
    assert!(periodic
        .iter()
        .all(|r| r.cycle.is_some() && r.door == Door::Open));
    let gaps: Vec<u64> = periodic
        .windows(2)
        .map(|w| w[1].mono_ms - w[0].mono_ms)
        .collect();
    assert!(gaps.iter().all(|g| *g <= h.lock.config().proof_interval_ms));
}

#[test]
fn i12_without_the_supervision_guard_the_lock_is_silent_mid_entry() {
    let mut h = harness(150);
    let _off = disable(Guard::LockSupervision);
    let rs = reports_in_first_second_of_cycle(&mut h);
    assert!(!rs.iter().any(|r| r.event == LockEvent::Periodic));
}

#[test]
fn i12_idle_reports_every_idle_interval() {
    let mut h = harness(151);
    let idle = h.lock.config().idle_report_ms;
    let rs = reports(&h.advance(idle * 4));
    assert_eq!(rs.len(), 4);
    assert!(rs
        .iter()
        .all(|r| r.event == LockEvent::Periodic && r.cycle.is_none()));
}

#[test]
fn i12_report_seq_strictly_increases_across_reboots() {
    let mut h = harness(152);
    full_entry(&mut h);
    h.advance(2_000);
    h.reboot();
    full_entry(&mut h);
    h.reboot();
    h.advance(60_000);
    let seqs: Vec<u64> = reports(&h.log).iter().map(|r| r.seq).collect();
    assert!(seqs.len() > 20);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Every report is signed by the lock's key.
    for o in &h.log {
        if let Output::Send(env) = o {
            assert_eq!(env.verify_sig(&h.kit.lock_key.public()), Ok(()));
        }
    }
}

#[test]
fn i12_reports_wait_for_a_durable_sequence_reservation() {
    let mut h = harness(153);
    let before = reports(&h.log).last().unwrap().seq;
    h.persist_mode = PersistMode::Hold;
    let out = h.reboot();
    assert!(
        reports(&out).is_empty(),
        "no report before its seq is on disk"
    );
    let out = h.input(Input::Door(Door::Open));
    assert!(reports(&out).is_empty());
    h.persist_mode = PersistMode::Ack;
    let v = match h
        .log
        .iter()
        .rev()
        .find(|o| matches!(o, Output::Persist { .. }))
    {
        Some(Output::Persist { version, .. }) => *version,
        _ => unreachable!(),
    };
    let out = h.input(Input::Persisted { version: v });
    let rs = reports(&out);
    assert_eq!(rs[0].event, LockEvent::Boot);
    assert_eq!(rs[1].event, LockEvent::ForcedOpen);
    assert!(rs[0].seq > before + 1, "the old block is skipped");
}

#[test]
fn i12_a_long_run_reserves_new_seq_blocks_before_running_out() {
    let mut h = harness(154);
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.input(Input::Door(Door::Open));
    // 8 reports a second for five minutes: several blocks of doorward_lock::SEQ_BLOCK.
    h.advance(300_000);
    let seqs: Vec<u64> = reports(&h.log).iter().map(|r| r.seq).collect();
    assert!(seqs.len() as u64 > 2 * doorward_lock::SEQ_BLOCK);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps while the disk keeps up"
    );
    assert!(h.disk.as_ref().unwrap().seq_reserved > *seqs.last().unwrap());
}

// ----- I4: witness lockout ---------------------------------------------------------------------------

/// The camera's checkpoints stop mid-entry (S1, S11); the driver walks out, and asks again.
fn witness_lost_mid_entry(h: &mut H) -> Vec<Output> {
    h.advance(1_000);
    assert!(
        h.checkpoint_seq > 0,
        "the camera was checkpointing before the entry"
    );
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    h.checkpoint_every_ms = None;
    h.input(Input::Door(Door::Open));
    let gap = h.lock.config().camera_checkpoint_gap_ms;
    let out = h.advance(gap + 10);
    assert!(events(&out).contains(&LockEvent::WitnessLockout));
    assert!(h.lock.witness_lockout());
    // It still relocks on close.
    let out = h.input(Input::Door(Door::Closed));
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
    assert!(!h.lock.in_cycle());
    let (cmd, _, _) = h.valid_command();
    h.send(&cmd)
}

#[test]
fn i4_witness_lockout_refuses_grants_until_checkpoints_resume() {
    let mut h = harness(160);
    assert_denied(&witness_lost_mid_entry(&mut h), DenyReason::WitnessLockout);
    // The camera comes back.
    h.checkpoint_every_ms = Some(500);
    h.advance(600);
    assert!(!h.lock.witness_lockout());
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i4_without_the_lockout_guard_a_lock_without_witness_unlocks() {
    let mut h = harness(160);
    let _off = disable(Guard::WitnessLockout);
    assert_unlocked(&witness_lost_mid_entry(&mut h));
}

/// A broker replays a checkpoint it recorded, to end the lockout without the camera.
fn replayed_checkpoint_after_lockout(h: &mut H) -> Vec<Output> {
    witness_lost_mid_entry(h);
    let old = h.kit.checkpoint(h.checkpoint_seq, h.now_ms);
    h.input(Input::Message(old))
}

#[test]
fn i4_replayed_checkpoint_does_not_end_lockout() {
    let mut h = harness(161);
    let out = replayed_checkpoint_after_lockout(&mut h);
    assert_eq!(
        out,
        vec![Output::Rejected(
            doorward_lock::InputError::CheckpointReplayed
        )]
    );
    assert!(h.lock.witness_lockout());
}

#[test]
fn i4_without_the_sequence_guard_a_replayed_checkpoint_ends_lockout() {
    let mut h = harness(161);
    let _off = disable(Guard::StreamSequence);
    replayed_checkpoint_after_lockout(&mut h);
    assert!(!h.lock.witness_lockout());
}

#[test]
fn i4_checkpoint_from_another_key_is_rejected() {
    let mut h = harness(162);
    let forged = doorward_proto::Envelope::signed(
        doorward_proto::Body::Checkpoint(doorward_proto::Checkpoint {
            device: h.kit.camera_id.clone(),
            seq: 1_000,
            head: doorward_proto::Digest::ZERO,
            mono_ms: 0,
        }),
        &h.kit.server,
    );
    let out = h.input(Input::Message(forged.to_bytes()));
    assert_eq!(
        out,
        vec![Output::Rejected(doorward_lock::InputError::BadAuth)]
    );
}
