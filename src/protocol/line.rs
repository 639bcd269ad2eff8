//! Splits the client's byte stream into command lines, with a hard bound
//! on memory: an over-long line is dropped as it arrives, never buffered
//! whole, and is reported once, as soon as it passes the limit, so that a
//! client streaming a line with no end can be answered and cut off.

/// One event from the line reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, without its line end.
    Line(Vec<u8>),
    /// A line longer than the limit, reported as soon as it passes it;
    /// its bytes, up to and including its line end, are discarded.
    TooLong,
}

/// A bounded, push-style line splitter (sans-IO).
///
/// Bytes go in with [`LineReader::feed`]; complete lines come out of
/// [`LineReader::next_line`], which returns `None` when it needs more bytes.
/// Lines end with LF; a CR just before it is dropped, so both CRLF (the
/// RFC) and bare LF (some telnet clients) work.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as lines.
    consumed: usize,
    /// Set while dropping the rest of an over-long line.
    discarding: bool,
}

impl LineReader {
    /// An empty reader.
    pub fn new() -> LineReader {
        LineReader::default()
    }

    /// Appends bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.consumed > 0 && self.consumed == self.buf.len() {
            self.buf.clear();
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next line of at most `max_len` octets including its CRLF, or
    /// `None` when more input is needed.
    ///
    /// When the pending bytes already exceed the limit with no line end in
    /// sight, they are dropped at once, [`LineEvent::TooLong`] is returned,
    /// and the reader silently discards until the next LF, so memory stays
    /// at `max_len` plus one read.
    pub fn next_line(&mut self, max_len: usize) -> Option<LineEvent> {
        loop {
            let pending = &self.buf[self.consumed..];
            match pending.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    let discarded = std::mem::take(&mut self.discarding);
                    let mut line = &pending[..lf];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    let event = match line.len() + 2 > max_len {
                        _ if discarded => None,
                        true => Some(LineEvent::TooLong),
                        false => Some(LineEvent::Line(line.to_vec())),
                    };
                    self.consumed += lf + 1;
                    self.compact();
                    match event {
                        Some(event) => return Some(event),
                        // The end of a line already reported: look further.
                        None => continue,
                    }
                }
                None => {
                    if self.discarding {
                        self.buf.clear();
                        self.consumed = 0;
                    } else if pending.len() + 1 > max_len {
                        self.discarding = true;
                        self.buf.clear();
                        self.consumed = 0;
                        return Some(LineEvent::TooLong);
                    }
                    return None;
                }
            }
        }
    }

    /// True when a complete line is already buffered, so replies may be
    /// held back and sent together (PIPELINING).
    pub fn has_line(&self) -> bool {
        self.buf[self.consumed..].contains(&b'\n')
    }

    /// Removes and returns every byte not yet handed out as a line (for
    /// a body that follows a command, read by another decoder).
    pub fn take_pending(&mut self) -> Vec<u8> {
        let pending = self.buf.split_off(self.consumed);
        self.buf.clear();
        self.consumed = 0;
        self.discarding = false;
        pending
    }

    /// The bytes buffered but not yet handed out as lines.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.consumed..]
    }

    /// True while part of a line has arrived but not its end.
    pub fn is_mid_line(&self) -> bool {
        self.discarding || self.consumed < self.buf.len()
    }

    fn compact(&mut self) {
        // Drop consumed bytes once they dominate, keeping `feed` amortised O(n).
        if self.consumed > 4096 && self.consumed * 2 > self.buf.len() {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_from_chunks(input: &[u8], chunk: usize, max: usize) -> Vec<LineEvent> {
        let mut reader = LineReader::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            reader.feed(piece);
            while let Some(event) = reader.next_line(max) {
                out.push(event);
            }
        }
        out
    }

    #[test]
    fn take_pending_returns_what_follows_the_last_line() {
        let mut reader = LineReader::new();
        reader.feed(b"DATA\r\nbody\r\n.\r");
        assert_eq!(
            reader.next_line(100),
            Some(LineEvent::Line(b"DATA".to_vec()))
        );
        assert_eq!(reader.take_pending(), b"body\r\n.\r");
        assert!(!reader.has_line() && !reader.is_mid_line());
        reader.feed(b"QUIT\r\n");
        assert_eq!(
            reader.next_line(100),
            Some(LineEvent::Line(b"QUIT".to_vec()))
        );
    }

    #[test]
    fn every_chunk_size_gives_the_same_lines() {
        let long = vec![b'x'; 700];
        let mut input = b"USER alice\r\nPASS a b\nSTAT\r\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\r\nNOOP\r\n\r\n\x00\xff\r\nQUIT\r\n");
        let expected = lines_from_chunks(&input, input.len(), 255);
        assert_eq!(
            expected,
            vec![
                LineEvent::Line(b"USER alice".to_vec()),
                LineEvent::Line(b"PASS a b".to_vec()),
                LineEvent::Line(b"STAT".to_vec()),
                LineEvent::TooLong,
                LineEvent::Line(b"NOOP".to_vec()),
                LineEvent::Line(b"".to_vec()),
                LineEvent::Line(b"\x00\xff".to_vec()),
                LineEvent::Line(b"QUIT".to_vec()),
            ]
        );
        for chunk in 1..=512 {
            assert_eq!(
                lines_from_chunks(&input, chunk, 255),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn limit_counts_the_crlf() {
        let line253 = vec![b'a'; 253];
        let mut input = line253.clone();
        input.extend_from_slice(b"\r\n");
        assert_eq!(
            lines_from_chunks(&input, 7, 255),
            vec![LineEvent::Line(line253)]
        );
        let mut input = vec![b'a'; 254];
        input.extend_from_slice(b"\r\n");
        assert_eq!(lines_from_chunks(&input, 7, 255), vec![LineEvent::TooLong]);
    }

    #[test]
    fn an_endless_line_never_grows_the_buffer() {
        let mut reader = LineReader::new();
        let mut events = Vec::new();
        for _ in 0..10_000 {
            reader.feed(&[b'z'; 100]);
            events.extend(reader.next_line(255));
            assert!(reader.buf.len() <= 355);
        }
        // Reported once, as soon as it passed the limit (the third feed),
        // not when its end comes: a client need never send one.
        assert_eq!(events, vec![LineEvent::TooLong]);
        reader.feed(b"\r\nNOOP\r\n");
        assert_eq!(
            reader.next_line(255),
            Some(LineEvent::Line(b"NOOP".to_vec()))
        );
    }

    #[test]
    fn an_over_long_line_is_reported_before_its_end_arrives() {
        let mut reader = LineReader::new();
        reader.feed(&[b'a'; 254]);
        assert_eq!(
            reader.next_line(255),
            None,
            "254 octets may yet be a line and its CR"
        );
        reader.feed(b"a");
        assert_eq!(reader.next_line(255), Some(LineEvent::TooLong));
        reader.feed(b"aaa\r\nSTAT\r\n");
        assert_eq!(
            reader.next_line(255),
            Some(LineEvent::Line(b"STAT".to_vec()))
        );
    }
}
