//! Test-only switches that turn one security guard off at a time.
//!
//! Each guard in the cores asks [`enabled`] before it checks. In every normal build that is a
//! constant `true` the optimiser removes. With the `guard-switches` feature (enabled only as a
//! dev-dependency of the attack lab and of tests) a test can switch one guard off for the
//! current thread and show that its attacks then succeed: proof that the guard is what stops
//! them. This crate's own unit tests always have the switches, so its guards are tested
//! both ways too. ARCHITECTURE.md maps each guard to its invariant and its tests.

/// Every switchable guard. The name says what it checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Guard {
    /// Envelope signatures and session MACs are verified (I10).
    EnvelopeAuth,
    /// The lock requires the server's signed unlock context bound to its nonce (I1).
    UnlockContext,
    /// The lock requires a fresh server receipt of the camera chain (I1, S22).
    WitnessReceipt,
    /// The lock requires the camera's own signature over the nonce (I1, S2).
    WitnessAttestation,
    /// The lock checks the grant chains to the home root and its bounds (I2).
    GrantChain,
    /// The lock checks the driver's signature over the nonce and the grant's driver (I2).
    DriverSignature,
    /// The lock refuses a spent grant, across reboots (I3).
    SpentGrants,
    /// The lock relocks by itself on door close or maximum open time (I3).
    AutoRelock,
    /// The lock refuses to unlock without battery for one more relock (I3).
    BatteryReserve,
    /// The lock checks clock skew against the server time (I8, S10).
    ClockSkew,
    /// The lock refuses contexts from another revocation epoch and revoked grants (S16).
    RevocationEpoch,
    /// The lock refuses grants while its witness is lost (I4).
    WitnessLockout,
    /// Supervision of camera proofs during an entry (I4).
    WitnessSupervision,
    /// Supervision of lock reports during an open cycle (I12).
    LockSupervision,
    /// Actuation must be confirmed by a bolt report within `confirm_ms` (I6).
    ConfirmedActuation,
    /// Shown state is UNKNOWN past freshness; nothing inferred from commands (I5).
    TruthfulState,
    /// Freeze detection on frame digests (I7).
    FreezeDetection,
    /// Loop detection on frame digests (I7).
    LoopDetection,
    /// Blinded or covered lens detection (I7).
    BlindDetection,
    /// Door sensor versus camera view of the door (I5, I7).
    SceneCheck,
    /// Witnessed egress: nobody left in the entry zone, as many out as in (I13).
    EgressCheck,
    /// Device stream sequence and replay checks (I7, I10).
    StreamSequence,
    /// Server-side policy: opt-in, windows, vacation, live approval, blocked drivers (I9).
    Policy,
    /// Pairing: a peer's long-term keys are accepted only under the key-confirmation MAC
    /// derived from the setup code's PAKE, so the broker can substitute no key (I10).
    PairingConfirmation,
    /// The audit verifier checks every hash link and the continuity of indices (I7).
    AuditHashChain,
    /// The audit verifier checks every checkpoint's signature and that it matches the chain,
    /// and that a checkpoint covers the last entry (I7).
    AuditCheckpoint,
    /// The server compares each signed device checkpoint with its own running head over the
    /// messages it accepted, so a MAC'd message altered or injected before it is alarmed (I7,
    /// I10).
    CheckpointChain,
    /// A session hello cannot displace a working session: the server keeps the current key
    /// until a message MAC'd under the new one arrives, and refuses a hello it saw recently
    /// (I10).
    SessionReplay,
}

#[cfg(any(test, feature = "guard-switches"))]
mod imp {
    use super::Guard;
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    thread_local! {
        static OFF: RefCell<BTreeSet<Guard>> = const { RefCell::new(BTreeSet::new()) };
    }

    pub fn enabled(g: Guard) -> bool {
        OFF.with(|off| !off.borrow().contains(&g))
    }

    /// Keeps a guard off until dropped.
    #[must_use = "the guard is back on as soon as this is dropped"]
    pub struct Disabled(Guard);

    /// Turns `g` off on this thread until the returned value is dropped.
    pub fn disable(g: Guard) -> Disabled {
        OFF.with(|off| off.borrow_mut().insert(g));
        Disabled(g)
    }

    impl Drop for Disabled {
        fn drop(&mut self) {
            OFF.with(|off| off.borrow_mut().remove(&self.0));
        }
    }
}

/// Whether guard `g` is on. Always `true` unless built with `guard-switches`.
#[inline(always)]
pub fn enabled(g: Guard) -> bool {
    #[cfg(any(test, feature = "guard-switches"))]
    {
        imp::enabled(g)
    }
    #[cfg(not(any(test, feature = "guard-switches")))]
    {
        let _ = g;
        true
    }
}

#[cfg(any(test, feature = "guard-switches"))]
pub use imp::{disable, Disabled};

/// Whether this build can switch guards off. `false` in every build a user runs; the test
/// suite checks that the release binary is built without the switches.
pub const SWITCHES_COMPILED: bool = cfg!(feature = "guard-switches");
