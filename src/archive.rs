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

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::maildir;
use crate::mbox::{self, Escaping, MboxEnvelope, MboxError, MboxReader, MboxSink};
use crate::message::{Message, MessageError, Normalizer};
use crate::storage::{Incoming, IngestError, Staging, StorageError, Store, INGEST_BUFFER};

/// Where an import reads from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An mbox file, with how it escaped `From ` lines.
    Mbox(PathBuf, Escaping),
    /// A Maildir directory.
    Maildir(PathBuf),
}

/// Messages stored per transaction: one sync each. 1,000 keeps a batch's
/// memory at a few MB for typical mail while the sync cost is amortised.
pub const BATCH_MESSAGES: usize = 1000;

/// A batch also ends once it holds this many octets.
const BATCH_OCTETS: u64 = 32 * 1024 * 1024;

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

/// A source ready to be read, twice: a Maildir is listed once, so both
/// passes see the same files.
enum Listed<'a> {
    Mbox(&'a Path, Escaping),
    Maildir(maildir::Listing),
}

impl Listed<'_> {
    fn of(source: &Source) -> Result<Listed<'_>, ArchiveError> {
        Ok(match source {
            Source::Mbox(path, escaping) => Listed::Mbox(path, *escaping),
            Source::Maildir(dir) => {
                Listed::Maildir(maildir::list(dir).map_err(|source| ArchiveError::Read {
                    path: dir.clone(),
                    source,
                })?)
            }
        })
    }

    /// Maildir messages flagged trashed, left out.
    fn trashed(&self) -> usize {
        match self {
            Listed::Mbox(..) => 0,
            Listed::Maildir(listing) => listing.trashed,
        }
    }
}

/// Where the messages of a source go as they are read: each one's bytes
/// arrive in pieces between `begin` and `end`, so none is held whole.
trait Sink {
    /// A message starts.
    fn begin(&mut self, received_at: Option<i64>) -> Result<(), ArchiveError>;
    /// Its next bytes, as the source holds them.
    fn piece(&mut self, bytes: &[u8]);
    /// It ended, whole, or `unreadable` with the reason.
    fn end(&mut self, position: Position, unreadable: Option<String>) -> Result<(), ArchiveError>;
}

/// Hands an mbox message to a [`Sink`], keeping the first failure.
struct MboxToSink<'a, S> {
    sink: &'a mut S,
    begun: Result<(), ArchiveError>,
}

impl<S: Sink> MboxSink for MboxToSink<'_, S> {
    fn begin(&mut self, envelope: &MboxEnvelope) {
        self.begun = self.sink.begin(envelope.received_at);
    }

    fn piece(&mut self, bytes: &[u8]) {
        if self.begun.is_ok() {
            self.sink.piece(bytes);
        }
    }
}

/// Octets a Maildir file is read in at a time.
const READ_PIECE: usize = 64 * 1024;

/// Reads every message of `source` in order into `sink`.
fn read_source(source: &Listed, sink: &mut impl Sink) -> Result<(), ArchiveError> {
    match source {
        Listed::Mbox(path, escaping) => {
            let read_error = |source| ArchiveError::Read {
                path: path.to_path_buf(),
                source,
            };
            let file = File::open(path).map_err(read_error)?;
            let mut reader = MboxReader::new(
                BufReader::with_capacity(256 * 1024, file),
                *escaping,
                u64::MAX,
            );
            loop {
                let mut adapter = MboxToSink {
                    sink,
                    begun: Ok(()),
                };
                let next = reader.next_message_into(&mut adapter);
                adapter.begun?;
                let next = next.map_err(|error| match error {
                    MboxError::Io(source) => read_error(source),
                    not_mbox => ArchiveError::NotMbox {
                        path: path.to_path_buf(),
                        source: not_mbox,
                    },
                })?;
                let Some(found) = next else {
                    return Ok(());
                };
                let position = Position::Mbox {
                    number: found.number,
                    line: found.line,
                };
                sink.end(position, None)?;
            }
        }
        Listed::Maildir(listing) => {
            let mut buf = vec![0u8; READ_PIECE];
            for entry in &listing.messages {
                sink.begin(Some(entry.received_at))?;
                let read = File::open(&entry.path).and_then(|mut file| loop {
                    match file.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => sink.piece(&buf[..n]),
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(error),
                    }
                });
                let unreadable = read.err().map(|error| format!("cannot read it: {error}"));
                sink.end(Position::File(entry.path.clone()), unreadable)?;
            }
            Ok(())
        }
    }
}

