//! Signed alarm webhooks against a real receiver: an axum server on a free loopback port
//! that checks every request's Standard Webhooks signature with its own HMAC code (not the
//! server's), answers with a scripted status, and records what it got.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use common::*;
use doorward_proto::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Generous ceiling for cause and effect.
const CEILING: Duration = Duration::from_secs(5);
/// Long enough for every attempt of one request (the backoff sums to under 2 s).
const DEAD_LETTER_CEILING: Duration = Duration::from_secs(15);
/// The server's secret in these tests (24 bytes, base64).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another secret, for the receiver that must fail its check.
const OTHER_SECRET: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Got {
    msg_id: String,
    verified: bool,
    body: serde_json::Value,
}

#[derive(Clone)]
struct Receiver {
    secret: Vec<u8>,
    /// Requests answered 500 before the first 200.
    fail_first: usize,
    got: Arc<Mutex<Vec<Got>>>,
}

/// The receiver's own check: the spec's content to sign, HMAC-SHA256, base64, compared with
/// every `v1,` signature in the header; and a timestamp within five minutes.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sigs) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let Ok(ts_s) = ts.parse::<u64>() else {
        return false;
    };
    if (wall_ms() / 1000).abs_diff(ts_s) > 300 {
        return false;
    }
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(&content);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    !id.is_empty()
        && sigs
            .split(' ')
            .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let verified = verify(&r.secret, &headers, &body);
    let mut got = r.got.lock().unwrap();
    got.push(Got {
        msg_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        verified,
        body: serde_json::from_slice(&body).unwrap_or_default(),
    });
    if got.len() <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Starts a receiver checking with `secret`; returns its URL and what it got.
async fn receiver(secret: &str, fail_first: usize) -> (String, Arc<Mutex<Vec<Got>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver {
        secret: base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap(),
        fail_first,
        got: got.clone(),
    };
    let app = axum::Router::new().route("/hook", post(hook)).with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

fn of_kind(got: &Arc<Mutex<Vec<Got>>>, kind: &str) -> Vec<Got> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|g| g.body["kind"] == kind)
        .cloned()
        .collect()
}

/// Injects a lock report signed by the wrong key: the core raises `forged_report` (I10).
async fn forge_report(ts: &TestServer, home: &mut Home) {
    let forger = Mqttc::connect(&ts.mqtt, &home.id, &home.lock_id).await;
    let wrong = KeyPair::generate(&mut home.rng);
    let mut sim = LockSim::booted();
    forger
        .send(sim.report(&home.lock_id, &wrong, LockEvent::Boot))
        .await;
}

/// I4/I14 through a webhook: an authorised entry, then the camera stops publishing (no
/// disconnect); the receiver gets WitnessLost, correctly signed, within the ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i14_silent_camera_witness_lost_reaches_a_signed_webhook() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (url, got) = receiver(SECRET, 0).await;
    ts.handle.add_webhook(&home.id, &url, SECRET).unwrap();
    let (_lock, cam) = open_entry(&ts, &mut home, CEILING).await;

    cam.silent.store(true, std::sync::atomic::Ordering::Relaxed);
    eventually(CEILING, "the webhook gets witness_lost", || {
        let n = of_kind(&got, "witness_lost").len();
        async move { n >= 1 }
    })
    .await;
    let g = &of_kind(&got, "witness_lost")[0];
    assert!(g.verified, "the signature checks out with the secret");
    assert_eq!(g.body["home"], home.id.as_str());
    assert_eq!(g.body["device"], home.cam_id.as_str());
    assert_eq!(g.body["type"], "alarm");
    assert!(g.body["action"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(
        g.msg_id,
        format!("alarm-{}-{}", home.id.as_str(), g.body["id"])
    );
    assert!(
        ts.metric("doorward_webhook_deliveries_total{result=\"delivered\"}")
            .await
            >= 1
    );
    ts.stop().await;
}

/// A receiver that answers 500 twice gets the alarm on the third attempt, with the same
/// `webhook-id` each time; every attempt is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_is_retried_until_the_third_attempt_succeeds() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (url, got) = receiver(SECRET, 2).await;
    ts.handle.add_webhook(&home.id, &url, SECRET).unwrap();
    forge_report(&ts, &mut home).await;
    eventually(CEILING, "three attempts reach the receiver", || {
        let n = of_kind(&got, "forged_report").len();
        async move { n >= 3 }
    })
    .await;
    let g = of_kind(&got, "forged_report");
    assert!(g.iter().all(|g| g.verified));
    assert!(g.iter().all(|x| x.msg_id == g[0].msg_id), "{g:?}");
    eventually(CEILING, "the third attempt is counted delivered", || {
        let h = ts.handle.clone();
        async move { h.metrics().webhook_count("delivered") >= 1 }
    })
    .await;
    assert!(ts.handle.metrics().webhook_count("failed") >= 2);
    assert!(ts.handle.webhook_dead_letters().is_empty());
    ts.stop().await;
}

