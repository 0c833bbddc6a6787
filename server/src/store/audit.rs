//! What admins need to find and account for: the audit log of admin actions, the user
//! search, and the list of active bans with who made them.
//!
//! Promise: an admin action is in the audit log if and only if it committed. The entry
//! is written by [`record`] inside the action's own transaction (the user row locked),
//! so no failure between the two can leave an unrecorded kick or a recorded ban that
//! never happened.

use sqlx::any::AnyRow;
use sqlx::Row;

use arena_protocol::Role;

use super::{Store, UserRow};
use crate::error::Result;

/// The admin actions the log records (the `action` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    Kick,
    Ban,
    Unban,
    Role,
    /// One session ended (its sockets closed with 4001); the user stays logged in elsewhere.
    EndSession,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Kick => "kick",
            AdminAction::Ban => "ban",
            AdminAction::Unban => "unban",
            AdminAction::Role => "role",
            AdminAction::EndSession => "end_session",
        }
    }
}

/// Who acted, as the log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub username: String,
}

/// An admin action about to be written: by whom, what, why, and what it set.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: Actor,
    pub action: AdminAction,
    pub reason: Option<String>,
    /// A timed ban's end (ms).
    pub banned_until: Option<i64>,
    /// A role change's new role.
    pub role: Option<Role>,
    /// The session an `EndSession` ended.
    pub session_id: Option<String>,
}

/// One entry of the log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub admin_id: String,
    pub admin_name: String,
    pub action: String,
    pub target_id: String,
    pub target_name: String,
    pub reason: Option<String>,
    pub banned_until: Option<i64>,
    pub role: Option<Role>,
    pub session_id: Option<String>,
}

impl AuditRow {
    const COLUMNS: &'static str = "id, at, admin_id, admin_name, action, target_id, target_name, \
         reason, banned_until, role, session_id";

    fn from_row(r: &AnyRow) -> sqlx::Result<AuditRow> {
        Ok(AuditRow {
            id: r.try_get("id")?,
            at: r.try_get("at")?,
            admin_id: r.try_get("admin_id")?,
            admin_name: r.try_get("admin_name")?,
            action: r.try_get("action")?,
            target_id: r.try_get("target_id")?,
            target_name: r.try_get("target_name")?,
            reason: r.try_get("reason")?,
            banned_until: r.try_get("banned_until")?,
            role: r
                .try_get::<Option<String>, _>("role")?
                .and_then(|role| Role::parse(&role)),
            session_id: r.try_get("session_id")?,
        })
    }
}

/// Write `audit` about `target` in the caller's transaction (which holds the target's
/// user row locked).
pub(super) async fn record(
    conn: &mut sqlx::AnyConnection,
    audit: &Audit,
    target: &UserRow,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admin_audit
             (id, at, admin_id, admin_name, action, target_id, target_name, reason, banned_until,
              role, session_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(crate::ids::new_id("a"))
    .bind(now)
    .bind(&audit.actor.id)
    .bind(&audit.actor.username)
    .bind(audit.action.as_str())
    .bind(&target.id)
    .bind(&target.username)
    .bind(audit.reason.as_deref())
    .bind(audit.banned_until)
    .bind(audit.role.map(Role::as_str))
    .bind(audit.session_id.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A user as the admin search lists them.
#[derive(Debug, Clone)]
pub struct UserListing {
    pub user: UserRow,
    pub ban: Option<ListedBan>,
    /// Sessions neither revoked nor past their refresh expiry.
    pub live_sessions: u64,
}

impl UserListing {
    fn from_row(r: &AnyRow) -> Result<UserListing> {
        let user = UserRow::from_row(r)?;
        let banned: Option<String> = r.try_get("ban_user_id")?;
        let ban = match banned {
            None => None,
            Some(user_id) => Some(ListedBan::from_columns(r, user_id, user.username.clone())?),
        };
        let live: i64 = r.try_get("live_sessions")?;
        Ok(UserListing {
            user,
            ban,
            live_sessions: u64::try_from(live).unwrap_or(0),
        })
    }
}

/// The query behind [`UserListing`]: a user, their ban in force and their live sessions
/// at `$1`, for the users `filter` (a `WHERE` condition, then any order and paging) keeps.
fn listing_query(filter: &str) -> String {
    let columns = UserRow::COLUMNS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns}, b.user_id AS ban_user_id, b.reason, b.banned_at, b.banned_until,
                b.banned_by, a.username AS banned_by_name,
                (SELECT COUNT(*) FROM sessions s
                 WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > $1)
                AS live_sessions
         FROM users u
         LEFT JOIN bans b ON b.user_id = u.id
              AND (b.banned_until IS NULL OR b.banned_until > $1)
         LEFT JOIN users a ON a.id = b.banned_by
         WHERE {filter}"
    )
}

/// An active ban, with who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBan {
    pub user_id: String,
    pub username: String,
    pub reason: Option<String>,
    pub banned_at: i64,
    pub banned_until: Option<i64>,
    /// `None` for a ban made before the audit log, or by no admin.
    pub banned_by: Option<Actor>,
}

