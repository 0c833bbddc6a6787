//! The database link no client can starve: a pool of its own (at most
//! [`READER_CONNECTIONS`]) for the revocation-log reader (`log_head`, `events_from`, and the tables it loads) and
//! the health probe, apart from the pool every request shares. Whatever requests arrive
//! (a flood of `/healthz`, logins for unknown users, registrations), the node still reads
//! the log and stays current; they can only make their own requests wait.
//!
//! Also the health probe's answer ([`Liveness`]): the database is pinged on this link at
//! most once a second by a background task ([`Store::refresh_liveness`]) and `/healthz`
//! reads the result ([`Store::database_answers`]), never the database.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

use super::Store;
use crate::error::Result;

/// Connections of the reader's own pool: the log reader (its poll, and a backplane gap
/// being filled) and the health probe.
pub const READER_CONNECTIONS: u32 = 2;

/// How long a successful ping counts beyond the ping's own timeout. A ping that fails
/// or times out says so at once; this bound is for a probe that cannot even run (a
/// node whose CPU is saturated answers its pings late, and that alone must not take
/// it out of its load balancer, so it is generous).
pub const LIVENESS_SLACK: Duration = Duration::from_secs(2);

/// The reader's pool on PostgreSQL. On SQLite (one server, one file, no contention over
/// a network) the shared pool serves the reader too.
pub(super) async fn reader_pool(
    shared: &AnyPool,
    options: AnyConnectOptions,
    is_sqlite: bool,
    acquire_timeout: Duration,
) -> Result<AnyPool> {
    if is_sqlite {
        return Ok(shared.clone());
    }
    Ok(AnyPoolOptions::new()
        .max_connections(READER_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await?)
}

/// When the database last answered the health probe, and whether the latest probe failed.
#[derive(Clone)]
pub struct Liveness(Arc<Mutex<Probe>>);

struct Probe {
    answered_at: Instant,
    last_failed: bool,
    /// A success counts this long: the ping's timeout plus [`LIVENESS_SLACK`].
    max_age: Duration,
}

impl Liveness {
    /// The database has just answered (it was opened and migrated); pings time out after
    /// `timeout`.
    pub(super) fn answered_now(timeout: Duration) -> Liveness {
        Liveness(Arc::new(Mutex::new(Probe {
            answered_at: Instant::now(),
            last_failed: false,
            max_age: timeout + LIVENESS_SLACK,
        })))
    }

    fn record(&self, ok: bool, timeout: Duration) {
        let mut probe = self.0.lock().unwrap_or_else(|p| p.into_inner());
        probe.last_failed = !ok;
        probe.max_age = timeout + LIVENESS_SLACK;
        if ok {
            probe.answered_at = Instant::now();
        }
    }
}

impl Store {
    /// Ping the database on the reader's link (at most `timeout`) and record the answer
    /// for [`Store::database_answers`]. Returns whether it answered.
    pub async fn refresh_liveness(&self, timeout: Duration) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&self.log_pool);
        let ok = matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_)));
        self.liveness.record(ok, timeout);
        ok
    }

    /// Whether the database answered the latest health probe, and recently enough (the
    /// ping's timeout plus [`LIVENESS_SLACK`]). Reads memory only.
    pub fn database_answers(&self) -> bool {
        let probe = self.liveness.0.lock().unwrap_or_else(|p| p.into_inner());
        !probe.last_failed && probe.answered_at.elapsed() <= probe.max_age
    }
}
