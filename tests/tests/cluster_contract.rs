//! The cluster contract (docs/PROTOCOL.md "Running a cluster", issue 10), checked black
//! box on three nodes sharing one PostgreSQL and one Redis: every revocation taken on
//! one node holds on the others at the moment its answer arrives, the answer counts the
//! nodes, and the limits and views are the deployment's.
//!
//! These complement tests/tests/cluster.rs: they look at every node rather than one
//! (sockets on the requesting node too, several sockets per node, `/admin/connections`
//! asked of each node), and at the revocations that file leaves out (theft seen at its
//! answer, unban, role change, the session limit, a kick racing upgrades).
//!
//! The log poll runs every 60 s here, so it cannot be what made a test pass: only the
//! backplane can. (`--cluster-stale-secs 0`: a stale time must be twice the poll.)

use std::time::{Duration, Instant};

use arena_tests::backplane::logout_acked;
use arena_tests::cluster::*;
use arena_tests::*;
use serde_json::{json, Value};

const NO_POLL: &[&str] = &["--revocation-poll-ms", "60000", "--cluster-stale-secs", "0"];

/// A close frame already sent before the answer arrives within this.
const PROMPT: Duration = Duration::from_millis(1000);

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = NO_POLL.to_vec();
    args.extend_from_slice(extra);
    args
}

fn sorted_nodes(connections: &[Value]) -> Vec<String> {
    let mut nodes: Vec<String> = connections
        .iter()
        .map(|c| c["node"].as_str().unwrap_or("<none>").to_string())
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn a_logout_holds_on_every_node_when_its_answer_arrives() {
    let c = Cluster::start(3, NO_POLL).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("logout").await;
    let bystander = a.new_player("bystander").await;

    // A token issued by A works on every node, over HTTP and upgrade.
    for node in [a, b, cc] {
        let (status, body) = node.get("/auth/me", Some(p.token())).await;
        assert_eq!(status, 200, "A's token on {}: {body}", node.addr);
    }
    let mut sockets = vec![
        ("A", a.ws_ok(p.token()).await),
        ("B", b.ws_ok(p.token()).await),
        ("B", b.ws_ok(p.token()).await),
        ("C", cc.ws_ok(p.token()).await),
    ];
    let mut bystander_on_b = b.ws_ok(bystander.token()).await;
    for node in [a, b, cc] {
        let nodes = sorted_nodes(&listed(node, &c.admin, p.id()).await);
        assert_eq!(
            nodes,
            ["node-a", "node-b", "node-b", "node-c"],
            "/admin/connections on {}",
            node.addr
        );
    }

    let started = Instant::now();
    let (status, acked) = logout_acked(a, p.token(), false).await;
    let answered = started.elapsed();
    assert_eq!((status, acked.as_str()), (204, "3/3"), "logout on A");
    // No waiting from here: the answer promises it already holds everywhere.
    refused_now(
        b,
        p.token(),
        "token_revoked",
        "B right after the logout answer",
    )
    .await;
    refused_now(
        cc,
        p.token(),
        "token_revoked",
        "C right after the logout answer",
    )
    .await;
    refused_now(
        a,
        p.token(),
        "token_revoked",
        "A right after the logout answer",
    )
    .await;
    for node in [b, cc, a] {
        let still = listed(node, &c.admin, p.id()).await;
        assert!(
            still.is_empty(),
            "/admin/connections on {} still lists {still:?}",
            node.addr
        );
    }
    let (status, body) = cc.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 401, "the refresh token on C after logout: {body}");
    for (node, ws) in &mut sockets {
        closed_within(ws, 4001, PROMPT, &format!("socket on {node}")).await;
    }
    // The logout ended that session only.
    bystander_on_b.assert_alive().await;
    eprintln!("logout on A answered 3/3 in {answered:?}");
}

