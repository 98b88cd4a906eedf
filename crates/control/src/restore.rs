//! Supervision across a restart. The core rebuilds what it must go on supervising — the
//! deliveries in flight with their phase and entry, and the alarms not yet acknowledged —
//! from the audit records it wrote itself, fed back in the order they were recorded
//! ([`Control::restore`]), and then starts every deadline again from the restart
//! ([`Control::resume`]).
//!
//! Why the record and not a snapshot: every record the core emits is durable before any
//! effect of it leaves the server (the shell's rule), so the record is exactly what anyone
//! outside may have seen acknowledged; a snapshot would be a second copy that can disagree
//! with it, and one more write per step. What is not on record is not trusted after the
//! restart: the lock's and the camera's newest messages, pending entry requests (their
//! callers are gone with the process) and the timing of deadlines. Devices are heard from
//! again, and until they are the door shows Unknown.

use std::collections::HashMap;

use doorward_proto::{Alarm, AlarmKind, Observations, PubKey};

use crate::control::{advice, Control, EntryRun, OpenAlarm, Timer, NONE};
use crate::io::*;
use crate::registry::Side;

/// What a restore keeps until [`Control::resume`].
#[derive(Debug, Default)]
pub(crate) struct Restoring {
    /// When each delivery took its current phase, from the record (server time).
    phase_ms: HashMap<u32, u64>,
    /// When each driver was last unblocked, which also clears a suspension (I4).
    unblocked_ms: HashMap<PubKey, u64>,
}

impl Control {
    /// Applies one audit record this core wrote before a restart. Feed every record of every
    /// chain in the order it was recorded, the server's chain (drivers) first, after the
    /// registry change each one follows; then call [`Control::resume`] once, before any other
    /// input. Records that carry no supervision state are ignored; records naming a delivery
    /// or device the registry does not hold are skipped.
    pub fn restore(&mut self, ev: &AuditEvent) {
        let at = ev.at_ms;
        match &ev.what {
            AuditKind::EntryRequested { request, .. }
            | AuditKind::Denied { request, .. }
            | AuditKind::ApprovalRequested { request, .. } => self.restore_request_no(*request),
            AuditKind::Registry(RegistryChange::DriverBlocked {
                driver,
                blocked: false,
            }) => {
                // Records of one chain come in order; the server's chain (drivers) comes
                // before the homes', so its unblocking is remembered for their alarms.
                self.restoring.unblocked_ms.insert(*driver, at);
                if let Some(dr) = self.drivers.get_mut(driver) {
                    dr.suspended = false;
                }
            }
            AuditKind::Authorised {
                request,
                delivery,
                grant,
                counts,
                ..
            } => {
                self.restore_request_no(*request);
                let Some(&d) = self.delivery_ix.get(delivery) else {
                    return;
                };
                let (base_in, base_out) = counts.unwrap_or((0, 0));
                if let Some(del) = self.deliveries[d as usize].as_mut() {
                    del.run = Some(EntryRun {
                        grant: *grant,
                        base_in,
                        base_out,
                        door_was_open: false,
                        relocked_ms: 0,
                        egress_ms: 0,
                        egress_in: 0,
                        egress_out: 0,
                        rebase: counts.is_none(),
                    });
                }
                // The command may have left: the delivery has had its one open cycle (I2)
                // even if the phase record did not follow.
                self.restore_phase(at, d, Phase::Unlocking);
            }
            AuditKind::LockDenied { delivery, .. } => {
                if let Some(del) = self
                    .delivery_ix
                    .get(delivery)
                    .and_then(|&d| self.deliveries[d as usize].as_mut())
                {
                    del.run = None;
                }
            }
            AuditKind::Phase { delivery, phase } => {
                if let Some(&d) = self.delivery_ix.get(delivery) {
                    self.restore_phase(at, d, *phase);
                }
            }
            AuditKind::AlarmRaised { alarm, evidence } => {
                self.restore_alarm(at, alarm, evidence.clone())
            }
            AuditKind::AlarmAcked { id } => {
                if let Some(a) = self.alarms.remove(id) {
                    self.alarm_keys.remove(&a.key);
                    self.wheel.cancel(&Timer::Resend(*id));
                }
            }
            _ => {}
        }
    }

