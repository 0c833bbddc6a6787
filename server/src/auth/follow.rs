//! Following the revocation log: what makes this node hold every revocation that any
//! node committed, and know that it does ("current").
//!
//! - **Loading** ([`Auth::load_revocations`]): at start, and whenever the log cannot be
//!   followed, the lists are loaded from the tables as of the log's head.
//! - **Reading** ([`Auth::catch_up`]): every `--revocation-poll-ms`, at once when the
//!   backplane shows a gap, and after the backplane reconnects. A read to the log's end
//!   is what makes the node current (on the monotonic clock, `ids::mono_ms`).
//! - **Checking it is the same log.** Each read starts at the last event this node
//!   applied with all before it (the watermark) and compares that event's tag with the
//!   log's. A log that went back (a failover to an asynchronous replica, a point-in-time
//!   recovery, a restore from last night's dump) is noticed whether or not it has moved
//!   on since: the event at the watermark is gone or is another one. So is a log pruned
//!   past this node (cut off for longer than the log is kept).
//! - **Resynchronising** ([`Auth::resync`]): the node stops counting itself current
//!   (fail closed: past `--cluster-stale-secs` it answers 503), loads the tables again,
//!   replaces its bans with theirs, closes every socket whose token the lists now refuse,
//!   and follows the log from its head. Session revocations and user marks held in memory
//!   stay (they only refuse more; a restore may have lost them from the tables).
//! - **Events from the backplane** ([`Auth::apply_from_peer`]) are applied once each (by
//!   id and tag, see `applied`); one whose id this node applied as another event is
//!   applied at once (sealed, it is a committed revocation) and makes the node read the
//!   log, and is acknowledged only once that read places it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use arena_protocol::{CloseCode, ErrorCode};

use super::applied::{same_event, Seen};
use super::revocation::LoggedEvent;
use super::Auth;
use crate::error::{Error, Result};
use crate::ids;

/// The longest one read of the revocation log may take (a link that hangs without an
/// error must not hang the node's catching up).
const LOG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Events read from the log at once.
const LOG_BATCH: i64 = 500;

impl Auth {
    /// Load what the lists must hold after a restart (or a resync): the tables as of the
    /// log's head. Bans are replaced by the tables'; everything else is added to.
    pub async fn load_revocations(&self) -> Result<()> {
        // The log's head first: an event committed while the tables are read is then
        // applied again by the first catch-up, which is harmless (applying is idempotent,
        // and bans carry their log id), whereas the other order could miss it.
        let head = self.store.log_head().await?;
        let now = ids::now_secs();
        let since = now - self.leeway_secs;
        for s in self.store.live_revoked_sessions(since).await? {
            self.revocations.revoke_session(&s);
        }
        for (user, mark) in self.store.user_marks(since - self.access_ttl_secs).await? {
            self.revocations.mark_user(&user, mark);
        }
        let bans: Vec<(String, Option<i64>)> = self
            .store
            .active_bans(ids::now_ms())
            .await?
            .into_iter()
            .map(|b| (b.user_id, b.banned_until))
            .collect();
        self.revocations.replace_bans(&bans, head.id);
        self.applied.reset_to(head);
        self.current_as_of.store(ids::mono_ms(), Ordering::Release);
        Ok(())
    }

    /// Refuse to judge tokens while this server cannot confirm it has every revocation
    /// (`--cluster-stale-secs`): cut off from the database, it might accept a token that
    /// another server has revoked. The trade-off: a server cut off answers 503 to every
    /// authenticated request after the stale time, rather than risk serving a revoked
    /// token for longer; until then, it may serve a token revoked elsewhere.
    pub(super) fn check_current(&self) -> Result<()> {
        if self.stale_after_ms <= 0 {
            return Ok(());
        }
        if !self.is_current(self.stale_after_ms) {
            return Err(Error::new(
                ErrorCode::Unavailable,
                "this server cannot confirm it has every revocation; retry shortly",
            ));
        }
        Ok(())
    }

