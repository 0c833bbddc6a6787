//! Arena wire protocol, version 1 (see `PROTOCOL.md`).
//!
//! This crate owns every type that crosses the wire: HTTP bodies, WebSocket messages,
//! error codes and close codes. It does no I/O, so the server, the clients and the
//! black-box tests all share exactly one definition of the contract.

pub mod close;
pub mod error;
pub mod http;
pub mod ws;

#[cfg(test)]
mod typescript;

pub use close::CloseCode;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};

/// The protocol version announced in the `welcome` frame.
pub const PROTOCOL_VERSION: u32 = 1;

/// The WebSocket subprotocol a browser offers (and the server echoes).
pub const SUBPROTOCOL: &str = "arena.v1";

/// Prefix of the second subprotocol entry that carries the access token.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "bearer.";

/// Name of the HttpOnly cookie that carries the access token for browsers.
pub const ACCESS_COOKIE: &str = "arena_access";

/// A user's role, as carried in the token and in [`http::User`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Player,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "player" => Some(Role::Player),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A serde_json error as a sentence for people: without the trailing
/// " at line 1 column 13", which means nothing to someone reading an API error.
pub fn describe_json_error(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    }
}
