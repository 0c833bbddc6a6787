//! Sessions and their refresh tokens: starting one (single-session replacement and the
//! per-user cap in the same transaction), rotating a refresh token (the grace rule, reuse
//! as theft), ending one or all of a user's, and what the "your devices" list reads and
//! the batched `last_seen_at` writes. The concurrency rules are `super`'s.

use sqlx::Row;

use super::*;

/// One refresh: the presented token's hash, its successor's, and the rules.
pub struct Rotation<'a> {
    pub old_hash: &'a str,
    /// The successor is derived from the presented token, so a retry computes the same.
    pub new_hash: &'a str,
    /// The latest `exp` the new access token may have (recorded with the session).
    pub access_expires_secs: i64,
    pub refresh_ttl_ms: i64,
    /// Absolute session lifetime since `auth_time`.
    pub max_age_secs: i64,
    /// How long after a rotation the previous token may be presented again.
    pub grace_ms: i64,
    pub now: i64,
}

/// What a refresh found.
pub enum RefreshOutcome {
    /// The token was current: it is now spent and its successor stored.
    Rotated {
        session: SessionRow,
        user: UserRow,
        rotated_at: i64,
    },
    /// The immediately previous token, within the grace window: answer as at `rotated_at`.
    Replayed {
        session: SessionRow,
        user: UserRow,
        rotated_at: i64,
    },
    /// Unknown, expired, or its session is gone or revoked.
    Invalid,
    /// The session has reached its absolute lifetime and is now ended.
    TooOld,
    /// The token was already spent: the session is now revoked (theft detection).
    Reused(LoggedEvent),
}

/// What starting a session did.
pub enum CreateOutcome {
    /// Started, for the user as this transaction saw them (role, name), at `now` (ms).
    Created {
        user: UserRow,
        now: i64,
        /// What it revoked, logged: in single-session mode the user's other sessions
        /// (4004), and the oldest sessions beyond the per-user limit (4001).
        events: Vec<LoggedEvent>,
    },
    /// Nothing written: the user is banned.
    Banned(BanRow),
    /// Nothing written: the user no longer exists.
    NoUser,
}

/// How a new session is started.
pub struct SessionPolicy {
    /// Revoke the user's other sessions (single-session mode).
    pub replace_others: bool,
    /// Live sessions a user may hold; the oldest go first.
    pub max_sessions: usize,
    /// Access-token lifetime: the new session records `now + access_ttl` as the latest
    /// `exp` of its tokens.
    pub access_ttl_secs: i64,
}

