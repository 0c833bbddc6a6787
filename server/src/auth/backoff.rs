//! Exponential backoff after failed logins, per (username, client address) and per known
//! device: the rate limits bound a guesser linearly (`--auth-rate-limit` a minute, 43,200
//! a day from one address); this makes the guesses of one source at one account grow
//! exponentially apart once the first few have failed.
//!
//! After `free` failures in a row, the next attempt from that key must wait 1 s, then
//! 2 s, 4 s, … up to `max`; an attempt before that is refused (429 with `Retry-After`)
//! without checking the password and without counting as a failure. A success resets
//! the key; so does a quiet spell of twice `max` (entries older than that are pruned,
//! which also bounds the map: keys exist only for valid usernames, from sources that
//! the per-address rate limit already bounds).
//!
//! The owner is not slowed by a guesser elsewhere: the key holds the guesser's address,
//! or the device. Each node keeps its own counts (the deployment-wide bound is the rate
//! limits, counted in Redis): in a cluster of n nodes, a guesser spreading its attempts
//! gets n of these schedules, still exponential.

use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

pub struct LoginBackoff {
    failures: DashMap<String, Failures>,
    free: u32,
    max: Duration,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl LoginBackoff {
    pub fn new(free: u32, max: Duration) -> LoginBackoff {
        LoginBackoff {
            failures: DashMap::new(),
            free,
            max,
        }
    }

    /// `Err(seconds)`: `key` must wait that long before its next attempt.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let Some(failures) = self.failures.get(key).map(|f| *f) else {
            return Ok(());
        };
        let until = failures.last + self.wait_after(failures.count);
        if now >= until {
            return Ok(());
        }
        let wait = until - now;
        Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }

    /// A wrong password from `key`.
    pub fn failed(&self, key: &str, now: Instant) {
        let forget = self.forget_after();
        let mut entry = self.failures.entry(key.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) > forget {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// A successful login from `key`: its failures are forgotten.
    pub fn succeeded(&self, key: &str) {
        self.failures.remove(key);
    }

    /// Forget keys quiet for twice the longest wait.
    pub fn prune(&self, now: Instant) {
        let forget = self.forget_after();
        self.failures
            .retain(|_, f| now.saturating_duration_since(f.last) <= forget);
    }

    /// The wait after `count` failures in a row.
    fn wait_after(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(30);
        Duration::from_secs(1u64 << doublings).min(self.max)
    }

    fn forget_after(&self) -> Duration {
        self.max.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap_and_a_success_resets() {
        let backoff = LoginBackoff::new(3, Duration::from_secs(8));
        let start = Instant::now();
        let mut now = start;
        for _ in 0..2 {
            backoff.failed("k", now);
            assert_eq!(backoff.check("k", now), Ok(()));
        }
        let mut waits = vec![];
        for _ in 0..6 {
            backoff.failed("k", now);
            let Err(wait) = backoff.check("k", now) else {
                panic!("no wait after a failure past the free ones");
            };
            waits.push(wait);
            now += Duration::from_secs(wait);
            assert_eq!(backoff.check("k", now), Ok(()));
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        // Another key is not slowed.
        assert_eq!(backoff.check("other", now), Ok(()));
        backoff.succeeded("k");
        backoff.failed("k", now);
        assert_eq!(backoff.check("k", now), Ok(()));
    }

    #[test]
    fn a_quiet_spell_forgets_and_prune_bounds_the_map() {
        let backoff = LoginBackoff::new(1, Duration::from_secs(4));
        let start = Instant::now();
        for i in 0..100 {
            backoff.failed(&format!("k{i}"), start);
        }
        backoff.failed("k0", start);
        assert!(backoff.check("k0", start).is_err());
        let later = start + Duration::from_secs(9);
        backoff.prune(later);
        assert!(backoff.failures.is_empty());
        backoff.failed("k0", later);
        assert_eq!(backoff.check("k0", later), Err(1));
    }
}
