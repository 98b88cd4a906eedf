//! Recorded footage rows: one per segment a camera proved while recording, written when the
//! server accepts the proof (what the upload must match), then completed with the uploaded
//! frames, sealed by the caller under the home's footage key (the store never sees them in
//! the clear). A per-home retention setting says how long rows are kept.
//!
//! The table is `footage (home, camera, seq)`; `sealed` and `uploaded_ms` stay empty until
//! the camera uploads. Reads that list rows never read `sealed` ([`crate::Store::footage_sealed`]
//! does, one segment at a time), so a listing stays small.

use doorward_proto::{Digest, Id, PubKey, MAX_FRAMES_PER_PROOF};

use crate::writer::to_i64;
use crate::StoreError;

/// Largest stored proof (the accepted envelope), in bytes: an envelope's limit.
pub const MAX_FOOTAGE_PROOF_BYTES: usize = doorward_proto::MAX_ENVELOPE_BYTES;
/// Largest sealed segment, in bytes: 16 frames of 3072 bytes, a nonce and a tag, with room.
pub const MAX_SEALED_SEGMENT_BYTES: usize = 64 * 1024;
/// Most segments one delete names.
pub const MAX_FOOTAGE_DELETE: usize = 1_000;

/// One proved segment of a camera, as stored (without its sealed frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FootageSegment {
    /// The home.
    pub home: Id,
    /// The camera.
    pub camera: Id,
    /// The proof's sequence number.
    pub seq: u64,
    /// When the server accepted the proof, milliseconds since the Unix epoch (server clock);
    /// retention counts from here.
    pub at_ms: u64,
    /// The proof's segment digest.
    pub segment: Digest,
    /// The proof's frame digests, in order (at most `MAX_FRAMES_PER_PROOF`).
    pub frames: Vec<Digest>,
    /// The camera's chain head after this segment.
    pub head: Digest,
    /// The camera key the proof was accepted under; the upload must be signed by it.
    pub camera_key: PubKey,
    /// The delivery whose entry the camera was witnessing, if any.
    pub delivery: Option<Id>,
    /// The proof's envelope as accepted (its BLAKE3 is the audit record's `Accepted` digest).
    pub proof: Vec<u8>,
    /// When the frames were uploaded, if they were.
    pub uploaded_ms: Option<u64>,
}

/// Which rows a listing returns: accepted in `[from_ms, to_ms)`, of one delivery if named,
/// after a cursor, in `(at_ms, camera, seq)` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FootageQuery {
    /// Earliest `at_ms`, inclusive.
    pub from_ms: u64,
    /// Latest `at_ms`, exclusive (`u64::MAX`: no end; stored as `i64::MAX`).
    pub to_ms: u64,
    /// Only this delivery's segments.
    pub delivery: Option<Id>,
    /// Only rows after this one (the last row of the previous page).
    pub after: Option<FootageCursor>,
}

impl FootageQuery {
    /// Every row of a home, in order.
    pub fn all() -> Self {
        FootageQuery {
            from_ms: 0,
            to_ms: u64::MAX,
            delivery: None,
            after: None,
        }
    }
}

/// A position in the `(at_ms, camera, seq)` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FootageCursor {
    /// The row's `at_ms`.
    pub at_ms: u64,
    /// The row's camera.
    pub camera: Id,
    /// The row's seq.
    pub seq: u64,
}

impl FootageSegment {
    /// The cursor that pages past this row.
    pub fn cursor(&self) -> FootageCursor {
        FootageCursor {
            at_ms: self.at_ms,
            camera: self.camera.clone(),
            seq: self.seq,
        }
    }

    /// Checks sizes before a write.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.frames.len() > MAX_FRAMES_PER_PROOF {
            return Err(StoreError::TooLarge {
                what: "frame digests in a footage segment",
                len: self.frames.len(),
                limit: MAX_FRAMES_PER_PROOF,
            });
        }
        if self.proof.len() > MAX_FOOTAGE_PROOF_BYTES {
            return Err(StoreError::TooLarge {
                what: "footage proof (bytes)",
                len: self.proof.len(),
                limit: MAX_FOOTAGE_PROOF_BYTES,
            });
        }
        to_i64(self.seq, "footage seq")?;
        to_i64(self.at_ms, "footage time")?;
        Ok(())
    }

    /// The frame digests as stored: concatenated.
    pub(crate) fn frames_bytes(&self) -> Vec<u8> {
        self.frames.iter().flat_map(|d| d.0).collect()
    }
}

/// The columns of a listed row, in [`footage_from_row`]'s order (a macro, so both
/// backends can `concat!` it into `&'static str` statements).
macro_rules! footage_columns {
    () => {
        "camera, seq, at_ms, segment, frames, head, camera_key, delivery, proof, uploaded_ms"
    };
}
pub(crate) use footage_columns;

/// A row read back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn footage_from_row(
    home: &Id,
    camera: String,
    seq: i64,
    at_ms: i64,
    segment: &[u8],
    frames: &[u8],
    head: &[u8],
    camera_key: &[u8],
    delivery: Option<String>,
    proof: Vec<u8>,
    uploaded_ms: Option<i64>,
) -> Result<FootageSegment, StoreError> {
    let corrupt =
        |what: &str| StoreError::Corrupt(format!("footage {home}/{camera}/{seq}: {what}"));
    if !frames.len().is_multiple_of(32) || frames.len() / 32 > MAX_FRAMES_PER_PROOF {
        return Err(corrupt("frame digests"));
    }
    let key: [u8; 32] = camera_key.try_into().map_err(|_| corrupt("camera key"))?;
    Ok(FootageSegment {
        home: home.clone(),
        camera: crate::sqlite::id(camera.clone())?,
        seq: seq as u64,
        at_ms: at_ms as u64,
        segment: crate::sqlite::digest(segment)?,
        frames: frames
            .chunks(32)
            .map(crate::sqlite::digest)
            .collect::<Result<_, _>>()?,
        head: crate::sqlite::digest(head)?,
        camera_key: PubKey(key),
        delivery: delivery.map(crate::sqlite::id).transpose()?,
        proof,
        uploaded_ms: uploaded_ms.map(|t| t as u64),
    })
}

/// A query's bounds as stored integers: `(from, to, cursor at_ms, cursor camera, cursor seq)`.
/// No cursor is one before every row.
pub(crate) fn query_bounds(q: &FootageQuery) -> Result<(i64, i64, i64, String, i64), StoreError> {
    let from = to_i64(q.from_ms, "footage from")?;
    let to = i64::try_from(q.to_ms).unwrap_or(i64::MAX);
    Ok(match &q.after {
        None => (from, to, -1, String::new(), -1),
        Some(c) => (
            from,
            to,
            to_i64(c.at_ms, "footage cursor")?,
            c.camera.as_str().to_owned(),
            to_i64(c.seq, "footage cursor")?,
        ),
    })
}