/// A receiver that always fails: after every attempt the request is a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_that_always_fails_becomes_a_dead_letter() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (url, got) = receiver(SECRET, usize::MAX).await;
    ts.handle.add_webhook(&home.id, &url, SECRET).unwrap();
    forge_report(&ts, &mut home).await;
    eventually(DEAD_LETTER_CEILING, "a dead letter", || {
        let h = ts.handle.clone();
        async move { !h.webhook_dead_letters().is_empty() }
    })
    .await;
    let d = &ts.handle.webhook_dead_letters()[0];
    assert_eq!(d.home, home.id);
    assert_eq!(d.url, url);
    assert_eq!(d.attempts, doorward_server::webhook::WEBHOOK_MAX_ATTEMPTS);
    assert!(d.last_error.contains("500"), "{d:?}");
    let seen = got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.msg_id == d.msg_id)
        .count();
    assert!(seen >= doorward_server::webhook::WEBHOOK_MAX_ATTEMPTS as usize);
    assert!(
        ts.metric("doorward_webhook_deliveries_total{result=\"dead_letter\"}")
            .await
            >= 1
    );
    let store = ts.handle.store();
    let msg_id = d.msg_id.clone();
    let hid = home.id.clone();
    eventually(
        CEILING,
        "the dead letter is in the home's audit log",
        || {
            let (store, hid, msg_id) = (store.clone(), hid.clone(), msg_id.clone());
            async move {
                let entries =
                    tokio::task::block_in_place(|| store.audit_entries(&hid, 0, 10_000)).unwrap();
                entries.iter().any(|e| {
                    e.kind == doorward_server::webhook::DEAD_LETTER_ENTRY
                        && serde_json::from_slice::<serde_json::Value>(&e.payload)
                            .is_ok_and(|v| v["msg_id"] == msg_id.as_str())
                })
            }
        },
    )
    .await;
    ts.stop().await;
}

/// The receiver's check is real: with another secret, the same requests do not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_signed_with_another_secret_fails_verification() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (url, got) = receiver(OTHER_SECRET, 0).await;
    ts.handle.add_webhook(&home.id, &url, SECRET).unwrap();
    forge_report(&ts, &mut home).await;
    eventually(CEILING, "the alarm reaches the receiver", || {
        let n = of_kind(&got, "forged_report").len();
        async move { n >= 1 }
    })
    .await;
    assert!(of_kind(&got, "forged_report").iter().all(|g| !g.verified));
    ts.stop().await;
}

/// Only https URLs (plain http to a loopback address) and whsec_ secrets are accepted
/// through the provisioning API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_webhook_refuses_other_schemes_and_bad_secrets() {
    let ts = TestServer::start(Broker::Embedded).await;
    let home = provision(&ts.handle).await;
    for url in [
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "http://example.com/x",
        "http://10.0.0.2/x",
    ] {
        assert!(
            ts.handle.add_webhook(&home.id, url, SECRET).is_err(),
            "{url}"
        );
    }
    assert!(ts
        .handle
        .add_webhook(&home.id, "http://127.0.0.1:9/x", "not-a-secret")
        .is_err());
    assert!(ts
        .handle
        .add_webhook(&home.id, "http://127.0.0.1:9/x", SECRET)
        .is_ok());
    assert!(ts
        .handle
        .add_webhook(&home.id, "https://example.com/x", SECRET)
        .is_ok());
    ts.stop().await;
}

