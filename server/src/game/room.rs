//! One room's game on the node that runs it (its owner): the seats, the simulation, and
//! every frame the room sends.
//!
//! A seat is either a socket of this node ([`Occupant::Local`]) or a socket of another
//! node ([`Occupant::Remote`]), whose frames go through the [`RoomLink`]. Every frame is
//! encoded once: local members share the bytes, and the other nodes get one relay per
//! frame however many of their sockets are in the room. Capacity counts every seat.
//!
//! A user is in a room at most once: a second socket of the same user that joins takes
//! over the seat (and the game state) and the first is told `left` with reason
//! `replaced`. Everything here runs under the room's lock and never waits: the link's
//! sends are queued.
//!
//! A run ends for good, with no more joins ([`RunState::closed`]), when its last member
//! leaves or when its lease could not be kept; a join that finds it closed is told to ask
//! the lease again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arena_protocol::http::{Member, Room as RoomInfo};
use arena_protocol::ws::{
    ChatFrom, LeftReason, OrbState, PlayerState, RoundPhase, RoundState, ScoreLine, ServerMessage,
};

use super::link::{RelayHeader, RemoteMember, RoomLink, RoomMsg};
use super::round::{Match, Phase, RoundEvent, Rules};
use super::sim::{Player, World};
use crate::frame::TextFrame;
use crate::ids;
use crate::registry::ConnHandle;
use crate::store::RoomRow;

/// Who sits in a seat.
#[derive(Clone)]
pub enum Occupant {
    Local(Arc<ConnHandle>),
    Remote {
        member: RemoteMember,
        /// When its node last listed it (or when it was seated).
        confirmed: Instant,
    },
}

impl Occupant {
    pub fn conn_id(&self) -> &str {
        match self {
            Occupant::Local(c) => &c.id,
            Occupant::Remote { member, .. } => &member.conn,
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            Occupant::Local(c) => &c.user_id,
            Occupant::Remote { member, .. } => &member.user_id,
        }
    }

    pub fn member(&self) -> Member {
        match self {
            Occupant::Local(c) => Member {
                id: c.user_id.clone(),
                username: c.username.clone(),
            },
            Occupant::Remote { member, .. } => member.member(),
        }
    }

    fn username(&self) -> &str {
        match self {
            Occupant::Local(c) => &c.username,
            Occupant::Remote { member, .. } => &member.username,
        }
    }
}

struct Seat {
    who: Occupant,
    player: Player,
}

pub struct RunState {
    seats: Vec<Seat>,
    tick: u64,
    /// Chat lines said since the last tick, encoded, waiting for it
    /// ([`ChatDelivery::Tick`]).
    chat_backlog: Vec<TextFrame>,
    /// The rounds, orbs and scores; made at the first tick.
    game: Option<Match>,
    /// Names of the players who scored in this round and left (id → name): the round's
    /// end still names them. Emptied when a round ends.
    departed_scorers: HashMap<String, String>,
    /// No more joins: the room emptied or its lease was lost.
    pub closed: bool,
    /// Closed by [`RoomRun::close`] (the lease was lost, or the node stops), not because
    /// it emptied: the room is still in use elsewhere, not idle.
    stopped: bool,
    /// Until when the lease is surely this node's; no tick runs past it.
    valid_until: Instant,
}

/// What a join did.
pub struct Seated {
    pub room: RoomInfo,
    pub members: Vec<Member>,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatError {
    Full,
    /// The run is over: ask the lease again.
    Closed,
}

/// When a chat line reaches the room's members (`--chat-delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChatDelivery {
    /// With the next tick's `state`: a socket then gets everything of a tick in one
    /// write (one wake-up, one syscall), at the price of up to one tick of chat latency.
    Tick,
    /// At once, in a write of its own.
    Immediate,
}

/// Chat lines a room holds for its next tick at most; a burst beyond it goes out at once
/// (in order), so the backlog never grows with the chat rate.
const MAX_CHAT_BACKLOG: usize = 64;

/// What a tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticked {
    Ran,
    /// Nobody is left; the run is closed.
    Empty,
    /// The lease may have expired; the run is closed and its local members must move.
    LeaseLost,
    /// The run was stopped from outside ([`RoomRun::close`]), which dealt with its
    /// members; the room is not idle.
    Stopped,
}

