//! `arena-client load`: scenarios a game team runs before launch. Each prints a human
//! summary on stderr and one JSON line on stdout.
//!
//! - `connect`: N users × S sockets; handshake latency and, given the server's pid,
//!   server memory per idle socket (RSS delta / sockets).
//! - `revoke`: users with S open sockets log out one after another; the time from the
//!   logout request to its 204, and to every socket having seen close 4001.
//!
//! The server must run with `--auth-rate-limit 0` (all logins come from one address).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{Api, Socket};

const PASSWORD: &str = "load-test-password";

#[derive(clap::Subcommand)]
pub enum Scenario {
    /// Open users × sockets idle authenticated sockets and hold them.
    Connect {
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        sockets: usize,
        /// The server's pid, to read its memory (Linux /proc) before and after.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Seconds to hold the sockets open before closing them.
        #[arg(long, default_value_t = 0)]
        hold: u64,
        /// Upgrades in flight at once.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
    },
    /// Open sockets whose tokens expire over a few seconds and check each is closed with
    /// 4002 on time; with the server's pid, what the expiry machinery costs it. Run the
    /// server with a short `--access-ttl` (say 30).
    Expiry {
        #[arg(long, default_value_t = 400)]
        users: usize,
        #[arg(long, default_value_t = 25)]
        sockets: usize,
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Log out users that have sockets open and time how fast every socket is closed.
    Revoke {
        #[arg(long, default_value_t = 50)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        sockets: usize,
    },
}

pub async fn run(api: &Api, scenario: Scenario) -> Result<(), String> {
    match scenario {
        Scenario::Connect {
            users,
            sockets,
            server_pid,
            hold,
            concurrency,
        } => connect(api, users, sockets, server_pid, hold, concurrency).await,
        Scenario::Revoke { users, sockets } => revoke(api, users, sockets).await,
        Scenario::Expiry {
            users,
            sockets,
            server_pid,
        } => expiry(api, users, sockets, server_pid).await,
    }
}

/// Register and log in `n` fresh users; returns their access tokens.
async fn make_users(api: &Api, n: usize) -> Result<Vec<String>, String> {
    let names = register_users(api, n).await?;
    let mut tokens = Vec::with_capacity(n);
    for name in &names {
        tokens.push(api.login(name, PASSWORD).await?.access_token);
    }
    Ok(tokens)
}

/// Register `n` fresh users; returns their names.
async fn register_users(api: &Api, n: usize) -> Result<Vec<String>, String> {
    let run_id = std::process::id();
    let started = Instant::now();
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("load{run_id}_{i}");
        api.register(&name, PASSWORD).await?;
        names.push(name);
        if (i + 1) % 50 == 0 || i + 1 == n {
            eprint!("\r  users: {}/{n}", i + 1);
        }
    }
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(names)
}

async fn open(api: &Api, token: &str) -> Result<(Socket, Duration), String> {
    let started = Instant::now();
    let mut socket = api.connect(token).await?;
    // Handshake done when the welcome arrives: the token check happened before the 101.
    match socket.next().await {
        Some(Ok(Message::Text(_))) => Ok((socket, started.elapsed())),
        other => Err(format!("no welcome: {other:?}")),
    }
}