/// An endpoint is on record in the home's chain (its secret sealed), so it survives a
/// restart: after it, an alarm still reaches the receiver, correctly signed. A removed
/// endpoint stays removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_endpoints_survive_a_restart() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (url, got) = receiver(SECRET, 0).await;
    let (gone_url, gone) = receiver(SECRET, 0).await;
    ts.handle.add_webhook(&home.id, &url, SECRET).unwrap();
    ts.handle
        .put_webhook(&home.id, &gone_url, SECRET)
        .await
        .unwrap();
    assert!(ts.handle.remove_webhook(&home.id, &gone_url).await.unwrap());
    // The record holds the URL, never the secret.
    let entries = ts
        .handle
        .store()
        .audit_entries(&home.id, 0, doorward_store::MAX_READ_ROWS)
        .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let recorded: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == doorward_server::webhook::WEBHOOK_ENTRY)
        .collect();
    assert_eq!(recorded.len(), 3, "two additions and a removal");
    assert!(recorded
        .iter()
        .all(|e| !e.payload.windows(key.len()).any(|w| w == key.as_slice())));
    let dir = ts.stop().await;

    let ts = TestServer::start_in(Broker::Embedded, dir).await;
    assert_eq!(ts.handle.webhooks(&home.id), vec![url.clone()]);
    forge_report(&ts, &mut home).await;
    eventually(CEILING, "the alarm reaches the endpoint kept", || {
        let n = of_kind(&got, "forged_report").len();
        async move { n >= 1 }
    })
    .await;
    assert!(of_kind(&got, "forged_report").iter().all(|g| g.verified));
    assert!(
        gone.lock().unwrap().is_empty(),
        "the removed endpoint got {:?}",
        gone.lock().unwrap()
    );
    ts.stop().await;
}

/// An https receiver on loopback whose certificate chains to a test-only root, trusted by
/// the server through `webhook_roots`: one request per connection, read by hand, checked
/// with the receiver's own HMAC code.
async fn tls_receiver(secret: &str) -> (String, Arc<Mutex<Vec<Got>>>) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, secret, got) = (acceptor.clone(), secret.clone(), g.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut headers = HeaderMap::new();
                for l in String::from_utf8_lossy(&buf[..head_end]).lines().skip(1) {
                    if let Some((k, v)) = l.split_once(':') {
                        if let (Ok(k), Ok(v)) = (
                            axum::http::HeaderName::from_bytes(k.trim().as_bytes()),
                            axum::http::HeaderValue::from_str(v.trim()),
                        ) {
                            headers.insert(k, v);
                        }
                    }
                }
                let body = &buf[head_end..head_end + len];
                got.lock().unwrap().push(Got {
                    msg_id: headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                    verified: verify(&secret, &headers, body),
                    body: serde_json::from_slice(body).unwrap_or_default(),
                });
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("https://{addr}/hook"), got)
}

/// https webhooks: a receiver whose certificate chains to a root the operator added
/// (`webhook_roots`) gets the alarm, signed; without that root the server does not trust it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_webhook_with_an_extra_root_receives_a_signed_alarm() {
    let (url, got) = tls_receiver(SECRET).await;
    for trusted in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let ts = TestServer::start_with_roots(
            Broker::Embedded,
            dir,
            trusted
                .then(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/ca.pem")),
        )
        .await;
        let mut home = provision(&ts.handle).await;
        ts.handle.add_webhook(&home.id, &url, SECRET).unwrap();
        forge_report(&ts, &mut home).await;
        if trusted {
            eventually(CEILING, "the alarm reaches the https receiver", || {
                let n = of_kind(&got, "forged_report").len();
                async move { n >= 1 }
            })
            .await;
            assert!(of_kind(&got, "forged_report").iter().all(|g| g.verified));
        } else {
            let before = of_kind(&got, "forged_report").len();
            eventually(
                DEAD_LETTER_CEILING,
                "an untrusted certificate fails",
                || {
                    let n = ts.handle.metrics().webhook_count("failed");
                    async move { n >= 1 }
                },
            )
            .await;
            assert_eq!(of_kind(&got, "forged_report").len(), before);
        }
        ts.stop().await;
    }
}
