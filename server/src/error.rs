//! The server's one error type. Every failure a handler can meet becomes an [`Error`],
//! and every [`Error`] becomes exactly one of the protocol's error codes with its HTTP
//! status, so no path can answer a client with an ad-hoc body or a 500 for bad input.

use arena_protocol::{ErrorBody, ErrorCode};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client mistake with the protocol code and a message for people.
    #[error("{code}: {message}")]
    Client { code: ErrorCode, message: String },

    /// Too many attempts; `retry_after` seconds until the next one may succeed.
    #[error("rate limited")]
    RateLimited { retry_after: u64 },

    /// A limit that says which one it is: `rate_limited` (429) or `unavailable` (503),
    /// with its own message and `Retry-After` seconds.
    #[error("{code}: {message}")]
    Limited {
        code: ErrorCode,
        message: String,
        retry_after: u64,
    },

    /// The account is banned (403 `banned`): until `until` (Unix ms), or for good.
    #[error("banned")]
    Banned { until: Option<i64> },

    /// The database failed. Logged in full, answered as a plain 500.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// Any other fault of the server itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Client {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(what: &str) -> Error {
        Error::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// How this error reads when the server cannot start: what went wrong, for the
    /// operator, without the "internal error" label a client's answer carries.
    pub fn startup_message(&self) -> String {
        match self {
            Error::Internal(message) => message.clone(),
            Error::Database(e) => format!("database: {e}"),
            other => other.to_string(),
        }
    }

    /// The protocol code this error answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Limited { code, .. } => *code,
            Error::Banned { .. } => ErrorCode::Banned,
            Error::Database(e) if database_unreachable(e) => ErrorCode::Unavailable,
            Error::Database(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        let message = match &self {
            Error::Client { message, .. } => message.clone(),
            Error::RateLimited { retry_after } => {
                format!("too many attempts; retry in {retry_after} s")
            }
            Error::Limited { message, .. } => message.clone(),
            Error::Banned { until } => banned_message(*until),
            Error::Database(e) if database_unreachable(e) => {
                tracing::warn!(error = %e, "database out of reach");
                "the database is out of reach; retry shortly".to_string()
            }
            Error::Database(e) => {
                tracing::error!(error = %e, "database error");
                "the server could not complete the request".to_string()
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "the server could not complete the request".to_string()
            }
        };
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = ErrorBody::new(code, message);
        if let Error::Banned { until } = &self {
            body.error.banned_until = *until;
        }
        let mut response = (status, Json(body)).into_response();
        let retry_after = match self {
            Error::RateLimited { retry_after } | Error::Limited { retry_after, .. } => {
                Some(retry_after.max(1))
            }
            _ if code == ErrorCode::Unavailable => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// Whether a database error means "cannot reach it now" (503, worth a retry) rather than
/// a fault in what we asked of it (500).
fn database_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// "this account is banned until Wed, 02 Dec 2026 15:54:24 GMT": a date people read (the
/// body's `banned_until` carries the instant for a client to show in local time).
pub(crate) fn banned_message(until: Option<i64>) -> String {
    match until.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => {
            let end = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            format!(
                "this account is banned until {}",
                httpdate::fmt_http_date(end)
            )
        }
        None => "this account is banned permanently".to_string(),
    }
}
