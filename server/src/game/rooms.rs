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
//!   starts a fresh run under a higher epoch.
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

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arena_protocol::http::{Member, Room as RoomInfo};
use arena_protocol::ws::{LeftReason, ServerMessage, WorldInfo};
use arena_protocol::ErrorCode;
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::link::{Claim, RelayHeader, RemoteMember, Renewal, RoomLink, RoomMsg, RoomReply};
use super::room::{ChatDelivery, Occupant, RoomRun, SeatError, Seated, TickLog, Ticked};
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

    /// Take a room on under a lease just acquired: mark it in use, start its run, and seat
    /// this node's members of the room's previous run, if any (each told `room_moved`).
    /// Unless it runs, the lease is given back.
    async fn take_on(self: Arc<Self>, record: RoomRow, epoch: u64, sent: Instant) -> TakeOn {
        let record = match self.store.occupy_room(&record.id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.link.release(&record.id, epoch).await;
                self.evict_mirror(&record.id, LeftReason::Removed);
                return TakeOn::Gone;
            }
            Err(e) => {
                tracing::warn!(room = %record.id, error = %e, "cannot take a room on");
                self.link.release(&record.id, epoch).await;
                return TakeOn::Failed;
            }
        };
        let valid_until = (sent + self.link.lease().mul_f64(0.9)).into_std();
        let run = Arc::new(RoomRun::new(
            record.clone(),
            epoch,
            (self.world, self.rules),
            self.link.clone(),
            valid_until,
            self.tick_log.clone(),
            self.chat,
        ));
        let previous = self
            .slots
            .insert(record.id.clone(), Slot::Owned(run.clone()));
        let movers = match previous {
            Some(Slot::Mirror(m)) => {
                // Its own relays need not come back to it.
                self.link.unwatch(&record.id);
                let mut state = lock(&m.state);
                state.dropped = true;
                std::mem::take(&mut state.members)
            }
            _ => Vec::new(),
        };
        if !movers.is_empty() {
            for conn in movers {
                if conn.room().as_deref() != Some(record.id.as_str()) || conn.is_gone() {
                    continue;
                }
                match run.join(Occupant::Local(conn.clone())) {
                    Ok(seated) => self.tell_moved(&conn, seated),
                    // Fresh joins filled the new run first.
                    Err(_) => evict(&conn, &record.id, LeftReason::Unavailable),
                }
            }
        }
        tracing::debug!(room = %record.id, epoch, "running the room");
        tokio::spawn(self.clone().run_ticks(run));
        TakeOn::Running
    }

    fn tell_moved(&self, conn: &ConnHandle, seated: Seated) {
        conn.send(TextFrame::encode(&ServerMessage::RoomMoved {
            room: seated.room,
            members: seated.members,
            world: self.world(),
        }));
    }

    /// A room's game loop: a fixed step at a fixed rate. A late tick is skipped rather
    /// than run in a burst, and nothing here waits on a socket.
    async fn run_ticks(self: Arc<Self>, run: Arc<RoomRun>) {
        // The first tick comes a period on, not at once: the joiner that took the room
        // on is seated by then (a run with nobody in it at its first tick would end).
        let mut interval = tokio::time::interval_at(Instant::now() + self.tick, self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let dt = self.tick.as_secs_f64();
        loop {
            interval.tick().await;
            match run.tick(dt) {
                Ticked::Ran => {}
                Ticked::Empty => return self.retire(run).await,
                Ticked::LeaseLost => return self.lost(run),
                // Stopped by `lost` or `shutdown`, which saw to its members and lease.
                Ticked::Stopped => return,
            }
        }
    }

    /// The run emptied: its room is idle from now and its lease goes back.
    async fn retire(&self, run: Arc<RoomRun>) {
        let id = run.id().to_string();
        let removed = self.slots.remove_if(
            &id,
            |_, s| matches!(s, Slot::Owned(r) if Arc::ptr_eq(r, &run)),
        );
        if removed.is_none() {
            // Not this node's run any more (it moved): the room is not empty.
            self.link.release(&id, run.epoch).await;
            return;
        }
        if let Err(e) = self.store.room_emptied(&id, crate::ids::now_ms()).await {
            tracing::debug!(room = %id, error = %e, "cannot record an empty room");
        }
        // After the record: the next owner's "in use" always lands after this "empty".
        self.link.release(&id, run.epoch).await;
    }

    /// The run's lease is no longer surely this node's: stop, and move its members to
    /// whoever runs the room next (possibly this node again).
    fn lost(self: &Arc<Self>, run: Arc<RoomRun>) {
        let Some(members) = run.close() else {
            return; // the tick and the renewal both saw it: the first one moves them
        };
        tracing::warn!(room = %run.id(), epoch = run.epoch, "lost the room's lease; its members move");
        let mirror = Arc::new(Mirror {
            record: run.record.clone(),
            state: Mutex::new(MirrorState {
                owner: self.node_id().to_string(),
                epoch: run.epoch,
                members,
                pending: 0,
                heard: Instant::now(),
                moving: false,
                dropped: false,
            }),
        });
        let replaced = {
            let id = run.id().to_string();
            match self.slots.get_mut(&id) {
                Some(mut s) if matches!(&*s, Slot::Owned(r) if Arc::ptr_eq(r, &run)) => {
                    *s = Slot::Mirror(mirror.clone());
                    true
                }
                _ => false,
            }
        };
        if replaced {
            let (me, id) = (self.clone(), run.id().to_string());
            tokio::spawn(async move {
                me.link.watch(&id).await;
                me.spawn_move(mirror, None);
            });
        } else {
            // Someone else took the slot meanwhile; these members cannot follow.
            for conn in lock(&mirror.state).members.drain(..) {
                evict(&conn, run.id(), LeftReason::Unavailable);
            }
        }
    }

    /// Move a mirror's members to the room's current run: to `to` if given, else to
    /// whoever holds the lease once the silent owner's has lapsed (this node, if it can
    /// claim it). One move at a time per mirror.
    fn spawn_move(self: &Arc<Self>, mirror: Arc<Mirror>, to: Option<(String, u64)>) {
        {
            let mut state = lock(&mirror.state);
            if state.moving || state.dropped {
                return;
            }
            state.moving = true;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.move_members(&mirror, to).await;
            lock(&mirror.state).moving = false;
            me.drop_mirror_if_empty(&mirror);
        });
    }

    async fn move_members(self: &Arc<Self>, mirror: &Arc<Mirror>, mut to: Option<(String, u64)>) {
        let id = mirror.record.id.clone();
        let mut deadline = self.join_deadline();
        loop {
            if lock(&mirror.state).dropped {
                return; // absorbed by a run of this node
            }
            // The lease is counted from before the claim was sent (see `link`).
            let sent = Instant::now();
            // Who runs the room now; `None`: nobody yet, ask again below.
            let target = match to.take() {
                Some(t) => Some(t),
                None => match self.link.claim(&id).await {
                    Ok(Claim::Acquired { epoch }) => {
                        let outcome = self
                            .clone()
                            .take_on(mirror.record.clone(), epoch, sent)
                            .await;
                        if outcome != TakeOn::Failed {
                            return;
                        }
                        None // the database failed: the members wait, within the deadline
                    }
                    Ok(Claim::HeldBy { node, epoch }) => Some((node, epoch)),
                    // Redis came back without its leases: at most a lease more.
                    Ok(Claim::Wait) => {
                        deadline = deadline.max(self.after_wait());
                        None
                    }
                    // No answer (the backplane is slow or down): ask again until the
                    // deadline.
                    Err(_) => None,
                },
            };
            if let Some(target) = target {
                if self.follow_to(mirror, target, deadline).await {
                    return;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nobody can run the room for them now.
        let members = {
            let mut state = lock(&mirror.state);
            std::mem::take(&mut state.members)
        };
        for conn in members {
            evict(&conn, &id, LeftReason::Unavailable);
        }
    }

    /// One step of a move towards `target` (who the lease says runs the room). `true`:
    /// the move is over (the members are seated there, or the silent owner answered).
    async fn follow_to(
        self: &Arc<Self>,
        mirror: &Arc<Mirror>,
        target: (String, u64),
        deadline: Instant,
    ) -> bool {
        let id = &mirror.record.id;
        let (owner, epoch) = {
            let state = lock(&mirror.state);
            (state.owner.clone(), state.epoch)
        };
        tracing::debug!(room = %id, target = ?target, owner, epoch, "moving members");
        if target.0 == self.node_id() {
            // This node's own run (or its previous incarnation's lease): wait.
        } else if (target.0.as_str(), target.1) == (owner.as_str(), epoch) {
            // Still the silent owner's lease. If it answers, it lives: stay (its
            // relays were lost; the confirmation below re-seats what it lost).
            let reply = self
                .link
                .request(&owner, RoomMsg::Members { room: id.clone() })
                .await;
            if matches!(reply, Some(RoomReply::Members { .. })) {
                // Seat again whatever it may have lost (a seat it has is kept as is).
                let members = {
                    let mut state = lock(&mirror.state);
                    state.heard = Instant::now();
                    state.members.clone()
                };
                for conn in members {
                    let member = self.remote_member(&conn);
                    let join = RoomMsg::Join {
                        room: id.clone(),
                        member,
                        moved: false,
                    };
                    self.link.send(&owner, join);
                }
                return true;
            }
        } else if target.1 > epoch {
            self.reseat(mirror, target.0, target.1, deadline).await;
            return true;
        }
        false
    }

    /// Seat a mirror's members with the room's new run on `node`. The new owner may have
    /// won the lease a moment ago and still be setting its run up (`NotOwner`), or it may
    /// have gone again, or a reply may be lost: the member is asked for again after a
    /// fresh look at the lease, until `deadline`. If this node wins the lease meanwhile,
    /// its own run takes every member still here ([`Rooms::take_on`]).
    async fn reseat(
        self: &Arc<Self>,
        mirror: &Arc<Mirror>,
        mut node: String,
        mut epoch: u64,
        deadline: Instant,
    ) {
        let id = mirror.record.id.clone();
        let members = {
            let mut state = lock(&mirror.state);
            state.owner = node.clone();
            state.epoch = epoch;
            state.heard = Instant::now();
            state.members.clone()
        };
        for conn in members {
            loop {
                {
                    let state = lock(&mirror.state);
                    if state.dropped {
                        return; // this node's own run took them
                    }
                    if !state.members.iter().any(|m| m.id == conn.id) {
                        break; // left meanwhile
                    }
                }
                if conn.room().as_deref() != Some(id.as_str()) || conn.is_gone() {
                    lock(&mirror.state).members.retain(|m| m.id != conn.id);
                    break;
                }
                if Instant::now() >= deadline {
                    self.evict_member(mirror, &conn, LeftReason::Unavailable);
                    break;
                }
                let join = RoomMsg::Join {
                    room: id.clone(),
                    member: self.remote_member(&conn),
                    moved: true,
                };
                match self.link.request(&node, join).await {
                    Some(RoomReply::Joined { room, members, .. }) => {
                        self.tell_moved(&conn, Seated { room, members });
                        break;
                    }
                    Some(RoomReply::Refused { .. }) => {
                        self.evict_member(mirror, &conn, LeftReason::Unavailable);
                        break;
                    }
                    Some(_) | None => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let sent = Instant::now();
                match self.link.claim(&id).await {
                    Ok(Claim::Acquired { epoch }) => {
                        let outcome = self
                            .clone()
                            .take_on(mirror.record.clone(), epoch, sent)
                            .await;
                        if outcome != TakeOn::Failed {
                            return; // seated here, or told the room is gone
                        }
                    }
                    Ok(Claim::HeldBy {
                        node: holder,
                        epoch: e,
                    }) if holder != self.node_id() && e > epoch => {
                        let mut state = lock(&mirror.state);
                        state.owner = holder.clone();
                        state.epoch = e;
                        (node, epoch) = (holder, e);
                    }
                    // The same holder, still setting up; not claimable yet; or no answer
                    // (past the deadline, the check above evicts without asking again).
                    Ok(_) | Err(_) => {}
                }
            }
        }
    }

    /// Take one of this node's sockets out of a mirror and tell it why.
    fn evict_member(&self, mirror: &Mirror, conn: &ConnHandle, reason: LeftReason) {
        lock(&mirror.state).members.retain(|m| m.id != conn.id);
        evict(conn, &mirror.record.id, reason);
    }

    /// Take a socket out of a room. Returns whether it was there.
    pub fn leave(&self, conn: &ConnHandle, room_id: &str) -> bool {
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
        if conn.room().as_deref() == Some(room_id) {
            conn.set_room(None);
        }
        was
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

    // ---- what other nodes send ----

    /// A frame the owner of `room` relayed to its members on this node.
    pub fn on_relay(self: &Arc<Self>, room: &str, header: RelayHeader, frame: TextFrame) {
        let Some(Slot::Mirror(mirror)) = self.slot(room) else {
            return;
        };
        let mut state = lock(&mirror.state);
        if header.epoch < state.epoch {
            return; // an earlier run's, late
        }
        if header.epoch > state.epoch {
            drop(state);
            self.spawn_move(mirror, Some((header.node, header.epoch)));
            return;
        }
        state.heard = Instant::now();
        for conn in state.members.iter() {
            if header.state {
                conn.offer_state(frame.clone());
            } else if header.except.as_deref() != Some(conn.id.as_str()) {
                conn.send(frame.clone());
            }
        }
    }

    /// A message from node `from`; the answer, if it asked.
    pub fn on_message(self: &Arc<Self>, from: &str, msg: RoomMsg) -> Option<RoomReply> {
        match msg {
            RoomMsg::Join { room, member, .. } => {
                let Some(run) = self.run(&room) else {
                    return Some(RoomReply::NotOwner);
                };
                let who = Occupant::Remote {
                    member,
                    confirmed: std::time::Instant::now(),
                };
                Some(match run.join(who) {
                    Ok(seated) => RoomReply::Joined {
                        room: seated.room,
                        members: seated.members,
                        epoch: run.epoch,
                    },
                    Err(SeatError::Full) => RoomReply::Refused {
                        code: ErrorCode::RoomFull,
                    },
                    Err(SeatError::Closed) => RoomReply::NotOwner,
                })
            }
            RoomMsg::Members { room } => Some(match self.run(&room) {
                Some(run) => RoomReply::Members {
                    members: run.members(),
                },
                None => RoomReply::NotOwner,
            }),
            RoomMsg::Leave { room, conn } => {
                if let Some(run) = self.run(&room) {
                    run.leave(&conn);
                }
                None
            }
            RoomMsg::Input {
                room,
                conn,
                seq,
                dx,
                dy,
            } => {
                if let Some(run) = self.run(&room) {
                    run.input(&conn, seq, dx, dy);
                }
                None
            }
            RoomMsg::Chat { room, conn, text } => {
                if let Some(run) = self.run(&room) {
                    run.chat(&conn, text);
                }
                None
            }
            RoomMsg::Present { room, conns, epoch } => {
                if let Some(run) = self.run(&room) {
                    let same_run = epoch == Some(run.epoch);
                    let now = std::time::Instant::now();
                    let seated_before = now.checked_sub(self.renew_period() * 2).unwrap_or(now);
                    // Listed but not seated here (a refused re-seat, an eviction that
                    // was lost): that node must stop showing them the room.
                    let unseated = run.present(from, &conns, seated_before);
                    if same_run {
                        for conn in unseated {
                            let evict = RoomMsg::Evict {
                                room: room.clone(),
                                conn,
                                reason: LeftReason::Unavailable,
                                epoch: Some(run.epoch),
                            };
                            self.link.send(from, evict);
                        }
                    }
                }
                None
            }
            RoomMsg::Evict {
                room,
                conn,
                reason,
                epoch,
            } => {
                if let Some(Slot::Mirror(mirror)) = self.slot(&room) {
                    let gone = {
                        let mut state = lock(&mirror.state);
                        if epoch.is_some_and(|e| e != state.epoch) {
                            return None; // from a run this node no longer follows
                        }
                        let i = state.members.iter().position(|m| m.id == conn);
                        i.map(|i| state.members.remove(i))
                    };
                    if let Some(c) = gone {
                        evict(&c, &room, reason);
                        self.drop_mirror_if_empty(&mirror);
                    }
                }
                None
            }
        }
    }

    // ---- upkeep ----

    /// Renew this node's leases, confirm its members to the rooms' owners, and look
    /// again at rooms whose owner fell silent, until `stop`.
    pub async fn run_keeper(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_millis(100).min(self.renew_period()));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            self.look_at_mirrors();
            // Every lease is renewed each period; a room whose count of players changed
            // is renewed at once, so the lobby on every node shows it within a beat.
            let since = last_renewal.elapsed();
            let all = since >= self.renew_period();
            if all {
                last_renewal = Instant::now();
            }
            // A keeper that ran this late was not listening either (the process was
            // paused or starved): its members' silence proves nothing this round.
            let listened = since <= self.renew_period() * 3 / 2;
            self.renew(all, listened).await;
        }
    }

    fn look_at_mirrors(self: &Arc<Self>) {
        let stall = self.stall();
        for mirror in self.mirrors() {
            let silent = {
                let mut state = lock(&mirror.state);
                state.members.retain(|c| !c.is_gone());
                !state.members.is_empty() && !state.moving && state.heard.elapsed() >= stall
            };
            if silent {
                self.spawn_move(mirror, None);
            } else {
                self.drop_mirror_if_empty(&mirror);
            }
        }
    }

    async fn renew(self: &Arc<Self>, all: bool, listened: bool) {
        if !all {
            let changed: Vec<Arc<RoomRun>> = self
                .runs()
                .into_iter()
                .filter(|r| !r.is_closed() && r.players_changed())
                .collect();
            self.renew_runs(changed).await;
            return;
        }
        let runs: Vec<Arc<RoomRun>> = self.runs().into_iter().filter(|r| !r.is_closed()).collect();
        let mirrors = self.mirrors();
        // Seats whose socket or node is gone without a word.
        let now = std::time::Instant::now();
        let cutoff = now.checked_sub(self.renew_period() * 3).unwrap_or(now);
        for run in &runs {
            run.drop_gone_locals();
            if listened {
                run.expire_remote(cutoff);
            }
        }
        for mirror in mirrors {
            let (owner, epoch, conns) = {
                let state = lock(&mirror.state);
                if state.moving {
                    // Its members are on their way to a new run: listing them to it now
                    // would have them evicted as unknown.
                    continue;
                }
                (
                    state.owner.clone(),
                    state.epoch,
                    state
                        .members
                        .iter()
                        .map(|c| c.id.clone())
                        .collect::<Vec<_>>(),
                )
            };
            if !conns.is_empty() && owner != self.node_id() {
                self.link.send(
                    &owner,
                    RoomMsg::Present {
                        room: mirror.record.id.clone(),
                        conns,
                        epoch: Some(epoch),
                    },
                );
            }
        }
        let runs: Vec<Arc<RoomRun>> = runs.into_iter().filter(|r| !r.is_closed()).collect();
        self.renew_runs(runs).await;
    }

    async fn renew_runs(self: &Arc<Self>, runs: Vec<Arc<RoomRun>>) {
        if runs.is_empty() {
            return;
        }
        let renewals = runs
            .iter()
            .map(|r| Renewal {
                room: r.id().to_string(),
                epoch: r.epoch,
                players: r.report_players(),
            })
            .collect();
        let sent = Instant::now();
        match self.link.renew(renewals).await {
            Ok(held) => {
                for (run, held) in runs.into_iter().zip(held) {
                    if held {
                        run.extend(sent.into_std());
                    } else {
                        self.lost(run);
                    }
                }
            }
            // Unconfirmed: each run stops by itself when its lease may have lapsed.
            Err(_) => tracing::debug!("room leases could not be renewed"),
        }
    }

    /// Stop every run this node has and give its leases back, so the rooms' other
    /// members' nodes take them on at once (a clean stop).
    pub async fn shutdown(&self) {
        for run in self.runs() {
            run.close();
            self.link.release(run.id(), run.epoch).await;
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

/// What taking a room on came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TakeOn {
    /// Its run is going, with this node's members of the previous run seated.
    Running,
    /// The room no longer exists; this node's members were told `left` `removed`.
    Gone,
    /// The database could not be reached; the lease was given back.
    Failed,
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
