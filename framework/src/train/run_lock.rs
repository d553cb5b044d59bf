//! One process per run folder: `ssl train` holds an exclusive lock on `<out>/.ssl-run.lock`
//! (the operating system's advisory file lock, `flock` on Unix) for as long as it runs, and
//! writes its process id into the file. A second process aiming at the same folder is refused
//! with the owner's pid. The operating system releases the lock when its owner dies, however it
//! dies, so a lock left behind by a killed process is taken over (and said so), never obeyed.

use crate::error::TrainError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".ssl-run.lock";

/// An exclusive hold on a run folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks the existing folder `dir` for this process.
    ///
    /// # Errors
    /// [`TrainError::Busy`] naming the folder and the owner's pid when another live process
    /// holds it; [`TrainError::Io`] naming the lock file when it cannot be opened or locked.
    pub fn acquire(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| TrainError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TrainError::Busy {
                    dir: dir.to_path_buf(),
                    owner: read_owner(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        if let Some(pid) = read_owner(&mut file).filter(|&p| p != std::process::id()) {
            eprintln!(
                "note: {} was locked by process {pid}, which is gone; taking it over",
                dir.display()
            );
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied, not removed: a process waiting on this file must lock the same inode.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The pid written in a lock file, if any.
fn read_owner(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_a_released_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open is refused even in
        // the same process, as another process would be.
        let e = RunLock::acquire(dir.path()).unwrap_err();
        assert!(
            matches!(&e, TrainError::Busy { owner: Some(p), .. } if *p == std::process::id()),
            "{e}"
        );
        assert!(e.to_string().contains("in use by process"), "{e}");
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        drop(again);
        // A stale file (its writer died without unlocking) does not block.
        std::fs::write(dir.path().join(LOCK_FILE), "999999999\n").unwrap();
        RunLock::acquire(dir.path()).unwrap();
    }
}
