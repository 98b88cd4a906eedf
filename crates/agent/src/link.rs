//! The device's MQTT connection and its outbox.
//!
//! [`Link`] is one rumqttc client (MQTT 3.1.1, clean session). A clean session forgets its
//! subscriptions, and rumqttc drops every request still queued when it reconnects to a new
//! session, so the link subscribes again on every `ConnAck` and reports the reconnection to
//! the agent, whose [`Outbox`] publishes again what the server has not acknowledged.
//!
//! The outbox keeps the messages that carry state (every QoS 1 message with a sequence
//! number: the lock's state-change reports, checkpoints) until the server's signed
//! [`doorward_proto::Ack`] covers their sequence number, bounded by [`MAX_OUTBOX_MESSAGES`].
//! Routine messages (camera proofs, periodic lock reports) go once at QoS 0 and are not kept:
//! a lost one is what supervision is for.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};

/// The MQTT quality of service of [`Link::publish`].
pub use rumqttc::QoS;
use tokio::sync::mpsc;

/// Most unacknowledged messages a device keeps; beyond it the oldest is dropped (and the
/// server sees a gap, as for a lost message).
pub const MAX_OUTBOX_MESSAGES: usize = 256;
/// How long a kept message waits for its acknowledgement before the kept messages are
/// published again, in order, milliseconds. Covers a reconnect that reached the broker
/// before the server had subscribed again.
pub const OUTBOX_RETRY_MS: u64 = 1_000;
/// MQTT keep-alive of a device's connection, seconds.
pub const MQTT_KEEP_ALIVE_S: u64 = 5;
/// Pause between reconnection attempts, milliseconds.
pub const MQTT_RECONNECT_DELAY_MS: u64 = 200;
/// Requests the MQTT client buffers towards the broker.
pub const MQTT_CLIENT_QUEUE: usize = 512;
/// Largest MQTT packet the device reads or writes, in bytes (an envelope and its topic).
pub const MQTT_MAX_PACKET_BYTES: usize = 16 * 1024;
/// Incoming messages buffered between the connection and the agent; more are dropped.
pub const LINK_INBOX: usize = 256;

/// What the connection tells the agent.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected (first time or again) and subscribed: publish what is pending.
    Connected,
    /// The broker connection dropped; reconnection is under way.
    Disconnected(String),
    /// A message on a subscribed topic.
    Message {
        /// The topic.
        topic: String,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// A device's broker connection.
pub struct Link {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

/// Where the broker is: `mqtt://host:port` (or `host:port`).
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("mqtt://").unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url}: the port is not a number"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host (expected mqtt://HOST:PORT)"));
    }
    Ok((host.to_owned(), port))
}

impl Link {
    /// Connects to `host:port` as `client_id` and keeps `topics` subscribed (QoS 1) across
    /// reconnects, and returns it with the receiver of its events. Needs a tokio runtime.
    pub fn start(
        host: &str,
        port: u16,
        client_id: &str,
        topics: Vec<String>,
    ) -> (Link, mpsc::Receiver<LinkEvent>) {
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(MQTT_KEEP_ALIVE_S))
            .set_clean_session(true)
            .set_max_packet_size(MQTT_MAX_PACKET_BYTES, MQTT_MAX_PACKET_BYTES)
            .set_request_channel_capacity(MQTT_CLIENT_QUEUE);
        let (client, mut eventloop) = AsyncClient::new(opts, MQTT_CLIENT_QUEUE);
        let (tx, events) = mpsc::channel(LINK_INBOX);
        let sub = client.clone();
        let task = tokio::spawn(async move {
            let mut up = false;
            let mut announce = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up = true;
                        announce = true;
                        for t in &topics {
                            // The eventloop drains this queue, so never wait for room here.
                            let _ = sub.try_subscribe(t.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) if announce => {
                        announce = false;
                        if tx.send(LinkEvent::Connected).await.is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let ev = LinkEvent::Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        };
                        // A full inbox drops, as a lossy broker would.
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(ev) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if up {
                            up = false;
                            if tx
                                .send(LinkEvent::Disconnected(e.to_string()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(MQTT_RECONNECT_DELAY_MS)).await;
                    }
                }
            }
        });
        (Link { client, task }, events)
    }

    /// Publishes without waiting; `false` if the client queue is full (the message is lost,
    /// as on a lossy network; kept messages are published again later).
    pub fn publish(&self, topic: &str, qos: QoS, payload: Vec<u8>) -> bool {
        self.client
            .try_publish(topic.to_owned(), qos, false, payload)
            .is_ok()
    }

    /// Disconnects and stops the connection task.
    pub async fn close(self) {
        let _ = self.client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}

