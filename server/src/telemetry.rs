//! What an operator can see: Prometheus metrics (served at `/metrics`) and the names of
//! every series in one place. Recording is a few atomic operations through the `metrics`
//! facade; rendering happens only when scraped.
//!
//! Series (all prefixed `arena_`):
//! - `sockets_live` gauge; `sockets_opened_total`; `sockets_closed_total{code}`
//!   (`code` = the close code sent, or `none` when the peer vanished)
//! - `logins_total{outcome}`: `ok`, `invalid_credentials`, `banned`, `rate_limited`, `error`
//! - `revocations_total{kind}`: `session`, `user`; `admin_actions_total{action}`
//! - `auth_failures_total{reason}`: the protocol error code of a refused token
//! - `tick_duration_seconds` histogram; `state_frames_dropped_total` (stale frames a
//!   slow reader never got); `outbound_overflows_total` (sockets closed as too slow)
//! - `http_request_duration_seconds{method,route,status}` histogram. Every label comes
//!   from a fixed set, whatever a client sends: `method` is a standard method or
//!   `other`, `route` a route pattern, `static` (a file served) or `unmatched`, `status`
//!   a number from 100 to 599 or `other`
//! - `http_connection_deadlines_total{phase}`: connections closed (or requests answered
//!   408) at a deadline: `header`, `body`, `response`, `idle`
//! - `http_connections_refused_total{reason}`: connections closed at accept:
//!   `per_address`
//! - `cluster_ack_seconds` histogram: publishing a revocation on the backplane until
//!   the last live node confirmed it (or the ack timeout); `cluster_acks_missing_total`:
//!   live nodes that did not confirm in time; `cluster_backplane_up` gauge (1 or 0)

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the Prometheus recorder (once per process).
pub fn install() {
    HANDLE.get_or_init(|| {
        let latency = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5,
        ];
        let tick = [
            0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
        ];
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("arena_http_request_duration_seconds".into()),
                &latency,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("arena_tick_duration_seconds".into()), &tick)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("arena_cluster_ack_seconds".into()),
                    &latency,
                )
            })
            .and_then(|b| b.install_recorder())
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
            .ok()
    });
}

/// The current metrics in Prometheus' text format.
pub fn render() -> String {
    match HANDLE.get().and_then(Option::as_ref) {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

pub fn socket_opened() {
    gauge!("arena_sockets_live").increment(1.0);
    counter!("arena_sockets_opened_total").increment(1);
}

pub fn socket_closed(code: Option<u16>) {
    gauge!("arena_sockets_live").decrement(1.0);
    let code = code.map_or_else(|| "none".to_string(), |c| c.to_string());
    counter!("arena_sockets_closed_total", "code" => code).increment(1);
}

pub fn cluster_ack(elapsed: Duration, missing: usize) {
    histogram!("arena_cluster_ack_seconds").record(elapsed.as_secs_f64());
    if missing > 0 {
        counter!("arena_cluster_acks_missing_total").increment(missing as u64);
    }
}

pub fn backplane_up(up: bool) {
    gauge!("arena_cluster_backplane_up").set(if up { 1.0 } else { 0.0 });
}

/// A backplane message refused: not sealed by a node of this deployment, or unreadable.
pub fn backplane_refused(reason: &'static str) {
    counter!("arena_cluster_messages_refused_total", "reason" => reason).increment(1);
}

/// This node reloaded its revocations because the log could not be followed (it went
/// back, or was pruned past the node).
pub fn log_resync() {
    counter!("arena_revocation_log_resyncs_total").increment(1);
}

pub fn login(outcome: &'static str) {
    counter!("arena_logins_total", "outcome" => outcome).increment(1);
}

pub fn revocation(kind: &'static str, sessions: usize) {
    counter!("arena_revocations_total", "kind" => kind).increment(sessions.max(1) as u64);
}

pub fn admin_action(action: &'static str) {
    counter!("arena_admin_actions_total", "action" => action).increment(1);
}

pub fn auth_failure(reason: &'static str) {
    counter!("arena_auth_failures_total", "reason" => reason).increment(1);
}

pub fn tick(duration: Duration) {
    histogram!("arena_tick_duration_seconds").record(duration.as_secs_f64());
}

pub fn state_frame_dropped() {
    counter!("arena_state_frames_dropped_total").increment(1);
}

/// A frame relayed to a room's members on other nodes (one per frame, not per member).
pub fn room_relayed() {
    counter!("arena_room_relays_total").increment(1);
}

/// A room message dropped because the backplane writer was a whole queue behind.
pub fn room_message_dropped() {
    counter!("arena_room_messages_dropped_total").increment(1);
}

pub fn outbound_overflow() {
    counter!("arena_outbound_overflows_total").increment(1);
}

/// Middleware: the latency of every HTTP request, labelled by its route pattern (not
/// its path, so ids do not explode the series count) and by labels from fixed sets only:
/// a client chooses its method token and path freely, and every distinct label value
/// would be a series kept for the life of the process.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let route = route.unwrap_or_else(|| unmatched_label(status).to_string());
    histogram!(
        "arena_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => status_label(status)
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A connection closed, or a request answered 408, at one of its deadlines.
/// A connection closed at accept: `per_address` (its address holds as many as it may).
pub fn connection_refused(reason: &'static str) {
    counter!("arena_http_connections_refused_total", "reason" => reason).increment(1);
}

pub fn connection_deadline(phase: &'static str) {
    counter!("arena_http_connection_deadlines_total", "phase" => phase).increment(1);
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The route label of a request no route pattern matched: the fallback served a file,
/// or nothing was there.
fn unmatched_label(status: StatusCode) -> &'static str {
    if status.is_success() || status.is_redirection() {
        "static"
    } else {
        "unmatched"
    }
}

fn status_label(status: StatusCode) -> String {
    // A handler may pick any of 100..=999; the protocol uses the standard range.
    if (100..600).contains(&status.as_u16()) {
        status.as_u16().to_string()
    } else {
        "other".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"ZZ1").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
        assert_eq!(unmatched_label(StatusCode::OK), "static");
        assert_eq!(unmatched_label(StatusCode::NOT_MODIFIED), "static");
        assert_eq!(unmatched_label(StatusCode::NOT_FOUND), "unmatched");
        assert_eq!(status_label(StatusCode::NOT_FOUND), "404");
        assert_eq!(status_label(StatusCode::from_u16(999).unwrap()), "other");
    }
}
