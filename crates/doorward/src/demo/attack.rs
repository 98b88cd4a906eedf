//! The demo's attacks, and how `doorward demo attack` reaches a running demo.
//!
//! A running demo writes `demo.json` to its data directory: its pid, the agents' pids, its
//! HTTP address and its control address (a loopback TCP socket). `doorward demo attack s1`
//! connects there and sends one line (`attack s1`); the demo runs its next delivery at once
//! under that attack and sends back what it did and what the homeowner should see, line by
//! line, then closes.
//!
//! The attacks act on the real processes and the shared scene:
//! - **S1** (2017 de-auth, silent): after the drop-off the camera agent is stopped with
//!   SIGSTOP — its traffic stops, its connections stay open, nothing says goodbye;
//! - **S3** (2018 dropbox): the virtual bolt's motor is jammed through the scene's fault
//!   switch as the driver pulls the door shut, so the relock never moves the bolt;
//! - **S4** (frozen stream): once the door is open the virtual camera repeats its last frame;
//! - **S22** (uplink cut): the camera's connection to the broker goes through the demo's
//!   relay, which drops its bytes both ways (no disconnect) while the camera's local link to
//!   the lock keeps working; the next entry is asked for during the cut.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::Signal;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::setup::Demo;
use crate::driver_cmd::{Ending, Step};

/// The running demo's state file in its data directory.
pub const STATE_FILE: &str = "demo.json";
/// Attack requests waiting for the demo's loop.
pub const MAX_QUEUED_REQUESTS: usize = 4;
/// Longest attack request line read from the control socket, bytes.
pub const MAX_REQUEST_LINE_BYTES: usize = 64;
/// How long an attack stays on after its delivery before the demo restores the devices, ms.
pub const ATTACK_HOLD_MS: u64 = 4_000;
/// How long the uplink is cut before S22's entry request, ms (past the server's
/// `witness_fresh_ms` of 1 s, so no fresh receipt is left).
pub const S22_LEAD_MS: u64 = 2_000;

/// An attack the demo can launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Silent de-auth of the camera after drop-off.
    S1,
    /// The relock jammed: the bolt never moves.
    S3,
    /// Frozen stream: the last frame repeated.
    S4,
    /// The camera's uplink cut while its local link works.
    S22,
}

impl Scenario {
    /// `S1`, `S3`, …
    pub fn name(self) -> &'static str {
        match self {
            Scenario::S1 => "S1",
            Scenario::S3 => "S3",
            Scenario::S4 => "S4",
            Scenario::S22 => "S22",
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        match s.trim().to_ascii_lowercase().as_str() {
            "s1" => Some(Scenario::S1),
            "s3" => Some(Scenario::S3),
            "s4" => Some(Scenario::S4),
            "s22" => Some(Scenario::S22),
            _ => None,
        }
    }

    /// The alarm kinds the attack must raise (the attack lab's catalogue, crates/sim).
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Scenario::S1 => &["witness_lost"],
            Scenario::S3 => &["unconfirmed_actuation", "not_relocked"],
            Scenario::S4 => &["frozen_footage"],
            Scenario::S22 => &[],
        }
    }

    /// Other alarm kinds the attack may also raise without counting as false alarms: the
    /// attack lab's lists, and for S1 the egress alarms, since the demo's camera comes back
    /// after the driver left and rightly reports that it saw someone go in and nobody come
    /// out (the lab's camera stays dead).
    pub fn allowed(self) -> &'static [&'static str] {
        match self {
            Scenario::S1 => &[
                "lock_silent",
                "device_silent",
                "not_relocked",
                "unconfirmed_actuation",
                "more_in_than_out",
                "activity_after_entry",
            ],
            Scenario::S3 => &["bolt_jammed", "witness_lost"],
            Scenario::S4 => &["scene_mismatch", "activity_after_entry", "more_in_than_out"],
            Scenario::S22 => &["device_silent"],
        }
    }

    fn what(self) -> &'static str {
        match self {
            Scenario::S1 => {
                "after the drop-off the camera agent is stopped (SIGSTOP): its traffic stops, \
                 its connections stay open, no disconnect — a silent Wi-Fi de-auth"
            }
            Scenario::S3 => {
                "as the driver pulls the door shut the bolt motor is jammed (the scene's \
                 bolt_jammed switch): the lock commands the relock and the bolt never moves"
            }
            Scenario::S4 => {
                "once the door is open the camera repeats its last frame (scene feed \"frozen\")"
            }
            Scenario::S22 => {
                "the camera's uplink to the broker drops every byte (no disconnect) while its \
                 local link to the lock keeps working; then the driver asks to enter"
            }
        }
    }

    fn homeowner_sees(self) -> &'static str {
        match self {
            Scenario::S1 => {
                "a \"witness lost\" alarm within about half a second; the lock refuses any \
                 grant until its camera is back (witness lockout) and relocks by itself when \
                 the door closes; the camera shown unknown with its age, never \"recording\""
            }
            Scenario::S3 => {
                "an \"unconfirmed actuation\" alarm about confirm_ms (2 s) after the door \
                 closed, then \"not relocked\"; the lock is never shown \"locked\" while the \
                 bolt is out"
            }
            Scenario::S4 => "a \"frozen footage\" alarm while the driver is inside",
            Scenario::S22 => {
                "the entry denied: the server gets no fresh attestation or footage receipt \
                 from the camera, so it issues no unlock context (I1); the door stays locked"
            }
        }
    }
}

