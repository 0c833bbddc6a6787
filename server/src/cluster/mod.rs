//! The backplane between the nodes of a cluster (`--redis-url`): the fast path that
//! carries every revocation to every node and brings back each node's confirmation.
//!
//! The truth every node shares is the database: a revocation is written to its
//! revocation log in the same transaction as the change (the outbox), so nothing here
//! can lose one. What this module adds on top of that log:
//! - **Publish and acknowledge.** The node that made a change publishes the logged event
//!   and waits, at most `--cluster-ack-timeout-ms`, until every other live node has
//!   applied it (recorded it, closed its sockets) and said so ([`Cluster::deliver`]).
//!   The answer counts them.
//! - **Membership.** Every node announces itself each `--cluster-heartbeat-ms` with an
//!   expiry of three heartbeats (`membership`): a node that dies stops being waited
//!   for within that bound, and the wait itself never exceeds the ack timeout.
//! - **Knowing it is current.** Each heartbeat also sends the node a ping through its
//!   own subscription; its return proves the subscription alive and everything
//!   published before it applied (`subscriber`). A subscription that drops is
//!   reconnected, and the node reads the log for what it missed before it counts itself
//!   current again; an id gap in what arrives makes it read the log at once.
//! - **Deployment-wide limits** ([`limits`]): sockets per user and login attempts, as
//!   Redis counters that a dead node's share expires out of.
//! - **Rooms** (`rooms`): each room's lease, and the frames and messages between a
//!   room's owner and the nodes of its other members.
//! - **Questions for every node**: their sockets, for `GET /admin/connections` and
//!   `GET /auth/sessions`.
//!
//! Redis holds nothing that matters after a restart of it: membership, socket counts
//! and rate-limit state are rebuilt from the nodes within a heartbeat, and revocations
//! published while it was away arrive through the log (every node reads it each
//! `--revocation-poll-ms`, and at once after reconnecting).
//!
//! Layering: this module applies what it receives through [`Auth`] and implements
//! [`Peers`], which is all `auth` knows of it; the registry and the HTTP handlers do
//! not know Redis exists.

pub mod limits;
mod membership;
mod rooms;
pub mod seal;
mod subscriber;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arena_protocol::http::{Connection, NodeInfo};
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::peers::{OverQuota, PeerAcks, Peers, SocketLease};
use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::events::LoggedEvent;
use crate::ids;
use crate::registry::Registry;
use wire::{Ask, Published, Query, Reply, ReplyBody};

/// A node id: what `--node-id` accepts (it becomes part of Redis keys and channels).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// How the backplane is configured.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub node_id: String,
    pub ack_timeout: Duration,
    pub heartbeat: Duration,
    /// How long this node may go without confirming it is current (0: no limit); what
    /// it reports as `current` in its announcements.
    pub stale_after_ms: i64,
    /// How often it reads the revocation log (`--revocation-poll-ms`).
    pub poll: Duration,
    /// How long a room's lease lasts without renewal (`--room-lease-ms`).
    pub room_lease: Duration,
}

