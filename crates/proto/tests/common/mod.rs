//! Generators shared by the property tests and the fuzz-corpus test: random valid messages of
//! every type, and byte-level mutations of their encodings.

#![allow(dead_code)] // Each test binary uses a different part.

use doorward_proto::codec;
use doorward_proto::pairing::*;
use doorward_proto::session::{SessionAccept, SessionHello, SessionKey};
use doorward_proto::*;
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha20Rng;

/// A number in `0..n`.
pub fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn coin(rng: &mut ChaCha20Rng) -> bool {
    rng.next_u32() & 1 == 1
}

/// Integers spread over every CBOR header width, so every encoding size is exercised.
pub fn int(rng: &mut ChaCha20Rng) -> u64 {
    match below(rng, 6) {
        0 => below(rng, 24),
        1 => below(rng, 256),
        2 => below(rng, 65_536),
        3 => below(rng, 1 << 32),
        4 => rng.next_u64(),
        _ => 1_700_000_000_000 + below(rng, 1 << 40),
    }
}

fn small(rng: &mut ChaCha20Rng) -> u8 {
    below(rng, 256) as u8
}

pub fn id(rng: &mut ChaCha20Rng) -> Id {
    const CH: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
    let len = if below(rng, 20) == 0 {
        MAX_ID_BYTES
    } else {
        1 + below(rng, 16) as usize
    };
    let s: String = (0..len)
        .map(|_| CH[below(rng, CH.len() as u64) as usize] as char)
        .collect();
    Id::new(s).expect("generated from the allowed alphabet")
}

fn arr<const N: usize>(rng: &mut ChaCha20Rng) -> [u8; N] {
    let mut a = [0u8; N];
    rng.fill_bytes(&mut a);
    a
}

fn bytes(rng: &mut ChaCha20Rng, max: u64) -> Vec<u8> {
    let mut v = vec![0u8; below(rng, max + 1) as usize];
    rng.fill_bytes(&mut v);
    v
}

fn opt<T>(rng: &mut ChaCha20Rng, f: impl FnOnce(&mut ChaCha20Rng) -> T) -> Option<T> {
    coin(rng).then(|| f(rng))
}

fn digest(rng: &mut ChaCha20Rng) -> Digest {
    Digest(arr(rng))
}
fn pubkey(rng: &mut ChaCha20Rng) -> PubKey {
    PubKey(arr(rng))
}
fn sig(rng: &mut ChaCha20Rng) -> Sig {
    Sig(arr(rng))
}
fn nonce(rng: &mut ChaCha20Rng) -> Nonce {
    Nonce(arr(rng))
}
fn grant_id(rng: &mut ChaCha20Rng) -> GrantId {
    GrantId(arr(rng))
}

/// The key every generated signature is made with (`[1; 32]`).
pub fn signer() -> KeyPair {
    KeyPair::from_seed(&[1; 32])
}

/// Signs half the time with the real key, otherwise attaches random signature bytes: both
/// must decode; only the first verifies.
fn signed<T: Signable>(body: T, rng: &mut ChaCha20Rng) -> Signed<T> {
    if coin(rng) {
        Signed::sign(body, &signer())
    } else {
        Signed {
            body,
            sig: sig(rng),
        }
    }
}

pub fn bolt(rng: &mut ChaCha20Rng) -> Bolt {
    [Bolt::Thrown, Bolt::Retracted, Bolt::Moving, Bolt::Jammed][below(rng, 4) as usize]
}

pub fn deny_reason(rng: &mut ChaCha20Rng) -> DenyReason {
    // Round-trip through the wire form picks any of the defined reasons.
    loop {
        let n = below(rng, 40);
        if let Ok(r) = codec::decode::<DenyReason>(&codec::encode(&n), 16) {
            return r;
        }
    }
}

pub fn alarm_kind(rng: &mut ChaCha20Rng) -> AlarmKind {
    loop {
        let n = below(rng, 24);
        if let Ok(k) = codec::decode::<AlarmKind>(&codec::encode(&n), 16) {
            return k;
        }
    }
}

pub fn lock_event(rng: &mut ChaCha20Rng) -> LockEvent {
    match below(rng, 12) {
        0 => LockEvent::Periodic,
        1 => LockEvent::BoltChanged,
        2 => LockEvent::DoorChanged,
        3 => LockEvent::Unlocked(grant_id(rng)),
        4 => LockEvent::Relocked(grant_id(rng)),
        5 => LockEvent::Denied(deny_reason(rng)),
        6 => LockEvent::ForcedOpen,
        7 => LockEvent::HeldOpen,
        8 => LockEvent::Jammed,
        9 => LockEvent::WitnessLockout,
        10 => LockEvent::Boot,
        _ => LockEvent::EpochApplied,
    }
}

pub fn lock_report(rng: &mut ChaCha20Rng) -> LockReport {
    LockReport {
        lock: id(rng),
        seq: int(rng),
        mono_ms: int(rng),
        bolt: bolt(rng),
        door: if coin(rng) { Door::Open } else { Door::Closed },
        battery_pct: below(rng, 101) as u8,
        epoch: int(rng),
        event: lock_event(rng),
        cycle: opt(rng, grant_id),
    }
}

