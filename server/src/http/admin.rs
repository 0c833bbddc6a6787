//! `/admin/*`: the overview, live connections, the cluster's nodes, users (found, or one
//! in full), bans, the audit log, kick, ban, unban, role, ending one session. Every route
//! needs the admin role; every action is written to the audit log with the action itself.
//! A user in a path is their id or `@username`.

use std::collections::HashMap;

use arena_protocol::http::{
    AuditEntry, AuditResponse, BanInfo, BanRequest, BanResponse, BansResponse, Connection,
    ConnectionsResponse, KickRequest, KickResponse, NodeInfo, NodesResponse, OverviewResponse,
    RoleRequest, RoleResponse, UserDetail, UserRef, UserSummary, UsersResponse,
};
use arena_protocol::CloseCode;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::openapi::{AuthErrors, BadRequest, BodyErrors, Internal, NotFound};
use super::JsonBody;
use crate::auth::activity;
use crate::auth::extract::AdminUser;
use crate::error::{Error, Result};
use crate::ids;
use crate::state::AppState;
use crate::store::{Actor, AdminAction, Audit, AuditRow, ListedBan, UserListing};

/// Longest timed ban: ten years. Anything longer is what `duration_secs` omitted means.
const MAX_BAN_SECS: u64 = 10 * 365 * 86_400;

/// Every open socket (in a cluster, on every live node), oldest first.
#[utoipa::path(
    get,
    path = "/admin/connections",
    tag = "admin",
    operation_id = "connections",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The open sockets", body = ConnectionsResponse),
        AuthErrors,
    )
)]
pub async fn connections(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Json<ConnectionsResponse> {
    let mut connections = named_rooms(&state, all_connections(&state).await).await;
    connections.sort_by_key(|c| c.connected_at);
    Json(ConnectionsResponse { connections })
}

/// Every open socket: this node's, and in a cluster every live node's.
async fn all_connections(state: &AppState) -> Vec<Connection> {
    match &state.cluster {
        Some(cluster) => cluster.connections().await,
        None => state
            .auth
            .registry
            .snapshot()
            .iter()
            .map(|h| h.to_wire())
            .collect(),
    }
}

/// `connections` with their rooms' names filled in (left out if the lobby cannot be
/// read: the ids still say where everyone is).
async fn named_rooms(state: &AppState, mut connections: Vec<Connection>) -> Vec<Connection> {
    if connections.iter().all(|c| c.room.is_none()) {
        return connections;
    }
    let names: HashMap<String, String> = match state.rooms.list().await {
        Ok(rooms) => rooms.into_iter().map(|r| (r.id, r.name)).collect(),
        Err(_) => return connections,
    };
    for c in &mut connections {
        c.room_name = c.room.as_ref().and_then(|id| names.get(id)).cloned();
    }
    connections
}

/// `GET /admin/overview`: sockets, rooms, players and nodes now, and the logins and
/// revocations of the last half hour, a minute at a time, over every live node.
#[utoipa::path(
    get,
    path = "/admin/overview",
    tag = "admin",
    operation_id = "overview",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The deployment now and its last 30 minutes", body = OverviewResponse),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn overview(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<OverviewResponse>> {
    let rooms = state.rooms.list().await?;
    let now = ids::now_ms();
    let (sockets, nodes, minutes) = match &state.cluster {
        Some(cluster) => {
            let nodes = cluster.nodes().await;
            let series: Vec<_> = nodes.iter().map(|n| n.activity.clone()).collect();
            (
                nodes.iter().map(|n| n.sockets).sum(),
                nodes.len() as u64,
                activity::sum(&series, now),
            )
        }
        None => (
            state.auth.registry.live() as u64,
            1,
            state.auth.activity.recent(now),
        ),
    };
    Ok(Json(OverviewResponse {
        at: now,
        sockets,
        rooms: rooms.len() as u64,
        players_in_rooms: rooms.iter().map(|r| u64::from(r.players)).sum(),
        nodes,
        minutes,
    }))
}

/// The live nodes of the deployment (without a backplane: this one).
#[utoipa::path(
    get,
    path = "/admin/nodes",
    tag = "admin",
    operation_id = "nodes",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The live nodes", body = NodesResponse),
        AuthErrors,
    )
)]
pub async fn nodes(State(state): State<AppState>, _admin: AdminUser) -> Json<NodesResponse> {
    let nodes = match &state.cluster {
        Some(cluster) => cluster.nodes().await,
        None => vec![NodeInfo {
            id: state.node_id.clone(),
            started_at: state.started_at,
            last_seen_at: ids::now_ms(),
            sockets: state.auth.registry.live() as u64,
            current: true,
            activity: state.auth.activity.recent(ids::now_ms()),
        }],
    };
    Json(NodesResponse { nodes })
}

