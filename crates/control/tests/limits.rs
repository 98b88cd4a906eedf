//! Every table of the decision core has a named limit; each test here hits one.

mod harness;

use doorward_control::config::*;
use doorward_control::*;
use doorward_proto::session;
use doorward_proto::*;
use harness::*;

fn small(f: impl FnOnce(&mut Config)) -> World {
    let mut cfg = Config::default();
    f(&mut cfg);
    World::with(cfg, HomePolicy::default(), DoorKind::Front)
}

fn door(n: usize) -> DoorSetup {
    let k = KeyPair::from_seed(&[n as u8; 32]).public();
    DoorSetup {
        lock: id(&format!("lock-x{n}")),
        lock_key: k,
        camera: id(&format!("cam-x{n}")),
        camera_key: k,
        kind: DoorKind::Front,
    }
}

#[test]
fn max_homes() {
    let mut w = small(|c| c.max_homes = 1);
    let issuer = KeyPair::from_seed(&[1; 32]);
    let home = id("home-2");
    let cert = Signed::sign(
        IssuerCert {
            home: home.clone(),
            issuer: issuer.public(),
            not_before_ms: 0,
            not_after_ms: u64::MAX,
            serial: 1,
        },
        &w.root,
    );
    let err =
        w.c.admin(
            w.now,
            Admin::AddHome(HomeSetup {
                home,
                root: w.root.public(),
                issuer,
                cert,
                policy: HomePolicy::default(),
            }),
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "homes",
            limit: 1
        }
    );
}

#[test]
fn max_devices_and_doors_per_home() {
    let mut w = small(|c| c.max_devices = 2);
    let err =
        w.c.admin(
            w.now,
            Admin::PairDoor {
                home: w.home.clone(),
                door: door(1),
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "devices",
            limit: 2
        }
    );
    let mut w = World::new();
    for n in 1..MAX_DOORS_PER_HOME {
        w.admin(Admin::PairDoor {
            home: w.home.clone(),
            door: door(n),
        });
    }
    let err =
        w.c.admin(
            w.now,
            Admin::PairDoor {
                home: w.home.clone(),
                door: door(99),
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "doors per home",
            limit: MAX_DOORS_PER_HOME
        }
    );
}

#[test]
fn max_carriers_and_windows_per_home() {
    let mut w = World::new();
    for n in 1..MAX_CARRIERS_PER_HOME {
        w.admin(Admin::OptIn {
            home: w.home.clone(),
            carrier: id(&format!("c{n}")),
        });
    }
    let err =
        w.c.admin(
            w.now,
            Admin::OptIn {
                home: w.home.clone(),
                carrier: id("one-more"),
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "carriers per home",
            limit: MAX_CARRIERS_PER_HOME
        }
    );
    let window = WeeklyWindow {
        start_min: 0,
        end_min: 60,
    };
    let policy = HomePolicy {
        windows: vec![window; MAX_WINDOWS_PER_HOME + 1],
        ..HomePolicy::default()
    };
    let err =
        w.c.admin(
            w.now,
            Admin::SetPolicy {
                home: w.home.clone(),
                policy,
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "windows per home",
            limit: MAX_WINDOWS_PER_HOME
        }
    );
    let policy = HomePolicy {
        windows: vec![WeeklyWindow {
            start_min: 10,
            end_min: 10_081,
        }],
        ..HomePolicy::default()
    };
    assert!(matches!(
        w.c.admin(
            w.now,
            Admin::SetPolicy {
                home: w.home.clone(),
                policy
            }
        ),
        Err(AdminError::BadWindow { .. })
    ));
}

#[test]
fn max_drivers() {
    let mut w = small(|c| c.max_drivers = 1);
    let err =
        w.c.admin(
            w.now,
            Admin::AddDriver {
                driver: KeyPair::from_seed(&[3; 32]).public(),
                carrier: w.carrier.clone(),
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "drivers",
            limit: 1
        }
    );
}

#[test]
fn max_deliveries_in_flight() {
    let mut w = small(|c| c.max_deliveries_in_flight = 1);
    let err =
        w.c.admin(
            w.now,
            Admin::Schedule(DeliverySetup {
                delivery: id("d-2"),
                home: w.home.clone(),
                lock: w.lock.id.clone(),
                carrier: w.carrier.clone(),
                driver: w.driver.public(),
                not_before_ms: T0,
                not_after_ms: T0 + 1,
                max_open_ms: None,
            }),
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "deliveries in flight",
            limit: 1
        }
    );
}

#[test]
fn max_pending_requests_denies_queue_full() {
    let cfg = Config {
        max_pending_requests: 1,
        ..Config::default()
    };
    let policy = HomePolicy {
        live_approval: true,
        ..HomePolicy::default()
    };
    let mut w = World::with(cfg, policy, DoorKind::Front);
    assert_eq!(denied(&w.request_entry()), None);
    assert_eq!(denied(&w.request_entry()), Some(DenyReason::QueueFull));
}

