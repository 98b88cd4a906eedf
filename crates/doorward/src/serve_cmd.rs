//! `doorward serve`: the control server. Parses flags and `DOORWARD_*` variables (a flag
//! wins over its variable), lays them over the configuration file and the defaults
//! (`doorward_server::ServeConfig::resolve`), starts the server and waits for SIGINT or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use doorward_server::{FileConfig, Mqtt, Overrides, ServeConfig, Server};

/// Flags of `doorward serve`. Each has a `DOORWARD_*` variable; precedence is flag, then
/// variable, then the `--config` file, then the default.
#[derive(Args, Debug)]
#[command(
    after_help = "With no flags the server starts in embedded mode: data in ./doorward-data, \
SQLite at <data>/doorward.db, an embedded MQTT broker on 127.0.0.1:18830 (Doorward's own \
default port, so that it does not collide with a broker on 1883), HTTP on 127.0.0.1:8080.

The configuration file is TOML with the keys data, database, mqtt, mqtt_listen and listen \
(the same meaning as the flags).

Keys are generated on first start into <data>/keys (mode 0600; a wider mode stops the \
server with the chmod that fixes it).

The HTTP API authenticates homeowners by session (argon2id passwords; accounts are created \
by the operator, or by signup with --allow-signup), carriers by API key and drivers by \
signed requests (docs/PROTOCOL.md, \"Driver API signatures\"). Sessions travel in an \
HttpOnly, SameSite=Strict cookie; behind an HTTPS proxy pass --https so the cookie is \
also Secure. The OpenAPI document is at /api/openapi.json."
)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "DOORWARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (keys, SQLite database). Default: ./doorward-data.
    #[arg(long, value_name = "DIR", env = "DOORWARD_DATA")]
    data: Option<PathBuf>,
    /// SQLite file path or postgres:// URL. Default: <data>/doorward.db.
    #[arg(long, value_name = "PATH|URL", env = "DOORWARD_DATABASE")]
    database: Option<String>,
    /// Use an external MQTT broker (mqtt://HOST:PORT) instead of the embedded one.
    #[arg(long, value_name = "URL", env = "DOORWARD_MQTT")]
    mqtt: Option<String>,
    /// Address of the embedded MQTT broker. Default: 127.0.0.1:18830.
    #[arg(long, value_name = "ADDR", env = "DOORWARD_MQTT_LISTEN")]
    mqtt_listen: Option<SocketAddr>,
    /// HTTP listen address. Default: 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR", env = "DOORWARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Let anyone create a homeowner account (POST /api/accounts). Default: off, the operator
    /// creates accounts.
    #[arg(long, env = "DOORWARD_ALLOW_SIGNUP")]
    allow_signup: bool,
    /// The server is reached over HTTPS (a TLS proxy in front): session cookies get the
    /// Secure flag.
    #[arg(long, env = "DOORWARD_HTTPS")]
    https: bool,
    /// Log lines as `text` or `json` (one JSON object per line, for log collectors), on
    /// standard error. Default: text on a terminal, json otherwise.
    #[arg(long, value_name = "FORMAT", env = "DOORWARD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// PEM file of root certificates to trust for https:// webhooks besides the Mozilla
    /// roots (a receiver behind a private CA). Webhooks are https://; plain http:// is
    /// accepted only to a loopback address.
    #[arg(long, value_name = "FILE", env = "DOORWARD_WEBHOOK_ROOTS")]
    webhook_roots: Option<PathBuf>,
}

/// How `doorward serve` writes its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of each event and its spans.
    Json,
}

/// Installs the log subscriber: INFO and above, as `format` says or, by default, text when
/// standard error is a terminal and JSON otherwise.
fn init_logs(format: Option<LogFormat>) {
    use std::io::IsTerminal;
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    init_logs(args.log_format);
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let cfg = ServeConfig::resolve(
        file,
        Overrides {
            data: args.data,
            database: args.database,
            mqtt: args.mqtt,
            mqtt_listen: args.mqtt_listen,
            listen: args.listen,
            webhook_roots: args.webhook_roots,
        },
    )?;
    let api = doorward_server::ApiSettings {
        allow_signup: args.allow_signup,
        https: args.https,
        ..doorward_server::ApiSettings::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let server = Server::start_with(cfg.clone(), api.clone()).await?;
        println!("doorward serve {}", env!("CARGO_PKG_VERSION"));
        println!("  data       {}", cfg.data_dir.display());
        match &cfg.database {
            doorward_server::Database::Sqlite(p) => println!("  database   sqlite {}", p.display()),
            doorward_server::Database::Postgres(_) => println!("  database   postgres"),
        }
        let (host, port) = server.mqtt_addr();
        match cfg.mqtt {
            Mqtt::Embedded { .. } => {
                println!("  mqtt       mqtt://{host}:{port} (embedded broker)")
            }
            Mqtt::External { .. } => {
                println!("  mqtt       mqtt://{host}:{port} (external broker)")
            }
        }
        println!("  http       http://{}", server.http_addr());
        println!(
            "  signup     {}",
            if api.allow_signup {
                "open (--allow-signup)"
            } else {
                "off (the operator creates accounts)"
            }
        );
        println!(
            "  server key {}{}",
            server.server_key(),
            if server.server_key_created() {
                " (generated now)"
            } else {
                ""
            }
        );
        println!("Press Ctrl-C to stop.");
        server.run_until_signal().await
    })
}
