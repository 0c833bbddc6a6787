//! A client that stops reading must not hold memory or delay anyone: its bounded queue
//! fills, it is closed with 1008 and leaves the registry, while the room goes on.

use std::time::Duration;

use arena_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_dropped_and_the_room_goes_on() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(
        &data,
        &["--ws-rate-limit", "0", "--ws-send-timeout-ms", "500"],
    )
    .await;
    let talker = server.new_player("sr").await;
    let stalled = server.new_player("sr").await;
    let (_, room) = server
        .post(
            "/lobby/rooms",
            Some(talker.token()),
            json!({"name": "Flood"}),
        )
        .await;
    let room_id = room["id"].as_str().unwrap().to_string();

    let mut t = server.ws_ok(talker.token()).await;
    t.send_json(json!({"type": "join", "room": room_id})).await;
    t.recv_type("joined").await;
    let mut s = server.ws_ok(stalled.token()).await;
    s.send_json(json!({"type": "join", "room": room_id})).await;
    s.recv_type("joined").await;
    // From here on `s` is never read until the end.

    let text = "x".repeat(280);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0u64;
    loop {
        // The talker keeps chatting and keeps reading its own echo: it is never slowed.
        for _ in 0..50 {
            t.send_json(json!({"type": "chat", "text": text})).await;
        }
        for _ in 0..50 {
            t.recv_type("chat").await;
        }
        sent += 50;
        if server.connections_of(&admin, stalled.id()).await.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled reader still registered after {sent} messages"
        );
    }
    // The stalled socket was closed by policy; what it finally reads ends with 1008.
    match s.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 1008),
        Ended::Dropped(_) => {} // the server gave up writing the close frame to a full pipe
    }
    t.assert_alive().await;
    eprintln!("stalled reader dropped after {sent} room messages");
}
