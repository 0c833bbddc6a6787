//! Revocation promises (PROTOCOL.md): logout closes exactly the session's sockets with
//! 4001 and removes them from the registry before 204; logout-all; revoked tokens are
//! refused on HTTP and on upgrade; refresh rotation and theft detection.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn logout_closes_exactly_this_sessions_sockets_before_answering() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let alice = server.new_player("lo").await;
    let alice_phone = server.login(&alice.username, &alice.password).await;
    let bob = server.new_player("lo").await;

    let mut a1 = server.ws_ok(alice.token()).await;
    let mut a2 = server.ws_ok(alice.token()).await;
    let mut a_phone = server.ws_ok(&alice_phone.access_token).await;
    let mut b = server.ws_ok(bob.token()).await;
    assert_eq!(server.connections_of(&admin, alice.id()).await.len(), 3);

    assert_eq!(server.logout(alice.token(), false).await, 204);
    // When 204 has arrived, the registry no longer holds this session's sockets...
    let left = server.connections_of(&admin, alice.id()).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["session_id"], alice_phone.session_id.as_str());
    // ...and each of them was sent 4001.
    assert_eq!(a1.close_code().await, 4001);
    assert_eq!(a2.close_code().await, 4001);

    // Another session of the same user, and another user, are untouched.
    a_phone.assert_alive().await;
    b.assert_alive().await;

    // The revoked token: 401 token_revoked on HTTP and on upgrade.
    let (status, body) = server.get("/auth/me", Some(alice.token())).await;
    assert_error(status, &body, 401, "token_revoked");
    let refusal = server
        .ws(WsAuth::Header(alice.token()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.body["error"]["code"], "token_revoked");
    let refusal = server
        .ws(WsAuth::Subprotocol(alice.token()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refusal.status, 401);

    // Its refresh token is dead too.
    let (status, body) = server.refresh(&alice.session.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");

    // The other session still works on HTTP.
    assert_eq!(
        server
            .get("/auth/me", Some(&alice_phone.access_token))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn logout_all_closes_every_session_of_the_user_only() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let alice = server.new_player("la").await;
    let alice2 = server.login(&alice.username, &alice.password).await;
    let bob = server.new_player("la").await;

    let mut a1 = server.ws_ok(alice.token()).await;
    let mut a2 = server.ws_ok(&alice2.access_token).await;
    let mut b = server.ws_ok(bob.token()).await;

    assert_eq!(server.logout(alice.token(), true).await, 204);
    assert!(server.connections_of(&admin, alice.id()).await.is_empty());
    assert_eq!(a1.close_code().await, 4001);
    assert_eq!(a2.close_code().await, 4001);
    b.assert_alive().await;

    for token in [alice.token(), alice2.access_token.as_str()] {
        let (status, body) = server.get("/auth/me", Some(token)).await;
        assert_error(status, &body, 401, "token_revoked");
    }
    for refresh in [&alice.session.refresh_token, &alice2.refresh_token] {
        let (status, _) = server.refresh(refresh).await;
        assert_eq!(status, 401);
    }
    // Logging in again right away works: the new session is not caught by the old mark.
    let again = server.login(&alice.username, &alice.password).await;
    assert_eq!(
        server.get("/auth/me", Some(&again.access_token)).await.0,
        200
    );
    server.ws_ok(&again.access_token).await.assert_alive().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let data = DataDir::new();
    // No grace window: any second use of a refresh token is theft (the grace rule has
    // its own tests in lifecycle.rs).
    let server = TestServer::start(&data, &["--refresh-grace-secs", "0"]).await;
    let p = server.new_player("rf").await;

    let (status, body) = server.refresh(&p.session.refresh_token).await;
    assert_eq!(status, 200, "{body}");
    let second: arena_protocol::http::Session = serde_json::from_value(body).unwrap();
    assert_eq!(second.session_id, p.session.session_id);
    assert_ne!(second.refresh_token, p.session.refresh_token);
    assert_ne!(second.access_token, p.session.access_token);
    assert_eq!(second.token_type, "Bearer");
    assert_eq!(
        server.get("/auth/me", Some(&second.access_token)).await.0,
        200
    );

    let mut socket = server.ws_ok(&second.access_token).await;
    let other = server.login(&p.username, &p.password).await;
    let mut other_socket = server.ws_ok(&other.access_token).await;

    // The spent token again: theft. The whole session goes, its socket gets 4001.
    let (status, body) = server.refresh(&p.session.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");
    assert_eq!(socket.close_code().await, 4001);
    for token in [p.token(), second.access_token.as_str()] {
        let (status, body) = server.get("/auth/me", Some(token)).await;
        assert_error(status, &body, 401, "token_revoked");
    }
    // The thief's copy of the newest refresh token is dead as well.
    let (status, _) = server.refresh(&second.refresh_token).await;
    assert_eq!(status, 401);
    // Another session of the user is not touched.
    other_socket.assert_alive().await;

    // An unknown refresh token is just invalid.
    let (status, body) = server.refresh("nope").await;
    assert_error(status, &body, 401, "refresh_invalid");
}

#[tokio::test]
async fn refresh_sets_the_cookie_too() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("rc").await;
    let resp = server
        .http
        .post(format!("{}/auth/refresh", server.base))
        .json(&json!({"refresh_token": p.session.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = set_cookie(&resp);
    assert!(
        cookie.starts_with("arena_access=ey") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}
