//! What an operator sees: Prometheus metrics on the main address or on their own.

use arena_tests::*;
use serde_json::json;

fn series(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn metrics_count_what_happens() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let p = server.new_player("ob").await;
    let _ = server
        .post(
            "/auth/login",
            None,
            json!({"username": p.username, "password": "wrong-password"}),
        )
        .await;
    let _ = server.get("/auth/me", Some("garbage")).await;
    let mut ws = server.ws_ok(p.token()).await;
    let _other = server.ws_ok(p.token()).await;
    server.kick(&admin, p.id()).await;
    assert_eq!(ws.close_code().await, 4003);

    let resp = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let has = |needle: &str| assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    has(r#"arena_logins_total{outcome="ok"}"#);
    has(r#"arena_logins_total{outcome="invalid_credentials"} 1"#);
    has(r#"arena_auth_failures_total{reason="token_invalid"}"#);
    has(r#"arena_admin_actions_total{action="kick"} 1"#);
    has(r#"arena_revocations_total{kind="user"}"#);
    has(r#"arena_sockets_closed_total{code="4003"} 2"#);
    has("arena_sockets_opened_total 2");
    has(
        r#"arena_http_request_duration_seconds_bucket{method="POST",route="/auth/login",status="200""#,
    );
    // Routes are labelled by pattern, not by path: no user id in any label.
    assert!(
        !text.contains(p.id()),
        "a user id leaked into a metric label"
    );
    assert!(
        series(&text, "arena_sockets_live")
            .iter()
            .any(|l| l.ends_with(" 0")),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let metrics_addr = free_local_addr();
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--metrics-listen", &metrics_addr]).await;
    assert_eq!(server.get("/metrics", None).await.0, 404);
    let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("arena_http_request_duration_seconds"),
        "{text}"
    );
}

#[tokio::test]
async fn json_logs_are_selectable() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--log-format", "json"]).await;
    server.new_player("js").await;
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));
    let log = std::fs::read_to_string(data.0.join("server.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}
