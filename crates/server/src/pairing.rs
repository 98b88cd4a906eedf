//! The home's side of out-of-band pairing over the broker (docs/PROTOCOL.md §14), run by the
//! server for the homeowner.
//!
//! A door is a lock and the camera that witnesses it, and each must learn the other's key, so
//! a door is paired in two calls of [`crate::Handle::pair_device`]:
//!
//! 1. **the camera first**: the server runs SPAKE2 with it on its setup code and learns its
//!    key (checked against its QR payload if one is given). The camera's pairing is then held
//!    open, waiting for its lock, for at most [`PENDING_CAMERA_TTL_MS`];
//! 2. **then the lock, naming that camera**: the server runs SPAKE2 with the lock, registers
//!    the door (`Admin::PairDoor`, on record before anything is confirmed to a device), and
//!    only then sends each device its key-confirmed `HomeKeys` — the lock's naming its camera,
//!    the camera's naming its lock (the `witness` field carries the peer device).
//!
//! The gateway routes `doorward/v1/pair/<device>/up` here (after the 512-byte check) while a
//! pairing of that device runs, and nothing else: these topics carry no envelopes and never
//! reach the control core. Failed confirmations count against
//! [`MAX_PAIRING_ATTEMPTS_PER_HOUR`] per device.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use doorward_proto::pairing::{
    DeviceKeys, DeviceKind, HomeKeys, PairingFinish, PairingMessage, PairingPayload, PairingRole,
    PairingStart, QrPayload, SetupCode, MAX_PAIRING_ATTEMPTS_PER_HOUR, MAX_PAIRING_MESSAGE_BYTES,
};
use doorward_proto::{Id, PubKey};
use tokio::sync::mpsc;

/// How often the home repeats its PAKE message until the device answers, milliseconds.
pub const PAIRING_RESEND_MS: u64 = 1_000;
/// Pairings that may run at once (each holds a subscription and an inbox).
pub const MAX_CONCURRENT_PAIRINGS: usize = 16;
/// Messages buffered per running pairing; more are dropped.
pub const PAIRING_INBOX: usize = 16;
/// How long a paired camera waits for its lock to be paired, milliseconds.
pub const PENDING_CAMERA_TTL_MS: u64 = 600_000;
/// Cameras that may wait for their lock at once.
pub const MAX_PENDING_CAMERAS: usize = 64;
/// Default time a pairing may take, milliseconds.
pub const DEFAULT_PAIRING_TIMEOUT_MS: u64 = 120_000;
/// Longest time a caller may give a pairing, milliseconds.
pub const MAX_PAIRING_TIMEOUT_MS: u64 = 600_000;
/// How many times the home's final confirmations are sent again after the first.
pub const CONFIRM_REPEATS: u32 = 3;
/// Pause between those repeats, milliseconds.
pub const CONFIRM_REPEAT_MS: u64 = 1_000;

/// The home → device pairing topic.
pub fn pair_down_topic(device: &Id) -> String {
    format!("{}/pair/{device}/down", crate::gateway::TOPIC_ROOT)
}

/// The device → home pairing topic.
pub fn pair_up_topic(device: &Id) -> String {
    format!("{}/pair/{device}/up", crate::gateway::TOPIC_ROOT)
}

/// The device of a pairing up topic, or `None` for any other topic.
pub fn parse_pair_up_topic(topic: &str) -> Option<Id> {
    let rest = topic
        .strip_prefix(crate::gateway::TOPIC_ROOT)?
        .strip_prefix("/pair/")?;
    let device = rest.strip_suffix("/up")?;
    if device.contains('/') {
        return None;
    }
    Id::new(device).ok()
}

/// Options of one pairing.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// The device's QR payload, if the owner scanned it: the key the setup code yields must
    /// be the one it shows.
    pub qr: Option<QrPayload>,
    /// For a lock: its camera, paired before it and still waiting
    /// ([`PENDING_CAMERA_TTL_MS`]). Required for a lock, refused for a camera.
    pub camera: Option<Id>,
    /// Front door or garage (for a lock).
    pub door: doorward_control::DoorKind,
    /// How long to wait for the device, milliseconds (at most [`MAX_PAIRING_TIMEOUT_MS`]).
    pub timeout_ms: u64,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            qr: None,
            camera: None,
            door: doorward_control::DoorKind::Front,
            timeout_ms: DEFAULT_PAIRING_TIMEOUT_MS,
        }
    }
}

