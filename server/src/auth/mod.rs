//! Accounts, sessions and the token they share across HTTP and WebSocket.
//!
//! [`Auth`] owns the rules: register, login, refresh (rotation with reuse detection),
//! logout, kick, ban, and [`Auth::authenticate`], the single check every request and
//! every upgrade passes (signature and claims, then ban, then revocation). Handlers only
//! translate HTTP to these calls. Each change is written to the database first, then
//! applied through [`revocation::apply`], then answered.

pub mod admission;
pub mod extract;
pub mod keys;
pub mod password;
pub mod revocation;
pub mod tokens;

use std::sync::Arc;

use arena_protocol::http::{Session, SessionInfo, User};
use arena_protocol::{CloseCode, ErrorCode, Role};

use crate::error::{Error, Result};
use crate::ids;
use crate::registry::Registry;
use crate::store::{BanRow, CreateOutcome, NewSession, RefreshOutcome, Rotation, Store, UserRow};

pub use extract::AuthUser;
use password::Passwords;
use revocation::{RevocationEvent, RevocationList};
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
    /// session id → last use (ms), not yet written to the database.
    pub last_seen: dashmap::DashMap<String, i64>,
}

/// A fresh session: the wire answer and the claims of its access token.
pub struct IssuedSession {
    pub session: Session,
    pub claims: Claims,
}

