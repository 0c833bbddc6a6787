//! The database: accounts, sessions, refresh tokens and bans.
//!
//! One [`Store`] over sqlx's `Any` driver serves the embedded SQLite file (the default)
//! and PostgreSQL (for deployments that share one database). The SQL is written once in
//! the dialect both accept (`$n` parameters, `ON CONFLICT`), and schema changes go
//! through the migrations in `server/migrations/`.
//!
//! Every change that touches more than one row runs in one transaction that starts with a
//! write, so on SQLite it takes the write lock first and cannot be overtaken between its
//! read and its write. That is what makes "a login racing a ban" safe: either the login's
//! session exists when the ban revokes all sessions, or the login sees the ban.

mod rows;

use std::path::Path;
use std::str::FromStr;

use arena_protocol::Role;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

pub use rows::{BanRow, NewSession, RevokedSession, SessionRow, UserRow};

use crate::error::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

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
    Reused(RevokedSession),
}

/// What starting a session did.
pub enum CreateOutcome {
    /// Started; in single-session mode, these sessions were revoked in its favour.
    Created { replaced: Vec<RevokedSession> },
    /// Nothing written: the user is banned.
    Banned(BanRow),
}

impl Store {
    /// Open (creating if needed) the database and bring its schema up to date.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let url = match database_url {
            Some(url) => url.to_string(),
            None => {
                let path = data_dir.join("arena.db");
                create_private_file(&path)?;
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        let is_sqlite = url.starts_with("sqlite:");
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 8 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        // WAL (sqlx's default for SQLite) plus synchronous=FULL: a write
                        // the client was told succeeded survives a SIGKILL and a crash.
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| Error::internal(format!("migration: {e}")))?;
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- users ----

    /// Insert a user; `Ok(false)` when the name is taken (ignoring case).
    pub async fn create_user(&self, user: &UserRow, password_hash: &str) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, role, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username_key) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(user.username.to_lowercase())
        .bind(password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<(UserRow, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {}, password_hash FROM users WHERE username_key = $1",
            UserRow::COLUMNS
        ))
        .bind(username.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((UserRow::from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM users WHERE id = $1",
            UserRow::COLUMNS
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(UserRow::from_row).transpose()?)
    }

    /// Set a user's role. Returns whether it changed.
    pub async fn set_role(&self, user_id: &str, role: Role) -> Result<bool> {
        let r = sqlx::query("UPDATE users SET role = $1 WHERE id = $2 AND role <> $1")
            .bind(role.as_str())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- sessions ----

    /// Start a session with its first refresh token, unless the user is banned. With
    /// `replace_others` (single-session mode) the user's other sessions are revoked in
    /// the same transaction, so of two racing logins the later one wins.
    pub async fn create_session(
        &self,
        s: &NewSession,
        replace_others: bool,
        now: i64,
    ) -> Result<CreateOutcome> {
        let mut tx = self.pool.begin().await?;
        // Write first: this takes SQLite's write lock before we read the ban.
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, auth_time_secs, last_seen_at,
                 user_agent, remote_addr, expires_at, access_expires_secs)
             VALUES ($1, $2, $3, $4, $3, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(now)
        .bind(s.auth_time_secs)
        .bind(&s.user_agent)
        .bind(&s.remote_addr)
        .bind(s.refresh_expires_at)
        .bind(s.access_expires_secs)
        .execute(&mut *tx)
        .await?;
        if let Some(ban) = active_ban(&mut tx, &s.user_id, now).await? {
            tx.rollback().await?;
            return Ok(CreateOutcome::Banned(ban));
        }
        insert_refresh(&mut tx, &s.refresh_hash, &s.id, now, s.refresh_expires_at).await?;
        let replaced = if replace_others {
            revoke_sessions_where(
                &mut tx,
                "user_id = $3 AND id <> $4",
                &s.user_id,
                Some(&s.id),
                now,
                "replaced",
            )
            .await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(CreateOutcome::Created { replaced })
    }

    /// Spend a refresh token and issue its successor, or recognise a retry within the
    /// grace window, or detect reuse. See [`Rotation`] for the inputs.
    pub async fn rotate_refresh(&self, r: &Rotation<'_>) -> Result<RefreshOutcome> {
        let now = r.now;
        let mut tx = self.pool.begin().await?;
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(r.old_hash)
        .execute(&mut *tx)
        .await?;

        if spent.rows_affected() == 0 {
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
                    return Ok(RefreshOutcome::Invalid);
                }
            };
            let Some(used_at) = used_at else {
                tx.rollback().await?; // expired, never used
                return Ok(RefreshOutcome::Invalid);
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
                    return Ok(match found {
                        Some((session, user)) => RefreshOutcome::Replayed {
                            session,
                            user,
                            rotated_at: used_at,
                        },
                        None => RefreshOutcome::Invalid,
                    });
                }
            }
            let revoked =
                revoke_sessions_where(&mut tx, "id = $3", &session_id, None, now, "refresh_reuse")
                    .await?;
            tx.commit().await?;
            return Ok(match revoked.into_iter().next() {
                Some(r) => RefreshOutcome::Reused(r),
                // Already revoked earlier: nothing new to close, the answer is the same.
                None => RefreshOutcome::Invalid,
            });
        }

        let session_id: String =
            sqlx::query("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(r.old_hash)
                .fetch_one(&mut *tx)
                .await?
                .try_get("session_id")?;
        let Some((session, user)) = live_session_and_user(&mut tx, &session_id).await? else {
            tx.rollback().await?;
            return Ok(RefreshOutcome::Invalid);
        };
        let session_ends_ms = (session.auth_time_secs + r.max_age_secs) * 1000;
        if session_ends_ms <= now {
            revoke_sessions_where(&mut tx, "id = $3", &session.id, None, now, "max_age").await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::TooOld);
        }
        let refresh_expires_at = (now + r.refresh_ttl_ms).min(session_ends_ms);
        insert_refresh(&mut tx, r.new_hash, &session.id, now, refresh_expires_at).await?;
        sqlx::query(
            "UPDATE sessions SET expires_at = $1, last_seen_at = $2,
                 access_expires_secs = CASE WHEN access_expires_secs > $3
                                            THEN access_expires_secs ELSE $3 END
             WHERE id = $4",
        )
        .bind(refresh_expires_at)
        .bind(now)
        .bind(r.access_expires_secs)
        .bind(&session.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated {
            session,
            user,
            rotated_at: now,
        })
    }

    /// Revoke one session of `user_id`. `None` when it does not exist or is not theirs;
    /// an already revoked session is returned again so the caller can re-apply it.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<RevokedSession>> {
        let mut tx = self.pool.begin().await?;
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
        }
        tx.commit().await?;
        Ok(revoked.into_iter().next())
    }

    /// Revoke every session of a user and mark tokens issued before now invalid
    /// (logout-everywhere, kick, role change). Optionally records a ban in the same
    /// transaction. Returns the sessions it revoked.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        reason: &str,
        ban: Option<&BanRow>,
        now: i64,
    ) -> Result<Vec<RevokedSession>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET tokens_valid_after_secs = $1
             WHERE id = $2 AND tokens_valid_after_secs < $1",
        )
        .bind(now / 1000)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if let Some(ban) = ban {
            sqlx::query(
                "INSERT INTO bans (user_id, reason, banned_at, banned_until) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id) DO UPDATE
                 SET reason = excluded.reason, banned_at = excluded.banned_at,
                     banned_until = excluded.banned_until",
            )
            .bind(user_id)
            .bind(&ban.reason)
            .bind(ban.banned_at)
            .bind(ban.banned_until)
            .execute(&mut *tx)
            .await?;
        }
        let revoked =
            revoke_sessions_where(&mut tx, "user_id = $3", user_id, None, now, reason).await?;
        tx.commit().await?;
        Ok(revoked)
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
    pub async fn touch_sessions(&self, seen: &[(String, i64)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (session_id, at) in seen {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
            )
            .bind(at)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn unban(&self, user_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM bans WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- loading state at start ----

    /// Revoked sessions whose tokens may still be alive at `now_secs - leeway`.
    pub async fn live_revoked_sessions(&self, since_secs: i64) -> Result<Vec<RevokedSession>> {
        let rows = sqlx::query(
            "SELECT id, user_id, access_expires_secs FROM sessions
             WHERE revoked_at IS NOT NULL AND access_expires_secs >= $1",
        )
        .bind(since_secs)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(RevokedSession::from_row)
            .collect::<sqlx::Result<_>>()?)
    }

    /// Users whose "tokens issued before T" mark is newer than `since_secs`.
    pub async fn user_marks(&self, since_secs: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, tokens_valid_after_secs FROM users WHERE tokens_valid_after_secs >= $1",
        )
        .bind(since_secs)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("tokens_valid_after_secs")?)))
            .collect()
    }

    pub async fn active_bans(&self, now: i64) -> Result<Vec<BanRow>> {
        let rows = sqlx::query(
            "SELECT user_id, reason, banned_at, banned_until FROM bans
             WHERE banned_until IS NULL OR banned_until > $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(BanRow::from_row(r)?)).collect()
    }
}

