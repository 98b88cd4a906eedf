//! The layout of every page and the pieces of markup the pages share. The same texts are
//! produced by `static/app.js` for live updates; keep the two in step.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// The page a tab names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Lock, door and camera.
    Dashboard,
    /// Deliveries and visits.
    Entries,
    /// Alarms.
    Alarms,
    /// Entries waiting for the homeowner.
    Approvals,
    /// Carriers, windows, modes.
    Access,
    /// The audit record.
    Record,
}

const TABS: [(Tab, &str, &str); 6] = [
    (Tab::Dashboard, "", "Home"),
    (Tab::Entries, "/entries", "Entries"),
    (Tab::Alarms, "/alarms", "Alarms"),
    (Tab::Approvals, "/approvals", "Approvals"),
    (Tab::Access, "/access", "Access"),
    (Tab::Record, "/record", "Record"),
];

/// What every page of a home shows around its content.
pub struct Frame<'a> {
    /// The home.
    pub home: &'a str,
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// The signed-in email.
    pub email: &'a str,
    /// Open alarms (JSON as the API lists them), shown on every page.
    pub open_alarms: &'a [Value],
    /// Approval requests waiting, shown on every page.
    pub approvals: &'a [Value],
}

/// A whole page of a home.
pub fn home_page(f: &Frame<'_>, tab: Tab, title: &str, content: Markup) -> Response {
    let base = format!("/homes/{}", f.home);
    let body = html! {
        a.skip href="#main" { "Skip to content" }
        header.top {
            p.brand { "Doorward" span.home { " · " (f.home) } }
            form.logout method="post" action="/logout" {
                input type="hidden" name="csrf" value=(f.csrf);
                button.link type="submit" { "Sign out" }
            }
        }
        nav aria-label="Home" {
            ul {
                @for (t, path, label) in TABS {
                    li {
                        @if t == tab {
                            a href={ (base) (path) } aria-current="page" { (label) }
                        } @else {
                            a href={ (base) (path) } { (label) }
                        }
                    }
                }
            }
        }
        div #conn .banner.conn role="status" aria-live="polite" hidden {
            "connection lost — states unknown"
        }
        section #alarms-live aria-live="assertive" aria-label="Open alarms" {
            @for a in f.open_alarms { (alarm_card(f.home, f.csrf, a)) }
        }
        section #approvals-live aria-live="polite" aria-label="Entries waiting for you" {
            @for a in f.approvals { (approval_card(f.home, f.csrf, a)) }
        }
        main #main tabindex="-1" {
            h1 { (title) }
            (content)
        }
        footer { "Signed in as " (f.email) }
    };
    document(title, f.home, f.csrf, body)
}

/// The HTML document around `body`.
pub fn document(title: &str, home: &str, csrf: &str, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · Doorward" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body data-home=(home) { (body) }
        }
    };
    Html(page.into_string()).into_response()
}

/// A page that only says what went wrong.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body = html! {
        main #main {
            h1 { "Something went wrong" }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to Doorward" } }
        }
    };
    let mut r = document("Error", "", "", body);
    *r.status_mut() = status;
    r
}

