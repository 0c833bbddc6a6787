//! The per-request and per-upgrade cost of authentication, and the registry's hot paths.
//!
//! `cargo bench -p arena-server --bench auth`

use std::hint::black_box;
use std::time::Duration;

use arena_protocol::{CloseCode, Role};
use arena_server::auth::revocation::RevocationList;
use arena_server::auth::tokens::{TokenKeys, TokenSubject};
use arena_server::ids;
use arena_server::registry::{NewConnection, Registry, RegistryLimits};
use arena_server::store::RevokedSession;
use criterion::{criterion_group, criterion_main, Criterion};

fn verify(c: &mut Criterion) {
    let keys = TokenKeys::hs256(&[42u8; 48], "arena", "arena", 5).unwrap();
    let subject = TokenSubject {
        user_id: "u_benchmarkuser01",
        username: "benchmark_user",
        role: Role::Player,
        session_id: "s_benchmarksess01",
        auth_time: ids::now_secs(),
    };
    let (token, _) = keys.issue(&subject, ids::now_secs(), 900).unwrap();
    // A revocation list with 100k revoked sessions and 10k user marks, none of them ours.
    let list = RevocationList::new(905);
    for i in 0..100_000 {
        list.revoke_session(&RevokedSession {
            session_id: format!("s_{i}"),
            user_id: format!("u_{}", i % 10_000),
            access_expires_secs: ids::now_secs() + 900,
        });
    }
    for i in 0..10_000 {
        list.mark_user(&format!("u_{i}"), ids::now_secs());
    }

    c.bench_function("token verify (HS256) + revocation check", |b| {
        b.iter(|| {
            let claims = keys.verify(black_box(&token)).unwrap();
            black_box(list.ban(&claims.sub).is_some() || list.is_revoked(&claims))
        })
    });
    // What a swappable ring adds to every verification (and every signing): one read
    // lock and one `Arc` clone and drop.
    c.bench_function("keyring snapshot (read lock + Arc clone)", |b| {
        b.iter(|| black_box(keys.ring()))
    });
    // The crate's own decode with the same rules, as the floor our wrapper adds to.
    let mut rules = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    rules.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    rules.validate_nbf = true;
    rules.leeway = 5;
    rules.set_issuer(&["arena"]);
    rules.set_audience(&["arena"]);
    let secret = jsonwebtoken::DecodingKey::from_secret(&[42u8; 48]);
    c.bench_function("jsonwebtoken::decode alone (HS256, same rules)", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<arena_server::auth::tokens::Claims>(
                    black_box(&token),
                    &secret,
                    &rules,
                )
                .unwrap(),
            )
        })
    });
    c.bench_function("token verify (HS256) alone", |b| {
        b.iter(|| black_box(keys.verify(black_box(&token)).unwrap()))
    });
    c.bench_function("revocation check alone", |b| {
        let claims = keys.verify(&token).unwrap();
        b.iter(|| black_box(list.is_revoked(black_box(&claims))))
    });
}

fn registry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::new(RegistryLimits {
        max_per_user: 64,
        max_total: 100_000,
        outbound_queue: 16,
        close_timeout: Duration::from_millis(50),
    });
    // 10k other users online.
    let _others: Vec<_> = (0..10_000)
        .map(|i| registry.register(conn(&format!("u_{i}"), "s")).unwrap())
        .collect();

    c.bench_function("registry register + deregister", |b| {
        b.iter(|| {
            let r = registry.register(conn("u_bench", "s_bench")).unwrap();
            drop(black_box(r));
        })
    });

    // Logout with 10 sockets in the registry: request close, remove, wait for each to be
    // gone. The socket tasks are stood in for by dropping the registrations as soon as
    // their close is requested, so this measures the registry's own share.
    c.bench_function("close a session with 10 sockets (registry share)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let regs: Vec<_> = (0..10)
                    .map(|_| registry.register(conn("u_ten", "s_ten")).unwrap())
                    .collect();
                let waiters: Vec<_> = regs
                    .into_iter()
                    .map(|(reg, _rx)| {
                        tokio::spawn(async move {
                            reg.handle().closing().await;
                            drop(reg);
                        })
                    })
                    .collect();
                let closed = registry
                    .close_user("u_ten", Some("s_ten"), CloseCode::SessionRevoked, "x")
                    .await;
                assert_eq!(closed, 10);
                for w in waiters {
                    w.await.unwrap();
                }
            })
        })
    });
}

fn conn(user: &str, session: &str) -> NewConnection {
    NewConnection {
        user_id: user.into(),
        username: user.into(),
        session_id: session.into(),
        issued_at: 0,
        remote_addr: "127.0.0.1:1".parse().unwrap(),
        connected_at: 0,
    }
}

criterion_group!(benches, verify, registry);
criterion_main!(benches);
