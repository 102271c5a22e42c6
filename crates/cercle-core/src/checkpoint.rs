//! Tree heads (checkpoints): the node's signed commitment to the log at a size.
//!
//! A tree head names the ledger, the number of entries, the Merkle root of the log
//! (`merkle`, RFC 9162) and the node's time. The node signs it with its key (named in the
//! genesis); anyone holding two tree heads can ask for a consistency proof between them.

use crate::ids::{LedgerId, PublicKey};
use crate::merkle::Hash;
use crate::sign::{self, Keypair, SignatureError};

/// Domain tag of a tree-head signature.
pub const TREE_HEAD_TAG: &[u8] = b"cercle/tree-head/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub ledger_id: LedgerId,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub timestamp_ms: u64,
}

impl TreeHead {
    /// The bytes the node signs: `TREE_HEAD_TAG || ledger_id || tree_size || root || timestamp`.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(TREE_HEAD_TAG.len() + 16 + 8 + 32 + 8);
        m.extend_from_slice(TREE_HEAD_TAG);
        m.extend_from_slice(&self.ledger_id.0);
        m.extend_from_slice(&self.tree_size.to_be_bytes());
        m.extend_from_slice(&self.root_hash);
        m.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        m
    }

    pub fn sign(&self, node_key: &Keypair) -> [u8; 64] {
        node_key.sign(&self.message())
    }

    /// Checks the node's signature (strictly).
    pub fn verify(&self, node_key: &PublicKey, signature: &[u8; 64]) -> Result<(), SignatureError> {
        sign::verify(node_key, &self.message(), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_head_signature_binds_every_field() {
        let key = Keypair::from_seed(&[5; 32]);
        let head =
            TreeHead { ledger_id: LedgerId([1; 16]), tree_size: 10, root_hash: [2; 32], timestamp_ms: 99 };
        let sig = head.sign(&key);
        assert_eq!(head.verify(&key.public_key(), &sig), Ok(()));
        let variants = [
            TreeHead { ledger_id: LedgerId([9; 16]), ..head },
            TreeHead { tree_size: 11, ..head },
            TreeHead { root_hash: [3; 32], ..head },
            TreeHead { timestamp_ms: 100, ..head },
        ];
        for v in variants {
            assert!(v.verify(&key.public_key(), &sig).is_err(), "{v:?}");
        }
        assert!(head.verify(&Keypair::from_seed(&[6; 32]).public_key(), &sig).is_err());
    }
}
