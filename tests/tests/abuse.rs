//! Abuse of shared resources by one client: rooms nobody removes, rate-limit maps fed
//! with attacker-chosen keys, frames that dodge the socket's message rate, warnings
//! re-armed at will, and a `reauth` that slips a socket past a logout.

use std::time::Duration;

use arena_tests::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// `POST /lobby/rooms`: the status, the `Retry-After` header (if any) and the body.
async fn create_room(server: &TestServer, token: &str, name: &str) -> (u16, Option<u64>, Value) {
    let resp = server
        .http
        .post(format!("{}/lobby/rooms", server.base))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry_after = retry_after(&resp);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

async fn room_ids(server: &TestServer, token: &str) -> Vec<String> {
    let (status, body) = server.get("/lobby/rooms", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_user_at_the_room_quota_gets_an_honest_429_while_others_still_create() {
    let data = DataDir::new();
    let server = TestServer::start(
        &data,
        &["--max-rooms-per-user", "2", "--room-create-rate", "100"],
    )
    .await;
    let alice = server.new_player("rq").await;
    let bob = server.new_player("rq").await;
    for i in 0..2 {
        let (status, _, body) = create_room(&server, alice.token(), &format!("a{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, retry_after, body) = create_room(&server, alice.token(), "a2").await;
    assert_error(status, &body, 429, "rate_limited");
    assert_eq!(
        body["error"]["message"], "you have 2 rooms; the limit is 2",
        "{body}"
    );
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After missing");
    // The quota is alice's, not everyone's.
    let (status, _, body) = create_room(&server, bob.token(), "b0").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn room_creation_is_rate_limited_per_user() {
    let data = DataDir::new();
    let server = TestServer::start(
        &data,
        &["--room-create-rate", "3", "--max-rooms-per-user", "100"],
    )
    .await;
    let alice = server.new_player("rr").await;
    let bob = server.new_player("rr").await;
    for i in 0..3 {
        let (status, _, body) = create_room(&server, alice.token(), &format!("a{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, retry_after, body) = create_room(&server, alice.token(), "a3").await;
    assert_error(status, &body, 429, "rate_limited");
    let secs = retry_after.expect("Retry-After");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(
        body["error"]["message"],
        format!("too many rooms created; retry in {secs} s"),
        "{body}"
    );
    let (status, _, body) = create_room(&server, bob.token(), "b0").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_full_server_says_503_unavailable_not_429() {
    let data = DataDir::new();
    // "Main Hall" is one of the three.
    let server = TestServer::start(&data, &["--max-rooms", "3"]).await;
    let mut last = (0, None, Value::Null);
    for i in 0..3 {
        // A fresh user each time: neither the per-user quota nor its rate is in play.
        let p = server.new_player("rf").await;
        last = create_room(&server, p.token(), &format!("r{i}")).await;
        if last.0 != 201 {
            break;
        }
    }
    let (status, _, body) = last;
    assert_error(status, &body, 503, "unavailable");
    assert_eq!(
        body["error"]["message"], "the server holds as many rooms as it can",
        "{body}"
    );
}

#[tokio::test]
async fn empty_rooms_vanish_after_the_idle_time_while_occupied_ones_stay() {
    let data = DataDir::new();
    let server = TestServer::start(
        &data,
        &["--room-idle-secs", "1", "--max-rooms-per-user", "2"],
    )
    .await;
    let p = server.new_player("ri").await;
    // Occupied first: had it counted as idle, it would go no later than the empty one.
    let (status, _, occupied) = create_room(&server, p.token(), "occupied").await;
    assert_eq!(status, 201, "{occupied}");
    let occupied = occupied["id"].as_str().unwrap().to_string();
    let mut ws = server.ws_ok(p.token()).await;
    ws.send_json(json!({"type": "join", "room": occupied}))
        .await;
    ws.recv_type("joined").await;
    let (status, _, empty) = create_room(&server, p.token(), "empty").await;
    assert_eq!(status, 201, "{empty}");
    let empty = empty["id"].as_str().unwrap().to_string();
    // At the quota now.
    assert_eq!(create_room(&server, p.token(), "third").await.0, 429);

    let deadline = Instant::now() + DEADLINE;
    let rooms = loop {
        let rooms = room_ids(&server, p.token()).await;
        if !rooms.contains(&empty) {
            break rooms;
        }
        assert!(Instant::now() < deadline, "the empty room never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        rooms.contains(&occupied),
        "the occupied room went: {rooms:?}"
    );
    assert_eq!(rooms.len(), 2, "Main Hall stays: {rooms:?}");
    let (status, body) = server
        .get(&format!("/lobby/rooms/{empty}"), Some(p.token()))
        .await;
    assert_error(status, &body, 404, "not_found");
    // A removed room cannot be joined (and the socket is not left in it).
    let mut other = server.ws_ok(p.token()).await;
    other
        .send_json(json!({"type": "join", "room": empty}))
        .await;
    assert_eq!(other.recv_type("error").await["code"], "room_not_found");
    // Its place in the quota is free again.
    assert_eq!(create_room(&server, p.token(), "again").await.0, 201);
    // Still occupied after a few more sweeps: the player is still served in it.
    ws.send_json(json!({"type": "chat", "text": "still here"}))
        .await;
    assert_eq!(ws.recv_type("chat").await["room"], occupied.as_str());
}

/// Resident memory of a process, in bytes (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[tokio::test]
async fn invalid_usernames_never_become_rate_limit_keys() {
    let data = DataDir::new();
    // A limit high enough that nothing is refused: only the keys it stores matter here.
    let server = TestServer::start_raw(
        &data,
        &["--auth-rate-limit", "1000000", "--max-body-bytes", "65536"],
    )
    .await;
    let huge = "x".repeat(16 * 1024);
    // A 16 KiB username gets a clear answer, quickly, on both routes.
    for path in ["/auth/register", "/auth/login"] {
        let started = Instant::now();
        let (status, body) = server
            .post(
                path,
                None,
                json!({"username": format!("{huge}!"), "password": "password-123"}),
            )
            .await;
        assert!(
            matches!(
                (status, body["error"]["code"].as_str()),
                (400, Some("invalid_request")) | (401, Some("invalid_credentials"))
            ),
            "{path}: {status} {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} was slow"
        );
    }

    // 2,000 distinct 16 KiB usernames: 32 MiB of keys if each became one.
    let before = rss_bytes(server.pid());
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let http = server.http.clone();
            let url = format!("{}/auth/register", server.base);
            let huge = huge.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    let name = format!("{worker}-{i}-{huge}");
                    let resp = http
                        .post(&url)
                        .json(&json!({"username": name, "password": "password-123"}))
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(resp.status().as_u16(), 400);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    let grown = rss_bytes(server.pid()).saturating_sub(before);
    eprintln!("RSS grew by {} KiB", grown / 1024);
    assert!(
        grown < 8 * 1024 * 1024,
        "the server kept {} KiB after 2,000 invalid usernames",
        grown / 1024
    );
}

/// Read until the socket ends (or the deadline passes): whether a `rate_limited` error
/// came, and the close code.
async fn rate_limited_then_closed(ws: &mut Ws) -> (bool, Option<u16>) {
    let mut saw_rate_limited = false;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.stream.next()).await;
        match next {
            Err(_) => return (saw_rate_limited, None),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "error" && v["code"] == "rate_limited" {
                    saw_rate_limited = true;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (
                    saw_rate_limited,
                    Some(frame.map_or(1005, |f| f.code.into())),
                )
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return (saw_rate_limited, None),
        }
    }
}

#[tokio::test]
async fn binary_ping_and_pong_floods_count_against_the_message_rate() {
    let data = DataDir::new();
    // Invalid frames alone can never close the socket here: only the rate limit can.
    let server = TestServer::start(
        &data,
        &["--ws-rate-limit", "5", "--max-invalid-frames", "100000"],
    )
    .await;
    let p = server.new_player("bf").await;
    for kind in ["binary", "ping", "pong"] {
        let mut ws = server.ws_ok(p.token()).await;
        for i in 0..200u32 {
            let payload = i.to_be_bytes().to_vec();
            let frame = match kind {
                "binary" => Message::Binary(payload.into()),
                "ping" => Message::Ping(payload.into()),
                _ => Message::Pong(payload.into()),
            };
            if ws.stream.send(frame).await.is_err() {
                break; // already closed by the server
            }
        }
        let (saw_rate_limited, code) = rate_limited_then_closed(&mut ws).await;
        assert!(saw_rate_limited, "{kind} flood: no rate_limited error");
        assert_eq!(code, Some(1008), "{kind} flood");
    }
}

#[tokio::test]
async fn token_expiring_is_sent_once_even_if_the_same_token_is_presented_again() {
    let data = DataDir::new();
    let server =
        TestServer::start(&data, &["--access-ttl", "3", "--token-expiring-secs", "2"]).await;
    let p = server.new_player("te").await;
    let mut ws = server.ws_ok(p.token()).await;
    let exp = ws.welcome["expires_at"].as_i64().unwrap();
    assert_eq!(ws.recv_type("token_expiring").await["expires_at"], exp);
    ws.send_json(json!({"type": "reauth", "access_token": p.token()}))
        .await;
    let mut frames = vec![];
    let code = loop {
        match ws.recv_json().await {
            Some(v) => frames.push(v),
            None => break ws.close_code_after_end(),
        }
    };
    assert_eq!(
        frames.first().map(|v| v["type"].clone()),
        Some(json!("reauthed"))
    );
    assert!(
        !frames.iter().any(|v| v["type"] == "token_expiring"),
        "warned twice for one token: {frames:?}"
    );
    assert_eq!(code, Some(4002));
}

#[tokio::test]
async fn a_new_expiry_is_warned_again() {
    let data = DataDir::new();
    let server =
        TestServer::start(&data, &["--access-ttl", "3", "--token-expiring-secs", "2"]).await;
    let p = server.new_player("tw").await;
    let mut ws = server.ws_ok(p.token()).await;
    let first = ws.recv_type("token_expiring").await["expires_at"]
        .as_i64()
        .unwrap();
    // The warning comes at most 2 s before exp, so a token issued now expires later.
    let (status, fresh) = server.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 200, "{fresh}");
    ws.send_json(json!({"type": "reauth", "access_token": fresh["access_token"]}))
        .await;
    let second = ws.recv_type("reauthed").await["expires_at"]
        .as_i64()
        .unwrap();
    assert!(second > first);
    assert_eq!(ws.recv_type("token_expiring").await["expires_at"], second);
    assert_eq!(ws.close_code().await, 4002);
}

const REAUTH_ROUNDS: u64 = 30;
const REAUTH_SOCKETS: usize = 8;

/// Sockets of session A `reauth` onto session B while A and B are both logged out. Every
/// outcome is legal (moved to B and closed by B's logout; refused and closed by A's)
/// except one: a socket left open on a session that was logged out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauth_racing_logouts_never_leaves_a_socket_open() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &["--max-sockets-per-user", "1000"]).await;
    let server = std::sync::Arc::new(server);
    let p = server.new_player("rl").await;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..REAUTH_ROUNDS {
        let a = server.login(&p.username, &p.password).await;
        let b = server.login(&p.username, &p.password).await;
        let mut sockets = Vec::with_capacity(REAUTH_SOCKETS);
        for _ in 0..REAUTH_SOCKETS {
            sockets.push(server.ws_ok(&a.access_token).await);
        }
        let logouts = {
            let server = server.clone();
            let (ta, tb) = (a.access_token.clone(), b.access_token.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(round * 100)).await;
                let (sa, sb) = tokio::join!(server.logout(&ta, false), server.logout(&tb, false));
                assert_eq!((sa, sb), (204, 204));
            })
        };
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| {
                let token = b.access_token.clone();
                tokio::spawn(async move {
                    let _ = ws
                        .stream
                        .send(Message::text(
                            json!({"type": "reauth", "access_token": token}).to_string(),
                        ))
                        .await;
                    ws.ended_within(DEADLINE).await
                })
            })
            .collect();
        logouts.await.expect("logouts");
        for t in tasks {
            match t.await.expect("socket task") {
                Some(Ended::Closed(code, _)) => *codes.entry(code.to_string()).or_default() += 1,
                other => panic!("round {round}: a socket ended as {other:?}"),
            }
        }
        let open = server.connections_of(&admin, p.id()).await;
        assert!(open.is_empty(), "round {round}: still registered: {open:?}");
    }
    eprintln!("close codes: {codes:?}");
    assert_eq!(codes.keys().collect::<Vec<_>>(), vec!["4001"], "{codes:?}");
}
