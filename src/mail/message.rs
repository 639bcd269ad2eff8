//! A message as poplite stores it: CRLF-normalised bytes plus the facts
//! the protocol needs without reading the body again (size, header length).
//!
//! Normalising at delivery is what makes STAT/LIST honest: RFC 1939 §5
//! counts octets as sent on the wire (before dot-stuffing), and the wire
//! uses CRLF, so the stored bytes must already be exactly those octets.

use std::fmt;

use super::normalizer::{Facts, Normalizer};
use super::size::octets;

/// A CRLF-normalised message ready to be stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
    header_len: usize,
    subject: Option<String>,
}

/// Why raw input cannot become a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The input has no bytes at all.
    Empty,
    /// The normalised message is larger than the configured limit.
    TooLarge {
        /// The configured maximum, in octets.
        limit: u64,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Empty => write!(f, "the message is empty"),
            // The size itself is not reported: callers stop reading a
            // message once it passes the limit, so they never know it.
            MessageError::TooLarge { limit } => {
                write!(
                    f,
                    "the message is larger than the limit of {}",
                    octets(*limit)
                )
            }
        }
    }
}

impl std::error::Error for MessageError {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("size", &self.bytes.len())
            .field("header_len", &self.header_len)
            .field("subject", &self.subject)
            .finish()
    }
}

impl Message {
    /// Normalises raw input (any mix of CRLF, LF and CR line ends) into a
    /// message, refusing empty input and anything over `max_size` octets.
    pub fn parse(raw: &[u8], max_size: u64) -> Result<Message, MessageError> {
        if raw.is_empty() {
            return Err(MessageError::Empty);
        }
        let message = Message::normalized(raw);
        if message.size() > max_size {
            return Err(MessageError::TooLarge { limit: max_size });
        }
        Ok(message)
    }

    /// Normalises raw input with no checks: an empty body (LMTP's, which
    /// gets headers put before it) gives an empty message.
    pub fn normalized(raw: &[u8]) -> Message {
        let mut normalizer = Normalizer::new();
        let mut bytes = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
        normalizer.push(raw, &mut bytes);
        let facts = normalizer.finish(&mut bytes);
        Message::from_normalized(bytes, facts)
    }

    /// A message from bytes a [`Normalizer`] wrote and the facts it found.
    pub fn from_normalized(bytes: Vec<u8>, facts: Facts) -> Message {
        Message {
            header_len: usize::try_from(facts.header_len).unwrap_or(bytes.len()),
            bytes,
            subject: facts.subject,
        }
    }

    /// This message with its first `old` octets (whole header lines that
    /// [`Message::with_header_before`] or an ingest put there) replaced by
    /// `header`: another recipient's copy, made in one copy.
    pub fn with_header_replaced(&self, old: usize, header: &str) -> Message {
        let old = old.min(self.bytes.len()).min(self.header_len);
        let mut bytes = Vec::with_capacity(header.len() + self.bytes.len() - old);
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&self.bytes[old..]);
        Message {
            header_len: self.header_len - old + header.len(),
            bytes,
            subject: self.subject.clone(),
        }
    }

    /// This message with `header` (whole CRLF-ended header lines, such as
    /// `Return-Path: <a@b>\r\n`) put before it, in one copy.
    pub fn with_header_before(&self, header: &str) -> Message {
        let mut bytes = Vec::with_capacity(header.len() + self.bytes.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&self.bytes);
        // An empty body has no blank line: then all of it is header.
        let header_len = match self.bytes.is_empty() {
            true => bytes.len(),
            false => header.len() + self.header_len,
        };
        Message {
            bytes,
            header_len,
            subject: self.subject.clone(),
        }
    }

    /// The normalised octets, exactly as RETR sends them before dot-stuffing.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The size in octets that STAT and LIST report.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Octets of the header lines, not counting the blank line that ends them.
    pub fn header_len(&self) -> u64 {
        self.header_len as u64
    }

    /// The unfolded Subject header, if there is one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

