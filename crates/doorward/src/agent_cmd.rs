//! `doorward agent lock|camera`: the device agents as processes, with virtual hardware.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use doorward_agent::hardware::{VirtualCamera, VirtualLock};
use doorward_agent::link::parse_mqtt_url;
use doorward_agent::scene::SceneDir;
use doorward_agent::upload::ServerUrl;
use doorward_agent::{CameraAgentConfig, LockAgentConfig, Say};
use doorward_proto::Id;
use tokio::sync::watch;

/// Default address of the lock's local channel (the stand-in for BLE).
pub const DEFAULT_LOCAL_ADDR: &str = "127.0.0.1:18840";

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Run a lock agent on virtual hardware: pairs on first start (prints its setup code and
    /// QR payload), then drives the bolt, reports to the server and serves the local channel.
    Lock {
        /// Data directory: device key, id, pairing (0600), spent grants.
        #[arg(long, env = "DOORWARD_AGENT_DATA")]
        data: PathBuf,
        /// The broker, e.g. mqtt://127.0.0.1:18830 (the server's embedded broker).
        #[arg(long, default_value = "mqtt://127.0.0.1:18830")]
        mqtt: String,
        /// Device id (default: the stored one, or a new lock-<hex>).
        #[arg(long)]
        id: Option<String>,
        /// Address of the local channel where drivers read nonces and the camera hands over
        /// its checkpoints (loopback; written to DATA/local.addr).
        #[arg(long, default_value = DEFAULT_LOCAL_ADDR)]
        local: SocketAddr,
        /// Shared virtual-scene directory (the door opens when pushed with the bolt
        /// retracted); without it the door never opens.
        #[arg(long)]
        scene: Option<PathBuf>,
        /// Time the virtual bolt motor takes per movement, milliseconds.
        #[arg(long, default_value_t = 300)]
        motor_ms: u64,
    },
    /// Run a camera agent on virtual hardware: pairs on first start, then renders the shared
    /// scene, proves it is recording and attests the lock's nonces.
    Camera {
        /// Data directory: device key, id, pairing (0600), sequence reservation.
        #[arg(long, env = "DOORWARD_AGENT_DATA")]
        data: PathBuf,
        /// The broker, e.g. mqtt://127.0.0.1:18830.
        #[arg(long, default_value = "mqtt://127.0.0.1:18830")]
        mqtt: String,
        /// Device id (default: the stored one, or a new cam-<hex>).
        #[arg(long)]
        id: Option<String>,
        /// Shared virtual-scene directory (an empty scene without it).
        #[arg(long)]
        scene: Option<PathBuf>,
        /// The paired lock's local channel, where the camera hands over its checkpoints.
        #[arg(long, default_value = DEFAULT_LOCAL_ADDR)]
        lock_local: SocketAddr,
        /// The server's HTTP address, e.g. http://127.0.0.1:8080, where the frames behind
        /// the entry proofs are uploaded (docs/PROTOCOL.md §18); without it, no upload.
        #[arg(long)]
        server_url: Option<String>,
    },
}

fn say() -> Say {
    Arc::new(|line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
}

fn id(s: Option<String>) -> Result<Option<Id>> {
    s.map(|s| Id::new(s.clone()).map_err(|e| anyhow::anyhow!("--id {s:?}: {e}")))
        .transpose()
}

fn scene(p: Option<PathBuf>) -> Result<Option<SceneDir>> {
    p.map(|p| {
        SceneDir::open(&p)
            .with_context(|| format!("cannot open the scene directory {}", p.display()))
    })
    .transpose()
}

/// Stops on Ctrl-C or SIGTERM.
fn stop_on_signal() -> Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

pub fn run(cmd: AgentCommand) -> Result<()> {
    // Progress lines go to stdout; warnings from the IO layers to stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let stop = stop_on_signal()?;
        match cmd {
            AgentCommand::Lock {
                data,
                mqtt,
                id: given,
                local,
                scene: s,
                motor_ms,
            } => {
                let mqtt = parse_mqtt_url(&mqtt).map_err(|e| anyhow::anyhow!("--mqtt {e}"))?;
                let hw = VirtualLock::new(scene(s)?, motor_ms);
                let (status, _rx) = watch::channel(None);
                let cfg = LockAgentConfig {
                    data,
                    mqtt,
                    id: id(given)?,
                    local,
                };
                doorward_agent::lock_agent::run(cfg, Box::new(hw), stop, status, say()).await
            }
            AgentCommand::Camera {
                data,
                mqtt,
                id: given,
                scene: s,
                lock_local,
                server_url,
            } => {
                let mqtt = parse_mqtt_url(&mqtt).map_err(|e| anyhow::anyhow!("--mqtt {e}"))?;
                let hw = VirtualCamera::new(scene(s)?);
                let (status, _rx) = watch::channel(None);
                let cfg = CameraAgentConfig {
                    data,
                    mqtt,
                    id: id(given)?,
                    lock_local: Some(lock_local),
                    server_url: server_url
                        .as_deref()
                        .map(ServerUrl::parse)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--server-url {e}"))?,
                };
                doorward_agent::camera_agent::run(cfg, Box::new(hw), stop, status, say()).await
            }
        }
    })
}
