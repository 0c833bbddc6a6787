//! `arena-client load rooms`: rooms whose players sit on different nodes of a cluster, and
//! how late each `state` frame reaches a socket on another node than the room's owner.
//!
//! Placement: room `r`'s first joiner connects to node `r mod N` (or `--owner-node`), so
//! that node takes the room's lease and runs its game; player `i` of the room connects to
//! node `(owner + i) mod N` (`--placement spread`) or to the owner too (`owner`: no
//! cross-node traffic, for comparing the servers' CPU).
//!
//! Latency without timestamps in the frames: every process shares this machine's
//! monotonic clock, so each socket's reader stamps each `state` frame with
//! [`Instant::now`] as soon as it is read and parses only its `room` and `tick`. For each
//! (room, tick), the earliest arrival among the sockets on the owner node is the reference
//! (the owner writes to its local members right after its tick); a remote socket's
//! latency is its arrival minus that reference. The spread of local arrivals (latest minus
//! earliest, per tick) shows how tight the reference is: it holds the load client's own
//! scheduling delay, which sits in the remote figures too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::api::Socket;
use crate::load::{bar, cpu_split, emit, make_users, open, Common, Percentiles};
use crate::nodes::Nodes;

/// Where a room's players connect.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// Player i of a room on node (owner + i) mod N: most members are remote.
    Spread,
    /// Every player on the room's owner node: no cross-node traffic.
    Owner,
}

/// What the scenario was asked to do.
pub struct Plan {
    pub rooms: usize,
    pub players: usize,
    pub seconds: u64,
    pub warmup: u64,
    pub input_rate: f64,
    pub chat_rate: f64,
    pub placement: Placement,
    pub owner_node: Option<usize>,
    pub node_pids: Vec<u32>,
    pub redis_pid: Option<u32>,
}

impl Plan {
    fn owner_of(&self, room: usize, n: usize) -> usize {
        self.owner_node.unwrap_or(room) % n
    }

    fn node_of(&self, room: usize, player: usize, n: usize) -> usize {
        let owner = self.owner_of(room, n);
        match self.placement {
            Placement::Spread => (owner + player) % n,
            Placement::Owner => owner,
        }
    }
}

/// One socket's part of the run.
struct Member {
    room: usize,
    node: usize,
    /// Whether its node runs the room (it says so in `joined`).
    local: bool,
    socket: Socket,
}

