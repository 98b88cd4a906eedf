//! Recorded footage: cameras upload the frames of the segments they proved, the server checks
//! each against the proof it accepted, keeps it sealed under the home's footage key for the
//! home's retention, and gives it back only to the homeowner.
//!
//! - **Expectation.** When the control core accepts a `CameraProof` that is not a routine
//!   idle proof (an entry is in progress, or the camera saw something) and says it is
//!   recording, the control task calls [`expect`]: one row per segment goes to the store in
//!   the same durable batch as the proof's audit record, with the frame digests, the segment
//!   digest, the chain head, the camera key it was accepted under, the delivery the door was
//!   serving, and the envelope itself. In the store, because uploads may come after a restart.
//! - **Upload.** `PUT /api/devices/{camera}/segments/{seq}` with the frames as the body,
//!   signed by the camera key (docs/PROTOCOL.md §18). The whole check is
//!   [`doorward_proto::footage::check_upload`]; this module only finds the row, seals and
//!   stores. Anything refused is answered with an error code and counted in
//!   `doorward_footage_uploads_total{result}`; a second upload of a stored segment is answered
//!   `200` and changes nothing.
//! - **Sealed at rest.** XChaCha20-Poly1305 under the home's footage key (a random 32-byte
//!   key in the keystore, `keys/homes/<home>/footage.key`, mode 0600), with a random 24-byte
//!   nonce and `(home, camera, seq, segment digest)` as associated data: a row copied to
//!   another home, camera or seq does not open. The store holds only `nonce || ciphertext`.
//! - **Retention.** Each home keeps footage [`DEFAULT_RETENTION_DAYS`] unless its owner sets
//!   between [`MIN_RETENTION_DAYS`] and [`MAX_RETENTION_DAYS`], counted from the proof's
//!   acceptance. A task sweeps every [`SWEEP_INTERVAL_MS`], deleting at most
//!   [`MAX_SWEEP_ROWS`] rows over at most [`MAX_SWEEP_HOMES`] homes per run.
//! - **The homeowner** lists, reads, exports ([`ExportHeader`], [`ExportedSegment`]: a CBOR
//!   sequence anyone can check offline with [`verify_export`]) and deletes footage through
//!   [`crate::Handle`]. Deletions are recorded in the home's audit chain
//!   ([`FOOTAGE_DELETED`]). Carriers have no route to footage.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{put, MethodRouter};
use axum::Json;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use doorward_control::audit::EntryKind;
use doorward_control::{AuditEvent, AuditKind, Control};
use doorward_proto::footage::{
    check_upload, Expected, Upload, UploadRefusal, MAX_UPLOAD_BODY_BYTES, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, UPLOAD_FRAME_BYTES,
};
use doorward_proto::{chain_next, frame_digest, segment_digest, Body, Digest, Envelope, Id, Sig};
use doorward_store::footage::MAX_FOOTAGE_DELETE;
use doorward_store::{
    FootageCursor, FootageQuery, FootageSegment, Pending, Store, StoreError, MAX_READ_ROWS,
};
use minicbor::{Decode, Encode};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::api::auth::Principal;
use crate::api::authz::{authorize, Caller, Target};
use crate::api::{ApiError, ApiResult};
use crate::gateway::Routes;
use crate::keystore::{Keystore, KeystoreError};
use crate::runtime::wall_ms;
use crate::server::Handle;
use crate::server::Shared;

/// Days a home's footage is kept unless its owner sets otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Shortest retention a homeowner may set, in days.
pub const MIN_RETENTION_DAYS: u32 = 1;
/// Longest retention a homeowner may set, in days.
pub const MAX_RETENTION_DAYS: u32 = 365;
/// Milliseconds in a retention day.
pub const DAY_MS: u64 = 86_400_000;
/// How often the retention sweep runs, in milliseconds.
pub const SWEEP_INTERVAL_MS: u64 = 60_000;
/// Most footage rows one sweep deletes.
pub const MAX_SWEEP_ROWS: usize = 1_000;
/// Most homes one sweep looks at (the next sweep goes on from the last one).
pub const MAX_SWEEP_HOMES: usize = 1_000;
/// Most segments one listing returns.
pub const MAX_LIST_ROWS: usize = 1_000;
/// Most segments in one export (page with the returned cursor for more).
pub const MAX_EXPORT_SEGMENTS: usize = 256;
/// Most homes whose footage key is kept in memory (the cache is emptied when full).
pub const MAX_CACHED_KEYS: usize = 100_000;
/// Version of the export format.
pub const EXPORT_VERSION: u16 = 1;
/// The audit entry kind recording a deletion of footage (payload: [`Deleted`]).
pub const FOOTAGE_DELETED: EntryKind = EntryKind(70);
/// Bytes of an XChaCha20-Poly1305 nonce, stored before the ciphertext.
const NONCE_BYTES: usize = 24;

/// The store row of an accepted, recording, non-routine `CameraProof`; `None` for any other
/// event. Called by the control task for every audit event, before it is recorded; the row
/// goes into the same durable batch.
pub fn expectation(control: &Control, ev: &AuditEvent) -> Option<FootageSegment> {
    let AuditKind::Accepted {
        device,
        seq,
        envelope,
        routine: false,
        ..
    } = &ev.what
    else {
        return None;
    };
    let Ok(env) = Envelope::decode(envelope) else {
        return None;
    };
    let Body::CameraProof(p) = env.body else {
        return None;
    };
    if !p.recording || p.frames.is_empty() || p.seq != *seq {
        return None;
    }
    let (home, camera_key) = control.device_key(device)?;
    let delivery = control.state(&home, ev.at_ms).and_then(|s| {
        s.doors
            .into_iter()
            .find(|d| d.camera_id == *device)
            .and_then(|d| d.delivery.map(|(id, _)| id))
    });
    Some(FootageSegment {
        home,
        camera: device.clone(),
        seq: p.seq,
        at_ms: ev.at_ms,
        segment: p.segment,
        frames: p.frames,
        head: p.head,
        camera_key,
        delivery,
        proof: envelope.clone(),
        uploaded_ms: None,
    })
}

