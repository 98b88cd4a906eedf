//! Carrier routes (API key): drivers, deliveries, assignment, a delivery's outcome (its
//! phase only: never footage, never the home's state).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use doorward_control::{Admin, AdminError, DeliverySetup};
use doorward_proto::{Id, PubKey};
use doorward_store::{
    carrier_ns, CarrierDriver, Delivery, DeliveryRef, DeliveryState, DriverKey, Record, RecordKind,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::MAX_NAME_BYTES;
use super::auth::Principal;
use super::authz::{authorize, Allowed, Caller, Target};
use super::homeowner::{phases, recent_events, JsonBody, MAX_LIST_ROWS};
use super::{blocking, parse_id, write, ApiError, ApiResult};
use crate::metrics::label;
use crate::runtime::{wall_ms, ServerError};
use crate::server::{Handle, Shared};

/// Most drivers one carrier registers.
pub const MAX_DRIVERS_PER_CARRIER: usize = 1_000;
/// Longest delivery window accepted, ms (7 days).
pub const MAX_DELIVERY_WINDOW_MS: u64 = 7 * 24 * 3_600_000;

fn carrier_of(a: Allowed) -> Id {
    match a {
        Allowed::Carrier(c) => c,
        _ => unreachable!("Target::Carrier answers Allowed::Carrier"),
    }
}

fn delivery_json(d: &Delivery, phase: &str) -> Value {
    json!({
        "delivery": d.id.as_str(),
        "home": d.home.as_str(),
        "lock": d.lock.as_str(),
        "driver": d.driver.as_ref().map(Id::as_str),
        "not_before_ms": d.window_start_ms,
        "not_after_ms": d.window_end_ms,
        "state": label(&d.state),
        "phase": phase,
    })
}

/// A driver to register.
#[derive(Deserialize)]
pub struct NewDriver {
    name: String,
    key: String,
}

/// `POST /api/carrier/drivers`: registers a driver's public key.
pub async fn add_driver(
    State(s): State<Arc<Shared>>,
    p: Principal,
    JsonBody(b): JsonBody<NewDriver>,
) -> ApiResult {
    let carrier = carrier_of(authorize(&s, Caller::Principal(&p), Target::Carrier).await?);
    let name = b.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "name: 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    let key = PubKey::from_hex(&b.key)
        .ok_or_else(|| ApiError::bad_request("key: 64 hex digits (Ed25519 public key)"))?;
    let ns = carrier_ns(&carrier).map_err(ApiError::internal)?;
    let (store, ns2) = (s.store.clone(), ns.clone());
    let count = blocking(move || {
        store.records(
            &ns2,
            RecordKind::CarrierDriver,
            None,
            MAX_DRIVERS_PER_CARRIER,
        )
    })
    .await?
    .len();
    if count >= MAX_DRIVERS_PER_CARRIER {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            format!("a carrier may register at most {MAX_DRIVERS_PER_CARRIER} drivers"),
        ));
    }
    // The core refuses a key registered before (by this or any carrier).
    Handle::from_shared(s.clone())
        .add_driver(key, carrier.clone())
        .await?;
    let driver = Id::new(format!("drv-{}", super::random_hex(8))).expect("a valid id");
    write(
        &s,
        vec![
            Record::CarrierDriver(CarrierDriver {
                ns,
                id: driver.clone(),
                name: name.to_owned(),
                key,
                created_ms: wall_ms(),
            }),
            Record::DriverKey(DriverKey {
                id: Id::new(key.to_hex()).expect("64 hex characters"),
                carrier: carrier.clone(),
                driver: driver.clone(),
            }),
        ],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"driver": driver.as_str(), "key": key.to_hex()})),
    )
        .into_response())
}

