//! The lobby: rooms as records every node lists alike (id, name, capacity, creator,
//! creation time, in the database), with who runs each now and how many are in it.
//!
//! Creation is bounded three ways, each refused with its own honest answer
//! ([`CreateError`]): rooms a user created that still exist (a quota, counted in the
//! database with the user row locked), rooms a user may create per minute (a rate, in
//! Redis for a cluster), and rooms in the deployment (a cap, 503 rather than 429: it is
//! nobody's own fault; the database's one-row counter makes it exact across nodes).
//!
//! A room a player created is removed once it has stayed empty for the idle time. The
//! sweep takes the room's lease first, as a join would: holding it, nobody can be in
//! the room or entering it, so a removal can never strand a member; a join that comes
//! just after finds the record gone and gets `room_not_found`. "Main Hall", made once
//! per deployment, never goes.

use std::time::Duration;

use arena_protocol::http::{Member, Room as RoomInfo, RoomDetail, MAIN_HALL_ID};
use arena_protocol::ErrorCode;

use super::link::{Claim, RoomMsg, RoomReply};
use super::rooms::Rooms;
use crate::error::{Error, Result};
use crate::ids;
use crate::store::{RoomRefusal, RoomRow};

/// Why a room was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// The user already has `have` rooms; the limit is `limit`.
    Quota {
        have: usize,
        limit: usize,
        retry_after: u64,
    },
    /// The user created rooms too fast.
    Rate { retry_after: u64 },
    /// The deployment holds as many rooms as it may.
    Full { retry_after: u64 },
}

