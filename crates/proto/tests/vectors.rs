//! Test vectors: one fixed value of every message type, built from fixed keys, whose encoding
//! and signatures are stored in `crates/proto/vectors/*.hex`. The test checks both ways:
//! encoding the value gives the stored bytes, decoding the stored bytes gives the value, and
//! every stored signature and MAC verifies.
//!
//! File format (for implementers in other languages): lines starting with `#` are comments;
//! every other line is `name = lower-case hex`. The `# keys` comment of each file names the
//! seeds; `KeyPair::from_seed(seed)` is the Ed25519 secret key seed of RFC 8032.
//!
//! After an intended change to the encoding, regenerate with
//! `DOORWARD_WRITE_VECTORS=1 cargo test -p doorward-proto --test vectors` and review the diff.

use std::path::{Path, PathBuf};

use doorward_proto::codec;
use doorward_proto::grant::{self, GrantSpec, Purpose};
use doorward_proto::pairing::*;
use doorward_proto::session::{self, Initiator, SessionKey};
use doorward_proto::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Seeds of the fixed keys.
const HOME_ROOT: [u8; 32] = [1; 32];
const SERVER: [u8; 32] = [2; 32];
const ISSUER: [u8; 32] = [3; 32];
const LOCK: [u8; 32] = [4; 32];
const CAMERA: [u8; 32] = [5; 32];
const DRIVER: [u8; 32] = [6; 32];
/// The session key MAC'd vectors use.
const SESSION_ID: u64 = 42;
const SESSION_KEY: [u8; 32] = [7; 32];
/// Fixed server time of the scenario: 2026-01-01T00:00:00Z.
const T0_MS: u64 = 1_767_225_600_000;

const KEYS_NOTE: &str = "keys: home root [1;32], server [2;32], issuer [3;32], lock [4;32], \
                         camera [5;32], driver [6;32]; session 42 key [7;32]";

fn kp(seed: [u8; 32]) -> KeyPair {
    KeyPair::from_seed(&seed)
}

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

fn session_key() -> SessionKey {
    SessionKey::from_parts(SESSION_ID, SESSION_KEY)
}

/// One vector file: a description and named byte strings.
struct Vector {
    name: &'static str,
    about: &'static str,
    fields: Vec<(&'static str, Vec<u8>)>,
}

impl Vector {
    fn new(name: &'static str, about: &'static str) -> Self {
        Vector {
            name,
            about,
            fields: Vec::new(),
        }
    }

    fn field(mut self, name: &'static str, bytes: impl Into<Vec<u8>>) -> Self {
        self.fields.push((name, bytes.into()));
        self
    }

    fn get(&self, name: &str) -> &[u8] {
        &self
            .fields
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{}: no field {name}", self.name))
            .1
    }

    fn render(&self) -> String {
        let mut s = format!("# Doorward test vector: {}\n", self.name);
        for line in self.about.lines() {
            s.push_str(&format!("# {}\n", line.trim()));
        }
        s.push_str(&format!("# {KEYS_NOTE}\n"));
        for (n, b) in &self.fields {
            s.push_str(&format!("{n} = {}\n", hex::encode(b)));
        }
        s
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn parse(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, h) = l.split_once(" = ").expect("name = hex");
            (n.to_owned(), hex::decode(h.trim()).expect("hex"))
        })
        .collect()
}

/// Either writes the vector (regeneration) or checks it against the stored file; then returns
/// the stored fields so the caller decodes the stored bytes, not the freshly encoded ones.
fn stored(v: &Vector) -> Vector {
    let path = dir().join(format!("{}.hex", v.name));
    if std::env::var_os("DOORWARD_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        // Through a rename, so a test reading the files in parallel never sees half of one.
        let tmp = path.with_extension("hex.tmp");
        std::fs::write(&tmp, v.render()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with DOORWARD_WRITE_VECTORS=1)",
            path.display()
        )
    });
    let got = parse(&text);
    let want: Vec<(String, Vec<u8>)> = v
        .fields
        .iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect();
    for ((gn, gb), (wn, wb)) in got.iter().zip(&want) {
        assert_eq!(gn, wn, "{}: field order", v.name);
        assert_eq!(
            hex::encode(gb),
            hex::encode(wb),
            "{}.{gn}: encoding differs from the stored vector",
            v.name
        );
    }
    assert_eq!(got.len(), want.len(), "{}: field count", v.name);
    v.fields
        .iter()
        .fold(Vector::new(v.name, v.about), |acc, (n, _)| {
            let b = got.iter().find(|(g, _)| g == n).unwrap().1.clone();
            acc.field(n, b)
        })
}

