//! The server's tamper-evident record (I7): a BLAKE3 hash chain of audit entries with signed
//! checkpoints, the collapse of routine idle proofs, and the offline verifier of an export.
