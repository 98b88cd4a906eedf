//! The server's tamper-evident record (I7): a BLAKE3 hash chain of audit entries with signed
//! checkpoints, the collapse of routine idle proofs into per-device checkpoints, and the export
//! format with its offline verifier.
//!
//! - [`AuditChain`] appends [`AuditEntry`]s. An entry's `hash` is BLAKE3 (derive-key context
//!   `"doorward/v1 audit-entry"`) over the canonical CBOR of the entry without its `hash`
//!   field, which holds its `index` and `prev`, the hash of entry `index - 1`: one hash per
//!   link, so verification runs at millions of entries per second. The first entry's `prev` is
//!   [`genesis_head`] of the home. Every
//!   [`AuditConfig::checkpoint_every_entries`] entries, and whenever asked, the chain emits an
//!   [`AuditCheckpoint`] signed by the server key: `{home, count, head, time_ms}`.
//! - [`ProofCollapser`] keeps routine idle proofs out of the log: per device, one run of
//!   proofs since its last entry, written as a single [`EntryKind::DEVICE_CHECKPOINT`] entry
//!   when the device's state changes, when asked, or every `collapse_max_ms`.
//! - [`export`] writes a self-contained stream to any `std::io::Write`; [`verify_export`]
//!   checks it offline: every hash link, index continuity, every checkpoint signature (the
//!   strict rule), that checkpoints match the chain, and that a checkpoint covers the last
//!   entry. It names the first bad entry and why.
//!
//! What this is not: storage. The chain holds only its head; the caller persists each entry
//! and checkpoint it returns (and feeds them back to [`export`]). Pure: no clock, no IO
//! besides the caller's writer and reader, no randomness.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::io::{Read, Write};

use blake3::hazmat::{ContextKey, HasherExt};
use doorward_proto::codec::{self, DecodeError};
use doorward_proto::guard::{self, Guard};
use doorward_proto::keys::{KeyPair, SigError};
use doorward_proto::{Digest, Id, PubKey, Signable, Signed};
use minicbor::decode::{Decoder, Error as DecErr};
use minicbor::encode::{Encoder, Error as EncErr, Write as CborWrite};
use minicbor::{Decode, Encode};

/// Largest payload of one audit entry, in bytes: room for a whole envelope as evidence
/// ([`doorward_proto::MAX_ENVELOPE_BYTES`]) and the event around it.
pub const MAX_AUDIT_PAYLOAD_BYTES: usize = 2 * doorward_proto::MAX_ENVELOPE_BYTES;
/// Largest encoded audit entry (payload, identifiers and digests), in bytes.
pub const MAX_AUDIT_ENTRY_BYTES: usize = MAX_AUDIT_PAYLOAD_BYTES + 512;
/// Largest frame of an export stream, in bytes (one tag byte and one entry or checkpoint).
pub const MAX_EXPORT_FRAME_BYTES: usize = MAX_AUDIT_ENTRY_BYTES + 1;
/// Version of the export format written by [`export`].
pub const EXPORT_VERSION: u8 = 1;
/// First bytes of every export stream.
pub const EXPORT_MAGIC: [u8; 8] = *b"DWAUDIT\n";
/// Default number of entries between two automatic checkpoints.
pub const DEFAULT_CHECKPOINT_EVERY_ENTRIES: u64 = 1024;
/// Default longest time an entry stays without a checkpoint, when the caller asks
/// [`AuditChain::checkpoint_if_due`], in milliseconds.
pub const DEFAULT_CHECKPOINT_EVERY_MS: u64 = 1_000;
/// Default longest run of idle proofs collapsed into one device checkpoint, in milliseconds.
pub const DEFAULT_COLLAPSE_MAX_MS: u64 = 60 * 60 * 1000;
/// Default most devices whose idle proofs are being collapsed at once.
pub const DEFAULT_MAX_COLLAPSING_DEVICES: usize = 1_000_000;

const ENTRY_CONTEXT: &str = "doorward/v1 audit-entry";
const GENESIS_CONTEXT: &str = "doorward/v1 audit-genesis";
const FRAME_ENTRY: u8 = b'E';
const FRAME_CHECKPOINT: u8 = b'C';
/// CBOR encoding of a 32-byte digest: a byte-string header and the bytes.
const DIGEST_CBOR_BYTES: usize = 2 + 32;

/// The category of an audit entry, stored as a number so that every part of the server can
/// add categories; the constants name the ones Doorward writes. The payload holds the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKind(pub u16);

impl EntryKind {
    /// A run of routine idle proofs from one device, collapsed ([`ProofRun`] payload).
    pub const DEVICE_CHECKPOINT: EntryKind = EntryKind(1);
    /// A device reported a state change (bolt, door, recording…).
    pub const DEVICE_STATE: EntryKind = EntryKind(2);
    /// The server decided an unlock request (allowed or denied, with the reason).
    pub const UNLOCK_DECISION: EntryKind = EntryKind(3);
    /// An alarm was raised.
    pub const ALARM: EntryKind = EntryKind(4);
    /// An alarm was acknowledged by a person.
    pub const ALARM_ACK: EntryKind = EntryKind(5);
    /// A delivery or visit changed state (scheduled, started, closed…).
    pub const DELIVERY: EntryKind = EntryKind(6);
    /// The homeowner changed policy (opt-in, windows, vacation…).
    pub const POLICY: EntryKind = EntryKind(7);
    /// A device was paired or removed.
    pub const PAIRING: EntryKind = EntryKind(8);
    /// A revocation was issued.
    pub const REVOCATION: EntryKind = EntryKind(9);
    /// Supervision of a device changed (witness lost, witness back, device silent…).
    pub const SUPERVISION: EntryKind = EntryKind(10);
    /// The server (re)started and resumed the chain.
    pub const SERVER_START: EntryKind = EntryKind(11);
    /// The payload is a control-core audit event (`crate::AuditEvent`), which names its own
    /// kind.
    pub const EVENT: EntryKind = EntryKind(12);
}

impl<C> Encode<C> for EntryKind {
    fn encode<W: CborWrite>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncErr<W::Error>> {
        e.u16(self.0)?;
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for EntryKind {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecErr> {
        Ok(EntryKind(d.u16()?))
    }
}

/// One link of the audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuditEntry {
    /// Position in the chain, from 0, without gaps.
    #[n(0)]
    pub index: u64,
    /// Server time of the event, milliseconds since the Unix epoch.
    #[n(1)]
    pub time_ms: u64,
    /// What is recorded.
    #[n(2)]
    pub kind: EntryKind,
    /// The device the event concerns, if any.
    #[n(3)]
    pub device: Option<Id>,
    /// The event's details, canonical CBOR defined by `kind` (at most
    /// [`MAX_AUDIT_PAYLOAD_BYTES`]).
    #[n(4)]
    #[cbor(with = "minicbor::bytes")]
    pub payload: Vec<u8>,
    /// Hash of the previous entry ([`genesis_head`] for entry 0).
    #[n(5)]
    pub prev: Digest,
    /// BLAKE3 of the entry's canonical encoding without this field (see the module doc).
    #[n(6)]
    pub hash: Digest,
}

impl AuditEntry {
    /// The canonical encoding, as stored and exported.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a stored entry (canonical form, size limit, payload limit). It does not check
    /// the hash: that needs the chain around it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let e: AuditEntry = codec::decode(bytes, MAX_AUDIT_ENTRY_BYTES)?;
        if e.payload.len() > MAX_AUDIT_PAYLOAD_BYTES {
            return Err(DecodeError::Invalid("audit payload too large"));
        }
        Ok(e)
    }
}

/// The server's signed statement of the chain's head: entries `0..count` hash to `head`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuditCheckpoint {
    /// The home whose record this is.
    #[n(0)]
    pub home: Id,
    /// Number of entries covered: indices `0..count` (the index the next entry will take).
    #[n(1)]
    pub count: u64,
    /// Hash of entry `count - 1` ([`genesis_head`] when `count` is 0).
    #[n(2)]
    pub head: Digest,
    /// Server time of signing, milliseconds since the Unix epoch.
    #[n(3)]
    pub time_ms: u64,
}

impl Signable for AuditCheckpoint {
    const CONTEXT: &'static str = "audit-checkpoint";
}

/// The `prev` of a home's first audit entry, so that one home's chain cannot pass for
/// another's.
pub fn genesis_head(home: &Id) -> Digest {
    Digest(blake3::derive_key(
        GENESIS_CONTEXT,
        home.as_str().as_bytes(),
    ))
}

