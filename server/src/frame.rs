//! [`TextFrame`]: one encoded server-to-client text frame, the unit the registry queues
//! and rooms broadcast. It is encoded once and shared by every recipient (a clone is a
//! reference count), and it is a type of our own, so the registry, the rooms and the
//! cross-server backplane hand frames around without knowing the web framework. Only
//! `ws/` turns it into a WebSocket message.
//!
//! Inside, it holds axum's `Utf8Bytes`: the text is validated once, when it is made from
//! a `String`, and never again per recipient.

use arena_protocol::ws::ServerMessage;
use axum::extract::ws::{Message, Utf8Bytes};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFrame(Utf8Bytes);

impl TextFrame {
    /// Encode a server message as JSON text.
    pub fn encode(message: &ServerMessage) -> TextFrame {
        TextFrame::from(message.encode())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The encoded bytes, shared (for benchmarks and other transports).
    pub fn bytes(&self) -> axum::body::Bytes {
        self.0.clone().into()
    }

    /// The WebSocket message that carries this frame (for `ws/` only).
    pub(crate) fn into_message(self) -> Message {
        Message::Text(self.0)
    }
}

impl From<String> for TextFrame {
    fn from(text: String) -> TextFrame {
        TextFrame(text.into())
    }
}

impl From<&str> for TextFrame {
    fn from(text: &str) -> TextFrame {
        TextFrame(text.into())
    }
}
