//! One signing keyring for servers sharing a PostgreSQL database (no `--jwt-secret`):
//! servers started at once end with one ring; a rotation made by one is used and
//! published by all (it reaches them through the revocation log); the refresh grace rule
//! derives the same successor on every server; a server's keyring file is imported into a
//! database that has no ring yet.

use std::time::Duration;

use arena_tests::*;
use jsonwebtoken::decode_header;

async fn node(data: &DataDir, db: &PgDatabase, extra: &[&str]) -> TestServer {
    let url = db.url();
    let mut args = vec![
        "--database-url",
        url.as_str(),
        "--revocation-poll-ms",
        "100",
    ];
    args.extend_from_slice(extra);
    TestServer::start(data, &args).await
}

fn kid(token: &str) -> String {
    decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid in the header")
}

async fn jwks_kids(server: &TestServer) -> Vec<String> {
    let (status, body) = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200, "{body}");
    body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(String::from))
        .collect()
}

const CURRENT_KEYS: &str = "SELECT count(*) FROM signing_keys WHERE retired_at_secs IS NULL";

#[tokio::test]
async fn servers_started_at_once_share_one_keyring() {
    let db = PgDatabase::create();
    let (da, db_, dc) = (DataDir::new(), DataDir::new(), DataDir::new());
    let (a, b, c) = tokio::join!(
        node(&da, &db, &[]),
        node(&db_, &db, &[]),
        node(&dc, &db, &[])
    );
    let p = a.new_player("ring").await;
    for server in [&a, &b, &c] {
        let (status, body) = server.get("/auth/me", Some(p.token())).await;
        assert_eq!(status, 200, "a token from A on {}: {body}", server.addr);
        let mine = server.login(&p.username, &p.password).await;
        assert_eq!(
            kid(&mine.access_token),
            kid(p.token()),
            "every server signs with one key"
        );
        assert_eq!(a.get("/auth/me", Some(&mine.access_token)).await.0, 200);
    }
    assert_eq!(db.number(CURRENT_KEYS), 1);
    assert_eq!(db.number("SELECT count(*) FROM signing_keys"), 1);
    assert_eq!(db.number("SELECT count(*) FROM signing_keyring"), 1);
    // No keyring file is written when the ring lives in the database.
    for dir in [&da, &db_, &dc] {
        assert!(!dir.0.join("signing-keys.json").exists());
    }
}

/// Wait until a fresh login on `server` is signed with `want`.
async fn until_signing_with(server: &TestServer, p: &Player, want: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let session = server.login(&p.username, &p.password).await;
        if kid(&session.access_token) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} still signs with {}",
            server.addr,
            kid(&session.access_token)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rotation_on_one_server_is_used_and_published_by_all() {
    let db = PgDatabase::create();
    let (da, db_, dc) = (DataDir::new(), DataDir::new(), DataDir::new());
    let eddsa = ["--jwt-algorithm", "EdDSA"];
    let (a, b) = tokio::join!(node(&da, &db, &eddsa), node(&db_, &db, &eddsa));
    let p = a.new_player("rot").await;
    let old_token = p.session.access_token.clone();
    let old_kid = kid(&old_token);
    assert_eq!(jwks_kids(&b).await, vec![old_kid.clone()]);

    let c = node(
        &dc,
        &db,
        &["--jwt-algorithm", "EdDSA", "--rotate-signing-key"],
    )
    .await;
    let on_c = c.login(&p.username, &p.password).await;
    let new_kid = kid(&on_c.access_token);
    assert_ne!(new_kid, old_kid, "C rotated");
    let started = tokio::time::Instant::now();
    for server in [&a, &b] {
        until_signing_with(server, &p, &new_kid).await;
    }
    eprintln!(
        "A and B signed with C's new key {:?} after C's first login",
        started.elapsed()
    );
    assert_eq!(db.number(CURRENT_KEYS), 1);
    for server in [&a, &b, &c] {
        let mut kids = jwks_kids(server).await;
        kids.sort();
        let mut want = vec![old_kid.clone(), new_kid.clone()];
        want.sort();
        assert_eq!(kids, want, "JWKS of {}", server.addr);
        // Tokens of both keys verify everywhere.
        for token in [&old_token, &on_c.access_token] {
            let (status, body) = server.get("/auth/me", Some(token)).await;
            assert_eq!(status, 200, "{} on {}: {body}", kid(token), server.addr);
        }
    }
}

#[tokio::test]
async fn the_refresh_grace_rule_gives_the_same_pair_on_another_server() {
    let db = PgDatabase::create();
    let (da, db_) = (DataDir::new(), DataDir::new());
    let (a, b) = tokio::join!(node(&da, &db, &[]), node(&db_, &db, &[]));
    let p = a.new_player("grace").await;
    let first = p.session.refresh_token.clone();
    let (status, on_a) = a.refresh(&first).await;
    assert_eq!(status, 200, "{on_a}");
    // The same (now previous) token again, on the other server, within the grace.
    let (status, on_b) = b.refresh(&first).await;
    assert_eq!(status, 200, "{on_b}");
    for field in ["access_token", "refresh_token", "session_id", "expires_in"] {
        assert_eq!(on_a[field], on_b[field], "{field}");
    }
    assert!(on_a["refresh_token"].is_string());
}

#[tokio::test]
async fn a_keyring_file_is_imported_into_a_database_without_one() {
    // A server on the embedded database, with its ring in its data dir.
    let data = DataDir::new();
    let lone = TestServer::start(&data, &["--jwt-algorithm", "EdDSA"]).await;
    let p = lone.new_player("imp").await;
    let old_kid = kid(p.token());
    assert_eq!(lone.signal_and_wait("TERM").await, Some(0));
    assert!(data.0.join("signing-keys.json").exists());

    // Moved to a shared database: its keys come along; a second server, with no file,
    // verifies the old token and publishes the old key.
    let db = PgDatabase::create();
    let moved = node(&data, &db, &["--jwt-algorithm", "EdDSA"]).await;
    let other_dir = DataDir::new();
    let other = node(&other_dir, &db, &["--jwt-algorithm", "EdDSA"]).await;
    for server in [&moved, &other] {
        let (status, body) = server.get("/auth/me", Some(p.token())).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(jwks_kids(server).await, vec![old_kid.clone()]);
    }
    assert_eq!(
        db.number(&format!(
            "SELECT count(*) FROM signing_keys WHERE kid = '{old_kid}' AND retired_at_secs IS NULL"
        )),
        1
    );
}
