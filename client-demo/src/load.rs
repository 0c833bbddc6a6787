//! `arena-client load`: scenarios a game team runs before launch. Each shows progress on
//! stderr, a human summary, and one JSON line on stdout. They speak only PROTOCOL.md, so
//! they work against any server that does (the Node.js comparison server included).
//!
//! - `connect`: users × sockets; handshake rate and latency; with `--server-pid`, server
//!   memory per idle socket and server CPU per handshake.
//! - `revoke`: users with sockets open log out one by one; time from the logout request
//!   until every socket saw its close code.
//! - `expiry`: sockets whose tokens expire over a few seconds; each must close with 4002.
//! - `broadcast`: rooms × players moving (20 inputs/s) and chatting; delivered messages
//!   per second and chat latency.
//! - `churn`: sockets connecting, playing briefly and leaving, continuously; server
//!   memory before and after shows leaks.
//!
//! The server must allow many logins from one address (`--auth-rate-limit 0` for Arena).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{Api, Socket};
use crate::dial::{fd_limit, Dialer};

const PASSWORD: &str = "load-test-password";

#[derive(clap::Args, Clone)]
pub struct Common {
    /// The server's pid, to read its memory and CPU (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Local addresses to open sockets from (default: 127.0.0.1-8 for a loopback server).
    #[arg(long, value_delimiter = ',')]
    source: Vec<IpAddr>,
    /// Upgrades in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
}

