//! Normalises a message as it arrives, in pieces of any size: line ends
//! become CRLF, and the facts that the protocol needs (size, where the
//! header ends, the Subject) are worked out on the way, so a message can
//! be stored without ever being held whole.

use super::message::header_value;

/// Octets of the header section kept to find the Subject in; a header
/// larger than this (no real one is) has its Subject looked for in this
/// much of it only. Dovecot caps a header line at 64 KiB and a header at
/// 10 MiB; the Subject is near the top of every real message.
pub const HEADER_KEPT: usize = 256 * 1024;

/// What a normalised message is, besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Octets, CRLF-normalised: what STAT and LIST report.
    pub size: u64,
    /// Octets before the blank line that ends the header (all of it if none).
    pub header_len: u64,
    /// The unfolded Subject header, if there is one.
    pub subject: Option<String>,
}

/// A push-style line-end normaliser (sans-IO): bytes in with
/// [`Normalizer::push`], normalised bytes appended to the caller's
/// buffer, the [`Facts`] from [`Normalizer::finish`].
///
/// Bare LF and bare CR become CRLF, CR LF stays one line end (also when
/// the CR ends one piece and the LF starts the next), and a last line
/// without an end gets one.
#[derive(Debug)]
pub struct Normalizer {
    /// The last piece ended in a CR: the next byte says whether an LF
    /// completes that line end or the CR stands alone.
    pending_cr: bool,
    size: u64,
    /// Octets of the current line so far.
    line_len: u64,
    /// The offset of the first empty line, which ends the header.
    header_len: Option<u64>,
    /// The header section so far, up to [`HEADER_KEPT`] octets.
    header: Vec<u8>,
}

impl Normalizer {
    /// A normaliser at the start of a message.
    pub fn new() -> Normalizer {
        Normalizer {
            pending_cr: false,
            size: 0,
            line_len: 0,
            header_len: None,
            header: Vec::new(),
        }
    }

    /// Octets written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Normalises `raw` onto the end of `out`.
    pub fn push(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let mut rest = raw;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            self.line_end(out);
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        // Whole runs between line ends are copied at once: byte by byte,
        // this was a third of an import's time.
        while let Some(at) = memchr::memchr2(b'\r', b'\n', rest) {
            self.text(&rest[..at], out);
            let after = match (rest[at], rest.get(at + 1)) {
                // A CR followed by LF is one line end, not two.
                (b'\r', Some(b'\n')) => at + 2,
                (b'\r', None) => {
                    self.pending_cr = true;
                    return;
                }
                _ => at + 1,
            };
            self.line_end(out);
            rest = &rest[after..];
        }
        self.text(rest, out);
    }

    /// Ends the message (a last line end where it lacks one) and returns
    /// its facts, the Subject from the header kept on the way.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Facts {
        if std::mem::take(&mut self.pending_cr) || self.line_len > 0 {
            self.line_end(out);
        }
        let header_len = self.header_len.unwrap_or(self.size);
        let kept = self
            .header
            .len()
            .min(usize::try_from(header_len).unwrap_or(usize::MAX));
        Facts {
            size: self.size,
            header_len,
            subject: header_value(&self.header[..kept], "subject"),
        }
    }

    fn text(&mut self, run: &[u8], out: &mut Vec<u8>) {
        if run.is_empty() {
            return;
        }
        out.extend_from_slice(run);
        self.keep(run);
        self.size += run.len() as u64;
        self.line_len += run.len() as u64;
    }

    fn line_end(&mut self, out: &mut Vec<u8>) {
        // The first empty line ends the header (RFC 5322 §2.1).
        if self.header_len.is_none() && self.line_len == 0 {
            self.header_len = Some(self.size);
        }
        out.extend_from_slice(b"\r\n");
        self.keep(b"\r\n");
        self.size += 2;
        self.line_len = 0;
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.header_len.is_some() {
            return;
        }
        let room = HEADER_KEPT.saturating_sub(self.header.len());
        self.header
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules written the slow, obvious way, byte by byte.
    fn reference(raw: &[u8]) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    i += 1;
                }
                b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
                byte => out.push(byte),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        let header_len = if out.starts_with(b"\r\n") {
            0
        } else {
            out.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(out.len(), |at| at + 2)
        };
        (out, header_len as u64)
    }

    fn in_pieces(raw: &[u8], cuts: &[usize]) -> (Vec<u8>, Facts) {
        let mut normalizer = Normalizer::new();
        let mut out = Vec::new();
        let mut rest = raw;
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(cut.min(rest.len()));
            normalizer.push(piece, &mut out);
            rest = tail;
        }
        let facts = normalizer.finish(&mut out);
        (out, facts)
    }

    #[test]
    fn a_cr_at_the_end_of_a_piece_waits_for_the_next() {
        for raw in [&b"a\r\nb"[..], b"a\r\rb", b"a\r", b"\r\n\r\nbody"] {
            let (whole, _) = in_pieces(raw, &[raw.len().max(1)]);
            for cut in 1..=raw.len() {
                assert_eq!(in_pieces(raw, &[cut]).0, whole, "{raw:?} cut {cut}");
            }
        }
    }

    #[test]
    fn the_subject_is_found_in_a_header_kept_on_the_way() {
        let raw = b"From: a\nSubject: Hello\n  there\n\nSubject: body\n";
        let (_, facts) = in_pieces(raw, &[3]);
        assert_eq!(facts.subject.as_deref(), Some("Hello there"));
        assert_eq!(facts.header_len, 34);
    }

    proptest! {
        #[test]
        fn any_bytes_in_any_pieces_normalise_as_the_reference_does(
            raw in prop::collection::vec(
                prop::sample::select(vec![b'a', b'\r', b'\n', b' ', b':', b'.']), 0..200),
            cuts in prop::collection::vec(1usize..20, 1..8),
        ) {
            let (expected, header_len) = reference(&raw);
            let (out, facts) = in_pieces(&raw, &cuts);
            prop_assert_eq!(&out, &expected);
            prop_assert_eq!(facts.size, expected.len() as u64);
            prop_assert_eq!(facts.header_len, header_len);
        }
    }
}
