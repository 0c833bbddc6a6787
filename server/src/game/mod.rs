//! The game: rooms as records every node lists alike, each room's server-authoritative
//! simulation run at a fixed tick on exactly one node, and the traffic between that node
//! and the nodes holding the room's other members.
//!
//! - `sim`: movement rules, free of I/O.
//! - `round`: the objective (orbs, scores, collisions, timed rounds), free of I/O.
//! - `room`: one room's run on its owner (seats, ticks, frames encoded once).
//! - `rooms`: this node's rooms, owned or followed; joins, moves, upkeep.
//! - `lobby`: the records: create within limits, list, sweep idle rooms.
//! - `link`: what rooms need from the other nodes (leases, relays), as a trait.

pub mod link;
pub mod lobby;
pub mod room;
pub mod rooms;
pub mod round;
pub mod sim;

pub use rooms::Rooms;
