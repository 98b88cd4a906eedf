//! The one error type of the store.

use doorward_proto::Id;

/// Why a store operation failed. Every variant means "not stored" (or "not read"): the
/// server denies what depended on it and raises an alarm (I8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The writer's queue holds [`crate::StoreConfig::queue_capacity`] writes already.
    #[error("the store's write queue is full ({limit} writes waiting)")]
    QueueFull {
        /// The queue's capacity, in writes.
        limit: usize,
    },
    /// A value, or a read's row count, is over its limit.
    #[error("{what} of {len} is over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size (bytes, or rows for a read).
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An audit entry does not take the next index of its home's stored chain (a gap or a
    /// replay).
    #[error(
        "audit entry {found} of home {home} does not follow the stored chain (next is {expected})"
    )]
    AuditOutOfOrder {
        /// The home.
        home: Id,
        /// The index the next entry must have.
        expected: u64,
        /// The index it has.
        found: u64,
    },
    /// An audit entry's `prev` is not the hash of the stored last entry (a fork).
    #[error("audit entry {index} of home {home} forks the stored chain")]
    AuditFork {
        /// The home.
        home: Id,
        /// The entry's index.
        index: u64,
    },
    /// A checkpoint does not sign the stored head of its home's chain, or names another home.
    #[error("checkpoint of {count} entries does not match the stored chain of home {home}")]
    CheckpointMismatch {
        /// The home the checkpoint was written under.
        home: Id,
        /// The count it signs.
        count: u64,
    },
    /// The database was migrated by a newer Doorward: this one does not know its schema.
    #[error("database schema version {found} is newer than this build knows ({known}): upgrade Doorward")]
    SchemaTooNew {
        /// The newest version recorded in the database.
        found: u32,
        /// The newest version this build has.
        known: u32,
    },
    /// The database cannot be reached or opened.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The store is closed: its writer has stopped.
    #[error("the store is closed")]
    Closed,
    /// A stored row does not decode: the database was altered or damaged.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database refused an operation.
    #[error("database error: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Backend(format!("postgres: {e}"))
    }
}
