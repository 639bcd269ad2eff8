//! Parses one LMTP or SMTP command line (RFC 5321, and RFC 2033, which is
//! ESMTP with LHLO instead of EHLO) into a [`Command`]: a pure function.
//! Which commands a dialect accepts is the session's business.

use super::Reply;

/// One command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `LHLO domain` (LMTP): the client's name; answered with the extensions.
    Lhlo(String),
    /// `EHLO domain` (SMTP): as LHLO.
    Ehlo(String),
    /// `HELO domain` (SMTP): the client's name, no extensions.
    Helo(String),
    /// `STARTTLS` (RFC 3207, SMTP only).
    StartTls,
    /// `MAIL FROM:<reverse-path>`, with its parameters checked.
    Mail(MailFrom),
    /// `RCPT TO:<forward-path>`.
    Rcpt(String),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`: answered without saying whether the user exists.
    Vrfy,
    /// `HELP`.
    Help,
    /// A command of SMTP that poplite does not offer (BDAT, AUTH, …).
    NotImplemented(String),
}

/// The sender and what the client declared about the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// The reverse path without its brackets; empty for a bounce (`<>`).
    pub sender: String,
    /// The SIZE parameter (RFC 1870), if given.
    pub size: Option<u64>,
}

/// Commands of RFC 5321 that poplite knows but does not offer.
const NOT_OFFERED: &[&str] = &["BDAT", "AUTH", "EXPN", "TURN", "ETRN", "ATRN"];

/// Parses a line (without its CRLF); a malformed one yields the reply
/// to send instead.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(Reply::new(500, "5.5.2 command is not valid UTF-8"));
    };
    let (verb, rest) = match line.split_once(' ') {
        Some((verb, rest)) => (verb, rest.trim()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_argument = |command: Command| {
        if rest.is_empty() {
            Ok(command)
        } else {
            Err(Reply::new(501, format!("5.5.4 {verb} takes no argument")))
        }
    };
    match verb.as_str() {
        "LHLO" => client_name(&verb, rest).map(Command::Lhlo),
        "EHLO" => client_name(&verb, rest).map(Command::Ehlo),
        "HELO" => client_name(&verb, rest).map(Command::Helo),
        "STARTTLS" => no_argument(Command::StartTls),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_argument(Command::Data),
        "RSET" => no_argument(Command::Rset),
        // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_argument(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        known if NOT_OFFERED.contains(&known) => Ok(Command::NotImplemented(verb)),
        _ => Err(Reply::new(500, "5.5.2 command not recognized")),
    }
}

/// The name LHLO, EHLO or HELO gives: one word, which SMTP puts in
/// `Received`, so printable ASCII only (a CR would start a header).
fn client_name(verb: &str, rest: &str) -> Result<String, Reply> {
    match rest.split_ascii_whitespace().next() {
        Some(name) if name.bytes().all(|b| b.is_ascii_graphic()) => Ok(name.to_string()),
        _ => Err(Reply::new(
            501,
            format!("5.5.4 syntax: {verb} your-host-name"),
        )),
    }
}

fn parse_mail(rest: &str) -> Result<Command, Reply> {
    let syntax = || Reply::new(501, "5.5.4 syntax: MAIL FROM:<address>");
    let (sender, params) = path_after(rest, "FROM:").ok_or_else(syntax)?;
    let mut mail = MailFrom { sender, size: None };
    for param in params.split_ascii_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => match value.parse::<u64>() {
                Ok(size) => mail.size = Some(size),
                Err(_) => return Err(Reply::new(501, "5.5.4 SIZE needs a number of octets")),
            },
            // Both are stored as they come: poplite never converts bodies.
            "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
            _ => return Err(unsupported(param)),
        }
    }
    Ok(Command::Mail(mail))
}

fn parse_rcpt(rest: &str) -> Result<Command, Reply> {
    let syntax = || Reply::new(501, "5.5.4 syntax: RCPT TO:<address>");
    let (recipient, params) = path_after(rest, "TO:").ok_or_else(syntax)?;
    if recipient.is_empty() {
        return Err(syntax());
    }
    match params.split_ascii_whitespace().next() {
        Some(param) => Err(unsupported(param)),
        None => Ok(Command::Rcpt(recipient)),
    }
}

fn unsupported(param: &str) -> Reply {
    Reply::new(555, format!("5.5.4 unsupported parameter {param}"))
}

/// Splits `FROM:<path> params` into the path (brackets and any source
/// route removed) and the parameters; `None` when it is not of that form.
fn path_after<'a>(rest: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    // Many clients put a space after the colon; accept it.
    let rest = rest[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let close = closing_bracket(inner)?;
    let path = &inner[..close];
    let params = &inner[close + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // RFC 5321 §4.1.2: a source route (`@a,@b:user@c`) is to be ignored.
    let path = match path.strip_prefix('@') {
        Some(_) => path.split_once(':')?.1,
        None => path,
    };
    // The path goes into stored headers: a CR in it would start a header
    // of the sender's choosing. SMTPUTF8 is not offered, so ASCII only.
    if !path.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return None;
    }
    Some((path.to_string(), params.trim()))
}

/// The index of the `>` that ends a path, skipping quoted local parts.
fn closing_bracket(inner: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

/// The user names an address may belong to, most specific first: the
/// whole address, then its local part unquoted, so one poplite serves
/// any domain the MTA routes to it without listing it; each also without
/// a `+detail` (Postfix's `recipient_delimiter`). For
/// `alice+lists@example.org`: that, `alice@example.org`, `alice+lists`,
/// `alice`.
pub fn candidate_users(address: &str) -> Vec<String> {
    let (local, domain) = match address.rfind('@') {
        Some(at) => (&address[..at], Some(&address[at..])),
        None => (address, None),
    };
    let local = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(quoted) => unquote(quoted),
        None => local.to_string(),
    };
    let base = match local.split_once('+') {
        Some((base, _)) if !base.is_empty() => Some(base.to_string()),
        _ => None,
    };
    let mut candidates = vec![address.to_string()];
    if let (Some(base), Some(domain)) = (&base, domain) {
        candidates.push(format!("{base}{domain}"));
    }
    candidates.push(local);
    candidates.extend(base);
    candidates.dedup();
    candidates.retain(|name| !name.is_empty());
    candidates
}

/// A quoted string's content with its backslash escapes resolved.
fn unquote(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> u16 {
        parse(line.as_bytes()).unwrap_err().code()
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse(b"lhlo mx.example"),
            Ok(Command::Lhlo("mx.example".into()))
        );
        assert_eq!(parse(b"quit"), Ok(Command::Quit));
        assert_eq!(parse(b"NOOP anything at all"), Ok(Command::Noop));
    }

    #[test]
    fn greetings_take_one_printable_name() {
        assert_eq!(parse(b"EHLO mx"), Ok(Command::Ehlo("mx".into())));
        assert_eq!(parse(b"helo mx extra"), Ok(Command::Helo("mx".into())));
        assert_eq!(
            parse(b"EHLO [127.0.0.1]"),
            Ok(Command::Ehlo("[127.0.0.1]".into()))
        );
        assert_eq!(code("EHLO"), 501);
        assert_eq!(code("HELO caf\u{e9}"), 501);
        assert_eq!(code("EHLO a\u{1}b"), 501);
        assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
        assert_eq!(code("STARTTLS now"), 501);
    }

    #[test]
    fn mail_from_takes_a_path_size_and_body() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME"),
            Ok(Command::Mail(MailFrom {
                sender: "a@b.example".into(),
                size: Some(1234)
            }))
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail(MailFrom {
                sender: String::new(),
                size: None
            }))
        );
    }

    #[test]
    fn source_routes_are_dropped_and_quoted_brackets_kept() {
        assert_eq!(
            parse(b"RCPT TO:<@relay.example,@b.example:bob@c.example>"),
            Ok(Command::Rcpt("bob@c.example".into()))
        );
        assert_eq!(
            parse(b"RCPT TO:<\"odd>name\"@c.example>"),
            Ok(Command::Rcpt("\"odd>name\"@c.example".into()))
        );
    }

    #[test]
    fn malformed_paths_and_parameters_are_refused_with_their_codes() {
        assert_eq!(code("MAIL FROM:a@b"), 501);
        assert_eq!(code("MAIL TO:<a@b>"), 501);
        assert_eq!(code("MAIL FROM:<a@b"), 501);
        assert_eq!(code("MAIL FROM:<a@b>SIZE=1"), 501);
        assert_eq!(code("MAIL FROM:<a@b> SIZE=lots"), 501);
        assert_eq!(code("MAIL FROM:<a@b> SMTPUTF8"), 555);
        assert_eq!(code("MAIL FROM:<a@b> BODY=BINARYMIME"), 555);
        assert_eq!(code("RCPT TO:<>"), 501);
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=NEVER"), 555);
        // Control and non-ASCII bytes would end up in stored headers.
        assert_eq!(code("MAIL FROM:<a@b\rX-Injected: yes>"), 501);
        assert_eq!(code("RCPT TO:<a\t@b>"), 501);
        assert_eq!(code("RCPT TO:<caf\u{e9}@b>"), 501);
        assert_eq!(code("RCPT TO:<a\u{0}@b>"), 501);
        assert_eq!(code("LHLO"), 501);
        assert_eq!(code("DATA now"), 501);
        assert_eq!(code("FROB"), 500);
        assert_eq!(parse(b"\xff").unwrap_err().code(), 500);
    }

    #[test]
    fn known_but_unoffered_commands_are_told_apart_from_unknown_ones() {
        assert_eq!(
            parse(b"BDAT 10 LAST"),
            Ok(Command::NotImplemented("BDAT".into()))
        );
        assert_eq!(
            parse(b"AUTH PLAIN"),
            Ok(Command::NotImplemented("AUTH".into()))
        );
    }

    #[test]
    fn candidates_are_the_whole_address_then_the_local_part() {
        assert_eq!(
            candidate_users("alice@example.org"),
            ["alice@example.org", "alice"]
        );
        assert_eq!(candidate_users("postmaster"), ["postmaster"]);
        assert_eq!(
            candidate_users("alice+lists@example.org"),
            [
                "alice+lists@example.org",
                "alice@example.org",
                "alice+lists",
                "alice"
            ]
        );
        assert_eq!(candidate_users("alice+x"), ["alice+x", "alice"]);
        assert_eq!(candidate_users("+x@y"), ["+x@y", "+x"]);
        assert_eq!(
            candidate_users("\"bob\"@example.org"),
            ["\"bob\"@example.org", "bob"]
        );
        assert_eq!(candidate_users("a@b@c"), ["a@b@c", "a@b"]);
        assert_eq!(
            candidate_users("\"b\\\\o\\b\"@x"),
            ["\"b\\\\o\\b\"@x", "b\\ob"]
        );
    }
}
