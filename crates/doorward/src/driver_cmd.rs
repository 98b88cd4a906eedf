//! `doorward driver`: the driver's side of a delivery, as the driver's phone would do it —
//! arrive, read the lock's nonce over its local channel, sign it, request entry through the
//! driver API (signed requests, docs/PROTOCOL.md "Driver API signatures"), open the door,
//! drop off, close it, leave, finish.
//!
//! The driver's body is the shared virtual scene the agents read (crates/agent/src/scene.rs):
//! the driver walks into the camera's view, pushes the door (it opens only if the lock
//! retracted its bolt), walks in and out and pulls the door shut. Nothing here decides
//! anything: the server decides whether to ask, the lock decides whether to open (I1).
//!
//! [`deliver`] is the one implementation; `doorward demo` runs its deliveries through it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use doorward_agent::scene::{wall_ms, SceneDir, DOOR_SENSOR_DEG, DOOR_SWING_MS};
use doorward_proto::{codec, driver_nonce_message, Id, KeyPair, DRIVER_NONCE_CONTEXT};
use serde_json::json;

use crate::client::{Api, Auth};

/// How long the driver pushes a door before concluding the lock did not open it, ms.
pub const DOOR_OPEN_WAIT_MS: u64 = 5_000;
/// How long the camera gets to see the driver arrive before the entry request, ms.
pub const ARRIVE_SETTLE_MS: u64 = 1_200;
/// The camera's walking lane the driver uses.
pub const DRIVER_LANE: u8 = 1;
/// The driver's index among the people of the scene.
pub const DRIVER_PERSON: usize = 0;

/// `doorward driver`: one delivery's entry, with progress on standard output.
#[derive(Args)]
pub struct DriverArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The driver's key: a file written by `doorward keys generate` (its public key is the
    /// one the carrier registered).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The delivery the carrier assigned to this driver.
    #[arg(long)]
    delivery: String,
    /// The lock's local channel (BLE's stand-in): the address the lock agent printed, or
    /// the one in its data directory's local.addr.
    #[arg(long, default_value = crate::agent_cmd::DEFAULT_LOCAL_ADDR)]
    local: SocketAddr,
    /// The shared virtual-scene directory the agents were started with (--scene).
    #[arg(long, value_name = "DIR")]
    scene: PathBuf,
}

/// One step of a delivery, reported to the caller's hook as it is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The driver is at the door, in the camera's view, and told the server.
    Arrived,
    /// The server authorised the entry (the lock still decides).
    Authorised,
    /// The door swung open.
    DoorOpen,
    /// The parcel is inside; the driver is about to walk out.
    DroppedOff,
    /// The driver walked out and is about to pull the door shut.
    Closing,
    /// The door leaf is shut.
    DoorClosed,
    /// The driver walked away and told the server the delivery is done.
    Finished,
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The driver entered, dropped off and finished; the server's phase at the finish.
    Delivered {
        /// The delivery's phase as the finish answered it.
        phase: String,
    },
    /// The server refused the entry: its reason (a DenyReason in snake case).
    Denied {
        /// The reason.
        reason: String,
    },
    /// The server authorised, but the door did not open (the lock refused or did not hear).
    DoorStayedShut,
}

/// One driver's trip to one door.
pub struct Trip<'a> {
    /// The server.
    pub api: &'a Api,
    /// The driver's key.
    pub key: &'a KeyPair,
    /// The delivery.
    pub delivery: &'a Id,
    /// The lock's local channel.
    pub local: SocketAddr,
    /// The shared virtual scene.
    pub scene: &'a SceneDir,
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn scene_io(e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot write the scene directory: {e}")
}

