//! Promise 5: a socket never outlives its token. `token_expiring` comes first (at once
//! when the token is shorter than the warning), then close 4002 at `exp`, unless a
//! `reauth` with a fresh token of the same user moved the socket onto it.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn socket_is_warned_then_closed_with_4002_at_expiry() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--access-ttl", "2"]).await;
    let p = server.new_player("ex").await;
    let mut ws = server.ws_ok(p.token()).await;
    let expires_at = ws.welcome["expires_at"].as_i64().unwrap();
    let warning = ws.recv_type("token_expiring").await;
    assert_eq!(warning["expires_at"], expires_at);
    assert_eq!(ws.close_code().await, 4002);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        now >= expires_at - 50,
        "closed {} ms before exp",
        expires_at - now
    );
}

#[tokio::test]
async fn reauth_keeps_the_socket_alive_past_its_first_token() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--access-ttl", "3"]).await;
    let p = server.new_player("ra").await;
    let other = server.new_player("ra").await;
    let mut ws = server.ws_ok(p.token()).await;
    let first_exp = ws.welcome["expires_at"].as_i64().unwrap();

    // Another user's token is refused and changes nothing.
    ws.send_json(json!({"type": "reauth", "access_token": other.token()}))
        .await;
    let refused = ws.recv_type("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    ws.send_json(json!({"type": "reauth", "access_token": "garbage"}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "token_invalid");

    // Refresh until the new token's exp (whole seconds) is later than the first's.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let (_, fresh) = server.refresh(&p.session.refresh_token).await;
    let fresh_token = fresh["access_token"].as_str().unwrap().to_string();
    let mut token = fresh_token;
    let mut refresh = fresh["refresh_token"].as_str().unwrap().to_string();
    loop {
        let (_, me) = server.get("/auth/me", Some(&token)).await;
        if me["expires_at"].as_i64().unwrap() > first_exp {
            break;
        }
        let (_, s) = server.refresh(&refresh).await;
        token = s["access_token"].as_str().unwrap().to_string();
        refresh = s["refresh_token"].as_str().unwrap().to_string();
        tokio::task::yield_now().await;
    }
    ws.send_json(json!({"type": "reauth", "access_token": token}))
        .await;
    let reauthed = ws.recv_type("reauthed").await;
    assert_eq!(reauthed["session_id"], p.session.session_id.as_str());
    let new_exp = reauthed["expires_at"].as_i64().unwrap();
    assert!(new_exp > first_exp);

    // Past the first token's expiry (the event we wait for) the socket still answers.
    let wait = (first_exp + 300 - now()).max(0) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    ws.assert_alive().await;
    // And the new token's expiry closes it in turn.
    assert_eq!(ws.close_code().await, 4002);
}
