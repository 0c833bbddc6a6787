//! Accounts, sessions and the token they share across HTTP and WebSocket.
//!
//! [`Auth`] owns the rules: register, login, refresh (rotation with reuse detection),
//! logout, kick, ban, and [`Auth::authenticate`], the single check every request and
//! every upgrade passes (signature and claims, then ban, then revocation). Handlers only
//! translate HTTP to these calls. Each change is written to the database first, then
//! applied through [`revocation::apply`], then answered.
//!
//! A change and its application run as one spawned task ([`Auth::detached`]): a client
//! that disconnects mid-request makes hyper drop the handler, and a commit must never land
//! with nothing applied in memory, nor a multi-session revocation stop halfway. When a
//! commit's outcome is unknown the revocation is applied anyway (fail closed) and the
//! request answers with an error.

pub mod activity;
pub mod admission;
pub mod applied;
pub mod backoff;
pub mod device;
pub mod extract;
mod follow;
pub mod keys;
pub mod password;
pub mod peers;
pub mod revocation;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;

use std::sync::atomic::AtomicI64;
use std::sync::OnceLock;

use arena_protocol::http::{NodeAcks, Session, SessionInfo, User};
use arena_protocol::{CloseCode, ErrorCode, Role};

use crate::error::{Error, Result};
use crate::ids;
use crate::registry::Registry;
use crate::store::{
    Audit, BanRow, CreateOutcome, NewSession, RefreshOutcome, Rotation, SessionPolicy, Store,
    UserRow,
};

use applied::AppliedLog;
pub use extract::AuthUser;
use password::Passwords;
use peers::Peers;
use revocation::{LoggedEvent, RevocationList};
use tokens::{Claims, TokenKeys, TokenSubject};

/// Where a login came from, kept with the session for the "your devices" list.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub remote_addr: Option<String>,
}

pub struct Auth {
    pub store: Store,
    pub keys: TokenKeys,
    pub revocations: RevocationList,
    pub registry: Arc<Registry>,
    pub passwords: Passwords,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub leeway_secs: i64,
    /// Absolute session lifetime since the password was typed.
    pub session_max_age_secs: i64,
    /// How long a just-rotated refresh token may be retried (see [`Auth::refresh`]).
    pub refresh_grace_secs: i64,
    /// A new login revokes the user's other sessions (4004).
    pub single_session: bool,
    /// Live sessions one user may hold; a login beyond it revokes the oldest (4001).
    pub max_sessions_per_user: usize,
    /// The revocation-log events this node has applied (or loaded the effect of at
    /// start); [`Auth::catch_up`] applies what is missing.
    pub applied: AppliedLog,
    /// One applier of other nodes' events at a time (the log reader and the backplane).
    pub catching_up: tokio::sync::Mutex<()>,
    /// Taken for writing while the revocations are reloaded from the tables; this node's
    /// own changes take it for reading while they apply and record themselves.
    pub reloading: tokio::sync::RwLock<()>,
    /// When this node last confirmed it had applied every revocation ([`ids::mono_ms`]):
    /// when a read of the log to its end started. [`ids::MONO_NEVER`] until the first.
    pub current_as_of: AtomicI64,
    /// Past this long without that confirmation, tokens are not accepted (fail closed);
    /// 0: keep accepting them (fail open).
    pub stale_after_ms: i64,
    /// session id → last use (ms), not yet written to the database.
    pub last_seen: dashmap::DashMap<String, i64>,
    /// Open sockets one user may hold, in the whole deployment.
    pub max_sockets_per_user: usize,
    /// The other nodes of a cluster (set once, when the backplane starts).
    pub peers: OnceLock<Arc<dyn Peers>>,
    /// Logins and revocations per minute, for the admin overview.
    pub activity: activity::Activity,
}

/// What a revocation did: the sockets closed (on every node that confirmed) and, in a
/// cluster, how many nodes confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    pub closed: usize,
    pub nodes: Option<NodeAcks>,
}

/// When a session being revoked stops working on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// At once: its sockets close and this node refuses its tokens (provisionally, see
    /// `revocation::end_provisionally`) before the database is asked; the answer still
    /// waits for the commit. Only for a session known to be the caller's own (a logout
    /// names the session of the token that asks), since the database has not yet
    /// confirmed whose it is. If the write fails (the database out of reach included),
    /// the token works again and the caller gets the error to retry; its sockets stay
    /// closed, as the user asked.
    Now,
    /// Once the commit says the session was theirs.
    AfterCommit,
}

