//! The writer thread shared by both backends: a bounded queue, group commit, and the check
//! that every audit write continues its home's stored chain.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use doorward_control::audit::{genesis_head, AuditCheckpoint, AuditEntry};
use doorward_proto::guard::{self, Guard};
use doorward_proto::{codec, Digest, Id, Signed};
use tokio::sync::oneshot;

use crate::records::{DeviceState, Record, RecordKind};
use crate::store::StoreConfig;
use crate::StoreError;

/// A write waiting for its commit. [`Pending::wait`] blocks a thread until then; async code
/// awaits it instead. `Ok` means the write is durable.
#[must_use = "a write is durable only once its Pending says so"]
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<(), StoreError>>);

impl Pending {
    /// Blocks until the write is committed (or refused). Not for async code: await it.
    pub fn wait(self) -> Result<(), StoreError> {
        self.0.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }
}

impl Future for Pending {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// One write, already encoded and size-checked.
#[derive(Debug)]
pub(crate) enum Op {
    /// An audit entry, and the checkpoint the chain signed with it.
    Audit {
        home: Id,
        entry: Option<Box<EntryRow>>,
        checkpoint: Option<Box<CheckpointRow>>,
        /// Whether to check chain continuity (the guard, read on the caller's thread).
        check: bool,
    },
    /// Insert or replace a registry row.
    PutRecord {
        home: Id,
        kind: RecordKind,
        id: Id,
        bytes: Vec<u8>,
    },
    /// Delete a registry row.
    DeleteRecord { home: Id, kind: RecordKind, id: Id },
    /// Insert or replace a device's state.
    PutDeviceState(DeviceState),
    /// Replace the keystore row.
    PutKeystore { bytes: Vec<u8>, updated_ms: u64 },
    /// Insert a proved footage segment; a row already there is kept as it is.
    PutFootage(Box<crate::footage::FootageSegment>),
    /// Store a segment's sealed frames, unless some are stored already.
    PutFootageSealed {
        home: Id,
        camera: Id,
        seq: i64,
        sealed: Vec<u8>,
        uploaded_ms: i64,
    },
    /// Delete footage rows of one home.
    DeleteFootage { home: Id, keys: Vec<(Id, i64)> },
    /// Set a home's footage retention.
    PutFootageRetention {
        home: Id,
        days: i64,
        updated_ms: i64,
    },
}

/// An audit entry as stored.
#[derive(Debug)]
pub(crate) struct EntryRow {
    pub entry: AuditEntry,
    pub bytes: Vec<u8>,
}

/// A checkpoint as stored.
#[derive(Debug)]
pub(crate) struct CheckpointRow {
    pub checkpoint: Signed<AuditCheckpoint>,
    pub bytes: Vec<u8>,
}

impl Op {
    pub(crate) fn audit(
        home: &Id,
        entry: Option<AuditEntry>,
        checkpoint: Option<Signed<AuditCheckpoint>>,
    ) -> Result<Op, StoreError> {
        use doorward_control::audit::{MAX_AUDIT_ENTRY_BYTES, MAX_AUDIT_PAYLOAD_BYTES};
        let entry = match entry {
            None => None,
            Some(entry) => {
                if entry.payload.len() > MAX_AUDIT_PAYLOAD_BYTES {
                    return Err(StoreError::TooLarge {
                        what: "audit payload (bytes)",
                        len: entry.payload.len(),
                        limit: MAX_AUDIT_PAYLOAD_BYTES,
                    });
                }
                let bytes = entry.to_bytes();
                if bytes.len() > MAX_AUDIT_ENTRY_BYTES {
                    return Err(StoreError::TooLarge {
                        what: "audit entry (bytes)",
                        len: bytes.len(),
                        limit: MAX_AUDIT_ENTRY_BYTES,
                    });
                }
                to_i64(entry.index, "audit index")?;
                to_i64(entry.time_ms, "audit time")?;
                Some(Box::new(EntryRow { entry, bytes }))
            }
        };
        let checkpoint = match checkpoint {
            None => None,
            Some(checkpoint) => {
                let bytes = codec::encode(&checkpoint);
                if bytes.len() > crate::MAX_CHECKPOINT_BYTES {
                    return Err(StoreError::TooLarge {
                        what: "audit checkpoint (bytes)",
                        len: bytes.len(),
                        limit: crate::MAX_CHECKPOINT_BYTES,
                    });
                }
                to_i64(checkpoint.body.count, "checkpoint count")?;
                to_i64(checkpoint.body.time_ms, "checkpoint time")?;
                Some(Box::new(CheckpointRow { checkpoint, bytes }))
            }
        };
        Ok(Op::Audit {
            home: home.clone(),
            entry,
            checkpoint,
            check: guard::enabled(Guard::AuditHashChain),
        })
    }

