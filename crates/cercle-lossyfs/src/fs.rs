//! The FUSE side: a passthrough of the backing directory whose file contents go through an
//! [`Overlay`] per file until the application syncs that file.
//!
//! All state sits in one [`State`] behind one mutex, shared with the `Mount` handle, so a power
//! cut happens between two FUSE requests, never inside one. Inode numbers are this filesystem's
//! own: a table maps each to its path below the backing directory, updated by renames. An inode
//! lives until it is unlinked and closed; the kernel's `forget` is ignored.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::libc;

use crate::overlay::{self, Overlay};

/// How long the kernel may cache names and attributes: not at all. A power cut changes file
/// sizes behind the kernel's back, and the application restarted after it must see them.
const TTL: Duration = Duration::ZERO;

/// Every open file bypasses the page cache, so each write reaches this daemon and each read is
/// answered by it: unsynced data lives only in the overlays.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// The state of the whole filesystem.
#[derive(Debug)]
pub(crate) struct State {
    /// The backing directory, canonical.
    root: PathBuf,
    inodes: BTreeMap<u64, Inode>,
    /// Path below `root` → inode, for every inode that still has a name.
    by_path: BTreeMap<PathBuf, u64>,
    handles: BTreeMap<u64, Handle>,
    next_ino: u64,
    next_fh: u64,
    /// The bound on `pending_bytes`; a write that would pass it fails with `ENOSPC`.
    pending_bytes_max: u64,
}

#[derive(Debug)]
struct Inode {
    /// Path below the backing directory; `None` once unlinked (or replaced by a rename).
    path: Option<PathBuf>,
    /// The backing file, open while the file is open or has pending writes.
    file: Option<File>,
    /// Open handles on this inode.
    open_count: u64,
    /// Writes since the last sync; `None` when the backing file is the whole truth.
    overlay: Option<Overlay>,
}

#[derive(Debug)]
enum Handle {
    File { ino: u64 },
    Dir { entries: Vec<DirEntry> },
}

/// What a `setattr` request changes; `None` leaves a field as it is.
#[derive(Debug)]
struct SetAttr {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

/// One directory entry, as listed when the directory was opened.
#[derive(Debug)]
struct DirEntry {
    ino: u64,
    kind: FileType,
    name: OsString,
}

impl State {
    pub(crate) fn new(root: PathBuf, pending_bytes_max: u64) -> State {
        let root_ino = INodeNo::ROOT.0;
        let mut state = State {
            root,
            inodes: BTreeMap::new(),
            by_path: BTreeMap::new(),
            handles: BTreeMap::new(),
            next_ino: root_ino + 1,
            next_fh: 1,
            pending_bytes_max,
        };
        state.by_path.insert(PathBuf::new(), root_ino);
        state.inodes.insert(root_ino, Inode::named(PathBuf::new()));
        state
    }

    /// The memory held for all unsynced writes.
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.inodes.values().filter_map(|inode| inode.overlay.as_ref()).map(Overlay::held_bytes).sum()
    }

    /// Drops every unsynced write; returns the inodes whose content changed and the memory
    /// their pending writes held (whole pages).
    pub(crate) fn power_cut(&mut self) -> (Vec<u64>, u64) {
        let mut changed = Vec::new();
        let mut dropped_bytes = 0;
        for (&ino, inode) in &mut self.inodes {
            if let Some(overlay) = inode.overlay.take() {
                changed.push(ino);
                dropped_bytes += overlay.held_bytes();
            }
        }
        for &ino in &changed {
            self.release_if_idle(ino);
        }
        (changed, dropped_bytes)
    }

    /// A power cut that tears a write: the first `len` bytes of the file at `rel` (below the
    /// root) as the application sees them are written back first, then every unsynced write is
    /// dropped, as [`State::power_cut`] does. A file with nothing pending is left alone.
    pub(crate) fn power_cut_tearing(&mut self, rel: &Path, len: u64) -> io::Result<(Vec<u64>, u64)> {
        let inode = self.by_path.get(rel).and_then(|ino| self.inodes.get(ino));
        if let Some(Inode { overlay: Some(overlay), file: Some(file), .. }) = inode {
            overlay.write_back_prefix(file, len)?;
        }
        Ok(self.power_cut())
    }