/// Queues the expectation of `ev`, if it has one (see [`expectation`]).
pub fn expect(
    control: &Control,
    store: &dyn Store,
    ev: &AuditEvent,
) -> Option<Result<Pending, StoreError>> {
    expectation(control, ev).map(|row| store.put_footage(&row))
}

/// The footage counters, rendered with the server's `/metrics`.
#[derive(Debug, Default)]
pub struct FootageMetrics {
    uploads: Mutex<BTreeMap<&'static str, u64>>,
    deleted: Mutex<BTreeMap<&'static str, u64>>,
}

impl FootageMetrics {
    fn upload(&self, result: &'static str) {
        *self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(result)
            .or_insert(0) += 1;
    }

    fn deleted(&self, reason: &'static str, n: usize) {
        *self
            .deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_insert(0) += n as u64;
    }

    /// Uploads answered with `result` so far.
    pub fn upload_count(&self, result: &str) -> u64 {
        let m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.get(result).copied().unwrap_or(0)
    }

    /// Appends the `doorward_footage_*` series in the Prometheus text format.
    pub fn render(&self, s: &mut String) {
        render_counters(
            s,
            "doorward_footage_uploads_total",
            "Segment uploads by result.",
            "result",
            &self.uploads,
        );
        render_counters(
            s,
            "doorward_footage_deleted_total",
            "Footage segments deleted, by reason.",
            "reason",
            &self.deleted,
        );
    }
}

/// One Prometheus counter family, one series per key of `counts` under `label`.
fn render_counters<K: std::fmt::Display>(
    s: &mut String,
    name: &str,
    help: &str,
    label: &str,
    counts: &Mutex<BTreeMap<K, u64>>,
) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
    for (k, v) in counts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(s, "{name}{{{label}=\"{k}\"}} {v}");
    }
}

/// Why a footage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FootageError {
    /// The store failed; nothing was changed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A stored segment does not open under the home's key or does not match its digests:
    /// the database was altered or damaged.
    #[error("footage {camera}/{seq} of home {home} does not open: the stored row was altered")]
    Corrupt {
        /// The home.
        home: Id,
        /// The camera.
        camera: Id,
        /// The segment.
        seq: u64,
    },
    /// A value is outside its bounds.
    #[error("{0}")]
    Invalid(String),
}

/// A footage deletion as recorded in the home's audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Deleted {
    /// `"owner"` or `"retention"`.
    #[n(0)]
    pub reason: String,
    /// Server time of the deletion.
    #[n(1)]
    pub at_ms: u64,
    /// The segments deleted: camera, seq and segment digest.
    #[n(2)]
    pub segments: Vec<(Id, u64, Digest)>,
}

/// The first item of an export: which home, when, how many segments follow.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ExportHeader {
    /// [`EXPORT_VERSION`].
    #[n(0)]
    pub version: u16,
    /// The home.
    #[n(1)]
    pub home: Id,
    /// Server time of the export.
    #[n(2)]
    pub exported_ms: u64,
    /// Segments that follow.
    #[n(3)]
    pub segments: u64,
}

/// One segment of an export.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ExportedSegment {
    /// The camera.
    #[n(0)]
    pub camera: Id,
    /// The proof's sequence number.
    #[n(1)]
    pub seq: u64,
    /// When the server accepted the proof.
    #[n(2)]
    pub at_ms: u64,
    /// The delivery being witnessed, if any.
    #[n(3)]
    pub delivery: Option<Id>,
    /// The `CameraProof` envelope as the server accepted it; its BLAKE3 is the `digest` of
    /// the `Accepted` entry in the home's audit record.
    #[n(4)]
    pub proof: minicbor::bytes::ByteVec,
    /// The frames, in order; empty when the camera never uploaded them.
    #[n(5)]
    pub frames: Vec<minicbor::bytes::ByteVec>,
}

/// One page of an export.
#[derive(Clone, Debug)]
pub struct Export {
    /// The CBOR sequence: an [`ExportHeader`], then one [`ExportedSegment`] per segment.
    pub bytes: Vec<u8>,
    /// Segments in it.
    pub segments: usize,
    /// Where the next page starts, when there may be more.
    pub next: Option<FootageCursor>,
}

/// What [`verify_export`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Segments in the export.
    pub segments: usize,
    /// Segments with their frames.
    pub with_frames: usize,
    /// Links between consecutive segments of a camera whose chain heads were checked.
    pub chain_links: usize,
    /// BLAKE3 of each proof, in order: look each up in the home's audit export.
    pub proof_digests: Vec<Digest>,
}

