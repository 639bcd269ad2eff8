//! A mail transaction after its data: the message stored for each
//! recipient in turn, and the replies. LMTP gives one reply per recipient
//! as soon as each is known (RFC 2033 §4.2: a crash half-way then repeats
//! only the recipients not yet answered); SMTP gives one for all (see
//! `smtp::Tally` for how it sums them up).

use std::collections::HashMap;

use super::smtp::{Tally, Trace};
use super::{Dialect, Recipient, Reply};

/// How storing the message for one user ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Stored durably, under this UID.
    Stored(String),
    /// The user's quota has no room for it; nothing was stored.
    OverQuota,
    /// The user was removed between RCPT and the end of the data.
    UserGone,
    /// A temporary failure (a lock held too long, a full disk).
    Failed,
}

/// A complete mail transaction, delivered one recipient at a time.
#[derive(Debug)]
pub struct Transaction {
    sender: String,
    recipients: std::vec::IntoIter<Recipient>,
    count: usize,
    /// Whether the body passed the size limit (then every recipient is refused).
    too_large: bool,
    /// Whether the recipients name one user, who gets the only copy.
    one_copy: bool,
    /// The recipient being stored.
    storing: Option<Recipient>,
    /// Each user's outcome so far (by lower-cased name): a user named by
    /// two RCPTs gets one copy, and both RCPTs get its reply.
    outcomes: HashMap<String, DeliveryOutcome>,
    /// What each copy's headers say.
    trace: Trace,
    /// SMTP's outcomes so far, summed up in its one reply; `None` for LMTP.
    tally: Option<Tally>,
}

/// The next thing to do for a transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Send this reply (LMTP: the next recipient's; SMTP: the one reply).
    Reply(Reply),
    /// Store the message for `user` with `header` before it, then call
    /// [`Transaction::stored`] and send its reply, if it has one.
    Store {
        /// The user's stored name.
        user: String,
        /// This recipient's headers (`Return-Path`, `Delivered-To`, and
        /// for SMTP `Received`).
        header: String,
    },
}

impl Transaction {
    pub(super) fn new(
        dialect: Dialect,
        sender: String,
        recipients: Vec<Recipient>,
        too_large: bool,
        trace: Trace,
    ) -> Transaction {
        let one_copy = recipients
            .iter()
            .all(|r| r.user.eq_ignore_ascii_case(&recipients[0].user));
        Transaction {
            sender,
            count: recipients.len(),
            recipients: recipients.into_iter(),
            too_large,
            one_copy,
            storing: None,
            outcomes: HashMap::new(),
            trace,
            tally: (dialect == Dialect::Smtp).then(Tally::default),
        }
    }

    /// Whether the recipients name a single user (however many RCPTs),
    /// so the message is stored once: the driver may then store the
    /// copy it took in instead of making one.
    pub fn has_one_copy(&self) -> bool {
        self.one_copy
    }

    /// How many recipients the transaction has.
    pub fn recipient_count(&self) -> usize {
        self.count
    }

    /// Whether the body was over the size limit (every recipient refused).
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }

    /// What to do next, in RCPT order; `None` once every reply went out.
    pub fn next_delivery(&mut self) -> Option<Delivery> {
        loop {
            let Some(recipient) = self.recipients.next() else {
                // SMTP's one reply, once, after the last recipient.
                return self.tally.take().map(|tally| {
                    Delivery::Reply(match self.too_large {
                        true => too_large(),
                        false => tally.reply(self.count),
                    })
                });
            };
            let outcome = match self.outcomes.get(&recipient.user.to_ascii_lowercase()) {
                _ if self.too_large => None,
                Some(outcome) => Some(outcome.clone()),
                None => {
                    let header = self.trace.header(&self.sender, &recipient.address);
                    let user = recipient.user.clone();
                    self.storing = Some(recipient);
                    return Some(Delivery::Store { user, header });
                }
            };
            if let Some(reply) = self.answer(&recipient.address, outcome.as_ref()) {
                return Some(Delivery::Reply(reply));
            }
        }
    }

    /// The reply (LMTP) for the recipient whose message
    /// [`Delivery::Store`] asked for; SMTP keeps it for its one reply.
    pub fn stored(&mut self, outcome: DeliveryOutcome) -> Option<Reply> {
        let Some(recipient) = self.storing.take() else {
            return Some(Reply::new(451, "4.3.0 no delivery was in progress"));
        };
        let reply = self.answer(&recipient.address, Some(&outcome));
        self.outcomes
            .insert(recipient.user.to_ascii_lowercase(), outcome);
        reply
    }

    /// One recipient's reply (`None` outcome: the body was too large);
    /// for SMTP, kept in the tally instead.
    fn answer(&mut self, address: &str, outcome: Option<&DeliveryOutcome>) -> Option<Reply> {
        match (&mut self.tally, outcome) {
            (Some(tally), Some(outcome)) => {
                tally.add(address, outcome);
                None
            }
            (Some(_), None) => None,
            (None, Some(outcome)) => Some(delivery_reply(address, outcome)),
            (None, None) => Some(too_large()),
        }
    }
}

/// The reply to a message over the size limit, at MAIL or after DATA.
pub(super) fn too_large() -> Reply {
    Reply::new(552, "5.3.4 message size exceeds fixed maximum message size")
}

/// The reply for one recipient after the data.
pub(super) fn delivery_reply(address: &str, outcome: &DeliveryOutcome) -> Reply {
    match outcome {
        DeliveryOutcome::Stored(uid) => {
            Reply::new(250, format!("2.0.0 <{address}> delivered as {uid}"))
        }
        DeliveryOutcome::OverQuota => Reply::new(552, format!("5.2.2 <{address}> mailbox is full")),
        DeliveryOutcome::UserGone => {
            Reply::new(550, format!("5.1.1 <{address}> no such user here"))
        }
        DeliveryOutcome::Failed => Reply::new(
            451,
            format!("4.3.0 <{address}> temporary failure storing the message, try again later"),
        ),
    }
}