    /// The inode of the file at `rel`.
    pub(crate) fn ino_of(&self, rel: &Path) -> io::Result<u64> {
        self.by_path.get(rel).copied().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// The size of the file at `rel` as the application sees it, and its durable size.
    pub(crate) fn sizes(&self, rel: &Path) -> io::Result<(u64, u64)> {
        let durable = fs::metadata(self.backing_path(rel))?.len();
        let overlay =
            self.by_path.get(rel).and_then(|ino| self.inodes.get(ino)).and_then(|i| i.overlay.as_ref());
        Ok((overlay.map_or(durable, Overlay::size), durable))
    }

    /// Makes every unsynced write durable, as a clean shutdown does.
    pub(crate) fn write_back_all(&mut self) -> io::Result<()> {
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            self.sync(ino).map_err(|e| io::Error::from_raw_os_error(e.code()))?;
        }
        Ok(())
    }

    fn inode(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    /// The path below the backing directory of a named inode.
    fn rel_path(&self, ino: u64) -> Result<&Path, Errno> {
        self.inode(ino)?.path.as_deref().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.rel_path(parent)?.join(name))
    }

    fn backing_path(&self, rel: &Path) -> PathBuf {
        backing_path(&self.root, rel)
    }

    /// The inode named `rel`, numbered on first sight.
    fn ino_for(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_path.insert(rel.to_path_buf(), ino);
        self.inodes.insert(ino, Inode::named(rel.to_path_buf()));
        ino
    }

