//! Taking a message in without holding it in memory: LMTP's DATA,
//! `poplite deliver` and `import` feed it here in pieces as it arrives.
//!
//! Up to [`INGEST_BUFFER`] octets a message stays in memory and is stored
//! in one transaction, as any small message always was. Past that, it is
//! written in batches of whole chunks under a hidden staging user (the
//! imports' mechanism), and published in one transaction
//! once it is whole: the quota is checked there, for the exact size, and
//! until then nothing of it is visible. A message that fails, or whose
//! writer dies, leaves only a staging user that `discard` (or, after a
//! crash, the next import or server start) removes.

use super::{
    Backend, MessageId, SpoolRow, SpoolWriter, Staging, StorageError, Store, UserId, BODY_CHUNK,
};
use crate::mail::{Facts, Message, MessageError, Normalizer};

/// Octets of a message held in memory before it goes to the database in
/// batches. 16 chunks: large enough that most mail (and every benchmark
/// message) takes the one-transaction path, small enough that four
/// deliveries of any size cost a few megabytes.
pub const INGEST_BUFFER: usize = 16 * BODY_CHUNK;

/// Why a message could not be taken in.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The message broke a rule (empty, too large); nothing was stored.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The database failed; nothing was stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A message being taken in (see the module's header).
#[derive(Debug)]
pub struct Incoming {
    /// For an import: its staging user, and the message's arrival time.
    import: Option<(UserId, Option<i64>)>,
    normalizer: Normalizer,
    /// Normalised octets not yet in the database.
    buffer: Vec<u8>,
    /// Largest message accepted, not counting the header put before it.
    limit: u64,
    /// Octets of whole header lines put before the message.
    prefix_len: usize,
    /// Where it is written once it outgrows the buffer.
    spool: Option<Spool>,
}

/// Whose staging user a spooled message is under.
#[derive(Debug)]
pub(crate) enum Home {
    /// Its own, removed with it.
    Own(Staging),
    /// An import's (this staging user id): it stays there once whole,
    /// to be published with the rest of the import.
    Import(UserId),
}

impl Home {
    /// The staging user's id.
    pub(crate) fn staging_user_id(&self) -> UserId {
        match self {
            Home::Own(staging) => staging.user_id,
            Home::Import(user_id) => *user_id,
        }
    }
}

/// The staged rows of a message too large to hold, and what writes them
/// (a backend's, see [`Spooling::begin_spool_row`](super::Spooling::begin_spool_row)).
pub struct Spool {
    pub(crate) home: Home,
    pub(crate) message_id: MessageId,
    next_seq: i64,
    /// Dropped once the message is whole, with whatever connection it held.
    writer: Option<Box<dyn SpoolWriter>>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("message_id", &self.message_id)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl Spool {
    /// A spool for the empty message row `message_id` under `home`.
    pub(crate) fn new(home: Home, message_id: MessageId, writer: Box<dyn SpoolWriter>) -> Spool {
        Spool {
            home,
            message_id,
            next_seq: 0,
            writer: Some(writer),
        }
    }

    fn row(&self) -> SpoolRow {
        SpoolRow {
            message_id: self.message_id,
            staging_user_id: self.home.staging_user_id(),
        }
    }
}

/// A message taken in whole, ready to be stored for its recipients.
#[derive(Debug)]
pub struct Received {
    pub(crate) held: Held,
    /// Octets of the header put before it when it was taken in.
    pub(crate) prefix_len: usize,
}

#[derive(Debug)]
pub(crate) enum Held {
    Memory(Message),
    Spooled {
        spool: Spool,
        facts: Facts,
    },
    /// Whole, under its import's staging user: nothing more to do here.
    Staged {
        size: u64,
    },
}

impl Received {
    /// Its size in octets, with the header put before it.
    pub fn size(&self) -> u64 {
        match &self.held {
            Held::Memory(message) => message.size(),
            Held::Spooled { facts, .. } => facts.size,
            Held::Staged { size } => *size,
        }
    }

