//! Shared helpers for the lock's integration tests.
#![allow(dead_code)]

use doorward_lock::testkit::{actuations, denials, Harness};
use doorward_lock::{BoltCommand, Output};
use doorward_proto::{DenyReason, Signed, UnlockCommand, UnlockContext, WitnessAttestation};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub type H = Harness<ChaCha20Rng>;

/// A booted, synchronised lock for a new home; the seed is printed if the test fails.
pub fn harness(seed: u64) -> H {
    eprintln!("seed {seed}");
    Harness::new(ChaCha20Rng::seed_from_u64(seed))
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Whether the outputs retracted the bolt.
pub fn retracted(out: &[Output]) -> bool {
    actuations(out).contains(&BoltCommand::Retract)
}

/// Asserts the outputs deny with `reason` (reported) and never retract.
#[track_caller]
pub fn assert_denied(out: &[Output], reason: DenyReason) {
    assert_eq!(denials(out), vec![reason], "outputs: {out:#?}");
    assert!(!retracted(out), "a denied unlock must not move the bolt");
}

/// Asserts the outputs retract the bolt with no denial.
#[track_caller]
pub fn assert_unlocked(out: &[Output]) {
    assert_eq!(denials(out), vec![], "outputs: {out:#?}");
    assert!(retracted(out), "expected the bolt to retract: {out:#?}");
}

/// Re-signs the command's context with the server key after `f` changed it.
pub fn with_context(
    h: &H,
    cmd: &UnlockCommand,
    f: impl FnOnce(&mut UnlockContext),
) -> UnlockCommand {
    let mut ctx = cmd.context.body.clone();
    f(&mut ctx);
    let mut c = cmd.clone();
    c.context = Signed::sign(ctx, &h.kit.server);
    c
}

/// Re-signs the command's attestation with the camera key after `f` changed it.
pub fn with_witness(
    h: &H,
    cmd: &UnlockCommand,
    f: impl FnOnce(&mut WitnessAttestation),
) -> UnlockCommand {
    let mut w = cmd.witness.body.clone();
    f(&mut w);
    let mut c = cmd.clone();
    c.witness = Signed::sign(w, &h.kit.camera);
    c
}
