//! The Merkle tree over the log's entries, as in certificate transparency (RFC 6962 and
//! RFC 9162 §2.1, SHA-256): tree hashes, inclusion and consistency proofs, their verifiers,
//! and the bookkeeping that lets a store serve proofs without holding every leaf in memory.
//!
//! # Levels and indexes
//!
//! A *perfect subtree* `(level, index)` is the complete binary tree over the `2^level`
//! leaves `[index * 2^level, (index + 1) * 2^level)`; level 0 holds the leaf hashes. Its
//! hash never changes once its last leaf is appended. The Merkle Tree Hash (MTH) of any
//! `n` leaves folds, from the right, the perfect subtrees along the binary representation
//! of `n` (largest first), and every sibling in a proof is either one perfect subtree or
//! such a fold. So [`root_of_size`], [`inclusion_proof`] and [`consistency_proof`] ask a
//! [`HashSource`] for O(log n) perfect subtrees and nothing else.
//!
//! # Contract for a store
//!
//! Appending leaf number `n` (0-based, so the log grows to `n + 1` leaves) completes
//! exactly the perfect subtrees `(l, n >> l)` for `l` in `0..=n.trailing_ones()`, listed by
//! [`completed_subtrees`] in increasing level: `(0, n)` is the leaf hash itself and each
//! `(l, i)` above it is `node_hash((l - 1, 2i), (l - 1, 2i + 1))`, the right child being
//! the subtree completed just before it. [`Frontier::push`] returns these subtrees with
//! their hashes. A store that persists every one of them holds all the perfect subtrees
//! of its log (`2n - popcount(n)` hashes for `n` leaves, under two per leaf), and a
//! [`HashSource`] over them answers proofs for every tree size up to `n`. Writing them in
//! the same atomic group as the entry means the store never holds a leaf without the
//! subtrees it completes. On restart, [`Frontier::from_source`] rebuilds the right edge
//! from `popcount(n)` stored subtrees.
//!
//! # Verifying
//!
//! [`verify_inclusion`] and [`verify_consistency`] follow the algorithms of RFC 9162
//! §2.1.3.2 and §2.1.4.2. They check the proof's length against the one the sizes imply
//! before hashing anything, so whatever it is sent a verifier computes at most 64 hashes
//! for an inclusion proof and 130 for a consistency proof.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof does not verify, or why it cannot be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof was asked for or checked from a bigger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNewSize { old_size: u64, new_size: u64 },
    /// The proof has more or fewer hashes than the sizes imply.
    #[error("the proof has {got} hashes, but these sizes call for {expected}")]
    WrongProofLength { got: usize, expected: usize },
    /// An inclusion proof leads to another root than the expected one.
    #[error(
        "the proof leads to root {}, not to the expected root {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    RootMismatch { computed: Hash, expected: Hash },
    /// A consistency proof leads to another old root than the expected one.
    #[error(
        "the proof leads to old root {}, not to the expected old root {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    OldRootMismatch { computed: Hash, expected: Hash },
    /// A consistency proof leads to another new root than the expected one.
    #[error(
        "the proof leads to new root {}, not to the expected new root {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    NewRootMismatch { computed: Hash, expected: Hash },
    /// Two tree heads of the same size with different roots.
    #[error("two trees of {size} leaves have different roots, so they are not the same log")]
    RootsDiffer { size: u64 },
    /// A tree head of size 0 whose root is not [`empty_root`].
    #[error("{} is not the root of an empty tree, which is SHA-256 of nothing", hex::encode(.root))]
    NotEmptyRoot { root: Hash },
    /// Stored frontier hashes that do not match the size's binary representation.
    #[error("a frontier of a tree of {size} leaves has {expected} hashes, not {got}")]
    WrongFrontierLength { size: u64, got: usize, expected: usize },
    /// An append to a tree of `u64::MAX` leaves.
    #[error("the tree already holds the maximum number of leaves, {}", u64::MAX)]
    TreeFull,
}

/// Why a proof or a root could not be produced: the request was invalid, or the store
/// failed to return a perfect subtree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The arguments make no proof: an index or sizes out of range.
    #[error(transparent)]
    Invalid(#[from] MerkleError),
    /// The store failed to return a subtree, or does not hold it.
    #[error("reading a perfect subtree from the store failed: {0}")]
    Source(#[source] E),
}

/// The storage side of proof generation: the hashes of complete perfect subtrees.
pub trait HashSource {
    /// Why a subtree could not be read (missing, I/O, corrupt).
    type Error;

    /// The root of the perfect subtree over leaves `[index * 2^level, (index + 1) * 2^level)`;
    /// level 0 is the leaf hashes. Only complete subtrees are ever asked for: to serve a
    /// tree of `size` leaves, those with `(index + 1) * 2^level <= size`.
    fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// `SHA-256(0x00 || entry)`: the hash of one log entry as a leaf (RFC 9162 §2.1.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256("")`: the root of the tree with no leaves.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The Merkle Tree Hash of `leaf_hashes`, by the recursive definition of RFC 9162 §2.1.1.
/// It needs every leaf hash; [`root_of_size`] and [`Frontier::root`] do not.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            // The largest power of two smaller than the number of leaves.
            let k = 1 << (usize::BITS - 1 - (leaf_hashes.len() - 1).leading_zeros());
            node_hash(&root(&leaf_hashes[..k]), &root(&leaf_hashes[k..]))
        }
    }
}

/// The root of the first `size` leaves of the log behind `source`, from `popcount(size)`
/// perfect subtrees.
pub fn root_of_size<S: HashSource + ?Sized>(size: u64, source: &S) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(source, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// §2.1.3.1), siblings from the leaf up. At most 64 hashes, from O(log size) reads.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    index: u64,
    size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    path(source, 0, index, size).map_err(ProofError::Source)
}