#[test]
fn max_open_alarms_still_shows_but_stops_resending() {
    let mut w = small(|c| c.max_open_alarms = 1);
    w.cam.obs.blinded = true;
    w.proof();
    w.cam.obs.blinded = false;
    w.cam.obs.frozen = true;
    let out = w.proof();
    assert_eq!(alarms(&out), vec![AlarmKind::FrozenFootage]);
    assert_eq!(w.c.open_alarms().count(), 1);
    let out = w.idle(10_000);
    let resent: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Alarm(a) => Some(a.alarm.kind),
            _ => None,
        })
        .collect();
    assert_eq!(resent, vec![AlarmKind::BlindedCamera]);
}

#[test]
fn max_revoked_drivers_and_revocation_history() {
    let mut w = World::new();
    for n in 0..MAX_REVOKED_DRIVERS_PER_HOME {
        let k = KeyPair::from_seed(&[
            (n % 256) as u8,
            (n / 256) as u8 + 1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]);
        w.admin(Admin::Revoke {
            home: w.home.clone(),
            item: Revoked::Driver(k.public()),
        });
    }
    let err =
        w.c.admin(
            w.now,
            Admin::Revoke {
                home: w.home.clone(),
                item: Revoked::Driver(KeyPair::from_seed(&[200; 32]).public()),
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AdminError::Limit {
            what: "revoked drivers per home",
            limit: MAX_REVOKED_DRIVERS_PER_HOME
        }
    );
    // The lock is at epoch 0: it is sent the newest MAX_REVOCATION_HISTORY revocations only.
    let out = w.request_entry();
    assert_eq!(denied(&out), Some(DenyReason::StaleEpoch));
    let epochs: Vec<u64> = sent(&out)
        .into_iter()
        .filter_map(|(_, b)| match b {
            Body::Revocation(r) => Some(r.epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), MAX_REVOCATION_HISTORY);
    assert_eq!(*epochs.last().unwrap(), MAX_REVOKED_DRIVERS_PER_HOME as u64);
}

#[test]
fn max_finished_deliveries() {
    let mut w = small(|c| c.max_finished_deliveries = 1);
    w.enter_and_relock();
    w.run(250, true, false);
    w.idle(31_000);
    w.proof();
    w.lock_report(LockEvent::Periodic);
    let first = w.delivery.clone();
    assert_eq!(w.c.delivery(&first).unwrap().phase, Phase::Done);
    w.delivery = id("d-2");
    w.admin(Admin::Schedule(DeliverySetup {
        delivery: w.delivery.clone(),
        home: w.home.clone(),
        lock: w.lock.id.clone(),
        carrier: w.carrier.clone(),
        driver: w.driver.public(),
        not_before_ms: T0,
        not_after_ms: T0 + 3_600_000,
        max_open_ms: None,
    }));
    w.enter_and_relock();
    w.run(250, true, false);
    w.idle(31_000);
    assert_eq!(w.phase(), Phase::Done);
    assert!(
        w.c.delivery(&first).is_none(),
        "the oldest finished delivery is forgotten"
    );
}

#[test]
fn max_pending_sessions_per_confirm_window() {
    let mut w = small(|c| c.max_pending_sessions = 2);
    // World::new's own handshake holds one place until session_confirm_ms has passed.
    let out = w.open_camera_session();
    assert!(rejected(&out).is_empty());
    let (_, hello) = session::Initiator::start(w.cam.id.clone(), &mut w.rng);
    let env = Envelope::signed(Body::SessionHello(hello), &w.cam.key);
    let cam_id = w.cam.id.clone();
    let out = w.device(&cam_id, &env);
    assert_eq!(rejected(&out), vec![RejectReason::HandshakeLimit]);
    assert!(alarms(&out).is_empty());
    // The camera's session in force is untouched.
    let out = w.proof();
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
    // Once the window has passed, handshakes are answered again.
    w.now += w.c.config().session_confirm_ms;
    let out = w.open_camera_session();
    assert!(rejected(&out).is_empty());
}

#[test]
fn max_recent_hellos_forgets_the_oldest() {
    let mut w = small(|c| c.max_recent_hellos = 2);
    let first = w.last_hello.clone().unwrap();
    let cam_id = w.cam.id.clone();
    w.open_camera_session();
    w.proof();
    let out = w.device(&cam_id, &first);
    assert_eq!(rejected(&out), vec![RejectReason::Replay]);
    // A third hello pushes the first out: its replay is no longer recognised (and, its key
    // never being used, still displaces nothing).
    w.open_camera_session();
    w.proof();
    let out = w.device(&cam_id, &first);
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
    let out = w.proof();
    assert!(rejected(&out).is_empty(), "{:?}", rejected(&out));
}

/// A delivery for `w`'s lock, carrier and driver with the window `T0..not_after_ms`.
fn delivery(w: &World, name: &str, not_after_ms: u64) -> DeliverySetup {
    DeliverySetup {
        delivery: id(name),
        home: w.home.clone(),
        lock: w.lock.id.clone(),
        carrier: w.carrier.clone(),
        driver: w.driver.public(),
        not_before_ms: T0,
        not_after_ms,
        max_open_ms: None,
    }
}

#[test]
fn a_delivery_whose_window_ends_without_an_entry_expires_and_leaves_the_deliveries_in_flight() {
    let mut w = small(|c| c.max_deliveries_in_flight = 1);
    let first = w.delivery.clone();
    let second = delivery(&w, "d-2", T0 + 10 * 3_600_000);
    assert!(matches!(
        w.c.admin(w.now, Admin::Schedule(second.clone())),
        Err(AdminError::Limit { .. })
    ));
    // The window is T0 .. T0 + 4 h, and nobody comes.
    w.idle(4 * 3_600_000 - 1);
    assert_eq!(w.phase(), Phase::Scheduled);
    let out = w.idle(1);
    assert_eq!(w.phase(), Phase::Expired);
    assert!(audits(&out).iter().any(|a| matches!(
        &a.what,
        AuditKind::Phase { delivery, phase: Phase::Expired } if *delivery == first
    )));
    // Its place is free, and it lets nobody in.
    w.admin(Admin::Schedule(second));
    let out = w.request_entry();
    assert_eq!(denied(&out), Some(DenyReason::DeliveryUnknown));
    assert_eq!(w.phase(), Phase::Expired);
}

#[test]
fn a_delivery_whose_window_ends_during_its_entry_ends_by_its_entry() {
    let mut w = World::new();
    let short = delivery(&w, "d-short", T0 + 1_000);
    w.admin(Admin::Schedule(short));
    w.delivery = id("d-short");
    // Authorised inside the window; the entry runs past its end.
    w.enter_and_relock();
    assert!(w.now > T0 + 1_000);
    assert_ne!(w.phase(), Phase::Expired);
    w.run(250, true, false);
    w.idle(31_000);
    assert_eq!(w.phase(), Phase::Done);
    assert!(!w
        .log
        .iter()
        .any(|o| matches!(o, Output::Audit(a) if matches!(a.what, AuditKind::Phase { phase: Phase::Expired, .. }))));
}

#[test]
fn a_window_that_ended_while_the_server_was_down_expires_on_resume() {
    let mut w = World::new();
    w.idle(5 * 3_600_000);
    assert_eq!(w.phase(), Phase::Expired);
    // A restart replays the schedule, then the record: the delivery stays over.
    w.restart(true);
    assert_eq!(w.phase(), Phase::Expired);
    assert!(w.c.delivery(&w.delivery).is_some());
    // Down across the window's end: the resume ends it.
    let mut w = World::new();
    w.now += 5 * 3_600_000;
    let out = w.restart(true);
    assert!(audits(&out).iter().any(|a| matches!(
        a.what,
        AuditKind::Phase {
            phase: Phase::Expired,
            ..
        }
    )));
    assert_eq!(w.phase(), Phase::Expired);
}

#[test]
fn a_cancelled_delivery_lets_nobody_in_and_an_entry_under_way_cannot_be_cancelled() {
    let mut w = World::new();
    let (home, first) = (w.home.clone(), w.delivery.clone());
    let cancel = |w: &mut World, delivery: &Id| {
        let now = w.now;
        w.c.admin(
            now,
            Admin::Cancel {
                home: home.clone(),
                delivery: delivery.clone(),
            },
        )
    };
    let out = w.admin(Admin::Cancel {
        home: home.clone(),
        delivery: first.clone(),
    });
    assert!(audits(&out).iter().any(|a| matches!(
        &a.what,
        AuditKind::Phase { delivery, phase: Phase::Cancelled } if *delivery == first
    )));
    assert_eq!(w.phase(), Phase::Cancelled);
    assert_eq!(
        denied(&w.request_entry()),
        Some(DenyReason::DeliveryUnknown)
    );
    assert_eq!(
        cancel(&mut w, &first),
        Err(AdminError::UnknownDelivery(first.clone()))
    );
    // Another home's delivery is not this home's to cancel.
    let second = delivery(&w, "d-2", T0 + 3_600_000);
    w.admin(Admin::Schedule(second));
    let err = w.c.admin(
        w.now,
        Admin::Cancel {
            home: id("h-other"),
            delivery: id("d-2"),
        },
    );
    assert!(matches!(err, Err(AdminError::UnknownHome(_))), "{err:?}");
    // Once somebody is being let in, the entry ends by its own course.
    w.delivery = id("d-2");
    w.authorise();
    assert_eq!(
        cancel(&mut w, &id("d-2")),
        Err(AdminError::EntryUnderWay(id("d-2")))
    );
    assert_eq!(w.phase(), Phase::Unlocking);
    // After a restart the record keeps the first one cancelled.
    w.restart(true);
    assert_eq!(w.c.delivery(&first).unwrap().phase, Phase::Cancelled);
}
