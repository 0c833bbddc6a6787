//! Redis losing the membership (a restart, empty or from a snapshot) must never make an
//! answer count too few live nodes: the members announce themselves again one heartbeat
//! at a time (later when paused or reconnecting), and an answer read in between that
//! said "1 of 1" while three nodes are members would claim every live node applied a
//! revocation that two never saw. Found
//! by the randomized fault run (`chaos`): a kick "acknowledged by every live node" right
//! after Redis came back from its snapshot, and two nodes still accepting the token.

use std::time::{Duration, Instant};

use arena_tests::backplane::{logout_acked, Persistence};
use arena_tests::cluster::*;
use arena_tests::*;

async fn every_answer_counts_three_live_nodes(persistence: Persistence) {
    let mut c = Cluster::start(3, &["--cluster-heartbeat-ms", "1000"]).await;
    c.dep.redis.restart_with(persistence).await;
    // The membership back after that restart (every node listed again).
    arena_tests::backplane::until_nodes(c.node(0), &c.admin, 3).await;
    let players: Vec<Player> =
        futures_util::future::join_all((0..40).map(|_| c.node(0).new_player("probe"))).await;
    if persistence == Persistence::Rdb {
        c.dep.redis.save().await;
    }
    // Redis goes down; nodes b and c stop announcing themselves (paused: still members
    // until their membership expires, three heartbeats, but slow to come back), so the
    // membership Redis rebuilds has node a alone for a while.
    c.dep.redis.kill().await;
    let (b, c_pid) = (c.node(1).pid(), c.node(2).pid());
    signal(b, "STOP");
    signal(c_pid, "STOP");
    c.dep.redis.restart().await;
    let started = Instant::now();
    let mut answers = Vec::new();
    for p in &players {
        let (status, acked) = logout_acked(c.node(0), p.token(), false).await;
        assert_eq!(status, 204, "logout");
        answers.push((started.elapsed(), acked));
        // Well within the membership's expiry (3 s) after Redis came back.
        if started.elapsed() > Duration::from_millis(2500) {
            break;
        }
    }
    signal(b, "CONT");
    signal(c_pid, "CONT");
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, acked)| acked.split_once('/').map(|(_, l)| l) != Some("3"))
        .collect();
    assert!(
        wrong.is_empty(),
        "after Redis came back ({persistence:?}), answers counting other than 3 live nodes \
         (time, Arena-Nodes-Acked): {wrong:?}"
    );
    println!("{persistence:?}: answers after the restart: {answers:?}");
}

#[tokio::test]
async fn after_redis_restarts_empty_no_answer_counts_too_few_nodes() {
    every_answer_counts_three_live_nodes(Persistence::Nothing).await;
}

#[tokio::test]
async fn after_redis_restarts_from_its_snapshot_no_answer_counts_too_few_nodes() {
    every_answer_counts_three_live_nodes(Persistence::Rdb).await;
}