#[tokio::test]
async fn ending_a_session_or_all_of_them_from_another_node() {
    let c = Cluster::start(3, NO_POLL).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("devices").await;
    let s2 = b.login(&p.username, &p.password).await;
    let s3 = cc.login(&p.username, &p.password).await;
    let mut s2_on_c = cc.ws_ok(&s2.access_token).await;
    let mut s3_on_b = b.ws_ok(&s3.access_token).await;
    let mut s3_on_a = a.ws_ok(&s3.access_token).await;

    // A counts the sockets every node holds for each session.
    let (status, body) = a.get("/auth/sessions", Some(p.token())).await;
    assert_eq!(status, 200, "{body}");
    let sockets_of = |body: &Value, sid: &str| {
        body["sessions"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["session_id"] == sid))
            .map(|s| s["sockets"].clone())
    };
    assert_eq!(
        (
            sockets_of(&body, &p.session.session_id),
            sockets_of(&body, &s2.session_id),
            sockets_of(&body, &s3.session_id)
        ),
        (Some(json!(0)), Some(json!(1)), Some(json!(2))),
        "/auth/sessions on A: {body}"
    );

    // Session 3 ended from A: refused everywhere at the answer, its sockets on A and B
    // closed, session 2's socket on C untouched.
    let (status, acked) = end_session_acked(a, p.token(), &s3.session_id).await;
    assert_eq!(
        (status, acked.as_str()),
        (204, "3/3"),
        "DELETE session on A"
    );
    refused_now(
        b,
        &s3.access_token,
        "token_revoked",
        "B after DELETE session",
    )
    .await;
    refused_now(
        cc,
        &s3.access_token,
        "token_revoked",
        "C after DELETE session",
    )
    .await;
    closed_within(&mut s3_on_b, 4001, PROMPT, "session 3 on B").await;
    closed_within(&mut s3_on_a, 4001, PROMPT, "session 3 on A").await;
    s2_on_c.assert_alive().await;
    assert_eq!(a.get("/auth/me", Some(&s2.access_token)).await.0, 200);
    let (_, body) = b.get("/auth/sessions", Some(&s2.access_token)).await;
    assert_eq!(
        sockets_of(&body, &s3.session_id),
        None,
        "an ended session is still listed on B: {body}"
    );

    // Logout-all taken on C with session 2 ends session 1 (issued by A) too.
    let (status, acked) = logout_acked(cc, &s2.access_token, true).await;
    assert_eq!((status, acked.as_str()), (204, "3/3"), "logout-all on C");
    refused_now(
        a,
        p.token(),
        "token_revoked",
        "session 1 on A after logout-all",
    )
    .await;
    refused_now(
        b,
        p.token(),
        "token_revoked",
        "session 1 on B after logout-all",
    )
    .await;
    refused_now(b, &s2.access_token, "token_revoked", "session 2 on B").await;
    closed_within(&mut s2_on_c, 4001, PROMPT, "session 2 on C").await;
}

#[tokio::test]
async fn refresh_theft_seen_on_one_node_holds_everywhere_at_its_answer() {
    let c = Cluster::start(3, &args(&["--refresh-grace-secs", "0"])).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("theft").await;
    let mut first_on_c = cc.ws_ok(p.token()).await;
    let (status, body) = cc.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 200, "rotation on C: {body}");
    let second_access = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let second_refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut second_on_a = a.ws_ok(&second_access).await;

    // The spent refresh token again, on B, with no grace: theft; the session ends.
    let (status, body) = b.refresh(&p.session.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");
    refused_now(
        a,
        &second_access,
        "token_revoked",
        "A after theft seen on B",
    )
    .await;
    refused_now(
        cc,
        &second_access,
        "token_revoked",
        "C after theft seen on B",
    )
    .await;
    refused_now(cc, p.token(), "token_revoked", "C, first access token").await;
    closed_within(&mut second_on_a, 4001, PROMPT, "successor's socket on A").await;
    closed_within(&mut first_on_c, 4001, PROMPT, "first token's socket on C").await;
    let (status, body) = a.refresh(&second_refresh).await;
    assert_eq!(
        status, 401,
        "the successor refresh token after theft: {body}"
    );
}

