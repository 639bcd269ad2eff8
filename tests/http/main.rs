//! The HTTP API (docs/http.md, docs/openapi.json) over TCP: the real
//! server on 127.0.0.1:0, spoken to with a plain HTTP/1.1 client (so a
//! test can also send what no client library would). One file per area;
//! `client.rs` is the client and the servers. Schemathesis runs against
//! the binary in `tests/http_schema.rs` (the system tier).

mod access;
mod client;
#[path = "../common/mod.rs"]
mod common;
mod messages;
mod reset;
mod sessions;
mod storage;
mod users;
mod wait;

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};

pub use client::*;
use common::{TestServer, IO_TIMEOUT};
