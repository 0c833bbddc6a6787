//! Movement rules, server-authoritative and free of I/O: a client only states the
//! direction it wants; the server moves the player at a fixed speed inside the arena.

use arena_protocol::ws::WorldInfo;

/// The arena's size and the players' speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct World {
    pub width: f64,
    pub height: f64,
    /// Units per second.
    pub speed: f64,
}

impl World {
    pub const DEFAULT: World = World {
        width: 960.0,
        height: 540.0,
        speed: 240.0,
    };

    pub fn info(&self, tick_hz: u32) -> WorldInfo {
        WorldInfo {
            width: self.width,
            height: self.height,
            speed: self.speed,
            tick_hz,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Player {
    pub x: f64,
    pub y: f64,
    /// The intended direction, each component in -1..=1 and length at most 1.
    pub dx: f64,
    pub dy: f64,
    /// The last input `seq` applied (0 before any).
    pub last_seq: u64,
}

impl Player {
    /// A player placed deterministically from `seed`, away from the walls.
    pub fn spawn(world: &World, seed: u64) -> Player {
        let margin = 40.0;
        let fx = (seed % 1000) as f64 / 1000.0;
        let fy = ((seed / 1000) % 1000) as f64 / 1000.0;
        Player {
            x: margin + fx * (world.width - 2.0 * margin),
            y: margin + fy * (world.height - 2.0 * margin),
            dx: 0.0,
            dy: 0.0,
            last_seq: 0,
        }
    }

    /// Record an input. Inputs arrive in order on one socket, but a client may restart its
    /// counter or resend: only a `seq` newer than the last applied one counts. Components
    /// are clamped to -1..=1 and the vector to length 1, so diagonals are not faster.
    /// Returns whether the input was applied.
    pub fn apply_input(&mut self, seq: u64, dx: f64, dy: f64) -> bool {
        if seq <= self.last_seq {
            return false;
        }
        let (mut dx, mut dy) = (clamp_unit(dx), clamp_unit(dy));
        let len = (dx * dx + dy * dy).sqrt();
        if len > 1.0 {
            dx /= len;
            dy /= len;
        }
        self.dx = dx;
        self.dy = dy;
        self.last_seq = seq;
        true
    }

    /// Move for `dt` seconds, staying inside the arena.
    pub fn step(&mut self, world: &World, dt: f64) {
        self.x = (self.x + self.dx * world.speed * dt).clamp(0.0, world.width);
        self.y = (self.y + self.dy * world.speed * dt).clamp(0.0, world.height);
    }
}

fn clamp_unit(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: World = World {
        width: 100.0,
        height: 50.0,
        speed: 10.0,
    };

    fn at(x: f64, y: f64) -> Player {
        Player {
            x,
            y,
            dx: 0.0,
            dy: 0.0,
            last_seq: 0,
        }
    }

    #[test]
    fn moves_at_the_fixed_speed() {
        let mut p = at(10.0, 10.0);
        assert!(p.apply_input(1, 1.0, 0.0));
        p.step(&W, 0.5);
        assert_eq!((p.x, p.y), (15.0, 10.0));
        p.step(&W, 0.05);
        assert!((p.x - 15.5).abs() < 1e-9);
    }

    #[test]
    fn inputs_are_clamped_never_trusted() {
        let mut p = at(10.0, 10.0);
        p.apply_input(1, 50.0, -7.0);
        // Clamped to (1, -1), then normalised: the speed is never exceeded.
        assert!((p.dx - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9);
        assert!((p.dy + std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9);
        let before = (p.x, p.y);
        p.step(&W, 1.0);
        let moved = ((p.x - before.0).powi(2) + (p.y - before.1).powi(2)).sqrt();
        assert!((moved - W.speed).abs() < 1e-9);
        p.apply_input(2, f64::NAN, 0.5);
        assert_eq!((p.dx, p.dy), (0.0, 0.5));
    }

    #[test]
    fn stays_inside_the_bounds() {
        let mut p = at(99.0, 1.0);
        p.apply_input(1, 1.0, -1.0);
        for _ in 0..100 {
            p.step(&W, 0.1);
        }
        assert_eq!((p.x, p.y), (100.0, 0.0));
        p.apply_input(2, -1.0, 1.0);
        for _ in 0..1000 {
            p.step(&W, 0.1);
        }
        assert_eq!((p.x, p.y), (0.0, 50.0));
    }

    #[test]
    fn only_newer_seq_applies() {
        let mut p = at(0.0, 0.0);
        assert!(p.apply_input(5, 1.0, 0.0));
        assert!(!p.apply_input(4, -1.0, 0.0));
        assert!(!p.apply_input(5, -1.0, 0.0));
        assert_eq!((p.dx, p.last_seq), (1.0, 5));
        assert!(p.apply_input(6, 0.0, 0.0));
        assert_eq!(p.last_seq, 6);
    }

    #[test]
    fn spawn_is_inside() {
        for seed in [0, 1, 999, 123_456, u64::MAX] {
            let p = Player::spawn(&World::DEFAULT, seed);
            assert!(p.x >= 0.0 && p.x <= World::DEFAULT.width);
            assert!(p.y >= 0.0 && p.y <= World::DEFAULT.height);
        }
    }
}
