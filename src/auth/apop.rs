//! APOP (RFC 1939 §7): the digest a client sends, and the greeting
//! timestamp it is computed over.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Whether an APOP digest (hex, any case) is MD5(timestamp + secret),
/// compared in constant time.
pub fn apop_digest_matches(timestamp: &str, secret: &str, digest: &[u8]) -> bool {
    let expected = apop_digest(timestamp, secret);
    let given = digest.to_ascii_lowercase();
    expected.as_bytes().ct_eq(&given).into()
}

/// MD5(timestamp + secret) in lower-case hex, as RFC 1939 §7 defines it.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(secret.as_bytes());
    md5.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A fresh, unpredictable APOP timestamp `<hex.seconds@hostname>`.
///
/// Before the `@` it holds only letters, digits and dots because mpop
/// rejects anything else there; `hostname` is sanitised the same way so the
/// greeting holds exactly one pair of angle brackets.
pub fn new_apop_timestamp(hostname: &str) -> Result<String, AuthError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(AuthError::Random)?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(format!(
        "<{nonce}.{seconds}@{}>",
        sanitize_hostname(hostname)
    ))
}

/// Keeps only the characters a domain may hold, falling back to `localhost`.
pub fn sanitize_hostname(hostname: &str) -> String {
    let clean: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_apop_example_digest() {
        // RFC 1939 §7: the example greeting timestamp and secret "tanstaaf".
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(
            apop_digest(ts, "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert!(apop_digest_matches(
            ts,
            "tanstaaf",
            b"C4C9334BAC560ECC979E58001B3E22FB"
        ));
        assert!(!apop_digest_matches(
            ts,
            "tanstaaf",
            b"c4c9334bac560ecc979e58001b3e22fc"
        ));
        assert!(!apop_digest_matches(ts, "tanstaaf", b"short"));
    }

    #[test]
    fn timestamps_are_fresh_and_bracket_safe() {
        let a = new_apop_timestamp("mail<evil>.example").unwrap();
        let b = new_apop_timestamp("mail<evil>.example").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.matches('<').count(), 1);
        assert_eq!(a.matches('>').count(), 1);
        let local = &a[1..a.find('@').unwrap()];
        assert!(local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        assert!(a.ends_with("@mailevil.example>"));
    }
}
