//! How `arena-client` ends: its exit status, one per way the server can end a `play`
//! session, so that a script can tell a kick from an expiry without reading the text.

use arena_protocol::CloseCode;

/// Why the client stopped short of success.
#[derive(Debug)]
pub enum Exit {
    /// A request failed, the server refused, a load scenario's check failed.
    Error(String),
    /// `play`: the server closed the socket with this code and reason.
    Closed { code: u16, reason: String },
    /// `play`: the connection ended without a close frame.
    Lost(String),
}

impl From<String> for Exit {
    fn from(e: String) -> Exit {
        Exit::Error(e)
    }
}

impl From<&str> for Exit {
    fn from(e: &str) -> Exit {
        Exit::Error(e.to_string())
    }
}

/// A request failed, the server refused it, or a load scenario's check failed.
pub const ERROR: u8 = 1;
/// `play`: the connection ended without a close frame, or with a code not listed here.
pub const LOST: u8 = 3;

/// The exit status for a close code the server sent.
pub fn for_close(code: u16) -> u8 {
    match CloseCode::from_code(code) {
        Some(CloseCode::GoingAway) => 10,
        Some(CloseCode::Policy) => 11,
        Some(CloseCode::TooBig) => 12,
        Some(CloseCode::ProtocolError) => 20,
        Some(CloseCode::SessionRevoked) => 21,
        Some(CloseCode::TokenExpired) => 22,
        Some(CloseCode::Kicked) => 23,
        Some(CloseCode::SessionReplaced) => 24,
        None => LOST,
    }
}

impl Exit {
    pub fn status(&self) -> u8 {
        match self {
            Exit::Error(_) => ERROR,
            Exit::Closed { code, .. } => for_close(*code),
            Exit::Lost(_) => LOST,
        }
    }

    /// The line printed on stderr.
    pub fn message(&self) -> String {
        match self {
            Exit::Error(e) => e.clone(),
            Exit::Closed { code, reason } => describe_close(*code, reason),
            Exit::Lost(e) => format!("connection lost: {e}"),
        }
    }
}

/// `closed 4003: an admin removed you (spam)`.
pub fn describe_close(code: u16, reason: &str) -> String {
    let what = match CloseCode::from_code(code) {
        Some(CloseCode::SessionRevoked) => "your session was revoked (logged out)",
        Some(CloseCode::Kicked) => "an admin removed you (kick, ban or role change)",
        Some(CloseCode::TokenExpired) => "your token expired",
        Some(CloseCode::SessionReplaced) => "you logged in elsewhere",
        Some(CloseCode::GoingAway) => "the server is shutting down",
        Some(CloseCode::Policy) => "a rate or abuse limit was exceeded, or reading was too slow",
        Some(CloseCode::TooBig) => "a message was too big",
        Some(CloseCode::ProtocolError) => "too many invalid messages",
        None => "the server closed the connection",
    };
    if reason.is_empty() {
        format!("closed {code}: {what}")
    } else {
        format!("closed {code}: {what}: {reason}")
    }
}

/// The exit statuses, for `--help` (the README's table says the same).
pub const HELP: &str = "\
Exit status:
  0   success; `play` ended by /quit or the end of its input
  1   error: a request failed or was refused, or a load scenario's check failed
  2   usage: a flag is missing or wrong
  3   play: the connection was lost without a close frame (or an unlisted close code)
  10  play: closed 1001, the server is shutting down
  11  play: closed 1008, a rate or abuse limit, or too slow to read
  12  play: closed 1009, a message was too big
  20  play: closed 4000, too many invalid messages
  21  play: closed 4001, session revoked (logged out, or refresh-token theft)
  22  play: closed 4002, the access token expired
  23  play: closed 4003, kicked or banned by an admin, or the role changed
  24  play: closed 4004, logged in elsewhere (single-session mode)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_code_has_its_own_status() {
        let codes = [1001u16, 1008, 1009, 4000, 4001, 4002, 4003, 4004];
        let mut seen: Vec<u8> = codes.iter().map(|&c| for_close(c)).collect();
        assert!(seen
            .iter()
            .all(|&s| s != 0 && s != ERROR && s != 2 && s != LOST));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), codes.len());
        assert_eq!(for_close(1000), LOST);
        assert_eq!(for_close(4999), LOST);
        for c in codes {
            assert!(
                HELP.contains(&format!("closed {c},")),
                "{c} missing from HELP"
            );
            assert!(HELP.contains(&format!("  {}  play", for_close(c))));
        }
    }

    #[test]
    fn a_close_says_what_happened_and_why() {
        assert_eq!(
            describe_close(4003, "spam"),
            "closed 4003: an admin removed you (kick, ban or role change): spam"
        );
        assert_eq!(describe_close(4002, ""), "closed 4002: your token expired");
    }
}
