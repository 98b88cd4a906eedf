//! A lock that reboots skips to its next reserved block of report sequence numbers; its
//! signed boot report is loss, not tampering (found by the attack lab, S21).

mod harness;

use doorward_control::*;
use doorward_proto::*;
use harness::*;

#[test]
fn i7_lock_reboot_sequence_jump_is_not_tampering() {
    let mut w = World::new();
    // The lock's old block ran to 5; after the power cycle it starts at its reservation.
    w.lock.seq += 1_000;
    let out = w.lock_report(LockEvent::Boot);
    assert!(!alarms(&out).contains(&AlarmKind::StreamTampered));
    assert!(audits(&out)
        .iter()
        .any(|a| matches!(a.what, AuditKind::StreamLoss { missing, .. } if missing >= 1_000)));
    // The stream goes on from the new block.
    let out = w.lock_report(LockEvent::Periodic);
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
}

#[test]
fn i7_sequence_jump_without_a_boot_is_still_tampering() {
    let mut w = World::new();
    w.lock.seq += 1_000;
    let out = w.lock_report(LockEvent::Periodic);
    assert!(alarms(&out).contains(&AlarmKind::StreamTampered));
}

/// Opens the door with a fresh camera view of it open, then lets the camera fall silent.
fn open_then_camera_dies(w: &mut World) {
    let cmd = w.authorise();
    let grant = cmd.context.body.grant;
    w.run(125, true, false);
    w.lock.cycle = Some(grant);
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::Unlocked(grant));
    w.run(250, true, true);
    w.cam.obs.door_open = true;
    w.set_lock(Bolt::Retracted, Door::Open, LockEvent::DoorChanged);
    w.proof();
    w.run(500, true, true);
}

#[test]
fn i5_a_dead_cameras_last_picture_does_not_contradict_the_door_sensor() {
    let mut w = World::new();
    open_then_camera_dies(&mut w);
    w.run(1_000, false, true);
    assert!(w.alarm_kinds().contains(&AlarmKind::WitnessLost));
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
    w.run(2_000, false, true);
    assert!(!w.alarm_kinds().contains(&AlarmKind::SceneMismatch));
}

#[test]
fn i5_a_live_camera_contradicting_the_door_sensor_is_still_alarmed() {
    let mut w = World::new();
    open_then_camera_dies(&mut w);
    // The camera keeps seeing the door open while the sensor says closed (a magnet).
    w.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
    w.run(2_000, true, true);
    assert!(w.alarm_kinds().contains(&AlarmKind::SceneMismatch));
}
