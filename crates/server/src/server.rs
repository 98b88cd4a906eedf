//! Starting, provisioning and stopping a server: [`Server::start`] wires the keystore, the
//! store, the broker (embedded or external), the gateway, the control task and HTTP;
//! [`Handle`] is the Rust API to the running server (provisioning for tests and the demo,
//! entry requests, state); [`Server::shutdown`] flushes the audit record and stops.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use doorward_control::{
    Admin, Config, Control, DeliverySetup, DoorSetup, EntryDecision, EntryRequest, HomePolicy,
    HomeSetup, HomeState, Input,
};
use doorward_proto::{DenyReason, Id, IssuerCert, KeyPair, PubKey, Signed};
use doorward_store::{
    FootageQuery, FootageSegment, PgConfig, PgStore, SqliteStore, Store, StoreConfig,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Database, Mqtt, ServeConfig};
use crate::footage::FootageError;
use crate::gateway::{Gateway, Routes};
use crate::hub::Hub;
use crate::keystore::Keystore;
use crate::metrics::Metrics;
use crate::runtime::{wall_ms, Command, Effects, Runtime, ServerError, CONTROL_QUEUE_CAPACITY};
use crate::webhook::{DeadLetter, Endpoint, Webhooks};

/// What the HTTP handlers and the [`Handle`] share.
pub struct Shared {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) keystore: Keystore,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) webhooks: Arc<Webhooks>,
    pub(crate) gateway: Gateway,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) server_key: PubKey,
    /// Turns true when the server stops: live event streams end so HTTP can drain.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Recorded footage: uploads, sealing, retention ([`crate::footage`]).
    pub(crate) footage: Arc<crate::footage::Footage>,
    /// The HTTP API's settings, login limits and driver replay cache.
    pub(crate) api: crate::api::ApiState,
    /// The web app's state ([`crate::web`]).
    pub(crate) web: crate::web::WebState,
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    mqtt_addr: (String, u16),
    embedded_broker: bool,
    server_key_created: bool,
    stop: watch::Sender<bool>,
    http_task: tokio::task::JoinHandle<()>,
    control_task: tokio::task::JoinHandle<()>,
}

/// The running server's Rust API. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// What the homeowner gets when a home is added.
#[derive(Clone, Debug)]
pub struct HomeCredentials {
    /// Bearer token of the home's event stream (`/api/homes/{home}/events`).
    pub events_token: String,
}

impl Server {
    /// Starts everything described by `cfg`, with the HTTP API's default settings. Needs a
    /// multi-threaded tokio runtime.
    pub async fn start(cfg: ServeConfig) -> Result<Server> {
        Self::start_with(cfg, crate::api::ApiSettings::default()).await
    }

    /// Starts everything described by `cfg`, the HTTP API with `api`.
    pub async fn start_with(cfg: ServeConfig, api: crate::api::ApiSettings) -> Result<Server> {
        Self::start_with_store(cfg, api, StoreConfig::default()).await
    }

