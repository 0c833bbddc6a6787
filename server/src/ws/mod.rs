//! `GET /ws`: authenticate the upgrade request, register the socket, then hand it to
//! its [`session`].
//!
//! Authentication happens before any WebSocket resources exist: a bad token gets a plain
//! HTTP 401/403 with the JSON error body and no upgrade. The socket is registered before
//! the 101 answer and revocation is checked again after registering; see
//! [`crate::auth::revocation`] for why that closes the race with a concurrent logout.

pub mod session;

use std::net::SocketAddr;

use arena_protocol::{ErrorCode, SUBPROTOCOL};
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::extract::authenticate_request;
use crate::error::Error;
use crate::ids;
use crate::registry::{NewConnection, RegisterError};

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote_addr): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(state, remote_addr, &method, &headers, ws) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn accept(
    state: AppState,
    remote_addr: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    let (claims, _source) = authenticate_request(&state, method, headers, true)?;
    let ws = ws.map_err(|e| Error::invalid(format!("expected a WebSocket upgrade: {e}")))?;

    let (registration, outbound) = state
        .auth
        .registry
        .register(NewConnection {
            user_id: claims.sub.clone(),
            username: claims.username.clone(),
            session_id: claims.sid.clone(),
            remote_addr,
            connected_at: ids::now_ms(),
        })
        .map_err(|e| match e {
            RegisterError::TooManySockets => Error::RateLimited { retry_after: 1 },
            RegisterError::ServerFull => Error::new(
                ErrorCode::Unavailable,
                "the server holds as many sockets as it can",
            ),
            RegisterError::ShuttingDown => {
                Error::new(ErrorCode::Unavailable, "the server is shutting down")
            }
        })?;
    // Registered first, checked again now: a revocation that our first check missed
    // has either seen this registration (and will close it) or is visible here.
    if state.auth.revocations.is_revoked(&claims) {
        drop(registration);
        return Err(Error::new(
            ErrorCode::TokenRevoked,
            "the token has been revoked",
        ));
    }

    let limits = &state.config;
    let response = ws
        .protocols([SUBPROTOCOL])
        .read_buffer_size(limits.ws_read_buffer_bytes)
        .write_buffer_size(limits.ws_write_buffer_bytes)
        .max_write_buffer_size(limits.ws_max_write_buffer_bytes)
        .max_message_size(limits.max_ws_message_bytes)
        .max_frame_size(limits.max_ws_message_bytes)
        .on_upgrade(move |socket| session::run(state, socket, registration, outbound, claims));
    Ok(response)
}
