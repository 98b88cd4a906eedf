//! The camera agent's state machine: frames in, proofs, checkpoints and attestations out.
//!
//! Frames since the last proof form a segment; each segment's digest extends the camera's
//! hash chain, and a [`CameraProof`] carries the segment digest, the new head and what the
//! detectors saw. Proofs go every `proof_interval_ms` during an entry and every
//! `idle_proof_interval_ms` otherwise, MAC'd under the session key when there is one (I10).
//! Signed [`Checkpoint`]s chain the digests of every proof sent, so they commit to the MAC'd
//! stream. A [`WitnessRequest`] gets a signed [`WitnessAttestation`] only when the lock's nonce
//! is genuine and the camera is recording a picture its detectors trust (I1).
//!
//! Sans-IO: the caller passes the monotonic time and the frames, delivers [`Output`]s, and
//! calls [`Camera::handle`] with [`Input::Tick`] at [`Camera::next_deadline_ms`].

use doorward_proto::{
    chain_next, message_digest, segment_digest, Body, CameraProof, Checkpoint, Digest, Envelope,
    Id, KeyPair, Nonce, Observations, PubKey, Signed, WitnessAttestation, WitnessRequest,
    MAX_FRAMES_PER_PROOF,
};

use doorward_proto::session::SessionKey;

use crate::detect::{Detectors, FrameReport};
use crate::frame::Frame;

/// Sequence numbers reserved per write of [`CameraState`]: the agent persists once per this
/// many proofs (about 2 minutes of entry), and a reboot skips at most this many numbers.
pub const SEQ_RESERVATION_BLOCK: u64 = 1024;

/// Default longest time between signed checkpoints when idle, ms (10 minutes). I10 asks for
/// one at least every second during an entry and says nothing of idle streams; each idle
/// checkpoint costs a signature and two verifications (the server's and the lock's), the
/// larger part of an idle day's CPU. What a longer interval gives up: MAC'd idle proofs
/// altered under a leaked session key are caught by the next checkpoint, up to this long
/// later (an entry starts with a checkpoint at once, and ends with one at the next idle
/// proof).
pub const DEFAULT_IDLE_CHECKPOINT_INTERVAL_MS: u64 = 600_000;

/// The camera's settings.
#[derive(Clone, Debug)]
pub struct CameraConfig {
    /// This camera.
    pub camera: Id,
    /// This camera's device key.
    pub key: KeyPair,
    /// The paired lock.
    pub lock: Id,
    /// The paired lock's device key, learned at pairing.
    pub lock_key: PubKey,
    /// Proof interval during an entry (I4).
    pub proof_interval_ms: u64,
    /// Proof interval when idle (I4).
    pub idle_proof_interval_ms: u64,
    /// Longest time between signed checkpoints during an entry (I10).
    pub checkpoint_interval_ms: u64,
    /// Longest time between signed checkpoints when idle (default
    /// [`DEFAULT_IDLE_CHECKPOINT_INTERVAL_MS`]); each one comes with an idle proof.
    pub idle_checkpoint_interval_ms: u64,
    /// Frames per second the sensor delivers (informational for drivers of the camera).
    pub fps: u32,
    /// An entry ends once the door has been closed and the entry zone empty this long.
    pub entry_quiet_ms: u64,
    /// When idle, one frame per this interval goes into the segment for upload and the
    /// chain (all frames are still checked by the detectors), so an idle proof's segment
    /// stays within [`MAX_FRAMES_PER_PROOF`].
    pub idle_frame_interval_ms: u64,
    /// The camera counts as recording while its newest frame is at most this old.
    pub recording_timeout_ms: u64,
    /// After a freeze, loop or blind frame, attestations are refused for this long.
    pub suspect_hold_ms: u64,
    /// Whether segments' frames are handed out for upload ([`Output::Segment`]).
    pub upload_segments: bool,
}

impl CameraConfig {
    /// Settings with the defaults.
    pub fn new(camera: Id, key: KeyPair, lock: Id, lock_key: PubKey) -> Self {
        CameraConfig {
            camera,
            key,
            lock,
            lock_key,
            proof_interval_ms: 125,
            idle_proof_interval_ms: 30_000,
            checkpoint_interval_ms: 1_000,
            idle_checkpoint_interval_ms: DEFAULT_IDLE_CHECKPOINT_INTERVAL_MS,
            fps: 8,
            entry_quiet_ms: 10_000,
            idle_frame_interval_ms: 2_000,
            recording_timeout_ms: 500,
            suspect_hold_ms: 5_000,
            upload_segments: true,
        }
    }
}

/// What the camera must keep across reboots: the sequence-number high-water mark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CameraState {
    /// Every sequence number up to this one may have been used.
    pub seq_reserved: u64,
}