/// The consistency proof that the tree of the first `old_size` leaves is a prefix of the
/// tree of the first `new_size` (RFC 9162 §2.1.4.1). Empty when the sizes are equal or
/// `old_size` is 0. At most 65 hashes, from O(log new_size) reads.
pub fn consistency_proof<S: HashSource + ?Sized>(
    old_size: u64,
    new_size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size > new_size {
        return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size }.into());
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // The old tree's rightmost perfect subtree, then its inclusion path in the new tree.
    // When the old tree is itself perfect the verifier already holds that subtree's hash
    // (the old root), so the proof leaves it out.
    let level = old_size.trailing_zeros();
    let index = (old_size - 1) >> level;
    let mut proof = Vec::new();
    if index != 0 {
        proof.push(source.subtree_hash(level, index).map_err(ProofError::Source)?);
    }
    proof.extend(path(source, level, index, new_size).map_err(ProofError::Source)?);
    Ok(proof)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, with the algorithm of RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = path_len(index, size - 1);
    let wrong_length = MerkleError::WrongProofLength { got: proof.len(), expected };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // RFC 9162 §2.1.3.2, steps 2 to 5; `fn_` is the RFC's `fn`.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch { computed: r, expected: *root });
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree
/// of `new_size` leaves with root `new_root`, with the algorithm of RFC 9162 §2.1.4.2.
///
/// Equal sizes take an empty proof and equal roots. From `old_size` 0 the proof is empty
/// and any new tree is consistent, but `old_root` must be [`empty_root`]: any other value
/// is not a tree head of any log.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return verify_trivial_consistency(old_size, new_size, old_root, new_root, proof);
    }
    let level = old_size.trailing_zeros();
    let index = (old_size - 1) >> level;
    let expected = path_len(index, (new_size - 1) >> level) + usize::from(index != 0);
    let wrong_length = MerkleError::WrongProofLength { got: proof.len(), expected };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // RFC 9162 §2.1.4.2: when the old size is a power of two, the old root is the first
    // value of the path.
    let mut path = proof.iter();
    let seed = if old_size.is_power_of_two() {
        *old_root
    } else {
        match path.next() {
            Some(first) => *first,
            None => return Err(wrong_length),
        }
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in path {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch { computed: fr, expected: *old_root });
    }
    if sr != *new_root {
        return Err(MerkleError::NewRootMismatch { computed: sr, expected: *new_root });
    }
    Ok(())
}

/// `verify_consistency` from an empty tree, or between trees of one size: the proof is
/// empty.
fn verify_trivial_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if !proof.is_empty() {
        return Err(MerkleError::WrongProofLength { got: proof.len(), expected: 0 });
    }
    if old_size == new_size && old_root != new_root {
        return Err(MerkleError::RootsDiffer { size: old_size });
    }
    if old_size == 0 && *old_root != empty_root() {
        return Err(MerkleError::NotEmptyRoot { root: *old_root });
    }
    Ok(())
}

/// The perfect subtrees `(level, index)` that become complete when leaf number
/// `leaf_index` (0-based) is appended, in increasing level: `(l, leaf_index >> l)` for
/// `l` in `0..=leaf_index.trailing_ones()`. A store persists exactly these after each
/// append; [`Frontier::push`] returns the same subtrees with their hashes.
pub fn completed_subtrees(leaf_index: u64) -> impl Iterator<Item = (u32, u64)> {
    // `checked_shr` only drops level 64, the root of 2^64 leaves, which no u64 size reaches.
    (0..=leaf_index.trailing_ones())
        .filter_map(move |level| leaf_index.checked_shr(level).map(|index| (level, index)))
}

/// A perfect subtree and its hash: what a store persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtree {
    /// 0 for a leaf; the subtree covers `2^level` leaves.
    pub level: u32,
    /// The position among the subtrees of its level: it starts at leaf `index * 2^level`.
    pub index: u64,
    /// The subtree's root.
    pub hash: Hash,
}