/// Checks an export offline: every proof decodes as the named camera's `CameraProof`, every
/// uploaded segment's frames hash to the proof's frame digests and segment digest, and where
/// two segments of a camera have consecutive seqs, the second's chain head follows from the
/// first's. (The proofs themselves are anchored by the audit record: their digests are in it.)
pub fn verify_export(bytes: &[u8]) -> Result<ExportSummary, String> {
    let mut d = minicbor::Decoder::new(bytes);
    let header: ExportHeader = d.decode().map_err(|e| format!("header: {e}"))?;
    if header.version != EXPORT_VERSION {
        return Err(format!(
            "export version {} is not {EXPORT_VERSION}",
            header.version
        ));
    }
    let mut sum = ExportSummary::default();
    let mut heads: HashMap<Id, (u64, Digest)> = HashMap::new();
    while d.position() < bytes.len() {
        let i = sum.segments;
        let s: ExportedSegment = d.decode().map_err(|e| format!("segment {i}: {e}"))?;
        let env = Envelope::decode(&s.proof).map_err(|e| format!("segment {i}: proof: {e}"))?;
        let Body::CameraProof(p) = env.body else {
            return Err(format!("segment {i}: the proof is not a CameraProof"));
        };
        if p.camera != s.camera || p.seq != s.seq {
            return Err(format!("segment {i}: the proof is {}/{}", p.camera, p.seq));
        }
        if segment_digest(&p.frames) != p.segment {
            return Err(format!("segment {i}: the proof's segment digest is wrong"));
        }
        if !s.frames.is_empty() {
            let got: Vec<Digest> = s.frames.iter().map(|f| frame_digest(f)).collect();
            if got != p.frames {
                return Err(format!(
                    "segment {i} ({}/{}): frames differ from the proof",
                    s.camera, s.seq
                ));
            }
            sum.with_frames += 1;
        }
        if let Some((prev_seq, prev_head)) = heads.get(&s.camera) {
            if prev_seq.checked_add(1) == Some(s.seq) {
                if chain_next(prev_head, s.seq, &p.segment) != p.head {
                    return Err(format!(
                        "segment {i} ({}/{}): breaks the chain",
                        s.camera, s.seq
                    ));
                }
                sum.chain_links += 1;
            }
        }
        heads.insert(s.camera.clone(), (s.seq, p.head));
        sum.proof_digests
            .push(doorward_proto::footage::body_digest(&s.proof));
        sum.segments += 1;
    }
    if sum.segments as u64 != header.segments {
        return Err(format!(
            "the header announces {} segments, {} follow",
            header.segments, sum.segments
        ));
    }
    Ok(sum)
}

fn aad(home: &Id, camera: &Id, seq: u64, segment: &Digest) -> Vec<u8> {
    let mut a = format!("doorward footage v1\0{home}\0{camera}\0").into_bytes();
    a.extend_from_slice(&seq.to_be_bytes());
    a.extend_from_slice(&segment.0);
    a
}

/// `nonce || XChaCha20-Poly1305(frames)` for one segment.
pub fn seal(key: &[u8; 32], row: &FootageSegment, frames: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(&Key::from(*key))
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: frames,
                aad: &aad(&row.home, &row.camera, row.seq, &row.segment),
            },
        )
        .expect("encrypting a bounded buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend(ct);
    out
}

/// The frames of a sealed segment, if it opens under `key` for `row` and matches the row's
/// frame digests.
pub fn open(key: &[u8; 32], row: &FootageSegment, sealed: &[u8]) -> Option<Vec<Vec<u8>>> {
    if sealed.len() < NONCE_BYTES {
        return None;
    }
    let nonce: [u8; NONCE_BYTES] = sealed[..NONCE_BYTES].try_into().ok()?;
    let plain = XChaCha20Poly1305::new(&Key::from(*key))
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed[NONCE_BYTES..],
                aad: &aad(&row.home, &row.camera, row.seq, &row.segment),
            },
        )
        .ok()?;
    let frames: Vec<Vec<u8>> = plain
        .chunks(UPLOAD_FRAME_BYTES)
        .map(<[u8]>::to_vec)
        .collect();
    let digests: Vec<Digest> = frames.iter().map(|f| frame_digest(f)).collect();
    (digests == row.frames).then_some(frames)
}

/// The footage service: what the upload route and the homeowner's calls share.
pub struct Footage {
    store: Arc<dyn Store>,
    keystore: Keystore,
    routes: Arc<Routes>,
    keys: Mutex<HashMap<Id, [u8; 32]>>,
    sweep_after: Mutex<Option<Id>>,
    /// The counters.
    pub metrics: FootageMetrics,
}

impl Footage {
    /// The service over `store`, with keys from `keystore` and camera homes from `routes`.
    pub fn new(store: Arc<dyn Store>, keystore: Keystore, routes: Arc<Routes>) -> Footage {
        Footage {
            store,
            keystore,
            routes,
            keys: Mutex::new(HashMap::new()),
            sweep_after: Mutex::new(None),
            metrics: FootageMetrics::default(),
        }
    }

    /// The home's footage key (generated on first use). Blocking (file IO).
    fn key(&self, home: &Id) -> Result<[u8; 32], KeystoreError> {
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(home)
        {
            return Ok(*k);
        }
        let k = self.keystore.footage_key(home)?;
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(home.clone(), k);
        Ok(k)
    }

    /// The retention of `home`, in days. Blocking.
    pub fn retention(&self, home: &Id) -> Result<u32, StoreError> {
        Ok(self
            .store
            .footage_retention(home)?
            .unwrap_or(DEFAULT_RETENTION_DAYS))
    }

