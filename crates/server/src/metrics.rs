//! Prometheus counters and gauges, rendered as text at `/metrics`. Every series is `doorward_*`.
//! Label values come from fixed sets (alarm kinds, drop reasons, decision outcomes), never
//! from device input, so the number of series is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Paired devices under supervision.
    pub supervised_devices: AtomicU64,
    /// Device messages handed to the control core.
    pub messages_received: AtomicU64,
    /// Event-stream clients connected.
    pub sse_clients: AtomicU64,
    alarms: Mutex<BTreeMap<&'static str, u64>>,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    decisions: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    webhooks: Mutex<BTreeMap<&'static str, u64>>,
    decision_latency: Mutex<Histogram>,
}

/// Upper bounds of the `doorward_unlock_decision_seconds` buckets, in milliseconds: from a
/// decision on the spot (a denial) to the camera's attestation and a live approval.
pub const DECISION_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

/// A fixed-bucket histogram of durations in milliseconds.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or under each bound of [`DECISION_BUCKETS_MS`] (not cumulative).
    buckets: [u64; DECISION_BUCKETS_MS.len()],
    count: u64,
    sum_ms: u64,
}

impl Histogram {
    fn observe(&mut self, ms: u64) {
        if let Some(i) = DECISION_BUCKETS_MS.iter().position(|&b| ms <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry(k).or_insert(0) += 1;
}

impl Metrics {
    /// An alarm of `kind` was raised (first sending only).
    pub fn alarm(&self, kind: &'static str) {
        bump(&self.alarms, kind);
    }

    /// A device message was dropped, for `reason`.
    pub fn dropped(&self, reason: &'static str) {
        bump(&self.dropped, reason);
    }

    /// An entry request was decided: `outcome` is `authorised` or `denied`, `reason` the deny
    /// reason (empty when authorised).
    pub fn decision(&self, outcome: &'static str, reason: &'static str) {
        bump(&self.decisions, (outcome, reason));
    }

    /// An entry request took `ms` milliseconds from its arrival to its decision.
    pub fn decision_latency(&self, ms: u64) {
        let mut h = self
            .decision_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.observe(ms);
    }

    /// A webhook attempt ended with `result`: `delivered`, `failed`, `dead_letter` (all
    /// attempts failed) or `queue_full`.
    pub fn webhook(&self, result: &'static str) {
        bump(&self.webhooks, result);
    }

    /// How many webhook attempts ended with `result` so far.
    pub fn webhook_count(&self, result: &str) -> u64 {
        let m = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        m.get(result).copied().unwrap_or(0)
    }

    /// How many messages were dropped for `reason` so far.
    pub fn dropped_count(&self, reason: &str) -> u64 {
        let m = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        m.get(reason).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |s: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        g(
            &mut s,
            "doorward_supervised_devices",
            "Paired devices under supervision.",
            "gauge",
            self.supervised_devices.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "doorward_messages_received_total",
            "Device messages handed to the control core.",
            "counter",
            self.messages_received.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "doorward_sse_clients",
            "Connected event-stream clients.",
            "gauge",
            self.sse_clients.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP doorward_alarms_total Alarms raised, by kind.\n# TYPE doorward_alarms_total counter"
        );
        for (k, v) in self.alarms.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(s, "doorward_alarms_total{{kind=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP doorward_messages_dropped_total Device messages dropped, by reason.\n\
             # TYPE doorward_messages_dropped_total counter"
        );
        for (k, v) in self
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(s, "doorward_messages_dropped_total{{reason=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP doorward_unlock_decisions_total Entry requests decided by the server.\n\
             # TYPE doorward_unlock_decisions_total counter"
        );
        for ((o, r), v) in self
            .decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "doorward_unlock_decisions_total{{outcome=\"{o}\",reason=\"{r}\"}} {v}"
            );
        }
        {
            let h = self
                .decision_latency
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(
                s,
                "# HELP doorward_unlock_decision_seconds Time from an entry request to the \
                 server's decision.\n# TYPE doorward_unlock_decision_seconds histogram"
            );
            let mut cumulative = 0;
            for (bound, n) in DECISION_BUCKETS_MS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    s,
                    "doorward_unlock_decision_seconds_bucket{{le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1000.0
                );
            }
            let _ = writeln!(
                s,
                "doorward_unlock_decision_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 doorward_unlock_decision_seconds_sum {}\n\
                 doorward_unlock_decision_seconds_count {}",
                h.count,
                h.sum_ms as f64 / 1000.0,
                h.count
            );
        }
        let _ = writeln!(
            s,
            "# HELP doorward_webhook_deliveries_total Webhook attempts, by result.\n\
             # TYPE doorward_webhook_deliveries_total counter"
        );
        for (k, v) in self
            .webhooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(s, "doorward_webhook_deliveries_total{{result=\"{k}\"}} {v}");
        }
        s
    }
}

