//! A device's stream state (sequence, chain head, session key) out of and back into the
//! core, so the shell can keep it across a restart: a restarted server refuses a replay of
//! a message it accepted before, and needs no new session handshake.
//!
//! The snapshot holds the session secret: the shell stores it only encrypted.

use doorward_proto::session::SessionKey;
use doorward_proto::{Digest, Id};

use crate::Control;

/// What the core keeps of one device's message stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// Sequence number of the last accepted message.
    pub last_seq: u64,
    /// The first 8 bytes of that message's digest, to tell a redelivery from a fork.
    pub last_short: u64,
    /// The running head of the device's message chain.
    pub msg_head: Digest,
    /// Whether `msg_head` is anchored (not lost to a gap).
    pub head_ok: bool,
    /// The session key in force, if any.
    pub session: Option<SessionKey>,
    /// A camera's footage chain head at its newest accepted proof, against which its next
    /// proof is checked; `None` for a lock.
    pub footage_head: Option<Digest>,
}

impl Control {
    /// The stream state of a paired device that has sent at least one accepted message.
    pub fn device_snapshot(&self, device: &Id) -> Option<DeviceSnapshot> {
        let &slot = self.dev_ix.get(device)?;
        let dev = &self.devices[slot as usize];
        let sup = &dev.sup;
        if !sup.seen {
            return None;
        }
        Some(DeviceSnapshot {
            last_seq: sup.last_seq,
            last_short: sup.last_short,
            msg_head: sup.msg_head,
            head_ok: sup.head_ok,
            session: sup.session.clone(),
            footage_head: dev.camera().map(|c| c.chain.head),
        })
    }

    /// Puts a kept stream state back on a paired device (at start, before any message of
    /// it); returns false for an unknown device. The device clock is learnt again.
    pub fn restore_device(&mut self, device: &Id, snap: DeviceSnapshot) -> bool {
        let Some(&slot) = self.dev_ix.get(device) else {
            return false;
        };
        let dev = &mut self.devices[slot as usize];
        if let (Some(cam), Some(head)) = (dev.camera_mut(), snap.footage_head) {
            cam.chain.head = head;
        }
        let sup = &mut dev.sup;
        sup.seen = true;
        sup.last_seq = snap.last_seq;
        sup.last_short = snap.last_short;
        sup.msg_head = snap.msg_head;
        sup.head_ok = snap.head_ok;
        sup.session = snap.session;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::SeqVerdict;
    use crate::{Admin, Config, DoorKind, DoorSetup, HomePolicy, HomeSetup};
    use doorward_proto::{IssuerCert, KeyPair, Signed};
    use rand_chacha::rand_core::SeedableRng;

    fn core(rng: &mut rand_chacha::ChaCha20Rng) -> (Control, Id) {
        let now = 1_000_000;
        let mut c = Control::new(Config::default(), KeyPair::generate(rng), [7; 32], now);
        let home = Id::new("h").unwrap();
        let root = KeyPair::generate(rng);
        let issuer = KeyPair::generate(rng);
        let cert = Signed::sign(
            IssuerCert {
                home: home.clone(),
                issuer: issuer.public(),
                not_before_ms: 0,
                not_after_ms: u64::MAX,
                serial: 1,
            },
            &root,
        );
        c.admin(
            now,
            Admin::AddHome(HomeSetup {
                home: home.clone(),
                root: root.public(),
                issuer,
                cert,
                policy: HomePolicy::default(),
            }),
        )
        .unwrap();
        let lock = Id::new("l").unwrap();
        c.admin(
            now,
            Admin::PairDoor {
                home,
                door: DoorSetup {
                    lock: lock.clone(),
                    lock_key: KeyPair::generate(rng).public(),
                    camera: Id::new("c").unwrap(),
                    camera_key: KeyPair::generate(rng).public(),
                    kind: DoorKind::Front,
                },
            },
        )
        .unwrap();
        (c, lock)
    }

    #[test]
    fn i5_restored_stream_refuses_a_replay_and_keeps_the_session() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let (mut before, lock) = core(&mut rng);
        assert_eq!(before.device_snapshot(&lock), None, "nothing accepted yet");
        {
            let slot = before.dev_ix[&lock] as usize;
            let sup = &mut before.devices[slot].sup;
            sup.seen = true;
            sup.last_seq = 41;
            sup.last_short = 9;
            sup.head_ok = true;
            sup.msg_head = Digest([5; 32]);
            sup.session = Some(SessionKey::from_parts(77, [1; 32]));
        }
        let snap = before.device_snapshot(&lock).unwrap();

        let (mut after, _) = core(&mut rand_chacha::ChaCha20Rng::seed_from_u64(3));
        let slot = after.dev_ix[&lock] as usize;
        // A fresh core takes any sequence number as the first: a replay would pass.
        assert_eq!(
            after.devices[slot].sup.check_seq(40, &Digest([0; 32]), 8),
            SeqVerdict::Next
        );
        assert!(after.restore_device(&lock, snap.clone()));
        let sup = &after.devices[slot].sup;
        assert_eq!(sup.check_seq(40, &Digest([0; 32]), 8), SeqVerdict::Replay);
        assert_eq!(sup.check_seq(42, &Digest([0; 32]), 8), SeqVerdict::Next);
        assert_eq!(sup.session.as_ref().map(SessionKey::id), Some(77));
        assert_eq!(after.device_snapshot(&lock), Some(snap));
        assert!(!after.restore_device(&Id::new("nobody").unwrap(), after_snap()));
    }

    fn after_snap() -> DeviceSnapshot {
        DeviceSnapshot {
            last_seq: 0,
            last_short: 0,
            msg_head: Digest::ZERO,
            head_ok: false,
            session: None,
            footage_head: None,
        }
    }
}