/// Runs one delivery. `say` prints progress; `hook` sees each [`Step`] as it is reached
/// (the demo launches its attacks from there). Errors are failures to talk to the server or
/// the lock; a refusal is an [`Ending`].
pub async fn deliver(
    trip: &Trip<'_>,
    say: &(dyn Fn(String) + Sync),
    hook: &mut (dyn FnMut(Step) + Send),
) -> Result<Ending> {
    let d = trip.delivery.as_str();
    let me = Auth::Driver(trip.key);
    let scene = trip.scene;

    say(format!("driver: arriving at the door for delivery {d}"));
    scene
        .walk(DRIVER_PERSON, DRIVER_LANE, &[(1_000, -0.3)])
        .map_err(scene_io)?;
    trip.api
        .call(
            "POST",
            &format!("/api/driver/deliveries/{d}/arrive"),
            &me,
            Some(&json!({})),
        )
        .await?
        .ok("telling the server the driver arrived")?;
    sleep_ms(ARRIVE_SETTLE_MS).await;
    hook(Step::Arrived);

    say(format!(
        "driver: reading the lock's nonce over its local channel ({})",
        trip.local
    ));
    let nonce = doorward_agent::local_channel::read_nonce(trip.local)
        .await
        .with_context(|| {
            format!(
                "reading the lock's nonce at {}: is the lock agent running, and is this its \
                 --local address?",
                trip.local
            )
        })?;
    let lock = nonce.body.lock.clone();
    let driver_sig = trip.key.sign(
        DRIVER_NONCE_CONTEXT,
        &driver_nonce_message(&lock, &nonce.body.nonce),
    );
    say(format!(
        "driver: signed lock {lock}'s nonce; requesting entry"
    ));
    let t0 = std::time::Instant::now();
    let r = trip
        .api
        .call(
            "POST",
            &format!("/api/driver/deliveries/{d}/entry"),
            &me,
            Some(&json!({
                "nonce": hex::encode(codec::encode(&nonce)),
                "driver_sig": driver_sig.to_hex(),
            })),
        )
        .await?;
    if r.status == 403 && r.json["code"] == "entry_denied" {
        let reason = r.json["reason"].as_str().unwrap_or("unknown").to_owned();
        say(format!("driver: entry DENIED by the server: {reason}"));
        walk_away(scene).await?;
        return Ok(Ending::Denied { reason });
    }
    let r = r.ok("requesting entry")?;
    say(format!(
        "driver: entry authorised in {} ms (request {}); the lock decides now",
        t0.elapsed().as_millis(),
        r.json["request"]
    ));
    hook(Step::Authorised);

    say("driver: pushing the door".into());
    scene.push_door(true).map_err(scene_io)?;
    let t0 = std::time::Instant::now();
    while scene.door_angle(wall_ms()) <= DOOR_SENSOR_DEG {
        if t0.elapsed() >= Duration::from_millis(DOOR_OPEN_WAIT_MS) {
            scene.push_door(false).map_err(scene_io)?;
            say(format!(
                "driver: the door stayed shut for {DOOR_OPEN_WAIT_MS} ms: the lock did not \
                 retract its bolt (it refused the grant, or never received it)"
            ));
            walk_away(scene).await?;
            finish(trip).await?;
            return Ok(Ending::DoorStayedShut);
        }
        sleep_ms(20).await;
    }
    say(format!(
        "driver: the door opens ({} ms after the push)",
        t0.elapsed().as_millis()
    ));
    hook(Step::DoorOpen);
    sleep_ms(DOOR_SWING_MS + 100).await;

    say("driver: walking in with the parcel".into());
    scene
        .walk(DRIVER_PERSON, DRIVER_LANE, &[(1_500, 0.6)])
        .map_err(scene_io)?;
    sleep_ms(2_500).await;
    say("driver: parcel dropped off inside".into());
    hook(Step::DroppedOff);

    say("driver: walking out".into());
    scene
        .walk(
            DRIVER_PERSON,
            DRIVER_LANE,
            &[(1_500, -0.3), (2_500, -1.0), (2_800, -1.5)],
        )
        .map_err(scene_io)?;
    sleep_ms(3_000).await;
    hook(Step::Closing);
    say("driver: pulling the door shut".into());
    scene.push_door(false).map_err(scene_io)?;
    let t0 = std::time::Instant::now();
    while scene.door_angle(wall_ms()) > 0.5 {
        if t0.elapsed() >= Duration::from_millis(DOOR_SWING_MS * 3) {
            anyhow::bail!("the door did not swing shut: is the lock agent running?");
        }
        sleep_ms(20).await;
    }
    say("driver: the door is shut (the lock relocks by itself)".into());
    hook(Step::DoorClosed);

    let phase = finish(trip).await?;
    say(format!("driver: finished; the server's phase: {phase}"));
    hook(Step::Finished);
    Ok(Ending::Delivered { phase })
}

async fn walk_away(scene: &SceneDir) -> Result<()> {
    scene
        .walk(DRIVER_PERSON, DRIVER_LANE, &[(1_000, -1.0), (1_300, -1.5)])
        .map_err(scene_io)?;
    sleep_ms(1_300).await;
    Ok(())
}

async fn finish(trip: &Trip<'_>) -> Result<String> {
    let r = trip
        .api
        .call(
            "POST",
            &format!("/api/driver/deliveries/{}/finish", trip.delivery),
            &Auth::Driver(trip.key),
            Some(&json!({})),
        )
        .await?
        .ok("finishing the delivery")?;
    Ok(r.json["phase"].as_str().unwrap_or("unknown").to_owned())
}

/// Runs `doorward driver`.
pub fn run(args: DriverArgs) -> Result<()> {
    let key = crate::read_seed(&args.key)?;
    let delivery = Id::new(args.delivery.clone())
        .map_err(|e| anyhow::anyhow!("--delivery {:?}: {e}", args.delivery))?;
    let scene = SceneDir::open(&args.scene)
        .with_context(|| format!("cannot open the scene directory {}", args.scene.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let api = Api::new(&args.server).await?;
        println!("driver {}: server {}", key.public(), api.base());
        let trip = Trip {
            api: &api,
            key: &key,
            delivery: &delivery,
            local: args.local,
            scene: &scene,
        };
        let say = |l: String| println!("{l}");
        match deliver(&trip, &say, &mut |_| {}).await? {
            Ending::Delivered { .. } => Ok(()),
            Ending::Denied { reason } => {
                anyhow::bail!("entry denied: {reason} (the server's reason; nothing was unlocked)")
            }
            Ending::DoorStayedShut => anyhow::bail!(
                "the server authorised the entry but the door did not open: the lock decides \
                 by itself and did not retract its bolt (see the lock agent's output)"
            ),
        }
    })
}
