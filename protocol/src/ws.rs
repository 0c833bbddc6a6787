//! WebSocket messages: JSON text frames tagged by `"type"`.
//!
//! [`ClientMessage::decode`] never panics and tells apart the three ways a frame can be
//! wrong (not JSON, unknown type, bad field), so the server can answer each with the
//! right `error` frame and keep the socket open.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::http::{Member, Room, User};

/// Largest `chat` text, in characters.
pub const CHAT_MAX_CHARS: usize = 280;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Ping { id: u64 },
    Join { room: String },
    Leave,
    Input { seq: u64, dx: f64, dy: f64 },
    Chat { text: String },
    Reauth { access_token: String },
}

/// Why a client frame was refused; maps onto an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

const CLIENT_TYPES: &[&str] = &["ping", "join", "leave", "input", "chat", "reauth"];

impl ClientMessage {
    /// Decode one text frame. The fast path is a single typed parse; only a frame that
    /// fails it is parsed again to say precisely what is wrong.
    pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(msg) => msg.validate(),
            Err(err) => Err(diagnose(text, err)),
        }
    }

    /// Field rules that serde's types cannot express.
    fn validate(self) -> Result<ClientMessage, DecodeError> {
        let invalid = |message: &str| DecodeError {
            code: ErrorCode::InvalidRequest,
            message: message.to_string(),
        };
        match &self {
            ClientMessage::Chat { text } => {
                let n = text.chars().count();
                if n == 0 || n > CHAT_MAX_CHARS {
                    return Err(invalid("field `text` must be 1-280 characters"));
                }
            }
            ClientMessage::Input { dx, dy, .. } if !dx.is_finite() || !dy.is_finite() => {
                return Err(invalid("fields `dx` and `dy` must be numbers"));
            }
            ClientMessage::Join { room } if room.is_empty() || room.len() > 128 => {
                return Err(invalid("field `room` must be a room id"));
            }
            _ => {}
        }
        Ok(self)
    }
}

fn diagnose(text: &str, err: serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return DecodeError {
                code: ErrorCode::InvalidJson,
                message: format!("frame is not valid JSON: {e}"),
            }
        }
    };
    let Some(obj) = value.as_object() else {
        return DecodeError {
            code: ErrorCode::InvalidJson,
            message: "frame must be a JSON object".into(),
        };
    };
    match obj.get("type").and_then(|t| t.as_str()) {
        None => DecodeError {
            code: ErrorCode::UnknownType,
            message: "field `type` is missing or not a string".into(),
        },
        Some(t) if !CLIENT_TYPES.contains(&t) => DecodeError {
            code: ErrorCode::UnknownType,
            message: format!("unknown message type `{}`", truncate(t, 40)),
        },
        Some(_) => DecodeError {
            code: ErrorCode::InvalidRequest,
            // serde's message names the field ("missing field `room`", "invalid type ...").
            message: crate::describe_json_error(&err),
        },
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// One player in a `state` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PlayerState {
    pub id: String,
    pub username: String,
    pub x: f64,
    pub y: f64,
    pub last_seq: u64,
    /// Orbs taken this round.
    #[serde(default)]
    pub score: u32,
}

/// An orb in a `state` frame: touching it scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct OrbState {
    pub id: u64,
    pub x: f64,
    pub y: f64,
}

/// Whether a round is being played or the room is between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RoundPhase {
    Playing,
    Pause,
}

/// The round in a `state` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RoundState {
    pub number: u32,
    pub phase: RoundPhase,
    /// When the phase ends (server time, Unix ms): the round's end while `playing`, the
    /// next round's start during the `pause`.
    pub ends_at: i64,
}

/// A player's score in a `round` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ScoreLine {
    pub id: String,
    pub username: String,
    pub score: u32,
}

/// The arena a room's game runs in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WorldInfo {
    pub width: f64,
    pub height: f64,
    /// Units per second.
    pub speed: f64,
    pub tick_hz: u32,
}

