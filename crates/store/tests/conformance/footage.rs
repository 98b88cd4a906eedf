//! Conformance tests of the footage rows (run against both backends through `suite`).

use doorward_proto::{Digest, Id, PubKey, MAX_FRAMES_PER_PROOF};
use doorward_store::footage::{
    MAX_FOOTAGE_DELETE, MAX_FOOTAGE_PROOF_BYTES, MAX_SEALED_SEGMENT_BYTES,
};
use doorward_store::{FootageQuery, FootageSegment, Store, StoreConfig, StoreError};

use crate::backends::Backend;
use crate::suite::{id, T0};

fn open(b: &dyn Backend) -> Box<dyn Store> {
    b.open(StoreConfig::default()).unwrap()
}

fn segment(
    home: &Id,
    camera: &str,
    seq: u64,
    at_ms: u64,
    delivery: Option<&str>,
) -> FootageSegment {
    let frames: Vec<Digest> = (0..3).map(|i| Digest([seq as u8 ^ i; 32])).collect();
    FootageSegment {
        home: home.clone(),
        camera: id(camera),
        seq,
        at_ms,
        segment: Digest([seq as u8; 32]),
        frames,
        head: Digest([0xa0 ^ seq as u8; 32]),
        camera_key: PubKey([5; 32]),
        delivery: delivery.map(id),
        proof: format!("proof {camera} {seq}").into_bytes(),
        uploaded_ms: None,
    }
}

fn keys(rows: &[FootageSegment]) -> Vec<(String, u64)> {
    rows.iter().map(|r| (r.camera.to_string(), r.seq)).collect()
}

pub fn footage_round_trip_sealed_once_and_paging(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-f");
    let rows = [
        segment(&home, "cam-1", 10, T0, Some("d-1")),
        segment(&home, "cam-1", 11, T0 + 125, Some("d-1")),
        segment(&home, "cam-2", 3, T0 + 125, Some("d-1")),
        segment(&home, "cam-1", 12, T0 + 5_000, None),
        segment(&home, "cam-1", 13, T0 + 9_000, Some("d-2")),
    ];
    for r in &rows {
        store.put_footage(r).unwrap().wait().unwrap();
    }
    let back = store.footage(&home, &id("cam-1"), 11).unwrap().unwrap();
    assert_eq!(back, rows[1]);
    assert_eq!(store.footage(&home, &id("cam-1"), 99).unwrap(), None);

    // A second write of the same key keeps the first row.
    let mut other = rows[1].clone();
    other.segment = Digest([0xee; 32]);
    store.put_footage(&other).unwrap().wait().unwrap();
    assert_eq!(
        store.footage(&home, &id("cam-1"), 11).unwrap().unwrap(),
        rows[1]
    );

    // Order (at_ms, camera, seq), time range, delivery, paging.
    let all = store
        .footage_list(&home, &FootageQuery::all(), 100)
        .unwrap();
    assert_eq!(
        keys(&all),
        [
            ("cam-1", 10),
            ("cam-1", 11),
            ("cam-2", 3),
            ("cam-1", 12),
            ("cam-1", 13)
        ]
        .map(|(c, s)| (c.to_string(), s))
    );
    let d1 = FootageQuery {
        delivery: Some(id("d-1")),
        ..FootageQuery::all()
    };
    assert_eq!(store.footage_list(&home, &d1, 100).unwrap().len(), 3);
    let range = FootageQuery {
        from_ms: T0 + 125,
        to_ms: T0 + 9_000,
        ..FootageQuery::all()
    };
    assert_eq!(
        keys(&store.footage_list(&home, &range, 100).unwrap()),
        [("cam-1", 11), ("cam-2", 3), ("cam-1", 12)].map(|(c, s)| (c.to_string(), s))
    );
    let mut paged = Vec::new();
    let mut q = FootageQuery::all();
    loop {
        let page = store.footage_list(&home, &q, 2).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        q.after = Some(page.last().unwrap().cursor());
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Sealed frames are written once, only onto an existing row.
    assert_eq!(store.footage_sealed(&home, &id("cam-1"), 10).unwrap(), None);
    store
        .put_footage_sealed(&home, &id("cam-1"), 10, b"sealed one", T0 + 50)
        .unwrap()
        .wait()
        .unwrap();
    store
        .put_footage_sealed(&home, &id("cam-1"), 10, b"sealed two", T0 + 60)
        .unwrap()
        .wait()
        .unwrap();
    store
        .put_footage_sealed(&home, &id("cam-9"), 1, b"no row", T0 + 60)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store
            .footage_sealed(&home, &id("cam-1"), 10)
            .unwrap()
            .as_deref(),
        Some(&b"sealed one"[..])
    );
    assert_eq!(
        store
            .footage(&home, &id("cam-1"), 10)
            .unwrap()
            .unwrap()
            .uploaded_ms,
        Some(T0 + 50)
    );
    assert_eq!(store.footage(&home, &id("cam-9"), 1).unwrap(), None);
    assert_eq!(store.footage_sealed(&home, &id("cam-9"), 1).unwrap(), None);

    // Durable across a reopen.
    drop(store);
    let store = open(b);
    assert_eq!(
        store
            .footage_list(&home, &FootageQuery::all(), 100)
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        store
            .footage_sealed(&home, &id("cam-1"), 10)
            .unwrap()
            .as_deref(),
        Some(&b"sealed one"[..])
    );
}

