//! Revocation: the in-memory lists checked on every request and upgrade, and the
//! events that change them.
//!
//! Three O(1) lookups decide whether a signature-valid token still counts:
//! - revoked sessions (`sid` → until when its tokens could still be alive),
//! - per-user marks ("tokens issued before T are invalid": logout-everywhere, kick, ban,
//!   role change),
//! - bans (user → until when, or forever).
//!
//! Every change arrives as a [`RevocationEvent`] and goes through [`apply`]: record it in
//! the lists first, then close the matching sockets. The database write that makes the
//! event durable happens before `apply` (and `apply` runs even when that commit's outcome
//! is unknown: fail closed); a cross-server backplane carries the same events and applies
//! them the same way on every server. Everything here is monotonic (a revoked session
//! stays revoked, a mark only moves forward) except bans, which an unban lifts: each ban
//! and unban carries its revocation-log id, and an older one never overrides a newer one
//! (see `BanEntry`), so they end in commit order however they arrive.
//!
//! A logout may also end its session *provisionally* ([`end_provisionally`]) while its
//! commit runs: the session counts as revoked here and its sockets close at once, and
//! the mark goes when the commit is over. If the commit succeeded (or may have), the
//! committed event was applied first, so the session stays revoked; if it definitely
//! failed, nothing was revoked and the token works again. A provisional mark never
//! touches the real lists, so it cannot undo a revocation that arrived meanwhile.
//!
//! Why "record, then close" is race-free against a new socket: an upgrade registers its
//! socket first and re-checks revocation after. Either its registration happened before
//! our sweep of the registry (the sweep closes it), or after it, and then after our
//! record (the re-check refuses it). DashMap's shard locks order the two.

use dashmap::DashMap;

pub use crate::events::{LoggedEvent, RevocationEvent, RevokedSession};
use crate::ids;
use crate::registry::Registry;

use super::tokens::Claims;

/// The in-memory lists. Cheap to query from any task.
pub struct RevocationList {
    sessions: DashMap<String, i64>,
    /// user → (mark: tokens with iat < mark are invalid, keep until)
    users: DashMap<String, (i64, i64)>,
    /// user → the ban as the newest ban or unban event applied here left it
    bans: DashMap<String, BanEntry>,
    /// Sessions being ended provisionally (see the module doc) → how many endings are
    /// in flight for each.
    ending: DashMap<String, usize>,
    /// How many endings are in flight, so the check every token goes through skips the
    /// lookup (a hash of the session id) while no logout is in flight.
    endings: std::sync::atomic::AtomicUsize,
    /// How long a user mark must be kept: the longest access-token life plus leeway.
    mark_horizon_secs: i64,
}

/// A user's ban as of the revocation-log event `version`. Bans are the one thing an event
/// can take back (unban), so the order of events matters: an older event arriving after a
/// newer one (two handlers racing, the log read back by another server) never wins.
#[derive(Debug, Clone, Copy)]
struct BanEntry {
    /// `Some(until)`: banned until then (ms), `Some(None)` permanently; `None`: lifted.
    until: Option<Option<i64>>,
    version: i64,
    /// When the entry was written (ms), to forget a lifted ban after a while.
    at: i64,
}

/// How long a lifted ban is remembered, so that a ban event older than the unban but
/// arriving later is recognised as older. Far longer than any event takes to arrive.
const LIFTED_BAN_MEMORY_MS: i64 = 10 * 60 * 1000;

impl RevocationList {
    pub fn new(mark_horizon_secs: i64) -> RevocationList {
        RevocationList {
            sessions: DashMap::new(),
            users: DashMap::new(),
            bans: DashMap::new(),
            ending: DashMap::new(),
            endings: std::sync::atomic::AtomicUsize::new(0),
            mark_horizon_secs,
        }
    }

