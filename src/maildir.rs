//! Lists the messages of a Maildir (its `new/` and `cur/`; `tmp/` holds
//! deliveries in progress) oldest first, for import.

use std::io;
use std::path::{Path, PathBuf};

/// One message file of a Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirEntry {
    /// The file.
    pub path: PathBuf,
    /// When it arrived, Unix seconds: the time its name starts with
    /// (`1733100000.M1P2.host`), else its modification time.
    pub received_at: i64,
}

/// Every message in `dir`'s `new/` and `cur/`, oldest first (ties in
/// name order). A directory with neither is not a Maildir.
pub fn list(dir: &Path) -> io::Result<Vec<MaildirEntry>> {
    let subdirs: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .map(|sub| dir.join(sub))
        .filter(|sub| sub.is_dir())
        .collect();
    if subdirs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a Maildir: it has neither new/ nor cur/",
        ));
    }
    let mut entries = Vec::new();
    for sub in subdirs {
        for entry in std::fs::read_dir(&sub)? {
            let entry = entry?;
            let name = entry.file_name();
            // Dot files are not messages (Dovecot keeps its index files so).
            if name.to_string_lossy().starts_with('.') || !entry.file_type()?.is_file() {
                continue;
            }
            let received_at = match name_time(&name.to_string_lossy()) {
                Some(time) => time,
                None => modified(&entry.metadata()?),
            };
            entries.push(MaildirEntry {
                path: entry.path(),
                received_at,
            });
        }
    }
    entries.sort_by(|a, b| {
        (a.received_at, a.path.file_name()).cmp(&(b.received_at, b.path.file_name()))
    });
    Ok(entries)
}

/// The Unix time a Maildir file name starts with, if it does.
fn name_time(name: &str) -> Option<i64> {
    let digits = name.split('.').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn modified(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_new_and_cur_oldest_first_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("cur/1700000300.M2.host:2,S"), "c").unwrap();
        std::fs::write(dir.path().join("new/1700000100.M1.host"), "a").unwrap();
        std::fs::write(dir.path().join("cur/1700000200.M9.host:2,"), "b").unwrap();
        std::fs::write(dir.path().join("tmp/1600000000.M0.host"), "in progress").unwrap();
        std::fs::write(dir.path().join("cur/.index"), "not mail").unwrap();
        std::fs::create_dir(dir.path().join("cur/subdir")).unwrap();
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "1700000100.M1.host",
                "1700000200.M9.host:2,",
                "1700000300.M2.host:2,S"
            ]
        );
    }

    #[test]
    fn a_directory_without_new_or_cur_is_not_a_maildir() {
        let dir = tempfile::tempdir().unwrap();
        let error = list(dir.path()).unwrap_err();
        assert!(error.to_string().contains("not a Maildir"));
    }

    #[test]
    fn names_without_a_leading_time_use_the_modification_time() {
        assert_eq!(name_time("1700000100.M1.host"), Some(1_700_000_100));
        assert_eq!(name_time("message.eml"), None);
        assert_eq!(name_time(".1"), None);
    }
}
