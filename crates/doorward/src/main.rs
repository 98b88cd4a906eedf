//! The `doorward` binary: one command for every part of Doorward.
//!
//! This crate is the outermost shell. It parses the command line and calls into the cores;
//! it holds no security logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use doorward_proto::KeyPair;

mod agent_cmd;
mod audit_cmd;
mod bench;
mod client;
mod demo;
mod driver_cmd;
mod pair_cmd;
mod serve_cmd;
mod sim_cmd;

/// Witnessed, time-limited access to a home: smart lock, camera witness, control server.
#[derive(Parser)]
#[command(name = "doorward", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control server (embedded broker and SQLite by default; see --help).
    Serve(serve_cmd::ServeArgs),
    /// Run the whole system on embedded defaults: the server, a home, a lock and a camera
    /// agent, a delivery every 30 s; `demo attack s1|s3|s4|s22` attacks it; `--run-once
    /// --json` measures one delivery, S1 and S3.
    Demo(demo::DemoArgs),
    /// Manage Ed25519 keys (home root, device, driver keys).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The attack lab: run the attack catalogue against the real cores.
    Sim {
        #[command(subcommand)]
        command: sim_cmd::SimCommand,
    },
    /// The tamper-evident record: export it from a server's store, verify an export offline.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Run a device agent (lock or camera) on virtual hardware.
    Agent {
        #[command(subcommand)]
        command: agent_cmd::AgentCommand,
    },
    /// The driver's side of a delivery: arrive, read the lock's nonce, request entry, open,
    /// drop off, close, leave, finish.
    Driver(driver_cmd::DriverArgs),
    /// Pair a home's lock or camera with the setup code it prints (camera first, then the
    /// lock with --witness CAMERA), through the server's API.
    Pair(pair_cmd::PairArgs),
    /// Measure every target of BRIEF §7 beside a baseline from the same run (witness loss,
    /// tap-to-unlock, supervision scale, audit, the lock's decision, the lab's speed).
    Bench(bench::BenchArgs),
    /// Print build facts: version, protocol version, whether guard switches are compiled in.
    Info,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a key pair: writes the 32-byte secret seed (hex) to FILE with mode 0600 and
    /// prints the public key.
    Generate {
        /// Where to write the secret seed. Refuses to overwrite an existing file.
        file: PathBuf,
    },
    /// Print the public key of a secret seed file.
    Public {
        /// A file written by `doorward keys generate`.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Keys {
            command: KeysCommand::Generate { file },
        } => keys_generate(&file),
        Command::Keys {
            command: KeysCommand::Public { file },
        } => {
            let key = read_seed(&file)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::Serve(args) => serve_cmd::run(args),
        Command::Sim { command } => sim_cmd::run(command),
        Command::Audit { command } => audit_cmd::run(command),
        Command::Agent { command } => agent_cmd::run(command),
        Command::Driver(args) => driver_cmd::run(args),
        Command::Pair(args) => pair_cmd::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Info => {
            println!("doorward {}", env!("CARGO_PKG_VERSION"));
            println!("protocol version {}", doorward_proto::PROTOCOL_VERSION);
            println!(
                "guard switches compiled: {}",
                doorward_proto::guard::SWITCHES_COMPILED
            );
            Ok(())
        }
    }
}

fn keys_generate(file: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = KeyPair::generate(&mut rand_core::OsRng);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create {} (it must not exist yet)", file.display()))?;
    writeln!(f, "{}", hex::encode(&key.seed()[..]))
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("{}", key.public());
    Ok(())
}

fn read_seed(file: &std::path::Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read key file {}", file.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .with_context(|| format!("{} does not hold a 64-character hex seed", file.display()))?;
    Ok(KeyPair::from_seed(&seed))
}
