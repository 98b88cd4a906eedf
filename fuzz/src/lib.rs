//! The bodies of Doorward's fuzz targets, one function per target.
//!
//! `cargo fuzz run <target>` calls them from `fuzz_targets/`; the normal test
//! `crates/proto/tests/fuzz_corpus.rs` includes this file and replays every corpus file through
//! the same functions, so the corpus is checked on every `cargo test` without a nightly
//! toolchain. A target panics only when it finds a bug: a decoder that accepts a
//! non-canonical encoding, or a grant that verifies for something it does not bind.
//!
//! Depends only on `doorward-proto` and `rand_chacha` (a fixed-seed RNG for the PAKE).

use doorward_proto::codec;
use doorward_proto::grant;
use doorward_proto::pairing::{
    verhoeff_digit, DeviceKeys, DeviceKind, HomeKeys, PairingMessage, PairingPayload, PairingRole,
    PairingStart, QrPayload, SetupCode,
};
use doorward_proto::session::SessionKey;
use doorward_proto::{Body, Envelope, Id, KeyPair, MAX_ENVELOPE_BYTES};
use rand_chacha::rand_core::SeedableRng;

/// The device key envelopes in the corpus are signed with.
pub fn signer() -> KeyPair {
    KeyPair::from_seed(&[1; 32])
}

/// The session key MAC'd envelopes in the corpus use.
pub fn session_key() -> SessionKey {
    SessionKey::from_parts(7, [9; 32])
}

/// The issuing key grants in the corpus are rooted at.
pub fn issuer() -> KeyPair {
    KeyPair::from_seed(&[2; 32])
}

/// The driver grants in the corpus are bound to.
pub fn driver() -> KeyPair {
    KeyPair::from_seed(&[3; 32])
}

/// The lock grants in the corpus are bound to.
pub fn lock() -> Id {
    Id::new("lock-1").expect("valid identifier")
}

/// The time at which [`grant_verify`] checks grants (inside the corpus grants' window).
pub const GRANT_NOW_MS: u64 = 5_000;

/// The setup code [`pairing_msg`] pairs with: `1234567890` and its check digit.
pub fn setup_code() -> SetupCode {
    let digits = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
    SetupCode::parse(&format!("1234567890{}", verhoeff_digit(&digits)))
        .expect("a code with its own check digit parses")
}

/// Target `envelope_decode`: the envelope decoder every device and the server run on every
/// message, then signature, MAC and the nested signed parts.
pub fn envelope_decode(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.to_bytes(), data, "accepted a non-canonical envelope");
        let _ = env.verify_sig(&signer().public());
        let _ = env.verify_mac(&session_key());
        let _ = env.body.device();
        let k = signer().public();
        match &env.body {
            Body::UnlockCommand(c) => {
                let _ = c.issuer.verify(&k);
                let _ = c.context.verify(&k);
                let _ = c.witness.verify(&k);
                let _ = grant::verify_cert(&c.issuer, &k, &lock(), GRANT_NOW_MS);
                let _ = grant::verify(
                    &c.grant,
                    &issuer().public(),
                    &lock(),
                    &c.context.body.driver,
                    GRANT_NOW_MS,
                );
            }
            Body::UnlockNonce(n) => {
                let _ = n.verify(&k);
            }
            Body::WitnessAttestation(w) => {
                let _ = w.verify(&k);
            }
            Body::WitnessRequest(w) => {
                let _ = w.nonce.verify(&k);
            }
            _ => {}
        }
    }
    // The bare body decoder too (used for checkpoint chains and the audit log).
    if let Ok(b) = codec::decode::<Body>(data, MAX_ENVELOPE_BYTES) {
        assert_eq!(codec::encode(&b), data, "accepted a non-canonical body");
    }
}

/// Target `grant_verify`: a lock verifying a grant token for its own lock and driver.
pub fn grant_verify(data: &[u8]) {
    let driver = driver().public();
    if let Ok(v) = grant::verify(data, &issuer().public(), &lock(), &driver, GRANT_NOW_MS) {
        // Whatever verifies must bind exactly what the lock asked for.
        assert_eq!(v.lock, lock());
        assert_eq!(v.driver, driver);
        assert!(v.not_before_ms <= GRANT_NOW_MS && GRANT_NOW_MS < v.not_after_ms);
    }
}

/// Target `pairing_msg`: decoding a pairing message, then feeding it to both sides of a PAKE
/// on [`setup_code`].
pub fn pairing_msg(data: &[u8]) {
    let Ok(m) = PairingMessage::decode(data) else {
        return;
    };
    assert_eq!(
        m.to_bytes(),
        data,
        "accepted a non-canonical pairing message"
    );
    let code = setup_code();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
    match m {
        PairingMessage::Pake(p) => {
            for role in [PairingRole::Home, PairingRole::Device] {
                let (start, _) = PairingStart::new(role, &code, &p.device, &mut rng);
                if let Ok(fin) = start.finish(&p) {
                    let payload = match role {
                        PairingRole::Home => PairingPayload::Home(HomeKeys {
                            home: Id::new("home-1").expect("valid identifier"),
                            root: issuer().public(),
                            server: signer().public(),
                            witness: None,
                        }),
                        PairingRole::Device => PairingPayload::Device(DeviceKeys {
                            kind: DeviceKind::Lock,
                            device: p.device.clone(),
                            key: signer().public(),
                        }),
                    };
                    assert!(fin.confirm(payload).is_ok());
                }
            }
        }
        PairingMessage::Confirm(c) => {
            let dev = lock();
            let (h, ha) = PairingStart::new(PairingRole::Home, &code, &dev, &mut rng);
            let (d, db) = PairingStart::new(PairingRole::Device, &code, &dev, &mut rng);
            let (Ok(home), Ok(device)) = (h.finish(&db), d.finish(&ha)) else {
                panic!("an honest PAKE failed");
            };
            // The sides' keys come from fresh randomness the input cannot know, so no
            // confirmation from the input may verify.
            assert!(home.accept(&c).is_err(), "forged confirmation accepted");
            assert!(device.accept(&c).is_err(), "forged confirmation accepted");
        }
    }
}

/// Target `qr_parse`: the QR payload parser and the setup-code parser, on any text.
pub fn qr_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = QrPayload::parse(s) {
        assert_eq!(
            q.format(),
            s,
            "accepted a QR payload in a non-canonical form"
        );
    }
    if let Ok(c) = SetupCode::parse(s) {
        assert_eq!(SetupCode::parse(&c.to_string()), Ok(c));
    }
}
