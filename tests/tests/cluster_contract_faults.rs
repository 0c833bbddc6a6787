//! The cluster contract under faults, black box, with the bounds asserted (not only
//! printed): Redis down past the stale time, its counts back after a restart, a killed
//! node's sockets released, a clean stop leaving at once, a restarted node that missed a
//! kick/ban/role change/logout-all, a lost publish of a kick noticed from another node's
//! event, and a node cut from Redis alone (keeps serving) or PostgreSQL alone (fails
//! closed). Complements tests/tests/cluster_faults.rs. Each test prints what it measured.

use std::time::{Duration, Instant};

use arena_tests::backplane::{logout_acked, until_nodes};
use arena_tests::cluster::*;
use arena_tests::*;
use serde_json::json;

/// Scheduling slack on a shared 2-core machine, added to every bound.
const SLACK: Duration = Duration::from_millis(700);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fresh player logged out on `node`: the `Arena-Nodes-Acked` it answered and how long
/// the answer took.
async fn probe_logout(node: &TestServer) -> (String, Duration) {
    let p = node.new_player("probe").await;
    let started = Instant::now();
    let (status, acked) = logout_acked(node, p.token(), false).await;
    assert_eq!(status, 204, "probe logout");
    (acked, started.elapsed())
}

/// Probe logouts on `node` until one answers `want`; the time until then.
async fn until_acked(node: &TestServer, want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (acked, _) = probe_logout(node).await;
        if acked == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "logouts on {} still answer {acked}, not {want}, after {limit:?}",
            node.addr
        );
        tokio::time::sleep(ms(30)).await;
    }
}

