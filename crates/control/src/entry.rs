//! Entry requests: the unlock policy (I9), live approval, the camera's attestation and the
//! server's receipt (I1, S22), and the grant, context and command sent to the lock.

use doorward_proto::grant::{self, GrantSpec, Purpose};
use doorward_proto::guard::{self, Guard};
use doorward_proto::{
    driver_nonce_message, keys, Body, CameraReceipt, DenyReason, Envelope, GrantId, Signed,
    UnlockCommand, UnlockContext, WitnessAttestation, WitnessRequest, DRIVER_NONCE_CONTEXT,
};
use rand_chacha::rand_core::RngCore;

use crate::control::{Control, EntryRun, Pending, Stage, Timer};
use crate::device::message_digest;
use crate::io::*;

impl Control {
    pub(crate) fn on_arrived(
        &mut self,
        now_ms: u64,
        delivery: &doorward_proto::Id,
        out: &mut Vec<Output>,
    ) {
        if let Some(&d) = self.delivery_ix.get(delivery) {
            if self.deliveries[d as usize]
                .as_ref()
                .is_some_and(|x| x.phase == Phase::Scheduled)
            {
                self.set_phase(now_ms, d, Phase::AtDoor, out);
            }
        }
    }

    fn deny(
        &mut self,
        now_ms: u64,
        request: u64,
        d: Option<u32>,
        delivery: &doorward_proto::Id,
        reason: DenyReason,
        out: &mut Vec<Output>,
    ) {
        let home = d
            .and_then(|d| self.deliveries[d as usize].as_ref())
            .map(|x| x.home);
        self.audit(
            now_ms,
            home,
            AuditKind::Denied {
                request,
                delivery: delivery.clone(),
                reason,
            },
            out,
        );
        out.push(Output::Decision(EntryDecision::Denied {
            request,
            delivery: delivery.clone(),
            reason,
        }));
    }

    /// Ends a pending request with a denial and frees the lock it held.
    fn deny_pending(
        &mut self,
        now_ms: u64,
        request: u64,
        reason: DenyReason,
        out: &mut Vec<Output>,
    ) {
        let Some(p) = self.requests.remove(&request) else {
            return;
        };
        self.wheel.cancel(&Timer::Request(request));
        let d = p.delivery;
        self.deny(now_ms, request, Some(d), &p.req.delivery, reason, out);
        if let Some(l) = self.deliveries[d as usize].as_ref().map(|x| x.lock) {
            self.release_lock(l, d);
        }
    }

