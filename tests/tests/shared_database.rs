//! Two `arena-server` processes sharing one PostgreSQL database (and one signing secret)
//! without a backplane: every revocation made on one reaches the other through the
//! revocation log within `--revocation-poll-ms`, closes the sockets held there and
//! refuses the tokens there; and a server that was down while revocations happened
//! refuses the revoked tokens from its first request.
//!
//! (The acknowledged, immediate path over Redis comes with the cluster work; this is the
//! log every node also catches up from.)

use std::time::Duration;

use arena_tests::*;
use serde_json::json;

const SECRET: &str = "a-secret-shared-by-every-server-of-one-deployment-0123";

async fn node(data: &DataDir, db: &PgDatabase, admin: bool) -> TestServer {
    let url = db.url();
    let mut args = vec![
        "--database-url",
        url.as_str(),
        "--jwt-secret",
        SECRET,
        "--revocation-poll-ms",
        "100",
    ];
    if admin {
        args.extend_from_slice(&[
            "--admin-username",
            ADMIN,
            "--admin-password",
            ADMIN_PASSWORD,
        ]);
    }
    TestServer::start(data, &args).await
}

/// Wait until `GET /auth/me` with `token` answers `status` on `server` (what another
/// server did reaches this one through the log), within the deadline.
async fn until_me_answers(server: &TestServer, token: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (got, body) = server.get("/auth/me", Some(token)).await;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {got} {body} on the other server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn revocations_on_one_server_reach_the_other_through_the_log() {
    let db = PgDatabase::create();
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let a = node(&data_a, &db, true).await;
    let b = node(&data_b, &db, false).await;
    let admin = a.login(ADMIN, ADMIN_PASSWORD).await.access_token;

    // A token from A works on B.
    let p = a.new_player("shared").await;
    assert_eq!(b.get("/auth/me", Some(p.token())).await.0, 200);

    // Logout on A; the socket on B closes with 4001 and B refuses the token.
    let mut on_b = b.ws_ok(p.token()).await;
    let started = tokio::time::Instant::now();
    assert_eq!(a.logout(p.token(), false).await, 204);
    assert_eq!(on_b.close_code().await, 4001);
    eprintln!(
        "logout on A closed the socket on B after {:?}",
        started.elapsed()
    );
    until_me_answers(&b, p.token(), 401).await;

    // A kick on A closes B's sockets with 4003.
    let q = b.new_player("kicked").await;
    let mut q_on_b = b.ws_ok(q.token()).await;
    let (status, body) = a.kick(&admin, q.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(q_on_b.close_code().await, 4003);

    // A permanent ban on A: B refuses the user's fresh token as banned; an unban on B
    // lifts it on A.
    let r = b.new_player("banned").await;
    let (status, body) = a
        .post(
            &format!("/admin/users/{}/ban", r.id()),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = b
        .post(
            "/auth/login",
            None,
            json!({"username": r.username, "password": r.password}),
        )
        .await;
    assert_error(status, &body, 403, "banned");
    let b_admin = b.login(ADMIN, ADMIN_PASSWORD).await.access_token;
    let unban = b
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/users/{}/ban", r.id()),
            Some(&b_admin),
            None,
        )
        .await;
    assert_eq!(unban.0, 204, "{}", unban.1);
    let again = b.login(&r.username, &r.password).await;
    // A learns of the unban from the log: the fresh token works there.
    until_me_answers(&a, &again.access_token, 200).await;
}

#[tokio::test]
async fn a_server_that_was_down_refuses_what_was_revoked_meanwhile() {
    let db = PgDatabase::create();
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let a = node(&data_a, &db, false).await;
    let b = node(&data_b, &db, false).await;
    let p = a.new_player("away").await;
    let second = b.login(&p.username, &p.password).await;
    assert_eq!(b.signal_and_wait("KILL").await, None);

    // While B is down: one session logged out, the other's refresh token stolen and
    // replayed (theft revokes it).
    assert_eq!(a.logout(p.token(), false).await, 204);
    let (status, next) = a.refresh(&second.refresh_token).await;
    assert_eq!(status, 200, "{next}");
    let next = next["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    assert_eq!(a.refresh(&next).await.0, 200); // its successor is now spent too
    let (status, body) = a.refresh(&second.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");

    let b = node(&data_b, &db, false).await;
    for token in [p.token(), second.access_token.as_str()] {
        let (status, body) = b.get("/auth/me", Some(token)).await;
        assert_error(status, &body, 401, "token_revoked");
        let refused = b.ws(WsAuth::Header(token)).await.err().map(|r| r.status);
        assert_eq!(refused, Some(401));
    }
}

/// A server cut off from the database cannot learn of revocations made elsewhere: after
/// `--cluster-stale-secs` it refuses every token with 503 (fail closed), and when the
/// link returns it catches up first, so the token revoked meanwhile is refused with 401,
/// never accepted.
#[tokio::test]
async fn a_server_cut_off_from_the_log_fails_closed_then_catches_up() {
    let db = PgDatabase::create();
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let a = node(&data_a, &db, false).await;
    let via_proxy = format!("postgres://postgres@{}/{}", proxy.addr, db.name);
    let b = TestServer::start(
        &data_b,
        &[
            "--database-url",
            &via_proxy,
            "--jwt-secret",
            SECRET,
            "--revocation-poll-ms",
            "100",
            "--cluster-stale-secs",
            "1",
            "--database-timeout-ms",
            "500",
        ],
    )
    .await;
    let p = a.new_player("cutoff").await;
    let bystander = a.new_player("bystander").await;
    assert_eq!(b.get("/auth/me", Some(p.token())).await.0, 200);

    proxy.cut();
    assert_eq!(a.logout(p.token(), false).await, 204);
    // Within the stale time plus a poll, B refuses every token, revoked or not.
    let started = tokio::time::Instant::now();
    for token in [p.token(), bystander.token()] {
        until_me_answers(&b, token, 503).await;
    }
    eprintln!("B failed closed {:?} after the cut", started.elapsed());
    let refused = b
        .ws(WsAuth::Header(bystander.token()))
        .await
        .err()
        .map(|r| r.status);
    assert_eq!(refused, Some(503), "upgrades are refused too");

    proxy.restore();
    // The first answer that is not 503 must already know of the logout.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = b.get("/auth/me", Some(p.token())).await;
        if status != 503 {
            assert_error(status, &body, 401, "token_revoked");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.get("/auth/me", Some(bystander.token())).await.0, 200);
}
