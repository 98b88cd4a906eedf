//! Signed webhooks for alarms, in the Standard Webhooks style
//! (<https://www.standardwebhooks.com/>). A home has up to [`MAX_WEBHOOKS_PER_HOME`]
//! endpoints, each a URL and a secret `whsec_<base64>`; every alarm the control core sends
//! (and every re-send until it is acknowledged, I14) is POSTed to each endpoint of its home.
//!
//! Each request carries:
//! - `webhook-id`: `alarm-{home}-{alarm id}`, the same for every re-send and every retry of
//!   one alarm, so a receiver can de-duplicate;
//! - `webhook-timestamp`: the attempt's time in Unix seconds;
//! - `webhook-signature`: `v1,` and the base64 HMAC-SHA256, under the decoded secret, of
//!   `{webhook-id}.{webhook-timestamp}.{body}`;
//! - a JSON body: `{"type": "alarm", "id", "home", "kind", "raised_ms", "device", "detail",
//!   "action", "sent", "evidence": {"device", "seq", "digest"} | null}` — the alarm as the live
//!   view shows it, with the advice (`action`) and evidence the control core attaches.
//!
//! Delivery: alarms wait in a queue of [`WEBHOOK_QUEUE_CAPACITY`] (full: the request is
//! dropped and counted `queue_full`; the core re-sends the alarm until acknowledged). A task
//! delivers them, at most [`MAX_CONCURRENT_DELIVERIES`] at once, each request limited to
//! [`WEBHOOK_TIMEOUT_MS`], with up to [`WEBHOOK_MAX_ATTEMPTS`] attempts and an exponential
//! backoff with jitter between [`WEBHOOK_BASE_DELAY_MS`] and [`WEBHOOK_MAX_DELAY_MS`]. A
//! request that fails every attempt becomes a [`DeadLetter`]: kept in memory (the last
//! [`MAX_DEAD_LETTERS`]) and appended to the home's audit chain as a [`DEAD_LETTER_ENTRY`]
//! through the control task. Every attempt is counted in
//! `doorward_webhook_deliveries_total{result}`.
//!
//! Endpoints are `https://` URLs, checked against the Mozilla roots (webpki-roots) and any
//! extra roots the operator trusts (`--webhook-roots FILE`, PEM); plain `http://` is allowed
//! only to a loopback address (a receiver on the same machine), where nothing travels over a
//! network. Each endpoint is recorded in its home's audit chain ([`WEBHOOK_ENTRY`]) before it
//! is acknowledged, its secret sealed under the keystore's state-wrap key, and put back on
//! start, so a restart keeps it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Uri};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use doorward_control::audit::EntryKind;
use doorward_control::AlarmNotice;
use doorward_proto::Id;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};

use crate::hub::alarm_event;
use crate::metrics::Metrics;
use crate::runtime::Command;

/// The audit entry kind of a webhook endpoint added or removed (payload: [`StoredEndpoint`]):
/// where a home's alarms go is a registry change like the others, recorded in the home's
/// chain before it is acknowledged and replayed on start.
pub const WEBHOOK_ENTRY: EntryKind = EntryKind(66);
/// Largest [`StoredEndpoint`] read back, in bytes.
pub const MAX_STORED_ENDPOINT_BYTES: usize = 4096;

/// A webhook endpoint as recorded: its URL and its secret sealed with ChaCha20-Poly1305
/// under the keystore's state-wrap key (the home and URL as associated data), or `None`
/// when the endpoint was removed.
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
pub struct StoredEndpoint {
    /// The URL.
    #[n(0)]
    pub url: String,
    /// Nonce and ciphertext of the secret's key bytes; `None` for a removal.
    #[n(1)]
    pub sealed: Option<Vec<u8>>,
}

fn secret_aad(home: &Id, url: &str) -> Vec<u8> {
    format!("doorward webhook secret\0{home}\0{url}").into_bytes()
}

/// The record of `ep` for `home`, its secret sealed under `key`.
pub fn seal(key: &[u8; 32], home: &Id, ep: &Endpoint) -> StoredEndpoint {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
    let url = ep.url();
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let ct = ChaCha20Poly1305::new(&Key::from(*key))
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ep.key,
                aad: &secret_aad(home, &url),
            },
        )
        .expect("a small message encrypts");
    let mut sealed = nonce.to_vec();
    sealed.extend(ct);
    StoredEndpoint {
        url,
        sealed: Some(sealed),
    }
}

