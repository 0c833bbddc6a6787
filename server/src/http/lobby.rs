//! `/lobby/rooms`: list, create and inspect rooms. The rules (quota, rate, cap, expiry)
//! live in [`crate::game::lobby`]; this only translates HTTP.

use arena_protocol::http::{
    CreateRoomRequest, Room, RoomDetail, RoomsResponse, ROOM_CAPACITY_DEFAULT, ROOM_CAPACITY_MAX,
    ROOM_CAPACITY_MIN,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::openapi::{AuthErrors, BodyErrors, Internal, NotFound, TooManyRequests};
use super::{required, whole_number, JsonBody};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::state::AppState;

/// Every room, sorted by name, then id. "Main Hall" (`main-hall`) is always there.
#[utoipa::path(
    get,
    path = "/lobby/rooms",
    tag = "lobby",
    operation_id = "list_rooms",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The rooms", body = RoomsResponse),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn list(State(state): State<AppState>, _user: AuthUser) -> Result<Json<RoomsResponse>> {
    Ok(Json(RoomsResponse {
        rooms: state.rooms.list().await?,
    }))
}

/// Create a room (the name is trimmed first).
///
/// A user may have `--max-rooms-per-user` rooms that still exist and create
/// `--room-create-rate` a minute (429 `rate_limited`, naming the limit); a deployment
/// holding `--max-rooms` rooms answers 503 `unavailable`. A room a player created is removed
/// after `--room-idle-secs` empty.
#[utoipa::path(
    post,
    path = "/lobby/rooms",
    tag = "lobby",
    operation_id = "create_room",
    request_body = CreateRoomRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "The new room", body = Room),
        (status = 429, response = TooManyRequests),
        (status = 500, response = Internal),
        AuthErrors,
        BodyErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<CreateRoomRequest>,
) -> Result<(StatusCode, Json<Room>)> {
    let name = required(&body.name, "name")?.trim();
    if !arena_protocol::http::valid_room_name(name) {
        return Err(Error::invalid("field `name` must be 1-64 characters"));
    }
    let capacity = match &body.capacity {
        None | Some(serde_json::Value::Null) => ROOM_CAPACITY_DEFAULT,
        Some(v) => whole_number(v)
            .filter(|c| (ROOM_CAPACITY_MIN as u64..=ROOM_CAPACITY_MAX as u64).contains(c))
            .map(|c| c as u32)
            .ok_or_else(|| Error::invalid("field `capacity` must be an integer from 2 to 64"))?,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.rooms.create(&user.claims.sub, name, capacity).await?),
    ))
}

/// One room with its members on every node.
#[utoipa::path(
    get,
    path = "/lobby/rooms/{id}",
    tag = "lobby",
    operation_id = "room",
    params(("id" = String, Path, example = "main-hall", description = "A room id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The room and its members", body = RoomDetail),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        AuthErrors,
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<RoomDetail>> {
    let room = state
        .rooms
        .detail(&id)
        .await?
        .ok_or_else(|| Error::not_found("room"))?;
    Ok(Json(room))
}
