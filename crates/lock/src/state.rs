//! The lock's durable state: what must survive a power cycle for its invariants to hold.

use doorward_proto::codec::{self, DecodeError};
use doorward_proto::{GrantId, Revoked};
use minicbor::{Decode, Encode};

use crate::config::MAX_STATE_BYTES;

/// A grant that opened the door once and may not open it again (I3).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SpentGrant {
    /// The grant.
    #[n(0)]
    pub id: GrantId,
    /// Wall time (ms since the Unix epoch) after which the grant could not verify anyway, so
    /// the entry may be dropped.
    #[n(1)]
    pub until_ms: u64,
}

/// Everything the lock writes to disk. The agent stores it whole on each
/// [`crate::Output::Persist`] and hands the newest durable copy to [`crate::Lock::boot`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct LockState {
    /// Sequence numbers below this may have been used; a booting lock starts here.
    #[n(0)]
    pub seq_reserved: u64,
    /// The revocation epoch applied.
    #[n(1)]
    pub epoch: u64,
    /// Everything revoked up to `epoch`.
    #[n(2)]
    pub revoked: Vec<Revoked>,
    /// Grants already used.
    #[n(3)]
    pub spent: Vec<SpentGrant>,
    /// Newest issuer certificate serial seen; older certificates are refused.
    #[n(4)]
    pub issuer_serial: u64,
}

impl LockState {
    /// The canonical bytes to write to disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads bytes written by [`LockState::to_bytes`], at most [`MAX_STATE_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_STATE_BYTES)
    }

    pub(crate) fn is_spent(&self, id: &GrantId) -> bool {
        self.spent.iter().any(|s| &s.id == id)
    }

    /// Drops spent grants whose window has closed on the lock's wall estimate. A margin of
    /// `margin_ms` keeps them a little longer, so a small backwards correction of the estimate
    /// cannot make a forgotten grant valid again.
    pub(crate) fn prune_spent(&mut self, wall_ms: u64, margin_ms: u64) -> bool {
        let before = self.spent.len();
        self.spent
            .retain(|s| s.until_ms.saturating_add(margin_ms) > wall_ms);
        self.spent.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::PubKey;

    #[test]
    fn state_round_trips_through_bytes() {
        let s = LockState {
            seq_reserved: 3_000,
            epoch: 4,
            revoked: vec![
                Revoked::Grant(GrantId([1; 16])),
                Revoked::Driver(PubKey([2; 32])),
            ],
            spent: vec![SpentGrant {
                id: GrantId([3; 16]),
                until_ms: 99,
            }],
            issuer_serial: 7,
        };
        assert_eq!(LockState::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn oversized_state_is_refused() {
        let big = vec![0u8; MAX_STATE_BYTES + 1];
        assert!(matches!(
            LockState::from_bytes(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn pruning_keeps_grants_until_their_window_and_margin_pass() {
        let mut s = LockState::default();
        s.spent.push(SpentGrant {
            id: GrantId([1; 16]),
            until_ms: 1_000,
        });
        assert!(!s.prune_spent(2_999, 2_000));
        assert!(s.is_spent(&GrantId([1; 16])));
        assert!(s.prune_spent(3_000, 2_000));
        assert!(!s.is_spent(&GrantId([1; 16])));
    }
}
