//! One room, one owner, whatever Redis restores or loses, and whatever a frozen former
//! owner does when it thaws. Two `arena-server` nodes, a `redis-server` of the test's own
//! (with the persistence each test names) and a fresh PostgreSQL database.
//!
//! What each test shows:
//! - Redis SIGKILLed and restarted from what it persisted (an RDB snapshot taken before
//!   the room was claimed, an AOF fsynced at every write, or nothing at all) while a room
//!   runs, and a second player joining through the other node at once: no two nodes tick
//!   the room at once (every node's tick log, compared), no member's state frames come
//!   from two runs (ticks only go forward between a socket's `joined`/`room_moved` and
//!   the next), and both players end up in one game;
//! - a Redis replica promoted in place of a SIGKILLed primary (its copy of the keys, the
//!   lease era included, came from the primary), up to date or cut off from it since
//!   before the room was claimed (it lacks the lease): the same;
//! - a Redis whose `INFO` is renamed away (it cannot say which instance it is): no room
//!   is claimed on it, the join answers `unavailable`;
//! - an owner SIGSTOPped past its lease while its room's member leaves, another node
//!   taking the room on, then SIGCONT: the thawed node neither marks the room empty nor
//!   takes it over; it keeps running on its new owner, whose member keeps getting frames.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arena_protocol::http::MAIN_HALL_ID;
use arena_tests::backplane::{until_nodes, Deployment, Persistence, RedisServer};
use arena_tests::*;
use serde_json::{json, Value};

#[path = "support/rooms.rs"]
mod support;
use support::*;

/// Lease timings of a second or two, measured on a machine of two cores: one test at a
/// time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two nodes (`node-a`, `node-b`) sharing one Redis and one database, each logging its
/// ticks.
struct Pair {
    dep: Deployment,
    nodes: Vec<TestServer>,
    dirs: Vec<DataDir>,
    _logs: DataDir,
    ticks: Vec<PathBuf>,
}

impl Pair {
    /// Over a Redis of its own that persists as `persistence` says.
    async fn over(persistence: Persistence, lease_ms: u64) -> Pair {
        let mut dep = Deployment::new().await;
        dep.redis.restart_with(persistence).await;
        let url = dep.redis.url();
        Pair::start(dep, lease_ms, url).await
    }

    /// The nodes reach Redis at `redis_url`.
    async fn start(dep: Deployment, lease_ms: u64, redis_url: String) -> Pair {
        let logs = DataDir::new();
        let ticks: Vec<PathBuf> = (0..2)
            .map(|i| logs.0.join(format!("ticks-{i}.log")))
            .collect();
        let dirs = vec![DataDir::new(), DataDir::new()];
        let lease = lease_ms.to_string();
        let extra = ["--room-lease-ms", lease.as_str()];
        let db = dep.db.url();
        let env: Vec<[String; 2]> = ticks
            .iter()
            .map(|p| {
                [
                    "ARENA_TEST_TICK_LOG".into(),
                    p.to_string_lossy().into_owned(),
                ]
            })
            .collect();
        let node = |i: usize, id: &'static str| {
            let env = [(env[i][0].as_str(), env[i][1].as_str())];
            let (dep, dirs, db, redis) = (&dep, &dirs, &db, &redis_url);
            async move { dep.node_via(&dirs[i], id, db, redis, &extra, &env).await }
        };
        let (a, b) = tokio::join!(node(0, "node-a"), node(1, "node-b"));
        let admin = a.login(ADMIN, ADMIN_PASSWORD).await.access_token;
        until_nodes(&a, &admin, 2).await;
        until_nodes(&b, &admin, 2).await;
        Pair {
            dep,
            nodes: vec![a, b],
            dirs,
            _logs: logs,
            ticks,
        }
    }

    fn runs(&self) -> Runs {
        read_tick_logs(&self.ticks)
    }
}

/// One socket's frames as read, checked as they come: between a `joined` or
/// `room_moved` and the next, the `state` frames' ticks only go forward (they come from
/// one run; a second run's would start again from its first tick).
struct Watched {
    who: &'static str,
    ws: Ws,
    last_tick: Option<u64>,
    /// Runs this socket has been in (joins and moves).
    runs: usize,
}

impl Watched {
    fn new(who: &'static str, ws: Ws) -> Watched {
        Watched {
            who,
            ws,
            last_tick: None,
            runs: 0,
        }
    }