pub fn observations(rng: &mut ChaCha20Rng) -> Observations {
    Observations {
        frozen: coin(rng),
        looped: coin(rng),
        blinded: coin(rng),
        door_moving: coin(rng),
        people_in_zone: small(rng),
        entered: below(rng, 65_536) as u16,
        exited: below(rng, 65_536) as u16,
        door_open: coin(rng),
    }
}

pub fn camera_proof(rng: &mut ChaCha20Rng) -> CameraProof {
    let n = below(rng, MAX_FRAMES_PER_PROOF as u64 + 1);
    CameraProof {
        camera: id(rng),
        seq: int(rng),
        mono_ms: int(rng),
        segment: digest(rng),
        head: digest(rng),
        recording: coin(rng),
        frames: (0..n).map(|_| digest(rng)).collect(),
        obs: observations(rng),
    }
}

pub fn unlock_nonce(rng: &mut ChaCha20Rng) -> UnlockNonce {
    UnlockNonce {
        lock: id(rng),
        nonce: nonce(rng),
        mono_ms: int(rng),
        epoch: int(rng),
    }
}

pub fn attestation(rng: &mut ChaCha20Rng) -> WitnessAttestation {
    WitnessAttestation {
        camera: id(rng),
        lock: id(rng),
        nonce: nonce(rng),
        seq: int(rng),
        head: digest(rng),
        recording: coin(rng),
    }
}

pub fn receipt(rng: &mut ChaCha20Rng) -> CameraReceipt {
    CameraReceipt {
        camera: id(rng),
        seq: int(rng),
        head: digest(rng),
        received_ms: int(rng),
    }
}

pub fn context(rng: &mut ChaCha20Rng) -> UnlockContext {
    UnlockContext {
        lock: id(rng),
        nonce: nonce(rng),
        server_ms: int(rng),
        epoch: int(rng),
        grant: grant_id(rng),
        driver: pubkey(rng),
        receipt: receipt(rng),
    }
}

pub fn issuer_cert(rng: &mut ChaCha20Rng) -> IssuerCert {
    IssuerCert {
        home: id(rng),
        issuer: pubkey(rng),
        not_before_ms: int(rng),
        not_after_ms: int(rng),
        serial: int(rng),
    }
}

pub fn unlock_command(rng: &mut ChaCha20Rng) -> UnlockCommand {
    UnlockCommand {
        issuer: signed(issuer_cert(rng), rng),
        grant: bytes(rng, 300),
        driver_sig: sig(rng),
        context: signed(context(rng), rng),
        witness: signed(attestation(rng), rng),
    }
}

pub fn revoked(rng: &mut ChaCha20Rng) -> Revoked {
    match below(rng, 3) {
        0 => Revoked::Carrier(id(rng)),
        1 => Revoked::Driver(pubkey(rng)),
        _ => Revoked::Grant(grant_id(rng)),
    }
}

pub fn revocation(rng: &mut ChaCha20Rng) -> Revocation {
    let n = below(rng, 6);
    Revocation {
        home: id(rng),
        epoch: int(rng),
        issued_ms: int(rng),
        items: (0..n).map(|_| revoked(rng)).collect(),
    }
}

pub fn alarm(rng: &mut ChaCha20Rng) -> Alarm {
    let len = below(rng, 40) as usize;
    Alarm {
        id: int(rng),
        home: id(rng),
        kind: alarm_kind(rng),
        raised_ms: int(rng),
        device: opt(rng, id),
        evidence: opt(rng, int),
        // Multi-byte characters too: the limit is in bytes.
        detail: (0..len)
            .map(|i| if i % 7 == 3 { 'é' } else { 'a' })
            .collect(),
    }
}

pub fn hello(rng: &mut ChaCha20Rng) -> SessionHello {
    SessionHello {
        device: id(rng),
        eph: XPub(arr(rng)),
        nonce: nonce(rng),
    }
}

pub fn accept(rng: &mut ChaCha20Rng) -> SessionAccept {
    SessionAccept {
        device: id(rng),
        session: int(rng),
        eph: XPub(arr(rng)),
        hello: digest(rng),
    }
}

/// Number of [`Body`] variants; [`body_of`] makes each one.
pub const BODY_VARIANTS: u64 = 14;

