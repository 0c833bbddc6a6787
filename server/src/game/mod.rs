//! The game: rooms, and the server-authoritative simulation each runs at a fixed tick.

pub mod rooms;
pub mod sim;

pub use rooms::Rooms;
