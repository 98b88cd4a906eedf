//! Footage upload (docs/PROTOCOL.md §18): a camera sends the frames of a segment it already
//! proved (`CameraProof`, §6.2) to the server over HTTP, signed with its device key. This
//! module holds the bytes the camera signs and the whole check the server makes, as pure
//! functions of their inputs (the server passes its clock in), so a camera maker and the
//! server agree on them by construction.
//!
//! The check, in order: the body is a whole number of frames, at least one and at most
//! [`MAX_UPLOAD_FRAMES`]; the timestamp is within [`UPLOAD_SKEW_MS`] of the server's clock;
//! the signature verifies under the camera's paired key (context [`SEGMENT_UPLOAD_CONTEXT`]);
//! the frames' digests are exactly the ones the accepted proof listed, in order, and their
//! segment digest is the proof's. A segment that passes is the footage the camera's chain
//! committed to; nothing else is.

use crate::codec;
use crate::keys::{self, KeyPair, SigError};
use crate::msg::{frame_digest, segment_digest, MAX_FRAMES_PER_PROOF};
use crate::types::{Digest, Id, PubKey, Sig};

/// Signature context of a segment upload (§4).
pub const SEGMENT_UPLOAD_CONTEXT: &str = "segment-upload";
/// Bytes of one uploaded frame: the reference camera's 64×48 8-bit grayscale picture,
/// row-major (the same bytes [`frame_digest`] hashes).
pub const UPLOAD_FRAME_BYTES: usize = 64 * 48;
/// Most frames in one upload: one proof's segment.
pub const MAX_UPLOAD_FRAMES: usize = MAX_FRAMES_PER_PROOF;
/// Largest upload body, in bytes.
pub const MAX_UPLOAD_BODY_BYTES: usize = MAX_UPLOAD_FRAMES * UPLOAD_FRAME_BYTES;
/// Largest difference between an upload's timestamp and the server's clock, in milliseconds,
/// either way.
pub const UPLOAD_SKEW_MS: u64 = 60_000;
/// The header carrying the upload's timestamp: decimal milliseconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "doorward-timestamp";
/// The header carrying the upload's signature: 128 lower-case hex characters.
pub const SIGNATURE_HEADER: &str = "doorward-signature";

/// Why an upload is refused. Each variant is one error code of §18.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    /// The body is empty, not a whole number of frames, or over [`MAX_UPLOAD_FRAMES`].
    #[error(
        "the body is {len} bytes: send 1 to {MAX_UPLOAD_FRAMES} frames of \
         {UPLOAD_FRAME_BYTES} bytes each"
    )]
    BadLength {
        /// The body's length in bytes.
        len: usize,
    },
    /// The timestamp is more than [`UPLOAD_SKEW_MS`] away from the server's clock.
    #[error(
        "the timestamp {timestamp_ms} is {skew_ms} ms away from the server's clock \
         (at most {UPLOAD_SKEW_MS}): sync the camera's clock (TimeRequest, §12) and sign again"
    )]
    Stale {
        /// The upload's timestamp.
        timestamp_ms: u64,
        /// How far it is from the server's clock.
        skew_ms: u64,
    },
    /// The signature does not verify under the camera's paired key.
    #[error("the signature does not verify under the camera's paired key")]
    BadSignature,
    /// The frames are not the ones the accepted proof listed.
    #[error(
        "the frames do not match the accepted proof: frame {frame} of {count} differs \
         (upload exactly the frames the proof with this seq covered)"
    )]
    Mismatch {
        /// The first frame that differs (or the count, when the counts differ).
        frame: usize,
        /// Frames in the accepted proof.
        count: usize,
    },
}

/// What the server holds for one proved segment: from the accepted `CameraProof`.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The camera's paired key.
    pub camera_key: &'a PubKey,
    /// The proof's frame digests, in order.
    pub frames: &'a [Digest],
    /// The proof's segment digest.
    pub segment: &'a Digest,
}

/// One upload as received.
#[derive(Clone, Copy, Debug)]
pub struct Upload<'a> {
    /// The camera the URL names.
    pub camera: &'a Id,
    /// The proof's sequence number the URL names.
    pub seq: u64,
    /// The timestamp header.
    pub timestamp_ms: u64,
    /// The signature header.
    pub sig: &'a Sig,
    /// The body: the frames, concatenated.
    pub body: &'a [u8],
}

/// BLAKE3 (plain hash mode) of an upload body.
pub fn body_digest(body: &[u8]) -> Digest {
    Digest(*blake3::hash(body).as_bytes())
}

/// The message a camera signs for an upload: canonical `[camera: Id, seq: u64,
/// timestamp_ms: u64, body: Digest]` where `body` is [`body_digest`] of the request body.
pub fn segment_upload_message(camera: &Id, seq: u64, timestamp_ms: u64, body: &[u8]) -> Vec<u8> {
    codec::encode(&(camera.clone(), seq, timestamp_ms, body_digest(body)))
}

/// The camera's signature of an upload.
pub fn sign_upload(key: &KeyPair, camera: &Id, seq: u64, timestamp_ms: u64, body: &[u8]) -> Sig {
    key.sign(
        SEGMENT_UPLOAD_CONTEXT,
        &segment_upload_message(camera, seq, timestamp_ms, body),
    )
}

/// The frames of a body, if its length is 1 to [`MAX_UPLOAD_FRAMES`] whole frames.
pub fn split_frames(body: &[u8]) -> Result<Vec<&[u8]>, UploadRefusal> {
    let len = body.len();
    if len == 0 || !len.is_multiple_of(UPLOAD_FRAME_BYTES) || len > MAX_UPLOAD_BODY_BYTES {
        return Err(UploadRefusal::BadLength { len });
    }
    Ok(body.chunks(UPLOAD_FRAME_BYTES).collect())
}