impl ListedBan {
    const COLUMNS: &'static str = "b.user_id, u.username, b.reason, b.banned_at, b.banned_until, \
         b.banned_by, a.username AS banned_by_name";

    fn from_row(r: &AnyRow) -> sqlx::Result<ListedBan> {
        ListedBan::from_columns(r, r.try_get("user_id")?, r.try_get("username")?)
    }

    /// The ban columns of `r` (see [`ListedBan::COLUMNS`]) for the user named.
    fn from_columns(r: &AnyRow, user_id: String, username: String) -> sqlx::Result<ListedBan> {
        let by_id: Option<String> = r.try_get("banned_by")?;
        let by_name: Option<String> = r.try_get("banned_by_name")?;
        Ok(ListedBan {
            user_id,
            username,
            reason: r.try_get("reason")?,
            banned_at: r.try_get("banned_at")?,
            banned_until: r.try_get("banned_until")?,
            banned_by: by_id.map(|id| Actor {
                // An admin account deleted since keeps its id in the ban.
                username: by_name.unwrap_or_else(|| id.clone()),
                id,
            }),
        })
    }
}

/// `%`, `_` and the escape character itself, escaped for `LIKE ... ESCAPE '\'`: a
/// search for `a_b` must not match `axb`.
fn like_prefix(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 1);
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// Users whose name starts with `query` (ignoring case) or whose id is `query`, in
    /// name order, `limit` from `offset`; an empty query lists everyone.
    pub async fn search_users(
        &self,
        query: &str,
        limit: u32,
        offset: u64,
        now: i64,
    ) -> Result<Vec<UserListing>> {
        let rows = sqlx::query(&listing_query(
            "u.username_key LIKE $2 ESCAPE '\\' OR u.id = $3
             ORDER BY u.username_key
             LIMIT $4 OFFSET $5",
        ))
        .bind(now)
        .bind(like_prefix(&query.to_lowercase()))
        .bind(query)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(UserListing::from_row).collect()
    }

    /// The user with id `user_id`, as the search lists them.
    pub async fn user_listing(&self, user_id: &str, now: i64) -> Result<Option<UserListing>> {
        let row = sqlx::query(&listing_query("u.id = $2"))
            .bind(now)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(UserListing::from_row).transpose()
    }

    /// The bans in force at `now`, the newest first.
    pub async fn listed_bans(&self, now: i64) -> Result<Vec<ListedBan>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM bans b
             JOIN users u ON u.id = b.user_id
             LEFT JOIN users a ON a.id = b.banned_by
             WHERE b.banned_until IS NULL OR b.banned_until > $1
             ORDER BY b.banned_at DESC",
            ListedBan::COLUMNS
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(ListedBan::from_row)
            .collect::<sqlx::Result<_>>()?)
    }

    /// Audit entries, the newest first: all of them or those about `target`, `limit`
    /// from `offset`.
    pub async fn audit_log(
        &self,
        target: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM admin_audit
             WHERE target_id = $1 OR $1 = ''
             ORDER BY at DESC, id DESC
             LIMIT $2 OFFSET $3",
            AuditRow::COLUMNS
        ))
        .bind(target.unwrap_or(""))
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(AuditRow::from_row)
            .collect::<sqlx::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn a_search_pattern_matches_its_characters_literally() {
        assert_eq!(like_prefix("bob"), "bob%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
