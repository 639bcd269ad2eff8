//! Export: a maildrop as one mboxrd file, whole or absent.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use super::{ArchiveError, Summary};
use crate::mail::mbox;
use crate::storage::{StorageError, Store};

/// Writes `user`'s messages, oldest first, to the new mboxrd file `dest`
/// (mode 0600). It is written under a temporary name, synced, linked
/// (or, without hard links, renamed) into place and its directory
/// synced, so `dest` is either whole or absent, and never overwritten.
pub fn export(store: &Store, user: &str, dest: &Path) -> Result<Summary, ArchiveError> {
    if dest.symlink_metadata().is_ok() {
        return Err(ArchiveError::Exists(dest.to_path_buf()));
    }
    let entries = store.export_index(user).map_err(ArchiveError::Export)?;
    let write_error = |source| ArchiveError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let temp = dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(write_error)?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let mut summary = Summary::default();
        for entry in &entries {
            let len = usize::try_from(entry.size).unwrap_or(usize::MAX);
            let body = match store.read_body(entry.id, 0, len) {
                Ok(body) => body,
                // Deleted by a session since the listing: not exported.
                Err(StorageError::MessageGone(_)) => continue,
                Err(error) => return Err(ArchiveError::Export(error)),
            };
            mbox::write_message(
                &mut out,
                &mbox::envelope_sender(&body),
                entry.received_at,
                &body,
            )
            .map_err(write_error)?;
            summary.messages += 1;
            summary.octets += entry.size;
        }
        let file = out.into_inner().map_err(|e| write_error(e.into_error()))?;
        file.sync_all().map_err(write_error)?;
        // A hard link fails if `dest` appeared meanwhile: never overwrite.
        match std::fs::hard_link(&temp, dest) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ArchiveError::Exists(dest.to_path_buf()))
            }
            // No hard links here (FAT, some network filesystems): a rename,
            // after one more look for a file in the way.
            Err(_) if dest.symlink_metadata().is_err() => {
                std::fs::rename(&temp, dest).map_err(write_error)?;
            }
            Err(error) => return Err(write_error(error)),
        }
        // The new name is on disk only once its directory is.
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write_error)?;
        Ok(summary)
    })();
    let _ = std::fs::remove_file(&temp);
    written
}
