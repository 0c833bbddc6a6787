//! Issue 9: the database rules under real concurrency on PostgreSQL.
//!
//! SQLite has one writer, so a transaction there cannot be overtaken between its read and
//! its write; PostgreSQL's READ COMMITTED lets two transactions interleave, and each
//! statement sees only what was committed when it began. Each test here fires a racing
//! pair (login and ban, ban and unban, ...) at a real `arena-server` on the machine's
//! PostgreSQL, many rounds, and asserts the rule after every round, naming the round and
//! what each side answered when it breaks. Timing offsets are swept across rounds so the
//! pair meets at the moments that matter (after Argon2, inside the other's transaction).
//!
//! Each test gets its own database (dropped afterwards) and its own server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arena_tests::*;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::Barrier;

/// A server on its own fresh PostgreSQL database, with an admin.
struct Pg {
    // Field order is drop order: the server goes before its database.
    server: Arc<TestServer>,
    admin: String,
    _data: DataDir,
    _db: PgDatabase,
}

impl Pg {
    async fn start(extra: &[&str]) -> Pg {
        let db = PgDatabase::create();
        let url = db.url();
        let data = DataDir::new();
        let mut args = vec!["--database-url", url.as_str()];
        args.extend_from_slice(extra);
        let (server, admin) = start_with_admin(&data, &args).await;
        Pg {
            server: Arc::new(server),
            admin,
            _data: data,
            _db: db,
        }
    }

    fn db(&self) -> &PgDatabase {
        &self._db
    }
}

type Job<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Run each job on its own task of the multi-threaded runtime, all released by one
/// barrier, and return their results in order.
async fn together<T: Send + 'static>(jobs: Vec<Job<T>>) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                job.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("racing task panicked"));
    }
    out
}

/// A job that waits `delay`, then runs `f`.
fn after<T, F>(delay: Duration, f: F) -> Job<T>
where
    F: Future<Output = T> + Send + 'static,
{
    Box::pin(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        f.await
    })
}

async fn login_raw(server: &TestServer, username: &str, password: &str) -> (u16, Value) {
    server
        .post(
            "/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await
}

async fn ban(server: &TestServer, admin: &str, user_id: &str) -> (u16, Value) {
    server
        .post(
            &format!("/admin/users/{user_id}/ban"),
            Some(admin),
            json!({"reason": "race"}),
        )
        .await
}

async fn unban(server: &TestServer, admin: &str, user_id: &str) -> (u16, Value) {
    server
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/users/{user_id}/ban"),
            Some(admin),
            None,
        )
        .await
}

async fn set_role(server: &TestServer, admin: &str, user_id: &str, role: &str) -> (u16, Value) {
    server
        .request(
            reqwest::Method::PUT,
            &format!("/admin/users/{user_id}/role"),
            Some(admin),
            Some(json!({ "role": role })),
        )
        .await
}

/// The claims of a JWT the server issued (its base64url middle part).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url JWT payload");
    serde_json::from_slice(&bytes).expect("JSON JWT payload")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

/// The median time a login takes end to end (mostly Argon2), to aim the other side of a
/// race at the login's transaction, which runs after the hash.
async fn login_latency(server: &TestServer, username: &str, password: &str) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = login_raw(server, username, password).await;
        assert_eq!(status, 200, "calibration login: {body}");
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[2]
}

/// Offsets swept across rounds: `round` picks one of `steps` points spread evenly over
/// `[from, to]`.
fn sweep(round: usize, steps: usize, from: Duration, to: Duration) -> Duration {
    let i = (round % steps) as u32;
    let span = to.saturating_sub(from);
    from + span * i / (steps as u32 - 1).max(1)
}

// ---- 1. single-session mode: concurrent logins leave exactly one session ----