/// A device the home paired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairedDevice {
    /// The device.
    pub device: Id,
    /// Lock or camera.
    pub kind: DeviceKind,
    /// Its key, confirmed through the setup code.
    pub key: PubKey,
    /// For a lock: the door now registered. For a camera: `None`, it waits for its lock.
    pub door: Option<doorward_control::DoorSetup>,
}

/// Why a pairing failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PairingFailure {
    /// Too many failed attempts for this device in the last hour.
    #[error(
        "{0}: {MAX_PAIRING_ATTEMPTS_PER_HOUR} failed pairing attempts in the last hour; wait \
         before trying again"
    )]
    RateLimited(Id),
    /// Another pairing of this device is running, or too many pairings run.
    #[error("{0}")]
    Busy(String),
    /// The device did not answer in time.
    #[error(
        "{0} did not answer within {1} ms: is it running, unpaired (it prints its setup code), \
         and connected to this server's broker?"
    )]
    Timeout(Id, u64),
    /// The device's confirmation did not verify: a wrong setup code or a tampered message.
    #[error("pairing {0} failed: wrong setup code or a tampered message ({1})")]
    Confirmation(Id, String),
    /// The device is not what the owner said it is.
    #[error("{0}")]
    Mismatch(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
}

struct PendingCamera {
    home: Id,
    keys: DeviceKeys,
    finish: PairingFinish,
    since_ms: u64,
}

/// Pairings in progress and cameras waiting for their lock.
#[derive(Default)]
pub struct PairingHub {
    inboxes: Mutex<HashMap<Id, mpsc::Sender<Vec<u8>>>>,
    failures: Mutex<HashMap<Id, VecDeque<u64>>>,
    cameras: Mutex<HashMap<Id, PendingCamera>>,
}

impl PairingHub {
    /// Hands a message from a pairing up topic to the pairing of that device; `false` if
    /// none runs (or its inbox is full).
    pub fn deliver(&self, device: &Id, payload: Vec<u8>) -> bool {
        let inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes
            .get(device)
            .is_some_and(|tx| tx.try_send(payload).is_ok())
    }

    /// Devices being paired now (the gateway keeps their topics subscribed).
    pub fn devices(&self) -> Vec<Id> {
        let inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes.keys().cloned().collect()
    }

    fn open(&self, device: &Id) -> Result<mpsc::Receiver<Vec<u8>>, PairingFailure> {
        let mut inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        if inboxes.contains_key(device) {
            return Err(PairingFailure::Busy(format!(
                "a pairing of {device} is already running"
            )));
        }
        if inboxes.len() >= MAX_CONCURRENT_PAIRINGS {
            return Err(PairingFailure::Busy(format!(
                "{MAX_CONCURRENT_PAIRINGS} pairings are running; try again shortly"
            )));
        }
        let (tx, rx) = mpsc::channel(PAIRING_INBOX);
        inboxes.insert(device.clone(), tx);
        Ok(rx)
    }

