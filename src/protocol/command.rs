//! Parses one command line into a typed [`Command`] (RFC 1939 §3, RFC
//! 2449 §4, RFC 5034 §4). Pure: no state, no I/O.
//!
//! Keywords are case-insensitive. Arguments are validated here, so the
//! session never sees "message 0" or a non-numeric line count.

use std::fmt;
use std::num::NonZeroU32;

use crate::protocol::Secret;

/// A message number as the client names it: 1-based, never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageNumber(NonZeroU32);

impl MessageNumber {
    /// The number as a 1-based value.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The 0-based position in the maildrop listing.
    pub fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }

    /// The message number for a 0-based position, if it fits.
    pub fn from_index(index: usize) -> Option<MessageNumber> {
        u32::try_from(index + 1)
            .ok()
            .and_then(NonZeroU32::new)
            .map(MessageNumber)
    }
}

impl fmt::Display for MessageNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A POP3 command with typed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`
    User(String),
    /// `PASS password`: the rest of the line, spaces included.
    Pass(Secret),
    /// `APOP name digest`
    Apop {
        /// The mailbox name.
        user: String,
        /// The hex MD5 digest.
        digest: Secret,
    },
    /// `AUTH [mechanism [initial-response]]`
    Auth {
        /// The SASL mechanism, upper-cased; `None` asks for the list.
        mechanism: Option<String>,
        /// The base64 initial response (`=` for an empty one).
        initial_response: Option<Secret>,
    },
    /// `CAPA`
    Capa,
    /// `HELP`: not in the RFCs; lists the commands valid now, for telnet users.
    Help,
    /// `STLS` (RFC 2595 §4)
    Stls,
    /// `QUIT`
    Quit,
    /// `STAT`
    Stat,
    /// `LIST [msg]`
    List(Option<MessageNumber>),
    /// `RETR msg`
    Retr(MessageNumber),
    /// `DELE msg`
    Dele(MessageNumber),
    /// `NOOP`
    Noop,
    /// `RSET`
    Rset,
    /// `TOP msg n`
    Top(MessageNumber, u64),
    /// `UIDL [msg]`
    Uidl(Option<MessageNumber>),
}

/// Why a line is not a valid command; each answers `-ERR` and the session goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line is empty.
    Empty,
    /// The keyword is not a POP3 command.
    Unknown,
    /// The keyword is known but its arguments are wrong; holds its usage.
    Usage(&'static str),
    /// A message number that is not a positive decimal number.
    BadMessageNumber,
}

impl std::error::Error for ParseError {}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty command"),
            ParseError::Unknown => write!(f, "unknown command"),
            ParseError::Usage(usage) => write!(f, "syntax: {usage}"),
            ParseError::BadMessageNumber => write!(f, "invalid message number"),
        }
    }
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], Some(&line[space + 1..])),
        None => (line, None),
    };
    if keyword.is_empty() {
        return Err(if line.is_empty() {
            ParseError::Empty
        } else {
            ParseError::Unknown
        });
    }
    let keyword = keyword.to_ascii_uppercase();

    // PASS keeps the rest of the line byte for byte: passwords may hold spaces.
    if keyword == b"PASS" {
        return match rest {
            Some(password) if !password.is_empty() => Ok(Command::Pass(Secret::new(password))),
            _ => Err(ParseError::Usage("PASS password")),
        };
    }

    let args: Vec<&[u8]> = rest
        .unwrap_or_default()
        .split(|&b| b == b' ')
        .filter(|a| !a.is_empty())
        .collect();
    let usage = |text| Err(ParseError::Usage(text));

    match (&keyword[..], &args[..]) {
        (b"USER", [name]) => Ok(Command::User(
            text(name).ok_or(ParseError::Usage("USER name"))?,
        )),
        (b"USER", _) => usage("USER name"),
        (b"APOP", [name, digest]) => Ok(Command::Apop {
            user: text(name).ok_or(ParseError::Usage("APOP name digest"))?,
            digest: Secret::new(*digest),
        }),
        (b"APOP", _) => usage("APOP name digest"),
        (b"AUTH", []) => Ok(Command::Auth {
            mechanism: None,
            initial_response: None,
        }),
        (b"AUTH", [mechanism, initial @ ..]) if initial.len() <= 1 => Ok(Command::Auth {
            mechanism: Some(
                text(mechanism)
                    .ok_or(ParseError::Usage("AUTH [mechanism [initial-response]]"))?
                    .to_ascii_uppercase(),
            ),
            initial_response: initial.first().map(|r| Secret::new(*r)),
        }),
        (b"AUTH", _) => usage("AUTH [mechanism [initial-response]]"),
        (b"CAPA", []) => Ok(Command::Capa),
        (b"CAPA", _) => usage("CAPA"),
        (b"HELP", []) => Ok(Command::Help),
        (b"HELP", _) => usage("HELP"),
        (b"STLS", []) => Ok(Command::Stls),
        (b"STLS", _) => usage("STLS"),
        (b"QUIT", []) => Ok(Command::Quit),
        (b"QUIT", _) => usage("QUIT"),
        (b"STAT", []) => Ok(Command::Stat),
        (b"STAT", _) => usage("STAT"),
        (b"NOOP", []) => Ok(Command::Noop),
        (b"NOOP", _) => usage("NOOP"),
        (b"RSET", []) => Ok(Command::Rset),
        (b"RSET", _) => usage("RSET"),
        (b"LIST", []) => Ok(Command::List(None)),
        (b"LIST", [n]) => Ok(Command::List(Some(message_number(n)?))),
        (b"LIST", _) => usage("LIST [msg]"),
        (b"UIDL", []) => Ok(Command::Uidl(None)),
        (b"UIDL", [n]) => Ok(Command::Uidl(Some(message_number(n)?))),
        (b"UIDL", _) => usage("UIDL [msg]"),
        (b"RETR", [n]) => Ok(Command::Retr(message_number(n)?)),
        (b"RETR", _) => usage("RETR msg"),
        (b"DELE", [n]) => Ok(Command::Dele(message_number(n)?)),
        (b"DELE", _) => usage("DELE msg"),
        (b"TOP", [n, lines]) => Ok(Command::Top(
            message_number(n)?,
            line_count(lines).ok_or(ParseError::Usage("TOP msg n"))?,
        )),
        (b"TOP", _) => usage("TOP msg n"),
        _ => Err(ParseError::Unknown),
    }
}

fn text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
        .map(str::to_string)
}

fn is_decimal(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

fn message_number(bytes: &[u8]) -> Result<MessageNumber, ParseError> {
    if !is_decimal(bytes) {
        return Err(ParseError::BadMessageNumber);
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .and_then(NonZeroU32::new)
        .map(MessageNumber)
        .ok_or(ParseError::BadMessageNumber)
}

/// TOP's line count: any decimal number; one too big to hold means "all".
fn line_count(bytes: &[u8]) -> Option<u64> {
    if !is_decimal(bytes) {
        return None;
    }
    Some(
        std::str::from_utf8(bytes)
            .ok()?
            .parse::<u64>()
            .unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: u32) -> MessageNumber {
        MessageNumber(NonZeroU32::new(value).unwrap())
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(parse(b"stat"), Ok(Command::Stat));
        assert_eq!(parse(b"StAt"), Ok(Command::Stat));
        assert_eq!(parse(b"rEtR 2"), Ok(Command::Retr(n(2))));
    }

    #[test]
    fn pass_keeps_the_whole_rest_of_the_line() {
        assert_eq!(
            parse(b"PASS  two  spaces "),
            Ok(Command::Pass(Secret::new(" two  spaces ")))
        );
        assert_eq!(parse(b"PASS"), Err(ParseError::Usage("PASS password")));
        assert_eq!(parse(b"PASS "), Err(ParseError::Usage("PASS password")));
    }

    #[test]
    fn message_numbers_are_positive_decimals() {
        assert_eq!(parse(b"LIST 0"), Err(ParseError::BadMessageNumber));
        assert_eq!(parse(b"LIST +1"), Err(ParseError::BadMessageNumber));
        assert_eq!(parse(b"LIST -1"), Err(ParseError::BadMessageNumber));
        assert_eq!(parse(b"LIST x"), Err(ParseError::BadMessageNumber));
        assert_eq!(parse(b"LIST 4294967296"), Err(ParseError::BadMessageNumber));
        assert_eq!(
            parse(b"LIST 4294967295"),
            Ok(Command::List(Some(n(u32::MAX))))
        );
        assert_eq!(parse(b"DELE 1 2"), Err(ParseError::Usage("DELE msg")));
    }

    #[test]
    fn top_takes_a_message_and_a_line_count() {
        assert_eq!(parse(b"TOP 1 0"), Ok(Command::Top(n(1), 0)));
        assert_eq!(parse(b"TOP 1 99999999"), Ok(Command::Top(n(1), 99_999_999)));
        assert_eq!(
            parse(b"TOP 1 999999999999999999999999"),
            Ok(Command::Top(n(1), u64::MAX))
        );
        assert_eq!(parse(b"TOP 1"), Err(ParseError::Usage("TOP msg n")));
        assert_eq!(parse(b"TOP 1 -1"), Err(ParseError::Usage("TOP msg n")));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse(b"AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial_response: None
            })
        );
        assert_eq!(
            parse(b"auth plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some(Secret::new("AGEAYg=="))
            })
        );
        assert!(parse(b"AUTH PLAIN a b").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b" STAT"), Err(ParseError::Unknown));
        assert_eq!(parse(b"\x00\xff\xfe"), Err(ParseError::Unknown));
        assert_eq!(parse(b"USER \xff"), Err(ParseError::Usage("USER name")));
        assert_eq!(parse(b"XYZZY"), Err(ParseError::Unknown));
    }
}
