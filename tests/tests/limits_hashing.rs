//! Password hashing is bounded: a burst of failed logins for unknown usernames (no
//! account needed, from many addresses, so no per-address limit helps) costs the server
//! a bounded amount of memory, gives it back afterwards, is told to retry (503 with
//! `Retry-After`) beyond the hashing queue, and leaves room for a real player to log in.
//!
//! Before the bound, 120 such logins took the server from 14 MB to 1.28 GB, held for
//! good: each Argon2 hash allocated 19 MiB on whichever blocking-pool thread ran it, and
//! those threads' malloc arenas kept it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use arena_tests::*;
use serde_json::json;
use tokio::time::Instant;

/// Logins in the burst, and the loopback source addresses they come from.
const BURST: usize = 300;
const ADDRESSES: u8 = 60;

const HASH_THREADS: u64 = 2;
const MIB: u64 = 1024 * 1024;

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One login attempt: its status and `Retry-After` seconds, if any.
async fn login(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> (u16, Option<u64>) {
    let resp = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login request");
    let retry_after = retry_after(&resp);
    (resp.status().as_u16(), retry_after)
}

#[tokio::test]
async fn a_burst_of_failed_logins_keeps_memory_bounded_and_a_player_still_logs_in() {
    let data = DataDir::new();
    let threads = HASH_THREADS.to_string();
    let server = TestServer::start(
        &data,
        &[
            "--password-hash-threads",
            &threads,
            "--password-hash-queue",
            "32",
        ],
    )
    .await;
    let player = server.new_player("hb").await;
    let pid = server.pid();
    let (before, _) = memory_of(pid);

    // Every login of the burst at once, each address with its own client (and so its
    // own connections), for usernames nobody has.
    let clients: Vec<reqwest::Client> = (0..ADDRESSES)
        .map(|n| {
            reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n)))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client")
        })
        .collect();
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let http = clients[i % clients.len()].clone();
            let base = server.base.clone();
            tokio::spawn(async move {
                login(&http, &base, &format!("nobody{i}x"), "wrong-password").await
            })
        })
        .collect();

    // The player logs in while the burst runs, retrying when told to.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logged_in_during = loop {
        let (status, retry_after) = login(
            &server.http,
            &server.base,
            &player.username,
            &player.password,
        )
        .await;
        match status {
            200 => break true,
            503 => {
                let wait = retry_after.expect("503 without Retry-After");
                assert!(Instant::now() < deadline, "the player never got in");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            other => panic!("the player's login got {other}"),
        }
    };
    assert!(logged_in_during);

    let (mut refused, mut failed) = (0, 0);
    for answer in burst {
        match answer.await.expect("burst task") {
            (401, _) => failed += 1,
            (503, Some(secs)) if secs >= 1 => refused += 1,
            other => panic!("a login of the burst got {other:?}"),
        }
    }
    // The burst's connections close (the server frees their buffers).
    drop(clients);
    let (_, peak) = memory_of(pid);
    eprintln!(
        "burst of {BURST}: {failed} x 401, {refused} x 503; RSS before {} MiB, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    // Peak: the hashing threads' blocks (19 MiB each) and the connections, nothing per
    // login in flight.
    let peak_bound = before + HASH_THREADS * 19 * MIB + 48 * MIB;
    assert!(
        peak <= peak_bound,
        "peak RSS {} MiB, bound {} MiB (before: {} MiB)",
        peak / MIB,
        peak_bound / MIB,
        before / MIB
    );

    // The queue held some, the rest were told to retry; none was lost or hung.
    assert_eq!(failed + refused, BURST);
    assert!(failed >= 32, "only {failed} logins were hashed");
    assert!(refused > 0, "nothing was refused: the queue is not bounded");

    // Returned: the blocks go back to the system once the queue is empty.
    let settled_bound = before + 24 * MIB;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (now, _) = memory_of(pid);
        if now <= settled_bound {
            eprintln!("RSS after the burst: {} MiB", now / MIB);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS after the burst {} MiB, bound {} MiB (before: {} MiB)",
            now / MIB,
            settled_bound / MIB,
            before / MIB
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // And the player logs in after it, at once.
    let (status, _) = login(
        &server.http,
        &server.base,
        &player.username,
        &player.password,
    )
    .await;
    assert_eq!(status, 200);
}