    /// Whether this node confirmed, within `window_ms`, that it holds every revocation.
    pub fn is_current(&self, window_ms: i64) -> bool {
        ids::mono_ms() - self.current_as_of.load(Ordering::Acquire) <= window_ms
    }

    /// Fail closed for open sockets too: a node past its stale time may have missed a
    /// revocation of a token whose socket it still serves, so it closes every socket
    /// (1001: reconnect; the upgrade is answered 503 here until this node has caught
    /// up, and a load balancer sends it elsewhere). Returns how many it closed.
    pub async fn close_sockets_if_stale(&self) -> usize {
        if self.stale_after_ms <= 0 || self.is_current(self.stale_after_ms) {
            return 0;
        }
        self.registry
            .close_every_socket(
                CloseCode::GoingAway,
                "this server lost track of revocations; reconnect",
            )
            .await
    }

    /// Apply, in log order, every revocation that other nodes wrote to the shared
    /// database and this node has not applied yet (this node's own events were applied
    /// when they were made; those from the backplane when they arrived). Returns how
    /// many were applied. Ids are gap-free and in commit order (see `Store::log`), so
    /// "everything after the watermark not yet applied" misses nothing, once the event
    /// at the watermark is checked to be the one applied there (see the module doc).
    /// Reading the log to its end is what makes this node current: the backplane is
    /// only the fast path, and a publish lost between commit and Redis is in the log
    /// alone.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut applied = 0;
        loop {
            let started = ids::mono_ms();
            let at = self.applied.watermark();
            // Read without holding the applier lock (the backplane's events keep being
            // applied meanwhile), and never longer than a bound: a link that hangs must
            // not hang the node.
            let batch = self
                .read_log(|| self.store.events_from(at.id, LOG_BATCH))
                .await?;
            let mut rest = batch.as_slice();
            match rest.first() {
                Some(first) if first.id == at.id => {
                    if !same_event(&first.tag, &at.tag) {
                        self.resync("the log holds another event where this node stands")
                            .await?;
                        continue;
                    }
                    rest = &rest[1..];
                }
                // Read from the start: nothing to compare.
                Some(_) if at.id == 0 => {}
                // The event this node stands on is gone while later ones exist: the log
                // was pruned past it (cut off longer than the log is kept), or went back
                // and moved on past it.
                Some(_) => {
                    self.resync("the log no longer holds the event where this node stands")
                        .await?;
                    continue;
                }
                None if at.id == 0 => {}
                None => {
                    // Nothing at or after the watermark: the log ends before it (it went
                    // back), or its row was deleted by a release that pruned the newest.
                    let head = self.read_log(|| self.store.log_head()).await?;
                    if head.id != at.id {
                        self.resync("the log ends before where this node stands")
                            .await?;
                        continue;
                    }
                }
            }
            if rest.is_empty() {
                // Read to the end: everything committed before the read is applied.
                self.current_as_of.fetch_max(started, Ordering::AcqRel);
                return Ok(applied);
            }
            let one_applier = self.catching_up.lock().await;
            let mut expected = at.id + 1;
            let mut diverged = None;
            for logged in rest {
                if logged.id != expected {
                    break; // not yet visible, or pruned: the next read says which
                }
                match self.applied.seen(logged.id, &logged.tag) {
                    Seen::Applied(_) => self.applied.advance(logged.id, &logged.tag, None),
                    Seen::Conflict => {
                        diverged = Some(logged.id);
                        break;
                    }
                    // Not recorded: another node's, or this node's own whose commit's
                    // outcome was unknown, or one recorded before a reload forgot it.
                    // Applying is idempotent, so it is applied either way.
                    Seen::NotYet => {
                        let closed = self.apply(logged).await;
                        self.applied.advance(logged.id, &logged.tag, Some(closed));
                        applied += 1;
                    }
                }
                expected += 1;
            }
            drop(one_applier);
            if let Some(id) = diverged {
                tracing::warn!(id, "an applied id names another event in the log");
                self.resync("the log holds another event at an id this node applied")
                    .await?;
                continue;
            }
            if expected == at.id + 1 {
                // The next id is missing although later ones exist: the log was pruned
                // past this node.
                self.resync("the log was pruned past this node").await?;
            }
        }
    }

    async fn read_log<T, F>(&self, read: impl FnOnce() -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        tokio::time::timeout(LOG_READ_TIMEOUT, read())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorCode::Unavailable,
                    "the revocation log did not answer in time",
                )
            })?
    }

    /// The log this node followed cannot be followed on (see the module doc): reload the
    /// tables, close the sockets they now refuse, and follow the log from its head. Not
    /// current until that is done; if it fails, this node stays not current (fail
    /// closed) and the next read tries again.
    pub(super) async fn resync(&self, why: &str) -> Result<()> {
        let _one_applier = self.catching_up.lock().await;
        let _no_change_of_ours_midway = self.reloading.write().await;
        tracing::warn!(
            why,
            "revocation log: reloading the revocations from the tables"
        );
        crate::telemetry::log_resync();
        self.current_as_of.store(ids::MONO_NEVER, Ordering::Release);
        tokio::time::timeout(LOG_READ_TIMEOUT * 2, self.load_revocations())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorCode::Unavailable,
                    "the revocation tables did not answer in time",
                )
            })??;
        let closed = self.close_refused_sockets().await;
        tracing::warn!(
            closed,
            head = self.applied.watermark().id,
            "revocation log: reloaded; following it from its head"
        );
        Ok(())
    }

    /// Close every socket whose token the lists now refuse (banned: 4003; revoked: 4001).
    async fn close_refused_sockets(&self) -> usize {
        self.registry
            .close_where(|user, session, iat| {
                if self.revocations.ban(user).is_some() {
                    Some((CloseCode::Kicked, "banned".to_string()))
                } else if self.revocations.revokes(user, session, iat) {
                    Some((
                        CloseCode::SessionRevoked,
                        CloseCode::SessionRevoked.reason().to_string(),
                    ))
                } else {
                    None
                }
            })
            .await
    }

    /// Apply an event another node committed and published, unless it has been applied
    /// already (by the log reader, or an earlier delivery). Returns the sockets it
    /// closed here, for the acknowledgement; `None` when it cannot be placed in the log
    /// this node follows (then it must not be acknowledged). Order does not matter for
    /// correctness (see [`super::applied`]); a gap below it is filled by
    /// [`Auth::fill_gap_below`].
    pub async fn apply_from_peer(&self, logged: &LoggedEvent) -> Option<usize> {
        if logged.id == 0 {
            // Not in the log (a logout repeated: it names sessions already revoked), so
            // not tracked: applying it again is harmless.
            let _one_applier = self.catching_up.lock().await;
            return Some(self.apply(logged).await);
        }
        let closed = {
            let _one_applier = self.catching_up.lock().await;
            match self.applied.seen(logged.id, &logged.tag) {
                Seen::Applied(closed) => return Some(closed),
                Seen::NotYet => {
                    let closed = self.apply(logged).await;
                    self.applied.record(logged.id, &logged.tag, closed);
                    return Some(closed);
                }
                // This node applied that id as another event: the log it follows went
                // back. The event is a node's committed revocation (it is sealed), so
                // its effect is applied now (fail closed); it is acknowledged only once
                // the log, read again (which reloads), places it.
                Seen::Conflict => self.apply(logged).await,
            }
        };
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, id = logged.id, "cannot check the log for a conflicting event");
        } else if let Seen::Applied(_) = self.applied.seen(logged.id, &logged.tag) {
            return Some(closed);
        }
        tracing::warn!(
            id = logged.id,
            "a published event is not in the log this node follows; not acknowledged"
        );
        None
    }

    /// If an event below `id` has not arrived (lost on the backplane: a node crashed
    /// between commit and publish, or this node was reconnecting), read the log now.
    pub async fn fill_gap_below(&self, id: i64) {
        if !self.applied.gap_below(id) {
            return;
        }
        match self.catch_up().await {
            Ok(n) => tracing::debug!(
                events = n,
                below = id,
                "gap in the backplane filled from the log"
            ),
            Err(e) => {
                tracing::warn!(error = %e, below = id, "a gap in the backplane could not be filled from the log")
            }
        }
    }
}
