//! The store's rules driven directly, on a real PostgreSQL database (each test creates and
//! drops its own) and on SQLite: the races here are between two transactions, and the
//! only way to hit the window between a read and a write reliably is to fire the two
//! store calls at once, many times, without HTTP in between.
//!
//! Black-box races through real servers live in `tests/tests/pg_races.rs`.

use std::sync::Arc;

use arena_protocol::{CloseCode, Role};
use arena_server::ids;
use arena_server::store::{
    CreateOutcome, KeyRow, KeyringRows, NewSession, OpenedKeyring, RefreshOutcome, RevocationEvent,
    Rotation, SessionPolicy, Store, UserRow,
};
use sqlx::Connection;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh PostgreSQL database, dropped at the end.
struct PgDatabase {
    name: String,
}

impl PgDatabase {
    async fn create(tag: &str) -> PgDatabase {
        let name = format!("arena_store_{tag}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(ADMIN_URL)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 is one of this project's services");
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        PgDatabase { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    async fn drop_now(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(ADMIN_URL).await {
            let _ = sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A data directory for the SQLite runs, removed by [`finish`].
fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("arena-store-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Drop the test's database and scratch directory.
async fn finish(db: PgDatabase, dir: std::path::PathBuf) {
    db.drop_now().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn new_user(store: &Store, name: &str) -> UserRow {
    let user = UserRow {
        id: ids::new_id("u"),
        username: name.to_string(),
        role: Role::Player,
        created_at: ids::now_ms(),
        tokens_valid_after_secs: 0,
    };
    assert!(store.create_user(&user, "not-a-real-hash").await.unwrap());
    user
}

/// Start a session whose first refresh token has hash `refresh_hash`.
async fn new_session(
    store: &Store,
    user: &UserRow,
    refresh_hash: &str,
    policy: &SessionPolicy,
) -> String {
    let id = ids::new_id("s");
    let written = store
        .create_session(
            &NewSession {
                id: id.clone(),
                user_id: user.id.clone(),
                user_agent: None,
                remote_addr: None,
                refresh_hash: refresh_hash.to_string(),
                refresh_ttl_ms: 3_600_000,
            },
            policy,
        )
        .await
        .unwrap();
    written.commit.unwrap();
    assert!(matches!(written.value, CreateOutcome::Created { .. }));
    id
}

fn policy(max_sessions: usize) -> SessionPolicy {
    SessionPolicy {
        replace_others: false,
        max_sessions,
        access_ttl_secs: 60,
    }
}

/// A refresh racing a logout on PostgreSQL. The rule: a refresh that succeeds committed
/// before the logout, so the logout's revocation covers the token it issued (the
/// in-memory entry is kept until the latest `exp` the logout saw). Without the guard
/// (`revoked_at IS NULL`) on the refresh's session update, the refresh could extend a
/// session the logout had already revoked, and its token would outlive the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_racing_a_logout_never_outlives_the_revocation() {
    let db = PgDatabase::create("refresh_logout").await;
    let data = scratch_dir("refresh");
    let store = Arc::new(Store::open(Some(&db.url()), &data).await.unwrap());
    let user = new_user(&store, "racer").await;
    let (mut rotated, mut refused) = (0, 0);
    for round in 0..200 {
        let old_hash = format!("old-{round}");
        let session = new_session(&store, &user, &old_hash, &policy(1_000)).await;
        let now = ids::now_ms();
        // Far beyond the session's own access expiry (now + 60 s), so it shows.
        let extended_to = now / 1000 + 10_000;
        let refresh = {
            let store = store.clone();
            tokio::spawn(async move {
                let new_hash = format!("new-{round}");
                store
                    .rotate_refresh(&Rotation {
                        old_hash: &old_hash,
                        new_hash: &new_hash,
                        access_expires_secs: extended_to,
                        refresh_ttl_ms: 3_600_000,
                        max_age_secs: 86_400,
                        grace_ms: 0,
                        now,
                    })
                    .await
            })
        };
        let logout = {
            let (store, user_id, session) = (store.clone(), user.id.clone(), session.clone());
            tokio::spawn(async move {
                store
                    .revoke_session(
                        &user_id,
                        &session,
                        "logout",
                        CloseCode::SessionRevoked,
                        now,
                        None,
                    )
                    .await
            })
        };
        let refreshed = refresh.await.unwrap().unwrap();
        let revoked = logout.await.unwrap().unwrap();
        refreshed.commit.unwrap();
        revoked.commit.unwrap();
        let revoked = match revoked.value.expect("the session exists").event {
            RevocationEvent::Sessions { sessions, .. } => sessions[0].clone(),
            other => panic!("round {round}: a logout logged {other:?}"),
        };
        match refreshed.value {
            RefreshOutcome::Rotated { .. } => {
                rotated += 1;
                assert!(
                    revoked.access_expires_secs >= extended_to,
                    "round {round}: the refresh extended the session to {extended_to} but the \
                     logout's revocation only covers tokens until {}",
                    revoked.access_expires_secs
                );
            }
            RefreshOutcome::Invalid => refused += 1,
            _ => panic!("round {round}: unexpected refresh outcome"),
        }
    }
    eprintln!("{rotated} refreshes won the race, {refused} lost it");
    store.close().await;
    finish(db, data).await;
}

/// A user never holds more live sessions than the limit: the oldest go first. Checked on
/// PostgreSQL with logins fired concurrently (the user-row lock orders them) and on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_per_user_are_bounded_even_when_logins_race() {
    let db = PgDatabase::create("session_limit").await;
    let data = scratch_dir("limit");
    for url in [Some(db.url()), None] {
        let store = Arc::new(Store::open(url.as_deref(), &data).await.unwrap());
        let user = new_user(&store, &format!("many{}", url.is_some())).await;
        let mut logins = Vec::new();
        for i in 0..24 {
            let (store, user) = (store.clone(), user.clone());
            logins.push(tokio::spawn(async move {
                new_session(
                    &store,
                    &user,
                    &format!("h{i}-{}", ids::random_token(4)),
                    &policy(5),
                )
                .await
            }));
        }
        for l in logins {
            l.await.unwrap();
        }
        let live = store.live_sessions(&user.id, ids::now_ms()).await.unwrap();
        assert_eq!(live.len(), 5, "url {url:?}: {} live sessions", live.len());
        store.close().await;
    }
    finish(db, data).await;
}

/// Pruning deletes ended sessions (with their refresh tokens) once their tokens can no
/// longer be alive, and keeps every live one. On PostgreSQL and SQLite.
#[tokio::test]
async fn pruning_deletes_only_what_can_no_longer_matter() {
    let db = PgDatabase::create("prune").await;
    let data = scratch_dir("prune");
    for url in [Some(db.url()), None] {
        let store = Store::open(url.as_deref(), &data).await.unwrap();
        let user = new_user(&store, &format!("pruned{}", url.is_some())).await;
        let live = new_session(&store, &user, &ids::random_token(8), &policy(100)).await;
        let ended = new_session(&store, &user, &ids::random_token(8), &policy(100)).await;
        let w = store
            .revoke_session(
                &user.id,
                &ended,
                "logout",
                CloseCode::SessionRevoked,
                ids::now_ms(),
                None,
            )
            .await
            .unwrap();
        w.commit.unwrap();
        let now = ids::now_ms();
        // Nothing is old enough yet: nothing goes.
        assert_eq!(
            store
                .prune(now, now / 1000 - 3_600, now - 3_600_000, 1)
                .await
                .unwrap(),
            0
        );
        // As if every token had expired: the ended session and its refresh token go (2
        // rows), the live one stays. A batch of 1 exercises the batching loop.
        let gone = store
            .prune(now, now / 1000 + 3_600, now - 3_600_000, 1)
            .await
            .unwrap();
        assert_eq!(gone, 2, "url {url:?}");
        let left = store.live_sessions(&user.id, now).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, live);
        assert!(store
            .live_revoked_sessions(0)
            .await
            .unwrap()
            .iter()
            .all(|s| s.session_id != ended));
        store.close().await;
    }
    finish(db, data).await;
}

/// Background writes that touch many session rows (the batched `last_seen_at` flush,
/// the prune) racing a revocation that sweeps the same user's sessions: on PostgreSQL,
/// row locks taken in two different orders deadlock, and the database then aborts one of
/// the two, possibly the ban. Neither may ever fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_writes_never_deadlock_with_a_revocation() {
    let db = PgDatabase::create("deadlock").await;
    let data = scratch_dir("deadlock");
    let store = Arc::new(Store::open(Some(&db.url()), &data).await.unwrap());
    for round in 0..15 {
        let user = new_user(&store, &format!("swept{round}")).await;
        let mut touched = Vec::new();
        for i in 0..8 {
            // Half of them already past their refresh expiry: what the prune deletes.
            let expired = i % 2 == 0;
            let id = ids::new_id("s");
            let written = store
                .create_session(
                    &NewSession {
                        id: id.clone(),
                        user_id: user.id.clone(),
                        user_agent: None,
                        remote_addr: None,
                        refresh_hash: ids::random_token(8),
                        refresh_ttl_ms: if expired { 0 } else { 3_600_000 },
                    },
                    &policy(1_000),
                )
                .await
                .unwrap();
            written.commit.unwrap();
            touched.push((id, ids::now_ms() + 1));
        }
        touched.reverse(); // the flush's order is not the sweep's
        let flush = {
            let store = store.clone();
            tokio::spawn(async move { store.touch_sessions(&touched).await })
        };
        let prune = {
            let store = store.clone();
            let now = ids::now_ms() + 10;
            tokio::spawn(async move { store.prune(now, now / 1000 + 3_600, 0, 1_000).await })
        };
        let ban = {
            let (store, user_id) = (store.clone(), user.id.clone());
            tokio::spawn(async move {
                store
                    .revoke_user(&user_id, "ban", CloseCode::Kicked, Some(None), None)
                    .await
            })
        };
        flush
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: the flush failed: {e}"));
        prune
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: the prune failed: {e}"));
        let banned = ban
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: the ban failed: {e}"))
            .expect("the user exists");
        banned
            .commit
            .unwrap_or_else(|e| panic!("round {round}: the ban's commit failed: {e}"));
    }
    store.close().await;
    finish(db, data).await;
}

// ---- the signing keyring ----

/// A key as `auth::keys` would make it (the store never reads the material).
fn key_row(now_secs: i64) -> KeyRow {
    KeyRow {
        kid: ids::random_token(9),
        alg: "HS256".into(),
        material: ids::random_token(32),
        created_at_secs: now_secs,
        retired_at_secs: None,
    }
}

/// Open the ring as a starting server does: a new key when there is no current one, or
/// when asked to rotate; keys retired more than a minute ago are pruned.
async fn open_ring(store: &Store, seed_chain: &str, rotate: bool) -> OpenedKeyring {
    let seed = KeyringRows {
        keys: Vec::new(),
        chain_key: seed_chain.to_string(),
    };
    let now = ids::now_secs();
    store
        .open_keyring(&seed, now - 60, |keys| {
            let current = keys.iter().any(|k| k.retired_at_secs.is_none());
            Ok((rotate || !current).then(|| key_row(now)))
        })
        .await
        .unwrap()
}

fn current_kids(ring: &KeyringRows) -> Vec<&str> {
    ring.keys
        .iter()
        .filter(|k| k.retired_at_secs.is_none())
        .map(|k| k.kid.as_str())
        .collect()
}

/// SQL on the database directly, around the store (as an operator would).
async fn raw_sql(url: &str, sql: &str) {
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
}

/// Three servers starting at once on a database with no ring end with one ring: one
/// creates it (with its own chain key) and the others read what it committed. Many
/// rounds on PostgreSQL (the ring deleted between them), a few on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_starting_at_once_end_with_one_keyring() {
    let db = PgDatabase::create("keyring").await;
    let data = scratch_dir("keyring");
    let sqlite_url = format!("sqlite://{}", data.join("arena.db").display());
    for (url, raw_url, rounds) in [(Some(db.url()), db.url(), 30), (None, sqlite_url, 5)] {
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(Arc::new(Store::open(url.as_deref(), &data).await.unwrap()));
        }
        for round in 0..rounds {
            raw_sql(
                &raw_url,
                "DELETE FROM signing_keys; DELETE FROM signing_keyring",
            )
            .await;
            let tasks: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(i, store)| {
                    let store = store.clone();
                    tokio::spawn(
                        async move { open_ring(&store, &format!("chain-{i}"), false).await },
                    )
                })
                .collect();
            let mut opened = Vec::new();
            for task in tasks {
                opened.push(task.await.unwrap());
            }
            let created: Vec<usize> = (0..3).filter(|&i| opened[i].created).collect();
            assert_eq!(created.len(), 1, "round {round}: created by {created:?}");
            let ring = &opened[0].ring;
            assert_eq!(ring.keys.len(), 1, "round {round}: one key made, not three");
            assert_eq!(current_kids(ring).len(), 1, "round {round}: {ring:?}");
            assert_eq!(ring.chain_key, format!("chain-{}", created[0]));
            for o in &opened {
                assert_eq!(
                    &o.ring, ring,
                    "round {round}: every server has the same ring"
                );
                assert!(o.event.is_none(), "round {round}: nothing to tell anyone");
            }
        }
        for store in &stores {
            store.close().await;
        }
    }
    finish(db, data).await;
}