/// The right edge of the tree (a compact range starting at leaf 0): the hashes of the
/// perfect subtrees along the binary representation of the size, largest first. It gives
/// the root in O(log n) without storage, and tells a store which subtrees each append
/// completes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Invariant: `hashes.len() == size.count_ones()`, so at most [`FRONTIER_HASHES_MAX`].
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// A frontier from its stored parts: `hashes` are the perfect subtrees along the
    /// binary representation of `size`, largest first.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(MerkleError::WrongFrontierLength { size, got: hashes.len(), expected });
        }
        Ok(Frontier { size, hashes })
    }

    /// Rebuilds the frontier of the first `size` leaves from `popcount(size)` stored
    /// perfect subtrees: what a node does on restart.
    pub fn from_source<S: HashSource + ?Sized>(size: u64, source: &S) -> Result<Self, S::Error> {
        let hashes = (0..u64::BITS)
            .rev()
            .filter(|&level| (size >> level) & 1 == 1)
            .map(|level| source.subtree_hash(level, (size >> level) - 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Frontier { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The right-edge perfect subtrees' hashes, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The root of the tree, from at most 63 hash computations.
    pub fn root(&self) -> Hash {
        fold_subtrees(self.hashes.iter().copied()).unwrap_or_else(empty_root)
    }

    /// Appends a leaf and returns the perfect subtrees it completes, with their hashes, in
    /// the order of [`completed_subtrees`]: the store persists all of them. O(log n) hash
    /// computations, amortised one.
    pub fn push(&mut self, leaf_hash: Hash) -> Result<Vec<Subtree>, MerkleError> {
        let index = self.size;
        let size = index.checked_add(1).ok_or(MerkleError::TreeFull)?;
        let mut completed = vec![Subtree { level: 0, index, hash: leaf_hash }];
        // Each trailing one bit of `index` is a right-edge subtree of the same size as the
        // one being carried up: they merge like a binary counter's carries.
        let merges = index.trailing_ones() as usize;
        let keep = self.hashes.len().saturating_sub(merges);
        let mut hash = leaf_hash;
        let mut level = 0;
        for left in self.hashes.drain(keep..).rev() {
            level += 1;
            hash = node_hash(&left, &hash);
            completed.push(Subtree { level, index: index >> level, hash });
        }
        self.hashes.push(hash);
        self.size = size;
        Ok(completed)
    }
}

/// A perfect subtree that a [`MemoryTree`] does not hold (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the perfect subtree at level {level}, index {index} is not complete in this tree")]
pub struct SubtreeMissing {
    /// The level of the subtree asked for.
    pub level: u32,
    /// The index of the subtree asked for.
    pub index: u64,
}

/// Every perfect subtree of a log, in memory: a row of hashes per level. For tests and
/// small logs; a node keeps the same subtrees on disk behind its own [`HashSource`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the perfect subtree `(l, i)`; `levels[l].len() == size >> l`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Appends a leaf hash and the perfect subtrees it completes (those of
    /// [`completed_subtrees`]). O(log n) hash computations, amortised one.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        for level in 0.. {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            // An even count means the new hash is a right child: its parent is complete.
            match row.as_slice() {
                [.., left, right] if row.len().is_multiple_of(2) => hash = node_hash(left, right),
                _ => return,
            }
        }
    }

    /// The root of the whole tree, from the last subtree of each level the size's binary
    /// representation selects.
    pub fn root(&self) -> Hash {
        let size = self.size();
        let right_edge = self
            .levels
            .iter()
            .enumerate()
            .filter(|&(level, _)| (size >> level) & 1 == 1)
            .filter_map(|(_, row)| row.last().copied())
            .rev();
        fold_subtrees(right_edge).unwrap_or_else(empty_root)
    }
}

impl FromIterator<Hash> for MemoryTree {
    fn from_iter<I: IntoIterator<Item = Hash>>(leaf_hashes: I) -> Self {
        let mut tree = MemoryTree::new();
        for leaf in leaf_hashes {
            tree.push(leaf);
        }
        tree
    }
}

impl HashSource for MemoryTree {
    type Error = SubtreeMissing;

    fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, SubtreeMissing> {
        usize::try_from(level)
            .ok()
            .and_then(|l| self.levels.get(l))
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(SubtreeMissing { level, index })
    }
}

/// The MTH of consecutive perfect subtrees given left to right, each smaller than the one
/// before: a fold from the right. `None` for no subtrees.
fn fold_subtrees(left_to_right: impl DoubleEndedIterator<Item = Hash>) -> Option<Hash> {
    left_to_right.rev().reduce(|right, left| node_hash(&left, &right))
}

/// The MTH of leaves `[start, end)`, `start < end`, where `start` is a multiple of the
/// smallest power of two not below `end - start`: the shape of every subtree of an
/// RFC 9162 tree. One read per set bit of `end - start`.
fn range_hash<S: HashSource + ?Sized>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let count = end - start;
    let mut hashes = Vec::with_capacity(count.count_ones() as usize);
    let mut at = start;
    for level in (0..u64::BITS).rev().filter(|&level| (count >> level) & 1 == 1) {
        hashes.push(source.subtree_hash(level, at >> level)?);
        // Cannot overflow: `at + 2^level <= end`.
        at += 1 << level;
    }
    Ok(fold_subtrees(hashes.into_iter()).unwrap_or_else(empty_root))
}

/// The siblings, bottom-up, on the way from the perfect subtree `(level, index)` to the
/// root of the tree of `size` leaves: RFC 9162's PATH, generalised from a leaf to a
/// perfect subtree. At each level the sibling is a perfect subtree on the left, or on the
/// right a perfect subtree or the MTH of the leaves up to `size`; the rightmost subtree of
/// a level has no sibling there, because RFC 9162 lifts it to the level above.
fn path<S: HashSource + ?Sized>(
    source: &S,
    level: u32,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let last = size - 1;
    let mut proof = Vec::new();
    let mut ancestor = index;
    for l in level..u64::BITS {
        let last_at_level = last >> l;
        if last_at_level == 0 {
            break;
        }
        if ancestor & 1 == 1 {
            proof.push(source.subtree_hash(l, ancestor - 1)?);
        } else if ancestor < last_at_level {
            // Cannot overflow: `(ancestor + 1) << l <= last`.
            let start = (ancestor + 1) << l;
            let end = start + (size - start).min(1 << l);
            proof.push(range_hash(source, start, end)?);
        }
        ancestor >>= 1;
    }
    Ok(proof)
}

