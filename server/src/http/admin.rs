//! `/admin/*`: live connections, the cluster's nodes, users, bans, the audit log, kick,
//! ban, unban, role. Every route needs the admin role; every kick, ban, unban and role
//! change is written to the audit log with the action itself.

use std::collections::HashMap;

use arena_protocol::http::{
    AuditEntry, AuditResponse, BanInfo, BanRequest, BanResponse, BansResponse, ConnectionsResponse,
    KickRequest, KickResponse, NodeInfo, NodesResponse, RoleRequest, RoleResponse, UserRef,
    UserSummary, UsersResponse,
};
use arena_protocol::CloseCode;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::JsonBody;
use crate::auth::extract::AdminUser;
use crate::error::{Error, Result};
use crate::ids;
use crate::state::AppState;
use crate::store::{Actor, AdminAction, Audit, AuditRow, ListedBan};

/// Longest timed ban: ten years. Anything longer is what `duration_secs` omitted means.
const MAX_BAN_SECS: u64 = 10 * 365 * 86_400;

pub async fn connections(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Json<ConnectionsResponse> {
    let mut connections: Vec<_> = match &state.cluster {
        Some(cluster) => cluster.connections().await,
        None => state
            .auth
            .registry
            .snapshot()
            .iter()
            .map(|h| h.to_wire())
            .collect(),
    };
    connections.sort_by_key(|c| c.connected_at);
    Json(ConnectionsResponse { connections })
}

/// The live nodes of the deployment (without a backplane: this one).
pub async fn nodes(State(state): State<AppState>, _admin: AdminUser) -> Json<NodesResponse> {
    let nodes = match &state.cluster {
        Some(cluster) => cluster.nodes().await,
        None => vec![NodeInfo {
            id: state.node_id.clone(),
            started_at: state.started_at,
            last_seen_at: ids::now_ms(),
            sockets: state.auth.registry.live() as u64,
            current: true,
        }],
    };
    Json(NodesResponse { nodes })
}

pub async fn kick(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<KickRequest>,
) -> Result<Json<KickResponse>> {
    let reason = reason_or(body.reason, "kicked by an admin")?;
    let audit = audit(&admin, AdminAction::Kick, Some(&reason));
    let revoked = state
        .auth
        .revoke_user(&user_id, CloseCode::Kicked, &reason, None, Some(audit))
        .await?;
    tracing::info!(admin = %admin.claims.sub, user_id = %user_id, closed = revoked.closed, nodes = ?revoked.nodes, "user kicked");
    crate::telemetry::admin_action("kick");
    Ok(Json(KickResponse {
        closed: revoked.closed as u64,
        nodes: revoked.nodes,
    }))
}

pub async fn ban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<BanRequest>,
) -> Result<Json<BanResponse>> {
    let reason = reason_or(body.reason, "banned by an admin")?;
    let banned_until = match body.duration_secs {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let secs = v
                .as_u64()
                .filter(|s| (1..=MAX_BAN_SECS).contains(s))
                .ok_or_else(|| {
                    Error::invalid("field `duration_secs` must be a positive integer")
                })?;
            Some(ids::now_ms() + secs as i64 * 1000)
        }
    };
    let audit = Audit {
        banned_until,
        ..audit(&admin, AdminAction::Ban, Some(&reason))
    };
    let revoked = state
        .auth
        .revoke_user(
            &user_id,
            CloseCode::Kicked,
            &reason,
            Some(banned_until),
            Some(audit),
        )
        .await?;
    tracing::info!(admin = %admin.claims.sub, user_id = %user_id, closed = revoked.closed, nodes = ?revoked.nodes, ?banned_until, "user banned");
    crate::telemetry::admin_action("ban");
    Ok(Json(BanResponse {
        closed: revoked.closed as u64,
        banned_until,
        nodes: revoked.nodes,
    }))
}

/// Promote or demote a user; a change revokes the user's sessions.
pub async fn set_role(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<RoleRequest>,
) -> Result<Json<RoleResponse>> {
    let role = body
        .role
        .ok_or_else(|| Error::invalid("field `role` is required"))?;
    let audit = Audit {
        role: Some(role),
        ..audit(&admin, AdminAction::Role, None)
    };
    let (user, changed) = state.auth.set_role(&user_id, role, Some(audit)).await?;
    tracing::info!(admin = %admin.claims.sub, user_id = %user_id, ?role, changed, "role set");
    Ok(Json(RoleResponse { user, changed }))
}

pub async fn unban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<String>,
) -> Result<StatusCode> {
    let audit = audit(&admin, AdminAction::Unban, None);
    state.auth.unban(&user_id, Some(audit)).await?;
    tracing::info!(admin = %admin.claims.sub, user_id = %user_id, "user unbanned");
    crate::telemetry::admin_action("unban");
    Ok(StatusCode::NO_CONTENT)
}

