//! A run's life on the node that owns the room: taken on under a lease just won, its
//! tick loop, and its end (emptied: the room goes idle; its lease lost: its members
//! move to whoever runs the room next).

use std::sync::{Arc, Mutex};

use arena_protocol::ws::{LeftReason, ServerMessage};
use tokio::time::Instant;

use super::{evict, lock, Mirror, MirrorState, Rooms, Slot};
use crate::frame::TextFrame;
use crate::game::link::Renewal;
use crate::game::room::{Occupant, RoomRun, Seated, Ticked};
use crate::registry::ConnHandle;
use crate::store::RoomRow;

impl Rooms {
    /// Take a room on under a lease just acquired: mark it in use, start its run, and seat
    /// this node's members of the room's previous run, if any (each told `room_moved`).
    /// Unless it runs, the lease is given back.
    pub(super) async fn take_on(
        self: Arc<Self>,
        record: RoomRow,
        epoch: u64,
        sent: Instant,
    ) -> TakeOn {
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

    pub(super) fn tell_moved(&self, conn: &ConnHandle, seated: Seated) {
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
        // Only the room's owner may say it is empty: a node that was paused past its
        // lease (another node may run the room now) says nothing.
        if self.still_holds(&run).await {
            if let Err(e) = self.store.room_emptied(&id, crate::ids::now_ms()).await {
                tracing::debug!(room = %id, error = %e, "cannot record an empty room");
            }
        } else {
            tracing::info!(room = %id, epoch = run.epoch, "an emptied run's lease is not surely this node's: the room is left as it is");
        }
        // After the record: the next owner's "in use" always lands after this "empty".
        self.link.release(&id, run.epoch).await;
    }

    /// Whether this node still holds the run's lease, as the lease keeper answers now,
    /// with the answer in hand within the lease counted from the asking (a renewal).
    async fn still_holds(&self, run: &RoomRun) -> bool {
        let asked = Instant::now();
        let renewal = Renewal {
            room: run.id().to_string(),
            epoch: run.epoch,
            players: 0,
        };
        let held = self.link.renew(vec![renewal]).await;
        matches!(held.as_deref(), Ok([true])) && asked.elapsed() < self.link.lease().mul_f64(0.9)
    }

    /// The run's lease is no longer surely this node's: stop, and move its members to
    /// whoever runs the room next (possibly this node again).
    pub(super) fn lost(self: &Arc<Self>, run: Arc<RoomRun>) {
        let Some(members) = run.close() else {
            return; // the tick and the renewal both saw it: the first one moves them
        };
        if members.is_empty() {
            // Nobody to move (the run emptied as its lease lapsed, say, while the node
            // was paused): the run goes, and the room is left to whoever holds the lease
            // now. Not "empty" in the records: only the lease's holder may say that, and
            // the sweep repairs a room left in use by nobody.
            let id = run.id().to_string();
            self.slots.remove_if(
                &id,
                |_, s| matches!(s, Slot::Owned(r) if Arc::ptr_eq(r, &run)),
            );
            tracing::info!(room = %id, epoch = run.epoch, "lost the lease of an empty run");
            let me = self.clone();
            tokio::spawn(async move { me.link.release(&id, run.epoch).await });
            return;
        }
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
}

/// What taking a room on came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TakeOn {
    /// Its run is going, with this node's members of the previous run seated.
    Running,
    /// The room no longer exists; this node's members were told `left` `removed`.
    Gone,
    /// The database could not be reached; the lease was given back.
    Failed,
}
