//! Real mounts: each test mounts a lossy mirror of a fresh directory and checks what survives a
//! power cut. Where FUSE is not installed they are ignored, with the reason, unless the gate
//! `CERCLE_REQUIRE_ALL` is set (CI), where they run and fail (`tests/os_deps.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cercle_lossyfs::{Mount, PowerCut};
use nix::libc;

/// A backing directory and a mount point, both empty, in a temporary directory.
struct Dirs {
    tmp: tempfile::TempDir,
}

impl Dirs {
    fn backing(&self) -> PathBuf {
        self.tmp.path().join("backing")
    }

    fn mnt(&self) -> PathBuf {
        self.tmp.path().join("mnt")
    }

    /// A path as the application sees it.
    fn app(&self, name: &str) -> PathBuf {
        self.mnt().join(name)
    }

    /// The same path in the backing directory: what is durable.
    fn disk(&self, name: &str) -> PathBuf {
        self.backing().join(name)
    }
}

/// Fresh directories; an error, which fails the test, where FUSE cannot be mounted (these tests
/// run only where it is installed or required).
fn dirs() -> io::Result<Dirs> {
    cercle_lossyfs::available().map_err(|reason| io::Error::other(format!("FUSE is unusable: {reason}")))?;
    let dirs = Dirs { tmp: tempfile::tempdir()? };
    fs::create_dir(dirs.backing())?;
    fs::create_dir(dirs.mnt())?;
    Ok(dirs)
}