    fn close(&self, device: &Id) {
        self.inboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device);
    }

    fn allowed(&self, device: &Id, now_ms: u64) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let q = f.entry(device.clone()).or_default();
        while q
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= 3_600_000)
        {
            q.pop_front();
        }
        let ok = q.len() < MAX_PAIRING_ATTEMPTS_PER_HOUR as usize;
        if q.is_empty() {
            f.remove(device);
        }
        ok
    }

    fn failed(&self, device: &Id, now_ms: u64) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a device's queue never exceeds the hourly limit, and only devices someone
        // tried to pair (an owner's call) get a queue.
        let q = f.entry(device.clone()).or_default();
        if q.len() < MAX_PAIRING_ATTEMPTS_PER_HOUR as usize {
            q.push_back(now_ms);
        }
    }

    fn hold_camera(&self, home: Id, keys: DeviceKeys, finish: PairingFinish, now_ms: u64) {
        let mut c = self.cameras.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|_, p| now_ms.saturating_sub(p.since_ms) < PENDING_CAMERA_TTL_MS);
        if c.len() >= MAX_PENDING_CAMERAS {
            if let Some(oldest) = c
                .iter()
                .min_by_key(|(_, p)| p.since_ms)
                .map(|(k, _)| k.clone())
            {
                c.remove(&oldest);
            }
        }
        c.insert(
            keys.device.clone(),
            PendingCamera {
                home,
                keys,
                finish,
                since_ms: now_ms,
            },
        );
    }

    fn take_camera(&self, home: &Id, camera: &Id, now_ms: u64) -> Option<PendingCamera> {
        let mut c = self.cameras.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|_, p| now_ms.saturating_sub(p.since_ms) < PENDING_CAMERA_TTL_MS);
        match c.get(camera) {
            Some(p) if &p.home == home => c.remove(camera),
            _ => None,
        }
    }

    fn put_back_camera(&self, p: PendingCamera) {
        self.cameras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.keys.device.clone(), p);
    }
}

/// What [`run`] needs from the server.
pub(crate) struct Ctx<'a> {
    pub hub: &'a PairingHub,
    pub gateway: &'a crate::gateway::Gateway,
    pub home: HomeKeys,
    pub now_ms: &'a (dyn Fn() -> u64 + Send + Sync),
}

/// The PAKE and key confirmation with one device, as the home. Returns the device's keys and
/// the confirmation state (to send the home's keys later).
async fn exchange(
    ctx: &Ctx<'_>,
    device: &Id,
    kind: DeviceKind,
    code: &SetupCode,
    qr: Option<&QrPayload>,
    timeout_ms: u64,
) -> Result<(DeviceKeys, PairingFinish), PairingFailure> {
    if !ctx.hub.allowed(device, (ctx.now_ms)()) {
        return Err(PairingFailure::RateLimited(device.clone()));
    }
    let mut inbox = ctx.hub.open(device)?;
    ctx.gateway.subscribe_pairing(device);
    let r = exchange_inner(ctx, &mut inbox, device, kind, code, qr, timeout_ms).await;
    ctx.gateway.unsubscribe_pairing(device);
    ctx.hub.close(device);
    if let Err(PairingFailure::Confirmation(..)) = &r {
        ctx.hub.failed(device, (ctx.now_ms)());
    }
    r
}

async fn exchange_inner(
    ctx: &Ctx<'_>,
    inbox: &mut mpsc::Receiver<Vec<u8>>,
    device: &Id,
    kind: DeviceKind,
    code: &SetupCode,
    qr: Option<&QrPayload>,
    timeout_ms: u64,
) -> Result<(DeviceKeys, PairingFinish), PairingFailure> {
    let (start, ours) = PairingStart::new(PairingRole::Home, code, device, &mut rand_core::OsRng);
    let pake = PairingMessage::Pake(ours).to_bytes();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    let mut start = Some(start);
    let mut finish: Option<PairingFinish> = None;
    let mut resend = tokio::time::interval(Duration::from_millis(PAIRING_RESEND_MS));
    loop {
        let payload = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err(PairingFailure::Timeout(device.clone(), timeout_ms));
            }
            _ = resend.tick(), if finish.is_none() => {
                // Until the device answers: it may have subscribed after the first copy.
                ctx.gateway.publish_pairing(device, pake.clone());
                continue;
            }
            p = inbox.recv() => match p {
                Some(p) => p,
                None => return Err(PairingFailure::Busy("the server is stopping".into())),
            },
        };
        // The gateway checked the size already; checked again where the bytes are used.
        if payload.len() > MAX_PAIRING_MESSAGE_BYTES {
            continue;
        }
        let Ok(msg) = PairingMessage::decode(&payload) else {
            continue;
        };
        match msg {
            PairingMessage::Pake(m) if m.role == PairingRole::Device => {
                let Some(s) = start.take() else { continue };
                match s.finish(&m) {
                    Ok(f) => finish = Some(f),
                    Err(e) => {
                        return Err(PairingFailure::Confirmation(device.clone(), e.to_string()))
                    }
                }
            }
            PairingMessage::Confirm(c) => {
                let Some(f) = finish.as_ref() else { continue };
                let keys = match f.accept(&c) {
                    Ok(PairingPayload::Device(k)) => k,
                    Ok(PairingPayload::Home(_)) => continue,
                    Err(e) => {
                        return Err(PairingFailure::Confirmation(device.clone(), e.to_string()))
                    }
                };
                if keys.kind != kind {
                    return Err(PairingFailure::Mismatch(format!(
                        "{device} is a {}, not a {}",
                        keys.kind.as_str(),
                        kind.as_str()
                    )));
                }
                if let Some(q) = qr {
                    if !q.matches(&keys) {
                        return Err(PairingFailure::Mismatch(format!(
                            "{device}: the key confirmed by the setup code is not the one its \
                             QR code shows; do not pair this device"
                        )));
                    }
                }
                let f = finish.take().expect("checked above");
                return Ok((keys, f));
            }
            _ => {}
        }
    }
}

