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

/// What a Maildir holds for import.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// The messages, oldest first.
    pub messages: Vec<MaildirEntry>,
    /// Messages flagged T (trashed: deleted, awaiting expunge), left out.
    pub trashed: usize,
}

/// Every message in `dir`'s `new/` and `cur/`, oldest first, except the
/// trashed ones. Ties in time go by the microseconds in Dovecot-style
/// names (`SECS.MusecPpid.host`), then by name. A directory with neither
/// `new/` nor `cur/` is not a Maildir.
pub fn list(dir: &Path) -> io::Result<Listing> {
    if !dir.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
    }
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
    let mut listing = Listing::default();
    let mut keyed = Vec::new();
    for sub in subdirs {
        for entry in std::fs::read_dir(&sub)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Dot files are not messages (Dovecot keeps its index files so).
            if name.starts_with('.') {
                continue;
            }
            // Follows a link, so a linked message file is imported too.
            let meta = std::fs::metadata(entry.path())?;
            if !meta.is_file() {
                continue;
            }
            if is_trashed(&name) {
                listing.trashed += 1;
                continue;
            }
            let received_at = name_time(&name).unwrap_or_else(|| modified(&meta));
            let key = (received_at, microseconds(&name), name);
            keyed.push((
                key,
                MaildirEntry {
                    path: entry.path(),
                    received_at,
                },
            ));
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    listing.messages = keyed.into_iter().map(|(_, entry)| entry).collect();
    Ok(listing)
}

/// Whether the name's info (`:2,FLAGS`) has the T (trashed) flag.
fn is_trashed(name: &str) -> bool {
    name.rsplit_once(":2,")
        .is_some_and(|(_, flags)| flags.contains('T'))
}

/// The `M` field of a Dovecot-style name's second part, as a number.
fn microseconds(name: &str) -> u64 {
    let Some(unique) = name.split('.').nth(1) else {
        return 0;
    };
    let Some(after) = unique.strip_prefix('M') else {
        return 0;
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// The Unix time a Maildir file name starts with, if it does: 9 or 10
/// digits (1973 to 2286), so that MH-style names (`1`, `2`) and other
/// numbers are not taken for times.
fn name_time(name: &str) -> Option<i64> {
    let digits = name.split('.').next()?;
    if !(9..=10).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
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

    fn names(listing: &Listing) -> Vec<String> {
        let name = |e: &MaildirEntry| e.path.file_name().unwrap().to_string_lossy().into_owned();
        listing.messages.iter().map(name).collect()
    }

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
        assert_eq!(
            names(&list(dir.path()).unwrap()),
            [
                "1700000100.M1.host",
                "1700000200.M9.host:2,",
                "1700000300.M2.host:2,S"
            ]
        );
    }

    #[test]
    fn same_second_names_sort_by_microseconds_and_trashed_ones_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cur")).unwrap();
        for name in [
            "1700000000.M1000000P1.h:2,S",
            "1700000000.M999999P1.h:2,S",
            "1700000000.M99999P1.h:2,",
            "1700000000.M5P1.h:2,ST",
        ] {
            std::fs::write(dir.path().join("cur").join(name), "x").unwrap();
        }
        let listing = list(dir.path()).unwrap();
        assert_eq!(
            names(&listing),
            [
                "1700000000.M99999P1.h:2,",
                "1700000000.M999999P1.h:2,S",
                "1700000000.M1000000P1.h:2,S"
            ]
        );
        assert_eq!(listing.trashed, 1);
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
        assert_eq!(name_time("1"), None);
        assert_eq!(name_time("123456789012.x"), None);
    }
}
