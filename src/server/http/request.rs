//! Reading requests: the body frame by frame (each within the read
//! timeout), JSON bodies (small, whole), the query string, and the path's
//! percent-encoded segments.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use smol::Timer;

use super::problem::Problem;

/// Largest JSON body taken: user objects and passwords are small.
pub(super) const MAX_JSON: usize = 64 * 1024;

/// The next piece of `body`, `None` at its end; 408 when the client
/// sends nothing for `timeout`.
pub(super) async fn next_data(
    body: &mut Incoming,
    timeout: Duration,
) -> Result<Option<Bytes>, Problem> {
    loop {
        let frame = smol::future::or(async { Some(body.frame().await) }, async {
            Timer::after(timeout).await;
            None
        })
        .await;
        match frame {
            None => {
                return Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body stalled for {timeout:?}"),
                ))
            }
            Some(None) => return Ok(None),
            Some(Some(Err(error))) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {error}"),
                ))
            }
            // Trailers carry nothing the API reads.
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Whether the request's `Content-Type` is `wanted` (parameters such as
/// `charset` aside); 415 otherwise.
pub(super) fn require_type(headers: &HeaderMap, wanted: &str) -> Result<(), Problem> {
    let given = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim());
    match given {
        Some(given) if given.eq_ignore_ascii_case(wanted) => Ok(()),
        Some(given) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("this endpoint takes Content-Type: {wanted}, not {given}"),
        )),
        None => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("this endpoint takes Content-Type: {wanted}"),
        )),
    }
}

/// The declared `Content-Length`, if any and valid.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A JSON body of type `T`: 415 for another type, 413 past [`MAX_JSON`],
/// 400 for malformed JSON, 422 for valid JSON of the wrong shape
/// (unknown fields included, so a misspelt one is not silently ignored).
pub(super) async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &mut Incoming,
    timeout: Duration,
) -> Result<T, Problem> {
    require_type(headers, "application/json")?;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("JSON bodies are limited to {MAX_JSON} octets"),
        )
    };
    if declared_length(headers).is_some_and(|length| length > MAX_JSON as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(data) = next_data(body, timeout).await? {
        if bytes.len() + data.len() > MAX_JSON {
            return Err(too_large());
        }
        bytes.extend_from_slice(&data);
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        let status = match error.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(status, format!("invalid JSON body: {error}"))
    })
}

/// The value of query parameter `name`, percent-decoded; the last one
/// wins. 400 for a value that is not valid percent-encoded UTF-8.
pub(super) fn query_value(query: Option<&str>, name: &str) -> Result<Option<String>, Problem> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key)? == name {
            found = Some(decode(&value.replace('+', " "))?);
        }
    }
    Ok(found)
}

/// A path segment or query part, percent-decoded: 400 for a `%` not
/// followed by two hex digits, or octets that are not UTF-8.
pub(super) fn decode(text: &str) -> Result<String, Problem> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    let bad = |what: &str| Problem::new(StatusCode::BAD_REQUEST, format!("{what} in {text:?}"));
    if !well_formed {
        return Err(bad("bad percent-encoding"));
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| bad("percent-encoded octets that are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_percent_decoded_strictly() {
        assert_eq!(decode("bob%40example.org").unwrap(), "bob@example.org");
        assert!(decode("bob%4").is_err());
        assert!(decode("bob%zz").is_err());
        assert!(decode("%ff").is_err());
        let query = Some("min=2&timeout=1.5&min=3");
        assert_eq!(query_value(query, "min").unwrap().as_deref(), Some("3"));
        assert_eq!(query_value(query, "x").unwrap(), None);
    }
}
