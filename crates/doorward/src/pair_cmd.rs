//! `doorward pair`: the homeowner pairs a device of a home with the setup code read off it,
//! through the server's API (`POST /api/homes/{home}/devices`, docs/PROTOCOL.md §14).
//! A door takes two calls: the camera first, then the lock with `--witness CAMERA`.

use anyhow::{bail, Context, Result};
use clap::Args;
use doorward_proto::pairing::QrPayload;
use serde_json::json;

use crate::client::{Api, Auth};

/// `doorward pair`.
#[derive(Args)]
pub struct PairArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A session token of the home's owner (`dws_…`, from `POST /api/login`).
    #[arg(long, env = "DOORWARD_SESSION", conflicts_with_all = ["email", "password"])]
    session: Option<String>,
    /// The owner's email, to log in (with --password).
    #[arg(long, requires = "password")]
    email: Option<String>,
    /// The owner's password (or DOORWARD_PASSWORD).
    #[arg(long, env = "DOORWARD_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The home.
    #[arg(long)]
    home: String,
    /// The device's id, as it prints it (taken from --qr when given).
    #[arg(long)]
    device: Option<String>,
    /// Lock or camera (taken from --qr when given).
    #[arg(long, value_parser = ["lock", "camera"])]
    kind: Option<String>,
    /// The setup code the device prints (digits; spaces and dashes are fine).
    #[arg(long)]
    code: String,
    /// The QR payload the device prints (`doorward:1:…`): the device's key must be the one
    /// the setup code yields, and it names the device and its kind.
    #[arg(long)]
    qr: Option<String>,
    /// For a lock: the camera that witnesses it, paired just before.
    #[arg(long, value_name = "CAMERA")]
    witness: Option<String>,
    /// For a lock: a garage door.
    #[arg(long)]
    garage: bool,
}

/// Runs `doorward pair`.
pub fn run(a: PairArgs) -> Result<()> {
    let qr =
        a.qr.as_deref()
            .map(QrPayload::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--qr: {e}"))?;
    let device = match (&a.device, &qr) {
        (Some(d), Some(q)) if d != q.device.as_str() => {
            bail!("--device {d} but the QR payload names {}", q.device)
        }
        (Some(d), _) => d.clone(),
        (None, Some(q)) => q.device.to_string(),
        (None, None) => bail!("name the device: --device ID (or --qr PAYLOAD)"),
    };
    let kind = match (&a.kind, &qr) {
        (Some(k), Some(q)) if k != q.kind.as_str() => {
            bail!("--kind {k} but the QR payload is a {}", q.kind.as_str())
        }
        (Some(k), _) => k.clone(),
        (None, Some(q)) => q.kind.as_str().to_owned(),
        (None, None) => bail!("say what it is: --kind lock|camera (or --qr PAYLOAD)"),
    };
    if kind == "lock" && a.witness.is_none() {
        bail!(
            "a lock is paired with its witness: pair the camera first, then the lock with \
             --witness CAMERA"
        );
    }
    if kind == "camera" && (a.witness.is_some() || a.garage) {
        bail!("--witness and --garage are for a lock");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let api = Api::new(&a.server).await?;
        let token = match (a.session, a.email, a.password) {
            (Some(t), _, _) => t,
            (None, Some(email), Some(password)) => {
                let r = api
                    .call(
                        "POST",
                        "/api/login",
                        &Auth::None,
                        Some(&json!({"email": email, "password": password})),
                    )
                    .await?
                    .ok("logging in")?;
                r.json["token"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("the login answer holds no token"))?
                    .to_owned()
            }
            _ => bail!("sign in: --session TOKEN, or --email and --password"),
        };
        println!(
            "pairing {kind} {device} with home {} (waiting for the device to confirm)",
            a.home
        );
        let r = api
            .call(
                "POST",
                &format!("/api/homes/{}/devices", a.home),
                &Auth::Bearer(&token),
                Some(&json!({
                    "device": device,
                    "kind": kind,
                    "code": a.code,
                    "qr": a.qr,
                    "witness": a.witness,
                    "garage": a.garage,
                })),
            )
            .await?
            .ok("pairing")?;
        println!(
            "paired {kind} {device}: key {}",
            r.json["key"].as_str().unwrap_or("?")
        );
        match r.json["door"].as_object() {
            Some(d) => println!(
                "door registered: lock {} witnessed by camera {}",
                d["lock"].as_str().unwrap_or("?"),
                d["camera"].as_str().unwrap_or("?")
            ),
            None => {
                println!("the camera waits for its lock: now pair the lock with --witness {device}")
            }
        }
        Ok(())
    })
}
