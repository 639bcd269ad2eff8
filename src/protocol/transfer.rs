//! Streams one stored message as the body of a RETR or TOP response,
//! chunk by chunk, so memory does not grow with the message (sans-IO: the
//! caller reads the byte ranges this asks for and feeds them back).
//!
//! TOP (RFC 1939 §7) sends the header, the blank line, then `n` body
//! lines. The header bytes are the same as RETR's. `TOP msg 0` always ends
//! with the blank line, even for a message that has none; a line count
//! past the end gives the whole message, byte for byte what RETR sends
//! (so `TOP msg 1` of a header-only message adds nothing).

use super::reply::{DotStuffer, TERMINATOR};

/// How much of a message a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// RETR: every octet.
    Whole,
    /// TOP: the header, the blank line, and this many body lines.
    Top(u64),
}

/// Where a message's parts are, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Octets in the stored (CRLF-normalised) message.
    pub size: u64,
    /// Octets of header lines, without the blank line after them; equal to
    /// `size` when the message has no blank line.
    pub header_len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Whole,
    Header,
    Body { lines_left: u64 },
    Done,
}

/// The state of one message transfer.
#[derive(Debug)]
pub struct Transfer {
    layout: Layout,
    extent: Extent,
    phase: Phase,
    /// Next offset to read from the stored message.
    offset: u64,
    /// Where the current phase ends.
    end: u64,
    chunk_size: usize,
    stuffer: DotStuffer,
    /// Octets of the message passed on so far, before dot-stuffing.
    passed: u64,
}

impl Transfer {
    /// Starts a transfer that reads at most `chunk_size` octets at a time.
    pub fn new(layout: Layout, extent: Extent, chunk_size: usize) -> Transfer {
        let header_len = layout.header_len.min(layout.size);
        // A message without a blank line has no body lines: any positive
        // count is past the end.
        let extent = match extent {
            Extent::Top(lines) if lines > 0 && header_len == layout.size => Extent::Whole,
            other => other,
        };
        let (phase, end) = match extent {
            Extent::Whole => (Phase::Whole, layout.size),
            Extent::Top(_) => (Phase::Header, header_len),
        };
        Transfer {
            layout: Layout {
                size: layout.size,
                header_len,
            },
            extent,
            phase,
            offset: 0,
            end,
            chunk_size: chunk_size.max(1),
            stuffer: DotStuffer::new(),
            passed: 0,
        }
    }

    /// The byte range to read next as `(offset, length)`, or `None` when
    /// every part has been read and [`Transfer::finish`] is due.
    pub fn next_read(&mut self, out: &mut Vec<u8>) -> Option<(u64, usize)> {
        self.advance(out);
        if self.phase == Phase::Done {
            return None;
        }
        let length = (self.end - self.offset).min(self.chunk_size as u64) as usize;
        Some((self.offset, length))
    }