async fn connect(
    api: &Api,
    users: usize,
    per_user: usize,
    server_pid: Option<u32>,
    hold: u64,
    concurrency: usize,
) -> Result<(), String> {
    eprintln!("connect: {users} users × {per_user} sockets");
    let tokens = make_users(api, users).await?;
    let rss_before = server_pid.and_then(rss_bytes);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let api = Arc::new(api.clone());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(users * per_user);
    for token in &tokens {
        for _ in 0..per_user {
            let (api, token, permits) = (api.clone(), token.clone(), permits.clone());
            tasks.push(tokio::spawn(async move {
                let _p = permits.acquire().await;
                open(&api, &token).await
            }));
        }
    }
    let mut sockets = Vec::with_capacity(tasks.len());
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0usize;
    let total = tasks.len();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok((s, d))) => {
                sockets.push(s);
                latencies.push(d);
            }
            Ok(Err(e)) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("\n  error: {e}");
                }
            }
            Err(e) => return Err(e.to_string()),
        }
        if (i + 1) % 500 == 0 || i + 1 == total {
            eprint!("\r  sockets: {}/{total}", i + 1);
        }
    }
    let elapsed = started.elapsed();
    eprintln!();
    // Let the server settle (its tasks have sent welcome; allocator pages touched).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server_pid.and_then(rss_bytes);
    let per_socket = match (rss_before, rss_after) {
        (Some(b), Some(a)) if !sockets.is_empty() => {
            Some((a as f64 - b as f64) / sockets.len() as f64)
        }
        _ => None,
    };
    let p = Percentiles::of(&mut latencies);
    eprintln!(
        "  {} open, {errors} errors, {:.0} handshakes/s; latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        sockets.len(),
        sockets.len() as f64 / elapsed.as_secs_f64(),
        p.p50,
        p.p99,
        p.max
    );
    if let Some(b) = per_socket {
        eprintln!(
            "  server memory: {:.0} bytes per idle socket (RSS delta / sockets)",
            b
        );
    }
    println!(
        "{}",
        json!({
            "scenario": "connect", "users": users, "sockets_per_user": per_user,
            "open": sockets.len(), "errors": errors,
            "handshakes_per_sec": sockets.len() as f64 / elapsed.as_secs_f64(),
            "latency_ms": p.to_json(),
            "server_rss_before": rss_before, "server_rss_after": rss_after,
            "server_bytes_per_socket": per_socket,
        })
    );
    if hold > 0 {
        eprintln!("  holding for {hold} s");
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    drop(sockets);
    Ok(())
}

async fn revoke(api: &Api, users: usize, per_user: usize) -> Result<(), String> {
    eprintln!("revoke: {users} users × {per_user} sockets, logged out one at a time");
    let tokens = make_users(api, users).await?;
    let mut request_ms = Vec::with_capacity(users);
    let mut all_closed_ms = Vec::with_capacity(users);
    let mut left_open = 0usize;
    let mut wrong_code = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        let mut sockets = Vec::with_capacity(per_user);
        for _ in 0..per_user {
            sockets.push(open(api, token).await?.0);
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
        eprint!("\r  users logged out: {}/{users}", i + 1);
    }
    eprintln!();
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
    users: usize,
    per_user: usize,
    server_pid: Option<u32>,
) -> Result<(), String> {
    eprintln!("expiry: {users} users × {per_user} sockets; tokens expire as the logins went");
    let names = register_users(api, users).await?;
    let rss_before = server_pid.and_then(rss_bytes);
    let api = Arc::new(api.clone());
    // Log in one user after another and open their sockets at once: the tokens' expiry
    // times spread over as long as the logins take.
    let mut watchers = Vec::with_capacity(users * per_user);
    let started = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let token = api.login(name, PASSWORD).await?.access_token;
        for _ in 0..per_user {
            let (api, token) = (api.clone(), token.clone());
            watchers.push(tokio::spawn(
                async move { watch_expiry(&api, &token).await },
            ));
        }
        if (i + 1) % 50 == 0 || i + 1 == users {
            eprint!("\r  logged in: {}/{users}", i + 1);
        }
    }
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());
    let cpu_open = server_pid.and_then(cpu_seconds);
    let rss_open = server_pid.and_then(rss_bytes);
    let mut late_ms = Vec::with_capacity(watchers.len());
    let (mut on_time, mut wrong, mut open_left, mut warned, mut failed) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut first_exp = i64::MAX;
    let mut last_exp = i64::MIN;
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
    }
    let cpu_done = server_pid.and_then(cpu_seconds);
    let late = Percentiles::of(&mut late_ms);
    let cpu = cpu_open.zip(cpu_done).map(|(a, b)| b - a);
    eprintln!(
        "  {on_time} closed with 4002, {wrong} other codes, {open_left} left open, {failed} failed; {warned} token_expiring"
    );
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
            "token_expiring_seen": warned,
            "expiry_spread_ms": last_exp - first_exp,
            "close_after_exp_ms": late.to_json(),
            "server_cpu_secs_open_to_closed": cpu,
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

async fn watch_expiry(api: &Api, token: &str) -> Result<ExpiryObservation, String> {
    let mut socket = api.connect(token).await?;
    let welcome = match socket.next().await {
        Some(Ok(Message::Text(t))) => {
            serde_json::from_str::<serde_json::Value>(t.as_str()).map_err(|e| e.to_string())?
        }
        other => return Err(format!("no welcome: {other:?}")),
    };
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// User + system CPU time a process has used, in seconds (Linux /proc).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
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

    fn to_json(&self) -> serde_json::Value {
        json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }
}