/// The first pass: checks every message as it is read (its size after
/// normalising, against the limit; not empty), storing nothing.
struct Check {
    limit: u64,
    normalizer: Normalizer,
    /// Normalised bytes, dropped as soon as they are counted.
    scratch: Vec<u8>,
    /// Each good message's size, in order, for the second pass.
    sizes: Vec<u64>,
    octets: u64,
    bad: Vec<BadMessage>,
}

impl Sink for Check {
    fn begin(&mut self, _: Option<i64>) -> Result<(), ArchiveError> {
        self.normalizer = Normalizer::new();
        Ok(())
    }

    fn piece(&mut self, bytes: &[u8]) {
        // Past the limit the count no longer matters.
        if self.normalizer.size() <= self.limit {
            self.normalizer.push(bytes, &mut self.scratch);
            self.scratch.clear();
        }
    }

    fn end(&mut self, position: Position, unreadable: Option<String>) -> Result<(), ArchiveError> {
        let facts = std::mem::take(&mut self.normalizer).finish(&mut self.scratch);
        self.scratch.clear();
        let reason = match unreadable {
            Some(reason) => reason,
            None if facts.size > self.limit => {
                MessageError::TooLarge { limit: self.limit }.to_string()
            }
            None if facts.size == 0 => MessageError::Empty.to_string(),
            None => {
                self.sizes.push(facts.size);
                self.octets += facts.size;
                return Ok(());
            }
        };
        self.bad.push(BadMessage { position, reason });
        Ok(())
    }
}

/// The second pass: takes each message in under the import's staging
/// user. Small ones are stored in batches (one sync per batch); one too
/// large to hold is staged in pieces as it is read (`storage::ingest`),
/// after the batch before it, so the import keeps the source's order.
struct Stage<'a> {
    store: &'a Store,
    staging: &'a Staging,
    limit: u64,
    /// The first pass's sizes, in order.
    sizes: std::vec::IntoIter<u64>,
    incoming: Option<Incoming>,
    received_at: Option<i64>,
    /// The first failure; the rest of the source is only read.
    failed: Option<IngestError>,
    batch: Vec<(Message, Option<i64>)>,
    batch_octets: u64,
    summary: Summary,
}

impl Stage<'_> {
    fn stage_batch(&mut self) -> Result<(), ArchiveError> {
        if !self.batch.is_empty() {
            self.store
                .stage(self.staging, &self.batch)
                .map_err(|source| ArchiveError::Storage { source })?;
            self.batch.clear();
            self.batch_octets = 0;
        }
        Ok(())
    }

    /// Ends the current message: into the batch, or already staged.
    fn finish(&mut self, position: Position) -> Result<(), ArchiveError> {
        let Some(incoming) = self.incoming.take() else {
            return Ok(());
        };
        let received = incoming
            .finish(self.store, false)
            .map_err(|error| ingest_failure(error, position))?;
        self.summary.messages += 1;
        self.summary.octets += received.size();
        self.summary.undated += usize::from(self.received_at.is_none());
        if let Some(message) = received.into_message() {
            self.batch_octets += message.size();
            self.batch.push((message, self.received_at));
            if self.batch.len() >= BATCH_MESSAGES || self.batch_octets >= BATCH_OCTETS {
                self.stage_batch()?;
            }
        }
        Ok(())
    }
}

