//! `/api/v1/users…`: listing, adding, showing and removing users, and
//! setting a password. Passwords are hashed as `poplite user add` hashes
//! them (cheap parameters for a store in memory, as `serve --user` does),
//! off the executor, a few at a time.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use smol::lock::Semaphore;

use super::api::{blocking, no_content, ok, storage_problem, with_maildrop};
use super::body::{json, Body};
use super::problem::Problem;
use super::request::json_body;
use crate::auth::{self, Argon2Params};
use crate::server::Shared;
use crate::storage::{validate_user_name, Quota, StorageError, UserSummary};

/// Hashes run at once for the API: each takes a core and ~19 MiB, and a
/// burst of requests must not take every core from the sessions.
static HASHING: Semaphore = Semaphore::new(2);

/// A user as the API shows one.
#[derive(Debug, Serialize)]
struct User {
    name: String,
    messages: u64,
    bytes: u64,
    apop: bool,
    quota_messages: Option<u64>,
    quota_bytes: Option<u64>,
}

impl From<UserSummary> for User {
    fn from(user: UserSummary) -> User {
        User {
            name: user.name,
            messages: user.messages,
            bytes: user.bytes,
            apop: user.apop,
            quota_messages: user.quota.messages,
            quota_bytes: user.quota.bytes,
        }
    }
}

/// `POST /api/v1/users`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    apop: bool,
    /// Numbers as JSON has them: `5.0` is a whole number too.
    #[serde(default)]
    quota_messages: Option<serde_json::Number>,
    #[serde(default)]
    quota_bytes: Option<serde_json::Number>,
}

/// `PUT /api/v1/users/{name}/password`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
    /// Keep an APOP secret (the new password); without it, as with
    /// `user passwd`, the old secret goes.
    #[serde(default)]
    apop: bool,
}

/// `GET /api/v1/users`.
pub(super) async fn list(shared: &Arc<Shared>) -> Result<Response<Body>, Problem> {
    let users = blocking(shared, |store| store.users())
        .await
        .map_err(storage_problem)?;
    Ok(ok(&users.into_iter().map(User::from).collect::<Vec<_>>()))
}

/// `GET /api/v1/users/{name}`.
pub(super) async fn get(shared: &Arc<Shared>, name: &str) -> Result<Response<Body>, Problem> {
    Ok(ok(&User::from(summary(shared, name).await?)))
}

/// One user's summary, by any case of the name; 404 for none.
async fn summary(shared: &Arc<Shared>, name: &str) -> Result<UserSummary, Problem> {
    let name = name.to_string();
    blocking(shared, move |store| {
        let (_, stored) = store.user(&name)?;
        store
            .users()?
            .into_iter()
            .find(|user| user.name == stored)
            .ok_or(StorageError::UnknownUser(name))
    })
    .await
    .map_err(storage_problem)
}

/// `POST /api/v1/users`: 201 with the user; 409 for a taken name, 422
/// for an invalid name, an empty password or a quota past 2^63-1.
pub(super) async fn create(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let (parts, mut body) = request.into_parts();
    let timeout = shared.config.http_read_timeout;
    let new: NewUser = json_body(&parts.headers, &mut body, timeout).await?;
    validate_user_name(&new.name).map_err(storage_problem)?;
    let quota = Quota {
        messages: limit(new.quota_messages.as_ref(), "quota_messages")?,
        bytes: limit(new.quota_bytes.as_ref(), "quota_bytes")?,
    };
    let name = new.name.clone();
    // Checked before hashing, so a taken name costs no argon2; the insert
    // still refuses one taken meanwhile.
    let existing = blocking(shared, move |store| store.credentials(&name))
        .await
        .map_err(storage_problem)?;
    if let Some(existing) = existing {
        return Err(storage_problem(StorageError::UserExists(existing.name)));
    }
    let hash = hash(shared, &new.password).await?;
    let user = new.name.clone();
    let apop = new.apop.then(|| new.password.clone());
    blocking(shared, move |store| {
        store.add_user_with_quota(&user, &hash, apop.as_deref(), quota)
    })
    .await
    .map_err(storage_problem)?;
    let created = User {
        name: new.name,
        messages: 0,
        bytes: 0,
        apop: new.apop,
        quota_messages: quota.messages,
        quota_bytes: quota.bytes,
    };
    Ok(json(StatusCode::CREATED, &created))
}

/// `DELETE /api/v1/users/{name}`: the user and their mail; 409 while a
/// POP3 session holds the maildrop.
pub(super) async fn delete(shared: &Arc<Shared>, name: &str) -> Result<Response<Body>, Problem> {
    let messages = with_maildrop(shared, name, |store, _, stored, _| {
        store.delete_user(stored)
    })
    .await?;
    shared.metrics.messages_deleted(messages);
    Ok(no_content())
}

/// `PUT /api/v1/users/{name}/password`: 204; 422 for an empty password.
pub(super) async fn set_password(
    shared: &Arc<Shared>,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let (parts, mut body) = request.into_parts();
    let timeout = shared.config.http_read_timeout;
    let new: NewPassword = json_body(&parts.headers, &mut body, timeout).await?;
    let lookup = name.to_string();
    let (_, stored) = blocking(shared, move |store| store.user(&lookup))
        .await
        .map_err(storage_problem)?;
    let hash = hash(shared, &new.password).await?;
    let apop = new.apop.then_some(new.password);
    blocking(shared, move |store| {
        store.set_password(&stored, &hash, apop.as_deref())
    })
    .await
    .map_err(storage_problem)?;
    Ok(no_content())
}

/// A quota limit as given: a whole number from 0 to what the database
/// holds (2^63-1), or none.
fn limit(value: Option<&serde_json::Number>, field: &str) -> Result<Option<u64>, Problem> {
    let Some(number) = value else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..9.2e18).contains(f))
            .map(|f| f as u64)
    });
    match whole {
        Some(whole) if i64::try_from(whole).is_ok() => Ok(Some(whole)),
        _ => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{field} must be a whole number from 0 to {}, or null",
                i64::MAX
            ),
        )),
    }
}

/// The argon2 hash of `password` (422 when empty), on a blocking thread.
async fn hash(shared: &Arc<Shared>, password: &str) -> Result<String, Problem> {
    if password.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty passwords are not allowed",
        ));
    }
    let params = match shared.store.is_in_memory() {
        true => Argon2Params::CHEAP,
        false => Argon2Params::default(),
    };
    let password = password.to_string();
    let _turn = HASHING.acquire().await;
    smol::unblock(move || auth::hash_password(password.as_bytes(), params))
        .await
        .map_err(|error| Problem::internal(format!("cannot hash the password: {error}")))
}
