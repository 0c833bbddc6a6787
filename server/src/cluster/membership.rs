//! Membership: each node announces itself every heartbeat, with an expiry of three
//! heartbeats, in one sorted set (node → expiry time) that every node reads. A node
//! that stops (SIGKILL, a cut link) is no longer listed once its expiry passes, so no
//! revocation waits for it after that; until then a revocation waits for it at most
//! the ack timeout.
//!
//! The same round trip keeps the node's share of the deployment-wide socket count
//! alive (it expires with the node) and sends the node its ping (see `subscriber`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::wire::{self, Reply, ReplyBody};
use super::Cluster;
use crate::error::{Error, Result};
use crate::ids;

/// Announce a member and list the live ones, on Redis's clock (so that nodes whose
/// clocks disagree still agree on who is live). KEYS[1]: the membership set; ARGV[1]:
/// this node (empty: only list); ARGV[2]: its expiry from now, in ms.
pub(super) const ANNOUNCE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"#;

/// The live members, on Redis's clock (for a pipeline).
pub(super) fn list_live(pipe: &mut redis::Pipeline, nodes: &str) {
    pipe.cmd("EVAL")
        .arg(ANNOUNCE)
        .arg(1)
        .arg(nodes)
        .arg("")
        .arg(0);
}

/// Heartbeats that fail in a row before the command connection is replaced.
const SILENT_BEATS: u32 = 2;

/// A full rewrite of this node's socket counts at least this often, whatever else:
/// counts that drifted while Redis was out of reach heal within it.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Pings in flight that still count when they come back (a ping comes back within a
/// heartbeat while the subscription is alive; older ones only say less).
const PINGS_REMEMBERED: usize = 8;

impl Cluster {
    pub(super) fn expiry_ms(&self) -> i64 {
        3 * self.config.heartbeat.as_millis() as i64
    }

    /// First announcement: this node's socket counts start empty (a previous
    /// incarnation under the same id may have left some).
    pub(super) async fn join(&self) -> Result<()> {
        self.wait_for_id().await?;
        self.resync_sockets()
            .await
            .map_err(|e| Error::internal(format!("--redis-url: {e}")))?;
        self.heartbeat()
            .await
            .map(|_| ())
            .map_err(|e| Error::internal(format!("--redis-url: {e}")))
    }