    /// [`Server::start_with`], the store's writer with `store` (its limits, and for
    /// benchmarks [`StoreConfig::bench_fsync_delay_ms`]).
    pub async fn start_with_store(
        cfg: ServeConfig,
        api: crate::api::ApiSettings,
        store: StoreConfig,
    ) -> Result<Server> {
        std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                cfg.data_dir.display()
            )
        })?;
        let keystore = Keystore::open(&cfg.data_dir)?;
        let (server_key, server_key_created) = keystore.server_key()?;
        let store = open_store(&cfg.database, store).await?;

        let (mqtt_addr, embedded_broker) = match &cfg.mqtt {
            Mqtt::Embedded { listen } => {
                let addr = crate::broker::start(*listen)?;
                ((addr.ip().to_string(), addr.port()), true)
            }
            Mqtt::External { host, port } => ((host.clone(), *port), false),
        };

        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::default());
        let routes = Arc::new(Routes::default());
        let (stop, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE_CAPACITY);
        let gateway = Gateway::start(
            &mqtt_addr.0,
            mqtt_addr.1,
            tx.clone(),
            routes.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );

        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let mut control = Control::new(Config::default(), server_key.clone(), seed, wall_ms());
        // Back to the registry the record describes before anything else reaches the core.
        let mut replayed = tokio::task::block_in_place(|| {
            crate::journal::replay(store.as_ref(), &keystore, &mut control, wall_ms())
        })
        .context("cannot read the registry back from the store")?;
        for home in &replayed.homes {
            gateway.subscribe_home(home);
        }
        let state_key = keystore.state_wrap_key()?;
        let restored = tokio::task::block_in_place(|| {
            crate::devstate::restore(store.as_ref(), &state_key, &mut control, &replayed.devices)
        })
        .context("cannot read device state back from the store")?;
        tracing::info!(devices = restored, "device stream state restored");
        let recorded_webhooks = std::mem::take(&mut replayed.webhooks);
        for (device, home) in replayed.devices {
            routes.insert(device, home);
        }
        metrics
            .supervised_devices
            .store(routes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            homes = replayed.homes.len(),
            refused = replayed.refused,
            events = replayed.events,
            "registry and supervision replayed"
        );
        let runtime = Runtime::new(
            control,
            server_key.clone(),
            store.clone(),
            routes.clone(),
            gateway.clone(),
            metrics.clone(),
        )
        .keep_device_state(state_key);
        let footage = Arc::new(crate::footage::Footage::new(
            store.clone(),
            keystore.clone(),
            routes.clone(),
        ));
        tokio::spawn(crate::footage::sweep_task(
            footage.clone(),
            tx.clone(),
            stop_rx.clone(),
        ));
        let tls = crate::webhook::tls_config(cfg.webhook_roots.as_deref())
            .context("cannot load the webhook root certificates given by --webhook-roots")?;
        let webhooks = Webhooks::start_with(metrics.clone(), tx.clone(), tls);
        let endpoints = webhooks.restore(&state_key, recorded_webhooks);
        tracing::info!(endpoints, "webhook endpoints restored");
        let effects = Effects {
            gateway: gateway.clone(),
            routes,
            hub: hub.clone(),
            metrics: metrics.clone(),
            webhooks: webhooks.clone(),
        };
        let control_task = tokio::spawn(runtime.run(rx, effects));

        let shared = Arc::new(Shared {
            tx,
            keystore,
            metrics,
            hub,
            webhooks,
            gateway,
            store,
            server_key: server_key.public(),
            stopping: stop_rx.clone(),
            footage,
            api: crate::api::ApiState::new(api),
            web: crate::web::WebState::default(),
        });
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| {
                format!(
                    "HTTP cannot listen on {}: choose another address with --listen ADDR \
                 (or DOORWARD_LISTEN)",
                    cfg.listen
                )
            })?;
        let http_addr = listener.local_addr()?;
        let app = crate::http::app(shared.clone());
        let mut http_stop = stop_rx;
        let http_task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let res = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        Ok(Server {
            shared,
            http_addr,
            mqtt_addr,
            embedded_broker,
            server_key_created,
            stop,
            http_task,
            control_task,
        })
    }

    /// Where HTTP listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where devices reach the broker: host and port.
    pub fn mqtt_addr(&self) -> (String, u16) {
        self.mqtt_addr.clone()
    }

    /// Whether the broker runs inside this process.
    pub fn embedded_broker(&self) -> bool {
        self.embedded_broker
    }

    /// Whether the server key was generated by this start (first start).
    pub fn server_key_created(&self) -> bool {
        self.server_key_created
    }

    /// The server's public key (locks pin it at pairing).
    pub fn server_key(&self) -> PubKey {
        self.shared.server_key
    }

    /// The Rust API of this server.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Waits for SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
        tracing::info!("stopping: flushing the audit record");
        self.shutdown().await
    }

    /// Stops taking requests, writes the collapsed idle proofs and a checkpoint of every
    /// chain, waits until they are durable, and stops every task.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let (reply, done) = oneshot::channel();
        if self
            .shared
            .tx
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        let _ = self.control_task.await;
        let _ = self.http_task.await;
        Ok(())
    }
}