/// Pairs one device (see the module documentation for the order). `register` puts the door
/// on record; it runs before any device is told it is paired.
pub(crate) async fn run<F, Fut>(
    ctx: Ctx<'_>,
    device: Id,
    kind: DeviceKind,
    code: SetupCode,
    opts: PairOptions,
    register: F,
) -> Result<PairedDevice, crate::runtime::ServerError>
where
    F: FnOnce(doorward_control::DoorSetup) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::runtime::ServerError>>,
{
    use crate::runtime::ServerError;
    let fail = |e: PairingFailure| ServerError::Invalid(e.to_string());
    if opts.timeout_ms == 0 || opts.timeout_ms > MAX_PAIRING_TIMEOUT_MS {
        return Err(fail(PairingFailure::Invalid(format!(
            "the pairing timeout must be 1..={MAX_PAIRING_TIMEOUT_MS} ms"
        ))));
    }
    if let Some(q) = &opts.qr {
        if q.device != device || q.kind != kind {
            return Err(fail(PairingFailure::Mismatch(format!(
                "the QR code is of {} {}, not of {} {device}",
                q.kind.as_str(),
                q.device,
                kind.as_str()
            ))));
        }
    }
    match kind {
        DeviceKind::Camera => {
            if opts.camera.is_some() {
                return Err(fail(PairingFailure::Invalid(
                    "a camera is paired on its own; name it when pairing its lock".into(),
                )));
            }
            let (keys, finish) = exchange(
                &ctx,
                &device,
                kind,
                &code,
                opts.qr.as_ref(),
                opts.timeout_ms,
            )
            .await
            .map_err(fail)?;
            let key = keys.key;
            ctx.hub
                .hold_camera(ctx.home.home.clone(), keys, finish, (ctx.now_ms)());
            Ok(PairedDevice {
                device,
                kind,
                key,
                door: None,
            })
        }
        DeviceKind::Lock => {
            let Some(camera) = opts.camera.clone() else {
                return Err(fail(PairingFailure::Invalid(
                    "a lock needs its camera: pair the camera first, then the lock naming it"
                        .into(),
                )));
            };
            let home = ctx.home.home.clone();
            let Some(cam) = ctx.hub.take_camera(&home, &camera, (ctx.now_ms)()) else {
                return Err(fail(PairingFailure::Invalid(format!(
                    "camera {camera} is not waiting for a lock in home {home}: pair it first \
                     (it waits {} s)",
                    PENDING_CAMERA_TTL_MS / 1000
                ))));
            };
            let (keys, finish) = match exchange(
                &ctx,
                &device,
                kind,
                &code,
                opts.qr.as_ref(),
                opts.timeout_ms,
            )
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    // The camera keeps waiting: the owner may retry the lock.
                    ctx.hub.put_back_camera(cam);
                    return Err(fail(e));
                }
            };
            let door = doorward_control::DoorSetup {
                lock: device.clone(),
                lock_key: keys.key,
                camera: camera.clone(),
                camera_key: cam.keys.key,
                kind: opts.door,
            };
            register(door.clone()).await?;
            let to_lock = HomeKeys {
                witness: Some(cam.keys.clone()),
                ..ctx.home.clone()
            };
            let to_camera = HomeKeys {
                witness: Some(keys.clone()),
                ..ctx.home.clone()
            };
            let lock_confirm = finish
                .confirm(PairingPayload::Home(to_lock))
                .expect("the home's keys from the home's side");
            let cam_confirm = cam
                .finish
                .confirm(PairingPayload::Home(to_camera))
                .expect("the home's keys from the home's side");
            let confirms = [
                (
                    device.clone(),
                    PairingMessage::Confirm(lock_confirm).to_bytes(),
                ),
                (
                    camera.clone(),
                    PairingMessage::Confirm(cam_confirm).to_bytes(),
                ),
            ];
            for (d, bytes) in &confirms {
                ctx.gateway.publish_pairing(d, bytes.clone());
            }
            // The door is on record now, so a confirmation lost with a broker restart would
            // leave a device unpaired for good: repeat them. A device takes the first one
            // that verifies and ignores the rest.
            let gateway = ctx.gateway.clone();
            tokio::spawn(async move {
                for _ in 0..CONFIRM_REPEATS {
                    tokio::time::sleep(Duration::from_millis(CONFIRM_REPEAT_MS)).await;
                    for (d, bytes) in &confirms {
                        gateway.publish_pairing(d, bytes.clone());
                    }
                }
            });
            Ok(PairedDevice {
                device,
                kind,
                key: keys.key,
                door: Some(door),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_topics_parse() {
        let d = Id::new("cam-1").unwrap();
        assert_eq!(pair_up_topic(&d), "doorward/v1/pair/cam-1/up");
        assert_eq!(parse_pair_up_topic(&pair_up_topic(&d)), Some(d.clone()));
        assert_eq!(parse_pair_up_topic(&pair_down_topic(&d)), None);
        assert_eq!(parse_pair_up_topic("doorward/v1/pair/a/b/up"), None);
        assert_eq!(parse_pair_up_topic("doorward/v1/home/cam-1/up"), None);
    }

    #[test]
    fn failed_attempts_are_limited_per_device_per_hour() {
        let hub = PairingHub::default();
        let d = Id::new("lock-1").unwrap();
        for _ in 0..MAX_PAIRING_ATTEMPTS_PER_HOUR {
            assert!(hub.allowed(&d, 1_000));
            hub.failed(&d, 1_000);
        }
        assert!(!hub.allowed(&d, 1_000 + 3_599_999));
        assert!(hub.allowed(&Id::new("lock-2").unwrap(), 1_000));
        assert!(hub.allowed(&d, 1_000 + 3_600_000));
    }

    #[test]
    fn one_pairing_per_device_and_a_bounded_number_at_once() {
        let hub = PairingHub::default();
        let _a = hub.open(&Id::new("d-0").unwrap()).unwrap();
        assert!(matches!(
            hub.open(&Id::new("d-0").unwrap()),
            Err(PairingFailure::Busy(_))
        ));
        let mut keep = Vec::new();
        for i in 1..MAX_CONCURRENT_PAIRINGS {
            keep.push(hub.open(&Id::new(format!("d-{i}")).unwrap()).unwrap());
        }
        assert!(matches!(
            hub.open(&Id::new("d-x").unwrap()),
            Err(PairingFailure::Busy(_))
        ));
        hub.close(&Id::new("d-0").unwrap());
        let mut x = hub.open(&Id::new("d-x").unwrap()).unwrap();
        assert!(hub.deliver(&Id::new("d-x").unwrap(), vec![1]));
        assert_eq!(x.try_recv().unwrap(), vec![1]);
        assert!(!hub.deliver(&Id::new("nobody").unwrap(), vec![1]));
    }
}