    fn new_handle(&mut self, handle: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, handle);
        fh
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let inode = self.inode(ino)?;
        let metadata = match (&inode.file, &inode.path) {
            (Some(file), _) => file.metadata()?,
            (None, Some(rel)) => fs::symlink_metadata(self.backing_path(rel))?,
            (None, None) => return Err(Errno::ENOENT),
        };
        let mut attr = attr_from_metadata(ino, &metadata)?;
        if let Some(overlay) = &inode.overlay {
            attr.size = overlay.size();
            attr.blocks = overlay.size().div_ceil(512);
        }
        Ok(attr)
    }

    /// The attributes of `rel` if it exists, numbering it on first sight.
    fn entry(&mut self, rel: &Path) -> Result<FileAttr, Errno> {
        fs::symlink_metadata(self.backing_path(rel))?;
        let ino = self.ino_for(rel);
        self.attr(ino)
    }

    fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let rel = self.child(parent, name)?;
        self.entry(&rel)
    }

    fn setattr(&mut self, ino: u64, change: SetAttr) -> Result<FileAttr, Errno> {
        // Metadata changes go to the backing file at once (they are durable); a size change is
        // content, and goes to the overlay.
        let SetAttr { mode, uid, gid, size, atime, mtime } = change;
        let inode = self.inode(ino)?;
        let path = inode.path.as_ref().map(|rel| backing_path(&self.root, rel));
        match (&inode.file, &path) {
            (Some(file), _) => {
                if let Some(mode) = mode {
                    file.set_permissions(Permissions::from_mode(mode & 0o7777))?;
                }
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::fchown(file, uid, gid)?;
                }
                if atime.is_some() || mtime.is_some() {
                    file.set_times(file_times(atime, mtime))?;
                }
            }
            (None, Some(path)) => {
                if let Some(mode) = mode {
                    fs::set_permissions(path, Permissions::from_mode(mode & 0o7777))?;
                }
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::lchown(path, uid, gid)?;
                }
                if atime.is_some() || mtime.is_some() {
                    File::open(path)?.set_times(file_times(atime, mtime))?;
                }
            }
            (None, None) => return Err(Errno::ENOENT),
        }
        if let Some(size) = size {
            self.set_size(ino, size)?;
        }
        self.attr(ino)
    }

    fn set_size(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        let root = &self.root;
        let inode = self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let (overlay, _) = inode.overlay_and_file(root)?;
        overlay.set_size(size);
        Ok(())
    }

    fn read(&mut self, ino: u64, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let root = &self.root;
        let inode = self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        inode.open_backing(root)?;
        let Inode { file: Some(file), overlay, .. } = &*inode else { return Err(Errno::EIO) };
        let data = match overlay {
            Some(overlay) => overlay.read(file, offset, len)?,
            None => overlay::read_durable(file, offset, len)?,
        };
        Ok(data)
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8], open_flags: i32) -> Result<(), Errno> {
        let held = self.pending_bytes();
        let State { root, inodes, pending_bytes_max, .. } = self;
        let inode = inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let (overlay, file) = inode.overlay_and_file(root)?;
        let added = overlay.held_bytes_added_by_write(offset, data.len() as u64);
        if held.saturating_add(added) > *pending_bytes_max {
            return Err(Errno::ENOSPC);
        }
        overlay.write(file, offset, data)?;
        // A write through an O_SYNC or O_DSYNC descriptor (or with RWF_DSYNC) is durable when
        // it returns; the kernel sets O_DSYNC in the flags for all three.
        if open_flags & libc::O_DSYNC != 0 {
            self.sync(ino)?;
        }
        Ok(())
    }

    /// `fallocate`: mode 0 grows the file (the growth is pending like any write), `KEEP_SIZE`
    /// changes nothing visible, anything else is unsupported.
    fn fallocate(&mut self, ino: u64, offset: u64, len: u64, mode: i32) -> Result<(), Errno> {
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        match mode {
            0 => {
                if end > self.attr(ino)?.size {
                    self.set_size(ino, end)?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => self.inode(ino).map(drop),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `fsync` and `fdatasync`: the file's pending content goes to the backing file, which is
    /// then synced.
    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        let inode = self.inode_mut(ino)?;
        if let Some(overlay) = inode.overlay.take() {
            let written = match &inode.file {
                Some(file) => overlay.write_back(file),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            };
            if let Err(e) = written {
                inode.overlay = Some(overlay);
                return Err(e.into());
            }
        }
        self.release_if_idle(ino);
        Ok(())
    }

    fn open(&mut self, ino: u64) -> Result<u64, Errno> {
        let root = &self.root;
        let inode = self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        inode.open_backing(root)?;
        inode.open_count += 1;
        Ok(self.new_handle(Handle::File { ino }))
    }

    fn release(&mut self, fh: u64) {
        if let Some(Handle::File { ino }) = self.handles.remove(&fh) {
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.open_count = inode.open_count.saturating_sub(1);
            }
            self.release_if_idle(ino);
        }
    }

    /// Closes the backing file of an inode that is neither open nor pending, and forgets an
    /// inode that is neither open nor named (with its pending writes: nobody can see them).
    fn release_if_idle(&mut self, ino: u64) {
        let Some(inode) = self.inodes.get_mut(&ino) else { return };
        if inode.open_count > 0 {
            return;
        }
        if inode.path.is_none() {
            self.inodes.remove(&ino);
        } else if inode.overlay.is_none() {
            inode.file = None;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> Result<(FileAttr, u64), Errno> {
        let rel = self.child(parent, name)?;
        let path = self.backing_path(&rel);
        let perm = mode & !umask & 0o7777;
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(perm);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let file = options.open(&path)?;
        // Set the mode again: the daemon's own umask applied to the one above.
        file.set_permissions(Permissions::from_mode(perm))?;
        // Best effort, as an unprivileged passthrough would: only root may give files away.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
        let ino = self.ino_for(&rel);
        let inode = self.inode_mut(ino)?;
        inode.file.get_or_insert(file);
        if flags & libc::O_TRUNC != 0 {
            self.set_size(ino, 0)?;
        }
        let fh = self.open(ino)?;
        Ok((self.attr(ino)?, fh))
    }

    fn mknod(&mut self, parent: u64, name: &OsStr, mode: u32, umask: u32) -> Result<FileAttr, Errno> {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EPERM);
        }
        let rel = self.child(parent, name)?;
        let perm = mode & !umask & 0o7777;
        let file =
            OpenOptions::new().write(true).create_new(true).mode(perm).open(self.backing_path(&rel))?;
        file.set_permissions(Permissions::from_mode(perm))?;
        self.entry(&rel)
    }

    fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
    ) -> Result<FileAttr, Errno> {
        let rel = self.child(parent, name)?;
        let path = self.backing_path(&rel);
        let perm = mode & !umask & 0o7777;
        DirBuilder::new().mode(perm).create(&path)?;
        fs::set_permissions(&path, Permissions::from_mode(perm))?;
        let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        self.entry(&rel)
    }

    fn symlink(
        &mut self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<FileAttr, Errno> {
        let rel = self.child(parent, name)?;
        let path = self.backing_path(&rel);
        std::os::unix::fs::symlink(target, &path)?;
        let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        self.entry(&rel)
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let target = fs::read_link(self.backing_path(self.rel_path(ino)?))?;
        Ok(target.into_os_string().into_vec())
    }

    fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let rel = self.child(parent, name)?;
        fs::remove_file(self.backing_path(&rel))?;
        self.unname(&rel);
        Ok(())
    }

    fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let rel = self.child(parent, name)?;
        fs::remove_dir(self.backing_path(&rel))?;
        self.unname(&rel);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if !RenameFlags::RENAME_NOREPLACE.contains(flags) {
            return Err(Errno::EINVAL);
        }
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        let to_path = self.backing_path(&to);
        // This daemon is the only writer of the backing directory, so check-then-rename is safe.
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && fs::symlink_metadata(&to_path).is_ok() {
            return Err(Errno::EEXIST);
        }
        fs::rename(self.backing_path(&from), &to_path)?;
        if from != to {
            self.unname(&to);
            self.move_names(&from, &to);
        }
        Ok(())
    }

    /// Forgets the name `rel` after it was removed or replaced.
    fn unname(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel) {
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.path = None;
            }
            self.release_if_idle(ino);
        }
    }

    /// Renames `from` to `to` in the inode table, with everything below it.
    fn move_names(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, &ino)| (path.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let Ok(below) = old.strip_prefix(from) else { continue };
            let new = if below.as_os_str().is_empty() { to.to_path_buf() } else { to.join(below) };
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }

    fn opendir(&mut self, ino: u64) -> Result<u64, Errno> {
        let rel = self.rel_path(ino)?.to_path_buf();
        let mut listed = Vec::new();
        for entry in fs::read_dir(self.backing_path(&rel))? {
            let entry = entry?;
            let kind = FileType::from_std(entry.file_type()?).ok_or(Errno::EIO)?;
            listed.push((entry.file_name(), kind));
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let parent_ino = match rel.parent() {
            Some(parent) => self.ino_for(parent),
            None => ino,
        };
        let mut entries = vec![
            DirEntry { ino, kind: FileType::Directory, name: ".".into() },
            DirEntry { ino: parent_ino, kind: FileType::Directory, name: "..".into() },
        ];
        for (name, kind) in listed {
            let ino = self.ino_for(&rel.join(&name));
            entries.push(DirEntry { ino, kind, name });
        }
        Ok(self.new_handle(Handle::Dir { entries }))
    }

    fn readdir(&self, fh: u64, offset: u64, reply: &mut ReplyDirectory) -> Result<(), Errno> {
        let Some(Handle::Dir { entries }) = self.handles.get(&fh) else { return Err(Errno::EBADF) };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, entry) in entries.iter().enumerate().skip(skip) {
            // The offset of an entry is that of the next one.
            if reply.add(INodeNo(entry.ino), i as u64 + 1, entry.kind, &entry.name) {
                break;
            }
        }
        Ok(())
    }

    fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs, Errno> {
        nix::sys::statvfs::statvfs(&self.root).map_err(|e| Errno::from_i32(e as i32))
    }
}

