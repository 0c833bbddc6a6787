//! The accept loop. We run hyper ourselves instead of `axum::serve` because the defaults
//! there leave doors open: no deadline on any phase of a connection (slowloris, silent
//! or idle connections, trickled bodies) and no bound on open connections.
//!
//! Promises: at most `max_connections` HTTP connections are served at once (further
//! clients wait in the kernel's accept queue), at most `max_per_address` of them from one
//! client address (an IPv6 /64 counts as one: one host can hold many of its addresses);
//! one more from that address is closed at once, so one client cannot take every slot by
//! being cheaply busy. None of them can hold its slot by being slow either, because
//! every phase of a connection has a deadline:
//! - from accept until its first request's headers are in (protocol detection, the
//!   HTTP/2 preface, the headers): `header_timeout`. hyper-util's protocol detection has
//!   no timer of its own (hyperium/hyper#3962), and hyper's header timer only starts
//!   after it, so this deadline is ours;
//! - a request body, in total from its headers: `body_timeout`. A late body is answered
//!   408 `request_timeout` and the connection closed;
//! - a response body, from the handler's answer until the last of it is handed to the
//!   connection: `body_timeout`; past it the connection is closed;
//! - between requests (HTTP/1 keep-alive, HTTP/2 with no open stream): `idle_timeout`.
//!   hyper's own header timer also runs while an HTTP/1 connection waits for its next
//!   request, so there the shorter of the two applies.
//!
//! A WebSocket leaves hyper, and these deadlines and counts, with its 101 answer; its
//! heartbeat and the registry's socket caps watch it from then on. HTTP/2 connections
//! are held to a few concurrent streams and small flow-control windows, so one connection
//! cannot run hundreds of handlers or buffer megabytes. On `stop`, accepting ends and in-flight requests get up to
//! `drain` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arena_protocol::ErrorCode;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Version};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::Error;

#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// HTTP connections one client address (IPv6: one /64) may hold at once.
    pub max_per_address: usize,
    pub drain: Duration,
}

/// Concurrent HTTP/2 streams per connection: a browser or game client needs a handful.
const HTTP2_MAX_STREAMS: u32 = 32;
/// HTTP/2 flow-control windows: request bodies here are at most a few KiB.
const HTTP2_STREAM_WINDOW: u32 = 64 * 1024;
const HTTP2_CONNECTION_WINDOW: u32 = 256 * 1024;
const HTTP2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// Open connections per client address. The count is taken under the map's shard lock,
/// so racing accepts from one address cannot exceed the limit.
struct PerAddress {
    open: dashmap::DashMap<AddressKey, usize>,
    limit: usize,
}

/// A client address as every per-address limit counts it: an IPv4 address, or the /64 an
/// IPv6 address is in (one host, or one customer of a provider, holds a whole /64 and
/// can send from any of its addresses). The connection cap and the rate limits of
/// register, login and refresh all key on this, so varying the low 64 bits gains nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AddressKey {
    V4(std::net::Ipv4Addr),
    V6Prefix(u64),
}

impl AddressKey {
    pub(crate) fn of(ip: std::net::IpAddr) -> AddressKey {
        match ip {
            std::net::IpAddr::V4(v4) => AddressKey::V4(v4),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4),
                None => AddressKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// `203.0.113.7`, or `2001:db8:1:2::/64`: the key's part of a rate-limit key.
impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressKey::V4(v4) => write!(f, "{v4}"),
            AddressKey::V6Prefix(prefix) => {
                let network = std::net::Ipv6Addr::from(u128::from(*prefix) << 64);
                write!(f, "{network}/64")
            }
        }
    }
}