/// The precomputed BLAKE3 derive-key context of entry hashes: deriving a context costs a
/// hash of its own, which would otherwise be paid on every entry.
#[derive(Clone)]
struct Contexts {
    entry: ContextKey,
}

impl Contexts {
    fn new() -> Self {
        Contexts {
            entry: blake3::hazmat::hash_derive_key_context(ENTRY_CONTEXT),
        }
    }

    /// The entry hash, from the canonical encoding of the whole entry: that encoding is a
    /// 7-element array whose last element is the 34-byte encoding of `hash`, so the entry
    /// without its hash is the 6-element array header followed by everything in between.
    /// `None` if `bytes` is not shaped like an encoded entry.
    fn entry_hash(&self, bytes: &[u8]) -> Option<Digest> {
        let n = bytes.len();
        if n < 1 + DIGEST_CBOR_BYTES
            || bytes[0] != 0x87
            || bytes[n - DIGEST_CBOR_BYTES..n - 32] != [0x58, 0x20]
        {
            return None;
        }
        let mut h = blake3::Hasher::new_from_context_key(&self.entry);
        h.update(&[0x86]);
        h.update(&bytes[1..n - DIGEST_CBOR_BYTES]);
        Some(Digest(*h.finalize().as_bytes()))
    }
}

/// How often the chain signs checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// An append that brings the entries since the last checkpoint to this number also
    /// returns a checkpoint (at least 1).
    pub checkpoint_every_entries: u64,
    /// [`AuditChain::checkpoint_if_due`] signs when an entry has waited this long.
    pub checkpoint_every_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every_entries: DEFAULT_CHECKPOINT_EVERY_ENTRIES,
            checkpoint_every_ms: DEFAULT_CHECKPOINT_EVERY_MS,
        }
    }
}

/// Why an entry could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The payload is over [`MAX_AUDIT_PAYLOAD_BYTES`].
    #[error("audit payload of {len} bytes is over the limit of {limit}")]
    PayloadTooLarge {
        /// Payload length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

/// What one append produced: the entry to persist and, every
/// [`AuditConfig::checkpoint_every_entries`], a checkpoint to persist after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The new entry.
    pub entry: AuditEntry,
    /// A checkpoint covering it, when one was due.
    pub checkpoint: Option<Signed<AuditCheckpoint>>,
}

/// The head of a home's audit chain: appends entries and signs checkpoints. Holds no entries.
#[derive(Clone)]
pub struct AuditChain {
    home: Id,
    next_index: u64,
    head: Digest,
    since_checkpoint: u64,
    /// Time of the oldest entry not yet covered by a checkpoint.
    uncovered_since_ms: Option<u64>,
    config: AuditConfig,
    ctx: Contexts,
    buf: Vec<u8>,
}

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditChain")
            .field("home", &self.home)
            .field("next_index", &self.next_index)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl AuditChain {
    /// A new, empty chain for `home`.
    pub fn new(home: Id, config: AuditConfig) -> Self {
        let head = genesis_head(&home);
        Self::resume(home, 0, head, config)
    }

    /// Continues a chain after a restart from its persisted state: the number of entries and
    /// the hash of the last one. The entries since the last persisted checkpoint count as
    /// uncovered, so the next [`AuditChain::checkpoint_if_due`] signs.
    pub fn resume(home: Id, next_index: u64, head: Digest, config: AuditConfig) -> Self {
        AuditChain {
            home,
            next_index,
            head,
            since_checkpoint: 0,
            uncovered_since_ms: None,
            config: AuditConfig {
                checkpoint_every_entries: config.checkpoint_every_entries.max(1),
                ..config
            },
            ctx: Contexts::new(),
            buf: Vec::with_capacity(256),
        }
    }

    /// The home this chain records.
    pub fn home(&self) -> &Id {
        &self.home
    }

    /// Number of entries so far: the index the next entry will take.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Hash of the last entry ([`genesis_head`] when empty).
    pub fn head(&self) -> Digest {
        self.head
    }

    /// Appends one entry, and signs a checkpoint with `key` when one is due by count.
    pub fn append(
        &mut self,
        time_ms: u64,
        kind: EntryKind,
        device: Option<Id>,
        payload: Vec<u8>,
        key: &KeyPair,
    ) -> Result<Appended, AuditError> {
        if payload.len() > MAX_AUDIT_PAYLOAD_BYTES {
            return Err(AuditError::PayloadTooLarge {
                len: payload.len(),
                limit: MAX_AUDIT_PAYLOAD_BYTES,
            });
        }
        let mut entry = AuditEntry {
            index: self.next_index,
            time_ms,
            kind,
            device,
            payload,
            prev: self.head,
            hash: Digest::ZERO,
        };
        self.buf.clear();
        minicbor::encode(&entry, &mut self.buf).expect("encoding into a Vec is infallible");
        entry.hash = self
            .ctx
            .entry_hash(&self.buf)
            .expect("an encoded entry has the shape entry_hash expects");

        self.head = entry.hash;
        self.next_index += 1;
        self.since_checkpoint += 1;
        self.uncovered_since_ms.get_or_insert(time_ms);
        let checkpoint = (self.since_checkpoint >= self.config.checkpoint_every_entries)
            .then(|| self.checkpoint(time_ms, key));
        Ok(Appended { entry, checkpoint })
    }

    /// Appends a collapsed run of idle proofs as one [`EntryKind::DEVICE_CHECKPOINT`] entry.
    pub fn append_collapsed(
        &mut self,
        time_ms: u64,
        device: Id,
        run: &ProofRun,
        key: &KeyPair,
    ) -> Result<Appended, AuditError> {
        self.append(
            time_ms,
            EntryKind::DEVICE_CHECKPOINT,
            Some(device),
            codec::encode(run),
            key,
        )
    }

    /// Signs a checkpoint of the current head now.
    pub fn checkpoint(&mut self, now_ms: u64, key: &KeyPair) -> Signed<AuditCheckpoint> {
        self.since_checkpoint = 0;
        self.uncovered_since_ms = None;
        Signed::sign(
            AuditCheckpoint {
                home: self.home.clone(),
                count: self.next_index,
                head: self.head,
                time_ms: now_ms,
            },
            key,
        )
    }

    /// Signs a checkpoint if an entry has waited [`AuditConfig::checkpoint_every_ms`] for one.
    pub fn checkpoint_if_due(
        &mut self,
        now_ms: u64,
        key: &KeyPair,
    ) -> Option<Signed<AuditCheckpoint>> {
        let since = self.uncovered_since_ms?;
        (now_ms.saturating_sub(since) >= self.config.checkpoint_every_ms)
            .then(|| self.checkpoint(now_ms, key))
    }
}

/// A run of routine idle proofs from one device since its last audit entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ProofRun {
    /// Sequence number of the first proof in the run.
    #[n(0)]
    pub first_seq: u64,
    /// Sequence number of the last proof.
    #[n(1)]
    pub last_seq: u64,
    /// The device's chain head at `last_seq` (or the digest of that proof).
    #[n(2)]
    pub head: Digest,
    /// Proofs in the run (fewer than `last_seq - first_seq + 1` when some were lost).
    #[n(3)]
    pub count: u64,
    /// Server time the first proof arrived.
    #[n(4)]
    pub first_ms: u64,
    /// Server time the last proof arrived.
    #[n(5)]
    pub last_ms: u64,
}

impl ProofRun {
    /// Decodes the payload of a [`EntryKind::DEVICE_CHECKPOINT`] entry.
    pub fn from_payload(payload: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(payload, MAX_AUDIT_PAYLOAD_BYTES)
    }
}

/// A run of idle proofs to write now as one device checkpoint entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collapsed<K> {
    /// The device.
    pub device: K,
    /// Its proofs.
    pub run: ProofRun,
}

/// Limits of the proof collapser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollapseConfig {
    /// A run is written once it spans this long, even if nothing else happens.
    pub collapse_max_ms: u64,
    /// Most devices with a run at once; a new device beyond it flushes the oldest run.
    pub max_collapsing_devices: usize,
}

impl Default for CollapseConfig {
    fn default() -> Self {
        CollapseConfig {
            collapse_max_ms: DEFAULT_COLLAPSE_MAX_MS,
            max_collapsing_devices: DEFAULT_MAX_COLLAPSING_DEVICES,
        }
    }
}

