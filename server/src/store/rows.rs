//! Row types and their decoding from `Any` rows (no compile-time macros: the same code
//! reads SQLite and PostgreSQL).

use arena_protocol::{http::User, Role};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::events::RevokedSession;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub created_at: i64,
    pub tokens_valid_after_secs: i64,
}

impl UserRow {
    pub const COLUMNS: &'static str = "id, username, role, created_at, tokens_valid_after_secs";

    pub fn from_row(r: &AnyRow) -> sqlx::Result<UserRow> {
        let role: String = r.try_get("role")?;
        Ok(UserRow {
            id: r.try_get("id")?,
            username: r.try_get("username")?,
            role: Role::parse(&role)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
            created_at: r.try_get("created_at")?,
            tokens_valid_after_secs: r.try_get("tokens_valid_after_secs")?,
        })
    }

    pub fn to_wire(&self) -> User {
        User {
            id: self.id.clone(),
            username: self.username.clone(),
            role: self.role,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub auth_time_secs: i64,
    pub last_seen_at: i64,
    pub user_agent: Option<String>,
    pub remote_addr: Option<String>,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl SessionRow {
    pub const COLUMNS: &'static str = "s.id, s.user_id, s.created_at, s.auth_time_secs, \
        s.last_seen_at, s.user_agent, s.remote_addr, s.expires_at, s.revoked_at";
    /// The same columns unqualified, for `RETURNING`.
    pub const BARE_COLUMNS: &'static str = "id, user_id, created_at, auth_time_secs, \
        last_seen_at, user_agent, remote_addr, expires_at, revoked_at";

    pub fn from_row(r: &AnyRow) -> sqlx::Result<SessionRow> {
        Ok(SessionRow {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            created_at: r.try_get("created_at")?,
            auth_time_secs: r.try_get("auth_time_secs")?,
            last_seen_at: r.try_get("last_seen_at")?,
            user_agent: r.try_get("user_agent")?,
            remote_addr: r.try_get("remote_addr")?,
            expires_at: r.try_get("expires_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    }
}

/// What starting a session writes. Its times are taken inside the transaction, after
/// the user row is locked (see `Store::create_session`).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub user_id: String,
    pub user_agent: Option<String>,
    pub remote_addr: Option<String>,
    pub refresh_hash: String,
    pub refresh_ttl_ms: i64,
}

impl RevokedSession {
    pub fn from_row(r: &AnyRow) -> sqlx::Result<RevokedSession> {
        Ok(RevokedSession {
            session_id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            access_expires_secs: r.try_get("access_expires_secs")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BanRow {
    pub user_id: String,
    pub reason: Option<String>,
    pub banned_at: i64,
    /// `None`: permanent.
    pub banned_until: Option<i64>,
}

impl BanRow {
    pub fn from_row(r: &AnyRow) -> sqlx::Result<BanRow> {
        Ok(BanRow {
            user_id: r.try_get("user_id")?,
            reason: r.try_get("reason")?,
            banned_at: r.try_get("banned_at")?,
            banned_until: r.try_get("banned_until")?,
        })
    }
}
