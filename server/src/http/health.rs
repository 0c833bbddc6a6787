//! `GET /healthz`: the server is up, its database answers and, in a cluster, it is
//! current (it holds every revocation: otherwise 503, so that a load balancer stops
//! sending it players), with its node id and whether the backplane works.
//!
//! Answered from memory only: the database's answer is the health probe's, which a
//! background task refreshes once a second on the log reader's own link
//! (`store/reader.rs`, spawned in `app.rs`). A flood of `/healthz` costs no query, so it
//! can neither starve the revocation-log reader nor the requests.

use arena_protocol::http::Health;
use axum::extract::State;
use axum::Json;

use crate::error::{Error, Result};
use crate::state::AppState;

/// The server is up and its database answered the health probe (pinged once a second);
/// in a cluster also the node's id and the backplane's state, and 503 while the node is
/// not current, so a load balancer stops sending it players. No authentication.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>> {
    if !state.auth.store.database_answers() {
        return Err(Error::new(
            arena_protocol::ErrorCode::Unavailable,
            "the database is not answering",
        ));
    }
    let Some(cluster) = &state.cluster else {
        return Ok(Json(Health {
            status: "ok".into(),
            node: None,
            backplane: None,
        }));
    };
    let stale_ms = state.config.stale_secs() as i64 * 1000;
    if stale_ms > 0 && !state.auth.is_current(stale_ms) {
        return Err(Error::new(
            arena_protocol::ErrorCode::Unavailable,
            "this node cannot confirm it has every revocation; it is catching up",
        ));
    }
    Ok(Json(Health {
        status: "ok".into(),
        node: Some(cluster.node_id().to_string()),
        backplane: Some(
            if cluster.backplane_ok() {
                "ok"
            } else {
                "degraded"
            }
            .into(),
        ),
    }))
}
