//! The state every request and socket shares ([`App`]): configuration, [`Auth`], rooms,
//! the origin allow-list, and the register, login and refresh limits (with the known
//! devices that a login presents; see `auth::device`). It sits below `http/`, `ws/` and
//! `auth::extract`, which read it, and below `app`, which assembles it, so that none of
//! them imports another through it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;

use crate::auth::backoff::LoginBackoff;
use crate::auth::device::KnownDevice;
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::game::Rooms;
use crate::serve::AddressKey;

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
    /// Login and register attempts per client address, login attempts per (username,
    /// client address) and per known device: `--auth-rate-limit` a minute each.
    pub(crate) auth_limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Login attempts per username from every address together, for logins without a
    /// known-device token: `--login-user-rate-limit` a minute.
    pub(crate) login_user_limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Waits between failed logins per (username, client address) and per known device.
    pub(crate) login_backoff: Option<LoginBackoff>,
    /// Refresh attempts per client address: a refresh needs no account, and each one
    /// that looks like a token costs a database write.
    pub(crate) refresh_limiter: Option<DefaultKeyedRateLimiter<AddressKey>>,
    /// One clock for every per-socket rate limiter: creating a clock calibrates it
    /// (cpuid and timing), far too slow to do per connection.
    pub clock: governor::clock::DefaultClock,
}

/// Which limiter (and so which per-minute quota) a rate key is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `--auth-rate-limit`.
    Attempts,
    /// `--login-user-rate-limit`.
    UserAttempts,
}

impl App {
    /// A registration is limited per client address (IPv6: per /64). It is not charged
    /// to the username: registering a taken name guesses nothing, and charging it would
    /// let anyone spend the account owner's login attempts.
    pub async fn check_register_rate(&self, addr: SocketAddr) -> Result<()> {
        self.charge(&[(source_key(addr.ip()), Bucket::Attempts)])
            .await
    }

    /// A login is limited per client address; then, from an unknown device, per
    /// (username, client address) and per username from everywhere, or, from a known
    /// device (see [`crate::auth::device`]), per device instead. So a guesser is slowed
    /// wherever it guesses from, and cannot lock the owner out of a known device. In a
    /// cluster the counts are deployment-wide (this node's own limiters step in while
    /// the backplane is out of reach).
    ///
    /// Before any of that, a source (or device) whose last logins at this username failed
    /// must wait out its backoff ([`LoginBackoff`]); such an attempt is refused without
    /// being charged or checked.
    pub async fn check_login_rate(
        &self,
        addr: SocketAddr,
        username: &str,
        device: Option<&KnownDevice>,
    ) -> Result<()> {
        if let (Some(backoff), Some(key)) =
            (&self.login_backoff, guess_key(addr.ip(), username, device))
        {
            backoff
                .check(&key, tokio::time::Instant::now())
                .map_err(|retry_after| Error::RateLimited { retry_after })?;
        }
        self.charge(&login_rate_keys(addr.ip(), username, device))
            .await
    }

    /// Record how a login went for the backoff: a wrong password lengthens the wait of
    /// its source (or device) at that username, a success forgets it; other failures
    /// (a ban, the database, a full hashing queue) say nothing about the password.
    pub fn login_outcome<T>(
        &self,
        addr: SocketAddr,
        username: &str,
        device: Option<&KnownDevice>,
        outcome: &Result<T>,
    ) {
        let (Some(backoff), Some(key)) =
            (&self.login_backoff, guess_key(addr.ip(), username, device))
        else {
            return;
        };
        match outcome {
            Ok(_) => backoff.succeeded(&key),
            Err(e) if e.code() == arena_protocol::ErrorCode::InvalidCredentials => {
                backoff.failed(&key, tokio::time::Instant::now())
            }
            Err(_) => {}
        }
    }

    /// The device a login's `device_token` names, if it verifies for this username
    /// (see [`crate::auth::device`]); anything else is an unknown device, never an error.
    pub fn known_device(&self, username: &str, token: Option<&str>) -> Option<KnownDevice> {
        let chain_key = self.auth.keys.chain_key();
        crate::auth::device::verify(
            &chain_key,
            token?,
            username,
            crate::ids::now_ms() / 1000,
            self.device_token_ttl_secs(),
        )
    }

    /// A successful login's device token: the same device (or a new one), issued now.
    pub fn device_token(&self, username: &str, device: Option<&KnownDevice>) -> String {
        let chain_key = self.auth.keys.chain_key();
        crate::auth::device::issue(&chain_key, username, device, crate::ids::now_ms() / 1000)
    }

    fn device_token_ttl_secs(&self) -> i64 {
        i64::from(self.config.device_token_days) * 86_400
    }

