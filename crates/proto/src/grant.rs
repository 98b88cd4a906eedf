//! Access grants: biscuit tokens rooted at a home's delegated issuing key.
//!
//! Chain of trust: the home root key signs an [`IssuerCert`] delegating issuing to a server's
//! issuing key for a time; the issuing key signs a grant's authority block; a carrier may
//! append blocks that narrow it (a shorter window), never widen it (biscuit's attenuation).
//! The lock checks the certificate, then the token with the issuing key, with every fact
//! supplied by the lock itself: which lock it is, its own estimate of the time, and the key
//! that signed its nonce.
//!
//! A grant is bound to one lock, one delivery or guest visit, one driver key, a time window,
//! one open cycle (its [`GrantId`], spent at the lock) and a maximum open time.
//!
//! Biscuit settings (BRIEF I2): time is a fact the verifier supplies (`now_ms`), never the
//! library's clock; `max_time` is raised far above its 1 ms default so results do not depend on
//! machine speed, while facts and iterations are capped; ephemeral block keys come from the
//! caller's RNG.

use std::collections::HashMap;
use std::time::Duration;

use biscuit_auth::builder::{Algorithm, BlockBuilder, Term};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit, KeyPair as BKeyPair, PrivateKey};
use rand_core::CryptoRngCore;

use crate::keys::KeyPair;
use crate::msg::IssuerCert;
use crate::types::{GrantId, Id, PubKey};
use crate::MAX_GRANT_BYTES;

/// Most facts a grant's evaluation may produce.
pub const MAX_GRANT_FACTS: u64 = 64;
/// Most rule iterations a grant's evaluation may take.
pub const MAX_GRANT_ITERATIONS: u64 = 16;
/// Most blocks (authority plus attenuations) a grant may have.
pub const MAX_GRANT_BLOCKS: usize = 4;
/// Wall-clock ceiling on one evaluation: a safety net only, far above any real evaluation,
/// so that a slow machine never turns a valid grant into a denial.
pub const GRANT_EVAL_CEILING: Duration = Duration::from_secs(1);

/// What a grant is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A delivery, by its identifier.
    Delivery(Id),
    /// A guest or service visit, by its identifier.
    Visit(Id),
}

/// Everything a grant binds. Issued by the server's issuing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantSpec {
    /// The grant's identifier: one open cycle.
    pub id: GrantId,
    /// The home.
    pub home: Id,
    /// The one lock it opens.
    pub lock: Id,
    /// The delivery or visit.
    pub purpose: Purpose,
    /// The carrier it was issued to, if any (guests have none).
    pub carrier: Option<Id>,
    /// The one driver (or guest) key that may use it.
    pub driver: PubKey,
    /// Start of the window, ms since the Unix epoch.
    pub not_before_ms: u64,
    /// End of the window (exclusive).
    pub not_after_ms: u64,
    /// Longest the door may stay open in this cycle.
    pub max_open_ms: u64,
}

/// A grant that verified, with the bounds the lock enforces.
pub type VerifiedGrant = GrantSpec;

/// Why a grant was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// Larger than [`MAX_GRANT_BYTES`] or more than [`MAX_GRANT_BLOCKS`] blocks.
    #[error("grant exceeds the size or block limit")]
    TooLarge,
    /// Not a valid token, or not signed by the issuing key.
    #[error("grant is not a valid token from this issuing key: {0}")]
    Invalid(String),
    /// A check failed: another lock, another driver, outside the window.
    #[error("grant does not allow this unlock: {0}")]
    Refused(Refusal),
    /// The issuing key's certificate is not valid for this home at this time.
    #[error("issuing key certificate is not valid: {0}")]
    Cert(&'static str),
}

/// Which of a grant's bounds refused an unlock.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Refusal {
    /// The grant is bound to another lock.
    #[error("bound to another lock")]
    WrongLock,
    /// The grant is bound to another driver key.
    #[error("bound to another driver")]
    WrongDriver,
    /// The time is outside the grant's window (or a narrower attenuated one).
    #[error("outside its time window")]
    OutsideWindow,
    /// Anything else (no policy matched, a check added by an attenuation block).
    #[error("{0}")]
    Other(String),
}

/// Positions of the authority block's checks, as written by [`issue`]: biscuit reports a
/// failed check by block and position, which names the bound that refused.
const CHECK_LOCK: u32 = 0;
const CHECK_DRIVER: u32 = 1;
const CHECK_WINDOW: u32 = 2;

