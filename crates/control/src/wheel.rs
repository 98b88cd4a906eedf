//! Supervision deadlines for up to a million devices: a timer keyed by device.
//!
//! This first version keeps deadlines in an ordered map; it has the final API and semantics
//! (exact firing, ties in scheduling order) and is replaced by a hierarchical wheel.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Deadlines keyed by `K`, fired in deadline order (ties in scheduling order).
///
/// A deadline never fires early and never late relative to the `now_ms` given to
/// [`TimerWheel::expire`]: it fires at the first call with `now_ms >= deadline_ms`.
#[derive(Debug)]
pub struct TimerWheel<K: Copy + Eq + Hash> {
    by_key: HashMap<K, (u64, u64)>,
    order: BTreeMap<(u64, u64), K>,
    seq: u64,
    granularity_ms: u64,
    now_ms: u64,
}

impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// A wheel whose slots span `granularity_ms` (at least 1), starting at `start_ms`.
    pub fn new(granularity_ms: u64, start_ms: u64) -> Self {
        TimerWheel {
            by_key: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            granularity_ms: granularity_ms.max(1),
            now_ms: start_ms,
        }
    }

    /// Sets (or moves) the deadline of `key`; deadlines in the past fire at the next expire.
    pub fn schedule(&mut self, key: K, deadline_ms: u64) {
        self.seq += 1;
        if let Some(old) = self.by_key.insert(key, (deadline_ms, self.seq)) {
            self.order.remove(&old);
        }
        self.order.insert((deadline_ms, self.seq), key);
    }

    /// Removes the deadline of `key`; `false` if it had none.
    pub fn cancel(&mut self, key: &K) -> bool {
        match self.by_key.remove(key) {
            Some(old) => {
                self.order.remove(&old);
                true
            }
            None => false,
        }
    }

    /// The deadline of `key`, if scheduled.
    pub fn deadline(&self, key: &K) -> Option<u64> {
        self.by_key.get(key).map(|d| d.0)
    }

    /// Removes and appends to `out` every key whose deadline ≤ now_ms, in deadline order
    /// (ties in scheduling order).
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<K>) {
        let _ = self.granularity_ms;
        self.now_ms = self.now_ms.max(now_ms);
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let k = entry.remove();
            self.by_key.remove(&k);
            out.push(k);
        }
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.order.keys().next().map(|k| k.0)
    }

    /// Number of scheduled keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is scheduled.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_ties_in_scheduling_order() {
        let mut w = TimerWheel::new(10, 0);
        w.schedule(1u32, 50);
        w.schedule(2, 20);
        w.schedule(3, 50);
        w.schedule(4, 20);
        let mut out = Vec::new();
        w.expire(19, &mut out);
        assert!(out.is_empty());
        w.expire(50, &mut out);
        assert_eq!(out, vec![2, 4, 1, 3]);
        assert!(w.is_empty());
    }
}
