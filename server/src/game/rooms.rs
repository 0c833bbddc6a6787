//! Rooms: named groups of sockets with a capacity, held in memory.
//!
//! A socket is in at most one room; a user is in a room at most once. When a user's
//! second socket joins a room their first socket is already in (a reconnect, a second
//! tab), it takes over the player's place and the old socket is told `left`; the others
//! see no change. Broadcasts encode a message once and share the bytes among members;
//! a member whose queue is full is closed as too slow (see [`ConnHandle::send`]) and
//! never delays the others.

use std::sync::{Arc, Mutex};

use arena_protocol::http::{Member, Room as RoomInfo, RoomDetail};
use arena_protocol::ws::ServerMessage;
use arena_protocol::ErrorCode;
use axum::extract::ws::Message;
use dashmap::DashMap;

use crate::error::Error;
use crate::ids;
use crate::registry::ConnHandle;

pub struct Rooms {
    rooms: DashMap<String, Arc<Room>>,
    max_rooms: usize,
}

pub struct Room {
    pub id: String,
    pub name: String,
    pub capacity: u32,
    members: Mutex<Vec<Arc<ConnHandle>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Room {
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            capacity: self.capacity,
            players: lock(&self.members).len() as u32,
        }
    }

    pub fn detail(&self) -> RoomDetail {
        let members = lock(&self.members);
        RoomDetail {
            room: RoomInfo {
                id: self.id.clone(),
                name: self.name.clone(),
                capacity: self.capacity,
                players: members.len() as u32,
            },
            members: members.iter().map(|h| member(h)).collect(),
        }
    }

    /// Send one message to every member, encoding it once.
    pub fn broadcast(&self, message: &ServerMessage) {
        let frame = Message::Text(message.encode().into());
        for h in lock(&self.members).iter() {
            h.send(frame.clone());
        }
    }

    fn broadcast_except(&self, members: &[Arc<ConnHandle>], except: &str, message: &ServerMessage) {
        let frame = Message::Text(message.encode().into());
        for h in members.iter().filter(|h| h.id != except) {
            h.send(frame.clone());
        }
    }
}

fn member(h: &ConnHandle) -> Member {
    Member {
        id: h.user_id.clone(),
        username: h.username.clone(),
    }
}

/// What joining returns to the joiner.
pub struct Joined {
    pub room: RoomInfo,
    pub members: Vec<Member>,
    /// The room the socket was in before, which it has now left.
    pub left: Option<String>,
}

impl Rooms {
    pub fn new(max_rooms: usize) -> Rooms {
        Rooms {
            rooms: DashMap::new(),
            max_rooms,
        }
    }

    pub fn create(&self, name: &str, capacity: u32) -> Result<RoomInfo, Error> {
        if self.rooms.len() >= self.max_rooms {
            return Err(Error::RateLimited { retry_after: 60 });
        }
        let room = Arc::new(Room {
            id: ids::new_id("r"),
            name: name.to_string(),
            capacity,
            members: Mutex::new(Vec::new()),
        });
        let info = room.info();
        self.rooms.insert(room.id.clone(), room);
        Ok(info)
    }

    pub fn list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self.rooms.iter().map(|r| r.info()).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        rooms
    }

    pub fn get(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms.get(id).map(|r| r.clone())
    }

    /// Put a socket in a room, leaving the one it was in.
    pub fn join(&self, conn: &Arc<ConnHandle>, room_id: &str) -> Result<Joined, ErrorCode> {
        let room = self.get(room_id).ok_or(ErrorCode::RoomNotFound)?;
        let previous = conn.room();
        if previous.as_deref() == Some(room_id) {
            let detail = room.detail();
            return Ok(Joined {
                room: detail.room,
                members: detail.members,
                left: None,
            });
        }
        let members = lock(&room.members);
        let replaced = members.iter().position(|h| h.user_id == conn.user_id);
        if replaced.is_none() && members.len() >= room.capacity as usize {
            return Err(ErrorCode::RoomFull);
        }
        // Leave the old room before entering the new one (never lock two rooms at once).
        drop(members);
        let left = previous.filter(|old| self.leave(conn, old));
        let mut members = lock(&room.members);
        match members.iter().position(|h| h.user_id == conn.user_id) {
            Some(i) => {
                let old = std::mem::replace(&mut members[i], conn.clone());
                old.set_room(None);
                old.send(Message::Text(
                    ServerMessage::Left {
                        room: room.id.clone(),
                    }
                    .encode()
                    .into(),
                ));
            }
            None => {
                if members.len() >= room.capacity as usize {
                    return Err(ErrorCode::RoomFull);
                }
                members.push(conn.clone());
                room.broadcast_except(
                    &members,
                    &conn.id,
                    &ServerMessage::PlayerJoined {
                        room: room.id.clone(),
                        player: member(conn),
                    },
                );
            }
        }
        conn.set_room(Some(room.id.clone()));
        let info = RoomInfo {
            id: room.id.clone(),
            name: room.name.clone(),
            capacity: room.capacity,
            players: members.len() as u32,
        };
        Ok(Joined {
            room: info,
            members: members.iter().map(|h| member(h)).collect(),
            left,
        })
    }

    /// Take a socket out of a room. Returns whether it was there.
    pub fn leave(&self, conn: &ConnHandle, room_id: &str) -> bool {
        let Some(room) = self.get(room_id) else {
            return false;
        };
        let mut members = lock(&room.members);
        let Some(i) = members.iter().position(|h| h.id == conn.id) else {
            return false;
        };
        members.remove(i);
        conn.set_room(None);
        room.broadcast_except(
            &members,
            &conn.id,
            &ServerMessage::PlayerLeft {
                room: room.id.clone(),
                player: member(conn),
            },
        );
        true
    }

    /// Take a socket out of whatever room it is in.
    pub fn leave_current(&self, conn: &ConnHandle) -> Option<String> {
        let room = conn.room()?;
        self.leave(conn, &room).then_some(room)
    }
}
