//! The database schema, as numbered migrations applied at open.
//!
//! Each migration runs once, in order, in a transaction that also records it in
//! `schema_migrations (version, name, applied_ms)`; opening a database again applies nothing.
//! A database with a version newer than [`LATEST_VERSION`] is refused
//! ([`crate::StoreError::SchemaTooNew`]) rather than written by code that does not know it.
//! Never edit a released migration: add the next one.

/// One schema change, in both dialects.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its number, from 1, without gaps.
    pub version: u32,
    /// What it does, for the `schema_migrations` table.
    pub name: &'static str,
    /// SQLite statements.
    pub sqlite: &'static str,
    /// PostgreSQL statements.
    pub postgres: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit log",
        sqlite: "
            CREATE TABLE audit_entries (
                home TEXT NOT NULL,
                idx INTEGER NOT NULL,
                time_ms INTEGER NOT NULL,
                kind INTEGER NOT NULL,
                device TEXT,
                hash BLOB NOT NULL,
                entry BLOB NOT NULL,
                PRIMARY KEY (home, idx)
            ) WITHOUT ROWID;
            CREATE TABLE audit_checkpoints (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                home TEXT NOT NULL,
                count INTEGER NOT NULL,
                time_ms INTEGER NOT NULL,
                checkpoint BLOB NOT NULL
            );
            CREATE INDEX audit_checkpoints_home_count ON audit_checkpoints (home, count, id);
        ",
        postgres: r#"
            CREATE TABLE audit_entries (
                home TEXT COLLATE "C" NOT NULL,
                idx BIGINT NOT NULL,
                time_ms BIGINT NOT NULL,
                kind INTEGER NOT NULL,
                device TEXT,
                hash BYTEA NOT NULL,
                entry BYTEA NOT NULL,
                PRIMARY KEY (home, idx)
            );
            CREATE TABLE audit_checkpoints (
                id BIGSERIAL PRIMARY KEY,
                home TEXT COLLATE "C" NOT NULL,
                count BIGINT NOT NULL,
                time_ms BIGINT NOT NULL,
                checkpoint BYTEA NOT NULL
            );
            CREATE INDEX audit_checkpoints_home_count ON audit_checkpoints (home, count, id);
        "#,
    },
    Migration {
        version: 2,
        name: "registry, device state, keystore",
        sqlite: "
            CREATE TABLE records (
                home TEXT NOT NULL,
                kind INTEGER NOT NULL,
                id TEXT NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (home, kind, id)
            ) WITHOUT ROWID;
            CREATE TABLE device_states (
                home TEXT NOT NULL,
                device TEXT NOT NULL,
                last_seq BLOB NOT NULL,
                chain_head BLOB NOT NULL,
                wrapped_session_key BLOB,
                updated_ms INTEGER NOT NULL,
                PRIMARY KEY (home, device)
            ) WITHOUT ROWID;
            CREATE TABLE keystore (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                data BLOB NOT NULL,
                updated_ms INTEGER NOT NULL
            );
        ",
        postgres: r#"
            CREATE TABLE records (
                home TEXT COLLATE "C" NOT NULL,
                kind INTEGER NOT NULL,
                id TEXT COLLATE "C" NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (home, kind, id)
            );
            CREATE TABLE device_states (
                home TEXT COLLATE "C" NOT NULL,
                device TEXT COLLATE "C" NOT NULL,
                last_seq BYTEA NOT NULL,
                chain_head BYTEA NOT NULL,
                wrapped_session_key BYTEA,
                updated_ms BIGINT NOT NULL,
                PRIMARY KEY (home, device)
            );
            CREATE TABLE keystore (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                data BYTEA NOT NULL,
                updated_ms BIGINT NOT NULL
            );
        "#,
    },
    Migration {
        version: 3,
        name: "recorded footage",
        sqlite: "
            CREATE TABLE footage (
                home TEXT NOT NULL,
                camera TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at_ms INTEGER NOT NULL,
                segment BLOB NOT NULL,
                frames BLOB NOT NULL,
                head BLOB NOT NULL,
                camera_key BLOB NOT NULL,
                delivery TEXT,
                proof BLOB NOT NULL,
                sealed BLOB,
                uploaded_ms INTEGER,
                PRIMARY KEY (home, camera, seq)
            ) WITHOUT ROWID;
            CREATE INDEX footage_home_time ON footage (home, at_ms, camera, seq);
            CREATE INDEX footage_home_delivery ON footage (home, delivery, at_ms);
            CREATE TABLE footage_settings (
                home TEXT PRIMARY KEY,
                retention_days INTEGER NOT NULL,
                updated_ms INTEGER NOT NULL
            ) WITHOUT ROWID;
        ",
        postgres: r#"
            CREATE TABLE footage (
                home TEXT COLLATE "C" NOT NULL,
                camera TEXT COLLATE "C" NOT NULL,
                seq BIGINT NOT NULL,
                at_ms BIGINT NOT NULL,
                segment BYTEA NOT NULL,
                frames BYTEA NOT NULL,
                head BYTEA NOT NULL,
                camera_key BYTEA NOT NULL,
                delivery TEXT COLLATE "C",
                proof BYTEA NOT NULL,
                sealed BYTEA,
                uploaded_ms BIGINT,
                PRIMARY KEY (home, camera, seq)
            );
            CREATE INDEX footage_home_time ON footage (home, at_ms, camera, seq);
            CREATE INDEX footage_home_delivery ON footage (home, delivery, at_ms);
            CREATE TABLE footage_settings (
                home TEXT COLLATE "C" PRIMARY KEY,
                retention_days INTEGER NOT NULL,
                updated_ms BIGINT NOT NULL
            );
        "#,
    },
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The table that records applied migrations, in both dialects (the same text).
pub(crate) const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_ms BIGINT NOT NULL
)";

/// Milliseconds since the Unix epoch, for `applied_ms` (a record for people, never a
/// decision).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks a database's recorded version against this build's.
pub(crate) fn check_version(found: u32) -> Result<(), crate::StoreError> {
    if found > LATEST_VERSION {
        return Err(crate::StoreError::SchemaTooNew {
            found,
            known: LATEST_VERSION,
        });
    }
    Ok(())
}
