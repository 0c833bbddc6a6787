//! `arena-client load`: scenarios a game team runs before launch. Each shows progress on
//! stderr, a human summary, and one JSON line on stdout. They speak only PROTOCOL.md, so
//! they work against any server that does (the Node.js comparison server included).
//!
//! - `connect`: users × sockets; handshake rate and latency; with `--server-pid`, server
//!   memory per idle socket and server CPU per handshake.
//! - `revoke`: users with sockets open log out one by one; time from the logout request
//!   until every socket saw its close code.
//! - `kick`: an admin kicks users with sockets open, one by one; time to the answer and
//!   until every socket saw 4003, and `closed` against the sockets the user had.
//! - `expiry`: sockets whose tokens expire over a few seconds; each must close with 4002
//!   (a server whose tokens outlive `--max-wait` is refused at once, naming `--access-ttl`).
//! - `broadcast`: rooms × players moving (20 inputs/s) and chatting; frames delivered,
//!   state frames per socket per second, chat latency, and with `--server-pid` frames
//!   per second of server CPU; several room counts in one run give a capacity curve
//!   (see `broadcast.rs`).
//! - `churn`: sockets connecting, playing briefly and leaving, continuously; server
//!   memory before and after shows leaks.
//! - `rooms`: rooms whose players sit on different nodes of a cluster; how late `state`
//!   frames reach sockets on other nodes than the room's owner, frames delivered and
//!   dropped, each node's CPU (see `rooms.rs`).
//!
//! The server must allow many logins from one address (`--auth-rate-limit 0` for Arena).
//! `--accounts FILE` keeps the load users in a file for the next run on the same server
//! (see `accounts.rs`); `--label NAME` is copied into the JSON line to tell runs apart.
//!
//! Given several servers (nodes of one deployment), every scenario spreads its HTTP calls
//! and sockets over them (see `nodes.rs`); `revoke` and `kick` then place socket `i` of a
//! user on node `i mod N` and send the revocation to a node holding none (or not all) of
//! them, and report per node kind and the nodes' acknowledgements.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::api::Socket;
use crate::dial::fd_limit;
use crate::nodes::Nodes;

pub(crate) const PASSWORD: &str = "load-test-password";

#[derive(clap::Args, Clone)]
pub struct Common {
    /// The server's pid, to read its memory and CPU (Linux /proc).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Local addresses to open sockets from (default: 127.0.0.1-8 for a loopback server).
    #[arg(long, value_delimiter = ',')]
    source: Vec<IpAddr>,
    /// Upgrades in flight at once.
    #[arg(long, default_value_t = 128)]
    pub(crate) concurrency: usize,
    /// Take the load users from this file, and add the ones it lacks, instead of
    /// registering fresh ones (`connect`, `broadcast`, `churn`, `rooms`): a script running
    /// several scenarios on one server then hashes each password once.
    #[arg(long)]
    pub(crate) accounts: Option<PathBuf>,
    /// Copied into the JSON line as "label", to tell runs of one scenario apart.
    #[arg(long)]
    pub(crate) label: Option<String>,
}

/// Print a scenario's JSON line on stdout, with the run's `--label`; floats rounded to
/// three decimals (µs on milliseconds).
pub(crate) fn emit(common: &Common, mut line: Value) {
    crate::human::round_json(&mut line);
    if let (Some(label), Some(map)) = (&common.label, line.as_object_mut()) {
        map.insert("label".into(), json!(label));
    }
    println!("{line}");
}

/// Scenarios whose users are logged out, kicked or left to expire cannot share theirs.
fn no_accounts(common: &Common, scenario: &str) -> Result<(), String> {
    match &common.accounts {
        Some(_) => Err(format!(
            "{scenario} ends its users' sessions: it registers fresh users and takes no --accounts"
        )),
        None => Ok(()),
    }
}

