//! Which answer a request gets: the open paths (`/healthz`, `/readyz`,
//! `/metrics`), then `/api/`, behind the bearer token when one is set.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::body::{json, with_type, Body};
use super::problem::Problem;
use crate::metrics::Format;
use crate::server::Shared;

/// How long `/readyz` waits for the store to answer before saying no.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer to `request`.
pub(super) async fn answer(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let answered = match path.as_str() {
        "/healthz" => only_get(&method).map(|()| health()),
        "/readyz" => match only_get(&method) {
            Ok(()) => Ok(readiness(shared).await),
            Err(problem) => Err(problem),
        },
        "/metrics" => match only_get(&method) {
            Ok(()) => Ok(metrics(shared, &request).await),
            Err(problem) => Err(problem),
        },
        _ if path.starts_with("/api/") => match authorized(shared, &request) {
            Ok(()) => super::api::answer(shared, request).await,
            Err(problem) => Err(problem),
        },
        _ => Err(Problem::not_found(format!("no such endpoint: {path}"))),
    };
    answered.unwrap_or_else(Problem::into_response)
}

/// Paths that only answer GET (and HEAD, which hyper answers from GET's).
fn only_get(method: &Method) -> Result<(), Problem> {
    match *method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(Problem::method_not_allowed("GET, HEAD")),
    }
}

/// `/healthz`: the process serves HTTP.
fn health() -> Response<Body> {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// `/readyz`: every listener is bound (they are before this one runs)
/// and the store answers within [`READY_TIMEOUT`].
async fn readiness(shared: &Arc<Shared>) -> Response<Body> {
    let store = Arc::clone(&shared.store);
    let ping = smol::unblock(move || store.ping());
    let answer = smol::future::or(async { Some(ping.await) }, async {
        smol::Timer::after(READY_TIMEOUT).await;
        None
    })
    .await;
    match answer {
        Some(Ok(())) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Some(Err(error)) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {error}"),
        )
        .into_response(),
        None => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store did not answer within {READY_TIMEOUT:?}"),
        )
        .into_response(),
    }
}

/// `/metrics`: Prometheus text, or OpenMetrics when the scraper asks.
/// The gauges read at scrape time are brought up to date first: the
/// back-off table's size now, the store's totals when the cache is stale.
async fn metrics(shared: &Arc<Shared>, request: &Request<Incoming>) -> Response<Body> {
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let held_back = shared.failed_logins.held_back(std::time::Instant::now());
    shared.metrics.set_backoff_addresses(held_back);
    let every = shared.config.store_totals_interval;
    shared
        .store_totals
        .refresh(&shared.store, &shared.metrics, every)
        .await;
    with_type(
        StatusCode::OK,
        format.content_type(),
        shared.metrics.render(format),
    )
}

/// With a token configured, `/api/` needs `Authorization: Bearer TOKEN`,
/// compared in constant time.
fn authorized(shared: &Shared, request: &Request<Incoming>) -> Result<(), Problem> {
    let Some(token) = &shared.config.http_token else {
        return Ok(());
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let denied = |detail: &str| {
        Problem::new(StatusCode::UNAUTHORIZED, detail).with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"poplite\""),
        )
    };
    match given {
        Some(given) if bool::from(given.ct_eq(token.expose())) => Ok(()),
        Some(_) => Err(denied("the bearer token is not this server's")),
        None => Err(denied("this API needs Authorization: Bearer TOKEN")),
    }
}