const SINGLE_SESSION_ROUNDS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_in_single_session_mode_leave_exactly_one_session() {
    let pg = Pg::start(&["--single-session"]).await;
    let server = pg.server.clone();
    let p = server.new_player("ss").await;
    let started = Instant::now();

    for round in 0..SINGLE_SESSION_ROUNDS {
        // Alternate pairs and groups of four.
        let n = if round % 2 == 0 { 2 } else { 4 };
        let jobs: Vec<Job<(u16, Value)>> = (0..n)
            .map(|_| {
                let (s, u, pw) = (server.clone(), p.username.clone(), p.password.clone());
                after(Duration::ZERO, async move { login_raw(&s, &u, &pw).await })
            })
            .collect();
        let answers = together(jobs).await;
        let mut sessions = Vec::new();
        for (status, body) in &answers {
            assert_eq!(
                *status, 200,
                "round {round} ({n} logins): a login answered {body}"
            );
            sessions.push((
                str_of(body, "session_id").to_string(),
                str_of(body, "access_token").to_string(),
            ));
        }

        let mut working = Vec::new();
        for (sid, token) in &sessions {
            let (status, body) = server.get("/auth/me", Some(token)).await;
            match status {
                200 => working.push((sid.clone(), token.clone())),
                401 => assert_error(status, &body, 401, "token_revoked"),
                _ => panic!("round {round}: /auth/me of session {sid} answered {status} {body}"),
            }
        }
        let working_ids: Vec<&str> = working.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            working.len(),
            1,
            "round {round}: {n} concurrent logins in single-session mode; the access tokens \
             of {working_ids:?} all still authenticate (want exactly one of {:?})",
            sessions.iter().map(|(s, _)| s).collect::<Vec<_>>()
        );
        for (sid, token) in &working {
            let (status, list) = server.get("/auth/sessions", Some(token)).await;
            assert_eq!(status, 200, "round {round}: {list}");
            let live: Vec<&str> = list["sessions"]
                .as_array()
                .expect("sessions")
                .iter()
                .filter_map(|s| s["session_id"].as_str())
                .collect();
            assert_eq!(
                live,
                vec![sid.as_str()],
                "round {round}: {n} concurrent logins in single-session mode left these \
                 sessions live in the database: {live:?}"
            );
        }
    }
    eprintln!(
        "single-session: {SINGLE_SESSION_ROUNDS} rounds held in {:?}",
        started.elapsed()
    );
}

// ---- 2. a login racing a ban ----

const LOGIN_BAN_ROUNDS: usize = 80;
const LOGINS_PER_BAN: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_racing_a_ban_does_not_outlive_it() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let p = server.new_player("lb").await;
    let latency = login_latency(&server, &p.username, &p.password).await;
    let (mut won, mut refused) = (0, 0);
    let started = Instant::now();

    for round in 0..LOGIN_BAN_ROUNDS {
        // The login's transaction runs after its Argon2 hash: aim the ban around there.
        let delay = sweep(round, 16, latency / 2, latency * 3 / 2);
        let mut jobs: Vec<Job<(u16, Value)>> = (0..LOGINS_PER_BAN)
            .map(|_| {
                let (s, u, pw) = (server.clone(), p.username.clone(), p.password.clone());
                after(Duration::ZERO, async move { login_raw(&s, &u, &pw).await })
            })
            .collect();
        let (s, admin, id) = (server.clone(), pg.admin.clone(), p.id().to_string());
        jobs.push(after(delay, async move { ban(&s, &admin, &id).await }));
        let mut answers = together(jobs).await;
        let (ban_status, ban_body) = answers.pop().expect("ban answer");
        assert_eq!(ban_status, 200, "round {round}: ban answered {ban_body}");
        let (status, body) = unban(&server, &pg.admin, p.id()).await;
        assert_eq!(status, 204, "round {round}: unban answered {body}");

        for (i, (status, body)) in answers.iter().enumerate() {
            match status {
                403 => {
                    assert_error(*status, body, 403, "banned");
                    refused += 1;
                    continue;
                }
                200 => won += 1,
                _ => panic!("round {round}: login {i} answered {status} {body}"),
            }
            let sid = str_of(body, "session_id");
            let (r_status, r_body) = server.refresh(str_of(body, "refresh_token")).await;
            assert_eq!(
                r_status, 401,
                "round {round} (ban {delay:?} after the logins): login {i} answered 200 \
                 (session {sid}) while the ban was in flight, and after the unban its refresh \
                 token still works: {r_body}"
            );
            let (m_status, m_body) = server
                .get("/auth/me", Some(str_of(body, "access_token")))
                .await;
            assert_eq!(
                m_status, 401,
                "round {round}: login {i}'s access token (session {sid}) still authenticates \
                 after ban and unban: {m_body}"
            );
        }
    }
    eprintln!(
        "login vs ban: {LOGIN_BAN_ROUNDS} rounds held in {:?} ({won} logins won, {refused} \
         refused; login latency {latency:?})",
        started.elapsed()
    );
    assert!(won > 0 && refused > 0, "the logins never raced the ban");
}

