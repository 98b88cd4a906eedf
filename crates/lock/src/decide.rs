//! The unlock decision (I1, I2, I3, I8): every check the lock makes itself before it lets a
//! grant move the bolt. The server's opinion alone is never enough.

use doorward_proto::grant::{self, GrantError, Refusal};
use doorward_proto::guard::{self, Guard};
use doorward_proto::{
    driver_nonce_message, keys, Body, DenyReason, Envelope, GrantId, Id, Nonce, PubKey,
    Revoked as RevokedItem, DRIVER_NONCE_CONTEXT,
};

use crate::lock::Lock;
use crate::state::SpentGrant;

/// An unlock that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Authorized {
    pub grant: GrantId,
    pub max_open_ms: u64,
}

/// What the lock learned about the grant, from the grant itself or (guard off) the context.
struct GrantFacts {
    id: GrantId,
    driver: PubKey,
    carrier: Option<Id>,
    until_ms: u64,
    max_open_ms: u64,
}

impl Lock {
    /// Decides one unlock command. The nonce is consumed as soon as the context proves it was
    /// meant for this lock, so it is single use even when a later check fails.
    pub(crate) fn decide(&mut self, now: u64, env: &Envelope) -> Result<Authorized, DenyReason> {
        use DenyReason::*;
        let Body::UnlockCommand(cmd) = &env.body else {
            return Err(Malformed);
        };
        env.verify_sig(&self.cfg.server).map_err(|_| BadSignature)?;
        let ctx = &cmd.context.body;

        // I1: the server's context, bound to a nonce this lock issued and has not seen used.
        if guard::enabled(Guard::UnlockContext) {
            cmd.context
                .verify(&self.cfg.server)
                .map_err(|_| BadSignature)?;
            if ctx.lock != self.cfg.lock {
                return Err(WrongLock);
            }
            self.consume_nonce(now, &ctx.nonce)?;
        }

        // I8, S10: the lock's own time estimate against the server's.
        let wall = match self.wall_ms(now) {
            Some(w) => w,
            None if guard::enabled(Guard::ClockSkew) => return Err(TimeUnknown),
            None => ctx.server_ms,
        };
        if guard::enabled(Guard::ClockSkew) && wall.abs_diff(ctx.server_ms) > self.cfg.max_skew_ms {
            return Err(ClockSkew);
        }

        // S16: revocations reach the lock; a context from another epoch may miss some.
        if guard::enabled(Guard::RevocationEpoch) {
            if ctx.epoch < self.state.epoch {
                return Err(StaleEpoch);
            }
            if ctx.epoch > self.state.epoch {
                return Err(EpochAhead);
            }
        }

        // I1, S22: the footage is off site: the server received the camera's chain just now.
        if guard::enabled(Guard::WitnessReceipt) {
            if ctx.receipt.camera != self.cfg.camera {
                return Err(WitnessNotPaired);
            }
            if ctx.server_ms.saturating_sub(ctx.receipt.received_ms) > self.cfg.witness_fresh_ms {
                return Err(StaleWitnessReceipt);
            }
        }

        // I1, S2: the camera itself says it is alive and recording, for this nonce.
        if guard::enabled(Guard::WitnessAttestation) {
            let w = cmd
                .witness
                .verify(&self.cfg.camera_key)
                .map_err(|_| BadSignature)?;
            if w.camera != self.cfg.camera {
                return Err(WitnessNotPaired);
            }
            if w.lock != self.cfg.lock || w.nonce != ctx.nonce {
                return Err(WitnessMismatch);
            }
            if !w.recording {
                return Err(WitnessNotRecording);
            }
            let r = &ctx.receipt;
            let ahead = w.seq.checked_sub(r.seq);
            match ahead {
                None => return Err(WitnessMismatch),
                Some(0) if w.head != r.head => return Err(WitnessMismatch),
                Some(n) if n > self.cfg.max_unreceipted_segments => return Err(WitnessMismatch),
                Some(_) => {}
            }
        }

        // I2: the driver holding the key is at the door (signed the nonce read locally).
        if guard::enabled(Guard::DriverSignature) {
            keys::verify(
                &ctx.driver,
                DRIVER_NONCE_CONTEXT,
                &driver_nonce_message(&self.cfg.lock, &ctx.nonce),
                &cmd.driver_sig,
            )
            .map_err(|_| BadSignature)?;
        }

        // I2: the grant chains to the home root and binds this lock, driver and time.
        let facts = if guard::enabled(Guard::GrantChain) {
            let cert = grant::verify_cert(&cmd.issuer, &self.cfg.home_root, &self.cfg.home, wall)
                .map_err(|_| IssuerCertInvalid)?;
            if cert.serial < self.state.issuer_serial {
                // A rotated-out issuing key (perhaps leaked) stays rotated out.
                return Err(IssuerCertInvalid);
            }
            if cert.serial > self.state.issuer_serial {
                self.state.issuer_serial = cert.serial;
                self.dirty = true;
            }
            let spec = grant::verify(&cmd.grant, &cert.issuer, &self.cfg.lock, &ctx.driver, wall)
                .map_err(classify)?;
            if spec.id != ctx.grant || spec.home != self.cfg.home {
                return Err(GrantInvalid);
            }
            GrantFacts {
                id: spec.id,
                driver: spec.driver,
                carrier: spec.carrier,
                until_ms: spec.not_after_ms,
                max_open_ms: spec.max_open_ms,
            }
        } else {
            // Guard off: the context's word is taken for which grant this is.
            GrantFacts {
                id: ctx.grant,
                driver: ctx.driver,
                carrier: None,
                until_ms: wall.saturating_add(self.cfg.nonce_ttl_ms),
                max_open_ms: self.cfg.door_open_wait_ms,
            }
        };

        // I3: one grant, one open cycle; the table is bounded and never forgets early.
        let spent_full = {
            let margin = self.cfg.max_skew_ms;
            if self.state.prune_spent(wall, margin) {
                self.dirty = true;
            }
            self.state.spent.len() >= self.cfg.max_spent_grants
        };
        if guard::enabled(Guard::SpentGrants) {
            if self.state.is_spent(&facts.id) {
                return Err(GrantSpent);
            }
            if spent_full {
                return Err(QueueFull);
            }
        }

        // S16: revoked grant, driver or carrier.
        if guard::enabled(Guard::RevocationEpoch) {
            let revoked = self.state.revoked.iter().any(|r| match r {
                RevokedItem::Grant(g) => g == &facts.id,
                RevokedItem::Driver(d) => d == &facts.driver,
                RevokedItem::Carrier(c) => Some(c) == facts.carrier.as_ref(),
            });
            if revoked {
                return Err(DenyReason::Revoked);
            }
        }

        // I3: never unlock without charge for one more relock.
        if guard::enabled(Guard::BatteryReserve) && self.battery_pct < self.cfg.battery_reserve_pct
        {
            return Err(LowBattery);
        }
        if self.in_cycle() {
            return Err(CycleInProgress);
        }
        if guard::enabled(Guard::ConfirmedActuation) && self.jammed {
            return Err(Jammed);
        }
        if guard::enabled(Guard::WitnessLockout) && self.lockout {
            return Err(WitnessLockout);
        }

        if !spent_full && !self.state.is_spent(&facts.id) {
            self.state.spent.push(SpentGrant {
                id: facts.id,
                until_ms: facts.until_ms,
            });
        }
        Ok(Authorized {
            grant: facts.id,
            max_open_ms: facts.max_open_ms,
        })
    }

    fn consume_nonce(&mut self, now: u64, nonce: &Nonce) -> Result<(), DenyReason> {
        let i = self
            .nonces
            .iter()
            .position(|(n, _)| n == nonce)
            .ok_or(DenyReason::NonceUnknown)?;
        let (_, issued) = self.nonces.remove(i);
        if now >= issued.saturating_add(self.cfg.nonce_ttl_ms) {
            return Err(DenyReason::NonceExpired);
        }
        Ok(())
    }
}

/// Names the grant bound that refused the unlock.
fn classify(e: GrantError) -> DenyReason {
    match e {
        GrantError::Refused(Refusal::WrongLock) => DenyReason::WrongLock,
        GrantError::Refused(Refusal::WrongDriver) => DenyReason::WrongDriver,
        GrantError::Refused(Refusal::OutsideWindow) => DenyReason::GrantOutsideWindow,
        _ => DenyReason::GrantInvalid,
    }
}
