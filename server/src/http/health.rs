//! `GET /healthz`: the server is up and its database answers.

use arena_protocol::http::Health;
use axum::extract::State;
use axum::Json;

use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>> {
    state.auth.store.ping().await.map_err(|_| {
        Error::new(
            arena_protocol::ErrorCode::Unavailable,
            "the database is not answering",
        )
    })?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}
