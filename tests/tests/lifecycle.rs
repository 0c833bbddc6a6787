//! Token lifecycle (issue 3): racing refreshes, absolute session lifetime, the "your
//! devices" list, single-session mode, role changes, reauth refusals.

use std::time::Duration;

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn two_racing_refreshes_get_the_same_pair_and_theft_is_still_caught() {
    let data = DataDir::new();
    let server = std::sync::Arc::new(TestServer::start(&data, &[]).await);
    let p = server.new_player("rr").await;
    let mut socket = server.ws_ok(p.token()).await;

    // Two tabs refresh with the same token at once.
    let (a, b) = tokio::join!(
        server.refresh(&p.session.refresh_token),
        server.refresh(&p.session.refresh_token)
    );
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    assert_eq!(a.1["refresh_token"], b.1["refresh_token"]);
    assert_eq!(a.1["access_token"], b.1["access_token"]);
    assert_eq!(a.1["session_id"], p.session.session_id.as_str());
    // A retry after a lost answer, still within the grace window: the same pair again.
    let (status, c) = server.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 200);
    assert_eq!(c["refresh_token"], a.1["refresh_token"]);
    socket.assert_alive().await;

    // The chain moves on; now the original token is no longer the immediate previous
    // one, so presenting it is theft.
    let (status, next) = server.refresh(a.1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let (status, body) = server.refresh(&p.session.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");
    assert_eq!(socket.close_code().await, 4001);
    let (status, body) = server.get("/auth/me", next["access_token"].as_str()).await;
    assert_error(status, &body, 401, "token_revoked");
}

#[tokio::test]
async fn reuse_after_the_grace_window_is_theft() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--refresh-grace-secs", "1"]).await;
    let p = server.new_player("rg").await;
    let mut socket = server.ws_ok(p.token()).await;
    let (status, _) = server.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 200);
    // Wait for the grace window to pass (it is the event under test).
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (status, body) = server.refresh(&p.session.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");
    assert_eq!(socket.close_code().await, 4001);
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--session-max-age", "2"]).await;
    let p = server.new_player("ma").await;
    assert!(p.session.expires_in <= 2 && p.session.refresh_expires_in <= 2);
    let (status, first) = server.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["refresh_expires_in"].as_u64().unwrap() <= 2);
    // Past auth_time + 2 s nothing refreshes: the user must type the password again.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (status, body) = server
        .refresh(first["refresh_token"].as_str().unwrap())
        .await;
    assert_error(status, &body, 401, "refresh_invalid");
    let again = server.login(&p.username, &p.password).await;
    assert_eq!(
        server.get("/auth/me", Some(&again.access_token)).await.0,
        200
    );
}

