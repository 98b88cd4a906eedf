//! The SQLite backend: one file in WAL mode, one writer thread, `synchronous=FULL`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use doorward_control::audit::{AuditCheckpoint, AuditEntry};
use doorward_proto::{codec, Digest, Id, Signed};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::footage::{
    footage_columns, footage_from_row, query_bounds, FootageQuery, FootageSegment,
};
use crate::migrate::{self, MIGRATIONS, SCHEMA_TABLE};
use crate::records::{DeviceState, Record, RecordKind};
use crate::store::{check_max, AuditHead, Store, StoreConfig};
use crate::writer::{to_i64, ChainHead, CheckpointRow, EntryRow, Op, Pending, Queue, Sink};
use crate::{StoreError, MAX_CHECKPOINT_BYTES};

/// The embedded store: a SQLite database file (WAL, `synchronous=FULL`), written by one
/// thread, read through a second connection.
pub struct SqliteStore {
    // Dropped first: the writer commits what is queued before the reader closes.
    queue: Queue,
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the database at `path`, with default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, StoreConfig::default())
    }

    /// Opens and migrates the database at `path` with `config`.
    pub fn open_with(
        path: impl AsRef<Path>,
        config: StoreConfig,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = connect(&path, &config)?;
        migrate_sqlite(&mut writer)?;
        let reader = connect(&path, &config)?;
        Ok(SqliteStore {
            queue: Queue::start("sqlite", SqliteSink { conn: writer }, &config),
            reader: Mutex::new(reader),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while reading cannot leave the connection half-changed: reads change
        // nothing, so a poisoned lock is still safe to use.
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

fn connect(path: &Path, config: &StoreConfig) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("sqlite {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "sqlite {}: journal mode {mode}, not WAL",
            path.display()
        )));
    }
    // FULL: a commit is on disk (WAL fsynced) before it is acknowledged; the audit log
    // depends on it.
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    Ok(conn)
}

fn migrate_sqlite(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA_TABLE)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: u32 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    migrate::check_version(current)?;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, migrate::now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

struct SqliteSink {
    conn: Connection,
}

impl Sink for SqliteSink {
    fn load_head(&mut self, home: &Id) -> Result<ChainHead, StoreError> {
        load_head(&self.conn, home)
    }