fn refusal(e: biscuit_auth::error::Token) -> Refusal {
    use biscuit_auth::error::{FailedCheck, Logic, Token};
    let checks = match &e {
        Token::FailedLogic(Logic::Unauthorized { checks, .. })
        | Token::FailedLogic(Logic::NoMatchingPolicy { checks }) => checks.as_slice(),
        _ => return Refusal::Other(e.to_string()),
    };
    match checks.first() {
        Some(FailedCheck::Block(b)) if b.block_id == 0 => match b.check_id {
            CHECK_LOCK => Refusal::WrongLock,
            CHECK_DRIVER => Refusal::WrongDriver,
            CHECK_WINDOW => Refusal::OutsideWindow,
            _ => Refusal::Other(b.rule.clone()),
        },
        // Attenuation blocks written by [`attenuate_window`] hold one window check.
        Some(FailedCheck::Block(b)) if b.rule.contains("now_ms") => Refusal::OutsideWindow,
        Some(other) => Refusal::Other(other.to_string()),
        None => Refusal::Other(e.to_string()),
    }
}

fn bkey(key: &KeyPair) -> BKeyPair {
    let sk = PrivateKey::from_bytes(&key.seed()[..], Algorithm::Ed25519)
        .expect("an Ed25519 seed is always a valid biscuit private key");
    BKeyPair::from(&sk)
}

fn bpub(key: &PubKey) -> Result<biscuit_auth::PublicKey, GrantError> {
    biscuit_auth::PublicKey::from_bytes(&key.0, Algorithm::Ed25519)
        .map_err(|e| GrantError::Invalid(e.to_string()))
}