    fn restore_request_no(&mut self, request: u64) {
        self.next_request = self.next_request.max(request.saturating_add(1));
    }

    /// Puts delivery `d` in `phase` as the record says, holding or freeing its lock.
    fn restore_phase(&mut self, at: u64, d: u32, phase: Phase) {
        let Some(del) = self.deliveries[d as usize].as_mut() else {
            return;
        };
        del.phase = phase;
        let l = del.lock;
        match phase {
            Phase::Scheduled | Phase::AtDoor => {
                // Not authorised (or refused by the lock): any pending request is gone with
                // its caller, so the lock is free for a new one.
                del.run = None;
                if let Some(ls) = self.devices[l as usize].lock_mut() {
                    if ls.active == Some(d) {
                        ls.active = None;
                        ls.unlocking_since = None;
                    }
                }
            }
            Phase::Unlocking | Phase::Entry | Phase::Relocked | Phase::EgressWitnessed => {
                if let Some(run) = del.run.as_mut() {
                    match phase {
                        Phase::Relocked => run.relocked_ms = at,
                        Phase::EgressWitnessed => {
                            // The counts the camera showed then are not on record.
                            run.egress_ms = at;
                            run.rebase = true;
                        }
                        _ => {}
                    }
                }
                if let Some(ls) = self.devices[l as usize].lock_mut() {
                    ls.active = Some(d);
                }
            }
            Phase::Done | Phase::Incident | Phase::Expired | Phase::Cancelled => {
                self.restoring.phase_ms.remove(&d);
                let mut dropped = Vec::new();
                self.end(at, d, phase, &mut dropped);
                return;
            }
        }
        self.restoring.phase_ms.insert(d, at);
    }

    /// Re-opens a recorded alarm, tied to the delivery it was raised for.
    fn restore_alarm(&mut self, at: u64, alarm: &Alarm, evidence: Option<Evidence>) {
        self.next_alarm = self.next_alarm.max(alarm.id.saturating_add(1));
        let Some(&home) = self.home_ix.get(&alarm.home) else {
            return;
        };
        let device = alarm
            .device
            .as_ref()
            .and_then(|d| self.dev_ix.get(d).copied());
        // The record replays the phases in order, so the door's delivery now is the one the
        // alarm was raised for: every alarm about a door names its authorised delivery,
        // except the idle-pace silence.
        let delivery = match device {
            Some(s) if alarm.kind != AlarmKind::DeviceSilent => self.door_delivery(s),
            _ => None,
        };
        if let Some(del) = delivery.and_then(|d| self.deliveries[d as usize].as_mut()) {
            if !del.alarms.iter().any(|(_, k)| *k == alarm.kind) {
                del.alarms.push((alarm.id, alarm.kind));
            }
            if alarm.kind == AlarmKind::WitnessLost {
                // I4: the suspension holds unless the driver was unblocked after it.
                let driver = del.driver;
                let cleared = self
                    .restoring
                    .unblocked_ms
                    .get(&driver)
                    .is_some_and(|&t| t > at);
                if !cleared {
                    if let Some(dr) = self.drivers.get_mut(&driver) {
                        dr.suspended = true;
                    }
                }
            }
        }
        let key = (
            alarm.kind,
            home,
            device.unwrap_or(NONE),
            delivery.unwrap_or(NONE),
        );
        if self.alarms.len() < self.cfg.max_open_alarms && !self.alarms.contains_key(&alarm.id) {
            self.alarm_keys.insert(key);
            self.alarms.insert(
                alarm.id,
                OpenAlarm {
                    notice: AlarmNotice {
                        alarm: alarm.clone(),
                        evidence,
                        action: advice(alarm.kind),
                        sent: 1,
                    },
                    key,
                },
            );
        }
    }