    /// A node id belongs to one live process. An announcement under it means either a
    /// previous incarnation that died (it expires within three heartbeats: wait for
    /// that) or another process using the same id (it keeps announcing: refuse to start,
    /// rather than have two nodes counted as one and share one set of socket counts).
    async fn wait_for_id(&self) -> Result<()> {
        let key = self.names.node_info(&self.config.node_id);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(2 * self.expiry_ms() as u64)
            + Duration::from_millis(500);
        loop {
            let mut conn = self.conn();
            let held: Option<String> = tokio::time::timeout(
                Duration::from_secs(2),
                redis::cmd("GET").arg(&key).query_async(&mut conn),
            )
            .await
            .map_err(|_| Error::internal("--redis-url: Redis did not answer"))?
            .map_err(|e| Error::internal(format!("--redis-url: {e}")))?;
            if held.is_none() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::internal(format!(
                    "--node-id {}: another live node announces itself under this id; \
                     give each node its own",
                    self.config.node_id
                )));
            }
            tokio::time::sleep(self.config.heartbeat.min(Duration::from_millis(200))).await;
        }
    }

    pub(super) async fn run_heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.config.heartbeat);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_resync = tokio::time::Instant::now();
        let mut was_up = true;
        let mut failed_in_a_row = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let up = match self.heartbeat().await {
                Ok(lost) => {
                    failed_in_a_row = 0;
                    if lost || !was_up || last_resync.elapsed() >= RESYNC_EVERY {
                        last_resync = tokio::time::Instant::now();
                        if let Err(e) = self.resync_sockets().await {
                            tracing::warn!(error = %e, "backplane: socket counts not rewritten");
                        }
                    }
                    true
                }
                Err(e) => {
                    if was_up {
                        tracing::warn!(error = %e, "backplane: heartbeat failed");
                    }
                    failed_in_a_row += 1;
                    if failed_in_a_row % SILENT_BEATS == 0 {
                        self.reconnect().await;
                    }
                    false
                }
            };
            if up != was_up {
                tracing::info!(
                    up,
                    "backplane {}",
                    if up { "reached again" } else { "out of reach" }
                );
            }
            was_up = up;
            crate::telemetry::backplane_up(up && self.backplane_ok());
        }
    }

    /// Announce this node, drop expired members, refresh the live list, keep the socket
    /// counts alive and send the ping. Returns whether the socket counts were lost
    /// (Redis restarted) and must be written again.
    async fn heartbeat(&self) -> std::result::Result<bool, String> {
        let ttl = self.expiry_ms();
        let me = &self.config.node_id;
        let info = serde_json::to_string(&self.info()).map_err(|e| e.to_string())?;
        let nonce = self.next_ping_nonce();
        let ping = self
            .seal
            .seal(
                &self.names.replies_to(me),
                &Reply {
                    node: me.clone(),
                    request: 0,
                    body: ReplyBody::Ping { nonce },
                },
            )
            .ok_or("cannot encode the ping")?;
        let sockets = self.names.node_sockets(me);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.names.node_info(me))
            .arg(info)
            .arg("PX")
            .arg(ttl)
            .ignore();
        pipe.cmd("HSETNX")
            .arg(&sockets)
            .arg(wire::SOCKETS_MARKER)
            .arg(1);
        pipe.cmd("PEXPIRE").arg(&sockets).arg(ttl).ignore();
        pipe.cmd("PUBLISH")
            .arg(self.names.replies_to(me))
            .arg(ping)
            .ignore();
        pipe.cmd("EVAL")
            .arg(ANNOUNCE)
            .arg(1)
            .arg(self.names.nodes())
            .arg(me)
            .arg(ttl);
        let mut conn = self.conn();
        let (created, live): (i64, Vec<String>) = tokio::time::timeout(
            self.config.heartbeat.max(Duration::from_millis(200)),
            pipe.query_async(&mut conn),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let lost = created == 1;
        if lost {
            self.membership_lost_at
                .store(ids::mono_ms(), std::sync::atomic::Ordering::Release);
        }
        if self.membership_recovering() && !self.peers_cached().is_empty() {
            // After Redis lost its data the others reappear one heartbeat at a time
            // (later, if their connection must be made again): until then the
            // membership known before stands, and what reappears is added to it.
            self.saw_members(&live);
        } else {
            let peers: Vec<String> = live.into_iter().filter(|n| n != me).collect();
            *self.live_peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
        }
        Ok(lost)
    }

    /// Whether Redis lost the membership lately (within two membership expiries): the
    /// members known before still count as live until they had time to come back.
    pub(super) fn membership_recovering(&self) -> bool {
        ids::mono_ms()
            - self
                .membership_lost_at
                .load(std::sync::atomic::Ordering::Acquire)
            <= 2 * self.expiry_ms()
    }

    /// A fresh ping nonce, remembered among the last few sent.
    fn next_ping_nonce(&self) -> u64 {
        let nonce = u64::from_le_bytes(ids::random_bytes(8).try_into().unwrap_or([0; 8]));
        let mut sent = self.ping_nonces.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() == PINGS_REMEMBERED {
            sent.pop_front();
        }
        sent.push_back(nonce);
        nonce
    }

    /// Whether `nonce` is a ping this node sent and has not seen back yet.
    pub(super) fn ping_came_back(&self, nonce: u64) -> bool {
        let mut sent = self.ping_nonces.lock().unwrap_or_else(|p| p.into_inner());
        match sent.iter().position(|n| *n == nonce) {
            Some(i) => {
                sent.remove(i);
                true
            }
            None => false,
        }
    }

    /// Write this node's socket counts again from the registry, whole.
    async fn resync_sockets(&self) -> std::result::Result<(), String> {
        let key = self.names.node_sockets(&self.config.node_id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&key).ignore();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(wire::SOCKETS_MARKER)
            .arg(1)
            .ignore();
        for (user, n) in self.registry.counts_by_user() {
            pipe.cmd("HSET").arg(&key).arg(user).arg(n).ignore();
        }
        pipe.cmd("PEXPIRE").arg(&key).arg(self.expiry_ms()).ignore();
        let mut conn = self.conn();
        tokio::time::timeout(Duration::from_secs(2), pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
