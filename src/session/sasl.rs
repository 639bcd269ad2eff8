//! The SASL mechanisms poplite offers through AUTH (RFC 5034): PLAIN
//! (RFC 4616) and LOGIN (the de-facto mechanism Outlook and many others
//! still use). Pure decoding; the session drives the exchange.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::protocol::Secret;

/// A SASL mechanism poplite implements. Both send the password itself,
/// so both count as plaintext authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto LOGIN mechanism.
    Login,
}

/// Every mechanism, in the order CAPA and a bare AUTH list them.
pub const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

impl Mechanism {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The mechanism a client named (case-insensitively), if implemented.
    pub fn named(name: &str) -> Option<Mechanism> {
        MECHANISMS
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(name: &str) -> Result<Mechanism, String> {
        Mechanism::named(name)
            .ok_or_else(|| format!("unknown SASL mechanism {name:?} (poplite has PLAIN and LOGIN)"))
    }
}

/// The LOGIN mechanism's challenges: base64 of "Username:" and "Password:".
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// See [`LOGIN_USERNAME_CHALLENGE`].
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// Why a client response could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// Not strict base64 (RFC 5034 §4 requires rejecting it).
    BadBase64,
    /// Decoded, but not the shape the mechanism requires.
    Malformed,
    /// PLAIN asked to act as a different user than it authenticated as.
    AuthzidMismatch,
}

/// Decodes one client response; `=` stands for an empty response.
pub fn decode(response: &[u8]) -> Result<Secret, SaslError> {
    if response == b"=" {
        return Ok(Secret::new(Vec::new()));
    }
    STANDARD
        .decode(response)
        .map(Secret::new)
        .map_err(|_| SaslError::BadBase64)
}

/// Splits a decoded PLAIN response `authzid NUL authcid NUL password`
/// into the user and the password.
pub fn parse_plain(decoded: &Secret) -> Result<(String, Secret), SaslError> {
    let mut parts = decoded.expose().split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let user = username(authcid)?;
    // User names are case-insensitive, so "ALICE" may act as "alice".
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid) {
        return Err(SaslError::AuthzidMismatch);
    }
    if password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok((user, Secret::new(password)))
}

/// A decoded user name: UTF-8, non-empty, no control characters.
pub fn username(bytes: &[u8]) -> Result<String, SaslError> {
    match std::str::from_utf8(bytes) {
        Ok(name) if !name.is_empty() && !name.chars().any(char::is_control) => Ok(name.to_string()),
        _ => Err(SaslError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        let decoded = decode(b"AGFsaWNlAHNlY3JldCBwdw==").unwrap(); // "\0alice\0secret pw"
        let (user, password) = parse_plain(&decoded).unwrap();
        assert_eq!(user, "alice");
        assert_eq!(password.expose(), b"secret pw");

        let same = Secret::new(&b"alice\0alice\0pw"[..]);
        assert_eq!(parse_plain(&same).unwrap().0, "alice");
        let same_ignoring_case = Secret::new(&b"ALICE\0alice\0pw"[..]);
        assert_eq!(parse_plain(&same_ignoring_case).unwrap().0, "alice");
        let other = Secret::new(&b"bob\0alice\0pw"[..]);
        assert_eq!(parse_plain(&other), Err(SaslError::AuthzidMismatch));
    }

    #[test]
    fn strict_base64() {
        assert_eq!(decode(b"=AAA"), Err(SaslError::BadBase64));
        assert_eq!(decode(b"AAA=BBB"), Err(SaslError::BadBase64));
        assert_eq!(decode(b"not base64!"), Err(SaslError::BadBase64));
        assert_eq!(decode(b"=").unwrap().expose(), b"");
    }

    #[test]
    fn plain_needs_three_parts() {
        assert_eq!(
            parse_plain(&Secret::new(&b"alice"[..])),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            parse_plain(&Secret::new(&b"\0alice\0"[..])),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            parse_plain(&Secret::new(&b"\0\0pw"[..])),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            parse_plain(&Secret::new(&b"\0a\0b\0c"[..])),
            Err(SaslError::Malformed)
        );
    }
}
