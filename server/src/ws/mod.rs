//! `GET /ws`: authenticate the upgrade request, register the socket, then hand it to
//! its [`session`].
//!
//! Authentication happens before any WebSocket resources exist: a bad token gets a plain
//! HTTP 401/403 with the JSON error body and no upgrade. The socket is admitted
//! (registered, then revocation checked again) before the 101 answer; see
//! [`crate::auth::admission`] for why that closes the race with a concurrent logout.

pub mod session;

use std::net::SocketAddr;

use arena_protocol::SUBPROTOCOL;
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};

use crate::auth::extract::authenticate_request;
use crate::error::Error;
use crate::state::AppState;

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote_addr): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(state, remote_addr, &method, &headers, ws).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn accept(
    state: AppState,
    remote_addr: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    let (claims, _source) = authenticate_request(&state, method, headers, true)?;
    let ws = ws.map_err(|e| Error::invalid(format!("expected a WebSocket upgrade: {e}")))?;

    // Registered, then checked again: see `auth::admission` for the race this closes.
    let (registration, outbound) = state.auth.admit(&claims, remote_addr)?;
    // Dropped with the registration if the deployment-wide cap refuses the socket.
    let lease = state.auth.count_socket(&claims.sub).await?;

    let limits = &state.config;
    let response = ws
        .protocols([SUBPROTOCOL])
        .read_buffer_size(limits.ws_read_buffer_bytes)
        .write_buffer_size(limits.ws_write_buffer_bytes)
        .max_write_buffer_size(limits.ws_max_write_buffer_bytes)
        .max_message_size(limits.max_ws_message_bytes)
        .max_frame_size(limits.max_ws_message_bytes)
        .on_upgrade(move |socket| {
            session::run(state, socket, registration, outbound, claims, lease)
        });
    Ok(response)
}
