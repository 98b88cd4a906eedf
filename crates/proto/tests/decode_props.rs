//! Property tests of the decoders: they never panic on random or mutated bytes, every message
//! round-trips, every non-canonical re-encoding and every oversized input is refused.
//!
//! The acceptance criterion "decoders survive 10^6 random and mutated inputs without
//! panicking" is [`decoders_survive_a_million_random_and_mutated_inputs`]: a plain seeded
//! loop, because proptest's per-case overhead would make 10^6 cases too slow in a debug build.

mod common;

use common::*;
use doorward_proto::codec::{self, DecodeError};
use doorward_proto::pairing::{PairingMessage, MAX_PAIRING_MESSAGE_BYTES};
use doorward_proto::session::{SessionAccept, SessionHello};
use doorward_proto::*;
use minicbor::{Decode, Encode};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Inputs the million-input test must push through the decoders.
const MILLION: u64 = 1_000_000;

/// Decodes as `T`; whatever is accepted must be exactly the canonical encoding of the value.
fn check<T>(bytes: &[u8], limit: usize) -> bool
where
    T: for<'b> Decode<'b, ()> + Encode<()> + std::fmt::Debug,
{
    match codec::decode::<T>(bytes, limit) {
        Ok(v) => {
            assert_eq!(codec::encode(&v), bytes, "accepted a non-canonical {v:?}");
            true
        }
        Err(_) => false,
    }
}

fn check_envelope(bytes: &[u8]) -> bool {
    match Envelope::decode(bytes) {
        Ok(env) => {
            assert_eq!(env.to_bytes(), bytes);
            // Verification of whatever decoded must not panic either.
            let _ = env.verify_sig(&signer().public());
            let _ = env.verify_mac(&session_key());
            let _ = env.body.device();
            true
        }
        Err(_) => false,
    }
}

fn check_pairing(bytes: &[u8]) -> bool {
    match PairingMessage::decode(bytes) {
        Ok(m) => {
            assert_eq!(m.to_bytes(), bytes);
            true
        }
        Err(_) => false,
    }
}

/// Every decoder under test, by the kind of the seed encodings it is fed.
const DECODERS: &[fn(&[u8]) -> bool] = &[
    check_envelope,
    |b| check::<Body>(b, MAX_ENVELOPE_BYTES),
    |b| check::<Signed<UnlockNonce>>(b, MAX_ENVELOPE_BYTES),
    |b| check::<Signed<WitnessAttestation>>(b, MAX_ENVELOPE_BYTES),
    |b| check::<Signed<UnlockContext>>(b, MAX_ENVELOPE_BYTES),
    |b| check::<Signed<IssuerCert>>(b, MAX_ENVELOPE_BYTES),
    |b| check::<UnlockCommand>(b, MAX_ENVELOPE_BYTES),
    |b| check::<LockReport>(b, MAX_ENVELOPE_BYTES),
    |b| check::<CameraProof>(b, MAX_ENVELOPE_BYTES),
    |b| check::<Revocation>(b, MAX_ENVELOPE_BYTES),
    |b| check::<Alarm>(b, MAX_ENVELOPE_BYTES),
    |b| check::<SessionHello>(b, MAX_ENVELOPE_BYTES),
    |b| check::<SessionAccept>(b, MAX_ENVELOPE_BYTES),
    check_pairing,
];

/// Valid encodings of every decoder's type, tagged with the decoder's index.
fn seed_pool(rng: &mut ChaCha20Rng) -> Vec<(usize, Vec<u8>)> {
    let mut pool = Vec::new();
    for k in 0..BODY_VARIANTS {
        for _ in 0..8 {
            let b = body_of(rng, k);
            pool.push((1, codec::encode(&b)));
            let env = if k % 2 == 0 {
                Envelope::signed(b, &signer())
            } else {
                Envelope::maced(b, &session_key())
            };
            pool.push((0, env.to_bytes()));
        }
    }
    for _ in 0..8 {
        let s = signer();
        pool.push((2, codec::encode(&Signed::sign(unlock_nonce(rng), &s))));
        pool.push((3, codec::encode(&Signed::sign(attestation(rng), &s))));
        pool.push((4, codec::encode(&Signed::sign(context(rng), &s))));
        pool.push((5, codec::encode(&Signed::sign(issuer_cert(rng), &s))));
        pool.push((6, codec::encode(&unlock_command(rng))));
        pool.push((7, codec::encode(&lock_report(rng))));
        pool.push((8, codec::encode(&camera_proof(rng))));
        pool.push((9, codec::encode(&revocation(rng))));
        pool.push((10, codec::encode(&alarm(rng))));
        pool.push((11, codec::encode(&hello(rng))));
        pool.push((12, codec::encode(&accept(rng))));
        pool.push((13, pairing_message(rng).to_bytes()));
    }
    for (k, bytes) in &pool {
        assert!(
            DECODERS[*k](bytes),
            "a seed encoding of kind {k} does not decode"
        );
    }
    pool
}