/// The endpoint a record describes, if its secret opens under `key` for `home`.
pub fn unseal(key: &[u8; 32], home: &Id, st: &StoredEndpoint) -> Option<Endpoint> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
    let sealed = st.sealed.as_ref()?;
    if sealed.len() < 12 {
        return None;
    }
    let nonce: [u8; 12] = sealed[..12].try_into().ok()?;
    let secret = ChaCha20Poly1305::new(&Key::from(*key))
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &sealed[12..],
                aad: &secret_aad(home, &st.url),
            },
        )
        .ok()?;
    let (lo, hi) = WEBHOOK_SECRET_BYTES;
    if secret.len() < lo || secret.len() > hi {
        return None;
    }
    let uri: Uri = st.url.parse().ok()?;
    Some(Endpoint {
        uri,
        key: secret.into(),
    })
}

/// The audit entry kind of a webhook dead letter (payload: JSON with `msg_id`, `url`,
/// `attempts`, `last_error`, `at_ms`). 64 is the registry's.
pub const DEAD_LETTER_ENTRY: EntryKind = EntryKind(65);
/// Longest failure text recorded in a dead letter, in characters.
pub const MAX_DEAD_LETTER_ERROR_CHARS: usize = 256;

/// Requests waiting for delivery; one more is dropped and counted `queue_full`.
pub const WEBHOOK_QUEUE_CAPACITY: usize = 1024;
/// Requests being delivered (or waiting between retries) at once.
pub const MAX_CONCURRENT_DELIVERIES: usize = 64;
/// Attempts per request before it becomes a dead letter.
pub const WEBHOOK_MAX_ATTEMPTS: u32 = 5;
/// The first retry waits about this long; each next one twice as long.
pub const WEBHOOK_BASE_DELAY_MS: u64 = 100;
/// No retry waits longer than this.
pub const WEBHOOK_MAX_DELAY_MS: u64 = 10_000;
/// One attempt (connect, send, response head) may take this long.
pub const WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// Endpoints per home.
pub const MAX_WEBHOOKS_PER_HOME: usize = 8;
/// Dead letters kept (oldest forgotten first).
pub const MAX_DEAD_LETTERS: usize = 1024;
/// Longest endpoint URL, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;
/// Shortest and longest decoded secret, in bytes (the spec's bounds).
pub const WEBHOOK_SECRET_BYTES: (usize, usize) = (24, 64);
/// The prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why an endpoint is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// Not an absolute `https://` (or loopback `http://`) URL with a host.
    #[error("webhook URL {0:?}: expected https://HOST[:PORT]/PATH")]
    Url(String),
    /// `http://` to a host that is not a loopback address: alarms would cross a network
    /// in the clear.
    #[error("webhook URL {0:?}: use https:// (plain http:// only to a loopback address)")]
    PlainHttp(String),
    /// The extra root certificates could not be read.
    #[error("webhook root certificates {0}: {1}")]
    Roots(String, String),
    /// The secret is not `whsec_` and base64 of 24 to 64 bytes.
    #[error("webhook secret: expected whsec_ and the base64 of 24 to 64 random bytes")]
    Secret,
    /// The home has [`MAX_WEBHOOKS_PER_HOME`] endpoints already.
    #[error("a home has at most {MAX_WEBHOOKS_PER_HOME} webhooks")]
    TooMany,
}

/// A home's webhook endpoint.
#[derive(Clone)]
pub struct Endpoint {
    uri: Uri,
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Endpoint {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("uri", &self.uri).finish()
    }
}

impl Endpoint {
    /// Checks `url` (https, or http to a loopback address) and `secret` (`whsec_<base64>`).
    pub fn new(url: &str, secret: &str) -> Result<Endpoint, WebhookError> {
        let bad = || WebhookError::Url(url.to_owned());
        if url.len() > MAX_WEBHOOK_URL_BYTES {
            return Err(bad());
        }
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let auth = uri.authority().ok_or_else(bad)?;
        if auth.host().is_empty() || auth.as_str().contains('@') {
            return Err(bad());
        }
        if !https && !is_loopback(auth.host()) {
            return Err(WebhookError::PlainHttp(url.to_owned()));
        }
        Ok(Endpoint {
            uri,
            key: decode_secret(secret)?.into(),
        })
    }

    /// The URL.
    pub fn url(&self) -> String {
        self.uri.to_string()
    }
}

