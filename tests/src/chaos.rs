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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::RwLock;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::backplane::Persistence;
use crate::cluster::{Cluster, NodeOpts};
use crate::*;

/// The nodes' timing: short, so that a minute holds many faults and bounds.
pub const POLL_MS: u64 = 300;
pub const STALE_SECS: u64 = 2;
const LEASE_MS: u64 = 1500;
const NODES: usize = 3;

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeState {
    Up,
    Paused,
    Down,
}

struct Shared {
    t0: Instant,
    /// Each node's address while it runs.
    addrs: std::sync::RwLock<Vec<Option<String>>>,
    states: Mutex<Vec<NodeState>>,
    /// (node, paused at, continued at)
    pauses: Mutex<Vec<(usize, Instant, Option<Instant>)>>,
    /// Database restores under way or done: (dump started, restore finished).
    restores: Mutex<Vec<(Instant, Option<Instant>)>>,
    violations: Mutex<Vec<String>>,
    ops: Mutex<BTreeMap<String, u64>>,
    http: reqwest::Client,
    admin: RwLock<String>,
    /// Accounts whose registration was answered: (username, password, answered at).
    accounts: Mutex<Vec<(String, String, Instant)>>,
    /// Ban state by username, as last answered: (banned, answered at); `None`: a ban or
    /// unban was sent without an answer (it may or may not have committed).
    bans: Mutex<BTreeMap<String, (Option<bool>, Instant)>>,
    /// When each node last changed state (killed, restarted, paused, continued).
    changed: Mutex<Vec<Instant>>,
    stop: AtomicBool,
    rng: Mutex<fastrand::Rng>,
}

impl Shared {
    fn count(&self, what: &str) {
        *self
            .ops
            .lock()
            .unwrap()
            .entry(what.to_string())
            .or_default() += 1;
    }

    fn violation(&self, what: String) {
        eprintln!("VIOLATION at {} ms: {what}", self.t0.elapsed().as_millis());
        self.violations.lock().unwrap().push(what);
    }

    fn rand(&self, n: usize) -> usize {
        self.rng.lock().unwrap().usize(..n.max(1))
    }

    fn millis(&self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.lock().unwrap().u64(lo..hi))
    }

    /// A node that runs and is not paused, and its address.
    fn pick_node(&self) -> Option<(usize, String)> {
        let addrs = self.addrs.read().unwrap();
        let states = self.states.lock().unwrap();
        let up: Vec<usize> = (0..NODES)
            .filter(|i| states[*i] == NodeState::Up && addrs[*i].is_some())
            .collect();
        let i = *up.get(self.rand(up.len()))?;
        Some((i, addrs[i].clone()?))
    }

    fn up_nodes(&self) -> Vec<(usize, String)> {
        let addrs = self.addrs.read().unwrap();
        let states = self.states.lock().unwrap();
        (0..NODES)
            .filter(|i| states[*i] == NodeState::Up)
            .filter_map(|i| addrs[i].clone().map(|a| (i, a)))
            .collect()
    }

    /// Whether `at` falls where a database restore may have lost what was answered.
    fn uncertain(&self, at: Instant) -> bool {
        self.restores
            .lock()
            .unwrap()
            .iter()
            .any(|(from, to)| at >= *from && to.is_none_or(|to| at <= to))
    }

    /// When node `i` was last continued after a pause that overlaps [since, now], if any.
    fn paused_since(&self, i: usize, since: Instant) -> Option<Option<Instant>> {
        self.pauses
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, end)| *n == i && end.is_none_or(|e| e >= since))
            .map(|(_, _, end)| *end)
            .max_by_key(|end| end.map_or(Instant::now() + Duration::from_secs(3600), |e| e))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut req = self.http.request(method, format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let acked = resp
                    .headers()
                    .get("arena-nodes-acked")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = resp.json().await.unwrap_or(Value::Null);
                (status, body, acked)
            }
            Err(_) => (0, Value::Null, None),
        }
    }

    async fn admin_token(&self) -> String {
        self.admin.read().await.clone()
    }

    async fn relogin_admin(&self) {
        if let Some((_, addr)) = self.pick_node() {
            let (status, body, _) = self
                .send(
                    reqwest::Method::POST,
                    &addr,
                    "/auth/login",
                    None,
                    Some(json!({"username": ADMIN, "password": ADMIN_PASSWORD})),
                )
                .await;
            if status == 200 {
                if let Some(t) = body["access_token"].as_str() {
                    *self.admin.write().await = t.to_string();
                }
            }
        }
    }
}

