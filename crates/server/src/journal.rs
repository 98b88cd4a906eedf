//! The registry's durable form: every administrative change the core accepted is appended to
//! the audit chain it concerns (the home's, or the server's for drivers) as one
//! [`REGISTRY_OP`] entry holding the whole change, in the same durable batch as the core's
//! own record of it, so it is on record before it is acknowledged. On start the server reads
//! these entries back and applies them to a fresh core in their original order, with the
//! core's own records between them, from which the core rebuilds the entries in flight and
//! the alarms not acknowledged (`Control::restore`; why the record and not a snapshot is in
//! the control crate's `restore` module and ARCHITECTURE.md).
//!
//! The home's issuing key is not in the entry: it lives in the keystore and is read from
//! there again on replay.

use doorward_control::audit::{EntryKind, MAX_AUDIT_PAYLOAD_BYTES};
use doorward_control::{
    Admin, DeliverySetup, DoorKind, DoorSetup, HomePolicy, HomeSetup, WeeklyWindow,
};
use doorward_control::{AuditEvent, Control};
use doorward_proto::codec;
use doorward_proto::{Id, IssuerCert, PubKey, Revoked, Signed};
use doorward_store::{Store, StoreError, MAX_READ_ROWS};
use minicbor::{Decode, Encode};

use crate::keystore::Keystore;
use crate::runtime::SERVER_CHAIN;

/// The audit entry kind of a replayable registry change (payload: [`Op`]).
pub const REGISTRY_OP: EntryKind = EntryKind(64);
/// Largest encoded [`Op`] read back.
pub const MAX_OP_BYTES: usize = 64 * 1024;

/// A home's policy as stored.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Policy {
    #[n(0)]
    windows: Vec<(u32, u32)>,
    #[n(1)]
    garage_only: bool,
    #[n(2)]
    vacation: bool,
    #[n(3)]
    live_approval: bool,
}

impl From<&HomePolicy> for Policy {
    fn from(p: &HomePolicy) -> Self {
        Policy {
            windows: p.windows.iter().map(|w| (w.start_min, w.end_min)).collect(),
            garage_only: p.garage_only,
            vacation: p.vacation,
            live_approval: p.live_approval,
        }
    }
}

impl From<Policy> for HomePolicy {
    fn from(p: Policy) -> Self {
        HomePolicy {
            windows: p
                .windows
                .into_iter()
                .map(|(start_min, end_min)| WeeklyWindow { start_min, end_min })
                .collect(),
            garage_only: p.garage_only,
            vacation: p.vacation,
            live_approval: p.live_approval,
        }
    }
}

/// One accepted administrative change, without secrets.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Op {
    /// [`Admin::AddHome`].
    #[n(0)]
    AddHome {
        /// Home.
        #[n(0)]
        home: Id,
        /// Root key.
        #[n(1)]
        root: PubKey,
        /// The root's certificate for the issuing key.
        #[n(2)]
        cert: Signed<IssuerCert>,
        /// Policy.
        #[n(3)]
        policy: Policy,
    },
    /// [`Admin::PairDoor`].
    #[n(1)]
    PairDoor {
        /// Home.
        #[n(0)]
        home: Id,
        /// Lock.
        #[n(1)]
        lock: Id,
        /// Lock key.
        #[n(2)]
        lock_key: PubKey,
        /// Camera.
        #[n(3)]
        camera: Id,
        /// Camera key.
        #[n(4)]
        camera_key: PubKey,
        /// Garage door.
        #[n(5)]
        garage: bool,
    },
    /// [`Admin::OptIn`].
    #[n(2)]
    OptIn {
        /// Home.
        #[n(0)]
        home: Id,
        /// Carrier.
        #[n(1)]
        carrier: Id,
    },
    /// [`Admin::AddDriver`].
    #[n(3)]
    AddDriver {
        /// Driver key.
        #[n(0)]
        driver: PubKey,
        /// Carrier.
        #[n(1)]
        carrier: Id,
    },
    /// [`Admin::SetDriverBlocked`].
    #[n(4)]
    SetDriverBlocked {
        /// Driver key.
        #[n(0)]
        driver: PubKey,
        /// Blocked.
        #[n(1)]
        blocked: bool,
    },
    /// [`Admin::SetPolicy`].
    #[n(5)]
    SetPolicy {
        /// Home.
        #[n(0)]
        home: Id,
        /// Policy.
        #[n(1)]
        policy: Policy,
    },
    /// [`Admin::Schedule`].
    #[n(6)]
    Schedule {
        /// Delivery.
        #[n(0)]
        delivery: Id,
        /// Home.
        #[n(1)]
        home: Id,
        /// Lock.
        #[n(2)]
        lock: Id,
        /// Carrier.
        #[n(3)]
        carrier: Id,
        /// Driver key.
        #[n(4)]
        driver: PubKey,
        /// Window start.
        #[n(5)]
        not_before_ms: u64,
        /// Window end.
        #[n(6)]
        not_after_ms: u64,
        /// Longest open time.
        #[n(7)]
        max_open_ms: Option<u64>,
    },
    /// [`Admin::Revoke`].
    #[n(7)]
    Revoke {
        /// Home.
        #[n(0)]
        home: Id,
        /// What.
        #[n(1)]
        item: Revoked,
    },
    /// [`Admin::Cancel`].
    #[n(8)]
    Cancel {
        /// Home.
        #[n(0)]
        home: Id,
        /// Delivery.
        #[n(1)]
        delivery: Id,
    },
}