    /// Refresh attempts are limited per client address (IPv6: per /64).
    pub fn check_refresh_rate(&self, addr: SocketAddr) -> Result<()> {
        check_key(&self.refresh_limiter, &AddressKey::of(addr.ip()))
    }

    /// Charge one attempt to each key, in order; the first over its quota refuses.
    async fn charge(&self, keys: &[(String, Bucket)]) -> Result<()> {
        for (key, bucket) in keys {
            let (limiter, quota) = match bucket {
                Bucket::Attempts => (&self.auth_limiter, self.config.auth_rate_limit),
                Bucket::UserAttempts => {
                    (&self.login_user_limiter, self.config.login_user_rate_limit)
                }
            };
            if limiter.is_none() {
                continue; // this limit is off
            }
            if let Some(cluster) = &self.cluster {
                match crate::auth::peers::Peers::check_rate(&**cluster, key, quota).await {
                    Some(Ok(())) => continue,
                    Some(Err(retry_after)) => return Err(Error::RateLimited { retry_after }),
                    None => {}
                }
            }
            check_key(limiter, key)?;
        }
        Ok(())
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

/// The rate key of a client address: the address, or its IPv6 /64.
fn source_key(ip: IpAddr) -> String {
    format!("ip:{}", AddressKey::of(ip))
}

/// Who is guessing at an account, for the backoff: the device, or the (username, client
/// address). `None` for a username that cannot exist (no entry for attacker strings).
fn guess_key(ip: IpAddr, username: &str, device: Option<&KnownDevice>) -> Option<String> {
    if !arena_protocol::http::valid_username(username) {
        return None;
    }
    Some(match device {
        Some(device) => format!("device:{}", device.id),
        None => format!(
            "user:{}@{}",
            username.to_ascii_lowercase(),
            AddressKey::of(ip)
        ),
    })
}

/// The keys one login attempt is charged to. Only a syntactically valid username gets
/// keys of its own: an attacker-chosen string (16 KiB, or a new one each time) would
/// otherwise become a map entry. An invalid one is charged to the address alone, and
/// the request is refused anyway. Device ids are the server's own (a verified token).
pub fn login_rate_keys(
    ip: IpAddr,
    username: &str,
    device: Option<&KnownDevice>,
) -> Vec<(String, Bucket)> {
    let mut keys = vec![(source_key(ip), Bucket::Attempts)];
    if !arena_protocol::http::valid_username(username) {
        return keys;
    }
    let name = username.to_ascii_lowercase();
    match device {
        Some(device) => keys.push((format!("device:{}", device.id), Bucket::Attempts)),
        None => {
            let source = AddressKey::of(ip);
            keys.push((format!("user:{name}@{source}"), Bucket::Attempts));
            keys.push((format!("user:{name}"), Bucket::UserAttempts));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ip: &str, username: &str, device: Option<&KnownDevice>) -> Vec<String> {
        login_rate_keys(ip.parse().unwrap(), username, device)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    #[test]
    fn only_valid_usernames_get_a_rate_key_of_their_own() {
        assert_eq!(
            keys("192.0.2.7", "Alice_1", None),
            ["ip:192.0.2.7", "user:alice_1@192.0.2.7", "user:alice_1"]
        );
        for bad in [
            "x".repeat(16 * 1024),
            "al".into(),
            "a b c".into(),
            "é-user".into(),
            String::new(),
        ] {
            let keys = keys("192.0.2.7", &bad, None);
            // Not assert_eq: a failure would print the 16 KiB key.
            assert!(
                keys == ["ip:192.0.2.7"],
                "{bad:.20}: {} keys, the longest {} bytes",
                keys.len(),
                keys.iter().map(String::len).max().unwrap_or(0)
            );
        }
    }

    #[test]
    fn every_address_of_an_ipv6_slash_64_is_one_source() {
        let one = keys("2001:db8:1:2::1", "alice", None);
        assert_eq!(
            one,
            [
                "ip:2001:db8:1:2::/64",
                "user:alice@2001:db8:1:2::/64",
                "user:alice"
            ]
        );
        assert_eq!(keys("2001:db8:1:2:ffff:ee:dd:cc", "alice", None), one);
        assert_ne!(keys("2001:db8:1:3::1", "alice", None), one);
        assert_eq!(
            keys("::ffff:192.0.2.7", "alice", None),
            keys("192.0.2.7", "alice", None)
        );
        assert_eq!(
            AddressKey::of("2001:db8:1:2::1".parse().unwrap()),
            AddressKey::of("2001:db8:1:2:aaaa::".parse().unwrap())
        );
    }

    #[test]
    fn a_known_device_is_charged_instead_of_the_username() {
        let device = KnownDevice { id: "dev1".into() };
        assert_eq!(
            keys("192.0.2.7", "Alice", Some(&device)),
            ["ip:192.0.2.7", "device:dev1"]
        );
    }
}
