//! Which revocation-log events this node has applied: a watermark (every id up to it)
//! plus the ids above it applied out of order, and the sockets each recent one closed.
//!
//! Events reach a node by three roads (its own requests, the backplane, the log read)
//! in any order. Applying a revocation is safe in any order (everything but bans only
//! grows, and bans carry their log id), but not twice: a user-wide event applied again
//! would close sockets opened since with fresh tokens. So every road asks here first,
//! and a gap below the highest id seen is what tells the node to read the log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// How many applied events remember the sockets they closed (for an acknowledgement
/// asked again after the event arrived by another road).
const REMEMBERED: usize = 4096;

#[derive(Default)]
pub struct AppliedLog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watermark: i64,
    ahead: BTreeMap<i64, ()>,
    recent: VecDeque<(i64, usize)>,
}

impl AppliedLog {
    /// Everything up to `head` counts as applied (loaded from the tables at start).
    pub fn starting_at(head: i64) -> AppliedLog {
        AppliedLog {
            inner: Mutex::new(Inner {
                watermark: head,
                ..Inner::default()
            }),
        }
    }

    /// Start again from `head` (the tables were just loaded as of it).
    pub fn reset_to(&self, head: i64) {
        let mut inner = self.lock();
        inner.watermark = head;
        inner.ahead.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave it half-updated in a way that
        // matters more than stopping would: keep going with what is there.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every id up to this one has been applied.
    pub fn watermark(&self) -> i64 {
        self.lock().watermark
    }

    /// `Some(sockets closed)` when `id` has been applied already (0 when that count is
    /// no longer remembered).
    pub fn applied(&self, id: i64) -> Option<usize> {
        let inner = self.lock();
        if id > inner.watermark && !inner.ahead.contains_key(&id) {
            return None;
        }
        Some(
            inner
                .recent
                .iter()
                .rev()
                .find(|(i, _)| *i == id)
                .map_or(0, |(_, c)| *c),
        )
    }

    /// Note `id` applied, having closed `closed` sockets. Returns false when it already
    /// was (the caller must not apply it again).
    pub fn record(&self, id: i64, closed: usize) -> bool {
        let mut inner = self.lock();
        if id <= inner.watermark || inner.ahead.contains_key(&id) {
            return false;
        }
        inner.ahead.insert(id, ());
        loop {
            let next = inner.watermark + 1;
            if inner.ahead.remove(&next).is_none() {
                break;
            }
            inner.watermark += 1;
        }
        if inner.recent.len() == REMEMBERED {
            inner.recent.pop_front();
        }
        inner.recent.push_back((id, closed));
        true
    }

    /// Whether some id below `id` has not been applied: the log must be read.
    pub fn gap_below(&self, id: i64) -> bool {
        let inner = self.lock();
        let above = inner.ahead.range(..id).count() as i64;
        inner.watermark + above < id - 1
    }
}

#[cfg(test)]
mod tests {
    use super::AppliedLog;

    #[test]
    fn out_of_order_ids_close_the_gap_once_all_arrived() {
        let log = AppliedLog::starting_at(10);
        assert_eq!(log.applied(9), Some(0));
        assert!(log.record(12, 3));
        assert!(log.gap_below(12), "11 is missing");
        assert_eq!(log.watermark(), 10);
        assert!(!log.record(12, 3), "never twice");
        assert_eq!(log.applied(12), Some(3));
        assert_eq!(log.applied(11), None);
        assert!(log.record(11, 1));
        assert_eq!(log.watermark(), 12);
        assert!(!log.gap_below(13));
        assert_eq!(log.applied(11), Some(1));
    }
}