/// Mounts `dirs`. The mount is declared after the directories, so it is dropped (unmounted)
/// before they are removed.
macro_rules! mount {
    ($dirs:ident, $mount:ident) => {
        let $dirs = dirs()?;
        let $mount = Mount::new(&$dirs.backing(), &$dirs.mnt())?;
    };
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    fs::read(path)
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(data)?;
    file.sync_data()
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn fdatasync_and_fsync_make_writes_survive_a_power_cut() -> io::Result<()> {
    mount!(dirs, mount);
    write_synced(&dirs.app("a"), b"hello")?;
    let mut file = File::create(dirs.app("b"))?;
    file.write_all(b"world")?;
    file.sync_all()?;
    drop(file);
    // O_DSYNC writes are durable on return, with no separate sync.
    let mut file =
        OpenOptions::new().write(true).create(true).custom_flags(libc::O_DSYNC).open(dirs.app("c"))?;
    file.write_all(b"dsync")?;
    drop(file);
    assert_eq!(mount.pending_bytes(), 0);
    assert_eq!(read(&dirs.disk("a"))?, b"hello");

    assert_eq!(mount.power_cut(), PowerCut { files: 0, dropped_bytes: 0 }, "everything was synced");
    assert_eq!(read(&dirs.app("a"))?, b"hello");
    assert_eq!(read(&dirs.app("b"))?, b"world");
    assert_eq!(read(&dirs.app("c"))?, b"dsync");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn unsynced_writes_are_lost_at_a_power_cut_even_after_close() -> io::Result<()> {
    mount!(dirs, mount);
    write_synced(&dirs.app("old"), b"durable.")?;
    let mut file = OpenOptions::new().append(true).open(dirs.app("old"))?;
    file.write_all(b"volatile")?;
    drop(file); // close is not a sync
    fs::write(dirs.app("new"), b"never synced")?;

    assert_eq!(read(&dirs.app("old"))?, b"durable.volatile");
    assert_eq!(read(&dirs.app("new"))?, b"never synced");
    assert_eq!(read(&dirs.disk("old"))?, b"durable.");
    assert_eq!(read(&dirs.disk("new"))?, b"");
    assert_eq!(mount.pending_bytes(), 2 * 4096, "one page each");

    assert_eq!(mount.power_cut(), PowerCut { files: 2, dropped_bytes: 2 * 4096 });
    assert_eq!(mount.pending_bytes(), 0);
    assert_eq!(read(&dirs.app("old"))?, b"durable.");
    // Creating a name is durable, its content is not.
    assert_eq!(read(&dirs.app("new"))?, b"");
    assert_eq!(fs::metadata(dirs.app("old"))?.len(), 8);
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn a_write_after_a_sync_is_lost_but_the_synced_prefix_remains() -> io::Result<()> {
    mount!(dirs, mount);
    let path = dirs.app("log");
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    file.write_all_at(b"synced prefix", 0)?;
    file.sync_data()?;
    file.write_all_at(b"SYNCED", 0)?; // overwrites part of the synced prefix
    file.write_all_at(b" and a tail", 13)?;
    assert_eq!(read(&path)?, b"SYNCED prefix and a tail");

    mount.power_cut();
    // The handle of the (notionally dead) writer still works and sees the durable content.
    let mut seen = Vec::new();
    (&file).read_to_end(&mut seen)?;
    assert_eq!(seen, b"synced prefix");
    assert_eq!(read(&path)?, b"synced prefix");
    let mut buf = [0; 13];
    file.read_exact_at(&mut buf, 0)?;
    assert_eq!(&buf, b"synced prefix");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn a_torn_cut_keeps_a_prefix_of_one_file_and_drops_the_rest() -> io::Result<()> {
    mount!(dirs, mount);
    write_synced(&dirs.app("log"), b"durable\n")?;
    let mut log = OpenOptions::new().append(true).open(dirs.app("log"))?;
    log.write_all(b"record one\nrecord two\n")?;
    fs::write(dirs.app("other"), b"never synced")?;
    let sizes = mount.file_sizes(&dirs.app("log"))?;
    assert_eq!((sizes.visible, sizes.durable), (30, 8));
    // The disk had written "durable\nrecord one\nrec" of the log when the power went.
    let cut = mount.power_cut_tearing(&dirs.app("log"), 22)?;
    assert_eq!(cut, PowerCut { files: 2, dropped_bytes: 2 * 4096 });
    assert_eq!(read(&dirs.app("log"))?, b"durable\nrecord one\nrec");
    assert_eq!(read(&dirs.app("other"))?, b"");
    // Past the end of what is pending, the whole file is kept; a file with nothing pending and
    // a path outside the mount are refused or left alone.
    drop(log);
    OpenOptions::new().append(true).open(dirs.app("log"))?.write_all(b"ord two\n")?;
    mount.power_cut_tearing(&dirs.app("log"), u64::MAX)?;
    assert_eq!(read(&dirs.app("log"))?, b"durable\nrecord one\nrecord two\n");
    assert_eq!(mount.power_cut_tearing(&dirs.app("log"), 3)?, PowerCut { files: 0, dropped_bytes: 0 });
    assert_eq!(read(&dirs.app("log"))?, b"durable\nrecord one\nrecord two\n");
    assert!(mount.power_cut_tearing(&dirs.disk("log"), 3).is_err());
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn a_held_sync_lets_the_power_go_in_the_middle_of_a_write() -> io::Result<()> {
    mount!(dirs, mount);
    let path = dirs.app("journal");
    write_synced(&path, b"durable\n")?;
    let hold = mount.hold_syncs(&path)?;
    // Another file's syncs go through.
    write_synced(&dirs.app("other"), b"synced")?;
    // The application appends a line and syncs it: it stays in its fdatasync.
    let mut app = Command::new("dd")
        .arg(format!("of={}", path.display()))
        .args(["oflag=append", "conv=notrunc,fdatasync", "status=none"])
        .stdin(Stdio::piped())
        .spawn()?;
    app.stdin.take().expect("piped").write_all(b"in flight\n")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while mount.syncs_waiting() == 0 {
        assert!(Instant::now() < deadline, "the application never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sizes = mount.file_sizes(&path)?;
    assert_eq!((sizes.visible, sizes.durable), (18, 8));
    // Killed without waiting: it cannot exit before its sync is answered.
    app.kill()?;
    let cut = mount.power_cut_tearing(&path, 12)?;
    assert_eq!(cut, PowerCut { files: 1, dropped_bytes: 4096 });
    drop(hold);
    app.wait()?;
    assert_eq!(mount.syncs_waiting(), 0);
    assert_eq!(read(&path)?, b"durable\nin f");
    assert_eq!(read(&dirs.app("other"))?, b"synced");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn an_unsynced_truncate_is_reverted() -> io::Result<()> {
    mount!(dirs, mount);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    write_synced(&dirs.app("f"), &data)?;
    let file = OpenOptions::new().write(true).open(dirs.app("f"))?;
    file.set_len(10)?;
    assert_eq!(read(&dirs.app("f"))?, &data[..10]);
    drop(file);
    write_synced(&dirs.app("g"), b"kept")?;
    drop(File::create(dirs.app("g"))?); // O_TRUNC, not synced
    assert_eq!(read(&dirs.app("g"))?, b"");

    // Two pending truncations: two files change back, though no page was held.
    assert_eq!(mount.power_cut(), PowerCut { files: 2, dropped_bytes: 0 });
    assert_eq!(read(&dirs.app("f"))?, data);
    assert_eq!(read(&dirs.app("g"))?, b"kept");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn the_kernel_caches_nothing_an_overwrite_in_place_is_reverted() -> io::Result<()> {
    mount!(dirs, mount);
    // Same size and mtime before and after the power cut: only the daemon knows what changed,
    // so a page cache in the kernel would go on showing the lost write.
    let path = dirs.app("pages");
    write_synced(&path, &[b'A'; 8192])?;
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    file.write_all_at(&[b'B'; 8192], 0)?;
    let mut buf = vec![0; 8192];
    file.read_exact_at(&mut buf, 0)?;
    assert_eq!(buf, [b'B'; 8192]);
    assert_eq!(read(&path)?, [b'B'; 8192]);

    mount.power_cut();
    file.read_exact_at(&mut buf, 0)?;
    assert_eq!(buf, [b'A'; 8192]);
    assert_eq!(read(&path)?, [b'A'; 8192]);
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn sparse_writes_read_as_zeros_and_sync_exactly() -> io::Result<()> {
    mount!(dirs, mount);
    let path = dirs.app("sparse");
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    file.write_all_at(b"head", 0)?;
    file.write_all_at(b"tail", 1 << 20)?;
    file.set_len(3)?; // cut "head" to "hea", then grow again by writing past the end
    file.write_all_at(b"x", 9000)?;
    let mut expected = vec![0; 9001];
    expected[..3].copy_from_slice(b"hea");
    expected[9000] = b'x';
    assert_eq!(read(&path)?, expected);
    file.sync_data()?;
    assert_eq!(read(&dirs.disk("sparse"))?, expected);

    mount.power_cut();
    assert_eq!(read(&path)?, expected);
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn sync_file_range_does_not_make_data_durable() -> io::Result<()> {
    mount!(dirs, mount);
    let path = dirs.app("range");
    let mut file = File::create(&path)?;
    file.write_all(b"only in memory")?;
    let flags =
        libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open and
    // owned by `file`, which outlives the call.
    let ret = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    assert!(mount.pending_bytes() > 0);
    assert_eq!(read(&dirs.disk("range"))?, b"");

    mount.power_cut();
    assert_eq!(read(&path)?, b"");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn names_are_durable_at_once_but_contents_follow_their_file() -> io::Result<()> {
    mount!(dirs, mount);
    // The safe pattern: write, sync, rename.
    write_synced(&dirs.app("a.tmp"), b"safe")?;
    fs::rename(dirs.app("a.tmp"), dirs.app("a"))?;
    // The unsafe one: write, rename, no sync.
    fs::write(dirs.app("b.tmp"), b"unsafe")?;
    fs::rename(dirs.app("b.tmp"), dirs.app("b"))?;
    // Unlink is durable; so is a rename over an existing file.
    write_synced(&dirs.app("gone"), b"x")?;
    fs::remove_file(dirs.app("gone"))?;
    write_synced(&dirs.app("c"), b"old c")?;
    write_synced(&dirs.app("c.new"), b"new c")?;
    fs::rename(dirs.app("c.new"), dirs.app("c"))?;
    assert_eq!(read(&dirs.app("b"))?, b"unsafe");

    mount.power_cut();
    assert_eq!(read(&dirs.app("a"))?, b"safe");
    assert_eq!(read(&dirs.app("b"))?, b"");
    assert_eq!(read(&dirs.app("c"))?, b"new c");
    assert!(!dirs.app("a.tmp").exists());
    assert!(!dirs.app("gone").exists());
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn directories_modes_and_statfs_pass_through() -> io::Result<()> {
    mount!(dirs, mount);
    fs::create_dir(dirs.app("d"))?;
    fs::create_dir(dirs.app("d/e"))?;
    write_synced(&dirs.app("d/e/f"), b"deep")?;
    fs::write(dirs.app("d/g"), b"")?;
    fs::set_permissions(dirs.app("d/g"), fs::Permissions::from_mode(0o640))?;
    assert_eq!(fs::metadata(dirs.app("d/g"))?.permissions().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(dirs.disk("d/g"))?.permissions().mode() & 0o7777, 0o640);

    let mut names: Vec<String> = fs::read_dir(dirs.app("d"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(names, ["e", "g"]);

    // A directory rename carries what is below it.
    fs::rename(dirs.app("d"), dirs.app("moved"))?;
    assert_eq!(read(&dirs.app("moved/e/f"))?, b"deep");
    fs::remove_file(dirs.app("moved/e/f"))?;
    fs::remove_dir(dirs.app("moved/e"))?;
    assert!(!dirs.disk("moved/e").exists());

    let stats = nix::sys::statvfs::statvfs(&dirs.mnt()).map_err(io::Error::from)?;
    assert!(stats.blocks() > 0);
    assert_eq!(mount.pending_bytes(), 0);
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn a_killed_writer_loses_its_unsynced_tail_and_a_restart_carries_on() -> io::Result<()> {
    mount!(dirs, mount);
    let path = dirs.app("journal");
    write_synced(&path, b"durable\n")?;
    // The application: appends a line without syncing, then waits, holding the file open.
    let mut app = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3>>"$1" && printf 'volatile\n' >&3 && read -r _line"#)
        .arg("sh")
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while mount.pending_bytes() == 0 {
        assert!(Instant::now() < deadline, "the application's write never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(read(&path)?, b"durable\nvolatile\n");
    app.kill()?; // SIGKILL
    app.wait()?;

    mount.power_cut();
    assert_eq!(read(&path)?, b"durable\n");
    // The restarted application appends after the durable content.
    let mut file = OpenOptions::new().append(true).open(&path)?;
    file.write_all(b"again\n")?;
    file.sync_data()?;
    mount.power_cut();
    assert_eq!(read(&path)?, b"durable\nagain\n");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn a_clean_unmount_writes_pending_data_back() -> io::Result<()> {
    mount!(dirs, mount);
    fs::write(dirs.app("f"), b"written, never synced")?;
    assert_eq!(read(&dirs.disk("f"))?, b"");
    mount.unmount()?;
    assert_eq!(read(&dirs.disk("f"))?, b"written, never synced");
    Ok(())
}

#[test]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
fn sled_works_on_the_mount() -> io::Result<()> {
    mount!(dirs, mount);
    let db_path = dirs.app("db");
    let sled_err = |e: sled::Error| io::Error::other(e.to_string());
    let db = sled::open(&db_path).map_err(sled_err)?;
    for i in 0..200u32 {
        db.insert(i.to_be_bytes(), format!("value {i}").as_bytes()).map_err(sled_err)?;
    }
    db.flush().map_err(sled_err)?;
    drop(db);
    mount.unmount()?;

    let mount = Mount::new(&dirs.backing(), &dirs.mnt())?;
    let db = sled::open(&db_path).map_err(sled_err)?;
    assert_eq!(db.len(), 200);
    for i in 0..200u32 {
        let value = db.get(i.to_be_bytes()).map_err(sled_err)?;
        assert_eq!(value.as_deref(), Some(format!("value {i}").as_bytes()));
    }
    drop(db);
    mount.unmount()
}
