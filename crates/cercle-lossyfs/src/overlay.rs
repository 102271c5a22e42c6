//! One file's unsynced writes, held in memory on top of the durable content of its backing file.
//!
//! An [`Overlay`] is the difference between what the application sees through the mount and
//! what a power cut would leave: the pages written since the last sync, the file's pending size,
//! and how much of the backing file a pending truncation hides. Reading merges it over the
//! backing file, [`Overlay::write_back`] applies it to the backing file and syncs that, and
//! dropping it is the power cut. The backing file is never written while an overlay exists, so
//! it holds exactly the durable content.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit of what is held in memory, as in the kernel's page cache.
pub(crate) const PAGE_SIZE: u64 = 4096;

/// The pending (unsynced) changes to one file.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// The file's size as the application sees it.
    size: u64,
    /// Backing bytes at or past this offset are hidden: the file was truncated below them since
    /// the last sync. Invariant: at most `size`, and at most the backing file's length.
    durable_visible_len: u64,
    /// The pages written since the last sync, by page index. Each is `PAGE_SIZE` bytes and
    /// stands for its whole span of the file; its bytes at or past `size` are zero.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Overlay {
    /// An overlay with nothing pending yet over a backing file of `durable_len` bytes.
    pub(crate) fn new(durable_len: u64) -> Overlay {
        Overlay { size: durable_len, durable_visible_len: durable_len, pages: BTreeMap::new() }
    }

    /// The file's size as the application sees it.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The memory held for pending writes, in whole pages.
    pub(crate) fn held_bytes(&self) -> u64 {
        page_count_bytes(self.pages.len())
    }

    /// How much `held_bytes` would grow if `len` bytes were written at `offset`.
    pub(crate) fn held_bytes_added_by_write(&self, offset: u64, len: u64) -> u64 {
        let Some((first, last)) = page_span(offset, len) else { return 0 };
        let held = self.pages.range(first..=last).count();
        (last - first + 1).saturating_sub(held as u64).saturating_mul(PAGE_SIZE)
    }

    /// Reads up to `len` bytes at `offset`, short at the end of the file.
    pub(crate) fn read(&self, durable: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; to_usize(end - offset)?];
        let durable_end = end.min(self.durable_visible_len);
        if durable_end > offset {
            read_full_at(durable, &mut buf[..to_usize(durable_end - offset)?], offset)?;
        }
        for (&index, page) in self.pages.range(offset / PAGE_SIZE..=(end - 1) / PAGE_SIZE) {
            let page_start = index * PAGE_SIZE;
            let from = page_start.max(offset);
            let to = (page_start + PAGE_SIZE).min(end);
            buf[to_usize(from - offset)?..to_usize(to - offset)?]
                .copy_from_slice(&page[to_usize(from - page_start)?..to_usize(to - page_start)?]);
        }
        Ok(buf)
    }

    /// Writes `data` at `offset`, growing the file if it ends past the end.
    pub(crate) fn write(&mut self, durable: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return Err(io::Error::from(nix::errno::Errno::EFBIG));
        };
        let durable_visible_len = self.durable_visible_len;
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE_SIZE;
            let page = match self.pages.entry(index) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(load_page(durable, durable_visible_len, index)?),
            };
            let in_page = pos - index * PAGE_SIZE;
            let n = (end - pos).min(PAGE_SIZE - in_page);
            let src = to_usize(pos - offset)?;
            page[to_usize(in_page)?..to_usize(in_page + n)?].copy_from_slice(&data[src..src + to_usize(n)?]);
            pos += n;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the file's size, as `ftruncate` does: bytes past a smaller size are gone, and a
    /// larger size reads as zeros past the old end.
    pub(crate) fn set_size(&mut self, size: u64) {
        if size < self.size {
            drop(self.pages.split_off(&size.div_ceil(PAGE_SIZE)));
            let in_page = size % PAGE_SIZE;
            if in_page != 0
                && let Some(page) = self.pages.get_mut(&(size / PAGE_SIZE))
            {
                // `in_page` is below PAGE_SIZE, so it fits.
                page[in_page as usize..].fill(0);
            }
            self.durable_visible_len = self.durable_visible_len.min(size);
        }
        self.size = size;
    }

    /// Makes the pending content durable: applies it to the backing file, which must be open
    /// for writing, and syncs that file. The overlay is then empty and should be dropped.
    pub(crate) fn write_back(&self, durable: &File) -> io::Result<()> {
        if self.durable_visible_len < durable.metadata()?.len() {
            durable.set_len(self.durable_visible_len)?;
        }
        for (&index, page) in &self.pages {
            let start = index * PAGE_SIZE;
            let len = self.size.saturating_sub(start).min(PAGE_SIZE);
            durable.write_all_at(&page[..to_usize(len)?], start)?;
        }
        if durable.metadata()?.len() != self.size {
            durable.set_len(self.size)?;
        }
        durable.sync_all()
    }
}

