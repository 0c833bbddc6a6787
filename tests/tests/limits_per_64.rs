//! One IPv6 /64 is one client address for every per-address limit: a host that holds a
//! /64 (any customer of an IPv6 provider) cannot multiply its registrations (Argon2 CPU,
//! rows) or refreshes (database writes) by varying the low 64 bits of its address.
//!
//! The test needs several addresses of one /64 to send from. It adds them to `lo`
//! (`ip -6 addr add …/128 dev lo`, which needs root) and removes them afterwards; where
//! it cannot, it says so and checks nothing (the grouping function has unit tests in
//! `state.rs` and `serve.rs`).

use std::net::{IpAddr, Ipv6Addr};
use std::process::Command;

use arena_tests::*;
use serde_json::{json, Value};

/// The server's address, four sources in its /64, and one source in another /64.
const SERVER: &str = "fd00:a26:7::1";
const SAME_64: [&str; 4] = [
    "fd00:a26:7::a",
    "fd00:a26:7:0:ffff:1:2:3",
    "fd00:a26:7::c",
    "fd00:a26:7:0:8000::d",
];
const OTHER_64: &str = "fd00:a26:8::a";

/// The addresses added to `lo`, removed again when dropped.
struct LoopbackAddresses(Vec<&'static str>);

impl LoopbackAddresses {
    fn add(addresses: &[&'static str]) -> Option<LoopbackAddresses> {
        let mut added = LoopbackAddresses(Vec::new());
        for address in addresses {
            let ok = Command::new("ip")
                .args([
                    "-6",
                    "addr",
                    "replace",
                    &format!("{address}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ])
                .output()
                .is_ok_and(|out| out.status.success());
            if !ok {
                return None;
            }
            added.0.push(address);
        }
        Some(added)
    }
}

impl Drop for LoopbackAddresses {
    fn drop(&mut self) {
        for address in &self.0 {
            let _ = Command::new("ip")
                .args(["-6", "addr", "del", &format!("{address}/128"), "dev", "lo"])
                .output();
        }
    }
}

fn client_from(address: &str) -> reqwest::Client {
    let ip: Ipv6Addr = address.parse().expect("an IPv6 address");
    reqwest::Client::builder()
        .local_address(IpAddr::V6(ip))
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

async fn post(from: &str, base: &str, path: &str, body: Value) -> (u16, Option<String>, Value) {
    let resp = client_from(from)
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} from {from}: {e}"));
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn one_ipv6_slash_64_cannot_exceed_the_register_and_refresh_limits() {
    let mut all = vec![SERVER, OTHER_64];
    all.extend(SAME_64);
    let Some(_addresses) = LoopbackAddresses::add(&all) else {
        eprintln!(
            "SKIPPED: could not add IPv6 addresses to lo (needs root and `ip`); \
             the /64 grouping is covered by unit tests only here"
        );
        return;
    };
    let data = DataDir::new();
    let listen = format!("[{SERVER}]:0");
    let dir = data.0.to_string_lossy().to_string();
    let server = TestServer::spawn_with(
        &data,
        &[
            "--listen",
            &listen,
            "--data-dir",
            &dir,
            "--auth-rate-limit",
            "3",
            "--refresh-rate-limit",
            "3",
        ],
        &[],
    )
    .await;
    let base = server.base.clone();

    // Registrations: three from three addresses of the /64, the fourth address refused.
    for (i, from) in SAME_64.iter().enumerate() {
        let body = json!({"username": unique("v6r"), "password": "password-123"});
        let (status, retry_after, answer) = post(from, &base, "/auth/register", body).await;
        if i < 3 {
            assert_eq!(status, 201, "register from {from}: {answer}");
        } else {
            assert_error(status, &answer, 429, "rate_limited");
            assert!(retry_after.is_some(), "429 without Retry-After");
        }
    }
    // Another /64 is another client.
    let body = json!({"username": unique("v6r"), "password": "password-123"});
    let (status, _, answer) = post(OTHER_64, &base, "/auth/register", body).await;
    assert_eq!(status, 201, "another /64 was refused: {answer}");

    // Refreshes (no account needed): the same.
    let garbage = json!({"refresh_token": "A".repeat(43)});
    for (i, from) in SAME_64.iter().enumerate() {
        let (status, retry_after, answer) =
            post(from, &base, "/auth/refresh", garbage.clone()).await;
        if i < 3 {
            assert_error(status, &answer, 401, "refresh_invalid");
        } else {
            assert_error(status, &answer, 429, "rate_limited");
            assert!(retry_after.is_some(), "429 without Retry-After");
        }
    }
    let (status, _, answer) = post(OTHER_64, &base, "/auth/refresh", garbage).await;
    assert_error(status, &answer, 401, "refresh_invalid");
}