/// Checks an envelope vector: stored bytes decode to the value and authenticate.
fn check_envelope(v: &Vector, value: &Envelope, signer: Option<&KeyPair>) {
    let s = stored(v);
    let env = Envelope::decode(s.get("envelope")).unwrap();
    assert_eq!(&env, value, "{}: decoded value", v.name);
    match signer {
        Some(k) => {
            assert_eq!(s.get("signer"), k.public().0);
            assert_eq!(env.verify_sig(&k.public()), Ok(()), "{}", v.name);
        }
        None => assert_eq!(env.verify_mac(&session_key()), Ok(()), "{}", v.name),
    }
    assert_eq!(
        s.get("body"),
        codec::encode(&value.body),
        "{}: body is the canonical body",
        v.name
    );
}

fn signed_envelope(
    name: &'static str,
    about: &'static str,
    body: Body,
    key: &KeyPair,
) -> (Vector, Envelope) {
    let env = Envelope::signed(body, key);
    let v = Vector::new(name, about)
        .field("signer", key.public().0)
        .field("body", codec::encode(&env.body))
        .field("envelope", env.to_bytes());
    (v, env)
}

fn nonce() -> Nonce {
    Nonce([0x11; 32])
}

fn unlock_nonce() -> Signed<UnlockNonce> {
    Signed::sign(
        UnlockNonce {
            lock: id("lock-1"),
            nonce: nonce(),
            mono_ms: 3_600_000,
            epoch: 3,
        },
        &kp(LOCK),
    )
}

fn frames() -> Vec<Digest> {
    (0..4u8)
        .map(|i| frame_digest(&[i; 64 * 48]))
        .collect::<Vec<_>>()
}

fn head() -> Digest {
    chain_next(&Digest::ZERO, 1, &segment_digest(&frames()))
}

fn attestation() -> Signed<WitnessAttestation> {
    Signed::sign(
        WitnessAttestation {
            camera: id("cam-1"),
            lock: id("lock-1"),
            nonce: nonce(),
            seq: 1,
            head: head(),
            recording: true,
        },
        &kp(CAMERA),
    )
}

fn grant_spec() -> GrantSpec {
    GrantSpec {
        id: GrantId([0x22; 16]),
        home: id("home-1"),
        lock: id("lock-1"),
        purpose: Purpose::Delivery(id("delivery-7")),
        carrier: Some(id("acme")),
        driver: kp(DRIVER).public(),
        not_before_ms: T0_MS,
        not_after_ms: T0_MS + 3_600_000,
        max_open_ms: 120_000,
    }
}