#[tokio::test]
async fn kick_ban_unban_and_role_change_reach_every_node() {
    let c = Cluster::start(3, NO_POLL).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));

    // Kick on A: every node's sockets closed 4003 and counted, A's own included.
    let k = b.new_player("kicked").await;
    let mut sockets = vec![
        ("A", a.ws_ok(k.token()).await),
        ("B", b.ws_ok(k.token()).await),
        ("B", b.ws_ok(k.token()).await),
        ("C", cc.ws_ok(k.token()).await),
    ];
    let (status, body) = a.kick(&c.admin, k.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["closed"], &body["nodes"]),
        (&json!(4), &json!({"acked": 3, "live": 3})),
        "kick on A: {body}"
    );
    refused_now(b, k.token(), "token_revoked", "B after the kick").await;
    refused_now(cc, k.token(), "token_revoked", "C after the kick").await;
    for (node, ws) in &mut sockets {
        closed_within(ws, 4003, PROMPT, &format!("kicked socket on {node}")).await;
    }

    // A kicked user may come back; ban on C: B and A know the ban at the answer.
    let again = cc.login(&k.username, &k.password).await;
    let mut on_a = a.ws_ok(&again.access_token).await;
    let mut on_b = b.ws_ok(&again.access_token).await;
    let (status, body) = ban(cc, &c.admin, k.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["closed"], &body["nodes"]),
        (&json!(2), &json!({"acked": 3, "live": 3})),
        "ban on C: {body}"
    );
    for node in [a, b, cc] {
        let (status, body) = node
            .post(
                "/auth/login",
                None,
                json!({"username": k.username, "password": k.password}),
            )
            .await;
        assert_error(status, &body, 403, "banned");
        let (status, body) = node.get("/auth/me", Some(&again.access_token)).await;
        assert!(
            status == 403 || status == 401,
            "a banned user's token on {}: {status} {body}",
            node.addr
        );
    }
    closed_within(&mut on_a, 4003, PROMPT, "banned socket on A").await;
    closed_within(&mut on_b, 4003, PROMPT, "banned socket on B").await;

    // Unban on B: a fresh token works on A and C at once (no stale ban left there).
    assert_eq!(unban(b, &c.admin, k.id()).await, 204);
    let back = a.login(&k.username, &k.password).await;
    for node in [a, cc] {
        let (status, body) = node.get("/auth/me", Some(&back.access_token)).await;
        assert_eq!(
            status, 200,
            "unbanned user's new token on {}: {body}",
            node.addr
        );
    }
    let mut back_on_c = cc.ws_ok(&back.access_token).await;
    back_on_c.assert_alive().await;

    // Promotion on A: no token carries the old role; the sockets on B and C get 4003.
    let r = a.new_player("promoted").await;
    let mut r_on_b = b.ws_ok(r.token()).await;
    let mut r_on_c = cc.ws_ok(r.token()).await;
    let (status, body) = set_role(a, &c.admin, r.id(), "admin").await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    refused_now(b, r.token(), "token_revoked", "B after the role change").await;
    refused_now(cc, r.token(), "token_revoked", "C after the role change").await;
    closed_within(&mut r_on_b, 4003, PROMPT, "promoted user's socket on B").await;
    closed_within(&mut r_on_c, 4003, PROMPT, "promoted user's socket on C").await;
    let promoted = cc.login(&r.username, &r.password).await;
    assert_eq!(promoted.user.role.as_str(), "admin");
    let (status, body) = b.get("/admin/nodes", Some(&promoted.access_token)).await;
    assert_eq!(status, 200, "the promoted admin on B: {body}");
}

#[tokio::test]
async fn a_login_past_the_session_limit_ends_the_oldest_session_on_every_node() {
    let c = Cluster::start(3, &args(&["--max-sessions-per-user", "2"])).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("sessions").await;
    let mut oldest_on_b = b.ws_ok(p.token()).await;
    let s2 = b.login(&p.username, &p.password).await;
    let mut s2_on_a = a.ws_ok(&s2.access_token).await;
    // The third login, on C, ends the oldest session (issued by A, socket on B).
    let s3 = cc.login(&p.username, &p.password).await;
    refused_now(b, p.token(), "token_revoked", "oldest session on B").await;
    refused_now(a, p.token(), "token_revoked", "oldest session on A").await;
    closed_within(
        &mut oldest_on_b,
        4001,
        PROMPT,
        "oldest session's socket on B",
    )
    .await;
    s2_on_a.assert_alive().await;
    assert_eq!(b.get("/auth/me", Some(&s3.access_token)).await.0, 200);
}