    /// Whether a signature-valid token has been revoked.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.revokes(&claims.sub, &claims.sid, claims.iat)
    }

    /// Whether a token of `user_id`'s session `session_id` issued at `iat` is revoked.
    pub fn revokes(&self, user_id: &str, session_id: &str, iat: i64) -> bool {
        if self.sessions.contains_key(session_id) || self.is_ending(session_id) {
            return true;
        }
        matches!(self.users.get(user_id), Some(m) if iat < m.0)
    }

    pub fn is_session_revoked(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id) || self.is_ending(session_id)
    }

    fn is_ending(&self, session_id: &str) -> bool {
        self.endings.load(std::sync::atomic::Ordering::Acquire) > 0
            && self.ending.contains_key(session_id)
    }

    fn begin_ending(&self, session_id: &str) {
        // Counted before the entry exists, so a reader that sees the entry sees the count.
        self.endings
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *self.ending.entry(session_id.to_string()).or_insert(0) += 1;
    }

    fn finish_ending(&self, session_id: &str) {
        self.ending.remove_if_mut(session_id, |_, n| {
            *n -= 1;
            *n == 0
        });
        self.endings
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The ban in force for a user: `Some(None)` permanent, `Some(Some(until))` timed.
    pub fn ban(&self, user_id: &str) -> Option<Option<i64>> {
        let until = self.bans.get(user_id)?.until?;
        match until {
            Some(t) if t <= ids::now_ms() => None,
            other => Some(other),
        }
    }

    pub fn revoke_session(&self, s: &RevokedSession) {
        self.sessions
            .entry(s.session_id.clone())
            .and_modify(|until| *until = (*until).max(s.access_expires_secs))
            .or_insert(s.access_expires_secs);
    }

    pub fn mark_user(&self, user_id: &str, before_secs: i64) {
        let keep_until = before_secs + self.mark_horizon_secs;
        self.users
            .entry(user_id.to_string())
            .and_modify(|m| {
                if before_secs > m.0 {
                    *m = (before_secs, keep_until)
                }
            })
            .or_insert((before_secs, keep_until));
    }

    /// Record a ban as of log event `version`, unless a newer ban or unban is known.
    pub fn set_ban(&self, user_id: &str, until: Option<i64>, version: i64) {
        self.set_ban_state(user_id, Some(until), version);
    }

    /// Record an unban as of log event `version`, unless a newer ban is known.
    pub fn lift_ban(&self, user_id: &str, version: i64) {
        self.set_ban_state(user_id, None, version);
    }

    fn set_ban_state(&self, user_id: &str, until: Option<Option<i64>>, version: i64) {
        let entry = BanEntry {
            until,
            version,
            at: ids::now_ms(),
        };
        self.bans
            .entry(user_id.to_string())
            .and_modify(|e| {
                if version >= e.version {
                    *e = entry;
                }
            })
            .or_insert(entry);
    }

    /// Make the bans exactly `bans` (user, until), as of log event `version`: the tables
    /// after a reload are the truth about bans, and an entry left from a log that went
    /// back would carry a version the new log's events could not override.
    pub fn replace_bans(&self, bans: &[(String, Option<i64>)], version: i64) {
        let keep: std::collections::HashSet<&str> = bans.iter().map(|(u, _)| u.as_str()).collect();
        for (user, until) in bans {
            self.bans.insert(
                user.clone(),
                BanEntry {
                    until: Some(*until),
                    version,
                    at: ids::now_ms(),
                },
            );
        }
        self.bans.retain(|user, _| keep.contains(user.as_str()));
    }

    /// Drop entries that can no longer matter: sessions whose last token has expired,
    /// marks older than any live token, bans that have ended. Returns how many went.
    pub fn prune(&self, now_secs: i64, leeway_secs: i64) -> usize {
        let before = self.len();
        self.sessions
            .retain(|_, until| *until + leeway_secs >= now_secs);
        self.users.retain(|_, m| m.1 + leeway_secs >= now_secs);
        let now_ms = now_secs * 1000;
        self.bans.retain(|_, e| match e.until {
            Some(until) => until.is_none_or(|t| t > now_ms),
            None => e.at + LIFTED_BAN_MEMORY_MS > now_ms,
        });
        before - self.len()
    }

    pub fn len(&self) -> usize {
        self.sessions.len() + self.users.len() + self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session ended on this node while the commit that ends it durably runs; see the
/// module doc. Dropping it takes the provisional mark away: drop it only after the
/// committed event (if any) was applied.
pub struct ProvisionalEnding<'a> {
    list: &'a RevocationList,
    session_id: String,
}

impl Drop for ProvisionalEnding<'_> {
    fn drop(&mut self) {
        self.list.finish_ending(&self.session_id);
    }
}

/// Treat `session_id` of `user_id` as revoked here and close its sockets; returns the
/// mark and how many sockets were closed. The same "record, then close" order as
/// [`apply`], so a racing upgrade is refused or closed.
pub async fn end_provisionally<'a>(
    list: &'a RevocationList,
    registry: &Registry,
    user_id: &str,
    session_id: &str,
    close: arena_protocol::CloseCode,
) -> (ProvisionalEnding<'a>, usize) {
    list.begin_ending(session_id);
    let ending = ProvisionalEnding {
        list,
        session_id: session_id.to_string(),
    };
    let closing = registry.begin_close_user(user_id, Some(session_id), close, close.reason());
    registry.wait_closed(&closing).await;
    (ending, closing.len())
}

