//! The live-connection registry, keyed by user.
//!
//! Every WebSocket is registered here *before* its upgrade is answered, with a
//! [`ConnHandle`] that can send it frames and close it with a code. Revocation finds a
//! user's or a session's sockets here in O(that user's sockets), tells each one to
//! close, removes it, and waits until each has written its close frame, so that when
//! `POST /auth/logout` answers, its promise already holds.
//!
//! Promises:
//! - a [`Registration`] is removed from the registry when it is dropped, whatever path
//!   the socket took (clean close, error, failed upgrade, panic);
//! - [`Registry::close_where`] returns only after every matched socket has sent its close
//!   frame and gone, or after the close timeout for a socket that cannot be written to;
//! - a user never holds more than `max_per_user` registrations.

pub mod mailbox;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arena_protocol::{http::Connection, CloseCode};
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::frame::TextFrame;
use mailbox::{Mailbox, Refused};

/// Why a socket may not register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    TooManySockets,
    /// The server holds as many sockets as it may.
    ServerFull,
    ShuttingDown,
}

/// The close a socket was asked to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: CloseCode,
    pub reason: String,
}

/// One live socket as the rest of the server sees it.
pub struct ConnHandle {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub remote_addr: SocketAddr,
    pub connected_at: i64,
    /// The session and the `iat` of the token the socket lives by (one lock: a sweep
    /// reads both as one, see `auth::admission`).
    token: Mutex<(String, i64)>,
    room: Mutex<Option<String>>,
    /// Frames to write and the socket task's one waker (close requests wake it too).
    mailbox: Mailbox,
    /// Whether the upgrade completed and the socket's task runs.
    started: AtomicBool,
    close_request: OnceLock<CloseRequest>,
    gone: Gone,
}

/// Set once, when the socket is deregistered; revokers wait on it. Inline in the handle
/// (a flag and a `Notify`, about 40 bytes) where a cancellation token would be one more
/// allocation per socket, for a wait that only a closing socket ever sees.
#[derive(Default)]
struct Gone {
    set: AtomicBool,
    notify: Notify,
}

impl Gone {
    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `set` in between still wakes us
        // (`notify_waiters` wakes only futures that exist).
        notified.as_mut().enable();
        if !self.is_set() {
            notified.await;
        }
    }
}

impl ConnHandle {
    pub fn session_id(&self) -> String {
        lock(&self.token).0.clone()
    }

    /// Move the socket to another token of the same user (`reauth`).
    pub fn set_token(&self, session_id: String, issued_at: i64) {
        *lock(&self.token) = (session_id, issued_at);
    }

    /// [`ConnHandle::set_token`], returning the session and `iat` it replaced.
    pub fn replace_token(&self, session_id: String, issued_at: i64) -> (String, i64) {
        std::mem::replace(&mut *lock(&self.token), (session_id, issued_at))
    }

    pub fn room(&self) -> Option<String> {
        lock(&self.room).clone()
    }

    pub fn set_room(&self, room: Option<String>) {
        *lock(&self.room) = room;
    }

    /// Queue a frame without waiting. A socket whose queue is full is not keeping up:
    /// it is closed with 1008 rather than allowed to grow memory or delay the sender.
    pub fn send(&self, message: TextFrame) -> bool {
        match self.mailbox.queue(message) {
            Ok(()) => true,
            Err(Refused::Full) => {
                if self.close_request.get().is_none() {
                    crate::telemetry::outbound_overflow();
                }
                self.request_close(CloseCode::Policy, "too slow to read");
                false
            }
            Err(Refused::ReaderGone) => false,
        }
    }

    /// Offer a `state` frame. It replaces any older one the socket has not written yet:
    /// for a game, only the newest state matters, so a slow reader drops stale frames.
    pub fn offer_state(&self, message: TextFrame) {
        if self.mailbox.replace_state(message) {
            crate::telemetry::state_frame_dropped();
        }
    }

