//! The game's hot paths: registry operations under contention, encoding a full room's
//! `state` frame (done once per room per tick, shared by every member), and one
//! member's share of a tick: its frames queued, taken for one flush and framed into a
//! WebSocket (the per-socket send path; the kernel's part is not in it).
//!
//! `cargo bench -p arena-server --bench hot_paths`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arena_protocol::ws::{ChatFrom, OrbState, PlayerState, RoundPhase, RoundState, ServerMessage};
use arena_server::frame::TextFrame;
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
    let message = room_state(64);
    c.bench_function("encode a full room's state frame (64 players)", |b| {
        b.iter(|| black_box(black_box(&message).encode()))
    });
    let text = message.encode();
    println!("state frame for 64 players: {} bytes", text.len());
}

fn send_path(c: &mut Criterion) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::new(RegistryLimits {
        max_per_user: 64,
        max_total: 1_000,
        outbound_queue: 256,
        close_timeout: Duration::from_millis(50),
    });
    let (registration, mut outbound) = registry.register(conn("u_member".into())).unwrap();
    let handle = registration.handle().clone();
    let chat = TextFrame::encode(&ServerMessage::Chat {
        room: "r_abcdefghijklmnop".into(),
        from: ChatFrom {
            id: "u_0000000000000001".into(),
            username: "player_1".into(),
        },
        text: "good game, one more round?".into(),
        ts: 1_796_000_000_000,
    });
    let state = TextFrame::encode(&room_state(20));
    // The server end of a WebSocket over an in-memory pipe whose other end is drained.
    let (server_io, mut client_io) = tokio::io::duplex(1 << 20);
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(8 * 1024);
    let mut ws = rt.block_on(tokio_tungstenite::WebSocketStream::from_raw_socket(
        server_io,
        Role::Server,
        Some(config),
    ));
    rt.spawn(async move {
        let _ = tokio::io::copy(&mut client_io, &mut tokio::io::sink()).await;
    });
    let message = |frame: TextFrame| {
        // SAFETY: a TextFrame's bytes are valid UTF-8; it was made from a `str`.
        Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(frame.bytes()) })
    };
    c.bench_function(
        "per-socket send path: a tick (2 chat lines + state) queued, taken, framed, flushed",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    handle.send(chat.clone());
                    handle.send(chat.clone());
                    handle.offer_state(state.clone());
                    let batch = outbound.take_pending(64);
                    assert_eq!(batch.len(), 3);
                    for frame in batch {
                        ws.feed(message(frame)).await.unwrap();
                    }
                    ws.flush().await.unwrap();
                })
            })
        },
    );
}

fn room_state(n: u64) -> ServerMessage {
    ServerMessage::State {
        room: "r_abcdefghijklmnop".into(),
        tick: 123_456,
        players: (0..n)
            .map(|i| PlayerState {
                id: format!("u_{i:016}"),
                username: format!("player_{i}"),
                x: 123.45 + i as f64,
                y: 67.89 + i as f64,
                last_seq: 100_000 + i,
                score: i as u32,
            })
            .collect(),
        orbs: (0..6)
            .map(|i| OrbState {
                id: 1_000 + i,
                x: 100.0 + 50.0 * i as f64,
                y: 200.5,
            })
            .collect(),
        round: Some(RoundState {
            number: 12,
            phase: RoundPhase::Playing,
            ends_at: 1_795_458_340_215,
        }),
    }
}

criterion_group!(benches, registry_contention, state_frame, send_path);
criterion_main!(benches);
