//! Moving mail in and out of poplite: importing an mbox file or a
//! Maildir into a user's maildrop, and exporting a maildrop as mbox.
//!
//! An import is all or nothing. Every message is read and checked first,
//! and one bad message (empty, over the size limit, unreadable) stops
//! the import before anything is stored, with the position of each bad
//! one; the file can be fixed and the import run again without
//! duplicates. The good ones are then stored in batched transactions
//! (one sync per batch) under a hidden staging user, and moved to the
//! user in one last transaction: until then no session sees any of them,
//! and an import that fails or is killed leaves nothing visible.

mod export;
mod import;

pub use export::export;
pub use import::{import, BATCH_MESSAGES};

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::mail::mbox::{Escaping, MboxError};
use crate::storage::StorageError;

/// Where an import reads from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An mbox file, with how it escaped `From ` lines.
    Mbox(PathBuf, Escaping),
    /// A Maildir directory.
    Maildir(PathBuf),
}

/// Where a message sits in the source, for error reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The n-th message of an mbox, with the line of its `From ` line.
    Mbox {
        /// From 1.
        number: usize,
        /// From 1.
        line: usize,
    },
    /// A Maildir file.
    File(PathBuf),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Mbox { number, line } => write!(f, "message {number} (line {line})"),
            Position::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A message that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    /// Where it is.
    pub position: Position,
    /// What is wrong with it.
    pub reason: String,
}

/// Why an import or export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The source cannot be opened or read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// The file is not an mbox.
    #[error("{path}: {source}")]
    NotMbox {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: MboxError,
    },
    /// Some messages cannot be imported; nothing was.
    #[error("{} bad message{}, nothing imported: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list_bad(.0))]
    BadMessages(Vec<BadMessage>),
    /// Storing failed; nothing was imported.
    #[error("{source}; nothing imported")]
    Storage {
        /// The storage failure.
        #[source]
        source: StorageError,
    },
    /// The export file exists already.
    #[error("{0}: already exists; an export never overwrites (remove it or pick another name)")]
    Exists(PathBuf),
    /// The export file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// Reading the maildrop for export failed.
    #[error(transparent)]
    Export(StorageError),
}

fn list_bad(bad: &[BadMessage]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = bad
        .iter()
        .take(SHOWN)
        .map(|b| format!("{}: {}", b.position, b.reason))
        .collect();
    if bad.len() > SHOWN {
        text.push(format!("and {} more", bad.len() - SHOWN));
    }
    text.join("; ")
}

