//! Which scenarios each guard protects: with the guard switched off, each of those scenarios
//! must show a breach, an undetected attack, or (for `TruthfulState`) time falsely shown
//! "locked" — the guard-off test in `tests/guards.rs` checks it.

use doorward_proto::guard::Guard;

/// Guard → the scenarios whose attacks it stops.
///
/// Guards not listed change nothing in the lab, each for a stated reason:
/// - `UnlockContext`: a replayed command is also refused for its old server time
///   (`ClockSkew`), the open cycle or the spent grant; an attacker with the server key needs no
///   replay.
/// - `WitnessReceipt`: in S22 the server's honest, stale receipt is also far behind the
///   camera's live attestation, so `WitnessAttestation`'s bound on unreceipted segments
///   refuses it too.
/// - `WitnessLockout`: a new grant while the camera is dead also lacks the camera's live
///   attestation (`WitnessAttestation`).
/// - `BatteryReserve`: the lab does not drain batteries.
/// - `CheckpointChain`: the lab injects forged messages (caught by `EnvelopeAuth`) and replays
///   an old authentic one (caught by `StreamSequence`, S24), but does not alter MAC'd device
///   messages at the broker, which is what a broken checkpoint chain would reveal.
/// - `PairingConfirmation`, `AuditHashChain`, `AuditCheckpoint`, `SessionReplay`: pairing, the
///   audit verifier and session handshakes are outside the simulated delivery.
pub static GUARD_SCENARIOS: &[(Guard, &[&str])] = &[
    (Guard::EnvelopeAuth, &["S8"]),
    (Guard::WitnessAttestation, &["S2"]),
    (Guard::GrantChain, &["S7", "S9"]),
    (Guard::DriverSignature, &["S7"]),
    (Guard::SpentGrants, &["S6", "S21"]),
    (Guard::AutoRelock, &["S1", "S21"]),
    (Guard::ClockSkew, &["S10"]),
    (Guard::RevocationEpoch, &["S16"]),
    (Guard::WitnessSupervision, &["S1", "S11", "S14", "S15"]),
    (Guard::LockSupervision, &["S3"]),
    (Guard::ConfirmedActuation, &["S3"]),
    (Guard::TruthfulState, &["S17"]),
    (Guard::FreezeDetection, &["S4"]),
    (Guard::LoopDetection, &["S5"]),
    (Guard::BlindDetection, &["S18"]),
    (Guard::SceneCheck, &["S17"]),
    (Guard::EgressCheck, &["S19", "S20"]),
    (Guard::Policy, &["S6"]),
    (Guard::StreamSequence, &["S24"]),
];