    async fn next(&mut self) -> Value {
        let v = self.ws.recv_json().await.unwrap_or_else(|| {
            panic!(
                "{}: socket closed ({:?})",
                self.who,
                self.ws.close_code_after_end()
            )
        });
        match v["type"].as_str() {
            Some("joined") | Some("room_moved") => {
                self.runs += 1;
                self.last_tick = None;
            }
            Some("state") => {
                let tick = v["tick"].as_u64().expect("tick");
                if let Some(last) = self.last_tick {
                    assert!(
                        tick > last,
                        "{}: state of tick {tick} after tick {last} without a move: \
                         frames of two runs",
                        self.who
                    );
                }
                self.last_tick = Some(tick);
            }
            _ => {}
        }
        v
    }

    /// Read until a frame of type `ty`.
    async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    async fn join(&mut self, room: &str) -> Value {
        self.ws
            .send_json(json!({"type": "join", "room": room}))
            .await;
        loop {
            let v = self.next().await;
            if v["type"] == "joined" || v["type"] == "error" {
                return v;
            }
        }
    }

    /// Read until a `state` frame satisfies `want`.
    async fn state_until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "{}: {what}: not seen", self.who);
            let v = self.next().await;
            if v["type"] == "state" && want(&v) {
                return v;
            }
        }
    }
}

fn tick_of(s: &Value) -> u64 {
    s["tick"].as_u64().unwrap_or(0)
}

/// Redis SIGKILLed and restarted from what `persistence` kept, a lease and a half after
/// alice's join on node-a took main-hall on; carol joins it through node-b at once.
async fn restart_from_what_redis_kept(persistence: Persistence) {
    let _serial = ONE_AT_A_TIME.lock().await;
    const LEASE_MS: u64 = 2000;
    let mut p = Pair::over(persistence, LEASE_MS).await;
    let (mut a, mut c, ids) = alice_runs_main_hall(&p, LEASE_MS, persistence).await;
    p.dep.redis.kill().await;
    p.dep.redis.restart().await;
    carol_joins_and_both_play_in_one_run(&p, &mut a, &mut c, &ids, LEASE_MS).await;
}

/// Alice's join on node-a takes main-hall on and she plays in it a lease and a half;
/// carol has a socket on node-b. (With RDB, a snapshot is taken before the join: it has
/// the lease era, not the lease.)
async fn alice_runs_main_hall(
    p: &Pair,
    lease_ms: u64,
    persistence: Persistence,
) -> (Watched, Watched, [String; 2]) {
    let alice = p.nodes[0].new_player("ka").await;
    let carol = p.nodes[1].new_player("kc").await;
    let mut a = Watched::new("alice", p.nodes[0].ws_ok(alice.token()).await);
    let c = Watched::new("carol", p.nodes[1].ws_ok(carol.token()).await);
    if persistence == Persistence::Rdb {
        p.dep.redis.save().await;
    }
    let joined = a.join(MAIN_HALL_ID).await;
    assert_eq!(joined["room"]["node"], "node-a", "{joined}");
    let ticks = lease_ms * 3 / 2 * 20 / 1000;
    a.state_until("a lease and a half of play", |s| tick_of(s) >= ticks)
        .await;
    (a, c, [alice.id().to_string(), carol.id().to_string()])
}

/// Redis has just come back (or another took its place): carol joins main-hall through
/// node-b at once. Both end up in one game and stay there a lease; the nodes' tick logs
/// show one owner at a time.
async fn carol_joins_and_both_play_in_one_run(
    p: &Pair,
    a: &mut Watched,
    c: &mut Watched,
    ids: &[String; 2],
    lease_ms: u64,
) {
    let back = Instant::now();
    let joined = c.join(MAIN_HALL_ID).await;
    assert_eq!(joined["type"], "joined", "carol: {joined}");
    eprintln!(
        "carol joined {:?} after Redis came back: {joined}",
        back.elapsed()
    );
    for ws in [a, c] {
        let together = ws
            .state_until("playing with the other", |s| {
                ids.iter().all(|id| player(s, id).is_some())
            })
            .await;
        let until = tick_of(&together) + lease_ms * 20 / 1000;
        ws.state_until("a lease on, still together", |s| {
            tick_of(s) >= until && ids.iter().all(|id| player(s, id).is_some())
        })
        .await;
    }
    let runs = p.runs();
    eprintln!("runs: {runs:?}");
    assert_no_overlap(&runs);
}

