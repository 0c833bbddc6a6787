//! One socket's life: the `welcome`, then a single task that reads client frames,
//! writes queued frames, and obeys close requests and its token's expiry.
//!
//! One task owns the socket, so replies need no lock and frames never interleave. The
//! `select!` is biased towards a close request: once revocation asks, the socket sends
//! its close frame before anything else, tells the registry it is gone, and only then
//! lingers for the client's close reply (see [`goodbye`]): the close frame reaches a
//! client that is still sending.
//!
//! Every frame the client sends (text, binary, ping, pong) counts against the message
//! rate: each costs the server a read and often a reply. `token_expiring` is sent at most
//! once per expiry instant: a `reauth` that leaves `exp` unchanged does not re-arm it.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arena_protocol::ws::{ClientMessage, ServerMessage};
use arena_protocol::{CloseCode, ErrorCode, PROTOCOL_VERSION};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::{sleep_until, Instant};

use crate::auth::admission::Rebind;
use crate::auth::peers::SocketLease;
use crate::auth::tokens::Claims;
use crate::error::Error;
use crate::frame::TextFrame;
use crate::ids;
use crate::registry::{ConnHandle, Outbound, Registration, Woken};
use crate::state::AppState;

/// Queued frames written with one flush at most.
const MAX_BATCH: usize = 64;

struct Session {
    state: AppState,
    conn: Arc<ConnHandle>,
    /// The `exp` of the token the socket lives by. The rest of the claims is not kept:
    /// the user, name and session are on `conn`, and an idle socket should not carry six
    /// strings it never reads again.
    exp: i64,
    limiter: Option<DefaultDirectRateLimiter>,
    rate_strikes: u32,
    invalid_frames: u32,
    /// The `exp` that `token_expiring` was sent for: the warning re-arms only for
    /// another one.
    warned_exp: Option<i64>,
    /// Frames decided on since the last write: replies, pings, and the queued frames
    /// and state. `drive` writes them all at its one write site, so the socket's task
    /// carries one write future, not one per place that answers.
    outgoing: Vec<Message>,
}

/// What handling one client frame decided.
enum Next {
    Continue,
    /// Close the socket with this code.
    Close(CloseCode, String),
    /// Stop serving: a close was requested from outside (the caller sends it), or the
    /// peer is gone.
    Stop,
}

/// The socket's task. Its parts are built here and handed to [`SocketTask::serve`] in
/// one box: an `async fn` stores its arguments in its future and again in the locals
/// they are moved to, so passing them by value would carry each part twice for the
/// socket's life (measured: 2.6 KB of future for 0.7 KB of parts).
pub fn run(
    state: AppState,
    socket: WebSocket,
    registration: Registration,
    outbound: Outbound,
    claims: Claims,
    lease: Option<Box<dyn SocketLease>>,
) -> impl Future<Output = ()> + Send {
    let conn = registration.handle().clone();
    conn.mark_started();
    let limiter = NonZeroU32::new(state.config.ws_rate_limit).map(|rate| {
        let burst = NonZeroU32::new(state.config.ws_rate_limit.saturating_mul(2)).unwrap_or(rate);
        RateLimiter::direct_with_clock(
            Quota::per_second(rate).allow_burst(burst),
            state.clock.clone(),
        )
    });
    let session = Session {
        state,
        outgoing: vec![welcome(&claims, &conn)],
        conn,
        exp: claims.exp,
        limiter,
        rate_strikes: 0,
        invalid_frames: 0,
        warned_exp: None,
    };
    Box::new(SocketTask {
        session,
        socket,
        registration,
        outbound,
        _counted: lease,
    })
    .serve()
}

struct SocketTask {
    session: Session,
    socket: WebSocket,
    registration: Registration,
    outbound: Outbound,
    /// The socket's place under the deployment-wide cap, given back with the task.
    _counted: Option<Box<dyn SocketLease>>,
}

