//! The HTTP API through real HTTP: a server started with API settings, a small hyper client
//! that speaks as each kind of user (session cookie, bearer, carrier API key, signed driver
//! request), and a tenant set up end to end through the API (account, home, door, carrier
//! opted in, driver, delivery assigned).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;
use doorward_control::{DoorKind, DoorSetup};
use doorward_proto::*;
use doorward_server::api::auth::{
    driver_request_message, DRIVER_KEY_HEADER, DRIVER_REQUEST_CONTEXT, DRIVER_SIGNATURE_HEADER,
    DRIVER_TIMESTAMP_HEADER,
};
use doorward_server::{ApiSettings, Database, Handle, Mqtt, ServeConfig, Server};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

pub const CEILING: Duration = Duration::from_secs(10);

pub struct ApiServer {
    pub server: Option<Server>,
    pub handle: Handle,
    pub http: SocketAddr,
    pub mqtt: (String, u16),
    pub dir: tempfile::TempDir,
}

impl ApiServer {
    pub async fn start(settings: ApiSettings) -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let data: PathBuf = dir.path().join("data");
        let cfg = ServeConfig {
            database: Database::Sqlite(data.join("doorward.db")),
            data_dir: data,
            mqtt: Mqtt::Embedded {
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            webhook_roots: None,
        };
        let server = Server::start_with(cfg, settings)
            .await
            .expect("the server starts");
        let handle = server.handle();
        let http = server.http_addr();
        let mqtt = server.mqtt_addr();
        let s = ApiServer {
            server: Some(server),
            handle,
            http,
            mqtt,
            dir,
        };
        let t0 = std::time::Instant::now();
        while s.call("GET", "/readyz", &Cred::None, None).await.status != 200 {
            assert!(t0.elapsed() < CEILING, "/readyz never answered 200");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    pub async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }

    /// One request; the body is JSON when given.
    pub async fn call(&self, method: &str, path: &str, auth: &Cred, body: Option<&Value>) -> Resp {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, auth, bytes, body.is_some()).await
    }

    /// One request with raw body bytes.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        auth: &Cred,
        body: Vec<u8>,
        json_body: bool,
    ) -> Resp {
        let stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.http.to_string());
        if json_body {
            req = req.header("content-type", "application/json");
        }
        match auth {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Cred::Cookie(c) => req = req.header("cookie", format!("dw_session={c}")),
            Cred::Driver(k) => {
                let ts = wall_ms();
                let sig = k.sign(
                    DRIVER_REQUEST_CONTEXT,
                    &driver_request_message(method, path, ts, &body),
                );
                req = req
                    .header(DRIVER_KEY_HEADER, k.public().to_hex())
                    .header(DRIVER_TIMESTAMP_HEADER, ts.to_string())
                    .header(DRIVER_SIGNATURE_HEADER, sig.to_hex());
            }
            Cred::DriverRaw { key, ts, sig } => {
                req = req
                    .header(DRIVER_KEY_HEADER, key.to_hex())
                    .header(DRIVER_TIMESTAMP_HEADER, ts.to_string())
                    .header(DRIVER_SIGNATURE_HEADER, sig.to_hex());
            }
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let res = tokio::time::timeout(CEILING, sender.send_request(req))
            .await
            .expect("an answer within the ceiling")
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let is_stream = headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        // A live event stream never ends: its head is the answer.
        let body = if is_stream {
            Bytes::new()
        } else {
            tokio::time::timeout(CEILING, res.into_body().collect())
                .await
                .expect("a body within the ceiling")
                .unwrap()
                .to_bytes()
        };
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }
}

pub enum Cred {
    None,
    Bearer(String),
    Cookie(String),
    Driver(KeyPair),
    DriverRaw { key: PubKey, ts: u64, sig: Sig },
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    pub json: Value,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status; shows the body when it differs.
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }

    /// Asserts an API error: the status and its JSON code.
    pub fn expect_error(self, status: u16, code: &str) -> Resp {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.json["code"], code, "body: {}", self.text());
        assert!(self.json["error"].is_string(), "body: {}", self.text());
        self
    }
}

