//! Revocation rules that are not about one logout: a revocation completes even when its
//! client gives up mid-request, and a user's live sessions are bounded (the oldest goes,
//! its sockets closed with 4001).
//!
//! These start `target/debug/arena-server`: after changing the server, build it
//! (`cargo test --workspace` does) before running one test file with `-p arena-tests`.

use std::time::Duration;

use arena_tests::*;

#[tokio::test]
async fn live_sessions_per_user_are_bounded_oldest_first() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--max-sessions-per-user", "3"]).await;
    let first = server.new_player("bounded").await;
    let mut oldest_socket = server.ws_ok(first.token()).await;
    let mut tokens = vec![first.session.access_token.clone()];
    for _ in 0..2 {
        tokens.push(
            server
                .login(&first.username, &first.password)
                .await
                .access_token,
        );
    }
    oldest_socket.assert_alive().await;

    // The fourth login revokes the oldest session and closes its socket with 4001.
    let newest = server.login(&first.username, &first.password).await;
    assert_eq!(oldest_socket.close_code().await, 4001);
    let (status, body) = server.get("/auth/me", Some(&tokens[0])).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = server.refresh(&first.session.refresh_token).await;
    assert_error(status, &body, 401, "refresh_invalid");
    for token in &tokens[1..] {
        assert_eq!(server.get("/auth/me", Some(token)).await.0, 200);
    }
    let (status, body) = server
        .get("/auth/sessions", Some(&newest.access_token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(3), "{body}");
}

/// The same on PostgreSQL with a commit made slow by a deferred trigger (it sleeps at
/// COMMIT time), and a client that gives up while the commit is in flight: over HTTP/2 its
/// stream is reset and hyper drops the handler's future at once. The commit lands, so the
/// revocation must be applied in memory all the same.
#[tokio::test]
async fn a_logout_abandoned_during_its_commit_is_still_applied() {
    let db = PgDatabase::create();
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--database-url", &db.url()]).await;
    db.psql(
        "CREATE FUNCTION slow_commit() RETURNS trigger AS $$
         BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$ LANGUAGE plpgsql;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON sessions
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
    );
    let impatient = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("client");
    for round in 0..3 {
        let p = server.new_player("slowpg").await;
        let mut socket = server.ws_ok(p.token()).await;
        let gave_up = impatient
            .post(format!("{}/auth/logout", server.base))
            .bearer_auth(p.token())
            .json(&serde_json::json!({"all": true}))
            .send()
            .await;
        assert!(
            gave_up.is_err(),
            "round {round}: the commit should outlast the client"
        );
        assert!(
            matches!(socket.ended().await, Ended::Closed(4001, _)),
            "round {round}: the committed logout must close the socket"
        );
        let (status, body) = server.get("/auth/me", Some(p.token())).await;
        assert_error(status, &body, 401, "token_revoked");
    }
}

/// Ended sessions and their refresh tokens leave the database once no token of theirs
/// can be accepted; live ones stay.
#[tokio::test]
async fn ended_sessions_are_pruned_from_the_database() {
    let db = PgDatabase::create();
    let data = DataDir::new();
    let server = TestServer::start(
        &data,
        &[
            "--database-url",
            &db.url(),
            "--access-ttl",
            "1",
            "--jwt-leeway",
            "0",
            "--db-prune-secs",
            "1",
        ],
    )
    .await;
    let ended = server.new_player("pruned").await;
    let live = server.new_player("kept").await;
    assert_eq!(server.logout(ended.token(), false).await, 204);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let ended_rows = format!(
        "SELECT count(*) FROM sessions WHERE user_id = '{}'",
        ended.id()
    );
    while db.number(&ended_rows) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended session was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tokens = format!(
        "SELECT count(*) FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
         WHERE s.user_id = '{}'",
        live.id()
    );
    assert_eq!(
        db.number(&tokens),
        1,
        "the live session keeps its refresh token"
    );
    let (status, body) = server.refresh(&live.session.refresh_token).await;
    assert_eq!(status, 200, "{body}");
}
