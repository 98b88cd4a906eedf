//! The simulated network: one-way links with delay, jitter, loss, stalls and silent cuts.
//!
//! A cut is silent: packets stop and nobody is told (no disconnect, no last will), as in a
//! Wi-Fi de-authentication. Loss drops routine (QoS 0) messages; a lost QoS 1 message is
//! delivered again after a retry, as MQTT would. Each link keeps its order (MQTT keeps order
//! per topic and client), so jitter delays later packets rather than reordering them.

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

/// Every link of one home.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkId {
    /// Camera → broker → server.
    CamUp,
    /// Server → broker → camera.
    CamDown,
    /// Lock → broker → server.
    LockUp,
    /// Server → broker → lock.
    LockDown,
    /// Camera → lock, the local link (checkpoints).
    CamLock,
    /// Driver's phone → server (the carrier API).
    DriverUp,
    /// Server → driver's phone.
    DriverDown,
    /// Phone → lock over the local channel (BLE).
    LocalUp,
    /// Lock → phone over the local channel.
    LocalDown,
    /// Server → homeowner's live view (alarms, state, heartbeats).
    LiveDown,
    /// Homeowner → server (acknowledgements).
    LiveUp,
    /// The attacker's own radio or broker access, to any device or the server.
    Attacker,
}

/// Number of links.
pub const LINKS: usize = 12;

impl LinkId {
    /// Every link, in index order.
    pub const ALL: [LinkId; LINKS] = [
        LinkId::CamUp,
        LinkId::CamDown,
        LinkId::LockUp,
        LinkId::LockDown,
        LinkId::CamLock,
        LinkId::DriverUp,
        LinkId::DriverDown,
        LinkId::LocalUp,
        LinkId::LocalDown,
        LinkId::LiveDown,
        LinkId::LiveUp,
        LinkId::Attacker,
    ];

    fn ix(self) -> usize {
        self as usize
    }

    /// Whether the link crosses the (untrusted, lossy) broker.
    pub fn via_broker(self) -> bool {
        matches!(
            self,
            LinkId::CamUp | LinkId::CamDown | LinkId::LockUp | LinkId::LockDown
        )
    }
}

/// One link's behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Link {
    /// Base one-way delay, ms.
    pub delay_ms: u64,
    /// Extra random delay, up to this, ms.
    pub jitter_ms: u64,
    /// Loss probability, per million packets.
    pub loss_ppm: u32,
    /// Packets sent from this time…
    pub stall_from_ms: u64,
    /// …until this time are held until it (a stall, or a broker delaying everything).
    pub stall_until_ms: u64,
    /// Silently cut from this time…
    pub cut_from_ms: u64,
    /// …until this time (exclusive); equal times mean no cut.
    pub cut_until_ms: u64,
    /// When the last packet on this link is due, to keep order.
    last_due_ms: u64,
}

/// What the network did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered at this true time.
    At(u64),
    /// Dropped.
    Lost,
}

/// Every link of the home, and the randomness of its faults.
pub struct Net {
    links: [Link; LINKS],
    rng: ChaCha20Rng,
    /// Delay of a QoS 1 redelivery after a loss, ms.
    pub retry_ms: u64,
}

impl Net {
    /// A network with these links and fault randomness.
    pub fn new(links: [Link; LINKS], rng: ChaCha20Rng) -> Self {
        Net {
            links,
            rng,
            retry_ms: 200,
        }
    }

    /// The link's settings.
    pub fn link_mut(&mut self, id: LinkId) -> &mut Link {
        &mut self.links[id.ix()]
    }

    /// Holds every packet sent on `id` from `now` for `for_ms`.
    pub fn stall(&mut self, id: LinkId, now: u64, for_ms: u64) {
        let l = &mut self.links[id.ix()];
        l.stall_from_ms = now;
        l.stall_until_ms = now.saturating_add(for_ms);
    }

    /// Whether `id` is cut at `now`.
    pub fn is_cut(&self, id: LinkId, now: u64) -> bool {
        let l = &self.links[id.ix()];
        now >= l.cut_from_ms && now < l.cut_until_ms
    }

    /// Cuts `id` silently from `now` for `for_ms`.
    pub fn cut(&mut self, id: LinkId, now: u64, for_ms: u64) {
        let l = &mut self.links[id.ix()];
        l.cut_from_ms = now;
        l.cut_until_ms = now.saturating_add(for_ms);
    }

    /// Sends one packet on `id` at `now`; `qos1` packets are redelivered after a loss.
    pub fn send(&mut self, id: LinkId, now: u64, qos1: bool) -> Fate {
        if self.is_cut(id, now) {
            return Fate::Lost;
        }
        let l = self.links[id.ix()];
        let mut extra = 0;
        if l.loss_ppm > 0 && (self.rng.next_u32() % 1_000_000) < l.loss_ppm {
            if !qos1 {
                return Fate::Lost;
            }
            extra = self.retry_ms;
        }
        let jitter = if l.jitter_ms > 0 {
            self.rng.next_u64() % (l.jitter_ms + 1)
        } else {
            0
        };
        let start = if now >= l.stall_from_ms && now < l.stall_until_ms {
            l.stall_until_ms
        } else {
            now
        };
        let due = start + l.delay_ms + jitter + extra;
        let due = due.max(l.last_due_ms);
        self.links[id.ix()].last_due_ms = due;
        Fate::At(due)
    }
}
