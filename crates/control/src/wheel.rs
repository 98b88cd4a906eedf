//! Supervision deadlines for up to a million devices: a hierarchical timer wheel keyed by
//! device.
//!
//! Every proof a device sends moves its deadline, so rescheduling is the hot path: it is O(1)
//! (one hash lookup, an unlink and a link in intrusive lists over a slab) and allocates
//! nothing once the slab and the key map have grown to the device count. Expiring costs O(1)
//! per fired key plus O(1) per cascade step of each key (at most one per level, and a key
//! that is rescheduled before its slot comes up never cascades at all).
//!
//! Deadlines are exact: a key fires at the first [`TimerWheel::expire`] whose `now_ms` is at
//! or past its deadline, never before and never later. The granularity only decides how keys
//! are grouped into slots (how much work one `expire` batches); the slot that contains `now`
//! is scanned and only its due keys fire.
//!
//! Not here: what a deadline means (witness gap, idle silence, confirmation); that belongs to
//! the supervisor that owns the wheel. Pure: no clock, no IO, no randomness.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Bits of a tick consumed by one level: 64 slots per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Levels needed so that any `u64` tick has a slot (11 × 6 = 66 bits ≥ 64).
const LEVELS: usize = 11;
/// Index of the list holding keys whose deadline was already in the past when scheduled.
const DUE_LIST: u16 = (LEVELS * SLOTS) as u16;
/// Marks a slab node that is on the free list.
const FREE_LIST: u16 = u16::MAX;
/// End of an intrusive list.
const NIL: u32 = u32::MAX;

/// Most keys one wheel can hold: slab indices are `u32` and `u32::MAX` marks the end of a list.
pub const MAX_WHEEL_KEYS: usize = (u32::MAX - 1) as usize;

/// The wheel is at its key limit and `key` is not already scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timer wheel is full: {max_keys} keys scheduled")]
pub struct WheelFull {
    /// The limit that was hit.
    pub max_keys: usize,
}

/// One scheduled key. 24 bytes for a `u32` key, 32 for a `u64` key.
#[derive(Clone, Copy, Debug)]
struct Node<K> {
    deadline_ms: u64,
    prev: u32,
    next: u32,
    key: K,
    /// Which list the node is on: `level * SLOTS + slot`, [`DUE_LIST`] or [`FREE_LIST`].
    list: u16,
}

#[derive(Clone, Copy, Debug)]
struct Head {
    first: u32,
    last: u32,
}

const EMPTY: Head = Head {
    first: NIL,
    last: NIL,
};

/// Deadlines keyed by `K`, fired in deadline order (ties in scheduling order).
///
/// A deadline never fires early and is never late relative to the `now_ms` given to
/// [`TimerWheel::expire`]: it fires at the first call with `now_ms >= deadline_ms`.
#[derive(Debug)]
pub struct TimerWheel<K: Copy + Eq + Hash> {
    granularity_ms: u64,
    /// Every slot that starts before this tick has been processed. Only grows.
    elapsed_tick: u64,
    index: HashMap<K, u32, BuildHasherDefault<FxHasher>>,
    nodes: Vec<Node<K>>,
    free: u32,
    heads: Box<[Head]>,
    /// Bit `s` of `occupied[l]` is set when slot `s` of level `l` is not empty.
    occupied: [u64; LEVELS],
    max_keys: usize,
    /// Reused by `expire` so that it allocates only when a batch is larger than any before.
    fired: Vec<(u64, u64)>,
    /// The earliest deadline when known, so that asking for it after every event costs
    /// nothing unless the earliest key itself moved, was cancelled or fired.
    earliest: Cell<Earliest>,
}

#[derive(Clone, Copy, Debug)]
enum Earliest {
    Known(Option<u64>),
    Unknown,
}

impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// A wheel whose level-0 slots span `granularity_ms` (at least 1), starting at `start_ms`.
    pub fn new(granularity_ms: u64, start_ms: u64) -> Self {
        Self::with_max_keys(granularity_ms, start_ms, MAX_WHEEL_KEYS)
    }

    /// As [`TimerWheel::new`], holding at most `max_keys` keys (capped at [`MAX_WHEEL_KEYS`]).
    pub fn with_max_keys(granularity_ms: u64, start_ms: u64, max_keys: usize) -> Self {
        let granularity_ms = granularity_ms.max(1);
        TimerWheel {
            granularity_ms,
            elapsed_tick: start_ms / granularity_ms,
            index: HashMap::default(),
            nodes: Vec::new(),
            free: NIL,
            heads: vec![EMPTY; LEVELS * SLOTS + 1].into_boxed_slice(),
            occupied: [0; LEVELS],
            max_keys: max_keys.min(MAX_WHEEL_KEYS),
            fired: Vec::new(),
            earliest: Cell::new(Earliest::Known(None)),
        }
    }

    /// Grows the key map and the slab to hold `additional` more keys without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional);
        let spare = self.index.len() + additional;
        self.nodes.reserve(spare.saturating_sub(self.nodes.len()));
    }

    /// Sets (or moves) the deadline of `key`; deadlines in the past fire at the next expire.
    ///
    /// # Panics
    /// When the wheel holds its maximum number of keys and `key` is new: a device the server
    /// cannot supervise must not be silently left unsupervised. Callers that admit devices
    /// bound their count first, or use [`TimerWheel::try_schedule`].
    pub fn schedule(&mut self, key: K, deadline_ms: u64) {
        if let Err(e) = self.try_schedule(key, deadline_ms) {
            panic!("{e}");
        }
    }

    /// Sets (or moves) the deadline of `key`, or refuses a new key when the wheel is full.
    pub fn try_schedule(&mut self, key: K, deadline_ms: u64) -> Result<(), WheelFull> {
        let idx = match self.index.get(&key) {
            Some(&idx) => {
                self.forget_if_earliest(self.nodes[idx as usize].deadline_ms);
                self.unlink(idx);
                idx
            }
            None => {
                if self.index.len() >= self.max_keys {
                    return Err(WheelFull {
                        max_keys: self.max_keys,
                    });
                }
                let idx = self.alloc(key);
                self.index.insert(key, idx);
                idx
            }
        };
        self.nodes[idx as usize].deadline_ms = deadline_ms;
        self.link(idx);
        if let Earliest::Known(e) = self.earliest.get() {
            if e.is_none_or(|e| deadline_ms < e) {
                self.earliest.set(Earliest::Known(Some(deadline_ms)));
            }
        }
        Ok(())
    }

    /// Removes the deadline of `key`; `false` if it had none.
    pub fn cancel(&mut self, key: &K) -> bool {
        match self.index.remove(key) {
            Some(idx) => {
                self.forget_if_earliest(self.nodes[idx as usize].deadline_ms);
                self.unlink(idx);
                self.release(idx);
                true
            }
            None => false,
        }
    }

    /// The deadline of `key`, if scheduled.
    pub fn deadline(&self, key: &K) -> Option<u64> {
        self.index
            .get(key)
            .map(|&idx| self.nodes[idx as usize].deadline_ms)
    }

    /// Removes and appends to `out` every key whose deadline ≤ now_ms, in deadline order
    /// (ties in scheduling order).
    ///
    /// `now_ms` normally only grows; a smaller value than before fires only what is due at
    /// that smaller value.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<K>) {
        let now_tick = now_ms / self.granularity_ms;
        if let Earliest::Known(e) = self.earliest.get() {
            if e.is_none_or(|e| e > now_ms) {
                // Nothing is due: the common case of a timer that woke early costs nothing.
                return;
            }
        }
        self.earliest.set(Earliest::Unknown);
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();

        // Keys scheduled in the past. They are older than anything in the slots.
        self.take_due(DUE_LIST, now_ms, &mut fired);

        while let Some((level, slot, start_tick)) = self.next_slot() {
            if start_tick > now_tick {
                break;
            }
            let list = (level * SLOTS + slot) as u16;
            if level == 0 {
                if start_tick < now_tick {
                    // The whole slot ends at or before `now_tick * granularity`: all due.
                    self.elapsed_tick = start_tick;
                    self.take_all(list, &mut fired);
                } else {
                    // The slot that contains `now`: only its keys at or before `now` fire,
                    // the rest wait in place for a later call.
                    self.take_due(list, now_ms, &mut fired);
                    break;
                }
            } else {
                // Redistribute the slot into finer levels now that time has reached it.
                self.elapsed_tick = start_tick;
                self.cascade(list);
            }
        }
        // Every slot starting at or before `now_tick` is processed: nothing else is due, and
        // every remaining key keeps its place relative to the new elapsed tick.
        self.elapsed_tick = self.elapsed_tick.max(now_tick);

        // Slots were taken in time order and each list is in scheduling order, so sorting by
        // (deadline, position taken) gives deadline order with ties in scheduling order.
        fired.sort_unstable();
        out.reserve(fired.len());
        for &(_, tagged) in &fired {
            let idx = tagged as u32;
            let key = self.nodes[idx as usize].key;
            self.index.remove(&key);
            self.release(idx);
            out.push(key);
        }
        self.fired = fired;
    }

    /// The earliest deadline, if any. Remembered between calls; after the earliest key moved,
    /// was cancelled or fired, it costs one scan of the earliest non-empty slot.
    pub fn next_deadline(&self) -> Option<u64> {
        if let Earliest::Known(e) = self.earliest.get() {
            return e;
        }
        let e = self.scan_earliest();
        self.earliest.set(Earliest::Known(e));
        e
    }

    fn forget_if_earliest(&self, deadline_ms: u64) {
        if let Earliest::Known(Some(e)) = self.earliest.get() {
            if e == deadline_ms {
                self.earliest.set(Earliest::Unknown);
            }
        }
    }

    fn scan_earliest(&self) -> Option<u64> {
        let mut best = self.min_of(DUE_LIST);
        if let Some((level, slot, _)) = self.next_slot() {
            let in_slot = self.min_of((level * SLOTS + slot) as u16);
            best = match (best, in_slot) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        best
    }

    /// Number of scheduled keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is scheduled.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes held by the wheel's tables (slab, key map, list heads), for capacity planning.
    pub fn heap_bytes(&self) -> usize {
        // hashbrown stores one control byte per bucket plus a group's worth of padding.
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        buckets * (std::mem::size_of::<(K, u32)>() + 1)
            + self.nodes.capacity() * std::mem::size_of::<Node<K>>()
            + self.heads.len() * std::mem::size_of::<Head>()
            + self.fired.capacity() * std::mem::size_of::<(u64, u64)>()
    }

    fn alloc(&mut self, key: K) -> u32 {
        let node = Node {
            deadline_ms: 0,
            prev: NIL,
            next: NIL,
            key,
            list: FREE_LIST,
        };
        if self.free != NIL {
            let idx = self.free;
            self.free = self.nodes[idx as usize].next;
            self.nodes[idx as usize] = node;
            idx
        } else {
            let idx = self.nodes.len() as u32;
            self.nodes.push(node);
            idx
        }
    }

    fn release(&mut self, idx: u32) {
        let n = &mut self.nodes[idx as usize];
        n.list = FREE_LIST;
        n.prev = NIL;
        n.next = self.free;
        self.free = idx;
    }

    /// The list a deadline belongs on, relative to the current elapsed tick.
    fn list_for(&self, deadline_ms: u64) -> u16 {
        let tick = deadline_ms / self.granularity_ms;
        if tick < self.elapsed_tick {
            return DUE_LIST;
        }
        // The highest bit in which the tick differs from `elapsed` picks the level: keys that
        // share everything above level `l` with `elapsed` live in level `l`.
        let masked = (tick ^ self.elapsed_tick) | (SLOTS as u64 - 1);
        let level = ((63 - masked.leading_zeros()) / SLOT_BITS) as usize;
        let slot = ((tick >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
        (level * SLOTS + slot) as u16
    }

    fn link(&mut self, idx: u32) {
        let list = self.list_for(self.nodes[idx as usize].deadline_ms);
        let head = &mut self.heads[list as usize];
        let last = head.last;
        head.last = idx;
        if last == NIL {
            head.first = idx;
        } else {
            self.nodes[last as usize].next = idx;
        }
        let n = &mut self.nodes[idx as usize];
        n.prev = last;
        n.next = NIL;
        n.list = list;
        if list != DUE_LIST {
            self.occupied[list as usize / SLOTS] |= 1 << (list as usize % SLOTS);
        }
    }

    fn unlink(&mut self, idx: u32) {
        let Node {
            prev, next, list, ..
        } = self.nodes[idx as usize];
        if prev == NIL {
            self.heads[list as usize].first = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.heads[list as usize].last = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        if prev == NIL && next == NIL && list != DUE_LIST {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        }
    }

    /// Detaches a whole list, returning its first node.
    fn detach(&mut self, list: u16) -> u32 {
        let first = self.heads[list as usize].first;
        self.heads[list as usize] = EMPTY;
        if list != DUE_LIST {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        }
        first
    }

    fn take_all(&mut self, list: u16, fired: &mut Vec<(u64, u64)>) {
        let mut idx = self.detach(list);
        while idx != NIL {
            let n = &self.nodes[idx as usize];
            fired.push((n.deadline_ms, tag(fired.len(), idx)));
            idx = n.next;
        }
    }

    fn take_due(&mut self, list: u16, now_ms: u64, fired: &mut Vec<(u64, u64)>) {
        let mut idx = self.heads[list as usize].first;
        while idx != NIL {
            let n = self.nodes[idx as usize];
            if n.deadline_ms <= now_ms {
                self.unlink(idx);
                fired.push((n.deadline_ms, tag(fired.len(), idx)));
            }
            idx = n.next;
        }
    }

    fn cascade(&mut self, list: u16) {
        let mut idx = self.detach(list);
        while idx != NIL {
            let next = self.nodes[idx as usize].next;
            self.link(idx);
            idx = next;
        }
    }

    fn min_of(&self, list: u16) -> Option<u64> {
        let mut idx = self.heads[list as usize].first;
        let mut best = None::<u64>;
        while idx != NIL {
            let n = &self.nodes[idx as usize];
            best = Some(best.map_or(n.deadline_ms, |b| b.min(n.deadline_ms)));
            idx = n.next;
        }
        best
    }

    /// The earliest non-empty slot: `(level, slot, first tick it covers)`.
    ///
    /// Keys in level `l` share every digit above `l` with the elapsed tick and are later in
    /// digit `l`, so every key in a lower level is earlier than every key in a higher one, and
    /// the first occupied slot at or after the elapsed digit of the lowest level is the
    /// earliest.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occ = self.occupied[level];
            if occ == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let digit = ((self.elapsed_tick >> shift) as usize) & (SLOTS - 1);
            let ahead = occ.rotate_right(digit as u32);
            let slot = (digit + ahead.trailing_zeros() as usize) & (SLOTS - 1);
            // Clear this level's digit and everything below, then put the slot's digit back.
            let above = shift + SLOT_BITS;
            let base = if above >= 64 {
                0
            } else {
                self.elapsed_tick & !((1u64 << above) - 1)
            };
            let start = base | ((slot as u64) << shift);
            return Some((level, slot, start));
        }
        None
    }
}

/// Packs the position a fired key was taken at above its slab index, so that sorting by
/// `(deadline, tag)` keeps ties in the order they were taken.
fn tag(pos: usize, idx: u32) -> u64 {
    ((pos as u64) << 32) | idx as u64
}

/// A fast, deterministic hash for the key map (the rustc "Fx" hash). Keys are assigned by the
/// server (device indices), not chosen by an attacker, so flooding one bucket is not a threat
/// model here; determinism keeps simulator runs reproducible.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

const FX_SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.wrapping_add(word)).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("chunk of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and a tag from the top 7: rotate so the
        // well-mixed high bits of the product reach both.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    /// The obviously correct reference: an ordered map of (deadline, scheduling order).
    #[derive(Default)]
    struct Model {
        by_key: HashMap<u32, (u64, u64)>,
        order: BTreeMap<(u64, u64), u32>,
        seq: u64,
    }

    impl Model {
        fn schedule(&mut self, k: u32, d: u64) {
            self.seq += 1;
            if let Some(old) = self.by_key.insert(k, (d, self.seq)) {
                self.order.remove(&old);
            }
            self.order.insert((d, self.seq), k);
        }
        fn cancel(&mut self, k: u32) -> bool {
            match self.by_key.remove(&k) {
                Some(old) => {
                    self.order.remove(&old);
                    true
                }
                None => false,
            }
        }
        fn expire(&mut self, now: u64) -> Vec<u32> {
            let mut out = Vec::new();
            while let Some(e) = self.order.first_entry() {
                if e.key().0 > now {
                    break;
                }
                let k = e.remove();
                self.by_key.remove(&k);
                out.push(k);
            }
            out
        }
    }

    #[test]
    fn fires_in_deadline_order_ties_in_scheduling_order() {
        let mut w = TimerWheel::new(10, 0);
        w.schedule(1u32, 50);
        w.schedule(2, 20);
        w.schedule(3, 50);
        w.schedule(4, 20);
        w.schedule(5, 5_000_000);
        let mut out = Vec::new();
        w.expire(19, &mut out);
        assert!(out.is_empty());
        w.expire(50, &mut out);
        assert_eq!(out, vec![2, 4, 1, 3]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_deadline(), Some(5_000_000));
    }

    #[test]
    fn never_early_never_late_inside_a_slot() {
        // Granularity 100: deadlines 101 and 150 share a slot; each fires exactly on time.
        let mut w = TimerWheel::new(100, 0);
        w.schedule(1u32, 150);
        w.schedule(2, 101);
        let mut out = Vec::new();
        w.expire(100, &mut out);
        assert!(out.is_empty());
        w.expire(101, &mut out);
        assert_eq!(out, vec![2]);
        w.expire(149, &mut out);
        assert_eq!(out, vec![2]);
        w.expire(150, &mut out);
        assert_eq!(out, vec![2, 1]);
    }

    #[test]
    fn far_and_near_deadlines_coexist() {
        let mut w = TimerWheel::new(1, 1_700_000_000_000);
        let t0 = 1_700_000_000_000u64;
        w.schedule(1u32, t0 + 90_000);
        w.schedule(2, t0 + 500);
        w.schedule(3, t0 + 30_000);
        w.schedule(4, u64::MAX);
        assert_eq!(w.next_deadline(), Some(t0 + 500));
        let mut out = Vec::new();
        w.expire(t0 + 499, &mut out);
        assert!(out.is_empty());
        w.expire(t0 + 89_999, &mut out);
        assert_eq!(out, vec![2, 3]);
        assert_eq!(w.next_deadline(), Some(t0 + 90_000));
        w.expire(t0 + 90_000, &mut out);
        assert_eq!(out, vec![2, 3, 1]);
        w.expire(u64::MAX, &mut out);
        assert_eq!(out, vec![2, 3, 1, 4]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_at_the_next_expire() {
        let mut w = TimerWheel::new(10, 0);
        let mut out = Vec::new();
        w.expire(1_000, &mut out);
        w.schedule(7u32, 3);
        w.schedule(8, 1_000);
        w.schedule(9, 2);
        assert_eq!(w.next_deadline(), Some(2));
        w.expire(1_000, &mut out);
        assert_eq!(out, vec![9, 7, 8]);
    }

    #[test]
    fn reschedule_and_cancel() {
        let mut w = TimerWheel::new(4, 0);
        w.schedule(1u32, 100);
        w.schedule(1, 40);
        assert_eq!(w.deadline(&1), Some(40));
        assert_eq!(w.len(), 1);
        assert!(w.cancel(&1));
        assert!(!w.cancel(&1));
        assert_eq!(w.deadline(&1), None);
        let mut out = Vec::new();
        w.expire(1_000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn key_limit_is_enforced() {
        let mut w = TimerWheel::with_max_keys(1, 0, 3);
        for k in 0..3u32 {
            assert_eq!(w.try_schedule(k, 10), Ok(()));
        }
        assert_eq!(w.try_schedule(3, 10), Err(WheelFull { max_keys: 3 }));
        // Moving a key already scheduled is always allowed.
        assert_eq!(w.try_schedule(2, 20), Ok(()));
        assert!(w.cancel(&0));
        assert_eq!(w.try_schedule(3, 10), Ok(()));
    }

    #[test]
    #[should_panic(expected = "timer wheel is full")]
    fn schedule_past_the_limit_panics_rather_than_drop_supervision() {
        let mut w = TimerWheel::with_max_keys(1, 0, 1);
        w.schedule(1u32, 10);
        w.schedule(2u32, 10);
    }

    #[test]
    fn many_keys_scheduled_rescheduled_and_expired() {
        // 10^5 in a debug test; the bench runs 10^6.
        const N: u32 = 100_000;
        let t0 = 1_000_000u64;
        let mut w = TimerWheel::new(8, t0);
        w.reserve(N as usize);
        for k in 0..N {
            w.schedule(k, t0 + 90_000 + u64::from(k % 30_000));
        }
        let mut out = Vec::new();
        w.expire(t0 + 1_000, &mut out);
        assert!(out.is_empty());
        for k in 0..N {
            // Every device proves itself; its deadline moves (mixing near and far).
            let d = if k % 10 == 0 { 500 } else { 90_000 };
            w.schedule(k, t0 + 1_000 + d + u64::from(k % 977));
        }
        assert_eq!(w.len(), N as usize);
        w.expire(u64::MAX, &mut out);
        assert_eq!(out.len(), N as usize);
        assert!(w.is_empty());
        let mut last = 0;
        for k in &out {
            let d = t0 + 1_000 + if k % 10 == 0 { 500 } else { 90_000 } + u64::from(k % 977);
            assert!(d >= last, "out of order at key {k}");
            last = d;
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Schedule(u32, u64),
        Cancel(u32),
        Expire(u64),
        Advance(u64),
        /// An expire with an earlier `now` than before, which must fire only what is due then.
        Rewind(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys so that moves and ties are common; offsets from "now" from the past to
        // far beyond level 0, so every level and the due list are exercised.
        prop_oneof![
            4 => (0u32..24, prop_oneof![0u64..200, 0u64..5_000, 0u64..2_000_000]).prop_map(|(k, d)| Op::Schedule(k, d)),
            1 => (0u32..24).prop_map(Op::Cancel),
            2 => (0u64..300).prop_map(Op::Expire),
            1 => prop_oneof![0u64..5_000, 0u64..3_000_000].prop_map(Op::Advance),
            1 => (0u64..500).prop_map(Op::Rewind),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn wheel_matches_ordered_map_model(
            granularity in prop_oneof![Just(1u64), Just(7), Just(64), 1u64..1_000],
            start in prop_oneof![Just(0u64), 0u64..1_000_000_000],
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut w = TimerWheel::new(granularity, start);
            let mut m = Model::default();
            // `now` wanders around the start (schedules may lie in the past) and mostly grows.
            let mut now = start;
            for op in ops {
                match op {
                    Op::Schedule(k, d) => {
                        let deadline = (now + d).saturating_sub(100);
                        w.schedule(k, deadline);
                        m.schedule(k, deadline);
                    }
                    Op::Cancel(k) => prop_assert_eq!(w.cancel(&k), m.cancel(k)),
                    Op::Expire(d) => {
                        now += d;
                        let mut got = Vec::new();
                        w.expire(now, &mut got);
                        prop_assert_eq!(got, m.expire(now));
                    }
                    Op::Advance(d) => {
                        now += d;
                        let mut got = Vec::new();
                        w.expire(now, &mut got);
                        prop_assert_eq!(got, m.expire(now));
                    }
                    Op::Rewind(d) => {
                        let then = now.saturating_sub(d);
                        let mut got = Vec::new();
                        w.expire(then, &mut got);
                        prop_assert_eq!(got, m.expire(then));
                    }
                }
                prop_assert_eq!(w.len(), m.by_key.len());
                prop_assert_eq!(w.next_deadline(), m.order.keys().next().map(|k| k.0));
                for k in 0..24u32 {
                    prop_assert_eq!(w.deadline(&k), m.by_key.get(&k).map(|d| d.0));
                }
            }
            let mut got = Vec::new();
            w.expire(u64::MAX, &mut got);
            prop_assert_eq!(got, m.expire(u64::MAX));
        }
    }
}
