//! The storage interface both backends implement.

use std::io::Write;

use doorward_control::audit::{
    export, genesis_head, AuditCheckpoint, AuditEntry, ExportHeader, ExportItem, EXPORT_VERSION,
};
use doorward_proto::{Digest, Id, PubKey, Signed};

use crate::footage::{FootageQuery, FootageSegment};
use crate::records::{DeviceState, Record, RecordKind};
use crate::writer::Pending;
use crate::{StoreError, MAX_READ_ROWS};

/// Limits and timeouts of a store's writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most writes waiting for the writer; one more is refused with
    /// [`StoreError::QueueFull`].
    pub queue_capacity: usize,
    /// Most writes committed in one transaction.
    pub batch_max_writes: usize,
    /// Most homes whose chain head the writer caches (the cache is emptied when full).
    pub cached_heads_max: usize,
    /// Longest a statement waits for a lock another connection holds, in milliseconds.
    pub busy_timeout_ms: u64,
    /// For benchmarks only: extra milliseconds every group commit waits, once committed and
    /// before any of its writes is acknowledged, standing in for a slow disk's fsync. 0 (the
    /// default) adds nothing; nothing but `doorward bench` should set it.
    pub bench_fsync_delay_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            queue_capacity: crate::DEFAULT_QUEUE_CAPACITY,
            batch_max_writes: crate::DEFAULT_BATCH_MAX_WRITES,
            cached_heads_max: crate::DEFAULT_CACHED_HEADS_MAX,
            busy_timeout_ms: crate::DEFAULT_BUSY_TIMEOUT_MS,
            bench_fsync_delay_ms: 0,
        }
    }
}

/// The stored end of a home's audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    /// Number of stored entries: the index the next entry takes.
    pub next_index: u64,
    /// Hash of the last stored entry ([`genesis_head`] when there is none).
    pub head: Digest,
    /// The last stored checkpoint, if any.
    pub last_checkpoint: Option<Signed<AuditCheckpoint>>,
}

impl AuditHead {
    /// The head of a home with no entries.
    pub fn empty(home: &Id) -> Self {
        AuditHead {
            next_index: 0,
            head: genesis_head(home),
            last_checkpoint: None,
        }
    }
}

/// Doorward's storage: the audit log, the registry, device durable state and the keystore.
///
/// Writes return a [`Pending`] at once (or [`StoreError::QueueFull`]); the write is durable
/// when it resolves to `Ok`. Writes from one thread are committed in the order they were
/// queued. Every read names the home whose rows it reads (I11). Reads block: from async code
/// run them with `spawn_blocking`.
pub trait Store: Send + Sync {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// The newest migration applied to the database.
    fn schema_version(&self) -> Result<u32, StoreError>;

    /// Appends one audit entry of `home`, and the checkpoint its chain signed with it. Both
    /// are refused unless the entry takes the next index and links to the stored head (I7);
    /// queue them while holding the chain, so that entries reach the queue in chain order.
    fn append_audit(
        &self,
        home: &Id,
        entry: AuditEntry,
        checkpoint: Option<Signed<AuditCheckpoint>>,
    ) -> Result<Pending, StoreError>;

    /// Appends a checkpoint of `home`'s chain; it must sign the stored head.
    fn append_checkpoint(
        &self,
        home: &Id,
        checkpoint: Signed<AuditCheckpoint>,
    ) -> Result<Pending, StoreError>;

    /// The stored end of `home`'s chain.
    fn audit_head(&self, home: &Id) -> Result<AuditHead, StoreError>;