impl From<CreateError> for Error {
    fn from(e: CreateError) -> Error {
        let (code, message, retry_after) = match e {
            CreateError::Quota {
                have,
                limit,
                retry_after,
            } => (
                ErrorCode::RateLimited,
                format!("you have {have} rooms; the limit is {limit}"),
                retry_after,
            ),
            CreateError::Rate { retry_after } => (
                ErrorCode::RateLimited,
                format!("too many rooms created; retry in {retry_after} s"),
                retry_after,
            ),
            CreateError::Full { retry_after } => (
                ErrorCode::Unavailable,
                "the server holds as many rooms as it can".to_string(),
                retry_after,
            ),
        };
        Error::Limited {
            code,
            message,
            retry_after,
        }
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` can say.
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl Rooms {
    /// Make "Main Hall" unless the deployment has it.
    pub async fn ensure_main_hall(&self) -> Result<()> {
        self.store
            .ensure_room(&RoomRow {
                id: MAIN_HALL_ID.to_string(),
                name: "Main Hall".to_string(),
                capacity: arena_protocol::http::ROOM_CAPACITY_DEFAULT,
                created_by: None,
                created_at: ids::now_ms(),
                empty_since: None,
            })
            .await
    }

    /// How often [`Rooms::run_sweeper`] looks for idle rooms: a quarter of the idle time
    /// (so a room goes at most 25% late), between 100 ms and 30 s.
    pub fn sweep_period(&self) -> Duration {
        (self.limits.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// A room created by `owner` (a verified user id), within the quota, the rate and the
    /// deployment's cap.
    pub async fn create(&self, owner: &str, name: &str, capacity: u32) -> Result<RoomInfo> {
        if let Some(per_minute) = self.limits.create_per_minute {
            // The deployment's own count when there is one, else this node's.
            let key = format!("room-create:{owner}");
            match self.link.check_rate(&key, per_minute.get()).await {
                Some(Ok(())) => {}
                Some(Err(retry_after)) => return Err(CreateError::Rate { retry_after }.into()),
                None => self.check_local_rate(owner)?,
            }
        }
        let now = ids::now_ms();
        let row = RoomRow {
            id: ids::new_id("r"),
            name: name.to_string(),
            capacity,
            created_by: Some(owner.to_string()),
            created_at: now,
            empty_since: Some(now),
        };
        let refused = match self
            .store
            .create_room(&row, self.limits.max_rooms, self.limits.max_per_user)
            .await?
        {
            Ok(()) => return Ok(self.info(&row, None)),
            Err(r) => r,
        };
        Err(match refused {
            RoomRefusal::Quota { have } => CreateError::Quota {
                have,
                limit: self.limits.max_per_user,
                retry_after: self.free_in(Some(owner)).await,
            },
            RoomRefusal::Full => CreateError::Full {
                retry_after: self.free_in(None).await,
            },
        }
        .into())
    }

    fn check_local_rate(&self, owner: &str) -> Result<()> {
        if let Some(limiter) = &self.create_limiter {
            if let Err(not_until) = limiter.check_key(&owner.to_string()) {
                let now = governor::clock::Clock::now(limiter.clock());
                return Err(CreateError::Rate {
                    retry_after: whole_secs(not_until.wait_time_from(now)),
                }
                .into());
            }
        }
        Ok(())
    }

    /// A record as the lobby shows it, with who runs it (`holder`: node and players).
    fn info(&self, row: &RoomRow, holder: Option<(String, u32)>) -> RoomInfo {
        let (node, players) = match self.run(&row.id) {
            Some(run) => (Some(self.node_id().to_string()), run.players()),
            None => match holder {
                Some((node, players)) => (Some(node), players),
                None => (None, 0),
            },
        };
        RoomInfo {
            id: row.id.clone(),
            name: row.name.clone(),
            capacity: row.capacity,
            players,
            node,
            created_by: row.created_by.clone(),
            created_at: row.created_at,
        }
    }

    /// Every room of the deployment, by name then id.
    pub async fn list(&self) -> Result<Vec<RoomInfo>> {
        let rows = self.store.rooms().await?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        // Without the lease keeper the lobby still lists every room, without owners.
        let holders = self
            .link
            .holders(&ids)
            .await
            .unwrap_or_else(|_| vec![None; ids.len()]);
        Ok(rows
            .iter()
            .zip(holders)
            .map(|(row, h)| self.info(row, h.map(|h| (h.node, h.players))))
            .collect())
    }

    /// One room with its members on every node; `None`: no such room.
    pub async fn detail(&self, id: &str) -> Result<Option<RoomDetail>> {
        let Some(row) = self.store.room(id).await? else {
            return Ok(None);
        };
        if let Some(run) = self.run(id) {
            return Ok(Some(RoomDetail {
                room: self.info(&row, None),
                members: run.members(),
            }));
        }
        let holder = self
            .link
            .holders(std::slice::from_ref(&row.id))
            .await
            .ok()
            .and_then(|mut h| h.pop().flatten());
        let mut members: Vec<Member> = Vec::new();
        if let Some(h) = &holder {
            let asked = RoomMsg::Members {
                room: row.id.clone(),
            };
            if let Some(RoomReply::Members { members: m }) = self.link.request(&h.node, asked).await
            {
                members = m;
            }
        }
        let mut room = self.info(&row, holder.map(|h| (h.node, h.players)));
        if !members.is_empty() {
            room.players = members.len() as u32;
        }
        Ok(Some(RoomDetail { room, members }))
    }

    /// Seconds until a room (of `owner`, or anyone's) may be swept: the soonest idle
    /// expiry plus a sweep, or a whole idle time when every such room is in use.
    async fn free_in(&self, owner: Option<&str>) -> u64 {
        let now = ids::now_ms();
        let idle_ms = self.limits.idle.as_millis() as i64;
        let soonest = self
            .store
            .rooms()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| match (&r.created_by, owner) {
                (None, _) => false,
                (Some(by), Some(owner)) => by == owner,
                (Some(_), None) => true,
            })
            .filter_map(|r| r.empty_since.map(|since| (idle_ms - (now - since)).max(0)))
            .min()
            .unwrap_or(idle_ms);
        whole_secs(Duration::from_millis(soonest as u64) + self.sweep_period())
    }

    /// Remove the rooms players created that have been empty for the idle time at
    /// `now` (ms). Returns how many went.
    pub async fn sweep(&self, now: i64) -> Result<usize> {
        let idle_ms = self.limits.idle.as_millis() as i64;
        let mut removed = 0;
        for row in self.store.rooms().await? {
            if row.created_by.is_none() || self.run(&row.id).is_some() {
                continue;
            }
            // Recently emptied rooms are not due yet; in-use ones (no empty time) may
            // be orphans of a node that died, which only the lease can tell.
            if row.empty_since.is_some_and(|since| now - since < idle_ms) {
                continue;
            }
            let asked = tokio::time::Instant::now();
            let epoch = match self.link.claim(&row.id).await {
                Ok(Claim::Acquired { epoch }) => epoch,
                Ok(Claim::HeldBy { .. }) => continue,
                Ok(Claim::Wait) | Err(_) => break,
            };
            // Holding the lease: nobody is in the room, nobody can enter it. For as long
            // as a run would hold it (see `link`): a sweep that was paused past that may
            // no longer hold it, and must not speak for a room another node may run.
            let held = || asked.elapsed() < self.link.lease().mul_f64(0.9);
            let outcome = match self.store.room(&row.id).await {
                Ok(Some(_)) if !held() => Ok(false),
                Ok(Some(r)) if r.empty_since.is_none() => {
                    // Left in use by a node that died: idle from now.
                    self.store.room_emptied(&r.id, now).await.map(|_| false)
                }
                Ok(Some(r)) => self.store.delete_idle_room(&r.id, now - idle_ms).await,
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            self.link.release(&row.id, epoch).await;
            match outcome {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "room sweep stopped");
                    break;
                }
            }
        }
        if let Some(l) = &self.create_limiter {
            l.retain_recent();
        }
        Ok(removed)
    }

    /// Sweep every [`Rooms::sweep_period`] until `stop`.
    pub async fn run_sweeper(&self, stop: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(self.sweep_period());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => match self.sweep(ids::now_ms()).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::debug!(removed, "idle rooms removed"),
                    Err(e) => tracing::debug!(error = %e, "cannot sweep idle rooms"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use super::*;
    use crate::game::link::LocalLink;
    use crate::game::rooms::RoomLimits;
    use crate::registry::{NewConnection, Registry, RegistryLimits};
    use crate::store::Store;

    async fn rooms(
        name: &str,
        max_rooms: usize,
        max_per_user: usize,
        per_minute: u32,
        idle: Duration,
    ) -> Arc<Rooms> {
        let dir = std::env::temp_dir().join(format!("arena-lobby-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(None, &dir).await.unwrap();
        for user in ["u", "v", "w"] {
            let row = crate::store::UserRow {
                id: user.into(),
                username: user.into(),
                role: arena_protocol::Role::Player,
                created_at: 0,
                tokens_valid_after_secs: 0,
            };
            store.create_user(&row, "x").await.unwrap();
        }
        let rooms = Arc::new(Rooms::new(
            store,
            Arc::new(LocalLink::new("n")),
            RoomLimits {
                max_rooms,
                max_per_user,
                create_per_minute: NonZeroU32::new(per_minute),
                idle,
            },
            20,
            crate::game::room::ChatDelivery::Tick,
            crate::game::round::RoundTimes {
                round_secs: 120,
                pause_secs: 8,
            },
        ));
        rooms.ensure_main_hall().await.unwrap();
        rooms
    }

    fn code(e: Error) -> ErrorCode {
        e.code()
    }

    #[tokio::test]
    async fn quota_then_cap_each_with_its_own_answer() {
        let r = rooms("quota", 4, 2, 0, Duration::from_secs(60)).await;
        r.ensure_main_hall().await.unwrap(); // again: still one
        r.create("u", "a", 2).await.unwrap();
        r.create("u", "b", 2).await.unwrap();
        let e = r.create("u", "c", 2).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::RateLimited);
        r.create("v", "d", 2).await.unwrap();
        let e = r.create("w", "e", 2).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::Unavailable);
        let list = r.list().await.unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list.iter().filter(|i| i.id == MAIN_HALL_ID).count(), 1);
    }

    #[tokio::test]
    async fn creation_rate_is_per_user() {
        let r = rooms("rate", 100, 100, 2, Duration::from_secs(60)).await;
        r.create("u", "a", 2).await.unwrap();
        r.create("u", "b", 2).await.unwrap();
        let e = r.create("u", "c", 2).await.unwrap_err();
        assert!(matches!(
            e,
            Error::Limited {
                retry_after: 1..=60,
                ..
            }
        ));
        r.create("v", "d", 2).await.unwrap();
    }

    /// A sweep racing a join: either the join wins and the room stays with its member,
    /// or the sweep wins and the join gets `room_not_found`. Never a member in a
    /// removed room.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_racing_a_join_never_leaves_a_member_in_a_removed_room() {
        let r = rooms("race", 100_000, 100_000, 0, Duration::from_millis(1)).await;
        let reg = Registry::new(RegistryLimits {
            max_per_user: 1000,
            max_total: 100_000,
            outbound_queue: 1024,
            close_timeout: Duration::from_millis(10),
        });
        let (mut joined, mut refused) = (0, 0);
        for _ in 0..100 {
            let id = r.create("u", "race", 2).await.unwrap().id;
            tokio::time::sleep(Duration::from_millis(2)).await; // idle long enough
            let (conn, _out) = reg
                .register(NewConnection {
                    user_id: "p".into(),
                    username: "p".into(),
                    session_id: "s".into(),
                    issued_at: 0,
                    remote_addr: "127.0.0.1:1".parse().unwrap(),
                    connected_at: 0,
                })
                .unwrap();
            let handle = conn.handle().clone();
            let join = {
                let (r, id) = (r.clone(), id.clone());
                tokio::spawn(async move { r.join(&handle, &id).await.map(|_| ()) })
            };
            let sweep = {
                let r = r.clone();
                tokio::spawn(async move { r.sweep(crate::ids::now_ms()).await })
            };
            let outcome = join.await.unwrap();
            sweep.await.unwrap().unwrap();
            let exists = r.store.room(&id).await.unwrap().is_some();
            match outcome {
                Ok(()) => {
                    joined += 1;
                    assert!(exists, "a room with a member was removed");
                    assert_eq!(conn.handle().room(), Some(id.clone()));
                    r.leave_current(conn.handle());
                }
                Err(code) => {
                    refused += 1;
                    assert_eq!(code, ErrorCode::RoomNotFound);
                    assert!(!exists);
                    assert_eq!(conn.handle().room(), None);
                }
            }
            // The emptied run gives its lease back on its own time; the sweep must then
            // remove the room. Wait for that with a deadline, not a fixed sleep.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let running = r.run(&id).is_some();
                if !running {
                    r.sweep(crate::ids::now_ms() + 1000).await.unwrap();
                    if r.store.room(&id).await.unwrap().is_none() {
                        break;
                    }
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "room {id} never swept (its run still there: {running})"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        eprintln!("join won {joined} times, sweep won {refused} times");
        let left = r.list().await.unwrap();
        assert_eq!(left.len(), 1, "only Main Hall stays: {left:?}");
    }
}
