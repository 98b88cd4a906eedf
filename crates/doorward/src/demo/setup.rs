//! Bringing the demo up: the server, the homeowner and the home through the API, the agents
//! as child processes, pairing with their setup codes, a carrier opted in, a driver; and
//! taking it down again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use doorward_agent::scene::{wall_ms, SceneDir};
use doorward_proto::pairing::{DeviceKind, SetupCode};
use doorward_proto::{codec, Id, IssuerCert, KeyPair, PubKey, Signed};
use doorward_server::{ApiSettings, Database, Handle, Mqtt, PairOptions, ServeConfig, Server};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::procs::{read_when_there, Agent, Echo, Relay};
use crate::client::{Api, Auth};
use crate::driver_cmd::{deliver, Ending, Step, Trip};

/// A progress printer.
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

/// The demo's accounts and ids, kept in the data directory between runs (mode 0600: it
/// holds the homeowner's password and the carrier's API key).
pub const SETUP_FILE: &str = "demo-setup.json";
/// The home root key's file (hex seed, 0600), as `doorward keys generate` writes it.
pub const ROOT_KEY_FILE: &str = "home-root.key";
/// The driver key's file (hex seed, 0600).
pub const DRIVER_KEY_FILE: &str = "driver.key";
/// The lock's id.
pub const LOCK_ID: &str = "lock-front";
/// The camera's id.
pub const CAMERA_ID: &str = "cam-front";
/// The homeowner's email.
pub const OWNER_EMAIL: &str = "owner@demo.doorward.example";
/// Time the virtual bolt motor takes per movement, ms.
pub const DEMO_MOTOR_MS: u64 = 300;
/// How long the demo waits for an agent's file or for the home to show "locked", ms.
pub const READY_WAIT_MS: u64 = 20_000;
/// How long a delivery waits for the last one to end (the server's post-entry watch is
/// 30 s), ms.
pub const IDLE_WAIT_MS: u64 = 60_000;

/// How to start.
pub struct Opts {
    /// Data directory.
    pub data: PathBuf,
    /// HTTP address to take exactly (fails if busy).
    pub listen: Option<SocketAddr>,
    /// HTTP address to try first (a free port if busy); `None`: a free port.
    pub default_http: Option<SocketAddr>,
    /// Broker port to try first (a free port if busy); `None`: a free port.
    pub mqtt_port: Option<u16>,
    /// Where the agents' output goes.
    pub echo: Echo,
    /// Whether the data directory is kept (accounts reused on the next run).
    pub keep: bool,
    /// Progress printer.
    pub say: Say,
}

#[derive(Serialize, Deserialize)]
struct Kept {
    password: String,
    account: String,
    home: String,
    events_token: String,
    carrier: String,
    carrier_key: String,
    driver: String,
}

/// The running demo.
pub struct Demo {
    /// The server (taken at shutdown).
    pub server: Option<Server>,
    /// Its Rust API.
    pub handle: Handle,
    /// Its HTTP API.
    pub api: Api,
    /// Data directory.
    pub data: PathBuf,
    /// The shared virtual scene.
    pub scene: SceneDir,
    /// The homeowner's session token.
    pub token: String,
    /// The home.
    pub home: Id,
    /// The carrier's API key.
    pub carrier_key: String,
    /// The driver's id at the carrier.
    pub driver_id: String,
    /// The driver's key.
    pub driver: KeyPair,
    /// The lock's id.
    pub lock_id: Id,
    /// The lock's local channel.
    pub local: SocketAddr,
    /// The lock agent.
    pub lock: Agent,
    /// The camera agent.
    pub camera: Agent,
    /// The camera's uplink.
    pub relay: Relay,
    /// The server's public key.
    pub server_key: PubKey,
    /// Progress printer.
    pub say: Say,
}