impl Op {
    /// The stored form of `op`.
    pub fn of(op: &Admin) -> Op {
        match op {
            Admin::AddHome(s) => Op::AddHome {
                home: s.home.clone(),
                root: s.root,
                cert: s.cert.clone(),
                policy: (&s.policy).into(),
            },
            Admin::PairDoor { home, door } => Op::PairDoor {
                home: home.clone(),
                lock: door.lock.clone(),
                lock_key: door.lock_key,
                camera: door.camera.clone(),
                camera_key: door.camera_key,
                garage: door.kind == DoorKind::Garage,
            },
            Admin::OptIn { home, carrier } => Op::OptIn {
                home: home.clone(),
                carrier: carrier.clone(),
            },
            Admin::AddDriver { driver, carrier } => Op::AddDriver {
                driver: *driver,
                carrier: carrier.clone(),
            },
            Admin::SetDriverBlocked { driver, blocked } => Op::SetDriverBlocked {
                driver: *driver,
                blocked: *blocked,
            },
            Admin::SetPolicy { home, policy } => Op::SetPolicy {
                home: home.clone(),
                policy: policy.into(),
            },
            Admin::Schedule(d) => Op::Schedule {
                delivery: d.delivery.clone(),
                home: d.home.clone(),
                lock: d.lock.clone(),
                carrier: d.carrier.clone(),
                driver: d.driver,
                not_before_ms: d.not_before_ms,
                not_after_ms: d.not_after_ms,
                max_open_ms: d.max_open_ms,
            },
            Admin::Revoke { home, item } => Op::Revoke {
                home: home.clone(),
                item: item.clone(),
            },
            Admin::Cancel { home, delivery } => Op::Cancel {
                home: home.clone(),
                delivery: delivery.clone(),
            },
        }
    }

    /// The chain the change is recorded in: its home's, or `None` for the server's.
    pub fn home(&self) -> Option<&Id> {
        match self {
            Op::AddHome { home, .. }
            | Op::PairDoor { home, .. }
            | Op::OptIn { home, .. }
            | Op::SetPolicy { home, .. }
            | Op::Schedule { home, .. }
            | Op::Revoke { home, .. }
            | Op::Cancel { home, .. } => Some(home),
            Op::AddDriver { .. } | Op::SetDriverBlocked { .. } => None,
        }
    }

    /// The change again, with the home's issuing key given by `issuer`.
    pub fn into_admin<E>(
        self,
        issuer: impl FnOnce(&Id) -> Result<doorward_proto::KeyPair, E>,
    ) -> Result<Admin, E> {
        Ok(match self {
            Op::AddHome {
                home,
                root,
                cert,
                policy,
            } => Admin::AddHome(HomeSetup {
                issuer: issuer(&home)?,
                home,
                root,
                cert,
                policy: policy.into(),
            }),
            Op::PairDoor {
                home,
                lock,
                lock_key,
                camera,
                camera_key,
                garage,
            } => Admin::PairDoor {
                home,
                door: DoorSetup {
                    lock,
                    lock_key,
                    camera,
                    camera_key,
                    kind: if garage {
                        DoorKind::Garage
                    } else {
                        DoorKind::Front
                    },
                },
            },
            Op::OptIn { home, carrier } => Admin::OptIn { home, carrier },
            Op::AddDriver { driver, carrier } => Admin::AddDriver { driver, carrier },
            Op::SetDriverBlocked { driver, blocked } => Admin::SetDriverBlocked { driver, blocked },
            Op::SetPolicy { home, policy } => Admin::SetPolicy {
                home,
                policy: policy.into(),
            },
            Op::Schedule {
                delivery,
                home,
                lock,
                carrier,
                driver,
                not_before_ms,
                not_after_ms,
                max_open_ms,
            } => Admin::Schedule(DeliverySetup {
                delivery,
                home,
                lock,
                carrier,
                driver,
                not_before_ms,
                not_after_ms,
                max_open_ms,
            }),
            Op::Revoke { home, item } => Admin::Revoke { home, item },
            Op::Cancel { home, delivery } => Admin::Cancel { home, delivery },
        })
    }
}

