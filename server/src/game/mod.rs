//! The game: rooms now; the fixed-tick simulation lives here too.

pub mod rooms;

pub use rooms::Rooms;