/// Whether `host` (as in a URL: brackets around IPv6) is a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The TLS client of webhook deliveries: the Mozilla roots, and the certificates of the PEM
/// file `extra_roots` if given.
pub fn tls_config(
    extra_roots: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, WebhookError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_roots {
        let err = |e: String| WebhookError::Roots(path.display().to_string(), e);
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Roots("TLS".into(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The key bytes of a `whsec_<base64>` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let b = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(WebhookError::Secret)?;
    let key = B64.decode(b).map_err(|_| WebhookError::Secret)?;
    let (lo, hi) = WEBHOOK_SECRET_BYTES;
    if key.len() < lo || key.len() > hi {
        return Err(WebhookError::Secret);
    }
    Ok(key)
}

/// The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `{id}.{ts}.{body}`.
pub fn sign(key: &[u8], msg_id: &str, timestamp_s: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-id` of an alarm: the same for its re-sends.
pub fn message_id(n: &AlarmNotice) -> String {
    format!("alarm-{}-{}", n.alarm.home.as_str(), n.alarm.id)
}

/// The JSON body of an alarm.
pub fn body(n: &AlarmNotice) -> Vec<u8> {
    let mut v = alarm_event(n).data;
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), "alarm".into());
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The alarm body's JSON Schema, for the OpenAPI document's components.
pub fn openapi_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "description": "An alarm, POSTed to each webhook of its home, and again for each re-send until it is acknowledged.",
        "required": ["type", "id", "home", "kind", "raised_ms", "device", "detail", "action", "sent", "evidence"],
        "properties": {
            "type": {"const": "alarm"},
            "id": {"type": "integer", "description": "Unique per server, increasing."},
            "home": {"type": "string"},
            "kind": {"type": "string", "description": "The alarm kind in snake_case, e.g. witness_lost."},
            "raised_ms": {"type": "integer", "description": "Server time when raised, Unix milliseconds."},
            "device": {"type": ["string", "null"]},
            "detail": {"type": "string"},
            "action": {"type": "string", "description": "What the homeowner should do."},
            "sent": {"type": "integer", "description": "1 when first raised, then 2, 3… for each re-send."},
            "evidence": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
                "device": {"type": "string"}, "seq": {"type": "integer"}, "digest": {"type": "string"}}}]}
        }
    })
}

/// The OpenAPI 3.1 `webhooks` entry: what a receiver gets and must answer.
pub fn openapi_webhook() -> serde_json::Value {
    let header = |name: &str, d: &str| serde_json::json!({"name": name, "in": "header", "required": true, "description": d, "schema": {"type": "string"}});
    serde_json::json!({"post": {
        "operationId": "alarmWebhook",
        "summary": "An alarm, signed in the Standard Webhooks style.",
        "parameters": [
            header("webhook-id", "alarm-{home}-{id}: the same for every re-send and retry of one alarm"),
            header("webhook-timestamp", "the attempt's time, Unix seconds"),
            header("webhook-signature", "v1, and the base64 HMAC-SHA256 of {webhook-id}.{webhook-timestamp}.{body} under the secret after whsec_")
        ],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlarmWebhook"}}}},
        "responses": {"2XX": {"description": "received; anything else is retried"}}
    }})
}

/// A request that failed every attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The home.
    pub home: Id,
    /// The endpoint's URL.
    pub url: String,
    /// The `webhook-id`.
    pub msg_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's failure.
    pub last_error: String,
    /// When it was given up, Unix milliseconds.
    pub at_ms: u64,
}

struct Job {
    home: Id,
    endpoint: Endpoint,
    msg_id: String,
    body: Bytes,
}

/// The endpoints, the delivery queue and the dead letters.
pub struct Webhooks {
    endpoints: Mutex<HashMap<Id, Vec<Endpoint>>>,
    tls: tokio_rustls::TlsConnector,
    tx: mpsc::Sender<Job>,
    dead: Mutex<VecDeque<DeadLetter>>,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<Command>,
}

impl Webhooks {
    /// Starts the delivery task (needs a tokio runtime); dead letters go to the audit log
    /// through `records`, the control task's queue.
    pub fn start(metrics: Arc<Metrics>, records: mpsc::Sender<Command>) -> Arc<Webhooks> {
        let tls = tls_config(None).expect("the built-in roots load");
        Webhooks::start_with(metrics, records, tls)
    }

    /// [`Webhooks::start`] with a TLS client of its own (see [`tls_config`]).
    pub fn start_with(
        metrics: Arc<Metrics>,
        records: mpsc::Sender<Command>,
        tls: rustls::ClientConfig,
    ) -> Arc<Webhooks> {
        let (w, rx) = Webhooks::without_task(metrics, records, tls);
        tokio::spawn(deliver_all(rx, Arc::downgrade(&w)));
        w
    }

    fn without_task(
        metrics: Arc<Metrics>,
        records: mpsc::Sender<Command>,
        tls: rustls::ClientConfig,
    ) -> (Arc<Webhooks>, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE_CAPACITY);
        let w = Arc::new(Webhooks {
            endpoints: Mutex::new(HashMap::new()),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            tx,
            dead: Mutex::new(VecDeque::new()),
            metrics,
            records,
        });
        (w, rx)
    }

    /// Adds an endpoint to `home` (no check that the home exists: it only receives its alarms).
    pub fn add(&self, home: Id, endpoint: Endpoint) -> Result<(), WebhookError> {
        let mut m = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.entry(home).or_default();
        if list.len() >= MAX_WEBHOOKS_PER_HOME {
            return Err(WebhookError::TooMany);
        }
        list.push(endpoint);
        Ok(())
    }

    /// Removes `home`'s endpoint with `url`; returns whether there was one.
    pub fn remove(&self, home: &Id, url: &str) -> bool {
        let mut m = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = m.get_mut(home) else {
            return false;
        };
        let before = list.len();
        list.retain(|e| e.url() != url);
        before != list.len()
    }

    /// The URLs of `home`'s endpoints, in the order they were added.
    pub fn urls(&self, home: &Id) -> Vec<String> {
        let m = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        m.get(home)
            .map(|l| l.iter().map(Endpoint::url).collect())
            .unwrap_or_default()
    }

    /// Puts back the endpoints recorded in the audit chains (in the order recorded: an
    /// addition, or a removal when `sealed` is `None`); returns how many are in force. A
    /// secret that does not open under `key` is skipped and logged.
    pub fn restore(&self, key: &[u8; 32], recorded: Vec<(Id, StoredEndpoint)>) -> usize {
        for (home, st) in recorded {
            match &st.sealed {
                None => {
                    self.remove(&home, &st.url);
                }
                Some(_) => match unseal(key, &home, &st) {
                    Some(ep) => {
                        self.remove(&home, &st.url);
                        if let Err(e) = self.add(home.clone(), ep) {
                            tracing::error!(%home, url = %st.url, error = %e, "recorded webhook not restored");
                        }
                    }
                    None => {
                        tracing::error!(%home, url = %st.url, "recorded webhook secret does not open; skipped")
                    }
                },
            }
        }
        let m = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        m.values().map(Vec::len).sum()
    }

    /// Queues an alarm (or its re-send) for every endpoint of its home.
    pub fn alarm(&self, n: &AlarmNotice) {
        let endpoints = {
            let m = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(&n.alarm.home) {
                Some(l) if !l.is_empty() => l.clone(),
                _ => return,
            }
        };
        let msg_id = message_id(n);
        let body = Bytes::from(body(n));
        for endpoint in endpoints {
            let job = Job {
                home: n.alarm.home.clone(),
                endpoint,
                msg_id: msg_id.clone(),
                body: body.clone(),
            };
            if self.tx.try_send(job).is_err() {
                self.metrics.webhook("queue_full");
            }
        }
    }

    /// The dead letters kept, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let d = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        d.iter().cloned().collect()
    }

    fn bury(&self, letter: DeadLetter) {
        tracing::error!(
            home = %letter.home, url = %letter.url, msg_id = %letter.msg_id,
            error = %letter.last_error, "webhook dead letter"
        );
        self.metrics.webhook("dead_letter");
        let payload = serde_json::json!({
            "type": "webhook_dead_letter",
            "msg_id": letter.msg_id,
            "url": letter.url,
            "attempts": letter.attempts,
            "last_error": letter.last_error,
            "at_ms": letter.at_ms,
        });
        let record = Command::Record {
            home: letter.home.clone(),
            kind: DEAD_LETTER_ENTRY,
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
        };
        if self.records.try_send(record).is_err() {
            // The control queue is full or stopping: the in-memory letter and the log line
            // above are all that is left of it.
            tracing::error!(home = %letter.home, "webhook dead letter not recorded in the audit log");
        }
        let mut d = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        if d.len() >= MAX_DEAD_LETTERS {
            d.pop_front();
        }
        d.push_back(letter);
    }
}

async fn deliver_all(mut rx: mpsc::Receiver<Job>, w: std::sync::Weak<Webhooks>) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_DELIVERIES));
    while let Some(job) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let w = w.clone();
        tokio::spawn(async move {
            let _permit = permit;
            deliver(job, w).await;
        });
    }
}

/// The wait before attempt `attempt + 1` (attempt counts from 1): half the exponential
/// delay plus a random part up to the other half, so receivers that failed together are
/// not retried together.
pub fn backoff_ms(attempt: u32, random: u64) -> u64 {
    let exp = WEBHOOK_BASE_DELAY_MS
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(WEBHOOK_MAX_DELAY_MS);
    exp / 2 + random % (exp / 2 + 1)
}

async fn deliver(job: Job, w: std::sync::Weak<Webhooks>) {
    let mut last_error = String::new();
    let Some(tls) = w.upgrade().map(|h| h.tls.clone()) else {
        return;
    };
    for attempt in 1..=WEBHOOK_MAX_ATTEMPTS {
        let res = tokio::time::timeout(
            Duration::from_millis(WEBHOOK_TIMEOUT_MS),
            post(&tls, &job.endpoint, &job.msg_id, job.body.clone()),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {WEBHOOK_TIMEOUT_MS} ms")));
        let Some(hooks) = w.upgrade() else { return };
        match res {
            Ok(()) => {
                hooks.metrics.webhook("delivered");
                return;
            }
            Err(e) => {
                hooks.metrics.webhook("failed");
                last_error = e;
            }
        }
        drop(hooks);
        if attempt < WEBHOOK_MAX_ATTEMPTS {
            let wait = backoff_ms(attempt, OsRng.next_u64());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
    if let Some(hooks) = w.upgrade() {
        hooks.bury(DeadLetter {
            home: job.home,
            url: job.endpoint.url(),
            msg_id: job.msg_id,
            attempts: WEBHOOK_MAX_ATTEMPTS,
            last_error: last_error
                .chars()
                .take(MAX_DEAD_LETTER_ERROR_CHARS)
                .collect(),
            at_ms: crate::runtime::wall_ms(),
        });
    }
}

/// One attempt: a 2xx answer is a delivery.
async fn post(
    tls: &tokio_rustls::TlsConnector,
    ep: &Endpoint,
    msg_id: &str,
    body: Bytes,
) -> Result<(), String> {
    let auth = ep.uri.authority().ok_or("no host")?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let https = ep.uri.scheme_str() == Some("https");
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if https {
        let name = rustls_pki_types::ServerName::try_from(host)
            .map(|n| n.to_owned())
            .map_err(|e| format!("server name: {e}"))?;
        let stream = tls
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        send(TokioIo::new(stream), auth.as_str(), ep, msg_id, body).await
    } else {
        send(TokioIo::new(stream), auth.as_str(), ep, msg_id, body).await
    }
}

/// The request over an open connection.
async fn send<IO>(
    io: IO,
    host: &str,
    ep: &Endpoint,
    msg_id: &str,
    body: Bytes,
) -> Result<(), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let auth = host;
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let ts = crate::runtime::wall_ms() / 1000;
    let path = ep.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = Request::post(path)
        .header("host", auth)
        .header("content-type", "application/json")
        .header("user-agent", "doorward-webhooks")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(&ep.key, msg_id, ts, &body))
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"));
    conn.abort();
    let status = resp?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (checked independently with
    /// Python's hmac module).
    #[test]
    fn signature_matches_the_spec_example() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_ne!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265331,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "the timestamp is signed"
        );
    }

    #[test]
    fn https_or_loopback_http_urls_and_whsec_secrets() {
        let s = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for ok in [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://[::1]:9/hook",
            "https://example.com/hook",
            "https://127.0.0.1:8443/hook",
        ] {
            assert!(Endpoint::new(ok, s).is_ok(), "{ok}");
        }
        for clear in ["http://example.com/hook", "http://192.168.1.2/hook"] {
            assert!(
                matches!(Endpoint::new(clear, s), Err(WebhookError::PlainHttp(_))),
                "{clear}"
            );
        }
        for bad in [
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "/relative",
            "http://user:pw@127.0.0.1/x",
            "unix:/tmp/sock",
        ] {
            assert!(
                matches!(Endpoint::new(bad, s), Err(WebhookError::Url(_))),
                "{bad}"
            );
        }
        let long = format!("http://127.0.0.1/{}", "a".repeat(MAX_WEBHOOK_URL_BYTES));
        assert!(matches!(Endpoint::new(&long, s), Err(WebhookError::Url(_))));
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_AAAA"] {
            assert_eq!(
                Endpoint::new("http://127.0.0.1/x", bad).unwrap_err(),
                WebhookError::Secret
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        assert_eq!(backoff_ms(1, 0), WEBHOOK_BASE_DELAY_MS / 2);
        assert!(backoff_ms(1, u64::MAX) <= WEBHOOK_BASE_DELAY_MS);
        assert!(backoff_ms(2, 0) == WEBHOOK_BASE_DELAY_MS);
        for r in [0, 7, u64::MAX] {
            assert!(backoff_ms(40, r) <= WEBHOOK_MAX_DELAY_MS);
            assert!(backoff_ms(40, r) >= WEBHOOK_MAX_DELAY_MS / 2);
        }
    }

    fn notice(id: u64) -> AlarmNotice {
        AlarmNotice {
            alarm: doorward_proto::Alarm {
                id,
                home: Id::new("h").unwrap(),
                kind: doorward_proto::AlarmKind::WitnessLost,
                raised_ms: 1,
                device: Some(Id::new("cam").unwrap()),
                evidence: None,
                detail: "silent".into(),
            },
            evidence: None,
            action: "check the door",
            sent: 1,
        }
    }

    #[test]
    fn body_has_what_the_schema_requires_and_a_stable_id() {
        let b: serde_json::Value = serde_json::from_slice(&body(&notice(7))).unwrap();
        for k in openapi_schema()["required"].as_array().unwrap() {
            assert!(b.get(k.as_str().unwrap()).is_some(), "{k}");
        }
        assert_eq!(b["kind"], "witness_lost");
        let mut again = notice(7);
        again.sent = 2;
        assert_eq!(
            message_id(&notice(7)),
            message_id(&again),
            "re-sends share the id"
        );
        assert_ne!(message_id(&notice(7)), message_id(&notice(8)));
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::default());
        let (records, _r) = mpsc::channel(1);
        let (w, _rx) = Webhooks::without_task(metrics.clone(), records, tls_config(None).unwrap());
        let ep = Endpoint::new(
            "http://127.0.0.1:9/",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap();
        w.add(Id::new("h").unwrap(), ep).unwrap();
        for i in 0..=WEBHOOK_QUEUE_CAPACITY as u64 {
            w.alarm(&notice(i));
        }
        assert_eq!(metrics.webhook_count("queue_full"), 1);
    }

    #[tokio::test]
    async fn dead_letters_are_bounded() {
        let (records, _r) = mpsc::channel(1);
        let (w, _rx) = Webhooks::without_task(
            Arc::new(Metrics::default()),
            records,
            tls_config(None).unwrap(),
        );
        for i in 0..=MAX_DEAD_LETTERS {
            w.bury(DeadLetter {
                home: Id::new("h").unwrap(),
                url: "http://127.0.0.1:9/".into(),
                msg_id: format!("m{i}"),
                attempts: WEBHOOK_MAX_ATTEMPTS,
                last_error: "status 500".into(),
                at_ms: 0,
            });
        }
        let d = w.dead_letters();
        assert_eq!(d.len(), MAX_DEAD_LETTERS);
        assert_eq!(d[0].msg_id, "m1", "the oldest is forgotten first");
    }

    #[tokio::test]
    async fn endpoints_per_home_are_limited() {
        let (records, _r) = mpsc::channel(1);
        let w = Webhooks::start(Arc::new(Metrics::default()), records);
        let home = Id::new("h").unwrap();
        let ep = Endpoint::new(
            "http://127.0.0.1:9/",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap();
        for _ in 0..MAX_WEBHOOKS_PER_HOME {
            w.add(home.clone(), ep.clone()).unwrap();
        }
        assert_eq!(w.add(home, ep), Err(WebhookError::TooMany));
    }
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_home_url_and_key() {
        let key = [4u8; 32];
        let home = Id::new("h").unwrap();
        let ep = Endpoint::new(
            "https://example.com/hook",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap();
        let st = seal(&key, &home, &ep);
        let secret = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sealed = st.sealed.clone().unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
        let back = unseal(&key, &home, &st).expect("opens");
        assert_eq!(back.url(), ep.url());
        assert_eq!(&*back.key, &*ep.key);
        assert!(unseal(&[5u8; 32], &home, &st).is_none(), "another key");
        assert!(
            unseal(&key, &Id::new("other").unwrap(), &st).is_none(),
            "another home"
        );
        let moved = StoredEndpoint {
            url: "https://evil.example/hook".into(),
            ..st
        };
        assert!(unseal(&key, &home, &moved).is_none(), "another URL");
    }
}
