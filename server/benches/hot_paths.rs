//! The game's hot paths: registry operations under contention, and encoding a full
//! room's `state` frame (done once per room per tick, shared by every member).
//!
//! `cargo bench -p arena-server --bench hot_paths`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arena_protocol::ws::{PlayerState, ServerMessage};
use arena_server::registry::{NewConnection, Registry, RegistryLimits};
use criterion::{criterion_group, criterion_main, Criterion};

fn conn(user: String) -> NewConnection {
    NewConnection {
        user_id: user.clone(),
        username: user,
        session_id: "s".into(),
        issued_at: 0,
        remote_addr: "127.0.0.1:1".parse().unwrap(),
        connected_at: 0,
    }
}

fn registry_contention(c: &mut Criterion) {
    let registry = Registry::new(RegistryLimits {
        max_per_user: 64,
        max_total: 1_000_000,
        outbound_queue: 16,
        close_timeout: Duration::from_millis(50),
    });
    let _online: Vec<_> = (0..10_000)
        .map(|i| registry.register(conn(format!("u_{i}"))).unwrap())
        .collect();
    // Two threads register and drop sockets while this thread measures: the contention
    // a busy server sees between upgrades, closes and admin listings.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..2)
        .map(|t| {
            let (registry, stop) = (registry.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = registry.register(conn(format!("noise_{t}_{}", i % 512)));
                    drop(r);
                    i += 1;
                }
            })
        })
        .collect();
    c.bench_function("registry register + drop, 2 threads contending", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            drop(black_box(
                registry
                    .register(conn(format!("bench_{}", i % 1024)))
                    .unwrap(),
            ));
        })
    });
    c.bench_function("registry lookup: sockets of one user by session", |b| {
        b.iter(|| black_box(registry.sockets_by_session(black_box("u_4242"))))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for n in noise {
        let _ = n.join();
    }
}

fn state_frame(c: &mut Criterion) {
    let players: Vec<PlayerState> = (0..64)
        .map(|i| PlayerState {
            id: format!("u_{i:016}"),
            username: format!("player_{i}"),
            x: 123.45 + i as f64,
            y: 67.89 + i as f64,
            last_seq: 100_000 + i,
        })
        .collect();
    let message = ServerMessage::State {
        room: "r_abcdefghijklmnop".into(),
        tick: 123_456,
        players,
    };
    c.bench_function("encode a full room's state frame (64 players)", |b| {
        b.iter(|| black_box(black_box(&message).encode()))
    });
    let text = message.encode();
    println!("state frame for 64 players: {} bytes", text.len());
}

criterion_group!(benches, registry_contention, state_frame);
criterion_main!(benches);
