//! The PostgreSQL backend: one writer connection that pipelines each batch into one
//! transaction (group commit), one reader connection, both driven by a small private tokio
//! runtime so the [`Store`] interface stays the same as SQLite's.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use doorward_control::audit::{AuditCheckpoint, AuditEntry};
use doorward_proto::{Id, Signed};
use futures_util::future::try_join_all;
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::footage::{
    footage_columns, footage_from_row, query_bounds, FootageQuery, FootageSegment,
};
use crate::migrate::{self, MIGRATIONS, SCHEMA_TABLE};
use crate::records::{DeviceState, Record, RecordKind};
use crate::sqlite::{checkpoint_from_row, device_state_from_row, digest, entry_from_row, id};
use crate::store::{check_max, AuditHead, Store, StoreConfig};
use crate::writer::{to_i64, ChainHead, CheckpointRow, EntryRow, Op, Pending, Queue, Sink};
use crate::StoreError;

/// Longest a schema name may be, in bytes (PostgreSQL's identifier limit is 63).
pub const MAX_SCHEMA_NAME_BYTES: usize = 63;
/// Longest connecting may take, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Key of the advisory lock that serialises migrations between nodes opening at once.
const MIGRATION_LOCK_KEY: i64 = 0x646f_6f72_7761_7264; // "doorward"

/// Where the PostgreSQL store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgConfig {
    /// A `postgres://` URL or a `key=value` connection string.
    pub url: String,
    /// A schema to keep the tables in (created if missing); `None` uses the server's
    /// `search_path` (normally `public`). Letters, digits and `_` only.
    pub schema: Option<String>,
    /// Writer limits.
    pub store: StoreConfig,
}

impl PgConfig {
    /// A config for `url` with default limits and the default schema.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            schema: None,
            store: StoreConfig::default(),
        }
    }
}

/// Statements the writer prepares once, so a batch is one pipelined round trip.
struct WriterStatements {
    entry: Statement,
    checkpoint: Statement,
    put_record: Statement,
    delete_record: Statement,
    put_device_state: Statement,
    put_keystore: Statement,
    head: Statement,
    put_footage: Statement,
    put_footage_sealed: Statement,
    delete_footage: Statement,
    put_footage_retention: Statement,
}

/// The store on a PostgreSQL database.
pub struct PgStore {
    // Taken apart in `Drop`: the writer first, the runtime that drives the connections last.
    queue: Option<Queue>,
    reader: Client,
    reader_statements: Mutex<HashMap<&'static str, Statement>>,
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writer commits what is queued and stops before the runtime it blocks on.
        drop(self.queue.take());
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime blocks, which panics inside async code (the server's).
            rt.shutdown_background();
        }
    }
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCHEMA_NAME_BYTES
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

async fn connect(handle: &Handle, config: &PgConfig) -> Result<Client, StoreError> {
    let mut pg = tokio_postgres::Config::from_str(&config.url)
        .map_err(|e| StoreError::Unavailable(format!("postgres URL: {e}")))?;
    pg.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    pg.application_name("doorward");
    let mut options = format!(
        "-c lock_timeout={} -c synchronous_commit=on",
        config.store.busy_timeout_ms
    );
    if let Some(s) = &config.schema {
        options.push_str(&format!(" -c search_path={s}"));
    }
    pg.options(&options);
    let (client, conn) = pg
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(format!("postgres: {e}")))?;
    handle.spawn(conn);
    Ok(client)
}