/// The server's whole check of an upload against the proof it accepted, at `now_ms` on the
/// server's clock. Returns the frames on success.
pub fn check_upload<'a>(
    up: &Upload<'a>,
    expected: &Expected<'_>,
    now_ms: u64,
) -> Result<Vec<&'a [u8]>, UploadRefusal> {
    let frames = split_frames(up.body)?;
    let skew_ms = up.timestamp_ms.abs_diff(now_ms);
    if skew_ms > UPLOAD_SKEW_MS {
        return Err(UploadRefusal::Stale {
            timestamp_ms: up.timestamp_ms,
            skew_ms,
        });
    }
    let msg = segment_upload_message(up.camera, up.seq, up.timestamp_ms, up.body);
    keys::verify(expected.camera_key, SEGMENT_UPLOAD_CONTEXT, &msg, up.sig).map_err(
        |e| match e {
            SigError::BadKey | SigError::BadSignature => UploadRefusal::BadSignature,
        },
    )?;
    let count = expected.frames.len();
    let digests: Vec<Digest> = frames.iter().map(|f| frame_digest(f)).collect();
    if let Some(i) =
        (0..digests.len().max(count)).find(|&i| digests.get(i) != expected.frames.get(i))
    {
        return Err(UploadRefusal::Mismatch { frame: i, count });
    }
    // The frame digests match the proof's list; its segment digest must then match too,
    // unless the proof itself was inconsistent (the core checks that; checked again here).
    if segment_digest(&digests) != *expected.segment {
        return Err(UploadRefusal::Mismatch {
            frame: count,
            count,
        });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (KeyPair, Id, Vec<u8>, Vec<Digest>, Digest) {
        let key = KeyPair::from_seed(&[5; 32]);
        let cam = Id::new("cam-1").unwrap();
        let mut body = vec![0u8; 3 * UPLOAD_FRAME_BYTES];
        for (i, b) in body.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let frames: Vec<Digest> = body.chunks(UPLOAD_FRAME_BYTES).map(frame_digest).collect();
        let seg = segment_digest(&frames);
        (key, cam, body, frames, seg)
    }

    #[test]
    fn a_signed_upload_of_the_proved_frames_passes_and_each_change_is_refused() {
        let (key, cam, body, frames, seg) = setup();
        let pk = key.public();
        let exp = Expected {
            camera_key: &pk,
            frames: &frames,
            segment: &seg,
        };
        let t = 1_000_000;
        let sig = sign_upload(&key, &cam, 9, t, &body);
        let up = Upload {
            camera: &cam,
            seq: 9,
            timestamp_ms: t,
            sig: &sig,
            body: &body,
        };
        assert_eq!(
            check_upload(&up, &exp, t + UPLOAD_SKEW_MS).unwrap().len(),
            3
        );
        assert!(matches!(
            check_upload(&up, &exp, t + UPLOAD_SKEW_MS + 1),
            Err(UploadRefusal::Stale { .. })
        ));
        assert!(matches!(
            check_upload(&up, &exp, t - UPLOAD_SKEW_MS - 1),
            Err(UploadRefusal::Stale { .. })
        ));
        // Another seq, camera or timestamp than the one signed.
        for up2 in [
            Upload { seq: 10, ..up },
            Upload {
                timestamp_ms: t + 1,
                ..up
            },
        ] {
            assert_eq!(
                check_upload(&up2, &exp, t),
                Err(UploadRefusal::BadSignature)
            );
        }
        let other = Id::new("cam-2").unwrap();
        assert_eq!(
            check_upload(
                &Upload {
                    camera: &other,
                    ..up
                },
                &exp,
                t
            ),
            Err(UploadRefusal::BadSignature)
        );
        // Signed by another key.
        let sig2 = sign_upload(&KeyPair::from_seed(&[6; 32]), &cam, 9, t, &body);
        assert_eq!(
            check_upload(&Upload { sig: &sig2, ..up }, &exp, t),
            Err(UploadRefusal::BadSignature)
        );
        // Other frames, properly signed.
        let mut wrong = body.clone();
        wrong[UPLOAD_FRAME_BYTES + 5] ^= 1;
        let sig3 = sign_upload(&key, &cam, 9, t, &wrong);
        assert_eq!(
            check_upload(
                &Upload {
                    sig: &sig3,
                    body: &wrong,
                    ..up
                },
                &exp,
                t
            ),
            Err(UploadRefusal::Mismatch { frame: 1, count: 3 })
        );
        // One frame short.
        let short = &body[..2 * UPLOAD_FRAME_BYTES];
        let sig4 = sign_upload(&key, &cam, 9, t, short);
        assert_eq!(
            check_upload(
                &Upload {
                    sig: &sig4,
                    body: short,
                    ..up
                },
                &exp,
                t
            ),
            Err(UploadRefusal::Mismatch { frame: 2, count: 3 })
        );
    }

    #[test]
    fn limit_upload_body_length() {
        assert_eq!(split_frames(&[]), Err(UploadRefusal::BadLength { len: 0 }));
        assert_eq!(
            split_frames(&[0; UPLOAD_FRAME_BYTES + 1]),
            Err(UploadRefusal::BadLength {
                len: UPLOAD_FRAME_BYTES + 1
            })
        );
        assert_eq!(
            split_frames(&vec![0; MAX_UPLOAD_BODY_BYTES]).unwrap().len(),
            MAX_UPLOAD_FRAMES
        );
        let over = MAX_UPLOAD_BODY_BYTES + UPLOAD_FRAME_BYTES;
        assert_eq!(
            split_frames(&vec![0; over]),
            Err(UploadRefusal::BadLength { len: over })
        );
    }
}
