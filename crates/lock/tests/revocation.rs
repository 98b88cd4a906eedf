//! S16: revocations reach the lock itself. Epochs apply strictly in order; revoked carriers,
//! drivers and grants are refused; contexts from another epoch are refused.

mod common;

use common::*;
use doorward_lock::testkit::{events, Harness, Kit};
use doorward_lock::{Input, InputError, Output};
use doorward_proto::guard::{disable, Guard};
use doorward_proto::{DenyReason, KeyPair, LockEvent, Revoked};

fn revoke(h: &mut H, epoch: u64, items: Vec<Revoked>) -> Vec<Output> {
    let bytes = h.kit.revocation(epoch, items, h.kit.server_ms(h.now_ms));
    h.input(Input::Message(bytes))
}

/// The home revokes `item` (epoch 1), then the revoked party tries a fresh, otherwise valid
/// command at epoch 1.
fn revoked_then_try(
    h: &mut H,
    item: impl FnOnce(&H, &doorward_proto::grant::GrantSpec) -> Revoked,
) -> Vec<Output> {
    let nonce = h.nonce();
    let (spec, token) = h.fresh_grant();
    let item = item(h, &spec);
    let out = revoke(h, 1, vec![item]);
    assert!(events(&out).contains(&LockEvent::EpochApplied));
    assert_eq!(h.lock.epoch(), 1);
    assert_eq!(h.disk.as_ref().unwrap().epoch, 1);
    let cmd = h.command_for(nonce, &spec, &token);
    h.send(&cmd)
}

#[test]
fn s16_revoked_carrier_is_denied() {
    let mut h = harness(200);
    let out = revoked_then_try(&mut h, |h, _| Revoked::Carrier(h.kit.carrier.clone()));
    assert_denied(&out, DenyReason::Revoked);
}

#[test]
fn s16_revoked_driver_is_denied() {
    let mut h = harness(201);
    let out = revoked_then_try(&mut h, |h, _| Revoked::Driver(h.kit.driver.public()));
    assert_denied(&out, DenyReason::Revoked);
}

#[test]
fn s16_revoked_grant_is_denied() {
    let mut h = harness(202);
    let out = revoked_then_try(&mut h, |_, spec| Revoked::Grant(spec.id));
    assert_denied(&out, DenyReason::Revoked);
}

#[test]
fn s16_without_the_epoch_guard_a_revoked_carrier_unlocks() {
    let mut h = harness(200);
    let _off = disable(Guard::RevocationEpoch);
    let out = revoked_then_try(&mut h, |h, _| Revoked::Carrier(h.kit.carrier.clone()));
    assert_unlocked(&out);
}

#[test]
fn s16_revocation_of_someone_else_does_not_deny() {
    let mut h = harness(203);
    let stranger = KeyPair::generate(&mut rng(5));
    let out = revoked_then_try(&mut h, |_, _| Revoked::Driver(stranger.public()));
    assert_unlocked(&out);
}

/// The server (or a broker holding an old context) presents a context from epoch 0 to a lock
/// at epoch 1: the context predates a revocation.
fn stale_epoch_command(h: &mut H) -> Vec<Output> {
    revoke(h, 1, vec![]);
    let nonce = h.nonce();
    let (spec, token) = h.fresh_grant();
    let cmd = h
        .kit
        .command(nonce, &token, &spec, h.kit.server_ms(h.now_ms), 0);
    h.send(&cmd)
}

#[test]
fn s16_stale_epoch_is_denied() {
    let mut h = harness(204);
    assert_denied(&stale_epoch_command(&mut h), DenyReason::StaleEpoch);
}

#[test]
fn s16_without_the_epoch_guard_a_stale_epoch_unlocks() {
    let mut h = harness(204);
    let _off = disable(Guard::RevocationEpoch);
    assert_unlocked(&stale_epoch_command(&mut h));
}

#[test]
fn s16_epoch_ahead_is_denied_and_asks_for_resync() {
    let mut h = harness(205);
    let nonce = h.nonce();
    let (spec, token) = h.fresh_grant();
    let cmd = h
        .kit
        .command(nonce, &token, &spec, h.kit.server_ms(h.now_ms), 3);
    let out = h.send(&cmd);
    assert_denied(&out, DenyReason::EpochAhead);
    assert!(out.contains(&Output::RevocationResync { have_epoch: 0 }));
}