    /// The message, if it was small enough to be held (an import stages
    /// it in its batch); `None` once it is in the database already.
    pub fn into_message(self) -> Option<Message> {
        match self.held {
            Held::Memory(message) => Some(message),
            Held::Spooled { .. } | Held::Staged { .. } => None,
        }
    }
}

impl Incoming {
    /// Starts taking in a message of at most `limit` octets (normalised),
    /// with `prefix` (whole CRLF-ended header lines, such as LMTP's
    /// `Return-Path`) put before it and not counted against the limit.
    pub fn new(prefix: &str, limit: u64) -> Incoming {
        let mut incoming = Incoming {
            import: None,
            normalizer: Normalizer::new(),
            buffer: Vec::new(),
            limit,
            prefix_len: prefix.len(),
            spool: None,
        };
        incoming
            .normalizer
            .push(prefix.as_bytes(), &mut incoming.buffer);
        incoming
    }

    /// Starts taking in a message for an import (see `Store::begin_import`):
    /// one too large to hold is staged under the import's staging user,
    /// dated `received_at` (or now), and stays there once whole.
    pub fn for_import(staging: &Staging, limit: u64, received_at: Option<i64>) -> Incoming {
        Incoming {
            import: Some((staging.user_id, received_at)),
            ..Incoming::new("", limit)
        }
    }

    /// Takes the next piece of the message. Past the limit it fails (and
    /// the caller discards it); past the buffer, whole chunks go to the
    /// database.
    pub fn write(&mut self, store: &Store, raw: &[u8]) -> Result<(), IngestError> {
        self.normalizer.push(raw, &mut self.buffer);
        if self.normalizer.size() - self.prefix_len as u64 > self.limit {
            return Err(MessageError::TooLarge { limit: self.limit }.into());
        }
        if self.buffer.len() >= INGEST_BUFFER {
            let whole = self.buffer.len() - self.buffer.len() % BODY_CHUNK;
            self.spill(store, whole)?;
        }
        Ok(())
    }

    /// Ends the message; `allow_empty` for LMTP, whose empty body still
    /// gets its header.
    pub fn finish(mut self, store: &Store, allow_empty: bool) -> Result<Received, IngestError> {
        let facts = std::mem::take(&mut self.normalizer).finish(&mut self.buffer);
        let limit = self.limit;
        if facts.size > limit.saturating_add(self.prefix_len as u64) {
            self.discard(store);
            return Err(MessageError::TooLarge { limit }.into());
        }
        if facts.size == self.prefix_len as u64 && !allow_empty {
            self.discard(store);
            return Err(MessageError::Empty.into());
        }
        if self.spool.is_some() {
            if let Err(error) = self.spill(store, self.buffer.len()) {
                self.discard(store);
                return Err(error.into());
            }
        }
        let held = match self.spool.take() {
            None => Held::Memory(Message::from_normalized(self.buffer, facts)),
            Some(spool) => match spool.home {
                Home::Import(_) => {
                    let received_at = self.import.and_then(|(_, at)| at);
                    let row = spool.row();
                    let Some(mut writer) = spool.writer else {
                        return Err(StorageError::ImportGone.into());
                    };
                    writer.settle(row, &facts, received_at)?;
                    Held::Staged { size: facts.size }
                }
                Home::Own(_) => Held::Spooled {
                    spool: Spool {
                        writer: None,
                        ..spool
                    },
                    facts,
                },
            },
        };
        Ok(Received {
            held,
            prefix_len: self.prefix_len,
        })
    }

    /// Gives up on the message: whatever was staged goes.
    pub fn discard(self, store: &Store) {
        if let Some(spool) = self.spool {
            discard_spool(&**store, spool);
        }
    }

    /// Writes the first `len` octets of the buffer to the staged message,
    /// in one transaction.
    fn spill(&mut self, store: &Store, len: usize) -> Result<(), StorageError> {
        let spool = match &mut self.spool {
            Some(spool) => spool,
            None => {
                let import = self.import.map(|(staging, _)| staging);
                self.spool.insert(begin_spool(store, import)?)
            }
        };
        let row = spool.row();
        let Some(writer) = &mut spool.writer else {
            return Err(StorageError::ImportGone);
        };
        writer.append(row, spool.next_seq, &self.buffer[..len])?;
        spool.next_seq += len.div_ceil(BODY_CHUNK) as i64;
        self.buffer.drain(..len);
        Ok(())
    }
}

impl Store {
    /// Stores a copy of the message for `user` with `header` in place of
    /// the one it was taken in with, durably; returns its UID. A staged
    /// message is copied chunk by chunk inside the transaction, so the
    /// copy too never holds the message in memory.
    pub fn copy_received(
        &self,
        user: &str,
        received: &Received,
        header: &str,
    ) -> Result<String, StorageError> {
        let (spool, facts) = match &received.held {
            Held::Memory(message) => {
                let copy = message.with_header_replaced(received.prefix_len, header);
                let mut uids = self.deliver(user, std::slice::from_ref(&copy))?;
                return uids.pop().ok_or(StorageError::ImportGone);
            }
            Held::Spooled { spool, facts } => (spool, facts),
            Held::Staged { .. } => return Err(StorageError::ImportGone),
        };
        let prefix_len = received.prefix_len as u64;
        let copied = Facts {
            size: facts.size - prefix_len + header.len() as u64,
            header_len: facts.header_len - prefix_len + header.len() as u64,
            subject: facts.subject.clone(),
        };
        self.copy_spooled(user, spool, &copied, header, received.prefix_len)
    }