/// Events the camera's driver hands in.
#[derive(Clone, Debug)]
pub enum Input {
    /// Time passed; fire what is due.
    Tick,
    /// A session key from a completed handshake: routine proofs are MAC'd from now on.
    Session(SessionKey),
    /// The session ended (expired or the server forgot it): proofs are signed again.
    SessionEnded,
    /// The server asks the camera to attest a lock's nonce.
    WitnessRequest(WitnessRequest),
}

/// Why a witness request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request names another camera.
    #[error("the request is for another camera")]
    WrongCamera,
    /// The nonce comes from a lock this camera is not paired with.
    #[error("the nonce is from a lock this camera is not paired with")]
    NotPaired,
    /// The nonce's signature does not verify under the paired lock's key.
    #[error("the nonce is not signed by the paired lock")]
    BadNonceSignature,
    /// No recent frame: the camera cannot see.
    #[error("not recording: no recent frame")]
    NotRecording,
    /// The stream froze recently.
    #[error("the picture is frozen")]
    Frozen,
    /// The stream looped recently.
    #[error("the picture repeats earlier footage")]
    Looped,
    /// The lens is covered or blinded.
    #[error("the lens is covered or blinded")]
    Blinded,
}

/// What the camera asks its driver to do, in order.
// A handful of outputs per proof; boxing the envelope would cost more than it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Output {
    /// Make this state durable before delivering any later output.
    Persist(CameraState),
    /// Publish this envelope to the server.
    Send(Envelope),
    /// Upload this segment's frames; the server checks them against the proof with `seq`.
    Segment {
        /// The proof covering the segment.
        seq: u64,
        /// The chain head after the segment.
        head: Digest,
        /// The frames, in order.
        frames: Vec<Frame>,
    },
    /// A witness request was refused (nothing is sent; the lock then gets no attestation).
    Refused {
        /// The lock named in the nonce.
        lock: Id,
        /// The nonce.
        nonce: Nonce,
        /// Why.
        reason: Refusal,
    },
}

/// Proof cadence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Slow supervision.
    Idle,
    /// An entry: proofs at `proof_interval_ms`, checkpoints at `checkpoint_interval_ms`.
    Entry,
}

/// Flags raised by any frame of the current segment.
#[derive(Clone, Copy, Debug, Default)]
struct SegmentFlags {
    frozen: bool,
    looped: bool,
    blinded: bool,
    door_moving: bool,
}

/// The camera agent's core.
pub struct Camera {
    cfg: CameraConfig,
    det: Detectors,
    state: CameraState,
    next_seq: u64,
    last_seq: Option<u64>,
    head: Digest,
    msg_head: Digest,
    session: Option<SessionKey>,
    mode: Mode,
    proof_due_ms: u64,
    checkpoint_due_ms: u64,
    last_activity_ms: u64,
    last_frame_ms: Option<u64>,
    last_admitted_ms: Option<u64>,
    seg_digests: [Digest; MAX_FRAMES_PER_PROOF],
    seg_len: usize,
    seg_frames: Vec<Frame>,
    flags: SegmentFlags,
    latest: Option<FrameReport>,
    frozen_until_ms: Option<u64>,
    looped_until_ms: Option<u64>,
    blinded_until_ms: Option<u64>,
}

