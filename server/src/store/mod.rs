//! The database: accounts, sessions, refresh tokens, bans, the revocation log, and (for
//! servers sharing it) the signing keyring (`keys.rs`).
//!
//! One [`Store`] over sqlx's `Any` driver serves the embedded SQLite file (the default)
//! and PostgreSQL (for deployments that share one database). The SQL is written once in
//! the dialect both accept (`$n` parameters, `ON CONFLICT`), and schema changes go
//! through the migrations in `server/migrations/`.
//!
//! Concurrency rules (they must hold on PostgreSQL's READ COMMITTED, where two
//! transactions interleave freely, not only on SQLite's single writer):
//! - **A rule that spans a user's rows locks the user row first** ([`lock_user`]: a no-op
//!   `UPDATE ... RETURNING`, which is a row lock on PostgreSQL and the write lock on
//!   SQLite). Login, logout-everywhere, kick, ban, unban and role change all do, so they
//!   run one after another per user: a login either commits before a ban (whose sweep then
//!   revokes its session) or sees the ban; two single-session logins each see the other;
//!   a demotion's role, "issued before" mark and session revocations commit together, and
//!   a login after it reads the new role.
//! - **Every update of a live session says `revoked_at IS NULL` and checks its row count**,
//!   so a refresh that loses a race with a logout changes nothing (it finds no live row)
//!   instead of extending a revoked session.
//! - **A revocation's commit whose outcome is unknown is still reported** ([`Write`]): the
//!   caller applies it in memory anyway (fail closed) and answers with an error.

mod audit;
mod keys;
mod log;
mod prune;
mod reader;
mod rooms;
mod rows;

use std::path::Path;
use std::str::FromStr;

use arena_protocol::Role;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

pub use crate::events::{LoggedEvent, RevocationEvent, RevokedSession};
use arena_protocol::CloseCode;
pub use audit::{Actor, AdminAction, Audit, AuditRow, ListedBan, UserListing};
pub use keys::{KeyRow, KeyringRows, OpenedKeyring};
pub use log::LogPosition;
pub use rooms::{RoomRefusal, RoomRow};
pub use rows::{BanRow, NewSession, SessionRow, UserRow};

use crate::error::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The revocation-log reader's own pool, which requests never use (`reader.rs`).
    log_pool: AnyPool,
    /// The health probe's latest answer (`reader.rs`).
    liveness: reader::Liveness,
    /// This server process, as the revocation log names it: events it wrote itself are
    /// already applied here and are skipped when the log is read back.
    origin: String,
    /// SQLite has one writer and no row locks; PostgreSQL locks rows (see
    /// [`Store::touch_sessions`]).
    is_sqlite: bool,
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

/// A write whose effects must reach memory even if its commit failed: a commit that
/// errors may still have landed (the connection broke after the server committed), so a
/// revocation is applied anyway (fail closed) and the request still answers with an error.
#[must_use]
pub struct Write<T> {
    pub value: T,
    /// `Err`: the commit's outcome is unknown.
    pub commit: Result<(), sqlx::Error>,
}

impl<T> Write<T> {
    async fn commit(tx: sqlx::Transaction<'_, sqlx::Any>, value: T) -> Write<T> {
        Write {
            value,
            commit: tx.commit().await,
        }
    }

    /// A write that was rolled back (or never needed committing): the outcome is known.
    fn known(value: T) -> Write<T> {
        Write {
            value,
            commit: Ok(()),
        }
    }
}

/// What a change of role did.
pub struct RoleChange {
    /// The user as it is now.
    pub user: UserRow,
    /// Whether the role changed (and so every session was revoked).
    pub changed: bool,
    /// With a change: the revocation of every token and session, logged.
    pub event: Option<LoggedEvent>,
}

/// One connection to a database server, before the pool is made: the pool would retry a
/// refused connection until its acquire timeout, while at start a database that is not
/// there should be said at once, naming where the server looked (never the credentials).
async fn probe(options: &AnyConnectOptions, url: &str, timeout: std::time::Duration) -> Result<()> {
    use sqlx::Connection;
    let host = database_host(url);
    match tokio::time::timeout(timeout, sqlx::AnyConnection::connect_with(options)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(Error::internal(format!(
            "cannot connect to the database at {host}: {e}"
        ))),
        Err(_) => Err(Error::internal(format!(
            "the database at {host} did not answer within {} ms (--database-timeout-ms)",
            timeout.as_millis()
        ))),
    }
}

/// Where a database URL points (`host:port`), without its user and password.
fn database_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        "the default host"
    } else {
        host
    }
}