    /// The upgrade completed; the socket's task is running.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Ask the socket to close. The first request wins; later ones are ignored.
    pub fn request_close(&self, code: CloseCode, reason: &str) {
        let _ = self.close_request.set(CloseRequest {
            code,
            reason: reason.to_string(),
        });
        self.mailbox.wake();
    }

    /// The close this socket was asked to perform, if any.
    pub fn close_requested(&self) -> Option<&CloseRequest> {
        self.close_request.get()
    }

    /// Whether the socket has been deregistered (its task ended).
    pub fn is_gone(&self) -> bool {
        self.gone.is_set()
    }

    /// Resolves when a close is requested. For the socket's own task only: the mailbox
    /// has one waker, the task's.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.mailbox
                .poll_until(cx, || self.close_requested().is_some())
        })
    }

    pub fn to_wire(&self) -> Connection {
        Connection {
            connection_id: self.id.clone(),
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            session_id: self.session_id(),
            room: self.room(),
            connected_at: self.connected_at,
            remote_addr: self.remote_addr.to_string(),
            node: None,
            room_name: None,
        }
    }
}

/// Poisoning only means another thread panicked mid-update of a plain value; the value
/// is still usable, and one socket's bug must not take down revocation.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The socket task's side of its mailbox: queued frames in order, the latest `state`
/// frame, and the close request, all behind one wake-up. Dropping it (the task ended)
/// makes the handle refuse frames and frees what was waiting.
pub struct Outbound {
    conn: Arc<ConnHandle>,
}

/// Why the socket's task was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// A close was requested (see [`ConnHandle::close_requested`]).
    Closing,
    /// Frames wait: [`Outbound::take_pending`].
    Frames,
}

impl Outbound {
    /// Wait until a close is requested or frames wait; a close request wins.
    pub async fn ready(&mut self) -> Woken {
        let conn = &self.conn;
        std::future::poll_fn(|cx| {
            conn.mailbox
                .poll_ready(cx, || conn.close_requested().is_some())
        })
        .await;
        if conn.close_requested().is_some() {
            Woken::Closing
        } else {
            Woken::Frames
        }
    }

    /// Everything the socket has to write now, for one flush (one syscall): the queued
    /// frames in order, at most `max`, then the newest `state` if there is one. A
    /// tick's chat lines and its state leave together
    /// ([`crate::game::room::ChatDelivery::Tick`]).
    pub fn take_pending(&mut self, max: usize) -> Vec<TextFrame> {
        self.conn.mailbox.take(max)
    }

    /// The next queued frame, if any, leaving the state where it is (for tests).
    pub fn try_next_queued(&mut self) -> Option<TextFrame> {
        self.conn.mailbox.pop_queued()
    }

    /// Whether a state frame waits (for tests).
    pub fn has_state(&self) -> bool {
        self.conn.mailbox.has_state()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        self.conn.mailbox.close_reader();
    }
}

/// What a new socket registers with.
pub struct NewConnection {
    pub user_id: String,
    pub username: String,
    pub session_id: String,
    /// The `iat` of the token it was admitted with.
    pub issued_at: i64,
    pub remote_addr: SocketAddr,
    pub connected_at: i64,
}

/// The registry's bounds.
#[derive(Debug, Clone, Copy)]
pub struct RegistryLimits {
    /// Sockets one user may hold.
    pub max_per_user: usize,
    /// Sockets the server may hold.
    pub max_total: usize,
    /// Frames queued for one socket before it is closed as too slow.
    pub outbound_queue: usize,
    /// How long a close waits for each socket to write its close frame.
    pub close_timeout: Duration,
}

pub struct Registry {
    by_user: DashMap<String, Vec<Arc<ConnHandle>>>,
    live: AtomicUsize,
    next_id: AtomicU64,
    max_per_user: usize,
    max_total: usize,
    outbound_queue: usize,
    close_timeout: Duration,
    shutting_down: AtomicBool,
}