fn int(v: u64) -> Term {
    // Times and durations fit in i64 until the year 292 million.
    Term::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Issues a grant signed by the issuing key, with block keys from `rng`.
pub fn issue(
    spec: &GrantSpec,
    issuer: &KeyPair,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, GrantError> {
    let (ptype, pid) = match &spec.purpose {
        Purpose::Delivery(d) => ("delivery", d),
        Purpose::Visit(v) => ("visit", v),
    };
    let mut p: HashMap<String, Term> = HashMap::new();
    p.insert("id".into(), Term::Bytes(spec.id.0.to_vec()));
    p.insert("home".into(), Term::Str(spec.home.to_string()));
    p.insert("lock".into(), Term::Str(spec.lock.to_string()));
    p.insert("ptype".into(), Term::Str(ptype.into()));
    p.insert("pid".into(), Term::Str(pid.to_string()));
    p.insert(
        "carrier".into(),
        Term::Str(
            spec.carrier
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
        ),
    );
    p.insert("driver".into(), Term::Bytes(spec.driver.0.to_vec()));
    p.insert("nb".into(), int(spec.not_before_ms));
    p.insert("na".into(), int(spec.not_after_ms));
    p.insert("max_open".into(), int(spec.max_open_ms));
    let code = r#"
        right("unlock");
        grant({id});
        home({home});
        bound_lock({lock});
        purpose({ptype}, {pid});
        carrier({carrier});
        bound_driver({driver});
        window({nb}, {na});
        max_open_ms({max_open});
        check if at_lock({lock});
        check if presented_driver({driver});
        check if now_ms($t), $t >= {nb}, $t < {na};
    "#;
    let builder = Biscuit::builder()
        .code_with_params(code, p, HashMap::new())
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    let token = builder
        .build_with_rng(
            &bkey(issuer),
            biscuit_auth::datalog::SymbolTable::default(),
            &mut RngAdapter(rng),
        )
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    token
        .to_vec()
        .map_err(|e| GrantError::Invalid(e.to_string()))
}

/// Narrows a grant's window (a carrier handing it to its driver). The result can only be
/// more restrictive: every earlier check still applies.
pub fn attenuate_window(
    token: &[u8],
    issuer: &PubKey,
    not_before_ms: u64,
    not_after_ms: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, GrantError> {
    let t = parse(token, issuer)?;
    let mut p: HashMap<String, Term> = HashMap::new();
    p.insert("nb".into(), int(not_before_ms));
    p.insert("na".into(), int(not_after_ms));
    let block = BlockBuilder::new()
        .code_with_params(
            "check if now_ms($t), $t >= {nb}, $t < {na};",
            p,
            HashMap::new(),
        )
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    let next = BKeyPair::new_with_rng(Algorithm::Ed25519, &mut RngAdapter(rng));
    let t = t
        .append_with_keypair(&next, block)
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    let bytes = t.to_vec().map_err(|e| GrantError::Invalid(e.to_string()))?;
    if bytes.len() > MAX_GRANT_BYTES || t.block_count() > MAX_GRANT_BLOCKS {
        return Err(GrantError::TooLarge);
    }
    Ok(bytes)
}

fn parse(token: &[u8], issuer: &PubKey) -> Result<Biscuit, GrantError> {
    if token.len() > MAX_GRANT_BYTES {
        return Err(GrantError::TooLarge);
    }
    let t = Biscuit::from(token, bpub(issuer)?).map_err(|e| GrantError::Invalid(e.to_string()))?;
    if t.block_count() > MAX_GRANT_BLOCKS {
        return Err(GrantError::TooLarge);
    }
    Ok(t)
}

/// Checks an issuing key's certificate against the home root key at time `now_ms`.
pub fn verify_cert<'a>(
    cert: &'a crate::msg::Signed<IssuerCert>,
    home_root: &PubKey,
    home: &Id,
    now_ms: u64,
) -> Result<&'a IssuerCert, GrantError> {
    let c = cert
        .verify(home_root)
        .map_err(|_| GrantError::Cert("not signed by the home root key"))?;
    if &c.home != home {
        return Err(GrantError::Cert("for another home"));
    }
    if now_ms < c.not_before_ms || now_ms >= c.not_after_ms {
        return Err(GrantError::Cert("outside its validity"));
    }
    Ok(c)
}

/// Verifies a grant for an unlock at `lock` by the holder of `driver` at `now_ms` (the
/// verifier's own estimate of the time), and returns what it binds.
pub fn verify(
    token: &[u8],
    issuer: &PubKey,
    lock: &Id,
    driver: &PubKey,
    now_ms: u64,
) -> Result<VerifiedGrant, GrantError> {
    let t = parse(token, issuer)?;
    let mut p: HashMap<String, Term> = HashMap::new();
    p.insert("lock".into(), Term::Str(lock.to_string()));
    p.insert("driver".into(), Term::Bytes(driver.0.to_vec()));
    p.insert("now".into(), int(now_ms));
    let mut authz = AuthorizerBuilder::new()
        .code_with_params(
            r#"at_lock({lock}); presented_driver({driver}); now_ms({now});
               allow if right("unlock"), bound_lock({lock}), bound_driver({driver});"#,
            p,
            HashMap::new(),
        )
        .map_err(|e| GrantError::Invalid(e.to_string()))?
        .set_limits(AuthorizerLimits {
            max_facts: MAX_GRANT_FACTS,
            max_iterations: MAX_GRANT_ITERATIONS,
            max_time: GRANT_EVAL_CEILING,
        })
        .build(&t)
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    authz
        .authorize()
        .map_err(|e| GrantError::Refused(refusal(e)))?;
    read_spec(&mut authz)
}

fn read_spec(a: &mut biscuit_auth::Authorizer) -> Result<GrantSpec, GrantError> {
    fn one<T: TryFrom<biscuit_auth::builder::Fact, Error = biscuit_auth::error::Token>>(
        a: &mut biscuit_auth::Authorizer,
        rule: &str,
    ) -> Result<T, GrantError> {
        let mut v: Vec<T> = a
            .query(rule)
            .map_err(|e| GrantError::Invalid(e.to_string()))?;
        if v.len() != 1 {
            return Err(GrantError::Invalid(format!(
                "expected exactly one answer to {rule}"
            )));
        }
        Ok(v.remove(0))
    }
    let bad = |what: &'static str| GrantError::Invalid(format!("bad {what}"));
    let (id,): (Vec<u8>,) = one(a, "q($x) <- grant($x)")?;
    let (home,): (String,) = one(a, "q($x) <- home($x)")?;
    let (lock,): (String,) = one(a, "q($x) <- bound_lock($x)")?;
    let (ptype, pid): (String, String) = one(a, "q($x, $y) <- purpose($x, $y)")?;
    let (carrier,): (String,) = one(a, "q($x) <- carrier($x)")?;
    let (driver,): (Vec<u8>,) = one(a, "q($x) <- bound_driver($x)")?;
    let (nb, na): (i64, i64) = one(a, "q($x, $y) <- window($x, $y)")?;
    let (max_open,): (i64,) = one(a, "q($x) <- max_open_ms($x)")?;
    let pid = Id::new(pid).map_err(|_| bad("purpose id"))?;
    Ok(GrantSpec {
        id: GrantId(id.try_into().map_err(|_| bad("grant id"))?),
        home: Id::new(home).map_err(|_| bad("home"))?,
        lock: Id::new(lock).map_err(|_| bad("lock"))?,
        purpose: match ptype.as_str() {
            "delivery" => Purpose::Delivery(pid),
            "visit" => Purpose::Visit(pid),
            _ => return Err(bad("purpose")),
        },
        carrier: if carrier.is_empty() {
            None
        } else {
            Some(Id::new(carrier).map_err(|_| bad("carrier"))?)
        },
        driver: PubKey(driver.try_into().map_err(|_| bad("driver key"))?),
        not_before_ms: u64::try_from(nb).map_err(|_| bad("window"))?,
        not_after_ms: u64::try_from(na).map_err(|_| bad("window"))?,
        max_open_ms: u64::try_from(max_open).map_err(|_| bad("max_open_ms"))?,
    })
}

/// biscuit-auth 6 takes `rand` 0.8 RNG traits; ours are `rand_core` 0.6, the same traits.
struct RngAdapter<'a, R: CryptoRngCore>(&'a mut R);
impl<R: CryptoRngCore> rand_core::RngCore for RngAdapter<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}
impl<R: CryptoRngCore> rand_core::CryptoRng for RngAdapter<'_, R> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn setup() -> (rand_chacha::ChaCha20Rng, KeyPair, KeyPair, GrantSpec) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let issuer = KeyPair::generate(&mut rng);
        let driver = KeyPair::generate(&mut rng);
        let spec = GrantSpec {
            id: GrantId([7; 16]),
            home: Id::new("home-1").unwrap(),
            lock: Id::new("lock-1").unwrap(),
            purpose: Purpose::Delivery(Id::new("d-1").unwrap()),
            carrier: Some(Id::new("acme").unwrap()),
            driver: driver.public(),
            not_before_ms: 1_000,
            not_after_ms: 10_000,
            max_open_ms: 120_000,
        };
        (rng, issuer, driver, spec)
    }

    #[test]
    fn a_grant_verifies_at_its_lock_for_its_driver_in_its_window() {
        let (mut rng, issuer, driver, spec) = setup();
        let t = issue(&spec, &issuer, &mut rng).unwrap();
        let v = verify(&t, &issuer.public(), &spec.lock, &driver.public(), 5_000).unwrap();
        assert_eq!(v, spec);
    }

    #[test]
    fn a_grant_is_refused_elsewhere_for_others_and_outside_its_window() {
        let (mut rng, issuer, _driver, spec) = setup();
        let t = issue(&spec, &issuer, &mut rng).unwrap();
        let other = KeyPair::generate(&mut rng);
        let lock2 = Id::new("lock-2").unwrap();
        assert!(matches!(
            verify(&t, &issuer.public(), &lock2, &spec.driver, 5_000),
            Err(GrantError::Refused(_))
        ));
        assert!(matches!(
            verify(&t, &issuer.public(), &spec.lock, &other.public(), 5_000),
            Err(GrantError::Refused(_))
        ));
        assert!(matches!(
            verify(&t, &issuer.public(), &spec.lock, &spec.driver, 999),
            Err(GrantError::Refused(_))
        ));
        assert!(matches!(
            verify(&t, &issuer.public(), &spec.lock, &spec.driver, 10_000),
            Err(GrantError::Refused(_))
        ));
        // A token from another issuing key (a carrier minting its own) does not verify.
        assert!(matches!(
            verify(&t, &other.public(), &spec.lock, &spec.driver, 5_000),
            Err(GrantError::Invalid(_))
        ));
    }

    #[test]
    fn attenuation_narrows_and_never_widens() {
        let (mut rng, issuer, _driver, spec) = setup();
        let t = issue(&spec, &issuer, &mut rng).unwrap();
        let narrow = attenuate_window(&t, &issuer.public(), 2_000, 3_000, &mut rng).unwrap();
        assert!(verify(&narrow, &issuer.public(), &spec.lock, &spec.driver, 2_500).is_ok());
        assert_eq!(
            verify(&narrow, &issuer.public(), &spec.lock, &spec.driver, 5_000),
            Err(GrantError::Refused(Refusal::OutsideWindow))
        );
        let wide = attenuate_window(&t, &issuer.public(), 0, 1_000_000, &mut rng).unwrap();
        assert!(verify(&wide, &issuer.public(), &spec.lock, &spec.driver, 50_000).is_err());
    }

    #[test]
    fn issuing_is_deterministic_for_a_seed() {
        let (_, issuer, _, spec) = setup();
        let a = issue(
            &spec,
            &issuer,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(5),
        )
        .unwrap();
        let b = issue(
            &spec,
            &issuer,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(5),
        )
        .unwrap();
        assert_eq!(a, b);
    }
}
