//! The HTTP surface: the router, and the pieces every resource shares (a JSON body
//! extractor whose errors name the field, the access cookie). One file per resource;
//! handlers stay thin and call into [`crate::auth::Auth`] and [`crate::game::Rooms`].
//!
//! Promises: every error answer, the framework's own included, has the protocol's JSON
//! body ([`json_errors`]); a request body is read as JSON only when it says it is JSON;
//! every answer carries the security headers of [`SECURITY_HEADERS`].

mod admin;
mod auth;
mod health;
mod lobby;
pub mod openapi;

use std::path::PathBuf;

use arena_protocol::{ErrorBody, ErrorCode, ACCESS_COOKIE};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

use crate::error::Error;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let web_dir = web_dir(state.config.web_dir.clone());
    let not_found = axum::routing::any(|| async { Error::not_found("page") });
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(openapi::openapi_json))
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
        .route("/admin/overview", get(admin::overview))
        .route("/admin/connections", get(admin::connections))
        .route("/admin/users", get(admin::users))
        .route("/admin/users/{id}", get(admin::user))
        .route("/admin/users/{id}/sessions/{session}", delete(admin::end_session))
        .route("/admin/bans", get(admin::bans))
        .route("/admin/audit", get(admin::audit_log))
        .route("/admin/nodes", get(admin::nodes))
        .route("/admin/users/{id}/kick", post(admin::kick))
        .route("/admin/users/{id}/ban", post(admin::ban).delete(admin::unban))
        .route("/admin/users/{id}/role", put(admin::set_role))
        .route("/ws", get(crate::ws::upgrade))
        .merge(if state.config.metrics_listen.is_none() { metrics_router() } else { Router::new() })
        .fallback_service(ServeDir::new(web_dir).not_found_service(not_found))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(security_headers))
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

/// What every answer carries. The pages load their scripts, styles and icon from this
/// origin only and talk to it only (its WebSocket included: `'self'` covers `ws:` and
/// `wss:` of the same host), so an injected script or style has nowhere to come from;
/// no page may be framed (clickjacking of the admin console), no answer is sniffed into
/// another type, and no URL leaks in a `Referer`. A page that needs inline code or an
/// outside host must change this list, on purpose.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Middleware: add [`SECURITY_HEADERS`] where a handler did not set its own.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// `GET /metrics`, on the main address or on `--metrics-listen`.
pub fn metrics_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(json_errors))
}

/// Prometheus metrics; every series name starts with `arena_`.
///
/// No authentication. Served on the main address unless `--metrics-listen` binds it to
/// another one (and then only there).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses((status = 200, description = "The metrics, in Prometheus' text format", content_type = "text/plain", body = String))
)]
async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render(),
    )
}

/// The longest framework error text kept as the JSON message.
const MAX_FRAMEWORK_MESSAGE: usize = 1024;

/// Middleware: an error answer that is not JSON yet (axum's 405 has an empty body, a
/// path or extractor rejection a line of text, ServeDir's errors nothing) becomes the
/// protocol's `{"error": {"code", "message"}}` with the same status and headers. The
/// text of a client error becomes the message: it says what was wrong.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_FRAMEWORK_MESSAGE)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && status.is_client_error());
    let code = code_for_status(status);
    let message = text.unwrap_or_else(|| match code {
        ErrorCode::MethodNotAllowed => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("this method is not allowed here (allowed: {allowed})")
        }
        ErrorCode::NotFound => "not found".to_string(),
        ErrorCode::Internal => "the server could not complete the request".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase(),
    });
    // Serializing two strings cannot fail; the fallback keeps this total anyway.
    let json = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json))
}

/// The protocol code for an error status the framework chose.
fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::TokenMissing,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    }
}

