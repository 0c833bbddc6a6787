//! The revocation log going backwards, and strangers on Redis (issue 26, items 1, 3 and
//! 6). A log that went back (the database rewound as an asynchronous replica promoted
//! without the last commits would be, or restored from a dump) and moved on reuses ids;
//! a client of Redis without the deployment's secret publishes events of its own. In
//! every case: no node acknowledges an event it did not apply, every node applies the
//! new events within the poll bound, and the sockets of tokens the database now refuses
//! are closed. Black box: real nodes, a real PostgreSQL database and a real redis-server.

use std::time::{Duration, Instant};

use arena_tests::cluster::*;
use arena_tests::*;
use serde_json::Value;

const POLL_MS: u64 = 300;
/// Scheduling slack on a shared 2-core machine, added to every bound.
const SLACK: Duration = Duration::from_millis(1500);

fn bound() -> Duration {
    Duration::from_millis(POLL_MS) + SLACK
}

async fn two_nodes() -> Cluster {
    Cluster::start(
        2,
        &[
            "--revocation-poll-ms",
            &POLL_MS.to_string(),
            "--cluster-ack-timeout-ms",
            "1000",
        ],
    )
    .await
}

/// Four logins and logouts of a throwaway player through node a: log events 1 to 4.
async fn four_logouts(c: &Cluster) {
    for _ in 0..4 {
        let p = c.node(0).new_player("cycle").await;
        assert_eq!(c.node(0).logout(p.token(), false).await, 204);
    }
}

/// `acked` of a revocation's answer.
fn acked(body: &Value) -> u64 {
    body["nodes"]["acked"].as_u64().unwrap_or(0)
}

/// The kick of `victim` through node a: every node that acknowledged it refuses her
/// token at once (an acknowledgement is never a lie), node b refuses it and closes her
/// socket within the poll bound whatever it acknowledged.
async fn kick_reaches_node_b(c: &Cluster, victim: &Player, ws: &mut Ws) -> Value {
    kick_reaches(c.node(0), c.node(1), &c.admin, victim, ws).await
}