#[test]
fn decoders_survive_a_million_random_and_mutated_inputs() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xD00B);
    let pool = seed_pool(&mut rng);
    let (mut random, mut mutated, mut accepted) = (0u64, 0u64, 0u64);
    for i in 0..MILLION {
        let (kind, input) = if i % 4 == 0 {
            random += 1;
            (
                below(&mut rng, DECODERS.len() as u64) as usize,
                random_input(&mut rng),
            )
        } else {
            mutated += 1;
            let (k, seed) = &pool[below(&mut rng, pool.len() as u64) as usize];
            (*k, mutate(&mut rng, seed))
        };
        // The decoder for the seed's own type, and the envelope decoder every device runs on
        // every input.
        accepted += DECODERS[kind](&input) as u64;
        if kind != 0 {
            accepted += check_envelope(&input) as u64;
        }
    }
    eprintln!("{random} random and {mutated} mutated inputs, {accepted} decodes accepted");
    assert_eq!(random + mutated, MILLION);
    assert!(random >= MILLION / 5 && mutated >= MILLION / 2);
    // Some mutations land on another valid value (a changed sequence number, say): the
    // canonical-form assertions above ran on those too.
    assert!(
        accepted > 0,
        "no mutated input decoded: the mutations are too destructive"
    );
}

/// Every header position in a canonical CBOR item: where it starts, its major type, its
/// argument, the header's length and where the item ends.
#[derive(Clone, Copy, Debug)]
struct Item {
    start: usize,
    major: u8,
    arg: u64,
    header_len: usize,
    end: usize,
}

fn walk(b: &[u8], pos: usize, out: &mut Vec<Item>) -> usize {
    let ib = b[pos];
    let (major, ai) = (ib >> 5, ib & 31);
    let (arg, header_len) = match ai {
        0..=23 => (ai as u64, 1),
        24 => (b[pos + 1] as u64, 2),
        25 => (u16::from_be_bytes([b[pos + 1], b[pos + 2]]) as u64, 3),
        26 => (
            u32::from_be_bytes(b[pos + 1..pos + 5].try_into().unwrap()) as u64,
            5,
        ),
        27 => (
            u64::from_be_bytes(b[pos + 1..pos + 9].try_into().unwrap()),
            9,
        ),
        _ => panic!("canonical encodings have no indefinite or reserved headers"),
    };
    let idx = out.len();
    out.push(Item {
        start: pos,
        major,
        arg,
        header_len,
        end: 0,
    });
    let mut p = pos + header_len;
    match major {
        2 | 3 => p += arg as usize,
        4 => {
            for _ in 0..arg {
                p = walk(b, p, out);
            }
        }
        5 => {
            for _ in 0..2 * arg {
                p = walk(b, p, out);
            }
        }
        6 => p = walk(b, p, out),
        _ => {}
    }
    out[idx].end = p;
    p
}

fn header(major: u8, arg: u64, width: usize) -> Vec<u8> {
    let m = major << 5;
    match width {
        1 => vec![m | arg as u8],
        2 => vec![m | 24, arg as u8],
        3 => [&[m | 25][..], &(arg as u16).to_be_bytes()].concat(),
        5 => [&[m | 26][..], &(arg as u32).to_be_bytes()].concat(),
        _ => [&[m | 27][..], &arg.to_be_bytes()].concat(),
    }
}

