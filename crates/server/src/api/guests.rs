//! Guest access with schedules, modelled on what the core already has: a guest is a driver
//! key under a pseudo-carrier that belongs to the home (`g-` and 16 hex digits of BLAKE3 of
//! the home id, opted in at that home only), and a schedule is expanded into one delivery per
//! upcoming window (at most [`MAX_GUEST_OCCURRENCES`], within [`GUEST_HORIZON_DAYS`]). The
//! guest's phone then uses the driver routes with signed requests, like a courier's: arrive,
//! entry (with the lock's nonce), finish. Everything the core enforces for deliveries holds
//! for guests: the lock, the window, one open cycle per visit, the home's policy (windows,
//! garage-only, live approval, vacation), revocation by key.
//!
//! Limits of the model: windows are UTC; a recurring schedule is expanded once, when it is
//! created, for the next [`GUEST_HORIZON_DAYS`] days (create it again to extend it); each
//! expanded visit holds one of the core's in-flight delivery slots until it is used or its
//! window ends (then it expires).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use doorward_control::DeliverySetup;
use doorward_proto::{Id, PubKey};
use doorward_store::{
    carrier_ns, CarrierDriver, Delivery, DeliveryRef, DeliveryState, DriverKey, Record, RecordKind,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::MAX_NAME_BYTES;
use super::auth::Principal;
use super::authz::{authorize, Allowed, Caller, Target};
use super::carrier::MAX_DELIVERY_WINDOW_MS;
use super::homeowner::{JsonBody, MAX_LIST_ROWS};
use super::{blocking, parse_id, write, ApiError, ApiResult};
use crate::runtime::wall_ms;
use crate::server::{Handle, Shared};

/// How far ahead a recurring schedule is expanded, days.
pub const GUEST_HORIZON_DAYS: u64 = 14;
/// Most visits one schedule expands into.
pub const MAX_GUEST_OCCURRENCES: usize = 14;
/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;
/// Minutes in a day.
const DAY_MIN: u32 = 1_440;

/// The home's guest pseudo-carrier.
pub fn guest_carrier(home: &Id) -> Id {
    let h = blake3::hash(home.as_str().as_bytes()).to_hex();
    Id::new(format!("g-{}", &h[..16])).expect("a valid id")
}

/// When a guest may come.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// One visit in `[start_ms, end_ms)`.
    Once {
        /// Start, ms since the Unix epoch.
        start_ms: u64,
        /// End (exclusive).
        end_ms: u64,
    },
    /// Every week on `days` (0 = Monday … 6 = Sunday), `[start_min, end_min)` minutes of the
    /// day, UTC.
    Weekly {
        /// Days of the week.
        days: Vec<u8>,
        /// First minute of the day.
        start_min: u32,
        /// First minute after.
        end_min: u32,
    },
    /// Every day from `from_ms` until `until_ms`, `[start_min, end_min)` minutes of the day,
    /// UTC.
    Range {
        /// First day (any time in it).
        from_ms: u64,
        /// After this no visit starts.
        until_ms: u64,
        /// First minute of the day.
        start_min: u32,
        /// First minute after.
        end_min: u32,
    },
}

