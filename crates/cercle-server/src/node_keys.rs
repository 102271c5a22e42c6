//! The node's signing keys on disk (`NodeKeyring`): `node.key`, made at init, and the keys
//! made for rotations (`cercle-node key new`), one file each under `node-keys/`.
//!
//! The ledger's state says which public key signs a tree head of each size
//! (`cercle_core::NodeKeys`); the keyring holds the secrets. Start-up loads every key file
//! and refuses to start without the secret of the key in force; the writer's caller
//! refuses a rotation to a key the keyring cannot load (`NodeKeyring::holds`, which reads
//! the directory again, so a key made while the node runs needs no restart): the node can
//! never be left unable to sign.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cercle_core::sign::{Keypair, decode_key_file};
use cercle_core::{NodeKeys, PublicKey};
use cercle_limits::NODE_KEYS_MAX;

use crate::{DataDir, NodeError, io_err};

/// The node keys whose secrets this node holds.
pub struct NodeKeyring {
    /// The data directory's `node.key` and `node-keys/`.
    files: (PathBuf, PathBuf),
    keys: RwLock<BTreeMap<PublicKey, Arc<Keypair>>>,
}

impl NodeKeyring {
    /// Reads `node.key` (which must be there) and every `*.key` file under `node-keys/`.
    pub fn load(dir: &DataDir) -> Result<NodeKeyring, NodeError> {
        let ring = NodeKeyring { files: (dir.node_key(), dir.node_keys()), keys: RwLock::default() };
        ring.reload()?;
        Ok(ring)
    }

    /// A keyring of the keys given (tests, tools): nothing is read from disk.
    pub fn of(keys: impl IntoIterator<Item = Keypair>) -> NodeKeyring {
        let keys = keys.into_iter().map(|k| (k.public_key(), Arc::new(k))).collect();
        NodeKeyring { files: (PathBuf::new(), PathBuf::new()), keys: RwLock::new(keys) }
    }

    fn reload(&self) -> Result<(), NodeError> {
        let (node_key, extra) = &self.files;
        if node_key.as_os_str().is_empty() {
            return Ok(());
        }
        let mut found = vec![read_key(node_key)?];
        match std::fs::read_dir(extra) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry.map_err(io_err(extra))?.path();
                    if path.extension().is_some_and(|e| e == "key") {
                        found.push(read_key(&path)?);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(extra)(e)),
        }
        if found.len() > NODE_KEYS_MAX {
            return Err(NodeError::Invalid(format!(
                "{} holds {} node keys, more than the {NODE_KEYS_MAX} a ledger has at most",
                extra.display(),
                found.len() - 1
            )));
        }
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for k in found {
            keys.entry(k.public_key()).or_insert_with(|| Arc::new(k));
        }
        Ok(())
    }

    /// The secret of `key`, if this node holds it.
    pub fn get(&self, key: &PublicKey) -> Option<Arc<Keypair>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    /// Whether the node holds the secret of `key`, reading the key files again first if it
    /// does not yet (a key made by `cercle-node key new` while the node runs).
    pub fn holds(&self, key: &PublicKey) -> Result<bool, NodeError> {
        if self.get(key).is_some() {
            return Ok(true);
        }
        self.reload()?;
        Ok(self.get(key).is_some())
    }

    /// The key that signs a tree head of `size` under `history`, with its secret; an error
    /// naming the key when this node lacks it (which start-up and the rotation check rule
    /// out).
    pub fn signer(&self, history: &NodeKeys, size: u64) -> Result<(PublicKey, Arc<Keypair>), NodeError> {
        let key = history.key_for_size(size);
        self.get(&key).map(|k| (key, k)).ok_or_else(|| {
            NodeError::Invalid(format!(
                "the node lacks the secret of node key {key}, in force for a tree of {size} entries"
            ))
        })
    }

    /// Refuses to start a node that cannot sign: it must hold the key in force.
    pub fn check_in_force(&self, history: &NodeKeys) -> Result<(), NodeError> {
        let key = history.current();
        if self.get(&key).is_some() {
            return Ok(());
        }
        let (node_key, extra) = &self.files;
        Err(NodeError::Invalid(format!(
            "the node key in force is {key} (the log's last rotation, or the genesis's), but neither {} nor a file under {} holds its secret: put its key file under {} and start again",
            node_key.display(),
            extra.display(),
            extra.display()
        )))
    }
}

fn read_key(path: &Path) -> Result<Keypair, NodeError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    decode_key_file(&text).map_err(|e| NodeError::Invalid(format!("{}: {e}", path.display())))
}

/// Makes a new node key for a rotation: a key file under `node-keys/`, named by the
/// public key's first hex digits, readable by its owner only. Returns the key and its file.
pub fn new_node_key(dir: &DataDir) -> Result<(PublicKey, PathBuf), NodeError> {
    let keys_dir = dir.node_keys();
    std::fs::create_dir_all(&keys_dir).map_err(io_err(&keys_dir))?;
    let keypair = Keypair::from_seed(&crate::random_seed());
    let public = keypair.public_key();
    let path = keys_dir.join(format!("{}.key", &public.to_hex()[..16]));
    crate::write_key_file(&path, &keypair)?;
    cercle_store::log::sync_dir(&keys_dir)?;
    Ok((public, path))
}