/// What an import or export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Messages moved.
    pub messages: usize,
    /// Their octets as stored (CRLF).
    pub octets: u64,
    /// Imported messages whose `From ` line had no readable date: they
    /// are dated at the import.
    pub undated: usize,
    /// Maildir messages flagged trashed (T), not imported.
    pub trashed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{self, Argon2Params};
    use crate::storage::Store;
    use std::path::Path;

    fn store_with_alice() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let hash = auth::hash_password(b"pw", Argon2Params::CHEAP).unwrap();
        store.add_user("alice", &hash, None).unwrap();
        (dir, store)
    }

    fn mbox_file(dir: &Path, contents: &[u8]) -> Source {
        let path = dir.join("in.mbox");
        std::fs::write(&path, contents).unwrap();
        Source::Mbox(path, Escaping::Mboxrd)
    }

    #[test]
    fn an_mbox_imports_in_order_with_its_dates_and_exports_back_the_same() {
        let (dir, store) = store_with_alice();
        let input = b"From a@far.test Thu Jan  1 00:00:00 1970\nSubject: 1\n\n>From me\n\n\
From MAILER-DAEMON Wed Dec  2 02:00:47 2026\nSubject: 2\n\ntwo\n\n";
        let source = mbox_file(dir.path(), input);
        let summary = import(&store, "alice", &source, 1000).unwrap();
        assert_eq!(summary.messages, 2);
        let index = store.export_index("alice").unwrap();
        assert_eq!(
            index.iter().map(|e| e.received_at).collect::<Vec<_>>(),
            [0, 1_796_176_847]
        );
        assert_eq!(
            store
                .read_body(index[0].id, 0, index[0].size as usize)
                .unwrap(),
            b"Subject: 1\r\n\r\nFrom me\r\n"
        );
        let out = dir.path().join("out.mbox");
        export(&store, "alice", &out).unwrap();
        // No Return-Path was stored, so the sender becomes MAILER-DAEMON.
        let exported = std::fs::read(&out).unwrap();
        assert_eq!(
            exported,
            b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: 1\n\n>From me\n\n\
From MAILER-DAEMON Wed Dec  2 02:00:47 2026\nSubject: 2\n\ntwo\n\n"
        );
    }

    #[test]
    fn one_bad_message_stops_the_import_before_anything_is_stored() {
        let (dir, store) = store_with_alice();
        let mut input = b"From a Thu Jan  1 00:00:00 1970\nSubject: ok\n\nfine\n\n".to_vec();
        input.extend_from_slice(b"From b Thu Jan  1 00:00:00 1970\n\n");
        input.extend_from_slice(b"From c Thu Jan  1 00:00:00 1970\n");
        input.extend_from_slice(&[b'x'; 2000]);
        input.extend_from_slice(b"\n");
        let source = mbox_file(dir.path(), &input);
        let error = import(&store, "alice", &source, 1000).unwrap_err();
        let ArchiveError::BadMessages(bad) = &error else {
            panic!("expected bad messages, got {error}");
        };
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].position, Position::Mbox { number: 2, line: 6 });
        assert_eq!(bad[0].reason, "the message is empty");
        assert_eq!(bad[1].position, Position::Mbox { number: 3, line: 8 });
        assert!(
            bad[1].reason.contains("larger than the limit"),
            "{}",
            bad[1].reason
        );
        assert!(error
            .to_string()
            .starts_with("2 bad messages, nothing imported: message 2 (line 6)"));
        assert!(store.export_index("alice").unwrap().is_empty());
    }

    #[test]
    fn an_import_over_quota_stores_nothing() {
        let (dir, store) = store_with_alice();
        let count = BATCH_MESSAGES + 10;
        store
            .set_quota(
                "alice",
                crate::storage::Quota {
                    messages: Some(count as u64 - 1),
                    bytes: None,
                },
            )
            .unwrap();
        let mut input = Vec::new();
        for i in 0..count {
            input.extend_from_slice(
                format!("From a Thu Jan  1 00:00:00 1970\nSubject: {i}\n\nx\n\n").as_bytes(),
            );
        }
        let source = mbox_file(dir.path(), &input);
        let error = import(&store, "alice", &source, 1000).unwrap_err();
        assert!(
            matches!(
                error,
                ArchiveError::Storage {
                    source: StorageError::OverQuota { .. }
                }
            ),
            "{error}"
        );
        assert!(error.to_string().ends_with("nothing imported"), "{error}");
        assert!(store.export_index("alice").unwrap().is_empty());
    }

    #[test]
    fn a_maildir_imports_oldest_first_with_the_times_of_its_names() {
        let (dir, store) = store_with_alice();
        let maildir = dir.path().join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        std::fs::write(
            maildir.join("cur/1700000200.M2.h:2,S"),
            "Subject: second\n\n2\n",
        )
        .unwrap();
        std::fs::write(maildir.join("new/1700000100.M1.h"), "Subject: first\n\n1\n").unwrap();
        let summary = import(&store, "alice", &Source::Maildir(maildir.clone()), 1000).unwrap();
        assert_eq!(summary.messages, 2);
        let index = store.export_index("alice").unwrap();
        assert_eq!(index[0].received_at, 1_700_000_100);
        assert_eq!(
            store
                .read_body(index[0].id, 0, index[0].size as usize)
                .unwrap(),
            b"Subject: first\r\n\r\n1\r\n"
        );
        std::fs::write(maildir.join("new/1700000300.M3.h"), "").unwrap();
        let error = import(&store, "alice", &Source::Maildir(maildir.clone()), 1000).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("1700000300.M3.h: the message is empty"),
            "{error}"
        );
        assert_eq!(store.export_index("alice").unwrap().len(), 2);
    }

    #[test]
    fn export_never_overwrites_and_leaves_no_temporary_file() {
        let (dir, store) = store_with_alice();
        let out = dir.path().join("out.mbox");
        std::fs::write(&out, b"precious").unwrap();
        assert!(matches!(
            export(&store, "alice", &out),
            Err(ArchiveError::Exists(_))
        ));
        assert_eq!(std::fs::read(&out).unwrap(), b"precious");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    }
}
