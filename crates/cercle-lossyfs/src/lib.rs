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
//!   between two FUSE requests. Open descriptors stay usable and see the durable content.
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

use crate::fs::{LossyFs, State};

/// The most memory all pending writes together may hold.
pub const PENDING_BYTES_MAX: u64 = 1 << 30;

/// How long [`Mount::new`] waits for the mount to answer.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A mounted lossy filesystem. Unmounts on drop, as [`Mount::unmount`] does.
pub struct Mount {
    state: Arc<Mutex<State>>,
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
        let session = fuser::spawn_mount(LossyFs::new(Arc::clone(&state)), &mountpoint, &config)?;
        let notifier = session.notifier();
        let mount = Mount { state, session: Some(session), notifier, mountpoint };
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

    /// Simulates a power cut: drops every write not yet synced, in every file, at once.
    pub fn power_cut(&self) {
        let changed = fs::lock(&self.state).power_cut();
        // Belt and braces: with direct I/O and zero TTLs the kernel caches nothing, but a
        // private mmap would. An error means the kernel holds nothing for that inode.
        for ino in changed {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, 0);
        }
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
