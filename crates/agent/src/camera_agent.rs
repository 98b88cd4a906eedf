//! The camera agent: the camera core ([`doorward_camera::Camera`]) fed frames from a
//! [`CameraHardware`] adapter in real time, run against MQTT.
//!
//! It holds no security logic. It opens a session with the server (signed hello, server-signed
//! accept) so routine proofs are MAC'd, answers witness requests through the core, sends each
//! proof of an entry twice (docs/PROTOCOL.md §13), hands its signed checkpoints to the paired
//! lock over the lock's local channel (the lock supervises its witness by itself). Nothing it
//! sends needs keeping until acknowledged: proofs are routine, and each checkpoint covers the
//! ones before it.
//!
//! With a server URL it uploads the frames behind its entry proofs ([`crate::upload`]): the
//! loop hands each segment to a bounded queue and never waits for the upload, which runs on
//! a task of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorward_camera::{Camera, CameraConfig, CameraState, Frame, Input, Mode, Output};
use doorward_proto::pairing::DeviceKind;
use doorward_proto::session::Initiator;
use doorward_proto::{Body, Envelope, Id, KeyPair};
use rumqttc::QoS;
use tokio::sync::{mpsc, watch};

use crate::files::{DataDir, Paired};
use crate::hardware::CameraHardware;
use crate::link::{Link, LinkEvent};
use crate::local_channel::{self, LocalReply, LocalRequest};
use crate::lock_agent::{Say, MONO_START_MS};
use crate::upload::{self, ServerUrl, UploadStats};

/// How long the camera waits for the server's session accept before a new hello, ms.
pub const SESSION_RETRY_MS: u64 = 5_000;
/// Checkpoints waiting for the local link to the lock; more are dropped (the next one
/// supersedes them).
pub const LOCK_LINK_QUEUE: usize = 16;
/// Pause before reconnecting the local link to the lock, milliseconds.
pub const LOCK_LINK_RETRY_MS: u64 = 500;

/// Where a camera agent runs.
#[derive(Clone, Debug)]
pub struct CameraAgentConfig {
    /// Data directory (key, id, pairing, sequence reservation).
    pub data: std::path::PathBuf,
    /// Broker host and port.
    pub mqtt: (String, u16),
    /// Device id (else the stored one, else generated).
    pub id: Option<Id>,
    /// The paired lock's local channel, for checkpoints (none: the lock enters witness
    /// lockout during each open cycle, since it cannot hear its camera).
    pub lock_local: Option<SocketAddr>,
    /// The server's HTTP API, where the frames of entry proofs are uploaded (none: no
    /// upload; the proofs alone reach the server).
    pub server_url: Option<ServerUrl>,
}

/// What the agent shows about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraStatus {
    /// The camera's id.
    pub device: Id,
    /// Entry pace or idle.
    pub entry: bool,
    /// A session key is in use.
    pub session: bool,
    /// Connected to the broker.
    pub connected: bool,
    /// Proofs sent since start.
    pub proofs: u64,
    /// Witness attestations sent since start.
    pub attestations: u64,
    /// Witness requests refused since start.
    pub refusals: u64,
    /// Checkpoints the lock took over the local link.
    pub checkpoints_to_lock: u64,
    /// Footage upload counters (all zero without a server URL).
    pub footage: UploadStats,
}