/// Why a socket left a room it did not ask to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// The same user's newer socket joined the room and took the place.
    Replaced,
    /// The room's game stopped and could not be moved to another node (the backplane is
    /// out of reach); joining again may work later.
    Unavailable,
    /// The room no longer exists.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChatFrom {
    pub id: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        protocol: u32,
        user: User,
        session_id: String,
        connection_id: String,
        expires_at: i64,
        server_time: i64,
    },
    Pong {
        id: u64,
        server_time: i64,
    },
    Joined {
        room: Room,
        members: Vec<Member>,
        /// The arena's geometry (an extension of PROTOCOL.md, for drawing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        world: Option<WorldInfo>,
    },
    Left {
        room: String,
        /// Why, when the client did not ask: see [`LeftReason`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<LeftReason>,
    },
    /// The room's game restarted on another node (the one that ran it went away). The
    /// member is still in it; positions and `tick` start afresh.
    RoomMoved {
        room: Room,
        members: Vec<Member>,
        world: WorldInfo,
    },
    PlayerJoined {
        room: String,
        player: Member,
    },
    PlayerLeft {
        room: String,
        player: Member,
    },
    Chat {
        room: String,
        from: ChatFrom,
        text: String,
        ts: i64,
    },
    State {
        room: String,
        tick: u64,
        players: Vec<PlayerState>,
        #[serde(default)]
        orbs: Vec<OrbState>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        round: Option<RoundState>,
    },
    /// A round started (`phase: playing`, `ends_at` its end) or ended (`phase: pause`,
    /// `ends_at` the next one's start, `winners` the top scorers, `scores` every score).
    Round {
        room: String,
        round: u32,
        phase: RoundPhase,
        ends_at: i64,
        #[serde(default)]
        winners: Vec<ScoreLine>,
        #[serde(default)]
        scores: Vec<ScoreLine>,
    },
    TokenExpiring {
        expires_at: i64,
    },
    Reauthed {
        session_id: String,
        expires_at: i64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    /// Encode as the JSON text of one frame. Serializing these types cannot fail (no maps
    /// with non-string keys, no non-finite floats reach here), but we never panic on it.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_string()
        })
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_type() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"ping","id":7}"#),
            Ok(ClientMessage::Ping { id: 7 })
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"leave"}"#),
            Ok(ClientMessage::Leave)
        );
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"input","seq":1,"dx":0.5,"dy":-1}"#),
            Ok(ClientMessage::Input { seq: 1, .. })
        ));
    }

    #[test]
    fn tells_errors_apart() {
        let code = |s: &str| ClientMessage::decode(s).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::InvalidRequest);
        assert_eq!(
            code(r#"{"type":"ping","id":"x"}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(r#"{"type":"chat","text":""}"#),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn invalid_field_message_names_the_field() {
        let err = ClientMessage::decode(r#"{"type":"join"}"#).unwrap_err();
        assert!(err.message.contains("room"), "{}", err.message);
    }

    #[test]
    fn chat_limit_is_in_characters() {
        let ok = format!(r#"{{"type":"chat","text":"{}"}}"#, "é".repeat(280));
        assert!(ClientMessage::decode(&ok).is_ok());
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "é".repeat(281));
        assert!(ClientMessage::decode(&long).is_err());
    }

    #[test]
    fn server_messages_are_tagged() {
        let v: serde_json::Value = serde_json::from_str(
            &ServerMessage::Pong {
                id: 1,
                server_time: 2,
            }
            .encode(),
        )
        .unwrap();
        assert_eq!(v["type"], "pong");
        let v: serde_json::Value = serde_json::from_str(
            &ServerMessage::PlayerJoined {
                room: "r".into(),
                player: Member {
                    id: "u".into(),
                    username: "n".into(),
                },
            }
            .encode(),
        )
        .unwrap();
        assert_eq!(v["type"], "player_joined");
    }
}
