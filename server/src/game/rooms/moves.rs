//! The members' side of a room that changes hands: a node whose sockets are in a room
//! run elsewhere follows the room to its next run when its owner falls silent or a newer
//! run shows up, taking the room on itself if nobody holds it.

use std::sync::Arc;
use std::time::Duration;

use arena_protocol::ws::LeftReason;
use tokio::time::Instant;

use super::owner::TakeOn;
use super::{evict, lock, Mirror, Rooms};
use crate::game::link::{Claim, RoomMsg, RoomReply};
use crate::game::room::Seated;
use crate::registry::ConnHandle;

impl Rooms {
    /// Move a mirror's members to the room's current run: to `to` if given, else to
    /// whoever holds the lease once the silent owner's has lapsed (this node, if it can
    /// claim it). One move at a time per mirror.
    pub(super) fn spawn_move(self: &Arc<Self>, mirror: Arc<Mirror>, to: Option<(String, u64)>) {
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
}
