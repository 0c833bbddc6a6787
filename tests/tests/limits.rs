//! The limits in PROTOCOL.md's command-line table: login attempts, sockets per user,
//! messages per second.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn auth_attempts_are_rate_limited_with_retry_after() {
    let data = DataDir::new();
    let server = TestServer::start_raw(&data, &["--auth-rate-limit", "3"]).await;
    let name = unique("rl");
    server.register(&name, "password-123").await; // attempt 1 for this address
    let mut statuses = vec![];
    let mut retry_after = None;
    for _ in 0..4 {
        let resp = server
            .http
            .post(format!("{}/auth/login", server.base))
            .json(&json!({"username": name, "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status().as_u16() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses, vec![401, 401, 429, 429]);
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs));
}

#[tokio::test]
async fn sockets_per_user_are_bounded() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--max-sockets-per-user", "2"]).await;
    let p = server.new_player("mx").await;
    let a = server.ws_ok(p.token()).await;
    let _b = server.ws_ok(p.token()).await;
    let refusal = server
        .ws(WsAuth::Header(p.token()))
        .await
        .err()
        .expect("third refused");
    assert_eq!(refusal.status, 429);
    assert_eq!(refusal.body["error"]["code"], "rate_limited");
    // Closing one frees a place.
    drop(a);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match server.ws(WsAuth::Header(p.token())).await {
            Ok(_) => break,
            Err(r) if r.status == 429 && tokio::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(r) => panic!("still refused: {r:?}"),
        }
    }
}

#[tokio::test]
async fn message_floods_get_rate_limited_then_closed_with_1008() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--ws-rate-limit", "5"]).await;
    let p = server.new_player("fl").await;
    let mut ws = server.ws_ok(p.token()).await;
    for i in 0..200 {
        ws.send_json(json!({"type": "ping", "id": i})).await;
    }
    let mut saw_rate_limited = false;
    let code = loop {
        match ws.recv_json().await {
            Some(v) if v["type"] == "error" && v["code"] == "rate_limited" => {
                saw_rate_limited = true
            }
            Some(_) => continue,
            None => break ws.close_code_after_end(),
        }
    };
    assert!(saw_rate_limited);
    assert_eq!(code, Some(1008));
}