/// A fresh session: the wire answer and the claims of its access token.
pub struct IssuedSession {
    pub session: Session,
    pub claims: Claims,
}

impl Auth {
    /// The one verification path: signature and claims, then ban, then revocation.
    pub fn authenticate(&self, token: &str) -> Result<Claims> {
        self.check_current()?;
        let claims = self.keys.verify(token)?;
        if let Some(until) = self.revocations.ban(&claims.sub) {
            return Err(Error::Banned { until });
        }
        if self.revocations.is_revoked(&claims) {
            return Err(Error::new(
                ErrorCode::TokenRevoked,
                "the token has been revoked",
            ));
        }
        self.touch(&claims.sid, ids::now_ms());
        Ok(claims)
    }

    pub async fn register(&self, username: &str, password: &str, role: Role) -> Result<User> {
        validate_credentials(username, password)?;
        let hash = self.passwords.hash(password).await?;
        let user = UserRow {
            id: ids::new_id("u"),
            username: username.to_string(),
            role,
            created_at: ids::now_ms(),
            tokens_valid_after_secs: 0,
        };
        if !self.store.create_user(&user, &hash).await? {
            return Err(Error::new(
                ErrorCode::UsernameTaken,
                "that username is taken",
            ));
        }
        Ok(user.to_wire())
    }

    /// Change a user's role. A change revokes every token the user holds in the same
    /// transaction (their sockets close with 4003), so no token carries a stale role.
    /// Returns the user as it now is and whether the role changed.
    /// `audit`: the admin who did it, recorded with the change (a change only).
    pub async fn set_role(
        self: &Arc<Self>,
        user_id: &str,
        role: Role,
        audit: Option<Audit>,
    ) -> Result<(User, bool)> {
        let user_id = user_id.to_string();
        self.detached(move |auth| async move {
            let written = auth
                .store
                .set_role(&user_id, role, "role changed", audit.as_ref())
                .await?
                .ok_or_else(|| Error::not_found("user"))?;
            let change = written.value;
            if let Some(event) = &change.event {
                auth.spread(written.commit.is_ok(), event, 0).await;
            }
            written.commit?;
            Ok((change.user.to_wire(), change.changed))
        })
        .await
    }

    /// Create the admin account, or promote the existing account of that name, but only
    /// if the configured password is that account's password: otherwise whoever
    /// registered the name first would become the admin, keeping their own password.
    pub async fn bootstrap_admin(self: &Arc<Self>, username: &str, password: &str) -> Result<User> {
        validate_credentials(username, password)
            .map_err(|e| Error::internal(format!("--admin-username/--admin-password: {e}")))?;
        let existing = match self.store.user_by_name(username).await? {
            None => match self.register(username, password, Role::Admin).await {
                // Nodes of a cluster starting together: another one created it first.
                Err(e) if e.code() == ErrorCode::UsernameTaken => {
                    self.store.user_by_name(username).await?
                }
                created => return created,
            },
            found => found,
        };
        match existing {
            None => Err(Error::internal(
                "--admin-username: the account vanished while created",
            )),
            Some((user, hash)) => {
                if !self.passwords.verify(password, Some(hash)).await? {
                    return Err(Error::internal(format!(
                        "--admin-username {username:?}: an account with that name already \
                         exists and --admin-password is not its password; refusing to make \
                         it an admin (give that account's password, or choose another name)"
                    )));
                }
                Ok(self.set_role(&user.id, Role::Admin, None).await?.0)
            }
        }
    }

    pub async fn login(
        self: &Arc<Self>,
        username: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<IssuedSession> {
        let bad = || Error::new(ErrorCode::InvalidCredentials, "wrong username or password");
        if !arena_protocol::http::valid_username(username)
            || password.is_empty()
            || password.chars().count() > 128
        {
            // No such account can exist. Still pay for a hash so the timing tells nothing.
            self.passwords.verify(password, None).await?;
            return Err(bad());
        }
        let found = self.store.user_by_name(username).await?;
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        };
        let ok = self.passwords.verify(password, hash).await?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(bad());
        };