#[tokio::test]
async fn the_socket_cap_counts_every_nodes_sockets() {
    let c = Cluster::start(3, &args(&["--max-sockets-per-user", "3"])).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("capped").await;
    let other = a.new_player("uncapped").await;
    let _on_a = a.ws_ok(p.token()).await;
    let mut on_b = b.ws_ok(p.token()).await;
    let _on_c = cc.ws_ok(p.token()).await;
    for node in [a, b, cc] {
        match node.ws(WsAuth::Header(p.token())).await {
            Err(r) => assert_error(r.status, &r.body, 429, "rate_limited"),
            Ok(_) => panic!("a fourth socket was accepted on {}", node.addr),
        }
        let (_, body) = node.get("/auth/sessions", Some(p.token())).await;
        assert_eq!(
            body["sessions"][0]["sockets"], 3,
            "/auth/sessions on {}: {body}",
            node.addr
        );
    }
    // Another user is not counted against this one.
    cc.ws_ok(other.token()).await.assert_alive().await;

    // B's socket closes; its place can be taken on C, and then the cap is full again.
    on_b.stream.close(None).await.expect("close");
    let started = Instant::now();
    let _taken = loop {
        if let Ok(ws) = cc.ws(WsAuth::Header(p.token())).await {
            break ws;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the place freed on B was never usable on C"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let freed = started.elapsed();
    match a.ws(WsAuth::Header(p.token())).await {
        Err(r) => assert_error(r.status, &r.body, 429, "rate_limited"),
        Ok(_) => panic!("the cap let a fourth socket in after a place was retaken"),
    }
    eprintln!("a socket closed on B freed its place on C after {freed:?}");
}

#[tokio::test]
async fn the_login_rate_counts_every_nodes_attempts_per_username_and_per_address() {
    let c = Cluster::start(
        3,
        &args(&["--auth-rate-limit", "4", "--login-user-rate-limit", "4"]),
    )
    .await;
    let nodes = [c.node(0), c.node(1), c.node(2)];

    // Per username (logins from unknown devices): four addresses, one attempt each on
    // nodes A, B, C, A; a fifth address on B is refused (per node each would have been
    // a first attempt).
    let name = unique("target");
    for i in 0..4 {
        let from = client_from(&format!("127.0.0.{}", 10 + i));
        let (status, body) = login_from(&from, nodes[i % 3], &name, "wrong-password-1").await;
        assert_error(status, &body, 401, "invalid_credentials");
    }
    let (status, body) = login_from(
        &client_from("127.0.0.20"),
        nodes[1],
        &name,
        "wrong-password-1",
    )
    .await;
    assert_error(status, &body, 429, "rate_limited");

    // Per address: one address, four usernames over the nodes; the fifth is refused.
    let from = client_from("127.0.0.30");
    for i in 0..4 {
        let (status, body) =
            login_from(&from, nodes[i % 3], &unique("spray"), "wrong-password-1").await;
        assert_error(status, &body, 401, "invalid_credentials");
    }
    let (status, body) = login_from(&from, nodes[2], &unique("spray"), "wrong-password-1").await;
    assert_error(status, &body, 429, "rate_limited");
}

#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug in the failure message")]
enum Outcome {
    Refused(u16, Value),
    Closed(u16),
    Dropped(String),
    LeftOpen,
}

#[tokio::test]
async fn upgrades_on_two_nodes_racing_a_kick_on_a_third_never_survive() {
    let c = Cluster::start(3, &args(&["--max-sockets-per-user", "1000"])).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("kickrace").await;
    let (mut closed, mut refused) = (0, 0);
    for round in 0..8u64 {
        let token = a.login(&p.username, &p.password).await.access_token;
        let upgrades = futures_util::future::join_all((0..30u64).map(|i| {
            let node = if i % 2 == 0 { b } else { cc };
            let token = token.clone();
            async move {
                // Spread over ~90 ms so that the kick lands among them.
                tokio::time::sleep(Duration::from_millis(i * 3)).await;
                match node.ws(WsAuth::Header(&token)).await {
                    Err(r) => Outcome::Refused(r.status, r.body),
                    Ok(mut ws) => match ws.ended_within(DEADLINE).await {
                        Some(Ended::Closed(code, _)) => Outcome::Closed(code),
                        Some(Ended::Dropped(why)) => Outcome::Dropped(why),
                        None => Outcome::LeftOpen,
                    },
                }
            }
        }));
        let kick = async {
            tokio::time::sleep(Duration::from_millis(10 + round * 8)).await;
            a.kick(&c.admin, p.id()).await
        };
        let (outcomes, (status, body)) = tokio::join!(upgrades, kick);
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(body["nodes"], json!({"acked": 3, "live": 3}), "{body}");
        for outcome in outcomes {
            match outcome {
                Outcome::Closed(4003) => closed += 1,
                Outcome::Refused(401, _) => refused += 1,
                other => panic!("round {round}: a socket racing the kick ended as {other:?}"),
            }
        }
        let left = listed(b, &c.admin, p.id()).await;
        assert!(left.is_empty(), "round {round}: still listed {left:?}");
    }
    eprintln!("kick race: {closed} sockets closed with 4003, {refused} refused");
    assert!(closed > 0, "no upgrade won the race: the test did not race");
    assert!(
        refused > 0,
        "no upgrade lost the race: the test did not race"
    );
}

#[tokio::test]
async fn nodes_health_and_connections_describe_the_whole_cluster() {
    let c = Cluster::start(3, NO_POLL).await;
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let p = a.new_player("seen").await;
    let _b1 = b.ws_ok(p.token()).await;
    let _b2 = b.ws_ok(p.token()).await;
    let _c1 = cc.ws_ok(p.token()).await;

    for (i, node) in [a, b, cc].into_iter().enumerate() {
        let (status, body) = node.get("/healthz", None).await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"status": "ok", "node": node_id(i), "backplane": "ok"})
            ),
            "/healthz on node {i}"
        );
    }

    // Every node's view lists the three, each current, with its sockets (counted within
    // a few heartbeats: the count may travel with the heartbeat).
    let want = [("node-a", 0), ("node-b", 2), ("node-c", 1)];
    for node in [a, b, cc] {
        let started = Instant::now();
        let last = loop {
            let (status, body) = node.get("/admin/nodes", Some(&c.admin)).await;
            assert_eq!(status, 200, "{body}");
            let mut got: Vec<(String, i64)> = body["nodes"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|n| {
                            let id = n["id"].as_str().unwrap_or("").to_string();
                            (id, n["sockets"].as_i64().unwrap_or(-1))
                        })
                        .collect()
                })
                .unwrap_or_default();
            got.sort();
            if got == want.map(|(id, n)| (id.to_string(), n)) {
                break body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "/admin/nodes on {} never showed the socket counts {want:?}: {body}",
                node.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let took = started.elapsed();
        let list = last["nodes"].as_array().cloned().unwrap_or_default();
        for n in &list {
            assert_eq!(n["current"], true, "{last}");
            let (started, seen) = (n["started_at"].as_i64(), n["last_seen_at"].as_i64());
            assert!(
                matches!((started, seen), (Some(s), Some(l)) if s <= l),
                "started_at and last_seen_at: {n}"
            );
        }
        eprintln!(
            "/admin/nodes on {} had the socket counts after {took:?}",
            node.addr
        );
    }

    // Only an admin may list nodes.
    let (status, body) = b.get("/admin/nodes", Some(p.token())).await;
    assert_error(status, &body, 403, "forbidden");

    // /admin/connections: each socket under the node that holds it, ids distinct.
    let all = listed(cc, &c.admin, p.id()).await;
    assert_eq!(
        sorted_nodes(&all),
        ["node-b", "node-b", "node-c"],
        "{all:?}"
    );
    let mut ids: Vec<_> = all.iter().map(|c| c["connection_id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "connection ids repeat across nodes: {all:?}");
}

#[tokio::test]
async fn a_lone_node_in_a_cluster_counts_itself() {
    let c = Cluster::start(1, NO_POLL).await;
    let a = c.node(0);
    let p = a.new_player("lone").await;
    let mut on_a = a.ws_ok(p.token()).await;
    let (status, body) = a.kick(&c.admin, p.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["closed"], &body["nodes"]),
        (&json!(1), &json!({"acked": 1, "live": 1})),
        "kick on a lone node: {body}"
    );
    closed_within(&mut on_a, 4003, PROMPT, "the lone node's socket").await;
    let q = a.new_player("lone").await;
    let (status, acked) = logout_acked(a, q.token(), false).await;
    assert_eq!(
        (status, acked.as_str()),
        (204, "1/1"),
        "logout on a lone node"
    );
}
