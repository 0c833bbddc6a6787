//! Faults in a three-node cluster: Redis killed and restarted, a node SIGKILLed, a node
//! restarted after missing events, a publish lost between commit and Redis, and a node
//! cut off from both Redis and PostgreSQL. Every promise holds or fails closed; each
//! test prints the delay it measured.

use std::time::{Duration, Instant};

use arena_tests::backplane::*;
use arena_tests::*;

/// Wait until `GET /auth/me` with `token` answers `status` on `node`; the time it took.
async fn until_me(node: &TestServer, token: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let (got, body) = node.get("/auth/me", Some(token)).await;
        if got == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < DEADLINE, "still {got} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logout until the answer says `want` (membership settles within a few heartbeats).
async fn until_logout_acked(node: &TestServer, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        let p = node.new_player("probe").await;
        let (status, acked) = logout_acked(node, p.token(), false).await;
        assert_eq!(status, 204);
        if acked == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < DEADLINE, "still {acked}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_redis_killed_the_log_still_delivers_and_the_cluster_recovers() {
    let mut dep = Deployment::new().await;
    let dirs = [DataDir::new(), DataDir::new(), DataDir::new()];
    let (a, b, c, admin) = dep.three(&dirs, &["--revocation-poll-ms", "500"]).await;
    let p = a.new_player("outage").await;
    let (mut on_b, mut on_c) = (b.ws_ok(p.token()).await, c.ws_ok(p.token()).await);

    dep.redis.kill().await;
    let started = Instant::now();
    let (status, acked) = logout_acked(&a, p.token(), false).await;
    let answered = started.elapsed();
    assert_eq!((status, acked.as_str()), (204, "1/3"));
    assert!(
        answered < Duration::from_secs(1),
        "the answer took {answered:?}"
    );
    // B and C learn of it from the log, within the poll interval.
    assert_eq!(on_b.close_code().await, 4001);
    assert_eq!(on_c.close_code().await, 4001);
    let closed = started.elapsed();
    until_me(&b, p.token(), 401).await;
    until_me(&c, p.token(), 401).await;
    eprintln!("Redis down: logout answered 1/3 in {answered:?}; B and C closed the sockets {closed:?} after it");
    assert!(
        closed < Duration::from_secs(3),
        "the log poll took {closed:?}"
    );

    // Redis back (empty): membership, subscriptions and acknowledgements return.
    dep.redis.restart().await;
    let back = until_logout_acked(&a, "3/3").await;
    until_nodes(&c, &admin, 3).await;
    eprintln!("Redis restarted: logouts answered 3/3 again after {back:?}");
}

#[tokio::test]
async fn a_killed_node_is_waited_for_at_most_the_ack_timeout_then_not_at_all() {
    let dep = Deployment::new().await;
    let dirs = [DataDir::new(), DataDir::new(), DataDir::new()];
    let args = [
        "--cluster-heartbeat-ms",
        "300",
        "--cluster-ack-timeout-ms",
        "250",
    ];
    let (a, b, c, admin) = dep.three(&dirs, &args).await;
    until_logout_acked(&a, "3/3").await;

    let p = a.new_player("dead").await;
    let mut on_b = b.ws_ok(p.token()).await;
    c.signal_and_wait("KILL").await;
    let killed = Instant::now();
    let (status, acked) = logout_acked(&a, p.token(), false).await;
    let answered = killed.elapsed();
    assert_eq!((status, acked.as_str()), (204, "2/3"));
    assert!(
        answered < Duration::from_millis(250 + 500),
        "waited {answered:?} for a dead node"
    );
    assert_eq!(on_b.close_code().await, 4001);
    // Membership expires three heartbeats after the last one (+ one heartbeat).
    let gone = until_logout_acked(&a, "2/2").await + answered;
    eprintln!("node killed: logout answered 2/3 in {answered:?}; 2/2 from {gone:?} after the kill");
    assert!(
        gone < Duration::from_secs(3),
        "the dead node was waited for {gone:?}"
    );
    let (_, nodes) = a.get("/admin/nodes", Some(&admin)).await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(2), "{nodes}");
}

