//! What rooms need from the other nodes of a deployment, as a trait ([`RoomLink`]): a
//! lease per room that says which node runs it, and the traffic between a room's owner
//! and the nodes that hold its other members. `cluster::Cluster` implements it over
//! Redis; a single node uses [`LocalLink`], where every lease is this node's to take and
//! there is nobody to talk to. As with `auth::peers`, the dependency runs one way:
//! `cluster` knows `game`, `game` knows only this.
//!
//! The lease is what makes "exactly one node ticks a room" true. The owner renews it
//! every third of its length and stops ticking once it cannot be sure it still holds it:
//! at the time it *sent* its last successful renewal plus 90% of the lease (the lease
//! started no earlier on the lease keeper's clock, so it ends no earlier there; the 10%
//! absorbs the two clocks' drift). Another node can take the room only after the lease
//! has expired on the keeper (or, on a keeper that may have lost it, a restarted or
//! promoted Redis, a lease after that keeper began: see `cluster::rooms`), so the old
//! owner has stopped by then, even if it was paused or cut off and never heard that it
//! lost the room. Only the lease's holder speaks for the room: a run past its lease
//! seats nobody and never marks the room idle. Every lease has an epoch,
//! higher for each new holder; frames carry it, and a node drops frames of an epoch
//! older than the newest it has seen for that room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arena_protocol::http::{Member, Room as RoomInfo};
use arena_protocol::ws::LeftReason;
use arena_protocol::ErrorCode;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::frame::TextFrame;

/// The lease keeper (Redis) cannot be reached: nothing can be claimed or confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown;

/// What claiming a room's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node holds it now, under a new epoch.
    Acquired { epoch: u64 },
    /// Someone holds it (possibly this node).
    HeldBy { node: String, epoch: u64 },
    /// Nobody may take it yet: the lease keeper lost its leases a moment ago (a Redis
    /// restart) and the room's last owner may still be ticking. Ask again shortly.
    Wait,
}

/// Who runs a room, as its lease says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    pub epoch: u64,
    /// Members on every node, as the owner last reported.
    pub players: u32,
}

/// One lease to renew, with the member count to publish.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub room: String,
    pub epoch: u64,
    pub players: u32,
}

/// A frame for every member of a room on the other nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayHeader {
    /// The owner's node and lease epoch: frames of an older epoch are dropped.
    pub node: String,
    pub epoch: u64,
    /// `state` frames go through each socket's latest-state slot (a slow reader drops
    /// stale ones); the rest are queued in order.
    #[serde(default)]
    pub state: bool,
    /// A socket that must not get it (the one whose own join it announces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<String>,
}

/// A member whose socket is on another node than the room's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteMember {
    pub node: String,
    pub conn: String,
    pub user_id: String,
    pub username: String,
}

impl RemoteMember {
    pub fn member(&self) -> Member {
        Member {
            id: self.user_id.clone(),
            username: self.username.clone(),
        }
    }
}

/// A message from one node to another about a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomMsg {
    // To the owner, from a member's node.
    /// Seat this socket (`moved`: it was in the room's previous incarnation).
    Join {
        room: String,
        member: RemoteMember,
        #[serde(default)]
        moved: bool,
    },
    Leave {
        room: String,
        conn: String,
    },
    Input {
        room: String,
        conn: String,
        seq: u64,
        dx: f64,
        dy: f64,
    },
    Chat {
        room: String,
        conn: String,
        text: String,
    },
    /// The sender's members of the room, all of them: seats of that node not listed
    /// (and not just seated) are gone. Sent every third of a lease. `epoch`: the run
    /// the sender follows; only that run evicts the listed sockets it has no seat for.
    Present {
        room: String,
        conns: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Who is in the room (for `GET /lobby/rooms/{id}`).
    Members {
        room: String,
    },
    // To a member's node, from the owner.
    /// The socket is no longer in the room.
    Evict {
        room: String,
        conn: String,
        reason: LeftReason,
        /// The evicting run's epoch: a node follows only its room's current run, so an
        /// eviction by an older one (a thawed owner that has not yet seen it lost the
        /// room) is ignored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
}

/// The owner's answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomReply {
    Joined {
        room: RoomInfo,
        members: Vec<Member>,
        epoch: u64,
    },
    Refused {
        code: ErrorCode,
    },
    /// This node does not run the room (any more): ask the lease again.
    NotOwner,
    Members {
        members: Vec<Member>,
    },
}