    /// Sets the retention of `home`. Blocking.
    pub fn set_retention(&self, home: &Id, days: u32) -> Result<(), FootageError> {
        if !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(FootageError::Invalid(format!(
                "a retention of {days} days is out of bounds: choose {MIN_RETENTION_DAYS} to \
                 {MAX_RETENTION_DAYS} days"
            )));
        }
        self.store
            .put_footage_retention(home, days, wall_ms())?
            .wait()?;
        Ok(())
    }

    /// Up to `max` (at most [`MAX_LIST_ROWS`]) segments of `home`. Blocking.
    pub fn list(
        &self,
        home: &Id,
        query: &FootageQuery,
        max: usize,
    ) -> Result<Vec<FootageSegment>, StoreError> {
        self.store.footage_list(home, query, max.min(MAX_LIST_ROWS))
    }

    /// The frames of one uploaded segment of `home`; `None` when there is no such segment or
    /// it was not uploaded. Blocking.
    pub fn segment(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<Vec<Vec<u8>>>, FootageError> {
        let Some(row) = self.store.footage(home, camera, seq)? else {
            return Ok(None);
        };
        let Some(sealed) = self.store.footage_sealed(home, camera, seq)? else {
            return Ok(None);
        };
        let key = self.key(home)?;
        open(&key, &row, &sealed)
            .map(Some)
            .ok_or_else(|| FootageError::Corrupt {
                home: home.clone(),
                camera: camera.clone(),
                seq,
            })
    }

    /// One page of `home`'s footage as an export (at most [`MAX_EXPORT_SEGMENTS`]). Blocking.
    pub fn export(&self, home: &Id, query: &FootageQuery) -> Result<Export, FootageError> {
        let rows = self.store.footage_list(home, query, MAX_EXPORT_SEGMENTS)?;
        let next = (rows.len() == MAX_EXPORT_SEGMENTS)
            .then(|| rows.last().map(FootageSegment::cursor))
            .flatten();
        let mut e = minicbor::Encoder::new(Vec::new());
        let header = ExportHeader {
            version: EXPORT_VERSION,
            home: home.clone(),
            exported_ms: wall_ms(),
            segments: rows.len() as u64,
        };
        e.encode(&header).expect("encoding into a Vec");
        for row in &rows {
            let frames = match row.uploaded_ms {
                Some(_) => self
                    .segment(home, &row.camera, row.seq)?
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let item = ExportedSegment {
                camera: row.camera.clone(),
                seq: row.seq,
                at_ms: row.at_ms,
                delivery: row.delivery.clone(),
                proof: row.proof.clone().into(),
                frames: frames.into_iter().map(Into::into).collect(),
            };
            e.encode(&item).expect("encoding into a Vec");
        }
        Ok(Export {
            bytes: e.into_writer(),
            segments: rows.len(),
            next,
        })
    }

    /// Deletes the segments of `home` that `query` selects, at most [`MAX_FOOTAGE_DELETE`]
    /// (call again while it returns that many); returns the rows deleted. Blocking.
    pub fn delete(
        &self,
        home: &Id,
        query: &FootageQuery,
    ) -> Result<Vec<FootageSegment>, StoreError> {
        let rows = self.store.footage_list(home, query, MAX_FOOTAGE_DELETE)?;
        self.delete_rows(home, &rows, "owner")?;
        Ok(rows)
    }

    /// Deletes one segment of `home`; the row, if it existed. Blocking.
    pub fn delete_one(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<FootageSegment>, StoreError> {
        let Some(row) = self.store.footage(home, camera, seq)? else {
            return Ok(None);
        };
        self.delete_rows(home, std::slice::from_ref(&row), "owner")?;
        Ok(Some(row))
    }

    fn delete_rows(
        &self,
        home: &Id,
        rows: &[FootageSegment],
        reason: &'static str,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let keys: Vec<(Id, u64)> = rows.iter().map(|r| (r.camera.clone(), r.seq)).collect();
        self.store.delete_footage(home, &keys)?.wait()?;
        self.metrics.deleted(reason, rows.len());
        Ok(())
    }

    /// One retention sweep as at `now_ms`: deletes at most `max_rows` expired segments over
    /// at most [`MAX_SWEEP_HOMES`] homes, going on from where the last sweep stopped.
    /// Returns the deletions, per home, for the audit record. Blocking.
    pub fn sweep(&self, now_ms: u64, max_rows: usize) -> Result<Vec<(Id, Deleted)>, StoreError> {
        let after = self
            .sweep_after
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let page = MAX_SWEEP_HOMES.min(MAX_READ_ROWS);
        let homes = self.store.home_ids(after.as_ref(), page)?;
        let mut left = max_rows.min(MAX_FOOTAGE_DELETE);
        let mut out = Vec::new();
        // Where the next sweep starts: after the last home looked at, or at a home that may
        // have more expired rows than this sweep could delete.
        let mut resume: Option<Option<Id>> = None;
        let mut prev = after.clone();
        for home in &homes {
            let days = u64::from(self.retention(home)?);
            let cutoff = now_ms.saturating_sub(days.saturating_mul(DAY_MS));
            let q = FootageQuery {
                to_ms: cutoff,
                ..FootageQuery::all()
            };
            let rows = self.store.footage_list(home, &q, left)?;
            if !rows.is_empty() {
                self.delete_rows(home, &rows, "retention")?;
                left -= rows.len();
                out.push((home.clone(), deleted("retention", now_ms, &rows)));
            }
            if left == 0 {
                resume = Some(prev);
                break;
            }
            prev = Some(home.clone());
        }
        let next = match resume {
            Some(at) => at,
            // Past the last home, the next sweep starts again from the first.
            None if homes.len() < page => None,
            None => homes.last().cloned(),
        };
        *self.sweep_after.lock().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(out)
    }

    /// Checks and stores one upload at `now_ms`; the status and the JSON body of the answer.
    pub async fn upload(
        self: &Arc<Self>,
        camera: &str,
        seq: &str,
        headers: &HeaderMap,
        body: Bytes,
        now_ms: u64,
    ) -> (StatusCode, Value) {
        let (code, result, message) =
            match self.try_upload(camera, seq, headers, body, now_ms).await {
                Ok(true) => (StatusCode::CREATED, "stored", "stored".to_owned()),
                Ok(false) => (StatusCode::OK, "duplicate", "already stored".to_owned()),
                Err((code, result, message)) => (code, result, message),
            };
        self.metrics.upload(result);
        if !code.is_success() {
            tracing::info!(%camera, %seq, result, "footage upload refused");
        }
        (code, json!({"result": result, "message": message}))
    }

    async fn try_upload(
        self: &Arc<Self>,
        camera: &str,
        seq: &str,
        headers: &HeaderMap,
        body: Bytes,
        now_ms: u64,
    ) -> Result<bool, (StatusCode, &'static str, String)> {
        let malformed = |m: String| (StatusCode::BAD_REQUEST, "malformed", m);
        let camera = Id::new(camera).map_err(|e| malformed(format!("camera id: {e}")))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| malformed(format!("seq {seq:?} is not a decimal u64")))?;
        let timestamp_ms: u64 = headers
            .get(TIMESTAMP_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                malformed(format!(
                    "{TIMESTAMP_HEADER}: decimal milliseconds since the epoch required"
                ))
            })?;
        let sig = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let mut s = [0u8; 64];
                hex::decode_to_slice(v, &mut s).ok().map(|_| Sig(s))
            })
            .ok_or_else(|| malformed(format!("{SIGNATURE_HEADER}: 128 hex characters required")))?;
        if body.len() > MAX_UPLOAD_BODY_BYTES {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_length",
                UploadRefusal::BadLength { len: body.len() }.to_string(),
            ));
        }
        let unauthorised = || {
            (
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                UploadRefusal::BadSignature.to_string(),
            )
        };
        // An unknown camera is answered like a bad signature.
        let home = self.routes.home_of(&camera).ok_or_else(unauthorised)?;
        let storage = |e: String| {
            tracing::error!(error = %e, "footage storage");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage",
                "the server could not read or store the segment: try again later".to_owned(),
            )
        };
        let this = self.clone();
        let (h, c) = (home.clone(), camera.clone());
        let row = tokio::task::spawn_blocking(move || this.store.footage(&h, &c, seq))
            .await
            .map_err(|e| storage(e.to_string()))?
            .map_err(|e| storage(e.to_string()))?
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    "no_proof",
                    format!(
                        "no accepted recording proof {seq} of camera {camera} (or its footage \
                         has expired): upload only segments whose CameraProof the server accepted"
                    ),
                )
            })?;
        let up = Upload {
            camera: &camera,
            seq,
            timestamp_ms,
            sig: &sig,
            body: &body,
        };
        let expected = Expected {
            camera_key: &row.camera_key,
            frames: &row.frames,
            segment: &row.segment,
        };
        check_upload(&up, &expected, now_ms).map_err(|r| match r {
            UploadRefusal::BadLength { .. } => {
                (StatusCode::BAD_REQUEST, "bad_length", r.to_string())
            }
            UploadRefusal::Stale { .. } => {
                (StatusCode::UNAUTHORIZED, "stale_timestamp", r.to_string())
            }
            UploadRefusal::BadSignature => unauthorised(),
            UploadRefusal::Mismatch { .. } => (StatusCode::CONFLICT, "mismatch", r.to_string()),
        })?;
        if row.uploaded_ms.is_some() {
            return Ok(false);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let key = this.key(&home).map_err(|e| e.to_string())?;
            let sealed = seal(&key, &row, &body);
            this.store
                .put_footage_sealed(&home, &camera, seq, &sealed, now_ms)
                .map_err(|e| e.to_string())?
                .wait()
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| storage(e.to_string()))?
        .map_err(storage)?;
        Ok(true)
    }
}

