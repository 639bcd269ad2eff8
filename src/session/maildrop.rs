//! The maildrop as a session sees it: a snapshot taken at login plus the
//! session's deletion marks (RFC 1939 §5). Messages delivered later are
//! not in it, so message numbers never shift during a session.

use crate::mail::messages;
use crate::protocol::command::MessageNumber;
use crate::protocol::reply::Reply;
use crate::storage::{MessageId, MessageMeta, UserId};

/// A user's messages as they were at login, with deletion marks.
#[derive(Debug, Clone)]
pub struct Maildrop {
    user_id: UserId,
    user: String,
    messages: Vec<MessageMeta>,
    deleted: Vec<bool>,
}

impl Maildrop {
    /// A snapshot of `messages`, in delivery order, none marked.
    pub fn new(user_id: UserId, user: String, messages: Vec<MessageMeta>) -> Maildrop {
        let deleted = vec![false; messages.len()];
        Maildrop {
            user_id,
            user,
            messages,
            deleted,
        }
    }

    /// The owner's database id.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The owner's name as stored.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Count and total octets of the messages not marked deleted.
    pub fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(count, size), (_, m)| (count + 1, size + m.size))
    }

    /// The messages not marked deleted, with their numbers.
    pub fn live(&self) -> impl Iterator<Item = (MessageNumber, &MessageMeta)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
            .filter_map(|(i, m)| MessageNumber::from_index(i).map(|n| (n, m)))
    }

    /// `(id, size)` of the messages after `n` not marked deleted, in
    /// order: what a client reading its maildrop through is likely to ask
    /// for next.
    pub fn live_after(&self, n: MessageNumber) -> impl Iterator<Item = (MessageId, u64)> + '_ {
        let next = (n.index() + 1).min(self.messages.len());
        self.messages[next..]
            .iter()
            .zip(&self.deleted[next..])
            .filter(|(_, &deleted)| !deleted)
            .map(|(m, _)| (m.id, m.size))
    }

    /// The message `n`, or the `-ERR` to answer when it does not exist or
    /// is marked deleted.
    pub fn get(&self, n: MessageNumber) -> Result<&MessageMeta, Reply> {
        match self.messages.get(n.index()) {
            None => Err(Reply::err(format!(
                "no such message, only {} in maildrop",
                messages(self.messages.len() as u64)
            ))),
            Some(_) if self.deleted[n.index()] => {
                Err(Reply::err(format!("message {n} already deleted")))
            }
            Some(message) => Ok(message),
        }
    }

    /// Marks message `n` deleted.
    pub fn mark_deleted(&mut self, n: MessageNumber) -> Result<(), Reply> {
        self.get(n)?;
        self.deleted[n.index()] = true;
        Ok(())
    }

    /// Removes every deletion mark.
    pub fn unmark_all(&mut self) {
        self.deleted.fill(false);
    }

    /// Database ids of the messages marked deleted.
    pub fn marked_ids(&self) -> Vec<MessageId> {
        self.messages
            .iter()
            .zip(&self.deleted)
            .filter(|(_, &deleted)| deleted)
            .map(|(m, _)| m.id)
            .collect()
    }
}