impl Registry {
    pub fn new(limits: RegistryLimits) -> Arc<Registry> {
        Arc::new(Registry {
            by_user: DashMap::new(),
            live: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            max_per_user: limits.max_per_user,
            max_total: limits.max_total,
            outbound_queue: limits.outbound_queue.max(1),
            close_timeout: limits.close_timeout,
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Register a socket. The per-user limit is checked and the entry inserted under
    /// one shard lock, so racing upgrades cannot exceed it.
    pub fn register(
        self: &Arc<Self>,
        conn: NewConnection,
    ) -> Result<(Registration, Outbound), RegisterError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(RegisterError::ShuttingDown);
        }
        // Reserve a place under the server-wide cap first; give it back on refusal.
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(RegisterError::ServerFull);
        }
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle {
            id: format!("c_{seq}_{}", crate::ids::random_token(6)),
            user_id: conn.user_id,
            username: conn.username,
            remote_addr: conn.remote_addr,
            connected_at: conn.connected_at,
            token: Mutex::new((conn.session_id, conn.issued_at)),
            room: Mutex::new(None),
            mailbox: Mailbox::new(self.outbound_queue),
            started: AtomicBool::new(false),
            close_request: OnceLock::new(),
            gone: Gone::default(),
        });
        {
            let mut entry = self.by_user.entry(handle.user_id.clone()).or_default();
            if entry.len() >= self.max_per_user {
                drop(entry);
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(RegisterError::TooManySockets);
            }
            entry.push(handle.clone());
        }
        // Shutdown may have begun between the check above and the insert; its sweep may
        // have missed us. Re-check after inserting (the same argument as revocation).
        if self.shutting_down.load(Ordering::Acquire) {
            handle.request_close(CloseCode::GoingAway, CloseCode::GoingAway.reason());
        }
        let outbound = Outbound {
            conn: handle.clone(),
        };
        Ok((
            Registration {
                registry: self.clone(),
                handle,
            },
            outbound,
        ))
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn count_for_user(&self, user_id: &str) -> usize {
        self.by_user.get(user_id).map_or(0, |v| v.len())
    }

