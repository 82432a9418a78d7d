//! The one atomic file writer of fhec: circuits, keys, encrypted tensors, decrypted `.npy`
//! files, sweep and tune results and plots all go through [`PendingFile`]. The bytes go to a
//! fresh temporary sibling of the target, are synced, and the file is renamed onto the
//! target, so a reader — or a kill at any moment — sees the old file or the new one, never a
//! partial one. A write that is dropped before [`PendingFile::commit`] leaves nothing behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Who may read the written file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// An ordinary file: mode 0666 less the umask.
    Shared,
    /// Owner only (mode 0600): secret keys, and decrypted results, which are as private as
    /// the inputs they came from.
    Private,
}

/// A write in progress: a temporary file beside `target`.
#[derive(Debug)]
pub struct PendingFile {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl PendingFile {
    /// Creates the temporary file next to `target`, so that a target that cannot be written
    /// (missing directory, a directory in its place, no permission) fails before any work.
    pub fn create(target: &Path, access: Access) -> std::io::Result<Self> {
        use std::io::{Error, ErrorKind};
        if target.is_dir() {
            return Err(Error::new(ErrorKind::IsADirectory, "it is a directory"));
        }
        let name = target
            .file_name()
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the path names no file"))?
            .to_string_lossy()
            .into_owned();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("directory '{}' does not exist", dir.display()),
            ));
        }
        // One temporary per target and process: a second pending write of the same target
        // replaces the first's temporary, whose commit then fails (never a mixed file).
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        // A fresh file (O_EXCL) so that its mode is ours: a stale temporary of a killed
        // process with the same id is removed first, never reused.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(match access {
                Access::Shared => 0o666,
                Access::Private => 0o600,
            });
        }
        #[cfg(not(unix))]
        let _ = access;
        let file = options.open(&tmp)?;
        Ok(PendingFile {
            file: Some(file),
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// The temporary file, to write into.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit")
    }

    /// The target the file will be renamed onto.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the file and renames it onto the target.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("open until commit");
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        // Renamed: nothing left for Drop to remove.
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8], access: Access) -> std::io::Result<()> {
    let mut pending = PendingFile::create(path, access)?;
    pending.file().write_all(bytes)?;
    pending.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile_dir();
        let path = dir.join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let mut pending = PendingFile::create(&path, Access::Shared).unwrap();
        pending.file().write_all(b"new").unwrap();
        // Not committed yet: readers still see the old file.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        drop(pending);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        write_atomic(&path, b"new", Access::Private).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary left: {names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private file readable by others: {mode:o}");
        }
        let e = write_atomic(&dir.join("missing/x"), b"", Access::Shared).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = write_atomic(&dir, b"", Access::Shared).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fhec-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