    pub(crate) fn on_entry_request(
        &mut self,
        now_ms: u64,
        req: EntryRequest,
        out: &mut Vec<Output>,
    ) {
        let request = self.next_request;
        self.next_request += 1;
        let Some(&d) = self.delivery_ix.get(&req.delivery) else {
            return self.deny(
                now_ms,
                request,
                None,
                &req.delivery,
                DenyReason::DeliveryUnknown,
                out,
            );
        };
        let del = self.deliveries[d as usize]
            .as_ref()
            .expect("indexed deliveries exist");
        let (l, h) = (del.lock, del.home);
        let home = &self.homes[h as usize];
        let lock = &self.devices[l as usize];
        let ls = lock.lock().expect("deliveries name locks");
        self.audit(
            now_ms,
            Some(h),
            AuditKind::EntryRequested {
                request,
                delivery: req.delivery.clone(),
                driver: req.driver,
                nonce: req.nonce.body.nonce,
            },
            out,
        );

        // Authentication first: the lock's nonce and the driver's signature over it.
        let reason = if req.nonce.verify(&lock.key).is_err() {
            Some(DenyReason::BadSignature)
        } else if req.nonce.body.lock != lock.id {
            Some(DenyReason::WrongLock)
        } else if keys::verify(
            &req.driver,
            DRIVER_NONCE_CONTEXT,
            &driver_nonce_message(&lock.id, &req.nonce.body.nonce),
            &req.driver_sig,
        )
        .is_err()
        {
            Some(DenyReason::BadSignature)
        } else if !self.drivers.contains_key(&req.driver) {
            Some(DenyReason::UnknownKey)
        } else if self.requests.len() >= self.cfg.max_pending_requests {
            Some(DenyReason::QueueFull)
        } else if guard::enabled(Guard::Policy) {
            // The homeowner's rules (I9), then the delivery's own bounds.
            let driver = &self.drivers[&req.driver];
            if driver.blocked || driver.suspended {
                Some(DenyReason::DriverBlocked)
            } else if home.revoked_drivers.contains(&req.driver) {
                Some(DenyReason::Revoked)
            } else if req.driver != del.driver || driver.carrier != del.carrier {
                Some(DenyReason::WrongDriver)
            } else if !home.carriers.contains(&del.carrier) {
                Some(DenyReason::CarrierNotOptedIn)
            } else if home.policy.vacation {
                Some(DenyReason::VacationMode)
            } else if home.policy.garage_only && !ls.kind_garage {
                Some(DenyReason::GarageOnly)
            } else if !home.policy.windows.is_empty()
                && !home.policy.windows.iter().any(|w| w.contains(now_ms))
            {
                Some(DenyReason::OutsideAllowedWindow)
            } else if now_ms < del.not_before_ms || now_ms >= del.not_after_ms {
                Some(DenyReason::GrantOutsideWindow)
            } else if ls.active.is_some() || !matches!(del.phase, Phase::Scheduled | Phase::AtDoor)
            {
                Some(DenyReason::CycleInProgress)
            } else if req.nonce.body.epoch < home.epoch {
                Some(DenyReason::StaleEpoch)
            } else if req.nonce.body.epoch > home.epoch {
                Some(DenyReason::EpochAhead)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(reason) = reason {
            if reason == DenyReason::StaleEpoch {
                // Bring the lock up to date: the revocations it missed, in order.
                let from = req.nonce.body.epoch;
                let envs: Vec<_> = home
                    .revocations
                    .iter()
                    .filter(|(e, _)| *e > from)
                    .map(|(_, env)| env.clone())
                    .collect();
                for envelope in envs {
                    out.push(Output::Send {
                        device: self.devices[l as usize].id.clone(),
                        envelope,
                    });
                }
            }
            return self.deny(now_ms, request, Some(d), &req.delivery, reason, out);
        }

        // One entry per lock: the lock is held from here until the delivery ends or is denied.
        if let Some(ls) = self.devices[l as usize].lock_mut() {
            ls.active = Some(d);
        }
        self.set_phase(now_ms, d, Phase::AtDoor, out);
        let live = self.homes[h as usize].policy.live_approval && guard::enabled(Guard::Policy);
        self.requests.insert(
            request,
            Pending {
                delivery: d,
                req,
                stage: Stage::Approval,
            },
        );
        if live {
            let deadline_ms = now_ms + self.cfg.approval_timeout_ms;
            let p = &self.requests[&request];
            let del = self.deliveries[d as usize].as_ref().expect("exists");
            out.push(Output::ApprovalRequest(ApprovalRequest {
                request,
                home: self.homes[h as usize].id.clone(),
                delivery: del.id.clone(),
                carrier: del.carrier.clone(),
                driver: p.req.driver,
                lock: self.devices[l as usize].id.clone(),
                deadline_ms,
            }));
            self.audit(
                now_ms,
                Some(h),
                AuditKind::ApprovalRequested {
                    request,
                    deadline_ms,
                },
                out,
            );
            self.wheel.schedule(Timer::Request(request), deadline_ms);
        } else {
            self.request_witness(now_ms, request, out);
        }
    }

    pub(crate) fn on_approval(
        &mut self,
        now_ms: u64,
        request: u64,
        approved: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(p) = self.requests.get(&request) else {
            return;
        };
        if !matches!(p.stage, Stage::Approval) {
            return;
        }
        if approved {
            let home = self.deliveries[p.delivery as usize]
                .as_ref()
                .map(|x| x.home);
            self.audit(now_ms, home, AuditKind::Approved { request }, out);
            self.request_witness(now_ms, request, out);
        } else {
            self.deny_pending(now_ms, request, DenyReason::ApprovalDenied, out);
        }
    }

    pub(crate) fn on_request_deadline(&mut self, now_ms: u64, request: u64, out: &mut Vec<Output>) {
        let Some(p) = self.requests.get(&request) else {
            return;
        };
        let reason = match p.stage {
            Stage::Approval => DenyReason::ApprovalTimedOut,
            Stage::Witness | Stage::Receipt(_) => DenyReason::WitnessUnavailable,
        };
        self.deny_pending(now_ms, request, reason, out);
    }

    /// Asks the door's camera to attest the lock's nonce, and starts remembering its frames
    /// for loop detection.
    fn request_witness(&mut self, now_ms: u64, request: u64, out: &mut Vec<Output>) {
        let Some(p) = self.requests.get_mut(&request) else {
            return;
        };
        p.stage = Stage::Witness;
        let d = p.delivery;
        let nonce = p.req.nonce.clone();
        let del = self.deliveries[d as usize].as_ref().expect("exists");
        let (l, h) = (del.lock, del.home);
        let c = self.devices[l as usize].peer;
        let camera = self.devices[c as usize].id.clone();
        self.histories.entry(c).or_default();
        out.push(Output::Send {
            device: camera.clone(),
            envelope: Envelope::signed(
                Body::WitnessRequest(WitnessRequest {
                    camera: camera.clone(),
                    nonce,
                }),
                &self.server_key,
            ),
        });
        self.audit(
            now_ms,
            Some(h),
            AuditKind::WitnessRequested { request, camera },
            out,
        );
        self.wheel
            .schedule(Timer::Request(request), now_ms + self.cfg.witness_wait_ms);
    }

    /// The camera's signed attestation of a nonce (already authenticated as the camera's).
    pub(crate) fn on_attestation(
        &mut self,
        now_ms: u64,
        c: u32,
        att: Signed<WitnessAttestation>,
        out: &mut Vec<Output>,
    ) {
        let l = self.devices[c as usize].peer;
        let Some(d) = self.devices[l as usize].lock().and_then(|x| x.active) else {
            return;
        };
        let found = self
            .requests
            .iter()
            .find(|(_, p)| {
                p.delivery == d
                    && matches!(p.stage, Stage::Witness)
                    && p.req.nonce.body.nonce == att.body.nonce
            })
            .map(|(r, _)| *r);
        let Some(request) = found else { return };
        // The lock checks the attestation itself (I1); the server refuses early what the lock
        // would refuse anyway, so no grant is spent on it.
        let key = self.devices[c as usize].key;
        let lock_id = self.devices[l as usize].id.clone();
        if att.verify(&key).is_err() || att.body.lock != lock_id {
            return self.deny_pending(now_ms, request, DenyReason::WitnessMismatch, out);
        }
        if !att.body.recording {
            return self.deny_pending(now_ms, request, DenyReason::WitnessNotRecording, out);
        }
        if let Some(p) = self.requests.get_mut(&request) {
            p.stage = Stage::Receipt(att);
        }
        self.receipt_arrived(now_ms, l, out);
    }

    /// Issues the pending unlock of lock `l` if its camera's newest proof is fresh enough to
    /// receipt (I1, S22); otherwise it keeps waiting until the request's deadline.
    pub(crate) fn receipt_arrived(&mut self, now_ms: u64, l: u32, out: &mut Vec<Output>) {
        let Some(d) = self.devices[l as usize].lock().and_then(|x| x.active) else {
            return;
        };
        let found = self
            .requests
            .iter()
            .find(|(_, p)| p.delivery == d && matches!(p.stage, Stage::Receipt(_)))
            .map(|(r, _)| *r);
        let Some(request) = found else { return };
        let c = self.devices[l as usize].peer;
        let cam = self.devices[c as usize].camera().expect("a camera");
        let Some(proof) = cam.proof.as_ref() else {
            return;
        };
        let fresh =
            cam.receipt_ok && now_ms.saturating_sub(proof.seen.rx_ms) <= self.cfg.witness_fresh_ms;
        if !fresh && guard::enabled(Guard::WitnessReceipt) {
            return;
        }
        let receipt = CameraReceipt {
            camera: self.devices[c as usize].id.clone(),
            seq: proof.seen.seq,
            head: cam.chain.head,
            received_ms: proof.seen.rx_ms,
        };
        let (base_in, base_out) = (proof.obs.entered, proof.obs.exited);
        self.issue(now_ms, request, receipt, base_in, base_out, out);
    }

    fn issue(
        &mut self,
        now_ms: u64,
        request: u64,
        receipt: CameraReceipt,
        base_in: u16,
        base_out: u16,
        out: &mut Vec<Output>,
    ) {
        let Some(p) = self.requests.remove(&request) else {
            return;
        };
        self.wheel.cancel(&Timer::Request(request));
        let Stage::Receipt(witness) = p.stage else {
            return;
        };
        let d = p.delivery;
        let del = self.deliveries[d as usize].as_ref().expect("exists");
        let (l, h) = (del.lock, del.home);
        let home = &self.homes[h as usize];
        if grant::verify_cert(&home.cert, &home.root, &home.id, now_ms).is_err() {
            self.requests.insert(
                request,
                Pending {
                    stage: Stage::Receipt(witness),
                    ..p
                },
            );
            return self.deny_pending(now_ms, request, DenyReason::IssuerCertInvalid, out);
        }
        let mut id = [0u8; 16];
        self.rng.fill_bytes(&mut id);
        let grant_id = GrantId(id);
        let lock_id = self.devices[l as usize].id.clone();
        let spec = GrantSpec {
            id: grant_id,
            home: home.id.clone(),
            lock: lock_id.clone(),
            purpose: Purpose::Delivery(del.id.clone()),
            carrier: Some(del.carrier.clone()),
            driver: p.req.driver,
            not_before_ms: del.not_before_ms,
            not_after_ms: del.not_after_ms,
            max_open_ms: del.max_open_ms,
        };
        let issuer = doorward_proto::KeyPair::from_seed(&home.issuer_seed);
        let token = match grant::issue(&spec, &issuer, &mut self.rng) {
            Ok(t) => t,
            Err(_) => {
                self.requests.insert(
                    request,
                    Pending {
                        stage: Stage::Receipt(witness),
                        ..p
                    },
                );
                return self.deny_pending(now_ms, request, DenyReason::GrantInvalid, out);
            }
        };
        let epoch = home.epoch;
        let context = Signed::sign(
            UnlockContext {
                lock: lock_id.clone(),
                nonce: p.req.nonce.body.nonce,
                server_ms: now_ms,
                epoch,
                grant: grant_id,
                driver: p.req.driver,
                receipt: receipt.clone(),
            },
            &self.server_key,
        );
        let command = UnlockCommand {
            issuer: home.cert.clone(),
            grant: token,
            driver_sig: p.req.driver_sig,
            context,
            witness,
        };
        let envelope = Envelope::signed(Body::UnlockCommand(Box::new(command)), &self.server_key);
        let command_digest = message_digest(&envelope.to_bytes());
        let delivery_id = del.id.clone();
        if let Some(del) = self.deliveries[d as usize].as_mut() {
            del.run = Some(EntryRun {
                grant: grant_id,
                base_in,
                base_out,
                door_was_open: false,
                relocked_ms: 0,
                egress_ms: 0,
                egress_in: 0,
                egress_out: 0,
                rebase: false,
            });
        }
        if let Some(ls) = self.devices[l as usize].lock_mut() {
            ls.unlocking_since = Some(now_ms);
        }
        self.audit(
            now_ms,
            Some(h),
            AuditKind::Authorised {
                request,
                delivery: delivery_id.clone(),
                grant: grant_id,
                epoch,
                receipt,
                command: command_digest,
                counts: Some((base_in, base_out)),
            },
            out,
        );
        out.push(Output::Send {
            device: lock_id,
            envelope,
        });
        out.push(Output::Decision(EntryDecision::Authorised {
            request,
            delivery: delivery_id,
            grant: grant_id,
        }));
        self.set_phase(now_ms, d, Phase::Unlocking, out);
        // From here the entry is supervised: camera at the entry pace (I4), the unlock must be
        // confirmed (I6).
        self.wheel
            .schedule(Timer::Actuation(l), now_ms + self.cfg.confirm_ms);
        let c = self.devices[l as usize].peer;
        self.resupervise(c);
    }
}