fn reason_or(reason: Option<String>, default: &str) -> Result<String> {
    match reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
    {
        None => Ok(default.to_string()),
        Some(r) if r.chars().count() <= 200 => Ok(r),
        Some(_) => Err(Error::invalid(
            "field `reason` must be at most 200 characters",
        )),
    }
}

/// The audit record of an action by `admin`.
fn audit(
    admin: &crate::auth::extract::AuthUser,
    action: AdminAction,
    reason: Option<&str>,
) -> Audit {
    Audit {
        actor: Actor {
            id: admin.claims.sub.clone(),
            username: admin.claims.username.clone(),
        },
        action,
        reason: reason.map(str::to_string),
        banned_until: None,
        role: None,
    }
}

/// A page of a listing: `limit` (1–100, default 50) from `offset` (default 0).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Page {
    limit: Option<String>,
    offset: Option<String>,
    /// `GET /admin/users`: a name prefix (any case) or an exact id.
    query: Option<String>,
    /// `GET /admin/audit`: only the actions on this user id.
    user: Option<String>,
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 100;

impl Page {
    fn limit(&self) -> Result<u32> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_PAGE),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| Error::invalid(format!("`limit` must be from 1 to {MAX_PAGE}"))),
        }
    }

    fn offset(&self) -> Result<u64> {
        match self.offset.as_deref() {
            None => Ok(0),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| Error::invalid("`offset` must be a non-negative integer")),
        }
    }
}

/// The offset of the page after one of `shown` entries, if it was full.
fn next_offset(shown: usize, limit: u32, offset: u64) -> Option<u64> {
    (shown as u64 == u64::from(limit)).then_some(offset + u64::from(limit))
}

/// `GET /admin/users?query=&limit=&offset=`: find anyone, online or not.
pub async fn users(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(page): Query<Page>,
) -> Result<Json<UsersResponse>> {
    let (limit, offset) = (page.limit()?, page.offset()?);
    let query = page.query.as_deref().unwrap_or("").trim();
    if query.chars().count() > 64 {
        return Err(Error::invalid("`query` must be at most 64 characters"));
    }
    let listed = state
        .auth
        .store
        .search_users(query, limit, offset, ids::now_ms())
        .await?;
    let sockets = sockets_by_user(&state).await;
    let users: Vec<UserSummary> = listed
        .into_iter()
        .map(|l| UserSummary {
            sockets: sockets.get(&l.user.id).copied().unwrap_or(0),
            created_at: l.user.created_at,
            ban: l.ban.map(ban_info),
            sessions: l.live_sessions,
            user: l.user.to_wire(),
        })
        .collect();
    Ok(Json(UsersResponse {
        next_offset: next_offset(users.len(), limit, offset),
        users,
    }))
}

/// `GET /admin/bans`: the bans in force, the newest first.
pub async fn bans(State(state): State<AppState>, _admin: AdminUser) -> Result<Json<BansResponse>> {
    let bans = state.auth.store.listed_bans(ids::now_ms()).await?;
    Ok(Json(BansResponse {
        bans: bans.into_iter().map(ban_info).collect(),
    }))
}

/// `GET /admin/audit?user=&limit=&offset=`: admin actions, the newest first.
pub async fn audit_log(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(page): Query<Page>,
) -> Result<Json<AuditResponse>> {
    let (limit, offset) = (page.limit()?, page.offset()?);
    let target = page.user.as_deref().filter(|u| !u.is_empty());
    let rows = state.auth.store.audit_log(target, limit, offset).await?;
    let entries: Vec<AuditEntry> = rows.into_iter().map(audit_entry).collect();
    Ok(Json(AuditResponse {
        next_offset: next_offset(entries.len(), limit, offset),
        entries,
    }))
}

/// Open sockets per user, on this node or, in a cluster, on every live node.
async fn sockets_by_user(state: &AppState) -> HashMap<String, u64> {
    match &state.cluster {
        Some(cluster) => {
            let mut counts = HashMap::new();
            for c in cluster.connections().await {
                *counts.entry(c.user_id).or_insert(0) += 1;
            }
            counts
        }
        None => state
            .auth
            .registry
            .counts_by_user()
            .into_iter()
            .map(|(user, n)| (user, n as u64))
            .collect(),
    }
}

fn ban_info(b: ListedBan) -> BanInfo {
    BanInfo {
        user: UserRef {
            id: b.user_id,
            username: b.username,
        },
        reason: b.reason,
        banned_at: b.banned_at,
        banned_until: b.banned_until,
        banned_by: b.banned_by.map(user_ref),
    }
}

fn audit_entry(r: AuditRow) -> AuditEntry {
    AuditEntry {
        id: r.id,
        at: r.at,
        admin: UserRef {
            id: r.admin_id,
            username: r.admin_name,
        },
        action: r.action,
        target: UserRef {
            id: r.target_id,
            username: r.target_name,
        },
        reason: r.reason,
        banned_until: r.banned_until,
        role: r.role,
    }
}

fn user_ref(a: Actor) -> UserRef {
    UserRef {
        id: a.id,
        username: a.username,
    }
}
