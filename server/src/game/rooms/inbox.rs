//! What the other nodes send about rooms: the owners' relayed frames to this node's
//! members, and the messages between a room's owner and its members' nodes.

use std::sync::Arc;

use arena_protocol::ws::LeftReason;
use arena_protocol::ErrorCode;
use tokio::time::Instant;

use super::{evict, lock, Rooms, Slot};
use crate::frame::TextFrame;
use crate::game::link::{RelayHeader, RoomMsg, RoomReply};
use crate::game::room::{Occupant, SeatError};

impl Rooms {
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
}
