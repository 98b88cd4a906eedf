//! Device stream state kept across restarts: after every device message that moved a
//! device's stream, its [`DeviceSnapshot`] is written to the store (in the same durable batch
//! as the message's audit record), with the session key, the last digest and the head's
//! anchoring sealed under the keystore's state-wrap key (ChaCha20-Poly1305, the device and
//! home as associated data, so a row moved to another device does not open). On start the
//! snapshots are put back on the replayed devices: a replay of a message accepted before the
//! restart is refused, and devices keep their sessions.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use doorward_control::{Control, DeviceSnapshot};
use doorward_proto::session::SessionKey;
use doorward_proto::{codec, Digest, Id};
use doorward_store::{DeviceState, Store, StoreError, MAX_WRAPPED_KEY_BYTES};
use minicbor::{Decode, Encode};
use rand_core::{OsRng, RngCore};

const NONCE_BYTES: usize = 12;

/// The sealed part of a snapshot.
#[derive(Encode, Decode)]
struct Sealed {
    #[n(0)]
    session: Option<(u64, [u8; 32])>,
    #[n(1)]
    last_short: u64,
    #[n(2)]
    head_ok: bool,
    /// A camera's footage chain head (absent in rows written before it was kept).
    #[n(3)]
    footage_head: Option<Digest>,
}

fn aad(home: &Id, device: &Id) -> Vec<u8> {
    format!("doorward device state\0{home}\0{device}").into_bytes()
}

/// The stored row of `snap`.
pub fn wrap(
    key: &[u8; 32],
    home: &Id,
    device: &Id,
    snap: &DeviceSnapshot,
    now_ms: u64,
) -> DeviceState {
    let sealed = Sealed {
        session: snap.session.as_ref().map(|s| (s.id(), *s.secret())),
        last_short: snap.last_short,
        head_ok: snap.head_ok,
        footage_head: snap.footage_head,
    };
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    let plain = codec::encode(&sealed);
    let ct = ChaCha20Poly1305::new(&Key::from(*key))
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad(home, device),
            },
        )
        .expect("a small message encrypts");
    let mut wrapped = nonce.to_vec();
    wrapped.extend(ct);
    DeviceState {
        home: home.clone(),
        device: device.clone(),
        last_seq: snap.last_seq,
        chain_head: snap.msg_head,
        wrapped_session_key: Some(wrapped),
        updated_ms: now_ms,
    }
}

/// The snapshot of a stored row; `None` if it does not open under `key`.
pub fn unwrap(key: &[u8; 32], st: &DeviceState) -> Option<DeviceSnapshot> {
    let w = st.wrapped_session_key.as_ref()?;
    if w.len() < NONCE_BYTES || w.len() > MAX_WRAPPED_KEY_BYTES {
        return None;
    }
    let nonce: [u8; NONCE_BYTES] = w[..NONCE_BYTES].try_into().ok()?;
    let plain = ChaCha20Poly1305::new(&Key::from(*key))
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &w[NONCE_BYTES..],
                aad: &aad(&st.home, &st.device),
            },
        )
        .ok()?;
    let sealed: Sealed = codec::decode(&plain, MAX_WRAPPED_KEY_BYTES).ok()?;
    Some(DeviceSnapshot {
        last_seq: st.last_seq,
        last_short: sealed.last_short,
        msg_head: st.chain_head,
        head_ok: sealed.head_ok,
        session: sealed.session.map(|(id, k)| SessionKey::from_parts(id, k)),
        footage_head: sealed.footage_head,
    })
}

/// Puts the stored state back on each of `devices` (device, home); returns how many.
/// Blocking (store reads). A row that does not open is skipped and logged: that device
/// starts afresh, as before this existed.
pub fn restore(
    store: &dyn Store,
    key: &[u8; 32],
    control: &mut Control,
    devices: &[(Id, Id)],
) -> Result<usize, StoreError> {
    let mut n = 0;
    for (device, home) in devices {
        let Some(st) = store.device_state(home, device)? else {
            continue;
        };
        match unwrap(key, &st) {
            Some(snap) => {
                if control.restore_device(device, snap) {
                    n += 1;
                }
            }
            None => tracing::error!(%home, %device, "device state does not open; skipped"),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i10_wrapped_state_opens_only_for_its_device_and_key() {
        let key = [9u8; 32];
        let (h, d) = (Id::new("h").unwrap(), Id::new("d").unwrap());
        let snap = DeviceSnapshot {
            last_seq: 12,
            last_short: 34,
            msg_head: Digest([5; 32]),
            head_ok: true,
            session: Some(SessionKey::from_parts(7, [3; 32])),
            footage_head: Some(Digest([6; 32])),
        };
        let st = wrap(&key, &h, &d, &snap, 1);
        assert!(st.wrapped_session_key.as_ref().unwrap().len() <= MAX_WRAPPED_KEY_BYTES);
        assert!(!st
            .wrapped_session_key
            .as_ref()
            .unwrap()
            .windows(32)
            .any(|w| w == [3u8; 32]));
        assert_eq!(unwrap(&key, &st), Some(snap));
        assert_eq!(unwrap(&[8u8; 32], &st), None, "another key");
        let moved = DeviceState {
            device: Id::new("other").unwrap(),
            ..st.clone()
        };
        assert_eq!(unwrap(&key, &moved), None, "moved to another device");
    }
}
