//! The device's side of out-of-band pairing over the broker (docs/PROTOCOL.md §14).
//!
//! A device that has no pairing file prints its setup code and its QR payload, then answers
//! SPAKE2 on `doorward/v1/pair/<device>/down` (home → device) and
//! `doorward/v1/pair/<device>/up` (device → home). The broker sees only PAKE elements and
//! key-confirmed public keys: a wrong code makes both sides refuse. A confirmed pairing is
//! stored in the data directory (mode 0600) and the setup code is forgotten.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use doorward_proto::pairing::{
    DeviceKeys, DeviceKind, PairingFinish, PairingMessage, PairingPayload, PairingRole,
    PairingStart, QrPayload, MAX_PAIRING_ATTEMPTS_PER_HOUR, MAX_PAIRING_MESSAGE_BYTES,
};
use doorward_proto::{Id, KeyPair};
use rumqttc::QoS;

use crate::files::{DataDir, DataError, Paired};
use crate::link::{Link, LinkEvent};

/// The home → device pairing topic.
pub fn pair_down_topic(device: &Id) -> String {
    format!("doorward/v1/pair/{device}/down")
}

/// The device → home pairing topic.
pub fn pair_up_topic(device: &Id) -> String {
    format!("doorward/v1/pair/{device}/up")
}

/// Why pairing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// The data directory failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Asked to stop before a pairing completed.
    #[error("stopped before the device was paired")]
    Stopped,
}

/// Failed attempts in the last hour, oldest first.
#[derive(Debug, Default)]
pub struct AttemptLimit {
    failures: VecDeque<Instant>,
}

impl AttemptLimit {
    /// Whether another attempt may start at `now`.
    pub fn allows(&mut self, now: Instant) -> bool {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3_600))
        {
            self.failures.pop_front();
        }
        self.failures.len() < MAX_PAIRING_ATTEMPTS_PER_HOUR as usize
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, now: Instant) {
        self.failures.push_back(now);
    }
}

/// Pairs the device: prints (through `say`) the setup code and QR payload, answers the home
/// over the broker at `mqtt` (host, port), stores the confirmed pairing and returns it. Ends early
/// with [`PairError::Stopped`] when `stop` turns true.
pub async fn pair(
    mqtt: &(String, u16),
    data: &DataDir,
    kind: DeviceKind,
    device: &Id,
    key: &KeyPair,
    say: &(dyn Fn(String) + Send + Sync),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Paired, PairError> {
    let code = data.setup_code()?;
    let qr = QrPayload {
        kind,
        device: device.clone(),
        key: key.public(),
    };
    say(format!(
        "{} {device} is not paired. Setup code: {code}   QR: {qr}",
        kind.as_str()
    ));
    say(format!(
        "waiting for the home to pair it on {} (the owner enters the setup code)",
        pair_down_topic(device)
    ));
    let mut r = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    let (link, mut events) = Link::start(
        &mqtt.0,
        mqtt.1,
        &format!("{device}-pair-{}", hex::encode(r)),
        vec![pair_down_topic(device)],
    );
    let up = pair_up_topic(device);
    let mine = DeviceKeys {
        kind,
        device: device.clone(),
        key: key.public(),
    };
    let mut limit = AttemptLimit::default();
    let mut finish: Option<PairingFinish> = None;
    // The home repeats its PAKE message until it hears back; a repeat gets the same answer,
    // so the two sides never end up holding keys from different runs.
    let mut answered: Option<(doorward_proto::PakeElement, Vec<Vec<u8>>)> = None;
    let result = loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = stop.wait_for(|s| *s) => break Err(PairError::Stopped),
        };
        let Some(ev) = ev else {
            break Err(PairError::Stopped);
        };
        let payload = match ev {
            LinkEvent::Message { payload, .. } => payload,
            LinkEvent::Connected => continue,
            LinkEvent::Disconnected(e) => {
                tracing::debug!(error = %e, "pairing: broker connection lost; reconnecting");
                continue;
            }
        };
        // The size check comes before anything decodes the payload.
        if payload.len() > MAX_PAIRING_MESSAGE_BYTES {
            continue;
        }
        let Ok(msg) = PairingMessage::decode(&payload) else {
            continue;
        };
        match msg {
            PairingMessage::Pake(m) if m.role == PairingRole::Home => {
                if let Some((el, replies)) = &answered {
                    if *el == m.element && finish.is_some() {
                        for r in replies {
                            link.publish(&up, QoS::AtLeastOnce, r.clone());
                        }
                        continue;
                    }
                }
                if !limit.allows(Instant::now()) {
                    say(format!(
                        "pairing refused: {MAX_PAIRING_ATTEMPTS_PER_HOUR} failed attempts in \
                         the last hour; wait before trying again"
                    ));
                    continue;
                }
                let (start, ours) =
                    PairingStart::new(PairingRole::Device, &code, device, &mut rand_core::OsRng);
                let f = match start.finish(&m) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(error = %e, "pairing: unusable PAKE message");
                        continue;
                    }
                };
                let confirm = f
                    .confirm(PairingPayload::Device(mine.clone()))
                    .expect("our own keys for our own device");
                let replies = vec![
                    PairingMessage::Pake(ours).to_bytes(),
                    PairingMessage::Confirm(confirm).to_bytes(),
                ];
                for r in &replies {
                    link.publish(&up, QoS::AtLeastOnce, r.clone());
                }
                answered = Some((m.element, replies));
                finish = Some(f);
            }
            PairingMessage::Confirm(c) => {
                let Some(f) = finish.take() else { continue };
                match f.accept(&c) {
                    Ok(PairingPayload::Home(h)) => {
                        let Some(peer) = h.witness else {
                            say(format!(
                                "pairing refused: the home named no {} for this {}",
                                match kind {
                                    DeviceKind::Lock => "camera",
                                    DeviceKind::Camera => "lock",
                                },
                                kind.as_str()
                            ));
                            limit.failed(Instant::now());
                            continue;
                        };
                        let want = match kind {
                            DeviceKind::Lock => DeviceKind::Camera,
                            DeviceKind::Camera => DeviceKind::Lock,
                        };
                        if peer.kind != want {
                            say(format!(
                                "pairing refused: the home named a {} as this device's peer",
                                peer.kind.as_str()
                            ));
                            limit.failed(Instant::now());
                            continue;
                        }
                        let p = Paired {
                            kind,
                            device: device.clone(),
                            home: h.home,
                            root: h.root,
                            server: h.server,
                            peer: peer.device,
                            peer_key: peer.key,
                        };
                        data.store_pairing(&p)?;
                        say(format!(
                            "paired with home {} ({} {}); pairing stored in {}",
                            p.home,
                            want.as_str(),
                            p.peer,
                            data.file(crate::files::PAIRING_FILE).display()
                        ));
                        break Ok(p);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        limit.failed(Instant::now());
                        say(format!("pairing attempt failed: {e}"));
                    }
                }
            }
            _ => {}
        }
    };
    link.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_limit_holds_for_an_hour() {
        let mut l = AttemptLimit::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PAIRING_ATTEMPTS_PER_HOUR {
            assert!(l.allows(t0));
            l.failed(t0);
        }
        assert!(!l.allows(t0 + Duration::from_secs(3_599)));
        assert!(l.allows(t0 + Duration::from_secs(3_600)));
    }
}
