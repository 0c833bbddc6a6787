//! The same promises on PostgreSQL (`--database-url`), the database a deployment of
//! several servers shares. Each test gets its own database, dropped afterwards.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn sessions_revocation_and_bans_on_postgres_survive_restart() {
    let db = PgDatabase::create();
    let url = db.url();
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &["--database-url", &url]).await;
    let alice = server.new_player("pg").await;
    let bob = server.new_player("pg").await;
    let mut a = server.ws_ok(alice.token()).await;
    let mut b = server.ws_ok(bob.token()).await;

    // Refresh rotation, then logout closes the socket with 4001.
    let (status, rotated) = server.refresh(&alice.session.refresh_token).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(server.logout(alice.token(), false).await, 204);
    assert_eq!(a.close_code().await, 4001);

    let (status, _) = server
        .post(
            &format!("/admin/users/{}/ban", bob.id()),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(b.close_code().await, 4003);
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));

    // Restart on the same database (and data dir, which holds the signing secret).
    let server = TestServer::start(&data, &["--database-url", &url]).await;
    let (status, body) = server
        .get("/auth/me", rotated["access_token"].as_str())
        .await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = server
        .post(
            "/auth/login",
            None,
            json!({"username": bob.username, "password": bob.password}),
        )
        .await;
    assert_error(status, &body, 403, "banned");
    let again = server.login(&alice.username, &alice.password).await;
    server.ws_ok(&again.access_token).await.assert_alive().await;
    // Usernames stay unique ignoring case on PostgreSQL too.
    let (status, _) = server
        .post(
            "/auth/register",
            None,
            json!({"username": alice.username.to_uppercase(), "password": "whatever-1"}),
        )
        .await;
    assert_eq!(status, 409);
}

/// The admin listings' SQL (prefix search with `LIKE ... ESCAPE`, paging, joins) on
/// PostgreSQL.
#[tokio::test]
async fn admin_listings_on_postgres() {
    let db = PgDatabase::create();
    let url = db.url();
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &["--database-url", &url]).await;
    arena_tests::listings::admin_listings(&server, &admin).await;
}

/// The user page's queries and an admin ending one session, on PostgreSQL.
#[tokio::test]
async fn user_page_on_postgres() {
    let db = PgDatabase::create();
    let url = db.url();
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &["--database-url", &url]).await;
    arena_tests::listings::user_page_and_actions_by_name(&server, &admin).await;
}
