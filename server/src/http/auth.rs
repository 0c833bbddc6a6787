//! `/auth/*`: register, login, refresh, logout, me.

use std::net::SocketAddr;

use arena_protocol::http::{
    Credentials, LogoutRequest, MeResponse, RefreshRequest, RegisterResponse, Session, User,
};
use arena_protocol::http::{SessionsResponse, NODES_ACKED_HEADER};
use arena_protocol::CloseCode;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::openapi::{
    AuthErrors, BodyErrors, Conflict, Forbidden, Internal, Jwks, NotFound, TooManyRequests,
    Unauthorized, Unavailable,
};
use super::{access_cookie, cleared_cookie, required, JsonBody};
use crate::auth::{AuthUser, ClientInfo, IssuedSession, Revoked};
use crate::error::Result;
use crate::state::AppState;

/// Create a player account.
///
/// The username is 3–32 of `[A-Za-z0-9_-]`, unique ignoring case and kept as typed; the
/// password 8–128 characters, stored only as an Argon2id hash. Counts against
/// `--auth-rate-limit` per client address (an IPv6 /64 is one), not per username.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    operation_id = "register",
    request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = RegisterResponse),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        BodyErrors,
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response> {
    let username = required(&body.username, "username")?;
    let password = required(&body.password, "password")?;
    state.check_register_rate(addr).await?;
    let user = state
        .auth
        .register(username, password, arena_protocol::Role::Player)
        .await?;
    Ok((StatusCode::CREATED, Json(RegisterResponse { user })).into_response())
}

/// Start a session: an access token (JWT) and a refresh token, and the `arena_access`
/// cookie.
///
/// A wrong user or a wrong password is the same 401 `invalid_credentials`; a banned user is
/// 403 `banned` (with `banned_until` in the body for a timed ban). The username matches
/// ignoring case. Limited per client address (an IPv6 /64 is one) and per (username,
/// address) by `--auth-rate-limit`, and per username from all addresses by
/// `--login-user-rate-limit`; a login carrying the `device_token` of an earlier
/// successful login of this username on this device is charged to that device instead
/// of the username, so others guessing cannot lock its owner out. The answer carries
/// the device's renewed `device_token`.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = Credentials,
    responses(
        (status = 200, description = "The new session; `Set-Cookie: arena_access=…`, `Cache-Control: no-store`", body = Session,
            links(
                ("Refresh" = (operation_id = "refresh", request_body = json!({"refresh_token": "$response.body#/refresh_token"}))),
                ("EndSession" = (operation_id = "end_user_session", parameters(("id" = "$response.body#/user/id"), ("session" = "$response.body#/session_id")))),
            )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        BodyErrors,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response> {
    let username = required(&body.username, "username")?;
    let password = required(&body.password, "password")?;
    // A known device is charged to its own limit instead of the username's.
    let device = state.known_device(username, body.device_token.as_deref());
    state
        .check_login_rate(addr, username, device.as_ref())
        .await
        .inspect_err(|_| crate::telemetry::login("rate_limited"))?;
    let client = ClientInfo {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        remote_addr: Some(addr.ip().to_string()),
    };
    let issued = state.auth.login(username, password, client).await;
    state.login_outcome(addr, username, device.as_ref(), &issued);
    crate::telemetry::login(match &issued {
        Ok(_) => "ok",
        Err(e) => match e.code() {
            arena_protocol::ErrorCode::InvalidCredentials => "invalid_credentials",
            arena_protocol::ErrorCode::Banned => "banned",
            // The password hashing queue was full (or the database out of reach).
            arena_protocol::ErrorCode::Unavailable => "unavailable",
            _ => "error",
        },
    });
    let mut issued = issued?;
    let name = &issued.session.user.username;
    issued.session.device_token = Some(state.device_token(name, device.as_ref()));
    Ok(session_response(&state, issued))
}

/// Rotate the refresh token: the same session, a new access and refresh token.
///
/// Every refresh token works once; a used one presented again revokes the whole session
/// (theft detection) and answers 401 `refresh_invalid`, except the immediately previous
/// token within `--refresh-grace-secs` of its rotation, which returns the same pair.
/// Limited to `--refresh-rate-limit` a minute per client address.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The session's new tokens; `Set-Cookie: arena_access=…`, `Cache-Control: no-store`", body = Session,
            links(
                ("Refresh" = (operation_id = "refresh", request_body = json!({"refresh_token": "$response.body#/refresh_token"}))),
                ("EndSession" = (operation_id = "end_user_session", parameters(("id" = "$response.body#/user/id"), ("session" = "$response.body#/session_id")))),
            )),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        BodyErrors,
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response> {
    let token = required(&body.refresh_token, "refresh_token")?;
    state.check_refresh_rate(addr)?;
    let issued = state.auth.refresh(token).await?;
    Ok(session_response(&state, issued))
}

/// End this session (or, with `all`, every session of the user), close its sockets with
/// 4001 and clear the cookie. The body is optional.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    operation_id = "logout",
    request_body = Option<LogoutRequest>,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked; the cookie cleared. In a cluster `Arena-Nodes-Acked: k/n`"),
        (status = 500, response = Internal),
        AuthErrors,
        BodyErrors,
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<LogoutRequest>,
) -> Result<Response> {
    let revoked = state
        .auth
        .logout(&user.claims, body.all.unwrap_or(false))
        .await?;
    let cookie = cleared_cookie(state.config.secure_cookies);
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie)],
        nodes_acked(&revoked),
    )
        .into_response())
}