    /// Open sockets of a user, counted by session.
    pub fn sockets_by_session(&self, user_id: &str) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        if let Some(conns) = self.by_user.get(user_id) {
            for h in conns.iter() {
                *counts.entry(h.session_id()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Open sockets per user (what a backplane counts against the deployment-wide cap).
    pub fn counts_by_user(&self) -> Vec<(String, usize)> {
        self.by_user
            .iter()
            .map(|e| (e.key().clone(), e.value().len()))
            .collect()
    }

    pub fn snapshot(&self) -> Vec<Arc<ConnHandle>> {
        self.by_user
            .iter()
            .flat_map(|e| e.value().clone())
            .collect()
    }

    fn remove(&self, handle: &ConnHandle) -> bool {
        let mut removed = false;
        if let Some(mut entry) = self.by_user.get_mut(&handle.user_id) {
            let before = entry.len();
            entry.retain(|h| h.id != handle.id);
            removed = entry.len() != before;
        }
        self.by_user.remove_if(&handle.user_id, |_, v| v.is_empty());
        if removed {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Close every socket of `user_id` (and, if given, only of that session) with
    /// `code`: ask each to close, remove it, and wait until it has sent its close frame.
    /// Returns how many sockets were closed.
    pub async fn close_user(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        code: CloseCode,
        reason: &str,
    ) -> usize {
        let closing = self.begin_close_user(user_id, session_id, code, reason);
        self.wait_closed(&closing).await;
        closing.len()
    }

    /// Ask every socket of `user_id` (of that session only, if given) to close with
    /// `code` and remove it from the registry, without waiting. A revocation that
    /// concerns several sessions requests every close first and then waits once
    /// ([`Registry::wait_closed`]), so no socket's close waits on another's.
    pub fn begin_close_user(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        code: CloseCode,
        reason: &str,
    ) -> Vec<Arc<ConnHandle>> {
        let matched: Vec<Arc<ConnHandle>> = match self.by_user.get(user_id) {
            Some(conns) => conns
                .iter()
                .filter(|h| session_id.is_none_or(|sid| lock(&h.token).0 == sid))
                .cloned()
                .collect(),
            None => return Vec::new(),
        };
        self.begin_close(matched, code, reason)
    }

    /// Close the sockets of `user_id` whose token a user-wide revocation ended: those
    /// of the `sessions` it names, and those whose token was issued before
    /// `issued_before` (its mark). A socket opened since with a fresh token stays, which
    /// matters when the event is applied late (a node catching up).
    pub async fn close_user_tokens(
        &self,
        user_id: &str,
        sessions: &[&str],
        issued_before: i64,
        code: CloseCode,
        reason: &str,
    ) -> usize {
        let matched: Vec<Arc<ConnHandle>> = match self.by_user.get(user_id) {
            Some(conns) => conns
                .iter()
                .filter(|h| {
                    let token = lock(&h.token);
                    token.1 < issued_before || sessions.contains(&token.0.as_str())
                })
                .cloned()
                .collect(),
            None => return 0,
        };
        let closing = self.begin_close(matched, code, reason);
        self.wait_closed(&closing).await;
        closing.len()
    }

    /// Ask each socket to close with `code` and remove it from the registry.
    fn begin_close(
        &self,
        handles: Vec<Arc<ConnHandle>>,
        code: CloseCode,
        reason: &str,
    ) -> Vec<Arc<ConnHandle>> {
        for h in &handles {
            h.request_close(code, reason);
            self.remove(h);
        }
        handles
    }

    /// Wait until each socket has sent its close frame and gone, or the close timeout.
    pub async fn wait_closed(&self, handles: &[Arc<ConnHandle>]) {
        if handles.is_empty() {
            return;
        }
        let wait_all = futures_util::future::join_all(handles.iter().map(|h| h.gone.wait()));
        if tokio::time::timeout(self.close_timeout, wait_all)
            .await
            .is_err()
        {
            tracing::warn!(
                sockets = handles.len(),
                "some sockets did not finish closing in time"
            );
        }
    }

    /// Release the places of upgrades accepted before `before` (ms) that never completed
    /// (the client vanished after its request). Returns how many.
    pub fn release_unstarted(&self, before: i64) -> usize {
        let stale: Vec<Arc<ConnHandle>> = self
            .snapshot()
            .into_iter()
            .filter(|h| h.connected_at < before && !h.started.load(Ordering::Acquire))
            .collect();
        for h in &stale {
            h.request_close(CloseCode::GoingAway, "upgrade did not complete");
            self.remove(h);
        }
        stale.len()
    }

    /// Close each socket for which `decide(user, session, iat)` names a close, and wait
    /// for them (a node that reloaded its revocations sweeps its sockets with this).
    /// Returns how many were closed.
    pub async fn close_where(
        &self,
        decide: impl Fn(&str, &str, i64) -> Option<(CloseCode, String)>,
    ) -> usize {
        let mut closing = Vec::new();
        for h in self.snapshot() {
            let verdict = {
                let token = lock(&h.token);
                decide(&h.user_id, &token.0, token.1)
            };
            if let Some((code, reason)) = verdict {
                closing.extend(self.begin_close(vec![h], code, &reason));
            }
        }
        self.wait_closed(&closing).await;
        closing.len()
    }

    /// Close every socket with `code` and `reason`, and go on accepting new ones.
    pub async fn close_every_socket(&self, code: CloseCode, reason: &str) -> usize {
        let closing = self.begin_close(self.snapshot(), code, reason);
        self.wait_closed(&closing).await;
        closing.len()
    }

    /// Close every socket (shutdown). New registrations are refused from now on.
    pub async fn close_all(&self, code: CloseCode) -> usize {
        self.shutting_down.store(true, Ordering::Release);
        let closing = self.begin_close(self.snapshot(), code, code.reason());
        self.wait_closed(&closing).await;
        closing.len()
    }
}

/// Proof of a registered socket. Dropping it deregisters the socket and tells anyone
/// waiting in [`Registry::close_user`] that it is gone.
pub struct Registration {
    registry: Arc<Registry>,
    handle: Arc<ConnHandle>,
}

impl Registration {
    pub fn handle(&self) -> &Arc<ConnHandle> {
        &self.handle
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.handle);
        self.handle.gone.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_per_user: usize, max_total: usize, outbound_queue: usize) -> Arc<Registry> {
        Registry::new(RegistryLimits {
            max_per_user,
            max_total,
            outbound_queue,
            close_timeout: Duration::from_millis(100),
        })
    }

    fn conn(user: &str, session: &str) -> NewConnection {
        NewConnection {
            user_id: user.into(),
            username: user.into(),
            session_id: session.into(),
            issued_at: 0,
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            connected_at: 0,
        }
    }

    #[tokio::test]
    async fn per_user_limit_and_release() {
        let r = registry(2, 100_000, 4);
        let a = r.register(conn("u", "s")).unwrap();
        let _b = r.register(conn("u", "s")).unwrap();
        assert_eq!(
            r.register(conn("u", "s")).err(),
            Some(RegisterError::TooManySockets)
        );
        assert!(r.register(conn("v", "s")).is_ok());
        drop(a);
        assert!(r.register(conn("u", "s")).is_ok());
    }

    #[tokio::test]
    async fn upgrades_that_never_start_are_released() {
        let r = registry(1, 10, 4);
        let (stuck, _rx) = r.register(conn("u", "s")).unwrap(); // connected_at = 0
        let (running, _rx2) = r.register(conn("v", "s")).unwrap();
        running.handle().mark_started();
        assert_eq!(r.release_unstarted(1), 1);
        assert_eq!(
            stuck.handle().close_requested().map(|c| c.code),
            Some(CloseCode::GoingAway)
        );
        assert!(
            r.register(conn("u", "s")).is_ok(),
            "the place was given back"
        );
        assert_eq!(r.count_for_user("v"), 1);
    }

    #[tokio::test]
    async fn server_wide_cap() {
        let r = registry(8, 2, 4);
        let a = r.register(conn("u", "s")).unwrap();
        let _b = r.register(conn("v", "s")).unwrap();
        assert_eq!(
            r.register(conn("w", "s")).err(),
            Some(RegisterError::ServerFull)
        );
        assert_eq!(r.live(), 2);
        drop(a);
        assert!(r.register(conn("w", "s")).is_ok());
    }

    #[tokio::test]
    async fn close_user_session_only_matches_that_session() {
        let r = registry(8, 100_000, 4);
        let (a, _ra) = r.register(conn("u", "s1")).unwrap();
        let (b, _rb) = r.register(conn("u", "s2")).unwrap();
        let (c, _rc) = r.register(conn("v", "s1")).unwrap();
        // Nobody drives these sockets, so the wait ends by timeout; the count still holds.
        let closed = r
            .close_user("u", Some("s1"), CloseCode::SessionRevoked, "x")
            .await;
        assert_eq!(closed, 1);
        assert_eq!(
            a.handle().close_requested().map(|c| c.code),
            Some(CloseCode::SessionRevoked)
        );
        assert!(b.handle().close_requested().is_none());
        assert!(c.handle().close_requested().is_none());
        assert_eq!(r.live(), 2);
    }

    #[tokio::test]
    async fn full_queue_requests_policy_close() {
        let r = registry(8, 100_000, 1);
        let (a, _rx) = r.register(conn("u", "s")).unwrap();
        assert!(a.handle().send(TextFrame::from("1")));
        assert!(!a.handle().send(TextFrame::from("2")));
        assert_eq!(
            a.handle().close_requested().map(|c| c.code),
            Some(CloseCode::Policy)
        );
    }
}
