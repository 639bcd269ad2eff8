//! The mbox format (RFC 4155, and the mboxo/mboxrd variants of qmail's
//! mbox(5)): reading a file into messages, and writing messages out.
//!
//! A message starts at a `From ` line at the start of the file or after
//! an empty line, and the empty line before the next one (or at the end
//! of the file) is the separator, not part of the message. Inside a
//! message, writers escape lines that would look like a `From ` line:
//! mboxrd writers add a `>` to every line matching `>*From `, so readers
//! remove one from every `>+From `; mboxo writers add one only to
//! `From `, so a reader cannot tell an escaped `From ` from a real
//! `>From `, and this one takes it for the former. poplite writes mboxrd.

use std::io::{self, BufRead, Read, Write};

/// How lines that look like `From ` lines were escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// `>*From ` was written with one `>` more (lossless).
    Mboxrd,
    /// Only `From ` was written as `>From ` (lossy; the common old format).
    Mboxo,
}

/// One message read from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// Its position in the file, from 1.
    pub number: usize,
    /// The line number of its `From ` line, from 1.
    pub line: usize,
    /// When its `From ` line says it arrived (Unix seconds), if readable.
    pub received_at: Option<i64>,
    /// Its bytes, unescaped, with the line ends the file had.
    pub raw: Vec<u8>,
    /// True when it grew past the limit: `raw` then holds only its start.
    pub truncated: bool,
}

/// Where a message read by [`MboxReader::next_message_into`] sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MboxEnvelope {
    /// Its position in the file, from 1.
    pub number: usize,
    /// The line number of its `From ` line, from 1.
    pub line: usize,
    /// When its `From ` line says it arrived (Unix seconds), if readable.
    pub received_at: Option<i64>,
}

/// Where [`MboxReader::next_message_into`] puts a message as it reads it.
pub trait MboxSink {
    /// A message starts, at `envelope`.
    fn begin(&mut self, envelope: &MboxEnvelope);
    /// Its next bytes: unescaped, with the line ends the file had.
    fn piece(&mut self, bytes: &[u8]);
}

/// Collects a message whole, up to a limit ([`MboxReader::next_message`]).
struct Collector {
    limit: u64,
    raw: Vec<u8>,
    truncated: bool,
}

impl MboxSink for Collector {
    fn begin(&mut self, _: &MboxEnvelope) {}

    fn piece(&mut self, bytes: &[u8]) {
        if self.truncated || (self.raw.len() + bytes.len()) as u64 > self.limit {
            self.truncated = true;
            return;
        }
        self.raw.extend_from_slice(bytes);
    }
}

/// Why a file cannot be read as an mbox.
#[derive(Debug, thiserror::Error)]
pub enum MboxError {
    /// Reading failed.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// The first line is not a `From ` line.
    #[error("not an mbox file: the first line does not start with \"From \"")]
    NotMbox,
}

/// Reads messages one at a time: whole, up to `limit` octets of each
/// ([`MboxReader::next_message`]), or streamed to a sink in pieces of at
/// most a line or 64 KiB ([`MboxReader::next_message_into`]).
pub struct MboxReader<R> {
    input: R,
    escaping: Escaping,
    limit: u64,
    /// The `From ` line that starts the next message, once read.
    next_from: Option<(usize, Vec<u8>)>,
    line_number: usize,
    number: usize,
    started: bool,
    /// The last piece read did not end its line.
    mid_line: bool,
}

/// Lines are read in pieces of at most this many octets, so a file with
/// no line ends costs no more memory than the message limit.
const PIECE: u64 = 64 * 1024;

impl<R: BufRead> MboxReader<R> {
    /// A reader that keeps at most `limit` octets of each message.
    pub fn new(input: R, escaping: Escaping, limit: u64) -> MboxReader<R> {
        MboxReader {
            input,
            escaping,
            limit,
            next_from: None,
            line_number: 0,
            number: 0,
            started: false,
            mid_line: false,
        }
    }

