//! `/api/v1/users/{name}/messages…`: the maildrop listed (waiting for
//! mail if asked), a message delivered as `poplite deliver` delivers
//! (streamed into the store), read (streamed out of it), and removed
//! under the maildrop lock a POP3 session takes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::api::{blocking, no_content, ok, storage_problem, with_maildrop};
use super::body::{json, Body};
use super::problem::Problem;
use super::request::{declared_length, next_data, query_value, require_type};
use crate::mail::MessageError;
use crate::metrics::{DeliveryRefusal, Via};
use crate::server::Shared;
use crate::storage::{
    Incoming as Intake, IngestError, MailboxEntry, MessageMeta, StorageError, UserId, BODY_CHUNK,
};

/// The longest wait `?timeout=` may ask for, in seconds; more is 422.
const MAX_WAIT_SECONDS: f64 = 60.0;

/// Octets of a body gathered before they go to the storage pool (as
/// LMTP does): few trips, little held.
const INTAKE_STEP: usize = 256 * 1024;

/// A message as the API shows one.
#[derive(Debug, Serialize)]
struct MessageInfo {
    uid: String,
    size: u64,
    received_at: String,
    subject: Option<String>,
}

impl From<MailboxEntry> for MessageInfo {
    fn from(entry: MailboxEntry) -> MessageInfo {
        MessageInfo {
            uid: entry.uid,
            size: entry.size,
            received_at: entry.received,
            subject: entry.subject,
        }
    }
}

/// `GET /api/v1/users/{name}/messages[?min=N&timeout=S]`: the maildrop
/// in order; with `min`, first waits until it holds `min` messages or
/// `timeout` seconds (default 0, at most 60) pass. See `mail_events` for
/// what wakes the wait; it asks the database only when woken.
pub(super) async fn list(
    shared: &Arc<Shared>,
    name: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Problem> {
    let min = match query_value(query, "min")? {
        None => None,
        Some(text) => Some(whole_number(&text).ok_or_else(|| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("min must be a whole number of messages, not {text:?}"),
            )
        })?),
    };
    let timeout = match query_value(query, "timeout")? {
        None => Duration::ZERO,
        Some(text) => match text.parse::<f64>() {
            Ok(seconds) if (0.0..=MAX_WAIT_SECONDS).contains(&seconds) => {
                Duration::from_secs_f64(seconds)
            }
            _ => {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("timeout must be 0 to {MAX_WAIT_SECONDS} seconds, not {text:?}"),
                ))
            }
        },
    };
    // The user is checked first: an unknown one never waits.
    let stored = user(shared, name).await?.1;
    let Some(min) = min else {
        return Ok(ok(&mailbox(shared, &stored).await?));
    };
    let deadline = Instant::now() + timeout;
    let messages = shared
        .mail_events
        .wait_until(
            &stored,
            deadline,
            || mailbox(shared, &stored),
            |messages| messages.len() as u64 >= min,
        )
        .await?;
    Ok(ok(&messages))
}