impl Inode {
    fn named(path: PathBuf) -> Inode {
        Inode { path: Some(path), file: None, open_count: 0, overlay: None }
    }

    /// Opens the backing file if it is not open yet.
    fn open_backing(&mut self, root: &Path) -> Result<(), Errno> {
        if self.file.is_none() {
            let rel = self.path.as_ref().ok_or(Errno::ENOENT)?;
            self.file = Some(open_backing(&backing_path(root, rel))?);
        }
        Ok(())
    }

    /// The overlay, started if there was none, and the backing file under it.
    fn overlay_and_file(&mut self, root: &Path) -> Result<(&mut Overlay, &File), Errno> {
        self.open_backing(root)?;
        let Inode { file: Some(file), overlay, .. } = self else { return Err(Errno::EIO) };
        if overlay.is_none() {
            let metadata = file.metadata()?;
            if metadata.is_dir() {
                return Err(Errno::EISDIR);
            }
            *overlay = Some(Overlay::new(metadata.len()));
        }
        let overlay = overlay.as_mut().ok_or(Errno::EIO)?;
        Ok((overlay, file))
    }
}

fn backing_path(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(rel) }
}

/// Opens a backing file for reading and writing (a sync writes it), or read-only where writing
/// is not allowed: then the kernel, checking the mode bits, lets no write through anyway.
fn open_backing(path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS | libc::EISDIR)) => {
            File::open(path)
        }
        opened => opened,
    }
}

fn file_times(atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> FileTimes {
    let resolve = |t| match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    let mut times = FileTimes::new();
    if let Some(t) = atime {
        times = times.set_accessed(resolve(t));
    }
    if let Some(t) = mtime {
        times = times.set_modified(resolve(t));
    }
    times
}

fn attr_from_metadata(ino: u64, m: &fs::Metadata) -> Result<FileAttr, Errno> {
    Ok(FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: system_time(m.atime(), m.atime_nsec()),
        mtime: system_time(m.mtime(), m.mtime_nsec()),
        ctime: system_time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(m.file_type()).ok_or(Errno::EIO)?,
        perm: (m.mode() & 0o7777) as u16,
        nlink: u32::try_from(m.nlink()).unwrap_or(u32::MAX),
        uid: m.uid(),
        gid: m.gid(),
        rdev: u32::try_from(m.rdev()).unwrap_or(0),
        blksize: u32::try_from(m.blksize()).unwrap_or(4096),
        flags: 0,
    })
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = u32::try_from(nsecs).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
        Err(_) => UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nanos),
    }
}

