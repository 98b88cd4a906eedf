//! Device messages: authentication (I10), stream checks (I7), clock sanity (I8), lock reports
//! (I5, I6, I12), camera proofs (I4, I7, I13) and session handshakes.

use doorward_proto::guard::{self, Guard};
use doorward_proto::session;
use doorward_proto::{
    AlarmKind, Auth, Body, Bolt, CameraProof, Checkpoint, Digest, Door, Envelope, Id, LockEvent,
    LockReport, TimeSync,
};

use crate::control::{Control, PendingSession, Raise, Timer};
use crate::io::*;
use crate::registry::{CameraSeen, LockSeen, Seen, Side};
use crate::stream::{check_chain, check_digests, short, CheckpointVerdict, SeqVerdict};

/// BLAKE3 of the bytes as received: the identity of a message in the record.
pub(crate) fn message_digest(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

impl Control {
    pub(crate) fn on_device(
        &mut self,
        now_ms: u64,
        from: Id,
        bytes: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let digest = message_digest(&bytes);
        let env = Envelope::decode(&bytes);
        let Some(&slot) = self.dev_ix.get(&from) else {
            // A topic with no paired device. If the message claims to be one of ours, that
            // home is told: someone is injecting at the broker (S8).
            let claimed = env
                .as_ref()
                .ok()
                .and_then(|e| e.body.device())
                .and_then(|d| self.dev_ix.get(d).copied());
            self.audit(
                now_ms,
                claimed.map(|c| self.devices[c as usize].home),
                AuditKind::Rejected {
                    from: from.clone(),
                    digest,
                    reason: RejectReason::UnknownDevice,
                    seq: None,
                },
                out,
            );
            if let Some(c) = claimed {
                self.forged_alarm(
                    now_ms,
                    c,
                    &format!(
                        "A message on the unknown topic {from} claimed to come from {}.",
                        self.devices[c as usize].id
                    ),
                    out,
                );
            }
            return;
        };
        let env = match env {
            Ok(e) => e,
            Err(_) => return self.forged(now_ms, slot, digest, RejectReason::Malformed, None, out),
        };
        if env.body.device() != Some(&from) {
            return self.forged(now_ms, slot, digest, RejectReason::WrongSource, None, out);
        }
        let signed = matches!(env.auth, Auth::Sig(_));
        let dev = &self.devices[slot as usize];
        // A MAC names its session: the device's current key, or one agreed since and not yet
        // used (which the first message under it puts in force).
        let mut confirms = None;
        let auth = match &env.auth {
            Auth::Sig(_) => env
                .verify_sig(&dev.key)
                .map_err(|_| RejectReason::BadSignature),
            Auth::Mac { session: sid, .. } => match &dev.sup.session {
                Some(k) if k.id() == *sid => env.verify_mac(k).map_err(|_| RejectReason::BadMac),
                _ => match self.pending_sessions.get(sid) {
                    Some(p) if p.slot == slot => {
                        confirms = Some(*sid);
                        env.verify_mac(&p.key).map_err(|_| RejectReason::BadMac)
                    }
                    _ => Err(RejectReason::BadMac),
                },
            },
        };
        if let Err(reason) = auth {
            return self.forged(now_ms, slot, digest, reason, None, out);
        }
        if let Some(sid) = confirms {
            self.confirm_session(now_ms, slot, sid, out);
        }
        let dev = &self.devices[slot as usize];
        let is_lock = dev.lock().is_some();
        // The digest the device chains into its checkpoints, for the messages it sequences.
        let item = match &env.body {
            Body::LockReport(_) | Body::CameraProof(_) => doorward_proto::message_digest(&env.body),
            _ => Digest::ZERO,
        };
        match env.body {
            Body::LockReport(r) if is_lock => {
                self.on_lock_report(now_ms, slot, r, signed, digest, item, bytes, out)
            }
            Body::CameraProof(p) if !is_lock => {
                self.on_camera_proof(now_ms, slot, p, signed, digest, item, bytes, out)
            }
            Body::WitnessAttestation(_) | Body::SessionHello(_) | Body::Checkpoint(_)
                if !signed =>
            {
                self.forged(
                    now_ms,
                    slot,
                    digest,
                    RejectReason::SignatureRequired,
                    None,
                    out,
                )
            }
            Body::WitnessAttestation(a) if !is_lock => {
                self.accept(now_ms, slot, 0, digest, bytes, false, out);
                self.on_attestation(now_ms, slot, a, out);
            }
            Body::SessionHello(h) => {
                let guarded = guard::enabled(Guard::SessionReplay);
                let hello = short(&session::hello_digest(&h));
                if guarded && self.refuse_hello(now_ms, slot, hello, digest, out) {
                    return;
                }
                let id = self.rng_u64();
                match session::respond(&h, id, &mut self.rng) {
                    Ok((accept, key)) => {
                        self.accept(now_ms, slot, 0, digest, bytes, false, out);
                        if guarded {
                            // The new key waits for its first use: until then the current one
                            // stays in force, so a replayed hello, whose key nobody holds,
                            // cannot displace a working session.
                            self.pending_sessions
                                .insert(id, PendingSession { slot, key });
                            self.pending_order
                                .push_back((id, now_ms + self.cfg.session_confirm_ms));
                            if self.recent_order.len() >= self.cfg.max_recent_hellos {
                                if let Some(old) = self.recent_order.pop_front() {
                                    self.recent_hellos.remove(&old);
                                }
                            }
                            self.recent_order.push_back(hello);
                            self.recent_hellos.insert(hello, id);
                        } else {
                            self.devices[slot as usize].sup.session = Some(key);
                        }
                        let home = self.devices[slot as usize].home;
                        self.audit(
                            now_ms,
                            Some(home),
                            AuditKind::SessionOpened {
                                device: from.clone(),
                                session: id,
                            },
                            out,
                        );
                        out.push(Output::Send {
                            device: from,
                            envelope: Envelope::signed(
                                Body::SessionAccept(accept),
                                &self.server_key,
                            ),
                        });
                    }
                    Err(_) => self.reject(now_ms, slot, digest, RejectReason::Handshake, None, out),
                }
            }
            Body::TimeRequest(t) => {
                self.accept(now_ms, slot, 0, digest, bytes, false, out);
                let home = self.devices[slot as usize].home;
                self.audit(
                    now_ms,
                    Some(home),
                    AuditKind::TimeServed {
                        device: from.clone(),
                    },
                    out,
                );
                let sync = TimeSync {
                    device: t.device,
                    nonce: t.nonce,
                    server_ms: now_ms,
                };
                out.push(Output::Send {
                    device: from,
                    envelope: Envelope::signed(Body::TimeSync(sync), &self.server_key),
                });
            }
            Body::Checkpoint(c) => {
                // A signed anchor over the MAC'd stream. Its sequence number names the newest
                // message it covers; newer than anything received means the broker held
                // messages back or dropped them, which the record shows as loss.
                let sup = &self.devices[slot as usize].sup;
                let missing = c
                    .seq
                    .saturating_sub(if sup.seen { sup.last_seq } else { 0 });
                self.accept(now_ms, slot, c.seq, digest, bytes, true, out);
                if missing > 0 {
                    let home = self.devices[slot as usize].home;
                    self.audit(
                        now_ms,
                        Some(home),
                        AuditKind::StreamLoss {
                            device: from.clone(),
                            seq: c.seq,
                            missing,
                        },
                        out,
                    );
                }
                if guard::enabled(Guard::CheckpointChain) {
                    self.on_checkpoint(now_ms, slot, &c, digest, out);
                }
            }
            _ => self.reject(now_ms, slot, digest, RejectReason::Unexpected, None, out),
        }
    }

    /// Holds a signed checkpoint against the messages accepted from the device (I7, I10); the
    /// rule for loss is on [`crate::stream::Supervision::check_checkpoint`].
    fn on_checkpoint(
        &mut self,
        now_ms: u64,
        slot: u32,
        c: &Checkpoint,
        digest: Digest,
        out: &mut Vec<Output>,
    ) {
        let verdict = self.devices[slot as usize]
            .sup
            .check_checkpoint(c.seq, &c.head);
        let dev = &self.devices[slot as usize];
        let (home, id) = (dev.home, dev.id.clone());
        match verdict {
            CheckpointVerdict::Verified | CheckpointVerdict::Deferred => {}
            CheckpointVerdict::Reanchored => self.audit(
                now_ms,
                Some(home),
                AuditKind::Reanchored {
                    device: id,
                    seq: c.seq,
                },
                out,
            ),
            CheckpointVerdict::Mismatch { held } => {
                self.audit(
                    now_ms,
                    Some(home),
                    AuditKind::CheckpointMismatch {
                        device: id.clone(),
                        seq: c.seq,
                        device_head: c.head,
                        server_head: held,
                    },
                    out,
                );
                let delivery = self.door_delivery(slot);
                let detail = format!(
                    "The signed checkpoint of {id} at sequence {} does not match the messages \
                     the server accepted: one was altered, injected or replaced.",
                    c.seq
                );
                // The evidence is the signed checkpoint itself, not the newest proof.
                let evidence = Evidence {
                    device: id,
                    seq: c.seq,
                    digest,
                };
                self.raise_with(
                    now_ms,
                    Raise {
                        kind: AlarmKind::StreamTampered,
                        home,
                        device: Some(slot),
                        delivery,
                        detail,
                    },
                    Some(evidence),
                    out,
                );
            }
        }
    }

    /// Whether a session hello must be refused (and so recorded): one seen recently, or one
    /// past `max_pending_sessions`. A redelivery of the hello behind the device's current or
    /// waiting key is a duplicate; any other recent hello is a replay (I10).
    fn refuse_hello(
        &mut self,
        now_ms: u64,
        slot: u32,
        hello: u64,
        digest: Digest,
        out: &mut Vec<Output>,
    ) -> bool {
        if let Some(&sid) = self.recent_hellos.get(&hello) {
            let current = self.devices[slot as usize]
                .sup
                .session
                .as_ref()
                .is_some_and(|k| k.id() == sid);
            if current || self.pending_sessions.contains_key(&sid) {
                self.reject(now_ms, slot, digest, RejectReason::Duplicate, None, out);
            } else {
                self.reject(now_ms, slot, digest, RejectReason::Replay, None, out);
                let detail = format!(
                    "An old session hello of {} was replayed; the session in force is kept.",
                    self.devices[slot as usize].id
                );
                self.device_alarm(now_ms, slot, AlarmKind::StreamTampered, detail, out);
            }
            return true;
        }
        while let Some(&(sid, until_ms)) = self.pending_order.front() {
            if until_ms > now_ms {
                break;
            }
            self.pending_order.pop_front();
            self.pending_sessions.remove(&sid);
        }
        if self.pending_order.len() >= self.cfg.max_pending_sessions {
            self.reject(
                now_ms,
                slot,
                digest,
                RejectReason::HandshakeLimit,
                None,
                out,
            );
            return true;
        }
        false
    }

    /// The device's first message under a waiting session key: that key replaces its current
    /// one.
    fn confirm_session(&mut self, now_ms: u64, slot: u32, sid: u64, out: &mut Vec<Output>) {
        let Some(p) = self.pending_sessions.remove(&sid) else {
            return;
        };
        let dev = &mut self.devices[slot as usize];
        dev.sup.session = Some(p.key);
        let (home, device) = (dev.home, dev.id.clone());
        self.audit(
            now_ms,
            Some(home),
            AuditKind::SessionActive {
                device,
                session: sid,
            },
            out,
        );
    }

    fn rng_u64(&mut self) -> u64 {
        use rand_chacha::rand_core::RngCore;
        self.rng.next_u64()
    }

    /// Records an accepted message (its bytes are its evidence).
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &self,
        now_ms: u64,
        slot: u32,
        seq: u64,
        digest: Digest,
        bytes: Vec<u8>,
        routine: bool,
        out: &mut Vec<Output>,
    ) {
        let dev = &self.devices[slot as usize];
        self.audit(
            now_ms,
            Some(dev.home),
            AuditKind::Accepted {
                device: dev.id.clone(),
                seq,
                digest,
                envelope: bytes,
                routine,
            },
            out,
        );
    }

    fn reject(
        &self,
        now_ms: u64,
        slot: u32,
        digest: Digest,
        reason: RejectReason,
        seq: Option<u64>,
        out: &mut Vec<Output>,
    ) {
        let dev = &self.devices[slot as usize];
        self.audit(
            now_ms,
            Some(dev.home),
            AuditKind::Rejected {
                from: dev.id.clone(),
                digest,
                reason,
                seq,
            },
            out,
        );
    }

    /// Drops and records an unauthenticated message, and raises `ForgedReport` (I10).
    fn forged(
        &mut self,
        now_ms: u64,
        slot: u32,
        digest: Digest,
        reason: RejectReason,
        seq: Option<u64>,
        out: &mut Vec<Output>,
    ) {
        self.reject(now_ms, slot, digest, reason, seq, out);
        let detail = format!(
            "A message for {} was refused ({reason:?}) and ignored.",
            self.devices[slot as usize].id
        );
        self.forged_alarm(now_ms, slot, &detail, out);
    }

    fn forged_alarm(&mut self, now_ms: u64, slot: u32, detail: &str, out: &mut Vec<Output>) {
        let home = self.devices[slot as usize].home;
        let delivery = self.door_delivery(slot);
        self.raise(
            now_ms,
            Raise {
                kind: AlarmKind::ForgedReport,
                home,
                device: Some(slot),
                delivery,
                detail: detail.to_owned(),
            },
            out,
        );
    }

    /// The authorised delivery of the door a device belongs to.
    pub(crate) fn door_delivery(&self, slot: u32) -> Option<u32> {
        let lock = match self.devices[slot as usize].side {
            Side::Lock(_) => slot,
            Side::Camera(_) => self.devices[slot as usize].peer,
        };
        self.authorised_delivery(lock)
    }

    fn device_alarm(
        &mut self,
        now_ms: u64,
        slot: u32,
        kind: AlarmKind,
        detail: String,
        out: &mut Vec<Output>,
    ) {
        let home = self.devices[slot as usize].home;
        let delivery = self.door_delivery(slot);
        self.raise(
            now_ms,
            Raise {
                kind,
                home,
                device: Some(slot),
                delivery,
                detail,
            },
            out,
        );
    }

    /// Sequence and clock checks shared by lock reports and camera proofs. `Err` means the
    /// message is dropped (already recorded and alarmed as needed).
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &mut self,
        now_ms: u64,
        slot: u32,
        seq: u64,
        mono_ms: u64,
        rebooted: bool,
        digest: Digest,
        item: Digest,
        out: &mut Vec<Output>,
    ) -> Result<(), ()> {
        if guard::enabled(Guard::StreamSequence) {
            let verdict =
                self.devices[slot as usize]
                    .sup
                    .check_seq(seq, &digest, self.cfg.max_seq_gap);
            let tampered = match verdict {
                SeqVerdict::Next => None,
                SeqVerdict::Loss { missing } => {
                    let dev = &self.devices[slot as usize];
                    self.audit(
                        now_ms,
                        Some(dev.home),
                        AuditKind::StreamLoss {
                            device: dev.id.clone(),
                            seq,
                            missing,
                        },
                        out,
                    );
                    None
                }
                SeqVerdict::Duplicate => {
                    self.reject(
                        now_ms,
                        slot,
                        digest,
                        RejectReason::Duplicate,
                        Some(seq),
                        out,
                    );
                    return Err(());
                }
                SeqVerdict::Replay => Some((RejectReason::Replay, "replayed an old message")),
                SeqVerdict::Fork => Some((
                    RejectReason::Fork,
                    "sent two different messages under one sequence number",
                )),
                SeqVerdict::Gap { missing } if rebooted => {
                    // A device that boots skips to its next durably reserved block of sequence
                    // numbers, so its signed boot report may jump: loss, not tampering.
                    let dev = &self.devices[slot as usize];
                    self.audit(
                        now_ms,
                        Some(dev.home),
                        AuditKind::StreamLoss {
                            device: dev.id.clone(),
                            seq,
                            missing,
                        },
                        out,
                    );
                    None
                }
                SeqVerdict::Gap { .. } => {
                    // Re-anchor on the jump so that the stream goes on being checked; the
                    // message itself is not taken as evidence.
                    self.devices[slot as usize].sup.advance(seq, &digest, &item);
                    Some((RejectReason::Gap, "skipped many messages"))
                }
            };
            if let Some((reason, what)) = tampered {
                self.reject(now_ms, slot, digest, reason, Some(seq), out);
                let detail = format!(
                    "The stream of {} {what} (sequence {seq}).",
                    self.devices[slot as usize].id
                );
                self.device_alarm(now_ms, slot, AlarmKind::StreamTampered, detail, out);
                return Err(());
            }
        }
        let skew = self.cfg.max_skew_ms;
        let ahead = self.devices[slot as usize]
            .sup
            .check_clock(now_ms, mono_ms, rebooted, skew);
        // Chained even when the clock check refuses it below: the device chained it too.
        self.devices[slot as usize].sup.advance(seq, &digest, &item);
        if let Some(ahead) = ahead {
            if guard::enabled(Guard::ClockSkew) {
                self.reject(
                    now_ms,
                    slot,
                    digest,
                    RejectReason::ClockSkew,
                    Some(seq),
                    out,
                );
                let detail = format!(
                    "The clock of {} jumped {ahead} ms ahead of the server's.",
                    self.devices[slot as usize].id
                );
                self.device_alarm(now_ms, slot, AlarmKind::ClockSkew, detail, out);
                return Err(());
            }
        }
        self.devices[slot as usize].sup.last_rx_ms = now_ms;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_lock_report(
        &mut self,
        now_ms: u64,
        l: u32,
        r: LockReport,
        signed: bool,
        digest: Digest,
        item: Digest,
        bytes: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let ls = self.devices[l as usize]
            .lock()
            .expect("checked by the caller");
        let prev = ls.report.as_ref().map(|p| (p.bolt, p.door));
        let changed = prev != Some((r.bolt, r.door));
        // State changes are always signed (I10); only a routine report that changes nothing
        // may travel under the session MAC.
        if !signed && (r.event != LockEvent::Periodic || changed) {
            return self.forged(
                now_ms,
                l,
                digest,
                RejectReason::SignatureRequired,
                Some(r.seq),
                out,
            );
        }
        if self
            .sequence(
                now_ms,
                l,
                r.seq,
                r.mono_ms,
                r.event == LockEvent::Boot,
                digest,
                item,
                out,
            )
            .is_err()
        {
            return;
        }
        self.accept(
            now_ms,
            l,
            r.seq,
            digest,
            bytes,
            r.event == LockEvent::Periodic && !changed,
            out,
        );
        let ls = self.devices[l as usize].lock_mut().expect("a lock");
        ls.report = Some(LockSeen {
            bolt: r.bolt,
            door: r.door,
            seen: Seen {
                seq: r.seq,
                digest,
                rx_ms: now_ms,
            },
        });
        let lock_id = self.devices[l as usize].id.clone();

        // Lock events that are alarms in themselves.
        let event_alarm = match &r.event {
            LockEvent::ForcedOpen => Some((
                AlarmKind::ForcedOpen,
                format!("Lock {lock_id} reports the door opened while the bolt was thrown."),
            )),
            LockEvent::HeldOpen => Some((
                AlarmKind::DoorHeldOpen,
                format!("Lock {lock_id} reports the door held open past the maximum open time."),
            )),
            LockEvent::Jammed => Some((
                AlarmKind::BoltJammed,
                format!("Lock {lock_id} reports the bolt jammed."),
            )),
            _ if r.bolt == Bolt::Jammed => Some((
                AlarmKind::BoltJammed,
                format!("Lock {lock_id} reports the bolt jammed."),
            )),
            _ => None,
        };
        if let Some((kind, detail)) = event_alarm {
            self.device_alarm(now_ms, l, kind, detail, out);
        }

        // Bolt confirmations (I6).
        match r.bolt {
            Bolt::Moving => {
                if self.wheel.deadline(&Timer::Actuation(l)).is_none() {
                    self.wheel
                        .schedule(Timer::Actuation(l), now_ms + self.cfg.confirm_ms);
                }
            }
            Bolt::Thrown | Bolt::Jammed => {
                self.wheel.cancel(&Timer::Actuation(l));
            }
            Bolt::Retracted => {
                let unlocking = self.devices[l as usize]
                    .lock()
                    .is_some_and(|x| x.unlocking_since.is_some());
                // A retracted bolt confirms an unlock; outside an authorised unlock it is only
                // a state (a key or the inside knob), shown as such.
                if unlocking || self.open_cycle(l).is_some() {
                    self.wheel.cancel(&Timer::Actuation(l));
                }
            }
        }

        // The delivery this lock is serving.
        if let Some(d) = self.authorised_delivery(l) {
            self.lock_report_in_entry(now_ms, l, d, &r, prev.map(|p| p.1), out);
        }
        self.resupervise(l);
        self.scene_eval(now_ms, l);
    }

    fn lock_report_in_entry(
        &mut self,
        now_ms: u64,
        l: u32,
        d: u32,
        r: &LockReport,
        prev_door: Option<Door>,
        out: &mut Vec<Output>,
    ) {
        let Some(del) = self.deliveries[d as usize].as_ref() else {
            return;
        };
        let phase = del.phase;
        let grant = del.run.as_ref().map(|x| x.grant);
        let max_open_ms = del.max_open_ms;
        match phase {
            Phase::Unlocking => {
                let confirmed = matches!(r.event, LockEvent::Unlocked(g) if Some(g) == grant)
                    || (r.bolt == Bolt::Retracted && r.event != LockEvent::Periodic);
                if let LockEvent::Denied(reason) = r.event {
                    // The lock itself refused (I1): the server's authorisation ends here.
                    let (id, home) = (del.id.clone(), del.home);
                    self.audit(
                        now_ms,
                        Some(home),
                        AuditKind::LockDenied {
                            delivery: id,
                            reason,
                        },
                        out,
                    );
                    if let Some(del) = self.deliveries[d as usize].as_mut() {
                        del.run = None;
                    }
                    self.set_phase(now_ms, d, Phase::AtDoor, out);
                    self.release_lock(l, d);
                    return;
                }
                if confirmed {
                    if let Some(ls) = self.devices[l as usize].lock_mut() {
                        ls.unlocking_since = None;
                    }
                    self.wheel.cancel(&Timer::Actuation(l));
                    self.set_phase(now_ms, d, Phase::Entry, out);
                    self.wheel.schedule(
                        Timer::MaxOpen(l),
                        now_ms + max_open_ms + self.cfg.confirm_ms,
                    );
                    if r.door == Door::Open {
                        if let Some(run) = self.deliveries[d as usize]
                            .as_mut()
                            .and_then(|x| x.run.as_mut())
                        {
                            run.door_was_open = true;
                        }
                    }
                }
            }
            Phase::Entry => {
                if r.door == Door::Open {
                    if let Some(run) = self.deliveries[d as usize]
                        .as_mut()
                        .and_then(|x| x.run.as_mut())
                    {
                        run.door_was_open = true;
                    }
                    self.wheel.cancel(&Timer::Relock(l));
                }
                if r.bolt == Bolt::Thrown && r.door == Door::Closed {
                    // Relock confirmed by the bolt and the door sensor together.
                    for t in [Timer::Relock(l), Timer::MaxOpen(l), Timer::Actuation(l)] {
                        self.wheel.cancel(&t);
                    }
                    if let Some(run) = self.deliveries[d as usize]
                        .as_mut()
                        .and_then(|x| x.run.as_mut())
                    {
                        run.relocked_ms = now_ms;
                    }
                    self.set_phase(now_ms, d, Phase::Relocked, out);
                    self.wheel
                        .schedule(Timer::Egress(d), now_ms + self.cfg.egress_grace_ms);
                    self.egress_eval(now_ms, l, out);
                } else if r.door == Door::Closed
                    && prev_door == Some(Door::Open)
                    && self.wheel.deadline(&Timer::Relock(l)).is_none()
                {
                    // The door just closed: the bolt must be reported thrown within confirm_ms.
                    self.wheel
                        .schedule(Timer::Relock(l), now_ms + self.cfg.confirm_ms);
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_camera_proof(
        &mut self,
        now_ms: u64,
        c: u32,
        p: CameraProof,
        _signed: bool,
        digest: Digest,
        item: Digest,
        bytes: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let sup = &self.devices[c as usize].sup;
        let seen_before = sup.seen;
        // A camera restored without its footage head (see `DeviceSnapshot::footage_head`)
        // anchors on its first proof; the message chain and its signed checkpoints still
        // cover that proof.
        let anchored = self.devices[c as usize]
            .camera()
            .is_some_and(|x| x.chain.head != Digest::ZERO);
        let consecutive = sup.seen && anchored && p.seq == sup.last_seq.wrapping_add(1);
        if self
            .sequence(now_ms, c, p.seq, p.mono_ms, false, digest, item, out)
            .is_err()
        {
            return;
        }
        let cam = self.devices[c as usize].camera().expect("a camera");
        let chain_ok = !guard::enabled(Guard::StreamSequence)
            || check_chain(&cam.chain, consecutive, &p).is_ok();
        if !chain_ok {
            self.reject(
                now_ms,
                c,
                digest,
                RejectReason::ChainBroken,
                Some(p.seq),
                out,
            );
            if let Some(cam) = self.devices[c as usize].camera_mut() {
                // Anchor on the new head so later proofs are checked against it; until the
                // chain holds again the camera cannot be receipted.
                cam.chain.head = p.head;
                cam.receipt_ok = false;
            }
            let detail = format!(
                "The footage chain of camera {} is broken at proof {}.",
                self.devices[c as usize].id, p.seq
            );
            self.device_alarm(now_ms, c, AlarmKind::StreamTampered, detail, out);
            return;
        }
        let l = self.devices[c as usize].peer;
        let in_entry = self.witnessed_entry(l).is_some();
        let interesting = p.obs.frozen
            || p.obs.looped
            || p.obs.blinded
            || p.obs.people_in_zone > 0
            || p.obs.door_open
            || !p.recording;
        self.accept(
            now_ms,
            c,
            p.seq,
            digest,
            bytes,
            !in_entry && !interesting,
            out,
        );

        let mut history = self.histories.remove(&c);
        let cam = self.devices[c as usize].camera_mut().expect("a camera");
        cam.chain.head = p.head;
        let verdict = check_digests(&mut cam.chain, history.as_mut(), &p, seen_before);
        cam.proof = Some(CameraSeen {
            recording: p.recording,
            obs: p.obs,
            seen: Seen {
                seq: p.seq,
                digest,
                rx_ms: now_ms,
            },
        });
        cam.receipt_ok = p.recording;
        if let Some(h) = history {
            self.histories.insert(c, h);
        }
        if p.recording {
            self.rebase_counts(l, &p.obs);
        }
        let id = self.devices[c as usize].id.clone();
        if (verdict.frozen || p.obs.frozen) && guard::enabled(Guard::FreezeDetection) {
            self.device_alarm(
                now_ms,
                c,
                AlarmKind::FrozenFootage,
                format!("Camera {id} sends the same frames again and again (frozen footage)."),
                out,
            );
        }
        if (verdict.looped || p.obs.looped) && guard::enabled(Guard::LoopDetection) {
            self.device_alarm(
                now_ms,
                c,
                AlarmKind::LoopedFootage,
                format!("Camera {id} sends frames seen before (looped footage)."),
                out,
            );
        }
        if p.obs.blinded && guard::enabled(Guard::BlindDetection) {
            self.device_alarm(
                now_ms,
                c,
                AlarmKind::BlindedCamera,
                format!("Camera {id} reports covered or blinded frames while recording."),
                out,
            );
        }
        self.resupervise(c);
        self.receipt_arrived(now_ms, l, out);
        self.egress_eval(now_ms, l, out);
        self.scene_eval(now_ms, l);
    }

    /// Door sensor against the camera's view of the door (I5). A disagreement shows Unknown at
    /// once and raises `SceneMismatch` if it lasts `scene_mismatch_ms`.
    pub(crate) fn scene_eval(&mut self, now_ms: u64, l: u32) {
        let peer = self.devices[l as usize].peer;
        let ls = self.devices[l as usize].lock().expect("a lock");
        // A camera view older than its supervision allows says nothing about the door now:
        // a dead camera is WitnessLost, not a disagreement with its last picture.
        let fresh_ms = if ls.active.is_some() {
            self.cfg.witness_gap_ms
        } else {
            self.cfg.idle_silent_ms
        };
        let cam_door = self.devices[peer as usize]
            .camera()
            .and_then(|c| c.proof.as_ref())
            .filter(|p| p.recording && now_ms.saturating_sub(p.seen.rx_ms) <= fresh_ms)
            .map(|p| p.obs.door_open);
        let sensor = ls.report.as_ref().map(|r| r.door == Door::Open);
        let disagree = guard::enabled(Guard::SceneCheck)
            && matches!((sensor, cam_door), (Some(a), Some(b)) if a != b);
        let was = ls.scene_disagree;
        if let Some(ls) = self.devices[l as usize].lock_mut() {
            ls.scene_disagree = disagree;
        }
        if disagree && !was {
            self.wheel
                .schedule(Timer::Scene(l), now_ms + self.cfg.scene_mismatch_ms);
        } else if !disagree {
            self.wheel.cancel(&Timer::Scene(l));
        }
    }

    /// Witnessed egress (I13): after the relock, the camera must see the door closed and the
    /// zone empty, with as many out as in; after that, activity in the zone is an alarm until
    /// the watch ends.
    pub(crate) fn egress_eval(&mut self, now_ms: u64, l: u32, out: &mut Vec<Output>) {
        let Some(d) = self.devices[l as usize].lock().and_then(|x| x.active) else {
            return;
        };
        let Some(del) = self.deliveries[d as usize].as_ref() else {
            return;
        };
        let Some(run) = del.run.clone() else { return };
        let phase = del.phase;
        let peer = self.devices[l as usize].peer;
        let obs = self.devices[peer as usize]
            .camera()
            .and_then(|c| c.proof.as_ref())
            .filter(|p| p.recording)
            .map(|p| (p.obs, p.seen.rx_ms));
        let check = guard::enabled(Guard::EgressCheck);
        let cam_id = self.devices[peer as usize].id.clone();
        match phase {
            Phase::Relocked => {
                let witnessed = match obs {
                    _ if !check => true,
                    Some((o, rx)) => rx > run.relocked_ms && !o.door_open && o.people_in_zone == 0,
                    None => false,
                };
                if !witnessed {
                    return;
                }
                let (now_in, now_out) = obs
                    .map(|(o, _)| (o.entered, o.exited))
                    .unwrap_or((run.base_in, run.base_out));
                let went_in = now_in.wrapping_sub(run.base_in);
                let came_out = now_out.wrapping_sub(run.base_out);
                if check && went_in > came_out {
                    let home = self.devices[l as usize].home;
                    self.raise(
                        now_ms,
                        Raise {
                            kind: AlarmKind::MoreInThanOut,
                            home,
                            device: Some(peer),
                            delivery: Some(d),
                            detail: format!("Camera {cam_id} saw {went_in} go in and {came_out} come out: someone may still be inside."),
                        },
                        out,
                    );
                }
                if let Some(run) = self.deliveries[d as usize]
                    .as_mut()
                    .and_then(|x| x.run.as_mut())
                {
                    run.egress_ms = now_ms;
                    run.egress_in = now_in;
                    run.egress_out = now_out;
                }
                self.wheel.cancel(&Timer::Egress(d));
                self.set_phase(now_ms, d, Phase::EgressWitnessed, out);
                // The entry is closed: both devices go back to the idle pace.
                self.histories.remove(&peer);
                self.resupervise(peer);
                self.resupervise(l);
                self.wheel
                    .schedule(Timer::Watch(d), now_ms + self.cfg.post_entry_watch_ms);
            }
            Phase::EgressWitnessed => {
                let Some((o, rx)) = obs else { return };
                if !check || rx <= run.egress_ms {
                    return;
                }
                if o.people_in_zone > 0 || o.entered != run.egress_in || o.door_open {
                    self.activity_after_entry(now_ms, l, d, &cam_id, out);
                    self.finish(now_ms, d, out);
                }
            }
            _ => {}
        }
    }

    fn activity_after_entry(
        &mut self,
        now_ms: u64,
        l: u32,
        d: u32,
        cam_id: &Id,
        out: &mut Vec<Output>,
    ) {
        let home = self.devices[l as usize].home;
        let peer = self.devices[l as usize].peer;
        self.raise(
            now_ms,
            Raise {
                kind: AlarmKind::ActivityAfterEntry,
                home,
                device: Some(peer),
                delivery: Some(d),
                detail: format!(
                    "Camera {cam_id} sees activity in the entry zone after the entry closed."
                ),
            },
            out,
        );
    }

    pub(crate) fn on_egress_deadline(&mut self, now_ms: u64, d: u32, out: &mut Vec<Output>) {
        let Some(del) = self.deliveries[d as usize].as_ref() else {
            return;
        };
        if del.phase != Phase::Relocked {
            return;
        }
        let l = del.lock;
        let peer = self.devices[l as usize].peer;
        let cam_id = self.devices[peer as usize].id.clone();
        let occupied = self.devices[peer as usize]
            .camera()
            .and_then(|c| c.proof.as_ref())
            .is_some_and(|p| p.obs.people_in_zone > 0 || p.obs.door_open);
        if guard::enabled(Guard::EgressCheck) && occupied {
            self.activity_after_entry(now_ms, l, d, &cam_id, out);
        }
        // The egress was never witnessed: the entry ends as an incident if anything was
        // raised, and the devices return to the idle pace either way.
        self.finish(now_ms, d, out);
    }
}