/// `GET /api/carrier/drivers`.
pub async fn list_drivers(State(s): State<Arc<Shared>>, p: Principal) -> ApiResult<Json<Value>> {
    let carrier = carrier_of(authorize(&s, Caller::Principal(&p), Target::Carrier).await?);
    let ns = carrier_ns(&carrier).map_err(ApiError::internal)?;
    let store = s.store.clone();
    let list: Vec<Value> =
        blocking(move || store.records(&ns, RecordKind::CarrierDriver, None, MAX_LIST_ROWS))
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Record::CarrierDriver(d) => Some(json!({
                    "driver": d.id.as_str(), "name": d.name, "key": d.key.to_hex()})),
                _ => None,
            })
            .collect();
    Ok(Json(json!({"drivers": list})))
}

/// A delivery to create.
#[derive(Deserialize)]
pub struct NewDelivery {
    home: String,
    lock: String,
    not_before_ms: u64,
    not_after_ms: u64,
}

/// `POST /api/carrier/deliveries`: a delivery at a home that opted the carrier in (else
/// 403 `carrier_not_opted_in`). It reaches the control core when a driver is assigned.
pub async fn create_delivery(
    State(s): State<Arc<Shared>>,
    p: Principal,
    JsonBody(b): JsonBody<NewDelivery>,
) -> ApiResult {
    let home = Id::new(b.home.clone()).map_err(|e| ApiError::bad_request(format!("home: {e}")))?;
    let carrier =
        carrier_of(authorize(&s, Caller::Principal(&p), Target::CarrierAtHome(&home)).await?);
    let lock = Id::new(b.lock).map_err(|e| ApiError::bad_request(format!("lock: {e}")))?;
    if b.not_after_ms <= b.not_before_ms
        || b.not_after_ms - b.not_before_ms > MAX_DELIVERY_WINDOW_MS
        || b.not_after_ms <= wall_ms()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_window",
            format!(
                "the window must end in the future, after it starts, and last at most \
                 {MAX_DELIVERY_WINDOW_MS} ms"
            ),
        ));
    }
    let id = Id::new(format!("d-{}", super::random_hex(8))).expect("a valid id");
    let d = Delivery {
        home: home.clone(),
        id: id.clone(),
        carrier: carrier.clone(),
        driver: None,
        lock,
        window_start_ms: b.not_before_ms,
        window_end_ms: b.not_after_ms,
        state: DeliveryState::Scheduled,
    };
    write(
        &s,
        vec![
            Record::Delivery(d.clone()),
            Record::DeliveryRef(DeliveryRef {
                ns: carrier_ns(&carrier).map_err(ApiError::internal)?,
                id,
                home,
            }),
        ],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(delivery_json(&d, "scheduled"))).into_response())
}

/// `GET /api/carrier/deliveries`.
pub async fn list_deliveries(State(s): State<Arc<Shared>>, p: Principal) -> ApiResult<Json<Value>> {
    let carrier = carrier_of(authorize(&s, Caller::Principal(&p), Target::Carrier).await?);
    let ns = carrier_ns(&carrier).map_err(ApiError::internal)?;
    let store = s.store.clone();
    let refs =
        blocking(move || store.records(&ns, RecordKind::DeliveryRef, None, MAX_LIST_ROWS)).await?;
    let mut list = Vec::new();
    for r in refs {
        if let Record::DeliveryRef(r) = r {
            if let Ok(Allowed::Delivery(_, d)) =
                authorize(&s, Caller::Principal(&p), Target::CarrierDelivery(&r.id)).await
            {
                list.push(delivery_json(
                    &d,
                    "see GET /api/carrier/deliveries/{delivery}",
                ));
            }
        }
    }
    Ok(Json(json!({"deliveries": list})))
}

async fn own_delivery(s: &Arc<Shared>, p: &Principal, id: &str) -> ApiResult<Delivery> {
    let id = parse_id(id, "delivery")?;
    match authorize(s, Caller::Principal(p), Target::CarrierDelivery(&id)).await? {
        Allowed::Delivery(_, d) => Ok(d),
        _ => unreachable!("Target::CarrierDelivery answers Allowed::Delivery"),
    }
}