/// What a replay brought back, for the shell's routing.
#[derive(Default)]
pub struct Replayed {
    /// Homes registered again.
    pub homes: Vec<Id>,
    /// Devices paired again, with their home.
    pub devices: Vec<(Id, Id)>,
    /// Changes the core refused on replay (e.g. an issuing certificate that has expired
    /// since), skipped.
    pub refused: usize,
    /// The core's own records fed back to it ([`Control::restore`]).
    pub events: usize,
    /// Webhook endpoints added and removed, per home, in the order recorded.
    pub webhooks: Vec<(Id, crate::webhook::StoredEndpoint)>,
}

/// Reads every chain back from `store` — the server's chain first (drivers), then each
/// home's — and feeds it to `control` in the order it was recorded: each [`REGISTRY_OP`]
/// entry is applied as the administrative change it records, and each of the core's own
/// records goes to [`Control::restore`], which rebuilds the deliveries in flight and the
/// alarms not acknowledged. The core's outputs of the replayed changes are dropped: they are
/// on record already. The caller then resumes the core ([`Control::resume`]) before anything
/// else reaches it. Blocking (store reads).
pub fn replay(
    store: &dyn Store,
    keystore: &Keystore,
    control: &mut Control,
    now_ms: u64,
) -> Result<Replayed, StoreError> {
    let mut chains = vec![Id::new(SERVER_CHAIN).expect("a valid id")];
    let mut after: Option<Id> = None;
    loop {
        let page = store.home_ids(after.as_ref(), MAX_READ_ROWS)?;
        let done = page.len() < MAX_READ_ROWS;
        after = page.last().cloned();
        chains.extend(page);
        if done {
            break;
        }
    }
    let mut out = Replayed::default();
    for chain in chains {
        let mut from = 0u64;
        loop {
            let page = store.audit_entries(&chain, from, MAX_READ_ROWS)?;
            let done = page.len() < MAX_READ_ROWS;
            from += page.len() as u64;
            for e in page {
                if e.kind == REGISTRY_OP {
                    let op: Op = codec::decode(&e.payload, MAX_OP_BYTES).map_err(|err| {
                        StoreError::Corrupt(format!("registry entry {chain}/{}: {err}", e.index))
                    })?;
                    apply(op, keystore, control, now_ms, &mut out);
                } else if e.kind == EntryKind::EVENT {
                    let ev: AuditEvent = codec::decode(&e.payload, MAX_AUDIT_PAYLOAD_BYTES)
                        .map_err(|err| {
                            StoreError::Corrupt(format!("audit event {chain}/{}: {err}", e.index))
                        })?;
                    control.restore(&ev);
                    out.events += 1;
                } else if e.kind == crate::webhook::WEBHOOK_ENTRY {
                    let st = codec::decode(&e.payload, crate::webhook::MAX_STORED_ENDPOINT_BYTES)
                        .map_err(|err| {
                        StoreError::Corrupt(format!("webhook entry {chain}/{}: {err}", e.index))
                    })?;
                    out.webhooks.push((chain.clone(), st));
                }
            }
            if done {
                break;
            }
        }
    }
    Ok(out)
}

fn apply(op: Op, keystore: &Keystore, control: &mut Control, now_ms: u64, out: &mut Replayed) {
    let admin = match op.into_admin(|h| keystore.issuer_key(h)) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "replay: no issuing key");
            out.refused += 1;
            return;
        }
    };
    let added = match &admin {
        Admin::AddHome(s) => Some(s.home.clone()),
        _ => None,
    };
    let paired = match &admin {
        Admin::PairDoor { home, door } => Some((home.clone(), door.clone())),
        _ => None,
    };
    match control.admin(now_ms, admin) {
        Ok(_) => {
            out.homes.extend(added);
            if let Some((home, door)) = paired {
                out.devices.push((door.lock, home.clone()));
                out.devices.push((door.camera, home));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "replay: a recorded change was refused");
            out.refused += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::KeyPair;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn an_op_survives_encoding_and_gets_its_issuer_back() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let root = KeyPair::generate(&mut rng);
        let issuer = KeyPair::generate(&mut rng);
        let home = Id::new("h1").unwrap();
        let cert = Signed::sign(
            IssuerCert {
                home: home.clone(),
                issuer: issuer.public(),
                not_before_ms: 0,
                not_after_ms: 10,
                serial: 1,
            },
            &root,
        );
        let op = Op::AddHome {
            home,
            root: root.public(),
            cert,
            policy: Policy::from(&HomePolicy {
                windows: vec![WeeklyWindow {
                    start_min: 1,
                    end_min: 2,
                }],
                vacation: true,
                ..HomePolicy::default()
            }),
        };
        let bytes = doorward_proto::codec::encode(&op);
        let back: Op = doorward_proto::codec::decode(&bytes, MAX_OP_BYTES).unwrap();
        assert_eq!(back, op);
        let admin = back.into_admin(|_| Ok::<_, ()>(issuer.clone())).unwrap();
        let Admin::AddHome(s) = &admin else {
            panic!("not a home")
        };
        assert_eq!(s.issuer.public(), issuer.public());
        assert!(s.policy.vacation);
        assert_eq!(Op::of(&admin), op);
    }
}