        let session_id = ids::new_id("s");
        let refresh_token = ids::random_token(32);
        let refresh_ttl_secs = self.refresh_ttl_secs.min(self.session_max_age_secs);
        let access_ttl_secs = self.access_ttl_secs.min(self.session_max_age_secs);
        let new = NewSession {
            id: session_id.clone(),
            user_id: user.id.clone(),
            user_agent: client.user_agent.map(|ua| ua.chars().take(256).collect()),
            remote_addr: client.remote_addr,
            refresh_hash: ids::sha256_hex(&refresh_token),
            refresh_ttl_ms: refresh_ttl_secs * 1000,
        };
        let policy = SessionPolicy {
            replace_others: self.single_session,
            max_sessions: self.max_sessions_per_user,
            access_ttl_secs,
        };
        let outcome = self
            .detached(move |auth| async move {
                let written = auth.store.create_session(&new, &policy).await?;
                if let CreateOutcome::Created { events, .. } = &written.value {
                    for event in events {
                        auth.spread(written.commit.is_ok(), event, 0).await;
                    }
                }
                written.commit?;
                Ok(written.value)
            })
            .await?;
        // The token says what the session's own transaction saw: a demotion or a ban
        // that committed before it is visible here; one after it revoked this session.
        let (user, now) = match outcome {
            CreateOutcome::Created { user, now, .. } => (user, now),
            CreateOutcome::Banned(ban) => return Err(banned(&ban)),
            CreateOutcome::NoUser => return Err(bad()),
        };
        let auth_time = now / 1000;
        let (access_token, claims) = self.keys.issue(
            &TokenSubject {
                user_id: &user.id,
                username: &user.username,
                role: user.role,
                session_id: &session_id,
                auth_time,
            },
            auth_time,
            access_ttl_secs,
        )?;
        self.touch(&session_id, now);
        self.activity.login(now);
        Ok(IssuedSession {
            session: self.session_answer(
                access_token,
                &claims,
                refresh_token,
                refresh_ttl_secs,
                user.to_wire(),
            ),
            claims,
        })
    }

    /// Rotate a refresh token.
    ///
    /// The rule for two honest refreshes racing (two tabs, a retry after a lost answer):
    /// a token's successor is derived from it (HMAC under the keyring's chain key), and
    /// the access token minted with it is derived from the same inputs. Presenting the
    /// immediately previous token again within `--refresh-grace-secs` of its rotation,
    /// while its successor is still unspent, returns exactly the same pair. Outside that
    /// window, or once the successor has itself been used, a spent token is theft: the
    /// session is revoked and its sockets closed with 4001.
    pub async fn refresh(self: &Arc<Self>, refresh_token: &str) -> Result<IssuedSession> {
        let invalid = || Error::new(ErrorCode::RefreshInvalid, "the refresh token is not valid");
        // Every refresh token this server issues is 32 random bytes in base64url (43
        // characters); anything else is refused before it costs a hash or the database.
        if refresh_token.len() != 43
            || !refresh_token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid());
        }
        let now = ids::now_ms();
        let chain = self.keys.chain_key();
        let successor = ids::hmac_token(&chain, refresh_token);
        let old_hash = ids::sha256_hex(refresh_token);
        let new_hash = ids::sha256_hex(&successor);
        let outcome = self
            .detached(move |auth| async move {
                let rotation = Rotation {
                    old_hash: &old_hash,
                    new_hash: &new_hash,
                    // Recorded with the session before the token is handed out.
                    access_expires_secs: now / 1000 + auth.access_ttl_secs,
                    refresh_ttl_ms: auth.refresh_ttl_secs * 1000,
                    max_age_secs: auth.session_max_age_secs,
                    grace_ms: auth.refresh_grace_secs * 1000,
                    now,
                };
                let written = auth.store.rotate_refresh(&rotation).await?;
                if let RefreshOutcome::Reused(theft) = &written.value {
                    tracing::warn!(event = ?theft.event, "refresh token reused: session revoked");
                    auth.spread(written.commit.is_ok(), theft, 0).await;
                }
                written.commit?;
                Ok(written.value)
            })
            .await?;
        let (session, user, rotated_at) = match outcome {
            RefreshOutcome::Invalid | RefreshOutcome::Reused(_) => return Err(invalid()),
            RefreshOutcome::TooOld => {
                return Err(Error::new(
                    ErrorCode::RefreshInvalid,
                    "the session has reached its maximum age; log in again",
                ))
            }
            RefreshOutcome::Rotated {
                session,
                user,
                rotated_at,
            }
            | RefreshOutcome::Replayed {
                session,
                user,
                rotated_at,
            } => (session, user, rotated_at),
        };
        // Everything below depends only on the presented token and the rotation's time,
        // so a replay within the grace window mints the identical answer.
        let iat = rotated_at / 1000;
        let session_ends = session.auth_time_secs + self.session_max_age_secs;
        let jti = ids::hmac_token(&chain, &format!("jti:{refresh_token}"))[..16].to_string();
        let (access_token, claims) = self.keys.issue_with_id(
            &TokenSubject {
                user_id: &user.id,
                username: &user.username,
                role: user.role,
                session_id: &session.id,
                auth_time: session.auth_time_secs,
            },
            iat,
            self.access_ttl_secs.min(session_ends - iat).max(1),
            jti,
        )?;
        self.touch(&session.id, now);
        let refresh_expires_in = self.refresh_ttl_secs.min(session_ends - iat).max(0);
        Ok(IssuedSession {
            session: self.session_answer(
                access_token,
                &claims,
                successor,
                refresh_expires_in,
                user.to_wire(),
            ),
            claims,
        })
    }

    /// The caller's live sessions, with their open socket counts.
    pub async fn sessions(&self, claims: &Claims) -> Result<Vec<SessionInfo>> {
        self.sessions_of(&claims.sub, Some(&claims.sid)).await
    }

    /// A user's live sessions, with their open socket counts (on every live node);
    /// `current` marks the session `current_sid`, when given.
    pub async fn sessions_of(
        &self,
        user_id: &str,
        current_sid: Option<&str>,
    ) -> Result<Vec<SessionInfo>> {
        let rows = self.store.live_sessions(user_id, ids::now_ms()).await?;
        let mut sockets = self.registry.sockets_by_session(user_id);
        if let Some(peers) = self.peers.get() {
            for (session, n) in peers.sockets_by_session(user_id).await {
                *sockets.entry(session).or_default() += n;
            }
        }
        Ok(rows
            .into_iter()
            .map(|s| SessionInfo {
                last_seen_at: self
                    .last_seen
                    .get(&s.id)
                    .map_or(s.last_seen_at, |t| (*t).max(s.last_seen_at)),
                sockets: sockets.get(&s.id).copied().unwrap_or(0) as u64,
                current: current_sid == Some(s.id.as_str()),
                created_at: s.created_at,
                user_agent: s.user_agent,
                remote_addr: s.remote_addr,
                session_id: s.id,
            })
            .collect())
    }

    /// Note that a session was just used. Kept in memory and written in batches by
    /// [`Auth::flush_last_seen`], so a request costs no database write.
    pub fn touch(&self, session_id: &str, now: i64) {
        match self.last_seen.get_mut(session_id) {
            Some(mut t) => *t = (*t).max(now),
            None => {
                self.last_seen.insert(session_id.to_string(), now);
            }
        }
    }

    /// Write the batched `last_seen_at` values.
    pub async fn flush_last_seen(&self) -> Result<usize> {
        let batch: Vec<(String, i64)> = self
            .last_seen
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        self.store.touch_sessions(&batch).await?;
        for (sid, t) in &batch {
            self.last_seen.remove_if(sid, |_, v| *v == *t);
        }
        Ok(batch.len())
    }

    /// Logout: this session, or with `all` every session of the user.
    pub async fn logout(self: &Arc<Self>, claims: &Claims, all: bool) -> Result<Revoked> {
        if all {
            return self
                .revoke_user(
                    &claims.sub,
                    CloseCode::SessionRevoked,
                    "logged out",
                    None,
                    None,
                )
                .await;
        }
        self.end_session(
            &claims.sub,
            &claims.sid,
            CloseCode::SessionRevoked,
            Ending::Now,
            None,
        )
        .await
    }

    /// Revoke one session of a user; `not_found` when it is not theirs. `audit`: the
    /// admin action it is, recorded in the same transaction.
    pub async fn revoke_session(
        self: &Arc<Self>,
        user_id: &str,
        session_id: &str,
        close: CloseCode,
        audit: Option<Audit>,
    ) -> Result<Revoked> {
        self.end_session(user_id, session_id, close, Ending::AfterCommit, audit)
            .await
    }

    async fn end_session(
        self: &Arc<Self>,
        user_id: &str,
        session_id: &str,
        close: CloseCode,
        ending: Ending,
        audit: Option<Audit>,
    ) -> Result<Revoked> {
        let (user_id, session_id) = (user_id.to_string(), session_id.to_string());
        self.detached(move |auth| async move {
            // Ending::Now: the mark and the close requests are made when `join!` first
            // polls `ended_here`, before the write is started; the write does not wait
            // for the close frames.
            let ended_here = async {
                match ending {
                    Ending::Now => {
                        let (mark, closed) = revocation::end_provisionally(
                            &auth.revocations,
                            &auth.registry,
                            &user_id,
                            &session_id,
                            close,
                        )
                        .await;
                        (Some(mark), closed)
                    }
                    Ending::AfterCommit => (None, 0),
                }
            };
            let reason = if audit.is_some() {
                "ended by an admin"
            } else {
                "logout"
            };
            let write = auth.store.revoke_session(
                &user_id,
                &session_id,
                reason,
                close,
                ids::now_ms(),
                audit.as_ref(),
            );
            // A write that failed changed nothing: the provisional mark goes with
            // `_provisional` and the token works again.
            let ((_provisional, closed_before), written) = tokio::join!(ended_here, write);
            let written = written?;
            let Some(event) = &written.value else {
                written.commit?;
                return Err(Error::not_found("session"));
            };
            let revoked = auth
                .spread(written.commit.is_ok(), event, closed_before)
                .await;
            written.commit?;
            Ok(revoked)
        })
        .await
    }

    /// Revoke every token and session of a user (and with `ban`, ban them: `Some(None)`
    /// permanently, `Some(Some(until))` until then). `not_found` for an unknown user.
    /// `audit`: the admin action it is, recorded in the same transaction.
    pub async fn revoke_user(
        self: &Arc<Self>,
        user_id: &str,
        close: CloseCode,
        reason: &str,
        ban: Option<Option<i64>>,
        audit: Option<Audit>,
    ) -> Result<Revoked> {
        let (user_id, reason) = (user_id.to_string(), reason.to_string());
        self.detached(move |auth| async move {
            let written = auth
                .store
                .revoke_user(&user_id, &reason, close, ban, audit.as_ref())
                .await?
                .ok_or_else(|| Error::not_found("user"))?;
            let revoked = auth.spread(written.commit.is_ok(), &written.value, 0).await;
            written.commit?;
            Ok(revoked)
        })
        .await
    }

    /// Lift a ban. If the commit's outcome is unknown, the database is asked what it
    /// holds now; while that cannot be known the ban stays in force here (fail closed).
    /// Racing bans and unbans end in commit order: each carries its log id, and an older
    /// one never overrides a newer one in memory.
    pub async fn unban(self: &Arc<Self>, user_id: &str, audit: Option<Audit>) -> Result<()> {
        let user_id = user_id.to_string();
        self.detached(move |auth| async move {
            let written = auth.store.unban(&user_id, audit.as_ref()).await?;
            let Some(event) = &written.value else {
                return Err(Error::not_found("user"));
            };
            let lifted = match &written.commit {
                Ok(()) => true,
                Err(_) => matches!(auth.store.ban_of(&user_id, ids::now_ms()).await, Ok(None)),
            };
            if lifted {
                auth.spread(written.commit.is_ok(), event, 0).await;
            }
            written.commit?;
            Ok(())
        })
        .await
    }

    /// Delete sessions, refresh tokens and bans that can no longer matter (see
    /// [`Store::prune`]): an ended session goes once no token of it can be accepted any
    /// more (its last `exp` plus the leeway has passed: from then on its revocation needs
    /// no record), a spent refresh token a day after its own expiry (until then,
    /// presenting it again still counts as theft). Returns how many rows went.
    pub async fn prune_database(&self) -> Result<u64> {
        // The database's clock: what the others compare with (this node's may be stepped).
        let now = self.store.now_ms().await?;
        self.store
            .prune(
                now,
                now / 1000 - self.leeway_secs - 1,
                now - 86_400_000,
                1_000,
            )
            .await
    }

    /// Run a change and its application to memory as a task of its own, which runs to
    /// the end even if the request that started it is dropped (see the module doc).
    async fn detached<T, Fut>(self: &Arc<Self>, work: impl FnOnce(Arc<Auth>) -> Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        tokio::spawn(work(self.clone()))
            .await
            .map_err(|e| Error::internal(format!("revocation task failed: {e}")))?
    }

    /// A change this node made (`closed_before`: sockets it already closed for it, see
    /// [`Ending::Now`]): apply it here and, in a cluster, publish it and wait
    /// for the other live nodes, both at once (the answer waits for the slower). An
    /// event whose commit's outcome is unknown is applied here (fail closed) but not
    /// published: if it did commit, the other nodes read it from the log.
    async fn spread(&self, committed: bool, event: &LoggedEvent, closed_before: usize) -> Revoked {
        let here = async {
            // Held while applying and recording, so a reload of the revocations (see
            // `follow`) never runs between the two: it would load tables that predate
            // this commit, then find the event recorded and never apply it again.
            let steady = self.reloading.read().await;
            let closed = closed_before + self.apply(event).await;
            // An id is this event's only if it committed: a rolled-back transaction's id
            // goes to the next one, which must not look applied already.
            if committed && event.id != 0 {
                // Counted once, here where it was made.
                self.activity
                    .revoked(event.event.sessions_revoked(), ids::now_ms());
                let placed = self.applied.record(event.id, &event.tag, closed);
                drop(steady);
                if !placed {
                    // Its id is applied here already, as another event: the log went
                    // back (a failover, a restore) and this node has not noticed yet.
                    // Read it (which reloads) before answering.
                    if let Err(e) = self.catch_up().await {
                        tracing::warn!(error = %e, "could not check the revocation log after a reused id");
                    }
                }
                // Its id may show an event this node never received (a publish lost
                // between another node's commit and Redis): read the log before
                // answering, so the answer never comes from a node missing it.
                self.fill_gap_below(event.id).await;
            }
            closed
        };
        let Some(peers) = self.peers.get() else {
            return Revoked {
                closed: here.await,
                nodes: None,
            };
        };
        let (closed, others) = if committed {
            tokio::join!(here, peers.deliver(event))
        } else {
            (here.await, Default::default())
        };
        Revoked {
            closed: closed + others.closed,
            nodes: Some(NodeAcks {
                acked: 1 + others.acked as u64,
                live: 1 + others.live.max(others.acked) as u64,
            }),
        }
    }

    async fn apply(&self, event: &LoggedEvent) -> usize {
        if let revocation::RevocationEvent::KeysChanged {} = event.event {
            if let Err(e) = self.reload_keys().await {
                tracing::warn!(error = %e, "could not reload the signing keyring; will retry");
            }
        }
        revocation::apply(event, &self.revocations, &self.registry).await
    }

    /// Read the shared signing keyring again (another server rotated or pruned it). On
    /// failure the ring in use stays and `keys.reload_pending()` says so; the log reader
    /// retries.
    pub async fn reload_keys(&self) -> Result<()> {
        self.keys.reload(&self.store).await
    }

    fn session_answer(
        &self,
        access_token: String,
        claims: &Claims,
        refresh_token: String,
        refresh_expires_in: i64,
        user: User,
    ) -> Session {
        Session {
            access_token,
            token_type: "Bearer".into(),
            expires_in: (claims.exp - claims.iat).max(0) as u64,
            refresh_token,
            refresh_expires_in: refresh_expires_in.max(0) as u64,
            session_id: claims.sid.clone(),
            user,
            device_token: None,
        }
    }
}

fn banned(ban: &BanRow) -> Error {
    Error::Banned {
        until: ban.banned_until,
    }
}

pub fn validate_credentials(username: &str, password: &str) -> Result<()> {
    if !arena_protocol::http::valid_username(username) {
        return Err(Error::invalid(
            "field `username` must be 3-32 of A-Z, a-z, 0-9, _ and -",
        ));
    }
    if !arena_protocol::http::valid_password(password) {
        return Err(Error::invalid("field `password` must be 8-128 characters"));
    }
    Ok(())
}