/// What one socket's reader saw.
#[derive(Default)]
struct Seen {
    /// (tick, arrival) of every `state` frame of its room, in arrival order.
    states: Vec<(u64, Instant)>,
    chats: u64,
    moved: u64,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    states: AtomicU64,
    sent: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(nodes: Arc<Nodes>, plan: &Plan, common: &Common) -> Result<(), String> {
    let n = nodes.len();
    let (rooms, players) = (plan.rooms, plan.players);
    if rooms == 0 || players == 0 {
        return Err("rooms needs at least one room and one player".into());
    }
    eprintln!(
        "rooms: {rooms} rooms × {players} players over {n} node(s), {:?} placement, {} s measured after {} s warm-up; {} inputs/s and {} chats/s per player",
        plan.placement, plan.seconds, plan.warmup, plan.input_rate, plan.chat_rate
    );
    if n == 1 {
        eprintln!("  one node: every socket is local, no remote latency to measure");
    }
    let node_ids = node_ids(&nodes).await;
    eprintln!("  nodes: {}", node_ids.join(", "));
    let tokens = make_users(&nodes, rooms * players, common.accounts.as_deref()).await?;
    let mut room_ids = Vec::with_capacity(rooms);
    for r in 0..rooms {
        // The room's first player creates it (the server bounds rooms per user).
        let room = nodes
            .api(plan.owner_of(r, n))
            .call(
                "POST",
                "/lobby/rooms",
                &tokens[r * players],
                Some(json!({"name": format!("rooms load {r}"), "capacity": players.clamp(2, 64)})),
            )
            .await?;
        let id = room["id"].as_str().ok_or("room created without an id")?;
        room_ids.push(id.to_string());
    }

    // Join one socket at a time, each room's first joiner first, so that it takes the
    // room's lease on its node; `joined` says which node runs the room.
    let progress = bar(tokens.len(), "joining");
    let mut members = Vec::with_capacity(tokens.len());
    let mut owners = vec![String::new(); rooms];
    let mut tick_hz = 0u64;
    for r in 0..rooms {
        for i in 0..players {
            let node = plan.node_of(r, i, n);
            let (mut socket, _, _) = open(&nodes, node, &tokens[r * players + i]).await?;
            let joined = join(&mut socket, &room_ids[r]).await?;
            let runs_on = joined["room"]["node"].as_str().unwrap_or_default();
            if i == 0 {
                owners[r] = runs_on.to_string();
                if runs_on != node_ids[node] {
                    eprintln!(
                        "  room {r}: its first joiner is on {} but {runs_on:?} runs it",
                        node_ids[node]
                    );
                }
            } else if runs_on != owners[r] {
                return Err(format!(
                    "room {r} runs on {runs_on:?} for player {i}, {:?} for its first",
                    owners[r]
                ));
            }
            tick_hz = joined["world"]["tick_hz"].as_u64().unwrap_or(20);
            members.push(Member {
                room: r,
                node,
                local: n == 1 || node_ids[node] == runs_on,
                socket,
            });
            progress.inc(1);
        }
    }
    progress.finish();
    let owners_per_node: Vec<usize> = node_ids
        .iter()
        .map(|id| owners.iter().filter(|o| *o == id).count())
        .collect();
    let local = members.iter().filter(|m| m.local).count();
    eprintln!(
        "  {} sockets: {local} on their room's node, {} on another; rooms run per node: {owners_per_node:?}",
        members.len(),
        members.len() - local
    );

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(plan.warmup);
    let until = measure_from + Duration::from_secs(plan.seconds);
    let mut placed = Vec::with_capacity(members.len());
    let mut tasks = Vec::with_capacity(members.len());
    for (k, m) in members.into_iter().enumerate() {
        placed.push((m.room, m.node, m.local));
        let player = Player {
            index: k,
            room: room_ids[m.room].clone(),
            until,
            input_rate: plan.input_rate,
            chat_rate: plan.chat_rate,
            counters: counters.clone(),
        };
        tasks.push(tokio::spawn(player.play(m.socket)));
    }
    let warm = bar(plan.warmup as usize, "warm-up");
    while Instant::now() < measure_from {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            (Instant::now() + Duration::from_secs(1)).min(measure_from),
        ))
        .await;
        warm.inc(1);
    }
    warm.finish();
    let cpu_before: Vec<_> = plan.node_pids.iter().map(|&p| cpu_split(p)).collect();
    let redis_before = plan.redis_pid.and_then(cpu_split);
    let states_before = counters.states.load(Ordering::Relaxed);
    let progress = bar(plan.seconds as usize, "playing");
    while Instant::now() < until {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            (Instant::now() + Duration::from_secs(1)).min(until),
        ))
        .await;
        progress.inc(1);
        progress.set_message(format!(
            "{} state frames",
            counters.states.load(Ordering::Relaxed) - states_before
        ));
    }
    progress.finish();
    let cpu_after: Vec<_> = plan.node_pids.iter().map(|&p| cpu_split(p)).collect();
    let redis_after = plan.redis_pid.and_then(cpu_split);
    let mut seen = Vec::with_capacity(tasks.len());
    for t in tasks {
        seen.push(t.await.unwrap_or_default());
    }
    let window = until - measure_from;

    let report = analyse(&placed, &seen, measure_from, until, rooms);
    let secs = window.as_secs_f64();
    let delivered = report.delivered as f64;
    let expected_per_sec = (placed.len() as u64 * tick_hz) as f64;
    let remote = Percentiles::of_values(&mut report.remote_ms.clone());
    let spread = Percentiles::of_values(&mut report.local_spread_ms.clone());
    eprintln!(
        "  state frames delivered in {secs:.1} s: {} of {} at {tick_hz} Hz ({} dropped: gaps in the ticks a socket saw)",
        crate::human::rate(delivered / secs),
        crate::human::rate(expected_per_sec),
        report.dropped
    );
    let ticked = Percentiles::of_values(&mut report.ticks_per_sec.clone());
    let slowest = report
        .ticks_per_sec
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "  rooms ticked (distinct ticks seen per second): median room {:.2}/s, slowest {slowest:.2}/s",
        ticked.p50
    );
    eprintln!(
        "  remote socket, owner's tick → arrival: p50 {:.3} ms p99 {:.3} ms max {:.3} ms ({} frames; {} ticks without a local reference; {} arrived before it)",
        remote.p50, remote.p99, remote.max, report.remote_ms.len(), report.no_reference, report.before_reference
    );
    eprintln!(
        "  local spread per tick (latest − earliest local arrival): p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        spread.p50, spread.p99, spread.max
    );
    let mut by_node = Vec::new();
    for (k, id) in node_ids.iter().enumerate() {
        let s =
            Percentiles::of_values(&mut report.remote_by_node.get(&k).cloned().unwrap_or_default());
        by_node.push(json!({"node": id, "remote_latency_ms": s.to_json()}));
    }
    let mut cpu = Vec::new();
    let mut total = (0.0, 0.0);
    for (k, pid) in plan.node_pids.iter().enumerate() {
        let split = cpu_before
            .get(k)
            .copied()
            .flatten()
            .zip(cpu_after.get(k).copied().flatten())
            .map(|(b, a)| (a.0 - b.0, a.1 - b.1));
        let id = node_ids.get(k).cloned().unwrap_or_default();
        if let Some((user, system)) = split {
            total = (total.0 + user, total.1 + system);
            eprintln!(
                "  {id} (pid {pid}): CPU {user:.2} s user + {system:.2} s system over {secs:.1} s = {:.0}% of a core; runs {} room(s)",
                (user + system) * 100.0 / secs,
                owners_per_node.get(k).copied().unwrap_or(0)
            );
        }
        cpu.push(json!({"node": id, "pid": pid,
            "user_secs": split.map(|s| s.0), "system_secs": split.map(|s| s.1),
            "rooms_run": owners_per_node.get(k)}));
    }
    if !plan.node_pids.is_empty() {
        eprintln!(
            "  all nodes: {:.2} s user + {:.2} s system = {:.0}% of a core",
            total.0,
            total.1,
            (total.0 + total.1) * 100.0 / secs
        );
    }
    let redis = redis_before
        .zip(redis_after)
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1));
    if let Some((user, system)) = redis {
        eprintln!(
            "  redis: CPU {user:.2} s user + {system:.2} s system = {:.0}% of a core",
            (user + system) * 100.0 / secs
        );
    }
    let chats: u64 = seen.iter().map(|s| s.chats).sum();
    let moved: u64 = seen.iter().map(|s| s.moved).sum();
    let closed = seen.iter().filter(|s| s.closed).count();
    if moved + closed as u64 > 0 {
        eprintln!(
            "  {moved} room_moved, {closed} sockets closed early: the figures include a failover"
        );
    }
    emit(
        common,
        json!({
            "scenario": "rooms", "rooms": rooms, "players": players,
            "placement": format!("{:?}", plan.placement).to_lowercase(),
            "nodes": node_ids, "rooms_run_per_node": owners_per_node,
            "sockets": placed.len(), "local_sockets": local, "remote_sockets": placed.len() - local,
            "seconds": secs, "warmup_secs": plan.warmup, "tick_hz": tick_hz,
            "input_rate": plan.input_rate, "chat_rate": plan.chat_rate,
            "states_delivered": report.delivered, "states_per_sec": delivered / secs,
            "states_expected_per_sec": expected_per_sec, "states_dropped": report.dropped,
            "room_ticks_per_sec": {"p50": ticked.p50, "min": slowest, "max": ticked.max},
            "per_socket_states_per_sec": Percentiles::of_values(&mut report.per_socket_rate.clone()).to_json(),
            "remote_latency_ms": remote.to_json(), "remote_samples": report.remote_ms.len(),
            "remote_by_node": by_node,
            "local_spread_ms": spread.to_json(),
            "ticks_without_reference": report.no_reference,
            "arrived_before_reference": report.before_reference,
            "chats_received": chats, "room_moved": moved, "closed_early": closed,
            "sent": counters.sent.load(Ordering::Relaxed), "errors": counters.errors.load(Ordering::Relaxed),
            "node_cpu": cpu, "nodes_cpu_user_secs": total.0, "nodes_cpu_system_secs": total.1,
            "redis_cpu": redis.map(|(u, s)| json!({"user_secs": u, "system_secs": s})),
        }),
    );
    Ok(())
}