impl SocketTask {
    async fn serve(mut self: Box<Self>) {
        crate::telemetry::socket_opened();
        let mut close = self
            .session
            .drive(&mut self.socket, &mut self.outbound)
            .await;
        // A close requested from outside wins over one we decided ourselves.
        let session = &self.session;
        if let Some(req) = session.conn.close_requested() {
            close = Some((req.code, req.reason.clone()));
        }
        session.state.rooms.leave_current(&session.conn);
        crate::telemetry::socket_closed(close.as_ref().map(|(code, _)| code.code()));
        match close {
            // Boxed: an idle socket's task does not carry the goodbye's timers and futures.
            Some(close) => {
                let config = &self.session.state.config;
                let (timeout, linger) = (config.close_timeout(), config.ws_close_linger());
                let SocketTask {
                    socket,
                    registration,
                    _counted: counted,
                    ..
                } = *self;
                Box::pin(goodbye(socket, registration, close, timeout, linger)).await;
                // The place under the deployment-wide cap is given back last, as before.
                drop(counted);
            }
            None => drop(self),
        }
    }
}

/// Send our close frame (at most `timeout` for a peer that does not read), deregister
/// (which wakes the revoker waiting for this socket), then read and discard whatever
/// the client still sends until its close reply, the end of its stream, or `linger`.
///
/// Why read: a TCP socket closed with unread input makes the kernel answer with a
/// reset instead of an orderly end. A client still sending when our close frame
/// arrives (its game loop does not stop for a frame it has not read yet) then has its
/// next write fail with "connection reset", and most WebSocket libraries report that
/// as a network error and drop the close frame they had not read yet, so the client
/// reconnects instead of learning why it was closed. The client's close reply is the
/// last thing it sends (RFC 6455 5.5.1), so once it is read nothing is left unread
/// and dropping the socket ends the connection with a FIN. tungstenite does not
/// answer pings after our close frame, so draining costs only reads.
///
/// The write side is shut down by that drop: axum's `WebSocket` does not hand out the
/// TCP stream, and tokio-tungstenite's `close` only flushes. A client that neither
/// replies nor stops within `linger` gets the reset: it had that long to read the close.
async fn goodbye(
    mut socket: WebSocket,
    registration: Registration,
    (code, reason): (CloseCode, String),
    timeout: Duration,
    linger: Duration,
) {
    let frame = CloseFrame {
        code: code.code(),
        reason: arena_protocol::close::truncate_reason(&reason).into(),
    };
    let sent = tokio::time::timeout(timeout, socket.send(Message::Close(Some(frame)))).await;
    // Deregister and wake the revoker now; what follows is only for the client's sake.
    drop(registration);
    if !matches!(sent, Ok(Ok(()))) {
        // The client does not read, or the connection is gone: nobody to linger for.
        return;
    }
    let drained = tokio::time::timeout(linger, async {
        let mut discarded = 0u32;
        loop {
            match socket.recv().await {
                Some(Ok(Message::Close(_))) | None => return discarded,
                Some(Ok(_)) => discarded = discarded.saturating_add(1),
                // A broken stream: there is nothing more to read in order.
                Some(Err(_)) => return discarded,
            }
        }
    })
    .await;
    match drained {
        Ok(discarded) => {
            tracing::debug!(code = code.code(), discarded, "close acknowledged");
        }
        Err(_) => tracing::debug!(code = code.code(), "no close reply within the linger"),
    }
}

/// When the socket's one timer must next fire: the token's expiry, the warning before
/// it, and the heartbeat.
struct Deadlines {
    expire_at: Instant,
    /// `None` once `token_expiring` was sent for the current `exp`.
    warn_at: Option<Instant>,
    /// `None` when heartbeats are off.
    beat_at: Option<Instant>,
}

impl Deadlines {
    fn next(&self) -> Instant {
        [self.warn_at, self.beat_at]
            .into_iter()
            .flatten()
            .fold(self.expire_at, Instant::min)
    }
}

fn welcome(claims: &Claims, conn: &ConnHandle) -> Message {
    text(&ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        user: arena_protocol::http::User {
            id: claims.sub.clone(),
            username: claims.username.clone(),
            role: claims.role,
        },
        session_id: claims.sid.clone(),
        connection_id: conn.id.clone(),
        expires_at: claims.exp * 1000,
        server_time: ids::now_ms(),
    })
}