/// Whose `fsync` requests are held back, and how many are waiting: shared with `Mount`, so
/// a test can keep an application inside its sync while it cuts the power.
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    /// (the inode whose syncs are held, requests waiting).
    inner: Mutex<(Option<u64>, u64)>,
    released: Condvar,
}

impl SyncGate {
    pub(crate) fn set_held(&self, held: Option<u64>) {
        self.lock().0 = held;
        if held.is_none() {
            self.released.notify_all();
        }
    }

    pub(crate) fn waiting(&self) -> u64 {
        self.lock().1
    }

    /// Returns once the syncs of `ino` are not held. Called without the state's lock, so that
    /// a power cut can happen while a sync waits here.
    fn pass(&self, ino: u64) {
        let mut inner = self.lock();
        if inner.0 != Some(ino) {
            return;
        }
        inner.1 += 1;
        while inner.0 == Some(ino) {
            inner = self.released.wait(inner).unwrap_or_else(PoisonError::into_inner);
        }
        inner.1 -= 1;
    }

    fn lock(&self) -> MutexGuard<'_, (Option<u64>, u64)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The filesystem that fuser drives: each request locks the state, does its work and replies.
pub(crate) struct LossyFs {
    state: Arc<Mutex<State>>,
    gate: Arc<SyncGate>,
}

impl LossyFs {
    pub(crate) fn new(state: Arc<Mutex<State>>, gate: Arc<SyncGate>) -> LossyFs {
        LossyFs { state, gate }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Locks the state. A panic while it was held leaves it usable: every operation leaves it
/// consistent between its steps.
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.lock().lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr { mode, uid, gid, size, atime, mtime };
        match self.lock().setattr(ino.0, change) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.lock().readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.lock().mknod(parent.0, name, mode, umask));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        reply_entry(reply, self.lock().mkdir(parent.0, name, mode, umask, req.uid(), req.gid()));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.lock().unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.lock().rmdir(parent.0, name));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        reply_entry(reply, self.lock().symlink(parent.0, link_name, target, req.uid(), req.gid()));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.lock().rename(parent.0, name, newparent.0, newname, flags));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.lock().read(ino.0, offset, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Ok(written) = u32::try_from(data.len()) else { return reply.error(Errno::EINVAL) };
        match self.lock().write(ino.0, offset, data, flags.0) {
            Ok(()) => reply.written(written),
            Err(e) => reply.error(e),
        }
    }

    /// Called on every `close`: not a sync, so nothing to do.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.gate.pass(ino.0);
        reply_empty(reply, self.lock().sync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.lock().readdir(fh.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    /// Directory operations are durable as soon as they return, so there is nothing to sync.
    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.lock().statfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                u32::try_from(s.name_max()).unwrap_or(255),
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Not called under `default_permissions`, where the kernel checks the mode bits.
        reply_empty(reply, self.lock().inode(ino.0).map(drop));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.lock().create(parent.0, name, mode, umask, flags, req.uid(), req.gid()) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.lock().fallocate(ino.0, offset, length, mode));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::PAGE_SIZE;

    #[test]
    fn a_write_past_the_pending_bound_fails_with_enospc() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"").unwrap();
        let mut state = State::new(dir.path().to_path_buf(), 2 * PAGE_SIZE);
        let ino = state.lookup(INodeNo::ROOT.0, OsStr::new("f")).unwrap().ino.0;
        let fh = state.open(ino).unwrap();

        state.write(ino, 0, &[1; 2 * PAGE_SIZE as usize], 0).unwrap();
        assert_eq!(state.pending_bytes(), 2 * PAGE_SIZE);
        assert_eq!(state.write(ino, 2 * PAGE_SIZE, &[1], 0), Err(Errno::ENOSPC));
        // Pages already held take more writes.
        state.write(ino, 100, &[2; 100], 0).unwrap();
        // A sync makes room.
        state.sync(ino).unwrap();
        assert_eq!(state.pending_bytes(), 0);
        state.write(ino, 2 * PAGE_SIZE, &[1], 0).unwrap();
        assert_eq!(state.pending_bytes(), PAGE_SIZE);
        state.release(fh);
    }
}