    /// Reads a line, or its next [`PIECE`] octets; returns whether the
    /// piece starts a line, or `None` at the end of the file.
    fn read_piece(&mut self, piece: &mut Vec<u8>) -> io::Result<Option<bool>> {
        piece.clear();
        let n = (&mut self.input).take(PIECE).read_until(b'\n', piece)?;
        if n == 0 {
            return Ok(None);
        }
        let starts_line = !self.mid_line;
        self.mid_line = !piece.ends_with(b"\n");
        if starts_line {
            self.line_number += 1;
        }
        Ok(Some(starts_line))
    }

    /// Drops the rest of a `From ` line (only its start holds the date).
    fn skip_rest_of_line(&mut self) -> io::Result<()> {
        let mut rest = Vec::new();
        while self.mid_line && self.read_piece(&mut rest)?.is_some() {}
        Ok(())
    }

    /// The next message, or `None` at the end of the file.
    pub fn next_message(&mut self) -> Result<Option<MboxMessage>, MboxError> {
        let mut collector = Collector {
            limit: self.limit,
            raw: Vec::new(),
            truncated: false,
        };
        let envelope = self.next_message_into(&mut collector)?;
        Ok(envelope.map(|envelope| MboxMessage {
            number: envelope.number,
            line: envelope.line,
            received_at: envelope.received_at,
            raw: collector.raw,
            truncated: collector.truncated,
        }))
    }

    /// The next message, handed to `sink` as it is read; `None` at the
    /// end of the file. Memory does not grow with the message.
    pub fn next_message_into(
        &mut self,
        sink: &mut dyn MboxSink,
    ) -> Result<Option<MboxEnvelope>, MboxError> {
        let mut line = Vec::new();
        if !self.started {
            self.started = true;
            if self.read_piece(&mut line)?.is_none() {
                return Ok(None);
            }
            if !line.starts_with(b"From ") {
                return Err(MboxError::NotMbox);
            }
            self.next_from = Some((self.line_number, std::mem::take(&mut line)));
            self.skip_rest_of_line()?;
        }
        let Some((from_line_number, from_line)) = self.next_from.take() else {
            return Ok(None);
        };
        self.number += 1;
        let envelope = MboxEnvelope {
            number: self.number,
            line: from_line_number,
            received_at: from_line_time(&from_line),
        };
        sink.begin(&envelope);
        // The empty line last read: a separator if a `From ` line follows.
        let mut pending_empty: Option<Vec<u8>> = None;
        while let Some(starts_line) = self.read_piece(&mut line)? {
            if !starts_line {
                // The rest of a long line: content, whatever it holds.
                sink.piece(&line);
                continue;
            }
            let is_empty = line == b"\n" || line == b"\r\n";
            if let Some(empty) = pending_empty.take() {
                if line.starts_with(b"From ") {
                    self.next_from = Some((self.line_number, std::mem::take(&mut line)));
                    self.skip_rest_of_line()?;
                    return Ok(Some(envelope));
                }
                sink.piece(&empty);
            }
            if is_empty {
                pending_empty = Some(line.clone());
                continue;
            }
            sink.piece(unescape(&line, self.escaping));
        }
        // The empty line at the very end is the last separator.
        Ok(Some(envelope))
    }
}