    fn write_batch(&mut self, ops: &[&Op]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for op in ops {
            write_op(&tx, op)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn load_head(conn: &Connection, home: &Id) -> Result<ChainHead, StoreError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT idx, hash FROM audit_entries WHERE home = ?1 ORDER BY idx DESC LIMIT 1",
        )?
        .query_row([home.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(ChainHead::genesis(home)),
        Some((idx, hash)) => Ok(ChainHead {
            next_index: idx as u64 + 1,
            head: digest(&hash)?,
        }),
    }
}

fn write_op(conn: &Connection, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Audit {
            home,
            entry,
            checkpoint,
            ..
        } => {
            if let Some(EntryRow { entry, bytes }) = entry.as_deref() {
                conn.prepare_cached(
                    "INSERT INTO audit_entries (home, idx, time_ms, kind, device, hash, entry)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    home.as_str(),
                    to_i64(entry.index, "audit index")?,
                    to_i64(entry.time_ms, "audit time")?,
                    entry.kind.0,
                    entry.device.as_ref().map(Id::as_str),
                    &entry.hash.0[..],
                    bytes,
                ])?;
            }
            if let Some(CheckpointRow { checkpoint, bytes }) = checkpoint.as_deref() {
                conn.prepare_cached(
                    "INSERT INTO audit_checkpoints (home, count, time_ms, checkpoint)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    home.as_str(),
                    to_i64(checkpoint.body.count, "checkpoint count")?,
                    to_i64(checkpoint.body.time_ms, "checkpoint time")?,
                    bytes,
                ])?;
            }
        }
        Op::PutRecord {
            home,
            kind,
            id,
            bytes,
        } => {
            conn.prepare_cached(
                "INSERT INTO records (home, kind, id, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (home, kind, id) DO UPDATE SET data = excluded.data",
            )?
            .execute(params![home.as_str(), kind.code(), id.as_str(), bytes])?;
        }
        Op::DeleteRecord { home, kind, id } => {
            conn.prepare_cached("DELETE FROM records WHERE home = ?1 AND kind = ?2 AND id = ?3")?
                .execute(params![home.as_str(), kind.code(), id.as_str()])?;
        }
        Op::PutDeviceState(s) => {
            conn.prepare_cached(
                "INSERT INTO device_states
                     (home, device, last_seq, chain_head, wrapped_session_key, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (home, device) DO UPDATE SET
                     last_seq = excluded.last_seq, chain_head = excluded.chain_head,
                     wrapped_session_key = excluded.wrapped_session_key,
                     updated_ms = excluded.updated_ms",
            )?
            .execute(params![
                s.home.as_str(),
                s.device.as_str(),
                &s.last_seq.to_be_bytes()[..],
                &s.chain_head.0[..],
                s.wrapped_session_key.as_deref(),
                to_i64(s.updated_ms, "device state time")?,
            ])?;
        }
        Op::PutKeystore { bytes, updated_ms } => {
            conn.prepare_cached(
                "INSERT INTO keystore (id, data, updated_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data,
                     updated_ms = excluded.updated_ms",
            )?
            .execute(params![bytes, to_i64(*updated_ms, "keystore time")?])?;
        }
        Op::PutFootage(f) => {
            conn.prepare_cached(
                "INSERT INTO footage (home, camera, seq, at_ms, segment, frames, head,
                     camera_key, delivery, proof)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (home, camera, seq) DO NOTHING",
            )?
            .execute(params![
                f.home.as_str(),
                f.camera.as_str(),
                to_i64(f.seq, "footage seq")?,
                to_i64(f.at_ms, "footage time")?,
                &f.segment.0[..],
                f.frames_bytes(),
                &f.head.0[..],
                &f.camera_key.0[..],
                f.delivery.as_ref().map(Id::as_str),
                &f.proof,
            ])?;
        }
        Op::PutFootageSealed {
            home,
            camera,
            seq,
            sealed,
            uploaded_ms,
        } => {
            conn.prepare_cached(
                "UPDATE footage SET sealed = ?4, uploaded_ms = ?5
                 WHERE home = ?1 AND camera = ?2 AND seq = ?3 AND sealed IS NULL",
            )?
            .execute(params![
                home.as_str(),
                camera.as_str(),
                seq,
                sealed,
                uploaded_ms
            ])?;
        }
        Op::DeleteFootage { home, keys } => {
            let mut st = conn.prepare_cached(
                "DELETE FROM footage WHERE home = ?1 AND camera = ?2 AND seq = ?3",
            )?;
            for (camera, seq) in keys {
                st.execute(params![home.as_str(), camera.as_str(), seq])?;
            }
        }
        Op::PutFootageRetention {
            home,
            days,
            updated_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO footage_settings (home, retention_days, updated_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (home) DO UPDATE SET retention_days = excluded.retention_days,
                     updated_ms = excluded.updated_ms",
            )?
            .execute(params![home.as_str(), days, updated_ms])?;
        }
    }
    Ok(())
}

