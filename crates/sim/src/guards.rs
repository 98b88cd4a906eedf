//! Which scenarios each guard protects: with the guard switched off, those scenarios must
//! show a breach or an undetected attack (the guard-off test in `tests/guards.rs`).

use doorward_proto::guard::Guard;

/// Guard → the scenarios whose attacks it stops. Guards not listed here either protect
/// something the lab does not simulate (pairing, the audit verifier, battery) or are backed
/// up by another check in every scenario (see the crate's tests and SECURITY.md).
pub static GUARD_SCENARIOS: &[(Guard, &[&str])] = &[];