#[tokio::test]
async fn your_devices_list_and_ending_one_from_another() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("dv").await;
    let other = server.new_player("dv").await;
    let phone = {
        let resp = server
            .http
            .post(format!("{}/auth/login", server.base))
            .header("user-agent", "ArenaPhone/1.0")
            .json(&json!({"username": p.username, "password": p.password}))
            .send()
            .await
            .unwrap();
        resp.json::<arena_protocol::http::Session>().await.unwrap()
    };
    let mut laptop_socket = server.ws_ok(p.token()).await;
    let mut phone_socket = server.ws_ok(&phone.access_token).await;
    let mut phone_socket2 = server.ws_ok(&phone.access_token).await;

    let (status, list) = server.get("/auth/sessions", Some(p.token())).await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let find = |sid: &str| {
        sessions
            .iter()
            .find(|s| s["session_id"] == sid)
            .unwrap()
            .clone()
    };
    let laptop = find(&p.session.session_id);
    let phone_row = find(&phone.session_id);
    assert_eq!(laptop["current"], true);
    assert_eq!(phone_row["current"], false);
    assert_eq!(laptop["sockets"], 1);
    assert_eq!(phone_row["sockets"], 2);
    assert_eq!(phone_row["user_agent"], "ArenaPhone/1.0");
    assert_eq!(phone_row["remote_addr"], "127.0.0.1");
    assert!(
        phone_row["created_at"].as_i64().unwrap() <= phone_row["last_seen_at"].as_i64().unwrap()
    );

    // last_seen_at follows use without a database write per request.
    let before = phone_row["last_seen_at"].as_i64().unwrap();
    let used_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        server.get("/auth/me", Some(&phone.access_token)).await.0,
        200
    );
    let (_, list) = server.get("/auth/sessions", Some(p.token())).await;
    let seen = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == phone.session_id.as_str())
        .unwrap()["last_seen_at"]
        .as_i64()
        .unwrap();
    assert!(
        seen >= used_at.max(before),
        "last_seen_at {seen} < {used_at}"
    );

    // Another user's session: 404, and nothing happens to it.
    let (status, body) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/auth/sessions/{}", other.session.session_id),
            Some(p.token()),
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(server.get("/auth/me", Some(other.token())).await.0, 200);

    // End the phone's session from the laptop.
    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/auth/sessions/{}", phone.session_id),
            Some(p.token()),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(phone_socket.close_code().await, 4001);
    assert_eq!(phone_socket2.close_code().await, 4001);
    laptop_socket.assert_alive().await;
    let (status, body) = server.get("/auth/me", Some(&phone.access_token)).await;
    assert_error(status, &body, 401, "token_revoked");
    let (_, list) = server.get("/auth/sessions", Some(p.token())).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn single_session_mode_replaces_the_old_session_with_4004() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--single-session"]).await;
    let p = server.new_player("ss").await;
    let bystander = server.new_player("ss").await;
    let mut first = server.ws_ok(p.token()).await;
    let mut other = server.ws_ok(bystander.token()).await;

    let second = server.login(&p.username, &p.password).await;
    assert_eq!(first.close_code().await, 4004);
    let (status, body) = server.get("/auth/me", Some(p.token())).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, _) = server.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 401);
    server
        .ws_ok(&second.access_token)
        .await
        .assert_alive()
        .await;
    other.assert_alive().await;
}

async fn set_role(
    server: &TestServer,
    token: &str,
    user_id: &str,
    role: &str,
) -> (u16, serde_json::Value) {
    let path = format!("/admin/users/{user_id}/role");
    server
        .request(
            reqwest::Method::PUT,
            &path,
            Some(token),
            Some(json!({ "role": role })),
        )
        .await
}

#[tokio::test]
async fn a_role_change_revokes_the_users_tokens() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let p = server.new_player("rl").await;
    let mut socket = server.ws_ok(p.token()).await;

    let (status, body) = set_role(&server, &admin, p.id(), "admin").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], true);
    assert_eq!(body["user"]["role"], "admin");
    // PROTOCOL.md: a role change closes the user's sockets with 4003.
    assert_eq!(socket.close_code().await, 4003);
    let (status, body) = server.get("/auth/me", Some(p.token())).await;
    assert_error(status, &body, 401, "token_revoked");
    let promoted = server.login(&p.username, &p.password).await;
    assert_eq!(promoted.user.role, arena_protocol::Role::Admin);
    assert_eq!(
        server
            .get("/admin/connections", Some(&promoted.access_token))
            .await
            .0,
        200
    );

    // Setting the same role again changes nothing and revokes nothing.
    let (_, body) = set_role(&server, &admin, p.id(), "admin").await;
    assert_eq!(body["changed"], false);
    assert_eq!(
        server.get("/auth/me", Some(&promoted.access_token)).await.0,
        200
    );

    // A player cannot change roles; a bad role is a 400.
    let player = server.new_player("rl").await;
    let (status, _) = set_role(&server, player.token(), player.id(), "admin").await;
    assert_eq!(status, 403);
    let (status, body) = set_role(&server, &admin, player.id(), "god").await;
    assert_error(status, &body, 400, "invalid_request");
}

#[tokio::test]
async fn reauth_with_a_revoked_token_leaves_the_socket_as_it_was() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("rv").await;
    let old = server.login(&p.username, &p.password).await;
    assert_eq!(server.logout(&old.access_token, false).await, 204);
    let mut ws = server.ws_ok(p.token()).await;
    ws.send_json(json!({"type": "reauth", "access_token": old.access_token}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "token_revoked");
    ws.assert_alive().await;
    // Still on its own session: logging that out closes it.
    assert_eq!(server.logout(p.token(), false).await, 204);
    assert_eq!(ws.close_code().await, 4001);
}