#[tokio::test]
async fn redis_restarted_from_an_rdb_snapshot_never_gives_a_room_two_owners() {
    restart_from_what_redis_kept(Persistence::Rdb).await;
}

#[tokio::test]
async fn redis_restarted_from_its_aof_never_gives_a_room_two_owners() {
    restart_from_what_redis_kept(Persistence::Aof).await;
}

#[tokio::test]
async fn redis_restarted_empty_never_gives_a_room_two_owners() {
    restart_from_what_redis_kept(Persistence::Nothing).await;
}

/// A TCP front for Redis whose target port can be switched (as a failover address would
/// be): connections made from then on go to the new one, the ones open are cut.
struct RedisFront {
    addr: String,
    target: Arc<AtomicU16>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisFront {
    async fn start(port: u16) -> RedisFront {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the front");
        let addr = listener.local_addr().expect("front address").to_string();
        let target = Arc::new(AtomicU16::new(port));
        let links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let accept = {
            let (target, links) = (target.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let port = target.load(Ordering::SeqCst);
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) =
                            tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().expect("links").push(link);
                }
            })
        };
        RedisFront {
            addr,
            target,
            links,
            accept,
        }
    }

    fn switch_to(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }
}

impl Drop for RedisFront {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }
}

/// The primary SIGKILLed and its replica promoted in its place (the nodes' front
/// switched to it), a lease and a half after alice's join on node-a took main-hall on;
/// carol joins through node-b at once. `lagging`: the replica lost its link to the
/// primary before that join, so it has the primary's lease era but not alice's lease (an
/// asynchronous replica behind its primary).
async fn failover_to_a_replica(lagging: bool) {
    let _serial = ONE_AT_A_TIME.lock().await;
    const LEASE_MS: u64 = 2000;
    let dep = Deployment::new().await;
    let primary = dep.redis.port;
    let front = RedisFront::start(primary).await;
    let replica = RedisServer::start().await;
    let replicate = format!("REPLICAOF 127.0.0.1 {primary}");
    assert_eq!(replica.command(&replicate).await, "+OK");
    let url = format!("redis://{}", front.addr);
    let mut p = Pair::start(dep, LEASE_MS, url).await;
    // The replica has the primary's keys (the lease era among them).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (on_primary, on_replica) = (
            p.dep.redis.command("DBSIZE").await,
            replica.command("DBSIZE").await,
        );
        if on_primary == on_replica && on_primary != ":0" {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if lagging {
        // Cut off from its primary (it follows a primary that is not there): it keeps
        // what it has and gets nothing more.
        let nowhere = free_local_addr().replace(':', " ");
        assert_eq!(
            replica.command(&format!("REPLICAOF {nowhere}")).await,
            "+OK"
        );
    }
    let (mut a, mut c, ids) = alice_runs_main_hall(&p, LEASE_MS, Persistence::Nothing).await;
    p.dep.redis.kill().await;
    assert_eq!(replica.command("REPLICAOF NO ONE").await, "+OK");
    front.switch_to(replica.port);
    carol_joins_and_both_play_in_one_run(&p, &mut a, &mut c, &ids, LEASE_MS).await;
}

#[tokio::test]
async fn a_promoted_redis_replica_never_gives_a_room_two_owners() {
    failover_to_a_replica(false).await;
}

#[tokio::test]
async fn a_promoted_replica_that_missed_the_lease_never_gives_a_room_two_owners() {
    failover_to_a_replica(true).await;
}

/// A Redis whose `INFO` is renamed away cannot say which instance it is: no room is
/// claimed on it (the join answers `unavailable`), rather than a lease era it cannot tell
/// from a restored one.
#[tokio::test]
async fn a_redis_that_cannot_tell_its_instance_gets_no_room_claimed() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const LEASE_MS: u64 = 1000;
    let mut dep = Deployment::new().await;
    dep.redis
        .restart_with_args(&["--rename-command", "INFO", ""])
        .await;
    let url = dep.redis.url();
    let p = Pair::start(dep, LEASE_MS, url).await;
    let alice = p.nodes[0].new_player("ia").await;
    let mut a = Watched::new("alice", p.nodes[0].ws_ok(alice.token()).await);
    let refused = a.join(MAIN_HALL_ID).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert!(p.runs().is_empty(), "a room ran: {:?}", p.runs());
    // Said loudly, not as a passing outage.
    let log = std::fs::read_to_string(p.dirs[0].0.join("server.log")).unwrap_or_default();
    assert!(
        log.contains("rooms cannot be claimed"),
        "node-a's log says nothing of it"
    );
}