pub struct Cluster {
    config: ClusterConfig,
    started_at: i64,
    client: redis::Client,
    /// Commands (publish, heartbeat, scripts): one multiplexed connection that
    /// reconnects by itself when it breaks, and is replaced whole when it goes silent
    /// (see `membership`). Subscriptions need a connection of their own.
    conn: Mutex<ConnectionManager>,
    manager_config: redis::aio::ConnectionManagerConfig,
    auth: Weak<Auth>,
    registry: Arc<Registry>,
    /// Requests of this node waiting for replies, by request number.
    pending: dashmap::DashMap<u64, mpsc::UnboundedSender<Reply>>,
    next_request: AtomicU64,
    /// The other live nodes as of the last heartbeat (used when Redis cannot be asked).
    live_peers: Mutex<Vec<String>>,
    /// When a heartbeat last found this node's membership gone from Redis (it lost its
    /// data), on the monotonic clock.
    membership_lost_at: AtomicI64,
    /// The subscription is established and its pings come back.
    subscribed: AtomicBool,
    /// When this node's last ping came back through its subscription (ms).
    last_ping_back: AtomicI64,
    /// Test hook (`ARENA_FAULT_DROP_PUBLISHES=N`): drop the next N publishes of
    /// revocations, as a crash between commit and publish would, to show that the log
    /// still delivers them.
    drop_publishes: AtomicU64,
    limits: limits::Scripts,
    /// The deployment's Redis key and channel names.
    names: wire::Names,
    /// Seals what this node publishes and opens what it receives (see `seal`).
    seal: seal::Seal,
    /// The nonces of this node's last pings: only a ping it sent proves its
    /// subscription alive (a replayed one is not counted).
    ping_nonces: Mutex<std::collections::VecDeque<u64>>,
    /// Stops this node's backplane tasks: at [`Cluster::leave`], after the server has
    /// drained its requests (until then it keeps applying what the others publish).
    stop: CancellationToken,
    heartbeat_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Rooms' leases and traffic (see `rooms`), once the rooms are attached.
    room_traffic: std::sync::OnceLock<rooms::RoomTraffic>,
}

