//! What the room tests share: lobby and socket helpers, and the tick logs
//! (`ARENA_TEST_TICK_LOG`) that show whether two nodes ever ticked one room at once.
//! Included by path from each test file that needs it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arena_tests::*;
use serde_json::{json, Value};

/// `POST /lobby/rooms` on `node`; the new room's id.
pub async fn create_room(node: &TestServer, token: &str, name: &str, capacity: u32) -> String {
    let (status, room) = node
        .post(
            "/lobby/rooms",
            Some(token),
            json!({"name": name, "capacity": capacity}),
        )
        .await;
    assert_eq!(status, 201, "create room {name}: {room}");
    room["id"].as_str().expect("room id").to_string()
}

/// The lobby as `node` lists it, by room id.
pub async fn lobby(node: &TestServer, token: &str) -> BTreeMap<String, Value> {
    let (status, body) = node.get("/lobby/rooms", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| (r["id"].as_str().expect("id").to_string(), r.clone()))
        .collect()
}

/// Poll `node`'s lobby until room `id` satisfies `want`; the room as listed.
pub async fn until_listed(
    node: &TestServer,
    token: &str,
    id: &str,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rooms = lobby(node, token).await;
        let room = rooms.get(id).cloned().unwrap_or(Value::Null);
        if want(&room) {
            return room;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} lists room {id} as {room}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send `join` and read the answer (`joined` or an `error`).
pub async fn join(ws: &mut Ws, room: &str) -> Value {
    ws.send_json(json!({"type": "join", "room": room})).await;
    loop {
        let v = ws
            .recv_json()
            .await
            .expect("socket closed waiting for joined");
        if v["type"] == "joined" || v["type"] == "error" {
            return v;
        }
    }
}

pub async fn join_ok(ws: &mut Ws, room: &str) -> Value {
    let v = join(ws, room).await;
    assert_eq!(v["type"], "joined", "join {room}: {v}");
    v
}

pub fn player<'a>(state: &'a Value, id: &str) -> Option<&'a Value> {
    state["players"].as_array()?.iter().find(|p| p["id"] == id)
}

/// Read `state` frames until one satisfies `want` (other frames are skipped).
pub async fn state_until(ws: &mut Ws, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    // What was read, for the failure's message: the last state frame and the other frames.
    let (mut last_state, mut others) = (Value::Null, Vec::new());
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: no such state frame; the last: {last_state}; other frames: {others:?}"
        );
        let v = ws
            .recv_json()
            .await
            .unwrap_or_else(|| panic!("{what}: socket closed ({:?})", ws.close_code_after_end()));
        if v["type"] == "state" && want(&v) {
            return v;
        }
        if v["type"] == "state" {
            last_state = v;
        } else {
            others.push(v);
        }
    }
}

/// Move `mover` (input `seq`) and wait until `watcher` sees that input applied and the
/// position changed: proof that input reaches the room's node and its `state` reaches
/// the watcher, wherever each socket is.
pub async fn sees_move(mover: &mut Ws, mover_id: &str, seq: u64, watcher: &mut Ws, what: &str) {
    let before = state_until(watcher, what, |s| player(s, mover_id).is_some()).await;
    let x0 = player(&before, mover_id).expect("listed")["x"].as_f64();
    mover
        .send_json(json!({"type": "input", "seq": seq, "dx": 1.0, "dy": 0.3}))
        .await;
    state_until(watcher, what, |s| {
        player(s, mover_id).is_some_and(|p| p["last_seq"] == seq && p["x"].as_f64() != x0)
    })
    .await;
    // Stop again, so the next check starts from rest.
    mover
        .send_json(json!({"type": "input", "seq": seq + 1, "dx": 0.0, "dy": 0.0}))
        .await;
}

/// Send chat on `from`; every socket in `to` receives it.
pub async fn chat_reaches(from: &mut Ws, text: &str, to: &mut [&mut Ws]) {
    from.send_json(json!({"type": "chat", "text": text})).await;
    for ws in to.iter_mut() {
        let c = ws.recv_type("chat").await;
        assert_eq!(c["text"], text, "{c}");
    }
}

/// Read until `player_left` for `user_id`.
pub async fn sees_left(ws: &mut Ws, user_id: &str) {
    loop {
        let v = ws.recv_type("player_left").await;
        if v["player"]["id"] == user_id {
            return;
        }
    }
}

pub use arena_tests::ticks::Runs;

/// The runs in the nodes' tick logs (see `arena_tests::ticks`); a bad line, or an epoch
/// ticked by two nodes, fails the test.
pub fn read_tick_logs(paths: &[std::path::PathBuf]) -> Runs {
    let (runs, problems) = arena_tests::ticks::tick_runs(paths);
    assert!(problems.is_empty(), "{}", problems.join("; "));
    runs
}

/// For each room, its runs ordered by epoch never overlap in time: the last tick of one
/// epoch comes before the first tick of the next. Returns the count of runs per room.
pub fn assert_no_overlap(runs: &Runs) -> BTreeMap<String, usize> {
    let found = arena_tests::ticks::overlaps(runs);
    assert!(found.is_empty(), "{}", found.join("; "));
    let mut per_room = BTreeMap::new();
    for (room, _) in runs.keys() {
        *per_room.entry(room.clone()).or_insert(0) += 1;
    }
    per_room
}
