//! Rooms: named groups of sockets with a capacity, held in memory, each running its game
//! at a fixed tick while anyone is in it.
//!
//! A socket is in at most one room; a user is in a room at most once. When a user's
//! second socket joins a room their first socket is already in (a reconnect, a second
//! tab), it takes over the player's place and the old socket is told `left`; the others
//! see no change. Broadcasts encode a message once and share the bytes among members; a
//! member whose queue is full is closed as too slow (see [`ConnHandle::send`]) and never
//! delays the others. `state` frames skip the queue: each socket holds at most the latest
//! one, so a slow reader loses stale frames instead of growing memory.
//!
//! The tick task starts with the first member and ends when the room empties, so an
//! empty room costs nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arena_protocol::http::{Member, Room as RoomInfo, RoomDetail};
use arena_protocol::ws::{PlayerState, ServerMessage, WorldInfo};
use arena_protocol::ErrorCode;
use axum::extract::ws::Message;
use dashmap::DashMap;

use super::sim::{Player, World};
use crate::error::Error;
use crate::ids;
use crate::registry::ConnHandle;

pub struct Rooms {
    rooms: DashMap<String, Arc<Room>>,
    max_rooms: usize,
    world: World,
    tick: Duration,
    tick_hz: u32,
}

pub struct Room {
    pub id: String,
    pub name: String,
    pub capacity: u32,
    world: World,
    state: Mutex<RoomState>,
}

struct RoomState {
    seats: Vec<Seat>,
    /// Whether a tick task is running for this room.
    running: bool,
    tick: u64,
}

/// One player in a room: the socket that plays it and its game state.
struct Seat {
    conn: Arc<ConnHandle>,
    player: Player,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn member(h: &ConnHandle) -> Member {
    Member {
        id: h.user_id.clone(),
        username: h.username.clone(),
    }
}

fn frame(message: &ServerMessage) -> Message {
    Message::Text(message.encode().into())
}

impl Room {
    fn info_of(&self, state: &RoomState) -> RoomInfo {
        RoomInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            capacity: self.capacity,
            players: state.seats.len() as u32,
        }
    }

    pub fn info(&self) -> RoomInfo {
        self.info_of(&lock(&self.state))
    }

    pub fn detail(&self) -> RoomDetail {
        let state = lock(&self.state);
        RoomDetail {
            room: self.info_of(&state),
            members: state.seats.iter().map(|s| member(&s.conn)).collect(),
        }
    }

    /// Send one message to every member, encoding it once.
    pub fn broadcast(&self, message: &ServerMessage) {
        let frame = frame(message);
        for seat in lock(&self.state).seats.iter() {
            seat.conn.send(frame.clone());
        }
    }

    /// Advance the game one tick and send every member the new state. Returns `false`
    /// (and marks the room idle) when nobody is left to play.
    fn tick(&self, dt: f64) -> bool {
        let started = std::time::Instant::now();
        let mut state = lock(&self.state);
        if state.seats.is_empty() {
            state.running = false;
            return false;
        }
        state.tick += 1;
        for seat in state.seats.iter_mut() {
            seat.player.step(&self.world, dt);
        }
        let message = ServerMessage::State {
            room: self.id.clone(),
            tick: state.tick,
            players: state
                .seats
                .iter()
                .map(|s| PlayerState {
                    id: s.conn.user_id.clone(),
                    username: s.conn.username.clone(),
                    x: round2(s.player.x),
                    y: round2(s.player.y),
                    last_seq: s.player.last_seq,
                })
                .collect(),
        };
        // Encoded once; every member gets the same bytes.
        let frame = frame(&message);
        for seat in state.seats.iter() {
            seat.conn.offer_state(frame.clone());
        }
        crate::telemetry::tick(started.elapsed());
        true
    }
}

/// Two decimals are plenty on screen and keep the frame short.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// What joining returns to the joiner.
pub struct Joined {
    pub room: RoomInfo,
    pub members: Vec<Member>,
    /// The room the socket was in before, which it has now left.
    pub left: Option<String>,
}

impl Rooms {
    pub fn new(max_rooms: usize, tick_hz: u32) -> Rooms {
        let tick_hz = tick_hz.clamp(1, 1000);
        Rooms {
            rooms: DashMap::new(),
            max_rooms,
            world: World::DEFAULT,
            tick: Duration::from_secs_f64(1.0 / tick_hz as f64),
            tick_hz,
        }
    }

    pub fn world(&self) -> WorldInfo {
        self.world.info(self.tick_hz)
    }