impl Store {
    /// Open (creating if needed) the database and bring its schema up to date.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Store> {
        Store::open_with_timeout(database_url, data_dir, std::time::Duration::from_secs(5)).await
    }

    /// As [`Store::open`]; a request waits at most `acquire_timeout` for a connection
    /// (then [`sqlx::Error::PoolTimedOut`]: the database is out of reach, 503).
    pub async fn open_with_timeout(
        database_url: Option<&str>,
        data_dir: &Path,
        acquire_timeout: std::time::Duration,
    ) -> Result<Store> {
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
        if !is_sqlite {
            probe(&options, &url, acquire_timeout).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 8 } else { 16 })
            .acquire_timeout(acquire_timeout)
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
            .connect_with(options.clone())
            .await?;
        let log_pool = reader::reader_pool(&pool, options, is_sqlite, acquire_timeout).await?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| Error::internal(format!("migration: {e}")))?;
        Ok(Store {
            pool,
            log_pool,
            liveness: reader::Liveness::answered_now(acquire_timeout),
            origin: crate::ids::new_id("p"),
            is_sqlite,
        })
    }

    /// This process's name in the revocation log.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.log_pool.close().await;
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

    /// Set a user's role. A change also marks every token issued before now invalid and
    /// revokes every session, in the same transaction: no failure between the two can
    /// leave a changed role with tokens that still carry the old one.
    pub async fn set_role(
        &self,
        user_id: &str,
        role: Role,
        reason: &str,
        audit: Option<&Audit>,
    ) -> Result<Option<Write<RoleChange>>> {
        let mut tx = self.pool.begin().await?;
        let Some(user) = lock_user(&mut tx, user_id).await? else {
            return Ok(None);
        };
        let now = crate::ids::now_ms();
        if user.role == role {
            tx.rollback().await?;
            return Ok(Some(Write::known(RoleChange {
                user,
                changed: false,
                event: None,
            })));
        }
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let event =
            revoke_all_of_user(&mut tx, user_id, reason, CloseCode::Kicked, None, now).await?;
        if let Some(audit) = audit {
            audit::record(&mut tx, audit, &user, now).await?;
        }
        let change = RoleChange {
            user: UserRow { role, ..user },
            changed: true,
            event: Some(self.log(&mut tx, event).await?),
        };
        Ok(Some(Write::commit(tx, change).await))
    }

    // ---- sessions ----

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

    /// Lift a user's ban, under the user row's lock (so it orders with a ban). `false`
    /// when the user does not exist.
    pub async fn unban(
        &self,
        user_id: &str,
        audit: Option<&Audit>,
    ) -> Result<Write<Option<LoggedEvent>>> {
        let mut tx = self.pool.begin().await?;
        let Some(user) = lock_user(&mut tx, user_id).await? else {
            return Ok(Write::known(None));
        };
        sqlx::query("DELETE FROM bans WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if let Some(audit) = audit {
            audit::record(&mut tx, audit, &user, crate::ids::now_ms()).await?;
        }
        let event = RevocationEvent::Unban {
            user_id: user_id.to_string(),
        };
        let logged = self.log(&mut tx, event).await?;
        Ok(Write::commit(tx, Some(logged)).await)
    }

    /// The ban in force for a user, as the database has it now.
    pub async fn ban_of(&self, user_id: &str, now: i64) -> Result<Option<BanRow>> {
        let mut conn = self.pool.acquire().await?;
        Ok(active_ban(&mut conn, user_id, now).await?)
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

/// Lock a user's row for the rest of the transaction and read it. A no-op update is the
/// portable row lock: `FOR UPDATE` on PostgreSQL terms, and on SQLite it takes the write
/// lock, so the transaction cannot be overtaken between its reads and its writes.
async fn lock_user(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<Option<UserRow>> {
    let row = sqlx::query(&format!(
        "UPDATE users SET role = role WHERE id = $1 RETURNING {}",
        UserRow::COLUMNS
    ))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(UserRow::from_row).transpose()
}

/// Mark every token of the user issued before `now` invalid and revoke every live
/// session; the event that says so (sockets closed with `close`, and `ban` as recorded
/// by the caller). Call with the user row locked.
async fn revoke_all_of_user(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    reason: &str,
    close: CloseCode,
    ban: Option<Option<i64>>,
    now: i64,
) -> sqlx::Result<RevocationEvent> {
    sqlx::query(
        "UPDATE users SET tokens_valid_after_secs = $1
         WHERE id = $2 AND tokens_valid_after_secs < $1",
    )
    .bind(now / 1000)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    let sessions = revoke_sessions_where(conn, "user_id = $3", user_id, None, now, reason).await?;
    Ok(RevocationEvent::User {
        user_id: user_id.to_string(),
        before_secs: now / 1000,
        sessions,
        close,
        reason: reason.to_string(),
        ban,
    })
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

#[cfg(test)]
mod tests {
    use super::database_host;

    #[test]
    fn a_database_is_named_by_its_host_never_its_credentials() {
        for (url, host) in [
            (
                "postgres://arena:s3cret@db.example:5433/arena?sslmode=require",
                "db.example:5433",
            ),
            ("postgres://arena@127.0.0.1/arena", "127.0.0.1"),
            ("postgres://localhost:5432", "localhost:5432"),
            ("postgres:///arena?host=/run/postgresql", "the default host"),
            ("postgres://u:p@w@[::1]:5432/x", "[::1]:5432"),
        ] {
            assert_eq!(database_host(url), host, "{url}");
        }
    }
}