/// A line with its `From ` escape removed, if it has one.
fn unescape(line: &[u8], escaping: Escaping) -> &[u8] {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    let escaped = match escaping {
        Escaping::Mboxrd => quotes >= 1,
        Escaping::Mboxo => quotes == 1,
    };
    if escaped && line[quotes..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

/// Writes one message in mboxrd form, with LF line ends: its `From `
/// line (`sender`, or MAILER-DAEMON when empty, and the arrival time),
/// its lines with `>*From ` escaped, and the empty separator line.
pub fn write_message(
    out: &mut impl Write,
    sender: &str,
    received_at: i64,
    message: &[u8],
) -> io::Result<()> {
    let sender = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    };
    writeln!(out, "From {sender} {}", asctime(received_at))?;
    for line in message.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if line[quotes..].starts_with(b"From ") {
            out.write_all(b">")?;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        out.write_all(text)?;
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")
}

/// The envelope sender to write for a stored message: its first
/// `Return-Path`, as a final delivery (LMTP) records it.
pub fn envelope_sender(message: &[u8]) -> String {
    let header = &message[..crate::mail::message::header_len(message)];
    crate::mail::message::header_value(header, "return-path")
        .map(|value| {
            let value = value.strip_prefix('<').unwrap_or(&value);
            value.strip_suffix('>').unwrap_or(value).to_string()
        })
        .filter(|sender| !sender.is_empty() && !sender.contains(char::is_whitespace))
        .unwrap_or_default()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Www Mmm dd hh:mm:ss yyyy` in UTC, as `From ` lines carry it.
fn asctime(unix: i64) -> String {
    // Arrival times come from SQLite's clock; one out of jiff's range
    // (past year 9999) is written as the epoch rather than not at all.
    let time = jiff::Timestamp::from_second(unix).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    time.strftime("%a %b %e %H:%M:%S %Y").to_string()
}

/// The years an arrival time may fall in: SQLite's date functions, which
/// `poplite mailbox` uses, stop at 9999.
const YEARS: std::ops::RangeInclusive<i64> = 1970..=9999;

/// The arrival time on a `From ` line: `From sender [Www] Mmm dd
/// hh:mm[:ss] [zone] yyyy [zone]`, read from the end, since a sender may
/// itself be a word like `May`. A numeric zone (`+0100`) or one of RFC
/// 5322's names (`PST`) is applied; other names (`CET`) are taken as UTC.
fn from_line_time(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    let mut at = tokens.len().checked_sub(1)?;
    // Some writers put the zone after the year (`10:00:00 2024 +0100`).
    let zone_after_year = zone_offset(tokens[at]);
    if zone_after_year.is_some() {
        at = at.checked_sub(1)?;
    }
    let year: i64 = tokens[at].parse().ok().filter(|y| YEARS.contains(y))?;
    at = at.checked_sub(1)?;
    let zone = match zone_after_year.or_else(|| zone_offset(tokens[at])) {
        Some(offset) => {
            if zone_after_year.is_none() {
                at = at.checked_sub(1)?;
            }
            offset
        }
        None => 0,
    };
    let mut time = tokens[at].split(':').map(str::parse::<i64>);
    let (hour, minute) = (time.next()?.ok()?, time.next()?.ok()?);
    let second = time.next().map_or(Some(0), |s| s.ok())?;
    if time.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let day: i8 = tokens.get(at.checked_sub(1)?)?.parse().ok()?;
    let month_at = at.checked_sub(2)?;
    // `From`, the sender, then the month at the earliest.
    if month_at < 2 {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == tokens[month_at])? as i8 + 1;
    // A leap second (`:60`) is read as the second before it.
    let civil = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        month,
        day,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second.min(59)).ok()?,
        0,
    )
    .ok()?;
    let offset = jiff::tz::Offset::from_seconds(i32::try_from(zone).ok()?).ok()?;
    let zoned = civil.to_zoned(jiff::tz::TimeZone::fixed(offset)).ok()?;
    Some(zoned.timestamp().as_second())
}

/// A zone's offset from UTC in seconds, if `token` is a zone.
fn zone_offset(token: &str) -> Option<i64> {
    if let Some(digits) = token.strip_prefix(['+', '-']) {
        let sign = if token.starts_with('-') { -1 } else { 1 };
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hours: i64 = digits[..2].parse().ok()?;
        let minutes: i64 = digits[2..].parse().ok()?;
        return Some(sign * (hours * 3600 + minutes * 60));
    }
    // RFC 5322 §4.3's names; any other run of letters is a zone we take as UTC.
    let hours = match token {
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ if (1..=5).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_uppercase()) => 0,
        _ => return None,
    };
    Some(hours * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mbox: &[u8], escaping: Escaping) -> Vec<MboxMessage> {
        let mut reader = MboxReader::new(mbox, escaping, 1000);
        let mut out = Vec::new();
        while let Some(message) = reader.next_message().unwrap() {
            out.push(message);
        }
        out
    }

    #[test]
    fn messages_split_at_from_lines_after_an_empty_line() {
        let mbox = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: 1\n\nbody\nFrom inside, not a separator\n\n\
From c@d Wed Dec  2 02:00:47 2026\nSubject: 2\n\ntwo\n\n";
        let messages = read_all(mbox, Escaping::Mboxrd);
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0].raw,
            b"Subject: 1\n\nbody\nFrom inside, not a separator\n"
        );
        assert_eq!((messages[0].number, messages[0].line), (1, 1));
        assert_eq!(messages[0].received_at, Some(0));
        assert_eq!(messages[1].raw, b"Subject: 2\n\ntwo\n");
        assert_eq!((messages[1].number, messages[1].line), (2, 7));
        assert_eq!(messages[1].received_at, Some(1_796_176_847));
    }

    #[test]
    fn mboxrd_removes_one_quote_and_mboxo_only_from_a_single_one() {
        let mbox = b"From x Thu Jan  1 00:00:00 1970\n>From a\n>>From b\n>not from\n";
        let rd = read_all(mbox, Escaping::Mboxrd);
        assert_eq!(rd[0].raw, b"From a\n>From b\n>not from\n");
        let o = read_all(mbox, Escaping::Mboxo);
        assert_eq!(o[0].raw, b"From a\n>>From b\n>not from\n");
    }

    #[test]
    fn empty_lines_inside_and_at_the_end_of_a_message_are_kept() {
        let mbox = b"From x Thu Jan  1 00:00:00 1970\nA: 1\n\n\nbody\n\n\n\nFrom y Thu Jan  1 00:00:00 1970\nB: 2\n";
        let messages = read_all(mbox, Escaping::Mboxrd);
        assert_eq!(messages[0].raw, b"A: 1\n\n\nbody\n\n\n");
        assert_eq!(messages[1].raw, b"B: 2\n");
    }

    #[test]
    fn a_file_that_is_not_an_mbox_is_refused_and_an_empty_one_is_empty() {
        let mut reader = MboxReader::new(&b"Subject: x\n"[..], Escaping::Mboxrd, 100);
        assert!(matches!(reader.next_message(), Err(MboxError::NotMbox)));
        assert!(read_all(b"", Escaping::Mboxrd).is_empty());
    }

    #[test]
    fn a_message_over_the_limit_is_marked_truncated() {
        let mut mbox = b"From x Thu Jan  1 00:00:00 1970\n".to_vec();
        mbox.extend_from_slice(&[b'y'; 2000]);
        mbox.extend_from_slice(b"\n\nFrom z Thu Jan  1 00:00:00 1970\nok\n");
        let messages = read_all(&mbox, Escaping::Mboxrd);
        assert!(messages[0].truncated);
        assert!(!messages[1].truncated);
        assert_eq!(messages[1].raw, b"ok\n");
    }

    #[test]
    fn lines_longer_than_a_piece_are_read_whole_without_being_split() {
        let long: Vec<u8> = (0..200_000).map(|i| b"ab>From "[i % 8]).collect();
        let mut mbox = b"From x Thu Jan  1 00:00:00 1970 ".to_vec();
        mbox.extend_from_slice(&long);
        mbox.extend_from_slice(b"\nA: 1\n\n");
        mbox.extend_from_slice(&long);
        mbox.extend_from_slice(b"\n\nFrom y Thu Jan  1 00:00:00 1970\nB: 2\n");
        let mut reader = MboxReader::new(&mbox[..], Escaping::Mboxrd, 1_000_000);
        let first = reader.next_message().unwrap().unwrap();
        assert_eq!(first.raw, [&b"A: 1\n\n"[..], &long, b"\n"].concat());
        let second = reader.next_message().unwrap().unwrap();
        assert_eq!(
            (second.number, second.line, second.raw.as_slice()),
            (2, 6, &b"B: 2\n"[..])
        );
        // Over the limit, a long line is dropped as it is read.
        let mut reader = MboxReader::new(&mbox[..], Escaping::Mboxrd, 1000);
        assert!(reader.next_message().unwrap().unwrap().truncated);
        assert!(!reader.next_message().unwrap().unwrap().truncated);
    }

    #[test]
    fn written_messages_read_back_the_same() {
        let stored = b"Return-Path: <s@far.test>\r\nSubject: x\r\n\r\nFrom here\r\n>From there\r\n>>From deep\r\n\r\n";
        let mut out = Vec::new();
        write_message(&mut out, &envelope_sender(stored), 1_796_176_847, stored).unwrap();
        write_message(&mut out, "", 0, b"B: 1\r\n").unwrap();
        assert!(out.starts_with(b"From s@far.test Wed Dec  2 02:00:47 2026\nReturn-Path"));
        assert!(
            String::from_utf8_lossy(&out).contains("\n>From here\n>>From there\n>>>From deep\n")
        );
        assert!(String::from_utf8_lossy(&out)
            .contains("\nFrom MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"));
        let messages = read_all(&out, Escaping::Mboxrd);
        let crlf = |m: &MboxMessage| crate::mail::message::normalize_line_endings(&m.raw);
        assert_eq!(crlf(&messages[0]), stored);
        assert_eq!(messages[0].received_at, Some(1_796_176_847));
        assert_eq!(crlf(&messages[1]), b"B: 1\r\n");
    }

    #[test]
    fn every_written_date_reads_back() {
        // A day and a bit apart, across all the supported years.
        let last = jiff::Timestamp::MAX.as_second();
        let mut unix = 0;
        while unix <= last {
            let line = format!("From May {}\n", asctime(unix));
            assert_eq!(from_line_time(line.as_bytes()), Some(unix), "{line}");
            unix += 86_400 * 37 + 3_661;
        }
    }

    #[test]
    fn from_line_dates_parse_with_and_without_a_zone() {
        assert_eq!(
            from_line_time(b"From - Thu Jan  1 01:00:00 +0100 1970\n"),
            Some(0)
        );
        assert_eq!(
            from_line_time(b"From a@b Sat Feb 29 12:00:00 2020\n"),
            Some(1_582_977_600)
        );
        assert_eq!(from_line_time(b"From a@b\n"), None);
        assert_eq!(from_line_time(b"From a@b Thu Jan 99 00:00:00 1970\n"), None);
        // Senders that look like dates, zone names, years SQLite cannot show.
        assert_eq!(
            from_line_time(b"From May Thu Jan  1 00:00:00 1970\n"),
            Some(0)
        );
        assert_eq!(
            from_line_time(b"From Jan 5 Thu Jan  1 00:00:00 1970\n"),
            Some(0)
        );
        assert_eq!(
            from_line_time(b"From a Thu Jan  1 00:00:00 PST 1970\n"),
            Some(8 * 3600)
        );
        assert_eq!(
            from_line_time(b"From a Thu Jan  1 00:00:00 GMT 1970\n"),
            Some(0)
        );
        assert_eq!(from_line_time(b"From a Thu Jan  1 00:00:00 10000\n"), None);
        assert_eq!(from_line_time(b"From a Thu Jan  1 00:00:00 1969\n"), None);
        assert_eq!(from_line_time(b"From Jan  1 00:00:00 1970\n"), None);
        assert_eq!(from_line_time(b"From a Jan  1 00:00 1970\n"), Some(0));
        assert_eq!(
            from_line_time(b"From a Thu Jan  1 01:00:00 1970 +0100\n"),
            Some(0)
        );
        assert_eq!(
            from_line_time(b"From a Thu Jan  1 01:00:00 +0100 1970 +0100\n"),
            None
        );
        // jiff ends a day short of 9999-12-31 (offsets are kept in range).
        for unix in [0, 951_782_400, 1_796_176_847, 253_402_207_200] {
            let line = format!("From x {}\n", asctime(unix));
            assert_eq!(from_line_time(line.as_bytes()), Some(unix), "{line}");
        }
    }
}