/// `POST /api/v1/users/{name}/messages`: the raw message, streamed into
/// the store as `poplite deliver` stores it; 201 with its object.
pub(super) async fn deliver(
    shared: &Arc<Shared>,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let refused = |reason| shared.metrics.refused(Via::Api, reason);
    let (parts, mut body) = request.into_parts();
    require_type(&parts.headers, "message/rfc822")?;
    let stored = match user(shared, name).await {
        Ok((_, stored)) => stored,
        Err(problem) => {
            refused(DeliveryRefusal::UnknownUser);
            return Err(problem);
        }
    };
    let limit = shared.config.max_message_size;
    let too_large = || {
        refused(DeliveryRefusal::TooLarge);
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("messages are limited to {limit} octets"),
        )
    };
    if declared_length(&parts.headers).is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let received = match take_in(shared, &mut body, limit).await {
        Ok(received) => received,
        Err(IntakeFailure::Problem(problem)) => return Err(problem),
        Err(IntakeFailure::Ingest(IngestError::Message(MessageError::TooLarge { .. }))) => {
            return Err(too_large())
        }
        Err(IntakeFailure::Ingest(IngestError::Message(MessageError::Empty))) => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the message is empty",
            ))
        }
        Err(IntakeFailure::Ingest(IngestError::Storage(error))) => {
            refused(DeliveryRefusal::Temporary);
            return Err(storage_problem(error));
        }
    };
    let size = received.size();
    let user = stored.clone();
    let published = blocking(shared, move |store| {
        let published = store.publish_received(&user, &[&received]);
        store.discard_received(received);
        published?.pop().ok_or(StorageError::ImportGone)
    })
    .await;
    let uid = match published {
        Ok(uid) => uid,
        Err(error) => {
            refused(match error {
                StorageError::OverQuota { .. } => DeliveryRefusal::OverQuota,
                StorageError::UnknownUser(_) => DeliveryRefusal::UnknownUser,
                _ => DeliveryRefusal::Temporary,
            });
            return Err(storage_problem(error));
        }
    };
    shared.metrics.delivered(Via::Api);
    shared.mail_events.delivered(&stored);
    log::info!("http: delivered {uid} to {stored}");
    // Read back as listed; a message already removed again (or a store
    // that fails now) still was delivered: 201 with what is known.
    let wanted = uid.clone();
    let listed = blocking(shared, move |store| store.mailbox_entry(&stored, &wanted))
        .await
        .ok()
        .flatten();
    let info = match listed {
        Some(entry) => MessageInfo::from(entry),
        None => MessageInfo {
            uid,
            size,
            received_at: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            subject: None,
        },
    };
    Ok(json(StatusCode::CREATED, &info))
}

enum IntakeFailure {
    Problem(Problem),
    Ingest(IngestError),
}

/// Reads the body frame by frame and hands it to the store a step at a
/// time, so a delivery never holds the message whole.
async fn take_in(
    shared: &Arc<Shared>,
    body: &mut Incoming,
    limit: u64,
) -> Result<crate::storage::Received, IntakeFailure> {
    let timeout = shared.config.http_read_timeout;
    let mut intake = Some(Intake::new("", limit));
    let mut step = Vec::new();
    loop {
        let data = match next_data(body, timeout).await {
            Ok(data) => data,
            Err(problem) => {
                if let Some(intake) = intake.take() {
                    blocking(shared, move |store| intake.discard(store)).await;
                }
                return Err(IntakeFailure::Problem(problem));
            }
        };
        let end = data.is_none();
        if let Some(data) = &data {
            step.extend_from_slice(data);
        }
        if step.len() >= INTAKE_STEP || (end && !step.is_empty()) {
            let (Some(mut taking), piece) = (intake.take(), std::mem::take(&mut step)) else {
                return Err(IntakeFailure::Ingest(StorageError::ImportGone.into()));
            };
            let (taking, written) = blocking(shared, move |store| {
                let written = taking.write(store, &piece);
                match written {
                    Ok(()) => (Some(taking), Ok(())),
                    Err(error) => {
                        taking.discard(store);
                        (None, Err(error))
                    }
                }
            })
            .await;
            written.map_err(IntakeFailure::Ingest)?;
            intake = taking;
        }
        if end {
            let Some(taking) = intake.take() else {
                return Err(IntakeFailure::Ingest(StorageError::ImportGone.into()));
            };
            return blocking(shared, move |store| taking.finish(store, false))
                .await
                .map_err(IntakeFailure::Ingest);
        }
    }
}