#[derive(clap::Subcommand)]
pub enum Scenario {
    /// Open users × sockets idle authenticated sockets and hold them.
    Connect {
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        /// Seconds to hold the sockets open, sampling server memory every 10 s.
        #[arg(long, default_value_t = 0)]
        hold: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Log out users that have sockets open and time how fast every socket is closed.
    Revoke {
        #[arg(long, default_value_t = 50)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Sockets whose tokens expire over a few seconds (run the server with a short
    /// access TTL, say 20 s): each must be closed with 4002 on time.
    Expiry {
        #[arg(long, default_value_t = 400)]
        users: usize,
        #[arg(long, default_value_t = 25)]
        sockets: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Rooms × players moving and chatting.
    Broadcast {
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        #[arg(long, default_value_t = 16)]
        players: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Chat messages per player per second.
        #[arg(long, default_value_t = 1.0)]
        chat_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Sockets connecting, playing briefly and leaving, continuously.
    Churn {
        #[arg(long, default_value_t = 50)]
        users: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(api: &Api, base: &str, scenario: Scenario) -> Result<(), String> {
    if let Some(limit) = fd_limit() {
        eprintln!("file-descriptor limit of this process: {limit}");
    }
    match scenario {
        Scenario::Connect {
            users,
            sockets,
            hold,
            common,
        } => {
            connect(
                api,
                &Dialer::new(base, &common.source)?,
                users,
                sockets,
                hold,
                &common,
            )
            .await
        }
        Scenario::Revoke {
            users,
            sockets,
            common,
        } => revoke(api, &Dialer::new(base, &common.source)?, users, sockets).await,
        Scenario::Expiry {
            users,
            sockets,
            common,
        } => {
            expiry(
                api,
                Dialer::new(base, &common.source)?,
                users,
                sockets,
                &common,
            )
            .await
        }
        Scenario::Broadcast {
            rooms,
            players,
            seconds,
            chat_rate,
            common,
        } => {
            broadcast(
                api,
                Dialer::new(base, &common.source)?,
                rooms,
                players,
                seconds,
                chat_rate,
                &common,
            )
            .await
        }
        Scenario::Churn {
            users,
            seconds,
            common,
        } => {
            churn(
                api,
                Dialer::new(base, &common.source)?,
                users,
                seconds,
                &common,
            )
            .await
        }
    }
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(&format!(
        "  {what:<10} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Register `n` fresh users; returns their names.
async fn register_users(api: &Api, n: usize) -> Result<Vec<String>, String> {
    let run_id = format!("{}{}", std::process::id(), now_ms() % 100_000);
    let progress = bar(n, "users");
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("ld{run_id}_{i}");
        api.register(&name, PASSWORD).await?;
        names.push(name);
        progress.inc(1);
    }
    progress.finish();
    Ok(names)
}

/// Register and log in `n` fresh users; returns their access tokens.
async fn make_users(api: &Api, n: usize) -> Result<Vec<String>, String> {
    let names = register_users(api, n).await?;
    let progress = bar(n, "logins");
    let mut tokens = Vec::with_capacity(n);
    for name in &names {
        tokens.push(api.login(name, PASSWORD).await?.access_token);
        progress.inc(1);
    }
    progress.finish();
    Ok(tokens)
}

/// Open a socket and read its `welcome`.
async fn open(dialer: &Dialer, token: &str) -> Result<(Socket, Value, Duration), String> {
    let started = Instant::now();
    let mut socket = dialer.connect(token).await?;
    match socket.next().await {
        Some(Ok(Message::Text(t))) => {
            let welcome: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            Ok((socket, welcome, started.elapsed()))
        }
        other => Err(format!("no welcome: {other:?}")),
    }
}

async fn connect(
    api: &Api,
    dialer: &Dialer,
    users: usize,
    per_user: usize,
    hold: u64,
    common: &Common,
) -> Result<(), String> {
    eprintln!("connect: {users} users × {per_user} sockets");
    let tokens = make_users(api, users).await?;
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
            .flat_map(|t| std::iter::repeat_n(t.clone(), per_user)),
    )
    .map(|token| {
        let permits = permits.clone();
        async move {
            let _p = permits.acquire().await;
            open(dialer, &token).await
        }
    })
    .buffer_unordered(common.concurrency.max(1));
    tokio::pin!(results);
    while let Some(r) = results.next().await {
        match r {
            Ok((s, _, d)) => {
                sockets.push(s);
                latencies.push(d);
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
    let per_handshake = |f: fn((f64, f64)) -> f64| {
        cpu_before
            .zip(cpu_after)
            .filter(|_| open_count > 0)
            .map(|(b, a)| (f(a) - f(b)) * 1e6 / open_count as f64)
    };
    let cpu_per_handshake_us = per_handshake(|(u, s)| u + s);
    let user_cpu_per_handshake_us = per_handshake(|(u, _)| u);
    let p = Percentiles::of(&mut latencies);
    if let Some(e) = &first_error {
        eprintln!("  first error: {e}");
    }
    eprintln!(
        "  {open_count} open, {errors} errors, {:.0} handshakes/s; latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        open_count as f64 / elapsed.as_secs_f64(),
        p.p50,
        p.p99,
        p.max
    );
    if let Some(b) = per_socket {
        eprintln!("  server memory: {b:.0} bytes per idle socket (RSS delta / sockets)");
    }
    if let (Some(us), Some(user)) = (cpu_per_handshake_us, user_cpu_per_handshake_us) {
        eprintln!("  server CPU: {us:.1} µs per handshake ({user:.1} µs in user space, the rest in the kernel)");
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
        let until = Instant::now() + Duration::from_secs(hold);
        let mut next_sample = Instant::now();
        while Instant::now() < until {
            if Instant::now() >= next_sample {
                let t = hold as i64 - (until - Instant::now()).as_secs() as i64;
                samples.push(json!({"t": t, "rss": pid.and_then(rss_bytes)}));
                next_sample += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            progress.inc(1);
        }
        progress.finish();
        let _ = check_tx.send(true);
        let mut count = 0usize;
        for h in holders {
            count += matches!(h.await, Ok(true)) as usize;
        }
        eprintln!("  after {hold} s: {count}/{open_count} sockets answered a ping");
        alive = Some(count);
    }
    println!(
        "{}",
        json!({
            "scenario": "connect", "users": users, "sockets_per_user": per_user,
            "open": open_count, "errors": errors, "first_error": first_error,
            "handshakes_per_sec": open_count as f64 / elapsed.as_secs_f64(),
            "latency_ms": p.to_json(),
            "server_rss_before": rss_before, "server_rss_after": rss_after,
            "server_bytes_per_socket": per_socket,
            "server_cpu_us_per_handshake": cpu_per_handshake_us,
            "server_user_cpu_us_per_handshake": user_cpu_per_handshake_us,
            "rss_samples": samples, "alive_after_hold": alive,
        })
    );
    drop(sockets);
    Ok(())
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

async fn revoke(api: &Api, dialer: &Dialer, users: usize, per_user: usize) -> Result<(), String> {
    eprintln!("revoke: {users} users × {per_user} sockets, logged out one at a time");
    let tokens = make_users(api, users).await?;
    let mut request_ms = Vec::with_capacity(users);
    let mut all_closed_ms = Vec::with_capacity(users);
    let (mut left_open, mut wrong_code) = (0usize, 0usize);
    let progress = bar(users, "logouts");
    for token in &tokens {
        let mut sockets = Vec::with_capacity(per_user);
        for _ in 0..per_user {
            sockets.push(open(dialer, token).await?.0);
        }
        let watchers: Vec<_> = sockets
            .into_iter()
            .map(|mut s| {
                tokio::spawn(async move {
                    let r = tokio::time::timeout(Duration::from_secs(10), async {
                        while let Some(msg) = s.next().await {
                            if let Ok(Message::Close(f)) = msg {
                                return Some(f.map_or(1005, |f| u16::from(f.code)));
                            }
                        }
                        None
                    })
                    .await;
                    (Instant::now(), r)
                })
            })
            .collect();
        let started = Instant::now();
        api.call("POST", "/auth/logout", token, Some(json!({})))
            .await?;
        request_ms.push(started.elapsed());
        let mut last = started;
        for w in watchers {
            let (at, r) = w.await.map_err(|e| e.to_string())?;
            match r {
                Ok(Some(4001)) => last = last.max(at),
                Ok(_) => wrong_code += 1,
                Err(_) => left_open += 1,
            }
        }
        all_closed_ms.push(last - started);
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
    println!(
        "{}",
        json!({
            "scenario": "revoke", "users": users, "sockets_per_user": per_user,
            "logout_request_ms": req.to_json(), "all_closed_ms": closed.to_json(),
            "left_open": left_open, "wrong_code": wrong_code,
        })
    );
    if left_open + wrong_code > 0 {
        return Err(format!(
            "{left_open} sockets left open, {wrong_code} closed with the wrong code"
        ));
    }
    Ok(())
}

async fn expiry(
    api: &Api,
    dialer: Dialer,
    users: usize,
    per_user: usize,
    common: &Common,
) -> Result<(), String> {
    eprintln!("expiry: {users} users × {per_user} sockets; tokens expire as the logins went");
    let names = register_users(api, users).await?;
    let pid = common.server_pid;
    let rss_before = pid.and_then(rss_bytes);
    let dialer = Arc::new(dialer);
    // Log in one user after another and open their sockets at once: the tokens' expiry
    // times spread over as long as the logins take.
    let mut watchers = Vec::with_capacity(users * per_user);
    let progress = bar(users, "logins");
    for name in &names {
        let token = api.login(name, PASSWORD).await?.access_token;
        for _ in 0..per_user {
            let (dialer, token) = (dialer.clone(), token.clone());
            watchers.push(tokio::spawn(
                async move { watch_expiry(&dialer, &token).await },
            ));
        }
        progress.inc(1);
    }
    progress.finish();
    let cpu_open = pid.and_then(cpu_seconds);
    let rss_open = pid.and_then(rss_bytes);
    let mut late_ms = Vec::with_capacity(watchers.len());
    let (mut on_time, mut wrong, mut open_left, mut warned, mut failed) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut first_exp, mut last_exp) = (i64::MAX, i64::MIN);
    let progress = bar(watchers.len(), "expired");
    for w in watchers {
        match w.await.map_err(|e| e.to_string())? {
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
        progress.inc(1);
    }
    progress.finish();
    let cpu = cpu_open.zip(pid.and_then(cpu_seconds)).map(|(a, b)| b - a);
    let late = Percentiles::of(&mut late_ms);
    eprintln!("  {on_time} closed with 4002, {wrong} other codes, {open_left} left open, {failed} failed; {warned} token_expiring");
    eprintln!(
        "  expiries spread over {:.1} s; close after exp p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        (last_exp - first_exp) as f64 / 1000.0,
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
    println!(
        "{}",
        json!({
            "scenario": "expiry", "users": users, "sockets_per_user": per_user,
            "closed_4002": on_time, "other_codes": wrong, "left_open": open_left, "failed": failed,
            "token_expiring_seen": warned, "expiry_spread_ms": last_exp - first_exp,
            "close_after_exp_ms": late.to_json(), "server_cpu_secs_open_to_closed": cpu,
            "server_rss_before": rss_before, "server_rss_open": rss_open,
        })
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

async fn watch_expiry(dialer: &Dialer, token: &str) -> Result<ExpiryObservation, String> {
    let (mut socket, welcome, _) = open(dialer, token).await?;
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

/// Counters shared by every player task of a broadcast run.
#[derive(Default)]
struct Traffic {
    received: AtomicU64,
    states: AtomicU64,
    chats: AtomicU64,
    sent: AtomicU64,
    errors: AtomicUsize,
}

#[allow(clippy::too_many_arguments)]
async fn broadcast(
    api: &Api,
    dialer: Dialer,
    rooms: usize,
    players: usize,
    seconds: u64,
    chat_rate: f64,
    common: &Common,
) -> Result<(), String> {
    eprintln!(
        "broadcast: {rooms} rooms × {players} players for {seconds} s, {chat_rate} chats/s each"
    );
    let tokens = make_users(api, rooms * players).await?;
    let mut room_ids = Vec::with_capacity(rooms);
    for i in 0..rooms {
        // Each room's first player creates it: the server bounds rooms per user.
        let room = api
            .call(
                "POST",
                "/lobby/rooms",
                &tokens[i * players],
                Some(json!({"name": format!("load {i}"), "capacity": players.clamp(2, 64)})),
            )
            .await?;
        room_ids.push(room["id"].as_str().unwrap_or_default().to_string());
    }
    let dialer = Arc::new(dialer);
    let traffic = Arc::new(Traffic::default());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let progress = bar(tokens.len(), "joining");
    let mut sockets = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let (mut socket, _, _) = open(&dialer, token).await?;
        socket
            .send(Message::text(
                json!({"type": "join", "room": room_ids[i / players]}).to_string(),
            ))
            .await
            .map_err(|e| e.to_string())?;
        sockets.push(socket);
        progress.inc(1);
    }
    progress.finish();
    let pid = common.server_pid;
    let cpu_before = pid.and_then(cpu_seconds);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let (traffic, latencies) = (traffic.clone(), latencies.clone());
            tokio::spawn(play(i, socket, until, chat_rate, traffic, latencies))
        })
        .collect();
    let progress = bar(seconds as usize, "playing");
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.inc(1);
        progress.set_message(format!("{} msgs", traffic.received.load(Ordering::Relaxed)));
    }
    progress.finish();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(pid.and_then(cpu_seconds))
        .map(|(a, b)| b - a);
    let received = traffic.received.load(Ordering::Relaxed);
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let p = Percentiles::of(&mut lat);
    let rate = received as f64 / elapsed;
    eprintln!(
        "  delivered {received} messages ({} state, {} chat) in {elapsed:.1} s: {rate:.0}/s; sent {}; {} errors",
        traffic.states.load(Ordering::Relaxed),
        traffic.chats.load(Ordering::Relaxed),
        traffic.sent.load(Ordering::Relaxed),
        traffic.errors.load(Ordering::Relaxed)
    );
    eprintln!(
        "  chat latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        p.p50, p.p99, p.max
    );
    if let Some(cpu) = cpu {
        eprintln!("  server CPU {cpu:.2} s over {elapsed:.1} s");
    }
    println!(
        "{}",
        json!({
            "scenario": "broadcast", "rooms": rooms, "players": players, "seconds": elapsed,
            "delivered": received, "delivered_per_sec": rate,
            "states": traffic.states.load(Ordering::Relaxed), "chats": traffic.chats.load(Ordering::Relaxed),
            "sent": traffic.sent.load(Ordering::Relaxed), "errors": traffic.errors.load(Ordering::Relaxed),
            "chat_latency_ms": p.to_json(), "server_cpu_secs": cpu,
        })
    );
    Ok(())
}

/// One player: 20 inputs per second, chat at `chat_rate`, and read everything.
async fn play(
    i: usize,
    socket: Socket,
    until: Instant,
    chat_rate: f64,
    traffic: Arc<Traffic>,
    latencies: Arc<std::sync::Mutex<Vec<Duration>>>,
) {
    let (mut write, mut read) = socket.split();
    let epoch = Instant::now();
    let reader = {
        let traffic = traffic.clone();
        tokio::spawn(async move {
            let mut local = Vec::new();
            while let Some(Ok(msg)) = read.next().await {
                let Message::Text(t) = msg else { continue };
                traffic.received.fetch_add(1, Ordering::Relaxed);
                let text = t.as_str();
                if text.starts_with(r#"{"type":"state""#) {
                    traffic.states.fetch_add(1, Ordering::Relaxed);
                } else if text.starts_with(r#"{"type":"chat""#) {
                    traffic.chats.fetch_add(1, Ordering::Relaxed);
                    // Our chats carry "<player>:<micros since its epoch>"; only the
                    // sender can time its own (same clock), a sample per message.
                    if let Ok(v) = serde_json::from_str::<Value>(text) {
                        if let Some((who, at)) = v["text"].as_str().and_then(|s| s.split_once(':'))
                        {
                            if who == i.to_string() {
                                if let Ok(us) = at.parse::<u64>() {
                                    local.push(
                                        epoch.elapsed().saturating_sub(Duration::from_micros(us)),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(local);
            }
        })
    };
    let mut input = tokio::time::interval(Duration::from_millis(50));
    let chat_every = if chat_rate > 0.0 {
        Duration::from_secs_f64(1.0 / chat_rate)
    } else {
        Duration::MAX
    };
    let mut next_chat = Instant::now() + Duration::from_millis((i as u64 * 37) % 1000);
    let mut seq = 0u64;
    while Instant::now() < until {
        input.tick().await;
        seq += 1;
        let angle = (seq as f64 / 20.0) + i as f64;
        let msg = json!({"type": "input", "seq": seq, "dx": angle.cos(), "dy": angle.sin()});
        if write.send(Message::text(msg.to_string())).await.is_err() {
            traffic.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        traffic.sent.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= next_chat {
            next_chat += chat_every;
            let text = format!("{i}:{}", epoch.elapsed().as_micros());
            if write
                .send(Message::text(
                    json!({"type": "chat", "text": text}).to_string(),
                ))
                .await
                .is_ok()
            {
                traffic.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = write.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
}

async fn churn(
    api: &Api,
    dialer: Dialer,
    users: usize,
    seconds: u64,
    common: &Common,
) -> Result<(), String> {
    eprintln!("churn: {users} users reconnecting continuously for {seconds} s");
    let tokens = make_users(api, users).await?;
    let room = api
        .call(
            "POST",
            "/lobby/rooms",
            &tokens[0],
            Some(json!({"name": "churn", "capacity": 64})),
        )
        .await?;
    let room_id = room["id"].as_str().unwrap_or_default().to_string();
    let pid = common.server_pid;
    let rss_before = pid.and_then(rss_bytes);
    let dialer = Arc::new(dialer);
    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (dialer, cycles, errors, room_id) = (
                dialer.clone(),
                cycles.clone(),
                errors.clone(),
                room_id.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    match one_visit(&dialer, &token, &room_id).await {
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
        "  {visits} visits ({:.0}/s), {} errors",
        visits as f64 / seconds as f64,
        errors.load(Ordering::Relaxed)
    );
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        eprintln!(
            "  server RSS {:.1} MB → {:.1} MB",
            b as f64 / 1e6,
            a as f64 / 1e6
        );
    }
    println!(
        "{}",
        json!({
            "scenario": "churn", "users": users, "seconds": seconds, "visits": visits,
            "errors": errors.load(Ordering::Relaxed),
            "server_rss_before": rss_before, "server_rss_after": rss_after,
        })
    );
    Ok(())
}

/// Connect, join, move a little, chat once, leave.
async fn one_visit(dialer: &Dialer, token: &str, room: &str) -> Result<(), String> {
    let (mut socket, _, _) = open(dialer, token).await?;
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// User + system CPU time a process has used, in seconds (Linux /proc).
fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// (user, system) CPU seconds of a process. System time is mostly the kernel's TCP work.
fn cpu_split(pid: u32) -> Option<(f64, f64)> {
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

struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i].as_secs_f64() * 1000.0
        };
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    fn to_json(&self) -> Value {
        json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }
}