    /// Removes what taking the message in staged (nothing for a message
    /// held in memory, or one already published).
    pub fn discard_received(&self, received: Received) {
        if let Held::Spooled { spool, .. } = received.held {
            discard_spool(&**self, spool);
        }
    }
}

/// A spool for a message too large to hold: under the import's staging
/// user, or a new one of its own, removed again if the row cannot be made.
fn begin_spool(store: &Store, import: Option<UserId>) -> Result<Spool, StorageError> {
    let home = match import {
        Some(staging_user_id) => Home::Import(staging_user_id),
        None => Home::Own(store.begin_import()?),
    };
    match store.begin_spool_row(home.staging_user_id()) {
        Ok((message_id, writer)) => Ok(Spool::new(home, message_id, writer)),
        Err(error) => {
            if let Home::Own(staging) = home {
                let _ = store.abandon_import(staging);
            }
            Err(error)
        }
    }
}

/// Removes a spooled message: its own staging user, or its row under an
/// import's. A failure only logs, since the next import or server start
/// removes what a dead import or delivery left.
fn discard_spool(store: &dyn Backend, spool: Spool) {
    let removed = match spool.home {
        Home::Own(staging) => store.abandon_import(staging),
        Home::Import(_) => store.discard_message(spool.message_id),
    };
    if let Err(error) = removed {
        log::warn!("cannot remove a message that was not delivered (removed later): {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Quota;

    /// Whether message `id` is still stored, with at least one octet.
    fn message_exists(store: &Store, id: MessageId) -> bool {
        store.read_body(id, 0, 1).is_ok()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("i.db")).unwrap();
        store.add_user("alice", "$argon2id$x", None).unwrap();
        store.add_user("bob", "$argon2id$x", None).unwrap();
        (dir, store)
    }

    /// A message of `lines` LF-ended lines, and its stored form.
    fn big(lines: usize) -> (Vec<u8>, Vec<u8>) {
        let mut raw = b"Subject: big one\n\n".to_vec();
        let mut stored = b"Subject: big one\r\n\r\n".to_vec();
        for i in 0..lines {
            let line = format!("line {i:07} of a message too large to hold in memory");
            raw.extend_from_slice(format!("{line}\n").as_bytes());
            stored.extend_from_slice(format!("{line}\r\n").as_bytes());
        }
        (raw, stored)
    }

    fn take_in(store: &Store, prefix: &str, raw: &[u8], piece: usize) -> Received {
        let mut incoming = Incoming::new(prefix, u64::MAX);
        for part in raw.chunks(piece) {
            incoming.write(store, part).unwrap();
        }
        incoming.finish(store, false).unwrap()
    }

    fn stored_bytes(store: &Store, user: &str) -> Vec<Vec<u8>> {
        let (id, _) = store.user(user).unwrap();
        store
            .maildrop(id)
            .unwrap()
            .iter()
            .map(|m| store.read_body(m.id, 0, m.size as usize).unwrap())
            .collect()
    }

    #[test]
    fn a_large_message_is_spooled_and_published_byte_for_byte() {
        let (_dir, store) = store();
        let (raw, stored) = big(60_000);
        assert!(stored.len() > 3 * INGEST_BUFFER);
        let received = take_in(&store, "", &raw, 7_777);
        let Held::Spooled { spool, .. } = &received.held else {
            panic!("not spooled")
        };
        let staged = spool.message_id;
        // Staged, the message is nowhere to be seen.
        assert!(store.mailbox("alice").unwrap().is_empty());
        let uid = store
            .publish_received("alice", &[&received])
            .unwrap()
            .remove(0);
        store.discard_received(received);
        assert_eq!(stored_bytes(&store, "alice"), vec![stored.clone()]);
        let listed = &store.mailbox("alice").unwrap()[0];
        assert_eq!(listed.uid, uid);
        assert_eq!(listed.size, stored.len() as u64);
        assert_eq!(listed.subject.as_deref(), Some("big one"));
        assert!(message_exists(&store, staged), "moved, not copied");
    }

    #[test]
    fn copies_get_their_own_header_and_the_spool_goes_with_discard() {
        let (_dir, store) = store();
        let (raw, stored) = big(40_000);
        let first = "Delivered-To: alice@x\r\n";
        let received = take_in(&store, first, &raw, 65_536);
        store.copy_received("alice", &received, first).unwrap();
        let other = "Return-Path: <s@y>\r\nDelivered-To: bob@x\r\n";
        store.copy_received("bob", &received, other).unwrap();
        let Held::Spooled { spool, .. } = &received.held else {
            panic!("not spooled")
        };
        let staged = spool.message_id;
        store.discard_received(received);
        assert!(!message_exists(&store, staged));
        assert_eq!(
            stored_bytes(&store, "alice"),
            vec![[first.as_bytes(), &stored].concat()]
        );
        assert_eq!(
            stored_bytes(&store, "bob"),
            vec![[other.as_bytes(), &stored].concat()]
        );
        let bob = &store.mailbox("bob").unwrap()[0];
        assert_eq!(bob.size, (other.len() + stored.len()) as u64);
    }

    #[test]
    fn a_small_message_is_stored_as_it_always_was() {
        let (_dir, store) = store();
        let received = take_in(&store, "X-A: 1\r\n", b"Subject: s\n\nbody\n", 3);
        assert!(matches!(received.held, Held::Memory(_)));
        store.copy_received("bob", &received, "X-B: 2\r\n").unwrap();
        store.publish_received("alice", &[&received]).unwrap();
        assert_eq!(
            stored_bytes(&store, "alice"),
            vec![b"X-A: 1\r\nSubject: s\r\n\r\nbody\r\n".to_vec()]
        );
        assert_eq!(
            stored_bytes(&store, "bob"),
            vec![b"X-B: 2\r\nSubject: s\r\n\r\nbody\r\n".to_vec()]
        );
    }

    #[test]
    fn the_quota_counts_the_whole_spooled_message_and_refusal_stores_nothing() {
        let (_dir, store) = store();
        let (raw, stored) = big(30_000);
        let quota = Quota {
            messages: None,
            bytes: Some(stored.len() as u64 - 1),
        };
        store.set_quota("alice", quota).unwrap();
        let received = take_in(&store, "", &raw, 100_000);
        let refused = store.publish_received("alice", &[&received]);
        assert!(matches!(refused, Err(StorageError::OverQuota { .. })));
        store.discard_received(received);
        assert!(store.mailbox("alice").unwrap().is_empty());
    }

    #[test]
    fn past_the_limit_it_fails_and_a_discard_leaves_nothing() {
        let (_dir, store) = store();
        let (raw, _) = big(40_000);
        let mut incoming = Incoming::new("", 2 * INGEST_BUFFER as u64);
        let mut failed = None;
        for part in raw.chunks(100_000) {
            if let Err(error) = incoming.write(&store, part) {
                failed = Some(error);
                break;
            }
        }
        assert!(matches!(
            failed,
            Some(IngestError::Message(MessageError::TooLarge { .. }))
        ));
        let staged = incoming.spool.as_ref().map(|spool| spool.message_id);
        let staged = staged.expect("spooled before the limit was reached");
        assert!(message_exists(&store, staged));
        incoming.discard(&store);
        assert!(!message_exists(&store, staged));
    }

    #[test]
    fn an_empty_message_is_refused_unless_allowed() {
        let (_dir, store) = store();
        let refused = Incoming::new("", 10).finish(&store, false);
        assert!(matches!(
            refused,
            Err(IngestError::Message(MessageError::Empty))
        ));
        let lmtp = Incoming::new("Delivered-To: a\r\n", 10)
            .finish(&store, true)
            .unwrap();
        assert_eq!(lmtp.size(), 17);
    }
}
