//! The revocation log (an outbox) and what a node loads to follow it.
//!
//! Every revocation is appended in the transaction of the change it describes
//! ([`Store::log`]), so every server sharing the database applies it. Ids come from a
//! one-row counter held to the commit: gap-free and in commit order. Each event also gets
//! a random `tag`, so that an id is never trusted to name the same event twice: a log
//! that went back (a failover to a replica without the last commits, a restore from a
//! backup) and moved on reuses ids, and a reader that compares the tag of the last event
//! it applied with the log's ([`Store::events_from`] returns that event too) notices.
//!
//! What the log reader reads here (`log_head`, `events_from`, the tables it loads) runs on
//! its own pool, which requests never use (`reader.rs`); writes go with their change.
//!
//! Times in the log are the database's clock: nodes compare them with each other's
//! (pruning), and a node's own clock may be stepped.

use sqlx::Row;

use super::{BanRow, LoggedEvent, RevocationEvent, RevokedSession, Store};
use crate::error::{Error, Result};

/// Where the log ends: the newest event's id and tag (`None`: no tag, or no such row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPosition {
    pub id: i64,
    pub tag: Option<String>,
}

/// The database's clock in Unix milliseconds, as SQL.
pub(super) fn db_now_sql(is_sqlite: bool) -> &'static str {
    if is_sqlite {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS BIGINT)"
    } else {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    }
}

impl Store {
    /// Append an event to the revocation log: call as the transaction's last write. The
    /// id comes from the one-row counter, whose lock this transaction then holds until
    /// it commits or rolls back: ids are therefore gap-free (a rollback takes its
    /// increment back) and in commit order. The price is that revocations commit one at a
    /// time across the deployment; each holds the counter only for this insert and its
    /// commit, and nothing takes another lock after it, so it cannot deadlock.
    pub(super) async fn log(
        &self,
        conn: &mut sqlx::AnyConnection,
        event: RevocationEvent,
    ) -> Result<LoggedEvent> {
        let json = serde_json::to_string(&event)
            .map_err(|e| Error::internal(format!("encoding a revocation event: {e}")))?;
        let id: i64 = sqlx::query(
            "UPDATE revocation_log_head SET last_id = last_id + 1 WHERE one = 1 RETURNING last_id",
        )
        .fetch_one(&mut *conn)
        .await?
        .try_get("last_id")?;
        let tag = crate::ids::random_token(9);
        sqlx::query(&format!(
            "INSERT INTO revocation_log (id, created_at, origin, event, tag)
             VALUES ($1, {}, $2, $3, $4)",
            db_now_sql(self.is_sqlite)
        ))
        .bind(id)
        .bind(&self.origin)
        .bind(&json)
        .bind(&tag)
        .execute(&mut *conn)
        .await?;
        Ok(LoggedEvent {
            id,
            tag: Some(tag),
            origin: self.origin.clone(),
            event,
        })
    }

    /// Where the log ends now (id 0 when it is empty).
    pub async fn log_head(&self) -> Result<LogPosition> {
        let row = sqlx::query(
            "SELECT h.last_id AS id, l.tag AS tag FROM revocation_log_head h
             LEFT JOIN revocation_log l ON l.id = h.last_id WHERE h.one = 1",
        )
        .fetch_one(&self.log_pool)
        .await?;
        Ok(LogPosition {
            id: row.try_get("id")?,
            tag: row.try_get("tag")?,
        })
    }

    /// Up to `limit` events from `from_id` on (that one included, when the log still has
    /// it), in id order. An entry this version cannot read is an error, not a skip:
    /// skipping a revocation would fail open.
    pub async fn events_from(&self, from_id: i64, limit: i64) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT id, tag, origin, event FROM revocation_log WHERE id >= $1 ORDER BY id LIMIT $2",
        )
        .bind(from_id)
        .bind(limit)
        .fetch_all(&self.log_pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                let json: String = r.try_get("event")?;
                let event = serde_json::from_str(&json).map_err(|e| {
                    Error::internal(format!("revocation log entry {id} is unreadable: {e}"))
                })?;
                Ok(LoggedEvent {
                    id,
                    tag: r.try_get("tag")?,
                    origin: r.try_get("origin")?,
                    event,
                })
            })
            .collect()
    }

    /// The database's clock now (Unix ms): what times compared across nodes are taken on.
    pub async fn now_ms(&self) -> Result<i64> {
        Ok(
            sqlx::query(&format!("SELECT {} AS now", db_now_sql(self.is_sqlite)))
                .fetch_one(&self.pool)
                .await?
                .try_get("now")?,
        )
    }

    // ---- what a node loads: the effect of every event up to the head ----

    /// Revoked sessions whose tokens may still be alive at `now_secs - leeway`.
    pub async fn live_revoked_sessions(&self, since_secs: i64) -> Result<Vec<RevokedSession>> {
        let rows = sqlx::query(
            "SELECT id, user_id, access_expires_secs FROM sessions
             WHERE revoked_at IS NOT NULL AND access_expires_secs >= $1",
        )
        .bind(since_secs)
        .fetch_all(&self.log_pool)
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
        .fetch_all(&self.log_pool)
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
        .fetch_all(&self.log_pool)
        .await?;
        rows.iter().map(|r| Ok(BanRow::from_row(r)?)).collect()
    }
}
