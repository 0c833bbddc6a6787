//! Admission: the one owner of "make the socket visible to revocation, then check
//! revocation again", for a new socket ([`Auth::admit`]) and for a socket moving to
//! another session of its user ([`Auth::rebind`]).
//!
//! A revocation records first and sweeps the registry after ([`super::revocation`]);
//! a User event sweeps every socket of the user whatever its session id, a Sessions
//! event only the sockets whose session id it names. Admission does the mirror image:
//! publish first, check after. Each argument below pairs one publish with one check
//! over the same two locations: the socket's entry (the registry shard, or the
//! connection's session-id mutex) and the revocation list's DashMap shard.
//!
//! **admit.** Register, then check the token. Against a revocation R of the token:
//! if R's sweep read the registry after our registration, it closes the socket; if
//! before, R's record came before its sweep, hence before our registration, hence
//! before our check, which sees it and drops the registration (401).
//!
//! **rebind**, socket on session A moving to B (same user):
//! 1. set the session id to B, 2. check B. If B is valid the socket now belongs to B:
//!    a sweep of B reads B (closes it) or read A before step 1, and then B's record
//!    preceded step 2's check. A sweep of A that reads B misses it, rightly: it no
//!    longer is a socket of A.
//! 3. B revoked: set the session id back to A, 4. check A. A logout of A whose sweep
//!    read the session id while it was B (between 1 and 3) missed the socket; but its
//!    record came before that read, so before step 3, so before step 4, which sees A
//!    revoked. That is the case the socket must not survive: we request its close with
//!    4001 ourselves (the list does not keep which code the revocation used; a
//!    single-session replacement, 4004, is reported as 4001). A sweep of A that reads
//!    the session id after step 3 finds the socket and closes it as usual.
//!
//! User events (logout everywhere, kick, ban, role change) sweep by user: every socket
//! of a session they name, or whose token was issued before their mark, reading its
//! session id and `iat` as one value (the socket's token). When A is revoked only by a
//! user mark, a sweep that reads A's token closes the socket with its own code, and
//! rebind leaves it alone; one that reads B's finds B valid under the mark, or step 2's
//! check sees B revoked, as above.

use std::net::SocketAddr;

use arena_protocol::{CloseCode, ErrorCode};

use super::revocation::RevocationList;
use super::tokens::Claims;
use super::Auth;
use crate::error::{Error, Result};
use crate::ids;
use crate::registry::{ConnHandle, NewConnection, Outbound, RegisterError, Registration};

/// What [`Auth::rebind`] did; what the socket's session should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebind {
    /// The socket now lives by the new claims.
    Moved,
    /// The new token is revoked: the socket stays on the old claims, which still hold.
    Refused,
    /// The new token is revoked and the old session was revoked meanwhile: a close
    /// (4001) has been requested; the session must stop serving and send it.
    Closed,
}

impl Auth {
    /// In a cluster, count the socket just admitted against the per-user cap of the
    /// whole deployment (the registry has already held it to the cap on this node).
    /// The lease must live as long as the socket. Out of reach, the backplane cannot
    /// count: the cap then holds per node (a limit, not a security promise: failing
    /// open here keeps players playing through a Redis restart).
    pub async fn count_socket(
        &self,
        user_id: &str,
    ) -> Result<Option<Box<dyn super::peers::SocketLease>>> {
        let Some(peers) = self.peers.get() else {
            return Ok(None);
        };
        peers
            .acquire_socket(user_id, self.max_sockets_per_user)
            .await
            .map_err(|super::peers::OverQuota| Error::RateLimited { retry_after: 1 })
    }

