//! `/admin/*`: live connections, the cluster's nodes, kick, ban, unban, role. Every
//! route needs the admin role.

use arena_protocol::http::{
    BanRequest, BanResponse, ConnectionsResponse, KickRequest, KickResponse, NodeInfo,
    NodesResponse, RoleRequest, RoleResponse,
};
use arena_protocol::CloseCode;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::JsonBody;
use crate::auth::extract::AdminUser;
use crate::error::{Error, Result};
use crate::ids;
use crate::state::AppState;

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
    let revoked = state
        .auth
        .revoke_user(&user_id, CloseCode::Kicked, &reason, None)
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
    let revoked = state
        .auth
        .revoke_user(&user_id, CloseCode::Kicked, &reason, Some(banned_until))
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
    let (user, changed) = state.auth.set_role(&user_id, role).await?;
    tracing::info!(admin = %admin.claims.sub, user_id = %user_id, ?role, changed, "role set");
    Ok(Json(RoleResponse { user, changed }))
}

pub async fn unban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<String>,
) -> Result<StatusCode> {
    state.auth.unban(&user_id).await?;
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