/// Why an idle proof was not collapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CollapseError {
    /// The proof's sequence number is not past the run's last: a replay or a reordering,
    /// which the stream checks report; the run is left unchanged.
    #[error("proof sequence {seq} is not after the run's last ({last_seq})")]
    SeqNotIncreasing {
        /// The proof's sequence number.
        seq: u64,
        /// The run's last sequence number.
        last_seq: u64,
    },
}

#[derive(Clone, Debug)]
struct Tracked {
    run: ProofRun,
    /// Key of this run in the age index.
    age: (u64, u64),
}

/// Keeps routine idle proofs out of the audit log: one run per device, written as one entry
/// when the device's state changes ([`ProofCollapser::flush`]), when asked
/// ([`ProofCollapser::flush_all`]), or once the run spans `collapse_max_ms`
/// ([`ProofCollapser::flush_due`] and [`ProofCollapser::idle_proof`]).
#[derive(Clone, Debug)]
pub struct ProofCollapser<K: Clone + Eq + Hash + Ord> {
    config: CollapseConfig,
    runs: HashMap<K, Tracked>,
    /// Runs by (first proof time, arrival order): the oldest first.
    by_age: BTreeMap<(u64, u64), K>,
    serial: u64,
}

impl<K: Clone + Eq + Hash + Ord> ProofCollapser<K> {
    /// An empty collapser (`max_collapsing_devices` at least 1).
    pub fn new(config: CollapseConfig) -> Self {
        ProofCollapser {
            config: CollapseConfig {
                max_collapsing_devices: config.max_collapsing_devices.max(1),
                ..config
            },
            runs: HashMap::new(),
            by_age: BTreeMap::new(),
            serial: 0,
        }
    }

    /// Devices with a run in progress.
    pub fn tracked(&self) -> usize {
        self.runs.len()
    }

    /// The run in progress for `device`, if any.
    pub fn run(&self, device: &K) -> Option<&ProofRun> {
        self.runs.get(device).map(|t| &t.run)
    }

    /// Records one routine idle proof. Returns a run to write now: this device's, once it
    /// spans `collapse_max_ms` (this proof included), or the oldest run, flushed to make room
    /// when a new device arrives and `max_collapsing_devices` runs are in progress.
    pub fn idle_proof(
        &mut self,
        now_ms: u64,
        device: K,
        seq: u64,
        head: Digest,
    ) -> Result<Option<Collapsed<K>>, CollapseError> {
        if let Some(t) = self.runs.get_mut(&device) {
            if seq <= t.run.last_seq {
                return Err(CollapseError::SeqNotIncreasing {
                    seq,
                    last_seq: t.run.last_seq,
                });
            }
            t.run.last_seq = seq;
            t.run.head = head;
            t.run.count += 1;
            t.run.last_ms = now_ms;
            if now_ms.saturating_sub(t.run.first_ms) >= self.config.collapse_max_ms {
                return Ok(self.flush(&device));
            }
            return Ok(None);
        }
        let evicted = if self.runs.len() >= self.config.max_collapsing_devices {
            self.flush_oldest()
        } else {
            None
        };
        self.serial += 1;
        let age = (now_ms, self.serial);
        self.by_age.insert(age, device.clone());
        self.runs.insert(
            device,
            Tracked {
                run: ProofRun {
                    first_seq: seq,
                    last_seq: seq,
                    head,
                    count: 1,
                    first_ms: now_ms,
                    last_ms: now_ms,
                },
                age,
            },
        );
        Ok(evicted)
    }

    /// Ends `device`'s run, if any: call before appending any non-routine event of that
    /// device, so that the record keeps the order in which things happened.
    pub fn flush(&mut self, device: &K) -> Option<Collapsed<K>> {
        let (device, t) = self.runs.remove_entry(device)?;
        self.by_age.remove(&t.age);
        Some(Collapsed { device, run: t.run })
    }

    /// Ends up to `max` runs that began at least `collapse_max_ms` before `now_ms`, oldest
    /// first (devices that went quiet would otherwise keep theirs open forever).
    pub fn flush_due(&mut self, now_ms: u64, max: usize, out: &mut Vec<Collapsed<K>>) {
        for _ in 0..max {
            match self.by_age.first_key_value() {
                Some((&(first_ms, _), _))
                    if now_ms.saturating_sub(first_ms) >= self.config.collapse_max_ms =>
                {
                    out.extend(self.flush_oldest());
                }
                _ => break,
            }
        }
    }

    /// Ends every run, oldest first (before an export or a shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<Collapsed<K>>) {
        while let Some(c) = self.flush_oldest() {
            out.push(c);
        }
    }

    fn flush_oldest(&mut self) -> Option<Collapsed<K>> {
        let (_, device) = self.by_age.pop_first()?;
        let t = self.runs.remove(&device)?;
        Some(Collapsed { device, run: t.run })
    }
}

/// The first frame of an export: whose record it is and where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ExportHeader {
    /// [`EXPORT_VERSION`].
    #[n(0)]
    pub version: u8,
    /// The server key that signs the checkpoints.
    #[n(1)]
    pub server: PubKey,
    /// The home.
    #[n(2)]
    pub home: Id,
    /// Index of the first entry in the export; when not 0, the export begins with a
    /// checkpoint of `count == first_index` that anchors `first_prev`.
    #[n(3)]
    pub first_index: u64,
    /// `prev` of the first entry ([`genesis_head`] when `first_index` is 0).
    #[n(4)]
    pub first_prev: Digest,
}

/// One element of an export after the header, in chain order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportItem {
    /// An entry.
    Entry(AuditEntry),
    /// A checkpoint covering every entry before it.
    Checkpoint(Signed<AuditCheckpoint>),
}

/// Writes an export: [`EXPORT_MAGIC`], then frames of a 4-byte big-endian length and a body.
/// The first body is the CBOR [`ExportHeader`]; each following one is a tag byte (`E` or `C`)
/// and the canonical CBOR of an [`AuditEntry`] or a `Signed<AuditCheckpoint>`. Returns the
/// bytes written. The items should end with a checkpoint of the last entry, or the verifier
/// refuses the export.
pub fn export<'a, W: Write>(
    out: &mut W,
    header: &ExportHeader,
    items: impl IntoIterator<Item = &'a ExportItem>,
) -> std::io::Result<u64> {
    out.write_all(&EXPORT_MAGIC)?;
    let mut written = EXPORT_MAGIC.len() as u64;
    let mut buf = Vec::with_capacity(256);
    minicbor::encode(header, &mut buf).expect("encoding into a Vec is infallible");
    written += write_frame(out, &buf)?;
    for item in items {
        buf.clear();
        match item {
            ExportItem::Entry(e) => {
                buf.push(FRAME_ENTRY);
                minicbor::encode(e, &mut buf)
            }
            ExportItem::Checkpoint(c) => {
                buf.push(FRAME_CHECKPOINT);
                minicbor::encode(c, &mut buf)
            }
        }
        .expect("encoding into a Vec is infallible");
        written += write_frame(out, &buf)?;
    }
    Ok(written)
}

fn write_frame<W: Write>(out: &mut W, body: &[u8]) -> std::io::Result<u64> {
    let len = u32::try_from(body.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(body)?;
    Ok(4 + body.len() as u64)
}

/// What a verified export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The server key the checkpoints verify under.
    pub server: PubKey,
    /// The home.
    pub home: Id,
    /// Index of the first entry.
    pub first_index: u64,
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Hash of the last entry, as the last checkpoint signs it.
    pub head: Digest,
    /// Entries that are collapsed runs of idle proofs ([`EntryKind::DEVICE_CHECKPOINT`]).
    pub device_checkpoints: u64,
    /// Server time of the last entry.
    pub last_entry_ms: u64,
    /// Time of the last checkpoint: nothing after it is in this export. Compare `head` with
    /// the live server's to know whether the export is the whole record.
    pub last_checkpoint_ms: u64,
}

/// Where in an export a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyPlace {
    /// Before the first item: the magic or the header.
    Header,
    /// The entry with this index (for an entry that is missing or malformed, the index the
    /// next entry should have had).
    Entry(u64),
    /// The checkpoint that follows the entries before this index.
    Checkpoint(u64),
    /// The end of the export, after the entries before this index.
    End(u64),
}