    /// Register a socket authenticated by `claims`, then check revocation again: a
    /// socket is never left open on a token revoked while it was being admitted.
    pub fn admit(
        &self,
        claims: &Claims,
        remote_addr: SocketAddr,
    ) -> Result<(Registration, Outbound)> {
        let (registration, outbound) = self
            .registry
            .register(NewConnection {
                user_id: claims.sub.clone(),
                username: claims.username.clone(),
                session_id: claims.sid.clone(),
                issued_at: claims.iat,
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
        if self.revocations.is_revoked(claims) {
            drop(registration);
            return Err(Error::new(
                ErrorCode::TokenRevoked,
                "the token has been revoked",
            ));
        }
        Ok((registration, outbound))
    }

    /// Move a registered socket from the token it lives by to `new` (claims of the same
    /// user, already authenticated). See the module doc for why each check is where it is.
    pub fn rebind(&self, conn: &ConnHandle, new: &Claims) -> Rebind {
        rebind(&self.revocations, conn, new)
    }
}

fn rebind(revocations: &RevocationList, conn: &ConnHandle, new: &Claims) -> Rebind {
    let (old_sid, old_iat) = conn.replace_token(new.sid.clone(), new.iat);
    if !revocations.is_revoked(new) {
        return Rebind::Moved;
    }
    conn.set_token(old_sid.clone(), old_iat);
    if revocations.is_session_revoked(&old_sid) {
        conn.request_close(
            CloseCode::SessionRevoked,
            CloseCode::SessionRevoked.reason(),
        );
        return Rebind::Closed;
    }
    Rebind::Refused
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arena_protocol::Role;

    use super::*;
    use crate::auth::revocation::{apply, LoggedEvent, RevocationEvent};
    use crate::registry::{Registry, RegistryLimits};
    use crate::store::RevokedSession;

    fn claims(sid: &str) -> Claims {
        Claims {
            iss: "a".into(),
            aud: "a".into(),
            sub: "u".into(),
            sid: sid.into(),
            jti: "j".into(),
            iat: 1000,
            nbf: 1000,
            exp: 2000,
            auth_time: 1000,
            role: Role::Player,
            username: "n".into(),
        }
    }

    fn revoked(sid: &str) -> RevokedSession {
        RevokedSession {
            session_id: sid.into(),
            user_id: "u".into(),
            access_expires_secs: i64::MAX / 2,
        }
    }

    fn registry() -> Arc<Registry> {
        Registry::new(RegistryLimits {
            max_per_user: 100_000,
            max_total: 100_000,
            outbound_queue: 4,
            // Nobody drives these sockets: a sweep's wait for them ends at once.
            close_timeout: Duration::ZERO,
        })
    }

    fn socket(registry: &Arc<Registry>, sid: &str) -> (Registration, Outbound) {
        socket_issued(registry, sid, 0)
    }

    fn socket_issued(registry: &Arc<Registry>, sid: &str, iat: i64) -> (Registration, Outbound) {
        registry
            .register(NewConnection {
                user_id: "u".into(),
                username: "n".into(),
                session_id: sid.into(),
                issued_at: iat,
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                connected_at: 0,
            })
            .unwrap()
    }

    /// A user-wide event applied late (a node catching up) closes the sockets whose
    /// tokens it revoked, not one opened since with a fresh token of a new session.
    #[tokio::test]
    async fn a_late_user_wide_event_spares_sockets_of_fresh_tokens() {
        let list = RevocationList::new(100);
        let reg = registry();
        let (old, _o1) = socket_issued(&reg, "old", 90);
        let (named, _o2) = socket_issued(&reg, "named", 150);
        let (fresh, _o3) = socket_issued(&reg, "fresh", 100);
        let kick = RevocationEvent::User {
            user_id: "u".into(),
            before_secs: 100,
            sessions: vec![revoked("named")],
            close: CloseCode::Kicked,
            reason: "kick".into(),
            ban: None,
        };
        let closed = apply(&LoggedEvent::unlogged(kick, "test"), &list, &reg).await;
        assert_eq!(closed, 2);
        assert!(old.handle().close_requested().is_some());
        assert!(named.handle().close_requested().is_some());
        assert!(
            fresh.handle().close_requested().is_none(),
            "issued at the mark: valid"
        );
        assert_eq!(reg.live(), 1);
    }

    #[test]
    fn moves_refuses_or_closes() {
        let list = RevocationList::new(100);
        let reg = registry();
        let (conn, _out) = socket(&reg, "a");
        let c = conn.handle();
        assert_eq!(rebind(&list, c, &claims("b")), Rebind::Moved);
        assert_eq!(c.session_id(), "b");

        list.revoke_session(&revoked("c"));
        assert_eq!(rebind(&list, c, &claims("c")), Rebind::Refused);
        assert_eq!(c.session_id(), "b");
        assert!(c.close_requested().is_none());
    }

    /// The interleaving a logout of the old session can produce: its record lands, its
    /// sweep runs while the socket carries the new session id (so it misses), and the new
    /// session turns out revoked. Rolling back must not leave the socket on a dead session.
    #[tokio::test]
    async fn a_rollback_onto_a_session_revoked_meanwhile_closes_the_socket() {
        let list = RevocationList::new(100);
        let reg = registry();
        let (conn, _out) = socket(&reg, "a");
        let c = conn.handle();
        c.set_token("b".into(), 0); // step 1 of rebind, as it happened
        let event = RevocationEvent::Sessions {
            sessions: vec![revoked("a")],
            close: CloseCode::SessionRevoked,
        };
        apply(&LoggedEvent::unlogged(event, "test"), &list, &reg).await;
        assert!(c.close_requested().is_none(), "the sweep missed it");
        list.revoke_session(&revoked("b"));
        c.set_token("a".into(), 0);
        // rebind from the start, as its second half would see the world:
        assert_eq!(rebind(&list, c, &claims("b")), Rebind::Closed);
        assert_eq!(c.session_id(), "a");
        assert_eq!(
            c.close_requested().map(|r| r.code),
            Some(CloseCode::SessionRevoked)
        );
    }

    /// rebind racing real revocations of both sessions (record, then sweep), on two
    /// threads, many times: the socket always ends with a close requested.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebind_racing_logouts_never_leaves_the_socket_open() {
        let reg = registry();
        let mut outcomes = std::collections::HashMap::<String, usize>::new();
        for round in 0..2000 {
            let list = Arc::new(RevocationList::new(100));
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            let (conn, _out) = socket(&reg, &a);
            let handle = conn.handle().clone();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let mover = {
                let (list, barrier, handle) = (list.clone(), barrier.clone(), handle.clone());
                let b = b.clone();
                tokio::task::spawn_blocking(move || {
                    barrier.wait();
                    rebind(&list, &handle, &claims(&b))
                })
            };
            let logouts = {
                let (list, reg, barrier) = (list.clone(), reg.clone(), barrier.clone());
                let (a, b) = (a.clone(), b.clone());
                tokio::task::spawn_blocking(move || {
                    barrier.wait();
                    let rt = tokio::runtime::Handle::current();
                    for sid in [b, a] {
                        let event = RevocationEvent::Sessions {
                            sessions: vec![revoked(&sid)],
                            close: CloseCode::SessionRevoked,
                        };
                        rt.block_on(apply(&LoggedEvent::unlogged(event, "test"), &list, &reg));
                    }
                })
            };
            let outcome = mover.await.unwrap();
            logouts.await.unwrap();
            *outcomes.entry(format!("{outcome:?}")).or_default() += 1;
            assert!(
                handle.close_requested().is_some(),
                "round {round}: {outcome:?}, socket on {} left open",
                handle.session_id()
            );
            drop(conn);
        }
        eprintln!("rebind outcomes: {outcomes:?}");
    }
}