/// The audit payload of a deletion.
pub fn deleted(reason: &str, at_ms: u64, rows: &[FootageSegment]) -> Deleted {
    Deleted {
        reason: reason.to_owned(),
        at_ms,
        segments: rows
            .iter()
            .map(|r| (r.camera.clone(), r.seq, r.segment))
            .collect(),
    }
}

/// The footage routes, `(method, path, handler)`, merged into the HTTP router: the
/// camera's upload (signed by its device key) and the homeowner's (session; the home must be
/// the caller's, I11). No carrier or driver credential reaches any of them.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Shared>>)> {
    use axum::routing::{delete, get};
    vec![
        (
            "put",
            "/api/devices/{camera}/segments/{seq}",
            put(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY_BYTES)),
        ),
        ("get", "/api/homes/{home}/footage", get(owner_list)),
        ("delete", "/api/homes/{home}/footage", delete(owner_delete)),
        ("get", "/api/homes/{home}/footage/export", get(owner_export)),
        (
            "get",
            "/api/homes/{home}/footage/retention",
            get(owner_get_retention),
        ),
        (
            "put",
            "/api/homes/{home}/footage/retention",
            put(owner_put_retention),
        ),
        (
            "get",
            "/api/homes/{home}/footage/{camera}/{seq}",
            get(owner_segment),
        ),
        (
            "delete",
            "/api/homes/{home}/footage/{camera}/{seq}",
            delete(owner_delete_segment),
        ),
    ]
}