/// One connection counted against its address; uncounted when dropped.
struct AddressSlot {
    per_address: Arc<PerAddress>,
    key: AddressKey,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let key = AddressKey::of(ip);
        let mut open = self.open.entry(key).or_insert(0);
        if *open >= self.limit {
            return None;
        }
        *open += 1;
        Some(AddressSlot {
            per_address: self.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(mut open) = self.per_address.open.get_mut(&self.key) {
            *open = open.saturating_sub(1);
        }
        self.per_address
            .open
            .remove_if(&self.key, |_, open| *open == 0);
    }
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress {
        open: dashmap::DashMap::new(),
        limit: limits.max_per_address.max(1),
    });
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(HTTP2_MAX_STREAMS as usize);

    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = per_address.take(remote.ip()) else {
            // Closed at once: better a quick refusal than a slot held from everyone else.
            tracing::debug!(%remote, "too many connections from this address");
            crate::telemetry::connection_refused("per_address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new(limits));
        let service = {
            let (router, activity) = (router.clone(), activity.clone());
            hyper::service::service_fn(move |request: Request<Incoming>| {
                handle(router.clone(), activity.clone(), remote, request)
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                phase = activity.expired() => {
                    // Dropping the connection closes the socket, whatever hyper was
                    // waiting for.
                    tracing::debug!(%remote, phase = phase.as_str(), "connection closed at its deadline");
                    crate::telemetry::connection_deadline(phase.as_str());
                }
            }
            drop(address_slot);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in {:?}", limits.drain);
    }
}

/// One request through the router, with its connection's bookkeeping around it.
async fn handle(
    router: Router,
    activity: Arc<Activity>,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Result<axum::response::Response<Delivery>, Infallible> {
    let mut ticket = activity.begin();
    let limits = activity.limits;
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(remote));
    let version = parts.version;
    let timed_out = Arc::new(AtomicBool::new(false));
    let body = DeadlineBody::new(
        body,
        Instant::now() + limits.body_timeout,
        timed_out.clone(),
    );
    let mut response = match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if timed_out.load(Ordering::Relaxed) {
        // Whatever the handler made of its failed read, the client was too slow: say so.
        crate::telemetry::connection_deadline(Phase::Body.as_str());
        response = Error::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                limits.body_timeout.as_millis()
            ),
        )
        .into_response();
        // The rest of the body may still be on its way: do not read it as a request.
        if version < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    ticket.delivering(Instant::now() + limits.body_timeout);
    Ok(response.map(|body| Delivery {
        inner: body,
        ticket: Some(ticket),
    }))
}

/// The deadline that closed a connection (a metric label, so a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the first request's headers were in.
    Header,
    /// A request body that did not arrive in time.
    Body,
    /// A response body a client did not take in time.
    Response,
    /// Waiting for the next request.
    Idle,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Body => "body",
            Phase::Response => "response",
            Phase::Idle => "idle",
        }
    }
}

/// What one connection is doing, for its watchdog: requests being handled, responses
/// being delivered, and since when it has been idle.
struct Activity {
    limits: ServeLimits,
    state: Mutex<ActivityState>,
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    accepted_at: Instant,
    /// Requests seen so far (the first one's headers are bound by the header timeout).
    requests: u64,
    /// Requests whose handler is running. No connection deadline then: our handlers
    /// are bounded, and a request body has its own deadline.
    handling: usize,
    /// Responses being delivered: (request number, deadline). A handful at most (HTTP/2
    /// streams of one connection), so a vector.
    delivering: Vec<(u64, Instant)>,
    idle_since: Instant,
}

impl ActivityState {
    fn new(now: Instant) -> Self {
        ActivityState {
            accepted_at: now,
            requests: 0,
            handling: 0,
            delivering: Vec::new(),
            idle_since: now,
        }
    }

    /// When the connection must be closed if nothing changes, and why.
    fn deadline(&self, limits: &ServeLimits) -> Option<(Instant, Phase)> {
        if let Some(due) = self.delivering.iter().map(|(_, due)| *due).min() {
            return Some((due, Phase::Response));
        }
        if self.handling > 0 {
            return None;
        }
        if self.requests == 0 {
            Some((self.accepted_at + limits.header_timeout, Phase::Header))
        } else {
            Some((self.idle_since + limits.idle_timeout, Phase::Idle))
        }
    }
}