/// `Content-Type: application/json`, any parameters (`charset`), any case.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION && m.subtype() == mime::JSON && m.suffix().is_none()
        })
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
/// and missing fields are handled alike; a body that is not a JSON object, or a malformed
/// one, is a 400 (naming the field where there is one), an
/// oversized one a 413, and a non-empty body not sent as `application/json` a 415: a
/// cross-site HTML form can post `text/plain` without a CORS preflight, but not JSON.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                Error::invalid("the request body could not be read")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(T::default()));
        }
        if !json {
            return Err(Error::new(
                ErrorCode::UnsupportedMediaType,
                "a request body must be sent with Content-Type: application/json",
            ));
        }
        // serde's derived structs also decode from a JSON array (`[null, null]` would be a
        // ban's reason and duration); every request body here is an object.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(Error::invalid(
                "malformed JSON body: expected a JSON object",
            ));
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

/// A JSON number that is a whole number, as JSON Schema's `integer` means it: `16`, and
/// `16.0` too (the fuzzer sent a ban's `duration_secs` as `1739.0`). `None` for anything
/// else (a fraction, a negative number, a string, `true`); floats only up to 2^53, where
/// they are still exact.
pub fn whole_number(value: &serde_json::Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f)).then_some(f as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;Charset=UTF-8",
        ] {
            assert!(is_json(&with_type(yes)), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-patch+json",
            "text/json",
            "",
        ] {
            assert!(!is_json(&with_type(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    async fn ban_body(content_type: &str, body: &'static str) -> Result<BanBody, Error> {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        JsonBody::<BanBody>::from_request(req, &())
            .await
            .map(|b| b.0)
    }

    type BanBody = arena_protocol::http::BanRequest;

    #[test]
    fn whole_numbers() {
        use serde_json::json;
        assert_eq!(whole_number(&json!(16)), Some(16));
        assert_eq!(whole_number(&json!(1739.0)), Some(1739));
        assert_eq!(whole_number(&json!(0)), Some(0));
        assert_eq!(whole_number(&json!(u64::MAX)), Some(u64::MAX));
        for not_whole in [
            json!(1.5),
            json!(-1),
            json!(-2.0),
            json!(1e300),
            json!("16"),
            json!(true),
            json!(null),
            json!([16]),
        ] {
            assert_eq!(whole_number(&not_whole), None, "{not_whole}");
        }
    }

    #[tokio::test]
    async fn bodies_must_be_json_objects() {
        let json = "application/json";
        assert!(ban_body(json, "").await.is_ok());
        assert!(ban_body(json, " \n").await.is_ok());
        assert!(ban_body(json, r#"{"reason": "spam"}"#).await.is_ok());
        assert!(ban_body(json, r#" {"duration_secs": null}"#).await.is_ok());
        // serde would read these as the struct's fields in order; the fuzzer found a ban
        // accepted from `[null, null]`.
        for not_an_object in ["[null, null]", r#"["spam", 60]"#, "null", "1", r#""x""#] {
            let e = ban_body(json, not_an_object).await.unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRequest, "{not_an_object}");
            assert!(e.to_string().contains("expected a JSON object"), "{e}");
        }
        let e = ban_body("text/plain", "[1]").await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::UnsupportedMediaType);
    }

    #[tokio::test]
    async fn framework_errors_become_json() {
        let mut empty_405 = Response::new(Body::empty());
        *empty_405.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        empty_405
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        let converted = json_errors(empty_405).await;
        assert_eq!(converted.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(converted.headers().contains_key(header::ALLOW));
        let body = axum::body::to_bytes(converted.into_body(), 4096)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, ErrorCode::MethodNotAllowed);
        assert!(
            body.error.message.contains("GET,HEAD"),
            "{}",
            body.error.message
        );

        let mut text_400 = Response::new(Body::from("Invalid URL: bad `id`"));
        *text_400.status_mut() = StatusCode::BAD_REQUEST;
        let body = axum::body::to_bytes(json_errors(text_400).await.into_body(), 4096)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, ErrorCode::InvalidRequest);
        assert_eq!(body.error.message, "Invalid URL: bad `id`");

        // A server fault's text stays in the server.
        let mut text_500 = Response::new(Body::from("/srv/secret/path: permission denied"));
        *text_500.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        let body = axum::body::to_bytes(json_errors(text_500).await.into_body(), 4096)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));

        // Success and JSON errors are left alone.
        let ok = json_errors(Response::new(Body::from("hello"))).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