/// The selection of the homeowner's footage routes: `delivery`, `from_ms`, `to_ms` and the
/// `after` cursor (`<at_ms>,<camera>,<seq>`, as returned in `next`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Selection {
    delivery: Option<String>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    after: Option<String>,
}

impl Selection {
    fn query(&self) -> ApiResult<FootageQuery> {
        let bad = |m: &str| ApiError::bad_request(m.to_owned());
        let after = match &self.after {
            None => None,
            Some(a) => {
                let mut it = a.split(',');
                let (Some(t), Some(c), Some(q), None) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return Err(bad("after: <at_ms>,<camera>,<seq> as returned in next"));
                };
                Some(FootageCursor {
                    at_ms: t.parse().map_err(|_| bad("after: at_ms"))?,
                    camera: Id::new(c).map_err(|_| bad("after: camera"))?,
                    seq: q.parse().map_err(|_| bad("after: seq"))?,
                })
            }
        };
        Ok(FootageQuery {
            from_ms: self.from_ms.unwrap_or(0),
            to_ms: self.to_ms.unwrap_or(u64::MAX),
            delivery: self
                .delivery
                .as_deref()
                .map(Id::new)
                .transpose()
                .map_err(|_| bad("delivery: not a valid id"))?,
            after,
        })
    }
}

fn cursor_text(c: &FootageCursor) -> String {
    format!("{},{},{}", c.at_ms, c.camera, c.seq)
}

/// The home, if the caller is its owner (a carrier, a driver or another homeowner is
/// refused as the API refuses them everywhere).
async fn owner(s: &Arc<Shared>, p: &Principal, home: &str) -> ApiResult<Id> {
    let home = Id::new(home).map_err(|_| ApiError::not_found("home"))?;
    authorize(s, Caller::Principal(p), Target::Home(&home)).await?;
    Ok(home)
}

fn row_json(r: &FootageSegment) -> Value {
    json!({
        "camera": r.camera.as_str(),
        "seq": r.seq,
        "at_ms": r.at_ms,
        "delivery": r.delivery.as_ref().map(Id::as_str),
        "frames": r.frames.len(),
        "segment": hex::encode(r.segment.0),
        "uploaded_ms": r.uploaded_ms,
    })
}

async fn owner_list(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    Query(sel): Query<Selection>,
) -> ApiResult<Json<Value>> {
    let home = owner(&s, &p, &home).await?;
    let rows = Handle::from_shared(s.clone())
        .footage_list(&home, sel.query()?, MAX_LIST_ROWS)
        .await?;
    let next = (rows.len() == MAX_LIST_ROWS)
        .then(|| rows.last().map(|r| cursor_text(&r.cursor())))
        .flatten();
    Ok(Json(json!({
        "segments": rows.iter().map(row_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// Up to `max` of `home`'s segments recorded while the door served `delivery`, oldest
/// first, for the caller if it owns the home (the web app's entries timeline).
pub(crate) async fn owner_delivery_segments(
    s: &Arc<Shared>,
    p: &Principal,
    home: &str,
    delivery: &Id,
    max: usize,
) -> ApiResult<Vec<FootageSegment>> {
    let home = owner(s, p, home).await?;
    let query = FootageQuery {
        delivery: Some(delivery.clone()),
        ..FootageQuery::all()
    };
    Ok(Handle::from_shared(s.clone())
        .footage_list(&home, query, max)
        .await?)
}

/// The frames of one uploaded segment of `home`, for the caller if it owns the home.
pub(crate) async fn owner_frames(
    s: &Arc<Shared>,
    p: &Principal,
    home: &str,
    camera: &str,
    seq: u64,
) -> ApiResult<Vec<Vec<u8>>> {
    let home = owner(s, p, home).await?;
    let camera = Id::new(camera).map_err(|_| ApiError::not_found("segment"))?;
    Handle::from_shared(s.clone())
        .footage_segment(&home, &camera, seq)
        .await?
        .ok_or_else(|| ApiError::not_found("segment"))
}

async fn owner_segment(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, camera, seq)): Path<(String, String, u64)>,
) -> ApiResult<Response> {
    let frames = owner_frames(&s, &p, &home, &camera, seq).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        frames.concat(),
    )
        .into_response())
}

async fn owner_export(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    Query(sel): Query<Selection>,
) -> ApiResult<Response> {
    let home = owner(&s, &p, &home).await?;
    let e = Handle::from_shared(s.clone())
        .footage_export(&home, sel.query()?)
        .await?;
    let mut r = ([(header::CONTENT_TYPE, "application/cbor-seq")], e.bytes).into_response();
    if let Some(next) = e.next.as_ref().map(cursor_text) {
        if let Ok(v) = header::HeaderValue::from_str(&next) {
            r.headers_mut().insert(NEXT_HEADER, v);
        }
    }
    Ok(r)
}

/// The header of an export page that is not the last: the `after` of the next page.
pub const NEXT_HEADER: &str = "doorward-next";

async fn owner_delete(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    Query(sel): Query<Selection>,
) -> ApiResult<Json<Value>> {
    let home = owner(&s, &p, &home).await?;
    let n = Handle::from_shared(s.clone())
        .footage_delete(&home, sel.query()?)
        .await?;
    Ok(Json(json!({"deleted": n, "more": n == MAX_FOOTAGE_DELETE})))
}

async fn owner_delete_segment(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, camera, seq)): Path<(String, String, u64)>,
) -> ApiResult<Response> {
    let home = owner(&s, &p, &home).await?;
    let camera = Id::new(camera).map_err(|_| ApiError::not_found("segment"))?;
    if Handle::from_shared(s.clone())
        .footage_delete_segment(&home, &camera, seq)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("segment"))
    }
}