pub fn wall_ms() -> u64 {
    doorward_server::runtime::wall_ms()
}

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

pub const PASSWORD: &str = "correct horse battery";

/// One tenant of each kind, set up through the API: a homeowner with a home and one door
/// (paired by the operator), a carrier opted in there with one driver, and a delivery
/// assigned to that driver.
pub struct Tenant {
    pub email: String,
    pub account: String,
    pub session: String,
    pub home: Id,
    pub root: KeyPair,
    pub events_token: String,
    pub lock_id: Id,
    pub lock_key: KeyPair,
    pub cam_id: Id,
    pub cam_key: KeyPair,
    pub carrier: Id,
    pub api_key: String,
    pub driver_id: String,
    pub driver: KeyPair,
    pub delivery: Id,
    pub rng: ChaCha20Rng,
}

/// A delivery the carrier with credentials `c` creates at `home`'s `lock`, open from a minute
/// ago for an hour, assigned to `driver` if given.
pub async fn create_delivery(
    s: &ApiServer,
    c: &Cred,
    home: &Id,
    lock: &Id,
    driver: Option<&str>,
) -> Id {
    let now = wall_ms();
    let del = s
        .call(
            "POST",
            "/api/carrier/deliveries",
            c,
            Some(&json!({
                "home": home.as_str(),
                "lock": lock.as_str(),
                "not_before_ms": now - 60_000,
                "not_after_ms": now + 3_600_000,
            })),
        )
        .await
        .expect(201);
    let delivery = id(del.json["delivery"].as_str().unwrap());
    if let Some(driver) = driver {
        s.call(
            "POST",
            &format!("/api/carrier/deliveries/{delivery}/assign"),
            c,
            Some(&json!({"driver": driver})),
        )
        .await
        .expect(200);
    }
    delivery
}

impl Tenant {
    pub fn homeowner(&self) -> Cred {
        Cred::Cookie(self.session.clone())
    }
    pub fn carrier_auth(&self) -> Cred {
        Cred::Bearer(self.api_key.clone())
    }
    pub fn driver_auth(&self) -> Cred {
        Cred::Driver(self.driver.clone())
    }

    /// The tenant as the device helpers of `common` see it.
    pub fn common_home(&self) -> super::common::Home {
        super::common::Home {
            id: self.home.clone(),
            root: self.root.clone(),
            lock_id: self.lock_id.clone(),
            lock_key: self.lock_key.clone(),
            cam_id: self.cam_id.clone(),
            cam_key: self.cam_key.clone(),
            carrier: self.carrier.clone(),
            driver: self.driver.clone(),
            delivery: self.delivery.clone(),
            token: self.events_token.clone(),
            rng: ChaCha20Rng::seed_from_u64(self.rng.clone().next_u64()),
        }
    }
}

/// Logs in; returns the session token.
pub async fn login(s: &ApiServer, email: &str, password: &str) -> String {
    let r = s
        .call(
            "POST",
            "/api/login",
            &Cred::None,
            Some(&json!({"email": email, "password": password})),
        )
        .await
        .expect(200);
    r.json["token"].as_str().unwrap().to_owned()
}

/// A homeowner adds a home through the API: prepare, sign the issuing key's certificate
/// with the root, add.
pub async fn add_home(s: &ApiServer, session: &Cred, root: &KeyPair) -> (Id, String) {
    let p = s
        .call("POST", "/api/homes/prepare", session, None)
        .await
        .expect(201);
    let home = id(p.json["home"].as_str().unwrap());
    let issuer = PubKey::from_hex(p.json["issuer_key"].as_str().unwrap()).unwrap();
    let now = wall_ms();
    let cert = Signed::sign(
        IssuerCert {
            home: home.clone(),
            issuer,
            not_before_ms: now - 60_000,
            not_after_ms: now + 3_600_000,
            serial: 1,
        },
        root,
    );
    let r = s
        .call(
            "POST",
            "/api/homes",
            session,
            Some(&json!({
                "home": home.as_str(),
                "root_key": root.public().to_hex(),
                "cert": hex::encode(codec::encode(&cert)),
            })),
        )
        .await
        .expect(201);
    (home, r.json["events_token"].as_str().unwrap().to_owned())
}