// ---- 3. a login racing a demotion ----

const DEMOTION_ROUNDS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_racing_a_demotion_never_yields_a_working_admin_token() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let b = server.new_player("dm").await;
    let latency = login_latency(&server, &b.username, &b.password).await;
    let mut admin_tokens_minted = 0;
    let started = Instant::now();

    for round in 0..DEMOTION_ROUNDS {
        let (status, body) = set_role(&server, &pg.admin, b.id(), "admin").await;
        assert_eq!(status, 200, "round {round}: promotion answered {body}");

        // The login reads the role, then hashes: aim the demotion inside the hash.
        let delay = sweep(round, 8, Duration::ZERO, latency * 3 / 4);
        let (s, u, pw) = (server.clone(), b.username.clone(), b.password.clone());
        let login = after(Duration::ZERO, async move { login_raw(&s, &u, &pw).await });
        let (s, admin, id) = (server.clone(), pg.admin.clone(), b.id().to_string());
        let demote = after(
            delay,
            async move { set_role(&s, &admin, &id, "player").await },
        );
        let mut answers = together(vec![login, demote]).await;
        let (d_status, d_body) = answers.pop().expect("demotion answer");
        let (l_status, l_body) = answers.pop().expect("login answer");
        assert_eq!(d_status, 200, "round {round}: demotion answered {d_body}");
        assert_eq!(l_status, 200, "round {round}: login answered {l_body}");

        let token = str_of(&l_body, "access_token");
        let c = claims(token);
        if c["role"] != "admin" {
            continue;
        }
        admin_tokens_minted += 1;
        let (status, body) = server.get("/admin/connections", Some(token)).await;
        assert!(
            status == 401 || status == 403,
            "round {round} (demotion {delay:?} after the login): the login minted a token \
             with role admin (iat {}, session {}) and after the demotion answered, an admin \
             route still accepts it: {status} {body}",
            c["iat"],
            c["sid"]
        );
    }
    eprintln!(
        "login vs demotion: {DEMOTION_ROUNDS} rounds held in {:?} ({admin_tokens_minted} \
         admin-role tokens minted during a demotion; login latency {latency:?})",
        started.elapsed()
    );
}

// ---- 4. a role change commits its revocation with it ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_change_whose_revocation_fails_is_revoked_on_retry() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let b = server.new_player("rc").await;
    let (status, body) = set_role(&server, &pg.admin, b.id(), "admin").await;
    assert_eq!(status, 200, "promotion: {body}");
    let b_admin = server.login(&b.username, &b.password).await;
    assert_eq!(claims(&b_admin.access_token)["role"], "admin");
    assert_eq!(
        server
            .get("/admin/connections", Some(&b_admin.access_token))
            .await
            .0,
        200
    );
    let mut socket = server.ws_ok(&b_admin.access_token).await;

    // Make revoking a session fail, and nothing else: the role UPDATE on `users` passes.
    pg.db().psql(
        "CREATE FUNCTION arena_fail_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected by the test: revocation fails'; END $$;
         CREATE TRIGGER arena_fail_revocation BEFORE UPDATE ON sessions FOR EACH ROW
         WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
         EXECUTE FUNCTION arena_fail_revocation();",
    );
    let (status, body) = set_role(&server, &pg.admin, b.id(), "player").await;
    assert_error(status, &body, 500, "internal");
    pg.db()
        .psql("DROP TRIGGER arena_fail_revocation ON sessions");

    // The admin retries: whatever the first attempt left behind, the demotion must now be
    // complete, revocation included.
    let (status, body) = set_role(&server, &pg.admin, b.id(), "player").await;
    assert_eq!(status, 200, "retried demotion: {body}");
    assert_eq!(body["user"]["role"], "player", "{body}");
    let (status, c_body) = server
        .get("/admin/connections", Some(&b_admin.access_token))
        .await;
    assert_eq!(
        status, 401,
        "after a demotion that failed half-way (500) and its retry ({body}), the demoted \
         user's admin token still opens an admin route: {status} {c_body}"
    );
    assert_error(status, &c_body, 401, "token_revoked");
    // PROTOCOL.md says 4003 for a role change, the server sends 4001 (lifecycle.rs
    // asserts 4001): either way the socket must be closed, not left open.
    let code = socket.close_code().await;
    assert!(code == 4001 || code == 4003, "closed with {code}");
}