/// Rotations fired from three servers at once run one after another under the ring's
/// lock: each retires the current key and adds its own, so one key is current at the end;
/// each is logged (`keys_changed`) for the other servers, by the server that made it. A
/// start that prunes keys retired too long ago logs too; one that changes nothing does
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotations_and_prunes_are_serialised_and_logged() {
    let db = PgDatabase::create("rotation").await;
    let data = scratch_dir("rotation");
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(Store::open(Some(&db.url()), &data).await.unwrap()));
    }
    let first = open_ring(&stores[0], "chain", false).await;
    assert!(first.created && first.event.is_none());
    let head = stores[0].log_head().await.unwrap();

    let tasks: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move { open_ring(&store, "unused", true).await })
        })
        .collect();
    for task in tasks {
        let opened = task.await.unwrap();
        assert!(opened.rotated && !opened.created);
        assert_eq!(current_kids(&opened.ring).len(), 1);
    }
    let ring = stores[1].keyring().await.unwrap().expect("a ring");
    assert_eq!(ring.keys.len(), 4, "{ring:?}");
    assert_eq!(current_kids(&ring).len(), 1);
    assert_eq!(ring.chain_key, "chain", "a rotation keeps the chain key");
    let events = stores[0].events_from(head.id + 1, 100).await.unwrap();
    assert_eq!(events.len(), 3);
    let mut origins: Vec<_> = events.iter().map(|e| e.origin.clone()).collect();
    origins.sort();
    let mut want: Vec<_> = stores.iter().map(|s| s.origin().to_string()).collect();
    want.sort();
    assert_eq!(origins, want);
    assert!(events
        .iter()
        .all(|e| e.event == RevocationEvent::KeysChanged {}));

    // The retired keys as if retired long ago: the next start prunes them, and says so.
    raw_sql(
        &db.url(),
        "UPDATE signing_keys SET retired_at_secs = 1 WHERE retired_at_secs IS NOT NULL",
    )
    .await;
    let pruned = open_ring(&stores[2], "unused", false).await;
    assert_eq!(pruned.pruned, 3);
    assert_eq!(pruned.ring.keys.len(), 1);
    assert_eq!(
        pruned.event.map(|e| e.event),
        Some(RevocationEvent::KeysChanged {})
    );
    let quiet = open_ring(&stores[0], "unused", false).await;
    assert!(quiet.event.is_none() && quiet.pruned == 0 && !quiet.rotated);
    assert_eq!(quiet.ring, pruned.ring);
    // Two current keys are refused by the database itself.
    let two = format!(
        "INSERT INTO signing_keys (kid, alg, material, created_at_secs)
         VALUES ('second', 'HS256', 'x', {})",
        ids::now_secs()
    );
    let mut conn = sqlx::AnyConnection::connect(&db.url()).await.unwrap();
    assert!(sqlx::raw_sql(&two).execute(&mut conn).await.is_err());
    drop(conn);
    for store in &stores {
        store.close().await;
    }
    finish(db, data).await;
}