/// Sets up one tenant; `tag` keeps names apart.
pub async fn tenant(s: &ApiServer, tag: &str) -> Tenant {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let mut rng = ChaCha20Rng::from_seed(seed);
    let email = format!("owner-{tag}-{}@example.org", hex::encode(&seed[..3]));
    let account = s
        .handle
        .create_homeowner(&email, PASSWORD)
        .await
        .unwrap()
        .to_string();
    let session = login(s, &email, PASSWORD).await;
    let owner = Cred::Cookie(session.clone());
    let root = KeyPair::generate(&mut rng);
    let (home, events_token) = add_home(s, &owner, &root).await;
    let lock_key = KeyPair::generate(&mut rng);
    let cam_key = KeyPair::generate(&mut rng);
    let sfx = hex::encode(&seed[..4]);
    let lock_id = id(&format!("lock-{tag}-{sfx}"));
    let cam_id = id(&format!("cam-{tag}-{sfx}"));
    s.handle
        .pair_door(
            home.clone(),
            DoorSetup {
                lock: lock_id.clone(),
                lock_key: lock_key.public(),
                camera: cam_id.clone(),
                camera_key: cam_key.public(),
                kind: DoorKind::Front,
            },
        )
        .await
        .unwrap();
    let (carrier, api_key) = s
        .handle
        .create_carrier(&format!("Parcels {tag}"))
        .await
        .unwrap();
    s.call(
        "PUT",
        &format!("/api/homes/{home}/carriers/{carrier}"),
        &owner,
        None,
    )
    .await
    .expect(200);
    let driver = KeyPair::generate(&mut rng);
    let c = Cred::Bearer(api_key.clone());
    let d = s
        .call(
            "POST",
            "/api/carrier/drivers",
            &c,
            Some(&json!({"name": format!("Driver {tag}"), "key": driver.public().to_hex()})),
        )
        .await
        .expect(201);
    let driver_id = d.json["driver"].as_str().unwrap().to_owned();
    let delivery = create_delivery(s, &c, &home, &lock_id, Some(&driver_id)).await;
    Tenant {
        email,
        account,
        session,
        home,
        root,
        events_token,
        lock_id,
        lock_key,
        cam_id,
        cam_key,
        carrier,
        api_key,
        driver_id,
        driver,
        delivery,
        rng,
    }
}

/// An entry request body: a fresh nonce signed by the lock (as the phone reads it over the
/// local channel) and the driver's signature over it.
pub fn entry_body(t: &mut Tenant, lock: &super::common::LockDev) -> Value {
    let nonce = lock.nonce(&mut t.rng);
    let sig = t.driver.sign(
        DRIVER_NONCE_CONTEXT,
        &driver_nonce_message(&t.lock_id, &nonce.body.nonce),
    );
    json!({"nonce": hex::encode(codec::encode(&nonce)), "driver_sig": sig.to_hex()})
}

/// Polls `f` until it holds, within `within`.
pub async fn until<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = std::time::Instant::now();
    while !f().await {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A lock report signed by a key that is not the lock's, published on the lock's topic.
pub async fn forge_report(s: &ApiServer, t: &mut Tenant) {
    let forger = super::common::Mqttc::connect(&s.mqtt, &t.home, &t.lock_id).await;
    let wrong = KeyPair::generate(&mut t.rng);
    let mut sim = super::common::LockSim {
        seq: 0,
        t0: std::time::Instant::now(),
        bolt: Bolt::Thrown,
        door: Door::Closed,
        cycle: None,
    };
    forger
        .send(sim.report(&t.lock_id, &wrong, LockEvent::Boot))
        .await;
}
