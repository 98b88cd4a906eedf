//! Per-device stream checks: sequence numbers, the device clock, the camera's hash chain and
//! the server-side freeze and loop checks on frame and segment digests.
//!
//! Everything here is a pure function of the device's small [`Supervision`] record and the
//! message; the caller decides what a verdict means (drop, record, alarm).

use std::collections::{HashMap, VecDeque};

use doorward_proto::session::SessionKey;
use doorward_proto::{chain_next, segment_digest, CameraProof, Digest};

use crate::config::{IDLE_SEGMENT_HISTORY, MAX_DIGEST_HISTORY};

/// What the server keeps to supervise one device's stream, whatever its role.
#[derive(Clone, Debug)]
pub(crate) struct Supervision {
    /// Newest accepted sequence number (meaningful once `seen`).
    pub last_seq: u64,
    /// First 8 bytes of the newest accepted message's digest: tells a transport duplicate
    /// from a fork at the same sequence number.
    pub last_short: u64,
    /// Server time of the newest accepted message.
    pub last_rx_ms: u64,
    /// Smallest `server time - device clock` seen: the device's clock offset plus the
    /// fastest transit. Delays only raise the difference; a device clock jumping ahead
    /// lowers it.
    pub min_offset_ms: i64,
    /// Whether any sequenced message was accepted yet.
    pub seen: bool,
    /// Whether the clock baseline is set.
    pub clock_set: bool,
    /// Whether `msg_head` is the device's message-chain head at `last_seq`: every message
    /// since the last anchor (a checkpoint taken as the device's word) arrived, in order.
    pub head_ok: bool,
    /// The device's message chain as the server rebuilds it from the messages it accepted:
    /// `chain_next(prev, seq, message_digest(body))` from the last anchor (see
    /// [`Supervision::check_checkpoint`]). Meaningful only while `head_ok`.
    pub msg_head: Digest,
    /// The session key for MAC'd routine messages.
    pub session: Option<SessionKey>,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            last_seq: 0,
            last_short: 0,
            last_rx_ms: 0,
            min_offset_ms: 0,
            seen: false,
            clock_set: false,
            head_ok: false,
            msg_head: Digest::ZERO,
            session: None,
        }
    }
}

/// Verdict of the sequence check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SeqVerdict {
    /// The next message, or the first.
    Next,
    /// Newer, with `missing` messages lost in between (within `max_seq_gap`).
    Loss { missing: u64 },
    /// The same message again (an at-least-once redelivery): dropped, no alarm.
    Duplicate,
    /// An older sequence number.
    Replay,
    /// Another message under the newest sequence number.
    Fork,
    /// A jump past `max_seq_gap`.
    Gap { missing: u64 },
}

/// What a signed checkpoint says about the stream the server accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointVerdict {
    /// Every message since the anchor arrived and the heads agree.
    Verified,
    /// The heads disagree although every message since the anchor arrived: a message was
    /// altered or injected (or the device's own was dropped and replaced). `held` is the
    /// server's head; the stream is anchored on the device's head from here.
    Mismatch { held: Digest },
    /// Messages before the checkpoint were lost (or the server held no anchor yet): it cannot
    /// be checked, and the stream is anchored on the device's head from here.
    Reanchored,
    /// The checkpoint does not name the newest message the server holds (it overtook its own
    /// messages, came late or is replayed): it checks nothing and changes nothing. The chain
    /// is cumulative, so the next checkpoint that lines up covers these messages too.
    Deferred,
}

/// First 8 bytes of a digest, for compact histories (a 2^-64 collision is not a concern).
pub(crate) fn short(d: &Digest) -> u64 {
    u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes"))
}

impl Supervision {
    /// Classifies `seq` against the stream.
    pub fn check_seq(&self, seq: u64, digest: &Digest, max_seq_gap: u64) -> SeqVerdict {
        if !self.seen {
            return SeqVerdict::Next;
        }
        if seq == self.last_seq {
            return if short(digest) == self.last_short {
                SeqVerdict::Duplicate
            } else {
                SeqVerdict::Fork
            };
        }
        if seq < self.last_seq {
            return SeqVerdict::Replay;
        }
        let missing = seq - self.last_seq - 1;
        match missing {
            0 => SeqVerdict::Next,
            m if m <= max_seq_gap => SeqVerdict::Loss { missing: m },
            m => SeqVerdict::Gap { missing: m },
        }
    }