/// An attack asked for through the control socket.
pub struct Request {
    /// Which.
    pub scenario: Scenario,
    /// Lines for the asker.
    pub narrate: mpsc::UnboundedSender<String>,
}

/// The control socket and the state file.
pub struct Control {
    /// Attack requests for the demo's loop.
    pub requests: mpsc::Receiver<Request>,
    /// The socket's task.
    pub task: tokio::task::JoinHandle<()>,
}

impl Control {
    /// Listens on a free loopback port and writes the state file.
    pub async fn start(demo: &Demo) -> Result<Control> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("the demo's control socket cannot listen")?;
        let addr = listener.local_addr()?;
        let state = json!({
            "pid": std::process::id(),
            "control": addr.to_string(),
            "http": demo.api.base(),
            "home": demo.home.as_str(),
            "lock_pid": demo.lock.pid(),
            "camera_pid": demo.camera.pid(),
        });
        doorward_agent::files::write_atomic(
            &demo.data.join(STATE_FILE),
            state.to_string().as_bytes(),
        )
        .context("cannot write the demo's state file")?;
        let (tx, requests) = mpsc::channel(MAX_QUEUED_REQUESTS);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut line = String::new();
                    let mut r = tokio::io::BufReader::new(r).take(MAX_REQUEST_LINE_BYTES as u64);
                    let read =
                        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line)).await;
                    let scenario = match read {
                        Ok(Ok(_)) => line
                            .trim()
                            .strip_prefix("attack ")
                            .and_then(Scenario::parse),
                        _ => None,
                    };
                    let Some(scenario) = scenario else {
                        let _ = w
                            .write_all(b"unknown request: expected \"attack s1|s3|s4|s22\"\n")
                            .await;
                        return;
                    };
                    let (ntx, mut nrx) = mpsc::unbounded_channel();
                    if tx
                        .try_send(Request {
                            scenario,
                            narrate: ntx,
                        })
                        .is_err()
                    {
                        let _ = w.write_all(b"the demo is busy: try again shortly\n").await;
                        return;
                    }
                    while let Some(l) = nrx.recv().await {
                        if w.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Control { requests, task })
    }
}

