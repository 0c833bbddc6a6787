//! The rooms of a deployment as one node sees them: the ones it runs, and the ones run
//! elsewhere that some of its sockets are in.
//!
//! A room's definition is a database record (see [`super::lobby`]); its game runs on the
//! one node that holds its lease ([`super::link`]): a [`RoomRun`] there. Any other node
//! with members in it keeps a [`Mirror`]: which node runs it (and under which epoch),
//! and its own members, to whom it hands the frames the owner relays. A socket's `join`,
//! `input`, `chat` and `leave` go to the owner, here or over the link.
//!
//! Promises:
//! - **One owner.** A node runs a room only while it holds the lease, and stops ticking
//!   before the lease can have expired ([`RoomRun::tick`]); whoever takes the room next
//!   starts a fresh run under a higher epoch. A run checks its lease before anything
//!   else, and marks its room idle only once the lease keeper confirms it still holds
//!   the lease: a former owner thawed after a pause leaves the room to the new one.
//! - **Nobody is stranded.** When a room's owner goes away (dies, is cut off, stops), the
//!   nodes with members in it notice the silence, wait for the lease to lapse, and one
//!   of them takes the room on; every member is seated in the new run and told
//!   `room_moved`. Members who cannot be moved (the link is down) are told `left` with
//!   reason `unavailable`. A run whose lease lapses under it hands its members on the
//!   same way.
//! - **Revocation wins.** A closed socket leaves its room wherever the room runs; seats of
//!   sockets that are gone without a word (their node died, a message was lost) are
//!   removed within three lease renewals.
//! - **Frames are encoded once** on the owner: local members share the bytes, and every
//!   other node gets one relay per frame and fans it out to its own members, `state`
//!   through each socket's latest-state slot (a slow reader drops stale frames there
//!   too).
//!
//! Here: the slots and a socket's requests (join, leave, input, chat). Beside it:
//! `owner` (a run's life on its owner), `moves` (members following a room to its next
//! run), `inbox` (what other nodes send), `upkeep` (leases renewed, members confirmed).

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arena_protocol::http::{Member, Room as RoomInfo};
use arena_protocol::ws::{LeftReason, ServerMessage, WorldInfo};
use arena_protocol::ErrorCode;
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

mod inbox;
mod moves;
mod owner;
mod upkeep;

use owner::TakeOn;

use super::link::{Claim, RemoteMember, RoomLink, RoomMsg, RoomReply};
use super::room::{ChatDelivery, Occupant, RoomRun, SeatError, Seated, TickLog};
use super::round::{RoundTimes, Rules};
use super::sim::World;
use crate::frame::TextFrame;
use crate::registry::ConnHandle;
use crate::store::{RoomRow, Store};

/// The bounds on rooms (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// Rooms in the deployment, "Main Hall" included.
    pub max_rooms: usize,
    /// Rooms one user created that still exist.
    pub max_per_user: usize,
    /// Rooms one user may create per minute; `None`: no limit.
    pub create_per_minute: Option<NonZeroU32>,
    /// How long a created room may stay empty.
    pub idle: Duration,
}

/// A room as this node holds it.
#[derive(Clone)]
enum Slot {
    /// This node runs it.
    Owned(Arc<RoomRun>),
    /// Another node runs it; some of this node's sockets are (or are becoming) in it.
    Mirror(Arc<Mirror>),
}

/// This node's side of a room another node runs.
pub struct Mirror {
    record: RoomRow,
    state: Mutex<MirrorState>,
}

struct MirrorState {
    owner: String,
    epoch: u64,
    members: Vec<Arc<ConnHandle>>,
    /// Joins of this node's sockets on their way to the owner.
    pending: usize,
    /// When the owner was last heard from (a relay).
    heard: Instant,
    /// A move to another owner is under way.
    moving: bool,
    /// The slot was given up; whoever still holds this must look again.
    dropped: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What joining returns to the joiner.
pub struct Joined {
    pub room: RoomInfo,
    pub members: Vec<Member>,
    /// The room the socket was in before, which it has now left.
    pub left: Option<String>,
}

pub struct Rooms {
    pub(super) store: Store,
    pub(super) link: Arc<dyn RoomLink>,
    slots: DashMap<String, Slot>,
    pub(super) limits: RoomLimits,
    /// Keyed by the creator's user id: a verified token's subject, never raw input.
    pub(super) create_limiter: Option<DefaultKeyedRateLimiter<String>>,
    world: World,
    rules: Rules,
    tick: Duration,
    tick_hz: u32,
    chat: ChatDelivery,
    tick_log: Option<Arc<TickLog>>,
}

impl Rooms {
    pub fn new(
        store: Store,
        link: Arc<dyn RoomLink>,
        limits: RoomLimits,
        tick_hz: u32,
        chat: ChatDelivery,
        rounds: RoundTimes,
    ) -> Rooms {
        let tick_hz = tick_hz.clamp(1, 1000);
        Rooms {
            store,
            link,
            slots: DashMap::new(),
            create_limiter: limits
                .create_per_minute
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            limits,
            world: World::DEFAULT,
            rules: Rules::new(tick_hz, rounds.round_secs, rounds.pause_secs),
            tick: Duration::from_secs_f64(1.0 / tick_hz as f64),
            tick_hz,
            chat,
            tick_log: TickLog::from_env(),
        }
    }

