//! The rooms' side of the backplane: [`RoomLink`] over Redis.
//!
//! - **Leases.** One hash per room (`node`, `epoch`, `players`) with a `PEXPIRE` of
//!   `--room-lease-ms`, taken, renewed and given back by Lua scripts that check the
//!   holder and epoch, so only the holder can extend or drop it. The epoch is Redis's
//!   clock in µs at the claim (and above every earlier one): it grows with every new
//!   holder, even across a Redis restart that lost the counters.
//! - **Leases across a Redis that restarts or is replaced.** What a restarted Redis
//!   comes back with is its last RDB snapshot, its AOF, or nothing; a promoted replica
//!   has whatever had reached it. Any of them may lack a lease whose holder still ticks.
//!   So each Redis *instance* has a lease era: when it began keeping leases, on its own
//!   clock, stored with the instance's identity (`INFO`'s `run_id`, new at every process
//!   start, and `master_replid`, new when a replica is promoted). A claim is granted
//!   only when the room's lease is absent *and* a whole lease has passed since the era
//!   of the instance answering; an era key carried over from another instance (restored
//!   from a snapshot or AOF, replicated) names that instance, not this one, and a new
//!   era starts at once. Why ownership then never overlaps:
//!   - an owner ticks only until the time it *sent* its last claim or renewal that was
//!     answered "held", plus 90% of a lease, on its monotonic clock (`game::link`);
//!   - on one instance, that renewal ran no earlier than it was sent and the lease key
//!     outlives it by a whole lease, so nobody else is granted the room before the
//!     owner has stopped (the 10% absorbs the two clocks' rates);
//!   - on an instance other than the one that ran the owner's last renewal, that renewal
//!     ran before this instance accepted writes (the old one died, or was demoted,
//!     first), so before its era began (the era is written by a script, a write); a
//!     claim is granted a lease after the era, when the owner has stopped;
//!   - a lease this instance restored (AOF, a recent snapshot, a replica) names its
//!     holder and epoch and expires at the time the old instance set: the holder's
//!     renewals go on, and nobody else gets the room while it lasts. A restored lease of
//!     a holder that has since given the room up only keeps the room unclaimed until it
//!     expires: nobody ticks, the safe side.
//!
//!   The cost: for a lease after Redis restarts or fails over, no room can be taken on
//!   (joins wait, up to a lease; owners whose lease was lost stop and their members
//!   wait with them). Not covered: two Redis primaries accepting writes at the same time
//!   (a failover that did not fence the old primary: use `min-replicas-to-write`), and
//!   Redis's own clock stepping (its key expiry and `TIME` follow the wall clock). The
//!   members' nodes fence what gets through anyway: frames carry their run's epoch, and
//!   a node follows only the newest epoch it has seen for a room (`game::rooms`).
//! - **Relays.** The owner publishes each frame once on the room's channel; every node
//!   with members in the room subscribes to it (and only those: a node does not read the
//!   traffic of rooms it has nobody in). The payload is a JSON header line, then the
//!   frame's text exactly as members get it.
//! - **Messages** between nodes (a member's join, input, chat and leave to the owner; the
//!   owner's answers and evictions back) go to the receiving node's own channel.
//! - **Order.** Everything this node sends about rooms goes through one queue and one
//!   task, which writes what has piled up in one pipelined round trip: a member's node
//!   sees an owner's frames in the order the owner sent them.
//!
//! Room traffic has its own subscription connection, apart from the revocations', so a
//! burst of game frames never delays a revocation or its acknowledgement.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use redis::Script;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use crate::error::{Error, Result};
use crate::frame::TextFrame;
use crate::game::link::{
    Claim, Holder, LinkDown, RelayHeader, Renewal, RoomLink, RoomMsg, RoomReply,
};
use crate::game::Rooms;

/// How many outgoing room messages may wait for the writer; past it they are dropped
/// (game traffic; the members' confirmations repair lost membership changes).
const OUTGOING_QUEUE: usize = 65_536;

/// Most messages written in one round trip.
const MAX_PIPELINE: usize = 512;