async fn owner_get_retention(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let home = owner(&s, &p, &home).await?;
    let days = Handle::from_shared(s.clone())
        .footage_retention(&home)
        .await?;
    Ok(Json(json!({"days": days})))
}

/// The body of `PUT /api/homes/{home}/footage/retention`.
#[derive(Debug, serde::Deserialize)]
pub struct Retention {
    days: u32,
}

async fn owner_put_retention(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    Json(r): Json<Retention>,
) -> ApiResult<Json<Value>> {
    let home = owner(&s, &p, &home).await?;
    Handle::from_shared(s.clone())
        .set_footage_retention(&home, r.days)
        .await?;
    Ok(Json(json!({"days": r.days})))
}

async fn upload(
    State(s): State<Arc<Shared>>,
    Path((camera, seq)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (code, v) = s
        .footage
        .upload(&camera, &seq, &headers, body, wall_ms())
        .await;
    (code, Json(v)).into_response()
}

/// The OpenAPI path items of every footage route.
pub fn openapi_paths() -> serde_json::Map<String, Value> {
    let owner = json!([{"sessionCookie": []}, {"sessionBearer": []}]);
    let home =
        json!({"name": "home", "in": "path", "required": true, "schema": {"type": "string"}});
    let camera =
        json!({"name": "camera", "in": "path", "required": true, "schema": {"type": "string"}});
    let seq = json!({"name": "seq", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}});
    let sel: Vec<Value> = [
        ("delivery", "string", "only this delivery's segments"),
        ("from_ms", "integer", "recorded at or after (ms since the epoch)"),
        ("to_ms", "integer", "recorded before (ms since the epoch)"),
        ("after", "string", "the `next` of the previous page: <at_ms>,<camera>,<seq>"),
    ]
    .iter()
    .map(|(n, t, d)| json!({"name": n, "in": "query", "required": false, "schema": {"type": t}, "description": d}))
    .collect();
    let mut home_sel = vec![home.clone()];
    home_sel.extend(sel);
    let err = json!({"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let obj = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"type": "object"}}}});
    let mut m = serde_json::Map::new();
    m.insert(
        "/api/devices/{camera}/segments/{seq}".into(),
        openapi_upload(),
    );
    m.insert("/api/homes/{home}/footage".into(), json!({
        "get": {"operationId": "listFootage", "summary": "The home's recorded segments (uploaded or not), oldest first, at most 1000 a page.",
            "security": owner, "parameters": home_sel, "responses": {"200": obj("{segments: [{camera, seq, at_ms, delivery, frames, segment, uploaded_ms}], next}"), "401": err, "403": err, "404": err}},
        "delete": {"operationId": "deleteFootage", "summary": "Delete the selected segments (at most 1000 a call; `more` says to call again). Recorded in the audit chain.",
            "security": owner, "parameters": home_sel, "responses": {"200": obj("{deleted, more}"), "401": err, "403": err, "404": err}}
    }));
    m.insert("/api/homes/{home}/footage/export".into(), json!({
        "get": {"operationId": "exportFootage", "summary": "The selected segments as a CBOR sequence that checks offline (docs/PROTOCOL.md §18); at most 256 a page, the next page's `after` in the Doorward-Next header.",
            "security": owner, "parameters": home_sel,
            "responses": {"200": {"description": "the export", "content": {"application/cbor-seq": {"schema": {"type": "string", "contentEncoding": "binary"}}}}, "401": err, "403": err, "404": err}}
    }));
    m.insert("/api/homes/{home}/footage/retention".into(), json!({
        "get": {"operationId": "getFootageRetention", "summary": "How many days the home's footage is kept (default 30).",
            "security": owner, "parameters": [home], "responses": {"200": obj("{days}"), "401": err, "403": err, "404": err}},
        "put": {"operationId": "setFootageRetention", "summary": "Keep the home's footage this many days (1 to 365).",
            "security": owner, "parameters": [home],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["days"], "properties": {"days": {"type": "integer", "minimum": MIN_RETENTION_DAYS, "maximum": MAX_RETENTION_DAYS}}}}}},
            "responses": {"200": obj("{days}"), "400": err, "401": err, "403": err, "404": err}}
    }));
    m.insert("/api/homes/{home}/footage/{camera}/{seq}".into(), json!({
        "get": {"operationId": "getFootageSegment", "summary": "One uploaded segment's frames, concatenated (3072 bytes each, 64×48 grayscale).",
            "security": owner, "parameters": [home, camera, seq],
            "responses": {"200": {"description": "the frames", "content": {"application/octet-stream": {"schema": {"type": "string", "contentEncoding": "binary"}}}}, "401": err, "403": err, "404": err}},
        "delete": {"operationId": "deleteFootageSegment", "summary": "Delete one segment. Recorded in the audit chain.",
            "security": owner, "parameters": [home, camera, seq], "responses": {"204": {"description": "deleted"}, "401": err, "403": err, "404": err}}
    }));
    m
}