    /// Moves the stream to `seq` (accepted, or re-anchored after a dropped jump). `item` is
    /// the message's [`doorward_proto::message_digest`]: it extends the running head when the
    /// message directly follows the one before; after a loss or a jump the head is unknown
    /// until a checkpoint anchors it again.
    pub fn advance(&mut self, seq: u64, digest: &Digest, item: &Digest) {
        let next = self.seen && Some(seq) == self.last_seq.checked_add(1);
        if next && self.head_ok {
            self.msg_head = chain_next(&self.msg_head, seq, item);
        } else {
            self.head_ok = false;
        }
        self.last_seq = seq;
        self.last_short = short(digest);
        self.seen = true;
    }

    /// Compares a signed checkpoint (`seq`, `head`) with the running head, and anchors the
    /// stream on it when the running head is unknown.
    ///
    /// The rule, with loss in mind (the broker may drop 1 % of packets, and a checkpoint can
    /// only vouch for messages the server holds):
    /// - A checkpoint is checked only when it names the newest message the server holds
    ///   (`seq == last_seq`); otherwise it is deferred. Deferring loses nothing: the device's
    ///   chain runs from its boot, so the next checkpoint that lines up covers every message
    ///   since the anchor.
    /// - If every message since the anchor arrived in order, the heads must be equal;
    ///   anything else is tampering, whatever was lost elsewhere. A mismatch is never waived.
    /// - Only when messages since the anchor are provably missing (a sequence number the
    ///   server never accepted, each one recorded as `StreamLoss`), or when there is no anchor
    ///   yet (first contact, device reboot, server restart), does the checkpoint re-anchor
    ///   without alarm. The messages of that window stay authenticated by their MACs alone,
    ///   and the record says so (`Reanchored`). A forger holding a session key could hide an
    ///   altered message only in such a window, by also dropping one of its messages; each
    ///   such window is on record, and windows after it are checked again.
    pub fn check_checkpoint(&mut self, seq: u64, head: &Digest) -> CheckpointVerdict {
        if !self.seen || seq != self.last_seq {
            return CheckpointVerdict::Deferred;
        }
        let verdict = if !self.head_ok {
            CheckpointVerdict::Reanchored
        } else if self.msg_head == *head {
            return CheckpointVerdict::Verified;
        } else {
            CheckpointVerdict::Mismatch {
                held: self.msg_head,
            }
        };
        // Anchor on the device's signed word, so the next window is checked on its own.
        self.msg_head = *head;
        self.head_ok = true;
        verdict
    }

    /// Checks the device's monotonic clock against server time. Returns by how much the
    /// device clock ran ahead past `max_skew_ms`, if it did, and re-anchors either way.
    pub fn check_clock(
        &mut self,
        now_ms: u64,
        mono_ms: u64,
        rebooted: bool,
        max_skew_ms: u64,
    ) -> Option<u64> {
        let offset = (now_ms as i64).wrapping_sub(mono_ms as i64);
        if !self.clock_set || rebooted {
            self.min_offset_ms = offset;
            self.clock_set = true;
            return None;
        }
        let ahead = self.min_offset_ms.saturating_sub(offset);
        self.min_offset_ms = self.min_offset_ms.min(offset);
        if ahead > max_skew_ms as i64 {
            Some(ahead as u64)
        } else {
            None
        }
    }
}

/// What a camera proof's digests show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DigestVerdict {
    /// A frame (or the segment) repeats the one before it.
    pub frozen: bool,
    /// A frame (or the segment) repeats an earlier, non-adjacent one.
    pub looped: bool,
}

/// The camera's chain and digest state the server keeps while idle (inline, small).
#[derive(Clone, Debug)]
pub(crate) struct CameraChain {
    /// Chain head at the newest accepted proof.
    pub head: Digest,
    /// Short digest of the newest frame.
    pub last_frame: u64,
    /// Short digests of the newest segments, newest first.
    pub recent_segments: [u64; IDLE_SEGMENT_HISTORY],
}