impl Overlay {
    /// A torn write-back, the first half of a power cut that tears a write: the first `len`
    /// bytes of the file as the application sees them reach the backing file, which is synced;
    /// what lies past them stays as it was (a pending truncation is not applied). The overlay
    /// must be dropped right after, as [`Overlay::write_back`]'s is: the backing file no longer
    /// holds the durable content alone.
    pub(crate) fn write_back_prefix(&self, durable: &File, len: u64) -> io::Result<()> {
        let end = len.min(self.size);
        // Below the first pending page and the first hidden byte, the file is its backing file.
        let first_page = self.pages.keys().next().map_or(u64::MAX, |index| index * PAGE_SIZE);
        let start = self.durable_visible_len.min(first_page).min(end);
        let data = self.read(durable, start, end - start)?;
        durable.write_all_at(&data, start)?;
        durable.sync_all()
    }
}

/// A page that has no pending write yet, as it reads now: its durable bytes that no truncation
/// hides, then zeros.
fn load_page(durable: &File, durable_visible_len: u64, index: u64) -> io::Result<Box<[u8]>> {
    let mut page = vec![0; PAGE_SIZE as usize].into_boxed_slice();
    let start = index * PAGE_SIZE;
    let visible_end = (start + PAGE_SIZE).min(durable_visible_len);
    if visible_end > start {
        read_full_at(durable, &mut page[..to_usize(visible_end - start)?], start)?;
    }
    Ok(page)
}

/// Reads up to `len` bytes at `offset` of a file that has no overlay.
pub(crate) fn read_durable(durable: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; to_usize(len)?];
    let n = read_full_at(durable, &mut buf, offset)?;
    buf.truncate(n);
    Ok(buf)
}

/// Fills `buf` from `offset`, stopping early only at the end of the file; returns the count.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The first and last page index of a non-empty byte range.
fn page_span(offset: u64, len: u64) -> Option<(u64, u64)> {
    let last_byte = offset.checked_add(len.checked_sub(1)?)?;
    Some((offset / PAGE_SIZE, last_byte / PAGE_SIZE))
}

