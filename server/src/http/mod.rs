//! The HTTP surface: the router, and the pieces every resource shares (a JSON body
//! extractor whose errors name the field, the access cookie). One file per resource;
//! handlers stay thin and call into [`crate::auth::Auth`] and [`crate::game::Rooms`].

mod admin;
mod auth;
mod health;
mod lobby;

use std::path::PathBuf;

use arena_protocol::ACCESS_COOKIE;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

use crate::app::AppState;
use crate::error::Error;

pub fn router(state: AppState) -> Router {
    let web_dir = web_dir(state.config.web_dir.clone());
    let not_found = axum::routing::any(|| async { Error::not_found("page") });
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/sessions", get(auth::sessions))
        .route("/auth/sessions/{id}", delete(auth::end_session))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/lobby/rooms", get(lobby::list).post(lobby::create))
        .route("/lobby/rooms/{id}", get(lobby::detail))
        .route("/admin/connections", get(admin::connections))
        .route("/admin/users/{id}/kick", post(admin::kick))
        .route("/admin/users/{id}/ban", post(admin::ban).delete(admin::unban))
        .route("/admin/users/{id}/role", put(admin::set_role))
        .route("/ws", get(crate::ws::upgrade))
        .merge(if state.config.metrics_listen.is_none() { metrics_router() } else { Router::new() })
        .fallback_service(ServeDir::new(web_dir).not_found_service(not_found))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .layer(
            // Log the path only: a query string may hold what a careless client put there.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().latency_unit(LatencyUnit::Micros)),
        )
        .with_state(state)
}

/// `GET /metrics`, on the main address or on `--metrics-listen`.
pub fn metrics_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                crate::telemetry::render(),
            )
        }),
    )
}

/// The browser client's directory: configured, or `client-demo/web` from the working
/// directory, or from the source tree this binary was built in.
fn web_dir(configured: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = configured {
        return dir;
    }
    let local = PathBuf::from("client-demo/web");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../client-demo/web"))
}

/// A JSON request body. An empty body reads as `T::default()`, so optional bodies (logout)
/// and missing fields are handled alike; a malformed body is a 400 naming the field, an
/// oversized one a 413.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(
                    arena_protocol::ErrorCode::PayloadTooLarge,
                    "the request body is too large",
                )
            } else {
                Error::invalid("the request body could not be read")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(T::default()));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let syntax = inner.is_syntax() || inner.is_eof();
                let message = arena_protocol::describe_json_error(&inner);
                if syntax || path == "." {
                    Error::invalid(format!("malformed JSON body: {message}"))
                } else {
                    Error::invalid(format!("field `{path}` is invalid: {message}"))
                }
            })
    }
}

/// Read a required string field.
pub fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, Error> {
    value
        .as_deref()
        .ok_or_else(|| Error::invalid(format!("field `{field}` is required")))
}

/// `Set-Cookie` for the access token (HttpOnly, SameSite=Strict, Path=/).
pub fn access_cookie(token: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let cookie = cookie::Cookie::build((ACCESS_COOKIE, token))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that clears the access cookie.
pub fn cleared_cookie(secure: bool) -> HeaderValue {
    access_cookie("", 0, secure)
}