fn grant_token() -> Vec<u8> {
    grant::issue(
        &grant_spec(),
        &kp(ISSUER),
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap()
}

fn issuer_cert() -> Signed<IssuerCert> {
    Signed::sign(
        IssuerCert {
            home: id("home-1"),
            issuer: kp(ISSUER).public(),
            not_before_ms: T0_MS - 86_400_000,
            not_after_ms: T0_MS + 30 * 86_400_000,
            serial: 1,
        },
        &kp(HOME_ROOT),
    )
}

fn unlock_command() -> UnlockCommand {
    let lock = id("lock-1");
    UnlockCommand {
        issuer: issuer_cert(),
        grant: grant_token(),
        driver_sig: kp(DRIVER).sign(DRIVER_NONCE_CONTEXT, &driver_nonce_message(&lock, &nonce())),
        context: Signed::sign(
            UnlockContext {
                lock,
                nonce: nonce(),
                server_ms: T0_MS + 600_000,
                epoch: 3,
                grant: GrantId([0x22; 16]),
                driver: kp(DRIVER).public(),
                receipt: CameraReceipt {
                    camera: id("cam-1"),
                    seq: 1,
                    head: head(),
                    received_ms: T0_MS + 599_900,
                },
            },
            &kp(SERVER),
        ),
        witness: attestation(),
    }
}

#[test]
fn lock_report() {
    let (v, env) = signed_envelope(
        "lock_report",
        "A LockReport in an envelope signed by the lock key: bolt retracted, door open,\n\
         in the open cycle of grant 2222…",
        Body::LockReport(LockReport {
            lock: id("lock-1"),
            seq: 1_000,
            mono_ms: 3_600_500,
            bolt: Bolt::Retracted,
            door: Door::Open,
            battery_pct: 87,
            epoch: 3,
            event: LockEvent::DoorChanged,
            cycle: Some(GrantId([0x22; 16])),
        }),
        &kp(LOCK),
    );
    check_envelope(&v, &env, Some(&kp(LOCK)));
}

#[test]
fn camera_proof_maced_with_segment_digest_and_chain_link() {
    let f = frames();
    let seg = segment_digest(&f);
    let h = chain_next(&Digest::ZERO, 1, &seg);
    let env = Envelope::maced(
        Body::CameraProof(CameraProof {
            camera: id("cam-1"),
            seq: 1,
            mono_ms: 125,
            segment: seg,
            head: h,
            recording: true,
            frames: f.clone(),
            obs: Observations {
                people_in_zone: 1,
                entered: 1,
                door_open: true,
                door_moving: true,
                ..Observations::default()
            },
        }),
        &session_key(),
    );
    let v = Vector::new(
        "camera_proof_mac",
        "A CameraProof MAC'd under session 42 (key [7;32]).\n\
         frame_i = frame_digest(64*48 bytes of value i); segment = segment_digest(frames);\n\
         head = chain_next(ZERO, 1, segment); tag = BLAKE3-keyed(key, \"doorward/v1 mac\" || body)",
    )
    .field("frame0", f[0].0)
    .field("frame1", f[1].0)
    .field("frame2", f[2].0)
    .field("frame3", f[3].0)
    .field("segment", seg.0)
    .field("head", h.0)
    .field("body", codec::encode(&env.body))
    .field("tag", session_key().tag(&codec::encode(&env.body)).0)
    .field("envelope", env.to_bytes());
    check_envelope(&v, &env, None);
    let s = stored(&v);
    assert_eq!(s.get("segment"), segment_digest(&f).0);
    assert_eq!(s.get("head"), h.0);
}

#[test]
fn unlock_nonce_signed_twice() {
    let n = unlock_nonce();
    let (v, env) = signed_envelope(
        "unlock_nonce",
        "The lock's Signed<UnlockNonce> (context \"unlock-nonce\") in an envelope signed by\n\
         the lock key.",
        Body::UnlockNonce(n.clone()),
        &kp(LOCK),
    );
    let v = v
        .field("nonce_body", codec::encode(&n.body))
        .field("nonce_sig", n.sig.0);
    check_envelope(&v, &env, Some(&kp(LOCK)));
    let s = stored(&v);
    let back: Signed<UnlockNonce> = Signed {
        body: codec::decode(s.get("nonce_body"), 1024).unwrap(),
        sig: Sig(s.get("nonce_sig").try_into().unwrap()),
    };
    assert!(back.verify(&kp(LOCK).public()).is_ok());
}

#[test]
fn driver_nonce_signature() {
    let lock = id("lock-1");
    let msg = driver_nonce_message(&lock, &nonce());
    let sig = kp(DRIVER).sign(DRIVER_NONCE_CONTEXT, &msg);
    let mut signing_input = b"doorward/v1/driver-nonce\0".to_vec();
    signing_input.extend_from_slice(&msg);
    let v = Vector::new(
        "driver_nonce",
        "The driver's signature over the lock's nonce: message = canonical([lock, nonce]);\n\
         Ed25519 over \"doorward/v1/driver-nonce\" || 0x00 || message.",
    )
    .field("driver", kp(DRIVER).public().0)
    .field("message", msg)
    .field("signing_input", signing_input)
    .field("sig", sig.0);
    let s = stored(&v);
    let sig = Sig(s.get("sig").try_into().unwrap());
    assert_eq!(
        keys::verify(
            &kp(DRIVER).public(),
            DRIVER_NONCE_CONTEXT,
            s.get("message"),
            &sig
        ),
        Ok(())
    );
    // The same signature under the plain Ed25519 rule over the signing input.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&kp(DRIVER).public().0).unwrap();
    let dsig = ed25519_dalek::Signature::from_bytes(&sig.0);
    assert!(vk.verify_strict(s.get("signing_input"), &dsig).is_ok());
}

#[test]
fn segment_upload_signature() {
    use doorward_proto::footage::*;
    let cam = id("cam-1");
    let seq = 7;
    // One 64x48 frame: a horizontal gradient with the row number in the low bits.
    let body: Vec<u8> = (0..UPLOAD_FRAME_BYTES)
        .map(|i| ((i % 64) * 4 + (i / 64) % 4) as u8)
        .collect();
    let msg = segment_upload_message(&cam, seq, T0_MS, &body);
    let sig = sign_upload(&kp(CAMERA), &cam, seq, T0_MS, &body);
    let mut signing_input = b"doorward/v1/segment-upload\0".to_vec();
    signing_input.extend_from_slice(&msg);
    let frame = frame_digest(&body);
    let v = Vector::new(
        "segment_upload",
        "A footage upload (PROTOCOL.md §18): PUT /api/devices/cam-1/segments/7 with one frame\n\
         as the body, Doorward-Timestamp 1767225600000; message = canonical([camera, seq,\n\
         timestamp_ms, BLAKE3(body)]); Ed25519 over \"doorward/v1/segment-upload\" || 0x00 ||\n\
         message. frame_digest and segment_digest are what the CameraProof with seq 7 lists.",
    )
    .field("camera", kp(CAMERA).public().0)
    .field("body", body.clone())
    .field("body_digest", body_digest(&body).0)
    .field("message", msg)
    .field("signing_input", signing_input)
    .field("sig", sig.0)
    .field("frame_digest", frame.0)
    .field("segment_digest", segment_digest(&[frame]).0);
    let s = stored(&v);
    let sig = Sig(s.get("sig").try_into().unwrap());
    let key = kp(CAMERA).public();
    let frames = [Digest(s.get("frame_digest").try_into().unwrap())];
    let segment = Digest(s.get("segment_digest").try_into().unwrap());
    let up = Upload {
        camera: &cam,
        seq,
        timestamp_ms: T0_MS,
        sig: &sig,
        body: s.get("body"),
    };
    let exp = Expected {
        camera_key: &key,
        frames: &frames,
        segment: &segment,
    };
    assert_eq!(check_upload(&up, &exp, T0_MS + 1_000).unwrap().len(), 1);
    // The same signature under the plain Ed25519 rule over the signing input.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.0).unwrap();
    let dsig = ed25519_dalek::Signature::from_bytes(&sig.0);
    assert!(vk.verify_strict(s.get("signing_input"), &dsig).is_ok());
    assert_eq!(
        s.get("body_digest"),
        blake3::hash(s.get("body")).as_bytes(),
        "body_digest is plain BLAKE3"
    );
}

#[test]
fn witness_request_and_attestation() {
    let (v, env) = signed_envelope(
        "witness_request",
        "The server asks cam-1 to attest the lock's signed nonce (envelope signed by the\n\
         server key).",
        Body::WitnessRequest(WitnessRequest {
            camera: id("cam-1"),
            nonce: unlock_nonce(),
        }),
        &kp(SERVER),
    );
    check_envelope(&v, &env, Some(&kp(SERVER)));
    let a = attestation();
    let (v, env) = signed_envelope(
        "witness_attestation",
        "The camera's Signed<WitnessAttestation> (context \"witness-attestation\") over the\n\
         lock's nonce and its chain head, in an envelope signed by the camera key.",
        Body::WitnessAttestation(a.clone()),
        &kp(CAMERA),
    );
    check_envelope(&v, &env, Some(&kp(CAMERA)));
    assert!(a.verify(&kp(CAMERA).public()).is_ok());
}

#[test]
fn unlock_command_with_grant_and_issuer_cert() {
    let cmd = unlock_command();
    let (v, env) = signed_envelope(
        "unlock_command",
        "Everything the lock checks for one unlock, in an envelope signed by the server key:\n\
         issuer cert (home root), biscuit grant rooted at the issuer (ChaCha20 seed 1 for its\n\
         block key), the driver's nonce signature, the server's unlock context and the\n\
         camera's attestation. The lock's wall clock should read between server_ms ± skew.",
        Body::UnlockCommand(Box::new(cmd.clone())),
        &kp(SERVER),
    );
    let v = v
        .field("issuer_cert", codec::encode(&cmd.issuer))
        .field("grant", cmd.grant.clone())
        .field("context", codec::encode(&cmd.context));
    check_envelope(&v, &env, Some(&kp(SERVER)));
    let s = stored(&v);
    let cert: Signed<IssuerCert> = codec::decode(s.get("issuer_cert"), 1024).unwrap();
    let now = T0_MS + 600_000;
    let c = grant::verify_cert(&cert, &kp(HOME_ROOT).public(), &id("home-1"), now).unwrap();
    assert_eq!(c.issuer, kp(ISSUER).public());
    let spec = grant::verify(
        s.get("grant"),
        &c.issuer,
        &id("lock-1"),
        &kp(DRIVER).public(),
        now,
    )
    .unwrap();
    assert_eq!(spec, grant_spec());
    let ctx: Signed<UnlockContext> = codec::decode(s.get("context"), 1024).unwrap();
    assert!(ctx.verify(&kp(SERVER).public()).is_ok());
}

#[test]
fn revocation() {
    let (v, env) = signed_envelope(
        "revocation",
        "A revocation bringing home-1 to epoch 4, in an envelope signed by the server key.",
        Body::Revocation(Revocation {
            home: id("home-1"),
            epoch: 4,
            issued_ms: T0_MS,
            items: vec![
                Revoked::Carrier(id("acme")),
                Revoked::Driver(kp(DRIVER).public()),
                Revoked::Grant(GrantId([0x22; 16])),
            ],
        }),
        &kp(SERVER),
    );
    check_envelope(&v, &env, Some(&kp(SERVER)));
}

#[test]
fn time_request_and_sync() {
    let (v, env) = signed_envelope(
        "time_request",
        "The lock asks for the time with a fresh nonce (signed by the lock key).",
        Body::TimeRequest(TimeRequest {
            device: id("lock-1"),
            nonce: Nonce([0x33; 32]),
        }),
        &kp(LOCK),
    );
    check_envelope(&v, &env, Some(&kp(LOCK)));
    let (v, env) = signed_envelope(
        "time_sync",
        "The server's time bound to that nonce (signed by the server key).",
        Body::TimeSync(TimeSync {
            device: id("lock-1"),
            nonce: Nonce([0x33; 32]),
            server_ms: T0_MS,
        }),
        &kp(SERVER),
    );
    check_envelope(&v, &env, Some(&kp(SERVER)));
}

#[test]
fn checkpoint_over_message_digests() {
    // Two MAC'd messages, then the signed checkpoint whose head chains their digests.
    let b1 = Body::Ack(Ack {
        device: id("cam-1"),
        seq: 1,
    });
    let b2 = Body::TimeRequest(TimeRequest {
        device: id("cam-1"),
        nonce: Nonce([0x44; 32]),
    });
    let h1 = chain_next(&Digest::ZERO, 1, &message_digest(&b1));
    let h2 = chain_next(&h1, 2, &message_digest(&b2));
    let (v, env) = signed_envelope(
        "checkpoint",
        "A camera's signed checkpoint at seq 2: head = chain_next(chain_next(ZERO, 1,\n\
         message_digest(m1)), 2, message_digest(m2)).",
        Body::Checkpoint(Checkpoint {
            device: id("cam-1"),
            seq: 2,
            head: h2,
            mono_ms: 1_000,
        }),
        &kp(CAMERA),
    );
    let v = v
        .field("m1", codec::encode(&b1))
        .field("m1_digest", message_digest(&b1).0)
        .field("m2", codec::encode(&b2))
        .field("head", h2.0);
    check_envelope(&v, &env, Some(&kp(CAMERA)));
}

#[test]
fn alarm_and_ack() {
    let (v, env) = signed_envelope(
        "alarm",
        "A witness-lost alarm (signed by the server key).",
        Body::Alarm(Alarm {
            id: 9,
            home: id("home-1"),
            kind: AlarmKind::WitnessLost,
            raised_ms: T0_MS + 601_000,
            device: Some(id("cam-1")),
            evidence: Some(1_234),
            detail: "no camera proof for 500 ms during the entry".into(),
        }),
        &kp(SERVER),
    );
    check_envelope(&v, &env, Some(&kp(SERVER)));
    let (v, env) = signed_envelope(
        "ack",
        "The server acknowledges lock-1's messages up to seq 1000 (signed by the server key).",
        Body::Ack(Ack {
            device: id("lock-1"),
            seq: 1_000,
        }),
        &kp(SERVER),
    );
    check_envelope(&v, &env, Some(&kp(SERVER)));
}

#[test]
fn session_handshake() {
    let (init, hello) = Initiator::start(id("cam-1"), &mut ChaCha20Rng::seed_from_u64(2));
    let (accept, server_key) =
        session::respond(&hello, SESSION_ID, &mut ChaCha20Rng::seed_from_u64(3)).unwrap();
    let device_key = init.finish(&accept).unwrap();
    assert_eq!(device_key, server_key);
    let (v, hello_env) = signed_envelope(
        "session_hello",
        "SessionHello from cam-1 (ephemeral from ChaCha20 seed 2), signed by the camera key.",
        Body::SessionHello(hello.clone()),
        &kp(CAMERA),
    );
    check_envelope(&v, &hello_env, Some(&kp(CAMERA)));
    let (v, accept_env) = signed_envelope(
        "session_accept",
        "SessionAccept for it (ephemeral from ChaCha20 seed 3), signed by the server key;\n\
         hello_digest = BLAKE3-derive(\"doorward/v1 hello\", canonical(hello));\n\
         session_key = BLAKE3-derive(\"doorward/v1 session key\", X25519 || hello_digest ||\n\
         canonical(accept)).",
        Body::SessionAccept(accept.clone()),
        &kp(SERVER),
    );
    let v = v
        .field("hello_digest", session::hello_digest(&hello).0)
        .field("session_key", *server_key.secret());
    check_envelope(&v, &accept_env, Some(&kp(SERVER)));
}

#[test]
fn pairing_exchange_and_qr() {
    let code = SetupCode::parse(&format!(
        "1234567890{}",
        verhoeff_digit(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    ))
    .unwrap();
    let dev = id("lock-1");
    let (h, ha) = PairingStart::new(
        PairingRole::Home,
        &code,
        &dev,
        &mut ChaCha20Rng::seed_from_u64(4),
    );
    let (d, db) = PairingStart::new(
        PairingRole::Device,
        &code,
        &dev,
        &mut ChaCha20Rng::seed_from_u64(5),
    );
    let (home, device) = (h.finish(&db).unwrap(), d.finish(&ha).unwrap());
    let dk = DeviceKeys {
        kind: DeviceKind::Lock,
        device: dev.clone(),
        key: kp(LOCK).public(),
    };
    let hk = HomeKeys {
        home: id("home-1"),
        root: kp(HOME_ROOT).public(),
        server: kp(SERVER).public(),
        witness: Some(DeviceKeys {
            kind: DeviceKind::Camera,
            device: id("cam-1"),
            key: kp(CAMERA).public(),
        }),
    };
    let m1 = PairingMessage::Pake(ha);
    let m2 = PairingMessage::Pake(db);
    let m3 = PairingMessage::Confirm(device.confirm(PairingPayload::Device(dk.clone())).unwrap());
    let m4 = PairingMessage::Confirm(home.confirm(PairingPayload::Home(hk.clone())).unwrap());
    let qr = QrPayload {
        kind: DeviceKind::Lock,
        device: dev,
        key: kp(LOCK).public(),
    };
    let v = Vector::new(
        "pairing",
        "Setup-code pairing of lock-1 with code 1234567890 and its Verhoeff digit\n\
         (home scalar from ChaCha20 seed 4, device from seed 5), and the lock's QR payload.",
    )
    .field("setup_code", code.digits().into_bytes())
    .field("m1_home_pake", m1.to_bytes())
    .field("m2_device_pake", m2.to_bytes())
    .field("m3_device_confirm", m3.to_bytes())
    .field("m4_home_confirm", m4.to_bytes())
    .field("qr", qr.to_string().into_bytes());
    let s = stored(&v);
    let decode = |n| PairingMessage::decode(s.get(n)).unwrap();
    assert_eq!(decode("m1_home_pake"), m1);
    assert_eq!(decode("m2_device_pake"), m2);
    let (PairingMessage::Confirm(c3), PairingMessage::Confirm(c4)) =
        (decode("m3_device_confirm"), decode("m4_home_confirm"))
    else {
        panic!("confirmations decode to confirmations")
    };
    assert_eq!(home.accept(&c3), Ok(PairingPayload::Device(dk)));
    assert_eq!(device.accept(&c4), Ok(PairingPayload::Home(hk)));
    let q = QrPayload::parse(std::str::from_utf8(s.get("qr")).unwrap()).unwrap();
    assert_eq!(q, qr);
}

#[test]
fn every_body_variant_has_a_vector() {
    // Guards against a new message type without a vector: each file's envelope decodes, and
    // together they cover every Body variant.
    let mut kinds = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir()).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for (n, b) in parse(&text) {
            if n == "envelope" {
                let env = Envelope::decode(&b).unwrap();
                kinds.insert(codec::encode(&env.body)[1]);
            }
        }
    }
    // The second byte of a body is its kind (1..=14 fit a one-byte CBOR integer).
    let all: std::collections::BTreeSet<u8> = (1..=14).collect();
    assert_eq!(kinds, all);
}