/// Apply an event: record it, then close the sockets it concerns. Returns how many
/// sockets were closed. The one path for every revocation, local or from elsewhere.
pub async fn apply(logged: &LoggedEvent, list: &RevocationList, registry: &Registry) -> usize {
    let event = &logged.event;
    match event {
        RevocationEvent::Sessions { sessions, .. } => {
            crate::telemetry::revocation("session", sessions.len())
        }
        RevocationEvent::User { .. } => crate::telemetry::revocation("user", 1),
        RevocationEvent::Unban { .. } | RevocationEvent::KeysChanged {} => {}
    }
    let started = std::time::Instant::now();
    let closed = apply_inner(event, logged.id, list, registry).await;
    tracing::debug!(
        closed,
        elapsed_us = started.elapsed().as_micros() as u64,
        "revocation applied"
    );
    closed
}

async fn apply_inner(
    event: &RevocationEvent,
    version: i64,
    list: &RevocationList,
    registry: &Registry,
) -> usize {
    match event {
        RevocationEvent::Sessions { sessions, close } => {
            for s in sessions {
                list.revoke_session(s);
            }
            // Every close is requested before any is awaited: each socket starts closing
            // at once, and the wait is one timeout, not one per session.
            let closing: Vec<_> = sessions
                .iter()
                .flat_map(|s| {
                    registry.begin_close_user(
                        &s.user_id,
                        Some(&s.session_id),
                        *close,
                        close.reason(),
                    )
                })
                .collect();
            registry.wait_closed(&closing).await;
            closing.len()
        }
        RevocationEvent::User {
            user_id,
            before_secs,
            sessions,
            close,
            reason,
            ban,
        } => {
            for s in sessions {
                list.revoke_session(s);
            }
            list.mark_user(user_id, *before_secs);
            if let Some(until) = ban {
                list.set_ban(user_id, *until, version);
            }
            let named: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
            registry
                .close_user_tokens(user_id, &named, *before_secs, *close, reason)
                .await
        }
        RevocationEvent::Unban { user_id } => {
            list.lift_ban(user_id, version);
            0
        }
        // The keyring's reload is `Auth`'s (it needs the database); nothing to record here.
        RevocationEvent::KeysChanged {} => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_protocol::Role;

    fn claims(sub: &str, sid: &str, iat: i64) -> Claims {
        Claims {
            iss: "a".into(),
            aud: "a".into(),
            sub: sub.into(),
            sid: sid.into(),
            jti: "j".into(),
            iat,
            nbf: iat,
            exp: iat + 60,
            auth_time: iat,
            role: Role::Player,
            username: "n".into(),
        }
    }

    fn revoked(sid: &str, until: i64) -> RevokedSession {
        RevokedSession {
            session_id: sid.into(),
            user_id: "u".into(),
            access_expires_secs: until,
        }
    }

    #[test]
    fn session_and_user_marks() {
        let l = RevocationList::new(100);
        assert!(!l.is_revoked(&claims("u", "s1", 1000)));
        l.revoke_session(&revoked("s1", 2000));
        assert!(l.is_revoked(&claims("u", "s1", 1000)));
        assert!(!l.is_revoked(&claims("u", "s2", 1000)));
        l.mark_user("u", 1500);
        assert!(l.is_revoked(&claims("u", "s2", 1499)));
        assert!(!l.is_revoked(&claims("u", "s2", 1500)));
        assert!(!l.is_revoked(&claims("v", "s3", 1000)));
    }

    #[test]
    fn an_older_ban_or_unban_never_overrides_a_newer_one() {
        let l = RevocationList::new(100);
        l.lift_ban("u", 6); // the unban (log id 6) arrives first
        l.set_ban("u", None, 5); // then the ban it followed
        assert!(l.ban("u").is_none(), "the older ban must not win");
        l.set_ban("u", None, 7);
        assert!(l.ban("u").is_some());
        l.lift_ban("u", 7); // the same version applied again: the later write stands
        assert!(l.ban("u").is_none());
    }

    #[test]
    fn prune_drops_only_dead_entries() {
        let l = RevocationList::new(100);
        l.revoke_session(&revoked("old", 1000));
        l.revoke_session(&revoked("new", 5000));
        l.mark_user("u", 1000); // kept until 1100
        l.set_ban("b", Some(1_000_000), 1); // ms
        l.set_ban("p", None, 1);
        assert_eq!(l.prune(2000, 5), 3);
        assert!(l.is_session_revoked("new"));
        assert!(l.ban("p").is_some());
    }
}
