//! One token, every channel: the same access token works on HTTP (header and cookie) and
//! on the socket (header, subprotocol, cookie); the query string and foreign Origins don't.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn same_token_on_http_and_all_socket_transports() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("tr").await;

    // HTTP with the header.
    let (status, me) = server.get("/auth/me", Some(p.token())).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["username"], p.username.as_str());
    assert_eq!(me["session_id"], p.session.session_id.as_str());

    // HTTP with the cookie (a GET needs no Origin).
    let resp = server
        .http
        .get(format!("{}/auth/me", server.base))
        .header("cookie", format!("arena_access={}", p.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // Socket with the header.
    let ws = server.ws_ok(p.token()).await;
    assert_eq!(ws.welcome["user"]["id"], p.id());
    assert_eq!(ws.welcome["session_id"], p.session.session_id.as_str());
    assert_eq!(ws.welcome["protocol"], 1);
    assert!(ws.welcome["connection_id"].is_string());
    assert!(
        ws.welcome["expires_at"].as_i64().unwrap() > ws.welcome["server_time"].as_i64().unwrap()
    );

    // Socket with the subprotocol: the server selects arena.v1.
    let mut ws = server
        .ws(WsAuth::Subprotocol(p.token()))
        .await
        .expect("subprotocol upgrade");
    assert_eq!(ws.protocol.as_deref(), Some("arena.v1"));
    assert_eq!(ws.recv_json().await.unwrap()["type"], "welcome");
    ws.assert_alive().await;

    // Socket with the cookie and our own Origin.
    let origin = server.origin();
    let mut ws = server
        .ws(WsAuth::Cookie(p.token(), Some(&origin)))
        .await
        .expect("cookie upgrade");
    assert_eq!(ws.recv_json().await.unwrap()["type"], "welcome");
    ws.assert_alive().await;
}

#[tokio::test]
async fn query_string_tokens_are_never_accepted() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("qs").await;

    let refusal = server
        .ws(WsAuth::Query(p.token()))
        .await
        .err()
        .expect("query token refused");
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.body["error"]["code"], "token_missing");

    let (status, body) = server
        .get(
            &format!("/auth/me?access_token={0}&token={0}", p.token()),
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_missing");
}

#[tokio::test]
async fn foreign_origins_are_refused_for_cookie_auth() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("or").await;

    // Cross-site WebSocket hijacking: the browser sends the cookie, the Origin gives it away.
    let refusal = server
        .ws(WsAuth::Cookie(p.token(), Some("http://evil.example")))
        .await
        .err()
        .expect("foreign origin refused");
    assert_eq!(refusal.status, 403);
    assert_eq!(refusal.body["error"]["code"], "origin_forbidden");

    let refusal = server
        .ws(WsAuth::Cookie(p.token(), None))
        .await
        .err()
        .expect("no origin refused");
    assert_eq!(refusal.status, 403);

    // A state change with the cookie from a foreign Origin (CSRF) is refused, and the
    // session is still alive afterwards.
    let resp = server
        .http
        .post(format!("{}/auth/logout", server.base))
        .header("cookie", format!("arena_access={}", p.token()))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_forbidden");
    assert_eq!(server.get("/auth/me", Some(p.token())).await.0, 200);

    // The same with our own Origin works.
    let resp = server
        .http
        .post(format!("{}/auth/logout", server.base))
        .header("cookie", format!("arena_access={}", p.token()))
        .header("origin", server.origin())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let cleared = set_cookie(&resp);
    assert!(cleared.starts_with("arena_access=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn login_sets_a_strict_httponly_cookie() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let name = unique("ck");
    server.register(&name, "password-123").await;
    let resp = server
        .http
        .post(format!("{}/auth/login", server.base))
        .json(&json!({"username": name, "password": "password-123"}))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&resp);
    assert!(cookie.starts_with("arena_access=ey"), "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(
        !cookie.contains("Secure"),
        "not behind TLS by default: {cookie}"
    );
}

#[tokio::test]
async fn missing_and_garbage_tokens_get_plain_http_errors() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let refusal = server
        .ws(WsAuth::None)
        .await
        .err()
        .expect("no token refused");
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.body["error"]["code"], "token_missing");
    let refusal = server
        .ws(WsAuth::Header("not.a.jwt"))
        .await
        .err()
        .expect("garbage refused");
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.body["error"]["code"], "token_invalid");
    let (status, body) = server.get("/auth/me", Some("not.a.jwt")).await;
    assert_error(status, &body, 401, "token_invalid");
}

#[tokio::test]
async fn logs_never_contain_tokens_or_passwords() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let p = server.new_player("lg").await;
    let mut ws = server.ws_ok(p.token()).await;
    ws.send_json(json!({"type": "reauth", "access_token": p.token()}))
        .await;
    ws.recv_type("reauthed").await;
    let _ = server
        .get(&format!("/auth/me?token={}", p.token()), None)
        .await;
    let (_, rotated) = server.refresh(&p.session.refresh_token).await;
    server.kick(&admin, p.id()).await;
    assert_eq!(ws.close_code().await, 4003);
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));

    let log = std::fs::read_to_string(data.0.join("server.log")).unwrap();
    assert!(log.contains("user kicked"), "the log is being written");
    for secret in [
        p.token(),
        p.session.refresh_token.as_str(),
        rotated["access_token"].as_str().unwrap(),
        rotated["refresh_token"].as_str().unwrap(),
        p.password.as_str(),
        ADMIN_PASSWORD,
        admin.as_str(),
    ] {
        assert!(!log.contains(secret), "the server log contains a secret");
    }
}

#[tokio::test]
async fn every_option_reads_its_environment_variable() {
    let data = DataDir::new();
    let server = TestServer::start_env(
        &data,
        &[
            ("ARENA_ADMIN_USERNAME", "envadmin"),
            ("ARENA_ADMIN_PASSWORD", "env-admin-pass"),
            ("ARENA_AUTH_RATE_LIMIT", "0"),
            ("ARENA_MAX_SOCKETS_PER_USER", "1"),
            ("ARENA_ACCESS_TTL", "120"),
            ("ARENA_ALLOWED_ORIGINS", "https://game.example"),
        ],
    )
    .await;
    let admin = server.login("envadmin", "env-admin-pass").await;
    assert_eq!(admin.user.role, arena_protocol::Role::Admin);
    assert_eq!(admin.expires_in, 120);
    let _one = server.ws_ok(&admin.access_token).await;
    let refusal = server
        .ws(WsAuth::Header(&admin.access_token))
        .await
        .err()
        .expect("limit from env");
    assert_eq!(refusal.status, 429);
    // The configured allow-list replaces the default own origin.
    let own = server.origin();
    let refusal = server
        .ws(WsAuth::Cookie(&admin.access_token, Some(&own)))
        .await
        .err()
        .expect("own origin not listed");
    assert_eq!(refusal.status, 403);
}