fn footage_row(
    home: &Id,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<FootageSegment, StoreError>> {
    Ok(footage_from_row(
        home,
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        &r.get::<_, Vec<u8>>(3)?,
        &r.get::<_, Vec<u8>>(4)?,
        &r.get::<_, Vec<u8>>(5)?,
        &r.get::<_, Vec<u8>>(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

pub(crate) fn digest(bytes: &[u8]) -> Result<Digest, StoreError> {
    bytes
        .try_into()
        .map(Digest)
        .map_err(|_| StoreError::Corrupt(format!("digest of {} bytes", bytes.len())))
}

pub(crate) fn id(s: String) -> Result<Id, StoreError> {
    Id::new(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn entry_from_row(home: &Id, idx: i64, bytes: &[u8]) -> Result<AuditEntry, StoreError> {
    let e = AuditEntry::from_bytes(bytes)
        .map_err(|e| StoreError::Corrupt(format!("audit entry {home}/{idx}: {e}")))?;
    if e.index as i64 != idx {
        return Err(StoreError::Corrupt(format!(
            "audit entry {home}/{idx} holds index {}",
            e.index
        )));
    }
    Ok(e)
}

pub(crate) fn checkpoint_from_row(
    home: &Id,
    bytes: &[u8],
) -> Result<Signed<AuditCheckpoint>, StoreError> {
    let c: Signed<AuditCheckpoint> = codec::decode(bytes, MAX_CHECKPOINT_BYTES)
        .map_err(|e| StoreError::Corrupt(format!("checkpoint of {home}: {e}")))?;
    if c.body.home != *home {
        return Err(StoreError::Corrupt(format!(
            "checkpoint stored under {home} is {}'s",
            c.body.home
        )));
    }
    Ok(c)
}

pub(crate) fn device_state_from_row(
    home: &Id,
    device: String,
    last_seq: &[u8],
    chain_head: &[u8],
    wrapped_session_key: Option<Vec<u8>>,
    updated_ms: i64,
) -> Result<DeviceState, StoreError> {
    let seq: [u8; 8] = last_seq
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("device state {home}/{device}: last_seq")))?;
    Ok(DeviceState {
        home: home.clone(),
        device: id(device)?,
        last_seq: u64::from_be_bytes(seq),
        chain_head: digest(chain_head)?,
        wrapped_session_key,
        updated_ms: updated_ms as u64,
    })
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?)
        })
    }

    fn append_audit(
        &self,
        home: &Id,
        entry: AuditEntry,
        checkpoint: Option<Signed<AuditCheckpoint>>,
    ) -> Result<Pending, StoreError> {
        self.queue.submit(Op::audit(home, Some(entry), checkpoint)?)
    }

    fn append_checkpoint(
        &self,
        home: &Id,
        checkpoint: Signed<AuditCheckpoint>,
    ) -> Result<Pending, StoreError> {
        self.queue.submit(Op::audit(home, None, Some(checkpoint))?)
    }

    fn audit_head(&self, home: &Id) -> Result<AuditHead, StoreError> {
        self.read(|c| {
            let h = load_head(c, home)?;
            let cp: Option<Vec<u8>> = c
                .prepare_cached(
                    "SELECT checkpoint FROM audit_checkpoints WHERE home = ?1
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row([home.as_str()], |r| r.get(0))
                .optional()?;
            Ok(AuditHead {
                next_index: h.next_index,
                head: h.head,
                last_checkpoint: cp.map(|b| checkpoint_from_row(home, &b)).transpose()?,
            })
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
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT idx, entry FROM audit_entries WHERE home = ?1 AND idx >= ?2
                 ORDER BY idx LIMIT ?3",
            )?;
            let rows = st.query_map(params![home.as_str(), from, max], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.map(|r| {
                let (idx, bytes) = r?;
                entry_from_row(home, idx, &bytes)
            })
            .collect()
        })
    }

    fn audit_checkpoints(
        &self,
        home: &Id,
        from_count: u64,
        max: usize,
    ) -> Result<Vec<Signed<AuditCheckpoint>>, StoreError> {
        let max = check_max(max)?;
        let from = to_i64(from_count, "checkpoint count")?;
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT checkpoint FROM audit_checkpoints WHERE home = ?1 AND count >= ?2
                 ORDER BY count, id LIMIT ?3",
            )?;
            let rows = st.query_map(params![home.as_str(), from, max], |r| {
                r.get::<_, Vec<u8>>(0)
            })?;
            rows.map(|r| checkpoint_from_row(home, &r?)).collect()
        })
    }

    fn put_record(&self, record: &Record) -> Result<Pending, StoreError> {
        self.queue.submit(Op::put_record(record)?)
    }

    fn delete_record(&self, home: &Id, kind: RecordKind, id: &Id) -> Result<Pending, StoreError> {
        self.queue.submit(Op::DeleteRecord {
            home: home.clone(),
            kind,
            id: id.clone(),
        })
    }

    fn record(&self, home: &Id, kind: RecordKind, id: &Id) -> Result<Option<Record>, StoreError> {
        self.read(|c| {
            let data: Option<Vec<u8>> = c
                .prepare_cached(
                    "SELECT data FROM records WHERE home = ?1 AND kind = ?2 AND id = ?3",
                )?
                .query_row(params![home.as_str(), kind.code(), id.as_str()], |r| {
                    r.get(0)
                })
                .optional()?;
            data.map(|d| Record::from_row(home, kind.code(), id.as_str(), &d))
                .transpose()
        })
    }

    fn records(
        &self,
        home: &Id,
        kind: RecordKind,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let max = check_max(max)?;
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, data FROM records WHERE home = ?1 AND kind = ?2 AND id > ?3
                 ORDER BY id LIMIT ?4",
            )?;
            let after = after.map_or("", Id::as_str);
            let rows = st.query_map(params![home.as_str(), kind.code(), after, max], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.map(|r| {
                let (id, data) = r?;
                Record::from_row(home, kind.code(), &id, &data)
            })
            .collect()
        })
    }

    fn home_ids(&self, after: Option<&Id>, max: usize) -> Result<Vec<Id>, StoreError> {
        let max = check_max(max)?;
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM records WHERE kind = ?1 AND home = id AND id > ?2
                 ORDER BY id LIMIT ?3",
            )?;
            let after = after.map_or("", Id::as_str);
            let rows = st.query_map(params![RecordKind::Home.code(), after, max], |r| {
                r.get::<_, String>(0)
            })?;
            rows.map(|r| id(r?)).collect()
        })
    }

    fn put_device_state(&self, state: &DeviceState) -> Result<Pending, StoreError> {
        self.queue.submit(Op::put_device_state(state)?)
    }

    fn device_state(&self, home: &Id, device: &Id) -> Result<Option<DeviceState>, StoreError> {
        Ok(self.device_states_where(home, Some(device), None, 1)?.pop())
    }

    fn device_states(
        &self,
        home: &Id,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<DeviceState>, StoreError> {
        self.device_states_where(home, None, after, max)
    }

    fn put_keystore(&self, bytes: &[u8], updated_ms: u64) -> Result<Pending, StoreError> {
        self.queue.submit(Op::put_keystore(bytes, updated_ms)?)
    }

    fn keystore(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT data FROM keystore WHERE id = 1", [], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    fn put_footage(&self, segment: &FootageSegment) -> Result<Pending, StoreError> {
        self.queue.submit(Op::put_footage(segment)?)
    }

    fn put_footage_sealed(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
        sealed: &[u8],
        uploaded_ms: u64,
    ) -> Result<Pending, StoreError> {
        self.queue.submit(Op::put_footage_sealed(
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
        self.read(|c| {
            c.prepare_cached(concat!(
                "SELECT ",
                footage_columns!(),
                " FROM footage WHERE home = ?1 AND camera = ?2 AND seq = ?3"
            ))?
            .query_row(params![home.as_str(), camera.as_str(), seq], |r| {
                footage_row(home, r)
            })
            .optional()?
            .transpose()
        })
    }

    fn footage_sealed(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let seq = to_i64(seq, "footage seq")?;
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT sealed FROM footage WHERE home = ?1 AND camera = ?2 AND seq = ?3",
            )?
            .query_row(params![home.as_str(), camera.as_str(), seq], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })
            .optional()?
            .flatten())
        })
    }

    fn footage_list(
        &self,
        home: &Id,
        query: &FootageQuery,
        max: usize,
    ) -> Result<Vec<FootageSegment>, StoreError> {
        let max = check_max(max)?;
        let (from, to, a_ms, a_cam, a_seq) = query_bounds(query)?;
        self.read(|c| {
            let mut st = c.prepare_cached(concat!(
                "SELECT ",
                footage_columns!(),
                " FROM footage
                 WHERE home = ?1 AND at_ms >= ?2 AND at_ms < ?3
                   AND (?4 IS NULL OR delivery = ?4)
                   AND (at_ms, camera, seq) > (?5, ?6, ?7)
                 ORDER BY at_ms, camera, seq LIMIT ?8"
            ))?;
            let rows = st.query_map(
                params![
                    home.as_str(),
                    from,
                    to,
                    query.delivery.as_ref().map(Id::as_str),
                    a_ms,
                    a_cam,
                    a_seq,
                    max
                ],
                |r| footage_row(home, r),
            )?;
            rows.map(|r| r?).collect()
        })
    }

    fn delete_footage(&self, home: &Id, keys: &[(Id, u64)]) -> Result<Pending, StoreError> {
        self.queue.submit(Op::delete_footage(home, keys)?)
    }

    fn put_footage_retention(
        &self,
        home: &Id,
        days: u32,
        updated_ms: u64,
    ) -> Result<Pending, StoreError> {
        self.queue.submit(Op::PutFootageRetention {
            home: home.clone(),
            days: i64::from(days),
            updated_ms: to_i64(updated_ms, "footage retention time")?,
        })
    }

    fn footage_retention(&self, home: &Id) -> Result<Option<u32>, StoreError> {
        self.read(|c| {
            let d: Option<i64> = c
                .prepare_cached("SELECT retention_days FROM footage_settings WHERE home = ?1")?
                .query_row([home.as_str()], |r| r.get(0))
                .optional()?;
            d.map(|d| {
                u32::try_from(d)
                    .map_err(|_| StoreError::Corrupt(format!("retention {d} of {home}")))
            })
            .transpose()
        })
    }
}

impl SqliteStore {
    fn device_states_where(
        &self,
        home: &Id,
        device: Option<&Id>,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<DeviceState>, StoreError> {
        let max = check_max(max)?;
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT device, last_seq, chain_head, wrapped_session_key, updated_ms
                 FROM device_states
                 WHERE home = ?1 AND (?2 IS NULL OR device = ?2) AND device > ?3
                 ORDER BY device LIMIT ?4",
            )?;
            let rows = st.query_map(
                params![
                    home.as_str(),
                    device.map(Id::as_str),
                    after.map_or("", Id::as_str),
                    max
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )?;
            rows.map(|r| {
                let (d, seq, head, key, ms) = r?;
                device_state_from_row(home, d, &seq, &head, key, ms)
            })
            .collect()
        })
    }
}