/// Messages kept until the server acknowledges them, in the order they were first sent.
#[derive(Debug, Default)]
pub struct Outbox {
    kept: VecDeque<(u64, Vec<u8>)>,
    /// When the kept messages were last published.
    sent_at: Option<std::time::Instant>,
    held: VecDeque<Vec<u8>>,
    acked: Option<u64>,
    dropped: u64,
}

impl Outbox {
    /// Keeps a message with sequence number `seq`; returns `false` if the oldest had to go.
    pub fn keep(&mut self, seq: u64, bytes: Vec<u8>) -> bool {
        if self.acked.is_some_and(|a| seq <= a) {
            return true;
        }
        let mut room = true;
        if self.kept.len() >= MAX_OUTBOX_MESSAGES {
            self.kept.pop_front();
            self.dropped += 1;
            room = false;
        }
        self.kept.push_back((seq, bytes));
        room
    }

    /// The server holds everything up to `seq`: forget it.
    pub fn ack(&mut self, seq: u64) {
        self.acked = Some(self.acked.map_or(seq, |a| a.max(seq)));
        while self.kept.front().is_some_and(|(s, _)| *s <= seq) {
            self.kept.pop_front();
        }
        if self.kept.is_empty() {
            self.sent_at = None;
        }
    }

    /// Holds a message without a sequence number (a time request) made while offline, to
    /// go once at the next connection; bounded like the rest.
    pub fn hold(&mut self, bytes: Vec<u8>) {
        if self.held.len() >= MAX_OUTBOX_MESSAGES {
            self.held.pop_front();
            self.dropped += 1;
        }
        self.held.push_back(bytes);
    }

    /// What to publish again after a reconnect, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &[u8]> {
        self.kept.iter().map(|(_, b)| b.as_slice())
    }

    /// Notes that everything kept was just published.
    pub fn sent(&mut self, now: std::time::Instant) {
        self.sent_at = Some(now);
    }

    /// Whether the kept messages have waited [`OUTBOX_RETRY_MS`] for an acknowledgement since
    /// they were last published.
    pub fn retry_due(&self, now: std::time::Instant) -> bool {
        !self.kept.is_empty()
            && self.sent_at.is_none_or(|t| {
                now.duration_since(t) >= std::time::Duration::from_millis(OUTBOX_RETRY_MS)
            })
    }

    /// The messages held while offline, to publish now (they are not kept after).
    pub fn take_held(&mut self) -> Vec<Vec<u8>> {
        self.held.drain(..).collect()
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Messages dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_release_in_order_and_the_bound_drops_the_oldest() {
        let mut o = Outbox::default();
        assert!(o.keep(0, vec![0]), "sequence 0 (a first boot) is kept too");
        for s in 1..=5 {
            assert!(o.keep(s, vec![s as u8]));
        }
        o.ack(3);
        assert_eq!(
            o.pending().collect::<Vec<_>>(),
            vec![&[4u8][..], &[5u8][..]]
        );
        assert!(
            o.keep(2, vec![2]),
            "an already acknowledged seq is not kept"
        );
        assert_eq!(o.len(), 2);
        let t = std::time::Instant::now();
        assert!(o.retry_due(t), "never published: due at once");
        o.sent(t);
        assert!(!o.retry_due(t));
        assert!(o.retry_due(t + std::time::Duration::from_millis(OUTBOX_RETRY_MS)));
        o.hold(vec![9]);
        assert_eq!(o.take_held(), vec![vec![9u8]]);
        assert!(o.take_held().is_empty(), "held messages go once");
        let mut o = Outbox::default();
        for s in 1..=MAX_OUTBOX_MESSAGES as u64 {
            assert!(o.keep(s, vec![]));
        }
        assert!(!o.keep(MAX_OUTBOX_MESSAGES as u64 + 1, vec![]));
        assert_eq!(o.len(), MAX_OUTBOX_MESSAGES);
        assert_eq!(o.dropped(), 1);
    }

    #[test]
    fn mqtt_urls_parse() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:18830").unwrap(),
            ("127.0.0.1".into(), 18830)
        );
        assert_eq!(parse_mqtt_url("broker").unwrap(), ("broker".into(), 1883));
        assert!(parse_mqtt_url("mqtt://:1").is_err());
        assert!(parse_mqtt_url("mqtt://h:x").is_err());
    }
}