/// The OpenAPI path item of the upload route.
fn openapi_upload() -> Value {
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UploadResult"}}}});
    json!({"put": {
        "operationId": "uploadSegment",
        "summary": "A camera uploads the frames of a segment it proved (docs/PROTOCOL.md §18).",
        "description": "The body is the segment's frames, concatenated: 1 to 16 frames of 3072 \
            bytes (64×48, 8-bit grayscale, row-major). Signed by the camera's device key: \
            Ed25519 over \"doorward/v1/segment-upload\" || 0x00 || canonical CBOR [camera, seq, \
            timestamp_ms, BLAKE3(body)]. Accepted only if the frames are those of the \
            CameraProof with this seq the server accepted while the camera was recording.",
        "security": [],
        "parameters": [
            {"name": "camera", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}},
            {"name": "seq", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}},
            {"name": "Doorward-Timestamp", "in": "header", "required": true, "schema": {"type": "integer"}, "description": "milliseconds since the Unix epoch, within 60 s of the server's clock"},
            {"name": "Doorward-Signature", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{128}$"}}
        ],
        "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "contentEncoding": "binary", "maxLength": MAX_UPLOAD_BODY_BYTES}}}},
        "responses": {
            "201": err("stored"),
            "200": err("already stored (duplicate)"),
            "400": err("malformed: headers, ids or body length (`malformed`, `bad_length`)"),
            "401": err("`bad_signature` (also for an unknown camera) or `stale_timestamp`"),
            "404": err("`no_proof`: no accepted recording proof with this seq (or its footage expired)"),
            "409": err("`mismatch`: the frames are not those the proof listed"),
            "413": err("body over 49152 bytes"),
            "503": err("`storage`: try again later")
        }
    }})
}

/// The OpenAPI schema of the upload's answer.
pub fn openapi_schema() -> Value {
    json!({
        "type": "object",
        "required": ["result", "message"],
        "properties": {
            "result": {"type": "string", "enum": ["stored", "duplicate", "malformed", "bad_length", "bad_signature", "stale_timestamp", "no_proof", "mismatch", "storage"]},
            "message": {"type": "string"}
        }
    })
}

/// Runs the retention sweep every [`SWEEP_INTERVAL_MS`] until `stop` turns true, recording
/// each home's deletions in its audit chain.
pub async fn sweep_task(
    footage: Arc<Footage>,
    tx: tokio::sync::mpsc::Sender<crate::runtime::Command>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(SWEEP_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let f = footage.clone();
        match tokio::task::spawn_blocking(move || f.sweep(wall_ms(), MAX_SWEEP_ROWS)).await {
            Ok(Ok(done)) => record_deletions(&tx, done),
            Ok(Err(e)) => tracing::error!(error = %e, "footage retention sweep"),
            Err(e) => tracing::error!(error = %e, "footage retention sweep"),
        }
    }
}

/// Records deletions in each home's audit chain (through the control task, which owns the
/// chains). A full control queue drops the record and logs it: the deletion happened.
pub fn record_deletions(
    tx: &tokio::sync::mpsc::Sender<crate::runtime::Command>,
    done: Vec<(Id, Deleted)>,
) {
    for (home, d) in done {
        for chunk in d.segments.chunks(MAX_SEGMENTS_PER_RECORD) {
            let part = Deleted {
                reason: d.reason.clone(),
                at_ms: d.at_ms,
                segments: chunk.to_vec(),
            };
            let cmd = crate::runtime::Command::Record {
                home: home.clone(),
                kind: FOOTAGE_DELETED,
                payload: doorward_proto::codec::encode(&part),
            };
            if tx.try_send(cmd).is_err() {
                tracing::error!(%home, "footage deletion not recorded: control queue full");
            }
        }
    }
}

/// Most segments named in one audit record of a deletion (keeps the entry under the audit
/// payload limit: each is at most 64 + 9 + 34 bytes of CBOR).
pub const MAX_SEGMENTS_PER_RECORD: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::PubKey;

    fn row(home: &str, camera: &str, seq: u64, frames: &[u8]) -> FootageSegment {
        let digests: Vec<Digest> = frames
            .chunks(UPLOAD_FRAME_BYTES)
            .map(frame_digest)
            .collect();
        FootageSegment {
            home: Id::new(home).unwrap(),
            camera: Id::new(camera).unwrap(),
            seq,
            at_ms: 1,
            segment: segment_digest(&digests),
            frames: digests,
            head: Digest([0; 32]),
            camera_key: PubKey([5; 32]),
            delivery: None,
            proof: Vec::new(),
            uploaded_ms: None,
        }
    }

    #[test]
    fn sealed_footage_opens_only_under_its_key_home_camera_and_seq() {
        let frames: Vec<u8> = (0..2 * UPLOAD_FRAME_BYTES)
            .map(|i| (i % 253) as u8)
            .collect();
        let key = [7u8; 32];
        let r = row("h", "cam", 4, &frames);
        let sealed = seal(&key, &r, &frames);
        assert!(!sealed
            .windows(64)
            .any(|w| frames.windows(64).next() == Some(w)));
        assert_eq!(open(&key, &r, &sealed).unwrap().concat(), frames);
        assert_eq!(open(&[8u8; 32], &r, &sealed), None, "another home's key");
        for moved in [
            row("h2", "cam", 4, &frames),
            row("h", "cam2", 4, &frames),
            row("h", "cam", 5, &frames),
        ] {
            assert_eq!(open(&key, &moved, &sealed), None, "{moved:?}");
        }
        let mut flipped = sealed.clone();
        flipped[NONCE_BYTES + 10] ^= 1;
        assert_eq!(open(&key, &r, &flipped), None);
    }
}
