//! Bad input gets the protocol's errors: never a 500, never a dropped socket.

use arena_tests::*;
use serde_json::{json, Value};

async fn raw_post(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = server
        .http
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn http_bodies_get_invalid_request_naming_the_field() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("bi").await;

    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/auth/register", "{not json", None),
        ("/auth/register", "[1,2,3]", None),
        (
            "/auth/register",
            r#"{"password":"long-enough"}"#,
            Some("username"),
        ),
        (
            "/auth/register",
            r#"{"username":"valid_name"}"#,
            Some("password"),
        ),
        (
            "/auth/register",
            r#"{"username":5,"password":"long-enough"}"#,
            Some("username"),
        ),
        (
            "/auth/register",
            r#"{"username":"a b","password":"long-enough"}"#,
            Some("username"),
        ),
        (
            "/auth/register",
            r#"{"username":"okname","password":"short"}"#,
            Some("password"),
        ),
        ("/auth/login", r#"{"username":"x"}"#, Some("password")),
        ("/auth/refresh", "{}", Some("refresh_token")),
        (
            "/auth/refresh",
            r#"{"refresh_token":[]}"#,
            Some("refresh_token"),
        ),
        ("/lobby/rooms", "{}", Some("name")),
        (
            "/lobby/rooms",
            r#"{"name":"r","capacity":1}"#,
            Some("capacity"),
        ),
        (
            "/lobby/rooms",
            r#"{"name":"r","capacity":"big"}"#,
            Some("capacity"),
        ),
        ("/lobby/rooms", r#"{"name":""}"#, Some("name")),
        ("/auth/logout", r#"{"all":"yes"}"#, Some("all")),
    ];
    for (path, body, field) in cases {
        let (status, answer) = raw_post(&server, path, Some(p.token()), body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(
            answer["error"]["code"], "invalid_request",
            "{path} {body}: {answer}"
        );
        if let Some(field) = field {
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(field),
                "{path} {body}: message {message:?} should name {field}"
            );
        }
    }
    // Nothing above touched the session.
    assert_eq!(server.get("/auth/me", Some(p.token())).await.0, 200);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let huge = format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(100_000));
    let (status, body) = raw_post(&server, "/auth/login", None, &huge).await;
    assert_error(status, &body, 413, "payload_too_large");
}

#[tokio::test]
async fn credentials_errors_look_the_same() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("cr").await;
    let wrong_password = server
        .post(
            "/auth/login",
            None,
            json!({"username": p.username, "password": "wrong-password"}),
        )
        .await;
    let unknown_user = server
        .post(
            "/auth/login",
            None,
            json!({"username": "nobody_here", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(wrong_password.0, 401);
    assert_eq!(wrong_password, unknown_user);
    assert_eq!(wrong_password.1["error"]["code"], "invalid_credentials");
    // Usernames are unique ignoring case.
    let (status, body) = server
        .post(
            "/auth/register",
            None,
            json!({"username": p.username.to_uppercase(), "password": "another-pass"}),
        )
        .await;
    assert_error(status, &body, 409, "username_taken");
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_open() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("bf").await;
    let mut ws = server.ws_ok(p.token()).await;

    let cases: &[(&str, &str)] = &[
        ("{not json", "invalid_json"),
        ("42", "invalid_json"),
        (r#"{"id":1}"#, "unknown_type"),
        (r#"{"type":"teleport","x":1}"#, "unknown_type"),
        (r#"{"type":"join"}"#, "invalid_request"),
        (r#"{"type":"ping","id":"one"}"#, "invalid_request"),
        (r#"{"type":"chat","text":""}"#, "invalid_request"),
        (
            r#"{"type":"join","room":"r_does_not_exist"}"#,
            "room_not_found",
        ),
        (r#"{"type":"chat","text":"hello"}"#, "not_in_room"),
        (r#"{"type":"leave"}"#, "not_in_room"),
    ];
    for (frame, code) in cases {
        ws.send_text(frame).await;
        let answer = ws
            .recv_json()
            .await
            .unwrap_or_else(|| panic!("socket closed after {frame}"));
        assert_eq!(answer["type"], "error", "{frame}: {answer}");
        assert_eq!(answer["code"], *code, "{frame}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let missing = {
        ws.send_text(r#"{"type":"join"}"#).await;
        ws.recv_json().await.unwrap()
    };
    assert!(
        missing["message"].as_str().unwrap().contains("room"),
        "{missing}"
    );
    ws.assert_alive().await;
}

#[tokio::test]
async fn many_invalid_frames_close_with_4000() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("pe").await;
    let mut ws = server.ws_ok(p.token()).await;
    for _ in 0..20 {
        ws.send_text("garbage").await;
    }
    assert_eq!(ws.close_code().await, 4000);
}