/// The pid of a demo running with `data`, if its state file names a live process.
pub fn running_demo(data: &Path) -> Option<u32> {
    let b = std::fs::read(data.join(STATE_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    let pid = v["pid"].as_u64()? as u32;
    let alive = rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    (alive && pid != std::process::id()).then_some(pid)
}

/// Removes the state file (the demo stops).
pub fn forget_running(data: &Path) {
    let _ = std::fs::remove_file(data.join(STATE_FILE));
}

/// `doorward demo attack`: asks the running demo and prints its narration.
pub fn client(data: &Path, scenario: Scenario) -> Result<()> {
    let path = data.join(STATE_FILE);
    let b = std::fs::read(&path).with_context(|| {
        format!(
            "no running demo found ({} is missing): start one with `doorward demo`{}",
            path.display(),
            if data.as_os_str() == super::DEFAULT_DEMO_DIR {
                String::new()
            } else {
                format!(" --data {}", data.display())
            }
        )
    })?;
    if running_demo(data).is_none() {
        bail!(
            "the demo that wrote {} is not running any more: start one with `doorward demo`",
            path.display()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&b)?;
    let addr: SocketAddr = v["control"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("{} names no control address", path.display()))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the demo's control socket at {addr}"))?;
    writeln!(s, "attack {}", scenario.name().to_ascii_lowercase())?;
    for line in BufReader::new(s).lines() {
        println!("{}", line?);
    }
    Ok(())
}

/// When an attack started, and what the delivery under it did.
pub struct Attacked {
    /// Wall time the attack started, ms (S3: the door closed and the lock commanded the
    /// relock).
    pub started_ms: u64,
    /// The same moment on the monotonic clock.
    pub started: Instant,
    /// How the delivery ended.
    pub ending: Ending,
}

/// Runs one delivery, under `req`'s attack if any; narrates to the demo's output and to the
/// asker. Restores the devices after the attack.
pub async fn delivery(demo: &mut Demo, req: Option<&Request>) -> Result<()> {
    let Some(req) = req else {
        let (_, ending) = demo.deliver(&mut |_| {}).await?;
        if ending
            == (Ending::Denied {
                reason: "driver_blocked".into(),
            })
        {
            demo.replace_driver().await?;
        }
        return Ok(());
    };
    let say = demo.say.clone();
    let narrate = |l: String| {
        say(format!("ATTACK {l}"));
        let _ = req.narrate.send(l);
    };
    let sc = req.scenario;
    narrate(format!("{}: {}", sc.name(), sc.what()));
    narrate(format!("the homeowner should see: {}", sc.homeowner_sees()));
    // What the homeowner's live view receives meanwhile (the real SSE stream).
    let (seen, listener) = match hear_alarms(demo, false).await {
        Ok((seen, task)) => (seen, Some(task)),
        Err(_) => (Default::default(), None),
    };
    let r = run(demo, sc).await;
    if let Some(l) = listener {
        l.abort();
    }
    match &r {
        Ok(a) => {
            narrate(format!(
                "{}: launched at {} (unix ms); the delivery ended: {:?}",
                sc.name(),
                a.started_ms,
                a.ending
            ));
            // Alarms raised before the attack (still open, re-sent until acknowledged in the
            // web app) are not the attack's.
            let seen: Vec<_> = seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|h| h.raised_ms >= a.started_ms)
                .cloned()
                .collect();
            if seen.is_empty() {
                narrate("the homeowner's live view received no alarm".into());
            }
            for h in seen {
                let ms = h.at.saturating_duration_since(a.started).as_millis();
                narrate(format!(
                    "the homeowner's live view received the alarm {} ({ms} ms after the attack)",
                    h.kind
                ));
            }
            narrate("devices restored; the demo goes on".into());
        }
        Err(e) => narrate(format!("{}: failed: {e:#}", sc.name())),
    }
    r.map(|_| ())
}

/// An alarm as it arrived on the homeowner's live event stream.
#[derive(Clone, Debug)]
pub struct Heard {
    /// When it arrived here.
    pub at: Instant,
    /// When the server raised it (its `raised_ms`, wall clock).
    pub raised_ms: u64,
    /// Its kind (`witness_lost`, …).
    pub kind: String,
}

/// The alarms heard so far, each once, in order of arrival.
pub type HeardAlarms = std::sync::Arc<std::sync::Mutex<Vec<Heard>>>;

/// Opens the homeowner's live event stream (the real SSE endpoint) and keeps each alarm that
/// arrives there, once: alarms are re-sent until acknowledged. With `ack`, each alarm is
/// acknowledged as it arrives, so it stops being re-sent. The task runs until aborted or the
/// stream ends.
pub async fn hear_alarms(
    demo: &Demo,
    ack: bool,
) -> Result<(HeardAlarms, tokio::task::JoinHandle<()>)> {
    let mut stream = demo
        .api
        .events(
            &format!("/api/homes/{}/events", demo.home),
            &crate::client::Auth::Bearer(&demo.token),
        )
        .await?;
    let seen = HeardAlarms::default();
    let (api, token, home) = (demo.api.clone(), demo.token.clone(), demo.home.clone());
    let heard = seen.clone();
    let task = tokio::spawn(async move {
        let mut ids = std::collections::HashSet::new();
        while let Ok(Some(ev)) = stream.next().await {
            let at = Instant::now();
            let id = ev.data["id"].as_u64().unwrap_or(0);
            if ev.name != "alarm" || !ids.insert(id) {
                continue;
            }
            heard.lock().unwrap_or_else(|e| e.into_inner()).push(Heard {
                at,
                raised_ms: ev.data["raised_ms"].as_u64().unwrap_or(0),
                kind: ev.data["kind"].as_str().unwrap_or("?").to_owned(),
            });
            if ack {
                let _ = api
                    .call(
                        "POST",
                        &format!("/api/homes/{home}/alarms/{id}/ack"),
                        &crate::client::Auth::Bearer(&token),
                        None,
                    )
                    .await;
            }
        }
    });
    Ok((seen, task))
}

/// Runs one delivery under `sc` and restores the devices after it.
pub async fn run(demo: &mut Demo, sc: Scenario) -> Result<Attacked> {
    let mut started: Option<(u64, Instant)> = None;
    let r = match sc {
        Scenario::S22 => {
            demo.relay.set_cut(true);
            started = Some((doorward_agent::scene::wall_ms(), Instant::now()));
            tokio::time::sleep(Duration::from_millis(S22_LEAD_MS)).await;
            demo.deliver(&mut |_| {}).await
        }
        _ => {
            let camera = &demo.camera;
            let scene = demo.scene.clone();
            let mut fault: Option<anyhow::Error> = None;
            let mut hook = |step: Step| {
                let now = (doorward_agent::scene::wall_ms(), Instant::now());
                let act = match (sc, step) {
                    (Scenario::S1, Step::DroppedOff) => {
                        started = Some(now);
                        camera.signal(Signal::STOP)
                    }
                    (Scenario::S3, Step::Closing) => {
                        scene.set_bolt_jammed(true).map_err(anyhow::Error::from)
                    }
                    // The lock's sensor reads the door shut now and it commands the relock.
                    (Scenario::S3, Step::DoorClosed) => {
                        started = Some(now);
                        Ok(())
                    }
                    (Scenario::S4, Step::DoorOpen) => {
                        started = Some(now);
                        scene
                            .set_feed(doorward_agent::scene::Feed::Frozen)
                            .map_err(anyhow::Error::from)
                    }
                    _ => Ok(()),
                };
                if let Err(e) = act {
                    fault.get_or_insert(e);
                }
            };
            let r = demo.deliver(&mut hook).await;
            if let Some(e) = fault {
                Err(e)
            } else {
                r
            }
        }
    };
    tokio::time::sleep(Duration::from_millis(ATTACK_HOLD_MS)).await;
    restore(demo, sc).await;
    let (_, ending) = r?;
    if sc != Scenario::S22 {
        // The incident blocks the driver who was at the door (I4).
        demo.replace_driver().await?;
    }
    let (started_ms, started) = started.ok_or_else(|| {
        anyhow::anyhow!(
            "the delivery ended before the attack's moment came ({:?})",
            ending
        )
    })?;
    Ok(Attacked {
        started_ms,
        started,
        ending,
    })
}

/// Puts the devices back as they were before `sc`.
pub async fn restore(demo: &mut Demo, sc: Scenario) {
    match sc {
        Scenario::S1 => {
            let _ = demo.camera.signal(Signal::CONT);
        }
        Scenario::S3 => {
            // The lock retries the relock (a few attempts, confirm_ms apart): freed, the
            // bolt moves on the next one.
            let _ = demo.scene.set_bolt_jammed(false);
        }
        Scenario::S4 => {
            let _ = demo.scene.set_feed(doorward_agent::scene::Feed::Live);
        }
        Scenario::S22 => demo.relay.set_cut(false),
    }
}