/// Each server's node id (`/healthz`'s `node`), or its URL's index when it names none.
async fn node_ids(nodes: &Nodes) -> Vec<String> {
    let mut ids = Vec::with_capacity(nodes.len());
    for k in 0..nodes.len() {
        let health = nodes.api(k).call("GET", "/healthz", "", None).await;
        let id = health
            .ok()
            .and_then(|h| h["node"].as_str().map(str::to_string));
        ids.push(id.unwrap_or_else(|| format!("server{k}")));
    }
    ids
}

/// Send `join` and wait for `joined` (an `error` answer is the error).
pub(crate) async fn join(socket: &mut Socket, room: &str) -> Result<Value, String> {
    socket
        .send(Message::text(
            json!({"type": "join", "room": room}).to_string(),
        ))
        .await
        .map_err(|e| format!("join: {e}"))?;
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = socket.next().await {
            let Ok(Message::Text(t)) = msg else {
                if let Ok(Message::Close(f)) = msg {
                    return Err(format!("closed before joined: {f:?}"));
                }
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            match v["type"].as_str() {
                Some("joined") => return Ok(v),
                Some("error") => return Err(format!("join refused: {}", v["message"])),
                _ => {}
            }
        }
        Err("socket ended before joined".to_string())
    });
    wait.await
        .map_err(|_| "no joined within 10 s".to_string())
        .and_then(|r| r)
}