impl Camera {
    /// Boots the camera at `now_ms` with its stored state. The chain starts anew from
    /// [`Digest::ZERO`] at a sequence number above any used before the reboot; the first proof
    /// is due at once and comes with a signed checkpoint, so the server sees the reboot.
    pub fn new(cfg: CameraConfig, stored: CameraState, now_ms: u64) -> Self {
        Camera {
            cfg,
            det: Detectors::new(),
            state: stored,
            next_seq: stored.seq_reserved + 1,
            last_seq: None,
            head: Digest::ZERO,
            msg_head: Digest::ZERO,
            session: None,
            mode: Mode::Idle,
            proof_due_ms: now_ms,
            checkpoint_due_ms: now_ms,
            last_activity_ms: now_ms,
            last_frame_ms: None,
            last_admitted_ms: None,
            seg_digests: [Digest::ZERO; MAX_FRAMES_PER_PROOF],
            seg_len: 0,
            seg_frames: Vec::new(),
            flags: SegmentFlags::default(),
            latest: None,
            frozen_until_ms: None,
            looped_until_ms: None,
            blinded_until_ms: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CameraConfig {
        &self.cfg
    }

    /// Idle or entry.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The newest proof's sequence number and chain head, if a proof was made since boot.
    pub fn head(&self) -> Option<(u64, Digest)> {
        self.last_seq.map(|s| (s, self.head))
    }

    /// The detectors' reading of the newest frame.
    pub fn latest(&self) -> Option<&FrameReport> {
        self.latest.as_ref()
    }

    /// When [`Input::Tick`] is next needed.
    pub fn next_deadline_ms(&self) -> u64 {
        self.proof_due_ms
    }

    /// Takes one frame captured at `now_ms`: runs the detectors, adds it to the segment, and
    /// fires whatever is due.
    pub fn on_frame(&mut self, now_ms: u64, frame: &Frame) -> Vec<Output> {
        let mut out = Vec::new();
        let r = self.det.observe(frame);
        self.last_frame_ms = Some(now_ms);
        let hold = now_ms.saturating_add(self.cfg.suspect_hold_ms);
        if r.frozen {
            self.flags.frozen = true;
            self.frozen_until_ms = Some(hold);
        }
        if r.looped {
            self.flags.looped = true;
            self.looped_until_ms = Some(hold);
        }
        if r.blinded {
            self.flags.blinded = true;
            self.blinded_until_ms = Some(hold);
        }
        self.flags.door_moving |= r.door.moving;
        self.latest = Some(r);
        if r.activity() {
            self.last_activity_ms = now_ms;
            self.enter_entry(now_ms);
        }
        let admit = match (self.mode, self.last_admitted_ms) {
            (Mode::Entry, _) | (Mode::Idle, None) => true,
            (Mode::Idle, Some(t)) => now_ms.saturating_sub(t) >= self.cfg.idle_frame_interval_ms,
        };
        if admit {
            self.last_admitted_ms = Some(now_ms);
            self.seg_digests[self.seg_len] = r.digest;
            self.seg_len += 1;
            if self.cfg.upload_segments {
                self.seg_frames.push(frame.clone());
            }
            if self.seg_len == MAX_FRAMES_PER_PROOF {
                // A full segment closes early: a proof never drops a frame digest.
                self.proof(now_ms, &mut out);
            }
        }
        self.fire(now_ms, &mut out);
        out
    }

    /// Handles one input at `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {}
            Input::Session(key) => self.session = Some(key),
            Input::SessionEnded => self.session = None,
            Input::WitnessRequest(req) => self.witness(now_ms, &req, &mut out),
        }
        self.fire(now_ms, &mut out);
        out
    }

    fn enter_entry(&mut self, now_ms: u64) {
        if self.mode == Mode::Entry {
            return;
        }
        self.mode = Mode::Entry;
        self.proof_due_ms = self.proof_due_ms.min(now_ms);
        // The first entry proof is anchored by a checkpoint too.
        self.checkpoint_due_ms = self.checkpoint_due_ms.min(now_ms);
    }

    fn fire(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        if self.mode == Mode::Entry && self.entry_is_over(now_ms) {
            self.mode = Mode::Idle;
            self.proof_due_ms = self
                .proof_due_ms
                .max(now_ms.saturating_add(self.cfg.idle_proof_interval_ms));
            self.checkpoint_due_ms = self.proof_due_ms;
        }
        if now_ms >= self.proof_due_ms {
            self.proof(now_ms, out);
        }
    }

    /// An entry is over only when the picture shows it: a recent, trustworthy frame with the
    /// door closed and nobody in the zone, and no activity for `entry_quiet_ms`. Without
    /// frames, or with a frozen, looped or blinded picture, the camera cannot tell, so it
    /// stays in entry mode (a covered lens must not slow supervision down).
    fn entry_is_over(&self, now_ms: u64) -> bool {
        let quiet = now_ms.saturating_sub(self.last_activity_ms) >= self.cfg.entry_quiet_ms;
        quiet && self.trouble(now_ms).is_none() && self.latest.is_some_and(|r| !r.activity())
    }

