//! The node's signing keys over time (`NodeKeys`): the genesis's key, then the key of each
//! `RotateNodeKey` entry, and which key signs a tree head of a given size.
//!
//! The rule, which every signer and verifier applies alike: the key in force for a tree
//! head of size `n` is the key of the last rotation entry the tree contains (entries are
//! numbered from 1, so its sequence is at most `n`), else the genesis's. A rotation at
//! sequence `s` is therefore in force from size `s`: the head that first contains it is
//! signed with the new key, so no head is ever signed by a key the log does not name for
//! it, and a verifier holding the log finds every key in the log itself.

use cercle_limits::NODE_KEYS_MAX;

use crate::codec::{DecodeError, Reader, Writer};
use crate::genesis::Genesis;
use crate::ids::PublicKey;

const NODE_KEYS_VERSION: u8 = 1;

/// One key of the history and the first tree size it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeKeyEra {
    pub from_size: u64,
    pub key: PublicKey,
}

/// The genesis's node key and the rotations since, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    genesis: PublicKey,
    /// Each rotation's entry sequence (the first tree size it signs) and key; sequences
    /// strictly increase.
    rotations: Vec<(u64, PublicKey)>,
}

impl NodeKeys {
    /// The history of a ledger that never rotated its node key.
    pub fn from_genesis(genesis: &Genesis) -> NodeKeys {
        NodeKeys { genesis: genesis.node_key, rotations: Vec::new() }
    }

    /// True when the node key was never rotated (then nothing of it is persisted or hashed).
    pub fn is_rotated(&self) -> bool {
        !self.rotations.is_empty()
    }

    /// The key that signs a tree head of `size` entries.
    pub fn key_for_size(&self, size: u64) -> PublicKey {
        self.rotations.iter().rev().find(|(sequence, _)| *sequence <= size).map_or(self.genesis, |(_, k)| *k)
    }

    /// The key in force now: the last one.
    pub fn current(&self) -> PublicKey {
        self.rotations.last().map_or(self.genesis, |(_, k)| *k)
    }

    /// Every key with the first tree size it signs, the genesis's first (from size 0).
    pub fn eras(&self) -> Vec<NodeKeyEra> {
        std::iter::once(NodeKeyEra { from_size: 0, key: self.genesis })
            .chain(
                self.rotations.iter().map(|(sequence, key)| NodeKeyEra { from_size: *sequence, key: *key }),
            )
            .collect()
    }

    /// The history from its eras (as `GetLedgerInfo` lists them), checked: the first from
    /// size 0, sizes strictly increasing, at most `NODE_KEYS_MAX`.
    pub fn from_eras(eras: &[NodeKeyEra]) -> Result<NodeKeys, String> {
        let Some((first, rest)) = eras.split_first() else {
            return Err("a node key history names at least the genesis's key".into());
        };
        if first.from_size != 0 {
            return Err(format!("the first node key is in force from size {}, not 0", first.from_size));
        }
        if eras.len() > NODE_KEYS_MAX {
            return Err(format!(
                "{} node keys, more than the {NODE_KEYS_MAX} a ledger has at most",
                eras.len()
            ));
        }
        let mut keys = NodeKeys { genesis: first.key, rotations: Vec::with_capacity(rest.len()) };
        for era in rest {
            let sequence = era.from_size;
            if keys.rotations.last().map_or(0, |(last, _)| *last) >= sequence {
                return Err(format!("node key {} from size {}: sizes must increase", era.key, era.from_size));
            }
            keys.rotations.push((sequence, era.key));
        }
        Ok(keys)
    }

    /// The first tree size `key` signed, if it is in the history.
    pub fn used_from(&self, key: &PublicKey) -> Option<u64> {
        self.eras().into_iter().find(|e| e.key == *key).map(|e| e.from_size)
    }

    /// How many keys the history holds, the genesis's included.
    pub fn len(&self) -> usize {
        self.rotations.len() + 1
    }

    /// Always false: the genesis's key is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Records the rotation at `sequence`. The caller checked the key and the bound.
    pub(crate) fn rotate(&mut self, sequence: u64, key: PublicKey) {
        assert!(
            self.rotations.last().is_none_or(|(last, _)| *last < sequence),
            "node key rotation at sequence {sequence} after one at {:?}",
            self.rotations.last()
        );
        assert!(self.len() < NODE_KEYS_MAX, "node key history past {NODE_KEYS_MAX}");
        self.rotations.push((sequence, key));
    }

    /// The canonical, versioned encoding of the rotations (the genesis's key comes from the
    /// genesis): persisted by the store's checkpoint (`m/node_keys`) and hashed into the
    /// state digest, both only once there is a rotation.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(NODE_KEYS_VERSION).u16(self.rotations.len() as u16);
        for (sequence, key) in &self.rotations {
            w.u64(*sequence).fixed(&key.0);
        }
        w.buf
    }

    /// The history of the ledger of `genesis` with the rotations `encode` wrote.
    pub fn decode(genesis: &Genesis, data: &[u8]) -> Result<NodeKeys, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("node keys version")?;
        if version != NODE_KEYS_VERSION {
            return Err(DecodeError::Version(version));
        }
        let n = usize::from(r.u16("node key count")?);
        if n + 1 > NODE_KEYS_MAX {
            return Err(DecodeError::Invalid("node key count"));
        }
        let mut keys = NodeKeys::from_genesis(genesis);
        for _ in 0..n {
            let sequence = r.u64("node key sequence")?;
            let key = PublicKey(r.array("node key")?);
            if keys.rotations.last().is_some_and(|(last, _)| *last >= sequence) {
                return Err(DecodeError::Invalid("node key sequences out of order"));
            }
            keys.rotations.push((sequence, key));
        }
        r.finish()?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        PublicKey([seed; 32])
    }

    fn history() -> NodeKeys {
        let mut keys = NodeKeys { genesis: key(1), rotations: Vec::new() };
        keys.rotate(4, key(2));
        keys.rotate(9, key(3));
        keys
    }

    #[test]
    fn a_rotation_signs_the_heads_that_contain_it() {
        let keys = history();
        let signer: Vec<u8> = (0..13).map(|size| keys.key_for_size(size).0[0]).collect();
        assert_eq!(signer, [1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(keys.current(), key(3));
        assert_eq!(keys.used_from(&key(2)), Some(4));
        assert_eq!(keys.used_from(&key(7)), None);
    }

    #[test]
    fn the_history_round_trips_through_its_encoding_and_its_eras() {
        let keys = history();
        let genesis_key = keys.genesis;
        let eras = keys.eras();
        assert_eq!(
            eras.iter().map(|e| (e.from_size, e.key.0[0])).collect::<Vec<_>>(),
            [(0, 1), (4, 2), (9, 3)]
        );
        assert_eq!(NodeKeys::from_eras(&eras), Ok(keys.clone()));
        let mut bad = eras.clone();
        bad[2].from_size = 4;
        assert!(NodeKeys::from_eras(&bad).unwrap_err().contains("must increase"));
        bad[0].from_size = 1;
        assert!(NodeKeys::from_eras(&bad).unwrap_err().contains("not 0"));
        let genesis = Genesis {
            ledger_id: crate::ids::LedgerId([1; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![key(8)],
            auditor_keys: vec![],
            node_key: genesis_key,
            quorum: 1,
            day_offset_minutes: 0,
        };
        assert_eq!(NodeKeys::decode(&genesis, &keys.encode()), Ok(keys.clone()));
        let mut bytes = keys.encode();
        bytes.push(0);
        assert!(NodeKeys::decode(&genesis, &bytes).is_err());
    }
}
