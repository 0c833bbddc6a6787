//! Which revocation-log events this node has applied: a watermark (every event up to it,
//! checked against the log) plus the events above it applied out of order, each known by
//! its id *and* its tag, and the sockets each recent one closed.
//!
//! Events reach a node by three roads (its own requests, the backplane, the log read)
//! in any order. Applying a revocation is safe in any order (everything but bans only
//! grows, and bans carry their log id), but not twice: a user-wide event applied again
//! would close sockets opened since with fresh tokens. So every road asks here first,
//! and a gap below the highest id seen is what tells the node to read the log.
//!
//! An id alone never says "applied": a log that went back (a failover, a restore) and
//! moved on gives the same ids to other events. So an event counts as applied only with
//! the tag it was applied with ([`Seen::Conflict`] otherwise), and only the log reader
//! moves the watermark, after checking that the log still holds, at the watermark, the
//! event this node applied there (`Auth::catch_up`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use crate::store::LogPosition;

/// How many applied events remember their tag and the sockets they closed (for an
/// acknowledgement asked again after the event arrived by another road).
const REMEMBERED: usize = 4096;

/// What this node knows of an event (an id and a tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Applied, having closed this many sockets (0 when no longer remembered).
    Applied(usize),
    /// Not applied yet.
    NotYet,
    /// The id is applied here, but as another event (or one no longer remembered): the
    /// log this node followed may not be the log there is now. Check it before
    /// anything is applied or acknowledged.
    Conflict,
}

#[derive(Default)]
pub struct AppliedLog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watermark: LogPosition,
    /// Applied above the watermark: id → tag.
    ahead: BTreeMap<i64, Option<String>>,
    recent: VecDeque<(i64, Option<String>, usize)>,
}

/// Two tags name the same event, as far as can be told (a release before tags wrote
/// none).
pub fn same_event(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

impl AppliedLog {
    /// Everything up to `head` counts as applied (loaded from the tables at start).
    pub fn starting_at(head: LogPosition) -> AppliedLog {
        AppliedLog {
            inner: Mutex::new(Inner {
                watermark: head,
                ..Inner::default()
            }),
        }
    }

    /// Start again from `head` (the tables were just loaded as of it).
    pub fn reset_to(&self, head: LogPosition) {
        let mut inner = self.lock();
        inner.watermark = head;
        inner.ahead.clear();
        inner.recent.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave it half-updated in a way that
        // matters more than stopping would: keep going with what is there.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last event applied with every one before it: where the log reader resumes.
    pub fn watermark(&self) -> LogPosition {
        self.lock().watermark.clone()
    }

    /// What this node knows of the event `id` tagged `tag`.
    pub fn seen(&self, id: i64, tag: &Option<String>) -> Seen {
        let inner = self.lock();
        let remembered = || {
            inner
                .recent
                .iter()
                .rev()
                .find(|(i, _, _)| *i == id)
                .map(|(_, t, closed)| (t.clone(), *closed))
        };
        if let Some(t) = inner.ahead.get(&id) {
            if !same_event(t, tag) {
                return Seen::Conflict;
            }
            return Seen::Applied(remembered().map_or(0, |(_, c)| c));
        }
        if id > inner.watermark.id {
            return Seen::NotYet;
        }
        match remembered() {
            Some((t, closed)) if same_event(&t, tag) => Seen::Applied(closed),
            Some(_) => Seen::Conflict,
            None if id == inner.watermark.id && same_event(&inner.watermark.tag, tag) => {
                Seen::Applied(0)
            }
            // Too old to be remembered: only the log can say whether it is the same.
            None => Seen::Conflict,
        }
    }

    /// Note event `id` (tagged `tag`) applied above the watermark, having closed `closed`
    /// sockets. Returns false when that id is applied already (the caller must not apply
    /// it again; if as another event, see [`Seen::Conflict`]).
    pub fn record(&self, id: i64, tag: &Option<String>, closed: usize) -> bool {
        let mut inner = self.lock();
        if id <= inner.watermark.id || inner.ahead.contains_key(&id) {
            return false;
        }
        inner.ahead.insert(id, tag.clone());
        remember(&mut inner, id, tag, closed);
        true
    }

    /// The log reader read event `logged` at the place right after the watermark (whose
    /// event it checked): move the watermark onto it. `closed`: the sockets it closed, if
    /// the reader applied it.
    pub fn advance(&self, id: i64, tag: &Option<String>, closed: Option<usize>) {
        let mut inner = self.lock();
        if id != inner.watermark.id + 1 {
            return;
        }
        inner.ahead.remove(&id);
        if let Some(closed) = closed {
            remember(&mut inner, id, tag, closed);
        }
        inner.watermark = LogPosition {
            id,
            tag: tag.clone(),
        };
    }

    /// Whether some id below `id` has not been applied: the log must be read.
    pub fn gap_below(&self, id: i64) -> bool {
        let inner = self.lock();
        let above = inner.ahead.range(..id).count() as i64;
        inner.watermark.id + above < id - 1
    }
}

fn remember(inner: &mut Inner, id: i64, tag: &Option<String>, closed: usize) {
    if inner.recent.len() == REMEMBERED {
        inner.recent.pop_front();
    }
    inner.recent.push_back((id, tag.clone(), closed));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(t: &str) -> Option<String> {
        Some(t.to_string())
    }

    #[test]
    fn out_of_order_events_are_applied_once_and_the_log_moves_the_watermark() {
        let log = AppliedLog::starting_at(LogPosition {
            id: 10,
            tag: tag("ten"),
        });
        assert_eq!(log.seen(10, &tag("ten")), Seen::Applied(0));
        assert!(log.record(12, &tag("twelve"), 3));
        assert!(log.gap_below(12), "11 is missing");
        assert!(!log.record(12, &tag("twelve"), 3), "never twice");
        assert_eq!(log.seen(12, &tag("twelve")), Seen::Applied(3));
        assert_eq!(log.seen(11, &tag("eleven")), Seen::NotYet);
        log.advance(11, &tag("eleven"), Some(1));
        log.advance(12, &tag("twelve"), None);
        assert_eq!(log.watermark().id, 12);
        assert!(!log.gap_below(13));
        assert_eq!(log.seen(11, &tag("eleven")), Seen::Applied(1));
        assert_eq!(log.seen(12, &tag("twelve")), Seen::Applied(3));
    }

    #[test]
    fn an_id_applied_as_another_event_is_a_conflict_never_applied() {
        let log = AppliedLog::starting_at(LogPosition {
            id: 4,
            tag: tag("four"),
        });
        assert!(log.record(5, &tag("five"), 0));
        // The log went back to 2 and moved on: ids 3, 4 and 5 are other events now.
        assert_eq!(
            log.seen(3, &tag("new three")),
            Seen::Conflict,
            "not remembered"
        );
        assert_eq!(log.seen(4, &tag("new four")), Seen::Conflict);
        assert_eq!(log.seen(5, &tag("new five")), Seen::Conflict);
        assert_eq!(log.seen(6, &tag("six")), Seen::NotYet);
        // A release before tags wrote none: nothing to compare.
        assert_eq!(log.seen(4, &None), Seen::Applied(0));
        log.reset_to(LogPosition {
            id: 5,
            tag: tag("new five"),
        });
        assert_eq!(log.seen(5, &tag("new five")), Seen::Applied(0));
        assert_eq!(log.seen(5, &tag("five")), Seen::Conflict);
    }
}