impl Session {
    /// Run until the socket should close; returns the close to send, if any.
    ///
    /// The task waits on three things only: its mailbox (frames to write, or a close
    /// request), the socket, and one timer for the token's expiry, the warning before it
    /// and the heartbeat. An idle socket's task is a few hundred bytes and a wake-up
    /// polls nothing it does not need.
    async fn drive(
        &mut self,
        socket: &mut WebSocket,
        outbound: &mut Outbound,
    ) -> Option<(CloseCode, String)> {
        // Heartbeat: ping when the socket has been quiet for an interval; a socket that
        // stays silent for a second interval (no pong, nothing) is a dead peer. The
        // timer is not moved for every frame heard (20 inputs a second would each touch
        // the timer wheel): when it fires, it first checks whether the socket spoke
        // meanwhile, and if so it is set again from the last time it did.
        let heartbeat = Duration::from_secs(self.state.config.heartbeat_secs);
        let mut last_heard = Instant::now();
        let mut pinged = false;
        let (warn_at, expire_at) = self.expiry_instants();
        let mut deadlines = Deadlines {
            expire_at,
            warn_at: Some(warn_at),
            beat_at: (!heartbeat.is_zero()).then(|| last_heard + heartbeat),
        };
        let timer = sleep_until(deadlines.next());
        tokio::pin!(timer);
        loop {
            if !self.outgoing.is_empty() {
                let batch = std::mem::take(&mut self.outgoing);
                if let Some(close) = self.send_all(socket, batch).await.into_close()? {
                    return Some(close);
                }
            }
            // The timer first: a socket flooded with frames still expires on time. A close
            // requested meanwhile still wins (the caller looks at the request first).
            tokio::select! {
                biased;
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= deadlines.expire_at {
                        return Some((CloseCode::TokenExpired, CloseCode::TokenExpired.reason().into()));
                    }
                    if deadlines.warn_at.is_some_and(|at| at <= now) {
                        deadlines.warn_at = None;
                        self.warned_exp = Some(self.exp);
                        self.reply(ServerMessage::TokenExpiring { expires_at: self.exp * 1000 });
                    }
                    if deadlines.beat_at.is_some_and(|at| at <= now) {
                        if last_heard + heartbeat > now {
                            deadlines.beat_at = Some(last_heard + heartbeat);
                        } else if pinged {
                            tracing::debug!(connection = %self.conn.id, "no answer to ping: dropping");
                            return None;
                        } else {
                            pinged = true;
                            deadlines.beat_at = Some(now + heartbeat);
                            self.outgoing.push(Message::Ping(Default::default()));
                        }
                    }
                    timer.as_mut().reset(deadlines.next());
                }
                woken = outbound.ready() => match woken {
                    Woken::Closing => return None, // the caller reads the request
                    Woken::Frames => self.take_pending(outbound),
                },
                incoming = socket.recv() => {
                    last_heard = Instant::now();
                    pinged = false;
                    let next = match incoming {
                        None => return None,
                        Some(Err(e)) => return read_error_close(e),
                        Some(Ok(Message::Close(_))) => return None,
                        // Any other frame is charged first; over the rate it is dropped.
                        Some(Ok(_)) if !self.within_rate() => self.over_rate(),
                        Some(Ok(Message::Text(t))) => {
                            let exp_before = self.exp;
                            let next = self.on_text(t.as_str()).await;
                            if self.exp != exp_before {
                                // The warning re-arms only for another `exp` (`warned_exp`).
                                let (warn_at, expire_at) = self.expiry_instants();
                                deadlines.expire_at = expire_at;
                                deadlines.warn_at = (self.warned_exp != Some(self.exp))
                                    .then_some(warn_at);
                                timer.as_mut().reset(deadlines.next());
                            }
                            next
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.invalid(ErrorCode::InvalidJson, "frames must be JSON text")
                        }
                        // tungstenite answers pings itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
                    };
                    if let Some(close) = next.into_close()? {
                        return Some(close);
                    }
                }
            }
        }
    }

    /// Add everything the outbound side has pending (see [`Outbound::take_pending`]).
    fn take_pending(&mut self, outbound: &mut Outbound) {
        let room = MAX_BATCH.saturating_sub(self.outgoing.len()).max(1);
        let frames = outbound.take_pending(room);
        self.outgoing
            .extend(frames.into_iter().map(TextFrame::into_message));
    }

    /// When to warn about expiry, and when the token expires, as tokio instants.
    fn expiry_instants(&self) -> (Instant, Instant) {
        let now_ms = ids::now_ms();
        let exp_ms = self.exp * 1000;
        let until_exp = Duration::from_millis((exp_ms - now_ms).max(0) as u64);
        let warn_before = Duration::from_secs(self.state.config.token_expiring_secs);
        let now = Instant::now();
        (now + until_exp.saturating_sub(warn_before), now + until_exp)
    }

    /// Charge one client frame to the message rate. `false`: over the rate.
    fn within_rate(&mut self) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if limiter.check().is_err() {
            return false;
        }
        self.rate_strikes = 0;
        true
    }

    /// A frame over the rate: the first of a run gets `rate_limited`, a long run closes
    /// the socket with 1008.
    fn over_rate(&mut self) -> Next {
        self.rate_strikes += 1;
        if self.rate_strikes > self.state.config.ws_rate_limit.max(1) {
            return Next::Close(CloseCode::Policy, "message rate limit exceeded".into());
        }
        if self.rate_strikes == 1 {
            return self.reply(ServerMessage::error(ErrorCode::RateLimited, "slow down"));
        }
        Next::Continue
    }

    async fn on_text(&mut self, text_frame: &str) -> Next {
        let message = match ClientMessage::decode(text_frame) {
            Ok(m) => m,
            Err(e) => return self.invalid(e.code, &e.message),
        };
        // "Repeated" invalid frames means a run of them; one good frame ends the run.
        self.invalid_frames = 0;
        match message {
            ClientMessage::Ping { id } => self.reply(ServerMessage::Pong {
                id,
                server_time: ids::now_ms(),
            }),
            // Joining and reauth are rare and their futures are large (a join may wait
            // for another node): boxed, their state is allocated only while they run,
            // not carried in every idle socket's task.
            ClientMessage::Join { room } => Box::pin(self.join(&room)).await,
            ClientMessage::Leave => match self.state.rooms.leave_current(&self.conn) {
                Some(room) => self.reply(ServerMessage::Left { room, reason: None }),
                None => self.not_in_room(),
            },
            ClientMessage::Input { seq, dx, dy } => {
                if !self.state.rooms.input(&self.conn, seq, dx, dy) {
                    return self.not_in_room();
                }
                Next::Continue
            }
            ClientMessage::Chat { text: body } => {
                if !self.state.rooms.chat(&self.conn, body) {
                    return self.not_in_room();
                }
                Next::Continue
            }
            ClientMessage::Reauth { access_token } => self.reauth(&access_token),
        }
    }

    /// Join a room, wherever it runs. Finding its owner may take a while (up to a lease
    /// when the owner just died): a close request interrupts the wait, so a revoked
    /// socket never stays open for a join.
    async fn join(&mut self, room: &str) -> Next {
        let rooms = self.state.rooms.clone();
        let joining = rooms.join(&self.conn, room);
        let joined = tokio::select! {
            biased;
            _ = self.conn.closing() => return Next::Stop,
            joined = joining => joined,
        };
        match joined {
            Ok(joined) => {
                if let Some(old) = joined.left {
                    let left = ServerMessage::Left {
                        room: old,
                        reason: None,
                    };
                    self.reply(left);
                }
                let world = Some(self.state.rooms.world());
                let message = ServerMessage::Joined {
                    room: joined.room,
                    members: joined.members,
                    world,
                };
                self.reply(message)
            }
            Err(code) => self.reply(ServerMessage::error(code, room_error(code))),
        }
    }

    /// Move the socket onto a fresh token of the same user.
    fn reauth(&mut self, token: &str) -> Next {
        let claims = match self.state.auth.authenticate(token) {
            Ok(c) => c,
            Err(e) => return self.reply(error_frame(&e)),
        };
        if claims.sub != self.conn.user_id {
            return self.reply(ServerMessage::error(
                ErrorCode::Forbidden,
                "the token is for another user",
            ));
        }
        match self.state.auth.rebind(&self.conn, &claims) {
            Rebind::Moved => {}
            Rebind::Refused => {
                return self.reply(ServerMessage::error(
                    ErrorCode::TokenRevoked,
                    "the token has been revoked",
                ))
            }
            // The close is requested; the caller sends it.
            Rebind::Closed => return Next::Stop,
        }
        let answer = ServerMessage::Reauthed {
            session_id: claims.sid.clone(),
            expires_at: claims.exp * 1000,
        };
        // The expiry warning re-arms by itself if `exp` moved (see `warned_exp`).
        self.exp = claims.exp;
        self.reply(answer)
    }

    fn invalid(&mut self, code: ErrorCode, message: &str) -> Next {
        self.invalid_frames += 1;
        if self.invalid_frames > self.state.config.max_invalid_frames {
            return Next::Close(
                CloseCode::ProtocolError,
                CloseCode::ProtocolError.reason().into(),
            );
        }
        self.reply(ServerMessage::error(code, message))
    }

    fn not_in_room(&mut self) -> Next {
        self.reply(ServerMessage::error(
            ErrorCode::NotInRoom,
            "join a room first",
        ))
    }

    /// Answer the client: the frame goes out at `drive`'s next write.
    fn reply(&mut self, message: ServerMessage) -> Next {
        self.outgoing.push(text(&message));
        Next::Continue
    }

    /// Write frames and flush once. A peer that does not take them within the send
    /// timeout is too slow (1008); a close request interrupts the wait, so a stalled
    /// writer never keeps a revoked socket open.
    async fn send_all(
        &self,
        socket: &mut WebSocket,
        messages: impl IntoIterator<Item = Message>,
    ) -> Next {
        let write = async {
            for m in messages {
                socket.feed(m).await?;
            }
            socket.flush().await
        };
        let mut write = std::pin::pin!(write);
        // Nearly every write completes at once (the kernel's send buffer has room): only
        // one that cannot sets up the timeout and the close-request wait.
        let at_once = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        let sent = match at_once {
            Poll::Ready(sent) => Ok(sent),
            // Boxed: the timeout's timer exists only while a write waits.
            Poll::Pending => {
                let timeout = self.state.config.ws_send_timeout();
                let waiting = Box::pin(async {
                    tokio::select! {
                        biased;
                        _ = self.conn.closing() => None,
                        sent = tokio::time::timeout(timeout, write) => Some(sent),
                    }
                });
                match waiting.await {
                    Some(sent) => sent,
                    None => return Next::Stop,
                }
            }
        };
        match sent {
            Ok(Ok(())) => Next::Continue,
            Ok(Err(_)) => Next::Stop,
            Err(_) => Next::Close(CloseCode::Policy, "too slow to read".into()),
        }
    }
}