#[tokio::test]
async fn a_thawed_former_owner_leaves_the_room_to_its_new_owner() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const LEASE_MS: u64 = 800;
    // On the old code a thawed owner retired the room in about one round of five (it
    // depends on whether its tick or its socket's leave runs first after SIGCONT).
    const ROUNDS: usize = 8;
    let p = Pair::over(Persistence::Nothing, LEASE_MS).await;
    let players = [
        p.nodes[0].new_player("ta").await,
        p.nodes[1].new_player("tc").await,
    ];
    let room = create_room(&p.nodes[0], players[0].token(), "Thaw", 8).await;
    let mut sockets = Vec::new();
    for (i, who) in ["alice", "carol"].into_iter().enumerate() {
        sockets.push(Watched::new(
            who,
            p.nodes[i].ws_ok(players[i].token()).await,
        ));
    }
    let in_use = || {
        p.dep.db.number(&format!(
            "SELECT count(*) FROM rooms WHERE id = '{room}' AND empty_since IS NULL"
        ))
    };
    let joined = sockets[0].join(&room).await;
    assert_eq!(joined["room"]["node"], "node-a", "{joined}");
    let alice = players[0].id();
    sockets[0]
        .state_until("alice plays", |s| player(s, alice).is_some())
        .await;
    for round in 0..ROUNDS {
        // The owner freezes; its one member leaves meanwhile (the leave waits in the
        // frozen node's socket buffer), so the run it finds when it thaws is empty. The
        // other node's player joins, which takes the room on once the lease has lapsed.
        let (owner, next) = (round % 2, (round + 1) % 2);
        let frozen = p.nodes[owner].pid();
        signal(frozen, "STOP");
        sockets[owner].ws.send_json(json!({"type": "leave"})).await;
        let frozen_at = Instant::now();
        let joined = sockets[next].join(&room).await;
        let new_owner = node_name(next);
        assert_eq!(joined["room"]["node"], new_owner, "round {round}: {joined}");
        eprintln!(
            "round {round}: joined {:?} after the freeze",
            frozen_at.elapsed()
        );
        assert_eq!(in_use(), 1, "round {round}: the room is in use");
        signal(frozen, "CONT");

        // Whatever the thawed node makes of its empty run, the room is the new owner's:
        // in use, listed there, and its player keeps playing in it for a lease and a
        // half.
        let player_id = players[next].id();
        let ws = &mut sockets[next];
        let first = ws
            .state_until("playing after the thaw", |s| player(s, player_id).is_some())
            .await;
        // (The record is read every fifth tick, and at the end: a psql a frame would
        // fall behind the frames.)
        let until = tick_of(&first) + LEASE_MS * 3 / 2 * 20 / 1000;
        loop {
            let s = ws.state_until("still playing", |_| true).await;
            let tick = tick_of(&s);
            if tick.is_multiple_of(5) || tick >= until {
                assert_eq!(
                    in_use(),
                    1,
                    "round {round}: the room is marked empty while {new_owner} runs it \
                     (tick {tick})"
                );
            }
            if tick >= until {
                break;
            }
        }
        listed_on(&p.nodes[owner], players[owner].token(), &room, new_owner).await;
        // The thawed node's player is out of the room.
        let left = sockets[owner].next_of("left").await;
        assert_eq!(left["room"], room.as_str(), "{left}");
    }
    let runs = p.runs();
    assert_no_overlap(&runs);
    assert!(
        runs.keys().filter(|(r, _)| r == &room).count() > ROUNDS,
        "a run a round: {runs:?}"
    );
}

/// Wait until `node`'s lobby lists `room` as run by `owner` with one player. Asked on a
/// fresh connection each time: a node that was frozen closes the HTTP connections that
/// were idle meanwhile when it thaws, and a pooled one could be reused as it closes.
async fn listed_on(node: &TestServer, token: &str, room: &str, owner: &str) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let listed: Value = client
            .get(format!("{}/lobby/rooms", node.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /lobby/rooms")
            .json()
            .await
            .expect("a lobby");
        let entry = listed["rooms"]
            .as_array()
            .and_then(|rooms| rooms.iter().find(|r| r["id"] == room).cloned())
            .unwrap_or(Value::Null);
        if entry["node"] == owner && entry["players"] == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "{room} listed as {entry}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_name(i: usize) -> &'static str {
    ["node-a", "node-b"][i]
}
