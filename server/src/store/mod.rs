//! The database: accounts, sessions and refresh tokens (`sessions.rs`), bans, the
//! revocation log (`log.rs`), pruning (`prune.rs`), the reader's own link and the health
//! probe (`reader.rs`), and (for servers sharing it) the signing keyring (`keys.rs`).
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
mod sessions;

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
pub use sessions::{CreateOutcome, RefreshOutcome, Rotation, SessionPolicy};

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
