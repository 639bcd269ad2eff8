//! What only SMTP has after the data: the `Received` trace header (RFC
//! 5321 §4.4) on each stored copy, and one reply for all recipients.
//!
//! One reply cannot say "stored for some": poplite refuses at RCPT what
//! it can (unknown users, a full mailbox), so that a failure after the
//! data is rare; when one happens anyway, the reply is the failure's,
//! a temporary one first (the client retries and the rest may then
//! succeed), and the copies already stored are kept. A retry then
//! delivers to those recipients again: a duplicate, never a loss, which
//! is the choice every MTA makes when it cannot tell (Postfix's local
//! delivery retries a whole message whose delivery was cut short).

use std::net::IpAddr;

use super::transaction::DeliveryOutcome;
use super::Reply;

/// The `Received` header's parts, for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Received {
    /// The name EHLO or HELO gave.
    pub client: String,
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// This host's name.
    pub hostname: String,
    /// The protocol (RFC 3848): `SMTP`, `ESMTP` or `ESMTPS`.
    pub with: &'static str,
    /// The session and transaction, as the log names them.
    pub id: String,
    /// When the data began (RFC 5322 date-time).
    pub date: String,
}

/// RFC 3848's name for the protocol: EHLO makes it ESMTP, TLS ESMTPS.
pub(super) fn with(extended: bool, tls: bool) -> &'static str {
    match (extended, tls) {
        (_, true) => "ESMTPS",
        (true, false) => "ESMTP",
        (false, false) => "SMTP",
    }
}

/// What each stored copy's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Trace {
    /// SMTP's `Received` parts; `None` for LMTP, whose MTA wrote its own.
    pub received: Option<Received>,
}

impl Trace {
    /// The headers before the body in `address`'s copy: a final
    /// delivery's `Return-Path` (RFC 5321 §4.4) and `Delivered-To`
    /// (Postfix's, to detect loops), then SMTP's `Received`, its `for`
    /// naming only this copy's recipient (so a Bcc stays hidden).
    pub fn header(&self, sender: &str, address: &str) -> String {
        let mut header = format!("Return-Path: <{sender}>\r\nDelivered-To: {address}\r\n");
        if let Some(r) = &self.received {
            let peer = match r.peer {
                Some(IpAddr::V4(ip)) => format!(" ([{ip}])"),
                Some(IpAddr::V6(ip)) => format!(" ([IPv6:{ip}])"),
                None => String::new(),
            };
            header.push_str(&format!(
                "Received: from {}{peer}\r\n\tby {} (poplite) with {} id {}\r\n\tfor <{address}>; {}\r\n",
                r.client, r.hostname, r.with, r.id, r.date
            ));
        }
        header
    }
}

/// SMTP's outcomes so far, one per recipient.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Tally {
    stored: usize,
    /// The first recipient whose copy failed for now.
    temporary: Option<String>,
    /// The first recipient refused for good, and why.
    permanent: Option<(String, DeliveryOutcome)>,
}

impl Tally {
    /// Counts one recipient's outcome.
    pub fn add(&mut self, address: &str, outcome: &DeliveryOutcome) {
        match outcome {
            DeliveryOutcome::Stored(_) => self.stored += 1,
            DeliveryOutcome::Failed => {
                self.temporary.get_or_insert_with(|| address.to_string());
            }
            DeliveryOutcome::OverQuota | DeliveryOutcome::UserGone => {
                self.permanent
                    .get_or_insert_with(|| (address.to_string(), outcome.clone()));
            }
        }
    }

    /// The one reply for `count` recipients: 250 only if every one has
    /// its copy.
    pub fn reply(&self, count: usize) -> Reply {
        let stored = self.stored;
        let kept = match stored {
            0 => String::new(),
            _ => {
                format!(" (stored for {stored} of {count} recipients, who get it again on a retry)")
            }
        };
        let (code, text) = match (&self.temporary, &self.permanent) {
            (None, None) => {
                let s = if count == 1 { "" } else { "s" };
                return Reply::new(250, format!("2.0.0 OK, delivered to {count} recipient{s}"));
            }
            (Some(address), _) => (
                451,
                format!("4.3.0 <{address}> temporary failure storing the message, try again later"),
            ),
            (None, Some((address, DeliveryOutcome::OverQuota))) => {
                (552, format!("5.2.2 <{address}> mailbox is full"))
            }
            (None, Some((address, _))) => (550, format!("5.1.1 <{address}> no such user here")),
        };
        Reply::new(code, format!("{text}{kept}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_names_the_client_the_server_the_protocol_and_the_recipient() {
        let trace = Trace {
            received: Some(Received {
                client: "client.test".into(),
                peer: Some("127.0.0.1".parse().unwrap()),
                hostname: "mx.test".into(),
                with: with(true, false),
                id: "7.1".into(),
                date: "Thu, 3 Dec 2026 01:02:03 +0000".into(),
            }),
        };
        assert_eq!(
            trace.header("a@b", "alice@x"),
            "Return-Path: <a@b>\r\nDelivered-To: alice@x\r\n\
             Received: from client.test ([127.0.0.1])\r\n\
             \tby mx.test (poplite) with ESMTP id 7.1\r\n\
             \tfor <alice@x>; Thu, 3 Dec 2026 01:02:03 +0000\r\n"
        );
        assert_eq!(with(false, false), "SMTP");
        assert_eq!(with(true, true), "ESMTPS");
    }

    #[test]
    fn the_one_reply_is_250_only_when_every_recipient_has_its_copy() {
        let mut tally = Tally::default();
        tally.add("a@x", &DeliveryOutcome::Stored("1".into()));
        assert_eq!(tally.reply(1).code(), 250);
        tally.add("b@x", &DeliveryOutcome::OverQuota);
        let full = tally.reply(3);
        assert_eq!(
            full.to_bytes(),
            b"552 5.2.2 <b@x> mailbox is full (stored for 1 of 3 recipients, who get it again on a retry)\r\n"
        );
        tally.add("c@x", &DeliveryOutcome::Failed);
        assert_eq!(tally.reply(3).code(), 451);
    }
}