struct Player {
    index: usize,
    room: String,
    until: Instant,
    input_rate: f64,
    chat_rate: f64,
    counters: Arc<Counters>,
}

impl Player {
    /// Send inputs (a new direction each) and chats until `until`, reading everything.
    async fn play(self, socket: Socket) -> Seen {
        let (mut write, mut read) = socket.split();
        let until = tokio::time::Instant::from_std(self.until);
        let reader = {
            let (counters, room) = (self.counters.clone(), self.room.clone());
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let end = tokio::time::sleep_until(until);
                tokio::pin!(end);
                loop {
                    let msg = tokio::select! {
                        _ = &mut end => break,
                        msg = read.next() => msg,
                    };
                    let at = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            let text = t.as_str();
                            if let Some(tick) = state_tick(text, &room) {
                                seen.states.push((tick, at));
                                counters.states.fetch_add(1, Ordering::Relaxed);
                            } else if text.starts_with(r#"{"type":"chat""#) {
                                seen.chats += 1;
                            } else if text.starts_with(r#"{"type":"room_moved""#) {
                                seen.moved += 1;
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            seen.closed = true;
                            break;
                        }
                        Some(Ok(_)) => {}
                    }
                }
                seen
            })
        };
        let every = Duration::from_secs_f64(1.0 / self.input_rate.max(0.01));
        let mut input = tokio::time::interval(every);
        input.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let chat_every = if self.chat_rate > 0.0 {
            Duration::from_secs_f64(1.0 / self.chat_rate)
        } else {
            Duration::MAX
        };
        let i = self.index;
        let mut next_chat = Instant::now()
            .checked_add(Duration::from_millis((i as u64 * 97) % 5000))
            .unwrap_or(self.until);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = input.tick() => {}
            }
            seq += 1;
            // A new direction every input, so that every tick's state changes.
            let angle = seq as f64 * 0.7 + i as f64;
            let msg = json!({"type": "input", "seq": seq, "dx": angle.cos(), "dy": angle.sin()});
            if write.send(Message::text(msg.to_string())).await.is_err() {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            if Instant::now() >= next_chat {
                next_chat = next_chat.checked_add(chat_every).unwrap_or(self.until);
                let chat = json!({"type": "chat", "text": format!("p{i} s{seq}")});
                if write.send(Message::text(chat.to_string())).await.is_ok() {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let seen = reader.await.unwrap_or_default();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), write.send(Message::Close(None))).await;
        seen
    }
}

