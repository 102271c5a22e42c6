//! The log's index, in memory: where each entry is in the file, and the Merkle tree over
//! the entries' hashes. Both are rebuilt from the log by the start-up scan (which reads
//! every record anyway) and extended as groups are appended, so nothing of them is written
//! to disk: 8 bytes per entry for the position, and of the tree only the subtrees of 64
//! entries and above (one hash per 32 entries). A proof that needs a lower subtree reads
//! the 64 entries of its block from the log (about 20 KB) and hashes them again.

use cercle_core::merkle::{self, Hash, MemoryTree};

use crate::log::RecordPos;

/// Entries per block: the lowest level of the tree kept in memory is level `BLOCK_LEVEL`.
pub const BLOCK_LEVEL: u32 = 6;
pub const BLOCK_ENTRIES: u64 = 1 << BLOCK_LEVEL;

#[derive(Debug, Default)]
pub struct LogIndex {
    /// `positions[i]` is entry `i + 1`.
    positions: Vec<RecordPos>,
    /// One leaf per complete block: the root of its 64 entries.
    blocks: MemoryTree,
    /// The hashes of the entries of the last, incomplete block.
    partial: Vec<Hash>,
}

impl LogIndex {
    /// The number of entries indexed.
    pub fn size(&self) -> u64 {
        self.positions.len() as u64
    }

    /// Indexes the next entry.
    pub fn push(&mut self, pos: RecordPos, hash: Hash) {
        self.positions.push(pos);
        self.partial.push(hash);
        if self.partial.len() as u64 == BLOCK_ENTRIES {
            self.blocks.push(merkle::root(&self.partial));
            self.partial.clear();
        }
    }

    /// Where entry `sequence` is, if indexed.
    pub fn position(&self, sequence: u64) -> Option<RecordPos> {
        let i = usize::try_from(sequence.checked_sub(1)?).ok()?;
        self.positions.get(i).copied()
    }

    /// The root of the whole log as indexed. The perfect subtrees of the size's binary
    /// decomposition are complete blocks' subtrees (level 6 and up) or lie in the partial
    /// block, so no log read is needed.
    pub fn root(&self) -> Hash {
        match merkle::root_of_size(self.size(), &PartialSource { index: self }) {
            Ok(root) => root,
            Err(()) => panic!("invariant broken: the index lacks a subtree of its own root"),
        }
    }

    /// The hash of a complete subtree at `level >= BLOCK_LEVEL`, or of any subtree within
    /// the partial block; `None` for a lower subtree of a complete block (read it from the
    /// log).
    pub fn subtree(&self, level: u32, index: u64) -> Option<Hash> {
        if level >= BLOCK_LEVEL {
            return merkle::HashSource::subtree_hash(&self.blocks, level - BLOCK_LEVEL, index).ok();
        }
        let first = index << level;
        let block = first / BLOCK_ENTRIES;
        if block != self.blocks.size() {
            return None;
        }
        let start = (first % BLOCK_ENTRIES) as usize;
        let leaves = self.partial.get(start..start + (1usize << level))?;
        Some(merkle::root(leaves))
    }

    /// The positions of the entries of block `block`.
    pub fn block_positions(&self, block: u64) -> &[RecordPos] {
        let start = (block * BLOCK_ENTRIES) as usize;
        let end = (start + BLOCK_ENTRIES as usize).min(self.positions.len());
        self.positions.get(start..end).unwrap_or(&[])
    }
}

/// Subtrees the index holds without reading the log (the root needs no others: its
/// subtrees are complete blocks' and the partial block's).
struct PartialSource<'a> {
    index: &'a LogIndex,
}

impl merkle::HashSource for PartialSource<'_> {
    type Error = ();

    fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, ()> {
        self.index.subtree(level, index).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_gives_the_roots_a_full_tree_gives() {
        let mut index = LogIndex::default();
        let mut tree = MemoryTree::new();
        for i in 0..300u64 {
            let hash = merkle::leaf_hash(&i.to_be_bytes());
            index.push(RecordPos { offset: i, len: 1 }, hash);
            tree.push(hash);
            assert_eq!(index.root(), tree.root(), "size {}", i + 1);
        }
        assert_eq!(index.position(300), Some(RecordPos { offset: 299, len: 1 }));
        assert_eq!(index.position(301), None);
        assert_eq!(index.position(0), None);
        // Within a complete block, low subtrees must be read from the log.
        assert_eq!(index.subtree(2, 0), None);
        assert_eq!(index.subtree(6, 1), merkle::HashSource::subtree_hash(&tree, 6, 1).ok());
        assert_eq!(index.subtree(2, 64 + 1), merkle::HashSource::subtree_hash(&tree, 2, 65).ok());
    }
}
