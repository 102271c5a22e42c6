//! A FUSE filesystem for crash tests: it mirrors a backing directory, keeps every write that was
//! not synced in memory, and drops all of them at a simulated power cut.
//!
//! [`Mount::new`] mounts it; an application under test works in the mount point; the test kills
//! the application, calls [`Mount::power_cut`], and restarts the application on the same mount,
//! which now shows exactly what a machine would show after losing power and rebooting.
//!
//! # The contract
//!
//! - **Contents are volatile until synced.** `write`, `truncate`/`ftruncate`/`O_TRUNC` and a
//!   growing `fallocate` are held in memory per file, over the backing file's durable content.
//!   This includes the content of a file just created. Reads through the mount see everything.
//! - **A sync makes one file's content durable.** `fsync` or `fdatasync` on a file writes its
//!   pending content to the backing file and `sync_all`s that. So does a write through an
//!   `O_SYNC` or `O_DSYNC` descriptor (or with `RWF_DSYNC`), as it must be durable on return.
//! - **Nothing else syncs.** `close` (FUSE `flush`) and `sync_file_range` do not: the kernel
//!   never forwards `sync_file_range` to FUSE, which is why this filesystem catches software
//!   that uses it in place of `fsync`. Neither do `sync(2)` and `syncfs(2)`, which the kernel
//!   does not forward to this filesystem either.
//! - **Namespace and metadata operations are durable at once** (a simplification): `create`,
//!   `mkdir`, `symlink`, `unlink`, `rmdir`, `rename`, `chmod`, `chown` and `utimes` are applied
//!   to the backing directory before they return, and a power cut does not undo them. A pending
//!   write follows its file through a rename. So a file created, written and renamed without a
//!   sync survives a power cut under its new name, empty: the classic lost-rename-without-fsync.
//! - **A power cut is atomic.** [`Mount::power_cut`] drops every pending write of every file
//!   between two FUSE requests, and says how much it dropped. Open descriptors stay usable and
//!   see the durable content. [`Mount::power_cut_tearing`] first writes back a prefix of one
//!   file, as a disk that lost power in the middle of writing it back would: a torn write.
//! - **A clean unmount is a clean shutdown.** [`Mount::unmount`] (and dropping the [`Mount`])
//!   writes every pending write back, as a clean shutdown flushes the page cache.
//!
//! # How the kernel is kept out of the way
//!
//! Every open file gets `FOPEN_DIRECT_IO`, so each application write reaches this daemon and
//! each read is answered by it; the writeback cache is never requested; names and attributes are
//! cached for zero seconds, so sizes are right right after a power cut. With `direct_io` the
//! kernel refuses shared writable `mmap` (`ENODEV`); private maps work. File locks (`flock`,
//! `fcntl`) are not forwarded to FUSE, so the kernel keeps them locally: sled's `fs2` lock works,
//! and a killed process loses its locks as usual. Permissions are the backing files' mode bits,
//! checked by the kernel (`default_permissions`).
//!
//! # Limits and gaps
//!
//! At most [`PENDING_BYTES_MAX`] bytes of pages are held; a write that would hold more fails
//! with `ENOSPC` rather than quietly become durable. Hard links, extended attributes, `mknod` of
//! anything but a regular file, `RENAME_EXCHANGE` and `fallocate` modes other than plain and
//! `KEEP_SIZE` are refused. Times are the backing file's: a pending write does not move `mtime`.
//! The daemon serves one request at a time. Nothing else may write the backing directory while
//! it is mounted.

mod fs;
mod overlay;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier};

use crate::fs::{LossyFs, State, SyncGate};

/// The most memory all pending writes together may hold.
pub const PENDING_BYTES_MAX: u64 = 1 << 30;

/// How long [`Mount::new`] waits for the mount to answer.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A mounted lossy filesystem. Unmounts on drop, as [`Mount::unmount`] does.
pub struct Mount {
    state: Arc<Mutex<State>>,
    gate: Arc<SyncGate>,
    /// `None` once unmounted.
    session: Option<BackgroundSession>,
    notifier: Notifier,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount").field("mountpoint", &self.mountpoint).finish_non_exhaustive()
    }
}

impl Mount {
    /// Mounts a lossy mirror of the directory `backing` on the directory `mountpoint`, served by
    /// a background thread, and returns once the mount answers.
    pub fn new(backing: &Path, mountpoint: &Path) -> io::Result<Mount> {
        let backing = backing.canonicalize()?;
        let mountpoint = mountpoint.canonicalize()?;
        for dir in [&backing, &mountpoint] {
            if !dir.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        let dev_before = std::fs::metadata(&mountpoint)?.dev();
        let state = Arc::new(Mutex::new(State::new(backing, PENDING_BYTES_MAX)));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("cercle-lossyfs".to_owned()),
            MountOption::Subtype("cercle-lossyfs".to_owned()),
            MountOption::DefaultPermissions,
        ];
        let gate = Arc::new(SyncGate::default());
        let session =
            fuser::spawn_mount(LossyFs::new(Arc::clone(&state), Arc::clone(&gate)), &mountpoint, &config)?;
        let notifier = session.notifier();
        let mount = Mount { state, gate, session: Some(session), notifier, mountpoint };
        mount.wait_until_live(dev_before)?;
        Ok(mount)
    }