async fn open_store(db: &Database, config: StoreConfig) -> Result<Arc<dyn Store>> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || -> Result<Arc<dyn Store>> {
        Ok(match db {
            Database::Sqlite(path) => {
                Arc::new(SqliteStore::open_with(&path, config).with_context(|| {
                    format!("cannot open the SQLite database {}", path.display())
                })?)
            }
            Database::Postgres(url) => Arc::new(
                PgStore::open(&PgConfig {
                    store: config,
                    ..PgConfig::new(url.clone())
                })
                .with_context(|| "cannot open the PostgreSQL database given by --database")?,
            ),
        })
    })
    .await?
}

impl Handle {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Handle {
        Handle { shared }
    }

    /// Creates a homeowner account (for the operator and the demo); returns its id.
    pub async fn create_homeowner(&self, email: &str, password: &str) -> Result<Id, ServerError> {
        crate::api::accounts::create_homeowner(&self.shared, email, password)
            .await
            .map_err(crate::api::accounts::to_server_error)
    }

    /// Cuts (`true`) or restores (`false`) the web app's live connections: while cut they
    /// stay open and send nothing, as behind a stalled proxy, so the page must notice the
    /// silence and say "connection lost — states unknown" (I14). For tests and drills.
    pub fn cut_live_connections(&self, cut: bool) {
        self.shared.web.cut_live(cut);
    }

    /// A one-time login link for `account` (valid
    /// [`crate::api::accounts::LOGIN_LINK_TTL_MS`]): the path whose GET opens a session and
    /// redirects to `/`.
    pub async fn login_link(&self, account: &Id) -> Result<String, ServerError> {
        crate::api::accounts::login_link(&self.shared, account)
            .await
            .map_err(crate::api::accounts::to_server_error)
    }

