//! Doorward's server decision core: the registry of homes, doors, carriers and drivers; the
//! checks on every device message; the delivery lifecycle; the unlock policy and the unlock
//! contexts it signs; supervision deadlines; truthful state; alarms; and the audit records of
//! all of it.
//!
//! It is sans-IO: [`Control::handle`] takes the server's wall time and one [`Input`] and
//! returns [`Output`]s (envelopes to publish, alarms, approval requests, decisions, audit
//! records); [`Control::next_deadline_ms`] says when to call it again. It never reads a
//! clock, opens a socket, spawns a thread or draws from the OS RNG (its ChaCha20 stream is
//! seeded by the caller). It does not store anything: the server shell appends the
//! [`AuditEvent`]s to the [`audit`] chain and persists what it must.
//!
//! It is not the lock: the lock verifies every unlock itself (I1), and nothing here is
//! shown as a state because a command was sent (I5).
//!
//! It may depend on `doorward-proto` and pure libraries only; the server shell and the
//! simulator depend on it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod bench;
pub mod config;
mod control;
mod device;
mod entry;
pub mod io;
pub mod registry;
mod restore;
pub mod snapshot;
mod stream;
pub mod view;
pub mod wheel;

pub use config::Config;
pub use control::{advice, Control};
pub use io::{
    AlarmNotice, ApprovalRequest, AuditEvent, AuditKind, EntryDecision, EntryRequest, Evidence,
    Input, Output, Phase, RegistryChange, RejectReason,
};
pub use registry::{
    Admin, AdminError, DeliverySetup, DoorKind, DoorSetup, HomePolicy, HomeSetup, WeeklyWindow,
};
pub use snapshot::DeviceSnapshot;
pub use view::{
    CameraValue, DeliveryView, DoorState, DoorValue, HomeState, LockValue, Shown, View,
};