/// Revoke every session of the user and close their sockets with 4003; `reason` becomes
/// the close frame's reason. The body is optional.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/kick",
    tag = "admin",
    operation_id = "kick",
    params(("id" = String, Path, example = "@alice", description = "A user id, or `@` and a username (`@alice`)")),
    request_body = Option<KickRequest>,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Kicked", body = KickResponse),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
        BodyErrors,
    )
)]
pub async fn kick(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<KickRequest>,
) -> Result<Json<KickResponse>> {
    let user_id = target(&state, &user).await?;
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

/// As kick, and login answers 403 `banned` until the ban ends; banning again replaces the
/// ban. The body is optional.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/ban",
    tag = "admin",
    operation_id = "ban",
    params(("id" = String, Path, example = "@alice", description = "A user id, or `@` and a username (`@alice`)")),
    request_body = Option<BanRequest>,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Banned", body = BanResponse),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
        BodyErrors,
    )
)]
pub async fn ban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<BanRequest>,
) -> Result<Json<BanResponse>> {
    let user_id = target(&state, &user).await?;
    let reason = reason_or(body.reason, "banned by an admin")?;
    let banned_until = match body.duration_secs {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let secs = super::whole_number(&v)
                .filter(|s| (1..=MAX_BAN_SECS).contains(s))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "field `duration_secs` must be an integer from 1 to {MAX_BAN_SECS} (10 years)"
                    ))
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
///
/// The role, the "tokens issued before now are invalid" mark and the revocations commit in
/// one transaction; setting the role the user already has changes and revokes nothing.
#[utoipa::path(
    put,
    path = "/admin/users/{id}/role",
    tag = "admin",
    operation_id = "set_role",
    params(("id" = String, Path, example = "@alice", description = "A user id, or `@` and a username (`@alice`)")),
    request_body = RoleRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The user with their role", body = RoleResponse),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
        BodyErrors,
    )
)]
pub async fn set_role(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<RoleRequest>,
) -> Result<Json<RoleResponse>> {
    let user_id = target(&state, &user).await?;
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

/// Lift the user's ban; a user who is not banned gets 204 too.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/ban",
    tag = "admin",
    operation_id = "unban",
    params(("id" = String, Path, example = "@alice", description = "A user id, or `@` and a username (`@alice`)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Not banned"),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn unban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user): Path<String>,
) -> Result<StatusCode> {
    let user_id = target(&state, &user).await?;
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
        session_id: None,
    }
}

/// The user an admin path names: their id, or `@username` (no username holds an `@`).
/// `not_found` for a name nobody has; an id is checked by the action itself.
async fn target(state: &AppState, named: &str) -> Result<String> {
    let Some(name) = named.strip_prefix('@') else {
        return Ok(named.to_string());
    };
    if !arena_protocol::http::valid_username(name) {
        return Err(Error::not_found("user"));
    }
    match state.auth.store.user_by_name(name).await? {
        Some((user, _)) => Ok(user.id),
        None => Err(Error::not_found("user")),
    }
}

/// `DELETE /admin/users/{user}/sessions/{id}`: end one session of the user (a lost or
/// stolen device); its sockets close with 4001, their other sessions go on.
///
/// A session that is not the user's is 404; ending an ended one again is 204 and is not
/// recorded twice.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/sessions/{session}",
    tag = "admin",
    operation_id = "end_user_session",
    params(("id" = String, Path, example = "@alice", description = "A user id, or `@` and a username (`@alice`)"),
        ("session" = String, Path, description = "One of the user's session ids")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Ended. In a cluster `Arena-Nodes-Acked: k/n`"),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn end_session(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path((user, session_id)): Path<(String, String)>,
) -> Result<Response> {
    let user_id = target(&state, &user).await?;
    let audit = Audit {
        session_id: Some(session_id.clone()),
        ..audit(&admin, AdminAction::EndSession, None)
    };
    let revoked = state
        .auth
        .revoke_session(
            &user_id,
            &session_id,
            CloseCode::SessionRevoked,
            Some(audit),
        )
        .await?;
    tracing::info!(admin = %admin.claims.sub, user_id = %user_id, session_id = %session_id, closed = revoked.closed, "session ended by an admin");
    crate::telemetry::admin_action("end_session");
    Ok((StatusCode::NO_CONTENT, super::auth::nodes_acked(&revoked)).into_response())
}

