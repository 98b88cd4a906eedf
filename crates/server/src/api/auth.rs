//! Who is calling: the one place credentials are read.
//!
//! - [`Principal`] (an extractor): a homeowner session (the `dw_session` cookie, or the same
//!   token as `Authorization: Bearer dws_…`), a carrier API key (`Authorization: Bearer
//!   dwc_…`), or nobody.
//! - [`DriverRequest`] (an extractor that reads the body): a request signed with a driver's
//!   registered key, see docs/PROTOCOL.md, "Driver API signatures": the headers
//!   [`DRIVER_KEY_HEADER`], [`DRIVER_TIMESTAMP_HEADER`] and [`DRIVER_SIGNATURE_HEADER`], a
//!   signature with context [`DRIVER_REQUEST_CONTEXT`] over [`driver_request_message`],
//!   within ±[`DRIVER_CLOCK_WINDOW_MS`] of server time, each signature accepted once
//!   ([`ReplayCache`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use doorward_proto::{Id, PubKey, Sig};
use doorward_store::{Record, RecordKind};

use super::accounts::{self, API_KEY_PREFIX, SESSION_COOKIE, SESSION_PREFIX};
use super::{read, ApiError};
use crate::runtime::wall_ms;
use crate::server::Shared;

/// Signature context of driver API requests (see [`doorward_proto::keys`]).
pub const DRIVER_REQUEST_CONTEXT: &str = "driver-request";
/// The header carrying the driver's public key, hex.
pub const DRIVER_KEY_HEADER: &str = "doorward-driver-key";
/// The header carrying the request time, ms since the Unix epoch, decimal.
pub const DRIVER_TIMESTAMP_HEADER: &str = "doorward-timestamp";
/// The header carrying the signature, hex.
pub const DRIVER_SIGNATURE_HEADER: &str = "doorward-signature";
/// How far a driver request's timestamp may be from server time, either way, ms.
pub const DRIVER_CLOCK_WINDOW_MS: u64 = 60_000;
/// Most driver signatures remembered; when full of unexpired ones, driver requests are
/// refused (503) rather than risk accepting a replay (I8).
pub const MAX_REPLAY_ENTRIES: usize = 100_000;

/// The caller of a session- or key-authenticated route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No credentials, or credentials that do not check.
    Anonymous,
    /// A homeowner, by account.
    Homeowner {
        /// The account.
        account: Id,
        /// The session token (for logout).
        token: String,
    },
    /// A carrier, by its API key.
    Carrier {
        /// The carrier.
        carrier: Id,
    },
}

/// A bearer token from `Authorization`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The session token from the `dw_session` cookie.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

impl Principal {
    /// Resolves the caller from the headers: a bearer token first, then the cookie.
    pub async fn resolve(s: &Arc<Shared>, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if let Some(b) = bearer(headers) {
            if b.starts_with(API_KEY_PREFIX) {
                return Ok(match accounts::api_key_carrier(s, b).await? {
                    Some(carrier) => Principal::Carrier { carrier },
                    None => Principal::Anonymous,
                });
            }
            if b.starts_with(SESSION_PREFIX) {
                return Self::session(s, b).await;
            }
        }
        if let Some(c) = session_cookie(headers) {
            return Self::session(s, c).await;
        }
        Ok(Principal::Anonymous)
    }

    async fn session(s: &Arc<Shared>, token: &str) -> Result<Principal, ApiError> {
        Ok(match accounts::session_account(s, token).await? {
            Some(account) => Principal::Homeowner {
                account,
                token: token.to_owned(),
            },
            None => Principal::Anonymous,
        })
    }
}

impl FromRequestParts<Arc<Shared>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<Shared>) -> Result<Principal, ApiError> {
        Principal::resolve(s, &parts.headers).await
    }
}

/// The bytes a driver signs: five lines joined by `\n`, no trailing newline.
///
/// ```text
/// doorward-driver-request/v1
/// {METHOD}            upper case, e.g. POST
/// {path}              the request target as sent: path and ?query, e.g. /api/driver/deliveries/d-1/arrive
/// {timestamp_ms}      decimal, as in the Doorward-Timestamp header
/// {blake3(body)}      64 lower-case hex digits (of the empty string when there is no body)
/// ```
pub fn driver_request_message(method: &str, path: &str, timestamp_ms: u64, body: &[u8]) -> Vec<u8> {
    format!(
        "doorward-driver-request/v1\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        timestamp_ms,
        blake3::hash(body).to_hex()
    )
    .into_bytes()
}

/// A driver request whose signature checked, with its body.
#[derive(Debug)]
pub struct DriverRequest {
    /// The driver's key.
    pub key: PubKey,
    /// The carrier that registered it.
    pub carrier: Id,
    /// The driver's identifier.
    pub driver: Id,
    /// The request body.
    pub body: Bytes,
}

fn bad_signature(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad_signature",
        format!(
            "driver request signature: {why} (see docs/PROTOCOL.md, \"Driver API signatures\")"
        ),
    )
}

