//! The API's server-wide endpoints: the OpenAPI document, the open POP3
//! sessions, and the reset test suites call between tests.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use serde::Serialize;

use super::api::{blocking, no_content, ok, storage_problem};
use super::body::{with_type, Body};
use super::problem::Problem;
use crate::auth::{MaildropLock, MaildropLocks};
use crate::server::Shared;
use crate::storage::{StorageError, Store};

/// The API's description, `docs/openapi.json` as built in.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// `GET /api/v1/openapi.json`.
pub(super) fn openapi() -> Response<Body> {
    with_type(StatusCode::OK, "application/json", OPENAPI)
}

/// One open session as the API shows it.
#[derive(Debug, Serialize)]
struct Session {
    id: u64,
    peer: String,
    user: Option<String>,
    state: &'static str,
    since: String,
    tls: bool,
}

/// `GET /api/v1/sessions`: the open POP3 sessions, oldest first.
pub(super) fn sessions(shared: &Arc<Shared>) -> Response<Body> {
    let open: Vec<Session> = shared
        .sessions
        .list()
        .into_iter()
        .map(|info| Session {
            id: info.id,
            peer: info.peer.to_string(),
            user: info.user,
            state: info.state.as_str(),
            since: info.since.to_string(),
            tls: info.tls,
        })
        .collect();
    ok(&open)
}

/// `POST /api/v1/reset`: removes every user and their mail; only for a
/// store in memory or with `--http-allow-reset` (403 otherwise). While a
/// POP3 session holds any maildrop nothing is removed (409): its
/// snapshot must not change under it.
pub(super) async fn reset(shared: &Arc<Shared>) -> Result<Response<Body>, Problem> {
    if !shared.store.is_in_memory() && !shared.config.http_allow_reset {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "reset removes every user: allowed only for a store in memory or with \
             --http-allow-reset",
        ));
    }
    let locks = shared.locks.clone();
    let session = shared
        .next_session_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let outcome = blocking(shared, move |store| remove_everyone(store, &locks, session))
        .await
        .map_err(storage_problem)?;
    match outcome {
        Ok(messages) => {
            shared.metrics.messages_deleted(messages);
            log::info!("http: reset: every user removed");
            Ok(no_content())
        }
        Err(held) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a POP3 session holds {held}'s maildrop; nothing was removed"),
        )),
    }
}

/// Takes every maildrop's lock, then removes every user: how many
/// messages went, or the first user whose maildrop a session holds.
fn remove_everyone(
    store: &Store,
    locks: &MaildropLocks,
    session: u64,
) -> Result<Result<u64, String>, StorageError> {
    let mut held: Vec<(MaildropLock, String)> = Vec::new();
    let release = |held: Vec<(MaildropLock, String)>| {
        for (lock, _) in held {
            lock.release(store);
        }
    };
    for user in store.users()? {
        let taken = store
            .user(&user.name)
            .and_then(|(id, _)| locks.lock(store, id, session));
        match taken {
            Ok(Some(lock)) => held.push((lock, user.name)),
            Ok(None) => {
                release(held);
                return Ok(Err(user.name));
            }
            // Removed meanwhile: nothing to do for it.
            Err(StorageError::UnknownUser(_)) => {}
            Err(error) => {
                release(held);
                return Err(error);
            }
        }
    }
    let mut messages = 0;
    let mut outcome = Ok(());
    for (_, name) in &held {
        match store.delete_user(name) {
            Ok(removed) => messages += removed,
            Err(StorageError::UnknownUser(_)) => {}
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    release(held);
    outcome.map(|()| Ok(messages))
}
