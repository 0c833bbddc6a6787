//! A randomized fault run in the spirit of Jepsen: three nodes on one PostgreSQL
//! database and one Redis that persists RDB snapshots, players that log in, open sockets
//! on random nodes, join Main Hall, refresh and log out, an admin that kicks, bans and
//! unbans them, and a nemesis that meanwhile injects the faults real infrastructure
//! produces: a node SIGKILLed and restarted, a node paused (SIGSTOP) and continued, Redis
//! SIGKILLed and restarted from its snapshot, a node's database link cut and restored,
//! the database restored from a dump taken moments before.
//!
//! Every operation and what its client saw is recorded, and checked against the
//! promises (`docs/PROTOCOL.md`, "Revocation: what the server promises" and "Running a
//! cluster"):
//! - after a revocation's answer, no node accepts its token past the bound
//!   (`--cluster-stale-secs` plus a poll and slack), and every socket of it is closed by
//!   then (a paused node's sockets by the bound after it continues);
//! - an answer saying every live node acknowledged it is never a lie: no node that
//!   answers at that moment accepts the token;
//! - no room ever ticks on two nodes at once (the nodes' tick logs);
//! - nothing an answered request committed is lost: every registered account logs in at
//!   the end, every ban in force refuses it, every lifted one lets it in.
//!
//! What it cannot see: a violation shorter than its probes' spacing, faults it does not
//! inject (disk loss, clock steps: tested on their own), and operations answered while a
//! database restore was under way (the restore loses them by definition; they are
//! recorded as uncertain and not checked).

mod nemesis;
mod player;
mod world;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use crate::backplane::Persistence;
use crate::cluster::{Cluster, NodeOpts};
use crate::*;
use world::{NodeState, Shared};

/// The nodes' timing: short, so that a minute holds many faults and bounds.
pub const POLL_MS: u64 = 300;
pub const STALE_SECS: u64 = 2;
const LEASE_MS: u64 = 1500;
pub(crate) const NODES: usize = 3;

/// How long after a revocation's answer every node must refuse its token and have
/// closed its sockets: the stale time (a node cut off) plus a poll, plus scheduling
/// slack on a loaded two-core machine.
pub fn bound() -> Duration {
    Duration::from_secs(STALE_SECS) + Duration::from_millis(POLL_MS) + Duration::from_secs(3)
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub players: usize,
    pub seed: u64,
}

/// What a run did and found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub seconds: u64,
    pub seed: u64,
    /// Every fault: when (ms into the run), what, and for how long.
    pub faults: Vec<FaultRecord>,
    /// Faults by kind.
    pub fault_counts: BTreeMap<String, u64>,
    /// Operations by kind and outcome.
    pub ops: BTreeMap<String, u64>,
    pub violations: Vec<String>,
    /// Room runs seen in the tick logs.
    pub room_runs: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    pub at_ms: u64,
    pub kind: &'static str,
    pub node: Option<usize>,
    pub lasted_ms: u64,
}

/// Run the whole thing for `options.duration`, then heal, settle and check.
pub async fn run(options: Options) -> Report {
    let logs = DataDir::new();
    let tick_logs: Vec<_> = (0..NODES)
        .map(|i| logs.0.join(format!("ticks-{i}.log")))
        .collect();
    let lease = LEASE_MS.to_string();
    let (poll, stale) = (POLL_MS.to_string(), STALE_SECS.to_string());
    let args = [
        "--revocation-poll-ms",
        poll.as_str(),
        "--cluster-stale-secs",
        stale.as_str(),
        "--cluster-heartbeat-ms",
        "300",
        "--cluster-ack-timeout-ms",
        "500",
        "--room-lease-ms",
        lease.as_str(),
        "--auth-rate-limit",
        "0",
        "--refresh-rate-limit",
        "0",
        "--database-timeout-ms",
        "1000",
    ];
    let mut cluster = Cluster::start_with(NODES, &args, |i| NodeOpts {
        env: vec![(
            "ARENA_TEST_TICK_LOG".into(),
            tick_logs[i].to_string_lossy().into_owned(),
        )],
        proxied: true,
        ..NodeOpts::default()
    })
    .await;
    cluster.dep.redis.restart_with(Persistence::Rdb).await;
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        addrs: std::sync::RwLock::new(
            (0..NODES)
                .map(|i| Some(cluster.node(i).addr.clone()))
                .collect(),
        ),
        states: Mutex::new(vec![NodeState::Up; NODES]),
        pauses: Mutex::new(Vec::new()),
        restores: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        ops: Mutex::new(BTreeMap::new()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
        admin: RwLock::new(cluster.admin.clone()),
        accounts: Mutex::new(Vec::new()),
        bans: Mutex::new(BTreeMap::new()),
        changed: Mutex::new(vec![Instant::now(); NODES]),
        stop: AtomicBool::new(false),
        rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
    });
    let workers: Vec<_> = (0..options.players)
        .map(|w| tokio::spawn(player::player(shared.clone(), w)))
        .collect();
    let faults = nemesis::nemesis(&shared, &mut cluster, options.duration).await;
    shared.stop.store(true, Ordering::Release);
    for w in workers {
        let _ = w.await;
    }
    settle(&shared, &cluster).await;
    final_checks(&shared).await;
    let (runs, problems) = crate::ticks::tick_runs(&tick_logs);
    for problem in problems.into_iter().chain(crate::ticks::overlaps(&runs)) {
        shared.violation(problem);
    }
    let mut report = Report {
        seconds: options.duration.as_secs(),
        seed: options.seed,
        room_runs: runs.len(),
        ..Report::default()
    };
    for f in &faults {
        *report.fault_counts.entry(f.kind.to_string()).or_default() += 1;
    }
    report.faults = faults;
    report.ops = shared.ops.lock().unwrap().clone();
    report.violations = shared.violations.lock().unwrap().clone();
    report
}

/// Heal everything and wait until every node answers `/healthz` 200.
async fn settle(shared: &Shared, c: &Cluster) {
    for i in 0..NODES {
        c.links(i).0.restore();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut healthy = 0;
        for i in 0..NODES {
            if c.node(i).get("/healthz", None).await.0 == 200 {
                healthy += 1;
            }
        }
        if healthy == NODES {
            break;
        }
        if Instant::now() > deadline {
            shared.violation(format!(
                "only {healthy} of {NODES} nodes healthy 30 s after the last fault"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.relogin_admin().await;
}

/// Nothing an answered request committed is lost: accounts log in (or are refused as
/// banned), bans and unbans stand as last answered.
async fn final_checks(shared: &Shared) {
    let accounts = shared.accounts.lock().unwrap().clone();
    let bans = shared.bans.lock().unwrap().clone();
    for (username, password, registered) in accounts {
        if shared.uncertain(registered) {
            continue;
        }
        let Some((_, addr)) = shared.pick_node() else {
            return;
        };
        let (status, body) = shared.login(&addr, &username, &password).await;
        let ban = bans.get(&username);
        let want = match ban {
            Some((_, at)) if shared.uncertain(*at) => continue,
            Some((None, _)) => continue, // a ban or unban without an answer
            Some((Some(true), _)) => 403,
            Some((Some(false), _)) | None => 200,
        };
        if status != want {
            shared.violation(format!(
                "account {username} registered (and ban state {ban:?}) answered: login {status} {body}, expected {want}"
            ));
        }
    }
}
