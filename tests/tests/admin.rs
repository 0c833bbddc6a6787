//! Admin: live connections, kick (4003), ban (4003 and no login), unban, role checks,
//! and the listings admins work from (users, bans, audit log).

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn kick_closes_every_socket_of_the_user_with_4003() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let alice = server.new_player("kk").await;
    let alice2 = server.login(&alice.username, &alice.password).await;
    let bob = server.new_player("kk").await;
    let mut a1 = server.ws_ok(alice.token()).await;
    let mut a2 = server.ws_ok(&alice2.access_token).await;
    let mut b = server.ws_ok(bob.token()).await;

    let listed = server.connections_of(&admin, alice.id()).await;
    assert_eq!(listed.len(), 2);
    for c in &listed {
        assert_eq!(c["username"], alice.username.as_str());
        assert!(c["connection_id"].is_string() && c["connected_at"].is_i64());
        assert!(c["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    }

    let (status, body) = server
        .post(
            &format!("/admin/users/{}/kick", alice.id()),
            Some(&admin),
            json!({"reason": "spamming"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closed"], 2);
    assert!(server.connections_of(&admin, alice.id()).await.is_empty());
    for ws in [&mut a1, &mut a2] {
        match ws.ended().await {
            Ended::Closed(code, reason) => {
                assert_eq!(code, 4003);
                assert_eq!(reason, "spamming");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    b.assert_alive().await;
    let (status, body) = server.get("/auth/me", Some(alice.token())).await;
    assert_error(status, &body, 401, "token_revoked");
    // A kick is not a ban: the player may log in again.
    let back = server.login(&alice.username, &alice.password).await;
    server.ws_ok(&back.access_token).await.assert_alive().await;
}

#[tokio::test]
async fn ban_closes_sockets_and_refuses_login_until_lifted() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let p = server.new_player("bn").await;
    let mut ws = server.ws_ok(p.token()).await;

    let (status, body) = server
        .post(
            &format!("/admin/users/{}/ban", p.id()),
            Some(&admin),
            json!({"reason": "cheating"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closed"], 1);
    assert!(body["banned_until"].is_null());
    assert_eq!(ws.close_code().await, 4003);

    let (status, body) = server
        .post(
            "/auth/login",
            None,
            json!({"username": p.username, "password": p.password}),
        )
        .await;
    assert_error(status, &body, 403, "banned");
    let (status, _) = server.get("/auth/me", Some(p.token())).await;
    assert!(status == 401 || status == 403);
    let refusal = server
        .ws(WsAuth::Header(p.token()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refusal.status, 403);
    assert_eq!(refusal.body["error"]["code"], "banned");

    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/users/{}/ban", p.id()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let back = server.login(&p.username, &p.password).await;
    server.ws_ok(&back.access_token).await.assert_alive().await;
    // The old token stays revoked after the unban.
    let (status, body) = server.get("/auth/me", Some(p.token())).await;
    assert_error(status, &body, 401, "token_revoked");
}

#[tokio::test]
async fn timed_ban_reports_its_end() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let p = server.new_player("tb").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (status, body) = server
        .post(
            &format!("/admin/users/{}/ban", p.id()),
            Some(&admin),
            json!({"duration_secs": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let until = body["banned_until"].as_i64().expect("timed ban has an end");
    assert!(
        until >= before + 3_600_000 && until < before + 3_700_000,
        "{until}"
    );
    // The refused login says it is a ban and until when, as a date people read, and
    // carries the instant for a client to show in local time.
    let (status, refused) = server
        .post(
            "/auth/login",
            None,
            json!({"username": p.username, "password": p.password}),
        )
        .await;
    assert_error(status, &refused, 403, "banned");
    assert_eq!(refused["error"]["banned_until"], until, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("this account is banned until "),
        "{message}"
    );
    assert!(message.ends_with(" GMT"), "{message}");
    assert!(!message.contains(&until.to_string()), "{message}");
    let (status, body) = server
        .post(
            &format!("/admin/users/{}/ban", p.id()),
            Some(&admin),
            json!({"duration_secs": -5}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let p = server.new_player("na").await;
    let victim = server.new_player("na").await;
    let (status, body) = server.get("/admin/connections", Some(p.token())).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, _) = server
        .post(
            &format!("/admin/users/{}/kick", victim.id()),
            Some(p.token()),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .post(
            &format!("/admin/users/{}/ban", victim.id()),
            Some(p.token()),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server.get("/admin/connections", None).await;
    assert_eq!(status, 401);
    let (status, body) = server
        .post("/admin/users/u_nobody/kick", Some(&admin), json!({}))
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn bootstrap_promotes_an_existing_user_and_revokes_their_old_role() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("pr").await;
    assert_eq!(p.session.user.role, arena_protocol::Role::Player);
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));

    // Someone else's password for that name: the server refuses to start and says why,
    // rather than hand the admin role to whoever registered the name first.
    let refused = tokio::process::Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data.0)
        .args([
            "--admin-username",
            &p.username,
            "--admin-password",
            "not-their-password",
        ])
        .kill_on_drop(true)
        .output();
    let refused = tokio::time::timeout(DEADLINE, refused)
        .await
        .expect("the server should exit at once")
        .expect("run arena-server");
    assert!(!refused.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--admin-password"),
        "the message should say what is wrong: {stderr}"
    );

    // The account's own password: promoted.
    let server = TestServer::start(
        &data,
        &[
            "--admin-username",
            &p.username,
            "--admin-password",
            &p.password,
        ],
    )
    .await;
    // Promotion is a role change: the player-role token is revoked.
    let (status, body) = server.get("/auth/me", Some(p.token())).await;
    assert_error(status, &body, 401, "token_revoked");
    let s = server.login(&p.username, &p.password).await;
    assert_eq!(s.user.role, arena_protocol::Role::Admin);
    assert_eq!(
        server
            .get("/admin/connections", Some(&s.access_token))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn admins_find_users_bans_and_every_action_in_the_audit_log() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    arena_tests::listings::admin_listings(&server, &admin).await;
    // The listings are for admins only.
    let p = server.new_player("al").await;
    for path in ["/admin/users", "/admin/bans", "/admin/audit"] {
        let (status, body) = server.get(path, Some(p.token())).await;
        assert_error(status, &body, 403, "forbidden");
    }
}

#[tokio::test]
async fn the_user_page_ends_one_session_and_actions_take_a_username() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    arena_tests::listings::user_page_and_actions_by_name(&server, &admin).await;
    let p = server.new_player("up").await;
    for path in ["/admin/overview", &format!("/admin/users/{}", p.id())] {
        let (status, body) = server.get(path, Some(p.token())).await;
        assert_error(status, &body, 403, "forbidden");
    }
}