// ---- 5. ban and unban racing: memory and database agree ----

const BAN_UNBAN_ROUNDS: usize = 50;
/// Independent users raced in each round: four pairs per round for the price of one
/// round of logins.
const BAN_UNBAN_USERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ban_and_unban_racing_leave_memory_and_database_agreeing() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let mut users = Vec::new();
    for _ in 0..BAN_UNBAN_USERS {
        users.push(Arc::new(server.new_player("bu").await));
    }
    // Each user's token from before any ban: from the first ban on, its session is
    // revoked, so it answers 403 `banned` exactly when memory holds a ban, else 401
    // `token_revoked`.
    let (mut banned, mut free) = (0, 0);
    let started = Instant::now();

    for round in 0..BAN_UNBAN_ROUNDS {
        // A ban row already in place makes the unban's DELETE wait on the ban's row lock,
        // so both handlers wake on the same commit and race to apply to memory. Every
        // other round starts unbanned instead.
        let prebanned = round % 2 == 0;
        if prebanned {
            for p in &users {
                let (status, body) = ban(&server, &pg.admin, p.id()).await;
                assert_eq!(status, 200, "round {round}: setup ban {body}");
            }
        }
        let jitter = |k: usize| Duration::from_micros(((round + k) as u64 % 7) * 300);
        let mut jobs: Vec<Job<(u16, Value)>> = Vec::new();
        for (k, p) in users.iter().enumerate() {
            let (s, admin, id) = (server.clone(), pg.admin.clone(), p.id().to_string());
            jobs.push(after(
                Duration::ZERO,
                async move { ban(&s, &admin, &id).await },
            ));
            let (s, admin, id) = (server.clone(), pg.admin.clone(), p.id().to_string());
            jobs.push(after(
                jitter(k),
                async move { unban(&s, &admin, &id).await },
            ));
        }
        let answers = together(jobs).await;
        for (k, pair) in answers.chunks(2).enumerate() {
            assert_eq!(pair[0].0, 200, "round {round} user {k}: ban {}", pair[0].1);
            assert_eq!(
                pair[1].0, 204,
                "round {round} user {k}: unban {}",
                pair[1].1
            );
        }

        let logins: Vec<Job<(u16, Value)>> = users
            .iter()
            .map(|p| {
                let (s, p) = (server.clone(), p.clone());
                after(Duration::ZERO, async move {
                    login_raw(&s, &p.username, &p.password).await
                })
            })
            .collect();
        let logins = together(logins).await;
        for (k, (p, (l_status, l_body))) in users.iter().zip(&logins).enumerate() {
            let db_banned = match l_status {
                200 => false,
                403 => {
                    assert_error(*l_status, l_body, 403, "banned");
                    true
                }
                _ => panic!("round {round} user {k}: login answered {l_status} {l_body}"),
            };
            let (m_status, m_body) = server.get("/auth/me", Some(p.token())).await;
            let memory_banned = match m_status {
                403 => {
                    assert_error(m_status, &m_body, 403, "banned");
                    true
                }
                401 => {
                    assert_error(m_status, &m_body, 401, "token_revoked");
                    false
                }
                _ => panic!("round {round} user {k}: /auth/me answered {m_status} {m_body}"),
            };
            assert_eq!(
                db_banned,
                memory_banned,
                "round {round} user {k} (unban {:?} after the ban, {}): the database says \
                 {} (login answered {l_status}) but memory says {} (/auth/me with a token \
                 from before answered {m_status})",
                jitter(k),
                if prebanned {
                    "already banned"
                } else {
                    "not banned"
                },
                if db_banned { "banned" } else { "not banned" },
                if memory_banned {
                    "banned"
                } else {
                    "not banned"
                },
            );
            if db_banned {
                banned += 1;
            } else {
                free += 1;
            }
        }
    }
    eprintln!(
        "ban vs unban: {BAN_UNBAN_ROUNDS} rounds x {BAN_UNBAN_USERS} users agreed in {:?} \
         ({banned} ended banned, {free} unbanned)",
        started.elapsed()
    );
}