impl Default for CameraChain {
    fn default() -> Self {
        CameraChain {
            head: Digest::ZERO,
            last_frame: 0,
            recent_segments: [0; IDLE_SEGMENT_HISTORY],
        }
    }
}

/// Frame digests remembered during an entry, for loop detection. Bounded by
/// [`MAX_DIGEST_HISTORY`]; the oldest are forgotten first.
#[derive(Clone, Debug, Default)]
pub(crate) struct FrameHistory {
    order: VecDeque<u64>,
    count: HashMap<u64, u32>,
}

impl FrameHistory {
    fn contains(&self, d: u64) -> bool {
        self.count.contains_key(&d)
    }

    fn push(&mut self, d: u64) {
        if self.order.len() == MAX_DIGEST_HISTORY {
            if let Some(old) = self.order.pop_front() {
                if let Some(c) = self.count.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.count.remove(&old);
                    }
                }
            }
        }
        self.order.push_back(d);
        *self.count.entry(d).or_insert(0) += 1;
    }

    /// Digests held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

/// Why a proof's chain does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChainError {
    /// The segment digest is not the digest of the frames carried.
    Segment,
    /// `chain_next(previous head, seq, segment)` is not the head carried.
    Head,
}

/// Checks a proof's segment against its frames and, when it directly follows the previous
/// proof, its head against the chain. Across lost proofs the link cannot be recomputed: the
/// head is taken as the new anchor (the caller records the loss).
pub(crate) fn check_chain(
    chain: &CameraChain,
    consecutive: bool,
    proof: &CameraProof,
) -> Result<(), ChainError> {
    if segment_digest(&proof.frames) != proof.segment {
        return Err(ChainError::Segment);
    }
    if consecutive && chain_next(&chain.head, proof.seq, &proof.segment) != proof.head {
        return Err(ChainError::Head);
    }
    Ok(())
}

