//! Reads the message after DATA (RFC 5321 §4.5.2): removes the dot that
//! stuffs a line starting with one, and stops at the line holding only a
//! dot. Sans-IO and push-style: a body arrives in any pieces, and leaves
//! in pieces too, appended to the caller's buffer, so it is never held
//! whole here.
//!
//! A bare LF starts a new line for unstuffing, as it does when the message
//! is stored (line ends are normalised): clients that stuff after it, like
//! Python's smtplib given LF-only bytes, round-trip. But only CRLF . CRLF
//! ends the message; taking LF . LF (or LF . CRLF) as an end is how SMTP
//! smuggling splits one message into two.

/// Where the reader is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a line.
    LineStart,
    /// After a dot at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Middle,
    /// Inside a line, just after a CR.
    MiddleCr,
}

/// The body was larger than the limit; it was read to its end and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Reads one message body, passing on at most `limit` octets of it.
#[derive(Debug)]
pub struct DataReader {
    at: At,
    /// Whether the current line began after a CRLF (or at the start), so
    /// that a lone dot on it ends the message.
    after_crlf: bool,
    /// Octets of body passed on so far.
    passed: u64,
    limit: u64,
    too_large: bool,
}

impl DataReader {
    /// A reader for a body of at most `limit` octets (after unstuffing).
    pub fn new(limit: u64) -> DataReader {
        DataReader {
            at: At::LineStart,
            after_crlf: true,
            passed: 0,
            limit,
            too_large: false,
        }
    }

    /// Takes the next bytes from the client, appending the body in them
    /// (unstuffed) to `out`. Returns `Some(n)` once the end-of-data line
    /// was read, `n` being how many of `input` it took (the rest are
    /// pipelined commands), or `None` when it needs more. Past the limit
    /// nothing more is appended.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.at {
                At::LineStart if byte == b'.' => self.at = At::Dot,
                At::Dot if byte == b'\r' => self.at = At::DotCr,
                At::DotCr if byte == b'\n' && self.after_crlf => return Some(i + 1),
                // A lone dot that is not the end (after a bare LF, or
                // ended by one) was not stuffing either: a client that
                // stuffs would have sent two.
                At::DotCr if byte == b'\n' => {
                    self.keep(out, b".\r\n");
                    self.at = At::LineStart;
                    self.after_crlf = true;
                }
                At::Dot if byte == b'\n' => {
                    self.keep(out, b".\n");
                    self.at = At::LineStart;
                    self.after_crlf = false;
                }
                // `.` CR x: the dot was stuffing, the CR is content.
                At::DotCr => {
                    self.keep(out, b"\r");
                    self.at = At::MiddleCr;
                    continue;
                }
                // The stuffed dot is dropped; the byte is handled as content.
                At::Dot | At::LineStart | At::Middle => {
                    // Most bytes are inside lines: copy up to the next line end at once.
                    let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                    if run > 0 {
                        self.keep(out, &input[i..i + run]);
                        self.at = At::Middle;
                        i += run;
                        continue;
                    }
                    self.keep(out, &[byte]);
                    if byte == b'\r' {
                        self.at = At::MiddleCr;
                    } else {
                        self.at = At::LineStart;
                        self.after_crlf = false;
                    }
                }
                At::MiddleCr => {
                    self.keep(out, &[byte]);
                    self.at = match byte {
                        b'\n' => {
                            self.after_crlf = true;
                            At::LineStart
                        }
                        b'\r' => At::MiddleCr,
                        _ => At::Middle,
                    };
                }
            }
            i += 1;
        }
        None
    }

    /// Whether the body passed the limit (then the caller drops what it
    /// was given: only part of the body).
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }

    /// How the body ended, once [`DataReader::feed`] has seen its end.
    pub fn finish(self) -> Result<(), TooLarge> {
        match self.too_large {
            true => Err(TooLarge),
            false => Ok(()),
        }
    }

    fn keep(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.too_large {
            return;
        }
        if self.passed + bytes.len() as u64 > self.limit {
            // Keep reading to the end, so the session stays in step, but
            // pass nothing on: an oversized body costs no memory.
            self.too_large = true;
            return;
        }
        self.passed += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `chunk` octets; returns the body and
    /// the octets left after the end line.
    fn read(input: &[u8], chunk: usize, limit: u64) -> (Result<Vec<u8>, TooLarge>, Vec<u8>) {
        let mut reader = DataReader::new(limit);
        let mut body = Vec::new();
        let mut offset = 0;
        for piece in input.chunks(chunk) {
            if let Some(used) = reader.feed(piece, &mut body) {
                let body = reader.finish().map(|()| body);
                return (body, input[offset + used..].to_vec());
            }
            offset += piece.len();
        }
        panic!("no end of data in {input:?}");
    }

    #[test]
    fn every_chunk_size_reads_the_same_body() {
        let input =
            b"A: 1\r\n\r\n..leading dot\r\n.\rodd\r\nbare\nlf\n.\nnot the end\r\n\r\n.\r\nQUIT\r\n";
        let body: &[u8] = b"A: 1\r\n\r\n.leading dot\r\n\rodd\r\nbare\nlf\n.\nnot the end\r\n\r\n";
        for chunk in 1..=input.len() {
            let (got, rest) = read(input, chunk, 1000);
            assert_eq!(got.as_deref(), Ok(body), "chunk {chunk}");
            assert_eq!(rest, b"QUIT\r\n", "chunk {chunk}");
        }
    }

    #[test]
    fn an_empty_body_ends_at_once() {
        assert_eq!(read(b".\r\n", 1, 10).0, Ok(Vec::new()));
    }

    #[test]
    fn a_dot_line_with_more_on_it_is_not_the_end() {
        let (got, _) = read(b".x\r\n. \r\n..\r\n.\r\n", 3, 100);
        assert_eq!(got.unwrap(), b"x\r\n \r\n.\r\n");
    }

    #[test]
    fn cr_runs_inside_lines_are_content() {
        let (got, _) = read(b"a\r\r\nb\r\r\r\n.\r\n", 1, 100);
        assert_eq!(got.unwrap(), b"a\r\r\nb\r\r\r\n");
    }

    #[test]
    fn an_oversized_body_is_read_to_its_end_and_refused() {
        let (got, rest) = read(b"0123456789\r\n0123\r\n.\r\nNOOP\r\n", 4, 12);
        assert_eq!(got, Err(TooLarge));
        assert_eq!(rest, b"NOOP\r\n");
        let (exact, _) = read(b"0123456789\r\n.\r\n", 4, 12);
        assert_eq!(exact.unwrap().len(), 12);
    }
}