impl Activity {
    fn new(limits: ServeLimits) -> Activity {
        Activity {
            limits,
            state: Mutex::new(ActivityState::new(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's headers are in.
    fn begin(self: &Arc<Self>) -> Ticket {
        let number = {
            let mut state = self.lock();
            state.requests += 1;
            state.handling += 1;
            state.requests
        };
        // No wake-up needed: a running handler only removes a deadline, and the
        // watchdog looks again when the old one passes.
        Ticket {
            activity: self.clone(),
            number,
            delivering: false,
        }
    }

    /// Resolves when the connection has passed a deadline; which one.
    async fn expired(&self) -> Phase {
        loop {
            let next = self.lock().deadline(&self.limits);
            match next {
                Some((due, phase)) if due <= Instant::now() => return phase,
                Some((due, _)) => {
                    tokio::select! {
                        _ = sleep_until(due) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// One request's place in its connection's [`Activity`], from its headers until its
/// response body is delivered (or dropped).
struct Ticket {
    activity: Arc<Activity>,
    number: u64,
    delivering: bool,
}

impl Ticket {
    /// The handler answered; the response body must be delivered by `due`.
    fn delivering(&mut self, due: Instant) {
        {
            let mut state = self.activity.lock();
            state.handling = state.handling.saturating_sub(1);
            state.delivering.push((self.number, due));
        }
        self.delivering = true;
        // `notify_one` keeps a permit if the watchdog is not waiting at this moment.
        self.activity.changed.notify_one();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut state = self.activity.lock();
            if self.delivering {
                state.delivering.retain(|(n, _)| *n != self.number);
            } else {
                state.handling = state.handling.saturating_sub(1);
            }
            if state.handling == 0 && state.delivering.is_empty() {
                state.idle_since = Instant::now();
            }
        }
        self.activity.changed.notify_one();
    }
}

/// A request body with a total deadline. tower-http's `TimeoutBody` restarts its timer
/// on every frame, so a body trickled a byte at a time would never trip it.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Created on the first poll: most requests have no body to wait for.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadline: Instant, timed_out: Arc<AtomicBool>) -> Self {
        DeadlineBody {
            inner,
            deadline,
            timer: None,
            timed_out,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        if this.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as Self::Error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`Ticket`] until the last frame is handed
/// to the connection (or the body is dropped), so the connection counts as busy, under
/// the delivery deadline, until then.
pub struct Delivery {
    inner: axum::body::Body,
    ticket: Option<Ticket>,
}

impl Body for Delivery {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ticket = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            AddressKey::of(ip("2001:db8:1:2::1")),
            AddressKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            AddressKey::of(ip("2001:db8:1:2::1")),
            AddressKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddressKey::of(ip("::ffff:192.0.2.1")),
            AddressKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_places_back() {
        let per = Arc::new(PerAddress {
            open: dashmap::DashMap::new(),
            limit: 2,
        });
        let a = "192.0.2.1".parse().unwrap();
        let first = per.take(a).expect("1");
        let _second = per.take(a).expect("2");
        assert!(per.take(a).is_none());
        assert!(per.take("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(per.take(a).is_some());
    }

    fn limits() -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_millis(100),
            body_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(1000),
            max_connections: 1,
            max_per_address: 1,
            drain: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_is_bound_by_the_header_timeout() {
        let activity = Arc::new(Activity::new(limits()));
        let started = Instant::now();
        assert_eq!(activity.expired().await, Phase::Header);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_handler_has_no_deadline_then_delivery_and_idle_do() {
        let activity = Arc::new(Activity::new(limits()));
        let mut ticket = activity.begin();
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { (activity.expired().await, Instant::now()) }
        });
        // Long past every timeout, the handler still runs: the connection stays.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!watchdog.is_finished());
        let answered = Instant::now();
        ticket.delivering(answered + limits().body_timeout);
        let (phase, at) = watchdog.await.unwrap();
        assert_eq!(
            (phase, at - answered),
            (Phase::Response, limits().body_timeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivered_response_leaves_the_connection_idle() {
        let activity = Arc::new(Activity::new(limits()));
        let mut ticket = activity.begin();
        ticket.delivering(Instant::now() + limits().body_timeout);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = Instant::now();
        drop(ticket);
        assert_eq!(activity.expired().await, Phase::Idle);
        assert_eq!(done.elapsed(), limits().idle_timeout);
    }

    #[test]
    fn the_earliest_delivery_deadline_wins_over_a_running_handler() {
        let now = Instant::now();
        let mut state = ActivityState::new(now);
        state.requests = 3;
        state.handling = 1;
        state.delivering = vec![
            (2, now + Duration::from_secs(5)),
            (3, now + Duration::from_secs(1)),
        ];
        assert_eq!(
            state.deadline(&limits()),
            Some((now + Duration::from_secs(1), Phase::Response))
        );
        state.delivering.clear();
        assert_eq!(state.deadline(&limits()), None);
    }
}