pub fn footage_delete_and_retention(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-r");
    for s in 1..=4 {
        store
            .put_footage(&segment(&home, "cam-1", s, T0 + s, None))
            .unwrap()
            .wait()
            .unwrap();
    }
    store
        .delete_footage(
            &home,
            &[(id("cam-1"), 2), (id("cam-1"), 3), (id("cam-7"), 1)],
        )
        .unwrap()
        .wait()
        .unwrap();
    let left = store
        .footage_list(&home, &FootageQuery::all(), 100)
        .unwrap();
    assert_eq!(
        keys(&left),
        [("cam-1".to_string(), 1), ("cam-1".to_string(), 4)]
    );

    assert_eq!(store.footage_retention(&home).unwrap(), None);
    store
        .put_footage_retention(&home, 7, T0)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.footage_retention(&home).unwrap(), Some(7));
    store
        .put_footage_retention(&home, 365, T0 + 1)
        .unwrap()
        .wait()
        .unwrap();
    drop(store);
    let store = open(b);
    assert_eq!(store.footage_retention(&home).unwrap(), Some(365));
    assert_eq!(store.footage_retention(&id("home-other")).unwrap(), None);
}

pub fn i11_footage_of_another_home_is_neither_read_nor_deleted(b: &dyn Backend) {
    let store = open(b);
    let (a, other) = (id("home-a"), id("home-b"));
    store
        .put_footage(&segment(&a, "cam-1", 1, T0, Some("d-1")))
        .unwrap()
        .wait()
        .unwrap();
    store
        .put_footage_sealed(&a, &id("cam-1"), 1, b"a's frames", T0)
        .unwrap()
        .wait()
        .unwrap();
    store
        .put_footage_retention(&a, 3, T0)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.footage(&other, &id("cam-1"), 1).unwrap(), None);
    assert_eq!(store.footage_sealed(&other, &id("cam-1"), 1).unwrap(), None);
    assert!(store
        .footage_list(&other, &FootageQuery::all(), 100)
        .unwrap()
        .is_empty());
    assert_eq!(store.footage_retention(&other).unwrap(), None);
    // Writes under another home touch nothing of this one.
    store
        .put_footage_sealed(&other, &id("cam-1"), 1, b"b's frames", T0)
        .unwrap()
        .wait()
        .unwrap();
    store
        .delete_footage(&other, &[(id("cam-1"), 1)])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store
            .footage_sealed(&a, &id("cam-1"), 1)
            .unwrap()
            .as_deref(),
        Some(&b"a's frames"[..])
    );
}

pub fn limit_footage_sizes(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-l");
    let mut s = segment(&home, "cam-1", 1, T0, None);
    s.frames = vec![Digest([1; 32]); MAX_FRAMES_PER_PROOF + 1];
    assert!(matches!(
        store.put_footage(&s),
        Err(StoreError::TooLarge { .. })
    ));
    let mut s = segment(&home, "cam-1", 1, T0, None);
    s.proof = vec![0; MAX_FOOTAGE_PROOF_BYTES + 1];
    assert!(matches!(
        store.put_footage(&s),
        Err(StoreError::TooLarge { .. })
    ));
    let s = segment(&home, "cam-1", 1, T0, None);
    store.put_footage(&s).unwrap().wait().unwrap();
    assert!(matches!(
        store.put_footage_sealed(
            &home,
            &s.camera,
            1,
            &vec![0; MAX_SEALED_SEGMENT_BYTES + 1],
            T0
        ),
        Err(StoreError::TooLarge { .. })
    ));
    let many: Vec<(Id, u64)> = (0..=MAX_FOOTAGE_DELETE as u64)
        .map(|i| (id("cam-1"), i))
        .collect();
    assert!(matches!(
        store.delete_footage(&home, &many),
        Err(StoreError::TooLarge { .. })
    ));
    assert!(matches!(
        store.footage_list(
            &home,
            &FootageQuery::all(),
            doorward_store::MAX_READ_ROWS + 1
        ),
        Err(StoreError::TooLarge { .. })
    ));
    // At the limits, accepted.
    store
        .delete_footage(&home, &many[..MAX_FOOTAGE_DELETE])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.footage(&home, &s.camera, 1).unwrap(), None);
}
