//! WebSocket close codes the server sends, and what each one tells the client to do.

/// A close code from PROTOCOL.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1001: the server is shutting down; reconnect with backoff.
    GoingAway = 1001,
    /// 1008: rate or abuse limit exceeded, or too slow to read.
    Policy = 1008,
    /// 1009: a message was too big.
    TooBig = 1009,
    /// 4000: repeated invalid messages.
    ProtocolError = 4000,
    /// 4001: the session was revoked (logout, or refresh-token theft detected).
    SessionRevoked = 4001,
    /// 4002: the token expired and no `reauth` arrived in time.
    TokenExpired = 4002,
    /// 4003: kicked or banned by an admin.
    Kicked = 4003,
    /// 4004: single-session mode, the user logged in elsewhere.
    SessionReplaced = 4004,
}

impl CloseCode {
    pub const fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        Some(match code {
            1001 => CloseCode::GoingAway,
            1008 => CloseCode::Policy,
            1009 => CloseCode::TooBig,
            4000 => CloseCode::ProtocolError,
            4001 => CloseCode::SessionRevoked,
            4002 => CloseCode::TokenExpired,
            4003 => CloseCode::Kicked,
            4004 => CloseCode::SessionReplaced,
            _ => return None,
        })
    }

    /// The default human reason sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::GoingAway => "server shutting down",
            CloseCode::Policy => "policy violation",
            CloseCode::TooBig => "message too big",
            CloseCode::ProtocolError => "too many invalid messages",
            CloseCode::SessionRevoked => "session revoked",
            CloseCode::TokenExpired => "token expired",
            CloseCode::Kicked => "removed by an admin",
            CloseCode::SessionReplaced => "logged in elsewhere",
        }
    }
}

/// RFC 6455 limits a close frame's reason to 123 bytes; cut on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in [1001u16, 1008, 1009, 4000, 4001, 4002, 4003, 4004] {
            assert_eq!(CloseCode::from_code(c).map(CloseCode::code), Some(c));
        }
        assert_eq!(CloseCode::from_code(1000), None);
    }

    #[test]
    fn reason_truncates_on_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123);
        assert_eq!(cut.len() % 2, 0);
    }
}
