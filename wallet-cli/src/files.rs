//! Writing files without ever writing through a link: every file the wallet writes (keys,
//! statements, exports, the tree-head state, clearing results, the operation journal) is
//! first written to a new temporary file in the target's directory, created with
//! `O_CREAT | O_EXCL` under a random name (so it can be neither an existing file nor a
//! symbolic link planted there), synced, then renamed into place. A rename replaces a
//! symbolic link at the target, never the file it points to.
//!
//! Without `replace`, the target must not exist, not even as a dangling link: the check
//! is made before any work, and again atomically by the rename (`persist_noclobber`).
//! Files are created readable by their owner only (mode 0600): they hold keys or
//! financial data.
//!
//! Appending (`--save`) cannot go through a rename: [`open_append`] refuses a symbolic link
//! at the target (`O_NOFOLLOW`) instead.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use tempfile::NamedTempFile;

use crate::failure::usage;

/// A file being written, invisible at its target until [`NewFile::commit`].
pub struct NewFile {
    temp: NamedTempFile,
    target: PathBuf,
    replace: bool,
}

/// The directory a file is created in: its parent, or the current directory.
fn directory(target: &Path) -> &Path {
    match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Refuses a target that exists (as anything: a file, a directory, a link, even a
/// dangling one) unless `replace`; `hint` says what to do instead.
pub fn check_target(target: &Path, replace: bool, hint: &str) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(usage(format!("{} is a directory", target.display()))),
        Ok(_) if !replace => Err(usage(format!("{} already exists; {hint}", target.display()))),
        _ => Ok(()),
    }
}

impl NewFile {
    /// Starts writing `target`; `hint` is said when it exists and may not be replaced.
    pub fn create(target: &Path, replace: bool, hint: &str) -> anyhow::Result<NewFile> {
        check_target(target, replace, hint)?;
        let dir = directory(target);
        let temp = NamedTempFile::new_in(dir).with_context(|| {
            format!("cannot create a file in {} to write {}", dir.display(), target.display())
        })?;
        Ok(NewFile { temp, target: target.to_path_buf(), replace })
    }

    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Syncs the file and moves it to its target (refusing to replace one unless asked),
    /// then syncs the directory so that the new name survives a crash.
    pub fn commit(self) -> anyhow::Result<()> {
        let NewFile { temp, target, replace } = self;
        temp.as_file().sync_all().with_context(|| format!("cannot write {}", target.display()))?;
        let persisted = if replace { temp.persist(&target) } else { temp.persist_noclobber(&target) };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                usage(format!("{} already exists (it appeared while it was being written)", target.display()))
            } else {
                anyhow!("cannot write {}: {}", target.display(), e.error)
            }
        })?;
        // Without the directory synced, a crash could lose the name; the data is synced.
        if let Ok(dir) = File::open(directory(&target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Writes `bytes` to `target` through a new file (see the module's docs).
pub fn write(target: &Path, bytes: &[u8], replace: bool, hint: &str) -> anyhow::Result<()> {
    let mut file = NewFile::create(target, replace, hint)?;
    file.file().write_all(bytes).with_context(|| format!("cannot write {}", target.display()))?;
    file.commit()
}

/// Opens `target` to append to it, creating it (mode 0600) if it is missing. A symbolic
/// link at `target` is refused rather than followed.
pub fn open_append(target: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(target).map_err(|e| {
        // O_NOFOLLOW on a link fails with ELOOP.
        if std::fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink()) {
            usage(format!("{} is a symbolic link; refusing to write through it", target.display()))
        } else {
            anyhow!("cannot open {} to append to it: {e}", target.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn links_are_replaced_or_refused_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        // Without replace, a link at the target is an existing file.
        let err = write(&link, b"new", false, "choose another").unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        // A dangling link too.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write(&dangling, b"new", false, "x").is_err());
        assert!(!dir.path().join("nowhere").exists());
        // With replace, the link itself is replaced by a file; its target is untouched.
        write(&link, b"new", true, "x").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
        // Appending refuses a link.
        let append_link = dir.path().join("append");
        std::os::unix::fs::symlink(&victim, &append_link).unwrap();
        let err = open_append(&append_link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // New files are private.
        use std::os::unix::fs::PermissionsExt;
        let fresh = dir.path().join("fresh");
        write(&fresh, b"x", false, "x").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        // Nothing else was left in the directory.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["append", "dangling", "fresh", "out", "victim"]);
    }
}