// ---- 6. refresh racing logout ----

const REFRESH_LOGOUT_ROUNDS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_racing_a_logout_does_not_revive_the_session() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let p = server.new_player("rl").await;
    // Another device of the same user, to look at the session list from.
    let witness = p.token().to_string();
    let (mut refreshed, mut refused) = (0, 0);
    let started = Instant::now();

    for round in 0..REFRESH_LOGOUT_ROUNDS {
        let session = server.login(&p.username, &p.password).await;
        let sid = session.session_id.clone();
        let jitter = Duration::from_micros((round as u64 % 10) * 200);
        let (s, rt) = (server.clone(), session.refresh_token.clone());
        let refresh = after(Duration::ZERO, async move { s.refresh(&rt).await });
        let (s, at) = (server.clone(), session.access_token.clone());
        let logout = after(
            jitter,
            async move { (s.logout(&at, false).await, Value::Null) },
        );
        let mut answers = together(vec![refresh, logout]).await;
        let (lo_status, _) = answers.pop().expect("logout answer");
        let (r_status, r_body) = answers.pop().expect("refresh answer");
        assert_eq!(lo_status, 204, "round {round}: logout answered {lo_status}");

        match r_status {
            200 => {
                refreshed += 1;
                let (status, body) = server
                    .get("/auth/me", Some(str_of(&r_body, "access_token")))
                    .await;
                assert_eq!(
                    status, 401,
                    "round {round}: the refresh won the race with the logout of session \
                     {sid}, and after the logout answered its access token still works: {body}"
                );
                let (status, body) = server.refresh(str_of(&r_body, "refresh_token")).await;
                assert_eq!(
                    status, 401,
                    "round {round}: after the logout of session {sid}, the refresh token a \
                     racing refresh got still refreshes: {body}"
                );
            }
            401 => {
                assert_error(r_status, &r_body, 401, "refresh_invalid");
                refused += 1;
            }
            _ => panic!("round {round}: refresh answered {r_status} {r_body}"),
        }
        let (status, body) = server.refresh(&session.refresh_token).await;
        assert_eq!(
            status, 401,
            "round {round}: after the logout of session {sid} its first refresh token answers {body}"
        );
        let (status, list) = server.get("/auth/sessions", Some(&witness)).await;
        assert_eq!(status, 200, "round {round}: witness {list}");
        let listed = list["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .any(|s| s["session_id"] == sid.as_str());
        assert!(
            !listed,
            "round {round}: session {sid} was logged out while a refresh raced it, and it \
             is still listed as live: {list}"
        );
    }
    eprintln!(
        "refresh vs logout: {REFRESH_LOGOUT_ROUNDS} rounds held in {:?} ({refreshed} refreshes \
         won, {refused} refused)",
        started.elapsed()
    );
}

// ---- 7. logout-all racing a login (and a refresh) ----

const LOGOUT_ALL_ROUNDS: usize = 40;