/// The delivery's phase from the home's record.
pub(crate) async fn phase_of(s: &Arc<Shared>, d: &Delivery) -> ApiResult<&'static str> {
    let events = recent_events(s, &d.home).await?;
    Ok(phases(&events).get(&d.id).copied().unwrap_or("scheduled"))
}

/// `GET /api/carrier/deliveries/{delivery}`: the outcome, as the phase only.
pub async fn get_delivery(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = own_delivery(&s, &p, &id).await?;
    let phase = phase_of(&s, &d).await?;
    Ok(Json(delivery_json(&d, phase)))
}

/// The driver to assign.
#[derive(Deserialize)]
pub struct Assign {
    driver: String,
}

/// `POST /api/carrier/deliveries/{delivery}/assign`: assigns one of the carrier's drivers
/// and schedules the delivery in the control core (window, lock, driver key: I2).
pub async fn assign(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Assign>,
) -> ApiResult<Json<Value>> {
    let mut d = own_delivery(&s, &p, &id).await?;
    let driver_id = parse_id(&b.driver, "driver")?;
    let Allowed::CarrierDriver(carrier, driver) =
        authorize(&s, Caller::Principal(&p), Target::CarrierDriver(&driver_id)).await?
    else {
        unreachable!("Target::CarrierDriver answers Allowed::CarrierDriver")
    };
    if matches!(d.state, DeliveryState::Done | DeliveryState::Cancelled) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "finished",
            "this delivery is finished",
        ));
    }
    if d.state != DeliveryState::Scheduled {
        return Err(ApiError::conflict(
            "this delivery already has a driver: create a new delivery to change it",
        ));
    }
    // Only while the home still opts the carrier in.
    authorize(&s, Caller::Principal(&p), Target::CarrierAtHome(&d.home)).await?;
    Handle::from_shared(s.clone())
        .schedule(DeliverySetup {
            delivery: d.id.clone(),
            home: d.home.clone(),
            lock: d.lock.clone(),
            carrier,
            driver: driver.key,
            not_before_ms: d.window_start_ms,
            not_after_ms: d.window_end_ms,
            max_open_ms: None,
        })
        .await?;
    d.driver = Some(driver.id.clone());
    d.state = DeliveryState::Assigned;
    write(&s, vec![Record::Delivery(d.clone())]).await?;
    Ok(Json(delivery_json(&d, "scheduled")))
}

/// `POST /api/carrier/deliveries/{delivery}/cancel`: the carrier calls a delivery off before
/// anybody is let in (see [`cancel_delivery`]).
pub async fn cancel(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = own_delivery(&s, &p, &id).await?;
    let d = cancel_delivery(&s, d).await?;
    Ok(Json(delivery_json(&d, "cancelled")))
}

/// Calls delivery `d` off. One with a driver is cancelled in the control core first (it ends
/// `cancelled` on the home's record and lets nobody in from then on); one whose entry is
/// under way, or that is over, answers 409. The caller has checked who may.
pub(crate) async fn cancel_delivery(s: &Arc<Shared>, mut d: Delivery) -> ApiResult<Delivery> {
    match d.state {
        DeliveryState::Done | DeliveryState::Cancelled => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "finished",
                "this delivery is finished",
            ))
        }
        DeliveryState::Scheduled => {}
        DeliveryState::Assigned | DeliveryState::InProgress => {
            let cancelled = Handle::from_shared(s.clone())
                .admin(Admin::Cancel {
                    home: d.home.clone(),
                    delivery: d.id.clone(),
                })
                .await;
            match cancelled {
                Ok(()) => {}
                // Over in the core already: cancelled by an earlier call whose registry
                // write failed (then this one completes it), or ended otherwise.
                Err(ServerError::Admin(AdminError::UnknownDelivery(_))) => {
                    let phase = phase_of(s, &d).await?;
                    if phase != "cancelled" {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            "finished",
                            format!("this delivery is over (phase {phase})"),
                        ));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    d.state = DeliveryState::Cancelled;
    write(s, vec![Record::Delivery(d.clone())]).await?;
    Ok(d)
}