    /// Feeds the bytes read at the offset `next_read` gave, appending their
    /// stuffed form to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let room = (self.end - self.offset) as usize;
        let mut chunk = &chunk[..chunk.len().min(room)];
        if let Phase::Body { lines_left } = &mut self.phase {
            for (i, _) in chunk.iter().enumerate().filter(|(_, &b)| b == b'\n') {
                *lines_left -= 1;
                if *lines_left == 0 {
                    chunk = &chunk[..=i];
                    // The wanted lines end here: skip to the end of the message.
                    self.end = self.offset + chunk.len() as u64;
                    break;
                }
            }
        }
        self.stuffer.push(chunk, out);
        self.offset += chunk.len() as u64;
        self.passed += chunk.len() as u64;
    }

    /// Octets of the message passed on so far (the blank line TOP adds
    /// included), before dot-stuffing: what a client receives of it.
    pub fn octets(&self) -> u64 {
        self.passed
    }

    /// Moves to the next phase once the current one has been read.
    fn advance(&mut self, out: &mut Vec<u8>) {
        while self.phase != Phase::Done && self.offset >= self.end {
            self.phase = match (self.phase, self.extent) {
                (Phase::Header, Extent::Top(lines)) => {
                    // The blank line, ours if the message has none: a
                    // stored one would be the same two octets.
                    self.stuffer.push(b"\r\n", out);
                    self.passed += 2;
                    let body_start = self.layout.header_len + 2;
                    if lines > 0 && body_start < self.layout.size {
                        self.offset = body_start;
                        self.end = self.layout.size;
                        Phase::Body { lines_left: lines }
                    } else {
                        Phase::Done
                    }
                }
                _ => Phase::Done,
            };
        }
    }

    /// Ends the response with the terminating `.` line.
    pub fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(TERMINATOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::message::{header_len, normalize_line_endings};

    /// Runs a transfer against `stored`, reading `chunk` bytes at a time.
    fn send(raw: &[u8], extent: Extent, chunk: usize) -> Vec<u8> {
        let stored = normalize_line_endings(raw);
        let layout = Layout {
            size: stored.len() as u64,
            header_len: header_len(&stored) as u64,
        };
        let mut transfer = Transfer::new(layout, extent, chunk);
        let mut out = Vec::new();
        let mut reads = 0;
        while let Some((offset, len)) = transfer.next_read(&mut out) {
            reads += 1;
            assert!(reads < 10_000, "transfer does not end");
            let offset = offset as usize;
            transfer.push(&stored[offset..offset + len], &mut out);
        }
        transfer.finish(&mut out);
        out
    }

    fn every_chunking(raw: &[u8], extent: Extent) -> Vec<u8> {
        let first = send(raw, extent, 1);
        for chunk in 2..=raw.len() + 2 {
            assert_eq!(send(raw, extent, chunk), first, "chunk {chunk} {extent:?}");
        }
        first
    }

    const MSG: &[u8] = b"Subject: x\r\n.From: y\r\n\r\n.line1\r\nline2\r\n.\r\nline4\r\n";

    #[test]
    fn retr_sends_everything_stuffed() {
        assert_eq!(
            every_chunking(MSG, Extent::Whole),
            b"Subject: x\r\n..From: y\r\n\r\n..line1\r\nline2\r\n..\r\nline4\r\n.\r\n"
        );
    }

    #[test]
    fn top_zero_is_header_and_blank_line() {
        assert_eq!(
            every_chunking(MSG, Extent::Top(0)),
            b"Subject: x\r\n..From: y\r\n\r\n.\r\n"
        );
    }

    #[test]
    fn top_counts_body_lines() {
        assert_eq!(
            every_chunking(MSG, Extent::Top(2)),
            b"Subject: x\r\n..From: y\r\n\r\n..line1\r\nline2\r\n.\r\n"
        );
    }

    #[test]
    fn top_past_the_end_is_the_whole_message() {
        let whole = every_chunking(MSG, Extent::Whole);
        assert_eq!(every_chunking(MSG, Extent::Top(99_999_999)), whole);
        assert_eq!(every_chunking(MSG, Extent::Top(4)), whole);
        assert_eq!(every_chunking(MSG, Extent::Top(u64::MAX)), whole);
    }

    #[test]
    fn top_adds_the_blank_line_a_message_lacks() {
        assert_eq!(
            every_chunking(b"Subject: only header\n", Extent::Top(0)),
            b"Subject: only header\r\n\r\n.\r\n"
        );
        // Any positive count is past the end of an empty body: RETR's bytes.
        assert_eq!(
            every_chunking(b"Subject: only header\n", Extent::Top(5)),
            every_chunking(b"Subject: only header\n", Extent::Whole)
        );
    }

    #[test]
    fn top_of_a_message_without_header() {
        assert_eq!(
            every_chunking(b"\nbody\nmore\n", Extent::Top(1)),
            b"\r\nbody\r\n.\r\n"
        );
    }

    #[test]
    fn top_header_bytes_equal_retr_header_bytes() {
        let retr = every_chunking(MSG, Extent::Whole);
        let top = every_chunking(MSG, Extent::Top(0));
        let header = &top[..top.len() - 3];
        assert!(retr.starts_with(header));
    }
}