/// A duration for people: `0.4 s`, `12 s`, `5 min`, `3 h`, `2 d`.
pub fn age(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=59_999 => format!("{} s", ms / 1000),
        60_000..=3_599_999 => format!("{} min", ms / 60_000),
        3_600_000..=172_799_999 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// A server time (ms since the epoch) as `YYYY-MM-DD HH:MM:SS UTC`; the script shows it in
/// the reader's time zone.
pub fn when(ms: u64) -> Markup {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    let text = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    html! { time datetime=(ms) data-ms=(ms) { (text) } }
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A value label as people read it.
pub fn value_text(kind: &str, v: &Value) -> String {
    match kind {
        "camera" => {
            if v["recording"].as_bool() == Some(true) {
                "Recording".into()
            } else {
                "Not recording".into()
            }
        }
        _ => match v.as_str().unwrap_or("") {
            "locked" => "Locked".into(),
            "unlocked" => "Unlocked".into(),
            "unlocking" => "Unlocking".into(),
            "moving" => "Bolt moving".into(),
            "jammed" => "Jammed".into(),
            "bolt_thrown_door_open" => "Bolt out, door open".into(),
            "closed" => "Closed".into(),
            "open" => "Open".into(),
            other => other.replace('_', " "),
        },
    }
}

/// Who a device is, for "confirmed by …".
fn by(device: &str, lock: &str, camera: &str) -> String {
    if device == lock {
        "the lock".into()
    } else if device == camera {
        "the camera".into()
    } else {
        device.into()
    }
}

/// One card of the dashboard: a value, the signed report it rests on and its age, or UNKNOWN
/// with when it was last confirmed (I5).
pub fn state_card(door: usize, kind: &str, d: &Value) -> Markup {
    let v = &d[kind];
    let (lock, camera) = (
        d["lock_id"].as_str().unwrap_or(""),
        d["camera_id"].as_str().unwrap_or(""),
    );
    let known = v["shown"]["known"].as_bool() == Some(true);
    let title = match kind {
        "lock" => "Lock",
        "door" => "Door",
        _ => "Camera",
    };
    let value = if known {
        value_text(kind, &v["shown"]["value"])
    } else {
        "UNKNOWN".into()
    };
    let ev = &v["evidence"];
    let basis = if known {
        format!(
            "confirmed by {} {} ago",
            by(ev["device"].as_str().unwrap_or("?"), lock, camera),
            age(v["age_ms"].as_u64().unwrap_or(0))
        )
    } else {
        match (
            v["shown"]["last"].is_null(),
            v["shown"]["last_age_ms"].as_u64(),
        ) {
            (false, Some(a)) => format!(
                "last confirmed {} {} ago",
                value_text(kind, &v["shown"]["last"]).to_lowercase(),
                age(a)
            ),
            (_, Some(a)) => format!("last confirmed {} ago", age(a)),
            _ => "never confirmed by a signed report".into(),
        }
    };
    let evidence = if ev.is_object() {
        format!(
            "signed report #{} from {} · {}…",
            ev["seq"],
            ev["device"].as_str().unwrap_or("?"),
            &ev["digest"].as_str().unwrap_or("")
                [..16.min(ev["digest"].as_str().unwrap_or("").len())]
        )
    } else {
        "no signed report".into()
    };
    html! {
        article.card.unknown[!known] #{ (kind) "-" (door) } data-kind=(kind) aria-labelledby={ (kind) "-" (door) "-t" } {
            h2 #{ (kind) "-" (door) "-t" } { (title) }
            p.value { (value) }
            p.basis { (basis) }
            p.evidence { (evidence) }
        }
    }
}

/// An open alarm: what, when, the evidence, what to do, and acknowledge.
pub fn alarm_card(home: &str, csrf: &str, a: &Value) -> Markup {
    let id = a["id"].as_u64().unwrap_or(0);
    let ev = &a["evidence"];
    html! {
        article.alarm #{ "alarm-" (id) } data-alarm=(id) role="alert" {
            h2 { "Alarm: " (a["kind"].as_str().unwrap_or("alarm").replace('_', " ")) }
            p { (when(a["raised_ms"].as_u64().unwrap_or(0)))
                @if let Some(d) = a["device"].as_str() { " · device " (d) } }
            @if let Some(detail) = a["detail"].as_str() { p.detail { (detail) } }
            p.evidence {
                @if ev.is_object() {
                    "Evidence: signed report #" (ev["seq"]) " from " (ev["device"].as_str().unwrap_or("?"))
                    " · " (ev["digest"].as_str().unwrap_or(""))
                } @else { "Evidence: the silence itself (no report arrived in time)" }
            }
            p.action { strong { "What to do: " } (a["action"].as_str().unwrap_or("")) }
            form method="post" action={ "/homes/" (home) "/alarms/" (id) "/ack" } {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Acknowledge" }
            }
        }
    }
}

/// An approval request with its countdown, approve and deny.
pub fn approval_card(home: &str, csrf: &str, a: &Value) -> Markup {
    let id = a["request"].as_u64().unwrap_or(0);
    let deadline = a["deadline_ms"].as_u64().unwrap_or(0);
    html! {
        article.approval #{ "approval-" (id) } data-request=(id) data-deadline=(deadline) {
            h2 { "Someone is at the door" }
            dl {
                dt { "Carrier" } dd { (a["carrier"].as_str().unwrap_or("?")) }
                dt { "Driver key" } dd.mono { (short(a["driver"].as_str().unwrap_or("?"))) }
                dt { "Delivery" } dd { (a["delivery"].as_str().unwrap_or("?")) }
                dt { "Door" } dd { (a["lock"].as_str().unwrap_or("?")) }
            }
            p.countdown { "Answer before " (when(deadline)) }
            div.buttons {
                form method="post" action={ "/homes/" (home) "/approvals/" (id) "/approve" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button.approve type="submit" { "Approve" }
                }
                form method="post" action={ "/homes/" (home) "/approvals/" (id) "/deny" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button.deny type="submit" { "Deny" }
                }
            }
        }
    }
}

/// The first 16 characters of a long hex string.
pub fn short(s: &str) -> String {
    if s.len() > 16 {
        format!("{}…", &s[..16])
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(400), "0.4 s");
        assert_eq!(age(12_300), "12 s");
        assert_eq!(age(300_000), "5 min");
        assert_eq!(age(7_200_000), "2 h");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_513), (2026, 3, 1));
    }

    #[test]
    fn a_stale_value_is_unknown_with_its_last_confirmation() {
        let door = json!({
            "lock_id": "l", "camera_id": "c",
            "lock": {"shown": {"known": true, "value": "locked"}, "age_ms": 400,
                     "evidence": {"device": "l", "seq": 7, "digest": "ab".repeat(32)}},
            "door": {"shown": {"known": false, "value": "unknown", "last": "closed", "last_age_ms": 65_000},
                     "age_ms": 65_000, "evidence": null},
        });
        let lock = state_card(0, "lock", &door).into_string();
        assert!(lock.contains("Locked"), "{lock}");
        assert!(lock.contains("confirmed by the lock 0.4 s ago"), "{lock}");
        assert!(lock.contains("signed report #7 from l"), "{lock}");
        let d = state_card(0, "door", &door).into_string();
        assert!(
            d.contains("UNKNOWN") && d.contains("last confirmed closed 1 min ago"),
            "{d}"
        );
        assert!(d.contains("card unknown"), "{d}");
    }
}
