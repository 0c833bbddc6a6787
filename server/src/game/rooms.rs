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
//! empty room costs little; a room a player created is removed once it has stayed empty
//! for the idle time (see [`Rooms::sweep`]). "Main Hall", made at start, never goes.
//!
//! Creation is bounded three ways, each refused with its own honest answer
//! ([`CreateError`]): rooms a user created that still exist (a quota), rooms a user may
//! create per minute (a rate), and rooms on the server (a cap, 503 rather than 429: it is
//! nobody's own fault).
//!
//! Removal is race-free against a join: the sweep marks a room removed under the room's
//! lock, and only if it is empty; a join takes the same lock and refuses a room marked
//! removed. So either the join came first (the room is occupied and stays) or the sweep
//! did (the join gets `room_not_found`): never a member in a removed room.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arena_protocol::http::{Member, Room as RoomInfo, RoomDetail};
use arena_protocol::ws::{PlayerState, ServerMessage, WorldInfo};
use arena_protocol::ErrorCode;
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::sim::{Player, World};
use crate::error::Error;
use crate::frame::TextFrame;
use crate::ids;
use crate::registry::ConnHandle;

/// The bounds on rooms (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// Rooms on the server, "Main Hall" included.
    pub max_rooms: usize,
    /// Rooms one user created that still exist.
    pub max_per_user: usize,
    /// Rooms one user may create per minute; `None`: no limit.
    pub create_per_minute: Option<NonZeroU32>,
    /// How long a created room may stay empty.
    pub idle: Duration,
}

pub struct Rooms {
    rooms: DashMap<String, Arc<Room>>,
    /// Rooms in the map plus creations under way: the server-wide cap is reserved here
    /// first, so racing creations cannot exceed it.
    live: AtomicUsize,
    /// user id → rooms that user created that still exist (entries at 0 are removed).
    owned: DashMap<String, usize>,
    /// Keyed by the creator's user id: a verified token's subject, never raw input.
    create_limiter: Option<DefaultKeyedRateLimiter<String>>,
    limits: RoomLimits,
    world: World,
    tick: Duration,
    tick_hz: u32,
}

pub struct Room {
    pub id: String,
    pub name: String,
    pub capacity: u32,
    /// The user who created it; `None` for rooms the server made, which never expire.
    pub created_by: Option<String>,
    world: World,
    state: Mutex<RoomState>,
}

struct RoomState {
    seats: Vec<Seat>,
    /// Whether a tick task is running for this room.
    running: bool,
    tick: u64,
    /// Since when nobody is in the room (`None` while occupied).
    empty_since: Option<Instant>,
    /// The sweep took the room away; joins must refuse it.
    removed: bool,
}

/// Why a room was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// The user already has `have` rooms; the limit is `limit`.
    Quota {
        have: usize,
        limit: usize,
        retry_after: u64,
    },
    /// The user created rooms too fast.
    Rate { retry_after: u64 },
    /// The server holds as many rooms as it may.
    Full { retry_after: u64 },
}