/// Why an export does not verify.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// The stream does not start with [`EXPORT_MAGIC`].
    #[error("not a Doorward audit export")]
    BadMagic,
    /// An export version this verifier does not read.
    #[error("export version {0} is not supported (this verifier reads {EXPORT_VERSION})")]
    Version(u8),
    /// The stream ends in the middle of a frame.
    #[error("the export is truncated in the middle of a frame")]
    Truncated,
    /// The reader failed.
    #[error("read error: {0}")]
    Io(String),
    /// A frame is longer than [`MAX_EXPORT_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the limit")]
    FrameTooLarge(u64),
    /// A frame has an unknown tag.
    #[error("unknown frame tag {0:#04x}")]
    UnknownFrame(u8),
    /// A frame does not decode (canonically) as what its tag says.
    #[error("malformed: {0}")]
    Malformed(DecodeError),
    /// The header names another server key than the one expected.
    #[error("signed by server key {found}, not the expected one")]
    WrongServerKey {
        /// The key the export names.
        found: PubKey,
    },
    /// An entry of a partial export comes before any checkpoint anchors its start, or a full
    /// export does not start at the home's genesis.
    #[error("the first entry is not anchored by a checkpoint or the home's genesis")]
    Unanchored,
    /// An entry has another index than the one after its predecessor (missing, repeated or
    /// reordered entries).
    #[error("entry has index {found}")]
    IndexGap {
        /// The index found.
        found: u64,
    },
    /// An entry's `prev` is not its predecessor's hash.
    #[error("prev does not match the previous entry's hash")]
    BrokenLink,
    /// An entry's `hash` does not match its contents.
    #[error("hash does not match the entry's contents")]
    BadHash,
    /// A checkpoint's signature does not verify under the server key.
    #[error("checkpoint signature: {0}")]
    CheckpointSignature(SigError),
    /// A checkpoint is for another home.
    #[error("checkpoint is for home {0}")]
    CheckpointHome(Id),
    /// A checkpoint does not cover exactly the entries before it.
    #[error("checkpoint covers {count} entries with head {head}, which is not this chain")]
    CheckpointMismatch {
        /// Entries it claims to cover.
        count: u64,
        /// Head it claims.
        head: Digest,
    },
    /// The export does not end with a checkpoint of its last entry: entries from the
    /// reported index on are not covered by any signature (a truncated export, or a tail
    /// appended by someone without the server key).
    #[error("no checkpoint covers the entries from here on")]
    Uncovered,
}

/// An export failed verification: where, and why.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {failure}")]
pub struct VerifyError {
    /// Where the first problem is.
    pub place: VerifyPlace,
    /// What it is.
    pub failure: VerifyFailure,
}

impl VerifyError {
    /// The index of the first entry that could not be verified, if the problem is past the
    /// header.
    pub fn index(&self) -> Option<u64> {
        match self.place {
            VerifyPlace::Header => None,
            VerifyPlace::Entry(i) | VerifyPlace::Checkpoint(i) | VerifyPlace::End(i) => Some(i),
        }
    }
}

impl std::fmt::Display for VerifyPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyPlace::Header => f.write_str("header"),
            VerifyPlace::Entry(i) => write!(f, "entry {i}"),
            VerifyPlace::Checkpoint(i) => write!(f, "checkpoint before entry {i}"),
            VerifyPlace::End(i) => write!(f, "end of export, entries from {i}"),
        }
    }
}

/// An encoded entry read in place, without allocating: the verifier's view of
/// [`AuditEntry`]. It accepts exactly what [`AuditEntry::from_bytes`] accepts (the rules of
/// [`codec::decode`]: size limit, all input consumed, canonical form; and the identifier and
/// payload limits), which a differential test checks, and reads it in one pass: parsing is a
/// third of the cost of verifying an entry otherwise.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // `device` and `payload` are compared by the tests.
struct EntryView<'a> {
    index: u64,
    time_ms: u64,
    kind: EntryKind,
    device: Option<&'a str>,
    payload: &'a [u8],
    prev: Digest,
    hash: Digest,
}

/// CBOR major types used by entries.
const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const CBOR_NULL: u8 = 0xf6;

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn malformed(what: &str) -> DecodeError {
        DecodeError::Malformed(what.to_owned())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| Self::malformed("unexpected end of input"))?;
        let out = &self.b[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// One data item head of major type `major`, in its shortest form (as minicbor writes it).
    fn head(&mut self, major: u8) -> Result<u64, DecodeError> {
        let ib = self.take(1)?[0];
        if ib >> 5 != major {
            return Err(Self::malformed("unexpected type"));
        }
        let (arg, min) = match ib & 0x1f {
            n @ 0..=23 => return Ok(u64::from(n)),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => (
                u64::from(u16::from_be_bytes(self.take(2)?.try_into().expect("2"))),
                0x100,
            ),
            26 => (
                u64::from(u32::from_be_bytes(self.take(4)?.try_into().expect("4"))),
                0x1_0000,
            ),
            27 => (
                u64::from_be_bytes(self.take(8)?.try_into().expect("8")),
                0x1_0000_0000,
            ),
            _ => return Err(Self::malformed("indefinite or reserved length")),
        };
        if arg < min {
            return Err(DecodeError::NotCanonical);
        }
        Ok(arg)
    }

    fn len(&mut self, major: u8) -> Result<usize, DecodeError> {
        usize::try_from(self.head(major)?).map_err(|_| Self::malformed("length"))
    }

    fn digest(&mut self) -> Result<Digest, DecodeError> {
        if self.len(MAJOR_BYTES)? != 32 {
            return Err(DecodeError::Invalid("Digest length"));
        }
        Ok(Digest(self.take(32)?.try_into().expect("32")))
    }
}

impl<'a> EntryView<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_AUDIT_ENTRY_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit: MAX_AUDIT_ENTRY_BYTES,
            });
        }
        let mut c = Cursor { b: bytes, at: 0 };
        if c.head(MAJOR_ARRAY)? != 7 {
            return Err(Cursor::malformed("an entry has 7 fields"));
        }
        let index = c.head(MAJOR_UNSIGNED)?;
        let time_ms = c.head(MAJOR_UNSIGNED)?;
        let kind = u16::try_from(c.head(MAJOR_UNSIGNED)?)
            .map(EntryKind)
            .map_err(|_| Cursor::malformed("kind out of range"))?;
        let device = if c.b.get(c.at) == Some(&CBOR_NULL) {
            c.at += 1;
            None
        } else {
            let n = c.len(MAJOR_TEXT)?;
            let raw = c.take(n)?;
            // An identifier is ASCII, so checking its rule also checks it is UTF-8.
            let s = std::str::from_utf8(raw).map_err(|_| Cursor::malformed("invalid UTF-8"))?;
            if !valid_id(s) {
                return Err(DecodeError::Invalid("identifier"));
            }
            Some(s)
        };
        let n = c.len(MAJOR_BYTES)?;
        let payload = c.take(n)?;
        if payload.len() > MAX_AUDIT_PAYLOAD_BYTES {
            return Err(DecodeError::Invalid("audit payload too large"));
        }
        let prev = c.digest()?;
        let hash = c.digest()?;
        if c.at != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - c.at));
        }
        Ok(EntryView {
            index,
            time_ms,
            kind,
            device,
            payload,
            prev,
            hash,
        })
    }
}

/// The rule of [`Id`], checked without allocating one (a test holds the two together).
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= doorward_proto::MAX_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Reads frames from the caller's reader, reusing one buffer.
struct Frames<R> {
    input: R,
    buf: Vec<u8>,
}

impl<R: Read> Frames<R> {
    /// The next frame body; `Ok(false)` at a clean end of stream.
    fn next(&mut self) -> Result<bool, VerifyFailure> {
        let mut len = [0u8; 4];
        let got = read_full(&mut self.input, &mut len)?;
        if got == 0 {
            return Ok(false);
        }
        if got < 4 {
            return Err(VerifyFailure::Truncated);
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_EXPORT_FRAME_BYTES {
            return Err(VerifyFailure::FrameTooLarge(len as u64));
        }
        self.buf.resize(len, 0);
        if read_full(&mut self.input, &mut self.buf)? < len {
            return Err(VerifyFailure::Truncated);
        }
        Ok(true)
    }
}

/// Fills `buf` as far as the reader goes; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, VerifyFailure> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VerifyFailure::Io(e.to_string())),
        }
    }
    Ok(at)
}

/// Verifies an export offline: every hash link and index, every checkpoint signature under
/// the server key (the strict rule) and its match with the chain, and that the export ends
/// with a checkpoint of its last entry. With `expected_server`, the export must name that key;
/// without it, the report says which key signed, for the reader to compare. Pass a buffered
/// reader (or a byte slice): frames are read with small reads.
pub fn verify_export<R: Read>(
    input: R,
    expected_server: Option<&PubKey>,
) -> Result<VerifyReport, VerifyError> {
    verify_export_proving(input, expected_server).result
}

