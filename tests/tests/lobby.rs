//! Lobby and rooms: create, list, inspect; join, leave and chat over the socket.

use arena_tests::*;
use serde_json::json;

#[tokio::test]
async fn rooms_can_be_created_listed_and_inspected() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("lb").await;

    let (status, room) = server
        .post(
            "/lobby/rooms",
            Some(p.token()),
            json!({"name": "Duel", "capacity": 2}),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    assert_eq!(room["name"], "Duel");
    assert_eq!(room["capacity"], 2);
    assert_eq!(room["players"], 0);
    let id = room["id"].as_str().unwrap().to_string();

    let (status, defaulted) = server
        .post("/lobby/rooms", Some(p.token()), json!({"name": "Open"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(defaulted["capacity"], 16);

    let (status, list) = server.get("/lobby/rooms", Some(p.token())).await;
    assert_eq!(status, 200);
    assert!(list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id.as_str()));

    let (status, detail) = server
        .get(&format!("/lobby/rooms/{id}"), Some(p.token()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["members"], json!([]));
    let (status, body) = server.get("/lobby/rooms/r_missing", Some(p.token())).await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(server.get("/lobby/rooms", None).await.0, 401);
}

#[tokio::test]
async fn join_chat_leave_and_capacity() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let alice = server.new_player("ch").await;
    let bob = server.new_player("ch").await;
    let carol = server.new_player("ch").await;
    let (_, room) = server
        .post(
            "/lobby/rooms",
            Some(alice.token()),
            json!({"name": "Pair", "capacity": 2}),
        )
        .await;
    let id = room["id"].as_str().unwrap().to_string();

    let mut a = server.ws_ok(alice.token()).await;
    let mut b = server.ws_ok(bob.token()).await;
    let mut c = server.ws_ok(carol.token()).await;

    a.send_json(json!({"type": "join", "room": id})).await;
    let joined = a.recv_type("joined").await;
    assert_eq!(joined["room"]["id"], id.as_str());
    assert_eq!(joined["room"]["players"], 1);

    b.send_json(json!({"type": "join", "room": id})).await;
    let joined = b.recv_type("joined").await;
    assert_eq!(joined["members"].as_array().unwrap().len(), 2);
    let seen = a.recv_type("player_joined").await;
    assert_eq!(seen["player"]["username"], bob.username.as_str());
    assert_eq!(seen["room"], id.as_str());

    c.send_json(json!({"type": "join", "room": id})).await;
    let full = c.recv_type("error").await;
    assert_eq!(full["code"], "room_full");

    let (_, detail) = server
        .get(&format!("/lobby/rooms/{id}"), Some(carol.token()))
        .await;
    assert_eq!(detail["players"], 2);
    assert_eq!(detail["members"].as_array().unwrap().len(), 2);

    b.send_json(json!({"type": "chat", "text": "gl hf"})).await;
    for ws in [&mut a, &mut b] {
        let chat = ws.recv_type("chat").await;
        assert_eq!(chat["text"], "gl hf");
        assert_eq!(chat["from"]["id"], bob.id());
        assert_eq!(chat["from"]["username"], bob.username.as_str());
        assert_eq!(chat["room"], id.as_str());
        assert!(chat["ts"].is_i64());
    }
    // The longest chat line, in 4-byte characters, is twice the default read buffer
    // (512 B): the buffer is what a read takes at a time, not a limit on the message.
    let longest = "🎮".repeat(arena_protocol::ws::CHAT_MAX_CHARS);
    assert!(longest.len() > 2 * 512);
    b.send_json(json!({"type": "chat", "text": longest})).await;
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.recv_type("chat").await["text"], longest.as_str());
    }

    b.send_json(json!({"type": "leave"})).await;
    assert_eq!(b.recv_type("left").await["room"], id.as_str());
    assert_eq!(a.recv_type("player_left").await["player"]["id"], bob.id());

    // Now there is room for carol; and a socket that closes leaves its room.
    c.send_json(json!({"type": "join", "room": id})).await;
    c.recv_type("joined").await;
    a.recv_type("player_joined").await;
    drop(c);
    assert_eq!(a.recv_type("player_left").await["player"]["id"], carol.id());
}

#[tokio::test]
async fn joining_another_room_leaves_the_first() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("jm").await;
    let (_, r1) = server
        .post("/lobby/rooms", Some(p.token()), json!({"name": "One"}))
        .await;
    let (_, r2) = server
        .post("/lobby/rooms", Some(p.token()), json!({"name": "Two"}))
        .await;
    let mut ws = server.ws_ok(p.token()).await;
    ws.send_json(json!({"type": "join", "room": r1["id"]}))
        .await;
    ws.recv_type("joined").await;
    ws.send_json(json!({"type": "join", "room": r2["id"]}))
        .await;
    assert_eq!(ws.recv_type("left").await["room"], r1["id"]);
    assert_eq!(ws.recv_type("joined").await["room"]["id"], r2["id"]);
    let (_, d1) = server
        .get(
            &format!("/lobby/rooms/{}", r1["id"].as_str().unwrap()),
            Some(p.token()),
        )
        .await;
    assert_eq!(d1["players"], 0);
}