/// [`kick_reaches_node_b`] for any two nodes: the kick through `a`, checked on `b`.
async fn kick_reaches(
    a: &TestServer,
    b: &TestServer,
    admin: &str,
    victim: &Player,
    ws: &mut Ws,
) -> Value {
    let (status, body) = a.kick(admin, victim.id()).await;
    assert_eq!(status, 200, "kick: {body}");
    if acked(&body) == 2 {
        refused_now(
            b,
            victim.token(),
            "token_revoked",
            "node b acknowledged the kick",
        )
        .await;
    }
    let started = Instant::now();
    loop {
        let (status, _) = b.get("/auth/me", Some(victim.token())).await;
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < bound(),
            "node b still answers {status} to the kicked player's token after {:?} (kick answered {body})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = closed_revoked_within(ws, bound(), "the kicked player's socket on node b").await;
    println!("kick answered {body}; socket on node b closed after {took:?}");
    body
}

#[tokio::test]
async fn a_log_rewound_and_moved_on_is_noticed_and_nothing_is_acknowledged_unapplied() {
    let c = two_nodes().await;
    four_logouts(&c).await;
    let head = c.dep.db.number("SELECT last_id FROM revocation_log_head");
    assert!(head >= 4, "head {head}");
    // The database as a replica that lacks the last two commits would be after a failover.
    c.dep.db.psql(&format!(
        "UPDATE revocation_log_head SET last_id = {0}; DELETE FROM revocation_log WHERE id > {0}",
        head - 2
    ));
    let victim = c.node(1).new_player("victim").await;
    let mut ws = c.node(1).ws_ok(victim.token()).await;
    let body = kick_reaches_node_b(&c, &victim, &mut ws).await;
    assert_eq!(body["closed"], 1, "the socket on node b counted: {body}");
    // Both nodes follow the new log: a later kick is acknowledged by both as usual.
    let other = c.node(1).new_player("after").await;
    let mut other_ws = c.node(1).ws_ok(other.token()).await;
    let body = kick_reaches_node_b(&c, &other, &mut other_ws).await;
    assert_eq!(acked(&body), 2, "after the reload both acknowledge: {body}");
}

#[tokio::test]
async fn a_database_restored_from_a_dump_is_noticed_by_running_nodes() {
    let c = two_nodes().await;
    let victim = c.node(0).new_player("victim").await;
    let dump = std::env::temp_dir().join(format!("{}.dump", unique("arena-dump")));
    let out = std::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg(&c.dep.db.name)
        .output()
        .expect("pg_dump");
    assert!(out.status.success(), "pg_dump: {out:?}");
    // After the backup: more revocations, which the restore will lose.
    four_logouts(&c).await;
    // Last night's dump restored over the live database, as an operator would.
    psql(&format!("DROP DATABASE {} WITH (FORCE)", c.dep.db.name));
    psql(&format!("CREATE DATABASE {}", c.dep.db.name));
    let out = std::process::Command::new("pg_restore")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d"])
        .arg(&c.dep.db.name)
        .arg(&dump)
        .output()
        .expect("pg_restore");
    let _ = std::fs::remove_file(&dump);
    assert!(out.status.success(), "pg_restore: {out:?}");
    // The victim's account is in the dump: her session, started after the restore.
    let victim = Player {
        session: c.node(1).login(&victim.username, &victim.password).await,
        ..victim
    };
    let mut ws = c.node(1).ws_ok(victim.token()).await;
    kick_reaches_node_b(&c, &victim, &mut ws).await;
}

#[tokio::test]
async fn a_failover_to_a_replica_without_the_last_commits_is_noticed() {
    use arena_tests::backplane::Deployment;
    use arena_tests::pg_private::PgPrivate;
    let mut pg = PgPrivate::with_replica().await;
    let dep = Deployment::new().await;
    let (dir_a, dir_b) = (DataDir::new(), DataDir::new());
    let poll = POLL_MS.to_string();
    let extra = [
        "--revocation-poll-ms",
        poll.as_str(),
        "--cluster-ack-timeout-ms",
        "1000",
    ];
    let (url, redis) = (pg.url(), dep.redis.url());
    let (a, b) = tokio::join!(
        dep.node_via(&dir_a, "node-a", &url, &redis, &extra, &[]),
        dep.node_via(&dir_b, "node-b", &url, &redis, &extra, &[]),
    );
    let admin = a.login(ADMIN, ADMIN_PASSWORD).await.access_token;
    arena_tests::backplane::until_nodes(&b, &admin, 2).await;
    let victim = a.new_player("victim").await;
    pg.wait_replica_caught_up().await;
    // The replica falls behind: the next commits reach the primary alone.
    pg.pause_replica_replay().await;
    for _ in 0..3 {
        let p = a.new_player("cycle").await;
        assert_eq!(a.logout(p.token(), false).await, 204);
    }
    // The primary dies; the replica, without those commits, is promoted.
    pg.kill_primary().await;
    pg.promote_replica().await;
    // A failover may outlast the stale time: the nodes answer 503 until they have read
    // the new primary's log (fail closed). Both current again before going on.
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.get("/healthz", None).await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "{} not current after the failover",
                node.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let victim = Player {
        session: b.login(&victim.username, &victim.password).await,
        ..victim
    };
    let mut ws = b.ws_ok(victim.token()).await;
    let body = kick_reaches(&a, &b, &admin, &victim, &mut ws).await;
    assert_eq!(body["closed"], 1, "the socket on node b counted: {body}");
}

#[tokio::test]
async fn forged_backplane_events_change_nothing() {
    let c = two_nodes().await;
    four_logouts(&c).await;
    let head = c.dep.db.number("SELECT last_id FROM revocation_log_head");
    let port = c.dep.redis.port.to_string();
    let channels = redis_cli(&port, &["PUBSUB", "CHANNELS", "*events"]);
    let events = channels
        .lines()
        .next()
        .expect("an events channel")
        .trim()
        .to_string();
    // A stranger's events with the next ten ids, in an earlier release's plain form and
    // in the sealed form with a made-up seal.
    for id in head + 1..=head + 10 {
        let event = serde_json::json!({
            "node": "node-x", "request": 1, "id": id, "origin": "p_forged",
            "event": {"kind": "unban", "user_id": "u_nobody"},
        })
        .to_string();
        redis_cli(&port, &["PUBLISH", &events, &event]);
        redis_cli(&port, &["PUBLISH", &events, &format!("v1.AAAA.{event}")]);
    }
    let victim = c.node(1).new_player("victim").await;
    let mut ws = c.node(1).ws_ok(victim.token()).await;
    let (status, body) = ban(c.node(0), &c.admin, victim.id()).await;
    assert_eq!(status, 200, "ban: {body}");
    assert_eq!(
        acked(&body),
        2,
        "both nodes applied and acknowledged the ban: {body}"
    );
    let (status, me) = c.node(1).get("/auth/me", Some(victim.token())).await;
    assert_eq!(
        status, 403,
        "node b acknowledged the ban, so refuses her: {me}"
    );
    closed_within(
        &mut ws,
        4003,
        bound(),
        "the banned player's socket on node b",
    )
    .await;
    let metrics = c
        .node(1)
        .http
        .get(format!("{}/metrics", c.node(1).base))
        .send()
        .await;
    let text = metrics
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        text.lines()
            .any(|l| l.starts_with("arena_cluster_messages_refused_total") && !l.ends_with(" 0")),
        "node b counts the refused messages:\n{text}"
    );
}