pub trait RoomLink: Send + Sync {
    fn node_id(&self) -> &str;

    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration;

    /// Whether there are other nodes at all (a single node skips the traffic).
    fn clustered(&self) -> bool;

    /// Take the room's lease if nobody holds it.
    fn claim<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Claim, LinkDown>>;

    /// Renew leases this node holds; for each, whether it still does.
    fn renew(&self, leases: Vec<Renewal>) -> BoxFuture<'_, Result<Vec<bool>, LinkDown>>;

    /// Give a lease back (only if this node still holds it under `epoch`).
    fn release<'a>(&'a self, room: &'a str, epoch: u64) -> BoxFuture<'a, ()>;

    /// Who holds each room's lease.
    fn holders<'a>(
        &'a self,
        rooms: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Holder>>, LinkDown>>;

    /// Send a frame to the room's members on every other node (in order with
    /// everything else this node sends).
    fn relay(&self, room: &str, header: &RelayHeader, frame: &TextFrame);

    /// Send a message to one node (in order with everything else this node sends).
    fn send(&self, node: &str, msg: RoomMsg);

    /// Ask a node and wait a short while for its answer.
    fn request<'a>(&'a self, node: &'a str, msg: RoomMsg) -> BoxFuture<'a, Option<RoomReply>>;

    /// Start receiving the room's relays; resolves once they are on their way.
    fn watch<'a>(&'a self, room: &'a str) -> BoxFuture<'a, ()>;

    /// Stop receiving them.
    fn unwatch(&self, room: &str);

    /// Charge one attempt to a deployment-wide rate (`per_minute`): `None` when there is
    /// no shared counter (alone, or the keeper is out of reach: the node's own applies),
    /// else allowed or the seconds to wait.
    fn check_rate<'a>(
        &'a self,
        key: &'a str,
        per_minute: u32,
    ) -> BoxFuture<'a, Option<Result<(), u64>>>;
}

/// The link of a node alone: it takes every lease and has nobody to talk to.
pub struct LocalLink {
    node: String,
    leases: Mutex<HashMap<String, u64>>,
    next_epoch: std::sync::atomic::AtomicU64,
}

impl LocalLink {
    pub fn new(node: &str) -> LocalLink {
        LocalLink {
            node: node.to_string(),
            leases: Mutex::new(HashMap::new()),
            next_epoch: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RoomLink for LocalLink {
    fn node_id(&self) -> &str {
        &self.node
    }

    fn lease(&self) -> Duration {
        // Never expires: renewals only refresh the owner's own deadline.
        Duration::from_secs(3600)
    }

    fn clustered(&self) -> bool {
        false
    }

    fn claim<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Claim, LinkDown>> {
        let mut leases = self.leases();
        let claim = match leases.get(room) {
            Some(&epoch) => Claim::HeldBy {
                node: self.node.clone(),
                epoch,
            },
            None => {
                let epoch = self
                    .next_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                leases.insert(room.to_string(), epoch);
                Claim::Acquired { epoch }
            }
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn renew(&self, leases: Vec<Renewal>) -> BoxFuture<'_, Result<Vec<bool>, LinkDown>> {
        let held = self.leases();
        let still = leases
            .iter()
            .map(|r| held.get(&r.room) == Some(&r.epoch))
            .collect();
        Box::pin(std::future::ready(Ok(still)))
    }

    fn release<'a>(&'a self, room: &'a str, epoch: u64) -> BoxFuture<'a, ()> {
        let mut leases = self.leases();
        if leases.get(room) == Some(&epoch) {
            leases.remove(room);
        }
        Box::pin(std::future::ready(()))
    }

    fn holders<'a>(
        &'a self,
        rooms: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Holder>>, LinkDown>> {
        // A single node answers from its own rooms (see `Rooms::list`).
        Box::pin(std::future::ready(Ok(vec![None; rooms.len()])))
    }

    fn relay(&self, _room: &str, _header: &RelayHeader, _frame: &TextFrame) {}

    fn send(&self, _node: &str, _msg: RoomMsg) {}

    fn request<'a>(&'a self, _node: &'a str, _msg: RoomMsg) -> BoxFuture<'a, Option<RoomReply>> {
        Box::pin(std::future::ready(None))
    }

    fn watch<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    fn unwatch(&self, _room: &str) {}

    fn check_rate<'a>(
        &'a self,
        _key: &'a str,
        _per_minute: u32,
    ) -> BoxFuture<'a, Option<Result<(), u64>>> {
        Box::pin(std::future::ready(None))
    }
}
