//! Quick cross-node room checks while building issue 11 (two nodes).

use std::time::Duration;

use arena_tests::cluster::*;
use serde_json::{json, Value};

fn has_players(state: &Value, ids: &[&str]) -> bool {
    let players = state["players"].as_array().cloned().unwrap_or_default();
    ids.iter().all(|id| players.iter().any(|p| p["id"] == *id))
}

#[tokio::test]
async fn two_nodes_one_room() {
    let mut cl = Cluster::start(2, &["--room-lease-ms", "1000"]).await;
    let alice = cl.node(0).new_player("sa").await;
    let bob = cl.node(1).new_player("sb").await;
    let (_, room) = cl
        .node(0)
        .post(
            "/lobby/rooms",
            Some(alice.token()),
            json!({"name": "Smoke"}),
        )
        .await;
    let id = room["id"].as_str().unwrap().to_string();
    let (_, list) = cl.node(1).get("/lobby/rooms", Some(bob.token())).await;
    eprintln!("list on node 1: {list}");

    let mut a = cl.node(0).ws_ok(alice.token()).await;
    a.send_json(json!({"type": "join", "room": id})).await;
    let j = a.recv_type("joined").await;
    eprintln!("a joined: {j}");
    let mut b = cl.node(1).ws_ok(bob.token()).await;
    b.send_json(json!({"type": "join", "room": id})).await;
    let j = b.recv_type("joined").await;
    eprintln!("b joined: {j}");
    let pj = a.recv_type("player_joined").await;
    eprintln!("a saw: {pj}");
    loop {
        let s = b.recv_type("state").await;
        if has_players(&s, &[alice.id(), bob.id()]) {
            break;
        }
    }
    b.send_json(json!({"type": "chat", "text": "hi from b"}))
        .await;
    let c = a.recv_type("chat").await;
    assert_eq!(c["text"], "hi from b");
    let c = b.recv_type("chat").await;
    assert_eq!(c["text"], "hi from b");
    b.send_json(json!({"type": "input", "seq": 1, "dx": 1.0, "dy": 0.0}))
        .await;
    loop {
        let s = a.recv_type("state").await;
        let me = s["players"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == bob.id())
            .cloned();
        if me.is_some_and(|m| m["last_seq"] == 1) {
            break;
        }
    }
    let (_, list) = cl.node(1).get("/lobby/rooms", Some(bob.token())).await;
    eprintln!("list on node 1: {list}");
    let (_, detail) = cl
        .node(1)
        .get(&format!("/lobby/rooms/{id}"), Some(bob.token()))
        .await;
    eprintln!("detail on node 1: {detail}");

    // The owner dies: node 1 takes the room on.
    let killed = std::time::Instant::now();
    cl.kill(0).await;
    let moved = b.recv_type("room_moved").await;
    eprintln!("moved after {:?}: {moved}", killed.elapsed());
    let s = b.recv_type("state").await;
    eprintln!("state: {s}");
    b.send_json(json!({"type": "chat", "text": "still here"}))
        .await;
    let c = b.recv_type("chat").await;
    assert_eq!(c["text"], "still here");
    let _ = Duration::from_secs(1);
}