#[tokio::test]
async fn a_node_restarted_after_missing_events_refuses_them_from_its_first_request() {
    let dep = Deployment::new().await;
    let dirs = [DataDir::new(), DataDir::new()];
    let a = dep.node(&dirs[0], "node-a", &[]).await;
    let b = dep.node(&dirs[1], "node-b", &[]).await;
    let p = a.new_player("missed").await;
    let q = a.new_player("stolen").await;
    b.signal_and_wait("KILL").await;

    assert_eq!(logout_acked(&a, p.token(), false).await.0, 204);
    // Refresh theft: the first refresh token again after its successor was spent.
    let second = a.refresh(&q.session.refresh_token).await.1["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(a.refresh(&second).await.0, 200);
    assert_eq!(a.refresh(&q.session.refresh_token).await.0, 401);

    let b = dep.node(&dirs[1], "node-b", &[]).await;
    for token in [p.token(), q.token()] {
        let (status, body) = b.get("/auth/me", Some(token)).await;
        assert_error(status, &body, 401, "token_revoked");
        let refusal = b.ws(WsAuth::Header(token)).await.err().expect("refused");
        assert_eq!(refusal.status, 401);
    }
}

#[tokio::test]
async fn a_publish_lost_after_commit_arrives_through_the_log() {
    let dep = Deployment::new().await;
    let dirs = [DataDir::new(), DataDir::new(), DataDir::new()];
    // The slow poll is off: only the gap in ids can bring the lost event quickly.
    let args = ["--revocation-poll-ms", "60000", "--cluster-stale-secs", "0"];
    let (a, b, c) = tokio::join!(
        dep.node_env(
            &dirs[0],
            "node-a",
            &args,
            &[("ARENA_FAULT_DROP_PUBLISHES", "1")]
        ),
        dep.node(&dirs[1], "node-b", &args),
        dep.node(&dirs[2], "node-c", &args),
    );
    let admin = b.login(ADMIN, ADMIN_PASSWORD).await.access_token;
    until_nodes(&a, &admin, 3).await;
    let p = a.new_player("lost").await;
    let (mut on_b, mut on_c) = (b.ws_ok(p.token()).await, c.ws_ok(p.token()).await);

    // Committed and in the log, never published: nobody acknowledges it.
    let (status, acked) = logout_acked(&a, p.token(), false).await;
    assert_eq!((status, acked.as_str()), (204, "1/3"));
    on_b.assert_alive().await;

    // The next event is published; its id shows B and C the one they missed.
    let q = a.new_player("next").await;
    let started = Instant::now();
    let (status, acked) = logout_acked(&a, q.token(), false).await;
    assert_eq!((status, acked.as_str()), (204, "3/3"));
    assert_eq!(on_b.close_code().await, 4001);
    assert_eq!(on_c.close_code().await, 4001);
    let healed = started.elapsed();
    eprintln!("lost publish: B and C applied it {healed:?} after the next event arrived");
    assert!(healed < Duration::from_secs(2), "took {healed:?}");
    let (status, body) = c.get("/auth/me", Some(p.token())).await;
    assert_error(status, &body, 401, "token_revoked");
}

#[tokio::test]
async fn a_node_cut_off_from_redis_and_the_database_fails_closed_then_catches_up() {
    let dep = Deployment::new().await;
    let dirs = [DataDir::new(), DataDir::new()];
    let args = [
        "--cluster-stale-secs",
        "2",
        "--revocation-poll-ms",
        "500",
        "--cluster-heartbeat-ms",
        "500",
        "--database-timeout-ms",
        "500",
    ];
    let to_pg = Proxy::start("127.0.0.1:5432").await;
    let redis_target: &'static str =
        Box::leak(format!("127.0.0.1:{}", dep.redis.port).into_boxed_str());
    let to_redis = Proxy::start(redis_target).await;
    let a = dep.node(&dirs[0], "node-a", &args).await;
    let b = dep
        .node_via(
            &dirs[1],
            "node-b",
            &format!("postgres://postgres@{}/{}", to_pg.addr, dep.db.name),
            &format!("redis://{}", to_redis.addr),
            &args,
            &[],
        )
        .await;
    let admin = a.login(ADMIN, ADMIN_PASSWORD).await.access_token;
    until_nodes(&a, &admin, 2).await;
    let p = a.new_player("cut").await;
    let witness = a.new_player("witness").await;
    assert_eq!(b.get("/auth/me", Some(witness.token())).await.0, 200);
    let mut witness_on_b = b.ws_ok(witness.token()).await;

    to_pg.cut();
    to_redis.cut();
    let cut = Instant::now();
    let (status, acked) = logout_acked(&a, p.token(), false).await;
    assert_eq!((status, acked.as_str()), (204, "1/2"));
    // B cannot confirm it holds every revocation: it stops accepting tokens.
    loop {
        let (status, body) = b.get("/auth/me", Some(witness.token())).await;
        if status == 503 {
            assert_error(status, &body, 503, "unavailable");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(cut.elapsed() < DEADLINE, "B never failed closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_after = cut.elapsed();
    // Its sockets too: it may have missed the revocation of any of their tokens.
    assert_eq!(witness_on_b.close_code().await, 1001);
    assert_eq!(
        a.get("/auth/me", Some(witness.token())).await.0,
        200,
        "A keeps serving"
    );
    let (status, _) = b.get("/healthz", None).await;
    assert_eq!(status, 503);

    to_pg.restore();
    to_redis.restore();
    // Its first answer other than 503 already knows the logout made meanwhile.
    let restored = Instant::now();
    loop {
        let (status, body) = b.get("/auth/me", Some(p.token())).await;
        if status != 503 {
            assert_error(status, &body, 401, "token_revoked");
            break;
        }
        assert!(restored.elapsed() < DEADLINE, "B never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "cut off: B answered 503 after {closed_after:?} (stale time 2 s); back {:?} after the links returned",
        restored.elapsed()
    );
    assert_eq!(b.get("/auth/me", Some(witness.token())).await.0, 200);
}

#[tokio::test]
async fn a_second_process_under_a_live_nodes_id_refuses_to_start() {
    let dep = Deployment::new().await;
    let dirs = [DataDir::new(), DataDir::new()];
    let args = ["--cluster-heartbeat-ms", "300"];
    let _a = dep.node(&dirs[0], "node-a", &args).await;
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(server_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dirs[1].0)
            .args([
                "--database-url",
                &dep.db.url(),
                "--redis-url",
                &dep.redis.url(),
            ])
            .args(["--node-id", "node-a", "--cluster-heartbeat-ms", "300"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("it must give up within the deadline")
    .expect("run arena-server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(stderr.contains("another live node"), "{stderr}");
}
