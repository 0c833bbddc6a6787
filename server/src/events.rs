//! What a revocation is, as data: the [`RevocationEvent`] a change produces, written to
//! the database's revocation log in the change's own transaction, and applied to memory
//! (`auth::revocation::apply`) by the server that made it and, read back from the log,
//! by every other server sharing the database. Plain values with a JSON form; nothing
//! here does I/O, so the store, the auth rules and the log poller all depend on it and
//! on nothing of each other.

use arena_protocol::CloseCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevocationEvent {
    /// Logout of one session, a session ended from another device, refresh-token reuse,
    /// single-session replacement, a session beyond the per-user limit.
    Sessions {
        sessions: Vec<RevokedSession>,
        #[serde(with = "close_code")]
        close: CloseCode,
    },
    /// Logout-everywhere, kick, ban, role change: every token of the user issued before
    /// `before_secs` and every listed session.
    User {
        user_id: String,
        before_secs: i64,
        sessions: Vec<RevokedSession>,
        #[serde(with = "close_code")]
        close: CloseCode,
        reason: String,
        /// `Some(until)` also bans the user (`until` = `None`: permanently).
        #[serde(with = "ban")]
        ban: Option<Option<i64>>,
    },
    /// A ban lifted early.
    Unban { user_id: String },
    /// Not a revocation: the shared signing keyring was rotated or pruned. Every other
    /// server reloads it from the database; it closes nothing.
    KeysChanged {},
}

impl RevocationEvent {
    /// How many sessions it revokes, as the admin overview counts them: a user-wide
    /// revocation counts at least one (it also revokes tokens no session lists).
    pub fn sessions_revoked(&self) -> u64 {
        match self {
            RevocationEvent::Sessions { sessions, .. } => sessions.len() as u64,
            RevocationEvent::User { sessions, .. } => sessions.len().max(1) as u64,
            RevocationEvent::Unban { .. } | RevocationEvent::KeysChanged {} => 0,
        }
    }
}

/// A session that a revocation just ended (or had ended): enough to apply the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSession {
    pub session_id: String,
    pub user_id: String,
    /// Latest `exp` of any access token of the session: the revocation matters until then.
    pub access_expires_secs: i64,
}

/// An event as the log holds it: its place in the log (ids are gap-free and in commit
/// order), which event holds that place, and which server process wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub id: i64,
    /// Random, written with the event: what tells this event from another that holds the
    /// same id in a log that went back (a failover to a replica without the last
    /// commits, a restore from a backup) and moved on. `None`: written by a release
    /// before tags (nothing to compare).
    pub tag: Option<String>,
    pub origin: String,
    pub event: RevocationEvent,
}

impl LoggedEvent {
    /// An event that is not (or not again) in the log: id 0, which no ban ordering
    /// prefers over a logged event.
    pub fn unlogged(event: RevocationEvent, origin: &str) -> LoggedEvent {
        LoggedEvent {
            id: 0,
            tag: None,
            origin: origin.to_string(),
            event,
        }
    }
}

/// A ban travels as `null` (none), `"permanent"`, or the time it ends (ms): serde's own
/// `Option<Option<_>>` would write a permanent ban as `null` and read it back as none.
mod ban {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Until(i64),
        Word(String),
    }

    pub fn serialize<S: Serializer>(ban: &Option<Option<i64>>, s: S) -> Result<S::Ok, S::Error> {
        match ban {
            None => s.serialize_none(),
            Some(None) => s.serialize_some(&Wire::Word("permanent".into())),
            Some(Some(until)) => s.serialize_some(&Wire::Until(*until)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        match Option::<Wire>::deserialize(d)? {
            None => Ok(None),
            Some(Wire::Until(until)) => Ok(Some(Some(until))),
            Some(Wire::Word(w)) if w == "permanent" => Ok(Some(None)),
            Some(Wire::Word(w)) => Err(serde::de::Error::custom(format!("unknown ban {w:?}"))),
        }
    }
}

/// Close codes travel as their numbers.
mod close_code {
    use arena_protocol::CloseCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(code: &CloseCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(code.code())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CloseCode, D::Error> {
        let n = u16::deserialize(d)?;
        CloseCode::from_code(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown close code {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json() {
        let events = [
            RevocationEvent::Sessions {
                sessions: vec![RevokedSession {
                    session_id: "s".into(),
                    user_id: "u".into(),
                    access_expires_secs: 7,
                }],
                close: CloseCode::SessionReplaced,
            },
            RevocationEvent::User {
                user_id: "u".into(),
                before_secs: 5,
                sessions: vec![],
                close: CloseCode::Kicked,
                reason: "spam".into(),
                ban: Some(None),
            },
            RevocationEvent::User {
                user_id: "u".into(),
                before_secs: 5,
                sessions: vec![],
                close: CloseCode::Kicked,
                reason: "timed".into(),
                ban: Some(Some(1_800_000_000_000)),
            },
            RevocationEvent::User {
                user_id: "u".into(),
                before_secs: 5,
                sessions: vec![],
                close: CloseCode::SessionRevoked,
                reason: "logged out".into(),
                ban: None,
            },
            RevocationEvent::Unban {
                user_id: "u".into(),
            },
            RevocationEvent::KeysChanged {},
        ];
        for e in events {
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(
                serde_json::from_str::<RevocationEvent>(&text).unwrap(),
                e,
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_string(&RevocationEvent::KeysChanged {}).unwrap(),
            r#"{"kind":"keys_changed"}"#
        );
        assert!(serde_json::from_str::<RevocationEvent>(
            r#"{"kind":"sessions","sessions":[],"close":1234}"#
        )
        .is_err());
    }
}
