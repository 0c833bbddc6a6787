//! Deleting what can no longer matter: ended sessions, spent refresh tokens, the old
//! part of the revocation log, ended bans. Run by every node on its own period; the
//! times it compares are the database's clock (`Store::now_ms`), so a node whose clock
//! was stepped forward never deletes what the others still need.

use sqlx::Row;

use super::Store;
use crate::error::Result;

impl Store {
    /// Delete what can no longer matter, in bounded batches: sessions ended (revoked or
    /// past their refresh expiry) whose last access token expired before
    /// `dead_before_secs`, with their refresh tokens; refresh tokens that expired before
    /// `tokens_before_ms`; bans that have ended. Returns how many rows went.
    ///
    /// Each ended session goes in a transaction of its own that takes its refresh tokens
    /// first and its row second: the order a refresh takes them in, and never several
    /// sessions at once, so pruning cannot deadlock with a refresh or a revocation sweep.
    pub async fn prune(
        &self,
        now: i64,
        dead_before_secs: i64,
        tokens_before_ms: i64,
        batch: i64,
    ) -> Result<u64> {
        const DEAD: &str =
            "(revoked_at IS NOT NULL OR expires_at <= $1) AND access_expires_secs < $2";
        let mut total = 0;
        loop {
            let dead: Vec<String> = sqlx::query(&format!(
                "SELECT id FROM sessions WHERE {DEAD} ORDER BY id LIMIT $3"
            ))
            .bind(now)
            .bind(dead_before_secs)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<sqlx::Result<_>>()?;
            for id in &dead {
                let mut tx = self.pool.begin().await?;
                // An ended session never comes back to life, but check again all the same:
                // nothing is deleted unless it is still dead now.
                let tokens = sqlx::query(&format!(
                    "DELETE FROM refresh_tokens WHERE session_id = $3
                     AND EXISTS (SELECT 1 FROM sessions WHERE id = $3 AND {DEAD})"
                ))
                .bind(now)
                .bind(dead_before_secs)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let sessions =
                    sqlx::query(&format!("DELETE FROM sessions WHERE id = $3 AND {DEAD}"))
                        .bind(now)
                        .bind(dead_before_secs)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                tx.commit().await?;
                total += tokens + sessions;
            }
            if (dead.len() as i64) < batch {
                break;
            }
        }
        loop {
            let gone = sqlx::query(
                "DELETE FROM refresh_tokens WHERE token_hash IN
                     (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)",
            )
            .bind(tokens_before_ms)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += gone;
            if gone < batch as u64 {
                break;
            }
        }
        // The log is for servers that are running (they read it every few seconds); one
        // that starts loads the tables instead. A day of it is far more than enough. The
        // newest event always stays: a reader compares the tag of the last event it
        // applied with the log's (see `log`), and a quiet day must not take it away.
        total += sqlx::query(
            "DELETE FROM revocation_log WHERE created_at < $1
             AND id < (SELECT last_id FROM revocation_log_head WHERE one = 1)",
        )
        .bind(now - 86_400_000)
        .execute(&self.pool)
        .await?
        .rows_affected();
        total +=
            sqlx::query("DELETE FROM bans WHERE banned_until IS NOT NULL AND banned_until <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(total)
    }
}