    pub fn create(&self, name: &str, capacity: u32) -> Result<RoomInfo, Error> {
        if self.rooms.len() >= self.max_rooms {
            return Err(Error::RateLimited { retry_after: 60 });
        }
        let room = Arc::new(Room {
            id: ids::new_id("r"),
            name: name.to_string(),
            capacity,
            world: self.world,
            state: Mutex::new(RoomState {
                seats: Vec::new(),
                running: false,
                tick: 0,
            }),
        });
        let info = room.info();
        self.rooms.insert(room.id.clone(), room);
        Ok(info)
    }

    pub fn list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self.rooms.iter().map(|r| r.info()).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        rooms
    }

    pub fn get(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms.get(id).map(|r| r.clone())
    }

    /// Put a socket in a room, leaving the one it was in.
    pub fn join(&self, conn: &Arc<ConnHandle>, room_id: &str) -> Result<Joined, ErrorCode> {
        let room = self.get(room_id).ok_or(ErrorCode::RoomNotFound)?;
        let previous = conn.room();
        if previous.as_deref() == Some(room_id) {
            let detail = room.detail();
            return Ok(Joined {
                room: detail.room,
                members: detail.members,
                left: None,
            });
        }
        {
            let state = lock(&room.state);
            let replacing = state.seats.iter().any(|s| s.conn.user_id == conn.user_id);
            if !replacing && state.seats.len() >= room.capacity as usize {
                return Err(ErrorCode::RoomFull);
            }
        }
        // Leave the old room before entering the new one (never lock two rooms at once).
        let left = previous.filter(|old| self.leave(conn, old));
        let mut state = lock(&room.state);
        match state
            .seats
            .iter()
            .position(|s| s.conn.user_id == conn.user_id)
        {
            Some(i) => {
                // The same player on a newer socket: it keeps its place in the game.
                let old = std::mem::replace(&mut state.seats[i].conn, conn.clone());
                old.set_room(None);
                old.send(frame(&ServerMessage::Left {
                    room: room.id.clone(),
                }));
            }
            None => {
                if state.seats.len() >= room.capacity as usize {
                    return Err(ErrorCode::RoomFull);
                }
                let joined = frame(&ServerMessage::PlayerJoined {
                    room: room.id.clone(),
                    player: member(conn),
                });
                for seat in state.seats.iter() {
                    seat.conn.send(joined.clone());
                }
                let seed = seed_of(&conn.user_id);
                state.seats.push(Seat {
                    conn: conn.clone(),
                    player: Player::spawn(&self.world, seed),
                });
            }
        }
        conn.set_room(Some(room.id.clone()));
        if !state.running {
            state.running = true;
            tokio::spawn(run_ticks(room.clone(), self.tick));
        }
        Ok(Joined {
            room: room.info_of(&state),
            members: state.seats.iter().map(|s| member(&s.conn)).collect(),
            left,
        })
    }

    /// Apply a player's input in the room the socket is in. `false`: not in a room.
    pub fn input(&self, conn: &ConnHandle, seq: u64, dx: f64, dy: f64) -> bool {
        let Some(room) = conn.room().and_then(|id| self.get(&id)) else {
            return false;
        };
        let mut state = lock(&room.state);
        match state.seats.iter_mut().find(|s| s.conn.id == conn.id) {
            Some(seat) => {
                seat.player.apply_input(seq, dx, dy);
                true
            }
            None => false,
        }
    }

    /// Take a socket out of a room. Returns whether it was there.
    pub fn leave(&self, conn: &ConnHandle, room_id: &str) -> bool {
        let Some(room) = self.get(room_id) else {
            return false;
        };
        let mut state = lock(&room.state);
        let Some(i) = state.seats.iter().position(|s| s.conn.id == conn.id) else {
            return false;
        };
        state.seats.remove(i);
        conn.set_room(None);
        let left = frame(&ServerMessage::PlayerLeft {
            room: room.id.clone(),
            player: member(conn),
        });
        for seat in state.seats.iter() {
            seat.conn.send(left.clone());
        }
        true
    }

    /// Take a socket out of whatever room it is in.
    pub fn leave_current(&self, conn: &ConnHandle) -> Option<String> {
        let room = conn.room()?;
        self.leave(conn, &room).then_some(room)
    }
}

/// A room's game loop: a fixed step at a fixed rate. A late tick is skipped rather than
/// run in a burst, and nothing here waits on a socket.
async fn run_ticks(room: Arc<Room>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let dt = period.as_secs_f64();
    loop {
        interval.tick().await;
        if !room.tick(dt) {
            return;
        }
    }
}

fn seed_of(id: &str) -> u64 {
    // FNV-1a: a stable spread of spawn points, not a security property.
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