    fn recording(&self, now_ms: u64) -> bool {
        self.last_frame_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= self.cfg.recording_timeout_ms)
    }

    fn interval(&self) -> u64 {
        match self.mode {
            Mode::Entry => self.cfg.proof_interval_ms,
            Mode::Idle => self.cfg.idle_proof_interval_ms,
        }
        .max(1)
    }

    fn alloc_seq(&mut self, out: &mut Vec<Output>) -> u64 {
        let seq = self.next_seq;
        if seq > self.state.seq_reserved {
            self.state.seq_reserved = seq.saturating_add(SEQ_RESERVATION_BLOCK - 1);
            out.push(Output::Persist(self.state));
        }
        self.next_seq = seq.saturating_add(1);
        seq
    }

    fn proof(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let seq = self.alloc_seq(out);
        let frames = &self.seg_digests[..self.seg_len];
        let segment = segment_digest(frames);
        self.head = chain_next(&self.head, seq, &segment);
        self.last_seq = Some(seq);
        let latest = self.latest.unwrap_or(FrameReport {
            digest: Digest::ZERO,
            frozen: false,
            looped: false,
            blinded: false,
            door: Default::default(),
            people: Default::default(),
        });
        let obs = Observations {
            frozen: self.flags.frozen,
            looped: self.flags.looped,
            blinded: self.flags.blinded,
            door_moving: self.flags.door_moving,
            people_in_zone: latest.people.in_zone,
            entered: latest.people.entered,
            exited: latest.people.exited,
            door_open: latest.door.open,
        };
        let body = Body::CameraProof(CameraProof {
            camera: self.cfg.camera.clone(),
            seq,
            mono_ms: now_ms,
            segment,
            head: self.head,
            recording: self.recording(now_ms),
            frames: frames.to_vec(),
            obs,
        });
        self.msg_head = chain_next(&self.msg_head, seq, &message_digest(&body));
        let env = match &self.session {
            Some(k) => Envelope::maced(body, k),
            None => Envelope::signed(body, &self.cfg.key),
        };
        out.push(Output::Send(env));
        if self.cfg.upload_segments && self.seg_len > 0 {
            out.push(Output::Segment {
                seq,
                head: self.head,
                frames: std::mem::take(&mut self.seg_frames),
            });
        }
        self.seg_len = 0;
        self.flags = SegmentFlags::default();
        let interval = self.interval();
        // Keep to the grid of due times so proofs do not drift later with each late tick,
        // but never queue a burst after a long pause. An early proof (a full segment, a
        // witness request) leaves the grid alone.
        if now_ms >= self.proof_due_ms.saturating_add(interval) {
            self.proof_due_ms = now_ms.saturating_add(interval);
        } else if now_ms >= self.proof_due_ms {
            self.proof_due_ms = self.proof_due_ms.saturating_add(interval);
        }
        if now_ms >= self.checkpoint_due_ms {
            self.checkpoint(now_ms, seq, out);
        }
    }

    fn checkpoint(&mut self, now_ms: u64, seq: u64, out: &mut Vec<Output>) {
        let body = Body::Checkpoint(Checkpoint {
            device: self.cfg.camera.clone(),
            seq,
            head: self.msg_head,
            mono_ms: now_ms,
        });
        out.push(Output::Send(Envelope::signed(body, &self.cfg.key)));
        let interval = match self.mode {
            Mode::Entry => self.cfg.checkpoint_interval_ms,
            Mode::Idle => self.cfg.idle_checkpoint_interval_ms,
        }
        .max(1);
        self.checkpoint_due_ms = if now_ms >= self.checkpoint_due_ms.saturating_add(interval) {
            now_ms.saturating_add(interval)
        } else {
            self.checkpoint_due_ms.saturating_add(interval)
        };
    }

    fn witness(&mut self, now_ms: u64, req: &WitnessRequest, out: &mut Vec<Output>) {
        let lock = req.nonce.body.lock.clone();
        let nonce = req.nonce.body.nonce;
        let mut refuse = |reason| {
            out.push(Output::Refused {
                lock: lock.clone(),
                nonce,
                reason,
            })
        };
        if req.camera != self.cfg.camera {
            return refuse(Refusal::WrongCamera);
        }
        if req.nonce.body.lock != self.cfg.lock {
            return refuse(Refusal::NotPaired);
        }
        if req.nonce.verify(&self.cfg.lock_key).is_err() {
            return refuse(Refusal::BadNonceSignature);
        }
        // A driver is at the door: supervise at the entry rate whatever the answer.
        self.last_activity_ms = now_ms;
        self.enter_entry(now_ms);
        if let Some(reason) = self.trouble(now_ms) {
            return refuse(reason);
        }
        // Close the segment now, so the attested head is one the server is about to receive.
        self.proof(now_ms, out);
        let att = Signed::sign(
            WitnessAttestation {
                camera: self.cfg.camera.clone(),
                lock,
                nonce,
                seq: self.last_seq.expect("a proof was just made"),
                head: self.head,
                recording: true,
            },
            &self.cfg.key,
        );
        out.push(Output::Send(Envelope::signed(
            Body::WitnessAttestation(att),
            &self.cfg.key,
        )));
    }

    /// Why the camera cannot vouch for its picture right now, if it cannot.
    pub fn trouble(&self, now_ms: u64) -> Option<Refusal> {
        let recent = |until: Option<u64>| until.is_some_and(|u| now_ms < u);
        if !self.recording(now_ms) {
            Some(Refusal::NotRecording)
        } else if self.flags.frozen || recent(self.frozen_until_ms) {
            Some(Refusal::Frozen)
        } else if self.flags.looped || recent(self.looped_until_ms) {
            Some(Refusal::Looped)
        } else if self.flags.blinded || recent(self.blinded_until_ms) {
            Some(Refusal::Blinded)
        } else {
            None
        }
    }
}