/// One socket a player holds: whether it has ended.
struct SocketTrack {
    node: usize,
    ended: Arc<AtomicBool>,
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
        .map(|w| tokio::spawn(player(shared.clone(), w)))
        .collect();
    let faults = nemesis(&shared, &mut cluster, options.duration).await;
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

/// Inject faults one at a time until `duration` has passed, healing each.
async fn nemesis(shared: &Shared, c: &mut Cluster, duration: Duration) -> Vec<FaultRecord> {
    let mut faults = Vec::new();
    let mut last_restore: Option<Instant> = None;
    while shared.t0.elapsed() < duration {
        tokio::time::sleep(shared.millis(800, 2000)).await;
        let started = Instant::now();
        let node = shared.rand(NODES);
        let kind = match shared.rand(5) {
            0 => {
                set_state(shared, node, NodeState::Down, None);
                c.kill(node).await;
                tokio::time::sleep(shared.millis(300, 1500)).await;
                c.restart(node).await;
                set_state(shared, node, NodeState::Up, Some(c.node(node).addr.clone()));
                "node SIGKILLed and restarted"
            }
            1 => {
                let pid = c.node(node).pid();
                signal(pid, "STOP");
                set_state(shared, node, NodeState::Paused, None);
                shared.pauses.lock().unwrap().push((node, started, None));
                tokio::time::sleep(shared.millis(500, 3000)).await;
                signal(pid, "CONT");
                if let Some(p) = shared.pauses.lock().unwrap().last_mut() {
                    p.2 = Some(Instant::now());
                }
                set_state(shared, node, NodeState::Up, None);
                "node paused (SIGSTOP) and continued"
            }
            2 => {
                // Half the time a snapshot first, so that the restart restores leases,
                // eras and memberships of a moment ago rather than nothing.
                if shared.rand(2) == 0 {
                    c.dep.redis.save().await;
                    tokio::time::sleep(shared.millis(100, 1500)).await;
                }
                c.dep.redis.kill().await;
                tokio::time::sleep(shared.millis(100, 1000)).await;
                c.dep.redis.restart().await;
                "Redis SIGKILLed and restarted from its snapshot"
            }
            3 => {
                c.links(node).0.cut();
                tokio::time::sleep(shared.millis(500, 4000)).await;
                c.links(node).0.restore();
                "node's database link cut and restored"
            }
            _ if last_restore.is_some_and(|t| t.elapsed() < Duration::from_secs(20)) => continue,
            _ => {
                last_restore = Some(started);
                restore_from_dump(shared, c).await;
                "database restored from a dump"
            }
        };
        let node = (!kind.starts_with("Redis") && !kind.starts_with("database")).then_some(node);
        faults.push(FaultRecord {
            at_ms: started.duration_since(shared.t0).as_millis() as u64,
            kind,
            node,
            lasted_ms: started.elapsed().as_millis() as u64,
        });
        eprintln!(
            "chaos {:>6} ms: {kind}{}",
            started.duration_since(shared.t0).as_millis(),
            node.map(|n| format!(" (node {n})")).unwrap_or_default()
        );
    }
    faults
}

fn set_state(shared: &Shared, node: usize, state: NodeState, addr: Option<String>) {
    shared.states.lock().unwrap()[node] = state;
    shared.changed.lock().unwrap()[node] = Instant::now();
    match state {
        NodeState::Down => shared.addrs.write().unwrap()[node] = None,
        _ if addr.is_some() => shared.addrs.write().unwrap()[node] = addr,
        _ => {}
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// `pg_dump` the database, let the cluster go on for a moment (what it commits then is
/// what the restore loses), then drop it and restore the dump over it, as an operator
/// restoring last night's backup would.
async fn restore_from_dump(shared: &Shared, c: &Cluster) {
    let started = Instant::now();
    shared.restores.lock().unwrap().push((started, None));
    let name = c.dep.db.name.clone();
    let dump = std::env::temp_dir().join(format!("{}.dump", unique("arena-chaos")));
    let ok = run_cmd(
        "pg_dump",
        &["-h", "127.0.0.1", "-U", "postgres", "-Fc", "-f"],
        &dump,
        &name,
    );
    if ok {
        tokio::time::sleep(shared.millis(200, 1500)).await;
        psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
        psql(&format!("CREATE DATABASE {name}"));
        run_cmd(
            "pg_restore",
            &["-h", "127.0.0.1", "-U", "postgres", "-d", &name],
            &dump,
            "",
        );
    }
    let _ = std::fs::remove_file(&dump);
    // Answers may still be in flight from before the restore: keep the window open a
    // little past its end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Some(r) = shared.restores.lock().unwrap().last_mut() {
        r.1 = Some(Instant::now());
    }
}

fn run_cmd(cmd: &str, args: &[&str], file: &std::path::Path, last: &str) -> bool {
    let mut command = std::process::Command::new(cmd);
    command.args(args).arg(file);
    if !last.is_empty() {
        command.arg(last);
    }
    command.output().is_ok_and(|o| o.status.success())
}

/// One player's life, again and again: register, log in, sockets, play, end.
async fn player(shared: Arc<Shared>, worker: usize) {
    let mut n = 0;
    while !shared.stop.load(Ordering::Acquire) {
        n += 1;
        if let Err(what) = one_life(&shared, worker, n).await {
            shared.count(what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn one_life(shared: &Shared, worker: usize, n: usize) -> Result<(), &'static str> {
    let username = format!("chaos{worker}x{n}{}", shared.rand(1_000_000));
    let password = "chaos-password-1".to_string();
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let credentials = json!({"username": username, "password": password});
    let (status, _, _) = shared
        .send(
            reqwest::Method::POST,
            &addr,
            "/auth/register",
            None,
            Some(credentials.clone()),
        )
        .await;
    if status != 201 {
        return Err("register not answered 201");
    }
    shared.count("register");
    shared
        .accounts
        .lock()
        .unwrap()
        .push((username.clone(), password.clone(), Instant::now()));
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let (status, session, _) = shared
        .send(
            reqwest::Method::POST,
            &addr,
            "/auth/login",
            None,
            Some(credentials),
        )
        .await;
    if status != 200 {
        return Err("login not answered 200");
    }
    shared.count("login");
    let mut tokens = vec![session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()];
    let mut refresh = session["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let user_id = session["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut sockets = Vec::new();
    for k in 0..1 + shared.rand(2) {
        let Some((node, addr)) = shared.pick_node() else {
            break;
        };
        if let Some(s) = open_socket(shared, node, &addr, &tokens[0], k == 0).await {
            sockets.push(s);
        }
    }
    let hold = Instant::now() + shared.millis(300, 2500);
    while Instant::now() < hold {
        tokio::time::sleep(shared.millis(100, 600)).await;
        if shared.rand(4) == 0 {
            if let Some((_, addr)) = shared.pick_node() {
                let (status, body, _) = shared
                    .send(
                        reqwest::Method::POST,
                        &addr,
                        "/auth/refresh",
                        None,
                        Some(json!({"refresh_token": refresh})),
                    )
                    .await;
                if status == 200 {
                    shared.count("refresh");
                    tokens.push(
                        body["access_token"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                    refresh = body["refresh_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
            }
        }
    }
    // The end of this life: a logout, or an admin's kick or ban.
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let latest = tokens.last().cloned().unwrap_or_default();
    let (kind, status, body, header) = match shared.rand(4) {
        0 | 1 => {
            let (s, b, h) = shared
                .send(
                    reqwest::Method::POST,
                    &addr,
                    "/auth/logout",
                    Some(&latest),
                    Some(json!({})),
                )
                .await;
            ("logout", s, b, h)
        }
        2 => {
            let admin = shared.admin_token().await;
            let (s, b, h) = shared
                .send(
                    reqwest::Method::POST,
                    &addr,
                    &format!("/admin/users/{user_id}/kick"),
                    Some(&admin),
                    Some(json!({})),
                )
                .await;
            ("kick", s, b, h)
        }
        _ => {
            let admin = shared.admin_token().await;
            let (s, b, h) = shared
                .send(
                    reqwest::Method::POST,
                    &addr,
                    &format!("/admin/users/{user_id}/ban"),
                    Some(&admin),
                    Some(json!({"duration_secs": 3600})),
                )
                .await;
            ("ban", s, b, h)
        }
    };
    let answered = Instant::now();
    let ok = matches!(
        (kind, status),
        ("logout", 204) | ("kick", 200) | ("ban", 200)
    );
    if !ok {
        if kind == "ban" && status != 404 && !(400..500).contains(&status) {
            // No answer, or 5xx: the ban may have committed.
            shared
                .bans
                .lock()
                .unwrap()
                .insert(username.clone(), (None, answered));
        }
        if status == 401 && kind != "logout" {
            shared.relogin_admin().await;
        }
        shared.count(&format!("{kind} not answered (status {status})"));
        return Ok(());
    }
    shared.count(kind);
    if kind == "ban" {
        shared
            .bans
            .lock()
            .unwrap()
            .insert(username.clone(), (Some(true), answered));
    }
    let all_acked = match header {
        Some(h) => h.split_once('/').is_some_and(|(a, l)| a == l),
        None => body["nodes"]["acked"] == body["nodes"]["live"] && !body["nodes"].is_null(),
    };
    if all_acked && !shared.uncertain(answered) {
        // Every live node said it applied it: none may accept the token now. A node that
        // changed state lately may have been outside the live set the answer counted.
        let settled =
            |node: usize| shared.changed.lock().unwrap()[node].elapsed() > Duration::from_secs(3);
        for (node, addr) in shared.up_nodes().into_iter().filter(|(n, _)| settled(*n)) {
            for t in &tokens {
                let (status, _, _) = shared
                    .send(reqwest::Method::GET, &addr, "/auth/me", Some(t), None)
                    .await;
                if status == 200 {
                    shared.violation(format!(
                        "{kind} of {username} acknowledged by every live node, yet node {node} accepted its token right after"
                    ));
                }
            }
        }
    }
    check_after_bound(shared, kind, &username, &tokens, &sockets, answered).await;
    if kind == "ban" && shared.rand(2) == 0 {
        let (_, addr) = shared.pick_node().ok_or("no node up")?;
        let admin = shared.admin_token().await;
        let (status, _, _) = shared
            .send(
                reqwest::Method::DELETE,
                &addr,
                &format!("/admin/users/{user_id}/ban"),
                Some(&admin),
                None,
            )
            .await;
        let state = match status {
            204 => Some(false),
            400..=499 => Some(true),
            _ => None,
        };
        if status == 204 {
            shared.count("unban");
        }
        shared
            .bans
            .lock()
            .unwrap()
            .insert(username, (state, Instant::now()));
    }
    Ok(())
}

/// At `answered` + the bound: no node that runs accepts any of the tokens, and every
/// socket has ended (a paused node's: by the bound after it continued).
async fn check_after_bound(
    shared: &Shared,
    kind: &str,
    username: &str,
    tokens: &[String],
    sockets: &[SocketTrack],
    answered: Instant,
) {
    let deadline = answered + bound();
    tokio::time::sleep_until(deadline.into()).await;
    if shared.uncertain(answered) {
        return;
    }
    for (node, addr) in shared.up_nodes() {
        for t in tokens {
            let (status, _, _) = shared
                .send(reqwest::Method::GET, &addr, "/auth/me", Some(t), None)
                .await;
            if status == 200 && !shared.uncertain(answered) {
                shared.violation(format!(
                    "{kind} of {username}: node {node} still accepted its token {:?} after the answer",
                    answered.elapsed()
                ));
            }
        }
    }
    for s in sockets {
        let mut until = deadline;
        loop {
            if s.ended.load(Ordering::Acquire) {
                break;
            }
            match shared.paused_since(s.node, answered) {
                Some(None) => {
                    // Still paused: its sockets cannot be served either; look again.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Some(Some(continued)) if continued + bound() > until => {
                    until = continued + bound();
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
                _ => {}
            }
            shared.violation(format!(
                "{kind} of {username}: a socket on node {} still open {:?} after the answer",
                s.node,
                answered.elapsed()
            ));
            break;
        }
    }
}

async fn open_socket(
    shared: &Shared,
    node: usize,
    addr: &str,
    token: &str,
    join: bool,
) -> Option<SocketTrack> {
    let mut req = format!("ws://{addr}/ws").into_client_request().ok()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    let mut ws = tokio::time::timeout(Duration::from_secs(2), connect(req))
        .await
        .ok()?
        .ok()?;
    shared.count("socket opened");
    if join {
        use futures_util::SinkExt;
        let _ = ws
            .stream
            .send(Message::text(
                json!({"type": "join", "room": "main-hall"}).to_string(),
            ))
            .await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    tokio::spawn(async move {
        // Read until it ends (a close frame, or the connection lost with a killed node).
        while let Some(Ok(m)) = ws.stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        flag.store(true, Ordering::Release);
    });
    Some(SocketTrack { node, ended })
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
        let (status, body, _) = shared
            .send(
                reqwest::Method::POST,
                &addr,
                "/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
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
