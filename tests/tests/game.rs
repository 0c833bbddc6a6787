//! The game over the socket: fixed-tick `state` frames for everyone in the room, inputs
//! applied server-side with their `seq`, and a room that stops ticking when empty.

use arena_tests::*;
use serde_json::{json, Value};

fn me<'a>(state: &'a Value, user_id: &str) -> &'a Value {
    state["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == user_id)
        .expect("player in state")
}

#[tokio::test]
async fn inputs_move_players_and_everyone_sees_the_state() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--tick-hz", "20"]).await;
    let alice = server.new_player("gm").await;
    let bob = server.new_player("gm").await;
    let (_, room) = server
        .post(
            "/lobby/rooms",
            Some(alice.token()),
            json!({"name": "Field"}),
        )
        .await;
    let room_id = room["id"].as_str().unwrap();

    let mut a = server.ws_ok(alice.token()).await;
    a.send_json(json!({"type": "join", "room": room_id})).await;
    let joined = a.recv_type("joined").await;
    let world = &joined["world"];
    assert_eq!(world["tick_hz"], 20);
    let (width, speed) = (
        world["width"].as_f64().unwrap(),
        world["speed"].as_f64().unwrap(),
    );

    let mut b = server.ws_ok(bob.token()).await;
    b.send_json(json!({"type": "join", "room": room_id})).await;
    b.recv_type("joined").await;

    let start = a.recv_type("state").await;
    let x0 = me(&start, alice.id())["x"].as_f64().unwrap();
    a.send_json(json!({"type": "input", "seq": 1, "dx": 1.0, "dy": 0.0}))
        .await;
    // Wait for a state that has applied seq 1, then a few ticks more.
    let applied = loop {
        let s = a.recv_type("state").await;
        if me(&s, alice.id())["last_seq"] == 1 {
            break s;
        }
    };
    let t1 = applied["tick"].as_u64().unwrap();
    let x1 = me(&applied, alice.id())["x"].as_f64().unwrap();
    let later = loop {
        let s = a.recv_type("state").await;
        if s["tick"].as_u64().unwrap() >= t1 + 4 {
            break s;
        }
    };
    let ticks = later["tick"].as_u64().unwrap() - t1;
    let x2 = me(&later, alice.id())["x"].as_f64().unwrap();
    let expected = (x1 + speed / 20.0 * ticks as f64).min(width);
    assert!(
        (x2 - expected).abs() < 0.05,
        "moved {x1} -> {x2}, expected {expected} after {ticks} ticks"
    );
    assert!(x2 > x0);

    // Bob's frames show both players, and alice moving.
    let seen = loop {
        let s = b.recv_type("state").await;
        if me(&s, alice.id())["x"].as_f64().unwrap() >= x2 {
            break s;
        }
    };
    assert_eq!(seen["players"].as_array().unwrap().len(), 2);
    assert_eq!(seen["room"], room_id);
    assert_eq!(me(&seen, bob.id())["username"], bob.username.as_str());

    // An absurd input is clamped, never trusted: one tick moves at most speed / tick_hz.
    a.send_json(json!({"type": "input", "seq": 2, "dx": -1e9, "dy": 0}))
        .await;
    let mut prev: Option<(u64, f64)> = None;
    for _ in 0..6 {
        let s = a.recv_type("state").await;
        let p = me(&s, alice.id());
        let (tick, x) = (s["tick"].as_u64().unwrap(), p["x"].as_f64().unwrap());
        if let Some((pt, px)) = prev {
            let per_tick = (x - px).abs() / (tick - pt) as f64;
            assert!(
                per_tick <= speed / 20.0 + 0.02,
                "moved {per_tick} in a tick"
            );
        }
        prev = Some((tick, x));
    }
    // Stale inputs (older seq) are ignored.
    a.send_json(json!({"type": "input", "seq": 1, "dx": 1, "dy": 0}))
        .await;
    let s = a.recv_type("state").await;
    assert_eq!(me(&s, alice.id())["last_seq"], 2);
}

#[tokio::test]
async fn input_outside_a_room_is_an_error() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("gi").await;
    let mut ws = server.ws_ok(p.token()).await;
    ws.send_json(json!({"type": "input", "seq": 1, "dx": 1, "dy": 0}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "not_in_room");
    ws.send_json(json!({"type": "input", "seq": 1, "dx": "left", "dy": 0}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "invalid_request");
}