    pub(crate) fn put_record(record: &Record) -> Result<Op, StoreError> {
        let bytes = record.to_bytes();
        if bytes.len() > crate::MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge {
                what: "registry record (bytes)",
                len: bytes.len(),
                limit: crate::MAX_RECORD_BYTES,
            });
        }
        Ok(Op::PutRecord {
            home: record.home().clone(),
            kind: record.kind(),
            id: record.id().clone(),
            bytes,
        })
    }

    pub(crate) fn put_device_state(state: &DeviceState) -> Result<Op, StoreError> {
        if let Some(k) = &state.wrapped_session_key {
            if k.len() > crate::MAX_WRAPPED_KEY_BYTES {
                return Err(StoreError::TooLarge {
                    what: "wrapped session key (bytes)",
                    len: k.len(),
                    limit: crate::MAX_WRAPPED_KEY_BYTES,
                });
            }
        }
        to_i64(state.updated_ms, "device state time")?;
        Ok(Op::PutDeviceState(state.clone()))
    }

    pub(crate) fn put_footage(seg: &crate::footage::FootageSegment) -> Result<Op, StoreError> {
        seg.check()?;
        Ok(Op::PutFootage(Box::new(seg.clone())))
    }

    pub(crate) fn put_footage_sealed(
        home: &Id,
        camera: &Id,
        seq: u64,
        sealed: &[u8],
        uploaded_ms: u64,
    ) -> Result<Op, StoreError> {
        use crate::footage::MAX_SEALED_SEGMENT_BYTES;
        if sealed.len() > MAX_SEALED_SEGMENT_BYTES {
            return Err(StoreError::TooLarge {
                what: "sealed footage segment (bytes)",
                len: sealed.len(),
                limit: MAX_SEALED_SEGMENT_BYTES,
            });
        }
        Ok(Op::PutFootageSealed {
            home: home.clone(),
            camera: camera.clone(),
            seq: to_i64(seq, "footage seq")?,
            sealed: sealed.to_vec(),
            uploaded_ms: to_i64(uploaded_ms, "footage upload time")?,
        })
    }

    pub(crate) fn delete_footage(home: &Id, keys: &[(Id, u64)]) -> Result<Op, StoreError> {
        use crate::footage::MAX_FOOTAGE_DELETE;
        if keys.len() > MAX_FOOTAGE_DELETE {
            return Err(StoreError::TooLarge {
                what: "footage segments in one delete",
                len: keys.len(),
                limit: MAX_FOOTAGE_DELETE,
            });
        }
        Ok(Op::DeleteFootage {
            home: home.clone(),
            keys: keys
                .iter()
                .map(|(c, s)| Ok((c.clone(), to_i64(*s, "footage seq")?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }

    pub(crate) fn put_keystore(bytes: &[u8], updated_ms: u64) -> Result<Op, StoreError> {
        if bytes.len() > crate::MAX_KEYSTORE_BYTES {
            return Err(StoreError::TooLarge {
                what: "keystore (bytes)",
                len: bytes.len(),
                limit: crate::MAX_KEYSTORE_BYTES,
            });
        }
        to_i64(updated_ms, "keystore time")?;
        Ok(Op::PutKeystore {
            bytes: bytes.to_vec(),
            updated_ms,
        })
    }
}

/// Numbers are stored as signed 64-bit integers (both databases' native integer): values
/// past `i64::MAX` are refused rather than stored wrapped, since indices and times are
/// ordered on.
pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::TooLarge {
        what,
        len: usize::try_from(v).unwrap_or(usize::MAX),
        limit: i64::MAX as usize,
    })
}

/// The stored chain of a home: the index the next entry takes and the hash of the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub next_index: u64,
    pub head: Digest,
}

impl ChainHead {
    pub(crate) fn genesis(home: &Id) -> Self {
        ChainHead {
            next_index: 0,
            head: genesis_head(home),
        }
    }
}

/// A backend's side of the writer: it writes a batch atomically and durably.
pub(crate) trait Sink: Send + 'static {
    /// The stored chain head of `home`.
    fn load_head(&mut self, home: &Id) -> Result<ChainHead, StoreError>;
    /// Writes all `ops` in one transaction, in order; `Ok` only once it is durable.
    fn write_batch(&mut self, ops: &[&Op]) -> Result<(), StoreError>;
}

struct Job {
    op: Op,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The caller's end of the writer: a bounded queue.
pub(crate) struct Queue {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    capacity: usize,
}

impl Queue {
    /// Starts the writer thread over `sink`.
    pub(crate) fn start<S: Sink>(name: &str, sink: S, config: &StoreConfig) -> Queue {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = sync_channel(capacity);
        let writer = Writer {
            sink,
            heads: HashMap::new(),
            cached_heads_max: config.cached_heads_max.max(1),
            batch_max_writes: config.batch_max_writes.max(1),
            fsync_delay: std::time::Duration::from_millis(config.bench_fsync_delay_ms),
        };
        let thread = std::thread::Builder::new()
            .name(format!("doorward-store-{name}"))
            .spawn(move || writer.run(rx))
            .expect("spawning the store's writer thread");
        Queue {
            tx: Some(tx),
            thread: Some(thread),
            capacity,
        }
    }

