//! The objective, server-authoritative and free of I/O: orbs lie in the arena, a player
//! who touches one scores a point and the orb reappears elsewhere; players are discs that
//! bump each other apart; play runs in timed rounds with a pause between them, and the
//! highest score when a round's time is up wins it.
//!
//! Promises: no disc leaves the arena, and after a step no two overlap (by more than a
//! tenth of a unit, in a crowd pressed into a corner); an orb is taken
//! by at most one player per tick; scores only move while a round is being played, and
//! every round starts from zero.

use std::collections::HashMap;

use super::sim::{Player, World};

/// How long rounds and the pauses between them last (`--round-secs`,
/// `--round-pause-secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTimes {
    pub round_secs: u64,
    pub pause_secs: u64,
}

/// How a room's rounds go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// A round's playing time, in ticks.
    pub round_ticks: u64,
    /// The pause after a round (the winner banner), in ticks.
    pub pause_ticks: u64,
    /// Orbs in play at once.
    pub orbs: usize,
    pub player_radius: f64,
    pub orb_radius: f64,
    /// One tick, in ms (to turn ticks left into a time for clients).
    pub tick_ms: f64,
}

impl Rules {
    /// Rounds of `round_secs` and a pause of `pause_secs` at `tick_hz`.
    pub fn new(tick_hz: u32, round_secs: u64, pause_secs: u64) -> Rules {
        let hz = u64::from(tick_hz.max(1));
        Rules {
            round_ticks: (round_secs * hz).max(1),
            pause_ticks: (pause_secs * hz).max(1),
            orbs: 6,
            player_radius: 14.0,
            orb_radius: 8.0,
            tick_ms: 1000.0 / hz as f64,
        }
    }
}

/// Where a round stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Orbs can be taken until tick `ends_at`.
    Playing { ends_at: u64 },
    /// The round is over; the next starts at tick `next_at`.
    Pause { next_at: u64, winners: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Orb {
    pub id: u64,
    pub x: f64,
    pub y: f64,
}

/// What a step changed that players must be told of once (not every tick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundEvent {
    Started {
        round: u32,
    },
    /// `winners`: the players with the top score (several on a tie; none if nobody
    /// scored). `scores`: every player who scored, by id.
    Ended {
        round: u32,
        winners: Vec<String>,
        scores: Vec<(String, u32)>,
    },
}

/// A room's match: the round, its orbs and the scores (by player id, so leaving and
/// coming back within a round keeps one's points).
#[derive(Debug, Clone)]
pub struct Match {
    rules: Rules,
    pub round: u32,
    pub phase: Phase,
    pub orbs: Vec<Orb>,
    scores: HashMap<String, u32>,
    next_orb: u64,
}