    /// Ends a restore at server time `now_ms`: every paired device is supervised again (at
    /// the entry pace for the doors of restored entries, with at least `resume_grace_ms` to
    /// be heard from; at the idle pace otherwise), each restored entry's deadlines start
    /// again from now (the maximum open time from the unlock on record), and every alarm not
    /// acknowledged is sent again at once and then every `alarm_resend_ms` (I14). Without a
    /// restore it only starts supervising the devices.
    pub fn resume(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        self.run_timers(now_ms, &mut out);
        let restoring = std::mem::take(&mut self.restoring);
        let grace = self.cfg.resume_grace_ms;
        let fast_at = now_ms + self.cfg.witness_gap_ms.max(grace);
        for d in 0..self.deliveries.len() as u32 {
            let Some(del) = self.deliveries[d as usize].as_ref() else {
                continue;
            };
            let (l, phase, max_open_ms) = (del.lock, del.phase, del.max_open_ms);
            if self.devices[l as usize].lock().and_then(|x| x.active) != Some(d) {
                continue;
            }
            let since = restoring.phase_ms.get(&d).copied().unwrap_or(now_ms);
            match phase {
                Phase::Unlocking => {
                    // Shown "unlocking" until a report confirms it, then Unknown (I5, I6).
                    if let Some(ls) = self.devices[l as usize].lock_mut() {
                        ls.unlocking_since = Some(now_ms);
                    }
                    let at = now_ms + self.cfg.confirm_ms.max(grace);
                    self.wheel.schedule(Timer::Actuation(l), at);
                }
                Phase::Entry => {
                    let recorded = since + max_open_ms + self.cfg.confirm_ms;
                    let at = recorded.max(now_ms + self.cfg.confirm_ms.max(grace));
                    self.wheel.schedule(Timer::MaxOpen(l), at);
                }
                Phase::Relocked => {
                    let at = now_ms + self.cfg.egress_grace_ms.max(grace);
                    self.wheel.schedule(Timer::Egress(d), at);
                }
                Phase::EgressWitnessed => {
                    let at = now_ms + self.cfg.post_entry_watch_ms;
                    self.wheel.schedule(Timer::Watch(d), at);
                }
                _ => {}
            }
            if self.witnessed_entry(l).is_some() {
                let peer = self.devices[l as usize].peer;
                self.histories.entry(peer).or_default();
            }
        }
        for s in 0..self.devices.len() as u32 {
            let dev = &self.devices[s as usize];
            let heard = match &dev.side {
                Side::Lock(l) => l.report.is_some(),
                Side::Camera(c) => c.proof.is_some(),
            };
            if heard {
                // Heard from since the restart: its deadline rests on that message.
                self.resupervise(s);
                continue;
            }
            let fast = match dev.side {
                Side::Lock(_) => self.open_cycle(s).is_some(),
                Side::Camera(_) => self.witnessed_entry(dev.peer).is_some(),
            };
            let at = if fast {
                fast_at
            } else {
                now_ms + self.cfg.idle_silent_ms
            };
            self.wheel.schedule(Timer::Silence(s), at);
        }
        let resend_at = now_ms + self.cfg.alarm_resend_ms;
        for (&id, a) in self.alarms.iter_mut() {
            a.notice.sent = a.notice.sent.saturating_add(1);
            out.push(Output::Alarm(a.notice.clone()));
            self.wheel.schedule(Timer::Resend(id), resend_at);
        }
        out
    }

    /// Sets the people count that a restore could not take from the record, from the first
    /// recording proof of lock `l`'s camera after the restart.
    pub(crate) fn rebase_counts(&mut self, l: u32, obs: &Observations) {
        let Some(d) = self.devices[l as usize].lock().and_then(|x| x.active) else {
            return;
        };
        let Some(del) = self.deliveries[d as usize].as_mut() else {
            return;
        };
        let phase = del.phase;
        let Some(run) = del.run.as_mut().filter(|r| r.rebase) else {
            return;
        };
        if phase == Phase::EgressWitnessed {
            run.egress_in = obs.entered;
            run.egress_out = obs.exited;
        } else {
            run.base_in = obs.entered;
            run.base_out = obs.exited;
        }
        run.rebase = false;
    }
}
