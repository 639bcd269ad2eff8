//! The HTTP listener: the API, health checks and `/metrics`. hyper reads
//! and writes HTTP/1.1 on each connection (no parser of ours); `routes`
//! decides the answer, `problem` shapes the errors (RFC 9457), `body`
//! builds bodies. Like the other listeners it has its own connection
//! cap, read timeouts and a graceful end at shutdown. Under `/api/v1`,
//! `api` routes to `users`, `messages` and `admin`; `request` reads
//! bodies, queries and paths.

mod admin;
mod api;
mod body;
mod messages;
mod problem;
mod request;
mod routes;
mod users;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use smol::channel::Receiver;
use smol::future;
use smol::net::{TcpListener, TcpStream};
use smol_hyper::rt::{FuturesIo, SmolTimer};

use super::accept::{ConnectionSlot, ConnectionTask, Protocol, Running};
use super::lifecycle::best_effort;
use super::Shared;

/// Largest request head (request line and headers) read; hyper's floor.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// How long a request in flight at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts HTTP connections until the server stops.
pub(super) async fn accept_loop(listener: TcpListener, running: Running) {
    let (shared, stop) = (&running.shared, &running.stop);
    let admit = |(stream, peer): (TcpStream, SocketAddr)| -> ConnectionTask {
        let (slot, active) = ConnectionSlot::take(shared, Protocol::Http);
        let shared = Arc::clone(shared);
        let stop = stop.clone();
        Box::pin(async move {
            let over_limit = active >= shared.config.max_http_connections;
            if over_limit {
                log::warn!("http {peer}: over --max-http-connections, answering 503");
            }
            serve(stream, shared, stop, over_limit).await;
            drop(slot);
        })
    };
    running
        .accept_until_stopped(|| listener.accept(), admit)
        .await;
}

/// Serves one connection until the client closes it, a read times out,
/// or the server stops (then the request in flight may finish).
async fn serve(stream: TcpStream, shared: Arc<Shared>, stop: Receiver<()>, over_limit: bool) {
    let _ = stream.set_nodelay(true);
    let read_timeout = shared.config.http_read_timeout;
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move {
            let response = match over_limit {
                true => problem::Problem::busy().into_response(),
                false => routes::answer(&shared, request).await,
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(SmolTimer::new())
        .header_read_timeout(read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(!over_limit);
    let mut connection = pin!(builder.serve_connection(FuturesIo::new(stream), service));
    let finished = future::or(async { Some(connection.as_mut().await) }, async {
        let _ = stop.recv().await;
        None
    })
    .await;
    match finished {
        Some(Err(error)) => log::debug!("http connection ended: {error}"),
        Some(Ok(())) => {}
        None => {
            connection.as_mut().graceful_shutdown();
            best_effort(SHUTDOWN_GRACE, async {
                let _ = connection.await;
            })
            .await;
        }
    }
}