#[tokio::test]
async fn a_node_the_log_was_pruned_past_closes_the_sockets_revoked_in_the_gap() {
    // No Redis: node b learns of revocations from the log alone; its database link is
    // cut while the log moves on and the old part of it is pruned.
    let dep = arena_tests::backplane::Deployment::new().await;
    let (dir_a, dir_b) = (DataDir::new(), DataDir::new());
    let poll = POLL_MS.to_string();
    let a = TestServer::start(
        &dir_a,
        &[
            "--database-url",
            &dep.db.url(),
            "--admin-username",
            ADMIN,
            "--admin-password",
            ADMIN_PASSWORD,
            "--revocation-poll-ms",
            &poll,
        ],
    )
    .await;
    let link = Proxy::start("127.0.0.1:5432").await;
    let b = TestServer::start(
        &dir_b,
        &[
            "--database-url",
            &format!("postgres://postgres@{}/{}", link.addr, dep.db.name),
            "--revocation-poll-ms",
            &poll,
            "--database-timeout-ms",
            "1000",
        ],
    )
    .await;
    let admin = a.login(ADMIN, ADMIN_PASSWORD).await.access_token;
    let p = a.new_player("cycle").await;
    assert_eq!(a.logout(p.token(), false).await, 204);
    let victim = a.new_player("victim").await;
    let mut ws = b.ws_ok(victim.token()).await;
    link.cut();
    let (status, body) = a.kick(&admin, victim.id()).await;
    assert_eq!(status, 200, "kick: {body}");
    let p = a.new_player("cycle").await;
    assert_eq!(a.logout(p.token(), false).await, 204);
    // Everything but the newest event is older than the log is kept; a prune takes it.
    dep.db.psql(
        "UPDATE revocation_log SET created_at = 0 WHERE id < (SELECT max(id) FROM revocation_log)",
    );
    dep.db
        .psql("DELETE FROM revocation_log WHERE created_at = 0");
    link.restore();
    closed_revoked_within(
        &mut ws,
        bound() + Duration::from_secs(2),
        "the kicked player's socket on node b",
    )
    .await;
}

/// The socket ends within `limit` with 4003 (the kick applied as an event) or 4001 (a
/// node that reloaded its revocations from the tables closes what they refuse: the
/// tables keep that a session was revoked, not the close code of the event).
async fn closed_revoked_within(ws: &mut Ws, limit: Duration, what: &str) -> Duration {
    let started = Instant::now();
    match ws.ended_within(limit).await {
        Some(Ended::Closed(4003 | 4001, _)) => started.elapsed(),
        other => panic!("{what}: expected close 4003 or 4001 within {limit:?}, got {other:?}"),
    }
}

fn redis_cli(port: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