impl FromRequest<Arc<Shared>> for DriverRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &Arc<Shared>) -> Result<DriverRequest, ApiError> {
        let (parts, body) = req.into_parts();
        let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(key), Some(ts), Some(sig)) = (
            h(DRIVER_KEY_HEADER),
            h(DRIVER_TIMESTAMP_HEADER),
            h(DRIVER_SIGNATURE_HEADER),
        ) else {
            return Err(ApiError::unauthenticated());
        };
        let key =
            PubKey::from_hex(key).ok_or_else(|| bad_signature("the key is not 64 hex digits"))?;
        let sig = Sig::from_hex(sig)
            .ok_or_else(|| bad_signature("the signature is not 128 hex digits"))?;
        let ts: u64 = ts
            .parse()
            .map_err(|_| bad_signature("the timestamp is not a decimal number of ms"))?;
        let now = wall_ms();
        if ts.abs_diff(now) > DRIVER_CLOCK_WINDOW_MS {
            return Err(bad_signature(&format!(
                "the timestamp is {} ms from server time, more than the {DRIVER_CLOCK_WINDOW_MS} \
                 ms allowed: check the phone's clock",
                ts.abs_diff(now)
            )));
        }
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), s)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request body: {e}"),
                )
            })?;
        let target = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str());
        let msg = driver_request_message(parts.method.as_str(), target, ts, &body);
        doorward_proto::keys::verify(&key, DRIVER_REQUEST_CONTEXT, &msg, &sig)
            .map_err(|_| bad_signature("it does not verify under the driver key"))?;
        // Only a registered key counts; the replay cache is consulted last so that garbage
        // cannot fill it.
        let key_id = Id::new(key.to_hex()).expect("64 hex characters");
        let Some(Record::DriverKey(dk)) =
            read(s, &accounts::auth_ns(), RecordKind::DriverKey, &key_id).await?
        else {
            return Err(bad_signature("the key is not registered by any carrier"));
        };
        s.api.replay.check(now, sig, ts + DRIVER_CLOCK_WINDOW_MS)?;
        Ok(DriverRequest {
            key,
            carrier: dk.carrier,
            driver: dk.driver,
            body,
        })
    }
}

/// Driver signatures already accepted, each until it would fall out of the clock window.
#[derive(Default)]
pub struct ReplayCache {
    inner: Mutex<ReplayInner>,
}

#[derive(Default)]
struct ReplayInner {
    seen: HashMap<[u8; 64], u64>,
    order: VecDeque<([u8; 64], u64)>,
}

impl ReplayCache {
    /// Accepts `sig` once; a second time (before `expires_ms`) is a replay.
    pub fn check(&self, now_ms: u64, sig: Sig, expires_ms: u64) -> Result<(), ApiError> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Entries are pushed in arrival order; expiries are within one window of each other,
        // so dropping expired ones from the front keeps the cache bounded by the window.
        while let Some((s, exp)) = m.order.front().copied() {
            if exp > now_ms {
                break;
            }
            m.order.pop_front();
            if m.seen.get(&s) == Some(&exp) {
                m.seen.remove(&s);
            }
        }
        if let Some(&exp) = m.seen.get(&sig.0) {
            if exp > now_ms {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "replayed",
                    "this signed request was already received: sign each request anew",
                ));
            }
        }
        if m.order.len() >= MAX_REPLAY_ENTRIES {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many driver requests in the last two minutes: try again shortly",
            ));
        }
        m.seen.insert(sig.0, expires_ms);
        m.order.push_back((sig.0, expires_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::KeyPair;

    /// The test vector in docs/PROTOCOL.md, "Driver API signatures".
    #[test]
    fn driver_signature_test_vector() {
        let key = KeyPair::from_seed(&[7; 32]);
        let msg = driver_request_message(
            "post",
            "/api/driver/deliveries/d-0123456789abcdef/arrive",
            1_700_000_000_000,
            b"{}",
        );
        let body_hash = blake3::hash(b"{}").to_hex();
        assert_eq!(
            String::from_utf8(msg.clone()).unwrap(),
            format!(
                "doorward-driver-request/v1\nPOST\n/api/driver/deliveries/d-0123456789abcdef/arrive\n\
                 1700000000000\n{body_hash}"
            )
        );
        let sig = key.sign(DRIVER_REQUEST_CONTEXT, &msg);
        assert_eq!(
            format!("{}\n{}\n{}", key.public().to_hex(), body_hash, sig.to_hex()),
            VECTOR
        );
        assert!(
            doorward_proto::keys::verify(&key.public(), DRIVER_REQUEST_CONTEXT, &msg, &sig).is_ok()
        );
    }

    /// Public key, BLAKE3 of the body, signature (as in docs/PROTOCOL.md).
    const VECTOR: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c\n\
        6e46dd10defc9b56c29a6ec56b508c21f54c08192194e4df25bf36f0c9c3c279\n\
        84ad261b74541523742f541d78fac0d7fdf377afbeab5dbc5a49dc77bb38aef9\
        5d2906526ee7737b3016ce818d4677f41bee4e014865c02866ce4f96c6b63a04";

    #[test]
    fn replay_cache_accepts_once_and_forgets_after_expiry() {
        let c = ReplayCache::default();
        let s = Sig([1; 64]);
        assert!(c.check(0, s, 100).is_ok());
        assert_eq!(c.check(50, s, 100).unwrap_err().code, "replayed");
        assert!(
            c.check(101, s, 200).is_ok(),
            "expired entries are forgotten"
        );
    }
}