/// The rule: no session that existed when logout-all began survives it, not even one
/// being refreshed at that moment. A login racing it may legitimately survive (it is a
/// new login), so it is only observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_all_racing_a_login_ends_every_session_that_existed_before_it() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let p = server.new_player("la").await;
    let latency = login_latency(&server, &p.username, &p.password).await;
    let (mut new_alive, mut new_revoked, mut split) = (0, 0, 0);
    let started = Instant::now();

    for round in 0..LOGOUT_ALL_ROUNDS {
        let logins: Vec<Job<(u16, Value)>> = (0..2)
            .map(|_| {
                let (s, u, pw) = (server.clone(), p.username.clone(), p.password.clone());
                after(Duration::ZERO, async move { login_raw(&s, &u, &pw).await })
            })
            .collect();
        let existing: Vec<Value> = together(logins)
            .await
            .into_iter()
            .map(|(status, body)| {
                assert_eq!(status, 200, "round {round}: setup login {body}");
                body
            })
            .collect();

        // The racing login's transaction comes after its hash: aim the logout-all there.
        let delay = sweep(round, 10, latency / 2, latency * 3 / 2);
        let (s, u, pw) = (server.clone(), p.username.clone(), p.password.clone());
        let login = after(Duration::ZERO, async move { login_raw(&s, &u, &pw).await });
        let (s, rt) = (
            server.clone(),
            str_of(&existing[1], "refresh_token").to_string(),
        );
        let refresh = after(delay, async move { s.refresh(&rt).await });
        let (s, at) = (
            server.clone(),
            str_of(&existing[0], "access_token").to_string(),
        );
        let logout_all = after(
            delay,
            async move { (s.logout(&at, true).await, Value::Null) },
        );
        let answers = together(vec![login, refresh, logout_all]).await;
        let (l_status, l_body) = &answers[0];
        let (r_status, r_body) = &answers[1];
        assert_eq!(
            answers[2].0, 204,
            "round {round}: logout-all answered {}",
            answers[2].0
        );
        assert_eq!(*l_status, 200, "round {round}: racing login {l_body}");

        // Every session that existed before: access and refresh tokens dead, not listed.
        let mut dead_tokens = vec![
            (
                0,
                str_of(&existing[0], "access_token").to_string(),
                "access",
            ),
            (
                1,
                str_of(&existing[1], "access_token").to_string(),
                "access",
            ),
        ];
        match r_status {
            200 => dead_tokens.push((
                1,
                str_of(r_body, "access_token").to_string(),
                "refreshed access",
            )),
            401 => assert_error(*r_status, r_body, 401, "refresh_invalid"),
            _ => panic!("round {round}: racing refresh answered {r_status} {r_body}"),
        }
        for (i, token, what) in &dead_tokens {
            let (status, body) = server.get("/auth/me", Some(token)).await;
            assert_eq!(
                status,
                401,
                "round {round}: the {what} token of session {} (existed before logout-all) \
                 still works after logout-all answered: {body}",
                str_of(&existing[*i], "session_id")
            );
        }
        let mut refresh_tokens = vec![(0, str_of(&existing[0], "refresh_token").to_string())];
        if *r_status == 200 {
            refresh_tokens.push((1, str_of(r_body, "refresh_token").to_string()));
        }
        for (i, token) in &refresh_tokens {
            let (status, body) = server.refresh(token).await;
            assert_eq!(
                status,
                401,
                "round {round}: session {} existed before logout-all, and a refresh token of \
                 it still refreshes: {body}",
                str_of(&existing[*i], "session_id")
            );
        }

        // The racing login: either outcome is legal; look at it from its own tokens.
        let new_sid = str_of(l_body, "session_id");
        let me = server
            .get("/auth/me", Some(str_of(l_body, "access_token")))
            .await
            .0;
        let (rs, rb) = server.refresh(str_of(l_body, "refresh_token")).await;
        match (me, rs) {
            (200, 200) => {
                new_alive += 1;
                let (status, list) = server
                    .get("/auth/sessions", Some(str_of(&rb, "access_token")))
                    .await;
                assert_eq!(status, 200, "round {round}: {list}");
                for old in &existing {
                    let old_sid = str_of(old, "session_id");
                    assert!(
                        list["sessions"]
                            .as_array()
                            .expect("sessions")
                            .iter()
                            .all(|s| s["session_id"] != old_sid),
                        "round {round}: session {old_sid} existed before logout-all and is \
                         still listed as live next to the new login's {new_sid}: {list}"
                    );
                }
                // End it, so the next round starts from the sessions it creates.
                assert_eq!(server.logout(str_of(&rb, "access_token"), true).await, 204);
            }
            (401, 401) => new_revoked += 1,
            // Legal for this rule, but worth knowing: the database kept the session and
            // memory refused its token (or the other way round).
            _ => split += 1,
        }
    }
    eprintln!(
        "logout-all vs login: {LOGOUT_ALL_ROUNDS} rounds held in {:?}; the racing login \
         survived {new_alive}, was revoked {new_revoked}, split between memory and database \
         {split} (login latency {latency:?})",
        started.elapsed()
    );
}

