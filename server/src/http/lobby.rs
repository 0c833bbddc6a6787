//! `/lobby/rooms`: list, create and inspect rooms. The rules (quota, rate, cap, expiry)
//! live in [`crate::game::lobby`]; this only translates HTTP.

use arena_protocol::http::{
    CreateRoomRequest, Room, RoomDetail, RoomsResponse, ROOM_CAPACITY_DEFAULT, ROOM_CAPACITY_MAX,
    ROOM_CAPACITY_MIN,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{required, JsonBody};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, _user: AuthUser) -> Result<Json<RoomsResponse>> {
    Ok(Json(RoomsResponse {
        rooms: state.rooms.list().await?,
    }))
}

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
        Some(v) => v
            .as_u64()
            .filter(|c| (ROOM_CAPACITY_MIN as u64..=ROOM_CAPACITY_MAX as u64).contains(c))
            .map(|c| c as u32)
            .ok_or_else(|| Error::invalid("field `capacity` must be an integer from 2 to 64"))?,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.rooms.create(&user.claims.sub, name, capacity).await?),
    ))
}

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
