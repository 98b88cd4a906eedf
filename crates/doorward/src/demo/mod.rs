//! `doorward demo`: the whole system on one machine with nothing else installed.
//!
//! It starts the server in this process on embedded defaults (SQLite and the embedded broker,
//! data in `./doorward-demo`), creates a homeowner account and a home through the HTTP API
//! (the home's root key is generated and kept in the data directory), starts the lock and
//! camera agents as child processes of this same binary on virtual hardware sharing one
//! scene directory, pairs them with the setup codes they print, opts a carrier in, registers a
//! driver and makes a delivery about every 30 s through the real driver flow
//! ([`crate::driver_cmd::deliver`]). It prints a one-click login link and the API and event
//! stream addresses as soon as the home exists.
//!
//! `doorward demo attack s1|s3|s4|s22` asks the running demo (found through `demo.json` in its
//! data directory) to run its next delivery under that attack ([`attack`]).
//! `doorward demo --run-once --json` measures one normal delivery, S1 and S3 ([`run_once`]).
//!
//! Map: [`setup`] (server, accounts, home, agents, pairing, carrier, driver), [`procs`] (child
//! processes, the camera's uplink relay), [`attack`] (the attacks, the control socket and its
//! client), [`run_once`] (the measured run).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

pub mod attack;
pub mod procs;
pub mod run_once;
pub mod setup;

/// The demo's default data directory (relative to where it runs).
pub const DEFAULT_DEMO_DIR: &str = "doorward-demo";
/// The HTTP address the demo tries first.
pub const DEFAULT_DEMO_HTTP: &str = "127.0.0.1:8080";
/// Seconds between two deliveries.
pub const DEFAULT_DELIVERY_EVERY_S: u64 = 30;

/// `doorward demo`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Data directory: the server's data, the agents' data, the scene, the home's root key,
    /// the demo's accounts (kept between runs; delete it to start over). Default
    /// ./doorward-demo.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// HTTP address (default 127.0.0.1:8080, or a free port if that one is taken).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Seconds between deliveries.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_DELIVERY_EVERY_S)]
    every: u64,
    /// Run one normal delivery, then S1, then S3, measure, stop and report (in a fresh
    /// temporary data directory unless --data is given).
    #[arg(long)]
    run_once: bool,
    /// With --run-once: print exactly one JSON object on standard output (progress goes to
    /// standard error).
    #[arg(long, requires = "run_once")]
    json: bool,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Launch an attack on the running demo: its next delivery runs under it.
    Attack {
        /// s1: silent de-auth of the camera after drop-off; s3: jammed relock; s4: frozen
        /// stream; s22: the camera's uplink cut while its local link to the lock works.
        scenario: attack::Scenario,
        /// The running demo's data directory.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_DEMO_DIR)]
        data: PathBuf,
    },
}

/// Runs `doorward demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    if let Some(DemoCommand::Attack { scenario, data }) = args.command {
        return attack::client(&data, scenario);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.run_once {
        return rt.block_on(run_once::run(args.data.clone(), args.listen, args.json));
    }
    rt.block_on(interactive(args))
}

async fn interactive(args: DemoArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let say: setup::Say = std::sync::Arc::new(|l: String| println!("{l}"));
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DEMO_DIR));
    let opts = setup::Opts {
        data: data.clone(),
        listen: args.listen,
        default_http: Some(DEFAULT_DEMO_HTTP.parse().expect("a valid address")),
        mqtt_port: Some(doorward_server::config::DEFAULT_MQTT_PORT),
        echo: procs::Echo::Stdout,
        keep: true,
        say: say.clone(),
    };
    let mut demo = setup::Demo::start(opts, t0).await?;
    let control = attack::Control::start(&demo).await?;
    println!();
    println!(
        "A delivery about every {} s. From another terminal, launch an attack on the next one:",
        args.every
    );
    println!(
        "  doorward demo attack s1|s3|s4|s22{}",
        if args.data.is_none() {
            String::new()
        } else {
            format!(" --data {}", data.display())
        }
    );
    println!("Ctrl-C stops everything.");
    println!();
    let mut requests = control.requests;
    let mut next = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut pending: Option<attack::Request> = None;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let result: Result<()> = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            Some(r) = requests.recv() => {
                if pending.is_some() {
                    let _ = r.narrate.send("another attack is already queued: try again after it".into());
                } else {
                    let _ = r.narrate.send(format!(
                        "queued: the next delivery runs under {}", r.scenario.name()));
                    pending = Some(r);
                    next = tokio::time::Instant::now();
                }
            }
            _ = tokio::time::sleep_until(next) => {
                let req = pending.take();
                let run = attack::delivery(&mut demo, req.as_ref());
                tokio::select! {
                    r = run => if let Err(e) = r {
                        println!("delivery failed: {e:#}");
                    },
                    _ = tokio::signal::ctrl_c() => break Ok(()),
                }
                next = tokio::time::Instant::now() + Duration::from_secs(args.every);
                println!("next delivery in {} s", args.every);
            }
        }
    };
    println!();
    println!("stopping: the agents, then the server (flushing the audit record)");
    control.task.abort();
    demo.stop().await?;
    println!("stopped cleanly");
    result
}
