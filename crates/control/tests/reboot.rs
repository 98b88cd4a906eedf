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
