//! One daemon per database: an exclusive `flock` on `STATE_DB.lock`, holding the owner's pid, for
//! as long as the daemon runs. The kernel drops the lock when the process dies, even by SIGKILL,
//! so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held while the daemon runs; dropping it releases the database.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock beside `db`, or says which process holds it.
    ///
    /// # Errors
    /// [`StoreError::Locked`] naming the database and the running process; [`StoreError::Folder`]
    /// when the lock file cannot be created.
    pub fn acquire(db: &Path) -> Result<InstanceLock, StoreError> {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let folder = |source| StoreError::Folder {
            path: db.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(folder)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(folder)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                return Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(folder(e)),
        }
        // Best effort: the pid only makes the refusal message more useful.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(InstanceLock { _file: file, path })
    }
}

/// Which process holds the lock of `db`, if any: read-only (the lock file is neither created
/// nor kept), for `status`.
pub fn holder(db: &Path) -> Option<String> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let mut file = File::open(PathBuf::from(name)).ok()?;
    match file.try_lock() {
        // Nobody holds it; dropping the file releases it at once.
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Some(match pid.trim() {
                "" => "another process".to_string(),
                pid => format!("process {}", crate::inert::Inert(pid)),
            })
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/t.db");
        let first = InstanceLock::acquire(&db).unwrap();
        let e = InstanceLock::acquire(&db).unwrap_err().to_string();
        assert!(
            e.contains("t.db") && e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        drop(first);
        InstanceLock::acquire(&db).unwrap();
    }
}