impl Cluster {
    /// Connect to Redis, join the cluster and start the heartbeat and the subscription.
    /// Fails if Redis cannot be reached now: a node should not start half-joined.
    pub async fn start(config: ClusterConfig, auth: &Arc<Auth>) -> Result<Arc<Cluster>> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| Error::internal(format!("--redis-url: {e}")))?;
        // Fail fast, retry little: a command that cannot reach Redis must give up within
        // the ack timeout, not after the crate's default backoff.
        let op_timeout = config.ack_timeout.max(Duration::from_millis(100));
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(manager_config.clone()),
        )
        .await
        .map_err(|_| Error::internal("--redis-url: Redis did not answer within 5 s"))?
        .map_err(|e| Error::internal(format!("--redis-url: cannot connect to Redis: {e}")))?;
        let drop_publishes = std::env::var("ARENA_FAULT_DROP_PUBLISHES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cluster = Arc::new(Cluster {
            started_at: ids::now_ms(),
            client,
            conn: Mutex::new(conn),
            manager_config,
            auth: Arc::downgrade(auth),
            registry: auth.registry.clone(),
            pending: dashmap::DashMap::new(),
            // Random, so that a late reply to an earlier incarnation under the same node
            // id never counts for this one's requests.
            next_request: AtomicU64::new(
                u64::from_le_bytes(ids::random_bytes(8).try_into().unwrap_or([1; 8])) >> 1,
            ),
            live_peers: Mutex::new(Vec::new()),
            subscribed: AtomicBool::new(false),
            membership_lost_at: AtomicI64::new(ids::MONO_NEVER),
            last_ping_back: AtomicI64::new(ids::MONO_NEVER),
            drop_publishes: AtomicU64::new(drop_publishes),
            limits: limits::Scripts::new(),
            names: wire::Names::for_secret(&auth.keys.chain_key()),
            seal: seal::Seal::for_secret(&auth.keys.chain_key()),
            ping_nonces: Mutex::new(std::collections::VecDeque::new()),
            stop: CancellationToken::new(),
            heartbeat_task: Mutex::new(None),
            room_traffic: std::sync::OnceLock::new(),
            config,
        });
        // Subscribed before announced: once others count this node as live and wait
        // for its acknowledgements, it must be receiving their events.
        tokio::spawn(cluster.clone().run_subscriber(cluster.stop.clone()));
        let subscribed = async {
            while !cluster.subscribed.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), subscribed)
            .await
            .is_err()
        {
            cluster.stop.cancel();
            return Err(Error::internal("--redis-url: cannot subscribe within 5 s"));
        }
        // What was committed before the subscription is in the log: read it before this
        // node serves (the subscriber's own catch-up may still be queued).
        if let Err(e) = auth.catch_up().await {
            tracing::warn!(error = %e, "could not read the revocation log after subscribing");
        }
        if let Err(e) = cluster.join().await {
            cluster.stop.cancel();
            return Err(e);
        }
        let heartbeat = tokio::spawn(cluster.clone().run_heartbeat(cluster.stop.clone()));
        *cluster
            .heartbeat_task
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(heartbeat);
        tracing::info!(node = %cluster.config.node_id, "joined the cluster");
        Ok(cluster)
    }

    /// The command connection (a cheap handle onto the shared one).
    fn conn(&self) -> ConnectionManager {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace the command connection: a TCP link that died without a word leaves the
    /// manager waiting on it (timeouts are not errors that make it reconnect).
    async fn reconnect(&self) {
        let fresh = tokio::time::timeout(
            self.config.ack_timeout.max(Duration::from_millis(500)),
            self.client
                .get_connection_manager_with_config(self.manager_config.clone()),
        )
        .await;
        if let Ok(Ok(fresh)) = fresh {
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
            tracing::info!("backplane: command connection replaced");
        }
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Whether the backplane is working for this node now.
    pub fn backplane_ok(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
            && ids::mono_ms() - self.last_ping_back.load(Ordering::Acquire)
                <= 3 * self.config.heartbeat.as_millis() as i64
    }

    /// This node as it announces itself.
    fn info(&self) -> NodeInfo {
        let now = ids::now_ms();
        let auth = self.auth.upgrade();
        let current = auth.as_ref().is_some_and(|auth| {
            // Without a stale time: current if its regular log reads are keeping up.
            let window = if self.config.stale_after_ms > 0 {
                self.config.stale_after_ms
            } else {
                2 * self.config.poll.as_millis() as i64 + self.config.heartbeat.as_millis() as i64
            };
            auth.is_current(window)
        });
        NodeInfo {
            id: self.config.node_id.clone(),
            started_at: self.started_at,
            last_seen_at: now,
            sockets: self.registry.live() as u64,
            current,
            activity: auth.map_or_else(Vec::new, |auth| auth.activity.recent(now)),
        }
    }

    /// Add members seen in a read of the membership to the cached list (only the
    /// heartbeat, which reads it every period, takes members out).
    fn saw_members(&self, members: &[String]) {
        let mut cached = self.live_peers.lock().unwrap_or_else(|p| p.into_inner());
        for m in members {
            if *m != self.config.node_id && !cached.contains(m) {
                cached.push(m.clone());
            }
        }
    }

    fn peers_cached(&self) -> Vec<String> {
        self.live_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publish `message` on `channel` and collect the replies of the other live nodes
    /// until each has answered or the ack timeout passed. Returns the live peers at
    /// publication (`None`: Redis could not be reached) and the replies.
    async fn ask_everyone(
        &self,
        channel: &str,
        message: impl FnOnce(u64) -> String,
        publish: bool,
    ) -> (Option<HashSet<String>>, Vec<Reply>) {
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout;
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.insert(request, tx);
        let _forget = scopeguard(|| {
            self.pending.remove(&request);
        });
        let mut pipe = redis::pipe();
        membership::list_live(&mut pipe, self.names.nodes());
        if publish {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(message(request))
                .ignore();
        }
        let mut conn = self.conn();
        let live: Vec<String> =
            match tokio::time::timeout_at(deadline, pipe.query_async::<(Vec<String>,)>(&mut conn))
                .await
            {
                Ok(Ok((live,))) => {
                    self.saw_members(&live);
                    live
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "backplane: cannot publish");
                    return (None, Vec::new());
                }
                Err(_) => {
                    tracing::warn!("backplane: publish timed out");
                    return (None, Vec::new());
                }
            };
        // After Redis lost its data (a restart, from a snapshot or empty) the members
        // announce themselves again one heartbeat at a time: a list read in between
        // (this node missing from it, or back in it and not yet the others) would count
        // too few live nodes, and an answer saying "every live node" would be a lie.
        // Until the membership has had time to come back, the members known before count
        // too. Otherwise the list is the truth (a node that left cleanly is out of it at
        // once, and says so: `Ask::Leaving`).
        let cached = if !live.contains(&self.config.node_id) || self.membership_recovering() {
            self.peers_cached()
        } else {
            Vec::new()
        };
        let live: HashSet<String> = live
            .into_iter()
            .chain(cached)
            .filter(|n| *n != self.config.node_id)
            .collect();
        let mut waiting = live.clone();
        let mut replies = Vec::new();
        let mut answered = HashSet::new();
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(reply)) => {
                    if answered.insert(reply.node.clone()) {
                        waiting.remove(&reply.node);
                        replies.push(reply);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        (Some(live), replies)
    }

    /// Reply to `node`'s request.
    async fn reply(&self, node: &str, request: u64, body: ReplyBody) {
        let reply = Reply {
            node: self.config.node_id.clone(),
            request,
            body,
        };
        let channel = self.names.replies_to(node);
        let Some(text) = self.seal.seal(&channel, &reply) else {
            return;
        };
        let mut conn = self.conn();
        let sent = tokio::time::timeout(
            self.config.ack_timeout,
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(text)
                .query_async::<()>(&mut conn),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(to = %node, request, "backplane: reply not sent");
        }
    }

    /// Every live node as announced (this one included, first).
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes = vec![self.info()];
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        membership::list_live(&mut pipe, self.names.nodes());
        let ids: Vec<String> = match tokio::time::timeout(
            self.config.ack_timeout,
            pipe.query_async::<(Vec<String>,)>(&mut conn),
        )
        .await
        {
            Ok(Ok((ids,))) => ids,
            _ => return nodes,
        };
        self.saw_members(&ids);
        let others: Vec<String> = ids
            .into_iter()
            .filter(|n| *n != self.config.node_id)
            .collect();
        if others.is_empty() {
            return nodes;
        }
        let keys: Vec<String> = others.iter().map(|n| self.names.node_info(n)).collect();
        let infos: Vec<Option<String>> = match tokio::time::timeout(
            self.config.ack_timeout,
            redis::cmd("MGET").arg(&keys).query_async(&mut conn),
        )
        .await
        {
            Ok(Ok(infos)) => infos,
            _ => return nodes,
        };
        nodes.extend(
            infos
                .into_iter()
                .flatten()
                .filter_map(|text| serde_json::from_str::<NodeInfo>(&text).ok()),
        );
        nodes
    }

    /// Every node's sockets (those that answered within the ack timeout).
    pub async fn connections(&self) -> Vec<Connection> {
        let mut all = self.local_connections();
        let (_, replies) = self.ask(Ask::Connections).await;
        for reply in replies {
            if let ReplyBody::Connections { connections } = reply.body {
                all.extend(connections);
            }
        }
        all
    }

    fn local_connections(&self) -> Vec<Connection> {
        self.registry
            .snapshot()
            .iter()
            .map(|h| Connection {
                node: Some(self.config.node_id.clone()),
                ..h.to_wire()
            })
            .collect()
    }

    async fn ask(&self, ask: Ask) -> (Option<HashSet<String>>, Vec<Reply>) {
        let node = self.config.node_id.clone();
        self.ask_everyone(
            self.names.queries(),
            |request| {
                self.seal
                    .seal(self.names.queries(), &Query { node, request, ask })
                    .unwrap_or_default()
            },
            true,
        )
        .await
    }

    /// Answer another node's question.
    async fn answer(&self, query: Query) {
        let body = match query.ask {
            Ask::Leaving => {
                self.live_peers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|n| *n != query.node);
                return;
            }
            Ask::Connections => ReplyBody::Connections {
                connections: self.local_connections(),
            },
            Ask::SocketsOf { user_id } => ReplyBody::SocketsOf {
                sessions: self.registry.sockets_by_session(&user_id),
            },
        };
        self.reply(&query.node, query.request, body).await;
    }

    /// Leave the cluster at shutdown: the others stop counting this node at once.
    pub async fn leave(&self) {
        self.stop.cancel();
        // A heartbeat in flight must not announce this node again after it left.
        let heartbeat = self
            .heartbeat_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = heartbeat {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let me = &self.config.node_id;
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(self.names.nodes()).arg(me).ignore();
        let leaving = Query {
            node: me.clone(),
            request: 0,
            ask: Ask::Leaving,
        };
        if let Some(text) = self.seal.seal(self.names.queries(), &leaving) {
            pipe.cmd("PUBLISH")
                .arg(self.names.queries())
                .arg(text)
                .ignore();
        }
        pipe.cmd("DEL")
            .arg(self.names.node_info(me))
            .arg(self.names.node_sockets(me))
            .ignore();
        let _ =
            tokio::time::timeout(Duration::from_secs(1), pipe.query_async::<()>(&mut conn)).await;
    }
}

impl Peers for Cluster {
    fn deliver<'a>(&'a self, event: &'a LoggedEvent) -> BoxFuture<'a, PeerAcks> {
        Box::pin(async move {
            let started = Instant::now();
            let drop_it = self
                .drop_publishes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if drop_it {
                tracing::warn!(id = event.id, "test hook: revocation not published");
            }
            let node = self.config.node_id.clone();
            let (live, replies) = self
                .ask_everyone(
                    self.names.events(),
                    |request| {
                        self.seal
                            .seal(
                                self.names.events(),
                                &Published {
                                    node,
                                    request,
                                    id: event.id,
                                    tag: event.tag.clone(),
                                    origin: event.origin.clone(),
                                    event: event.event.clone(),
                                },
                            )
                            .unwrap_or_default()
                    },
                    !drop_it,
                )
                .await;
            let Some(live) = live else {
                // Redis out of reach: nobody confirmed; the others get it from the log.
                let live = self.peers_cached().len();
                telemetry_ack(started, live, event.id, 0);
                return PeerAcks {
                    acked: 0,
                    live,
                    closed: 0,
                };
            };
            let mut acks = PeerAcks {
                live: live.len(),
                ..PeerAcks::default()
            };
            for reply in replies {
                if let ReplyBody::Applied { closed } = reply.body {
                    acks.acked += 1;
                    acks.closed += closed;
                }
            }
            telemetry_ack(
                started,
                acks.live.saturating_sub(acks.acked),
                event.id,
                acks.acked,
            );
            acks
        })
    }

    fn sockets_by_session<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, HashMap<String, usize>> {
        Box::pin(async move {
            let (_, replies) = self
                .ask(Ask::SocketsOf {
                    user_id: user_id.to_string(),
                })
                .await;
            let mut all = HashMap::new();
            for reply in replies {
                if let ReplyBody::SocketsOf { sessions } = reply.body {
                    for (session, n) in sessions {
                        *all.entry(session).or_default() += n;
                    }
                }
            }
            all
        })
    }

    fn acquire_socket<'a>(
        &'a self,
        user_id: &'a str,
        max: usize,
    ) -> BoxFuture<'a, std::result::Result<Option<Box<dyn SocketLease>>, OverQuota>> {
        Box::pin(async move { self.limits.acquire_socket(self, user_id, max).await })
    }

    fn check_rate<'a>(
        &'a self,
        key: &'a str,
        per_minute: u32,
    ) -> BoxFuture<'a, Option<std::result::Result<(), u64>>> {
        Box::pin(async move { self.limits.check_rate(self, key, per_minute).await })
    }
}

fn telemetry_ack(started: Instant, missing: usize, id: i64, acked: usize) {
    let elapsed = started.elapsed();
    crate::telemetry::cluster_ack(elapsed, missing);
    tracing::debug!(
        id,
        acked,
        missing,
        ack_us = elapsed.as_micros() as u64,
        "revocation acknowledged"
    );
}

/// Run `f` when the returned value is dropped (the request is forgotten however the
/// wait ends, the future dropped included).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}