async fn backplane_of(node: &TestServer) -> String {
    let (_, body) = node.get("/healthz", None).await;
    body["backplane"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn with_redis_down_nodes_stay_current_through_the_log_and_counts_return_with_it() {
    let (poll, heartbeat) = (500, 300);
    let mut c = Cluster::start(
        3,
        &[
            "--revocation-poll-ms",
            "500",
            "--cluster-heartbeat-ms",
            "300",
            "--cluster-stale-secs",
            "2",
            "--max-sockets-per-user",
            "2",
        ],
    )
    .await;
    let p = c.node(0).new_player("outage").await;
    let q = c.node(0).new_player("capped").await;
    let mut p_on_b = c.node(1).ws_ok(p.token()).await;
    let mut p_on_c = c.node(2).ws_ok(p.token()).await;
    let mut q_on_a = c.node(0).ws_ok(q.token()).await;
    let mut q_on_b = c.node(1).ws_ok(q.token()).await;

    c.dep.redis.kill().await;
    let killed = Instant::now();
    let (status, acked) = logout_acked(c.node(0), p.token(), false).await;
    let answered = killed.elapsed();
    assert_eq!(
        (status, acked.as_str()),
        (204, "1/3"),
        "logout with Redis down"
    );
    assert!(
        answered < ms(250) + SLACK,
        "the logout waited {answered:?} (ack timeout 250 ms)"
    );
    let close_bound = ms(poll) + SLACK;
    let on_b = closed_within(&mut p_on_b, 4001, close_bound, "B, through the log").await;
    let on_c = closed_within(&mut p_on_c, 4001, close_bound, "C, through the log").await;
    refused_now(
        c.node(1),
        p.token(),
        "token_revoked",
        "B after its socket closed",
    )
    .await;
    refused_now(
        c.node(2),
        p.token(),
        "token_revoked",
        "C after its socket closed",
    )
    .await;

    // The log keeps B current past the stale time: it keeps serving, says degraded.
    let mut degraded_after = None;
    while killed.elapsed() < Duration::from_secs(2) + ms(1000) {
        let (status, body) = c.node(1).get("/auth/me", Some(q.token())).await;
        assert_eq!(
            status,
            200,
            "B stopped serving {:?} after Redis died: {body}",
            killed.elapsed()
        );
        if degraded_after.is_none() && backplane_of(c.node(1)).await == "degraded" {
            degraded_after = Some(killed.elapsed());
        }
        tokio::time::sleep(ms(100)).await;
    }
    let degraded_after = degraded_after.expect("/healthz on B never said degraded");
    q_on_a.assert_alive().await;
    q_on_b.assert_alive().await;

    // Redis back, empty: acknowledgements, health and the deployment's counts return.
    c.dep.redis.restart().await;
    let restarted = Instant::now();
    let acks_back = until_acked(c.node(0), "3/3", DEADLINE).await;
    for i in 0..3 {
        let node = c.node(i);
        let started = Instant::now();
        while backplane_of(node).await != "ok" {
            assert!(started.elapsed() < DEADLINE, "node {i} stays degraded");
            tokio::time::sleep(ms(30)).await;
        }
    }
    // q holds two sockets (A, B) under a cap of 2: one more on C must be refused once
    // the nodes have counted their sockets into the new Redis.
    let mut let_in = 0;
    loop {
        match c.node(2).ws(WsAuth::Header(q.token())).await {
            Err(r) => {
                assert_error(r.status, &r.body, 429, "rate_limited");
                break;
            }
            Ok(ws) => {
                let_in += 1;
                drop(ws);
            }
        }
        assert!(
            restarted.elapsed() < DEADLINE,
            "the socket cap never held again after Redis restarted"
        );
        tokio::time::sleep(ms(30)).await;
    }
    let cap_back = restarted.elapsed();
    eprintln!(
        "Redis down: logout 1/3 in {answered:?}; B closed {on_b:?}, C {on_c:?} after it \
         (poll {poll} ms); B degraded after {degraded_after:?} and served throughout; \
         restarted: 3/3 after {acks_back:?}, cap held after {cap_back:?} \
         ({let_in} upgrades over the cap let in meanwhile)"
    );
    assert!(
        cap_back < ms(3 * heartbeat) + SLACK,
        "the counts took {cap_back:?} to come back (heartbeat {heartbeat} ms)"
    );
}

#[tokio::test]
async fn a_killed_nodes_sockets_stop_counting_when_its_heartbeat_expires() {
    let (heartbeat, ack) = (300, 400);
    let mut c = Cluster::start(
        3,
        &[
            "--cluster-heartbeat-ms",
            "300",
            "--cluster-ack-timeout-ms",
            "400",
            "--max-sockets-per-user",
            "1",
        ],
    )
    .await;
    let p = c.node(0).new_player("orphan").await;
    let _on_c = c.node(2).ws_ok(p.token()).await;
    match c.node(0).ws(WsAuth::Header(p.token())).await {
        Err(r) => assert_error(r.status, &r.body, 429, "rate_limited"),
        Ok(_) => panic!("the cap of 1 let a second socket in"),
    }

    c.kill(2).await;
    let killed = Instant::now();
    let (acked, answered) = probe_logout(c.node(0)).await;
    assert_eq!(acked, "2/3", "logout right after the kill");
    assert!(
        answered < ms(ack) + SLACK,
        "waited {answered:?} for a dead node (ack timeout {ack} ms)"
    );
    // Expiry is three heartbeats after the last one; its socket then stops counting.
    let expiry = ms(4 * heartbeat) + SLACK;
    let started = Instant::now();
    let _on_a = loop {
        if let Ok(ws) = c.node(0).ws(WsAuth::Header(p.token())).await {
            break ws;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the dead node's socket still counts"
        );
        tokio::time::sleep(ms(30)).await;
    };
    let released = killed.elapsed();
    let gone = until_acked(c.node(1), "2/2", DEADLINE).await + answered;
    let listed_now = listed(c.node(1), &c.admin, p.id()).await;
    assert!(
        listed_now.iter().all(|s| s["node"] != "node-c"),
        "/admin/connections still lists the dead node's socket: {listed_now:?}"
    );
    let (_, nodes) = c.node(0).get("/admin/nodes", Some(&c.admin)).await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(2), "{nodes}");
    eprintln!(
        "node killed: 2/3 in {answered:?}; its socket released {released:?} and 2/2 \
         {gone:?} after the kill (heartbeat {heartbeat} ms)"
    );
    assert!(
        released < expiry,
        "the socket was released only after {released:?}"
    );
}

#[tokio::test]
async fn a_node_stopped_cleanly_leaves_at_once() {
    // A long ack timeout: waiting for a node that left would show plainly.
    let ack = 2000;
    let mut c = Cluster::start(3, &["--cluster-ack-timeout-ms", "2000"]).await;
    let p = c.node(0).new_player("leaver").await;
    let mut on_c = c.node(2).ws_ok(p.token()).await;
    assert_eq!(c.stop(2).await, Some(0), "clean stop exit code");
    assert_eq!(on_c.close_code().await, 1001, "a stopping node's socket");
    let stopped = Instant::now();
    let (_, nodes) = c.node(0).get("/admin/nodes", Some(&c.admin)).await;
    let ids: Vec<_> = nodes["nodes"]
        .as_array()
        .map(|all| all.iter().map(|n| n["id"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "right after node-c stopped: {nodes}");
    let (_, view_b) = c.node(1).get("/admin/nodes", Some(&c.admin)).await;
    let (acked, answered) = probe_logout(c.node(1)).await;
    assert_eq!(
        acked, "2/2",
        "a logout on B right after a clean stop (answered in {answered:?}; \
         /admin/nodes on B said {view_b})"
    );
    assert!(
        answered < ms(ack / 4),
        "the logout waited {answered:?} for a node that left"
    );
    eprintln!(
        "clean stop: gone from /admin/nodes at once; a logout {:?} after it answered 2/2 \
         in {answered:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn a_restarted_node_refuses_every_kind_of_missed_revocation_from_its_first_request() {
    let mut c = Cluster::start(2, &[]).await;
    let a = c.node(0);
    let kicked = a.new_player("m-kick").await;
    let banned = a.new_player("m-ban").await;
    let promoted = a.new_player("m-role").await;
    let everywhere = a.new_player("m-all").await;
    let other_device = a.login(&everywhere.username, &everywhere.password).await;
    c.kill(1).await;

    let a = c.node(0);
    assert_eq!(a.kick(&c.admin, kicked.id()).await.0, 200);
    assert_eq!(ban(a, &c.admin, banned.id()).await.0, 200);
    assert_eq!(set_role(a, &c.admin, promoted.id(), "admin").await.0, 200);
    assert_eq!(logout_acked(a, everywhere.token(), true).await.0, 204);

    c.restart(1).await;
    let b = c.node(1);
    // The first request is the check: no request before it.
    let (status, body) = b.get("/auth/me", Some(kicked.token())).await;
    assert_error(status, &body, 401, "token_revoked");
    for (what, token) in [
        ("kicked", kicked.token()),
        ("promoted", promoted.token()),
        ("logged out everywhere", everywhere.token()),
        ("other device", other_device.access_token.as_str()),
    ] {
        refused_now(b, token, "token_revoked", &format!("{what}, restarted B")).await;
    }
    let (status, body) = b.get("/auth/me", Some(banned.token())).await;
    assert!(
        status == 403 || status == 401,
        "a banned user's token on the restarted node: {status} {body}"
    );
    let (status, body) = b
        .post(
            "/auth/login",
            None,
            json!({"username": banned.username, "password": banned.password}),
        )
        .await;
    assert_error(status, &body, 403, "banned");
    until_nodes(b, &c.admin, 2).await;
}

#[tokio::test]
async fn a_lost_publish_reaches_every_node_through_the_log_within_the_poll() {
    let poll = 500;
    let c = Cluster::start_with(
        3,
        &["--revocation-poll-ms", "500", "--cluster-stale-secs", "2"],
        |i| NodeOpts {
            env: if i == 0 {
                vec![("ARENA_FAULT_DROP_PUBLISHES".into(), "1".into())]
            } else {
                vec![]
            },
            ..NodeOpts::default()
        },
    )
    .await;
    let p = c.node(0).new_player("lostlogout").await;
    let mut on_b = c.node(1).ws_ok(p.token()).await;
    let mut on_c = c.node(2).ws_ok(p.token()).await;
    let started = Instant::now();
    let (status, acked) = logout_acked(c.node(0), p.token(), false).await;
    assert_eq!(
        (status, acked.as_str()),
        (204, "1/3"),
        "a logout never published"
    );
    let bound = ms(poll) + SLACK;
    let b = closed_within(&mut on_b, 4001, bound, "B through the log alone").await;
    let cc = closed_within(&mut on_c, 4001, bound, "C through the log alone").await;
    eprintln!(
        "lost publish, no later event: B closed {b:?}, C {cc:?} after the answer \
         ({:?} in all; poll {poll} ms)",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_lost_kick_is_caught_up_at_once_when_another_nodes_event_shows_the_gap() {
    // The poll is slow (5 s): only the gap in event ids can bring the kick in time.
    let c = Cluster::start_with(
        3,
        &["--revocation-poll-ms", "5000", "--cluster-stale-secs", "0"],
        |i| NodeOpts {
            env: if i == 0 {
                vec![("ARENA_FAULT_DROP_PUBLISHES".into(), "1".into())]
            } else {
                vec![]
            },
            ..NodeOpts::default()
        },
    )
    .await;
    let k = c.node(0).new_player("lostkick").await;
    let mut on_b = c.node(1).ws_ok(k.token()).await;
    let mut on_c = c.node(2).ws_ok(k.token()).await;
    let (status, body) = c.node(0).kick(&c.admin, k.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["closed"], &body["nodes"]),
        (&json!(0), &json!({"acked": 1, "live": 3})),
        "a kick never published: only A confirms, A held no socket: {body}"
    );
    on_b.assert_alive().await; // else the publish was not lost and this shows nothing

    // The next event comes from B, not A: B's own event and C's copy of it both show
    // the missing id.
    let q = c.node(1).new_player("next").await;
    let started = Instant::now();
    let (status, acked) = logout_acked(c.node(1), q.token(), false).await;
    assert_eq!(
        (status, acked.as_str()),
        (204, "3/3"),
        "the next event, on B"
    );
    // Everything looked at before asserting, so that a failure says which node lagged.
    let limit = ms(1000) + SLACK;
    let b_http = c.node(1).get("/auth/me", Some(k.token())).await.0;
    let (b, cc) = tokio::join!(
        async {
            let got = on_b.ended_within(DEADLINE).await;
            (got, started.elapsed())
        },
        async {
            let got = on_c.ended_within(DEADLINE).await;
            (got, started.elapsed())
        }
    );
    let closed = |got: &(Option<Ended>, Duration)| matches!(got, (Some(Ended::Closed(4003, _)), took) if *took < limit);
    assert!(
        closed(&b) && closed(&cc) && b_http == 401,
        "after B's event, within {limit:?}: B's socket {b:?}, C's socket {cc:?}; \
         the kicked token on B right after B's answer: {b_http} (the poll is 5 s)"
    );
    refused_now(c.node(2), k.token(), "token_revoked", "C after catching up").await;
    eprintln!(
        "lost kick: B applied it {b:?} and C {cc:?} after B's next event ({:?}; poll 5 s)",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_node_cut_from_redis_alone_keeps_serving_and_gets_revocations_from_the_log() {
    let (poll, stale) = (500, 2000);
    let c = Cluster::start_with(
        2,
        &[
            "--revocation-poll-ms",
            "500",
            "--cluster-heartbeat-ms",
            "500",
            "--cluster-stale-secs",
            "2",
        ],
        |i| NodeOpts {
            proxied: i == 1,
            ..NodeOpts::default()
        },
    )
    .await;
    let (a, b) = (c.node(0), c.node(1));
    let p = a.new_player("viaLog").await;
    let w = a.new_player("witness").await;
    let mut p_on_b = b.ws_ok(p.token()).await;
    let mut w_on_b = b.ws_ok(w.token()).await;

    c.links(1).1.cut();
    let cut = Instant::now();
    let (status, acked) = logout_acked(a, p.token(), false).await;
    let answered = cut.elapsed();
    assert_eq!(status, 204);
    assert!(
        answered < ms(250) + SLACK,
        "a node cut from Redis was waited for {answered:?} (ack timeout 250 ms)"
    );
    let closed = closed_within(&mut p_on_b, 4001, ms(poll) + SLACK, "B without Redis").await;
    refused_now(b, p.token(), "token_revoked", "B without Redis").await;
    // Past the stale time B still serves: the log, not Redis, keeps it current.
    let mut degraded_after = None;
    while cut.elapsed() < ms(stale) + ms(1000) {
        let (status, body) = b.get("/auth/me", Some(w.token())).await;
        assert_eq!(
            status,
            200,
            "B, cut from Redis only, stopped serving after {:?}: {body}",
            cut.elapsed()
        );
        if degraded_after.is_none() && backplane_of(b).await == "degraded" {
            degraded_after = Some(cut.elapsed());
        }
        tokio::time::sleep(ms(100)).await;
    }
    w_on_b.assert_alive().await;
    let degraded_after = degraded_after.expect("/healthz on B never said degraded");

    c.links(1).1.restore();
    let restored = Instant::now();
    while backplane_of(b).await != "ok" {
        assert!(restored.elapsed() < DEADLINE, "B stays degraded");
        tokio::time::sleep(ms(30)).await;
    }
    let back = until_acked(a, "2/2", DEADLINE).await;
    eprintln!(
        "cut from Redis: logout answered {acked} in {answered:?}; B closed the socket {closed:?} after it, \
         said degraded after {degraded_after:?}, served throughout; 2/2 {back:?} after \
         the link returned"
    );
}

#[tokio::test]
async fn a_node_cut_from_the_database_alone_fails_closed_within_the_stale_time() {
    let (poll, heartbeat, stale) = (500, 500, 2000);
    let c = Cluster::start_with(
        2,
        &[
            "--revocation-poll-ms",
            "500",
            "--cluster-heartbeat-ms",
            "500",
            "--cluster-stale-secs",
            "2",
            "--database-timeout-ms",
            "500",
        ],
        |i| NodeOpts {
            proxied: i == 1,
            ..NodeOpts::default()
        },
    )
    .await;
    let (a, b) = (c.node(0), c.node(1));
    let p = a.new_player("cutpg").await;
    let w = a.new_player("witness").await;
    let mut w_on_b = b.ws_ok(w.token()).await;

    c.links(1).0.cut();
    let cut = Instant::now();
    let (status, acked) = logout_acked(a, p.token(), false).await;
    assert_eq!(status, 204, "logout on A while B cannot reach the database");
    // Until it fails closed B may serve (200) the witness; never anything else.
    loop {
        let (status, body) = b.get("/auth/me", Some(w.token())).await;
        if status == 503 {
            assert_error(status, &body, 503, "unavailable");
            break;
        }
        assert_eq!(status, 200, "B before failing closed: {body}");
        assert!(cut.elapsed() < DEADLINE, "B never failed closed");
        tokio::time::sleep(ms(50)).await;
    }
    let failed_closed = cut.elapsed();
    match b.ws(WsAuth::Header(w.token())).await {
        Err(r) => assert_error(r.status, &r.body, 503, "unavailable"),
        Ok(_) => panic!("B, stale, accepted an upgrade"),
    }
    closed_within(&mut w_on_b, 1001, DEADLINE, "B's open socket once stale").await;
    let (status, _) = b.get("/healthz", None).await;
    assert_eq!(status, 503, "/healthz on a stale node");
    assert_eq!(
        a.get("/auth/me", Some(w.token())).await.0,
        200,
        "A keeps serving"
    );

    c.links(1).0.restore();
    let restored = Instant::now();
    loop {
        let (status, body) = b.get("/auth/me", Some(p.token())).await;
        if status != 503 {
            assert_error(status, &body, 401, "token_revoked");
            break;
        }
        assert!(restored.elapsed() < DEADLINE, "B never came back");
        tokio::time::sleep(ms(50)).await;
    }
    let back = restored.elapsed();
    assert_eq!(b.get("/auth/me", Some(w.token())).await.0, 200);
    eprintln!(
        "cut from PostgreSQL: logout answered {acked}; B answered 503 after \
         {failed_closed:?} (stale {stale} ms, poll {poll} ms, heartbeat {heartbeat} ms); \
         back {back:?} after the link returned"
    );
    assert!(
        failed_closed < ms(stale + poll) + SLACK,
        "B kept serving {failed_closed:?} without reading the log"
    );
}