/// A random body of variant `k` (0-based, in wire order).
pub fn body_of(rng: &mut ChaCha20Rng, k: u64) -> Body {
    match k {
        0 => Body::LockReport(lock_report(rng)),
        1 => Body::CameraProof(camera_proof(rng)),
        2 => Body::UnlockNonce(signed(unlock_nonce(rng), rng)),
        3 => Body::WitnessRequest(WitnessRequest {
            camera: id(rng),
            nonce: signed(unlock_nonce(rng), rng),
        }),
        4 => Body::WitnessAttestation(signed(attestation(rng), rng)),
        5 => Body::UnlockCommand(Box::new(unlock_command(rng))),
        6 => Body::Revocation(revocation(rng)),
        7 => Body::TimeRequest(TimeRequest {
            device: id(rng),
            nonce: nonce(rng),
        }),
        8 => Body::TimeSync(TimeSync {
            device: id(rng),
            nonce: nonce(rng),
            server_ms: int(rng),
        }),
        9 => Body::Checkpoint(Checkpoint {
            device: id(rng),
            seq: int(rng),
            head: digest(rng),
            mono_ms: int(rng),
        }),
        10 => Body::Alarm(alarm(rng)),
        11 => Body::Ack(Ack {
            device: id(rng),
            seq: int(rng),
        }),
        12 => Body::SessionHello(hello(rng)),
        _ => Body::SessionAccept(accept(rng)),
    }
}

/// A random body of any variant.
pub fn body(rng: &mut ChaCha20Rng) -> Body {
    let k = below(rng, BODY_VARIANTS);
    body_of(rng, k)
}

/// A random envelope: signed by [`signer`] or MAC'd under [`session_key`].
pub fn envelope(rng: &mut ChaCha20Rng) -> Envelope {
    let b = body(rng);
    if coin(rng) {
        Envelope::signed(b, &signer())
    } else {
        Envelope::maced(b, &session_key())
    }
}

/// The session key MAC'd envelopes use.
pub fn session_key() -> SessionKey {
    SessionKey::from_parts(7, [9; 32])
}

pub fn device_kind(rng: &mut ChaCha20Rng) -> DeviceKind {
    if coin(rng) {
        DeviceKind::Lock
    } else {
        DeviceKind::Camera
    }
}

pub fn device_keys(rng: &mut ChaCha20Rng) -> DeviceKeys {
    DeviceKeys {
        kind: device_kind(rng),
        device: id(rng),
        key: pubkey(rng),
    }
}

pub fn pairing_message(rng: &mut ChaCha20Rng) -> PairingMessage {
    match below(rng, 3) {
        0 => PairingMessage::Pake(PakeMsg {
            role: if coin(rng) {
                PairingRole::Home
            } else {
                PairingRole::Device
            },
            device: id(rng),
            element: PakeElement(arr(rng)),
        }),
        1 => PairingMessage::Confirm(KeyConfirm {
            payload: PairingPayload::Device(device_keys(rng)),
            tag: MacTag(arr(rng)),
        }),
        _ => PairingMessage::Confirm(KeyConfirm {
            payload: PairingPayload::Home(HomeKeys {
                home: id(rng),
                root: pubkey(rng),
                server: pubkey(rng),
                witness: opt(rng, device_keys),
            }),
            tag: MacTag(arr(rng)),
        }),
    }
}

/// Applies 1 to 4 random byte-level mutations: flip a bit, set a byte, insert, delete,
/// truncate, duplicate a slice, or set a byte to a CBOR-significant value.
pub fn mutate(rng: &mut ChaCha20Rng, input: &[u8]) -> Vec<u8> {
    // Header bytes that change structure: array/map/bytes/text headers, indefinite forms,
    // wide integer headers, tags, break, simple values, floats.
    const INTERESTING: &[u8] = &[
        0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x20, 0x3b, 0x40, 0x58, 0x5b, 0x5f, 0x60, 0x78,
        0x7b, 0x7f, 0x80, 0x98, 0x9b, 0x9f, 0xa0, 0xbf, 0xc0, 0xd8, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9,
        0xfb, 0xff,
    ];
    let mut v = input.to_vec();
    for _ in 0..1 + below(rng, 4) {
        let len = v.len() as u64;
        match below(rng, 8) {
            0 if len > 0 => {
                let i = below(rng, len) as usize;
                v[i] ^= 1 << below(rng, 8);
            }
            1 if len > 0 => {
                let i = below(rng, len) as usize;
                v[i] = small(rng);
            }
            2 => {
                let i = below(rng, len + 1) as usize;
                v.insert(i, small(rng));
            }
            3 if len > 0 => {
                let i = below(rng, len) as usize;
                v.remove(i);
            }
            4 => {
                v.truncate(below(rng, len + 1) as usize);
            }
            5 if len > 0 => {
                let a = below(rng, len) as usize;
                let b = (a + 1 + below(rng, 16) as usize).min(v.len());
                let at = below(rng, len + 1) as usize;
                let piece = v[a..b].to_vec();
                v.splice(at..at, piece);
            }
            6 if len > 0 => {
                let i = below(rng, len) as usize;
                v[i] = INTERESTING[below(rng, INTERESTING.len() as u64) as usize];
            }
            _ => {
                let extra = bytes(rng, 4);
                v.extend_from_slice(&extra);
            }
        }
    }
    v
}

/// Random bytes, biased to start like a CBOR array so decoders get past the first byte.
pub fn random_input(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut v = bytes(rng, 300);
    if !v.is_empty() && coin(rng) {
        v[0] = 0x80 | below(rng, 5) as u8;
    }
    v
}