/// Runs a camera agent until `stop` turns true: pairs first if needed, then serves.
pub async fn run(
    cfg: CameraAgentConfig,
    mut hw: Box<dyn CameraHardware>,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<Option<CameraStatus>>,
    say: Say,
) -> anyhow::Result<()> {
    let data = DataDir::open(&cfg.data)?;
    let key = data.key()?;
    let device = data.device_id(cfg.id.as_ref(), "cam")?;
    let p = match data.pairing()? {
        Some(p) => p,
        None => match crate::pairing::pair(
            &cfg.mqtt,
            &data,
            DeviceKind::Camera,
            &device,
            &key,
            say.as_ref(),
            stop.clone(),
        )
        .await
        {
            Ok(p) => p,
            Err(crate::pairing::PairError::Stopped) => return Ok(()),
            Err(e) => return Err(e.into()),
        },
    };
    if p.kind != DeviceKind::Camera || p.device != device {
        anyhow::bail!(
            "{} holds the pairing of {} {}, not of camera {device}: use another --data directory",
            data.path().display(),
            p.kind.as_str(),
            p.device
        );
    }
    let stored = match data.state()? {
        Some(b) => CameraState {
            seq_reserved: String::from_utf8_lossy(&b).trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: not a sequence number; the camera will not start without it",
                    data.file(crate::files::STATE_FILE).display()
                )
            })?,
        },
        None => CameraState::default(),
    };
    serve(
        &cfg, &data, p, key, &mut *hw, stored, &mut stop, status, say,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: &CameraAgentConfig,
    data: &DataDir,
    p: Paired,
    key: KeyPair,
    hw: &mut dyn CameraHardware,
    stored: CameraState,
    stop: &mut watch::Receiver<bool>,
    status: watch::Sender<Option<CameraStatus>>,
    say: Say,
) -> anyhow::Result<()> {
    let device = p.device.clone();
    let mut ccfg = CameraConfig::new(device.clone(), key.clone(), p.peer.clone(), p.peer_key);
    // Frames are kept for a segment only when someone will upload them.
    ccfg.upload_segments = cfg.server_url.is_some();
    let frame_ms = 1_000 / u64::from(ccfg.fps.max(1));
    let t0 = Instant::now();
    let mono = move || t0.elapsed().as_millis() as u64 + MONO_START_MS;
    let mut camera = Camera::new(ccfg, stored, mono());
    say(format!(
        "camera {device}: home {}, witnessing lock {}; connecting to mqtt://{}:{}",
        p.home, p.peer, cfg.mqtt.0, cfg.mqtt.1
    ));
    let mut r = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    let down = format!("doorward/v1/{}/{}/down", p.home, device);
    let up = format!("doorward/v1/{}/{}/up", p.home, device);
    let (link, mut events) = Link::start(
        &cfg.mqtt.0,
        cfg.mqtt.1,
        &format!("{device}-{}", hex::encode(r)),
        vec![down],
    );
    let (lock_tx, lock_rx) = mpsc::channel::<Vec<u8>>(LOCK_LINK_QUEUE);
    let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let lock_task = cfg
        .lock_local
        .map(|addr| tokio::spawn(lock_link(addr, lock_rx, taken.clone())));
    if cfg.lock_local.is_none() {
        say(format!(
            "camera {device}: no --lock-local address: the lock cannot hear this camera's \
             checkpoints and will lock itself out of grants during each entry"
        ));
    }
    let uploads = upload::Shared::new();
    let upload_task = match &cfg.server_url {
        Some(url) => {
            say(format!(
                "camera {device}: uploading the footage of entries to {url}"
            ));
            Some(tokio::spawn(upload::run(
                url.clone(),
                device.clone(),
                key.clone(),
                uploads.clone(),
                stop.clone(),
            )))
        }
        None => {
            say(format!(
                "camera {device}: no --server-url: footage stays on this camera (proofs only)"
            ));
            None
        }
    };
    // The newest proof handed out, to decide whether its segment is worth uploading.
    let mut last_proof: Option<doorward_proto::CameraProof> = None;
    let mut connected = false;
    let mut initiator: Option<(Initiator, Instant)> = None;
    let mut session = false;
    let mut frame = Frame::default();
    let mut st = CameraStatus {
        device: device.clone(),
        entry: false,
        session: false,
        connected: false,
        proofs: 0,
        attestations: 0,
        refusals: 0,
        checkpoints_to_lock: 0,
        footage: UploadStats::default(),
    };
    let mut frames = tokio::time::interval(Duration::from_millis(frame_ms));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut hello_check = tokio::time::interval(Duration::from_millis(500));
    loop {
        let due = camera.next_deadline_ms();
        let wait = Duration::from_millis(due.saturating_sub(mono()));
        let mut outs = Vec::new();
        tokio::select! {
            _ = tokio::time::sleep(wait) => outs = camera.handle(mono(), Input::Tick),
            _ = frames.tick() => {
                let now = mono();
                if hw.capture(now, &mut frame) {
                    outs = camera.on_frame(now, &frame);
                }
            }
            _ = hello_check.tick() => {
                let stale = initiator
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= Duration::from_millis(SESSION_RETRY_MS));
                if connected && !session && stale {
                    let (init, hello) = Initiator::start(device.clone(), &mut rand_core::OsRng);
                    let env = Envelope::signed(Body::SessionHello(hello), &key);
                    link.publish(&up, QoS::AtLeastOnce, env.to_bytes());
                    initiator = Some((init, Instant::now()));
                }
            }
            ev = events.recv() => match ev {
                None => anyhow::bail!("the MQTT connection task ended"),
                Some(LinkEvent::Connected) => {
                    connected = true;
                    say(format!("camera {device}: connected to the broker"));
                }
                Some(LinkEvent::Disconnected(e)) => {
                    connected = false;
                    say(format!("camera {device}: lost the broker ({e}); reconnecting"));
                }
                Some(LinkEvent::Message { payload, .. }) => {
                    // Everything on the down topic is from the server and signed by it.
                    let Ok(env) = Envelope::decode(&payload) else { continue };
                    if env.verify_sig(&p.server).is_err() {
                        tracing::debug!("down message not signed by the server: dropped");
                        continue;
                    }
                    match env.body {
                        Body::WitnessRequest(req) => {
                            outs = camera.handle(mono(), Input::WitnessRequest(req));
                        }
                        Body::SessionAccept(a) if a.device == device => {
                            if let Some((init, _)) = initiator.take() {
                                match init.finish(&a) {
                                    Ok(k) => {
                                        session = true;
                                        outs = camera.handle(mono(), Input::Session(k));
                                        say(format!("camera {device}: session open"));
                                    }
                                    Err(e) => tracing::warn!(error = %e, "session accept refused"),
                                }
                            }
                        }
                        _ => {}
                    }
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
        for o in outs {
            match o {
                Output::Persist(s) => {
                    // Written before anything after it is delivered: a reboot never reuses
                    // a sequence number.
                    data.store_state(format!("{}\n", s.seq_reserved).as_bytes())?;
                }
                Output::Send(env) => {
                    let bytes = env.to_bytes();
                    let (qos, copies) = match &env.body {
                        Body::CameraProof(p) => {
                            st.proofs += 1;
                            last_proof = Some(p.clone());
                            let copies = if camera.mode() == Mode::Entry { 2 } else { 1 };
                            (QoS::AtMostOnce, copies)
                        }
                        Body::Checkpoint(_) => {
                            // Not kept for the server: a later checkpoint covers everything
                            // an earlier one did (docs/PROTOCOL.md §7.3).
                            let _ = lock_tx.try_send(bytes.clone());
                            (QoS::AtLeastOnce, 1)
                        }
                        Body::WitnessAttestation(_) => {
                            st.attestations += 1;
                            say(format!("camera {device}: attested the lock's nonce"));
                            (QoS::AtLeastOnce, 1)
                        }
                        _ => (QoS::AtLeastOnce, 1),
                    };
                    if connected {
                        for _ in 0..copies {
                            link.publish(&up, qos, bytes.clone());
                        }
                    }
                }
                Output::Refused { reason, .. } => {
                    st.refusals += 1;
                    say(format!("camera {device}: refused to attest: {reason}"));
                }
                Output::Segment { seq, frames, .. } => {
                    let entry = camera.mode() == Mode::Entry;
                    let wanted = last_proof
                        .as_ref()
                        .is_some_and(|p| p.seq == seq && upload::worth_uploading(p, entry));
                    if wanted {
                        let mut body =
                            Vec::with_capacity(frames.len() * doorward_camera::FRAME_BYTES);
                        for f in &frames {
                            body.extend_from_slice(&f.pixels);
                        }
                        uploads.push(
                            &device,
                            upload::Job {
                                seq,
                                body: body.into(),
                            },
                        );
                    }
                }
            }
        }
        let entry = camera.mode() == Mode::Entry;
        if entry != st.entry {
            say(format!(
                "camera {device}: {}",
                if entry {
                    "activity: entry pace"
                } else {
                    "quiet: idle pace"
                }
            ));
        }
        st.entry = entry;
        st.session = session;
        st.connected = connected;
        st.checkpoints_to_lock = taken.load(std::sync::atomic::Ordering::Relaxed);
        let footage = uploads.stats();
        if footage.stored > 0 && st.footage.stored == 0 {
            say(format!("camera {device}: footage uploaded to the server"));
        }
        st.footage = footage;
        let snapshot = st.clone();
        status.send_if_modified(|s| {
            if s.as_ref() != Some(&snapshot) {
                *s = Some(snapshot);
                true
            } else {
                false
            }
        });
    }
    say(format!("camera {device}: stopping"));
    if let Some(t) = lock_task {
        t.abort();
    }
    if let Some(t) = upload_task {
        // It stops on `stop` by itself; an upload in flight is not waited for.
        t.abort();
    }
    link.close().await;
    Ok(())
}

/// Carries checkpoints to the lock's local channel, reconnecting as needed.
async fn lock_link(
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    taken: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut conn = None;
    while let Some(bytes) = rx.recv().await {
        if conn.is_none() {
            match local_channel::connect(addr).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    tracing::debug!(error = %e, "local link to the lock down");
                    tokio::time::sleep(Duration::from_millis(LOCK_LINK_RETRY_MS)).await;
                    continue;
                }
            }
        }
        let Some(s) = conn.as_mut() else { continue };
        let req = LocalRequest::Checkpoint(bytes.into());
        match local_channel::request(s, addr, &req).await {
            Ok(LocalReply::Ok) => {
                taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(other) => tracing::debug!(?other, "the lock did not take a checkpoint"),
            Err(e) => {
                tracing::debug!(error = %e, "local link to the lock broke");
                conn = None;
            }
        }
    }
}
