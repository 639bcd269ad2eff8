//! Import: an mbox file or a Maildir into a user's maildrop, all or
//! nothing, read twice (checked, then staged) and never held whole.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::{ArchiveError, BadMessage, Position, Source, Summary};
use crate::mail::maildir;
use crate::mail::mbox::{Escaping, MboxEnvelope, MboxError, MboxReader, MboxSink};
use crate::mail::{Message, MessageError, Normalizer};
use crate::storage::{Incoming, IngestError, Staging, Store, INGEST_BUFFER};

/// Messages stored per transaction: one sync each. 1,000 keeps a batch's
/// memory at a few MB for typical mail while the sync cost is amortised.
pub const BATCH_MESSAGES: usize = 1000;

/// A batch also ends once it holds this many octets.
const BATCH_OCTETS: u64 = 32 * 1024 * 1024;

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