fn page_count_bytes(pages: usize) -> u64 {
    (pages as u64).saturating_mul(PAGE_SIZE)
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::from(nix::errno::Errno::EFBIG))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    /// One step against an overlay and its backing file, mirrored on a model.
    #[derive(Clone, Debug)]
    enum Op {
        Write { offset: u64, len: usize, seed: u8 },
        SetSize(u64),
        Read { offset: u64, len: u64 },
        Sync,
        PowerCut,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..20_000u64, 1..9_000usize, any::<u8>())
                .prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
            2 => (0..24_000u64).prop_map(Op::SetSize),
            2 => (0..24_000u64, 0..10_000u64).prop_map(|(offset, len)| Op::Read { offset, len }),
            1 => Just(Op::Sync),
            1 => Just(Op::PowerCut),
        ]
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
    }

    /// The model: what the application sees, and what a power cut would leave.
    struct Model {
        current: Vec<u8>,
        durable: Vec<u8>,
    }

    fn run(initial: Vec<u8>, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut backing = tempfile::tempfile().map_err(|e| TestCaseError::fail(e.to_string()))?;
        backing.write_all(&initial).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut model = Model { current: initial.clone(), durable: initial };
        let mut overlay: Option<Overlay> = None;
        let fail = |e: io::Error| TestCaseError::fail(e.to_string());
        for op in ops {
            match op {
                Op::Write { offset, len, seed } => {
                    let data = pattern(len, seed);
                    let durable_len = backing.metadata().map_err(fail)?.len();
                    let ov = overlay.get_or_insert_with(|| Overlay::new(durable_len));
                    let before = ov.held_bytes();
                    let added = ov.held_bytes_added_by_write(offset, len as u64);
                    ov.write(&backing, offset, &data).map_err(fail)?;
                    prop_assert_eq!(ov.held_bytes(), before + added);
                    let end = offset as usize + len;
                    if model.current.len() < end {
                        model.current.resize(end, 0);
                    }
                    model.current[offset as usize..end].copy_from_slice(&data);
                }
                Op::SetSize(size) => {
                    let durable_len = backing.metadata().map_err(fail)?.len();
                    overlay.get_or_insert_with(|| Overlay::new(durable_len)).set_size(size);
                    model.current.resize(size as usize, 0);
                }
                Op::Read { offset, len } => {
                    let got = match &overlay {
                        Some(ov) => ov.read(&backing, offset, len),
                        None => read_durable(&backing, offset, len),
                    }
                    .map_err(fail)?;
                    let from = (offset as usize).min(model.current.len());
                    let to = (offset as usize + len as usize).min(model.current.len());
                    prop_assert_eq!(got, model.current[from..to].to_vec());
                }
                Op::Sync => {
                    if let Some(ov) = overlay.take() {
                        ov.write_back(&backing).map_err(fail)?;
                    }
                    model.durable = model.current.clone();
                }
                Op::PowerCut => {
                    overlay = None;
                    model.current = model.durable.clone();
                }
            }
            // After every step: the whole view, the durable bytes, and the size agree.
            let size = overlay.as_ref().map(Overlay::size);
            let view = match &overlay {
                Some(ov) => ov.read(&backing, 0, u64::MAX),
                None => read_durable(&backing, 0, 1 << 20),
            }
            .map_err(fail)?;
            prop_assert_eq!(&view, &model.current);
            if let Some(size) = size {
                prop_assert_eq!(size, model.current.len() as u64);
            }
            let on_disk = read_durable(&backing, 0, 1 << 20).map_err(fail)?;
            prop_assert_eq!(&on_disk, &model.durable);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn overlay_matches_the_model(
            initial in proptest::collection::vec(any::<u8>(), 0..12_000),
            ops in proptest::collection::vec(op(), 1..24),
        ) {
            run(initial, ops)?;
        }
    }

    fn check(initial: &[u8], ops: Vec<Op>) {
        if let Err(e) = run(initial.to_vec(), ops) {
            panic!("{e}");
        }
    }

    #[test]
    fn truncate_then_grow_reads_zeros_and_syncs_them() {
        check(
            &[7; 10_000],
            vec![Op::SetSize(10), Op::SetSize(9_000), Op::Read { offset: 0, len: 20 }, Op::Sync],
        );
    }

    #[test]
    fn a_write_far_past_the_end_leaves_a_hole() {
        check(b"abc", vec![Op::Write { offset: 100_000, len: 3, seed: 1 }, Op::Sync, Op::PowerCut]);
    }

    #[test]
    fn held_bytes_count_whole_pages_once() {
        let backing = tempfile::tempfile().unwrap();
        let mut ov = Overlay::new(0);
        assert_eq!(ov.held_bytes_added_by_write(4095, 2), 2 * PAGE_SIZE);
        ov.write(&backing, 4095, b"xy").unwrap();
        assert_eq!(ov.held_bytes(), 2 * PAGE_SIZE);
        assert_eq!(ov.held_bytes_added_by_write(0, 8192), 0);
        assert_eq!(ov.held_bytes_added_by_write(0, 8193), PAGE_SIZE);
        assert_eq!(ov.held_bytes_added_by_write(0, 0), 0);
        ov.set_size(4096);
        assert_eq!(ov.held_bytes(), PAGE_SIZE);
    }
}
