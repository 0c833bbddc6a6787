//! Promise 3: revocations, bans and refresh tokens survive a restart on the same data
//! dir; SIGTERM and SIGINT close sockets with 1001 and exit 0.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn revocations_bans_and_refresh_tokens_survive_a_restart() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let logged_out = server.new_player("rs").await;
    let everywhere = server.new_player("rs").await;
    let everywhere2 = server
        .login(&everywhere.username, &everywhere.password)
        .await;
    let banned = server.new_player("rs").await;
    let kept = server.new_player("rs").await;

    assert_eq!(server.logout(logged_out.token(), false).await, 204);
    assert_eq!(server.logout(everywhere.token(), true).await, 204);
    let (status, _) = server
        .post(
            &format!("/admin/users/{}/ban", banned.id()),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, kept_next) = server.refresh(&kept.session.refresh_token).await;
    assert_eq!(status, 200);
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));

    let server = TestServer::start(&data, &[]).await;
    for token in [
        logged_out.token(),
        everywhere.token(),
        everywhere2.access_token.as_str(),
    ] {
        let (status, body) = server.get("/auth/me", Some(token)).await;
        assert_error(status, &body, 401, "token_revoked");
        let refusal = server
            .ws(WsAuth::Header(token))
            .await
            .err()
            .expect("refused after restart");
        assert_eq!(refusal.status, 401);
    }
    for refresh in [
        &logged_out.session.refresh_token,
        &everywhere2.refresh_token,
    ] {
        let (status, _) = server.refresh(refresh).await;
        assert_eq!(status, 401);
    }
    let (status, body) = server
        .post(
            "/auth/login",
            None,
            json!({"username": banned.username, "password": banned.password}),
        )
        .await;
    assert_error(status, &body, 403, "banned");
    let refusal = server
        .ws(WsAuth::Header(banned.token()))
        .await
        .err()
        .expect("banned refused");
    assert_eq!(refusal.status, 403);

    // What was not revoked still works, and the refresh token issued before the
    // restart still rotates.
    assert_eq!(server.get("/auth/me", Some(kept.token())).await.0, 200);
    let (status, _) = server
        .refresh(kept_next["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    // The token spent before the restart, whose successor is now spent too, is
    // recognised as reuse after the restart.
    let (status, _) = server.refresh(&kept.session.refresh_token).await;
    assert_eq!(status, 401);
    let (status, body) = server.get("/auth/me", Some(kept.token())).await;
    assert_error(status, &body, 401, "token_revoked");
}

async fn shutdown_closes_sockets_with_1001(signal: &'static str) {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("sd").await;
    let mut a = server.ws_ok(p.token()).await;
    let mut b = server.ws_ok(p.token()).await;
    let exit = tokio::spawn(server.signal_and_wait(signal));
    assert_eq!(a.close_code().await, 1001);
    assert_eq!(b.close_code().await, 1001);
    assert_eq!(exit.await.unwrap(), Some(0), "exit code after SIG{signal}");
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_0() {
    shutdown_closes_sockets_with_1001("TERM").await;
}

#[tokio::test]
async fn sigint_closes_sockets_with_1001_and_exits_0() {
    shutdown_closes_sockets_with_1001("INT").await;
}

#[tokio::test]
async fn first_run_creates_a_private_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let mode = |name: &str| {
        std::fs::metadata(data.0.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("signing-keys.json"), 0o600);
    assert_eq!(mode("arena.db"), 0o600);
    assert_eq!(
        server.get("/healthz", None).await,
        (200, json!({"status": "ok"}))
    );
}