    pub fn world(&self) -> WorldInfo {
        self.world.info(self.tick_hz)
    }

    pub fn node_id(&self) -> &str {
        self.link.node_id()
    }

    /// How long a join may keep looking for the room's owner: a lease (the time a dead
    /// owner's room takes to come free) and a second.
    fn join_deadline(&self) -> Instant {
        self.a_lease_on(Duration::from_secs(1))
    }

    /// When a claim answered [`Claim::Wait`] (Redis came back without its leases) must
    /// have become possible: a lease on, and a little.
    fn after_wait(&self) -> Instant {
        self.a_lease_on(Duration::from_millis(200))
    }

    /// A lease (at most a minute) and `slack` from now.
    fn a_lease_on(&self, slack: Duration) -> Instant {
        Instant::now() + self.link.lease().min(Duration::from_secs(60)) + slack
    }

    /// How often leases are renewed and members confirmed: a third of a lease.
    fn renew_period(&self) -> Duration {
        (self.link.lease() / 3).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }

    /// Silence from a room's owner longer than this makes a member's node look again.
    fn stall(&self) -> Duration {
        (self.tick * 6).max(Duration::from_millis(500))
    }

    /// Every run this node has (closed ones too).
    fn runs(&self) -> Vec<Arc<RoomRun>> {
        self.slots
            .iter()
            .filter_map(|s| match s.value() {
                Slot::Owned(r) => Some(r.clone()),
                Slot::Mirror(_) => None,
            })
            .collect()
    }

    /// Every room this node follows for members of its own.
    fn mirrors(&self) -> Vec<Arc<Mirror>> {
        self.slots
            .iter()
            .filter_map(|s| match s.value() {
                Slot::Mirror(m) => Some(m.clone()),
                Slot::Owned(_) => None,
            })
            .collect()
    }

    fn slot(&self, id: &str) -> Option<Slot> {
        self.slots.get(id).map(|s| s.clone())
    }

    /// The run of a room this node runs now.
    pub(super) fn run(&self, id: &str) -> Option<Arc<RoomRun>> {
        match self.slot(id)? {
            Slot::Owned(run) if !run.is_closed() => Some(run),
            _ => None,
        }
    }

    // ---- a socket's requests ----

    /// Put a socket in a room, leaving the one it was in.
    pub async fn join(
        self: &Arc<Self>,
        conn: &Arc<ConnHandle>,
        room_id: &str,
    ) -> Result<Joined, ErrorCode> {
        let record = match self.store.room(room_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(ErrorCode::RoomNotFound),
            Err(_) => return Err(ErrorCode::Unavailable),
        };
        let previous = conn.room();
        // Leave the old room before entering the new one (never two rooms at once).
        let left = previous
            .filter(|old| old != room_id)
            .filter(|old| self.leave(conn, old));
        match self.enter(conn, &record).await {
            Ok(seated) => Ok(Joined {
                room: seated.room,
                members: seated.members,
                left,
            }),
            Err(code) => {
                // The socket must still learn that it left its old room.
                if let Some(old) = left {
                    conn.send(TextFrame::encode(&ServerMessage::Left {
                        room: old,
                        reason: None,
                    }));
                }
                Err(code)
            }
        }
    }

