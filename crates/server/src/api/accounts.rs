//! Homeowner accounts (argon2id passwords), sessions, one-time login links, carriers and
//! their API keys, and the login rate limits.
//!
//! Secrets handed out (session tokens `dws_…`, login-link tokens `dwl_…`, carrier API keys
//! `dwc_…`) are 256 random bits from the OS, base64url; only their SHA-256 is stored, as the
//! row id. A plain hash is enough for 256-bit random secrets (nobody can guess or brute-force
//! them, so a slow hash would add nothing); passwords, which people choose, get argon2id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use doorward_proto::Id;
use doorward_store::{
    Account, ApiKey, CarrierAccount, LoginLink, Record, RecordKind, Session, AUTH_NS,
};
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};

use super::{blocking, read, write, ApiError, ApiResult};
use crate::runtime::{wall_ms, ServerError};
use crate::server::Shared;

/// argon2id memory cost, KiB (OWASP's recommended 19 MiB).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// argon2id passes (OWASP: 2 at 19 MiB).
pub const ARGON2_T_COST: u32 = 2;
/// argon2id lanes.
pub const ARGON2_P_COST: u32 = 1;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Longest email address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest carrier or driver name, in bytes.
pub const MAX_NAME_BYTES: usize = 100;
/// A session's absolute lifetime by default, ms (7 days).
pub const SESSION_MAX_MS: u64 = 7 * 24 * 3_600_000;
/// A session unused this long is refused by default, ms (12 hours).
pub const SESSION_IDLE_MS: u64 = 12 * 3_600_000;
/// A session's last use is written at most this often, ms (so requests do not all write).
pub const SESSION_TOUCH_MS: u64 = 60_000;
/// How long a one-time login link stays valid, ms.
pub const LOGIN_LINK_TTL_MS: u64 = 10 * 60_000;
/// Login attempts per account per window.
pub const LOGIN_MAX_PER_ACCOUNT: u32 = 5;
/// Login attempts per client IP address per window.
pub const LOGIN_MAX_PER_IP: u32 = 20;
/// The login rate-limit window, ms.
pub const LOGIN_WINDOW_MS: u64 = 60_000;
/// Most rate-limit counters kept; when full after pruning, logins are refused (429).
pub const MAX_RATE_COUNTERS: usize = 100_000;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dw_session";
/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "dws_";
/// Prefix of login-link tokens.
pub const LOGIN_LINK_PREFIX: &str = "dwl_";
/// Prefix of carrier API keys.
pub const API_KEY_PREFIX: &str = "dwc_";

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with argon2id and a fresh 128-bit salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Whether `password` matches the stored PHC hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A fresh secret: `prefix` and 256 random bits, base64url without padding.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// The row id of a secret: SHA-256, hex (64 characters, a valid [`Id`]).
pub fn secret_id(secret: &str) -> Id {
    Id::new(hex::encode(Sha256::digest(secret.as_bytes()))).expect("64 hex characters")
}

/// The namespace of the server-wide rows.
pub fn auth_ns() -> Id {
    Id::new(AUTH_NS).expect("a valid id")
}

/// Lower-cased, trimmed email, if it looks like one.
pub fn normalise_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= MAX_EMAIL_BYTES
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@');
    ok.then_some(e)
}

/// An account's id: derived from the normalised email, so looking an account up by email is
/// one read.
pub fn account_id(email: &str) -> Id {
    let h = Sha256::digest(email.as_bytes());
    Id::new(format!("a-{}", hex::encode(&h[..16]))).expect("a valid id")
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            format!(
                "a password needs at least {MIN_PASSWORD_CHARS} characters and at most \
                 {MAX_PASSWORD_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// Creates a homeowner account; refuses an email already used.
pub async fn create_homeowner(s: &Arc<Shared>, email: &str, password: &str) -> ApiResult<Id> {
    let email = normalise_email(email).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "bad_email",
            "give a valid email address",
        )
    })?;
    check_password(password)?;
    let id = account_id(&email);
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(ApiError::internal)??;
    let _guard = s.api.account_writes.lock().await;
    if read(s, &auth_ns(), RecordKind::Account, &id)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict("an account with this email exists"));
    }
    write(
        s,
        vec![Record::Account(Account {
            id: id.clone(),
            email,
            password_hash: hash,
            created_ms: wall_ms(),
            homes: Vec::new(),
        })],
    )
    .await?;
    Ok(id)
}

