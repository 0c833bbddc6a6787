//! What travels over Redis between nodes, as JSON, and where: the names of every key
//! and channel live here so that one place says what the backplane holds.
//!
//! Channels: events (every revocation a node committed, with its log id), queries (a
//! question for every node), and per node its replies (acknowledgements of its events,
//! answers to its queries, its own heartbeat pings). Keys: the membership, per node its
//! announcement and its socket counts, and per rate-limit key its state. Rooms
//! (`super::rooms`): per room a lease and a relay channel, per node a room inbox. [`Names`]
//! spells each one.

use std::collections::HashMap;

use arena_protocol::http::Connection;
use serde::{Deserialize, Serialize};

use crate::events::RevocationEvent;

/// Every key and channel name of one deployment. They all start with a namespace that
/// the deployment's nodes derive from the secret they share (the refresh chain key of
/// their keyring), so two deployments pointed at one Redis by mistake never see each
/// other's events, members or counters.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    events: String,
    queries: String,
    nodes: String,
}

impl Names {
    pub fn for_secret(secret: &[u8]) -> Names {
        let digest = crate::ids::hmac_token(secret, "arena backplane namespace");
        let prefix = format!("arena:{}:", &digest[..12]);
        Names {
            events: format!("{prefix}events"),
            queries: format!("{prefix}queries"),
            nodes: format!("{prefix}nodes"),
            prefix,
        }
    }

    /// Every revocation a node committed, with its log id ([`Published`]).
    pub fn events(&self) -> &str {
        &self.events
    }

    /// Questions for every node ([`Query`]).
    pub fn queries(&self) -> &str {
        &self.queries
    }

    /// The membership: a sorted set of node id → when its membership expires (ms).
    pub fn nodes(&self) -> &str {
        &self.nodes
    }

    /// What answers a node: acknowledgements, answers, its own pings ([`Reply`]).
    pub fn replies_to(&self, node: &str) -> String {
        format!("{}replies:{node}", self.prefix)
    }

    /// A node's announcement (its `NodeInfo`), expiring with it.
    pub fn node_info(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// A node's open sockets per user, counted against the deployment-wide cap.
    pub fn node_sockets(&self, node: &str) -> String {
        format!("{}sockets:{node}", self.prefix)
    }

    /// A room's lease: a hash of `node`, `epoch`, `players` that expires unless renewed.
    pub fn room_lease(&self, room: &str) -> String {
        format!("{}room:{room}", self.prefix)
    }

    /// A room's last lease epoch (new epochs are above it).
    pub fn room_epoch(&self, room: &str) -> String {
        format!("{}room-epoch:{room}", self.prefix)
    }

    /// The lease era, `<since µs> <run_id> <master_replid>` (no expiry): when, on its own
    /// clock, which Redis instance began keeping leases. No room may be claimed until a
    /// lease has passed since, and an era written by another instance (restored from a
    /// snapshot or an AOF, copied to a promoted replica) starts again, so a Redis that
    /// lost or rewound its leases never hands a room to a second node while its old
    /// owner, not yet told, still ticks (see `super::rooms`).
    pub fn room_lease_era(&self) -> String {
        format!("{}room-lease-era", self.prefix)
    }

    /// The frames a room's owner relays to its members on other nodes.
    pub fn room_relays(&self, room: &str) -> String {
        format!("{}relay:{room}", self.prefix)
    }

    /// Room messages for one node (joins, inputs, answers, evictions).
    pub fn room_inbox(&self, node: &str) -> String {
        format!("{}rooms-to:{node}", self.prefix)
    }

    /// A login/register rate-limit key's state.
    pub fn rate(&self, key: &str) -> String {
        format!("{}rate:{key}", self.prefix)
    }
}

/// The field of [`Names::node_sockets`] that says the hash is this incarnation's: a hash
/// without it was lost (Redis restarted) and is written again from the registry.
pub const SOCKETS_MARKER: &str = "_";

/// A revocation as published: the log's record of it, who published it and which of
/// its requests the acknowledgements answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub node: String,
    pub request: u64,
    pub id: i64,
    /// The event's tag in the log (see `store::log`): which event this id is.
    #[serde(default)]
    pub tag: Option<String>,
    pub origin: String,
    pub event: RevocationEvent,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Query {
    pub node: String,
    pub request: u64,
    pub ask: Ask,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ask {
    /// Every socket the node holds.
    Connections,
    /// The node's sockets of one user, by session.
    SocketsOf { user_id: String },
    /// Not a question: the asking node is leaving (a clean stop); forget it at once
    /// rather than at the next heartbeat. No answer.
    Leaving,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    /// Who answers.
    pub node: String,
    /// The request answered (0 for a ping).
    pub request: u64,
    pub body: ReplyBody,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyBody {
    /// The event has been applied here: recorded, and these sockets closed.
    Applied {
        closed: usize,
    },
    Connections {
        connections: Vec<Connection>,
    },
    SocketsOf {
        sessions: HashMap<String, usize>,
    },
    /// A node's message to itself through Redis: when it comes back, every message
    /// published before it has been received (Redis delivers in order), so the
    /// subscription is alive. `nonce` is random: only a ping the node sent counts.
    Ping {
        nonce: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn namespaces_differ_per_deployment() {
        let (a, b) = (Names::for_secret(b"one"), Names::for_secret(b"two"));
        assert_ne!(a.events(), b.events());
        assert_eq!(a.events(), Names::for_secret(b"one").events());
        assert!(a
            .node_sockets("n")
            .starts_with(a.nodes().trim_end_matches("nodes")));
    }
}