/// `GET /api/v1/users/{name}/messages/{uid}`: the message as RETR sends
/// it before dot-stuffing, streamed a stored chunk at a time.
pub(super) async fn get(
    shared: &Arc<Shared>,
    name: &str,
    uid: &str,
) -> Result<Response<Body>, Problem> {
    let (user_id, _) = user(shared, name).await?;
    let meta = find(shared, user_id, uid).await?;
    let store = Arc::clone(&shared.store);
    let (id, size) = (meta.id, meta.size);
    let chunks = smol::stream::unfold(0u64, move |offset| {
        let store = Arc::clone(&store);
        async move {
            if offset >= size {
                return None;
            }
            let len = (size - offset).min(BODY_CHUNK as u64);
            let read = smol::unblock(move || store.read_body(id, offset, len as usize)).await;
            Some(match read {
                Ok(bytes) => (Ok(Frame::data(Bytes::from(bytes))), offset + len),
                // The stream ends with an error: the client sees a short body.
                Err(error) => (Err(std::io::Error::other(error)), size),
            })
        }
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

/// `DELETE /api/v1/users/{name}/messages[/{uid}]`: one message or all,
/// under the maildrop lock (409 while a POP3 session holds it).
pub(super) async fn delete(
    shared: &Arc<Shared>,
    name: &str,
    uid: Option<&str>,
) -> Result<Response<Body>, Problem> {
    let uid = uid.map(str::to_string);
    let removed = with_maildrop(shared, name, move |store, user_id, _, lock| {
        let maildrop = store.maildrop(user_id)?;
        let ids: Vec<_> = match &uid {
            None => maildrop.iter().map(|m| m.id).collect(),
            Some(uid) => match maildrop.iter().find(|m| m.uid == *uid) {
                Some(meta) => vec![meta.id],
                None => return Ok(None),
            },
        };
        let removed = match lock.lease_session() {
            Some(lease) => store.delete_leased(user_id, lease, &ids)?,
            None => store.delete_messages(user_id, &ids)?,
        };
        Ok(Some(removed))
    })
    .await?
    .ok_or_else(no_such_message)?;
    shared.metrics.messages_deleted(removed as u64);
    Ok(no_content())
}

fn no_such_message() -> Problem {
    Problem::not_found("no message with that UID in this maildrop")
}

/// A user's id and stored name; 404 for none.
async fn user(shared: &Arc<Shared>, name: &str) -> Result<(UserId, String), Problem> {
    let name = name.to_string();
    blocking(shared, move |store| store.user(&name))
        .await
        .map_err(storage_problem)
}

/// The maildrop as the API lists it.
async fn mailbox(shared: &Arc<Shared>, stored: &str) -> Result<Vec<MessageInfo>, Problem> {
    let stored = stored.to_string();
    let entries = blocking(shared, move |store| store.mailbox(&stored))
        .await
        .map_err(storage_problem)?;
    Ok(entries.into_iter().map(MessageInfo::from).collect())
}

/// Message `uid` of the maildrop; 404 for none.
async fn find(shared: &Arc<Shared>, user_id: UserId, uid: &str) -> Result<MessageMeta, Problem> {
    let uid = uid.to_string();
    blocking(shared, move |store| store.maildrop(user_id))
        .await
        .map_err(storage_problem)?
        .into_iter()
        .find(|meta| meta.uid == uid)
        .ok_or_else(no_such_message)
}

/// A count as a query gives it: `3`, or `3.0` (JSON Schema's integers);
/// one past what a u64 holds is as good as infinite, and saturates.
fn whole_number(text: &str) -> Option<u64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.parse::<u64>().unwrap_or(u64::MAX));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
        .map(|f| f as u64)
}

#[cfg(test)]
mod tests {
    use super::whole_number;

    #[test]
    fn counts_are_whole_numbers_and_huge_ones_saturate() {
        assert_eq!(whole_number("3"), Some(3));
        assert_eq!(whole_number("3.0"), Some(3));
        assert_eq!(whole_number("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(whole_number("1e30"), Some(u64::MAX));
        for bad in ["", "-1", "1.5", "two", "NaN", "inf"] {
            assert_eq!(whole_number(bad), None, "{bad}");
        }
    }
}