    /// Creates a carrier; returns its id and its API key (`dwc_…`, shown only here).
    pub async fn create_carrier(&self, name: &str) -> Result<(Id, String), ServerError> {
        crate::api::accounts::create_carrier(&self.shared, name)
            .await
            .map_err(crate::api::accounts::to_server_error)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.shared.tx.try_send(make(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ServerError::Busy,
            mpsc::error::TrySendError::Closed(_) => ServerError::Stopped,
        })?;
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// Applies an administrative change to the core, answered once it is on record.
    pub async fn admin(&self, op: Admin) -> Result<(), ServerError> {
        self.call(|reply| Command::Admin { op, reply }).await?
    }

    /// The issuing key the server holds for `home` (generated on first use): the home root
    /// signs an [`IssuerCert`] for it.
    pub fn issuer_key(&self, home: &Id) -> Result<PubKey, ServerError> {
        check_home_id(home)?;
        Ok(self.shared.keystore.issuer_key(home)?.public())
    }

    /// Adds a home with its root key and the root's certificate for the server's issuing
    /// key; returns the home's event-stream token.
    pub async fn add_home(
        &self,
        home: Id,
        root: PubKey,
        cert: Signed<IssuerCert>,
        policy: HomePolicy,
    ) -> Result<HomeCredentials, ServerError> {
        check_home_id(&home)?;
        let issuer = self.shared.keystore.issuer_key(&home)?;
        self.admin(Admin::AddHome(HomeSetup {
            home: home.clone(),
            root,
            issuer,
            cert,
            policy,
        }))
        .await?;
        let (events_token, _) = self.shared.keystore.events_token(&home)?;
        Ok(HomeCredentials { events_token })
    }

    /// For tests and the demo, where the root key is at hand: signs the issuing key's
    /// certificate with `root` (valid from now for `valid_ms`) and adds the home.
    pub async fn add_home_with_root(
        &self,
        home: Id,
        root: &KeyPair,
        valid_ms: u64,
        policy: HomePolicy,
    ) -> Result<HomeCredentials, ServerError> {
        let now = wall_ms();
        let cert = Signed::sign(
            IssuerCert {
                home: home.clone(),
                issuer: self.issuer_key(&home)?,
                not_before_ms: now.saturating_sub(60_000),
                not_after_ms: now.saturating_add(valid_ms),
                serial: 1,
            },
            root,
        );
        self.add_home(home, root.public(), cert, policy).await
    }

    /// Pairs a lock and its camera, by the public keys confirmed out of band.
    pub async fn pair_door(&self, home: Id, door: DoorSetup) -> Result<(), ServerError> {
        self.admin(Admin::PairDoor { home, door }).await
    }

    /// Pairs a device of `home` over the broker with its setup code (docs/PROTOCOL.md §14),
    /// the owner having read the code (and optionally scanned the QR payload, `opts.qr`) off
    /// the device. A door takes two calls: **the camera first** (it is then held, waiting for
    /// its lock, for [`crate::pairing::PENDING_CAMERA_TTL_MS`]), **then the lock** with
    /// `opts.camera` naming that camera. The lock's call registers the door
    /// (`Admin::PairDoor`, on record first) and then confirms the pairing to both devices,
    /// each learning the other's key. Failed confirmations count against
    /// `MAX_PAIRING_ATTEMPTS_PER_HOUR` per device; errors are [`ServerError::Invalid`] with a
    /// sentence saying what to do.
    pub async fn pair_device(
        &self,
        home: Id,
        device: Id,
        kind: doorward_proto::pairing::DeviceKind,
        code: doorward_proto::pairing::SetupCode,
        opts: crate::pairing::PairOptions,
    ) -> Result<crate::pairing::PairedDevice, ServerError> {
        check_home_id(&home)?;
        let store = self.shared.store.clone();
        let h = home.clone();
        let row = tokio::task::spawn_blocking(move || {
            store.record(&h, doorward_store::RecordKind::Home, &h)
        })
        .await
        .map_err(|_| ServerError::Stopped)?
        .map_err(|_| ServerError::Storage)?;
        let Some(doorward_store::Record::Home(row)) = row else {
            return Err(ServerError::Invalid(format!(
                "home {home} does not exist: add it before pairing its devices"
            )));
        };
        let ctx = crate::pairing::Ctx {
            hub: self.shared.gateway.pairing(),
            gateway: &self.shared.gateway,
            home: doorward_proto::pairing::HomeKeys {
                home: home.clone(),
                root: row.root_key,
                server: self.shared.server_key,
                witness: None,
            },
            now_ms: &wall_ms,
        };
        crate::pairing::run(ctx, device, kind, code, opts, |door| {
            self.pair_door(home.clone(), door)
        })
        .await
    }

    /// Opts a carrier in for a home (I9).
    pub async fn opt_in(&self, home: Id, carrier: Id) -> Result<(), ServerError> {
        self.admin(Admin::OptIn { home, carrier }).await
    }

    /// Registers a driver key for a carrier.
    pub async fn add_driver(&self, driver: PubKey, carrier: Id) -> Result<(), ServerError> {
        self.admin(Admin::AddDriver { driver, carrier }).await
    }

    /// Schedules a delivery.
    pub async fn schedule(&self, delivery: DeliverySetup) -> Result<(), ServerError> {
        self.admin(Admin::Schedule(delivery)).await
    }

    /// Any other input to the core (arrival, approval, alarm acknowledgement).
    pub async fn input(&self, input: Input) -> Result<(), ServerError> {
        self.call(|reply| Command::Input { input, reply }).await?
    }

    /// A driver's entry request; the decision comes once the camera attested (or not). A
    /// full queue denies at once (I8).
    pub async fn request_entry(&self, req: EntryRequest) -> EntryDecision {
        let delivery = req.delivery.clone();
        let t0 = std::time::Instant::now();
        let decided = self.call(|reply| Command::Entry { req, reply }).await;
        self.shared
            .metrics
            .decision_latency(t0.elapsed().as_millis() as u64);
        match decided {
            Ok(d) => d,
            Err(e) => EntryDecision::Denied {
                request: 0,
                delivery,
                reason: match e {
                    ServerError::Busy => DenyReason::QueueFull,
                    _ => DenyReason::StorageFailure,
                },
            },
        }
    }

    /// A home's state, each value with its evidence and age (I5).
    pub async fn home_state(&self, home: &Id) -> Result<Option<HomeState>, ServerError> {
        let home = home.clone();
        self.call(|reply| Command::State { home, reply }).await
    }

    /// Adds a signed webhook for `home`'s alarms: an `https://` URL (or `http://` to a
    /// loopback address) and a `whsec_<base64>` secret (see [`crate::webhook`]). Returns once
    /// the endpoint is on record in the home's audit chain (its secret sealed), so it survives
    /// a restart. Blocks its thread until then (needs the multi-threaded runtime); async
    /// callers may await [`Handle::put_webhook`] instead.
    pub fn add_webhook(&self, home: &Id, url: &str, secret: &str) -> Result<(), ServerError> {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.put_webhook(home, url, secret))
        })
    }

    /// [`Handle::add_webhook`], awaited.
    pub async fn put_webhook(&self, home: &Id, url: &str, secret: &str) -> Result<(), ServerError> {
        check_home_id(home)?;
        let ep = Endpoint::new(url, secret).map_err(|e| ServerError::Invalid(e.to_string()))?;
        if self.shared.webhooks.urls(home).len() >= crate::webhook::MAX_WEBHOOKS_PER_HOME {
            return Err(ServerError::Invalid(
                crate::webhook::WebhookError::TooMany.to_string(),
            ));
        }
        let key = self.shared.keystore.state_wrap_key()?;
        let stored = crate::webhook::seal(&key, home, &ep);
        self.record(home, doorward_proto::codec::encode(&stored))
            .await?;
        self.shared.webhooks.remove(home, &ep.url());
        self.shared
            .webhooks
            .add(home.clone(), ep)
            .map_err(|e| ServerError::Invalid(e.to_string()))
    }

    /// Removes `home`'s webhook with `url` (as [`Handle::webhooks`] lists it), on record
    /// before it is answered; returns whether there was one.
    pub async fn remove_webhook(&self, home: &Id, url: &str) -> Result<bool, ServerError> {
        if !self.shared.webhooks.urls(home).iter().any(|u| u == url) {
            return Ok(false);
        }
        let stored = crate::webhook::StoredEndpoint {
            url: url.to_owned(),
            sealed: None,
        };
        self.record(home, doorward_proto::codec::encode(&stored))
            .await?;
        Ok(self.shared.webhooks.remove(home, url))
    }

    /// The URLs of `home`'s webhooks.
    pub fn webhooks(&self, home: &Id) -> Vec<String> {
        self.shared.webhooks.urls(home)
    }

    async fn record(&self, home: &Id, payload: Vec<u8>) -> Result<(), ServerError> {
        let home = home.clone();
        self.call(|reply| Command::RecordAcked {
            home,
            kind: crate::webhook::WEBHOOK_ENTRY,
            payload,
            reply,
        })
        .await?
    }

    /// Webhook requests that failed every attempt, oldest first.
    pub fn webhook_dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.webhooks.dead_letters()
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The store (for tests and exports).
    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.store.clone()
    }
}

