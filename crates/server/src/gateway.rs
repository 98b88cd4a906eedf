//! The MQTT device gateway: one rumqttc client (MQTT 3.1.1) that subscribes to the up topics
//! of the homes this server serves, drops what is too large or too frequent before anything
//! decodes it, and hands the bytes with the topic's device id to the control core. Everything
//! else (signatures, MACs, sequence numbers, replays) is the core's job.
//!
//! Topics (docs/PROTOCOL.md §1): `doorward/v1/<home>/<device>/up` and `.../down`. The
//! server subscribes per home (`doorward/v1/<home>/+/up`), so a node only hears the homes it
//! serves, which is also how devices will later be shared among nodes. rumqttc does not
//! resubscribe a clean session after a reconnect, so every `ConnAck` resubscribes them all.
//!
//! While the home pairs a device, the gateway also subscribes to that device's pairing topic
//! (`doorward/v1/pair/<device>/up`, docs/PROTOCOL.md §14) and hands what arrives there, at
//! most `MAX_PAIRING_MESSAGE_BYTES`, to [`crate::pairing`]; those bytes never reach the core.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use doorward_proto::{Id, MAX_ENVELOPE_BYTES};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::runtime::Command;

/// First two levels of every Doorward topic.
pub const TOPIC_ROOT: &str = "doorward/v1";
/// Sustained messages per second one device may send; more are dropped (`rate_limited`).
/// A camera in an entry sends 8 proofs and one checkpoint a second; a lock about as many.
pub const DEVICE_RATE_MSGS_PER_S: u64 = 40;
/// Messages one device may send in a burst above the sustained rate.
pub const DEVICE_BURST_MSGS: u64 = 80;
/// Sustained messages per second from all topics naming unpaired devices, together: they can
/// only be refused, so they share one bucket and cannot grow the rate table.
pub const UNPAIRED_RATE_MSGS_PER_S: u64 = 100;
/// Requests the MQTT client buffers towards the broker (publishes, subscriptions).
pub const MQTT_CLIENT_QUEUE: usize = 4096;
/// Largest incoming MQTT packet the client reads, in bytes: anything between an envelope's
/// limit and this is received and counted as `oversized`; beyond it the broker connection
/// drops and is re-established.
pub const MQTT_MAX_PACKET_BYTES: usize = crate::broker::EMBEDDED_MAX_PAYLOAD_BYTES + 1024;
/// MQTT keep-alive of the server's own connection.
pub const MQTT_KEEP_ALIVE_S: u64 = 5;
/// Pause before reconnecting after the broker connection fails.
pub const MQTT_RECONNECT_DELAY_MS: u64 = 250;

/// The up topic of a device.
pub fn up_topic(home: &Id, device: &Id) -> String {
    format!("{TOPIC_ROOT}/{home}/{device}/up")
}

/// The down topic of a device.
pub fn down_topic(home: &Id, device: &Id) -> String {
    format!("{TOPIC_ROOT}/{home}/{device}/down")
}

/// The server's subscription for one home.
pub fn home_filter(home: &Id) -> String {
    format!("{TOPIC_ROOT}/{home}/+/up")
}

/// The home and device of an up topic, or `None` for any other topic.
pub fn parse_up_topic(topic: &str) -> Option<(Id, Id)> {
    let rest = topic.strip_prefix(TOPIC_ROOT)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (home, device, up) = (parts.next()?, parts.next()?, parts.next()?);
    if up != "up" || parts.next().is_some() {
        return None;
    }
    Some((Id::new(home).ok()?, Id::new(device).ok()?))
}

/// A token bucket in thousandths of a message, fed with the caller's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` messages at `now_ms`.
    pub fn new(now_ms: u64, burst: u64) -> Self {
        TokenBucket {
            milli: burst * 1000,
            last_ms: now_ms,
        }
    }

    /// Takes one message if the bucket (refilled at `rate_per_s`, holding at most `burst`)
    /// has one.
    pub fn take(&mut self, now_ms: u64, rate_per_s: u64, burst: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli = (self.milli + elapsed.saturating_mul(rate_per_s)).min(burst * 1000);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// Which home each paired device belongs to: routes the server's messages to down topics,
/// and tells the rate limiter which devices get their own bucket. Bounded by the control
/// core's `max_devices`, since only paired devices enter it.
#[derive(Debug, Default)]
pub struct Routes {
    devices: RwLock<HashMap<Id, Id>>,
}

impl Routes {
    /// Records that `device` belongs to `home`.
    pub fn insert(&self, device: Id, home: Id) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device, home);
    }

    /// The home of a paired device.
    pub fn home_of(&self, device: &Id) -> Option<Id> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(device)
            .cloned()
    }

    /// Paired devices.
    pub fn len(&self) -> usize {
        self.devices.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no device is paired.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops messages past a device's rate.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<Id, TokenBucket>,
    unpaired: Option<TokenBucket>,
}