/// The visits a schedule allows from `now_ms` on: `(not_before_ms, not_after_ms)` windows,
/// in order, at most [`MAX_GUEST_OCCURRENCES`], none ended.
pub fn expand(s: &Schedule, now_ms: u64) -> Result<Vec<(u64, u64)>, String> {
    let daily = |start_min: u32, end_min: u32| {
        if start_min >= end_min || end_min > DAY_MIN {
            Err(format!(
                "the daily window {start_min}..{end_min} must be within 0..{DAY_MIN} minutes and \
                 not empty"
            ))
        } else {
            Ok(())
        }
    };
    let today = now_ms / DAY_MS * DAY_MS;
    let horizon = today + GUEST_HORIZON_DAYS * DAY_MS;
    let mut out = Vec::new();
    match s {
        Schedule::Once { start_ms, end_ms } => {
            if end_ms <= start_ms || end_ms - start_ms > MAX_DELIVERY_WINDOW_MS {
                return Err(format!(
                    "a visit must end after it starts and last at most {MAX_DELIVERY_WINDOW_MS} ms"
                ));
            }
            if *end_ms > now_ms {
                out.push((*start_ms, *end_ms));
            }
        }
        Schedule::Weekly {
            days,
            start_min,
            end_min,
        } => {
            daily(*start_min, *end_min)?;
            if days.is_empty() || days.iter().any(|d| *d > 6) {
                return Err("days: 0 (Monday) to 6 (Sunday), at least one".into());
            }
            let mut day = today;
            while day < horizon && out.len() < MAX_GUEST_OCCURRENCES {
                // 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday.
                let weekday = ((day / DAY_MS + 3) % 7) as u8;
                let w = (
                    day + *start_min as u64 * 60_000,
                    day + *end_min as u64 * 60_000,
                );
                if days.contains(&weekday) && w.1 > now_ms {
                    out.push(w);
                }
                day += DAY_MS;
            }
        }
        Schedule::Range {
            from_ms,
            until_ms,
            start_min,
            end_min,
        } => {
            daily(*start_min, *end_min)?;
            if until_ms <= from_ms {
                return Err("until_ms must be after from_ms".into());
            }
            let mut day = (*from_ms / DAY_MS * DAY_MS).max(today);
            while day < horizon && out.len() < MAX_GUEST_OCCURRENCES {
                let w = (
                    day + *start_min as u64 * 60_000,
                    day + *end_min as u64 * 60_000,
                );
                if w.0 >= *until_ms {
                    break;
                }
                if w.1 > now_ms {
                    out.push(w);
                }
                day += DAY_MS;
            }
        }
    }
    if out.is_empty() {
        return Err("the schedule has no visit in the coming days".into());
    }
    Ok(out)
}

/// A guest to add.
#[derive(Deserialize)]
pub struct NewGuest {
    name: String,
    key: String,
    lock: String,
    schedule: Schedule,
}

/// `POST /api/homes/{home}/guests`: registers the guest's key and schedules its visits.
pub async fn add_guest(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    JsonBody(b): JsonBody<NewGuest>,
) -> ApiResult {
    let home = parse_id(&home, "home")?;
    let Allowed::Home(owner) = authorize(&s, Caller::Principal(&p), Target::Home(&home)).await?
    else {
        unreachable!("Target::Home answers Allowed::Home")
    };
    let name = b.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "name: 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    let key = PubKey::from_hex(&b.key)
        .ok_or_else(|| ApiError::bad_request("key: 64 hex digits (Ed25519 public key)"))?;
    let lock = Id::new(b.lock).map_err(|e| ApiError::bad_request(format!("lock: {e}")))?;
    let windows = expand(&b.schedule, wall_ms())
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_schedule", m))?;
    let home = owner.home;
    let carrier = guest_carrier(&home);
    let ns = carrier_ns(&carrier).map_err(ApiError::internal)?;
    let h = Handle::from_shared(s.clone());
    h.opt_in(home.clone(), carrier.clone()).await?;
    h.add_driver(key, carrier.clone()).await?;
    let guest = Id::new(format!("guest-{}", super::random_hex(8))).expect("a valid id");
    write(
        &s,
        vec![
            Record::CarrierDriver(CarrierDriver {
                ns: ns.clone(),
                id: guest.clone(),
                name: name.to_owned(),
                key,
                created_ms: wall_ms(),
            }),
            Record::DriverKey(DriverKey {
                id: Id::new(key.to_hex()).expect("64 hex characters"),
                carrier: carrier.clone(),
                driver: guest.clone(),
            }),
        ],
    )
    .await?;
    let mut visits = Vec::new();
    for (from, to) in windows {
        let id = Id::new(format!("d-{}", super::random_hex(8))).expect("a valid id");
        h.schedule(DeliverySetup {
            delivery: id.clone(),
            home: home.clone(),
            lock: lock.clone(),
            carrier: carrier.clone(),
            driver: key,
            not_before_ms: from,
            not_after_ms: to,
            max_open_ms: None,
        })
        .await?;
        write(
            &s,
            vec![
                Record::Delivery(Delivery {
                    home: home.clone(),
                    id: id.clone(),
                    carrier: carrier.clone(),
                    driver: Some(guest.clone()),
                    lock: lock.clone(),
                    window_start_ms: from,
                    window_end_ms: to,
                    state: DeliveryState::Assigned,
                }),
                Record::DeliveryRef(DeliveryRef {
                    ns: ns.clone(),
                    id: id.clone(),
                    home: home.clone(),
                }),
            ],
        )
        .await?;
        visits.push(json!({"delivery": id.as_str(), "not_before_ms": from, "not_after_ms": to}));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"guest": guest.as_str(), "key": key.to_hex(), "visits": visits})),
    )
        .into_response())
}

