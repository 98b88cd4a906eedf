//! Doorward's storage: one [`Store`] interface with two real backends, SQLite
//! ([`SqliteStore`], the embedded default) and PostgreSQL ([`PgStore`], for several server
//! nodes on one database), passing one conformance suite (`tests/conformance.rs`).
//!
//! What it keeps, every row under its home (I11: every read names the home):
//! - the audit log (I7): [`AuditEntry`]s and signed [`AuditCheckpoint`]s in chain order,
//!   durable before they are acknowledged. The store refuses an entry that does not continue
//!   the stored chain (a gap, a replay or a fork), so what it holds always verifies;
//! - the registry: homes, devices with their public keys, carriers, drivers and deliveries
//!   ([`Record`]), and the HTTP API's principals: accounts, sessions and login links (by
//!   token hash), home owners, carriers, API-key hashes, driver keys, each carrier's drivers
//!   and deliveries (server-wide rows under the [`AUTH_NS`] namespace, a carrier's under
//!   [`carrier_ns`]);
//! - device durable state: last sequence number, chain head and the wrapped session key
//!   ([`DeviceState`]), so a restart needs no re-handshake;
//! - one keystore row of opaque, already encrypted bytes;
//! - recorded footage ([`FootageSegment`]): each segment a camera proved while recording,
//!   its frames sealed by the server under the home's key once uploaded, and each home's
//!   retention.
//!
//! Writes go through one writer thread per store, fed by a bounded queue
//! ([`StoreConfig::queue_capacity`]): a full queue is a typed error at once
//! ([`StoreError::QueueFull`]), which the server turns into a deny and an alarm (I8). The
//! writer commits everything queued in one transaction (group commit: one fsync for many
//! concurrent appenders) and only then acknowledges each write through its [`Pending`],
//! which a thread waits on ([`Pending::wait`]) and async code awaits. Reads are blocking
//! calls; async code runs them on a blocking thread (`tokio::task::spawn_blocking`).
//!
//! Migrations are versioned, applied at open and recorded in `schema_migrations`
//! ([`migrate`]).
//!
//! It is not the decision core: it hashes and signs nothing (the control core's
//! [`doorward_control::audit::AuditChain`] does), and it never decides who may open a door.
//! It may depend on `doorward-proto`, the control core's audit types, SQLite (bundled) and
//! PostgreSQL client libraries; the server depends on it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
mod error;
pub mod footage;
pub mod migrate;
mod pg;
mod records;
mod sqlite;
mod store;
mod writer;

pub use doorward_control::audit::{AuditCheckpoint, AuditEntry};
pub use error::StoreError;
pub use footage::{FootageCursor, FootageQuery, FootageSegment};
pub use pg::{PgConfig, PgStore};
pub use records::{
    carrier_ns, Account, ApiKey, Carrier, CarrierAccount, CarrierDriver, Delivery, DeliveryRef,
    DeliveryState, Device, DeviceKind, DeviceState, Driver, DriverKey, Home, HomeOwner, LoginLink,
    PolicyRow, Record, RecordKind, Session, AUTH_NS,
};
pub use sqlite::SqliteStore;
pub use store::{AuditHead, Store, StoreConfig};
pub use writer::Pending;

/// Most writes waiting for the writer thread, by default ([`StoreConfig::queue_capacity`]).
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
/// Most writes committed in one transaction, by default ([`StoreConfig::batch_max_writes`]).
pub const DEFAULT_BATCH_MAX_WRITES: usize = 1024;
/// Most homes whose chain head the writer keeps in memory, by default
/// ([`StoreConfig::cached_heads_max`]).
pub const DEFAULT_CACHED_HEADS_MAX: usize = 100_000;
/// Longest a write waits for a lock held by another connection, by default, in milliseconds.
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5_000;
/// Most rows one read returns (audit entries, checkpoints, records, device states).
pub const MAX_READ_ROWS: usize = 10_000;
/// Largest encoded registry record, in bytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// Largest wrapped session key in a device state, in bytes.
pub const MAX_WRAPPED_KEY_BYTES: usize = 512;
/// Largest keystore row, in bytes.
pub const MAX_KEYSTORE_BYTES: usize = 64 * 1024;
/// Largest encoded signed audit checkpoint, in bytes.
pub const MAX_CHECKPOINT_BYTES: usize = 1024;