/// Re-encodes the same value another way: a wider header than needed, or an indefinite-length
/// array, byte string or text string. None when the chosen item allows neither.
fn non_canonical(b: &[u8], item: &Item, indefinite: bool) -> Option<Vec<u8>> {
    let hdr = item.start..item.start + item.header_len;
    if indefinite {
        return match item.major {
            4 => {
                let mut v = b[..item.start].to_vec();
                v.push(0x9f);
                v.extend_from_slice(&b[hdr.end..item.end]);
                v.push(0xff);
                v.extend_from_slice(&b[item.end..]);
                Some(v)
            }
            2 | 3 => {
                // One definite chunk inside an indefinite string.
                let mut v = b[..item.start].to_vec();
                v.push((item.major << 5) | 31);
                v.extend_from_slice(&b[item.start..item.end]);
                v.push(0xff);
                v.extend_from_slice(&b[item.end..]);
                Some(v)
            }
            _ => None,
        };
    }
    // Simple values and floats (major 7) have no integer argument to widen.
    if item.major == 7 {
        return None;
    }
    let wider = match item.header_len {
        1 => 2,
        2 => 3,
        3 => 5,
        5 => 9,
        _ => return None,
    };
    let mut v = b[..item.start].to_vec();
    v.extend_from_slice(&header(item.major, item.arg, wider));
    v.extend_from_slice(&b[hdr.end..]);
    Some(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn every_message_round_trips(seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let env = envelope(&mut rng);
        let bytes = env.to_bytes();
        prop_assert_eq!(Envelope::decode(&bytes).unwrap(), env.clone());
        prop_assert_eq!(codec::decode::<Body>(&codec::encode(&env.body), MAX_ENVELOPE_BYTES).unwrap(), env.body.clone());
        match &env.auth {
            Auth::Sig(_) => prop_assert!(env.verify_sig(&signer().public()).is_ok()),
            Auth::Mac { .. } => prop_assert!(env.verify_mac(&session_key()).is_ok()),
        }
        let n = Signed::sign(unlock_nonce(&mut rng), &signer());
        prop_assert_eq!(codec::decode::<Signed<UnlockNonce>>(&codec::encode(&n), 1024).unwrap(), n);
        let c = Signed::sign(context(&mut rng), &signer());
        prop_assert_eq!(codec::decode::<Signed<UnlockContext>>(&codec::encode(&c), 1024).unwrap(), c);
        let p = pairing_message(&mut rng);
        prop_assert_eq!(PairingMessage::decode(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn non_canonical_re_encodings_are_refused(seed in any::<u64>(), pick in any::<u64>(), indefinite in any::<bool>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let env = envelope(&mut rng);
        let bytes = env.to_bytes();
        let mut items = Vec::new();
        prop_assert_eq!(walk(&bytes, 0, &mut items), bytes.len());
        // Try items from `pick` on until one can be re-encoded the chosen way.
        let found = (0..items.len())
            .find_map(|j| non_canonical(&bytes, &items[(pick as usize + j) % items.len()], indefinite));
        let other = found.expect("every envelope has arrays and integers");
        prop_assert_ne!(&other, &bytes);
        prop_assert!(Envelope::decode(&other).is_err());
        prop_assert!(codec::decode::<Envelope>(&other, MAX_ENVELOPE_BYTES).is_err());
    }
}

#[test]
fn every_body_variant_round_trips() {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    for k in 0..BODY_VARIANTS {
        for _ in 0..50 {
            let b = body_of(&mut rng, k);
            let env = Envelope::signed(b, &signer());
            let back = Envelope::decode(&env.to_bytes()).unwrap();
            assert_eq!(back, env);
            assert_eq!(back.verify_sig(&signer().public()), Ok(()));
        }
    }
}

#[test]
fn known_non_canonical_forms_are_refused() {
    let ack = Body::Ack(Ack {
        device: Id::new("a").unwrap(),
        seq: 5,
    });
    // A variant is [kind, [fields...]]: [12, [["a", 5]]].
    let canonical = codec::encode(&ack);
    assert_eq!(canonical, [0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x05]);
    assert_eq!(
        codec::decode::<Body>(&canonical, 64).unwrap(),
        ack,
        "the canonical form decodes"
    );
    let refused: &[(&str, &[u8])] = &[
        (
            "integer in a wider header",
            &[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x18, 0x05],
        ),
        (
            "integer in an 8-byte header",
            &[
                0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x1b, 0, 0, 0, 0, 0, 0, 0, 5,
            ],
        ),
        (
            "indefinite-length array",
            &[0x9f, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x05, 0xff],
        ),
        (
            "indefinite-length text",
            &[0x82, 0x0c, 0x81, 0x82, 0x7f, 0x61, 0x61, 0xff, 0x05],
        ),
        (
            "array length in a wider header",
            &[0x98, 0x02, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x05],
        ),
        (
            "extra array element",
            &[0x83, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x05, 0x00],
        ),
        (
            "tagged value",
            &[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0xc1, 0x05],
        ),
        ("map instead of array", &[0xa2, 0x00, 0x0c, 0x01, 0x81]),
        (
            "extra element in the fields array",
            &[0x82, 0x0c, 0x82, 0x82, 0x61, 0x61, 0x05, 0x00],
        ),
        (
            "negative integer",
            &[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x25],
        ),
        (
            "float",
            &[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0xf9, 0x45, 0x00],
        ),
        (
            "trailing byte",
            &[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x05, 0x00],
        ),
        ("truncated", &[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61]),
        ("empty", &[]),
    ];
    for (what, bytes) in refused {
        assert!(
            codec::decode::<Body>(bytes, 64).is_err(),
            "{what} was accepted"
        );
    }
    assert_eq!(
        codec::decode::<Body>(&[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x05, 0x00], 64),
        Err(DecodeError::Trailing(1))
    );
    assert_eq!(
        codec::decode::<Body>(&[0x82, 0x0c, 0x81, 0x82, 0x61, 0x61, 0x18, 0x05], 64),
        Err(DecodeError::NotCanonical)
    );
}

#[test]
fn oversized_inputs_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    // Size first, before any decoding.
    let big = vec![0x80; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        Envelope::decode(&big),
        Err(OpenError::Decode(DecodeError::TooLarge {
            len: MAX_ENVELOPE_BYTES + 1,
            limit: MAX_ENVELOPE_BYTES
        }))
    );
    assert!(matches!(
        PairingMessage::decode(&vec![0x80; MAX_PAIRING_MESSAGE_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    // Field limits inside a well-formed envelope that fits the size limit.
    let mut too_many_frames = camera_proof(&mut rng);
    too_many_frames.frames = vec![Digest::ZERO; MAX_FRAMES_PER_PROOF + 1];
    let mut low = lock_report(&mut rng);
    low.battery_pct = 101;
    let mut revs = revocation(&mut rng);
    revs.items = vec![Revoked::Grant(GrantId([0; 16])); MAX_REVOCATIONS_PER_MESSAGE + 1];
    let mut al = alarm(&mut rng);
    al.detail = "x".repeat(MAX_TEXT_BYTES + 1);
    let mut cmd = unlock_command(&mut rng);
    cmd.grant = vec![0; MAX_GRANT_BYTES + 1];
    let over = [
        Body::CameraProof(too_many_frames),
        Body::LockReport(low),
        Body::Revocation(revs),
        Body::Alarm(al),
        Body::UnlockCommand(Box::new(cmd)),
    ];
    for b in over {
        let bytes = Envelope::signed(b, &signer()).to_bytes();
        assert!(bytes.len() <= MAX_ENVELOPE_BYTES);
        assert!(
            matches!(
                Envelope::decode(&bytes),
                Err(OpenError::Decode(DecodeError::Invalid(_)))
            ),
            "{:?}",
            Envelope::decode(&bytes)
        );
    }
    // At the limits exactly, they pass.
    let mut full = camera_proof(&mut rng);
    full.frames = vec![Digest::ZERO; MAX_FRAMES_PER_PROOF];
    let mut al = alarm(&mut rng);
    al.detail = "x".repeat(MAX_TEXT_BYTES);
    for b in [Body::CameraProof(full), Body::Alarm(al)] {
        assert!(Envelope::decode(&Envelope::signed(b, &signer()).to_bytes()).is_ok());
    }
}

#[test]
fn grant_verify_survives_random_and_mutated_tokens() {
    use doorward_proto::grant::{self, GrantSpec, Purpose};
    const CASES: u64 = 10_000;
    let mut rng = ChaCha20Rng::seed_from_u64(0x6A);
    let issuer = KeyPair::from_seed(&[2; 32]);
    let driver = KeyPair::from_seed(&[3; 32]);
    let lock = Id::new("lock-1").unwrap();
    let spec = GrantSpec {
        id: GrantId([7; 16]),
        home: Id::new("home-1").unwrap(),
        lock: lock.clone(),
        purpose: Purpose::Delivery(Id::new("d-1").unwrap()),
        carrier: Some(Id::new("acme").unwrap()),
        driver: driver.public(),
        not_before_ms: 1_000,
        not_after_ms: 10_000,
        max_open_ms: 120_000,
    };
    let token = grant::issue(&spec, &issuer, &mut rng).unwrap();
    let narrowed =
        grant::attenuate_window(&token, &issuer.public(), 2_000, 3_000, &mut rng).unwrap();
    assert!(grant::verify(&token, &issuer.public(), &lock, &driver.public(), 5_000).is_ok());
    let seeds = [token, narrowed];
    let mut ran = 0u64;
    for i in 0..CASES {
        let input = if i % 5 == 0 {
            random_input(&mut rng)
        } else {
            mutate(&mut rng, &seeds[i as usize % 2])
        };
        // A mutation that keeps a valid token must still bind it to what it was issued for.
        if let Ok(v) = grant::verify(&input, &issuer.public(), &lock, &driver.public(), 2_500) {
            assert_eq!(v, spec);
        }
        ran += 1;
    }
    assert_eq!(ran, CASES);
}
