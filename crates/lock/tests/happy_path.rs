//! A normal delivery, end to end: nonce, command, durable spend, retract, door, relock.

mod common;

use common::*;
use doorward_lock::testkit::{actuations, events, reports};
use doorward_lock::{BoltCommand, Input, Output};
use doorward_proto::{Bolt, Door, LockEvent};

#[test]
fn happy_path_unlocks_then_relocks_on_close() {
    let mut h = harness(1);
    let (cmd, spec, _) = h.valid_command();
    let out = h.send(&cmd);
    assert_unlocked(&out);
    // The spent grant is written before the motor moves (I3, I8).
    let persist = out.iter().position(|o| matches!(o, Output::Persist { .. }));
    let retract = out
        .iter()
        .position(|o| o == &Output::Actuate(BoltCommand::Retract));
    assert!(persist.unwrap() < retract.unwrap());
    assert!(h
        .disk
        .as_ref()
        .unwrap()
        .spent
        .iter()
        .any(|s| s.id == spec.id));
    assert!(events(&out).contains(&LockEvent::Unlocked(spec.id)));
    assert!(h.lock.in_cycle());

    h.advance(3_000);
    let out = h.input(Input::Door(Door::Open));
    assert_eq!(events(&out), vec![LockEvent::DoorChanged]);
    h.advance(20_000);
    let out = h.input(Input::Door(Door::Closed));
    assert_eq!(actuations(&out), vec![BoltCommand::Throw]);
    let ev = events(&out);
    assert!(ev.contains(&LockEvent::Relocked(spec.id)), "{ev:?}");
    assert!(!h.lock.in_cycle());
    assert_eq!(h.lock.bolt(), Bolt::Thrown);
    let last = reports(&out).pop().unwrap();
    assert_eq!(
        (last.bolt, last.door, last.cycle),
        (Bolt::Thrown, Door::Closed, None)
    );
}