async fn migrate_pg(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    tx.batch_execute(SCHEMA_TABLE).await?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    migrate::check_version(current as u32)?;
    for m in MIGRATIONS.iter().filter(|m| m.version as i32 > current) {
        tx.batch_execute(m.postgres).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
            &[&(m.version as i32), &m.name, &migrate::now_ms()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl PgStore {
    /// Connects, creates the schema if one is named and missing, and migrates.
    pub fn open(config: &PgConfig) -> Result<PgStore, StoreError> {
        if let Some(s) = &config.schema {
            if !valid_schema(s) {
                return Err(StoreError::Unavailable(format!(
                    "schema name {s:?}: use letters, digits and _ (at most {MAX_SCHEMA_NAME_BYTES})"
                )));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("doorward-store-pg-io")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (writer, reader, statements) = handle.block_on(async {
            let mut writer = connect(&handle, config).await?;
            if let Some(s) = &config.schema {
                // The name was checked above: it needs no quoting.
                writer
                    .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                    .await?;
            }
            migrate_pg(&mut writer).await?;
            let statements = WriterStatements {
                entry: writer
                    .prepare(
                        "INSERT INTO audit_entries (home, idx, time_ms, kind, device, hash, entry)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .await?,
                checkpoint: writer
                    .prepare(
                        "INSERT INTO audit_checkpoints (home, count, time_ms, checkpoint)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .await?,
                put_record: writer
                    .prepare(
                        "INSERT INTO records (home, kind, id, data) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (home, kind, id) DO UPDATE SET data = excluded.data",
                    )
                    .await?,
                delete_record: writer
                    .prepare("DELETE FROM records WHERE home = $1 AND kind = $2 AND id = $3")
                    .await?,
                put_device_state: writer
                    .prepare(
                        "INSERT INTO device_states
                             (home, device, last_seq, chain_head, wrapped_session_key, updated_ms)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (home, device) DO UPDATE SET
                             last_seq = excluded.last_seq, chain_head = excluded.chain_head,
                             wrapped_session_key = excluded.wrapped_session_key,
                             updated_ms = excluded.updated_ms",
                    )
                    .await?,
                put_keystore: writer
                    .prepare(
                        "INSERT INTO keystore (id, data, updated_ms) VALUES (1, $1, $2)
                         ON CONFLICT (id) DO UPDATE SET data = excluded.data,
                             updated_ms = excluded.updated_ms",
                    )
                    .await?,
                head: writer.prepare(HEAD_SQL).await?,
                put_footage: writer
                    .prepare(
                        "INSERT INTO footage (home, camera, seq, at_ms, segment, frames, head,
                             camera_key, delivery, proof)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (home, camera, seq) DO NOTHING",
                    )
                    .await?,
                put_footage_sealed: writer
                    .prepare(
                        "UPDATE footage SET sealed = $4, uploaded_ms = $5
                         WHERE home = $1 AND camera = $2 AND seq = $3 AND sealed IS NULL",
                    )
                    .await?,
                delete_footage: writer
                    .prepare("DELETE FROM footage WHERE home = $1 AND camera = $2 AND seq = $3")
                    .await?,
                put_footage_retention: writer
                    .prepare(
                        "INSERT INTO footage_settings (home, retention_days, updated_ms)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (home) DO UPDATE SET
                             retention_days = excluded.retention_days,
                             updated_ms = excluded.updated_ms",
                    )
                    .await?,
            };
            let reader = connect(&handle, config).await?;
            Ok::<_, StoreError>((writer, reader, statements))
        })?;
        let sink = PgSink {
            client: writer,
            handle: handle.clone(),
            st: statements,
        };
        Ok(PgStore {
            queue: Some(Queue::start("postgres", sink, &config.store)),
            reader,
            reader_statements: Mutex::new(HashMap::new()),
            runtime: Some(runtime),
        })
    }

    fn queue(&self) -> Result<&Queue, StoreError> {
        self.queue.as_ref().ok_or(StoreError::Closed)
    }

    fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .handle()
    }

    /// Runs one read query on the reader connection (statements prepared once).
    fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.handle().block_on(async {
            let cached = self
                .reader_statements
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(sql)
                .cloned();
            let st = match cached {
                Some(st) => st,
                None => {
                    let st = self.reader.prepare(sql).await?;
                    self.reader_statements
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(sql, st.clone());
                    st
                }
            };
            Ok(self.reader.query(&st, params).await?)
        })
    }
}

const HEAD_SQL: &str =
    "SELECT idx, hash FROM audit_entries WHERE home = $1 ORDER BY idx DESC LIMIT 1";

fn head_from_rows(home: &Id, rows: &[tokio_postgres::Row]) -> Result<ChainHead, StoreError> {
    match rows.first() {
        None => Ok(ChainHead::genesis(home)),
        Some(r) => Ok(ChainHead {
            next_index: r.get::<_, i64>(0) as u64 + 1,
            head: digest(r.get::<_, &[u8]>(1))?,
        }),
    }
}

struct PgSink {
    client: Client,
    handle: Handle,
    st: WriterStatements,
}

type Param = Box<dyn ToSql + Sync + Send>;

impl PgSink {
    /// The statements of `op`, in order.
    fn calls<'a>(
        &'a self,
        op: &Op,
        out: &mut Vec<(&'a Statement, Vec<Param>)>,
    ) -> Result<(), StoreError> {
        match op {
            Op::Audit {
                home,
                entry,
                checkpoint,
                ..
            } => {
                if let Some(EntryRow { entry, bytes }) = entry.as_deref() {
                    out.push((
                        &self.st.entry,
                        vec![
                            Box::new(home.as_str().to_owned()),
                            Box::new(to_i64(entry.index, "audit index")?),
                            Box::new(to_i64(entry.time_ms, "audit time")?),
                            Box::new(i32::from(entry.kind.0)),
                            Box::new(entry.device.as_ref().map(|d| d.as_str().to_owned())),
                            Box::new(entry.hash.0.to_vec()),
                            Box::new(bytes.clone()),
                        ],
                    ));
                }
                if let Some(CheckpointRow { checkpoint, bytes }) = checkpoint.as_deref() {
                    out.push((
                        &self.st.checkpoint,
                        vec![
                            Box::new(home.as_str().to_owned()),
                            Box::new(to_i64(checkpoint.body.count, "checkpoint count")?),
                            Box::new(to_i64(checkpoint.body.time_ms, "checkpoint time")?),
                            Box::new(bytes.clone()),
                        ],
                    ));
                }
            }
            Op::PutRecord {
                home,
                kind,
                id,
                bytes,
            } => out.push((
                &self.st.put_record,
                vec![
                    Box::new(home.as_str().to_owned()),
                    Box::new(kind.code()),
                    Box::new(id.as_str().to_owned()),
                    Box::new(bytes.clone()),
                ],
            )),
            Op::DeleteRecord { home, kind, id } => out.push((
                &self.st.delete_record,
                vec![
                    Box::new(home.as_str().to_owned()),
                    Box::new(kind.code()),
                    Box::new(id.as_str().to_owned()),
                ],
            )),
            Op::PutDeviceState(s) => out.push((
                &self.st.put_device_state,
                vec![
                    Box::new(s.home.as_str().to_owned()),
                    Box::new(s.device.as_str().to_owned()),
                    Box::new(s.last_seq.to_be_bytes().to_vec()),
                    Box::new(s.chain_head.0.to_vec()),
                    Box::new(s.wrapped_session_key.clone()),
                    Box::new(to_i64(s.updated_ms, "device state time")?),
                ],
            )),
            Op::PutKeystore { bytes, updated_ms } => out.push((
                &self.st.put_keystore,
                vec![
                    Box::new(bytes.clone()),
                    Box::new(to_i64(*updated_ms, "keystore time")?),
                ],
            )),
            Op::PutFootage(f) => out.push((
                &self.st.put_footage,
                vec![
                    Box::new(f.home.as_str().to_owned()),
                    Box::new(f.camera.as_str().to_owned()),
                    Box::new(to_i64(f.seq, "footage seq")?),
                    Box::new(to_i64(f.at_ms, "footage time")?),
                    Box::new(f.segment.0.to_vec()),
                    Box::new(f.frames_bytes()),
                    Box::new(f.head.0.to_vec()),
                    Box::new(f.camera_key.0.to_vec()),
                    Box::new(f.delivery.as_ref().map(|d| d.as_str().to_owned())),
                    Box::new(f.proof.clone()),
                ],
            )),
            Op::PutFootageSealed {
                home,
                camera,
                seq,
                sealed,
                uploaded_ms,
            } => out.push((
                &self.st.put_footage_sealed,
                vec![
                    Box::new(home.as_str().to_owned()),
                    Box::new(camera.as_str().to_owned()),
                    Box::new(*seq),
                    Box::new(sealed.clone()),
                    Box::new(*uploaded_ms),
                ],
            )),
            Op::DeleteFootage { home, keys } => {
                for (camera, seq) in keys {
                    out.push((
                        &self.st.delete_footage,
                        vec![
                            Box::new(home.as_str().to_owned()),
                            Box::new(camera.as_str().to_owned()),
                            Box::new(*seq),
                        ],
                    ));
                }
            }
            Op::PutFootageRetention {
                home,
                days,
                updated_ms,
            } => out.push((
                &self.st.put_footage_retention,
                vec![
                    Box::new(home.as_str().to_owned()),
                    Box::new(i32::try_from(*days).unwrap_or(i32::MAX)),
                    Box::new(*updated_ms),
                ],
            )),
        }
        Ok(())
    }
}

impl Sink for PgSink {
    fn load_head(&mut self, home: &Id) -> Result<ChainHead, StoreError> {
        let rows = self
            .handle
            .block_on(self.client.query(&self.st.head, &[&home.as_str()]))?;
        head_from_rows(home, &rows)
    }

    fn write_batch(&mut self, ops: &[&Op]) -> Result<(), StoreError> {
        let mut calls = Vec::with_capacity(ops.len() + 1);
        for op in ops {
            self.calls(op, &mut calls)?;
        }
        let client = &self.client;
        self.handle.block_on(async {
            client.batch_execute("BEGIN").await?;
            // Every statement is sent before the first answer is read (tokio-postgres
            // pipelines requests polled together, in the order they are first polled), so a
            // batch costs one round trip and one WAL flush at COMMIT.
            let sent = try_join_all(calls.iter().map(|(st, params)| {
                client.execute_raw(
                    *st,
                    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
                )
            }))
            .await;
            match sent {
                Ok(_) => {
                    client.batch_execute("COMMIT").await?;
                    Ok(())
                }
                Err(e) => {
                    // The connection stays usable for the next batch, whatever this one did.
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(StoreError::from(e))
                }
            }
        })
    }
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        let rows = self.query(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i32>(0) as u32))
    }

    fn append_audit(
        &self,
        home: &Id,
        entry: AuditEntry,
        checkpoint: Option<Signed<AuditCheckpoint>>,
    ) -> Result<Pending, StoreError> {
        self.queue()?
            .submit(Op::audit(home, Some(entry), checkpoint)?)
    }

    fn append_checkpoint(
        &self,
        home: &Id,
        checkpoint: Signed<AuditCheckpoint>,
    ) -> Result<Pending, StoreError> {
        self.queue()?
            .submit(Op::audit(home, None, Some(checkpoint))?)
    }

    fn audit_head(&self, home: &Id) -> Result<AuditHead, StoreError> {
        let h = head_from_rows(home, &self.query(HEAD_SQL, &[&home.as_str()])?)?;
        let cp = self.query(
            "SELECT checkpoint FROM audit_checkpoints WHERE home = $1 ORDER BY id DESC LIMIT 1",
            &[&home.as_str()],
        )?;
        Ok(AuditHead {
            next_index: h.next_index,
            head: h.head,
            last_checkpoint: cp
                .first()
                .map(|r| checkpoint_from_row(home, r.get(0)))
                .transpose()?,
        })
    }

    fn audit_entries(
        &self,
        home: &Id,
        from: u64,
        max: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let max = check_max(max)?;
        let from = to_i64(from, "audit index")?;
        self.query(
            "SELECT idx, entry FROM audit_entries WHERE home = $1 AND idx >= $2
             ORDER BY idx LIMIT $3",
            &[&home.as_str(), &from, &max],
        )?
        .iter()
        .map(|r| entry_from_row(home, r.get(0), r.get(1)))
        .collect()
    }

    fn audit_checkpoints(
        &self,
        home: &Id,
        from_count: u64,
        max: usize,
    ) -> Result<Vec<Signed<AuditCheckpoint>>, StoreError> {
        let max = check_max(max)?;
        let from = to_i64(from_count, "checkpoint count")?;
        self.query(
            "SELECT checkpoint FROM audit_checkpoints WHERE home = $1 AND count >= $2
             ORDER BY count, id LIMIT $3",
            &[&home.as_str(), &from, &max],
        )?
        .iter()
        .map(|r| checkpoint_from_row(home, r.get(0)))
        .collect()
    }

    fn put_record(&self, record: &Record) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::put_record(record)?)
    }

    fn delete_record(&self, home: &Id, kind: RecordKind, id: &Id) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::DeleteRecord {
            home: home.clone(),
            kind,
            id: id.clone(),
        })
    }

    fn record(&self, home: &Id, kind: RecordKind, id: &Id) -> Result<Option<Record>, StoreError> {
        self.query(
            "SELECT data FROM records WHERE home = $1 AND kind = $2 AND id = $3",
            &[&home.as_str(), &kind.code(), &id.as_str()],
        )?
        .first()
        .map(|r| Record::from_row(home, kind.code(), id.as_str(), r.get(0)))
        .transpose()
    }

    fn records(
        &self,
        home: &Id,
        kind: RecordKind,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let max = check_max(max)?;
        self.query(
            "SELECT id, data FROM records WHERE home = $1 AND kind = $2 AND id > $3
             ORDER BY id LIMIT $4",
            &[
                &home.as_str(),
                &kind.code(),
                &after.map_or("", Id::as_str),
                &max,
            ],
        )?
        .iter()
        .map(|r| Record::from_row(home, kind.code(), r.get(0), r.get(1)))
        .collect()
    }

    fn home_ids(&self, after: Option<&Id>, max: usize) -> Result<Vec<Id>, StoreError> {
        let max = check_max(max)?;
        self.query(
            "SELECT id FROM records WHERE kind = $1 AND home = id AND id > $2
             ORDER BY id LIMIT $3",
            &[
                &RecordKind::Home.code(),
                &after.map_or("", Id::as_str),
                &max,
            ],
        )?
        .iter()
        .map(|r| id(r.get(0)))
        .collect()
    }

    fn put_device_state(&self, state: &DeviceState) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::put_device_state(state)?)
    }

    fn device_state(&self, home: &Id, device: &Id) -> Result<Option<DeviceState>, StoreError> {
        self.query(
            "SELECT device, last_seq, chain_head, wrapped_session_key, updated_ms
             FROM device_states WHERE home = $1 AND device = $2",
            &[&home.as_str(), &device.as_str()],
        )?
        .first()
        .map(|r| device_state_from_row(home, r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .transpose()
    }

    fn device_states(
        &self,
        home: &Id,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<DeviceState>, StoreError> {
        let max = check_max(max)?;
        self.query(
            "SELECT device, last_seq, chain_head, wrapped_session_key, updated_ms
             FROM device_states WHERE home = $1 AND device > $2
             ORDER BY device LIMIT $3",
            &[&home.as_str(), &after.map_or("", Id::as_str), &max],
        )?
        .iter()
        .map(|r| device_state_from_row(home, r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
    }

    fn put_keystore(&self, bytes: &[u8], updated_ms: u64) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::put_keystore(bytes, updated_ms)?)
    }

    fn keystore(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .query("SELECT data FROM keystore WHERE id = 1", &[])?
            .first()
            .map(|r| r.get(0)))
    }

    fn put_footage(&self, segment: &FootageSegment) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::put_footage(segment)?)
    }

    fn put_footage_sealed(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
        sealed: &[u8],
        uploaded_ms: u64,
    ) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::put_footage_sealed(
            home,
            camera,
            seq,
            sealed,
            uploaded_ms,
        )?)
    }

    fn footage(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<FootageSegment>, StoreError> {
        let seq = to_i64(seq, "footage seq")?;
        self.query(
            concat!(
                "SELECT ",
                footage_columns!(),
                " FROM footage WHERE home = $1 AND camera = $2 AND seq = $3"
            ),
            &[&home.as_str(), &camera.as_str(), &seq],
        )?
        .first()
        .map(|r| pg_footage_row(home, r))
        .transpose()
    }

    fn footage_sealed(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let seq = to_i64(seq, "footage seq")?;
        Ok(self
            .query(
                "SELECT sealed FROM footage WHERE home = $1 AND camera = $2 AND seq = $3",
                &[&home.as_str(), &camera.as_str(), &seq],
            )?
            .first()
            .and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
    }

    fn footage_list(
        &self,
        home: &Id,
        query: &FootageQuery,
        max: usize,
    ) -> Result<Vec<FootageSegment>, StoreError> {
        let max = check_max(max)?;
        let (from, to, a_ms, a_cam, a_seq) = query_bounds(query)?;
        let delivery = query.delivery.as_ref().map(|d| d.as_str().to_owned());
        self.query(
            concat!(
                "SELECT ",
                footage_columns!(),
                " FROM footage
                 WHERE home = $1 AND at_ms >= $2 AND at_ms < $3
                   AND ($4::TEXT IS NULL OR delivery = $4)
                   AND (at_ms, camera, seq) > ($5, $6, $7)
                 ORDER BY at_ms, camera, seq LIMIT $8"
            ),
            &[
                &home.as_str(),
                &from,
                &to,
                &delivery,
                &a_ms,
                &a_cam,
                &a_seq,
                &max,
            ],
        )?
        .iter()
        .map(|r| pg_footage_row(home, r))
        .collect()
    }

    fn delete_footage(&self, home: &Id, keys: &[(Id, u64)]) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::delete_footage(home, keys)?)
    }

    fn put_footage_retention(
        &self,
        home: &Id,
        days: u32,
        updated_ms: u64,
    ) -> Result<Pending, StoreError> {
        self.queue()?.submit(Op::PutFootageRetention {
            home: home.clone(),
            days: i64::from(days),
            updated_ms: to_i64(updated_ms, "footage retention time")?,
        })
    }

    fn footage_retention(&self, home: &Id) -> Result<Option<u32>, StoreError> {
        self.query(
            "SELECT retention_days FROM footage_settings WHERE home = $1",
            &[&home.as_str()],
        )?
        .first()
        .map(|r| {
            let d: i32 = r.get(0);
            u32::try_from(d).map_err(|_| StoreError::Corrupt(format!("retention {d} of {home}")))
        })
        .transpose()
    }
}

fn pg_footage_row(home: &Id, r: &tokio_postgres::Row) -> Result<FootageSegment, StoreError> {
    footage_from_row(
        home,
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
        r.get(8),
        r.get(9),
    )
}