/// `GET /api/homes/{home}/guests`: the home's guests and their visits.
pub async fn list_guests(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let home = parse_id(&home, "home")?;
    let Allowed::Home(owner) = authorize(&s, Caller::Principal(&p), Target::Home(&home)).await?
    else {
        unreachable!("Target::Home answers Allowed::Home")
    };
    let carrier = guest_carrier(&owner.home);
    let ns = carrier_ns(&carrier).map_err(ApiError::internal)?;
    let (store, store2, h) = (s.store.clone(), s.store.clone(), owner.home.clone());
    let guests =
        blocking(move || store.records(&ns, RecordKind::CarrierDriver, None, MAX_LIST_ROWS))
            .await?;
    let deliveries =
        blocking(move || store2.records(&h, RecordKind::Delivery, None, MAX_LIST_ROWS)).await?;
    let list: Vec<Value> = guests
        .into_iter()
        .filter_map(|r| match r {
            Record::CarrierDriver(g) => Some(g),
            _ => None,
        })
        .map(|g| {
            let visits: Vec<Value> = deliveries
                .iter()
                .filter_map(|r| match r {
                    Record::Delivery(d) if d.driver.as_ref() == Some(&g.id) => Some(json!({
                        "delivery": d.id.as_str(), "lock": d.lock.as_str(),
                        "not_before_ms": d.window_start_ms, "not_after_ms": d.window_end_ms})),
                    _ => None,
                })
                .collect();
            json!({"guest": g.id.as_str(), "name": g.name, "key": g.key.to_hex(), "visits": visits})
        })
        .collect();
    Ok(Json(json!({"guests": list})))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2023-11-13 00:00 UTC, a Monday.
    const MONDAY: u64 = 1_699_833_600_000;

    #[test]
    fn once_is_one_visit_unless_over() {
        let s = Schedule::Once {
            start_ms: MONDAY + 1_000,
            end_ms: MONDAY + 2_000,
        };
        assert_eq!(
            expand(&s, MONDAY),
            Ok(vec![(MONDAY + 1_000, MONDAY + 2_000)])
        );
        assert!(expand(&s, MONDAY + 2_000).is_err(), "already over");
        let empty = Schedule::Once {
            start_ms: 5,
            end_ms: 5,
        };
        assert!(expand(&empty, 0).is_err());
    }

    #[test]
    fn weekly_lands_on_its_days_within_the_horizon() {
        // Mondays and Wednesdays, 09:00–10:00 UTC, from Monday 12:00: the first Monday is over.
        let s = Schedule::Weekly {
            days: vec![0, 2],
            start_min: 540,
            end_min: 600,
        };
        let v = expand(&s, MONDAY + 12 * 3_600_000).unwrap();
        let wed = MONDAY + 2 * DAY_MS;
        assert_eq!(v[0], (wed + 540 * 60_000, wed + 600 * 60_000));
        assert_eq!(v.len(), 3, "Wed, Mon, Wed within 14 days: {v:?}");
        for (a, b) in &v {
            let weekday = (a / DAY_MS + 3) % 7;
            assert!(weekday == 0 || weekday == 2);
            assert_eq!(b - a, 3_600_000);
        }
        assert!(expand(
            &Schedule::Weekly {
                days: vec![7],
                start_min: 0,
                end_min: 1
            },
            MONDAY
        )
        .is_err());
    }

    #[test]
    fn range_is_daily_and_bounded() {
        let s = Schedule::Range {
            from_ms: MONDAY + DAY_MS,
            until_ms: MONDAY + 4 * DAY_MS,
            start_min: 60,
            end_min: 120,
        };
        let v = expand(&s, MONDAY).unwrap();
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0].0, MONDAY + DAY_MS + 3_600_000);
        let long = Schedule::Range {
            from_ms: MONDAY,
            until_ms: MONDAY + 365 * DAY_MS,
            start_min: 60,
            end_min: 120,
        };
        assert_eq!(expand(&long, MONDAY).unwrap().len(), MAX_GUEST_OCCURRENCES);
    }

    #[test]
    fn guest_carrier_is_per_home() {
        let a = guest_carrier(&Id::new("h-1").unwrap());
        assert_ne!(a, guest_carrier(&Id::new("h-2").unwrap()));
        assert!(a.as_str().starts_with("g-") && a.as_str().len() == 18);
    }
}