/// Reads an account.
pub async fn account(s: &Arc<Shared>, id: &Id) -> ApiResult<Option<Account>> {
    Ok(match read(s, &auth_ns(), RecordKind::Account, id).await? {
        Some(Record::Account(a)) => Some(a),
        _ => None,
    })
}

/// Checks a login; returns the account. Unknown emails cost a hash too, so timing does not
/// tell which emails have accounts.
pub async fn check_login(s: &Arc<Shared>, email: &str, password: &str) -> ApiResult<Id> {
    let wrong = || {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "wrong_credentials",
            "wrong email or password",
        )
    };
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(wrong());
    }
    let email = normalise_email(email).unwrap_or_default();
    let acct = account(s, &account_id(&email)).await?;
    let pw = password.to_owned();
    let (ok, id) = match acct {
        Some(a) if a.email == email => {
            let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &a.password_hash))
                .await
                .map_err(ApiError::internal)?;
            (ok, Some(a.id))
        }
        _ => {
            tokio::task::spawn_blocking(move || {
                static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let d = DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default());
                verify_password(&pw, d)
            })
            .await
            .map_err(ApiError::internal)?;
            (false, None)
        }
    };
    match (ok, id) {
        (true, Some(id)) => Ok(id),
        _ => Err(wrong()),
    }
}

/// Opens a session for `account`; returns the token and its expiry.
pub async fn open_session(s: &Arc<Shared>, account: &Id) -> ApiResult<(String, u64)> {
    let token = new_secret(SESSION_PREFIX);
    let now = wall_ms();
    let expires_ms = now + s.api.settings.session_max_ms;
    write(
        s,
        vec![Record::Session(Session {
            id: secret_id(&token),
            account: account.clone(),
            created_ms: now,
            expires_ms,
            last_seen_ms: now,
        })],
    )
    .await?;
    Ok((token, expires_ms))
}

/// The account of a live session token, touching its last use.
pub async fn session_account(s: &Arc<Shared>, token: &str) -> ApiResult<Option<Id>> {
    if !token.starts_with(SESSION_PREFIX) {
        return Ok(None);
    }
    let id = secret_id(token);
    let Some(Record::Session(mut sess)) = read(s, &auth_ns(), RecordKind::Session, &id).await?
    else {
        return Ok(None);
    };
    let now = wall_ms();
    if now >= sess.expires_ms
        || now.saturating_sub(sess.last_seen_ms) >= s.api.settings.session_idle_ms
    {
        let store = s.store.clone();
        let _ = store.delete_record(&auth_ns(), RecordKind::Session, &id);
        return Ok(None);
    }
    if now.saturating_sub(sess.last_seen_ms) >= SESSION_TOUCH_MS {
        sess.last_seen_ms = now;
        write(s, vec![Record::Session(sess.clone())]).await?;
    }
    Ok(Some(sess.account))
}

/// Ends a session.
pub async fn close_session(s: &Arc<Shared>, token: &str) -> ApiResult<()> {
    let p = s
        .store
        .delete_record(&auth_ns(), RecordKind::Session, &secret_id(token))?;
    p.await?;
    Ok(())
}

/// A one-time login link for `account`: the path whose GET opens a session.
pub async fn login_link(s: &Arc<Shared>, account: &Id) -> ApiResult<String> {
    if self::account(s, account).await?.is_none() {
        return Err(ApiError::not_found("account"));
    }
    let token = new_secret(LOGIN_LINK_PREFIX);
    write(
        s,
        vec![Record::LoginLink(LoginLink {
            id: secret_id(&token),
            account: account.clone(),
            expires_ms: wall_ms() + LOGIN_LINK_TTL_MS,
        })],
    )
    .await?;
    Ok(format!("/api/login-links/{token}"))
}

/// Spends a login link: deleted whether or not it is still valid; the account if it was.
pub async fn use_login_link(s: &Arc<Shared>, token: &str) -> ApiResult<Option<Id>> {
    if !token.starts_with(LOGIN_LINK_PREFIX) || token.len() > 128 {
        return Ok(None);
    }
    let id = secret_id(token);
    let _guard = s.api.account_writes.lock().await;
    let Some(Record::LoginLink(link)) = read(s, &auth_ns(), RecordKind::LoginLink, &id).await?
    else {
        return Ok(None);
    };
    s.store
        .delete_record(&auth_ns(), RecordKind::LoginLink, &id)?
        .await?;
    Ok((wall_ms() < link.expires_ms).then_some(link.account))
}

