//! Audit workloads shared by `cargo bench -p doorward-control --bench audit` and
//! `doorward bench`: an export of many entries to verify offline, and the hashing floor
//! beside it.

use doorward_proto::{Id, KeyPair};

use crate::audit::{
    export, genesis_head, AuditChain, AuditConfig, EntryKind, ExportHeader, ExportItem,
    EXPORT_VERSION,
};

/// A typical entry: a decision or a device state change, about 120 bytes of payload.
pub const PAYLOAD_BYTES: usize = 120;
/// Wall time of the first entry.
pub const T0: u64 = 1_700_000_000_000;

/// An export's bytes and what it holds.
#[derive(Clone, Debug)]
pub struct SampleExport {
    /// The export, as `doorward audit export` writes it.
    pub bytes: Vec<u8>,
    /// Entries in it.
    pub entries: u64,
    /// Signed checkpoints in it (the chain's every [`AuditConfig`] interval, and one at the
    /// end).
    pub checkpoints: u64,
}

/// One home's chain of `entries` device-state entries of [`PAYLOAD_BYTES`], signed by `key`
/// with the default checkpoint interval and a closing checkpoint, exported.
pub fn sample_export(entries: u64, key: &KeyPair) -> SampleExport {
    let home = Id::new("home-1").expect("a valid identifier");
    let device = Id::new("lock-front-door").expect("a valid identifier");
    let mut chain = AuditChain::new(home, AuditConfig::default());
    let items = (0..entries).map(|i| {
        (
            T0 + i,
            EntryKind::DEVICE_STATE,
            Some(device.clone()),
            vec![0x5a; PAYLOAD_BYTES],
        )
    });
    export_chain(&mut chain, key, items, T0 + entries)
}

/// Appends each `(time, kind, device, payload)` to a new `chain` (signing its checkpoints
/// with `key`), closes it with a checkpoint at `end_ms`, and exports it from its first entry.
pub fn export_chain(
    chain: &mut AuditChain,
    key: &KeyPair,
    entries: impl IntoIterator<Item = (u64, EntryKind, Option<Id>, Vec<u8>)>,
    end_ms: u64,
) -> SampleExport {
    let mut items = Vec::new();
    let mut n = 0;
    for (t, kind, device, payload) in entries {
        let a = chain
            .append(t, kind, device, payload, key)
            .expect("a sample entry is within limits");
        items.push(ExportItem::Entry(a.entry));
        items.extend(a.checkpoint.map(ExportItem::Checkpoint));
        n += 1;
    }
    items.push(ExportItem::Checkpoint(chain.checkpoint(end_ms, key)));
    let home = chain.home().clone();
    let header = ExportHeader {
        version: EXPORT_VERSION,
        server: key.public(),
        first_prev: genesis_head(&home),
        home,
        first_index: 0,
    };
    let mut bytes = Vec::new();
    export(&mut bytes, &header, &items).expect("writing to memory does not fail");
    SampleExport {
        bytes,
        entries: n,
        checkpoints: items.len() as u64 - n,
    }
}

/// The hashing floor of a verification: BLAKE3 over `bytes` once, nothing parsed or checked.
pub fn hash_only(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}
