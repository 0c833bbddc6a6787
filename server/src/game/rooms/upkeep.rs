//! The rooms' upkeep on this node: leases renewed (each run stops by itself when its
//! own could not be), members confirmed to the rooms' owners, silent owners noticed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{lock, Rooms};
use crate::game::link::{Renewal, RoomMsg};
use crate::game::room::RoomRun;

impl Rooms {
    /// Renew this node's leases, confirm its members to the rooms' owners, and look
    /// again at rooms whose owner fell silent, until `stop`.
    pub async fn run_keeper(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_millis(100).min(self.renew_period()));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            self.look_at_mirrors();
            // Every lease is renewed each period; a room whose count of players changed
            // is renewed at once, so the lobby on every node shows it within a beat.
            let since = last_renewal.elapsed();
            let all = since >= self.renew_period();
            if all {
                last_renewal = Instant::now();
            }
            // A keeper that ran this late was not listening either (the process was
            // paused or starved): its members' silence proves nothing this round.
            let listened = since <= self.renew_period() * 3 / 2;
            self.renew(all, listened).await;
        }
    }

    fn look_at_mirrors(self: &Arc<Self>) {
        let stall = self.stall();
        for mirror in self.mirrors() {
            let silent = {
                let mut state = lock(&mirror.state);
                state.members.retain(|c| !c.is_gone());
                !state.members.is_empty() && !state.moving && state.heard.elapsed() >= stall
            };
            if silent {
                self.spawn_move(mirror, None);
            } else {
                self.drop_mirror_if_empty(&mirror);
            }
        }
    }

    async fn renew(self: &Arc<Self>, all: bool, listened: bool) {
        if !all {
            let changed: Vec<Arc<RoomRun>> = self
                .runs()
                .into_iter()
                .filter(|r| !r.is_closed() && r.players_changed())
                .collect();
            self.renew_runs(changed).await;
            return;
        }
        let runs: Vec<Arc<RoomRun>> = self.runs().into_iter().filter(|r| !r.is_closed()).collect();
        let mirrors = self.mirrors();
        // Seats whose socket or node is gone without a word.
        let now = std::time::Instant::now();
        let cutoff = now.checked_sub(self.renew_period() * 3).unwrap_or(now);
        for run in &runs {
            run.drop_gone_locals();
            if listened {
                run.expire_remote(cutoff);
            }
        }
        for mirror in mirrors {
            let (owner, epoch, conns) = {
                let state = lock(&mirror.state);
                if state.moving {
                    // Its members are on their way to a new run: listing them to it now
                    // would have them evicted as unknown.
                    continue;
                }
                (
                    state.owner.clone(),
                    state.epoch,
                    state
                        .members
                        .iter()
                        .map(|c| c.id.clone())
                        .collect::<Vec<_>>(),
                )
            };
            if !conns.is_empty() && owner != self.node_id() {
                self.link.send(
                    &owner,
                    RoomMsg::Present {
                        room: mirror.record.id.clone(),
                        conns,
                        epoch: Some(epoch),
                    },
                );
            }
        }
        let runs: Vec<Arc<RoomRun>> = runs.into_iter().filter(|r| !r.is_closed()).collect();
        self.renew_runs(runs).await;
    }

    async fn renew_runs(self: &Arc<Self>, runs: Vec<Arc<RoomRun>>) {
        if runs.is_empty() {
            return;
        }
        let renewals = runs
            .iter()
            .map(|r| Renewal {
                room: r.id().to_string(),
                epoch: r.epoch,
                players: r.report_players(),
            })
            .collect();
        let sent = Instant::now();
        match self.link.renew(renewals).await {
            Ok(held) => {
                for (run, held) in runs.into_iter().zip(held) {
                    if held {
                        run.extend(sent.into_std());
                    } else {
                        self.lost(run);
                    }
                }
            }
            // Unconfirmed: each run stops by itself when its lease may have lapsed.
            Err(_) => tracing::debug!("room leases could not be renewed"),
        }
    }

    /// Stop every run this node has and give its leases back, so the rooms' other
    /// members' nodes take them on at once (a clean stop).
    pub async fn shutdown(&self) {
        for run in self.runs() {
            run.close();
            self.link.release(run.id(), run.epoch).await;
        }
    }
}
