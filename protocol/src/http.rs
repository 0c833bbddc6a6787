//! HTTP request and response bodies.
//!
//! Request types use `Option` and are validated by the server, so a missing field gets
//! a 400 naming it rather than a generic decode failure.

use serde::{Deserialize, Serialize};

use crate::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// 3 to 32 of `[A-Za-z0-9_-]` (register checks it; login answers a name that cannot
    /// exist with `invalid_credentials`).
    #[cfg_attr(
        feature = "openapi",
        schema(required, value_type = String, pattern = "^[A-Za-z0-9_-]{3,32}$", example = "alice")
    )]
    pub username: Option<String>,
    /// 8 to 128 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(required, value_type = String, min_length = 8, max_length = 128, example = "alice-pass-1")
    )]
    pub password: Option<String>,
    /// Login only, optional: the `device_token` a previous successful login of this
    /// username answered on this device. With it, the login is charged to this device's
    /// attempt limit instead of the username's, so others guessing the password cannot
    /// lock its owner out of a device they used before. An invalid or expired one is
    /// ignored (the login counts as one from a new device), never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    pub user: User,
}

/// The answer to login and refresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub session_id: String,
    pub user: User,
    /// Login only: this device's known-device token for the username; send it as
    /// `device_token` with later logins (see `Credentials`). Each login renews it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The opaque refresh token of the last login or refresh (43 base64url characters; any
    /// other string is 401 `refresh_invalid`).
    #[cfg_attr(feature = "openapi", schema(required, value_type = String))]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogoutRequest {
    /// `true`: end every session of the user, not only this one.
    #[serde(default)]
    pub all: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeResponse {
    pub user: User,
    pub session_id: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub session_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub user_agent: Option<String>,
    pub remote_addr: Option<String>,
    pub sockets: u64,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionsResponse {
    pub sessions: Vec<SessionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Room {
    pub id: String,
    pub name: String,
    pub capacity: u32,
    /// Members on every node.
    pub players: u32,
    /// The node that runs the room's game now; `null` while nobody is in it.
    #[serde(default)]
    pub node: Option<String>,
    /// The user who created it; `null` for the server's own room, which never expires.
    #[serde(default)]
    pub created_by: Option<String>,
    /// When it was created (ms since the Unix epoch).
    #[serde(default)]
    pub created_at: i64,
}

/// The id of the room every deployment has, "Main Hall".
pub const MAIN_HALL_ID: &str = "main-hall";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub id: String,
    pub username: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomDetail {
    #[serde(flatten)]
    pub room: Room,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomsResponse {
    pub rooms: Vec<Room>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRoomRequest {
    /// 1 to 64 characters once trimmed (at least one that is not white space).
    #[cfg_attr(
        feature = "openapi",
        schema(required, value_type = String, min_length = 1, max_length = 64, pattern = "\\S")
    )]
    pub name: Option<String>,
    /// 2 to 64; absent or `null`: 16. Checked by the server (any JSON value decodes here),
    /// so a wrong type is a 400 naming the field.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<u32>, minimum = 2, maximum = 64)
    )]
    pub capacity: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    pub connection_id: String,
    pub user_id: String,
    pub username: String,
    pub session_id: String,
    pub room: Option<String>,
    /// The room's name, when it is known (an extension: `GET /admin/connections` and the
    /// admin user page fill it in; the registry itself only knows the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
    pub connected_at: i64,
    pub remote_addr: String,
    /// The node holding the socket (in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionsResponse {
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KickRequest {
    /// The close frame's reason: at most 200 characters once trimmed; absent, `null` or
    /// blank: "kicked by an admin".
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KickResponse {
    pub closed: u64,
    /// In a cluster: how many nodes confirmed the kick, of those live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeAcks>,
}

/// How many nodes of a cluster confirmed a revocation (`acked`) of those live (`live`),
/// the answering node included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeAcks {
    pub acked: u64,
    pub live: u64,
}

impl NodeAcks {
    /// The `Arena-Nodes-Acked` header's value: `acked/live`.
    pub fn header_value(&self) -> String {
        format!("{}/{}", self.acked, self.live)
    }
}

/// The header on the 204 of logout and of ending a session, in a cluster.
pub const NODES_ACKED_HEADER: &str = "arena-nodes-acked";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanRequest {
    /// At most 200 characters once trimmed; absent, `null` or blank: "banned by an admin".
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub reason: Option<String>,
    /// 1 s to 10 years; absent or `null`: a permanent ban. Checked by the server (any JSON
    /// value decodes here), so a wrong type is a 400 naming the field.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<u64>, minimum = 1, maximum = 315_360_000)
    )]
    pub duration_secs: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanResponse {
    pub closed: u64,
    pub banned_until: Option<i64>,
    /// In a cluster: how many nodes confirmed the ban, of those live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeAcks>,
}

