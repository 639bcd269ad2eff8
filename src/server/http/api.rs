//! `/api/v1`: which handler a path and method reach (405 with `Allow` for
//! a method the path does not take), and how storage errors read as
//! problems. Path segments are percent-decoded before they are matched,
//! so `bob%40example.org` names `bob@example.org`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::body::{full, json, Body};
use super::problem::Problem;
use super::request::decode;
use super::{admin, messages, users};
use crate::auth::MaildropLock;
use crate::server::Shared;
use crate::storage::{StorageError, Store, UserId};

/// The answer to a request under `/api/`, the token already checked.
pub(super) async fn answer(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let path = request.uri().path().to_owned();
    let not_found = || Problem::not_found(format!("no such endpoint: {path}"));
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Err(not_found());
    };
    let segments = rest.split('/').map(decode).collect::<Result<Vec<_>, _>>()?;
    if segments.iter().any(String::is_empty) {
        return Err(not_found());
    }
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    let is =
        |wanted: &Method| method == *wanted || (*wanted == Method::GET && method == Method::HEAD);
    match segments.as_slice() {
        ["openapi.json"] if is(&Method::GET) => Ok(admin::openapi()),
        ["openapi.json"] => Err(Problem::method_not_allowed("GET, HEAD")),
        ["users"] if is(&Method::GET) => users::list(shared).await,
        ["users"] if method == Method::POST => users::create(shared, request).await,
        ["users"] => Err(Problem::method_not_allowed("GET, HEAD, POST")),
        ["users", name] if is(&Method::GET) => users::get(shared, name).await,
        ["users", name] if method == Method::DELETE => users::delete(shared, name).await,
        ["users", _] => Err(Problem::method_not_allowed("GET, HEAD, DELETE")),
        ["users", name, "password"] if method == Method::PUT => {
            users::set_password(shared, name, request).await
        }
        ["users", _, "password"] => Err(Problem::method_not_allowed("PUT")),
        ["users", name, "messages"] if is(&Method::GET) => {
            messages::list(shared, name, request.uri().query()).await
        }
        ["users", name, "messages"] if method == Method::POST => {
            messages::deliver(shared, name, request).await
        }
        ["users", name, "messages"] if method == Method::DELETE => {
            messages::delete(shared, name, None).await
        }
        ["users", _, "messages"] => Err(Problem::method_not_allowed("GET, HEAD, POST, DELETE")),
        ["users", name, "messages", uid] if is(&Method::GET) => {
            messages::get(shared, name, uid).await
        }
        ["users", name, "messages", uid] if method == Method::DELETE => {
            messages::delete(shared, name, Some(uid)).await
        }
        ["users", _, "messages", _] => Err(Problem::method_not_allowed("GET, HEAD, DELETE")),
        ["sessions"] if is(&Method::GET) => Ok(admin::sessions(shared)),
        ["sessions"] => Err(Problem::method_not_allowed("GET, HEAD")),
        ["reset"] if method == Method::POST => admin::reset(shared).await,
        ["reset"] => Err(Problem::method_not_allowed("POST")),
        _ => Err(not_found()),
    }
}

/// Runs `work` on the store off the executor.
pub(super) async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&Store) -> T + Send + 'static,
) -> T {
    let store = Arc::clone(&shared.store);
    smol::unblock(move || work(&store)).await
}

/// Runs `work` on `name`'s maildrop off the executor, holding the lock a
/// POP3 login takes (and its lease, on a shared store) and giving it back
/// after: 404 for no such user, 409 while a POP3 session holds it, whose
/// snapshot must not change under it. `work` gets the user's id, stored
/// name and the lock.
pub(super) async fn with_maildrop<T: Send + 'static>(
    shared: &Arc<Shared>,
    name: &str,
    work: impl FnOnce(&Store, UserId, &str, &MaildropLock) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Problem> {
    let name = name.to_string();
    let session = shared.next_session_id.fetch_add(1, Ordering::Relaxed);
    let locks = shared.locks.clone();
    let done = blocking(shared, move |store| {
        let (user_id, stored) = store.user(&name)?;
        let Some(lock) = locks.lock(store, user_id, session)? else {
            return Ok(None);
        };
        let done = work(store, user_id, &stored, &lock);
        lock.release(store);
        done.map(Some)
    })
    .await
    .map_err(storage_problem)?;
    done.ok_or_else(in_use)
}

/// 409: a POP3 session holds the maildrop.
pub(super) fn in_use() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "a POP3 session holds this maildrop; try again once it ends",
    )
}

/// A storage error as the API answers it: the client's mistakes as 4xx,
/// a full maildrop as 507, the rest as 503 (temporary) or 500 (logged).
pub(super) fn storage_problem(error: StorageError) -> Problem {
    match error {
        StorageError::UnknownUser(name) => Problem::not_found(format!("no user {name}")),
        StorageError::MessageGone(_) => Problem::not_found("the message is gone"),
        StorageError::UserExists(name) => {
            Problem::new(StatusCode::CONFLICT, format!("user {name} exists already"))
        }
        error @ StorageError::InvalidUserName { .. } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
        }
        StorageError::OverQuota { user, reason } => Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("over {user}'s quota: {reason}"),
        ),
        error if error.is_temporary() => {
            log::warn!("http: {error}");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        error => Problem::internal(error.to_string()),
    }
}

/// 204, no body.
pub(super) fn no_content() -> Response<Body> {
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// 200 with `value` as JSON.
pub(super) fn ok(value: &impl serde::Serialize) -> Response<Body> {
    json(StatusCode::OK, value)
}