/// The homeowner's recorded footage ([`crate::footage`]). The caller has checked that the
/// person asking owns `home` (I11); carriers and drivers have no path to these.
impl Handle {
    async fn footage_call<T: Send + 'static>(
        &self,
        home: &Id,
        f: impl FnOnce(&crate::footage::Footage, &Id) -> Result<T, FootageError> + Send + 'static,
    ) -> Result<T, ServerError> {
        check_home_id(home)?;
        let footage = self.shared.footage.clone();
        let home = home.clone();
        tokio::task::spawn_blocking(move || f(&footage, &home))
            .await
            .map_err(|_| ServerError::Stopped)?
            .map_err(|e| match e {
                FootageError::Invalid(m) => ServerError::Invalid(m),
                FootageError::Keystore(k) => ServerError::Keystore(k),
                e @ (FootageError::Store(_) | FootageError::Corrupt { .. }) => {
                    tracing::error!(error = %e, "footage");
                    ServerError::Storage
                }
            })
    }

    /// Up to `max` (at most [`crate::footage::MAX_LIST_ROWS`]) segments of `home` that
    /// `query` selects, uploaded or not, in the order they were recorded.
    pub async fn footage_list(
        &self,
        home: &Id,
        query: FootageQuery,
        max: usize,
    ) -> Result<Vec<FootageSegment>, ServerError> {
        self.footage_call(home, move |f, h| Ok(f.list(h, &query, max)?))
            .await
    }

    /// The frames of one uploaded segment of `home`, opened and checked against its proof;
    /// `None` if there is no such segment or its frames were not uploaded.
    pub async fn footage_segment(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<Option<Vec<Vec<u8>>>, ServerError> {
        let camera = camera.clone();
        self.footage_call(home, move |f, h| f.segment(h, &camera, seq))
            .await
    }

    /// One page (at most [`crate::footage::MAX_EXPORT_SEGMENTS`]) of `home`'s footage as a
    /// self-checking export ([`crate::footage::verify_export`]).
    pub async fn footage_export(
        &self,
        home: &Id,
        query: FootageQuery,
    ) -> Result<crate::footage::Export, ServerError> {
        self.footage_call(home, move |f, h| f.export(h, &query))
            .await
    }

    /// Deletes the segments of `home` that `query` selects, at most
    /// [`doorward_store::footage::MAX_FOOTAGE_DELETE`] per call (call again while it
    /// returns that many); records the deletion in the home's audit chain.
    pub async fn footage_delete(
        &self,
        home: &Id,
        query: FootageQuery,
    ) -> Result<usize, ServerError> {
        let rows = self
            .footage_call(home, move |f, h| Ok(f.delete(h, &query)?))
            .await?;
        self.record_footage_deletion(home, &rows);
        Ok(rows.len())
    }

    /// Deletes one segment of `home`; `true` if it existed. Recorded in the home's audit
    /// chain.
    pub async fn footage_delete_segment(
        &self,
        home: &Id,
        camera: &Id,
        seq: u64,
    ) -> Result<bool, ServerError> {
        let camera = camera.clone();
        let row = self
            .footage_call(home, move |f, h| Ok(f.delete_one(h, &camera, seq)?))
            .await?;
        self.record_footage_deletion(home, row.as_slice());
        Ok(row.is_some())
    }

    fn record_footage_deletion(&self, home: &Id, rows: &[FootageSegment]) {
        if rows.is_empty() {
            return;
        }
        let d = crate::footage::deleted("owner", wall_ms(), rows);
        crate::footage::record_deletions(&self.shared.tx, vec![(home.clone(), d)]);
    }

    /// Sets how many days `home`'s footage is kept
    /// ([`crate::footage::MIN_RETENTION_DAYS`] to [`crate::footage::MAX_RETENTION_DAYS`]).
    pub async fn set_footage_retention(&self, home: &Id, days: u32) -> Result<(), ServerError> {
        self.footage_call(home, move |f, h| f.set_retention(h, days))
            .await
    }

    /// How many days `home`'s footage is kept.
    pub async fn footage_retention(&self, home: &Id) -> Result<u32, ServerError> {
        self.footage_call(home, |f, h| Ok(f.retention(h)?)).await
    }

    /// Runs one retention sweep as at `now_ms` (the server runs one every
    /// [`crate::footage::SWEEP_INTERVAL_MS`] on its own clock), deleting at most `max_rows`
    /// expired segments; returns how many. Recorded in each home's audit chain.
    pub async fn footage_sweep(&self, now_ms: u64, max_rows: usize) -> Result<usize, ServerError> {
        let footage = self.shared.footage.clone();
        let done = tokio::task::spawn_blocking(move || footage.sweep(now_ms, max_rows))
            .await
            .map_err(|_| ServerError::Stopped)?
            .map_err(|e| {
                tracing::error!(error = %e, "footage sweep");
                ServerError::Storage
            })?;
        let n = done.iter().map(|(_, d)| d.segments.len()).sum();
        crate::footage::record_deletions(&self.shared.tx, done);
        Ok(n)
    }

    /// The footage counters (also at `/metrics`).
    pub fn footage_metrics(&self) -> &crate::footage::FootageMetrics {
        &self.shared.footage.metrics
    }
}