/// One node of a cluster, as `GET /admin/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    pub id: String,
    pub started_at: i64,
    pub last_seen_at: i64,
    pub sockets: u64,
    /// The node has confirmed recently that it holds every revocation.
    pub current: bool,
    /// Successful logins and revocations on this node, a minute each, the oldest first
    /// (the last [`ACTIVITY_MINUTES`] minutes; the last entry is the minute running now).
    #[serde(default)]
    pub activity: Vec<MinuteActivity>,
}

/// How many minutes of activity a node keeps and `GET /admin/overview` shows.
pub const ACTIVITY_MINUTES: usize = 30;

/// One minute of a node's (or, summed, the deployment's) activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteActivity {
    /// The minute's start (Unix ms, a multiple of 60,000).
    pub at: i64,
    pub logins: u64,
    /// Sessions revoked (logout, theft, kick, ban, role change, an admin ending one).
    pub revocations: u64,
}

/// `GET /admin/overview` (an extension): the deployment at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverviewResponse {
    /// Unix ms of this reading.
    pub at: i64,
    /// Open sockets on every live node.
    pub sockets: u64,
    pub rooms: u64,
    /// Players seated in rooms, summed over the rooms.
    pub players_in_rooms: u64,
    /// Live nodes (1 without a backplane).
    pub nodes: u64,
    /// Logins and revocations per minute over the live nodes, the oldest first.
    pub minutes: Vec<MinuteActivity>,
}

/// `GET /admin/users/{user}` (an extension): one user, for the admin's user page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserDetail {
    /// What `GET /admin/users` says of them.
    pub summary: UserSummary,
    /// Live sessions, the oldest first (`current` is always false here).
    pub sessions: Vec<SessionInfo>,
    /// Open sockets, on every live node.
    pub connections: Vec<Connection>,
    /// The latest admin actions on this user (at most 50), the newest first.
    pub history: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodesResponse {
    pub nodes: Vec<NodeInfo>,
}

/// `PUT /admin/users/{id}/role` (an extension of PROTOCOL.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleRequest {
    #[cfg_attr(feature = "openapi", schema(required, value_type = crate::Role))]
    pub role: Option<crate::Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleResponse {
    pub user: User,
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    /// In a cluster: this node's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// In a cluster: `ok`, or `degraded` while the backplane is out of reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backplane: Option<String>,
}

/// Username rule: 3 to 32 of `[A-Za-z0-9_-]`.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Password rule: 8 to 128 characters (not bytes).
pub fn valid_password(password: &str) -> bool {
    (8..=128).contains(&password.chars().count())
}

/// Room name rule: 1 to 64 characters.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
}

pub const ROOM_CAPACITY_MIN: u32 = 2;
pub const ROOM_CAPACITY_MAX: u32 = 64;
pub const ROOM_CAPACITY_DEFAULT: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        assert!(valid_username("abc"));
        assert!(valid_username("A_b-9"));
        assert!(!valid_username("ab"));
        assert!(!valid_username(&"a".repeat(33)));
        assert!(!valid_username("bad name"));
        assert!(!valid_username("é_abc"));
    }

    #[test]
    fn password_counts_characters() {
        assert!(valid_password("éééééééé"));
        assert!(!valid_password("short"));
        assert!(!valid_password(&"x".repeat(129)));
    }

    #[test]
    fn room_detail_flattens() {
        let d = RoomDetail {
            room: Room {
                id: "r".into(),
                name: "n".into(),
                capacity: 2,
                players: 0,
                node: None,
                created_by: None,
                created_at: 0,
            },
            members: vec![],
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["id"], "r");
        assert!(v["members"].is_array());
    }
}

/// A user named in an admin listing: who acted, whom it concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserRef {
    pub id: String,
    pub username: String,
}

/// A ban in force (`GET /admin/bans`, and a user's entry in `GET /admin/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanInfo {
    pub user: UserRef,
    pub reason: Option<String>,
    /// Unix ms.
    pub banned_at: i64,
    /// Unix ms; `null`: permanent.
    pub banned_until: Option<i64>,
    /// The admin who banned; `null` for a ban made before the audit log existed.
    pub banned_by: Option<UserRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BansResponse {
    pub bans: Vec<BanInfo>,
}

/// One user in `GET /admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub user: User,
    pub created_at: i64,
    pub ban: Option<BanInfo>,
    /// Sessions neither ended nor past their refresh expiry.
    pub sessions: u64,
    /// Open sockets (in a cluster: on every live node).
    pub sockets: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsersResponse {
    pub users: Vec<UserSummary>,
    /// The `offset` of the next page; `null` on the last one.
    pub next_offset: Option<u64>,
}

/// One admin action in `GET /admin/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: String,
    /// Unix ms.
    pub at: i64,
    pub admin: UserRef,
    /// `kick`, `ban`, `unban`, `role` or `end_session`.
    pub action: String,
    pub target: UserRef,
    pub reason: Option<String>,
    /// The session an `end_session` ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// A timed ban's end (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<i64>,
    /// A role change's new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditResponse {
    pub entries: Vec<AuditEntry>,
    /// The `offset` of the next (older) page; `null` on the last one.
    pub next_offset: Option<u64>,
}
