//! What the admin overview charts: this node's successful logins and the sessions it
//! revoked, a count per minute over the last [`ACTIVITY_MINUTES`] minutes.
//!
//! Promises: a revocation is counted once in the deployment, on the node where it was
//! made (the nodes that only apply it from the backplane do not count it again), so the
//! overview may sum the nodes' counts. Recording is a short lock on a fixed array: no
//! allocation, no I/O, and memory that never grows.

use std::sync::Mutex;

use arena_protocol::http::{MinuteActivity, ACTIVITY_MINUTES};

const MINUTE_MS: i64 = 60_000;

/// A ring of minute counts; a slot is reused (reset) when its minute comes round again.
#[derive(Debug)]
pub struct Activity {
    slots: Mutex<[MinuteActivity; ACTIVITY_MINUTES]>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            slots: Mutex::new([MinuteActivity::default(); ACTIVITY_MINUTES]),
        }
    }
}

impl Activity {
    pub fn login(&self, now_ms: i64) {
        self.add(now_ms, |m| m.logins += 1);
    }

    pub fn revoked(&self, sessions: u64, now_ms: i64) {
        if sessions == 0 {
            return;
        }
        self.add(now_ms, |m| m.revocations += sessions);
    }

    fn add(&self, now_ms: i64, count: impl FnOnce(&mut MinuteActivity)) {
        let at = minute_of(now_ms);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[slot_of(at)];
        if slot.at != at {
            *slot = MinuteActivity {
                at,
                ..MinuteActivity::default()
            };
        }
        count(slot);
    }

    /// The last [`ACTIVITY_MINUTES`] minutes up to the one holding `now_ms`, the oldest
    /// first, a minute without activity as zeros.
    pub fn recent(&self, now_ms: i64) -> Vec<MinuteActivity> {
        let slots = *self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let last = minute_of(now_ms);
        (0..ACTIVITY_MINUTES as i64)
            .rev()
            .map(|ago| {
                let at = last - ago * MINUTE_MS;
                let slot = slots[slot_of(at)];
                if slot.at == at {
                    slot
                } else {
                    MinuteActivity {
                        at,
                        ..MinuteActivity::default()
                    }
                }
            })
            .collect()
    }
}

/// Several nodes' [`Activity::recent`] as one series: counts of the same minute added.
/// Every series covers the minutes up to `now_ms`; a node whose clock is a minute off
/// contributes to the minutes that match.
pub fn sum(series: &[Vec<MinuteActivity>], now_ms: i64) -> Vec<MinuteActivity> {
    let mut total = Activity::default().recent(now_ms);
    for minute in series.iter().flatten() {
        if let Some(t) = total.iter_mut().find(|t| t.at == minute.at) {
            t.logins += minute.logins;
            t.revocations += minute.revocations;
        }
    }
    total
}

fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

fn slot_of(minute_at: i64) -> usize {
    (minute_at / MINUTE_MS).rem_euclid(ACTIVITY_MINUTES as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000;

    #[test]
    fn counts_land_in_their_minute_and_old_minutes_read_as_zero() {
        let a = Activity::default();
        a.login(T0);
        a.login(T0 + 1);
        a.revoked(3, T0 + MINUTE_MS);
        let recent = a.recent(T0 + MINUTE_MS + 5);
        assert_eq!(recent.len(), ACTIVITY_MINUTES);
        let last = recent[ACTIVITY_MINUTES - 1];
        let before = recent[ACTIVITY_MINUTES - 2];
        assert_eq!(
            (before.at, before.logins, before.revocations),
            (minute_of(T0), 2, 0)
        );
        assert_eq!((last.logins, last.revocations), (0, 3));
        assert!(recent.windows(2).all(|w| w[1].at - w[0].at == MINUTE_MS));
        // A full lap later the same slots read as empty minutes, not as old counts.
        let lap = a.recent(T0 + ACTIVITY_MINUTES as i64 * MINUTE_MS * 2);
        assert!(lap.iter().all(|m| m.logins == 0 && m.revocations == 0));
    }

    #[test]
    fn a_slot_reused_a_lap_later_starts_from_zero() {
        let a = Activity::default();
        a.login(T0);
        let lap = T0 + ACTIVITY_MINUTES as i64 * MINUTE_MS;
        a.login(lap);
        let last = a.recent(lap)[ACTIVITY_MINUTES - 1];
        assert_eq!(last.logins, 1);
    }

    #[test]
    fn nodes_sum_minute_by_minute() {
        let (a, b) = (Activity::default(), Activity::default());
        a.login(T0);
        b.login(T0 + 10);
        b.revoked(2, T0 - MINUTE_MS);
        let now = T0 + 20;
        let total = sum(&[a.recent(now), b.recent(now)], now);
        let n = ACTIVITY_MINUTES;
        assert_eq!(total[n - 1].logins, 2);
        assert_eq!(total[n - 2].revocations, 2);
        assert_eq!(total.iter().map(|m| m.logins).sum::<u64>(), 2);
    }
}