/// Home ids starting with `:` are the server's own (see [`crate::runtime::SERVER_CHAIN`]);
/// `.` and `..` would name directories.
fn check_home_id(home: &Id) -> Result<(), ServerError> {
    let s = home.as_str();
    // `pair` is the pairing topics' second level (`doorward/v1/pair/<device>/up`).
    if s.starts_with(':') || s == "." || s == ".." || s == "pair" {
        return Err(ServerError::Invalid(format!(
            "home id {s:?} is reserved: choose one not starting with ':' (and not \"pair\")"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::{Nonce, UnlockNonce};

    /// I8: with [`CONTROL_QUEUE_CAPACITY`] commands waiting, an entry request is denied at
    /// once (`QueueFull`) instead of waiting or being dropped silently.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn i8_full_control_queue_denies_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let keystore = Keystore::open(tmp.path()).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(tmp.path().join("db")).unwrap());
        let (tx, _rx) = mpsc::channel(CONTROL_QUEUE_CAPACITY);
        let (_stop, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        // No broker listens on port 1 of loopback: the gateway just keeps retrying.
        let gateway = Gateway::start(
            "127.0.0.1",
            1,
            tx.clone(),
            Arc::new(Routes::default()),
            metrics.clone(),
            stop_rx.clone(),
        );
        let handle = Handle {
            shared: Arc::new(Shared {
                footage: Arc::new(crate::footage::Footage::new(
                    store.clone(),
                    keystore.clone(),
                    Arc::new(Routes::default()),
                )),
                tx: tx.clone(),
                keystore,
                webhooks: Webhooks::start(metrics.clone(), tx.clone()),
                metrics,
                hub: Arc::new(Hub::default()),
                gateway,
                store,
                server_key: KeyPair::from_seed(&[2; 32]).public(),
                stopping: stop_rx,
                api: crate::api::ApiState::new(crate::api::ApiSettings::default()),
                web: crate::web::WebState::default(),
            }),
        };
        for _ in 0..CONTROL_QUEUE_CAPACITY {
            let (reply, _) = oneshot::channel();
            tx.try_send(Command::Input {
                input: Input::Tick,
                reply,
            })
            .unwrap_or_else(|_| panic!("room for {CONTROL_QUEUE_CAPACITY} commands"));
        }
        let lock = KeyPair::from_seed(&[4; 32]);
        let driver = KeyPair::from_seed(&[6; 32]);
        let nonce = Signed::sign(
            UnlockNonce {
                lock: Id::new("lock-1").unwrap(),
                nonce: Nonce([9; 32]),
                mono_ms: 1,
                epoch: 0,
            },
            &lock,
        );
        let req = EntryRequest {
            delivery: Id::new("d-1").unwrap(),
            driver: driver.public(),
            driver_sig: driver.sign(
                doorward_proto::DRIVER_NONCE_CONTEXT,
                &doorward_proto::driver_nonce_message(&nonce.body.lock, &nonce.body.nonce),
            ),
            nonce,
        };
        let d = tokio::time::timeout(std::time::Duration::from_secs(1), handle.request_entry(req))
            .await
            .expect("a full queue answers at once");
        assert!(
            matches!(
                d,
                EntryDecision::Denied {
                    reason: DenyReason::QueueFull,
                    ..
                }
            ),
            "{d:?}"
        );
        assert!(matches!(
            handle
                .opt_in(Id::new("h").unwrap(), Id::new("c").unwrap())
                .await,
            Err(ServerError::Busy)
        ));
    }
}
