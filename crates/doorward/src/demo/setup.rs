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
    /// The camera's id.
    pub camera_id: Id,
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

/// A home's names: its owner's email and its devices' ids (device ids are unique on a
/// broker, so homes sharing one need their own).
#[derive(Clone, Debug)]
pub struct HomeNames {
    /// The homeowner's email.
    pub owner_email: String,
    /// The lock's id.
    pub lock: String,
    /// The camera's id.
    pub camera: String,
}

impl HomeNames {
    /// The demo's one home: [`OWNER_EMAIL`], [`LOCK_ID`], [`CAMERA_ID`].
    pub fn demo() -> HomeNames {
        HomeNames {
            owner_email: OWNER_EMAIL.into(),
            lock: LOCK_ID.into(),
            camera: CAMERA_ID.into(),
        }
    }
}

/// What a home needs of the server it runs on (the server itself may be owned elsewhere).
#[derive(Clone)]
pub struct ServerAt {
    /// The server's Rust API.
    pub handle: Handle,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its public key.
    pub server_key: PubKey,
    /// Its broker's host and port.
    pub broker: (String, u16),
}

impl ServerAt {
    /// Where `server` is.
    pub fn of(server: &Server) -> ServerAt {
        ServerAt {
            handle: server.handle(),
            http: server.http_addr(),
            server_key: server.server_key(),
            broker: server.mqtt_addr(),
        }
    }
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
        let api = Api::at(server.http_addr());
        let broker = server.mqtt_addr();
        say(format!(
            "  server {} (embedded broker mqtt://{}:{})",
            api.base(),
            broker.0,
            broker.1
        ));
        Demo::bring_up(o, t0, data, ServerAt::of(&server), kept, &HomeNames::demo())
            .await
            .map(|d| Demo {
                server: Some(server),
                ..d
            })
    }

    /// Adds a home of its own (homeowner, home, lock and camera agents, carrier, driver,
    /// named by `names`) to a server that runs elsewhere in this process, with `o.data` as the
    /// home's data directory; the returned demo does not own the server. This is how many
    /// homes share one server and one broker (`doorward bench`).
    pub async fn join(server: ServerAt, o: Opts, names: &HomeNames, t0: Instant) -> Result<Demo> {
        std::fs::create_dir_all(&o.data)
            .with_context(|| format!("cannot create the data directory {}", o.data.display()))?;
        let data = o.data.canonicalize()?;
        Demo::bring_up(o, t0, data, server, None, names).await
    }

    /// Everything after the server: the tenants (or the kept ones), the agents, pairing.
    async fn bring_up(
        o: Opts,
        t0: Instant,
        data: PathBuf,
        server: ServerAt,
        kept: Option<Kept>,
        names: &HomeNames,
    ) -> Result<Demo> {
        let owner_email = names.owner_email.as_str();
        let (lock_id, camera_id) = (names.lock.as_str(), names.camera.as_str());
        let say = o.say.clone();
        let kept_path = data.join(SETUP_FILE);
        let ServerAt {
            handle,
            http,
            server_key,
            broker,
        } = server;
        let api = Api::at(http);

        // The homeowner and the home, through the API.
        // One login per home: the API limits logins per address (homes sharing a server add up).
        let (kept, token) = match kept {
            Some(k) => {
                let token = login_as(&api, owner_email, &k.password).await?;
                (k, token)
            }
            None => create_tenants(&handle, &api, &data, owner_email).await?,
        };
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
            "  API: {}/api/homes/{} (OpenAPI: {}/api/openapi.json); owner {owner_email}, \
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
                lock_id.into(),
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
                camera_id.into(),
                "--scene".into(),
                s(&scene_dir),
                "--lock-local".into(),
                local.to_string(),
                // Footage goes straight to the server's HTTP API, not through the relay.
                "--server-url".into(),
                api.base().to_owned(),
            ],
            o.echo.clone(),
        )?;
        let driver = key_file(&data.join(DRIVER_KEY_FILE))?;
        let demo = Demo {
            server: None,
            handle,
            api,
            data: data.clone(),
            scene,
            token,
            home,
            carrier_key: kept.carrier_key.clone(),
            driver_id: kept.driver.clone(),
            driver,
            lock_id: Id::new(lock_id)?,
            camera_id: Id::new(camera_id)?,
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
            "  the home is ready: lock {lock_id} (pid {}), camera {camera_id} (pid {}), \
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
        let camera = self.camera_id.clone();
        (self.say)(format!(
            "  pairing camera {camera} with its setup code {cam_code}"
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
            "  pairing lock {} with its setup code {lock_code}, witnessed by {camera}",
            self.lock_id
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

    /// Waits until the API shows the lock locked (at most [`READY_WAIT_MS`]).
    pub async fn wait_locked(&self) -> Result<()> {
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
        new_delivery(
            &self.api,
            &self.carrier_key,
            &self.home,
            &self.lock_id,
            &self.driver_id,
        )
        .await
    }

    /// Waits until the door's last delivery is over: after the egress the server watches the
    /// entry zone for `post_entry_watch_ms` (30 s) before it frees the lock for the next one.
    pub async fn wait_idle(&self) -> Result<()> {
        let t0 = Instant::now();
        let mut told = false;
        loop {
            let st = self.state().await?;
            let d = &st["doors"][0]["delivery"];
            if d.is_null()
                || matches!(
                    d["phase"].as_str(),
                    Some("done" | "incident" | "expired" | "cancelled")
                )
            {
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
        let id = register_driver(&self.api, &self.carrier_key, "Demo driver", &key).await?;
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

/// Logs a homeowner in; returns the session token.
pub(crate) async fn login_as(api: &Api, email: &str, password: &str) -> Result<String> {
    let r = api
        .call(
            "POST",
            "/api/login",
            &Auth::None,
            Some(&json!({"email": email, "password": password})),
        )
        .await?
        .ok("logging the homeowner in")?;
    Ok(r.json["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the login answer holds no token"))?
        .to_owned())
}

/// First run: the homeowner and the home (through the API), the carrier opted in, the
/// driver registered by the carrier. Returns them and the homeowner's session token.
async fn create_tenants(
    handle: &Handle,
    api: &Api,
    data: &Path,
    email: &str,
) -> Result<(Kept, String)> {
    let password = random_hex(16);
    let account = handle
        .create_homeowner(email, &password)
        .await
        .context("creating the homeowner")?;
    let token = login_as(api, email, &password).await?;
    let owner = Auth::Bearer(&token);
    // The home root key stays with the homeowner: here, in the demo's data directory.
    let root = key_file(&data.join(ROOT_KEY_FILE))?;
    let (home, events_token) = add_home(api, &owner, &root).await?;
    let (carrier, carrier_key) = handle
        .create_carrier("Demo Parcels")
        .await
        .context("creating the carrier")?;
    opt_in(api, &owner, &home, &carrier).await?;
    let driver = key_file(&data.join(DRIVER_KEY_FILE))?;
    let driver_id = register_driver(api, &carrier_key, "Dana (demo driver)", &driver).await?;
    let kept = Kept {
        password,
        account: account.to_string(),
        home: home.to_string(),
        events_token,
        carrier: carrier.to_string(),
        carrier_key,
        driver: driver_id,
    };
    write_secret(
        &data.join(SETUP_FILE),
        &serde_json::to_string_pretty(&kept)?,
    )?;
    Ok((kept, token))
}

/// The homeowner (`owner`) reserves a home, certifies the server's issuing key for it with
/// the home root key `root`, and adds it; returns the home and its event-stream token.
pub(crate) async fn add_home(api: &Api, owner: &Auth<'_>, root: &KeyPair) -> Result<(Id, String)> {
    let prepared = api
        .call("POST", "/api/homes/prepare", owner, None)
        .await?
        .ok("reserving a home")?
        .json;
    let home = Id::new(prepared["home"].as_str().unwrap_or_default())?;
    let issuer = PubKey::from_hex(prepared["issuer_key"].as_str().unwrap_or_default())
        .ok_or_else(|| anyhow::anyhow!("the server's issuing key does not parse"))?;
    let now = wall_ms();
    let cert = Signed::sign(
        IssuerCert {
            home: home.clone(),
            issuer,
            not_before_ms: now.saturating_sub(60_000),
            not_after_ms: now + 365 * 24 * 3_600_000,
            serial: 1,
        },
        root,
    );
    let created = api
        .call(
            "POST",
            "/api/homes",
            owner,
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
    Ok((home, events_token))
}

/// The homeowner (`owner`) opts `carrier` in for `home` (I9).
pub(crate) async fn opt_in(api: &Api, owner: &Auth<'_>, home: &Id, carrier: &Id) -> Result<()> {
    api.call(
        "PUT",
        &format!("/api/homes/{home}/carriers/{carrier}"),
        owner,
        None,
    )
    .await?
    .ok("opting the carrier in")?;
    Ok(())
}

/// The carrier (`carrier_key`) registers a driver's key; returns the driver's id.
pub(crate) async fn register_driver(
    api: &Api,
    carrier_key: &str,
    name: &str,
    key: &KeyPair,
) -> Result<String> {
    let r = api
        .call(
            "POST",
            "/api/carrier/drivers",
            &Auth::Bearer(carrier_key),
            Some(&json!({"name": name, "key": key.public().to_hex()})),
        )
        .await?
        .ok("the carrier registering a driver")?;
    Ok(r.json["driver"].as_str().unwrap_or_default().to_owned())
}

/// The carrier (`carrier_key`) creates a delivery of the next hour at `home`'s `lock` and
/// assigns it to its driver `driver_id`.
pub(crate) async fn new_delivery(
    api: &Api,
    carrier_key: &str,
    home: &Id,
    lock: &Id,
    driver_id: &str,
) -> Result<Id> {
    let carrier = Auth::Bearer(carrier_key);
    let now = wall_ms();
    let r = api
        .call(
            "POST",
            "/api/carrier/deliveries",
            &carrier,
            Some(&json!({
                "home": home.as_str(),
                "lock": lock.as_str(),
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
    api.call(
        "POST",
        &format!("/api/carrier/deliveries/{d}/assign"),
        &carrier,
        Some(&json!({"driver": driver_id})),
    )
    .await?
    .ok("the carrier assigning the driver")?;
    Ok(Id::new(d)?)
}