/// Runs the freeze and loop checks over a proof's frames and segment, then remembers them.
/// `history` is the entry-time frame history when the camera is witnessing an entry.
pub(crate) fn check_digests(
    chain: &mut CameraChain,
    history: Option<&mut FrameHistory>,
    proof: &CameraProof,
    seen_before: bool,
) -> DigestVerdict {
    let mut v = DigestVerdict::default();
    let seg = short(&proof.segment);
    if seen_before && !proof.frames.is_empty() {
        if chain.recent_segments[0] == seg {
            v.frozen = true;
        } else if chain.recent_segments[1..].contains(&seg) {
            v.looped = true;
        }
    }
    let mut prev = if seen_before {
        Some(chain.last_frame)
    } else {
        None
    };
    let mut history = history;
    for f in &proof.frames {
        let d = short(f);
        if prev == Some(d) {
            v.frozen = true;
        } else if let Some(h) = history.as_deref() {
            if h.contains(d) {
                v.looped = true;
            }
        }
        if prev != Some(d) {
            if let Some(h) = history.as_deref_mut() {
                h.push(d);
            }
        }
        prev = Some(d);
    }
    if let Some(p) = prev {
        chain.last_frame = p;
    }
    if !proof.frames.is_empty() {
        chain.recent_segments.rotate_right(1);
        chain.recent_segments[0] = seg;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::{frame_digest, Id, Observations};

    fn d(n: u8) -> Digest {
        frame_digest(&[n])
    }

    fn proof(seq: u64, frames: Vec<Digest>) -> CameraProof {
        CameraProof {
            camera: Id::new("cam").unwrap(),
            seq,
            mono_ms: 0,
            segment: segment_digest(&frames),
            head: Digest::ZERO,
            recording: true,
            frames,
            obs: Observations::default(),
        }
    }

    #[test]
    fn sequence_verdicts() {
        let mut s = Supervision::default();
        assert_eq!(s.check_seq(5, &d(1), 2), SeqVerdict::Next);
        s.advance(5, &d(1), &d(1));
        assert_eq!(s.check_seq(6, &d(2), 2), SeqVerdict::Next);
        assert_eq!(s.check_seq(5, &d(1), 2), SeqVerdict::Duplicate);
        assert_eq!(s.check_seq(5, &d(9), 2), SeqVerdict::Fork);
        assert_eq!(s.check_seq(4, &d(1), 2), SeqVerdict::Replay);
        assert_eq!(s.check_seq(8, &d(1), 2), SeqVerdict::Loss { missing: 2 });
        assert_eq!(s.check_seq(9, &d(1), 2), SeqVerdict::Gap { missing: 3 });
    }

    #[test]
    fn checkpoint_verdicts() {
        use CheckpointVerdict::*;
        let mut s = Supervision::default();
        assert_eq!(s.check_checkpoint(1, &d(9)), Deferred, "nothing seen yet");
        // Met mid-stream: no anchor yet.
        s.advance(1, &d(1), &d(1));
        assert_eq!(s.check_checkpoint(1, &d(9)), Reanchored);
        s.advance(2, &d(2), &d(2));
        let h2 = chain_next(&d(9), 2, &d(2));
        assert_eq!(s.check_checkpoint(2, &h2), Verified);
        assert_eq!(s.check_checkpoint(1, &d(9)), Deferred, "late");
        assert_eq!(s.check_checkpoint(3, &d(9)), Deferred, "early");
        s.advance(3, &d(3), &d(3));
        let h3 = chain_next(&h2, 3, &d(3));
        assert_eq!(s.check_checkpoint(3, &d(7)), Mismatch { held: h3 });
        // Anchored on the device's word: the next window is checked against it.
        s.advance(4, &d(4), &d(4));
        assert_eq!(
            s.check_checkpoint(4, &chain_next(&d(7), 4, &d(4))),
            Verified
        );
        // A loss leaves nothing to check: the checkpoint anchors again.
        s.advance(6, &d(6), &d(6));
        assert_eq!(s.check_checkpoint(6, &d(8)), Reanchored);
        s.advance(7, &d(7), &d(7));
        assert_eq!(
            s.check_checkpoint(7, &chain_next(&d(8), 7, &d(7))),
            Verified
        );
    }

    #[test]
    fn clock_delays_pass_and_a_jump_ahead_is_caught() {
        let mut s = Supervision::default();
        assert_eq!(s.check_clock(10_000, 0, false, 2_000), None);
        // Delivered late: server time moved more than the device clock.
        assert_eq!(s.check_clock(15_000, 125, false, 2_000), None);
        assert_eq!(s.check_clock(15_100, 250, false, 2_000), None);
        // The device clock leaps 10 s ahead while 100 ms passed: 5.175 s ahead of the
        // fastest delivery seen (the first).
        assert_eq!(s.check_clock(15_200, 10_375, false, 2_000), Some(5_175));
        // A reboot resets the baseline.
        assert_eq!(s.check_clock(16_000, 5, true, 2_000), None);
    }

    #[test]
    fn frozen_looped_and_alternating_digests() {
        let mut c = CameraChain::default();
        let mut h = FrameHistory::default();
        let v = check_digests(&mut c, Some(&mut h), &proof(1, vec![d(1), d(2)]), false);
        assert_eq!(v, DigestVerdict::default());
        // The last frame repeated across proofs: frozen.
        let v = check_digests(&mut c, Some(&mut h), &proof(2, vec![d(2), d(3)]), true);
        assert!(v.frozen);
        // A/B alternation: seen before, not adjacent.
        let v = check_digests(&mut c, Some(&mut h), &proof(3, vec![d(4), d(1)]), true);
        assert!(v.looped && !v.frozen);
    }

    #[test]
    fn history_is_bounded() {
        let mut h = FrameHistory::default();
        for i in 0..(MAX_DIGEST_HISTORY as u64 + 10) {
            h.push(i);
        }
        assert_eq!(h.len(), MAX_DIGEST_HISTORY);
        assert!(!h.contains(0));
        assert!(h.contains(MAX_DIGEST_HISTORY as u64 + 9));
    }
}
