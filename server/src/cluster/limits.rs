//! Limits that hold for the whole deployment, kept in Redis by small Lua scripts (a
//! script runs atomically in Redis, so two nodes admitting the same user's sockets at
//! once cannot both take the last place).
//!
//! - **Sockets per user.** Each node keeps its own counts (user → sockets) in a hash
//!   that expires with its membership; a socket is admitted if the sum over the live
//!   nodes is below the cap. A dead node's sockets stop counting when its membership
//!   expires; a Redis that lost its data gets every node's counts back at the next
//!   heartbeat.
//! - **Login and register attempts.** The same GCRA (a leaky bucket that allows a burst
//!   of the per-minute quota) as a lone node's limiter, with its state in Redis and its
//!   clock Redis's own, so nodes with skewed clocks agree.
//!
//! Both fail open when Redis is out of reach (the caller falls back to its own node's
//! limit): they are limits, not security promises, and a backplane outage should not
//! lock every player out.

use std::time::Duration;

use redis::Script;

use super::Cluster;
use crate::auth::peers::{OverQuota, SocketLease};
use crate::ids;

/// KEYS[1]: the membership set; ARGV: (unused), this node, user, cap, the key prefix
/// of node socket hashes, expiry (ms). Live means live on Redis's clock. Returns the user's sockets after admitting one,
/// or -1 at the cap. (The per-node hashes are named from the membership rather than
/// passed as KEYS: fine on a single Redis, which is what the backplane is.)
const ACQUIRE_SOCKET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local total = 0
for _, node in ipairs(live) do
  local n = redis.call('HGET', ARGV[5] .. node, ARGV[3])
  if n then total = total + tonumber(n) end
end
if total >= tonumber(ARGV[4]) then return -1 end
local mine = ARGV[5] .. ARGV[2]
redis.call('HINCRBY', mine, ARGV[3], 1)
redis.call('PEXPIRE', mine, ARGV[6])
return total + 1
"#;

/// KEYS[1]: this node's socket hash; ARGV[1]: the user.
const RELEASE_SOCKET: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"#;

/// GCRA. KEYS[1]: the key's state (its theoretical arrival time, µs); ARGV[1]: the
/// emission interval (µs, a minute / quota); ARGV[2]: the burst (the quota). Returns 0
/// if allowed, else the µs to wait.
const CHECK_RATE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

pub struct Scripts {
    acquire: Script,
    release: Script,
    rate: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            acquire: Script::new(ACQUIRE_SOCKET),
            release: Script::new(RELEASE_SOCKET),
            rate: Script::new(CHECK_RATE),
        }
    }

    pub async fn acquire_socket(
        &self,
        cluster: &Cluster,
        user_id: &str,
        max: usize,
    ) -> Result<Option<Box<dyn SocketLease>>, OverQuota> {
        let mut conn = cluster.conn();
        let counted = tokio::time::timeout(
            cluster.config.ack_timeout,
            self.acquire
                .key(cluster.names.nodes())
                .arg(ids::now_ms())
                .arg(&cluster.config.node_id)
                .arg(user_id)
                .arg(max)
                .arg(cluster.names.node_sockets(""))
                .arg(cluster.expiry_ms())
                .invoke_async::<i64>(&mut conn),
        )
        .await;
        match counted {
            Ok(Ok(-1)) => Err(OverQuota),
            Ok(Ok(_)) => Ok(Some(Box::new(Lease {
                conn,
                script: self.release.clone(),
                key: cluster.names.node_sockets(&cluster.config.node_id),
                user_id: user_id.to_string(),
            }))),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "backplane: socket not counted");
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    pub async fn check_rate(
        &self,
        cluster: &Cluster,
        key: &str,
        per_minute: u32,
    ) -> Option<Result<(), u64>> {
        let per_minute = per_minute.max(1) as u64;
        let mut conn = cluster.conn();
        let wait_us = tokio::time::timeout(
            cluster.config.ack_timeout,
            self.rate
                .key(cluster.names.rate(key))
                .arg(60_000_000 / per_minute)
                .arg(per_minute)
                .invoke_async::<i64>(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        if wait_us <= 0 {
            Some(Ok(()))
        } else {
            Some(Err((wait_us as u64).div_ceil(1_000_000).max(1)))
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}

/// One socket counted in this node's hash; dropping it takes it out again.
struct Lease {
    conn: redis::aio::ConnectionManager,
    script: Script,
    key: String,
    user_id: String,
}

impl SocketLease for Lease {}

impl Drop for Lease {
    fn drop(&mut self) {
        let (mut conn, script, key, user) = (
            self.conn.clone(),
            self.script.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.user_id),
        );
        // Dropped with a socket, inside the runtime; if Redis is out of reach the next
        // full rewrite of the counts (every heartbeat after an outage) corrects it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    script.key(key).arg(user).invoke_async::<i64>(&mut conn),
                )
                .await;
            });
        }
    }
}