/// The caller, their session and when the access token expires.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    operation_id = "me",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        AuthErrors,
    )
)]
pub async fn me(user: AuthUser) -> Json<MeResponse> {
    let c = user.claims;
    Json(MeResponse {
        user: User {
            id: c.sub,
            username: c.username,
            role: c.role,
        },
        session_id: c.sid,
        expires_at: c.exp * 1000,
    })
}

/// The caller's live sessions (not revoked, not past their refresh expiry), oldest first.
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "auth",
    operation_id = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller's sessions", body = SessionsResponse,
            links(("EndSession" = (operation_id = "end_own_session", parameters(("id" = "$response.body#/sessions/0/session_id")))))),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionsResponse>> {
    Ok(Json(SessionsResponse {
        sessions: state.auth.sessions(&user.claims).await?,
    }))
}

/// End one of the caller's own sessions (another device); its sockets close with 4001.
///
/// Another user's session is 404; ending an already ended session of one's own is 204
/// again; the current session may be ended too (the cookie is not cleared).
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "auth",
    operation_id = "end_own_session",
    params(("id" = String, Path, description = "A session id of the caller's")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Ended. In a cluster `Arena-Nodes-Acked: k/n`"),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn end_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path(session_id): Path<String>,
) -> Result<Response> {
    let revoked = state
        .auth
        .revoke_session(
            &user.claims.sub,
            &session_id,
            CloseCode::SessionRevoked,
            None,
        )
        .await?;
    Ok((StatusCode::NO_CONTENT, nodes_acked(&revoked)).into_response())
}

/// In a cluster, `Arena-Nodes-Acked: k/n` on a revocation's 204.
pub(super) fn nodes_acked(revoked: &Revoked) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(nodes) = revoked.nodes {
        if let Ok(value) = nodes.header_value().parse() {
            headers.insert(NODES_ACKED_HEADER, value);
        }
    }
    headers
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens (EdDSA).
///
/// Empty `keys` when every key is HMAC (the default `HS256`).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    operation_id = "jwks",
    responses((status = 200, description = "The JWKS (RFC 7517)", body = Jwks))
)]
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.auth.keys.jwks())
}

fn session_response(state: &AppState, issued: IssuedSession) -> Response {
    let max_age = issued.claims.exp - issued.claims.iat;
    let cookie = access_cookie(
        &issued.session.access_token,
        max_age,
        state.config.secure_cookies,
    );
    (
        [
            (header::SET_COOKIE, cookie),
            (
                header::CACHE_CONTROL,
                "no-store".parse().expect("static header"),
            ),
        ],
        Json(issued.session),
    )
        .into_response()
}