/// "1 message", "2 messages", "0 messages": for replies and log lines.
pub fn messages(count: u64) -> String {
    match count {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    }
}

/// Turns bare LF and bare CR into CRLF, and ends the last line with CRLF.
pub fn normalize_line_endings(raw: &[u8]) -> Vec<u8> {
    Message::normalized(raw).bytes
}

/// Octets of the header section of a CRLF-normalised message, without the
/// blank line that ends it.
///
/// A message with no blank line is all header: the result is its whole
/// size. Otherwise the blank line sits at `[header_len, header_len + 2)`,
/// which is how the sender of TOP tells the two cases apart.
pub fn header_len(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 0;
    }
    match find(message, b"\r\n\r\n") {
        Some(at) => at + 2,
        None => message.len(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first `field` header's value in a CRLF header section, unfolded
/// (RFC 5322 §2.2.3), lossily decoded; the field name ignores case.
pub fn header_value(header: &[u8], field: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.eq_ignore_ascii_case(field) {
            continue;
        }
        let mut unfolded = value.trim().to_string();
        while let Some(next) = lines.peek() {
            if !next.starts_with([' ', '\t']) {
                break;
            }
            unfolded.push(' ');
            unfolded.push_str(next.trim());
            lines.next();
        }
        return Some(unfolded);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lf_and_bare_cr_become_crlf() {
        assert_eq!(
            normalize_line_endings(b"a\nb\rc\r\nd"),
            b"a\r\nb\r\nc\r\nd\r\n"
        );
    }

    #[test]
    fn missing_final_line_end_is_added_once() {
        assert_eq!(normalize_line_endings(b"x"), b"x\r\n");
        assert_eq!(normalize_line_endings(b"x\r\n"), b"x\r\n");
        assert_eq!(normalize_line_endings(b"x\r"), b"x\r\n");
    }

    #[test]
    fn blank_lines_survive_in_every_style() {
        assert_eq!(normalize_line_endings(b"a\n\nb"), b"a\r\n\r\nb\r\n");
        assert_eq!(normalize_line_endings(b"a\r\rb"), b"a\r\n\r\nb\r\n");
        assert_eq!(normalize_line_endings(b"a\r\n\r\nb"), b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn eight_bit_and_nul_bytes_pass_through() {
        assert_eq!(normalize_line_endings(b"\xff\x00\xe9"), b"\xff\x00\xe9\r\n");
    }

    #[test]
    fn header_len_excludes_the_blank_line() {
        assert_eq!(header_len(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), 12);
        assert_eq!(header_len(b"\r\nbody only\r\n"), 0);
        assert_eq!(header_len(b"A: 1\r\n"), 6);
        assert_eq!(header_len(b"A: 1\r\n\r\n"), 6);
    }

    #[test]
    fn parse_refuses_empty_and_oversized_input() {
        assert_eq!(Message::parse(b"", 100), Err(MessageError::Empty));
        assert_eq!(
            Message::parse(b"12345\n", 6),
            Err(MessageError::TooLarge { limit: 6 })
        );
        assert!(Message::parse(b"12345", 7).is_ok());
    }

    #[test]
    fn a_header_put_before_keeps_the_facts_a_fresh_parse_would_give() {
        let header = "Return-Path: <a@b>\r\nDelivered-To: c\r\n";
        for body in [
            &b"Subject: s\n\nbody\n"[..],
            b"\nno header\n",
            b"X: all header\n",
            b"",
        ] {
            let stamped = Message::normalized(body).with_header_before(header);
            let fresh = Message::normalized(&[header.as_bytes(), body].concat());
            assert_eq!(stamped, fresh, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn subject_is_found_case_insensitively_and_unfolded() {
        let m = Message::parse(
            b"From: a\nsUbJeCt: Hello\n  there\nTo: b\n\nSubject: body\n",
            1000,
        )
        .unwrap();
        assert_eq!(m.subject(), Some("Hello there"));
        let none = Message::parse(b"From: a\n\nSubject: in body\n", 1000).unwrap();
        assert_eq!(none.subject(), None);
    }
}
