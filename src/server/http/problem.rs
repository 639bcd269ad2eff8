//! Errors as RFC 9457 problem details: `application/problem+json` with
//! `type`, `title`, `status` and `detail`. The type is `about:blank`, so
//! the title is the status's own phrase and the detail says what went
//! wrong with this request.

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::{with_type, Body};

/// A problem to answer with.
#[derive(Debug)]
pub(super) struct Problem {
    status: StatusCode,
    detail: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `status`, explained by `detail`.
    pub(super) fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// 404 for a path that names nothing.
    pub(super) fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 405, with the methods the path does allow.
    pub(super) fn method_not_allowed(allowed: &'static str) -> Problem {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("this path allows {allowed}"),
        )
        .with_header(hyper::header::ALLOW, HeaderValue::from_static(allowed))
    }

    /// 500: a fault of ours, logged.
    pub(super) fn internal(detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        log::error!("http: {detail}");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 503 for a connection over the HTTP connection limit.
    pub(super) fn busy() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many HTTP connections; try again shortly",
        )
        .with_header(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// The problem with a header added (`Allow`, `WWW-Authenticate`…).
    pub(super) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Problem {
        self.headers.push((name, value));
        self
    }

    /// The response: `application/problem+json`.
    pub(super) fn into_response(self) -> Response<Body> {
        let document = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = with_type(
            self.status,
            "application/problem+json",
            document.to_string(),
        );
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