    /// Queues a write; refused at once when the queue is full.
    pub(crate) fn submit(&self, op: Op) -> Result<Pending, StoreError> {
        let (done, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        match tx.try_send(Job { op, done }) {
            Ok(()) => Ok(Pending(rx)),
            Err(TrySendError::Full(_)) => Err(StoreError::QueueFull {
                limit: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }
}

impl Drop for Queue {
    /// Closing the queue lets the writer commit what is queued, then stop; waiting for it
    /// makes a reopen see every acknowledged write.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer<S> {
    sink: S,
    /// Chain heads as committed, so a check needs no read per entry.
    heads: HashMap<Id, ChainHead>,
    cached_heads_max: usize,
    batch_max_writes: usize,
    /// [`StoreConfig::bench_fsync_delay_ms`]: zero except in benchmarks.
    fsync_delay: std::time::Duration,
}

impl<S: Sink> Writer<S> {
    fn run(mut self, rx: Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.batch_max_writes);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < self.batch_max_writes {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
    }

    /// Commits the batch as one transaction. When the database refuses it, each write is
    /// retried alone, so one bad write cannot fail the others queued with it.
    fn commit(&mut self, batch: &mut Vec<Job>) {
        let mut overlay = HashMap::new();
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        for job in batch.iter() {
            results.push(self.check(&job.op, &mut overlay));
        }
        let ops: Vec<&Op> = batch
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(j, _)| &j.op)
            .collect();
        let written = if ops.is_empty() {
            Ok(())
        } else {
            let w = self.sink.write_batch(&ops);
            if !self.fsync_delay.is_zero() {
                // Once per group commit, as a slow fsync would be: every write of the batch
                // waits for it, and so does the next batch.
                std::thread::sleep(self.fsync_delay);
            }
            w
        };
        match written {
            Ok(()) => {
                self.remember(overlay);
                for (job, r) in batch.drain(..).zip(results) {
                    let _ = job.done.send(r);
                }
            }
            Err(e) if ops.len() == 1 => {
                self.heads.clear();
                for (job, r) in batch.drain(..).zip(results) {
                    let _ = job.done.send(r.and(Err(e.clone())));
                }
            }
            Err(_) => {
                // The heads the failed batch would have made are dropped with its overlay;
                // the cache is cleared too, since the failure may come from a writer we do
                // not know about.
                self.heads.clear();
                for job in batch.drain(..) {
                    let mut one = vec![job];
                    self.commit(&mut one);
                }
            }
        }
    }

    fn remember(&mut self, overlay: HashMap<Id, ChainHead>) {
        if self.heads.len() + overlay.len() > self.cached_heads_max {
            self.heads.clear();
        }
        self.heads.extend(overlay);
    }

    fn head(
        &mut self,
        home: &Id,
        overlay: &HashMap<Id, ChainHead>,
    ) -> Result<ChainHead, StoreError> {
        if let Some(h) = overlay.get(home).or_else(|| self.heads.get(home)) {
            return Ok(*h);
        }
        let h = self.sink.load_head(home)?;
        if self.heads.len() >= self.cached_heads_max {
            self.heads.clear();
        }
        self.heads.insert(home.clone(), h);
        Ok(h)
    }

    /// I7: the stored log holds one chain per home, without gaps, replays or forks, and
    /// every checkpoint signs the head it follows.
    fn check(&mut self, op: &Op, overlay: &mut HashMap<Id, ChainHead>) -> Result<(), StoreError> {
        let Op::Audit {
            home,
            entry,
            checkpoint,
            check,
        } = op
        else {
            return Ok(());
        };
        let mut head = self.head(home, overlay)?;
        if let Some(EntryRow { entry, .. }) = entry.as_deref() {
            if *check {
                if entry.index != head.next_index {
                    return Err(StoreError::AuditOutOfOrder {
                        home: home.clone(),
                        expected: head.next_index,
                        found: entry.index,
                    });
                }
                if entry.prev != head.head {
                    return Err(StoreError::AuditFork {
                        home: home.clone(),
                        index: entry.index,
                    });
                }
            }
            head = ChainHead {
                next_index: entry.index.saturating_add(1),
                head: entry.hash,
            };
        }
        if let Some(CheckpointRow { checkpoint, .. }) = checkpoint.as_deref() {
            let cp = &checkpoint.body;
            if *check && (cp.home != *home || cp.count != head.next_index || cp.head != head.head) {
                return Err(StoreError::CheckpointMismatch {
                    home: home.clone(),
                    count: cp.count,
                });
            }
        }
        overlay.insert(home.clone(), head);
        Ok(())
    }
}
