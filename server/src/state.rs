//! The state every request and socket shares ([`App`]): configuration, [`Auth`], rooms,
//! the origin allow-list and the login limiter. It sits below `http/`, `ws/` and
//! `auth::extract`, which read it, and below `app`, which assembles it, so that none of
//! them imports another through it.

use std::net::SocketAddr;
use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;

use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::game::Rooms;

pub type AppState = Arc<App>;

pub struct App {
    pub config: Config,
    pub auth: Arc<Auth>,
    pub rooms: Arc<Rooms>,
    /// The backplane, in a cluster (`--redis-url`).
    pub cluster: Option<Arc<Cluster>>,
    /// This node's id (`--node-id`, or generated) and when it started (ms).
    pub node_id: String,
    pub started_at: i64,
    /// Origins allowed for cookie-authenticated state changes and upgrades.
    pub origins: Vec<String>,
    pub(crate) auth_limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Refresh attempts per client address: a refresh needs no account, and each one
    /// that looks like a token costs a database write.
    pub(crate) refresh_limiter: Option<DefaultKeyedRateLimiter<std::net::IpAddr>>,
    /// One clock for every per-socket rate limiter: creating a clock calibrates it
    /// (cpuid and timing), far too slow to do per connection.
    pub clock: governor::clock::DefaultClock,
}

impl App {
    /// Login and register attempts are limited per client address and per username;
    /// in a cluster, across every node (this node's own limiter steps in while the
    /// backplane is out of reach).
    pub async fn check_auth_rate(&self, addr: SocketAddr, username: &str) -> Result<()> {
        for key in rate_keys(addr.ip(), username) {
            if let (Some(cluster), Some(_)) = (&self.cluster, &self.auth_limiter) {
                let quota = self.config.auth_rate_limit;
                match crate::auth::peers::Peers::check_rate(&**cluster, &key, quota).await {
                    Some(Ok(())) => continue,
                    Some(Err(retry_after)) => return Err(Error::RateLimited { retry_after }),
                    None => {}
                }
            }
            check_key(&self.auth_limiter, &key)?;
        }
        Ok(())
    }

    /// Refresh attempts are limited per client address.
    pub fn check_refresh_rate(&self, addr: SocketAddr) -> Result<()> {
        check_key(&self.refresh_limiter, &addr.ip())
    }
}

/// Charge one attempt to `key` (no limiter: no limit); `rate_limited` with the wait.
fn check_key<K: std::hash::Hash + Eq + Clone>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<()> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
        Error::RateLimited {
            retry_after: wait.as_secs().max(1),
        }
    })
}

/// The auth limiter's keys for an attempt. Only a syntactically valid username gets a key
/// of its own: an attacker-chosen string (16 KiB, or a new one each time) would otherwise
/// become a map entry. An invalid one is charged to the address alone, and the request
/// is refused anyway.
pub fn rate_keys(ip: std::net::IpAddr, username: &str) -> Vec<String> {
    let mut keys = vec![format!("ip:{ip}")];
    if arena_protocol::http::valid_username(username) {
        keys.push(format!("user:{}", username.to_ascii_lowercase()));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::rate_keys;

    #[test]
    fn only_valid_usernames_get_a_rate_key_of_their_own() {
        let ip = "192.0.2.7".parse().unwrap();
        assert_eq!(
            rate_keys(ip, "Alice_1"),
            vec!["ip:192.0.2.7", "user:alice_1"]
        );
        for bad in [
            "x".repeat(16 * 1024),
            "al".into(),
            "a b c".into(),
            "é-user".into(),
            String::new(),
        ] {
            let keys = rate_keys(ip, &bad);
            // Not assert_eq: a failure would print the 16 KiB key.
            assert!(
                keys == ["ip:192.0.2.7"],
                "{bad:.20}: {} keys, the longest {} bytes",
                keys.len(),
                keys.iter().map(String::len).max().unwrap_or(0)
            );
        }
    }
}