/// Why taking in the message at `position` failed in the second pass: a
/// message the first pass passed can only fail if the file changed since.
fn ingest_failure(error: IngestError, position: Position) -> ArchiveError {
    match error {
        IngestError::Storage(source) => ArchiveError::Storage { source },
        IngestError::Message(error) => ArchiveError::BadMessages(vec![BadMessage {
            position,
            reason: format!("{error} (the source changed during the import)"),
        }]),
    }
}

impl Sink for Stage<'_> {
    fn begin(&mut self, received_at: Option<i64>) -> Result<(), ArchiveError> {
        // A message that will be staged in pieces takes its place (its id)
        // when its first piece is written: the batch before it goes first.
        if self
            .sizes
            .next()
            .is_some_and(|size| size > INGEST_BUFFER as u64)
        {
            self.stage_batch()?;
        }
        self.received_at = received_at;
        self.incoming = Some(Incoming::for_import(self.staging, self.limit, received_at));
        Ok(())
    }

    fn piece(&mut self, bytes: &[u8]) {
        let Some(incoming) = &mut self.incoming else {
            return;
        };
        if let Err(error) = incoming.write(self.store, bytes) {
            if let Some(incoming) = self.incoming.take() {
                incoming.discard(self.store);
            }
            self.failed = Some(error);
        }
    }

    fn end(&mut self, position: Position, unreadable: Option<String>) -> Result<(), ArchiveError> {
        if let Some(error) = self.failed.take() {
            return Err(ingest_failure(error, position));
        }
        if let Some(reason) = unreadable {
            if let Some(incoming) = self.incoming.take() {
                incoming.discard(self.store);
            }
            return Err(ArchiveError::BadMessages(vec![BadMessage {
                position,
                reason: format!("{reason} (the source changed during the import)"),
            }]));
        }
        self.finish(position)
    }
}

/// Imports every message of `source` into `user`'s maildrop, keeping
/// arrival times, all or nothing (see the module documentation). No
/// message is ever held whole: each is read in pieces, twice.
pub fn import(
    store: &Store,
    user: &str,
    source: &Source,
    limit: u64,
) -> Result<Summary, ArchiveError> {
    let storage = |source| ArchiveError::Storage { source };
    store.user(user).map_err(storage)?;
    // First pass: check everything, store nothing.
    let listed = Listed::of(source)?;
    let mut check = Check {
        limit,
        normalizer: Normalizer::new(),
        scratch: Vec::new(),
        sizes: Vec::new(),
        octets: 0,
        bad: Vec::new(),
    };
    read_source(&listed, &mut check)?;
    if !check.bad.is_empty() {
        return Err(ArchiveError::BadMessages(check.bad));
    }
    // Over quota already: say so before storing anything (publishing
    // checks again, for deliveries that arrive meanwhile).
    let count = check.sizes.len() as u64;
    store
        .check_room(user, count, check.octets)
        .map_err(storage)?;
    // Second pass: store out of sight, then publish everything at once.
    let staging = store.begin_import().map_err(storage)?;
    let mut stage = Stage {
        store,
        staging: &staging,
        limit,
        sizes: check.sizes.into_iter(),
        incoming: None,
        received_at: None,
        failed: None,
        batch: Vec::new(),
        batch_octets: 0,
        summary: Summary {
            trashed: listed.trashed(),
            ..Summary::default()
        },
    };
    let staged = read_source(&listed, &mut stage)
        .and_then(|()| stage.stage_batch())
        .and_then(|()| store.publish_import(&staging, user).map_err(storage));
    if let Some(incoming) = stage.incoming.take() {
        incoming.discard(store);
    }
    let summary = stage.summary;
    match staged {
        Ok(_) => Ok(summary),
        Err(error) => {
            // Nothing was ever visible; if even this fails, the next
            // import or server start removes the staged copy.
            if let Err(undo) = store.abandon_import(staging) {
                log::warn!(
                    "cannot remove the staged messages now ({undo}); they are hidden, and go later"
                );
            }
            Err(error)
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{self, Argon2Params};

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
