//! Every named limit of the lock, hit.

mod common;

use common::*;
use doorward_lock::testkit::{reports, PersistMode};
use doorward_lock::{Input, Output, MAX_QUEUED_REPORTS};
use doorward_proto::{DenyReason, Door, LockEvent};

#[test]
fn limit_max_outstanding_nonces_forgets_the_oldest() {
    let mut h = harness(300);
    let max = h.lock.config().max_outstanding_nonces;
    let first = h.nonce();
    let mut rest = Vec::new();
    for _ in 0..max {
        rest.push(h.nonce());
    }
    assert_eq!(h.lock.outstanding_nonces(), max);
    let (spec, token) = h.fresh_grant();
    let cmd = h.command_for(first, &spec, &token);
    assert_denied(&h.send(&cmd), DenyReason::NonceUnknown);
    let cmd = h.command_for(rest[0], &spec, &token);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn limit_max_queued_reports_drops_the_oldest_while_seq_is_not_durable() {
    let mut h = harness(301);
    h.persist_mode = PersistMode::Hold;
    h.reboot();
    for i in 0..(MAX_QUEUED_REPORTS + 10) {
        let d = if i % 2 == 0 { Door::Open } else { Door::Closed };
        assert!(reports(&h.input(Input::Door(d))).is_empty());
    }
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
    let rs = reports(&h.input(Input::Persisted { version: v }));
    assert_eq!(rs.len(), MAX_QUEUED_REPORTS);
    // The Boot report and the oldest door changes were dropped; the newest survive.
    assert!(rs.iter().all(|r| r.event != LockEvent::Boot));
    assert_eq!(rs.last().unwrap().door, Door::Closed);
    assert!(rs.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
}

#[test]
fn limit_nonce_ttl_ms_is_exact() {
    let mut h = harness(302);
    let ttl = h.lock.config().nonce_ttl_ms;
    let nonce = h.nonce();
    h.advance(ttl - 1);
    let (spec, token) = h.fresh_grant();
    let cmd = h.command_for(nonce, &spec, &token);
    assert_unlocked(&h.send(&cmd));
}
