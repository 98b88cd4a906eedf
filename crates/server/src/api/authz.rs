//! What a caller may touch (I11), decided in one function: [`authorize`] takes the caller
//! and the resource a route acts on and returns the resource's rows, or the error to answer.
//!
//! - A homeowner reaches only the homes whose [`HomeOwner`] row names the account.
//! - A carrier reaches only its own rows (its namespace, [`doorward_store::carrier_ns`]): its
//!   drivers and its deliveries; it may create a delivery only at a home that opted it in.
//! - A driver reaches only a delivery its carrier created, assigned to that driver, and not
//!   finished.
//!
//! A resource that exists but belongs to another tenant answers exactly like one that does
//! not exist (404), so ids cannot be probed. A caller of the wrong kind gets 401 (nobody) or
//! 403 (another kind of user).

use std::sync::Arc;

use axum::http::StatusCode;
use doorward_proto::Id;
use doorward_store::{
    carrier_ns, CarrierDriver, Delivery, DeliveryState, HomeOwner, Record, RecordKind,
};

use super::auth::{DriverRequest, Principal};
use super::{read, ApiError, ApiResult};
use crate::server::Shared;

/// Who is asking.
pub enum Caller<'a> {
    /// A session or API-key caller.
    Principal(&'a Principal),
    /// A signed driver request.
    Driver(&'a DriverRequest),
}

/// What a route acts on.
pub enum Target<'a> {
    /// The homeowner's own account.
    Account,
    /// A home that exists and that the caller owns.
    Home(&'a Id),
    /// A home id the caller reserved and has not yet added.
    ReservedHome(&'a Id),
    /// The calling carrier itself.
    Carrier,
    /// One of the calling carrier's drivers.
    CarrierDriver(&'a Id),
    /// One of the calling carrier's deliveries.
    CarrierDelivery(&'a Id),
    /// A home where the calling carrier wants to deliver: it must be opted in.
    CarrierAtHome(&'a Id),
    /// A delivery assigned to the calling driver, not finished.
    DriverDelivery(&'a Id),
}

/// What [`authorize`] hands back.
pub enum Allowed {
    /// The homeowner's account.
    Account(Id),
    /// A home and its owner row.
    Home(HomeOwner),
    /// The carrier.
    Carrier(Id),
    /// The carrier's driver.
    CarrierDriver(Id, CarrierDriver),
    /// A delivery (with its carrier).
    Delivery(Id, Delivery),
}

fn homeowner<'p>(caller: &'p Caller<'_>) -> ApiResult<&'p Id> {
    match caller {
        Caller::Principal(Principal::Homeowner { account, .. }) => Ok(account),
        Caller::Principal(Principal::Anonymous) => Err(ApiError::unauthenticated()),
        _ => Err(ApiError::wrong_role("homeowners")),
    }
}

fn carrier<'p>(caller: &'p Caller<'_>) -> ApiResult<&'p Id> {
    match caller {
        Caller::Principal(Principal::Carrier { carrier }) => Ok(carrier),
        Caller::Principal(Principal::Anonymous) => Err(ApiError::unauthenticated()),
        _ => Err(ApiError::wrong_role("carriers (API key)")),
    }
}

async fn owner_row(s: &Arc<Shared>, home: &Id) -> ApiResult<Option<HomeOwner>> {
    Ok(match read(s, home, RecordKind::HomeOwner, home).await? {
        Some(Record::HomeOwner(o)) => Some(o),
        _ => None,
    })
}

async fn carrier_delivery(s: &Arc<Shared>, carrier: &Id, id: &Id) -> ApiResult<Delivery> {
    let ns = carrier_ns(carrier).map_err(ApiError::internal)?;
    let Some(Record::DeliveryRef(r)) = read(s, &ns, RecordKind::DeliveryRef, id).await? else {
        return Err(ApiError::not_found("delivery"));
    };
    match read(s, &r.home, RecordKind::Delivery, id).await? {
        // The home's row must name the same carrier: a reference alone proves nothing.
        Some(Record::Delivery(d)) if &d.carrier == carrier => Ok(d),
        _ => Err(ApiError::not_found("delivery")),
    }
}

/// Decides whether `caller` may act on `target` (I11); returns the target's rows.
pub async fn authorize(
    s: &Arc<Shared>,
    caller: Caller<'_>,
    target: Target<'_>,
) -> ApiResult<Allowed> {
    match target {
        Target::Account => Ok(Allowed::Account(homeowner(&caller)?.clone())),
        Target::Home(home) => {
            let account = homeowner(&caller)?;
            match owner_row(s, home).await? {
                Some(o) if &o.account == account && o.created => Ok(Allowed::Home(o)),
                _ => Err(ApiError::not_found("home")),
            }
        }
        Target::ReservedHome(home) => {
            let account = homeowner(&caller)?;
            match owner_row(s, home).await? {
                Some(o) if &o.account == account && !o.created => Ok(Allowed::Home(o)),
                Some(o) if &o.account == account => {
                    Err(ApiError::conflict("this home is already added"))
                }
                _ => Err(ApiError::not_found(
                    "reserved home (POST /api/homes/prepare first)",
                )),
            }
        }
        Target::Carrier => Ok(Allowed::Carrier(carrier(&caller)?.clone())),
        Target::CarrierDriver(driver) => {
            let c = carrier(&caller)?;
            let ns = carrier_ns(c).map_err(ApiError::internal)?;
            match read(s, &ns, RecordKind::CarrierDriver, driver).await? {
                Some(Record::CarrierDriver(d)) => Ok(Allowed::CarrierDriver(c.clone(), d)),
                _ => Err(ApiError::not_found("driver")),
            }
        }
        Target::CarrierDelivery(id) => {
            let c = carrier(&caller)?;
            Ok(Allowed::Delivery(
                c.clone(),
                carrier_delivery(s, c, id).await?,
            ))
        }
        Target::CarrierAtHome(home) => {
            let c = carrier(&caller)?;
            // An unknown home and a home that did not opt this carrier in look the same.
            match read(s, home, RecordKind::Carrier, c).await? {
                Some(Record::Carrier(row)) if row.opted_in => Ok(Allowed::Carrier(c.clone())),
                _ => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "carrier_not_opted_in",
                    format!(
                        "home {home} has not opted your carrier in: the homeowner must opt it \
                         in first"
                    ),
                )),
            }
        }
        Target::DriverDelivery(id) => {
            let Caller::Driver(d) = caller else {
                return Err(match caller {
                    Caller::Principal(Principal::Anonymous) => ApiError::unauthenticated(),
                    _ => ApiError::wrong_role("drivers (signed requests)"),
                });
            };
            let del = carrier_delivery(s, &d.carrier, id).await?;
            if del.driver.as_ref() != Some(&d.driver) {
                return Err(ApiError::not_found("delivery"));
            }
            if matches!(del.state, DeliveryState::Done | DeliveryState::Cancelled) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "finished",
                    "this delivery is finished",
                ));
            }
            Ok(Allowed::Delivery(d.carrier.clone(), del))
        }
    }
}
