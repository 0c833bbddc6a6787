//! `/auth/*`: register, login, refresh, logout, me.

use std::net::SocketAddr;

use arena_protocol::http::{
    Credentials, LogoutRequest, MeResponse, RefreshRequest, RegisterResponse, User,
};
use arena_protocol::http::{SessionsResponse, NODES_ACKED_HEADER};
use arena_protocol::CloseCode;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{access_cookie, cleared_cookie, required, JsonBody};
use crate::auth::{AuthUser, ClientInfo, IssuedSession, Revoked};
use crate::error::Result;
use crate::state::AppState;

pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response> {
    let username = required(&body.username, "username")?;
    let password = required(&body.password, "password")?;
    state.check_auth_rate(addr, username).await?;
    let user = state
        .auth
        .register(username, password, arena_protocol::Role::Player)
        .await?;
    Ok((StatusCode::CREATED, Json(RegisterResponse { user })).into_response())
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response> {
    let username = required(&body.username, "username")?;
    let password = required(&body.password, "password")?;
    state
        .check_auth_rate(addr, username)
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
    crate::telemetry::login(match &issued {
        Ok(_) => "ok",
        Err(e) => match e.code() {
            arena_protocol::ErrorCode::InvalidCredentials => "invalid_credentials",
            arena_protocol::ErrorCode::Banned => "banned",
            _ => "error",
        },
    });
    Ok(session_response(&state, issued?))
}

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

pub async fn sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionsResponse>> {
    Ok(Json(SessionsResponse {
        sessions: state.auth.sessions(&user.claims).await?,
    }))
}

/// End one of the caller's own sessions (another device); its sockets close with 4001.
pub async fn end_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path(session_id): Path<String>,
) -> Result<Response> {
    let revoked = state
        .auth
        .revoke_session(&user.claims.sub, &session_id, CloseCode::SessionRevoked, None)
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