fn free_or(preferred: Option<SocketAddr>) -> (SocketAddr, bool) {
    if let Some(p) = preferred {
        if std::net::TcpListener::bind(p).is_ok() {
            return (p, false);
        }
    }
    let any = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| "127.0.0.1:0".parse().expect("valid"));
    (any, preferred.is_some())
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    doorward_agent::files::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn key_file(path: &Path) -> Result<KeyPair> {
    if path.exists() {
        return crate::read_seed(path);
    }
    let key = KeyPair::generate(&mut rand_core::OsRng);
    write_secret(path, &format!("{}\n", hex::encode(&key.seed()[..])))?;
    Ok(key)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

impl Demo {
    /// Starts everything; prints the login link as soon as the home exists.
    pub async fn start(o: Opts, t0: Instant) -> Result<Demo> {
        let say = o.say.clone();
        std::fs::create_dir_all(&o.data)
            .with_context(|| format!("cannot create the data directory {}", o.data.display()))?;
        let data = o.data.canonicalize()?;
        if let Some(pid) = super::attack::running_demo(&data) {
            bail!(
                "a demo already runs with {} (pid {pid}): stop it, or give this one another \
                 --data DIR",
                data.display()
            );
        }
        // Claimed at once, so a second demo on the same directory is refused.
        doorward_agent::files::write_atomic(
            &data.join(super::attack::STATE_FILE),
            json!({ "pid": std::process::id() }).to_string().as_bytes(),
        )
        .context("cannot write the demo's state file")?;
        let kept_path = data.join(SETUP_FILE);
        let kept: Option<Kept> = match std::fs::read(&kept_path) {
            Ok(b) => Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} does not parse: delete {} to start over",
                    kept_path.display(),
                    data.display()
                )
            })?),
            Err(_) => None,
        };
        if kept.is_none() && data.join("server").exists() {
            bail!(
                "{} holds an unfinished demo: delete it to start over",
                data.display()
            );
        }
        say(format!("Doorward demo — data in {}", data.display()));

        // The server, on embedded defaults.
        let (listen, moved) = match o.listen {
            Some(l) => (l, false),
            None => free_or(o.default_http),
        };
        if moved {
            say(format!(
                "  HTTP port {} is busy: using {listen} instead",
                o.default_http.map(|a| a.port()).unwrap_or(0)
            ));
        }
        let (mqtt, moved) = free_or(o.mqtt_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))));
        if moved {
            say(format!(
                "  broker port {} is busy: using {} instead",
                o.mqtt_port.unwrap_or(0),
                mqtt.port()
            ));
        }
        let server_dir = data.join("server");
        let cfg = ServeConfig {
            database: Database::Sqlite(server_dir.join(doorward_server::config::SQLITE_FILE)),
            data_dir: server_dir,
            mqtt: Mqtt::Embedded { listen: mqtt },
            listen,
            webhook_roots: None,
        };
        let server = Server::start_with(cfg, ApiSettings::default())
            .await
            .context("starting the server")?;
        let handle = server.handle();
        let http = server.http_addr();
        let api = Api::at(http);
        let server_key = server.server_key();
        let broker = server.mqtt_addr();
        say(format!(
            "  server {} (embedded broker mqtt://{}:{})",
            api.base(),
            broker.0,
            broker.1
        ));

        // The homeowner and the home, through the API.
        let kept = match kept {
            Some(k) => k,
            None => create_tenants(&handle, &api, &data).await?,
        };
        let token = login(&api, &kept.password).await?;
        let account = Id::new(kept.account.clone())?;
        let home = Id::new(kept.home.clone())?;
        let link = handle
            .login_link(&account)
            .await
            .context("making a login link")?;
        say(String::new());
        say(format!(
            "  Log in as the homeowner (one click; the link works once, for 10 minutes):\n    {}{link}",
            api.base()
        ));
        say(format!(
            "  API: {}/api/homes/{} (OpenAPI: {}/api/openapi.json); owner {OWNER_EMAIL}, \
             password in {}",
            api.base(),
            kept.home,
            api.base(),
            kept_path.display()
        ));
        say(format!(
            "  Live events (SSE): curl -N -H 'Authorization: Bearer {}' {}/api/homes/{}/events",
            kept.events_token,
            api.base(),
            kept.home
        ));
        say(format!("  (ready in {:.1} s)", t0.elapsed().as_secs_f64()));
        say(String::new());

        // The agents, as child processes of this binary, on one virtual scene.
        let scene_dir = data.join("scene");
        let scene = SceneDir::open(&scene_dir)?;
        scene.update(|s| {
            s.people.clear();
            s.door = doorward_agent::scene::DoorIntent::Closed;
            s.feed = doorward_agent::scene::Feed::Live;
            s.bolt_jammed = false;
        })?;
        let (lock_data, cam_data) = (data.join("lock"), data.join("camera"));
        let _ = std::fs::remove_file(lock_data.join("local.addr"));
        let mqtt_url = format!("mqtt://{}:{}", broker.0, broker.1);
        let s = |p: &Path| p.display().to_string();
        let lock = Agent::spawn(
            "lock",
            &[
                "lock".into(),
                "--data".into(),
                s(&lock_data),
                "--mqtt".into(),
                mqtt_url,
                "--id".into(),
                LOCK_ID.into(),
                "--local".into(),
                "127.0.0.1:0".into(),
                "--scene".into(),
                s(&scene_dir),
                "--motor-ms".into(),
                DEMO_MOTOR_MS.to_string(),
            ],
            o.echo.clone(),
        )?;
        let wait = Duration::from_millis(READY_WAIT_MS);
        let local: SocketAddr = read_when_there(&lock_data.join("local.addr"), wait)
            .await?
            .parse()
            .context("the lock's local.addr is not an address")?;
        let relay = Relay::start(broker.clone()).await?;
        let camera = Agent::spawn(
            "camera",
            &[
                "camera".into(),
                "--data".into(),
                s(&cam_data),
                "--mqtt".into(),
                format!("mqtt://{}", relay.addr()),
                "--id".into(),
                CAMERA_ID.into(),
                "--scene".into(),
                s(&scene_dir),
                "--lock-local".into(),
                local.to_string(),
            ],
            o.echo.clone(),
        )?;
        let driver = key_file(&data.join(DRIVER_KEY_FILE))?;
        let demo = Demo {
            server: Some(server),
            handle,
            api,
            data: data.clone(),
            scene,
            token,
            home,
            carrier_key: kept.carrier_key.clone(),
            driver_id: kept.driver.clone(),
            driver,
            lock_id: Id::new(LOCK_ID).expect("a valid id"),
            local,
            lock,
            camera,
            relay,
            server_key,
            say: say.clone(),
        };
        demo.pair(&cam_data, &lock_data).await?;
        demo.wait_locked().await?;
        say(format!(
            "  the home is ready: lock {LOCK_ID} (pid {}), camera {CAMERA_ID} (pid {}), \
             carrier {} opted in, {:.1} s after start",
            demo.lock.pid(),
            demo.camera.pid(),
            kept.carrier,
            t0.elapsed().as_secs_f64()
        ));
        if !o.keep {
            let _ = std::fs::remove_file(&kept_path);
        }
        Ok(demo)
    }

    async fn pair(&self, cam_data: &Path, lock_data: &Path) -> Result<()> {
        let cam_paired = cam_data.join("pairing.json").exists();
        let lock_paired = lock_data.join("pairing.json").exists();
        if cam_paired && lock_paired {
            (self.say)("  lock and camera were paired on an earlier run".into());
            return Ok(());
        }
        if cam_paired != lock_paired {
            bail!(
                "only one of the two devices is paired (an interrupted first run): delete {} \
                 to start over",
                self.data.display()
            );
        }
        let wait = Duration::from_millis(READY_WAIT_MS);
        let cam_code = read_when_there(&cam_data.join("setup-code"), wait).await?;
        let lock_code = read_when_there(&lock_data.join("setup-code"), wait).await?;
        let opts = PairOptions {
            timeout_ms: READY_WAIT_MS,
            ..PairOptions::default()
        };
        let camera = Id::new(CAMERA_ID).expect("a valid id");
        (self.say)(format!(
            "  pairing camera {CAMERA_ID} with its setup code {cam_code}"
        ));
        self.handle
            .pair_device(
                self.home.clone(),
                camera.clone(),
                DeviceKind::Camera,
                SetupCode::parse(&cam_code).context("the camera's setup code")?,
                opts.clone(),
            )
            .await
            .context("pairing the camera")?;
        (self.say)(format!(
            "  pairing lock {LOCK_ID} with its setup code {lock_code}, witnessed by {CAMERA_ID}"
        ));
        self.handle
            .pair_device(
                self.home.clone(),
                self.lock_id.clone(),
                DeviceKind::Lock,
                SetupCode::parse(&lock_code).context("the lock's setup code")?,
                PairOptions {
                    camera: Some(camera),
                    ..opts
                },
            )
            .await
            .context("pairing the lock")?;
        read_when_there(&cam_data.join("pairing.json"), wait).await?;
        read_when_there(&lock_data.join("pairing.json"), wait).await?;
        Ok(())
    }

    /// The home's state as the API shows it.
    pub async fn state(&self) -> Result<Value> {
        Ok(self
            .api
            .call(
                "GET",
                &format!("/api/homes/{}", self.home),
                &Auth::Bearer(&self.token),
                None,
            )
            .await?
            .ok("reading the home's state")?
            .json)
    }

    /// What the API shows for the lock: `locked`, `unlocked`, … or `unknown`.
    pub async fn shown_lock(&self) -> Result<String> {
        let st = self.state().await?;
        Ok(st["doors"][0]["lock"]["shown"]["value"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned())
    }

    async fn wait_locked(&self) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if self.shown_lock().await? == "locked" {
                return Ok(());
            }
            if t0.elapsed() >= Duration::from_millis(READY_WAIT_MS) {
                bail!(
                    "the server did not show the lock locked within {} s: see the agents' output",
                    READY_WAIT_MS / 1000
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The carrier creates a delivery and assigns the driver.
    pub async fn new_delivery(&self) -> Result<Id> {
        let carrier = Auth::Bearer(&self.carrier_key);
        let now = wall_ms();
        let r = self
            .api
            .call(
                "POST",
                "/api/carrier/deliveries",
                &carrier,
                Some(&json!({
                    "home": self.home.as_str(),
                    "lock": self.lock_id.as_str(),
                    "not_before_ms": now.saturating_sub(60_000),
                    "not_after_ms": now + 3_600_000,
                })),
            )
            .await?
            .ok("the carrier creating a delivery")?;
        let d = r.json["delivery"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the delivery answer holds no id"))?
            .to_owned();
        self.api
            .call(
                "POST",
                &format!("/api/carrier/deliveries/{d}/assign"),
                &carrier,
                Some(&json!({"driver": self.driver_id})),
            )
            .await?
            .ok("the carrier assigning the driver")?;
        Ok(Id::new(d)?)
    }

    /// Waits until the door's last delivery is over: after the egress the server watches the
    /// entry zone for `post_entry_watch_ms` (30 s) before it frees the lock for the next one.
    pub async fn wait_idle(&self) -> Result<()> {
        let t0 = Instant::now();
        let mut told = false;
        loop {
            let st = self.state().await?;
            let d = &st["doors"][0]["delivery"];
            if d.is_null() || matches!(d["phase"].as_str(), Some("done" | "incident")) {
                return Ok(());
            }
            if !told {
                (self.say)(format!(
                    "  (the server still watches the last entry, phase {}: the next delivery \
                     waits for it to end)",
                    d["phase"].as_str().unwrap_or("?")
                ));
                told = true;
            }
            if t0.elapsed() >= Duration::from_millis(IDLE_WAIT_MS) {
                bail!(
                    "the last delivery did not end within {} s: {st}",
                    IDLE_WAIT_MS / 1000
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One delivery through the driver flow (after the last one ended); `hook` sees each
    /// step.
    pub async fn deliver(&self, hook: &mut (dyn FnMut(Step) + Send)) -> Result<(Id, Ending)> {
        self.wait_idle().await?;
        let delivery = self.new_delivery().await?;
        (self.say)(format!(
            "carrier: delivery {delivery} assigned to the driver"
        ));
        let trip = Trip {
            api: &self.api,
            key: &self.driver,
            delivery: &delivery,
            local: self.local,
            scene: &self.scene,
        };
        let say = self.say.clone();
        let print = move |l: String| say(l);
        let ending = deliver(&trip, &print, hook).await?;
        Ok((delivery, ending))
    }

    /// The carrier sends another driver: after an incident the server blocks the driver who
    /// was at the door (I4), so the next delivery needs a new one. Its key replaces
    /// `driver.key` in the data directory.
    pub async fn replace_driver(&mut self) -> Result<()> {
        let key = KeyPair::generate(&mut rand_core::OsRng);
        let r = self
            .api
            .call(
                "POST",
                "/api/carrier/drivers",
                &Auth::Bearer(&self.carrier_key),
                Some(&json!({"name": "Demo driver", "key": key.public().to_hex()})),
            )
            .await?
            .ok("the carrier registering another driver")?;
        let id = r.json["driver"].as_str().unwrap_or_default().to_owned();
        write_secret(
            &self.data.join(DRIVER_KEY_FILE),
            &format!("{}\n", hex::encode(&key.seed()[..])),
        )?;
        let kept_path = self.data.join(SETUP_FILE);
        if let Ok(b) = std::fs::read(&kept_path) {
            if let Ok(mut k) = serde_json::from_slice::<Kept>(&b) {
                k.driver = id.clone();
                write_secret(&kept_path, &serde_json::to_string_pretty(&k)?)?;
            }
        }
        (self.say)(format!(
            "carrier: driver {} is blocked after the incident; driver {id} takes over",
            self.driver_id
        ));
        self.driver = key;
        self.driver_id = id;
        Ok(())
    }

    /// Stops the agents (and reaps them), then the server (flushing the audit record).
    pub async fn stop(&mut self) -> Result<()> {
        self.relay.set_cut(false);
        self.camera.stop();
        self.lock.stop();
        super::attack::forget_running(&self.data);
        if let Some(s) = self.server.take() {
            s.shutdown().await?;
        }
        Ok(())
    }
}

async fn login(api: &Api, password: &str) -> Result<String> {
    let r = api
        .call(
            "POST",
            "/api/login",
            &Auth::None,
            Some(&json!({"email": OWNER_EMAIL, "password": password})),
        )
        .await?
        .ok("logging the homeowner in")?;
    Ok(r.json["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the login answer holds no token"))?
        .to_owned())
}

/// First run: the homeowner and the home (through the API), the carrier opted in, the
/// driver registered by the carrier.
async fn create_tenants(handle: &Handle, api: &Api, data: &Path) -> Result<Kept> {
    let password = random_hex(16);
    let account = handle
        .create_homeowner(OWNER_EMAIL, &password)
        .await
        .context("creating the homeowner")?;
    let token = login(api, &password).await?;
    let owner = Auth::Bearer(&token);
    let prepared = api
        .call("POST", "/api/homes/prepare", &owner, None)
        .await?
        .ok("reserving a home")?
        .json;
    let home = Id::new(prepared["home"].as_str().unwrap_or_default())?;
    let issuer = PubKey::from_hex(prepared["issuer_key"].as_str().unwrap_or_default())
        .ok_or_else(|| anyhow::anyhow!("the server's issuing key does not parse"))?;
    // The home root key stays with the homeowner: here, in the demo's data directory.
    let root = key_file(&data.join(ROOT_KEY_FILE))?;
    let now = wall_ms();
    let cert = Signed::sign(
        IssuerCert {
            home: home.clone(),
            issuer,
            not_before_ms: now.saturating_sub(60_000),
            not_after_ms: now + 365 * 24 * 3_600_000,
            serial: 1,
        },
        &root,
    );
    let created = api
        .call(
            "POST",
            "/api/homes",
            &owner,
            Some(&json!({
                "home": home.as_str(),
                "root_key": root.public().to_hex(),
                "cert": hex::encode(codec::encode(&cert)),
            })),
        )
        .await?
        .ok("adding the home")?
        .json;
    let events_token = created["events_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (carrier, carrier_key) = handle
        .create_carrier("Demo Parcels")
        .await
        .context("creating the carrier")?;
    api.call(
        "PUT",
        &format!("/api/homes/{home}/carriers/{carrier}"),
        &owner,
        None,
    )
    .await?
    .ok("opting the carrier in")?;
    let driver = key_file(&data.join(DRIVER_KEY_FILE))?;
    let r = api
        .call(
            "POST",
            "/api/carrier/drivers",
            &Auth::Bearer(&carrier_key),
            Some(&json!({"name": "Dana (demo driver)", "key": driver.public().to_hex()})),
        )
        .await?
        .ok("the carrier registering its driver")?;
    let kept = Kept {
        password,
        account: account.to_string(),
        home: home.to_string(),
        events_token,
        carrier: carrier.to_string(),
        carrier_key,
        driver: r.json["driver"].as_str().unwrap_or_default().to_owned(),
    };
    write_secret(
        &data.join(SETUP_FILE),
        &serde_json::to_string_pretty(&kept)?,
    )?;
    Ok(kept)
}