/// Create the database file readable by its owner only. SQLite gives its -wal and -shm
/// files the same mode, so the whole database stays private.
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map(drop)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", path.display())))
}

/// The session (if not revoked) and its user.
async fn live_session_and_user(
    conn: &mut sqlx::AnyConnection,
    session_id: &str,
) -> sqlx::Result<Option<(SessionRow, UserRow)>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM sessions s WHERE s.id = $1 AND s.revoked_at IS NULL",
        SessionRow::COLUMNS
    ))
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(session) = row.as_ref().map(SessionRow::from_row).transpose()? else {
        return Ok(None);
    };
    let user = sqlx::query(&format!(
        "SELECT {} FROM users WHERE id = $1",
        UserRow::COLUMNS
    ))
    .bind(&session.user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some((session, UserRow::from_row(&user)?)))
}

async fn insert_refresh(
    conn: &mut sqlx::AnyConnection,
    hash: &str,
    session_id: &str,
    now: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash)
    .bind(session_id)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn active_ban(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    now: i64,
) -> sqlx::Result<Option<BanRow>> {
    let row = sqlx::query(
        "SELECT user_id, reason, banned_at, banned_until FROM bans
         WHERE user_id = $1 AND (banned_until IS NULL OR banned_until > $2)",
    )
    .bind(user_id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(BanRow::from_row).transpose()
}

/// Revoke the live sessions matching `filter` and return them. In `filter`, `$3` is
/// `key` and `$4` the optional `user`.
async fn revoke_sessions_where(
    conn: &mut sqlx::AnyConnection,
    filter: &str,
    key: &str,
    user: Option<&str>,
    now: i64,
    reason: &str,
) -> sqlx::Result<Vec<RevokedSession>> {
    let sql = format!(
        "UPDATE sessions SET revoked_at = $1, revoke_reason = $2
         WHERE revoked_at IS NULL AND {filter}
         RETURNING id, user_id, access_expires_secs"
    );
    let mut q = sqlx::query(&sql).bind(now).bind(reason).bind(key);
    if let Some(user) = user {
        q = q.bind(user);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(RevokedSession::from_row).collect()
}
