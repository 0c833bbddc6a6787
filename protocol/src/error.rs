//! Error codes shared by HTTP answers and WebSocket `error` frames.

use serde::{Deserialize, Serialize};

/// Every error code the server can answer with. HTTP codes carry their status
/// ([`ErrorCode::http_status`]); the WebSocket-only codes answer in an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400
    InvalidRequest,
    // 401
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    TokenRevoked,
    InvalidCredentials,
    RefreshInvalid,
    // 403
    Forbidden,
    Banned,
    OriginForbidden,
    // 404
    NotFound,
    /// 405: the path exists but not with this method. An extension of PROTOCOL.md's
    /// table, which lists no 405 code; the answer also carries an `Allow` header.
    MethodNotAllowed,
    /// 408: the request (its body, most often) did not arrive within the server's
    /// deadline. An extension of PROTOCOL.md's table.
    RequestTimeout,
    // 409
    UsernameTaken,
    // 413
    PayloadTooLarge,
    // 415
    UnsupportedMediaType,
    // 429
    RateLimited,
    // 500/503: never for bad input; a fault of the server or its database.
    Internal,
    Unavailable,
    // WebSocket `error` frames.
    /// The frame was not valid JSON (or not a JSON object).
    InvalidJson,
    /// The `type` field is missing or names no known message.
    UnknownType,
    RoomNotFound,
    RoomFull,
    NotInRoom,
}

impl ErrorCode {
    /// Every code, in declaration order (for descriptions that list them, such as the
    /// server's OpenAPI document). The test `all_lists_every_code_once` keeps it whole.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::InvalidRequest,
        ErrorCode::TokenMissing,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TokenRevoked,
        ErrorCode::InvalidCredentials,
        ErrorCode::RefreshInvalid,
        ErrorCode::Forbidden,
        ErrorCode::Banned,
        ErrorCode::OriginForbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::UsernameTaken,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::RoomNotFound,
        ErrorCode::RoomFull,
        ErrorCode::NotInRoom,
    ];

    /// The HTTP status this code answers with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest | InvalidJson | UnknownType => 400,
            TokenMissing | TokenInvalid | TokenExpired | TokenRevoked | InvalidCredentials
            | RefreshInvalid => 401,
            Forbidden | Banned | OriginForbidden => 403,
            NotFound | RoomNotFound | NotInRoom => 404,
            MethodNotAllowed => 405,
            RequestTimeout => 408,
            UsernameTaken | RoomFull => 409,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            RateLimited => 429,
            Internal => 500,
            Unavailable => 503,
        }
    }

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            TokenMissing => "token_missing",
            TokenInvalid => "token_invalid",
            TokenExpired => "token_expired",
            TokenRevoked => "token_revoked",
            InvalidCredentials => "invalid_credentials",
            RefreshInvalid => "refresh_invalid",
            Forbidden => "forbidden",
            Banned => "banned",
            OriginForbidden => "origin_forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            RequestTimeout => "request_timeout",
            UsernameTaken => "username_taken",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            RateLimited => "rate_limited",
            Internal => "internal",
            Unavailable => "unavailable",
            InvalidJson => "invalid_json",
            UnknownType => "unknown_type",
            RoomNotFound => "room_not_found",
            RoomFull => "room_full",
            NotInRoom => "not_in_room",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": {"code", "message"}}`, the body of every HTTP error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// With `banned`: when the ban ends (Unix ms), absent for a permanent ban, so a client
    /// can show it in the player's own time (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<i64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                banned_until: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive on purpose: a new code does not compile here until it has a place in
    /// [`ErrorCode::ALL`].
    #[test]
    fn all_lists_every_code_once() {
        use ErrorCode::*;
        let position = |code: ErrorCode| match code {
            InvalidRequest => 0,
            TokenMissing => 1,
            TokenInvalid => 2,
            TokenExpired => 3,
            TokenRevoked => 4,
            InvalidCredentials => 5,
            RefreshInvalid => 6,
            Forbidden => 7,
            Banned => 8,
            OriginForbidden => 9,
            NotFound => 10,
            MethodNotAllowed => 11,
            RequestTimeout => 12,
            UsernameTaken => 13,
            PayloadTooLarge => 14,
            UnsupportedMediaType => 15,
            RateLimited => 16,
            Internal => 17,
            Unavailable => 18,
            InvalidJson => 19,
            UnknownType => 20,
            RoomNotFound => 21,
            RoomFull => 22,
            NotInRoom => 23,
        };
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(position(code), i, "{code:?}");
        }
    }

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::TokenRevoked,
            ErrorCode::OriginForbidden,
            ErrorCode::PayloadTooLarge,
            ErrorCode::NotInRoom,
            ErrorCode::MethodNotAllowed,
            ErrorCode::RequestTimeout,
            ErrorCode::UnsupportedMediaType,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