pub struct RoomRun {
    pub record: RoomRow,
    pub epoch: u64,
    world: World,
    rules: Rules,
    link: Arc<dyn RoomLink>,
    state: Mutex<RunState>,
    /// Test hook (`ARENA_TEST_TICK_LOG`): where each tick is recorded.
    tick_log: Option<Arc<TickLog>>,
    /// The count of players last published with the lease.
    reported: AtomicU32,
    chat: ChatDelivery,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RoomRun {
    pub fn new(
        record: RoomRow,
        epoch: u64,
        (world, rules): (World, Rules),
        link: Arc<dyn RoomLink>,
        valid_until: Instant,
        tick_log: Option<Arc<TickLog>>,
        chat: ChatDelivery,
    ) -> RoomRun {
        RoomRun {
            record,
            epoch,
            world,
            rules,
            link,
            state: Mutex::new(RunState {
                seats: Vec::new(),
                tick: 0,
                chat_backlog: Vec::new(),
                game: None,
                departed_scorers: HashMap::new(),
                closed: false,
                stopped: false,
                valid_until,
            }),
            tick_log,
            reported: AtomicU32::new(0),
            chat,
        }
    }

    /// Whether the count of players differs from the one last published.
    pub fn players_changed(&self) -> bool {
        self.players() != self.reported.load(Ordering::Relaxed)
    }

    /// The count of players, as about to be published.
    pub fn report_players(&self) -> u32 {
        let n = self.players();
        self.reported.store(n, Ordering::Relaxed);
        n
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    fn info_of(&self, state: &RunState) -> RoomInfo {
        RoomInfo {
            id: self.record.id.clone(),
            name: self.record.name.clone(),
            capacity: self.record.capacity,
            players: state.seats.len() as u32,
            node: Some(self.link.node_id().to_string()),
            created_by: self.record.created_by.clone(),
            created_at: self.record.created_at,
        }
    }

    pub fn info(&self) -> RoomInfo {
        self.info_of(&lock(&self.state))
    }

    pub fn players(&self) -> u32 {
        lock(&self.state).seats.len() as u32
    }

    pub fn members(&self) -> Vec<Member> {
        lock(&self.state)
            .seats
            .iter()
            .map(|s| s.who.member())
            .collect()
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// The lease was renewed by a request sent at `sent`: valid until 90% of it later.
    pub fn extend(&self, sent: Instant) {
        let until = sent + self.link.lease().mul_f64(0.9);
        let mut state = lock(&self.state);
        if until > state.valid_until {
            state.valid_until = until;
        }
    }

    /// Stop the run (its lease is gone). Returns its local members, who must move, to
    /// the one caller that stopped it; `None` if it was stopped already. (The tick and
    /// the lease renewal can both find the lease gone at the same moment: only one of
    /// them may hand the members on, or the other would take the room's slot with nobody
    /// in it and leave them stranded.)
    pub fn close(&self) -> Option<Vec<Arc<ConnHandle>>> {
        let mut state = lock(&self.state);
        if state.stopped {
            return None;
        }
        self.flush_chat(&mut state);
        state.closed = true;
        state.stopped = true;
        let locals = state
            .seats
            .iter()
            .filter_map(|s| match &s.who {
                Occupant::Local(c) => Some(c.clone()),
                Occupant::Remote { .. } => None,
            })
            .collect();
        state.seats.clear();
        Some(locals)
    }

    /// Seat `who`. A seat of the same user changes hands; otherwise capacity counts.
    pub fn join(&self, who: Occupant) -> Result<Seated, SeatError> {
        let mut state = lock(&self.state);
        // Past its lease the run is closing (its next tick finds it): seat nobody.
        if state.closed || Instant::now() >= state.valid_until {
            return Err(SeatError::Closed);
        }
        match state
            .seats
            .iter()
            .position(|s| s.who.user_id() == who.user_id())
        {
            Some(i) if state.seats[i].who.conn_id() == who.conn_id() => {}
            Some(i) => {
                // The same player on a newer socket: it keeps its place in the game.
                let old = std::mem::replace(&mut state.seats[i].who, who.clone());
                self.evict(&old, LeftReason::Replaced);
            }
            None => {
                if state.seats.len() >= self.record.capacity as usize {
                    return Err(SeatError::Full);
                }
                let joined = ServerMessage::PlayerJoined {
                    room: self.record.id.clone(),
                    player: who.member(),
                };
                self.broadcast(&mut state, &joined, Some(who.conn_id()));
                state.seats.push(Seat {
                    player: Player::spawn(&self.world, seed_of(who.user_id())),
                    who: who.clone(),
                });
            }
        }
        if let Occupant::Local(c) = &who {
            c.set_room(Some(self.record.id.clone()));
        }
        Ok(Seated {
            room: self.info_of(&state),
            members: state.seats.iter().map(|s| s.who.member()).collect(),
        })
    }

    /// Tell a socket that lost its seat, wherever it is.
    fn evict(&self, old: &Occupant, reason: LeftReason) {
        match old {
            Occupant::Local(c) => {
                c.set_room(None);
                c.send(TextFrame::encode(&ServerMessage::Left {
                    room: self.record.id.clone(),
                    reason: Some(reason),
                }));
            }
            Occupant::Remote { member, .. } => self.link.send(
                &member.node,
                RoomMsg::Evict {
                    room: self.record.id.clone(),
                    conn: member.conn.clone(),
                    reason,
                    epoch: Some(self.epoch),
                },
            ),
        }
    }

    /// Take a socket's seat away. Returns whether it was seated, and whether the room is
    /// now empty (and the run closed).
    pub fn leave(&self, conn_id: &str) -> (bool, bool) {
        let mut state = lock(&self.state);
        let Some(i) = state.seats.iter().position(|s| s.who.conn_id() == conn_id) else {
            return (false, state.seats.is_empty() && state.closed);
        };
        // What was said before the leave reaches the leaver too.
        self.flush_chat(&mut state);
        let seat = state.seats.remove(i);
        if let Occupant::Local(c) = &seat.who {
            c.set_room(None);
        }
        remember_scorer(&mut state, &seat.who);
        self.announce_left(&mut state, &seat.who);
        let empty = state.seats.is_empty();
        if empty {
            state.closed = true;
        }
        (true, empty)
    }

    fn announce_left(&self, state: &mut RunState, who: &Occupant) {
        let left = ServerMessage::PlayerLeft {
            room: self.record.id.clone(),
            player: who.member(),
        };
        self.broadcast(state, &left, None);
    }

    /// `node` listed its members: its seats not listed, seated before `seated_before`,
    /// are gone (a leave that was lost). Returns the listed sockets that have no seat
    /// here (that node believes them in the room; it must be told otherwise).
    pub fn present(&self, node: &str, conns: &[String], seated_before: Instant) -> Vec<String> {
        let mut state = lock(&self.state);
        if state.closed {
            return Vec::new();
        }
        let now = Instant::now();
        let mut gone = Vec::new();
        let unseated = conns
            .iter()
            .filter(|c| !state.seats.iter().any(|s| s.who.conn_id() == c.as_str()))
            .cloned()
            .collect();
        for seat in state.seats.iter_mut() {
            if let Occupant::Remote { member, confirmed } = &mut seat.who {
                if member.node != node {
                    continue;
                }
                if conns.contains(&member.conn) {
                    *confirmed = now;
                } else if *confirmed < seated_before {
                    gone.push(member.conn.clone());
                }
            }
        }
        self.drop_seats(&mut state, &gone);
        unseated
    }

    /// Seats of this node's sockets that are gone (a socket that ended while its join
    /// was still on its way). Returns whether the room is now empty.
    pub fn drop_gone_locals(&self) -> bool {
        let mut state = lock(&self.state);
        let gone: Vec<String> = state
            .seats
            .iter()
            .filter_map(|s| match &s.who {
                Occupant::Local(c) if c.is_gone() => Some(c.id.clone()),
                _ => None,
            })
            .collect();
        self.drop_seats(&mut state, &gone)
    }

    /// Seats of other nodes not confirmed since `cutoff` (their node died or is cut
    /// off) are gone. Returns whether the room is now empty.
    pub fn expire_remote(&self, cutoff: Instant) -> bool {
        let mut state = lock(&self.state);
        if Instant::now() >= state.valid_until {
            // This run may no longer be the room's (its owner was paused past its lease):
            // whoever runs it now decides who is in it.
            return false;
        }
        let gone: Vec<String> = state
            .seats
            .iter()
            .filter_map(|s| match &s.who {
                Occupant::Remote { member, confirmed } if *confirmed < cutoff => {
                    Some(member.conn.clone())
                }
                _ => None,
            })
            .collect();
        self.drop_seats(&mut state, &gone)
    }

    fn drop_seats(&self, state: &mut RunState, gone: &[String]) -> bool {
        if gone.is_empty() || state.closed {
            return false;
        }
        for conn in gone {
            if let Some(i) = state.seats.iter().position(|s| s.who.conn_id() == conn) {
                let seat = state.seats.remove(i);
                tracing::debug!(room = %self.record.id, conn, "a member of another node is gone");
                remember_scorer(state, &seat.who);
                self.announce_left(state, &seat.who);
                // If its node is still there after all, its socket must learn it left.
                if let Occupant::Remote { .. } = &seat.who {
                    self.evict(&seat.who, LeftReason::Unavailable);
                }
            }
        }
        if state.seats.is_empty() {
            state.closed = true;
            return true;
        }
        false
    }

    /// Apply a member's input. `false`: not seated here.
    pub fn input(&self, conn_id: &str, seq: u64, dx: f64, dy: f64) -> bool {
        let mut state = lock(&self.state);
        match state.seats.iter_mut().find(|s| s.who.conn_id() == conn_id) {
            Some(seat) => {
                seat.player.apply_input(seq, dx, dy);
                true
            }
            None => false,
        }
    }

    /// A member's chat line, to everyone in the room (the sender too). `false`: not seated.
    pub fn chat(&self, conn_id: &str, text: String) -> bool {
        let mut state = lock(&self.state);
        let Some(seat) = state.seats.iter().find(|s| s.who.conn_id() == conn_id) else {
            return false;
        };
        let message = ServerMessage::Chat {
            room: self.record.id.clone(),
            from: ChatFrom {
                id: seat.who.user_id().to_string(),
                username: seat.who.username().to_string(),
            },
            text,
            ts: ids::now_ms(),
        };
        if self.chat == ChatDelivery::Tick && state.chat_backlog.len() < MAX_CHAT_BACKLOG {
            state.chat_backlog.push(TextFrame::encode(&message));
        } else {
            self.broadcast(&mut state, &message, None);
        }
        true
    }

    /// Send the chat lines waiting for the tick, in the order they were said. Every
    /// other frame goes out after them, so the room's frames keep their order.
    fn flush_chat(&self, state: &mut RunState) {
        for frame in std::mem::take(&mut state.chat_backlog) {
            self.send_to_all(state, &frame, None);
        }
    }

    /// Send one message to every member, encoded once: local sockets share the bytes,
    /// every other node gets one relay.
    fn broadcast(&self, state: &mut RunState, message: &ServerMessage, except: Option<&str>) {
        self.flush_chat(state);
        self.send_to_all(state, &TextFrame::encode(message), except);
    }

    fn send_to_all(&self, state: &RunState, frame: &TextFrame, except: Option<&str>) {
        let mut remote = false;
        for seat in state.seats.iter() {
            match &seat.who {
                Occupant::Local(c) if Some(c.id.as_str()) != except => {
                    c.send(frame.clone());
                }
                Occupant::Local(_) => {}
                Occupant::Remote { .. } => remote = true,
            }
        }
        if remote {
            self.relay(frame, false, except);
        }
    }

    /// One frame to every other node that holds members (`state`: a `state` frame,
    /// which those nodes offer rather than queue).
    fn relay(&self, frame: &TextFrame, state: bool, except: Option<&str>) {
        let header = RelayHeader {
            node: self.link.node_id().to_string(),
            epoch: self.epoch,
            state,
            except: except.map(str::to_string),
        };
        self.link.relay(&self.record.id, &header, frame);
    }

    /// Advance the game one tick and send every member the new state.
    pub fn tick(&self, dt: f64) -> Ticked {
        let started = Instant::now();
        let mut state = lock(&self.state);
        if state.stopped {
            return Ticked::Stopped;
        }
        // The lease before anything else: a run whose lease may have lapsed (its node
        // was paused past it, say) is no longer surely the room's, and must not act as
        // if it were, not even to call the room empty.
        if started >= state.valid_until {
            return Ticked::LeaseLost;
        }
        if state.closed {
            return Ticked::Empty;
        }
        if state.seats.is_empty() {
            state.closed = true;
            return Ticked::Empty;
        }
        if let Some(log) = &self.tick_log {
            log.record(&self.record.id, self.epoch, self.link.node_id());
        }
        // The chat said since the last tick, then (after it: no room frame overtakes a
        // line said before it) the tick's `round` message if a round started or ended,
        // then the state, which then shows the round's new phase.
        let mut queued = std::mem::take(&mut state.chat_backlog);
        state.tick += 1;
        for seat in state.seats.iter_mut() {
            seat.player.step(&self.world, dt);
        }
        if let Some(event) = self.play(&mut state) {
            queued.push(TextFrame::encode(&self.round_message(&state, event)));
            state.departed_scorers.clear();
        }
        let message = self.state_message(&state);
        // Encoded once; every member gets the same bytes. Member by member, the tick's
        // queued frames and then its state, so a socket woken by the first finds the rest
        // there too and writes them all at once.
        let frame = TextFrame::encode(&message);
        let mut remote = false;
        for seat in state.seats.iter() {
            match &seat.who {
                Occupant::Local(c) => {
                    for line in &queued {
                        c.send(line.clone());
                    }
                    c.offer_state(frame.clone())
                }
                Occupant::Remote { .. } => remote = true,
            }
        }
        if remote {
            for line in &queued {
                self.relay(line, false, None);
            }
            self.relay(&frame, true, None);
        }
        crate::telemetry::tick(started.elapsed());
        Ticked::Ran
    }
}

impl RoomRun {
    /// Collisions, orbs and the round clock for this tick (see [`Match::step`]).
    fn play(&self, state: &mut RunState) -> Option<RoundEvent> {
        let RunState {
            seats, tick, game, ..
        } = state;
        let mut spawn = orb_position;
        let game =
            game.get_or_insert_with(|| Match::new(self.rules, &self.world, *tick, &mut spawn));
        let mut players: Vec<(&str, &mut Player)> = seats
            .iter_mut()
            .map(|Seat { who, player }| (who.user_id(), player))
            .collect();
        game.step(&self.world, *tick, &mut players, &mut spawn)
    }

    /// When the current phase ends, as server time (Unix ms).
    fn phase_ends_at(&self, game: &Match, tick: u64) -> i64 {
        ids::now_ms() + (game.ticks_left(tick) as f64 * self.rules.tick_ms) as i64
    }

    fn state_message(&self, state: &RunState) -> ServerMessage {
        let game = state.game.as_ref();
        ServerMessage::State {
            room: self.record.id.clone(),
            tick: state.tick,
            players: state
                .seats
                .iter()
                .map(|s| PlayerState {
                    id: s.who.user_id().to_string(),
                    username: s.who.username().to_string(),
                    x: round2(s.player.x),
                    y: round2(s.player.y),
                    last_seq: s.player.last_seq,
                    score: game.map_or(0, |g| g.score(s.who.user_id())),
                })
                .collect(),
            orbs: game
                .map(|g| {
                    g.orbs
                        .iter()
                        .map(|o| OrbState {
                            id: o.id,
                            x: round2(o.x),
                            y: round2(o.y),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            round: game.map(|g| RoundState {
                number: g.round,
                phase: match g.phase {
                    Phase::Playing { .. } => RoundPhase::Playing,
                    Phase::Pause { .. } => RoundPhase::Pause,
                },
                ends_at: self.phase_ends_at(g, state.tick),
            }),
        }
    }

    fn round_message(&self, state: &RunState, event: RoundEvent) -> ServerMessage {
        let name_of = |id: &str| {
            state
                .seats
                .iter()
                .find(|s| s.who.user_id() == id)
                .map(|s| s.who.username().to_string())
                .or_else(|| state.departed_scorers.get(id).cloned())
        };
        let line = |id: String, score: u32| ScoreLine {
            username: name_of(&id).unwrap_or_default(),
            id,
            score,
        };
        let ends_at = state
            .game
            .as_ref()
            .map_or_else(ids::now_ms, |g| self.phase_ends_at(g, state.tick));
        match event {
            RoundEvent::Started { round } => ServerMessage::Round {
                room: self.record.id.clone(),
                round,
                phase: RoundPhase::Playing,
                ends_at,
                winners: Vec::new(),
                scores: Vec::new(),
            },
            RoundEvent::Ended {
                round,
                winners,
                scores,
            } => {
                let top = scores.first().map_or(0, |(_, s)| *s);
                ServerMessage::Round {
                    room: self.record.id.clone(),
                    round,
                    phase: RoundPhase::Pause,
                    ends_at,
                    winners: winners.into_iter().map(|id| line(id, top)).collect(),
                    scores: scores.into_iter().map(|(id, s)| line(id, s)).collect(),
                }
            }
        }
    }
}

/// Keep the name of a player leaving with points in this round, for its end.
fn remember_scorer(state: &mut RunState, who: &Occupant) {
    let scored = state
        .game
        .as_ref()
        .is_some_and(|g| g.score(who.user_id()) > 0);
    if scored {
        state
            .departed_scorers
            .insert(who.user_id().to_string(), who.username().to_string());
    }
}

/// Where a new orb goes, as two fractions of the arena: from the OS generator, which is
/// already here for ids; an orb appears a few times a second per room at most.
fn orb_position() -> (f64, f64) {
    let b = ids::random_bytes(4);
    let fraction = |hi: u8, lo: u8| f64::from(u16::from_be_bytes([hi, lo])) / f64::from(u16::MAX);
    (fraction(b[0], b[1]), fraction(b[2], b[3]))
}

/// Two decimals are plenty on screen and keep the frame short.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn seed_of(id: &str) -> u64 {
    // FNV-1a: a stable spread of spawn points, not a security property.
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Test hook (`ARENA_TEST_TICK_LOG=<file>`): one line per tick run on this node,
/// `<room> <epoch> <node> <unix µs>`, written when the tick has passed its lease check.
/// It is how a test shows that no two nodes ever tick one room at once.
pub struct TickLog(Mutex<std::fs::File>);

impl TickLog {
    pub fn from_env() -> Option<Arc<TickLog>> {
        let path = std::env::var_os("ARENA_TEST_TICK_LOG")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!(error = %e, "ARENA_TEST_TICK_LOG cannot be opened"))
            .ok()?;
        tracing::warn!("test hook: every tick is logged (ARENA_TEST_TICK_LOG)");
        Some(Arc::new(TickLog(Mutex::new(file))))
    }

    fn record(&self, room: &str, epoch: u64, node: &str) {
        use std::io::Write;
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let _ = writeln!(lock(&self.0), "{room} {epoch} {node} {micros}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::game::link::LocalLink;
    use crate::registry::{NewConnection, Outbound, Registration, Registry, RegistryLimits};

    fn registry() -> Arc<Registry> {
        Registry::new(RegistryLimits {
            max_per_user: 1000,
            max_total: 100_000,
            outbound_queue: 1024,
            close_timeout: Duration::from_millis(10),
        })
    }

    fn socket(registry: &Arc<Registry>, user: &str) -> (Registration, Outbound) {
        registry
            .register(NewConnection {
                user_id: user.into(),
                username: user.into(),
                session_id: "s".into(),
                issued_at: 0,
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                connected_at: 0,
            })
            .unwrap()
    }

    fn run(capacity: u32, valid_for: Duration) -> RoomRun {
        let record = RoomRow {
            id: "r".into(),
            name: "R".into(),
            capacity,
            created_by: None,
            created_at: 0,
            empty_since: None,
        };
        RoomRun::new(
            record,
            1,
            (World::DEFAULT, Rules::new(20, 120, 8)),
            Arc::new(LocalLink::new("n")),
            Instant::now() + valid_for,
            None,
            ChatDelivery::Tick,
        )
    }

    fn next_text(out: &mut Outbound) -> String {
        out.try_next_queued().expect("a frame").as_str().to_string()
    }

    #[test]
    fn capacity_counts_every_seat_and_a_second_socket_takes_the_seat_over() {
        let reg = registry();
        let room = run(2, Duration::from_secs(60));
        let (a1, mut a1_out) = socket(&reg, "a");
        let (b, _b_out) = socket(&reg, "b");
        room.join(Occupant::Local(a1.handle().clone())).unwrap();
        room.join(Occupant::Local(b.handle().clone())).unwrap();
        let remote = Occupant::Remote {
            member: RemoteMember {
                node: "m".into(),
                conn: "c9".into(),
                user_id: "c".into(),
                username: "c".into(),
            },
            confirmed: Instant::now(),
        };
        assert_eq!(room.join(remote).err(), Some(SeatError::Full));
        // The same user on another socket is not refused by a full room.
        let (a2, _a2_out) = socket(&reg, "a");
        let seated = room.join(Occupant::Local(a2.handle().clone())).unwrap();
        assert_eq!(seated.members.len(), 2);
        let mut frames = Vec::new();
        while let Some(f) = a1_out.try_next_queued() {
            frames.push(f.as_str().to_string());
        }
        assert!(
            frames
                .last()
                .is_some_and(|f| f.contains(r#""reason":"replaced""#)),
            "{frames:?}"
        );
        assert_eq!(a1.handle().room(), None);
        assert_eq!(a2.handle().room().as_deref(), Some("r"));
    }

    #[test]
    fn of_two_racing_closes_only_one_hands_the_members_on() {
        let reg = registry();
        let room = Arc::new(run(4, Duration::from_secs(60)));
        let (a, _out) = socket(&reg, "a");
        room.join(Occupant::Local(a.handle().clone())).unwrap();
        // The tick and the lease renewal, both finding the lease gone.
        let start = Arc::new(std::sync::Barrier::new(2));
        let closers: Vec<_> = (0..2)
            .map(|_| {
                let (room, start) = (room.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    room.close()
                })
            })
            .collect();
        let handed: Vec<_> = closers
            .into_iter()
            .filter_map(|c| c.join().expect("closer"))
            .collect();
        assert_eq!(handed.len(), 1, "both closers were handed the members");
        assert_eq!(handed[0].len(), 1);
        assert_eq!(room.close().map(|m| m.len()), None);
    }

    #[test]
    fn the_last_leave_closes_the_run_for_good() {
        let reg = registry();
        let room = run(4, Duration::from_secs(60));
        let (a, _out) = socket(&reg, "a");
        room.join(Occupant::Local(a.handle().clone())).unwrap();
        assert_eq!(room.leave(&a.handle().id), (true, true));
        assert!(room.is_closed());
        assert_eq!(
            room.join(Occupant::Local(a.handle().clone())).err(),
            Some(SeatError::Closed)
        );
    }

    #[test]
    fn no_tick_runs_past_the_lease() {
        let reg = registry();
        let room = run(4, Duration::from_millis(30));
        let (a, _out) = socket(&reg, "a");
        room.join(Occupant::Local(a.handle().clone())).unwrap();
        assert_eq!(room.tick(0.05), Ticked::Ran);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(room.tick(0.05), Ticked::LeaseLost);
        // A renewal sent before the pause does not bring it back: it counts from its
        // sending time.
        room.extend(Instant::now() - Duration::from_secs(3600));
        assert_eq!(room.tick(0.05), Ticked::LeaseLost);
        room.extend(Instant::now());
        assert_eq!(room.tick(0.05), Ticked::Ran);
    }

    /// A run that emptied while its lease lapsed (its node was paused) is not the room's
    /// to call empty: the tick says the lease is lost, and nobody is seated any more.
    #[test]
    fn past_its_lease_a_run_neither_calls_the_room_empty_nor_seats_anyone() {
        let reg = registry();
        let room = run(4, Duration::from_millis(30));
        let (a, _out) = socket(&reg, "a");
        room.join(Occupant::Local(a.handle().clone())).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let (b, _b_out) = socket(&reg, "b");
        assert_eq!(
            room.join(Occupant::Local(b.handle().clone())).err(),
            Some(SeatError::Closed)
        );
        assert_eq!(room.leave(&a.handle().id), (true, true));
        assert_eq!(room.tick(0.05), Ticked::LeaseLost);
    }

    #[test]
    fn members_of_other_nodes_that_are_not_confirmed_go() {
        let reg = registry();
        let room = run(4, Duration::from_secs(60));
        let (a, mut a_out) = socket(&reg, "a");
        room.join(Occupant::Local(a.handle().clone())).unwrap();
        let long_ago = Instant::now() - Duration::from_secs(10);
        for (conn, user) in [("c1", "u1"), ("c2", "u2")] {
            let who = Occupant::Remote {
                member: RemoteMember {
                    node: "m".into(),
                    conn: conn.into(),
                    user_id: user.into(),
                    username: user.into(),
                },
                confirmed: long_ago,
            };
            room.join(who).unwrap();
        }
        while a_out.try_next_queued().is_some() {}
        // Node m lists only c1: c2 (seated long ago) is gone, with a `player_left`; c7,
        // listed but never seated, is returned to be evicted on m.
        let unseated = room.present("m", &["c1".into(), "c7".into()], Instant::now());
        assert_eq!(unseated, vec!["c7".to_string()]);
        assert!(next_text(&mut a_out).contains(r#""player_left""#));
        assert_eq!(room.players(), 2);
        // Node m falls silent: c1 goes too.
        room.expire_remote(Instant::now() + Duration::from_secs(1));
        assert_eq!(room.players(), 1);
    }

    /// Tick delivery: a chat line waits for the tick and goes out before its state; the
    /// lines keep their order, a leave flushes them first (the leaver hears what was
    /// said before it), and a line over the backlog's bound takes the backlog out at once.
    #[test]
    fn chat_waits_for_the_tick_in_order_and_the_backlog_is_bounded() {
        let reg = registry();
        let room = run(4, Duration::from_secs(60));
        let (a, mut a_out) = socket(&reg, "a");
        let (b, mut b_out) = socket(&reg, "b");
        room.join(Occupant::Local(a.handle().clone())).unwrap();
        room.join(Occupant::Local(b.handle().clone())).unwrap();
        while a_out.try_next_queued().is_some() {}
        assert!(room.chat(&a.handle().id, "one".into()));
        assert!(room.chat(&b.handle().id, "two".into()));
        assert!(
            a_out.try_next_queued().is_none(),
            "chat went out before the tick"
        );
        assert_eq!(room.tick(0.05), Ticked::Ran);
        assert!(next_text(&mut a_out).contains(r#""text":"one""#));
        assert!(next_text(&mut a_out).contains(r#""text":"two""#));
        assert!(a_out.has_state(), "the tick's state follows");

        assert!(room.chat(&a.handle().id, "bye".into()));
        room.leave(&b.handle().id);
        let mut heard = Vec::new();
        while let Some(f) = b_out.try_next_queued() {
            heard.push(f.as_str().to_string());
        }
        assert!(
            heard.iter().any(|f| f.contains(r#""text":"bye""#)),
            "{heard:?}"
        );

        while a_out.try_next_queued().is_some() {}
        for i in 0..MAX_CHAT_BACKLOG + 3 {
            assert!(room.chat(&a.handle().id, format!("line {i}")));
        }
        // The line over the bound took the backlog out with it, in order; the two after
        // it wait for the tick again.
        for i in 0..=MAX_CHAT_BACKLOG {
            let text = next_text(&mut a_out);
            assert!(
                text.contains(&format!(r#""text":"line {i}""#)),
                "{i}: {text}"
            );
        }
        assert!(a_out.try_next_queued().is_none());
        assert_eq!(room.tick(0.05), Ticked::Ran);
        for i in MAX_CHAT_BACKLOG + 1..MAX_CHAT_BACKLOG + 3 {
            assert!(next_text(&mut a_out).contains(&format!(r#""text":"line {i}""#)));
        }
    }
}
