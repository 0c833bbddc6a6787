//! The database out of reach: the server's link to PostgreSQL runs through a TCP proxy
//! this test controls, and cutting it must give clear 503 `unavailable` answers with
//! `Retry-After` (never a hang, never a 500), keep serving what needs no database, and
//! recover by itself when the link comes back.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn a_database_out_of_reach_gives_503_with_retry_after_and_recovers() {
    let db = PgDatabase::create();
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = format!("postgres://postgres@{}/{}", proxy.addr, db.name);
    let data = DataDir::new();
    let server = TestServer::start(
        &data,
        &["--database-url", &url, "--database-timeout-ms", "1000"],
    )
    .await;
    let p = server.new_player("outage").await;
    let mut socket = server.ws_ok(p.token()).await;

    proxy.cut();
    let credentials = json!({"username": p.username, "password": p.password});
    let answer = server
        .http
        .post(format!("{}/auth/login", server.base))
        .json(&credentials)
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(answer.status().as_u16(), 503);
    assert_eq!(
        answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = answer.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // /healthz reads the health probe, which pings the database once a second.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (status, body) = loop {
        let (status, body) = server.get("/healthz", None).await;
        if status != 200 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_error(status, &body, 503, "unavailable");
    // What needs no database still works: the token is checked in memory.
    assert_eq!(server.get("/auth/me", Some(p.token())).await.0, 200);
    socket.assert_alive().await;
    // A logout closes the session's sockets before the database is asked; one that
    // cannot be written says so, and the token works again so that the client can retry.
    let (status, body) = server
        .post("/auth/logout", Some(p.token()), json!({}))
        .await;
    assert_error(status, &body, 503, "unavailable");
    assert_eq!(socket.close_code().await, 4001);
    assert_eq!(server.get("/auth/me", Some(p.token())).await.0, 200);
    let mut socket = server.ws_ok(p.token()).await;

    proxy.restore();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while server.get("/healthz", None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(server.logout(p.token(), false).await, 204);
    assert_eq!(socket.close_code().await, 4001);
}