/// Creates a carrier; returns its id and its API key (shown once, stored only hashed).
pub async fn create_carrier(s: &Arc<Shared>, name: &str) -> ApiResult<(Id, String)> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "a carrier name needs 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    let id = Id::new(format!("c-{}", super::random_hex(8))).expect("a valid id");
    let key = new_secret(API_KEY_PREFIX);
    let now = wall_ms();
    write(
        s,
        vec![
            Record::CarrierAccount(CarrierAccount {
                id: id.clone(),
                name: name.to_owned(),
                created_ms: now,
            }),
            Record::ApiKey(ApiKey {
                id: secret_id(&key),
                carrier: id.clone(),
                created_ms: now,
            }),
        ],
    )
    .await?;
    Ok((id, key))
}

/// The carrier an API key authenticates.
pub async fn api_key_carrier(s: &Arc<Shared>, key: &str) -> ApiResult<Option<Id>> {
    if !key.starts_with(API_KEY_PREFIX) || key.len() > 128 {
        return Ok(None);
    }
    Ok(
        match read(s, &auth_ns(), RecordKind::ApiKey, &secret_id(key)).await? {
            Some(Record::ApiKey(k)) => Some(k.carrier),
            _ => None,
        },
    )
}

/// Every carrier (the directory homeowners pick from), by id, at most `max`.
pub async fn carriers(s: &Arc<Shared>, max: usize) -> ApiResult<Vec<CarrierAccount>> {
    let store = s.store.clone();
    let rows =
        blocking(move || store.records(&auth_ns(), RecordKind::CarrierAccount, None, max)).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r {
            Record::CarrierAccount(c) => Some(c),
            _ => None,
        })
        .collect())
}

/// Fixed-window counters of login attempts per account and per client address.
#[derive(Default)]
pub struct LoginLimits {
    counters: Mutex<HashMap<String, (u64, u32)>>,
}

impl LoginLimits {
    /// Counts one attempt for each key; refuses (with seconds to wait) when one is over its
    /// limit. Keys are `(key, limit)`.
    pub fn attempt(&self, now_ms: u64, keys: &[(String, u32)]) -> Result<(), u64> {
        let mut m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() + keys.len() > MAX_RATE_COUNTERS {
            m.retain(|_, (start, _)| now_ms < *start + LOGIN_WINDOW_MS);
            if m.len() + keys.len() > MAX_RATE_COUNTERS {
                return Err(LOGIN_WINDOW_MS / 1000);
            }
        }
        let mut wait = 0;
        for (k, limit) in keys {
            let c = m.entry(k.clone()).or_insert((now_ms, 0));
            if now_ms >= c.0 + LOGIN_WINDOW_MS {
                *c = (now_ms, 0);
            }
            c.1 = c.1.saturating_add(1);
            if c.1 > *limit {
                wait = wait.max((c.0 + LOGIN_WINDOW_MS - now_ms).div_ceil(1000));
            }
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }
}

/// Maps a handle-level failure of these functions to the server's error type.
pub(crate) fn to_server_error(e: ApiError) -> ServerError {
    ServerError::Invalid(e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_is_argon2id_and_verifies() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn secrets_are_long_and_stored_as_hash() {
        let k = new_secret(API_KEY_PREFIX);
        assert!(k.starts_with("dwc_") && k.len() == 4 + 43, "{k}");
        assert_ne!(new_secret(API_KEY_PREFIX), k);
        assert_eq!(secret_id(&k).as_str().len(), 64);
        assert!(!secret_id(&k).as_str().contains(&k[4..]));
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            normalise_email("  Ann@Example.ORG ").as_deref(),
            Some("ann@example.org")
        );
        assert_eq!(normalise_email("no-at-sign"), None);
        assert_eq!(normalise_email("a@b"), None);
        assert_eq!(normalise_email("a b@c.d"), None);
        assert_eq!(account_id("ann@example.org"), account_id("ann@example.org"));
    }

    #[test]
    fn login_limit_counts_per_key_and_resets() {
        let l = LoginLimits::default();
        let k = |s: &str| vec![(s.to_owned(), 2)];
        assert!(l.attempt(0, &k("a")).is_ok());
        assert!(l.attempt(1, &k("a")).is_ok());
        assert_eq!(l.attempt(2, &k("a")), Err(60));
        assert!(l.attempt(2, &k("b")).is_ok(), "another key is not limited");
        assert!(l.attempt(LOGIN_WINDOW_MS, &k("a")).is_ok(), "a new window");
    }
}
