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
    // Alone in the room (nobody to bump into); a disc's centre stays its radius, 14, from the wall.
    let expected = (x1 + speed / 20.0 * ticks as f64).min(width - 14.0);
    assert!(
        (x2 - expected).abs() < 0.05,
        "moved {x1} -> {x2}, expected {expected} after {ticks} ticks"
    );
    assert!(x2 > x0);

    let mut b = server.ws_ok(bob.token()).await;
    b.send_json(json!({"type": "join", "room": room_id})).await;
    b.recv_type("joined").await;

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

/// The objective over the socket: `state` carries the orbs, each player's score and the
/// round; a player steered onto an orb scores; when the round's time is up everyone gets
/// the same `round` message (`pause`) naming the winner, and then the next round starts
/// from zero.
#[tokio::test]
async fn orbs_score_and_rounds_end_with_the_same_winner_for_everyone() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--round-secs", "4", "--round-pause-secs", "1"]).await;
    let alice = server.new_player("rd").await;
    let bob = server.new_player("rd").await;
    let (_, room) = server
        .post("/lobby/rooms", Some(alice.token()), json!({"name": "Orbs"}))
        .await;
    let room_id = room["id"].as_str().unwrap();
    let mut a = server.ws_ok(alice.token()).await;
    let mut b = server.ws_ok(bob.token()).await;
    for ws in [&mut a, &mut b] {
        ws.send_json(json!({"type": "join", "room": room_id})).await;
        ws.recv_type("joined").await;
    }

    let round_number = score_an_orb(&mut a, alice.id()).await;

    // Both sockets get the same end of that round, alice the winner (bob never moved).
    let mut ends = Vec::new();
    for ws in [&mut a, &mut b] {
        let ended = loop {
            let r = ws.recv_type("round").await;
            if r["phase"] == "pause" {
                break r;
            }
        };
        assert_eq!(ended["round"], round_number, "{ended}");
        assert_eq!(ended["room"], room_id);
        ends.push(ended);
    }
    assert_eq!(ends[0]["winners"], ends[1]["winners"]);
    assert_eq!(ends[0]["scores"], ends[1]["scores"]);
    // Alice scored; bob did not move, though an orb may appear on him. The winners
    // are exactly the top scorers, each named.
    assert_named_winners(&ends[0], alice.id(), &alice.username);

    // The next round starts, and from zero.
    let started = loop {
        let r = b.recv_type("round").await;
        if r["phase"] == "playing" {
            break r;
        }
    };
    assert_eq!(started["round"], round_number + 1);
    let s = loop {
        let s = b.recv_type("state").await;
        if s["round"]["number"] == round_number + 1 {
            break s;
        }
    };
    assert_eq!(me(&s, alice.id())["score"], 0, "{s}");
}

/// Steer `ws`'s player to the nearest orb until they have scored; the round it was in.
async fn score_an_orb(ws: &mut Ws, id: &str) -> u64 {
    let mut seq = 0;
    loop {
        let s = ws.recv_type("state").await;
        let round = &s["round"];
        assert!(round["ends_at"].is_i64(), "{s}");
        if round["phase"] != "playing" {
            continue;
        }
        let orbs = s["orbs"].as_array().expect("orbs");
        assert!(!orbs.is_empty(), "{s}");
        let p = me(&s, id);
        if p["score"].as_u64().unwrap() > 0 {
            return round["number"].as_u64().unwrap();
        }
        let (x, y) = (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap());
        let orb = orbs
            .iter()
            .map(|o| (o["x"].as_f64().unwrap() - x, o["y"].as_f64().unwrap() - y))
            .min_by(|a, b| a.0.hypot(a.1).total_cmp(&b.0.hypot(b.1)))
            .unwrap();
        let len = orb.0.hypot(orb.1).max(1e-9);
        seq += 1;
        ws.send_json(json!({"type": "input", "seq": seq, "dx": orb.0 / len, "dy": orb.1 / len}))
            .await;
    }
}

/// A player who scored and left before the round's end is still named in it: the
/// winner's line carries their name, not an empty one.
#[tokio::test]
async fn a_scorer_who_left_is_named_at_the_round_end() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--round-secs", "4", "--round-pause-secs", "1"]).await;
    let alice = server.new_player("rl").await;
    let bob = server.new_player("rl").await;
    let (_, room) = server
        .post(
            "/lobby/rooms",
            Some(alice.token()),
            json!({"name": "Leavers"}),
        )
        .await;
    let mut a = server.ws_ok(alice.token()).await;
    let mut b = server.ws_ok(bob.token()).await;
    for ws in [&mut a, &mut b] {
        ws.send_json(json!({"type": "join", "room": room["id"]}))
            .await;
        ws.recv_type("joined").await;
    }
    let round_number = score_an_orb(&mut a, alice.id()).await;
    a.send_json(json!({"type": "leave"})).await;
    a.recv_type("left").await;
    let ended = loop {
        let r = b.recv_type("round").await;
        if r["phase"] == "pause" {
            break r;
        }
    };
    assert_eq!(ended["round"], round_number, "{ended}");
    assert_named_winners(&ended, alice.id(), &alice.username);
}

/// `ended` (a `round` message, `pause`) lists `scorer` by name with at least one point,
/// and its winners are exactly the top scorers, every line with a name.
fn assert_named_winners(ended: &Value, scorer: &str, name: &str) {
    let scores = ended["scores"].as_array().expect("scores");
    let line = scores
        .iter()
        .find(|l| l["id"] == scorer)
        .unwrap_or_else(|| panic!("{scorer} scored: {ended}"));
    assert_eq!(line["username"], name, "{ended}");
    assert!(line["score"].as_u64() >= Some(1), "{ended}");
    let top = scores.iter().filter_map(|l| l["score"].as_u64()).max();
    let mut best: Vec<&Value> = scores
        .iter()
        .filter(|l| l["score"].as_u64() == top)
        .collect();
    let mut winners: Vec<&Value> = ended["winners"]
        .as_array()
        .expect("winners")
        .iter()
        .collect();
    best.sort_by_key(|l| l["id"].to_string());
    winners.sort_by_key(|l| l["id"].to_string());
    assert_eq!(winners, best, "{ended}");
    for l in scores {
        assert!(
            !l["username"].as_str().unwrap_or_default().is_empty(),
            "{ended}"
        );
    }
}