/// The tick of a `state` frame of room `room`, reading only its head:
/// `{"type":"state","room":"<id>","tick":<n>,...`. Anything else is `None`.
fn state_tick(text: &str, room: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"{"type":"state","room":""#)?;
    let rest = rest.strip_prefix(room)?;
    let rest = rest.strip_prefix(r#"","tick":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest.get(..digits)?.parse().ok()
}

struct Report {
    delivered: u64,
    dropped: u64,
    per_socket_rate: Vec<f64>,
    remote_ms: Vec<f64>,
    remote_by_node: HashMap<usize, Vec<f64>>,
    local_spread_ms: Vec<f64>,
    no_reference: u64,
    before_reference: u64,
    /// Per room: distinct ticks any socket saw in the window, per second (the rate the
    /// owner actually ticked; below `--tick-hz` when the node was starved of CPU).
    ticks_per_sec: Vec<f64>,
}

/// Frames that arrived in `[from, until)`: references, remote latencies, spreads, gaps.
fn analyse(
    placed: &[(usize, usize, bool)],
    seen: &[Seen],
    from: Instant,
    until: Instant,
    rooms: usize,
) -> Report {
    let in_window = |at: &Instant| *at >= from && *at < until;
    // Per room and tick: the earliest and latest local arrival.
    let mut local: Vec<HashMap<u64, (Instant, Instant)>> = vec![HashMap::new(); rooms];
    for (&(room, _, is_local), s) in placed.iter().zip(seen) {
        if !is_local {
            continue;
        }
        for &(tick, at) in s.states.iter().filter(|(_, at)| in_window(at)) {
            let e = local[room].entry(tick).or_insert((at, at));
            e.0 = e.0.min(at);
            e.1 = e.1.max(at);
        }
    }
    let secs = (until - from).as_secs_f64();
    let mut report = Report {
        delivered: 0,
        dropped: 0,
        per_socket_rate: Vec::with_capacity(seen.len()),
        remote_ms: Vec::new(),
        remote_by_node: HashMap::new(),
        local_spread_ms: local
            .iter()
            .flat_map(|ticks| ticks.values())
            .map(|(first, last)| (*last - *first).as_secs_f64() * 1000.0)
            .collect(),
        no_reference: 0,
        before_reference: 0,
        ticks_per_sec: Vec::with_capacity(rooms),
    };
    let mut ticks: Vec<std::collections::HashSet<u64>> = vec![Default::default(); rooms];
    for (&(room, _, _), s) in placed.iter().zip(seen) {
        ticks[room].extend(
            s.states
                .iter()
                .filter(|(_, at)| in_window(at))
                .map(|(t, _)| *t),
        );
    }
    report.ticks_per_sec = ticks.iter().map(|t| t.len() as f64 / secs).collect();
    for (&(room, node, is_local), s) in placed.iter().zip(seen) {
        let frames: Vec<_> = s.states.iter().filter(|(_, at)| in_window(at)).collect();
        report.delivered += frames.len() as u64;
        report.per_socket_rate.push(frames.len() as f64 / secs);
        report.dropped += frames
            .windows(2)
            .map(|w| w[1].0.saturating_sub(w[0].0).saturating_sub(1))
            .sum::<u64>();
        if is_local {
            continue;
        }
        for &&(tick, at) in &frames {
            let Some((reference, _)) = local[room].get(&tick) else {
                report.no_reference += 1;
                continue;
            };
            let ms = if at >= *reference {
                (at - *reference).as_secs_f64() * 1000.0
            } else {
                report.before_reference += 1;
                -((*reference - at).as_secs_f64() * 1000.0)
            };
            report.remote_ms.push(ms);
            report.remote_by_node.entry(node).or_default().push(ms);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_tick_reads_only_its_rooms_head() {
        let frame = r#"{"type":"state","room":"abc","tick":42,"players":[]}"#;
        assert_eq!(state_tick(frame, "abc"), Some(42));
        assert_eq!(state_tick(frame, "ab"), None);
        assert_eq!(state_tick(frame, "abcd"), None);
        assert_eq!(state_tick(r#"{"type":"chat","room":"abc"}"#, "abc"), None);
        assert_eq!(
            state_tick(r#"{"type":"state","room":"abc","tick":x}"#, "abc"),
            None
        );
    }

    #[test]
    fn owners_and_players_spread_over_the_nodes() {
        let plan = Plan {
            rooms: 20,
            players: 16,
            seconds: 1,
            warmup: 0,
            input_rate: 10.0,
            chat_rate: 0.0,
            placement: Placement::Spread,
            owner_node: None,
            node_pids: vec![],
            redis_pid: None,
        };
        assert_eq!(plan.node_of(4, 0, 3), 1); // the first joiner, on room 4's owner
        assert_eq!(plan.node_of(4, 2, 3), 0);
        let on_owner = (0..16).filter(|&i| plan.node_of(4, i, 3) == 1).count();
        assert_eq!(on_owner, 6);
        let all_on_owner = Plan {
            placement: Placement::Owner,
            ..plan
        };
        assert!((0..16).all(|i| all_on_owner.node_of(5, i, 3) == 2));
    }
}
