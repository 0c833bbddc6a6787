//! What travels over Redis between nodes, as JSON, and where: the names of every key
//! and channel live here so that one place says what the backplane holds.
//!
//! Channels:
//! - [`EVENTS`]: every revocation a node committed, with its log id ([`Published`]);
//! - [`QUERIES`]: a question for every node (their sockets), ([`Query`]);
//! - [`replies_to`]`(node)`: what answers a node: acknowledgements of its events,
//!   answers to its queries, and its own heartbeat pings ([`Reply`]).
//!
//! Keys: [`NODES`] (a sorted set: node id → when its membership expires, ms), per node
//! [`node_info`] (its `NodeInfo` as last announced, expiring with it) and
//! [`node_sockets`] (user → open sockets, counted against the deployment-wide cap), and
//! per rate-limit key [`rate`].

use std::collections::HashMap;

use arena_protocol::http::Connection;
use serde::{Deserialize, Serialize};

use crate::events::RevocationEvent;

pub const EVENTS: &str = "arena:events";
pub const QUERIES: &str = "arena:queries";
pub const NODES: &str = "arena:nodes";

pub fn replies_to(node: &str) -> String {
    format!("arena:replies:{node}")
}

pub fn node_info(node: &str) -> String {
    format!("arena:node:{node}")
}

pub fn node_sockets(node: &str) -> String {
    format!("arena:sockets:{node}")
}

pub fn rate(key: &str) -> String {
    format!("arena:rate:{key}")
}

/// The field of [`node_sockets`] that says the hash is this incarnation's: a hash
/// without it was lost (Redis restarted) and is written again from the registry.
pub const SOCKETS_MARKER: &str = "_";

/// A revocation as published: the log's record of it, who published it and which of
/// its requests the acknowledgements answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub node: String,
    pub request: u64,
    pub id: i64,
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
    /// subscription is alive and nothing before `sent_at` is missing.
    Ping {
        sent_at: i64,
    },
}