impl Match {
    /// A match whose first round starts at tick `now`.
    pub fn new(
        rules: Rules,
        world: &World,
        now: u64,
        spawn: &mut impl FnMut() -> (f64, f64),
    ) -> Match {
        let mut m = Match {
            rules,
            round: 0,
            phase: Phase::Pause {
                next_at: now,
                winners: Vec::new(),
            },
            orbs: Vec::new(),
            scores: HashMap::new(),
            next_orb: 0,
        };
        m.start_round(world, now, spawn);
        m
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn score(&self, player: &str) -> u32 {
        self.scores.get(player).copied().unwrap_or(0)
    }

    /// Ticks until the phase changes, from tick `now`.
    pub fn ticks_left(&self, now: u64) -> u64 {
        match &self.phase {
            Phase::Playing { ends_at } => ends_at.saturating_sub(now),
            Phase::Pause { next_at, .. } => next_at.saturating_sub(now),
        }
    }

    fn start_round(&mut self, world: &World, now: u64, spawn: &mut impl FnMut() -> (f64, f64)) {
        self.round += 1;
        self.scores.clear();
        self.orbs.clear();
        for _ in 0..self.rules.orbs {
            let orb = self.new_orb(world, spawn);
            self.orbs.push(orb);
        }
        self.phase = Phase::Playing {
            ends_at: now + self.rules.round_ticks,
        };
    }

    fn new_orb(&mut self, world: &World, spawn: &mut impl FnMut() -> (f64, f64)) -> Orb {
        let (fx, fy) = spawn();
        let m = self.rules.orb_radius + 4.0;
        self.next_orb += 1;
        Orb {
            id: self.next_orb,
            x: m + fx.clamp(0.0, 1.0) * (world.width - 2.0 * m),
            y: m + fy.clamp(0.0, 1.0) * (world.height - 2.0 * m),
        }
    }

    /// After the players moved for tick `now`: push overlapping discs apart, keep them
    /// inside, award touched orbs, and move the round on. `players` are `(id, player)`
    /// in seat order. `spawn` gives a fresh position as two fractions in 0..=1.
    pub fn step(
        &mut self,
        world: &World,
        now: u64,
        players: &mut [(&str, &mut Player)],
        spawn: &mut impl FnMut() -> (f64, f64),
    ) -> Option<RoundEvent> {
        separate(world, self.rules.player_radius, players);
        match &self.phase {
            Phase::Playing { ends_at } => {
                let ends_at = *ends_at;
                self.take_orbs(world, players, spawn);
                if now >= ends_at {
                    return Some(self.end_round(now));
                }
                None
            }
            Phase::Pause { next_at, .. } => {
                if now >= *next_at {
                    self.start_round(world, now, spawn);
                    return Some(RoundEvent::Started { round: self.round });
                }
                None
            }
        }
    }

    fn take_orbs(
        &mut self,
        world: &World,
        players: &[(&str, &mut Player)],
        spawn: &mut impl FnMut() -> (f64, f64),
    ) {
        let reach = self.rules.player_radius + self.rules.orb_radius;
        for i in 0..self.orbs.len() {
            let orb = self.orbs[i];
            // The nearest player in reach takes it (seat order on an exact tie).
            let taker = players
                .iter()
                .map(|(id, p)| (id, (p.x - orb.x).hypot(p.y - orb.y)))
                .filter(|(_, d)| *d <= reach)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((id, _)) = taker {
                *self.scores.entry(id.to_string()).or_insert(0) += 1;
                self.orbs[i] = self.new_orb(world, spawn);
            }
        }
    }

    fn end_round(&mut self, now: u64) -> RoundEvent {
        let top = self.scores.values().copied().max().unwrap_or(0);
        let mut winners: Vec<String> = if top == 0 {
            Vec::new()
        } else {
            self.scores
                .iter()
                .filter(|(_, s)| **s == top)
                .map(|(id, _)| id.clone())
                .collect()
        };
        winners.sort();
        let mut scores: Vec<(String, u32)> =
            self.scores.iter().map(|(id, s)| (id.clone(), *s)).collect();
        scores.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.orbs.clear();
        self.phase = Phase::Pause {
            next_at: now + self.rules.pause_ticks,
            winners: winners.clone(),
        };
        RoundEvent::Ended {
            round: self.round,
            winners,
            scores,
        }
    }
}

/// Push every overlapping pair of discs apart along the line between their centres,
/// half each, then keep each inside the arena. A few passes settle a crowd; a disc
/// pushed into a wall is pushed back out by the clamp, and the next pass fixes what
/// that overlaps again.
fn separate(world: &World, radius: f64, players: &mut [(&str, &mut Player)]) {
    const PASSES: usize = 8;
    let min = 2.0 * radius;
    for _ in 0..PASSES {
        let mut moved = false;
        for i in 0..players.len() {
            for j in (i + 1)..players.len() {
                let (a, b) = (&players[i].1, &players[j].1);
                let (dx, dy) = (b.x - a.x, b.y - a.y);
                let dist = dx.hypot(dy);
                if dist >= min {
                    continue;
                }
                // Coincident centres: part them along x, in seat order.
                let (ux, uy) = if dist > 1e-9 {
                    (dx / dist, dy / dist)
                } else {
                    (1.0, 0.0)
                };
                let push = (min - dist) / 2.0;
                players[i].1.x -= ux * push;
                players[i].1.y -= uy * push;
                players[j].1.x += ux * push;
                players[j].1.y += uy * push;
                moved = true;
            }
        }
        for (_, p) in players.iter_mut() {
            p.x = p.x.clamp(radius, world.width - radius);
            p.y = p.y.clamp(radius, world.height - radius);
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: World = World {
        width: 400.0,
        height: 200.0,
        speed: 100.0,
    };

    fn rules() -> Rules {
        Rules {
            round_ticks: 10,
            pause_ticks: 3,
            orbs: 2,
            player_radius: 10.0,
            orb_radius: 5.0,
            tick_ms: 50.0,
        }
    }

    fn at(x: f64, y: f64) -> Player {
        Player {
            x,
            y,
            dx: 0.0,
            dy: 0.0,
            last_seq: 0,
        }
    }

    /// Orbs at fixed places: (0.5, 0.5), then (0.0, 0.0), (1.0, 1.0), ...
    fn spawner() -> impl FnMut() -> (f64, f64) {
        let mut n = 0;
        move || {
            n += 1;
            match n {
                1 | 2 => (0.5, 0.5),
                k if k % 2 == 1 => (0.0, 0.0),
                _ => (1.0, 1.0),
            }
        }
    }

    #[test]
    fn touching_an_orb_scores_and_the_orb_moves() {
        let mut spawn = spawner();
        let mut m = Match::new(rules(), &W, 0, &mut spawn);
        assert_eq!(m.round, 1);
        let (ox, oy) = (m.orbs[0].x, m.orbs[0].y);
        assert_eq!((ox, oy), (200.0, 100.0));
        let (mut a, mut b) = (at(ox + 14.0, oy), at(20.0, 20.0));
        let event = m.step(&W, 1, &mut [("a", &mut a), ("b", &mut b)], &mut spawn);
        assert_eq!(event, None);
        // Both orbs lay in one place: one player takes both in the same tick.
        assert_eq!(m.score("a"), 2);
        assert_eq!(m.score("b"), 0);
        assert!(
            m.orbs.iter().all(|o| (o.x, o.y) != (ox, oy)),
            "{:?}",
            m.orbs
        );
    }

    #[test]
    fn an_orb_goes_to_the_nearest_player_only() {
        let mut spawn = spawner();
        let mut m = Match::new(Rules { orbs: 1, ..rules() }, &W, 0, &mut spawn);
        let (ox, oy) = (m.orbs[0].x, m.orbs[0].y);
        let (mut a, mut b) = (at(ox - 12.0, oy - 10.0), at(ox + 5.0, oy + 12.0));
        m.step(&W, 1, &mut [("a", &mut a), ("b", &mut b)], &mut spawn);
        assert_eq!((m.score("a"), m.score("b")), (0, 1));
    }

    #[test]
    fn discs_never_overlap_and_never_leave_the_arena() {
        let mut spawn = || (0.9, 0.9);
        let mut m = Match::new(rules(), &W, 0, &mut spawn);
        // Four discs piled into a corner, two of them on the same spot.
        let mut ps = [at(0.0, 0.0), at(0.0, 0.0), at(5.0, 3.0), at(12.0, 1.0)];
        let [p0, p1, p2, p3] = &mut ps;
        let mut players = [("a", p0), ("b", p1), ("c", p2), ("d", p3)];
        for t in 1..5 {
            m.step(&W, t, &mut players, &mut spawn);
        }
        for (i, (_, p)) in players.iter().enumerate() {
            assert!(
                (10.0..=390.0).contains(&p.x) && (10.0..=190.0).contains(&p.y),
                "{i}: {p:?}"
            );
            for (_, q) in players.iter().skip(i + 1) {
                let d = (p.x - q.x).hypot(p.y - q.y);
                assert!(d >= 20.0 - 0.1, "overlap {d}: {p:?} {q:?}");
            }
        }
    }

    #[test]
    fn a_round_ends_on_time_with_its_winner_then_the_next_starts_from_zero() {
        // The first orb in the middle, every later one in a corner nobody stands in.
        let mut first = true;
        let mut spawn = move || {
            if std::mem::take(&mut first) {
                (0.5, 0.5)
            } else {
                (0.0, 0.0)
            }
        };
        let mut m = Match::new(Rules { orbs: 1, ..rules() }, &W, 0, &mut spawn);
        let orb = m.orbs[0];
        let (mut a, mut b) = (at(orb.x, orb.y), at(350.0, 150.0));
        m.step(&W, 1, &mut [("a", &mut a), ("b", &mut b)], &mut spawn);
        assert_eq!(m.score("a"), 1);
        let mut ended = None;
        for t in 2..=10 {
            if let Some(e) = m.step(&W, t, &mut [("a", &mut a), ("b", &mut b)], &mut spawn) {
                ended = Some((t, e));
            }
        }
        let (t, event) = ended.expect("the round ended");
        assert_eq!(t, 10);
        let RoundEvent::Ended {
            round,
            winners,
            scores,
        } = event
        else {
            panic!("{event:?}")
        };
        assert_eq!((round, winners), (1, vec!["a".to_string()]));
        assert_eq!(scores, vec![("a".to_string(), 1)]);
        assert!(m.orbs.is_empty());
        // No scoring in the pause, even standing where an orb was.
        assert_eq!(
            m.step(&W, 11, &mut [("a", &mut a), ("b", &mut b)], &mut spawn),
            None
        );
        assert_eq!(
            m.step(&W, 12, &mut [("a", &mut a), ("b", &mut b)], &mut spawn),
            None
        );
        let next = m.step(&W, 13, &mut [("a", &mut a), ("b", &mut b)], &mut spawn);
        assert_eq!(next, Some(RoundEvent::Started { round: 2 }));
        assert_eq!((m.score("a"), m.orbs.len()), (0, 1));
        assert_eq!(m.ticks_left(13), 10);
    }

    #[test]
    fn a_tie_has_every_top_scorer_as_winner_and_nobody_wins_an_empty_round() {
        let mut spawn = || (0.5, 0.5);
        let mut m = Match::new(Rules { orbs: 0, ..rules() }, &W, 0, &mut spawn);
        let (mut a, mut b) = (at(50.0, 50.0), at(300.0, 50.0));
        let mut last = None;
        for t in 1..=10 {
            last = m
                .step(&W, t, &mut [("a", &mut a), ("b", &mut b)], &mut spawn)
                .or(last);
        }
        assert_eq!(
            last,
            Some(RoundEvent::Ended {
                round: 1,
                winners: vec![],
                scores: vec![]
            })
        );
        m.scores.insert("a".into(), 3);
        m.scores.insert("b".into(), 3);
        m.scores.insert("c".into(), 1);
        let RoundEvent::Ended { winners, .. } = m.end_round(20) else {
            unreachable!()
        };
        assert_eq!(winners, vec!["a".to_string(), "b".to_string()]);
    }
}
