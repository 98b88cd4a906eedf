//! Fans alarms and approval requests out to the homeowner's live connections (SSE), one
//! broadcast channel per home. A slow client that falls more than [`SSE_BUFFER_EVENTS`]
//! behind is told it lagged; alarms are re-sent by the control core until acknowledged
//! (I14), so a lagging client still sees every open alarm again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use doorward_control::{AlarmNotice, ApprovalRequest};
use doorward_proto::Id;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::metrics::label;

/// Events buffered per home for its slowest client.
pub const SSE_BUFFER_EVENTS: usize = 256;
/// How often the event stream sends a heartbeat (I14: the client shows "connection lost"
/// when heartbeats stop for 2 s).
pub const SSE_HEARTBEAT_MS: u64 = 500;

/// One event for a home's live view: its SSE event name and JSON data.
#[derive(Clone, Debug, PartialEq)]
pub struct HubEvent {
    /// `alarm` or `approval`.
    pub name: &'static str,
    /// The data, as JSON.
    pub data: Value,
}

/// Approval requests kept per home for the API to list; older ones are dropped first.
pub const MAX_PENDING_APPROVALS_PER_HOME: usize = 64;

/// The per-home broadcast channels, and the approval requests not yet answered (for
/// `GET /api/homes/{home}/approvals`). Bounded by the homes the server has.
#[derive(Debug, Default)]
pub struct Hub {
    homes: Mutex<HashMap<Id, broadcast::Sender<Arc<HubEvent>>>>,
    approvals: Mutex<HashMap<Id, Vec<Value>>>,
}

impl Hub {
    fn sender(&self, home: &Id) -> broadcast::Sender<Arc<HubEvent>> {
        self.homes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(home.clone())
            .or_insert_with(|| broadcast::channel(SSE_BUFFER_EVENTS).0)
            .clone()
    }

    /// A new live connection to `home`'s events.
    pub fn subscribe(&self, home: &Id) -> broadcast::Receiver<Arc<HubEvent>> {
        self.sender(home).subscribe()
    }

    /// Sends an event to every live connection of `home` (none connected: nothing happens).
    /// An approval request is also kept until answered or past its deadline.
    pub fn publish(&self, home: &Id, event: HubEvent) {
        if event.name == "approval" {
            let mut m = self.approvals.lock().unwrap_or_else(|e| e.into_inner());
            let list = m.entry(home.clone()).or_default();
            if list.len() >= MAX_PENDING_APPROVALS_PER_HOME {
                list.remove(0);
            }
            list.push(event.data.clone());
        }
        let _ = self.sender(home).send(Arc::new(event));
    }

    /// `home`'s approval requests still open at `now_ms` (the core denies them after their
    /// deadline).
    pub fn pending_approvals(&self, home: &Id, now_ms: u64) -> Vec<Value> {
        let mut m = self.approvals.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = m.get_mut(home) else {
            return Vec::new();
        };
        list.retain(|a| a["deadline_ms"].as_u64().is_some_and(|d| d > now_ms));
        list.clone()
    }

    /// Removes `home`'s approval request `request`; whether it was open.
    pub fn take_approval(&self, home: &Id, request: u64, now_ms: u64) -> bool {
        let mut m = self.approvals.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = m.get_mut(home) else {
            return false;
        };
        list.retain(|a| a["deadline_ms"].as_u64().is_some_and(|d| d > now_ms));
        match list
            .iter()
            .position(|a| a["request"].as_u64() == Some(request))
        {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        }
    }

    /// Every home with a channel (for server-wide alarms such as a storage failure).
    pub fn homes(&self) -> Vec<Id> {
        self.homes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// An alarm as the live view receives it.
pub fn alarm_event(n: &AlarmNotice) -> HubEvent {
    let a = &n.alarm;
    HubEvent {
        name: "alarm",
        data: json!({
            "id": a.id,
            "home": a.home.as_str(),
            "kind": label(&a.kind),
            "raised_ms": a.raised_ms,
            "device": a.device.as_ref().map(|d| d.as_str()),
            "detail": a.detail,
            "action": n.action,
            "sent": n.sent,
            "evidence": n.evidence.as_ref().map(|e| json!({
                "device": e.device.as_str(),
                "seq": e.seq,
                "digest": e.digest.to_hex(),
            })),
        }),
    }
}

/// An approval request as the live view receives it.
pub fn approval_event(r: &ApprovalRequest) -> HubEvent {
    HubEvent {
        name: "approval",
        data: json!({
            "request": r.request,
            "home": r.home.as_str(),
            "delivery": r.delivery.as_str(),
            "carrier": r.carrier.as_str(),
            "driver": r.driver.to_hex(),
            "lock": r.lock.as_str(),
            "deadline_ms": r.deadline_ms,
        }),
    }
}