impl RateLimiter {
    /// Whether a message from `device` (paired or not) may pass at `now_ms`.
    pub fn allow(&mut self, now_ms: u64, device: &Id, paired: bool) -> bool {
        if !paired {
            let b = self
                .unpaired
                .get_or_insert_with(|| TokenBucket::new(now_ms, UNPAIRED_RATE_MSGS_PER_S));
            return b.take(now_ms, UNPAIRED_RATE_MSGS_PER_S, UNPAIRED_RATE_MSGS_PER_S);
        }
        let b = self
            .buckets
            .entry(device.clone())
            .or_insert_with(|| TokenBucket::new(now_ms, DEVICE_BURST_MSGS));
        b.take(now_ms, DEVICE_RATE_MSGS_PER_S, DEVICE_BURST_MSGS)
    }
}

/// The server's side of the broker: publishes to devices and keeps the home subscriptions.
#[derive(Clone)]
pub struct Gateway {
    client: AsyncClient,
    homes: Arc<Mutex<BTreeSet<Id>>>,
    connected: Arc<AtomicBool>,
    pairing: Arc<crate::pairing::PairingHub>,
}

impl Gateway {
    /// Connects to the broker at `host:port` and starts the task that reads from it, handing
    /// device messages to `control`. The task ends when `stop` turns true.
    pub fn start(
        host: &str,
        port: u16,
        control: mpsc::Sender<Command>,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
        mut stop: watch::Receiver<bool>,
    ) -> Gateway {
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let mut opts = MqttOptions::new(format!("doorward-server-{}", hex::encode(id)), host, port);
        opts.set_keep_alive(Duration::from_secs(MQTT_KEEP_ALIVE_S))
            .set_clean_session(true)
            .set_max_packet_size(MQTT_MAX_PACKET_BYTES, MQTT_MAX_PACKET_BYTES)
            .set_request_channel_capacity(MQTT_CLIENT_QUEUE);
        let (client, eventloop) = AsyncClient::new(opts, MQTT_CLIENT_QUEUE);
        let gw = Gateway {
            client,
            homes: Arc::new(Mutex::new(BTreeSet::new())),
            connected: Arc::new(AtomicBool::new(false)),
            pairing: Arc::new(crate::pairing::PairingHub::default()),
        };
        let reader = gw.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = reader.read(eventloop, control, routes, metrics) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            let _ = reader.client.try_disconnect();
        });
        gw
    }

    /// Whether the broker connection is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Starts listening to a home's devices (now if connected, and after every reconnect).
    pub fn subscribe_home(&self, home: &Id) {
        let new = self
            .homes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(home.clone());
        if new && self.connected() {
            if let Err(e) = self
                .client
                .try_subscribe(home_filter(home), QoS::AtLeastOnce)
            {
                tracing::warn!(%home, error = %e, "subscription not queued; it is retried on reconnect");
            }
        }
    }

    /// The pairings in progress.
    pub fn pairing(&self) -> &crate::pairing::PairingHub {
        &self.pairing
    }

    /// Listens to a device's pairing topic while its pairing runs (and after reconnects:
    /// the pairing hub lists the devices being paired).
    pub fn subscribe_pairing(&self, device: &Id) {
        if self.connected() {
            let topic = crate::pairing::pair_up_topic(device);
            if let Err(e) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                tracing::warn!(%device, error = %e, "pairing subscription not queued");
            }
        }
    }

    /// Stops listening to a device's pairing topic.
    pub fn unsubscribe_pairing(&self, device: &Id) {
        let _ = self
            .client
            .try_unsubscribe(crate::pairing::pair_up_topic(device));
    }

    /// Publishes a pairing message to a device's pairing down topic (QoS 1).
    pub fn publish_pairing(&self, device: &Id, bytes: Vec<u8>) -> bool {
        let topic = crate::pairing::pair_down_topic(device);
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, bytes)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%device, error = %e, "pairing message dropped");
                false
            }
        }
    }

    /// Publishes an envelope to a device's down topic (QoS 1). A full client queue drops it,
    /// as a lossy broker would; supervision and the devices' retries cover the loss.
    pub fn publish(&self, home: &Id, device: &Id, bytes: Vec<u8>) -> bool {
        match self
            .client
            .try_publish(down_topic(home, device), QoS::AtLeastOnce, false, bytes)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%device, error = %e, "publish to device dropped");
                false
            }
        }
    }

    async fn read(
        &self,
        mut eventloop: EventLoop,
        control: mpsc::Sender<Command>,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
    ) {
        let mut limiter = RateLimiter::default();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    self.connected.store(true, Ordering::Relaxed);
                    let homes: Vec<Id> = self
                        .homes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .cloned()
                        .collect();
                    tracing::info!(homes = homes.len(), "connected to the MQTT broker");
                    for home in homes {
                        // The eventloop is what drains the request queue, so this must not
                        // wait for room: a full queue is retried on the next reconnect.
                        if let Err(e) = self
                            .client
                            .try_subscribe(home_filter(&home), QoS::AtLeastOnce)
                        {
                            tracing::warn!(%home, error = %e, "resubscription not queued");
                        }
                    }
                    for device in self.pairing.devices() {
                        let topic = crate::pairing::pair_up_topic(&device);
                        let _ = self.client.try_subscribe(topic, QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(device) = crate::pairing::parse_pair_up_topic(&p.topic) {
                        // Pairing messages are bare and small: the size check comes first.
                        if p.payload.len() > doorward_proto::pairing::MAX_PAIRING_MESSAGE_BYTES {
                            metrics.dropped("oversized");
                        } else if !self.pairing.deliver(&device, p.payload.to_vec()) {
                            metrics.dropped("bad_topic");
                        }
                        continue;
                    }
                    let Some((_home, device)) = parse_up_topic(&p.topic) else {
                        metrics.dropped("bad_topic");
                        continue;
                    };
                    // The size check comes before anything looks inside the payload.
                    if p.payload.len() > MAX_ENVELOPE_BYTES {
                        metrics.dropped("oversized");
                        continue;
                    }
                    let paired = routes.home_of(&device).is_some();
                    if !limiter.allow(crate::runtime::wall_ms(), &device, paired) {
                        metrics.dropped("rate_limited");
                        continue;
                    }
                    let cmd = Command::Device {
                        from: device,
                        bytes: p.payload.to_vec(),
                    };
                    match control.try_send(cmd) {
                        Ok(()) => {
                            metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => metrics.dropped("queue_full"),
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if self.connected.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "lost the MQTT broker; reconnecting");
                    } else {
                        tracing::debug!(error = %e, "MQTT broker unreachable; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(MQTT_RECONNECT_DELAY_MS)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    #[test]
    fn topics_round_trip() {
        let (h, d) = (id("home-1"), id("cam-1"));
        assert_eq!(up_topic(&h, &d), "doorward/v1/home-1/cam-1/up");
        assert_eq!(down_topic(&h, &d), "doorward/v1/home-1/cam-1/down");
        assert_eq!(
            parse_up_topic(&up_topic(&h, &d)),
            Some((h.clone(), d.clone()))
        );
        assert_eq!(parse_up_topic(&down_topic(&h, &d)), None);
        assert_eq!(parse_up_topic("doorward/v1/home-1/cam-1/up/x"), None);
        assert_eq!(parse_up_topic("doorward/v1/home-1/c am/up"), None);
        assert_eq!(parse_up_topic("doorward/v2/home-1/cam-1/up"), None);
        assert_eq!(home_filter(&h), "doorward/v1/home-1/+/up");
    }

    #[test]
    fn device_rate_limit_is_hit_and_refills() {
        let mut l = RateLimiter::default();
        let d = id("cam-1");
        let passed = (0..DEVICE_BURST_MSGS + 10)
            .filter(|_| l.allow(1_000, &d, true))
            .count() as u64;
        assert_eq!(
            passed, DEVICE_BURST_MSGS,
            "a burst stops at DEVICE_BURST_MSGS"
        );
        assert!(!l.allow(1_000, &d, true));
        // One second later, DEVICE_RATE_MSGS_PER_S more.
        let passed = (0..DEVICE_BURST_MSGS)
            .filter(|_| l.allow(2_000, &d, true))
            .count() as u64;
        assert_eq!(passed, DEVICE_RATE_MSGS_PER_S);
        // Another device has its own bucket.
        assert!(l.allow(2_000, &id("lock-1"), true));
    }

    #[test]
    fn unpaired_devices_share_one_bucket() {
        let mut l = RateLimiter::default();
        let passed = (0..UNPAIRED_RATE_MSGS_PER_S * 2)
            .filter(|i| l.allow(1_000, &id(&format!("x-{i}")), false))
            .count() as u64;
        assert_eq!(passed, UNPAIRED_RATE_MSGS_PER_S);
        assert!(l.buckets.is_empty(), "unpaired ids take no table rows");
    }
}