// ---- 8. a logout ends its session here while the database commits ----

/// Make ending a session in the database take `sleep` seconds, or fail (`None`).
fn slow_or_failing_revocation(pg: &Pg, sleep: Option<f64>) {
    let body = match sleep {
        Some(secs) => format!("PERFORM pg_sleep({secs}); RETURN NEW;"),
        None => "RAISE EXCEPTION 'injected by the test: revocation fails';".to_string(),
    };
    pg.db().psql(&format!(
        "CREATE FUNCTION arena_revocation_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN {body} END $$;
         CREATE TRIGGER arena_revocation_fault BEFORE UPDATE ON sessions FOR EACH ROW
         WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
         EXECUTE FUNCTION arena_revocation_fault();"
    ));
}

fn clear_revocation_fault(pg: &Pg) {
    pg.db().psql(
        "DROP TRIGGER arena_revocation_fault ON sessions;
         DROP FUNCTION arena_revocation_fault();",
    );
}

/// Issue 12: the sockets of a logged-out session close, and this node refuses its
/// token, while the commit is still running; the answer still waits for the commit.
/// On the old code (close after commit) the sockets closed only after the 1.5 s commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_closes_its_sockets_without_waiting_for_the_commit() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let p = server.new_player("lo").await;
    let token = p.token().to_string();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(server.ws_ok(&token).await);
    }
    slow_or_failing_revocation(&pg, Some(1.5));
    let started = Instant::now();
    let logout = {
        let (s, t) = (server.clone(), token.clone());
        tokio::spawn(async move { (s.logout(&t, false).await, Instant::now()) })
    };
    for socket in &mut sockets {
        assert_eq!(socket.close_code().await, 4001);
    }
    let closed_after = started.elapsed();
    let (status, body) = server.get("/auth/me", Some(&token)).await;
    let refused_after = started.elapsed();
    assert_error(status, &body, 401, "token_revoked");
    let (status, answered) = logout.await.expect("logout task");
    assert_eq!(status, 204);
    let answered_after = answered - started;
    eprintln!(
        "slow commit: sockets closed after {closed_after:?}, token refused after \
         {refused_after:?}, logout answered after {answered_after:?}"
    );
    assert!(
        answered_after >= Duration::from_millis(1400),
        "the answer must wait for the commit (1.5 s): {answered_after:?}"
    );
    assert!(
        refused_after < Duration::from_millis(1000),
        "sockets closed after {closed_after:?} and the token refused after \
         {refused_after:?}: they waited for the commit"
    );
    clear_revocation_fault(&pg);
}

/// A logout whose write fails before it commits answers with the error and changes
/// nothing durable: its sockets were closed meanwhile (they reconnect), and once the
/// answer is out the token works again, so the client can retry; the retry ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_whose_commit_fails_leaves_the_session_working_for_a_retry() {
    let pg = Pg::start(&[]).await;
    let server = pg.server.clone();
    let p = server.new_player("lf").await;
    let token = p.token().to_string();
    let mut socket = server.ws_ok(&token).await;
    slow_or_failing_revocation(&pg, None);
    let (status, body) = server.post("/auth/logout", Some(&token), json!({})).await;
    assert_error(status, &body, 500, "internal");
    assert_eq!(socket.close_code().await, 4001);
    let (status, body) = server.get("/auth/me", Some(&token)).await;
    assert_eq!(
        status, 200,
        "the logout failed, the session is live: {body}"
    );
    let _socket = server.ws_ok(&token).await;
    clear_revocation_fault(&pg);
    assert_eq!(server.logout(&token, false).await, 204);
    let (status, body) = server.get("/auth/me", Some(&token)).await;
    assert_error(status, &body, 401, "token_revoked");
}