/// `GET /admin/users/{user}`: one user in full, for the admin's user page.
#[utoipa::path(
    get,
    path = "/admin/users/{id}",
    tag = "admin",
    operation_id = "user",
    params(("id" = String, Path, example = "@alice", description = "A user id, or `@` and a username (`@alice`)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The user, their sessions, sockets and the latest 50 admin actions on them", body = UserDetail,
            links(("EndSession" = (operation_id = "end_user_session", parameters(("id" = "$request.path.id"), ("session" = "$response.body#/sessions/0/session_id")))))),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn user(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user): Path<String>,
) -> Result<Json<UserDetail>> {
    let user_id = target(&state, &user).await?;
    let listed = state
        .auth
        .store
        .user_listing(&user_id, ids::now_ms())
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    let (sessions, connections, history) = tokio::join!(
        state.auth.sessions_of(&user_id, None),
        all_connections(&state),
        state.auth.store.audit_log(Some(&user_id), 50, 0),
    );
    let mut connections: Vec<Connection> = connections
        .into_iter()
        .filter(|c| c.user_id == user_id)
        .collect();
    connections.sort_by_key(|c| c.connected_at);
    let connections = named_rooms(&state, connections).await;
    Ok(Json(UserDetail {
        summary: summary(listed, connections.len() as u64),
        sessions: sessions?,
        connections,
        history: history?.into_iter().map(audit_entry).collect(),
    }))
}

fn summary(l: UserListing, sockets: u64) -> UserSummary {
    UserSummary {
        sockets,
        created_at: l.user.created_at,
        ban: l.ban.map(ban_info),
        sessions: l.live_sessions,
        user: l.user.to_wire(),
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

    /// At most `i64::MAX`: what the database can skip (and what the description says).
    fn offset(&self) -> Result<u64> {
        match self.offset.as_deref() {
            None => Ok(0),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "`offset` must be an integer from 0 to {}",
                        i64::MAX
                    ))
                }),
        }
    }
}

/// The offset of the page after one of `shown` entries, if it was full.
fn next_offset(shown: usize, limit: u32, offset: u64) -> Option<u64> {
    (shown as u64 == u64::from(limit))
        .then(|| offset.checked_add(u64::from(limit)))
        .flatten()
}

/// `GET /admin/users?query=&limit=&offset=`: find anyone, online or not.
///
/// Users whose name starts with `query` (ignoring case; `%` and `_` are plain characters)
/// or whose id is `query`, in name order; no `query` lists everyone.
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "admin",
    operation_id = "users",
    params(("query" = Option<String>, Query, max_length = 64, description = "A name prefix or a user id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Entries per page (default 50)"),
        ("offset" = Option<u64>, Query, maximum = 9_223_372_036_854_775_807_u64, description = "Entries to skip (default 0)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A page of users", body = UsersResponse),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
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
        .map(|l| {
            let n = sockets.get(&l.user.id).copied().unwrap_or(0);
            summary(l, n)
        })
        .collect();
    Ok(Json(UsersResponse {
        next_offset: next_offset(users.len(), limit, offset),
        users,
    }))
}

/// `GET /admin/bans`: the bans in force, the newest first.
#[utoipa::path(
    get,
    path = "/admin/bans",
    tag = "admin",
    operation_id = "bans",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The bans in force, newest first", body = BansResponse),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn bans(State(state): State<AppState>, _admin: AdminUser) -> Result<Json<BansResponse>> {
    let bans = state.auth.store.listed_bans(ids::now_ms()).await?;
    Ok(Json(BansResponse {
        bans: bans.into_iter().map(ban_info).collect(),
    }))
}

/// `GET /admin/audit?user=&limit=&offset=`: admin actions, the newest first.
///
/// Every kick, ban, unban, role change and session ended by an admin, written in the
/// action's own transaction.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    operation_id = "audit",
    params(("user" = Option<String>, Query, description = "Only the actions on this user id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Entries per page (default 50)"),
        ("offset" = Option<u64>, Query, maximum = 9_223_372_036_854_775_807_u64, description = "Entries to skip (default 0)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditResponse),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
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
        session_id: r.session_id,
    }
}

fn user_ref(a: Actor) -> UserRef {
    UserRef {
        id: a.id,
        username: a.username,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<&str>, offset: Option<&str>) -> Page {
        Page {
            limit: limit.map(String::from),
            offset: offset.map(String::from),
            ..Page::default()
        }
    }

    #[test]
    fn paging_bounds() {
        assert_eq!(page(None, None).limit().unwrap(), 50);
        assert_eq!(page(Some("100"), None).limit().unwrap(), 100);
        for bad in ["0", "101", "-1", "x", ""] {
            assert!(page(Some(bad), None).limit().is_err(), "{bad}");
        }
        assert_eq!(page(None, None).offset().unwrap(), 0);
        let max = i64::MAX.to_string();
        assert_eq!(page(None, Some(&max)).offset().unwrap(), i64::MAX as u64);
        // Past what the database can skip: refused, as the description says (the fuzzer
        // found it accepted).
        for bad in ["9223372036854775808", "18446744073709551615", "-1", "1.5"] {
            assert!(page(None, Some(bad)).offset().is_err(), "{bad}");
        }
    }

    #[test]
    fn next_offset_of_a_full_page_only() {
        assert_eq!(next_offset(50, 50, 0), Some(50));
        assert_eq!(next_offset(49, 50, 0), None);
        assert_eq!(next_offset(1, 1, u64::MAX), None);
    }
}