/// [`verify_export`]'s verdict, and what it proved before its first problem.
#[derive(Debug)]
pub struct Verification {
    /// The verdict, as [`verify_export`] gives it.
    pub result: Result<VerifyReport, VerifyError>,
    /// The entries `[start, end)` that are hash-linked and covered by a checkpoint whose
    /// signature verified, before the first problem (for a verified export: all of them).
    /// Tampering after a verified checkpoint leaves what it covers proved. `None` when no
    /// checkpoint verified.
    pub proven: Option<std::ops::Range<u64>>,
}

/// [`verify_export`], also saying which entries are proved when the export does not verify.
pub fn verify_export_proving<R: Read>(input: R, expected_server: Option<&PubKey>) -> Verification {
    let mut proven = None;
    let result = verify_frames(input, expected_server, &mut proven);
    Verification { result, proven }
}

fn verify_frames<R: Read>(
    input: R,
    expected_server: Option<&PubKey>,
    proven: &mut Option<std::ops::Range<u64>>,
) -> Result<VerifyReport, VerifyError> {
    let header_err = |failure| VerifyError {
        place: VerifyPlace::Header,
        failure,
    };
    let mut frames = Frames {
        input,
        buf: Vec::with_capacity(512),
    };
    let mut magic = [0u8; 8];
    if read_full(&mut frames.input, &mut magic).map_err(header_err)? < magic.len()
        || magic != EXPORT_MAGIC
    {
        return Err(header_err(VerifyFailure::BadMagic));
    }
    if !frames.next().map_err(header_err)? {
        return Err(header_err(VerifyFailure::Truncated));
    }
    let header: ExportHeader = codec::decode(&frames.buf, MAX_EXPORT_FRAME_BYTES)
        .map_err(|e| header_err(VerifyFailure::Malformed(e)))?;
    if header.version != EXPORT_VERSION {
        return Err(header_err(VerifyFailure::Version(header.version)));
    }
    if guard::enabled(Guard::AuditCheckpoint) {
        if let Some(k) = expected_server {
            if *k != header.server {
                return Err(header_err(VerifyFailure::WrongServerKey {
                    found: header.server,
                }));
            }
        }
    }
    if guard::enabled(Guard::AuditHashChain)
        && header.first_index == 0
        && header.first_prev != genesis_head(&header.home)
    {
        return Err(VerifyError {
            place: VerifyPlace::Entry(0),
            failure: VerifyFailure::Unanchored,
        });
    }

    let ctx = Contexts::new();
    let mut next_index = header.first_index;
    let mut head = header.first_prev;
    // A partial export is anchored once a checkpoint vouches for its starting point.
    let mut anchored = header.first_index == 0;
    let mut covered = true;
    let mut first_uncovered = next_index;
    let mut report = VerifyReport {
        server: header.server,
        home: header.home.clone(),
        first_index: header.first_index,
        entries: 0,
        checkpoints: 0,
        head,
        device_checkpoints: 0,
        last_entry_ms: 0,
        last_checkpoint_ms: 0,
    };
    let mut saw_checkpoint = false;

    loop {
        let more = frames.next().map_err(|failure| VerifyError {
            place: VerifyPlace::Entry(next_index),
            failure,
        })?;
        if !more {
            break;
        }
        let Some((&tag, body)) = frames.buf.split_first() else {
            return Err(VerifyError {
                place: VerifyPlace::Entry(next_index),
                failure: VerifyFailure::Malformed(DecodeError::Malformed("empty frame".into())),
            });
        };
        match tag {
            FRAME_ENTRY => {
                let err = |failure| VerifyError {
                    place: VerifyPlace::Entry(next_index),
                    failure,
                };
                let entry =
                    EntryView::decode(body).map_err(|e| err(VerifyFailure::Malformed(e)))?;
                if !anchored && guard::enabled(Guard::AuditCheckpoint) {
                    return Err(err(VerifyFailure::Unanchored));
                }
                if guard::enabled(Guard::AuditHashChain) {
                    if entry.index != next_index {
                        return Err(err(VerifyFailure::IndexGap { found: entry.index }));
                    }
                    if entry.prev != head {
                        return Err(err(VerifyFailure::BrokenLink));
                    }
                    if ctx.entry_hash(body) != Some(entry.hash) {
                        return Err(err(VerifyFailure::BadHash));
                    }
                }
                if covered {
                    covered = false;
                    first_uncovered = entry.index;
                }
                head = entry.hash;
                next_index = entry.index.saturating_add(1);
                report.entries += 1;
                report.last_entry_ms = entry.time_ms;
                if entry.kind == EntryKind::DEVICE_CHECKPOINT {
                    report.device_checkpoints += 1;
                }
            }
            FRAME_CHECKPOINT => {
                let err = |failure| VerifyError {
                    place: VerifyPlace::Checkpoint(next_index),
                    failure,
                };
                let cp: Signed<AuditCheckpoint> = codec::decode(body, MAX_EXPORT_FRAME_BYTES)
                    .map_err(|e| err(VerifyFailure::Malformed(e)))?;
                if guard::enabled(Guard::AuditCheckpoint) {
                    cp.verify(&header.server)
                        .map_err(|e| err(VerifyFailure::CheckpointSignature(e)))?;
                    if cp.body.home != header.home {
                        return Err(err(VerifyFailure::CheckpointHome(cp.body.home.clone())));
                    }
                    if cp.body.count != next_index || cp.body.head != head {
                        return Err(err(VerifyFailure::CheckpointMismatch {
                            count: cp.body.count,
                            head: cp.body.head,
                        }));
                    }
                }
                anchored = true;
                covered = true;
                saw_checkpoint = true;
                if next_index > header.first_index {
                    *proven = Some(header.first_index..next_index);
                }
                report.checkpoints += 1;
                report.last_checkpoint_ms = cp.body.time_ms;
            }
            other => {
                return Err(VerifyError {
                    place: VerifyPlace::Entry(next_index),
                    failure: VerifyFailure::UnknownFrame(other),
                })
            }
        }
    }
    if guard::enabled(Guard::AuditCheckpoint) && (!covered || !saw_checkpoint) {
        return Err(VerifyError {
            place: VerifyPlace::End(if covered { next_index } else { first_uncovered }),
            failure: VerifyFailure::Uncovered,
        });
    }
    report.head = head;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    const T0: u64 = 1_700_000_000_000;

    fn key(seed: u64) -> KeyPair {
        KeyPair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    fn home() -> Id {
        Id::new("home-1").unwrap()
    }

    /// A chain of `n` entries with a checkpoint every 4 entries and one at the end.
    fn build(n: u64, key: &KeyPair) -> (ExportHeader, Vec<ExportItem>) {
        let config = AuditConfig {
            checkpoint_every_entries: 4,
            ..AuditConfig::default()
        };
        let mut chain = AuditChain::new(home(), config);
        let mut items = Vec::new();
        for i in 0..n {
            let device = (i % 3 != 0).then(|| Id::new(format!("lock-{}", i % 5)).unwrap());
            let a = chain
                .append(
                    T0 + i * 10,
                    EntryKind::DEVICE_STATE,
                    device,
                    vec![i as u8; (i % 7) as usize],
                    key,
                )
                .unwrap();
            items.push(ExportItem::Entry(a.entry));
            items.extend(a.checkpoint.map(ExportItem::Checkpoint));
        }
        if !matches!(items.last(), Some(ExportItem::Checkpoint(_))) {
            items.push(ExportItem::Checkpoint(chain.checkpoint(T0 + n * 10, key)));
        }
        (header(key, 0, genesis_head(&home())), items)
    }

    fn header(key: &KeyPair, first_index: u64, first_prev: Digest) -> ExportHeader {
        ExportHeader {
            version: EXPORT_VERSION,
            server: key.public(),
            home: home(),
            first_index,
            first_prev,
        }
    }

    fn bytes(header: &ExportHeader, items: &[ExportItem]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = export(&mut out, header, items).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    fn verify(header: &ExportHeader, items: &[ExportItem]) -> Result<VerifyReport, VerifyError> {
        verify_export(&bytes(header, items)[..], Some(&header.server))
    }

    fn entry_pos(items: &[ExportItem], index: u64) -> usize {
        items
            .iter()
            .position(|it| matches!(it, ExportItem::Entry(e) if e.index == index))
            .unwrap()
    }

    /// Byte ranges of each frame body in an export, with the entry index if it is an entry.
    fn frames(b: &[u8]) -> Vec<(std::ops::Range<usize>, Option<u64>)> {
        let mut at = EXPORT_MAGIC.len();
        let mut out = Vec::new();
        while at < b.len() {
            let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let body = at + 4..at + 4 + len;
            let index = (b[body.start] == FRAME_ENTRY).then(|| {
                AuditEntry::from_bytes(&b[body.start + 1..body.end])
                    .unwrap()
                    .index
            });
            out.push((body.clone(), index));
            at = body.end;
        }
        out
    }

    #[test]
    fn i7_chain_of_entries_verifies() {
        let k = key(1);
        let (h, items) = build(10, &k);
        let r = verify(&h, &items).unwrap();
        assert_eq!(r.entries, 10);
        assert_eq!(r.checkpoints, 3);
        assert_eq!(r.server, k.public());
        assert_eq!(r.home, home());
        assert_eq!(r.last_checkpoint_ms, T0 + 100);
        let ExportItem::Entry(last) = &items[items.len() - 2] else {
            panic!("the last entry precedes the final checkpoint")
        };
        assert_eq!(r.head, last.hash);
        // Without an expected key, the report names the signer.
        let r2 = verify_export(&bytes(&h, &items)[..], None).unwrap();
        assert_eq!(r2.server, k.public());
    }

    #[test]
    fn entry_hash_is_blake3_of_the_entry_without_its_hash() {
        #[derive(Encode)]
        struct WithoutHash<'a> {
            #[n(0)]
            index: u64,
            #[n(1)]
            time_ms: u64,
            #[n(2)]
            kind: EntryKind,
            #[n(3)]
            device: &'a Option<Id>,
            #[n(4)]
            #[cbor(with = "minicbor::bytes")]
            payload: &'a [u8],
            #[n(5)]
            prev: Digest,
        }
        let k = key(1);
        let (_, items) = build(6, &k);
        for it in &items {
            let ExportItem::Entry(e) = it else { continue };
            let content = codec::encode(&WithoutHash {
                index: e.index,
                time_ms: e.time_ms,
                kind: e.kind,
                device: &e.device,
                payload: &e.payload,
                prev: e.prev,
            });
            assert_eq!(e.hash, Digest(blake3::derive_key(ENTRY_CONTEXT, &content)));
            assert_eq!(AuditEntry::from_bytes(&e.to_bytes()).as_ref(), Ok(e));
        }
    }

    fn arb_entry() -> impl proptest::strategy::Strategy<Value = AuditEntry> {
        use proptest::prelude::*;
        (
            any::<u64>(),
            prop_oneof![any::<u64>(), 0u64..30],
            any::<u16>(),
            proptest::option::of("[A-Za-z0-9._:-]{1,64}"),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(index, time_ms, kind, device, payload, prev, hash)| AuditEntry {
                    index,
                    time_ms,
                    kind: EntryKind(kind),
                    device: device.map(|d| Id::new(d).unwrap()),
                    payload,
                    prev: Digest(prev),
                    hash: Digest(hash),
                },
            )
    }

    fn same(view: &EntryView<'_>, e: &AuditEntry) -> bool {
        view.index == e.index
            && view.time_ms == e.time_ms
            && view.kind == e.kind
            && view.device == e.device.as_ref().map(Id::as_str)
            && view.payload == &e.payload[..]
            && view.prev == e.prev
            && view.hash == e.hash
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The verifier's one-pass parser accepts exactly what `codec::decode` accepts.
        #[test]
        fn entry_view_agrees_with_codec_decode(
            e in arb_entry(),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..3),
            cut in proptest::prelude::any::<Option<usize>>(),
            extra in proptest::option::of(proptest::prelude::any::<u8>()),
        ) {
            let mut b = e.to_bytes();
            let v = EntryView::decode(&b).unwrap();
            proptest::prop_assert!(same(&v, &e));
            for (pos, byte) in edits {
                let n = b.len();
                b[pos % n] = byte;
            }
            if let Some(cut) = cut {
                b.truncate(cut % (b.len() + 1));
            }
            b.extend(extra);
            let view = EntryView::decode(&b);
            let full = AuditEntry::from_bytes(&b);
            match (&view, &full) {
                (Ok(v), Ok(f)) => proptest::prop_assert!(same(v, f)),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "disagree on {b:02x?}: {view:?} vs {full:?}"),
            }
        }
    }

    #[test]
    fn entry_view_refuses_non_canonical_forms_as_codec_does() {
        let e = AuditEntry {
            index: 5,
            time_ms: 300,
            kind: EntryKind(1),
            device: None,
            payload: vec![1, 2],
            prev: Digest::ZERO,
            hash: Digest::ZERO,
        };
        let b = e.to_bytes();
        assert_eq!(&b[..6], &[0x87, 0x05, 0x19, 0x01, 0x2c, 0x01]);
        let variants: [Vec<u8>; 4] = [
            // index 5 written in two bytes
            [&[0x87, 0x18, 0x05], &b[2..]].concat(),
            // time 300 written in four bytes
            [&[0x87, 0x05, 0x1a, 0, 0, 0x01, 0x2c], &b[5..]].concat(),
            // `undefined` for the absent device
            [&b[..6], &[0xf7], &b[7..]].concat(),
            // an indefinite-length payload
            [&b[..7], &[0x5f, 0x42, 1, 2, 0xff], &b[10..]].concat(),
        ];
        for v in variants {
            assert!(AuditEntry::from_bytes(&v).is_err(), "{v:02x?}");
            assert!(EntryView::decode(&v).is_err(), "{v:02x?}");
        }
    }

    #[test]
    fn valid_id_is_the_rule_of_id() {
        let long = "a".repeat(65);
        for s in [
            "",
            "a",
            "lock-1",
            "a.b_c:d-e",
            "é",
            "a b",
            "a/b",
            &long[..64],
            &long,
        ] {
            assert_eq!(valid_id(s), Id::new(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn i7_flipping_any_byte_of_any_entry_names_that_entry() {
        let k = key(1);
        let (h, items) = build(9, &k);
        let good = bytes(&h, &items);
        let mut checked = 0;
        for (body, index) in frames(&good) {
            let Some(index) = index else { continue };
            // The length prefix, the tag and every byte of the entry's encoding.
            for pos in body.start - 4..body.end {
                let mut bad = good.clone();
                bad[pos] ^= 0x01;
                let err = verify_export(&bad[..], Some(&k.public()))
                    .expect_err(&format!("flip at byte {pos} of entry {index} went unseen"));
                assert_eq!(err.index(), Some(index), "flip at {pos}: {err}");
                checked += 1;
            }
        }
        assert!(checked > 9 * 40);
    }

    #[test]
    fn an_edited_entry_leaves_what_earlier_checkpoints_cover_proved() {
        // 9 entries, checkpoints of counts 4, 8 and 9.
        let k = key(1);
        let (h, items) = build(9, &k);
        let good = bytes(&h, &items);
        let whole = verify_export_proving(&good[..], Some(&k.public()));
        assert_eq!(whole.proven, Some(0..9));
        assert!(whole.result.is_ok());
        for (body, index) in frames(&good) {
            let Some(index) = index else { continue };
            let mut bad = good.clone();
            bad[body.end - 1] ^= 0x01;
            let v = verify_export_proving(&bad[..], Some(&k.public()));
            assert_eq!(v.result.unwrap_err().index(), Some(index));
            let expected = match index {
                0..4 => None,
                4..8 => Some(0..4),
                _ => Some(0..8),
            };
            assert_eq!(v.proven, expected, "entry {index} edited");
        }
        // A forged checkpoint proves nothing: what it would cover stays unproved.
        let mut forged = items.clone();
        let pos = entry_pos(&forged, 3) + 1;
        let ExportItem::Checkpoint(cp) = &mut forged[pos] else {
            panic!("a checkpoint follows entry 3")
        };
        cp.sig.0[10] ^= 1;
        let v = verify_export_proving(&bytes(&h, &forged)[..], Some(&k.public()));
        assert!(v.result.is_err());
        assert_eq!(v.proven, None);
    }

    #[test]
    fn i7_flipping_any_byte_anywhere_is_caught() {
        // Header, checkpoints and entries alike: no single-byte change survives.
        let k = key(1);
        let (h, items) = build(5, &k);
        let good = bytes(&h, &items);
        for pos in 0..good.len() {
            let mut bad = good.clone();
            bad[pos] ^= 0x80;
            assert!(
                verify_export(&bad[..], None).is_err(),
                "flip at byte {pos} of {} went unseen",
                good.len()
            );
        }
    }

    #[test]
    fn i7_dropped_entry_is_named() {
        let k = key(1);
        let (h, mut items) = build(10, &k);
        items.remove(entry_pos(&items, 5));
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Entry(5));
        assert_eq!(err.failure, VerifyFailure::IndexGap { found: 6 });
    }

    #[test]
    fn i7_reordered_entries_are_named() {
        let k = key(1);
        let (h, mut items) = build(10, &k);
        let (a, b) = (entry_pos(&items, 5), entry_pos(&items, 6));
        items.swap(a, b);
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Entry(5));
        assert_eq!(err.failure, VerifyFailure::IndexGap { found: 6 });
    }

    #[test]
    fn i7_renumbered_entries_do_not_hide_a_removal() {
        // Drop entry 5 and renumber the rest: the links break at the renumbered entry.
        let k = key(1);
        let (h, mut items) = build(10, &k);
        items.remove(entry_pos(&items, 5));
        for it in items.iter_mut() {
            if let ExportItem::Entry(e) = it {
                if e.index > 5 {
                    e.index -= 1;
                }
            }
        }
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Entry(5));
        assert_eq!(err.failure, VerifyFailure::BrokenLink);
    }

    #[test]
    fn i7_export_truncated_after_the_last_checkpoint_is_caught() {
        let k = key(1);
        // 10 entries: checkpoints after entries 3 and 7 (counts 4 and 8), then one of count 10.
        let (h, mut items) = build(10, &k);
        assert!(matches!(items.pop(), Some(ExportItem::Checkpoint(c)) if c.body.count == 10));
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::End(8));
        assert_eq!(err.failure, VerifyFailure::Uncovered);

        // Cut in the middle of the last entry's frame.
        let good = bytes(&h, &items);
        let err = verify_export(&good[..good.len() - 3], Some(&k.public())).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Entry(9));
        assert_eq!(err.failure, VerifyFailure::Truncated);
    }

    #[test]
    fn i7_entries_appended_without_the_server_key_are_uncovered() {
        // Someone extends the chain correctly (hashes are public) but cannot sign.
        let k = key(1);
        let (h, mut items) = build(8, &k);
        let ExportItem::Entry(last) = &items[items.len() - 2] else {
            panic!()
        };
        let mut forger = AuditChain::resume(home(), 8, last.hash, AuditConfig::default());
        let a = forger
            .append(T0 + 999, EntryKind::ALARM_ACK, None, vec![], &key(9))
            .unwrap();
        items.push(ExportItem::Entry(a.entry));
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::End(8));
        assert_eq!(err.failure, VerifyFailure::Uncovered);
    }

    #[test]
    fn i7_forged_checkpoint_signature_is_named() {
        let k = key(1);
        let (h, mut items) = build(10, &k);
        let pos = entry_pos(&items, 3) + 1;
        let ExportItem::Checkpoint(cp) = &mut items[pos] else {
            panic!("a checkpoint follows entry 3")
        };
        cp.sig.0[10] ^= 1;
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Checkpoint(4));
        assert!(matches!(err.failure, VerifyFailure::CheckpointSignature(_)));
    }

    #[test]
    fn i7_checkpoint_signed_by_another_key_is_named() {
        let (k, other) = (key(1), key(2));
        let (h, mut items) = build(10, &k);
        let pos = entry_pos(&items, 7) + 1;
        let ExportItem::Checkpoint(cp) = &items[pos] else {
            panic!("a checkpoint follows entry 7")
        };
        items[pos] = ExportItem::Checkpoint(Signed::sign(cp.body.clone(), &other));
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Checkpoint(8));
        assert_eq!(
            err.failure,
            VerifyFailure::CheckpointSignature(SigError::BadSignature)
        );
    }

    #[test]
    fn i7_export_resigned_by_another_server_needs_the_expected_key() {
        // Everything re-signed by another key and the header changed to match: consistent,
        // so only the reader's expected key (or the reported key) reveals it.
        let (k, other) = (key(1), key(2));
        let (mut h, mut items) = build(6, &k);
        for it in items.iter_mut() {
            if let ExportItem::Checkpoint(cp) = it {
                *cp = Signed::sign(cp.body.clone(), &other);
            }
        }
        h.server = other.public();
        let b = bytes(&h, &items);
        assert_eq!(verify_export(&b[..], None).unwrap().server, other.public());
        let err = verify_export(&b[..], Some(&k.public())).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Header);
        assert_eq!(
            err.failure,
            VerifyFailure::WrongServerKey {
                found: other.public()
            }
        );
    }

    #[test]
    fn i7_checkpoint_that_does_not_match_the_chain_is_named() {
        let k = key(1);
        let (h, mut items) = build(10, &k);
        // An older, genuine checkpoint replayed later in the stream.
        let old = items[entry_pos(&items, 3) + 1].clone();
        items.insert(entry_pos(&items, 5), old);
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Checkpoint(5));
        assert!(matches!(
            err.failure,
            VerifyFailure::CheckpointMismatch { count: 4, .. }
        ));
    }

    #[test]
    fn i7_checkpoint_of_another_home_is_refused() {
        let k = key(1);
        let (h, mut items) = build(4, &k);
        let ExportItem::Checkpoint(cp) = items.last().unwrap().clone() else {
            panic!()
        };
        let mut body = cp.body;
        body.home = Id::new("home-2").unwrap();
        *items.last_mut().unwrap() = ExportItem::Checkpoint(Signed::sign(body, &k));
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Checkpoint(4));
        assert!(matches!(err.failure, VerifyFailure::CheckpointHome(_)));
    }

    #[test]
    fn i7_full_export_must_start_at_the_home_genesis() {
        let k = key(1);
        let (mut h, items) = build(4, &k);
        h.first_prev = Digest::ZERO;
        let err = verify(&h, &items).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Entry(0));
        assert_eq!(err.failure, VerifyFailure::Unanchored);
    }

    #[test]
    fn partial_export_anchored_by_a_checkpoint_verifies() {
        let k = key(1);
        let (_, items) = build(10, &k);
        // Entries 4.. with the checkpoint of count 4 in front.
        let start = entry_pos(&items, 3) + 1;
        let ExportItem::Checkpoint(anchor) = &items[start] else {
            panic!()
        };
        let h = header(&k, 4, anchor.body.head);
        let r = verify(&h, &items[start..]).unwrap();
        assert_eq!((r.first_index, r.entries), (4, 6));
        // Without the anchor the start is unverified.
        let err = verify(&h, &items[start + 1..]).unwrap_err();
        assert_eq!(err.place, VerifyPlace::Entry(4));
        assert_eq!(err.failure, VerifyFailure::Unanchored);
    }

    #[test]
    fn i7_audit_hash_chain_guard_is_what_catches_an_edited_entry() {
        let k = key(1);
        let (h, mut items) = build(6, &k);
        let pos = entry_pos(&items, 2);
        let ExportItem::Entry(e) = &mut items[pos] else {
            panic!()
        };
        e.payload = b"the door was locked".to_vec();
        assert_eq!(
            verify(&h, &items).unwrap_err(),
            VerifyError {
                place: VerifyPlace::Entry(2),
                failure: VerifyFailure::BadHash
            }
        );
        let _off = guard::disable(Guard::AuditHashChain);
        assert!(
            verify(&h, &items).is_ok(),
            "the edit passes without the guard"
        );
    }

    #[test]
    fn i7_audit_checkpoint_guard_is_what_catches_a_forged_or_missing_checkpoint() {
        let (k, other) = (key(1), key(2));
        let (h, mut items) = build(6, &k);
        let last = items.len() - 1;
        let ExportItem::Checkpoint(cp) = &items[last] else {
            panic!()
        };
        items[last] = ExportItem::Checkpoint(Signed::sign(cp.body.clone(), &other));
        let mut truncated = items.clone();
        truncated.pop();
        assert!(verify(&h, &items).is_err());
        assert!(verify(&h, &truncated).is_err());
        let _off = guard::disable(Guard::AuditCheckpoint);
        assert!(verify(&h, &items).is_ok(), "forged checkpoint passes");
        assert!(verify(&h, &truncated).is_ok(), "truncation passes");
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let k = key(1);
        assert_eq!(
            verify_export(&b""[..], None).unwrap_err().failure,
            VerifyFailure::BadMagic
        );
        let mut b = EXPORT_MAGIC.to_vec();
        assert_eq!(
            verify_export(&b[..], None).unwrap_err().failure,
            VerifyFailure::Truncated
        );
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            verify_export(&b[..], None).unwrap_err().failure,
            VerifyFailure::FrameTooLarge(_)
        ));
        // A valid header followed by an empty frame, an unknown tag, or nothing at all.
        let (h, _) = build(0, &k);
        let base = bytes(&h, &[]);
        let err = verify_export(&base[..], None).unwrap_err();
        assert_eq!(err.place, VerifyPlace::End(0));
        for tail in [&[0u8, 0, 0, 0][..], &[0, 0, 0, 1, b'Z'][..]] {
            let mut bad = base.clone();
            bad.extend_from_slice(tail);
            assert_eq!(
                verify_export(&bad[..], None).unwrap_err().place,
                VerifyPlace::Entry(0)
            );
        }
        // An empty chain with its checkpoint is a valid (empty) record.
        let (h, items) = build(0, &k);
        assert_eq!(verify(&h, &items).unwrap().entries, 0);
    }

    #[test]
    fn payload_limit_is_enforced() {
        let k = key(1);
        let mut chain = AuditChain::new(home(), AuditConfig::default());
        let err = chain
            .append(
                T0,
                EntryKind::ALARM,
                None,
                vec![0; MAX_AUDIT_PAYLOAD_BYTES + 1],
                &k,
            )
            .unwrap_err();
        assert_eq!(
            err,
            AuditError::PayloadTooLarge {
                len: MAX_AUDIT_PAYLOAD_BYTES + 1,
                limit: MAX_AUDIT_PAYLOAD_BYTES
            }
        );
        assert_eq!(chain.next_index(), 0);
        // The largest payload fits in an export frame and verifies.
        let a = chain
            .append(
                T0,
                EntryKind::ALARM,
                Some(Id::new("x".repeat(64)).unwrap()),
                vec![7; MAX_AUDIT_PAYLOAD_BYTES],
                &k,
            )
            .unwrap();
        let items = [
            ExportItem::Entry(a.entry),
            ExportItem::Checkpoint(chain.checkpoint(T0, &k)),
        ];
        let (h, _) = build(0, &k);
        assert_eq!(verify(&h, &items).unwrap().entries, 1);
    }

    #[test]
    fn checkpoints_every_n_entries_and_when_due_by_time() {
        let k = key(1);
        let config = AuditConfig {
            checkpoint_every_entries: 3,
            checkpoint_every_ms: 500,
        };
        let mut chain = AuditChain::new(home(), config);
        assert!(chain.checkpoint_if_due(T0 + 10_000, &k).is_none());
        let mut signed = Vec::new();
        for i in 0..7 {
            let a = chain
                .append(T0 + i, EntryKind::DELIVERY, None, vec![], &k)
                .unwrap();
            signed.extend(a.checkpoint.map(|c| c.body.count));
        }
        assert_eq!(signed, vec![3, 6]);
        assert!(chain.checkpoint_if_due(T0 + 6 + 499, &k).is_none());
        let cp = chain.checkpoint_if_due(T0 + 6 + 500, &k).unwrap();
        assert_eq!((cp.body.count, cp.body.head), (7, chain.head()));
        assert_eq!(cp.verify(&k.public()).map(|b| b.count), Ok(7));
        assert!(chain.checkpoint_if_due(T0 + 100_000, &k).is_none());
    }

    #[test]
    fn collapser_turns_1000_idle_proofs_into_one_entry_and_flushes_on_state_change() {
        let k = key(1);
        let lock = Id::new("lock-1").unwrap();
        let mut chain = AuditChain::new(home(), AuditConfig::default());
        let mut c = ProofCollapser::new(CollapseConfig::default());
        let mut items = Vec::new();
        for seq in 1..=1000u64 {
            let head = Digest([seq as u8; 32]);
            let out = c
                .idle_proof(T0 + seq * 30_00, lock.clone(), seq, head)
                .unwrap();
            assert!(out.is_none(), "an idle proof alone writes nothing");
        }
        assert_eq!(chain.next_index(), 0);
        // The bolt moves: the run is written first, then the state change.
        let run = c.flush(&lock).unwrap();
        assert_eq!(
            run.run,
            ProofRun {
                first_seq: 1,
                last_seq: 1000,
                head: Digest([1000u64 as u8; 32]),
                count: 1000,
                first_ms: T0 + 3_000,
                last_ms: T0 + 3_000_000,
            }
        );
        let a = chain
            .append_collapsed(T0 + 3_000_001, run.device, &run.run, &k)
            .unwrap();
        items.push(ExportItem::Entry(a.entry.clone()));
        let b = chain
            .append(
                T0 + 3_000_001,
                EntryKind::DEVICE_STATE,
                Some(lock.clone()),
                vec![],
                &k,
            )
            .unwrap();
        items.push(ExportItem::Entry(b.entry));
        items.push(ExportItem::Checkpoint(chain.checkpoint(T0 + 3_000_002, &k)));
        assert_eq!(chain.next_index(), 2);
        assert_eq!(c.tracked(), 0);
        assert!(c.flush(&lock).is_none());
        assert_eq!(
            ProofRun::from_payload(&a.entry.payload).unwrap().count,
            1000
        );
        let (h, _) = build(0, &k);
        assert_eq!(verify(&h, &items).unwrap().entries, 2);
    }

    #[test]
    fn collapser_writes_a_run_once_it_spans_collapse_max_ms() {
        let mut c = ProofCollapser::new(CollapseConfig {
            collapse_max_ms: 90_000,
            max_collapsing_devices: 10,
        });
        let d = Digest::ZERO;
        assert_eq!(c.idle_proof(0, 1u32, 1, d), Ok(None));
        assert_eq!(c.idle_proof(30_000, 1, 2, d), Ok(None));
        assert_eq!(c.idle_proof(60_000, 1, 3, d), Ok(None));
        let out = c.idle_proof(90_000, 1, 4, d).unwrap().unwrap();
        assert_eq!(
            (out.run.first_seq, out.run.last_seq, out.run.count),
            (1, 4, 4)
        );
        assert_eq!(c.tracked(), 0);
        // A device that falls quiet is written by flush_due, at most `max` per call.
        for dev in 2..6u32 {
            c.idle_proof(100_000 + u64::from(dev), dev, 1, d).unwrap();
        }
        let mut out = Vec::new();
        c.flush_due(189_999, 10, &mut out);
        assert!(out.is_empty());
        c.flush_due(190_004, 2, &mut out);
        assert_eq!(out.iter().map(|c| c.device).collect::<Vec<_>>(), vec![2, 3]);
        c.flush_due(190_004, 10, &mut out);
        assert_eq!(out.len(), 3, "device 5 is not due yet");
        c.flush_all(&mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(c.tracked(), 0);
    }

    #[test]
    fn collapser_limit_flushes_the_oldest_run() {
        let mut c = ProofCollapser::new(CollapseConfig {
            collapse_max_ms: u64::MAX,
            max_collapsing_devices: 3,
        });
        let d = Digest::ZERO;
        for dev in 0..3u32 {
            assert_eq!(c.idle_proof(u64::from(dev), dev, 7, d), Ok(None));
        }
        // Device 0 keeps proving: it is still the oldest run (by first proof).
        assert_eq!(c.idle_proof(10, 0, 8, d), Ok(None));
        let evicted = c.idle_proof(11, 3, 1, d).unwrap().unwrap();
        assert_eq!(evicted.device, 0);
        assert_eq!((evicted.run.count, evicted.run.last_seq), (2, 8));
        assert_eq!(c.tracked(), 3);
        assert!(c.run(&3).is_some() && c.run(&0).is_none());
    }

    #[test]
    fn collapser_refuses_a_replayed_sequence() {
        let mut c = ProofCollapser::new(CollapseConfig::default());
        let d = Digest::ZERO;
        c.idle_proof(0, 1u32, 5, d).unwrap();
        assert_eq!(
            c.idle_proof(1, 1, 5, d),
            Err(CollapseError::SeqNotIncreasing {
                seq: 5,
                last_seq: 5
            })
        );
        assert_eq!(c.run(&1).unwrap().count, 1);
    }
}