/// Lua, shared by [`CLAIM`] and [`START_ERA`]: `era_start(key, now)` is when the Redis
/// instance that answers now began keeping leases, on its own clock (µs). The era key
/// holds `<since> <run_id> <master_replid>`: an era written by another instance (the
/// same key restored from an RDB snapshot or replayed from an AOF by a restarted
/// process, copied to a replica that was then promoted) is not this one's, and a new era
/// starts now. A bare number (the form of earlier versions) is not this one's either.
/// Without both ids in `INFO` (or without `INFO`: renamed away), the script fails: rooms
/// are refused rather than risked.
const ERA: &str = r#"
local function info(section)
  local text = redis.pcall('INFO', section)
  if type(text) ~= 'string' then return '' end
  return text
end
local function instance()
  local run_id = string.match(info('server'), 'run_id:(%x+)')
  local replid = string.match(info('replication'), 'master_replid:(%x+)')
  if not run_id or not replid then
    return nil
  end
  return run_id .. ' ' .. replid
end
local function era_start(key, now)
  local me = instance()
  if not me then
    return redis.error_reply('arena: INFO shows no run_id or master_replid')
  end
  local era = redis.call('GET', key)
  if era then
    local since, of = string.match(era, '^(%d+) (.+)$')
    if since and of == me then
      return tonumber(since)
    end
  end
  redis.call('SET', key, string.format('%.0f', now) .. ' ' .. me)
  return now
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"#;

/// The error [`ERA`] fails with when `INFO` lacks an id.
const ERA_REFUSED: &str = "INFO shows no run_id or master_replid";

/// KEYS[1]: the lease hash, KEYS[2]: the room's last epoch, KEYS[3]: the lease era;
/// ARGV[1]: this node, ARGV[2]: the lease (ms). Returns {1, node, epoch} when taken,
/// {0, holder, epoch} when held, {2, '', '0'} while this instance's era is younger than
/// a lease (it may have lost leases whose holders still tick: see the module doc).
const CLAIM: &str = r#"
local held = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if held[1] then return {0, held[1], held[2]} end
local now = clock()
local era = era_start(KEYS[3], now)
if type(era) == 'table' then return era end
if now - era < tonumber(ARGV[2]) * 1000 then return {2, '', '0'} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = now
if epoch <= last then epoch = last + 1 end
local text = string.format('%.0f', epoch)
redis.call('SET', KEYS[2], text, 'PX', 86400000)
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'epoch', text, 'players', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, ARGV[1], text}
"#;

/// KEYS[1]: the lease era. Starts this instance's era unless it has one (see [`ERA`]), so
/// a fresh deployment's first claims wait a lease from its first node's start at most.
const START_ERA: &str = r#"
local era = era_start(KEYS[1], clock())
if type(era) == 'table' then return era end
return 1
"#;

/// KEYS[1]: the lease hash; ARGV: node, epoch, lease (ms), players. 1 if renewed.
const RENEW: &str = r#"
local held = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[1], 'players', ARGV[4])
return 1
"#;

/// KEYS[1]: the lease hash; ARGV: node, epoch.
const RELEASE: &str = r#"
local held = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if held[1] == ARGV[1] and held[2] == ARGV[2] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"#;

/// What travels on a node's own room channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Envelope {
    Msg {
        from: String,
        /// 0: no answer wanted.
        request: u64,
        msg: RoomMsg,
    },
    Reply {
        request: u64,
        reply: RoomReply,
    },
}

/// The room traffic of this node, set up by [`Cluster::attach_rooms`].
pub(super) struct RoomTraffic {
    rooms: Weak<Rooms>,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    /// Room channels this node reads (re-subscribed after a reconnect).
    watched: Arc<Mutex<HashSet<String>>>,
    sink: Mutex<Option<PubSubSink>>,
    pending: dashmap::DashMap<u64, oneshot::Sender<RoomReply>>,
    scripts: Scripts,
}

struct Scripts {
    claim: Script,
    renew: Script,
    release: Script,
}