impl Auth {
    /// The one verification path: signature and claims, then ban, then revocation.
    pub fn authenticate(&self, token: &str) -> Result<Claims> {
        let claims = self.keys.verify(token)?;
        if self.revocations.ban(&claims.sub).is_some() {
            return Err(Error::new(ErrorCode::Banned, "this account is banned"));
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

    /// Load what the lists must hold after a restart.
    pub async fn load_revocations(&self) -> Result<()> {
        let now = ids::now_secs();
        let since = now - self.leeway_secs;
        for s in self.store.live_revoked_sessions(since).await? {
            self.revocations.revoke_session(&s);
        }
        for (user, mark) in self.store.user_marks(since - self.access_ttl_secs).await? {
            self.revocations.mark_user(&user, mark);
        }
        for ban in self.store.active_bans(ids::now_ms()).await? {
            self.revocations.set_ban(&ban.user_id, ban.banned_until);
        }
        Ok(())
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

    /// Change a user's role. A changed role revokes every token the user holds (their
    /// sockets close with 4001), so no token carries a stale role.
    pub async fn set_role(&self, user_id: &str, role: Role) -> Result<bool> {
        self.existing_user(user_id).await?;
        let changed = self.store.set_role(user_id, role).await?;
        if changed {
            self.revoke_user(user_id, CloseCode::SessionRevoked, "role changed", None)
                .await?;
        }
        Ok(changed)
    }

    /// Create the admin account, or promote an existing user (its password is left as it
    /// is). Promotion is a role change, so it revokes that user's sessions.
    pub async fn bootstrap_admin(&self, username: &str, password: &str) -> Result<User> {
        match self.store.user_by_name(username).await? {
            None => self.register(username, password, Role::Admin).await,
            Some((user, _)) => {
                self.set_role(&user.id, Role::Admin).await?;
                Ok(User {
                    role: Role::Admin,
                    ..user.to_wire()
                })
            }
        }
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<IssuedSession> {
        let bad = || Error::new(ErrorCode::InvalidCredentials, "wrong username or password");
        if username.is_empty() || password.is_empty() || password.chars().count() > 128 {
            // Still pay for a hash so the answer's timing tells nothing.
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

        let now = ids::now_ms();
        let session_id = ids::new_id("s");
        let refresh_token = ids::random_token(32);
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
            self.access_ttl_secs.min(self.session_max_age_secs),
        )?;
        let refresh_ttl_ms = self.refresh_ttl_secs.min(self.session_max_age_secs) * 1000;
        let new = NewSession {
            id: session_id.clone(),
            user_id: user.id.clone(),
            auth_time_secs: auth_time,
            user_agent: client.user_agent.map(|ua| ua.chars().take(256).collect()),
            remote_addr: client.remote_addr,
            refresh_hash: ids::sha256_hex(&refresh_token),
            refresh_expires_at: now + refresh_ttl_ms,
            access_expires_secs: claims.exp,
        };
        match self
            .store
            .create_session(&new, self.single_session, now)
            .await?
        {
            CreateOutcome::Banned(ban) => return Err(banned(&ban)),
            CreateOutcome::Created { replaced } if !replaced.is_empty() => {
                self.apply(RevocationEvent::Sessions {
                    sessions: replaced,
                    close: CloseCode::SessionReplaced,
                })
                .await;
            }
            CreateOutcome::Created { .. } => {}
        }
        self.touch(&session_id, now);
        Ok(IssuedSession {
            session: self.session_answer(
                access_token,
                &claims,
                refresh_token,
                refresh_ttl_ms / 1000,
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
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedSession> {
        let invalid = || Error::new(ErrorCode::RefreshInvalid, "the refresh token is not valid");
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(invalid());
        }
        let now = ids::now_ms();
        let chain = self.keys.chain_key();
        let successor = ids::hmac_token(chain, refresh_token);
        let rotation = Rotation {
            old_hash: &ids::sha256_hex(refresh_token),
            new_hash: &ids::sha256_hex(&successor),
            // Recorded with the session before the token is handed out.
            access_expires_secs: now / 1000 + self.access_ttl_secs,
            refresh_ttl_ms: self.refresh_ttl_secs * 1000,
            max_age_secs: self.session_max_age_secs,
            grace_ms: self.refresh_grace_secs * 1000,
            now,
        };
        let (session, user, rotated_at) = match self.store.rotate_refresh(&rotation).await? {
            RefreshOutcome::Invalid => return Err(invalid()),
            RefreshOutcome::TooOld => {
                return Err(Error::new(
                    ErrorCode::RefreshInvalid,
                    "the session has reached its maximum age; log in again",
                ))
            }
            RefreshOutcome::Reused(revoked) => {
                tracing::warn!(user_id = %revoked.user_id, session_id = %revoked.session_id,
                    "refresh token reused: session revoked");
                self.apply(RevocationEvent::Sessions {
                    sessions: vec![revoked],
                    close: CloseCode::SessionRevoked,
                })
                .await;
                return Err(invalid());
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
        let jti = ids::hmac_token(chain, &format!("jti:{refresh_token}"))[..16].to_string();
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
        let rows = self.store.live_sessions(&claims.sub, ids::now_ms()).await?;
        let sockets = self.registry.sockets_by_session(&claims.sub);
        Ok(rows
            .into_iter()
            .map(|s| SessionInfo {
                last_seen_at: self
                    .last_seen
                    .get(&s.id)
                    .map_or(s.last_seen_at, |t| (*t).max(s.last_seen_at)),
                sockets: sockets.get(&s.id).copied().unwrap_or(0) as u64,
                current: s.id == claims.sid,
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
    pub async fn logout(&self, claims: &Claims, all: bool) -> Result<usize> {
        if all {
            return self
                .revoke_user(&claims.sub, CloseCode::SessionRevoked, "logged out", None)
                .await;
        }
        self.revoke_session(&claims.sub, &claims.sid, CloseCode::SessionRevoked)
            .await
    }

    /// Revoke one session of a user; `not_found` when it is not theirs.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        close: CloseCode,
    ) -> Result<usize> {
        let revoked = self
            .store
            .revoke_session(user_id, session_id, "logout", ids::now_ms())
            .await?
            .ok_or_else(|| Error::not_found("session"))?;
        Ok(self
            .apply(RevocationEvent::Sessions {
                sessions: vec![revoked],
                close,
            })
            .await)
    }

    /// Revoke every token and session of a user (and optionally ban them).
    pub async fn revoke_user(
        &self,
        user_id: &str,
        close: CloseCode,
        reason: &str,
        ban: Option<Option<i64>>,
    ) -> Result<usize> {
        let now = ids::now_ms();
        let ban_row = ban.map(|until| BanRow {
            user_id: user_id.to_string(),
            reason: Some(reason.to_string()),
            banned_at: now,
            banned_until: until,
        });
        let sessions = self
            .store
            .revoke_user(user_id, reason, ban_row.as_ref(), now)
            .await?;
        Ok(self
            .apply(RevocationEvent::User {
                user_id: user_id.to_string(),
                before_secs: now / 1000,
                sessions,
                close,
                reason: reason.to_string(),
                ban,
            })
            .await)
    }

    /// The user with this id, or `not_found`.
    pub async fn existing_user(&self, user_id: &str) -> Result<UserRow> {
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }

    pub async fn unban(&self, user_id: &str) -> Result<()> {
        self.store.unban(user_id).await?;
        self.apply(RevocationEvent::Unban {
            user_id: user_id.to_string(),
        })
        .await;
        Ok(())
    }

    async fn apply(&self, event: RevocationEvent) -> usize {
        revocation::apply(&event, &self.revocations, &self.registry).await
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
        }
    }
}

fn banned(ban: &BanRow) -> Error {
    let until = match ban.banned_until {
        Some(t) => format!(" until {t}"),
        None => String::new(),
    };
    Error::new(ErrorCode::Banned, format!("this account is banned{until}"))
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