impl Store {
    /// Start a session with its first refresh token, unless the user is banned.
    ///
    /// The user row is locked first and read again, and the session's times are taken
    /// after the lock: the caller mints the access token from what this transaction saw
    /// (role, name, now), so a login overlapping a demotion or a ban either commits
    /// before it (and is swept by it) or sees it. With `replace_others` the user's other
    /// sessions are revoked in the same transaction; beyond `max_sessions` the oldest are.
    pub async fn create_session(
        &self,
        s: &NewSession,
        policy: &SessionPolicy,
    ) -> Result<Write<CreateOutcome>> {
        let mut tx = self.pool.begin().await?;
        let Some(user) = lock_user(&mut tx, &s.user_id).await? else {
            return Ok(Write::known(CreateOutcome::NoUser));
        };
        let now = crate::ids::now_ms();
        if let Some(ban) = active_ban(&mut tx, &s.user_id, now).await? {
            tx.rollback().await?;
            return Ok(Write::known(CreateOutcome::Banned(ban)));
        }
        let replaced = if policy.replace_others {
            revoke_sessions_where(&mut tx, "user_id = $3", &s.user_id, None, now, "replaced")
                .await?
        } else {
            Vec::new()
        };
        // Keep room for the new session: revoke the oldest live ones beyond the limit.
        let live: Vec<String> = sqlx::query(
            "SELECT id FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
             ORDER BY created_at DESC, id DESC",
        )
        .bind(&s.user_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<sqlx::Result<_>>()?;
        let mut evicted = Vec::new();
        for old in live.iter().skip(policy.max_sessions.max(1) - 1) {
            evicted.extend(
                revoke_sessions_where(&mut tx, "id = $3", old, None, now, "session_limit").await?,
            );
        }
        let refresh_expires_at = now + s.refresh_ttl_ms;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, auth_time_secs, last_seen_at,
                 user_agent, remote_addr, expires_at, access_expires_secs)
             VALUES ($1, $2, $3, $4, $3, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(now)
        .bind(now / 1000)
        .bind(&s.user_agent)
        .bind(&s.remote_addr)
        .bind(refresh_expires_at)
        .bind(now / 1000 + policy.access_ttl_secs)
        .execute(&mut *tx)
        .await?;
        insert_refresh(&mut tx, &s.refresh_hash, &s.id, now, refresh_expires_at).await?;
        let mut events = Vec::new();
        for (sessions, close) in [
            (replaced, CloseCode::SessionReplaced),
            (evicted, CloseCode::SessionRevoked),
        ] {
            if !sessions.is_empty() {
                let event = RevocationEvent::Sessions { sessions, close };
                events.push(self.log(&mut tx, event).await?);
            }
        }
        let outcome = CreateOutcome::Created { user, now, events };
        Ok(Write::commit(tx, outcome).await)
    }

    /// Spend a refresh token and issue its successor, or recognise a retry within the
    /// grace window, or detect reuse. See [`Rotation`] for the inputs.
    ///
    /// The session row is taken with a guarded update (`revoked_at IS NULL`) before
    /// anything is issued, and stays locked until commit: a logout racing this refresh
    /// either waits and then sees (and records) the extended session, or came first, and
    /// then the refresh finds no live session and changes nothing.
    pub async fn rotate_refresh(&self, r: &Rotation<'_>) -> Result<Write<RefreshOutcome>> {
        let now = r.now;
        let mut tx = self.pool.begin().await?;
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
             RETURNING session_id",
        )
        .bind(now)
        .bind(r.old_hash)
        .fetch_optional(&mut *tx)
        .await?;

        let Some(spent) = spent else {
            // Not current: unknown, expired, already spent. Spent is theft, unless this is
            // the immediately previous token retried within the grace window.
            let row =
                sqlx::query("SELECT session_id, used_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(r.old_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (session_id, used_at) = match row {
                Some(row) => (
                    row.try_get::<String, _>("session_id")?,
                    row.try_get::<Option<i64>, _>("used_at")?,
                ),
                None => {
                    tx.rollback().await?;
                    return Ok(Write::known(RefreshOutcome::Invalid));
                }
            };
            let Some(used_at) = used_at else {
                tx.rollback().await?; // expired, never used
                return Ok(Write::known(RefreshOutcome::Invalid));
            };
            if r.grace_ms > 0 && now - used_at <= r.grace_ms {
                let successor_unspent = sqlx::query(
                    "SELECT 1 AS one FROM refresh_tokens
                     WHERE token_hash = $1 AND session_id = $2 AND used_at IS NULL",
                )
                .bind(r.new_hash)
                .bind(&session_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if successor_unspent {
                    let found = live_session_and_user(&mut tx, &session_id).await?;
                    tx.rollback().await?;
                    return Ok(Write::known(match found {
                        Some((session, user)) => RefreshOutcome::Replayed {
                            session,
                            user,
                            rotated_at: used_at,
                        },
                        None => RefreshOutcome::Invalid,
                    }));
                }
            }
            let revoked =
                revoke_sessions_where(&mut tx, "id = $3", &session_id, None, now, "refresh_reuse")
                    .await?;
            let outcome = if revoked.is_empty() {
                // Already revoked earlier: nothing new to close, the answer is the same.
                RefreshOutcome::Invalid
            } else {
                let event = RevocationEvent::Sessions {
                    sessions: revoked,
                    close: CloseCode::SessionRevoked,
                };
                RefreshOutcome::Reused(self.log(&mut tx, event).await?)
            };
            return Ok(Write::commit(tx, outcome).await);
        };

        let session_id: String = spent.try_get("session_id")?;
        // Lock the session, live only: from here until commit no revocation can slip in.
        let row = sqlx::query(&format!(
            "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND revoked_at IS NULL
             RETURNING {}",
            SessionRow::BARE_COLUMNS
        ))
        .bind(now)
        .bind(&session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session) = row.as_ref().map(SessionRow::from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(Write::known(RefreshOutcome::Invalid));
        };
        let session_ends_ms = (session.auth_time_secs + r.max_age_secs) * 1000;
        if session_ends_ms <= now {
            revoke_sessions_where(&mut tx, "id = $3", &session.id, None, now, "max_age").await?;
            return Ok(Write::commit(tx, RefreshOutcome::TooOld).await);
        }
        let refresh_expires_at = (now + r.refresh_ttl_ms).min(session_ends_ms);
        insert_refresh(&mut tx, r.new_hash, &session.id, now, refresh_expires_at).await?;
        let extended = sqlx::query(
            "UPDATE sessions SET expires_at = $1,
                 access_expires_secs = CASE WHEN access_expires_secs > $2
                                            THEN access_expires_secs ELSE $2 END
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(refresh_expires_at)
        .bind(r.access_expires_secs)
        .bind(&session.id)
        .execute(&mut *tx)
        .await?;
        if extended.rows_affected() != 1 {
            // Cannot happen while we hold the row; never issue a token for a dead session.
            tx.rollback().await?;
            return Ok(Write::known(RefreshOutcome::Invalid));
        }
        let user = sqlx::query(&format!(
            "SELECT {} FROM users WHERE id = $1",
            UserRow::COLUMNS
        ))
        .bind(&session.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let outcome = RefreshOutcome::Rotated {
            session,
            user: UserRow::from_row(&user)?,
            rotated_at: now,
        };
        Ok(Write::commit(tx, outcome).await)
    }

    /// Revoke one session of `user_id` (its sockets to be closed with `close`), logged.
    /// `None` when it does not exist or is not theirs; an already revoked session is
    /// returned again, unlogged (id 0), so the caller can re-apply it. With `audit` (an
    /// admin ended it) the user row is locked and the action recorded, if it revoked.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: &str,
        close: CloseCode,
        now: i64,
        audit: Option<&Audit>,
    ) -> Result<Write<Option<LoggedEvent>>> {
        let mut tx = self.pool.begin().await?;
        let target = match audit {
            None => None,
            Some(_) => match lock_user(&mut tx, user_id).await? {
                Some(user) => Some(user),
                None => return Ok(Write::commit(tx, None).await),
            },
        };
        let mut revoked = revoke_sessions_where(
            &mut tx,
            "id = $3 AND user_id = $4",
            session_id,
            Some(user_id),
            now,
            reason,
        )
        .await?;
        if revoked.is_empty() {
            // Either not ours, or already revoked (a repeated logout): look it up.
            let row = sqlx::query(
                "SELECT id, user_id, access_expires_secs FROM sessions
                 WHERE id = $1 AND user_id = $2",
            )
            .bind(session_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = row {
                revoked.push(RevokedSession::from_row(&r)?);
            }
            let repeat = (!revoked.is_empty()).then(|| {
                let event = RevocationEvent::Sessions {
                    sessions: revoked,
                    close,
                };
                LoggedEvent::unlogged(event, &self.origin)
            });
            return Ok(Write::commit(tx, repeat).await);
        }
        if let (Some(audit), Some(target)) = (audit, &target) {
            audit::record(&mut tx, audit, target, now).await?;
        }
        let event = RevocationEvent::Sessions {
            sessions: revoked,
            close,
        };
        let logged = self.log(&mut tx, event).await?;
        Ok(Write::commit(tx, Some(logged)).await)
    }

    /// Revoke every session of a user and mark tokens issued before now invalid
    /// (logout-everywhere, kick, ban), optionally recording a ban, all under the user
    /// row's lock. `None` when the user does not exist. Returns the mark (seconds) and
    /// the sessions it revoked.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        reason: &str,
        close: CloseCode,
        ban: Option<Option<i64>>,
        audit: Option<&Audit>,
    ) -> Result<Option<Write<LoggedEvent>>> {
        let mut tx = self.pool.begin().await?;
        let Some(user) = lock_user(&mut tx, user_id).await? else {
            return Ok(None);
        };
        let now = crate::ids::now_ms();
        if let Some(until) = ban {
            sqlx::query(
                "INSERT INTO bans (user_id, reason, banned_at, banned_until, banned_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id) DO UPDATE
                 SET reason = excluded.reason, banned_at = excluded.banned_at,
                     banned_until = excluded.banned_until, banned_by = excluded.banned_by",
            )
            .bind(user_id)
            .bind(reason)
            .bind(now)
            .bind(until)
            .bind(audit.map(|a| a.actor.id.as_str()))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(audit) = audit {
            audit::record(&mut tx, audit, &user, now).await?;
        }
        let event = revoke_all_of_user(&mut tx, user_id, reason, close, ban, now).await?;
        let logged = self.log(&mut tx, event).await?;
        Ok(Some(Write::commit(tx, logged).await))
    }

    /// A user's sessions that are neither revoked nor past their refresh expiry.
    pub async fn live_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM sessions s
             WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2
             ORDER BY s.created_at",
            SessionRow::COLUMNS
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(SessionRow::from_row)
            .collect::<sqlx::Result<_>>()?)
    }

    /// Write batched `last_seen_at` values (never moving one backwards).
    ///
    /// On PostgreSQL each row in its own statement, outside any transaction: the value is
    /// only a hint, and holding many session rows' locks at once (in whatever order the
    /// batch has) could deadlock against a revocation sweeping the same user's sessions
    /// in another order. SQLite has no row locks, only its one writer, so there the
    /// batch is one transaction: one commit and one fsync, where a statement each was an
    /// fsync each (400 sessions, 400 fsyncs), with the writer held all along and every
    /// logout waiting behind it.
    pub async fn touch_sessions(&self, seen: &[(String, i64)]) -> Result<()> {
        const TOUCH: &str =
            "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1";
        if self.is_sqlite {
            let mut tx = self.pool.begin().await?;
            for (session_id, at) in seen {
                sqlx::query(TOUCH)
                    .bind(at)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(());
        }
        for (session_id, at) in seen {
            sqlx::query(TOUCH)
                .bind(at)
                .bind(session_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