impl Cluster {
    /// Start carrying room traffic for `rooms`: the subscription and the writer.
    pub async fn attach_rooms(self: &Arc<Self>, rooms: &Arc<Rooms>) -> Result<()> {
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
        let traffic = RoomTraffic {
            rooms: Arc::downgrade(rooms),
            outgoing,
            watched: Arc::new(Mutex::new(HashSet::new())),
            sink: Mutex::new(None),
            pending: dashmap::DashMap::new(),
            scripts: Scripts {
                claim: Script::new(&format!("{ERA}{CLAIM}")),
                renew: Script::new(RENEW),
                release: Script::new(RELEASE),
            },
        };
        if self.room_traffic.set(traffic).is_err() {
            return Err(Error::internal("room traffic attached twice"));
        }
        tokio::spawn(self.clone().run_room_writer(queue));
        tokio::spawn(self.clone().run_room_subscriber());
        // Serve once the subscription is up: a join's answer must find its way back.
        let up = async {
            while self
                .traffic()
                .sink
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), up)
            .await
            .map_err(|_| Error::internal("--redis-url: cannot subscribe to room traffic"))?;
        // A fresh deployment's first claims need not wait out a lease (see `CLAIM`).
        let mut conn = self.conn();
        let start_era = Script::new(&format!("{ERA}{START_ERA}"));
        let invocation = start_era.key(self.names.room_lease_era());
        let started = invocation.invoke_async::<i64>(&mut conn);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), started).await {
            tracing::debug!(error = %e, "backplane: cannot start the lease era");
        }
        Ok(())
    }

    fn traffic(&self) -> &RoomTraffic {
        // Set by `attach_rooms` before any room uses the link (app start-up).
        self.room_traffic
            .get()
            .expect("room traffic attached at start-up")
    }

    fn room_traffic_watched(&self) -> Arc<Mutex<HashSet<String>>> {
        self.traffic().watched.clone()
    }

    fn inbox(&self) -> String {
        self.names.room_inbox(&self.config.node_id)
    }

    fn enqueue(&self, channel: String, payload: Vec<u8>) {
        if self
            .traffic()
            .outgoing
            .try_send((channel, payload))
            .is_err()
        {
            crate::telemetry::room_message_dropped();
        }
    }

    fn envelope_to(&self, node: &str, envelope: &Envelope) {
        if let Ok(payload) = serde_json::to_vec(envelope) {
            self.enqueue(self.names.room_inbox(node), payload);
        }
    }

    async fn run_room_writer(self: Arc<Self>, mut queue: mpsc::Receiver<(String, Vec<u8>)>) {
        let mut batch = Vec::with_capacity(MAX_PIPELINE);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                n = queue.recv_many(&mut batch, MAX_PIPELINE) => if n == 0 { return },
            }
            let mut pipe = redis::pipe();
            for (channel, payload) in batch.drain(..) {
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
            let mut conn = self.conn();
            match tokio::time::timeout(self.config.ack_timeout, pipe.query_async::<()>(&mut conn))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "backplane: room traffic not sent"),
                Err(_) => tracing::debug!("backplane: room traffic timed out"),
            }
        }
    }

    async fn run_room_subscriber(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            match self.open_room_subscription().await {
                Ok(stream) => {
                    backoff = Duration::from_millis(50);
                    self.read_room_traffic(stream).await;
                    *self
                        .traffic()
                        .sink
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = None;
                    tracing::warn!("backplane: room subscription lost; reconnecting");
                }
                Err(e) => tracing::debug!(error = %e, "backplane: cannot subscribe to rooms"),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn open_room_subscription(
        &self,
    ) -> std::result::Result<redis::aio::PubSubStream, String> {
        let open = async {
            let pubsub = self
                .client
                .get_async_pubsub()
                .await
                .map_err(|e| e.to_string())?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(self.inbox())
                .await
                .map_err(|e| e.to_string())?;
            // The sink first, then the rooms watched by then: a `watch` from now on
            // subscribes through the sink itself, so none falls between the two.
            *self
                .traffic()
                .sink
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(sink.clone());
            let channels: Vec<String> = self
                .traffic()
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|room| self.names.room_relays(room))
                .collect();
            if !channels.is_empty() {
                sink.subscribe(channels).await.map_err(|e| e.to_string())?;
            }
            Ok(stream)
        };
        tokio::time::timeout(Duration::from_secs(2), open)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    async fn read_room_traffic(self: &Arc<Self>, mut stream: redis::aio::PubSubStream) {
        let inbox = self.inbox();
        let relay_prefix = self.names.room_relays("");
        loop {
            let message = tokio::select! {
                _ = self.stop.cancelled() => return,
                m = stream.next() => match m {
                    Some(m) => m,
                    None => return,
                },
            };
            let Some(rooms) = self.traffic().rooms.upgrade() else {
                return;
            };
            let channel = message.get_channel_name();
            let payload = message.get_payload_bytes();
            if channel == inbox {
                match serde_json::from_slice::<Envelope>(payload) {
                    Ok(Envelope::Msg { from, request, msg }) => {
                        let reply = rooms.on_message(&from, msg);
                        if let (Some(reply), true) = (reply, request != 0) {
                            self.envelope_to(&from, &Envelope::Reply { request, reply });
                        }
                    }
                    Ok(Envelope::Reply { request, reply }) => {
                        if let Some((_, waiter)) = self.traffic().pending.remove(&request) {
                            let _ = waiter.send(reply);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "backplane: a room message that does not parse")
                    }
                }
            } else if let Some(room) = channel.strip_prefix(relay_prefix.as_str()) {
                if let Some((header, frame)) = parse_relay(payload) {
                    rooms.on_relay(room, header, frame);
                }
            }
        }
    }
}

fn parse_relay(payload: &[u8]) -> Option<(RelayHeader, TextFrame)> {
    let split = payload.iter().position(|&b| b == b'\n')?;
    let header = serde_json::from_slice(&payload[..split]).ok()?;
    let text = std::str::from_utf8(&payload[split + 1..]).ok()?;
    Some((header, TextFrame::from(text)))
}

fn relay_payload(header: &RelayHeader, frame: &TextFrame) -> Option<Vec<u8>> {
    let mut payload = serde_json::to_vec(header).ok()?;
    payload.push(b'\n');
    payload.extend_from_slice(frame.as_str().as_bytes());
    Some(payload)
}

impl RoomLink for Cluster {
    fn node_id(&self) -> &str {
        &self.config.node_id
    }

    fn lease(&self) -> Duration {
        self.config.room_lease
    }

    fn clustered(&self) -> bool {
        true
    }

    fn claim<'a>(&'a self, room: &'a str) -> BoxFuture<'a, std::result::Result<Claim, LinkDown>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let answer = tokio::time::timeout(
                self.config.ack_timeout.max(Duration::from_millis(250)),
                self.traffic()
                    .scripts
                    .claim
                    .key(self.names.room_lease(room))
                    .key(self.names.room_epoch(room))
                    .key(self.names.room_lease_era())
                    .arg(&self.config.node_id)
                    .arg(self.config.room_lease.as_millis() as u64)
                    .invoke_async::<(i64, String, String)>(&mut conn),
            )
            .await;
            let (taken, node, epoch) = match answer {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    if e.to_string().contains(ERA_REFUSED) {
                        // Not a passing outage: this Redis cannot say which instance it
                        // is, so no room can be claimed until it can.
                        tracing::error!(error = %e, "backplane: rooms cannot be claimed");
                    } else {
                        tracing::debug!(error = %e, "backplane: cannot claim a room");
                    }
                    return Err(LinkDown);
                }
                Err(_) => return Err(LinkDown),
            };
            let epoch = epoch.parse().map_err(|_| LinkDown)?;
            Ok(match taken {
                1 => Claim::Acquired { epoch },
                2 => Claim::Wait,
                _ => Claim::HeldBy { node, epoch },
            })
        })
    }

    fn renew(
        &self,
        leases: Vec<Renewal>,
    ) -> BoxFuture<'_, std::result::Result<Vec<bool>, LinkDown>> {
        Box::pin(async move {
            // A pipelined script runs by EVALSHA only, which fails with NOSCRIPT until
            // the script is loaded (on a fresh or restarted Redis): load it first in the
            // same round trip. Cheap: Redis keeps one copy by its hash.
            let mut pipe = redis::pipe();
            pipe.load_script(&self.traffic().scripts.renew).ignore();
            for lease in &leases {
                pipe.invoke_script(
                    self.traffic()
                        .scripts
                        .renew
                        .key(self.names.room_lease(&lease.room))
                        .arg(&self.config.node_id)
                        .arg(lease.epoch.to_string())
                        .arg(self.config.room_lease.as_millis() as u64)
                        .arg(lease.players),
                );
            }
            let mut conn = self.conn();
            let answer = tokio::time::timeout(
                self.config.room_lease / 3,
                pipe.query_async::<Vec<i64>>(&mut conn),
            )
            .await;
            match answer {
                Ok(Ok(held)) if held.len() == leases.len() => {
                    Ok(held.into_iter().map(|h| h == 1).collect())
                }
                Ok(Ok(_)) => Err(LinkDown),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "backplane: cannot renew room leases");
                    Err(LinkDown)
                }
                Err(_) => Err(LinkDown),
            }
        })
    }

    fn release<'a>(&'a self, room: &'a str, epoch: u64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn();
            let _ = tokio::time::timeout(
                self.config.ack_timeout.max(Duration::from_millis(250)),
                self.traffic()
                    .scripts
                    .release
                    .key(self.names.room_lease(room))
                    .arg(&self.config.node_id)
                    .arg(epoch.to_string())
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
        })
    }

    fn holders<'a>(
        &'a self,
        rooms: &'a [String],
    ) -> BoxFuture<'a, std::result::Result<Vec<Option<Holder>>, LinkDown>> {
        Box::pin(async move {
            if rooms.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for room in rooms {
                pipe.cmd("HMGET")
                    .arg(self.names.room_lease(room))
                    .arg("node")
                    .arg("epoch")
                    .arg("players");
            }
            let mut conn = self.conn();
            type Row = (Option<String>, Option<String>, Option<String>);
            let rows = tokio::time::timeout(
                self.config.ack_timeout.max(Duration::from_millis(250)),
                pipe.query_async::<Vec<Row>>(&mut conn),
            )
            .await
            .map_err(|_| LinkDown)?
            .map_err(|_| LinkDown)?;
            Ok(rows
                .into_iter()
                .map(|(node, epoch, players)| {
                    Some(Holder {
                        node: node?,
                        epoch: epoch?.parse().ok()?,
                        players: players.and_then(|p| p.parse().ok()).unwrap_or(0),
                    })
                })
                .collect())
        })
    }

    fn relay(&self, room: &str, header: &RelayHeader, frame: &TextFrame) {
        if let Some(payload) = relay_payload(header, frame) {
            crate::telemetry::room_relayed();
            self.enqueue(self.names.room_relays(room), payload);
        }
    }

    fn send(&self, node: &str, msg: RoomMsg) {
        let envelope = Envelope::Msg {
            from: self.config.node_id.clone(),
            request: 0,
            msg,
        };
        self.envelope_to(node, &envelope);
    }

    fn request<'a>(&'a self, node: &'a str, msg: RoomMsg) -> BoxFuture<'a, Option<RoomReply>> {
        Box::pin(async move {
            let request = self.next_request.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let traffic = self.traffic();
            traffic.pending.insert(request, tx);
            let envelope = Envelope::Msg {
                from: self.config.node_id.clone(),
                request,
                msg,
            };
            self.envelope_to(node, &envelope);
            let wait = (self.config.ack_timeout * 2).max(Duration::from_millis(500));
            let reply = tokio::time::timeout(wait, rx)
                .await
                .ok()
                .and_then(|r| r.ok());
            traffic.pending.remove(&request);
            reply
        })
    }

    fn watch<'a>(&'a self, room: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let traffic = self.traffic();
            traffic
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(room.to_string());
            let sink = traffic
                .sink
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            // Without a subscription now, the reconnect subscribes it with the rest.
            // Subscribing again is harmless in Redis, and it repairs one that timed out.
            if let Some(mut sink) = sink {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    sink.subscribe(self.names.room_relays(room)),
                )
                .await;
            }
        })
    }

    fn unwatch(&self, room: &str) {
        let traffic = self.traffic();
        traffic
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(room);
        if let Some(mut sink) = traffic
            .sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            let channel = self.names.room_relays(room);
            let (room, watched) = (room.to_string(), self.room_traffic_watched());
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), sink.unsubscribe(&channel)).await;
                // Watched again meanwhile: that subscription may have come first.
                if watched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&room)
                {
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.subscribe(&channel))
                        .await;
                }
            });
        }
    }

    fn check_rate<'a>(
        &'a self,
        key: &'a str,
        per_minute: u32,
    ) -> BoxFuture<'a, Option<std::result::Result<(), u64>>> {
        crate::auth::peers::Peers::check_rate(self, key, per_minute)
    }
}
