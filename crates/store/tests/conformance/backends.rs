//! The two real backends the suite runs against, each on a database of its own that is
//! removed at the end: a SQLite file in a temporary directory, and a PostgreSQL schema with
//! a random name in the database `test` on 127.0.0.1:5432.

use std::any::Any;
use std::path::PathBuf;

use doorward_store::{migrate, PgConfig, PgStore, SqliteStore, Store, StoreConfig, StoreError};

/// A database the suite can open, close and reopen, and poke at from outside the store.
pub trait Backend {
    /// Opens (or reopens) the store on this backend's database.
    fn open(&self, config: StoreConfig) -> Result<Box<dyn Store>, StoreError>;
    /// Holds a lock that makes every write wait until the returned value is dropped.
    fn stall(&self) -> Box<dyn Any>;
    /// Rows in `schema_migrations`.
    fn migration_rows(&self) -> i64;
    /// Records a migration newer than this build knows, as a newer Doorward would.
    fn record_future_version(&self);
}

pub struct Sqlite {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Sqlite {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("doorward.db");
        Sqlite { _dir: dir, path }
    }

    fn conn(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    }
}

impl Backend for Sqlite {
    fn open(&self, config: StoreConfig) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(SqliteStore::open_with(&self.path, config)?))
    }

    fn stall(&self) -> Box<dyn Any> {
        let c = self.conn();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        // Closing the connection rolls back and releases the write lock.
        Box::new(c)
    }

    fn migration_rows(&self) -> i64 {
        self.conn()
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap()
    }

    fn record_future_version(&self) {
        self.conn()
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, 'future', 0)",
                [migrate::LATEST_VERSION + 1],
            )
            .unwrap();
    }
}

/// The PostgreSQL test database's connection string.
pub fn pg_url() -> String {
    let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
    format!("host=127.0.0.1 port=5432 dbname=test user={user} connect_timeout=5")
}

pub struct Postgres {
    rt: tokio::runtime::Runtime,
    admin: tokio_postgres::Client,
    schema: String,
}

impl Postgres {
    /// A fresh schema, or `None` when PostgreSQL is unreachable and `DOORWARD_SKIP_PG=1`
    /// (outside CI) allows going on without it. Never a silent skip.
    pub fn new() -> Option<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = pg_url();
        let connected = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(client)
        });
        let admin = match connected {
            Ok(c) => c,
            Err(e) => {
                let e = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                let skip = std::env::var("DOORWARD_SKIP_PG").is_ok_and(|v| v == "1");
                let msg = format!(
                    "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !! PostgreSQL is unreachable at {url}: {e}\n\
                     !! Start it (scripts/test installs and starts it), or set\n\
                     !! DOORWARD_SKIP_PG=1 to run without the PostgreSQL backend.\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
                if ci {
                    panic!("{msg}!! CI=true: the PostgreSQL conformance tests must run.\n");
                }
                if skip {
                    eprintln!("{msg}!! DOORWARD_SKIP_PG=1: this PostgreSQL test did NOT run.\n");
                    return None;
                }
                panic!("{msg}");
            }
        };
        let schema = format!(
            "doorward_test_{}_{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                ^ (&admin as *const _ as u128)
        );
        Some(Postgres { rt, admin, schema })
    }

    fn config(&self, store: StoreConfig) -> PgConfig {
        PgConfig {
            url: pg_url(),
            schema: Some(self.schema.clone()),
            store,
        }
    }

    fn exec(&self, sql: &str) {
        self.rt.block_on(self.admin.batch_execute(sql)).unwrap();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.rt.block_on(
            self.admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)),
        );
    }
}

/// A second connection holding table locks until dropped.
struct PgStall {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Drop for PgStall {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.client.batch_execute("ROLLBACK"));
    }
}

impl Backend for Postgres {
    fn open(&self, config: StoreConfig) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(PgStore::open(&self.config(config))?))
    }

    fn stall(&self) -> Box<dyn Any> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        });
        // The server holds the locks for the session whether or not this runtime is driven.
        rt.block_on(client.batch_execute(&format!(
            "BEGIN; LOCK TABLE {s}.audit_entries, {s}.audit_checkpoints, {s}.records IN ACCESS EXCLUSIVE MODE",
            s = self.schema
        )))
        .unwrap();
        Box::new(PgStall { rt, client })
    }

    fn migration_rows(&self) -> i64 {
        self.rt
            .block_on(self.admin.query_one(
                &format!("SELECT COUNT(*) FROM {}.schema_migrations", self.schema),
                &[],
            ))
            .unwrap()
            .get(0)
    }

    fn record_future_version(&self) {
        self.exec(&format!(
            "INSERT INTO {}.schema_migrations (version, name, applied_ms) VALUES ({}, 'future', 0)",
            self.schema,
            migrate::LATEST_VERSION + 1
        ));
    }
}