/// The broker drops epoch 1 and delivers epoch 2.
fn epoch_gap(h: &mut H) -> Vec<Output> {
    revoke(h, 2, vec![Revoked::Carrier(h.kit.carrier.clone())])
}

#[test]
fn s16_revocation_gap_requests_resync_and_is_not_applied() {
    let mut h = harness(206);
    let out = epoch_gap(&mut h);
    assert_eq!(out, vec![Output::RevocationResync { have_epoch: 0 }]);
    assert_eq!(h.lock.epoch(), 0);
    // After the resync, both apply in order.
    revoke(&mut h, 1, vec![]);
    epoch_gap(&mut h);
    assert_eq!(h.lock.epoch(), 2);
}

#[test]
fn s16_without_the_epoch_guard_a_gap_is_skipped_over() {
    let mut h = harness(206);
    let _off = disable(Guard::RevocationEpoch);
    epoch_gap(&mut h);
    assert_eq!(h.lock.epoch(), 2, "epoch 1's revocations are silently lost");
}

/// A broker replays epoch 1 (a revocation with nothing in it) to a lock at epoch 2, hoping
/// to roll it back to an epoch whose contexts are still accepted.
fn replayed_revocation(h: &mut H) -> Vec<Output> {
    let first = h.kit.revocation(1, vec![], h.kit.server_ms(h.now_ms));
    h.input(Input::Message(first.clone()));
    revoke(h, 2, vec![Revoked::Driver(h.kit.driver.public())]);
    h.input(Input::Message(first))
}

#[test]
fn s16_replayed_revocation_is_ignored() {
    let mut h = harness(207);
    let out = replayed_revocation(&mut h);
    assert_eq!(
        out,
        vec![Output::Rejected(InputError::RevocationReplayed {
            got: 1,
            have: 2
        })]
    );
    assert_eq!(h.lock.epoch(), 2);
}

#[test]
fn s16_without_the_epoch_guard_a_replayed_revocation_rolls_the_epoch_back() {
    let mut h = harness(207);
    let _off = disable(Guard::RevocationEpoch);
    replayed_revocation(&mut h);
    assert_eq!(h.lock.epoch(), 1);
}

#[test]
fn s16_revocation_not_signed_by_the_server_is_rejected() {
    let mut h = harness(208);
    let mut other = h.kit.clone();
    other.server = KeyPair::generate(&mut rng(6));
    let bytes = other.revocation(1, vec![], 0);
    assert_eq!(
        h.input(Input::Message(bytes)),
        vec![Output::Rejected(InputError::BadAuth)]
    );
    assert_eq!(h.lock.epoch(), 0);
}

#[test]
fn s16_revocations_survive_a_reboot() {
    let mut h = harness(209);
    let driver = h.kit.driver.public();
    revoke(&mut h, 1, vec![Revoked::Driver(driver)]);
    h.reboot();
    assert_eq!(h.lock.epoch(), 1);
    let (cmd, _, _) = h.valid_command();
    assert_denied(&h.send(&cmd), DenyReason::Revoked);
}

#[test]
fn s16_revoked_items_limit_keeps_the_old_epoch() {
    let mut r = rng(210);
    let kit = Kit::new(&mut r);
    let mut cfg = kit.config();
    cfg.max_revoked_items = 3;
    let mut h = Harness::with_config(kit, cfg, r);
    let items = |n: u8| -> Vec<Revoked> {
        (0..n)
            .map(|i| Revoked::Grant(doorward_proto::GrantId([i; 16])))
            .collect()
    };
    revoke(&mut h, 1, items(3));
    assert_eq!(h.lock.epoch(), 1);
    let carrier = h.kit.carrier.clone();
    let out = revoke(&mut h, 2, vec![Revoked::Carrier(carrier)]);
    assert_eq!(out, vec![Output::Rejected(InputError::RevocationTableFull)]);
    assert_eq!(h.lock.epoch(), 1);
    // Contexts from the server's newer epoch are then refused: fail closed.
    let nonce = h.nonce();
    let (spec, token) = h.fresh_grant();
    let cmd = h
        .kit
        .command(nonce, &token, &spec, h.kit.server_ms(h.now_ms), 2);
    assert_denied(&h.send(&cmd), DenyReason::EpochAhead);
}