    /// Up to `max` (at most [`MAX_READ_ROWS`]) entries of `home` from index `from`, in order.
    fn audit_entries(
        &self,
        home: &Id,
        from: u64,
        max: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Up to `max` (at most [`MAX_READ_ROWS`]) checkpoints of `home` with a count of at
    /// least `from_count`, in the order they were written.
    fn audit_checkpoints(
        &self,
        home: &Id,
        from_count: u64,
        max: usize,
    ) -> Result<Vec<Signed<AuditCheckpoint>>, StoreError>;

    /// Inserts or replaces a registry row (under the home the record names).
    fn put_record(&self, record: &Record) -> Result<Pending, StoreError>;

    /// Deletes a registry row; deleting a missing row is not an error.
    fn delete_record(&self, home: &Id, kind: RecordKind, id: &Id) -> Result<Pending, StoreError>;

    /// One registry row of `home`.
    fn record(&self, home: &Id, kind: RecordKind, id: &Id) -> Result<Option<Record>, StoreError>;

    /// Up to `max` (at most [`MAX_READ_ROWS`]) rows of one kind of `home`, by id, after
    /// `after` (for paging).
    fn records(
        &self,
        home: &Id,
        kind: RecordKind,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Up to `max` (at most [`MAX_READ_ROWS`]) home ids, in order, after `after`: the
    /// server's own list of tenants (for restarts), never shown to one of them.
    fn home_ids(&self, after: Option<&Id>, max: usize) -> Result<Vec<Id>, StoreError>;

    /// Inserts or replaces a device's durable state.
    fn put_device_state(&self, state: &DeviceState) -> Result<Pending, StoreError>;

    /// One device's state.
    fn device_state(&self, home: &Id, device: &Id) -> Result<Option<DeviceState>, StoreError>;

    /// Up to `max` (at most [`MAX_READ_ROWS`]) device states of `home`, by device id, after
    /// `after`.
    fn device_states(
        &self,
        home: &Id,
        after: Option<&Id>,
        max: usize,
    ) -> Result<Vec<DeviceState>, StoreError>;

    /// Replaces the keystore row (opaque bytes, encrypted by the caller).
    fn put_keystore(&self, bytes: &[u8], updated_ms: u64) -> Result<Pending, StoreError>;

    /// The keystore row, if one was written.
    fn keystore(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Inserts a proved footage segment (its `uploaded_ms` is ignored); a row already there
    /// for its `(home, camera, seq)` is kept as it is.
    fn put_footage(&self, segment: &FootageSegment) -> Result<Pending, StoreError>;

    /// Stores the sealed frames of a segment whose row exists and holds none yet; otherwise
    /// changes nothing (an upload is written once).
    fn put_footage_sealed(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
        sealed: &[u8],
        uploaded_ms: u64,
    ) -> Result<Pending, StoreError>;

    /// One footage row of `home`.
    fn footage(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<FootageSegment>, StoreError>;

    /// The sealed frames of one segment of `home`, if uploaded.
    fn footage_sealed(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `max` (at most [`MAX_READ_ROWS`]) footage rows of `home` that `query` selects,
    /// in `(at_ms, camera, seq)` order.
    fn footage_list(
        &self,
        home: &Id,
        query: &FootageQuery,
        max: usize,
    ) -> Result<Vec<FootageSegment>, StoreError>;

    /// Deletes footage rows of `home` by `(camera, seq)` (at most
    /// [`crate::footage::MAX_FOOTAGE_DELETE`]); missing rows are not an error.
    fn delete_footage(&self, home: &Id, keys: &[(Id, u64)]) -> Result<Pending, StoreError>;

    /// Sets how many days `home`'s footage is kept.
    fn put_footage_retention(
        &self,
        home: &Id,
        days: u32,
        updated_ms: u64,
    ) -> Result<Pending, StoreError>;

    /// The retention `home` set, if it set one.
    fn footage_retention(&self, home: &Id) -> Result<Option<u32>, StoreError>;

    /// Writes `home`'s audit record in the export format of
    /// [`doorward_control::audit::export`], each checkpoint after the entries it covers, for
    /// `doorward audit verify`. The export ends with the last signed checkpoint: entries
    /// appended since (at most about a second's worth, see
    /// [`doorward_control::audit::DEFAULT_CHECKPOINT_EVERY_MS`]) are left for the next
    /// export, so that an intact record always verifies. Returns the bytes written. Holds the
    /// record in memory while it writes.
    fn export_audit(
        &self,
        home: &Id,
        server: PubKey,
        out: &mut dyn Write,
    ) -> Result<u64, StoreError> {
        // Checkpoints first, then the entries they cover: entries and checkpoints are read in
        // separate queries, and a checkpoint appended between them must not end up after
        // fewer entries than it signs.
        let mut checkpoints = Vec::new();
        loop {
            let from = checkpoints
                .last()
                .map_or(0, |c: &Signed<AuditCheckpoint>| c.body.count);
            let page = self.audit_checkpoints(home, from, MAX_READ_ROWS)?;
            // Paging by count repeats checkpoints of the same count; skip those already read.
            let seen = checkpoints
                .iter()
                .rev()
                .take_while(|c| c.body.count == from)
                .count();
            let done = page.len() < MAX_READ_ROWS;
            checkpoints.extend(page.into_iter().skip(seen));
            if done {
                break;
            }
        }
        // Only what a signature covers: a tail awaiting its checkpoint would make the export
        // fail verification as if someone without the server key had appended it.
        let covered = checkpoints.last().map_or(0, |c| c.body.count);
        let mut entries: Vec<AuditEntry> = Vec::new();
        let mut from = 0;
        while from < covered {
            let page = self.audit_entries(home, from, MAX_READ_ROWS)?;
            let done = page.len() < MAX_READ_ROWS;
            entries.extend(page.into_iter().take_while(|e| e.index < covered));
            match entries.last() {
                Some(e) if !done && e.index >= from => from = e.index + 1,
                _ => break,
            }
        }
        let mut items = Vec::with_capacity(entries.len() + checkpoints.len());
        let mut cps = checkpoints.into_iter().peekable();
        for e in entries {
            while let Some(c) = cps.next_if(|c| c.body.count <= e.index) {
                items.push(ExportItem::Checkpoint(c));
            }
            items.push(ExportItem::Entry(e));
        }
        items.extend(cps.map(ExportItem::Checkpoint));
        let header = ExportHeader {
            version: EXPORT_VERSION,
            server,
            home: home.clone(),
            first_index: 0,
            first_prev: genesis_head(home),
        };
        export(&mut { out }, &header, &items)
            .map_err(|e| StoreError::Backend(format!("export: {e}")))
    }
}

/// Refuses a read of more than [`MAX_READ_ROWS`] rows.
pub(crate) fn check_max(max: usize) -> Result<i64, StoreError> {
    if max > MAX_READ_ROWS {
        return Err(StoreError::TooLarge {
            what: "rows asked of one read",
            len: max,
            limit: MAX_READ_ROWS,
        });
    }
    Ok(max as i64)
}