#[derive(clap::Subcommand)]
pub enum Scenario {
    /// Open users × sockets idle authenticated sockets and hold them.
    Connect {
        /// Users to log in.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Sockets per user (the server allows --max-sockets-per-user, default 16).
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        /// Seconds to hold the sockets open, sampling server memory every 10 s. SIGINT
        /// or SIGTERM ends the hold early (the ping check and the summary still run), so
        /// a script can hold sockets while it runs something else.
        #[arg(long, default_value_t = 0)]
        hold: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Log out users that have sockets open and time how fast every socket is closed.
    Revoke {
        /// Users to log out, one after another.
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Sockets each user holds open when logged out.
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Open users × sockets, then an admin kicks users one at a time: time to the answer
    /// and until every socket of the user saw 4003; `closed` against what it had.
    Kick {
        /// Users with sockets open.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Sockets per user.
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        /// How many of the users to kick (default: all); the others stay connected, as
        /// bystanders whose sockets must not close.
        #[arg(long)]
        kick: Option<usize>,
        /// The admin account that kicks (the server's --admin-username).
        #[arg(long, env = "ARENA_LOAD_ADMIN", value_name = "NAME")]
        admin: String,
        /// That admin account's password.
        #[arg(
            long,
            env = "ARENA_LOAD_ADMIN_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        admin_password: String,
        #[command(flatten)]
        common: Common,
    },
    /// Sockets whose tokens expire over a few seconds: each must be closed with 4002 on
    /// time. The wait is the server's access-token lifetime: run it with a short one
    /// (`--access-ttl 20`), or raise --max-wait. The defaults fit a default server's
    /// limits (16 sockets per user, 30 logins a minute per address).
    Expiry {
        /// Users to log in, one after another (each login counts against the server's
        /// --auth-rate-limit, default 30 a minute: more need --auth-rate-limit 0).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Sockets per user (at most the server's --max-sockets-per-user, default 16).
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        /// Longest token lifetime to wait out, in seconds: a server whose access tokens
        /// live longer is refused at once, naming its --access-ttl flag.
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        max_wait: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Rooms × players moving and chatting: frames delivered, state rate per socket, chat
    /// latency, server CPU per frame. Several room counts (`--rooms 10,25,50`) are run one
    /// after the other with the same users, one JSON line each: a capacity curve.
    Broadcast {
        /// Rooms to fill; a list runs one measurement per value, in order.
        #[arg(long, value_delimiter = ',', default_value = "20")]
        rooms: Vec<usize>,
        /// Players (sockets) per room.
        #[arg(long, default_value_t = 16)]
        players: usize,
        /// Users to play with (default: one per socket of the largest run). Fewer are
        /// reused across rooms: socket i plays as user i mod N, so a room never has the
        /// same user twice as long as N >= --players.
        #[arg(long)]
        users: Option<usize>,
        /// Seconds measured, after the warm-up.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds of play after every socket has joined, before measuring.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Chat messages per player per second.
        #[arg(long, default_value_t = 1.0)]
        chat_rate: f64,
        /// Inputs per player per second.
        #[arg(long, default_value_t = 20.0)]
        input_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Rooms × players spread over the nodes of a cluster: latency of `state` frames
    /// from the room's node (owner) to sockets on the others, frames delivered, node CPU.
    Rooms {
        /// Rooms to play in; room r's first joiner (and so its game) is on node r mod N.
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        /// Players (sockets, one user each) per room.
        #[arg(long, default_value_t = 16)]
        players: usize,
        /// Seconds measured, after the warm-up.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seconds of play before measuring (sockets drain what queued while joining).
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Inputs per player per second, each a new direction.
        #[arg(long, default_value_t = 10.0)]
        input_rate: f64,
        /// Chat messages per player per second.
        #[arg(long, default_value_t = 0.2)]
        chat_rate: f64,
        /// `spread`: player i of a room on node (owner + i) mod N; `owner`: every player on
        /// the room's owner node (no cross-node traffic, to compare the servers' CPU).
        #[arg(long, value_enum, default_value_t = crate::rooms::Placement::Spread)]
        placement: crate::rooms::Placement,
        /// Run every room on this node (its first joiner connects there), instead of
        /// room r on node r mod N: the other nodes then only relay.
        #[arg(long)]
        owner_node: Option<usize>,
        /// The nodes' pids, in --server order, to report each one's CPU while measuring.
        #[arg(long, value_delimiter = ',')]
        node_pids: Vec<u32>,
        /// Redis's pid, to report its CPU while measuring.
        #[arg(long)]
        redis_pid: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Sockets connecting, playing briefly and leaving, continuously.
    Churn {
        /// Users, each reconnecting in a loop (one socket at a time).
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Seconds to keep churning.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(servers: &[String], scenario: Scenario) -> Result<(), String> {
    if let Some(limit) = fd_limit() {
        eprintln!("file-descriptor limit of this process: {limit}");
    }
    let nodes = |common: &Common| Nodes::new(servers, &common.source);
    if servers.len() > 1 {
        eprintln!(
            "spreading over {} servers: {}",
            servers.len(),
            servers.join(", ")
        );
    }
    match scenario {
        Scenario::Connect {
            users,
            sockets,
            hold,
            common,
        } => connect(&nodes(&common)?, users, sockets, hold, &common).await,
        Scenario::Revoke {
            users,
            sockets,
            common,
        } => {
            no_accounts(&common, "revoke")?;
            revoke(&nodes(&common)?, users, sockets, &common).await
        }
        Scenario::Kick {
            users,
            sockets,
            kick: to_kick,
            admin,
            admin_password,
            common,
        } => {
            no_accounts(&common, "kick")?;
            let plan = KickPlan {
                users,
                per_user: sockets,
                kick: to_kick.unwrap_or(users).min(users),
                admin,
                admin_password,
            };
            kick(&nodes(&common)?, &plan, &common).await
        }
        Scenario::Expiry {
            users,
            sockets,
            max_wait,
            common,
        } => {
            no_accounts(&common, "expiry")?;
            let plan = ExpiryPlan {
                users,
                per_user: sockets,
                max_wait: Duration::from_secs(max_wait),
            };
            expiry(Arc::new(nodes(&common)?), &plan, &common).await
        }
        Scenario::Broadcast {
            rooms,
            players,
            users,
            seconds,
            warmup,
            chat_rate,
            input_rate,
            common,
        } => {
            let plan = crate::broadcast::Plan {
                rooms,
                players,
                users,
                seconds,
                warmup,
                chat_rate,
                input_rate,
            };
            crate::broadcast::run(Arc::new(nodes(&common)?), &plan, &common).await
        }
        Scenario::Rooms {
            rooms,
            players,
            seconds,
            warmup,
            input_rate,
            chat_rate,
            placement,
            owner_node,
            node_pids,
            redis_pid,
            common,
        } => {
            let plan = crate::rooms::Plan {
                rooms,
                players,
                seconds,
                warmup,
                input_rate,
                chat_rate,
                placement,
                owner_node,
                node_pids,
                redis_pid,
            };
            crate::rooms::run(Arc::new(nodes(&common)?), &plan, &common).await
        }
        Scenario::Churn {
            users,
            seconds,
            common,
        } => churn(Arc::new(nodes(&common)?), users, seconds, &common).await,
    }
}

pub(crate) fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(&format!(
        "  {what:<10} [{{bar:30}}] {{pos}}/{{len}} {{per_sec:1}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Register `n` fresh users (on the nodes in turn); returns their names.
pub(crate) async fn register_users(nodes: &Nodes, n: usize) -> Result<Vec<String>, String> {
    let run_id = format!("{}{}", std::process::id(), now_ms() % 100_000);
    let progress = bar(n, "users");
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("ld{run_id}_{i}");
        nodes
            .any()
            .register(&name, PASSWORD)
            .await
            .map_err(limit_hint)?;
        names.push(name);
        progress.inc(1);
    }
    progress.finish();
    Ok(names)
}

/// `n` logged-in users' access tokens: from the `accounts` file when given (see
/// `accounts.rs`), else fresh users registered and logged in.
pub(crate) async fn make_users(
    nodes: &Nodes,
    n: usize,
    accounts: Option<&Path>,
) -> Result<Vec<String>, String> {
    if let Some(path) = accounts {
        let pooled = crate::accounts::take(nodes, path, n).await?;
        return Ok(pooled.into_iter().map(|a| a.token).collect());
    }
    Ok(make_sessions(nodes, n)
        .await?
        .into_iter()
        .map(|u| u.token)
        .collect())
}

/// A logged-in load user.
struct LoadUser {
    token: String,
    id: String,
}

/// Register and log in `n` fresh users (on the nodes in turn).
async fn make_sessions(nodes: &Nodes, n: usize) -> Result<Vec<LoadUser>, String> {
    let names = register_users(nodes, n).await?;
    let progress = bar(n, "logins");
    let mut users = Vec::with_capacity(n);
    for name in &names {
        let session = nodes
            .any()
            .login(name, PASSWORD)
            .await
            .map_err(limit_hint)?;
        users.push(LoadUser {
            token: session.access_token,
            id: session.user.id,
        });
        progress.inc(1);
    }
    progress.finish();
    Ok(users)
}

/// Open a socket on node `node` and read its `welcome`.
pub(crate) async fn open(
    nodes: &Nodes,
    node: usize,
    token: &str,
) -> Result<(Socket, Value, Duration), String> {
    let started = Instant::now();
    let mut socket = nodes.connect(node, token).await.map_err(limit_hint)?;
    match socket.next().await {
        Some(Ok(Message::Text(t))) => {
            let welcome: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            Ok((socket, welcome, started.elapsed()))
        }
        other => Err(format!("no welcome: {other:?}")),
    }
}

async fn connect(
    nodes: &Nodes,
    users: usize,
    per_user: usize,
    hold: u64,
    common: &Common,
) -> Result<(), String> {
    eprintln!("connect: {users} users × {per_user} sockets");
    let tokens = make_users(nodes, users, common.accounts.as_deref()).await?;
    let pid = common.server_pid;
    let rss_before = pid.and_then(rss_bytes);
    let cpu_before = pid.and_then(cpu_split);
    let permits = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let total = users * per_user;
    let progress = bar(total, "sockets");
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(total);
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0usize;
    let mut first_error = None;
    let results = futures_util::stream::iter(
        tokens
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.clone(), per_user))
            .enumerate(),
    )
    .map(|(i, token)| {
        let permits = permits.clone();
        async move {
            let _p = permits.acquire().await;
            open(nodes, i, &token).await
        }
    })
    .buffer_unordered(common.concurrency.max(1));
    tokio::pin!(results);
    // RSS is also read when half the sockets are open: the second half's growth is the
    // marginal cost of a socket, free of pages the server had already touched before.
    let mut rss_half = None;
    while let Some(r) = results.next().await {
        match r {
            Ok((s, _, d)) => {
                sockets.push(s);
                latencies.push(d);
                if sockets.len() == total / 2 {
                    rss_half = pid.and_then(rss_bytes).map(|b| (b, sockets.len()));
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
        progress.inc(1);
    }
    progress.finish();
    let elapsed = started.elapsed();
    let cpu_after = pid.and_then(cpu_split);
    // Let the server settle (welcome frames sent, allocator pages touched).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = pid.and_then(rss_bytes);
    let open_count = sockets.len();
    let per_socket = rss_before
        .zip(rss_after)
        .filter(|_| open_count > 0)
        .map(|(b, a)| (a as f64 - b as f64) / open_count as f64);
    let per_socket_second_half = rss_half
        .zip(rss_after)
        .filter(|((_, n), _)| open_count > *n)
        .map(|((h, n), a)| (a as f64 - h as f64) / (open_count - n) as f64);
    let per_handshake = |f: fn((f64, f64)) -> f64| {
        cpu_before
            .zip(cpu_after)
            .filter(|_| open_count > 0)
            .map(|(b, a)| (f(a) - f(b)) * 1e6 / open_count as f64)
    };
    let cpu_per_handshake_us = per_handshake(|(u, s)| u + s);
    let user_cpu_per_handshake_us = per_handshake(|(u, _)| u);
    let system_cpu_per_handshake_us = per_handshake(|(_, s)| s);
    let p = Percentiles::of(&mut latencies);
    if let Some(e) = &first_error {
        eprintln!("  first error: {e}");
    }
    eprintln!(
        "  {open_count} open, {errors} errors, {} handshakes/s; latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        crate::human::number(open_count as f64 / elapsed.as_secs_f64()),
        p.p50,
        p.p99,
        p.max
    );
    if let Some(b) = per_socket {
        eprintln!("  server memory: {b:.0} bytes per idle socket (RSS delta / sockets)");
    }
    if let Some(b) = per_socket_second_half {
        eprintln!("  … {b:.0} bytes per socket over the second half of them");
    }
    if let (Some(us), Some(user), Some(system)) = (
        cpu_per_handshake_us,
        user_cpu_per_handshake_us,
        system_cpu_per_handshake_us,
    ) {
        eprintln!(
            "  server CPU: {us:.1} µs per handshake ({user:.1} µs user, {system:.1} µs system)"
        );
    }
    let mut samples = Vec::new();
    let mut alive = None;
    if hold > 0 {
        // Each held socket is read by its own task (as a real client would: that is what
        // answers the server's heartbeat pings), then proves it is still served with a
        // ping/pong round trip at the end.
        let (check_tx, check_rx) = tokio::sync::watch::channel(false);
        let holders: Vec<_> = std::mem::take(&mut sockets)
            .into_iter()
            .map(|socket| tokio::spawn(hold_socket(socket, check_rx.clone())))
            .collect();
        let progress = bar(hold as usize, "holding");
        let hold_started = Instant::now();
        let until = hold_started + Duration::from_secs(hold);
        let mut next_sample = Instant::now();
        let stop = stop_signal();
        tokio::pin!(stop);
        while Instant::now() < until {
            if Instant::now() >= next_sample {
                let t = hold as i64 - (until - Instant::now()).as_secs() as i64;
                samples.push(json!({"t": t, "rss": pid.and_then(rss_bytes)}));
                next_sample += Duration::from_secs(10);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => progress.inc(1),
                _ = &mut stop => {
                    eprintln!("  hold ended early by a signal");
                    break;
                }
            }
        }
        progress.finish();
        let _ = check_tx.send(true);
        let mut count = 0usize;
        for h in holders {
            count += matches!(h.await, Ok(true)) as usize;
        }
        eprintln!(
            "  after {} s: {count}/{open_count} sockets answered a ping",
            hold_started.elapsed().as_secs()
        );
        alive = Some(count);
    }
    emit(
        common,
        json!({
            "scenario": "connect", "users": users, "sockets_per_user": per_user,
            "open": open_count, "errors": errors, "first_error": first_error,
            "handshakes_per_sec": open_count as f64 / elapsed.as_secs_f64(),
            "latency_ms": p.to_json(),
            "server_rss_before": rss_before, "server_rss_after": rss_after,
            "server_bytes_per_socket": per_socket,
            "server_rss_half": rss_half.map(|(b, _)| b),
            "server_bytes_per_socket_second_half": per_socket_second_half,
            "server_cpu_us_per_handshake": cpu_per_handshake_us,
            "server_user_cpu_us_per_handshake": user_cpu_per_handshake_us,
            "server_system_cpu_us_per_handshake": system_cpu_per_handshake_us,
            "rss_samples": samples, "alive_after_hold": alive,
        }),
    );
    drop(sockets);
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (never, if neither can be listened for).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// Read a held socket until told to check, then do one ping/pong round trip.
async fn hold_socket(mut socket: Socket, mut check: tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            _ = check.changed() => break,
            msg = socket.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
        }
    }
    if socket
        .send(Message::text(r#"{"type":"ping","id":7}"#))
        .await
        .is_err()
    {
        return false;
    }
    let pong = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = socket.next().await {
            if let Message::Text(t) = msg {
                if t.as_str().contains("\"pong\"") {
                    return true;
                }
            }
        }
        false
    });
    pong.await.unwrap_or(false)
}

async fn revoke(
    nodes: &Nodes,
    users: usize,
    per_user: usize,
    common: &Common,
) -> Result<(), String> {
    let cluster = nodes.len() > 1;
    eprintln!("revoke: {users} users × {per_user} sockets, logged out one at a time");
    if cluster {
        eprintln!(
            "  socket i of a user on node i mod {}; each logout sent to a node holding none or not all of them",
            nodes.len()
        );
    }
    let tokens = make_users(nodes, users, None).await?;
    let mut request_ms = Vec::with_capacity(users);
    let mut all_closed_ms = Vec::with_capacity(users);
    let mut closes = CloseTimes::default();
    let mut acked = Tally::default();
    let (mut left_open, mut wrong_code) = (0usize, 0usize);
    let progress = bar(users, "logouts");
    for (u, token) in tokens.iter().enumerate() {
        let mut watchers = Vec::with_capacity(per_user);
        for i in 0..per_user {
            let socket = open(nodes, i, token).await?.0;
            watchers.push((i % nodes.len(), tokio::spawn(watch_close(socket))));
        }
        let target = nodes.revoking_node(u, per_user);
        let started = Instant::now();
        let (_, headers) = nodes
            .api(target)
            .call_with_headers("POST", "/auth/logout", token, Some(json!({})))
            .await?;
        request_ms.push(started.elapsed());
        acked.add(
            headers
                .get("arena-nodes-acked")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("absent"),
        );
        let outcome = await_closes(watchers, target, started, 4001).await;
        left_open += outcome.left_open;
        wrong_code += outcome.wrong_code;
        all_closed_ms.push(outcome.last - started);
        closes.add(&outcome, started);
        progress.inc(1);
    }
    progress.finish();
    let req = Percentiles::of(&mut request_ms);
    let closed = Percentiles::of(&mut all_closed_ms);
    eprintln!(
        "  logout request (client-observed) p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        req.p50, req.p99, req.max
    );
    eprintln!(
        "  logout → every socket closed     p50 {:.3} ms p99 {:.3} ms max {:.3} ms; {left_open} left open, {wrong_code} wrong code",
        closed.p50, closed.p99, closed.max
    );
    let mut line = json!({
        "scenario": "revoke", "users": users, "sockets_per_user": per_user,
        "logout_request_ms": req.to_json(), "all_closed_ms": closed.to_json(),
        "left_open": left_open, "wrong_code": wrong_code,
    });
    if cluster {
        closes.report("logout");
        eprintln!("  Arena-Nodes-Acked: {}", acked.describe());
        line["nodes"] = json!(nodes.len());
        line["nodes_acked"] = acked.to_json();
        closes.add_json(&mut line);
    }
    emit(common, line);
    if left_open + wrong_code > 0 {
        return Err(format!(
            "{left_open} sockets left open, {wrong_code} closed with the wrong code"
        ));
    }
    Ok(())
}

/// What the `kick` scenario does: open `users × per_user`, kick the first `kick`.
struct KickPlan {
    users: usize,
    per_user: usize,
    kick: usize,
    admin: String,
    admin_password: String,
}

async fn kick(nodes: &Nodes, plan: &KickPlan, common: &Common) -> Result<(), String> {
    let (users, per_user) = (plan.users, plan.per_user);
    eprintln!(
        "kick: {users} users × {per_user} sockets over {} node(s); {} kicked one at a time",
        nodes.len(),
        plan.kick
    );
    let admin = nodes
        .api(0)
        .login(&plan.admin, &plan.admin_password)
        .await
        .map_err(|e| format!("admin login: {e}"))?
        .access_token;
    let accounts = make_sessions(nodes, users).await?;
    // Every socket is read by its own task from the start: that answers the server's
    // heartbeat and timestamps the close frame when it comes.
    let mut watchers: Vec<Vec<(usize, Watcher)>> = (0..users).map(|_| Vec::new()).collect();
    let progress = bar(users * per_user, "sockets");
    let started = Instant::now();
    let (mut errors, mut first_error) = (0usize, None);
    let opened =
        futures_util::stream::iter((0..users).flat_map(|u| (0..per_user).map(move |i| (u, i))))
            .map(|(u, i)| {
                let token = &accounts[u].token;
                async move { (u, i, open(nodes, i, token).await) }
            })
            .buffer_unordered(common.concurrency.max(1));
    tokio::pin!(opened);
    while let Some((u, i, r)) = opened.next().await {
        match r {
            Ok((socket, _, _)) => {
                watchers[u].push((i % nodes.len(), tokio::spawn(watch_close(socket))));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
        progress.inc(1);
    }
    progress.finish();
    let open_count: usize = watchers.iter().map(Vec::len).sum();
    eprintln!(
        "  {open_count} open, {errors} errors, {} handshakes/s",
        crate::human::number(open_count as f64 / started.elapsed().as_secs_f64())
    );
    if let Some(e) = &first_error {
        eprintln!("  first error: {e}");
    }

    let mut answer_ms = Vec::with_capacity(plan.kick);
    let mut all_closed_ms = Vec::with_capacity(plan.kick);
    let mut closes = CloseTimes::default();
    let mut acked = Tally::default();
    let (mut closed_reported, mut closed_expected, mut mismatched) = (0u64, 0u64, 0usize);
    let (mut left_open, mut wrong_code) = (0usize, 0usize);
    let progress = bar(plan.kick, "kicks");
    let mut bystanders = watchers.split_off(plan.kick);
    for (u, user_watchers) in watchers.into_iter().enumerate() {
        let target = nodes.revoking_node(u, per_user);
        let expected = user_watchers.len() as u64;
        let started = Instant::now();
        let body = nodes
            .api(target)
            .call(
                "POST",
                &format!("/admin/users/{}/kick", accounts[u].id),
                &admin,
                Some(json!({"reason": "load test"})),
            )
            .await?;
        answer_ms.push(started.elapsed());
        let closed = body["closed"].as_u64().unwrap_or(0);
        closed_reported += closed;
        closed_expected += expected;
        mismatched += (closed != expected) as usize;
        acked.add(&match (
            body["nodes"]["acked"].as_u64(),
            body["nodes"]["live"].as_u64(),
        ) {
            (Some(k), Some(n)) => format!("{k}/{n}"),
            _ => "absent".to_string(),
        });
        let outcome = await_closes(user_watchers, target, started, 4003).await;
        left_open += outcome.left_open;
        wrong_code += outcome.wrong_code;
        all_closed_ms.push(outcome.last - started);
        closes.add(&outcome, started);
        progress.inc(1);
    }
    progress.finish();
    // Nobody else may have lost a socket meanwhile.
    let bystanders_closed = bystanders
        .iter()
        .flatten()
        .filter(|(_, w)| w.is_finished())
        .count();
    for (_, w) in bystanders.drain(..).flatten() {
        w.abort();
    }
    let answer = Percentiles::of(&mut answer_ms);
    let all_closed = Percentiles::of(&mut all_closed_ms);
    eprintln!(
        "  kick answer (client-observed)  p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        answer.p50, answer.p99, answer.max
    );
    eprintln!(
        "  kick → every socket closed     p50 {:.3} ms p99 {:.3} ms max {:.3} ms; {left_open} left open, {wrong_code} wrong code",
        all_closed.p50, all_closed.p99, all_closed.max
    );
    eprintln!(
        "  \"closed\" summed {closed_reported}, sockets the kicked users had {closed_expected} ({mismatched} answers differ); nodes acked: {}",
        acked.describe()
    );
    eprintln!(
        "  {bystanders_closed} of {} bystander sockets closed",
        open_count.saturating_sub(closed_expected as usize)
    );
    if nodes.len() > 1 {
        closes.report("kick");
    }
    let mut line = json!({
        "scenario": "kick", "nodes": nodes.len(), "users": users, "sockets_per_user": per_user,
        "kicked": plan.kick, "open": open_count, "open_errors": errors, "first_error": first_error,
        "answer_ms": answer.to_json(), "all_closed_ms": all_closed.to_json(),
        "closed_reported": closed_reported, "closed_expected": closed_expected,
        "closed_mismatched_answers": mismatched, "nodes_acked": acked.to_json(),
        "left_open": left_open, "wrong_code": wrong_code, "bystanders_closed": bystanders_closed,
    });
    closes.add_json(&mut line);
    emit(common, line);
    if left_open + wrong_code + bystanders_closed > 0 {
        return Err(format!(
            "{left_open} sockets left open, {wrong_code} closed with the wrong code, {bystanders_closed} bystanders closed"
        ));
    }
    Ok(())
}

/// A task reading one socket until it closes: the close code (1006 when the connection
/// ended without a close frame) and when it came.
type Watcher = tokio::task::JoinHandle<(u16, Instant)>;

async fn watch_close(mut socket: Socket) -> (u16, Instant) {
    while let Some(msg) = socket.next().await {
        match msg {
            Ok(Message::Close(f)) => {
                return (f.map_or(1005, |f| u16::from(f.code)), Instant::now());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (1006, Instant::now())
}

/// How one user's sockets closed after a revocation sent to node `target`.
struct Closes {
    /// The last close with the expected code (the request's start if none).
    last: Instant,
    /// The last on the node that answered, and the last on any other node.
    last_local: Option<Instant>,
    last_remote: Option<Instant>,
    left_open: usize,
    wrong_code: usize,
}

/// Wait (10 s at most from `started`) for every socket of one user to close with `code`.
async fn await_closes(
    watchers: Vec<(usize, Watcher)>,
    target: usize,
    started: Instant,
    code: u16,
) -> Closes {
    let deadline = tokio::time::Instant::from_std(started + Duration::from_secs(10));
    let mut c = Closes {
        last: started,
        last_local: None,
        last_remote: None,
        left_open: 0,
        wrong_code: 0,
    };
    for (node, mut w) in watchers {
        match tokio::time::timeout_at(deadline, &mut w).await {
            Ok(Ok((got, at))) if got == code => {
                c.last = c.last.max(at);
                let slot = if node == target {
                    &mut c.last_local
                } else {
                    &mut c.last_remote
                };
                *slot = Some(slot.map_or(at, |t| t.max(at)));
            }
            Ok(_) => c.wrong_code += 1,
            Err(_) => {
                w.abort();
                c.left_open += 1;
            }
        }
    }
    c
}

/// Per revocation: request start → last close on the answering node, and on the others.
#[derive(Default)]
struct CloseTimes {
    local: Vec<Duration>,
    remote: Vec<Duration>,
}

impl CloseTimes {
    fn add(&mut self, c: &Closes, started: Instant) {
        if let Some(at) = c.last_local {
            self.local.push(at - started);
        }
        if let Some(at) = c.last_remote {
            self.remote.push(at - started);
        }
    }

    fn report(&mut self, what: &str) {
        for (name, samples) in [
            ("answering node", &mut self.local),
            ("other nodes", &mut self.remote),
        ] {
            let n = samples.len();
            let p = Percentiles::of(samples);
            eprintln!(
                "  {what} → last close on the {name:<14} p50 {:.3} ms p99 {:.3} ms max {:.3} ms ({n} revocations)",
                p.p50, p.p99, p.max
            );
        }
    }

    fn add_json(&mut self, line: &mut Value) {
        line["closed_on_answering_node_ms"] = Percentiles::of(&mut self.local).to_json();
        line["closed_on_other_nodes_ms"] = Percentiles::of(&mut self.remote).to_json();
    }
}

/// How often each value was seen (the nodes' acknowledgements).
#[derive(Default)]
struct Tally(std::collections::BTreeMap<String, usize>);

impl Tally {
    fn add(&mut self, value: &str) {
        *self.0.entry(value.to_string()).or_default() += 1;
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(v, n)| format!("{v} ×{n}")).collect();
        parts.join(", ")
    }

    fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// What the `expiry` scenario does.
struct ExpiryPlan {
    users: usize,
    per_user: usize,
    /// The longest token lifetime worth waiting out.
    max_wait: Duration,
}

/// A server's refusal, with the server flag that lifts the limit behind it.
pub(crate) fn limit_hint(e: String) -> String {
    if e.contains("/auth/") && e.contains("(rate_limited)") {
        format!("{e}; the server limits logins per address and per minute: start it with --auth-rate-limit 0")
    } else if e.contains("upgrade refused: HTTP 429") {
        format!("{e}; a user may hold the server's --max-sockets-per-user sockets (default 16): use fewer --sockets, or raise it")
    } else {
        e
    }
}

/// The wait a token of `ttl_secs` means, refused when longer than `max_wait`.
fn check_ttl(ttl_secs: u64, max_wait: Duration) -> Result<(), String> {
    if ttl_secs > max_wait.as_secs() {
        return Err(format!(
            "this server's access tokens live {ttl_secs} s, longer than --max-wait {} s: start the \
             server with a short lifetime (arena-server --access-ttl 20, or ARENA_ACCESS_TTL=20), \
             or wait it out with --max-wait {}",
            max_wait.as_secs(),
            ttl_secs + 30
        ));
    }
    Ok(())
}

async fn expiry(nodes: Arc<Nodes>, plan: &ExpiryPlan, common: &Common) -> Result<(), String> {
    let (users, per_user) = (plan.users, plan.per_user);
    eprintln!("expiry: {users} users × {per_user} sockets; tokens expire as the logins went");
    if users == 0 || per_user == 0 {
        return Err("expiry needs at least one user and one socket".into());
    }
    let names = register_users(&nodes, users).await?;
    let pid = common.server_pid;
    let rss_before = pid.and_then(rss_bytes);
    // Log in one user after another and open their sockets at once: the tokens' expiry
    // times spread over as long as the logins take.
    let mut watchers = Vec::with_capacity(users * per_user);
    let done = Arc::new(AtomicU64::new(0));
    let progress = bar(users, "logins");
    let mut last_expiry_ms = 0i64;
    for (i, name) in names.iter().enumerate() {
        let session = nodes
            .any()
            .login(name, PASSWORD)
            .await
            .map_err(limit_hint)?;
        if i == 0 {
            check_ttl(session.expires_in, plan.max_wait)?;
            eprintln!(
                "  access tokens live {} s: the last closes are due about {} s from now",
                session.expires_in, session.expires_in
            );
        }
        last_expiry_ms = now_ms() + session.expires_in as i64 * 1000;
        let token = session.access_token;
        for _ in 0..per_user {
            let (nodes, token, node, done) =
                (nodes.clone(), token.clone(), watchers.len(), done.clone());
            watchers.push(tokio::spawn(async move {
                let o = watch_expiry(&nodes, node, &token).await;
                done.fetch_add(1, Ordering::Relaxed);
                o
            }));
        }
        progress.inc(1);
    }
    progress.finish();
    let cpu_open = pid.and_then(cpu_seconds);
    let rss_open = pid.and_then(rss_bytes);
    // Progress while waiting for the expiries: a line every 5 s (stderr may not be a
    // terminal, where a bar would not show).
    let total = watchers.len();
    let all = futures_util::future::join_all(watchers);
    tokio::pin!(all);
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    let results = loop {
        tokio::select! {
            results = &mut all => break results,
            _ = every.tick() => {
                let left = (last_expiry_ms - now_ms()).max(0) / 1000;
                eprintln!(
                    "  waiting: {} of {total} sockets done; the last token expires in {left} s",
                    done.load(Ordering::Relaxed)
                );
            }
        }
    };
    let mut late_ms = Vec::with_capacity(total);
    let (mut on_time, mut wrong, mut open_left, mut warned, mut failed) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut first_exp, mut last_exp) = (i64::MAX, i64::MIN);
    for r in results {
        match r.map_err(|e| e.to_string())? {
            Ok(o) => {
                warned += o.warned as usize;
                first_exp = first_exp.min(o.expires_at);
                last_exp = last_exp.max(o.expires_at);
                match o.code {
                    Some(4002) => {
                        on_time += 1;
                        late_ms.push(Duration::from_millis(
                            (o.closed_at - o.expires_at).max(0) as u64
                        ));
                    }
                    Some(_) => wrong += 1,
                    None => open_left += 1,
                }
            }
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("  error: {e}");
                }
            }
        }
    }
    let spread_ms = if on_time + wrong + open_left > 0 {
        last_exp - first_exp
    } else {
        0
    };
    let cpu = cpu_open.zip(pid.and_then(cpu_seconds)).map(|(a, b)| b - a);
    let late = Percentiles::of(&mut late_ms);
    eprintln!("  {on_time} closed with 4002, {wrong} other codes, {open_left} left open, {failed} failed; {warned} token_expiring");
    eprintln!(
        "  expiries spread over {:.1} s; close after exp p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        spread_ms as f64 / 1000.0,
        late.p50,
        late.p99,
        late.max
    );
    if let (Some(cpu), Some(b), Some(o)) = (cpu, rss_before, rss_open) {
        eprintln!(
            "  server CPU from all-open to all-closed: {cpu:.2} s; RSS {:.1} MB → {:.1} MB with sockets open",
            b as f64 / 1e6,
            o as f64 / 1e6
        );
    }
    emit(
        common,
        json!({
            "scenario": "expiry", "users": users, "sockets_per_user": per_user,
            "closed_4002": on_time, "other_codes": wrong, "left_open": open_left, "failed": failed,
            "token_expiring_seen": warned, "expiry_spread_ms": spread_ms,
            "close_after_exp_ms": late.to_json(), "server_cpu_secs_open_to_closed": cpu,
            "server_rss_before": rss_before, "server_rss_open": rss_open,
        }),
    );
    if wrong + open_left + failed > 0 {
        return Err("not every socket was closed with 4002".into());
    }
    Ok(())
}

struct ExpiryObservation {
    expires_at: i64,
    warned: bool,
    code: Option<u16>,
    closed_at: i64,
}

async fn watch_expiry(
    nodes: &Nodes,
    node: usize,
    token: &str,
) -> Result<ExpiryObservation, String> {
    let (mut socket, welcome, _) = open(nodes, node, token).await?;
    let expires_at = welcome["expires_at"]
        .as_i64()
        .ok_or("welcome without expires_at")?;
    let wait = Duration::from_millis((expires_at - now_ms()).max(0) as u64 + 10_000);
    let mut warned = false;
    let code = tokio::time::timeout(wait, async {
        while let Some(msg) = socket.next().await {
            match msg {
                Ok(Message::Text(t)) if t.as_str().contains("\"token_expiring\"") => warned = true,
                Ok(Message::Close(f)) => return Some(f.map_or(1005, |f| u16::from(f.code))),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    Ok(ExpiryObservation {
        expires_at,
        warned,
        code,
        closed_at: now_ms(),
    })
}

async fn churn(
    nodes: Arc<Nodes>,
    users: usize,
    seconds: u64,
    common: &Common,
) -> Result<(), String> {
    eprintln!("churn: {users} users reconnecting continuously for {seconds} s");
    if users == 0 {
        return Err("churn needs at least one user".into());
    }
    let tokens = make_users(&nodes, users, common.accounts.as_deref()).await?;
    // One room per node (rooms are per node); worker w visits node w mod N's.
    let mut room_ids = Vec::with_capacity(nodes.len());
    for node in 0..nodes.len() {
        let room = nodes
            .api(node)
            .call(
                "POST",
                "/lobby/rooms",
                &tokens[node % tokens.len()],
                Some(json!({"name": "churn", "capacity": 64})),
            )
            .await?;
        room_ids.push(room["id"].as_str().unwrap_or_default().to_string());
    }
    let pid = common.server_pid;
    let rss_before = pid.and_then(rss_bytes);
    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(w, token)| {
            let node = w % nodes.len();
            let (nodes, cycles, errors, room_id) = (
                nodes.clone(),
                cycles.clone(),
                errors.clone(),
                room_ids[node].clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    match one_visit(&nodes, node, &token, &room_id).await {
                        Ok(()) => cycles.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let progress = bar(seconds as usize, "churning");
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.inc(1);
        progress.set_message(format!("{} visits", cycles.load(Ordering::Relaxed)));
    }
    progress.finish();
    for w in workers {
        let _ = w.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = pid.and_then(rss_bytes);
    let visits = cycles.load(Ordering::Relaxed);
    eprintln!(
        "  {visits} visits ({}), {} errors",
        crate::human::rate(visits as f64 / seconds.max(1) as f64),
        errors.load(Ordering::Relaxed)
    );
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        eprintln!(
            "  server RSS {:.1} MB → {:.1} MB",
            b as f64 / 1e6,
            a as f64 / 1e6
        );
    }
    emit(
        common,
        json!({
            "scenario": "churn", "users": users, "seconds": seconds, "visits": visits,
            "errors": errors.load(Ordering::Relaxed),
            "server_rss_before": rss_before, "server_rss_after": rss_after,
        }),
    );
    Ok(())
}

/// Connect, join, move a little, chat once, leave.
async fn one_visit(nodes: &Nodes, node: usize, token: &str, room: &str) -> Result<(), String> {
    let (mut socket, _, _) = open(nodes, node, token).await?;
    let send = |v: Value| Message::text(v.to_string());
    socket
        .send(send(json!({"type": "join", "room": room})))
        .await
        .map_err(|e| e.to_string())?;
    for seq in 1..=5u64 {
        socket
            .send(send(json!({"type": "input", "seq": seq, "dx": 1, "dy": 0})))
            .await
            .map_err(|e| e.to_string())?;
    }
    socket
        .send(send(json!({"type": "chat", "text": "hi"})))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    let _ = socket.close(None).await;
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// User + system CPU time a process has used, in seconds (Linux /proc).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// (user, system) CPU seconds of a process. System time is mostly the kernel's TCP work.
pub(crate) fn cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / 100.0, stime / 100.0)) // USER_HZ is 100 on Linux
}

/// Resident memory of a process, from /proc (Linux).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// p50, p99 and max of a run's samples, in ms (nearest rank).
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// Of latencies (sorts them).
    pub(crate) fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort();
        Self::of_sorted(samples.len(), |i| samples[i].as_secs_f64() * 1000.0)
    }

    /// Of values already in the unit to report (sorts them).
    pub(crate) fn of_values(values: &mut [f64]) -> Percentiles {
        values.sort_by(f64::total_cmp);
        Self::of_sorted(values.len(), |i| values[i])
    }

    fn of_sorted(len: usize, value: impl Fn(usize) -> f64) -> Percentiles {
        let at = |q: f64| -> f64 {
            if len == 0 {
                return 0.0;
            }
            value(((len as f64 - 1.0) * q).round() as usize)
        };
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_token_lifetime_is_refused_naming_the_server_flag() {
        let e = check_ttl(900, Duration::from_secs(120)).expect_err("900 s is too long");
        assert!(
            e.contains("--access-ttl") && e.contains("--max-wait 930"),
            "{e}"
        );
        assert!(check_ttl(20, Duration::from_secs(120)).is_ok());
    }

    #[test]
    fn refusals_name_the_limit_behind_them() {
        let login = limit_hint("/auth/login: too many attempts (rate_limited)".into());
        assert!(login.contains("--auth-rate-limit 0"), "{login}");
        let upgrade = limit_hint("upgrade refused: HTTP 429 Too Many Requests".into());
        assert!(upgrade.contains("--max-sockets-per-user"), "{upgrade}");
        assert_eq!(limit_hint("other".into()), "other");
    }
}