    /// Polls the mount point until it is this filesystem, or fails after [`MOUNT_TIMEOUT`].
    fn wait_until_live(&self, dev_before: u64) -> io::Result<()> {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Ok(metadata) = std::fs::metadata(&self.mountpoint)
                && metadata.dev() != dev_before
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not answer as a mount within {MOUNT_TIMEOUT:?}",
                        self.mountpoint.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Simulates a power cut: drops every write not yet synced, in every file, at once, and
    /// says what was lost, so a crash test can tell a cut that lost something from one that
    /// happened to find everything synced.
    pub fn power_cut(&self) -> PowerCut {
        let (changed, dropped_bytes) = fs::lock(&self.state).power_cut();
        self.after_cut(changed, dropped_bytes)
    }

    fn after_cut(&self, changed: Vec<u64>, dropped_bytes: u64) -> PowerCut {
        let files = changed.len() as u64;
        // Belt and braces: with direct I/O and zero TTLs the kernel caches nothing, but a
        // private mmap would. An error means the kernel holds nothing for that inode.
        for ino in changed {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, 0);
        }
        PowerCut { files, dropped_bytes }
    }

    /// Holds back every `fsync` and `fdatasync` of the file at `path` (through the mount
    /// point) until the returned guard is dropped: an application that wrote it and then
    /// synced stays inside its sync, its write unsynced, for as long as the test needs to cut
    /// the power in the middle of it. The filesystem serves one request at a time, so while a
    /// sync is held it answers nothing else: kill the application without waiting for it to
    /// exit (its exit waits for the filesystem), cut the power, then drop the guard. A sync
    /// released after a cut finds nothing left to sync.
    pub fn hold_syncs(&self, path: &Path) -> io::Result<SyncHold<'_>> {
        let ino = fs::lock(&self.state).ino_of(self.below(path)?)?;
        self.gate.set_held(Some(ino));
        Ok(SyncHold { gate: &self.gate })
    }

    /// How many `fsync` or `fdatasync` requests [`Mount::hold_syncs`] holds back now.
    pub fn syncs_waiting(&self) -> u64 {
        self.gate.waiting()
    }

    /// The size of the file at `path` (a path through the mount point) as the application
    /// sees it, and as a power cut would leave it: a crash test learns whether an append is
    /// still unsynced, without a request through the mount.
    pub fn file_sizes(&self, path: &Path) -> io::Result<FileSizes> {
        let (visible, durable) = fs::lock(&self.state).sizes(self.below(path)?)?;
        Ok(FileSizes { visible, durable })
    }

    /// `path` relative to the mount point.
    fn below<'a>(&self, path: &'a Path) -> io::Result<&'a Path> {
        path.strip_prefix(&self.mountpoint).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not below the mount point {}", path.display(), self.mountpoint.display()),
            )
        })
    }

    /// Simulates a power cut in the middle of writing back the file at `path` (a path through
    /// the mount point): its first `len` bytes, as the application sees them, had reached the
    /// disk, and nothing else that was not synced. This is a torn write: an application that
    /// appended a record without syncing it finds part of it after the cut. Fails if `path` is
    /// not below the mount point, or writing to the backing file fails (then nothing is cut).
    pub fn power_cut_tearing(&self, path: &Path, len: u64) -> io::Result<PowerCut> {
        let rel = self.below(path)?;
        let (changed, dropped_bytes) = fs::lock(&self.state).power_cut_tearing(rel, len)?;
        Ok(self.after_cut(changed, dropped_bytes))
    }

    /// The memory held for writes not yet synced (whole 4 KiB pages; a pending truncation
    /// alone holds none).
    pub fn pending_bytes(&self) -> u64 {
        fs::lock(&self.state).pending_bytes()
    }

    /// Unmounts cleanly: stops serving, then writes back every pending write, as a clean
    /// shutdown does. Fails if the mount is busy (then it is detached lazily and nothing is
    /// written back).
    pub fn unmount(mut self) -> io::Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        if let Err(e) = session.umount_and_join() {
            // Still in use: detach it, so the mount point is free; the daemon thread serves the
            // remaining users until they close.
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            return Err(io::Error::new(
                e.kind(),
                format!("unmounting {}: {e} (detached lazily)", self.mountpoint.display()),
            ));
        }
        fs::lock(&self.state).write_back_all()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Errors cannot be returned from here; `unmount` reports them.
        let _ = self.shut_down();
    }
}

/// Syncs held back by [`Mount::hold_syncs`]; dropping it lets them through.
#[derive(Debug)]
pub struct SyncHold<'a> {
    gate: &'a SyncGate,
}

impl Drop for SyncHold<'_> {
    fn drop(&mut self) {
        self.gate.set_held(None);
    }
}

/// A file's size through the mount, and on the backing disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSizes {
    /// As the application sees it.
    pub visible: u64,
    /// What a power cut now would leave.
    pub durable: u64,
}

/// What one [`Mount::power_cut`] dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerCut {
    /// Files whose content went back to what was last synced (a pending truncation alone
    /// counts, though it holds no bytes).
    pub files: u64,
    /// The unsynced writes dropped, in whole 4 KiB pages as [`Mount::pending_bytes`] counts
    /// them (after [`Mount::power_cut_tearing`], including the part written back).
    pub dropped_bytes: u64,
}

/// Whether a FUSE filesystem can be mounted here: `Ok` after a real trial mount (a few
/// milliseconds), or why not.
pub fn available() -> Result<(), String> {
    const DEV_FUSE: &str = "/dev/fuse";
    const HINT: &str = "mounting FUSE needs /dev/fuse, and either root with CAP_SYS_ADMIN or, \
        for another user, read-write access to /dev/fuse and the setuid helper fusermount3 \
        (Debian package fuse3)";
    if !Path::new(DEV_FUSE).exists() {
        return Err(format!("{DEV_FUSE} does not exist (fuse kernel module not loaded?); {HINT}"));
    }
    let trial = || -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let backing = dir.path().join("backing");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&backing)?;
        std::fs::create_dir(&mountpoint)?;
        Mount::new(&backing, &mountpoint)?.unmount()
    };
    trial().map_err(|e| format!("a trial FUSE mount failed: {e}; {HINT}"))
}