/// The length of [`path`] from `index` to the root, with `last` the index of the tree's
/// last subtree at the same level: one sibling per level below the one where their paths
/// meet, then one per left sibling above it.
fn path_len(index: u64, last: u64) -> usize {
    let inner = u64::BITS - (index ^ last).leading_zeros();
    (inner + index.checked_shr(inner).unwrap_or(0).count_ones()) as usize
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use cercle_limits::FRONTIER_HASHES_MAX;
    use std::collections::BTreeMap;
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use super::*;

    // Reference vectors of RFC 6962 trees, copied from transparency-dev/merkle,
    // proof/verify_test.go (the `leaves`, `roots`, `inclusionProofs` and
    // `consistencyProofs` tables; the same data as google/certificate-transparency's
    // merkle_tree_test.cc). Their inclusion vectors number leaves from 1; ours from 0.
    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const EMPTY_ROOT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /// `ROOTS[n - 1]` is the root of the first `n` leaves.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(hex_hash: &str) -> Hash {
        hex::decode(hex_hash).unwrap().try_into().unwrap()
    }

    fn reference_leaves() -> Vec<Hash> {
        LEAVES.iter().map(|data| leaf_hash(&hex::decode(data).unwrap())).collect()
    }

    fn reference_root(size: u64) -> Hash {
        if size == 0 { h(EMPTY_ROOT) } else { h(ROOTS[size as usize - 1]) }
    }

    /// Leaf hashes that all differ, so that no two proof hashes are equal by accident.
    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// One tree of 1,024 leaves serves proofs for every size up to 1,024: its perfect
    /// subtrees are those of every smaller tree.
    const BIG: u64 = 1024;
    fn big() -> &'static (Vec<Hash>, MemoryTree) {
        static BIG_TREE: OnceLock<(Vec<Hash>, MemoryTree)> = OnceLock::new();
        BIG_TREE.get_or_init(|| {
            let leaves = leaves(BIG);
            let tree = leaves.iter().copied().collect();
            (leaves, tree)
        })
    }

    // --- The reference model: RFC 9162 §2.1 written out recursively over slices. ---

    fn split(n: usize) -> usize {
        1 << (usize::BITS - 1 - (n - 1).leading_zeros())
    }

    /// PATH(m, D[n]), RFC 9162 §2.1.3.1.
    fn model_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len());
        let (mut p, sibling) = if m < k {
            (model_path(m, &d[..k]), root(&d[k..]))
        } else {
            (model_path(m - k, &d[k..]), root(&d[..k]))
        };
        p.push(sibling);
        p
    }

    /// SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1.
    fn model_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { Vec::new() } else { vec![root(d)] };
        }
        let k = split(d.len());
        let (mut p, sibling) = if m <= k {
            (model_subproof(m, &d[..k], b), root(&d[k..]))
        } else {
            (model_subproof(m - k, &d[k..], false), root(&d[..k]))
        };
        p.push(sibling);
        p
    }

    fn model_consistency(m: usize, d: &[Hash]) -> Vec<Hash> {
        if m == 0 || m == d.len() { Vec::new() } else { model_subproof(m, d, true) }
    }

    /// A store that counts its reads, to check that proofs need O(log n) of them.
    struct Counting<'a> {
        tree: &'a MemoryTree,
        reads: Cell<u32>,
    }

    impl HashSource for Counting<'_> {
        type Error = SubtreeMissing;
        fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, SubtreeMissing> {
            self.reads.set(self.reads.get() + 1);
            self.tree.subtree_hash(level, index)
        }
    }

    /// What a node's store would be: the subtrees `Frontier::push` returned, by key.
    impl HashSource for BTreeMap<(u32, u64), Hash> {
        type Error = SubtreeMissing;
        fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, SubtreeMissing> {
            self.get(&(level, index)).copied().ok_or(SubtreeMissing { level, index })
        }
    }

    // --- Checks shared by the unit and property tests. ---

    fn inclusion_tampered(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Vec<String> {
        let other = leaf_hash(b"other");
        let mut probes: Vec<(String, Hash, u64, u64, Vec<Hash>, Hash)> = vec![
            ("wrong leaf".into(), other, index, size, proof.to_vec(), *root),
            ("wrong root".into(), *leaf, index, size, proof.to_vec(), other),
            ("empty root".into(), *leaf, index, size, proof.to_vec(), empty_root()),
            ("size * 2".into(), *leaf, index, size * 2, proof.to_vec(), *root),
            ("size / 2".into(), *leaf, index, size / 2, proof.to_vec(), *root),
            ("index + 1".into(), *leaf, index + 1, size, proof.to_vec(), *root),
            ("index - 1".into(), *leaf, index.wrapping_sub(1), size, proof.to_vec(), *root),
            ("index ^ 2".into(), *leaf, index ^ 2, size, proof.to_vec(), *root),
        ];
        let mut proofs = altered_proofs(proof, root);
        proofs.push(("appended leaf".into(), [proof, &[*leaf]].concat()));
        for (what, p) in proofs {
            probes.push((what, *leaf, index, size, p, *root));
        }
        probes
            .into_iter()
            .filter(|(_, leaf, index, size, proof, root)| {
                verify_inclusion(leaf, *index, *size, proof, root).is_ok()
            })
            .map(|(what, ..)| what)
            .collect()
    }

    fn consistency_tampered(
        old: u64,
        new: u64,
        old_root: &Hash,
        new_root: &Hash,
        proof: &[Hash],
    ) -> Vec<String> {
        let other = leaf_hash(b"other");
        let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            ("wrong old root".into(), old, new, other, *new_root, proof.to_vec()),
            ("wrong new root".into(), old, new, *old_root, other, proof.to_vec()),
            ("swapped roots".into(), old, new, *new_root, *old_root, proof.to_vec()),
            ("old size - 1".into(), old - 1, new, *old_root, *new_root, proof.to_vec()),
            ("old size + 1".into(), old + 1, new, *old_root, *new_root, proof.to_vec()),
            ("old size ^ 2".into(), old ^ 2, new, *old_root, *new_root, proof.to_vec()),
            ("new size * 2".into(), old, new * 2, *old_root, *new_root, proof.to_vec()),
            ("new size / 2".into(), old, new / 2, *old_root, *new_root, proof.to_vec()),
        ];
        let mut proofs = altered_proofs(proof, old_root);
        proofs.push(("appended new root".into(), [proof, &[*new_root]].concat()));
        if let Some(first) = proof.first() {
            proofs.push(("prepended proof[0]".into(), [&[*first], proof].concat()));
        }
        for (what, p) in proofs {
            probes.push((what, old, new, *old_root, *new_root, p));
        }
        probes
            .into_iter()
            .filter(|(_, old, new, old_root, new_root, proof)| {
                verify_consistency(*old, *new, old_root, new_root, proof).is_ok()
            })
            .map(|(what, ..)| what)
            .collect()
    }

    /// Every way of spoiling a proof: flip a bit of each hash, drop each hash, add one at
    /// either end, swap each adjacent pair.
    fn altered_proofs(proof: &[Hash], root: &Hash) -> Vec<(String, Vec<Hash>)> {
        let mut out = Vec::new();
        for i in 0..proof.len() {
            for bit in [0, 3, 255] {
                let mut p = proof.to_vec();
                p[i][bit / 8] ^= 1 << (bit % 8);
                out.push((format!("bit {bit} of proof[{i}] flipped"), p));
            }
            let mut p = proof.to_vec();
            p.remove(i);
            out.push((format!("proof[{i}] dropped"), p));
        }
        for i in 1..proof.len() {
            let mut p = proof.to_vec();
            p.swap(i - 1, i);
            out.push((format!("proof[{}] and proof[{i}] swapped", i - 1), p));
        }
        out.push(("root prepended".into(), [&[*root], proof].concat()));
        out.push(("zeros appended".into(), [proof, &[[0; 32]]].concat()));
        out.push(("zeros prepended".into(), [&[[0; 32]], proof].concat()));
        out
    }

    /// Generates the inclusion proof of `index` in the tree of `size` leaves from the big
    /// tree, checks it against the RFC model (if `model`), verifies it, and checks that
    /// every tampered variant fails.
    fn check_inclusion_everything(index: u64, size: u64, model: bool, tamper: bool) {
        let (leaves, tree) = big();
        let root = root_of_size(size, tree).unwrap();
        let proof = inclusion_proof(index, size, tree).unwrap();
        assert_eq!(proof.len(), path_len(index, size - 1));
        if model {
            assert_eq!(proof, model_path(index as usize, &leaves[..size as usize]), "{index} in {size}");
        }
        let leaf = leaves[index as usize];
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()), "{index} in {size}");
        if tamper {
            let accepted = inclusion_tampered(&leaf, index, size, &proof, &root);
            assert!(accepted.is_empty(), "{index} in {size}: accepted {accepted:?}");
        }
    }

    fn check_consistency_everything(old: u64, new: u64, model: bool, tamper: bool) {
        let (leaves, tree) = big();
        let (old_root, new_root) = (root_of_size(old, tree).unwrap(), root_of_size(new, tree).unwrap());
        let proof = consistency_proof(old, new, tree).unwrap();
        if model {
            assert_eq!(proof, model_consistency(old as usize, &leaves[..new as usize]), "{old} to {new}");
        }
        assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()), "{old} to {new}");
        if tamper && 0 < old && old < new {
            let accepted = consistency_tampered(old, new, &old_root, &new_root, &proof);
            assert!(accepted.is_empty(), "{old} to {new}: accepted {accepted:?}");
        }
    }

    // --- Reference vectors. ---

    /// Checks the proof of leaf `index` (0-based) in the reference tree of `size` leaves.
    fn check_inclusion(index: u64, size: u64, expected: &[&str]) {
        let leaves = reference_leaves();
        let tree: MemoryTree = leaves.iter().copied().collect();
        let proof = inclusion_proof(index, size, &tree).unwrap();
        let hexes: Vec<String> = proof.iter().map(hex::encode).collect();
        assert_eq!(hexes, expected, "leaf {index} in {size}");
        let root = reference_root(size);
        assert_eq!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root), Ok(()));
        let accepted = inclusion_tampered(&leaves[index as usize], index, size, &proof, &root);
        assert!(accepted.is_empty(), "leaf {index} in {size}: accepted {accepted:?}");
    }

    fn check_consistency(old: u64, new: u64, expected: &[&str]) {
        let tree: MemoryTree = reference_leaves().into_iter().collect();
        let proof = consistency_proof(old, new, &tree).unwrap();
        let hexes: Vec<String> = proof.iter().map(hex::encode).collect();
        assert_eq!(hexes, expected, "{old} to {new}");
        let (old_root, new_root) = (reference_root(old), reference_root(new));
        assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
        if 0 < old && old < new {
            let accepted = consistency_tampered(old, new, &old_root, &new_root, &proof);
            assert!(accepted.is_empty(), "{old} to {new}: accepted {accepted:?}");
        }
    }

    #[test]
    fn roots_match_the_reference_vectors() {
        let leaves = reference_leaves();
        assert_eq!(empty_root(), h(EMPTY_ROOT));
        assert_eq!(root(&[]), h(EMPTY_ROOT));
        let mut tree = MemoryTree::new();
        let mut frontier = Frontier::new();
        assert_eq!(tree.root(), h(EMPTY_ROOT));
        assert_eq!(frontier.root(), h(EMPTY_ROOT));
        for size in 1..=8 {
            let expected = reference_root(size);
            tree.push(leaves[size as usize - 1]);
            frontier.push(leaves[size as usize - 1]).unwrap();
            assert_eq!(root(&leaves[..size as usize]), expected, "size {size}");
            assert_eq!(tree.root(), expected, "size {size}");
            assert_eq!(frontier.root(), expected, "size {size}");
            assert_eq!(root_of_size(size, &tree), Ok(expected), "size {size}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference_vectors() {
        check_inclusion(0, 1, &[]);
        check_inclusion(
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        );
        check_inclusion(
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        check_inclusion(2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]);
        check_inclusion(
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        );
    }

    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        check_consistency(0, 0, &[]);
        check_consistency(0, 8, &[]);
        check_consistency(1, 1, &[]);
        check_consistency(8, 8, &[]);
        check_consistency(
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        );
        check_consistency(
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        check_consistency(
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        );
        check_consistency(
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
    }

    // --- Edge cases and errors. ---

    fn check_verify_inclusion(index: u64, size: u64, proof: &[Hash], expected: Result<(), MerkleError>) {
        let leaf = leaf_hash(b"leaf");
        let root = if size == 1 { leaf } else { leaf_hash(b"root") };
        assert_eq!(verify_inclusion(&leaf, index, size, proof, &root), expected, "{index} in {size}");
    }

    #[test]
    fn inclusion_edge_cases() {
        let x = leaf_hash(b"x");
        check_verify_inclusion(0, 1, &[], Ok(()));
        check_verify_inclusion(0, 1, &[x], Err(MerkleError::WrongProofLength { got: 1, expected: 0 }));
        check_verify_inclusion(0, 0, &[], Err(MerkleError::IndexOutOfRange { index: 0, size: 0 }));
        check_verify_inclusion(1, 1, &[], Err(MerkleError::IndexOutOfRange { index: 1, size: 1 }));
        check_verify_inclusion(2, 1, &[], Err(MerkleError::IndexOutOfRange { index: 2, size: 1 }));
        check_verify_inclusion(0, 2, &[], Err(MerkleError::WrongProofLength { got: 0, expected: 1 }));
        check_verify_inclusion(
            u64::MAX - 1,
            u64::MAX,
            &[x; 65],
            Err(MerkleError::WrongProofLength { got: 65, expected: 63 }),
        );
        let computed = node_hash(&leaf_hash(b"leaf"), &x);
        check_verify_inclusion(
            0,
            2,
            &[x],
            Err(MerkleError::RootMismatch { computed, expected: leaf_hash(b"root") }),
        );

        let tree: MemoryTree = leaves(5).into_iter().collect();
        assert_eq!(
            inclusion_proof(5, 5, &tree),
            Err(ProofError::Invalid(MerkleError::IndexOutOfRange { index: 5, size: 5 }))
        );
        assert_eq!(
            inclusion_proof(0, 0, &tree),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 }.into())
        );
        // Asking for a tree bigger than the store holds is the store's error.
        assert_eq!(
            inclusion_proof(0, 6, &tree),
            Err(ProofError::Source(SubtreeMissing { level: 1, index: 2 }))
        );
        assert_eq!(root_of_size(6, &tree), Err(SubtreeMissing { level: 1, index: 2 }));
    }

    fn check_verify_consistency(
        (old, new): (u64, u64),
        (old_root, new_root): (Hash, Hash),
        proof: &[Hash],
        expected: Result<(), MerkleError>,
    ) {
        assert_eq!(verify_consistency(old, new, &old_root, &new_root, proof), expected, "{old} to {new}");
    }

    #[test]
    fn consistency_edge_cases() {
        let (e, x, y) = (empty_root(), leaf_hash(b"x"), leaf_hash(b"y"));
        check_verify_consistency((0, 0), (e, e), &[], Ok(()));
        check_verify_consistency((0, 5), (e, x), &[], Ok(()));
        check_verify_consistency((1, 1), (x, x), &[], Ok(()));
        check_verify_consistency((7, 7), (x, x), &[], Ok(()));
        check_verify_consistency((0, 0), (e, x), &[], Err(MerkleError::RootsDiffer { size: 0 }));
        check_verify_consistency((0, 0), (x, x), &[], Err(MerkleError::NotEmptyRoot { root: x }));
        check_verify_consistency((0, 3), (x, y), &[], Err(MerkleError::NotEmptyRoot { root: x }));
        check_verify_consistency((1, 1), (x, y), &[], Err(MerkleError::RootsDiffer { size: 1 }));
        check_verify_consistency(
            (1, 0),
            (x, e),
            &[],
            Err(MerkleError::OldSizeExceedsNewSize { old_size: 1, new_size: 0 }),
        );
        check_verify_consistency(
            (0, 1),
            (e, x),
            &[e],
            Err(MerkleError::WrongProofLength { got: 1, expected: 0 }),
        );
        check_verify_consistency(
            (1, 1),
            (x, x),
            &[e],
            Err(MerkleError::WrongProofLength { got: 1, expected: 0 }),
        );
        check_verify_consistency(
            (1, 2),
            (x, y),
            &[],
            Err(MerkleError::WrongProofLength { got: 0, expected: 1 }),
        );
        check_verify_consistency(
            (1, 2),
            (x, y),
            &[x],
            Err(MerkleError::NewRootMismatch { computed: node_hash(&x, &x), expected: y }),
        );
        // Old size 3 = 0b11: the proof starts with the old tree's last leaf, (0, 2).
        let l: Vec<Hash> = leaves(4);
        let (r3, r4) = (root(&l[..3]), root(&l));
        check_verify_consistency((3, 4), (r3, r4), &[l[2], l[3], node_hash(&l[0], &l[1])], Ok(()));
        check_verify_consistency(
            (3, 4),
            (x, r4),
            &[l[2], l[3], node_hash(&l[0], &l[1])],
            Err(MerkleError::OldRootMismatch { computed: r3, expected: x }),
        );

        let tree: MemoryTree = l.into_iter().collect();
        assert_eq!(
            consistency_proof(4, 3, &tree),
            Err(MerkleError::OldSizeExceedsNewSize { old_size: 4, new_size: 3 }.into())
        );
        assert_eq!(
            consistency_proof(3, 5, &tree),
            Err(ProofError::Source(SubtreeMissing { level: 0, index: 4 }))
        );
    }

    #[test]
    fn errors_name_the_numbers() {
        let e = MerkleError::RootMismatch { computed: [0xab; 32], expected: [0xcd; 32] };
        assert_eq!(
            e.to_string(),
            format!(
                "the proof leads to root {}, not to the expected root {}",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
        let e = MerkleError::WrongProofLength { got: 2, expected: 3 };
        assert_eq!(e.to_string(), "the proof has 2 hashes, but these sizes call for 3");
        let e: ProofError<SubtreeMissing> = ProofError::Source(SubtreeMissing { level: 1, index: 2 });
        assert_eq!(
            e.to_string(),
            "reading a perfect subtree from the store failed: \
             the perfect subtree at level 1, index 2 is not complete in this tree"
        );
    }

    #[test]
    fn completed_subtrees_are_those_a_push_completes() {
        let expected: [&[(u32, u64)]; 8] = [
            &[(0, 0)],
            &[(0, 1), (1, 0)],
            &[(0, 2)],
            &[(0, 3), (1, 1), (2, 0)],
            &[(0, 4)],
            &[(0, 5), (1, 2)],
            &[(0, 6)],
            &[(0, 7), (1, 3), (2, 1), (3, 0)],
        ];
        for (n, expected) in expected.iter().enumerate() {
            assert_eq!(completed_subtrees(n as u64).collect::<Vec<_>>(), *expected, "leaf {n}");
        }
        assert_eq!(completed_subtrees(u64::MAX).count(), 64);
        assert_eq!(completed_subtrees(u64::MAX - 1).collect::<Vec<_>>(), [(0, u64::MAX - 1)]);

        let (leaves, tree) = big();
        let mut frontier = Frontier::new();
        let mut stored = 0;
        for (n, leaf) in leaves.iter().enumerate() {
            let completed = frontier.push(*leaf).unwrap();
            let keys: Vec<(u32, u64)> = completed.iter().map(|s| (s.level, s.index)).collect();
            assert_eq!(keys, completed_subtrees(n as u64).collect::<Vec<_>>());
            for s in &completed {
                assert_eq!(tree.subtree_hash(s.level, s.index), Ok(s.hash), "{s:?}");
            }
            stored += completed.len() as u64;
            let size = n as u64 + 1;
            assert_eq!(stored, 2 * size - u64::from(size.count_ones()));
        }
    }

    #[test]
    fn frontier_parts_and_limits() {
        let (_, tree) = big();
        let frontier = Frontier::from_source(1000, tree).unwrap();
        assert_eq!(frontier.hashes().len(), 1000u64.count_ones() as usize);
        assert_eq!(frontier.root(), root_of_size(1000, tree).unwrap());
        let rebuilt = Frontier::from_parts(frontier.size(), frontier.hashes().to_vec()).unwrap();
        assert_eq!(rebuilt, frontier);
        assert_eq!(
            Frontier::from_parts(3, vec![[0; 32]]),
            Err(MerkleError::WrongFrontierLength { size: 3, got: 1, expected: 2 })
        );
        assert_eq!(Frontier::from_source(1025, tree), Err(SubtreeMissing { level: 0, index: 1024 }));

        let mut full = Frontier::from_parts(u64::MAX, vec![[7; 32]; FRONTIER_HASHES_MAX]).unwrap();
        assert_eq!(full.push([1; 32]), Err(MerkleError::TreeFull));
        assert_eq!(full.size(), u64::MAX);
        let mut almost = Frontier::from_parts(u64::MAX - 1, vec![[7; 32]; FRONTIER_HASHES_MAX - 1]).unwrap();
        let completed = almost.push([1; 32]).unwrap();
        assert_eq!(completed, [Subtree { level: 0, index: u64::MAX - 1, hash: [1; 32] }]);
        assert_eq!(almost.hashes().len(), FRONTIER_HASHES_MAX);
    }

    #[test]
    fn proofs_read_logarithmically_many_subtrees() {
        let (_, tree) = big();
        let source = Counting { tree, reads: Cell::new(0) };
        for size in [1, 2, 3, 5, 127, 128, 129, 500, 767, 1000, 1023, 1024] {
            let height = u64::BITS - (size - 1u64).leading_zeros();
            let bound = 2 * height + 1;
            for index in
                [0, 1, size / 3, size / 2, size.saturating_sub(2), size - 1].into_iter().filter(|&i| i < size)
            {
                source.reads.set(0);
                inclusion_proof(index, size, &source).unwrap();
                assert!(source.reads.get() <= bound, "{index} in {size}: {} reads", source.reads.get());
            }
            for old in [1, 2, 3, size / 3, size / 2, size - 1].into_iter().filter(|&o| 0 < o && o < size) {
                source.reads.set(0);
                consistency_proof(old, size, &source).unwrap();
                assert!(source.reads.get() <= bound, "{old} to {size}: {} reads", source.reads.get());
            }
            source.reads.set(0);
            root_of_size(size, &source).unwrap();
            assert_eq!(source.reads.get(), size.count_ones());
        }
    }

    // --- Exhaustive sweeps over small trees. ---

    #[test]
    fn every_inclusion_proof_up_to_300_leaves_verifies() {
        for size in 1..=300 {
            for index in 0..size {
                check_inclusion_everything(index, size, size <= 64, size <= 24);
            }
        }
    }

    #[test]
    fn every_consistency_proof_up_to_130_leaves_verifies() {
        for new in 0..=130 {
            for old in 0..=new {
                check_consistency_everything(old, new, new <= 64, new <= 24);
            }
        }
    }

    #[test]
    fn roots_of_every_size_agree() {
        let (leaves, tree) = big();
        let mut frontier = Frontier::new();
        let mut memory = MemoryTree::new();
        for size in 0..=BIG {
            let expected = root(&leaves[..size as usize]);
            assert_eq!(root_of_size(size, tree), Ok(expected), "size {size}");
            assert_eq!(frontier.root(), expected, "size {size}");
            assert_eq!(memory.root(), expected, "size {size}");
            assert_eq!(Frontier::from_source(size, tree).as_ref(), Ok(&frontier), "size {size}");
            if let Some(leaf) = leaves.get(size as usize) {
                frontier.push(*leaf).unwrap();
                memory.push(*leaf);
            }
        }
    }

    // --- Property tests. ---

    fn config(cases: u32) -> Config {
        // No regression files: tests must not write into the source tree.
        Config { cases, failure_persistence: None, ..Config::default() }
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn random_inclusion_proofs_verify_and_resist_tampering(
            (size, index) in (1..=BIG).prop_flat_map(|size| (Just(size), 0..size))
        ) {
            check_inclusion_everything(index, size, true, true);
        }

        #[test]
        fn random_consistency_proofs_verify_and_resist_tampering(
            (old, new) in (1..=BIG).prop_flat_map(|new| (0..=new, Just(new)))
        ) {
            check_consistency_everything(old, new, true, true);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Appends this many leaves, made from the step number and the given bytes.
        Append(u16, Vec<u8>),
        /// Throws the frontier away and rebuilds it from the store, as a node restarting.
        Restart,
        /// Proves leaf `seed % (size + 1)`: one in `size + 1` is out of range.
        ProveInclusion(u64),
        /// Proves sizes `a % (size + 1)` to `b % (size + 1)`, in either order.
        ProveConsistency(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (1u16..=3, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(n, b)| Op::Append(n, b)),
            1 => (1u16..=200, Just(Vec::new())).prop_map(|(n, b)| Op::Append(n, b)),
            1 => Just(Op::Restart),
            2 => any::<u64>().prop_map(Op::ProveInclusion),
            2 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Op::ProveConsistency(a, b)),
        ]
    }

    proptest! {
        #![proptest_config(config(48))]

        /// A node's life against the RFC model: the frontier in memory, the subtrees it
        /// completes in a store, restarts from the store, and proofs served from it.
        #[test]
        fn a_log_served_from_its_stored_subtrees_matches_the_model(
            ops in prop::collection::vec(op(), 1..24)
        ) {
            let mut model: Vec<Hash> = Vec::new();
            let mut frontier = Frontier::new();
            let mut store: BTreeMap<(u32, u64), Hash> = BTreeMap::new();
            let mut memory = MemoryTree::new();
            for (step, op) in ops.into_iter().enumerate() {
                let size = model.len() as u64;
                match op {
                    Op::Append(count, bytes) => {
                        for k in 0..count {
                            let leaf = leaf_hash(&[&(step as u64).to_be_bytes()[..], &k.to_be_bytes(), &bytes].concat());
                            let index = model.len() as u64;
                            model.push(leaf);
                            memory.push(leaf);
                            let completed = frontier.push(leaf).unwrap();
                            let keys: Vec<(u32, u64)> = completed.iter().map(|s| (s.level, s.index)).collect();
                            prop_assert_eq!(keys, completed_subtrees(index).collect::<Vec<_>>());
                            for s in completed {
                                prop_assert_eq!(store.insert((s.level, s.index), s.hash), None);
                            }
                        }
                    }
                    Op::Restart => {
                        let rebuilt = Frontier::from_source(size, &store).unwrap();
                        prop_assert_eq!(&rebuilt, &frontier);
                        frontier = rebuilt;
                    }
                    Op::ProveInclusion(seed) => {
                        let index = seed % (size + 1);
                        match inclusion_proof(index, size, &store) {
                            Ok(proof) => {
                                prop_assert_eq!(&proof, &model_path(index as usize, &model));
                                let (leaf, root) = (model[index as usize], frontier.root());
                                prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
                                let accepted = inclusion_tampered(&leaf, index, size, &proof, &root);
                                prop_assert!(accepted.is_empty(), "accepted {:?}", accepted);
                            }
                            Err(e) => {
                                prop_assert_eq!(index, size);
                                prop_assert_eq!(e, ProofError::Invalid(MerkleError::IndexOutOfRange { index, size }));
                            }
                        }
                    }
                    Op::ProveConsistency(a, b) => {
                        let (old, new) = (a % (size + 1), b % (size + 1));
                        let (old_root, new_root) = (root(&model[..old as usize]), root(&model[..new as usize]));
                        match consistency_proof(old, new, &store) {
                            Ok(proof) => {
                                prop_assert_eq!(&proof, &model_consistency(old as usize, &model[..new as usize]));
                                prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
                                if 0 < old && old < new {
                                    let accepted = consistency_tampered(old, new, &old_root, &new_root, &proof);
                                    prop_assert!(accepted.is_empty(), "accepted {:?}", accepted);
                                }
                            }
                            Err(e) => {
                                let expected = MerkleError::OldSizeExceedsNewSize { old_size: old, new_size: new };
                                prop_assert!(old > new);
                                prop_assert_eq!(e, ProofError::Invalid(expected));
                                prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &[]), Err(expected));
                            }
                        }
                    }
                }
                // Invariants after every step.
                let size = model.len() as u64;
                let expected = root(&model);
                prop_assert_eq!(frontier.size(), size);
                prop_assert_eq!(frontier.root(), expected);
                prop_assert_eq!(memory.root(), expected);
                prop_assert_eq!(root_of_size(size, &store), Ok(expected));
                prop_assert_eq!(store.len() as u64, 2 * size - u64::from(size.count_ones()));
            }
        }
    }
}