    /// Seat the socket with whoever runs the room, taking the room on if nobody does.
    async fn enter(
        self: &Arc<Self>,
        conn: &Arc<ConnHandle>,
        record: &RoomRow,
    ) -> Result<Seated, ErrorCode> {
        let mut deadline = self.join_deadline();
        loop {
            match self.slot(&record.id) {
                Some(Slot::Owned(run)) => match run.join(Occupant::Local(conn.clone())) {
                    Ok(seated) => return Ok(seated),
                    Err(SeatError::Full) => return Err(ErrorCode::RoomFull),
                    Err(SeatError::Closed) => {}
                },
                Some(Slot::Mirror(mirror)) => {
                    if lock(&mirror.state).moving {
                        // Its members are moving to the room's next run: join that one.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else {
                        match self.join_remote(conn, &mirror).await {
                            Ok(seated) => return Ok(seated),
                            Err(Some(code)) => return Err(code),
                            Err(None) => {}
                        }
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(ErrorCode::Unavailable);
            }
            let sent = Instant::now();
            match self.link.claim(&record.id).await {
                Ok(Claim::Acquired { epoch }) => {
                    // Not cancellable half-way: the lease and the slot come together.
                    let me = self.clone();
                    let record = record.clone();
                    match tokio::spawn(async move { me.take_on(record, epoch, sent).await }).await {
                        Ok(TakeOn::Running) => {}
                        Ok(TakeOn::Gone) => return Err(ErrorCode::RoomNotFound),
                        // The database failed; try again within the deadline, not hot.
                        Ok(TakeOn::Failed) => tokio::time::sleep(Duration::from_millis(100)).await,
                        Err(_) => return Err(ErrorCode::Unavailable),
                    }
                }
                Ok(Claim::Wait) => {
                    // Redis came back without its leases: the wait is one lease at most.
                    deadline = deadline.max(self.after_wait());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Claim::HeldBy { node, .. }) if node == self.node_id() => {
                    // Being set up or torn down here (or a previous incarnation's lease
                    // that is about to lapse).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Claim::HeldBy { node, epoch }) => {
                    if !self.mirror_of(record, &node, epoch).await {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                // A slow or lost answer is not an outage yet: ask again until the
                // deadline (a backplane that stays down answers `unavailable` then).
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Ask the owner to seat a socket of this node. `Err(None)`: ask the lease again.
    async fn join_remote(
        &self,
        conn: &Arc<ConnHandle>,
        mirror: &Arc<Mirror>,
    ) -> Result<Seated, Option<ErrorCode>> {
        let owner = {
            let mut state = lock(&mirror.state);
            if state.dropped {
                return Err(None);
            }
            state.pending += 1;
            state.owner.clone()
        };
        let _pending = Pending {
            rooms: self,
            mirror,
            conn: &conn.id,
            owner: &owner,
        };
        let reply = self
            .link
            .request(
                &owner,
                RoomMsg::Join {
                    room: mirror.record.id.clone(),
                    member: self.remote_member(conn),
                    moved: false,
                },
            )
            .await;
        match reply {
            Some(RoomReply::Joined {
                room,
                members,
                epoch,
            }) => {
                let mut state = lock(&mirror.state);
                if state.dropped || epoch != state.epoch {
                    // Seated with a run this node no longer follows: look again (the
                    // stale seat goes with the next confirmation of members).
                    return Err(None);
                }
                if !state.members.iter().any(|m| m.id == conn.id) {
                    state.members.push(conn.clone());
                }
                conn.set_room(Some(mirror.record.id.clone()));
                Ok(Seated { room, members })
            }
            Some(RoomReply::Refused { code }) => Err(Some(code)),
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(None)
            }
        }
    }

    fn remote_member(&self, conn: &ConnHandle) -> RemoteMember {
        RemoteMember {
            node: self.node_id().to_string(),
            conn: conn.id.clone(),
            user_id: conn.user_id.clone(),
            username: conn.username.clone(),
        }
    }

    /// Follow a room that `node` runs under `epoch`. Returns `false` when this node is in
    /// the middle of something for that room (try again shortly).
    async fn mirror_of(self: &Arc<Self>, record: &RoomRow, node: &str, epoch: u64) -> bool {
        let mut fresh = false;
        let outcome = {
            let entry = self.slots.entry(record.id.clone()).or_insert_with(|| {
                fresh = true;
                Slot::Mirror(Arc::new(Mirror {
                    record: record.clone(),
                    state: Mutex::new(MirrorState {
                        owner: node.to_string(),
                        epoch,
                        members: Vec::new(),
                        pending: 0,
                        heard: Instant::now(),
                        moving: false,
                        dropped: false,
                    }),
                }))
            });
            match entry.value() {
                Slot::Mirror(m) => {
                    let state = lock(&m.state);
                    if state.epoch < epoch && !state.moving {
                        Some(m.clone())
                    } else {
                        None
                    }
                }
                Slot::Owned(_) => return false,
            }
        };
        if fresh {
            // Relays flow before the owner is asked, so none after the seat is missed.
            self.link.watch(&record.id).await;
        }
        if let Some(mirror) = outcome {
            // A newer run than the one this node's members sit in: move them there.
            self.spawn_move(mirror, Some((node.to_string(), epoch)));
            return false;
        }
        true
    }

    /// Take a socket out of a room. Returns whether it was there.
    pub fn leave(&self, conn: &ConnHandle, room_id: &str) -> bool {
        // In the room as far as the socket was told: a run that just stopped (its lease
        // lapsed) has cleared its seats before its members are handed on, and the socket
        // must still hear `left`, not that it was in no room.
        let told_in = conn.room().as_deref() == Some(room_id);
        let was = match self.slot(room_id) {
            Some(Slot::Owned(run)) => run.leave(&conn.id).0,
            Some(Slot::Mirror(mirror)) => {
                let (was, owner) = {
                    let mut state = lock(&mirror.state);
                    let before = state.members.len();
                    state.members.retain(|m| m.id != conn.id);
                    (state.members.len() < before, state.owner.clone())
                };
                if was {
                    self.link.send(
                        &owner,
                        RoomMsg::Leave {
                            room: room_id.to_string(),
                            conn: conn.id.clone(),
                        },
                    );
                    self.drop_mirror_if_empty(&mirror);
                }
                was
            }
            None => false,
        };
        if told_in {
            conn.set_room(None);
        }
        was || told_in
    }

    /// Take a socket out of whatever room it is in.
    pub fn leave_current(&self, conn: &ConnHandle) -> Option<String> {
        let room = conn.room()?;
        self.leave(conn, &room).then_some(room)
    }

    /// Apply a player's input in the room the socket is in. `false`: not in a room.
    pub fn input(&self, conn: &ConnHandle, seq: u64, dx: f64, dy: f64) -> bool {
        let Some(room) = conn.room() else {
            return false;
        };
        match self.slot(&room) {
            Some(Slot::Owned(run)) => run.input(&conn.id, seq, dx, dy),
            Some(Slot::Mirror(mirror)) => {
                let Some(owner) = mirror.owner_of(&conn.id) else {
                    return false;
                };
                self.link.send(
                    &owner,
                    RoomMsg::Input {
                        room,
                        conn: conn.id.clone(),
                        seq,
                        dx,
                        dy,
                    },
                );
                true
            }
            None => false,
        }
    }

    /// A chat line to the room the socket is in. `false`: not in a room.
    pub fn chat(&self, conn: &ConnHandle, text: String) -> bool {
        let Some(room) = conn.room() else {
            return false;
        };
        match self.slot(&room) {
            Some(Slot::Owned(run)) => run.chat(&conn.id, text),
            Some(Slot::Mirror(mirror)) => {
                let Some(owner) = mirror.owner_of(&conn.id) else {
                    return false;
                };
                self.link.send(
                    &owner,
                    RoomMsg::Chat {
                        room,
                        conn: conn.id.clone(),
                        text,
                    },
                );
                true
            }
            None => false,
        }
    }

    fn drop_mirror_if_empty(&self, mirror: &Arc<Mirror>) {
        let id = &mirror.record.id;
        let removed = self.slots.remove_if(id, |_, s| match s {
            Slot::Mirror(m) if Arc::ptr_eq(m, mirror) => {
                let mut state = lock(&m.state);
                let empty = state.members.is_empty() && state.pending == 0 && !state.moving;
                if empty {
                    state.dropped = true;
                }
                empty
            }
            _ => false,
        });
        if removed.is_some() {
            self.link.unwatch(id);
        }
    }

    /// Members of this node in a room it does not run: told `left` with `reason`.
    fn evict_mirror(&self, room: &str, reason: LeftReason) {
        if let Some(Slot::Mirror(mirror)) = self.slot(room) {
            let members = std::mem::take(&mut lock(&mirror.state).members);
            for conn in members {
                evict(&conn, room, reason);
            }
            self.drop_mirror_if_empty(&mirror);
        }
    }
}

impl Mirror {
    /// The owner, if `conn` is one of this node's members.
    fn owner_of(&self, conn: &str) -> Option<String> {
        let state = lock(&self.state);
        state
            .members
            .iter()
            .any(|m| m.id == conn)
            .then(|| state.owner.clone())
    }
}

/// A join on its way to the owner. When it ends without the socket among the mirror's
/// members (refused, unanswered, seated with a run this node no longer follows, or the
/// socket's task stopped waiting because it is being closed), the owner is told to drop
/// any seat it made, so no seat outlives its socket; and the mirror may go if nobody came.
struct Pending<'a> {
    rooms: &'a Rooms,
    mirror: &'a Arc<Mirror>,
    conn: &'a str,
    owner: &'a str,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let seated = {
            let mut state = lock(&self.mirror.state);
            state.pending -= 1;
            state.members.iter().any(|m| m.id == self.conn)
        };
        if !seated {
            let leave = RoomMsg::Leave {
                room: self.mirror.record.id.clone(),
                conn: self.conn.to_string(),
            };
            self.rooms.link.send(self.owner, leave);
        }
        self.rooms.drop_mirror_if_empty(self.mirror);
    }
}

/// Tell a socket it is no longer in `room`.
fn evict(conn: &ConnHandle, room: &str, reason: LeftReason) {
    if conn.room().as_deref() != Some(room) {
        return;
    }
    conn.set_room(None);
    conn.send(TextFrame::encode(&ServerMessage::Left {
        room: room.to_string(),
        reason: Some(reason),
    }));
}
