//! The page's live connection: `GET /homes/{home}/live`, server-sent events.
//!
//! - `state` every [`LIVE_STATE_INTERVAL_MS`]: the home's state with evidence and ages, as
//!   `GET /api/homes/{home}` answers it. It doubles as the heartbeat: the page shows
//!   "connection lost — states unknown" and greys the cards when none has arrived for
//!   [`LIVE_SILENCE_MS`] (I14), and reconnects.
//! - `alarm`, `approval`, `lagged`: the home's events from [`crate::hub`], as
//!   `/api/homes/{home}/events` sends them.
//! - On connecting, the open alarms and waiting approvals are sent first, so a page that
//!   reconnects catches up with what it missed.
//!
//! [`WebState::cut_live`](super::WebState) stops every live connection from sending (they stay
//! open, silent, as behind a stalled proxy) until it is restored; the browser tests use it
//! through `Handle::cut_live_connections` to see the page notice the silence.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::api::auth::Principal;
use crate::api::homeowner as h;
use crate::server::Shared;

/// How often the page receives the home's state (and so a heartbeat), ms.
pub const LIVE_STATE_INTERVAL_MS: u64 = 500;
/// How long the page waits without any event before it says "connection lost — states
/// unknown", ms (I14). The script has the same number.
pub const LIVE_SILENCE_MS: u64 = 2_000;

impl super::WebState {
    /// Cuts (`true`) or restores (`false`) the app's live connections: while cut they send
    /// nothing.
    pub fn cut_live(&self, cut: bool) {
        self.live_cut.send_replace(cut);
    }
}

fn event(name: &str, data: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// `GET /homes/{home}/live`.
pub async fn stream(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> Response {
    // The owner's session only (I11); nothing is sent while the live connections are cut.
    if let Err(e) = h::home_state(State(s.clone()), p.clone(), Path(home.clone())).await {
        return e.into_response();
    }
    let home_id = match crate::api::parse_id(&home, "home") {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let rx = s.hub.subscribe(&home_id);
    let mut beat = tokio::time::interval(Duration::from_millis(LIVE_STATE_INTERVAL_MS));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.reset();
    let cut = s.web.live_cut.subscribe();
    let stop = s.stopping.clone();
    let state = (rx, beat, cut, stop, s, home, p, true);
    let tail = futures_util::stream::unfold(
        state,
        |(mut rx, mut beat, mut cut, mut stop, s, home, p, first)| async move {
            enum Next {
                Stop,
                Restored,
                Beat,
                Hub(Result<Arc<crate::hub::HubEvent>, RecvError>),
            }
            loop {
                let is_cut = *cut.borrow();
                if is_cut {
                    // Silent while cut: no heartbeat, no event; back when restored.
                    let next = tokio::select! {
                        _ = stop.wait_for(|x| *x) => Next::Stop,
                        r = cut.wait_for(|c| !*c) => if r.is_err() { Next::Stop } else { Next::Restored },
                    };
                    if matches!(next, Next::Stop) {
                        return None;
                    }
                    while rx.try_recv().is_ok() {}
                    continue;
                }
                if first {
                    // Sent first (once not cut), so a page that reconnects catches up.
                    let events = catch_up(&s, &p, &home).await;
                    return Some((events, (rx, beat, cut, stop, s, home, p, false)));
                }
                let next = tokio::select! {
                    _ = stop.wait_for(|x| *x) => Next::Stop,
                    _ = cut.changed() => Next::Restored,
                    _ = beat.tick() => Next::Beat,
                    r = rx.recv() => Next::Hub(r),
                };
                let ev = match next {
                    Next::Stop => return None,
                    Next::Restored => continue,
                    Next::Beat => {
                        match h::home_state(State(s.clone()), p.clone(), Path(home.clone())).await {
                            Ok(axum::Json(v)) => event("state", &v),
                            // The session ended or the home is gone: end the stream.
                            Err(_) => return None,
                        }
                    }
                    Next::Hub(Ok(e)) => event(e.name, &e.data),
                    Next::Hub(Err(RecvError::Lagged(n))) => {
                        event("lagged", &serde_json::json!({"missed": n}))
                    }
                    Next::Hub(Err(RecvError::Closed)) => return None,
                };
                return Some((vec![ev], (rx, beat, cut, stop, s, home, p, false)));
            }
        },
    );
    use futures_util::StreamExt;
    Sse::new(tail.flat_map(futures_util::stream::iter)).into_response()
}

/// The home's state, open alarms and waiting approvals, for a page that (re)connects.
async fn catch_up(s: &Arc<Shared>, p: &Principal, home: &str) -> Vec<Result<Event, Infallible>> {
    let mut out = Vec::new();
    if let Ok(axum::Json(v)) =
        h::home_state(State(s.clone()), p.clone(), Path(home.to_owned())).await
    {
        out.push(event("state", &v));
    }
    if let Ok(alarms) = super::pages::open_alarms(s, p, home).await {
        out.extend(alarms.iter().rev().map(|a| event("alarm", a)));
    }
    if let Ok(axum::Json(a)) =
        h::approvals(State(s.clone()), p.clone(), Path(home.to_owned())).await
    {
        for x in a["approvals"].as_array().into_iter().flatten() {
            out.push(event("approval", x));
        }
    }
    out
}