impl Next {
    /// For `drive`: `None` stop without a close of our own, `Some(None)` carry on,
    /// `Some(Some(close))` close with that code.
    fn into_close(self) -> Option<Option<(CloseCode, String)>> {
        match self {
            Next::Continue => Some(None),
            Next::Close(code, reason) => Some(Some((code, reason))),
            Next::Stop => None,
        }
    }
}

fn text(message: &ServerMessage) -> Message {
    TextFrame::encode(message).into_message()
}

fn error_frame(e: &Error) -> ServerMessage {
    let message = match e {
        Error::Client { message, .. } => message.clone(),
        Error::Banned { until } => crate::error::banned_message(*until),
        _ => "the token could not be checked".into(),
    };
    ServerMessage::error(e.code(), message)
}

fn room_error(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RoomNotFound => "no such room",
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::Unavailable => "the room's server cannot be reached now; try again",
        _ => "cannot join",
    }
}

/// A read error: a message over the size limit closes with 1009; anything else means
/// the connection is broken and there is nobody to send a close to.
fn read_error_close(e: axum::Error) -> Option<(CloseCode, String)> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.into_inner().downcast::<WsError>() {
        Ok(err) if matches!(*err, WsError::Capacity(_)) => {
            Some((CloseCode::TooBig, CloseCode::TooBig.reason().into()))
        }
        _ => None,
    }
}
