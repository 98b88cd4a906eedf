//! The lock agent's core: the sans-IO state machine that decides unlocks and drives the bolt.
//!
//! [`Lock`] takes inputs (a driver's nonce request, envelopes from the server and the paired
//! camera, bolt, door and battery readings, write acknowledgements, ticks) with the lock's own
//! monotonic time, and returns [`Output`]s (nonces for the local channel, signed reports,
//! writes, motor commands). It decides each unlock itself (I1, I2, I3, I8): the server's signed
//! unlock context bound to a nonce the lock issued, a fresh server receipt of the camera chain,
//! the camera's own attestation, the driver's signature, a grant chaining to the home root,
//! single use across reboots, revocations, battery reserve. It relocks on its own when the
//! door closes (I3), confirms every actuation with the bolt sensor (I6), reports every
//! `proof_interval_ms` during a cycle (I12), and locks itself out of grants when the camera's
//! signed checkpoints stop (I4).
//!
//! It is not the agent: it opens no socket or file, reads no clock, draws no OS randomness.
//! The agent (or the simulator) writes [`LockState`] to disk, moves the motor, carries
//! envelopes, and calls [`Lock::handle`] with [`Input::Tick`] by [`Lock::next_deadline_ms`].
//!
//! It depends only on `doorward-proto` and pure libraries. [`testkit`] builds a fully set-up
//! lock, its keys and valid unlock commands for tests, benchmarks and the attack lab.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod decide;
mod lock;
mod state;
pub mod testkit;

pub use config::*;
pub use lock::{BoltCommand, Input, InputError, Lock, Output, Sensors, PERSIST_RETRY_MS};
pub use state::{LockState, SpentGrant};