impl From<CreateError> for Error {
    fn from(e: CreateError) -> Error {
        let (code, message, retry_after) = match e {
            CreateError::Quota {
                have,
                limit,
                retry_after,
            } => (
                ErrorCode::RateLimited,
                format!("you have {have} rooms; the limit is {limit}"),
                retry_after,
            ),
            CreateError::Rate { retry_after } => (
                ErrorCode::RateLimited,
                format!("too many rooms created; retry in {retry_after} s"),
                retry_after,
            ),
            CreateError::Full { retry_after } => (
                ErrorCode::Unavailable,
                "the server holds as many rooms as it can".to_string(),
                retry_after,
            ),
        };
        Error::Limited {
            code,
            message,
            retry_after,
        }
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` can say.
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
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

fn frame(message: &ServerMessage) -> TextFrame {
    TextFrame::encode(message)
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
    pub fn new(limits: RoomLimits, tick_hz: u32) -> Rooms {
        let tick_hz = tick_hz.clamp(1, 1000);
        Rooms {
            rooms: DashMap::new(),
            live: AtomicUsize::new(0),
            owned: DashMap::new(),
            create_limiter: limits
                .create_per_minute
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            limits,
            world: World::DEFAULT,
            tick: Duration::from_secs_f64(1.0 / tick_hz as f64),
            tick_hz,
        }
    }

    pub fn world(&self) -> WorldInfo {
        self.world.info(self.tick_hz)
    }

    /// How often [`Rooms::run_sweeper`] looks for idle rooms: a quarter of the idle time
    /// (so a room goes at most 25% late), between 100 ms and 30 s.
    pub fn sweep_period(&self) -> Duration {
        (self.limits.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// A room of the server's own ("Main Hall"): no owner, never expires, counted against
    /// the server-wide cap only.
    pub fn create_permanent(&self, name: &str, capacity: u32) -> Result<RoomInfo, CreateError> {
        self.reserve()?;
        Ok(self.insert(None, name, capacity))
    }

    /// A room created by `owner` (a verified user id), within the quota, the rate and the
    /// server-wide cap.
    pub fn create(&self, owner: &str, name: &str, capacity: u32) -> Result<RoomInfo, CreateError> {
        let mut owned = self.owned.entry(owner.to_string()).or_insert(0);
        let have = *owned;
        if have >= self.limits.max_per_user {
            drop(owned);
            return Err(CreateError::Quota {
                have,
                limit: self.limits.max_per_user,
                retry_after: self.free_in(Some(owner)),
            });
        }
        // The check above and the increment below hold the user's entry: a user's racing
        // creations cannot both take the last place of the quota.
        let refused = self.reserve().err().or_else(|| {
            let limiter = self.create_limiter.as_ref()?;
            let not_until = limiter.check_key(&owner.to_string()).err()?;
            self.live.fetch_sub(1, Ordering::AcqRel);
            let now = governor::clock::Clock::now(limiter.clock());
            Some(CreateError::Rate {
                retry_after: whole_secs(not_until.wait_time_from(now)),
            })
        });
        if let Some(e) = refused {
            drop(owned);
            self.owned.remove_if(owner, |_, n| *n == 0);
            return Err(e);
        }
        *owned += 1;
        drop(owned);
        Ok(self.insert(Some(owner.to_string()), name, capacity))
    }

    /// Take a place under the server-wide cap.
    fn reserve(&self) -> Result<(), CreateError> {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.limits.max_rooms {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(CreateError::Full {
                retry_after: self.free_in(None),
            });
        }
        Ok(())
    }

    fn insert(&self, created_by: Option<String>, name: &str, capacity: u32) -> RoomInfo {
        let room = Arc::new(Room {
            id: ids::new_id("r"),
            name: name.to_string(),
            capacity,
            created_by,
            world: self.world,
            state: Mutex::new(RoomState {
                seats: Vec::new(),
                running: false,
                tick: 0,
                empty_since: Some(Instant::now()),
                removed: false,
            }),
        });
        let info = room.info();
        self.rooms.insert(room.id.clone(), room);
        info
    }

    /// Seconds until a room (of `owner`, or anyone's) may be swept: the soonest idle
    /// expiry plus a sweep, or a whole idle time when every such room is occupied.
    fn free_in(&self, owner: Option<&str>) -> u64 {
        let now = Instant::now();
        let soonest = self
            .snapshot()
            .into_iter()
            .filter(|r| match (&r.created_by, owner) {
                (None, _) => false,
                (Some(by), Some(owner)) => by == owner,
                (Some(_), None) => true,
            })
            .filter_map(|r| {
                let since = lock(&r.state).empty_since?;
                Some(
                    self.limits
                        .idle
                        .saturating_sub(now.saturating_duration_since(since)),
                )
            })
            .min()
            .unwrap_or(self.limits.idle);
        whole_secs(soonest + self.sweep_period())
    }

    /// The rooms, without holding the map while each is looked at.
    fn snapshot(&self) -> Vec<Arc<Room>> {
        self.rooms.iter().map(|r| r.value().clone()).collect()
    }

    /// Remove the rooms players created that have been empty for the idle time at `now`.
    /// Returns how many went.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut removed = 0;
        for room in self.snapshot() {
            let Some(owner) = &room.created_by else {
                continue;
            };
            {
                let mut state = lock(&room.state);
                let idle = state.seats.is_empty()
                    && state
                        .empty_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= self.limits.idle);
                if !idle || state.removed {
                    continue;
                }
                // From here on no join can enter it (they check `removed` under this lock).
                state.removed = true;
            }
            self.rooms.remove(&room.id);
            self.live.fetch_sub(1, Ordering::AcqRel);
            if let Some(mut n) = self.owned.get_mut(owner) {
                *n = n.saturating_sub(1);
            }
            self.owned.remove_if(owner, |_, n| *n == 0);
            removed += 1;
        }
        if let Some(l) = &self.create_limiter {
            l.retain_recent();
        }
        removed
    }

    /// Sweep every [`Rooms::sweep_period`] until `stop`.
    pub async fn run_sweeper(&self, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.sweep_period());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {
                    let removed = self.sweep(Instant::now());
                    if removed > 0 {
                        tracing::debug!(removed, "idle rooms removed");
                    }
                }
            }
        }
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
            if state.removed {
                return Err(ErrorCode::RoomNotFound);
            }
            let replacing = state.seats.iter().any(|s| s.conn.user_id == conn.user_id);
            if !replacing && state.seats.len() >= room.capacity as usize {
                return Err(ErrorCode::RoomFull);
            }
        }
        // Leave the old room before entering the new one (never lock two rooms at once).
        let left = previous.filter(|old| self.leave(conn, old));
        // If the join fails after that (the room was swept, or its last seat taken, in
        // between), the socket must still learn that it left its old room.
        let failed = |code: ErrorCode| {
            if let Some(old) = &left {
                conn.send(frame(&ServerMessage::Left { room: old.clone() }));
            }
            Err(code)
        };
        let mut state = lock(&room.state);
        // Checked again under the lock the sweep marks it under: see the module doc.
        if state.removed {
            return failed(ErrorCode::RoomNotFound);
        }
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
                    return failed(ErrorCode::RoomFull);
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
                state.empty_since = None;
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
        if state.seats.is_empty() {
            state.empty_since = Some(Instant::now());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{NewConnection, Outbound, Registration, Registry, RegistryLimits};

    fn rooms(max_rooms: usize, max_per_user: usize, per_minute: u32, idle: Duration) -> Rooms {
        Rooms::new(
            RoomLimits {
                max_rooms,
                max_per_user,
                create_per_minute: NonZeroU32::new(per_minute),
                idle,
            },
            20,
        )
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

    fn registry() -> Arc<Registry> {
        Registry::new(RegistryLimits {
            max_per_user: 1000,
            max_total: 100_000,
            outbound_queue: 1024,
            close_timeout: Duration::from_millis(10),
        })
    }

    #[test]
    fn quota_then_cap_each_with_its_own_answer() {
        let r = rooms(4, 2, 0, Duration::from_secs(60));
        r.create_permanent("Main Hall", 16).unwrap();
        r.create("u", "a", 2).unwrap();
        r.create("u", "b", 2).unwrap();
        match r.create("u", "c", 2) {
            Err(CreateError::Quota {
                have: 2, limit: 2, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        r.create("v", "d", 2).unwrap();
        assert!(matches!(
            r.create("w", "e", 2),
            Err(CreateError::Full { .. })
        ));
        assert_eq!(r.list().len(), 4);
        // Refusals leave no bookkeeping behind.
        assert!(!r.owned.contains_key("w"));
    }

    #[test]
    fn creation_rate_is_per_user() {
        let r = rooms(100, 100, 2, Duration::from_secs(60));
        r.create("u", "a", 2).unwrap();
        r.create("u", "b", 2).unwrap();
        match r.create("u", "c", 2) {
            Err(CreateError::Rate { retry_after }) => assert!((1..=60).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
        r.create("v", "d", 2).unwrap();
        // A refused creation gave its place under the cap back.
        assert_eq!(r.live.load(Ordering::Acquire), 3);
    }

    #[tokio::test]
    async fn sweep_removes_only_idle_empty_rooms_players_made() {
        let idle = Duration::from_secs(10);
        let r = rooms(100, 2, 0, idle);
        let reg = registry();
        let hall = r.create_permanent("Main Hall", 16).unwrap();
        let empty = r.create("u", "empty", 2).unwrap();
        let busy = r.create("u", "busy", 2).unwrap();
        let (conn, _out) = socket(&reg, "p");
        r.join(conn.handle(), &busy.id).unwrap();
        let now = Instant::now();
        assert_eq!(r.sweep(now), 0, "nothing idle yet");
        assert_eq!(r.sweep(now + idle + Duration::from_secs(1)), 1);
        let left: Vec<String> = r.list().into_iter().map(|i| i.id).collect();
        assert!(left.contains(&hall.id) && left.contains(&busy.id));
        assert!(!left.contains(&empty.id));
        assert_eq!(
            r.join(conn.handle(), &empty.id).err(),
            Some(ErrorCode::RoomNotFound)
        );
        // The quota counts rooms that still exist.
        r.create("u", "again", 2).unwrap();
        // Once empty, the busy room starts its own idle time.
        r.leave_current(conn.handle());
        let later = Instant::now();
        assert_eq!(r.sweep(later + idle / 2), 0);
        assert_eq!(r.sweep(later + idle * 2), 2);
        assert_eq!(r.list().len(), 1, "Main Hall stays");
        assert!(r.owned.is_empty());
    }

    /// A sweep racing a join: either the join wins and the room stays with its member,
    /// or the sweep wins and the join gets `room_not_found`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_racing_a_join_never_leaves_a_member_in_a_removed_room() {
        let r = Arc::new(rooms(100_000, 100_000, 0, Duration::ZERO));
        let reg = registry();
        let (mut joined, mut refused) = (0, 0);
        for _ in 0..500 {
            let id = r.create("u", "race", 2).unwrap().id;
            let (conn, _out) = socket(&reg, "p");
            let handle = conn.handle().clone();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let join = {
                let (r, id, barrier) = (r.clone(), id.clone(), barrier.clone());
                tokio::task::spawn_blocking(move || {
                    barrier.wait();
                    r.join(&handle, &id).map(|_| ())
                })
            };
            let sweep = {
                let (r, barrier) = (r.clone(), barrier.clone());
                tokio::task::spawn_blocking(move || {
                    barrier.wait();
                    r.sweep(Instant::now())
                })
            };
            let joined_ok = join.await.unwrap();
            sweep.await.unwrap();
            match joined_ok {
                Ok(()) => {
                    joined += 1;
                    let room = r.get(&id).expect("a room with a member was removed");
                    assert_eq!(room.info().players, 1);
                    assert_eq!(conn.handle().room(), Some(id.clone()));
                    r.leave_current(conn.handle());
                }
                Err(code) => {
                    refused += 1;
                    assert_eq!(code, ErrorCode::RoomNotFound);
                    assert!(r.get(&id).is_none());
                    assert_eq!(conn.handle().room(), None);
                }
            }
            r.sweep(Instant::now());
        }
        assert!(r.list().is_empty());
        eprintln!("join won {joined} times, sweep won {refused} times");
    }
}
