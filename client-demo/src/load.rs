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
    }
}

/// Register and log in `n` fresh users; returns their access tokens.
async fn make_users(api: &Api, n: usize) -> Result<Vec<String>, String> {
    let run_id = std::process::id();
    let mut tokens = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let name = format!("load{run_id}_{i}");
        api.register(&name, PASSWORD).await?;
        tokens.push(api.login(&name, PASSWORD).await?.access_token);
        if (i + 1) % 50 == 0 || i + 1 == n {
            eprint!("\r  users: {}/{n}", i + 1);
        }
    }
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(tokens)
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