/// Runs each HTTP request inside a `request` span (method, route path, a request number)
/// and logs its status and duration when it ends: every log line a handler writes carries
/// the request it belongs to. Paths are logged without their query (tokens may travel there).
pub async fn trace_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::sync::atomic::AtomicU64;
    use tracing::Instrument;
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "request",
        id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let t0 = std::time::Instant::now();
    async move {
        let resp = next.run(req).await;
        let status = resp.status().as_u16();
        let ms = t0.elapsed().as_millis() as u64;
        if status >= 500 {
            tracing::warn!(status, ms, "request failed");
        } else {
            tracing::debug!(status, ms, "request");
        }
        resp
    }
    .instrument(span)
    .await
}

/// A stable label for a debug-printed enum variant (`AlarmKind::WitnessLost` → `witness_lost`),
/// interned so that labels are `'static` and few.
pub fn label(variant: &impl std::fmt::Debug) -> &'static str {
    static INTERNED: Mutex<BTreeMap<String, &'static str>> = Mutex::new(BTreeMap::new());
    let name = format!("{variant:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or("").to_owned();
    let mut m = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = m.get(&name) {
        return s;
    }
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    // Variant names are a fixed set of enum variants, so this leaks a bounded few bytes.
    let s: &'static str = Box::leak(snake.into_boxed_str());
    m.insert(name, s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::AlarmKind;

    #[test]
    fn labels_are_snake_case_variant_names() {
        assert_eq!(label(&AlarmKind::WitnessLost), "witness_lost");
        assert_eq!(label(&AlarmKind::ForgedReport), "forged_report");
    }

    #[test]
    fn render_has_every_family() {
        let m = Metrics::default();
        m.alarm("witness_lost");
        m.dropped("oversized");
        m.decision("denied", "vacation");
        m.webhook("delivered");
        let t = m.render();
        assert!(t.contains("doorward_webhook_deliveries_total{result=\"delivered\"} 1"));
        assert!(t.contains("doorward_alarms_total{kind=\"witness_lost\"} 1"));
        assert!(t.contains("doorward_messages_dropped_total{reason=\"oversized\"} 1"));
        assert!(
            t.contains("doorward_unlock_decisions_total{outcome=\"denied\",reason=\"vacation\"} 1")
        );
        assert!(t.contains("doorward_supervised_devices 0"));
    }

    #[test]
    fn decision_latency_is_a_cumulative_histogram_in_seconds() {
        let m = Metrics::default();
        m.decision_latency(3);
        m.decision_latency(240);
        m.decision_latency(120_000);
        let t = m.render();
        assert!(t.contains("# TYPE doorward_unlock_decision_seconds histogram"));
        assert!(
            t.contains("doorward_unlock_decision_seconds_bucket{le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("doorward_unlock_decision_seconds_bucket{le=\"0.1\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("doorward_unlock_decision_seconds_bucket{le=\"0.25\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("doorward_unlock_decision_seconds_bucket{le=\"60\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("doorward_unlock_decision_seconds_bucket{le=\"+Inf\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("doorward_unlock_decision_seconds_sum 120.243"),
            "{t}"
        );
        assert!(
            t.contains("doorward_unlock_decision_seconds_count 3"),
            "{t}"
        );
    }
}
