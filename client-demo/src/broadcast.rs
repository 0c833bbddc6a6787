//! `arena-client load broadcast`: rooms × players, each player sending inputs (20/s by
//! default) and chats, every socket reading everything. Per run (one per `--rooms`
//! value, the same users each time): frames delivered (`state` + `chat`), `state` frames
//! each socket received per second (the tick rate holds when that is the server's
//! `tick_hz`), chat latency, and with `--server-pid` the server's CPU over the measured
//! window, user and system apart: frames delivered per second of server CPU, µs of each
//! per frame, cores used.
//!
//! The sequence of a run: every socket opens and joins its room (at most `--concurrency`
//! at once) and starts playing as soon as it has joined; `--warmup` seconds after the
//! last join the window opens (server and client CPU are read, readers start counting),
//! `--seconds` later it closes, and the players leave.
//!
//! Chat latency: a chat's text is `<socket>:<µs since the run's start>`, and only its
//! sender times it, when the echo comes back (same process, same clock), so there is one
//! sample per chat sent and no clock to synchronise.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::api::Socket;
use crate::load::{bar, cpu_split, emit, make_users, open, Common, Percentiles};
use crate::nodes::Nodes;
use crate::rooms::join;

/// What the scenario was asked to do.
pub struct Plan {
    pub rooms: Vec<usize>,
    pub players: usize,
    pub users: Option<usize>,
    pub seconds: u64,
    pub warmup: u64,
    pub chat_rate: f64,
    pub input_rate: f64,
}

/// Where a run is. While `JOINING` the joined sockets only read; players send from
/// `WARMING` on; readers and writers count only while `MEASURING`.
const JOINING: u8 = 0;
const WARMING: u8 = 1;
const MEASURING: u8 = 2;
const OVER: u8 = 3;

/// How long one socket may take to open and join before it counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(nodes: Arc<Nodes>, plan: &Plan, common: &Common) -> Result<(), String> {
    let players = plan.players;
    let most = plan.rooms.iter().copied().max().unwrap_or(0);
    if most == 0 || plan.rooms.contains(&0) || players == 0 {
        return Err("broadcast needs at least one room and one player".into());
    }
    if !plan.input_rate.is_finite()
        || plan.input_rate <= 0.0
        || plan.chat_rate.is_nan()
        || plan.chat_rate < 0.0
    {
        return Err("--input-rate must be above 0 and --chat-rate at least 0".into());
    }
    let users = plan.users.unwrap_or(most * players).min(most * players);
    if users < players {
        return Err(format!(
            "--users {users} is fewer than --players {players}: a room would hold a user twice"
        ));
    }
    eprintln!(
        "broadcast: {:?} rooms × {players} players ({users} users), {} s measured after {} s warm-up; {} inputs/s and {} chats/s per player",
        plan.rooms, plan.seconds, plan.warmup, plan.input_rate, plan.chat_rate
    );
    let tokens = make_users(&nodes, users, common.accounts.as_deref()).await?;
    let mut room_ids = Vec::with_capacity(most);
    let progress = bar(most, "rooms");
    for r in 0..most {
        // Room r lives on node r mod N and its players connect there (a room runs where
        // its first player joins). Creators take turns: the server bounds rooms per user.
        let room = nodes
            .api(r)
            .call(
                "POST",
                "/lobby/rooms",
                &tokens[r % tokens.len()],
                Some(json!({"name": format!("load {r}"), "capacity": players.clamp(2, 64)})),
            )
            .await
            .map_err(|e| format!("creating room {r}: {e}"))?;
        let id = room["id"].as_str().ok_or("room created without an id")?;
        room_ids.push(id.to_string());
        progress.inc(1);
    }
    progress.finish();
    let mut failed = 0usize;
    for (n, &rooms) in plan.rooms.iter().enumerate() {
        if n > 0 {
            // Let the server finish with the last run's sockets before the next one.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let line = measure(&nodes, plan, common, &tokens, &room_ids[..rooms]).await;
        failed += line["join_errors"].as_u64().unwrap_or(0) as usize;
        emit(common, line);
    }
    if failed > 0 {
        return Err(format!(
            "{failed} sockets could not open or join: the figures above lack them"
        ));
    }
    Ok(())
}

/// One run: fill `room_ids` with players, warm up, measure, leave; the JSON line.
async fn measure(
    nodes: &Arc<Nodes>,
    plan: &Plan,
    common: &Common,
    tokens: &[String],
    room_ids: &[String],
) -> Value {
    let (rooms, players) = (room_ids.len(), plan.players);
    let sockets = rooms * players;
    eprintln!(
        "== {rooms} rooms × {players} players: {sockets} sockets, {} chats/s each",
        plan.chat_rate
    );
    // The phase twice: an atomic read for every frame, a channel to wait on.
    let phase = Arc::new(AtomicU8::new(JOINING));
    let (phase_tx, phase_rx) = watch::channel(JOINING);
    let set_phase = |p: u8| {
        phase.store(p, Ordering::Relaxed);
        let _ = phase_tx.send(p);
    };
    let epoch = Instant::now();
    let progress = bar(sockets, "joining");
    let joins = futures_util::stream::iter(0..sockets)
        .map(|k| {
            let room = k / players;
            let (token, id) = (&tokens[k % tokens.len()], &room_ids[room]);
            async move {
                let joining = async {
                    let (mut socket, _, _) = open(nodes, room, token).await?;
                    let joined = join(&mut socket, id).await?;
                    Ok::<_, String>((k, socket, joined["world"]["tick_hz"].as_u64()))
                };
                tokio::time::timeout(JOIN_TIMEOUT, joining)
                    .await
                    .unwrap_or_else(|_| Err(format!("not joined within {JOIN_TIMEOUT:?}")))
            }
        })
        .buffer_unordered(common.concurrency.clamp(1, 64));
    tokio::pin!(joins);
    let mut tasks = Vec::with_capacity(sockets);
    let (mut join_errors, mut first_error) = (0usize, None);
    let mut tick_hz = None;
    while let Some(r) = joins.next().await {
        match r {
            Ok((k, socket, hz)) => {
                tick_hz = tick_hz.or(hz);
                let player = Player {
                    index: k,
                    epoch,
                    input_every: Duration::from_secs_f64(1.0 / plan.input_rate),
                    chat_every: (plan.chat_rate > 0.0)
                        .then(|| Duration::from_secs_f64(1.0 / plan.chat_rate)),
                    phase: phase.clone(),
                    phase_rx: phase_rx.clone(),
                };
                tasks.push(tokio::spawn(player.play(socket)));
            }
            Err(e) => {
                join_errors += 1;
                first_error.get_or_insert(e);
            }
        }
        progress.inc(1);
    }
    progress.finish();
    if let Some(e) = &first_error {
        eprintln!("  {join_errors} sockets could not open or join; first error: {e}");
    }
    let join_secs = epoch.elapsed().as_secs_f64();
    // The server's `joined` names its tick rate (Arena); a server that does not is taken
    // to tick at the protocol's default.
    let tick_hz = tick_hz.unwrap_or(20);

    // Everybody starts playing at once, so that joining is not slowed by rooms already
    // in full play (and every run starts from the same point).
    set_phase(WARMING);
    let warm = bar(plan.warmup as usize, "warm-up");
    for _ in 0..plan.warmup {
        tokio::time::sleep(Duration::from_secs(1)).await;
        warm.inc(1);
    }
    warm.finish();
    let pid = common.server_pid;
    let me = std::process::id();
    let (server_before, client_before) = (pid.and_then(cpu_split), cpu_split(me));
    let machine_before = MachineCpu::now();
    let started = Instant::now();
    set_phase(MEASURING);
    let until = started + Duration::from_secs(plan.seconds);
    let playing = bar(plan.seconds as usize, "playing");
    while Instant::now() < until {
        let next = (Instant::now() + Duration::from_secs(1)).min(until);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        playing.inc(1);
    }
    phase.store(OVER, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    let (server_after, client_after) = (pid.and_then(cpu_split), cpu_split(me));
    let machine = MachineCpu::now()
        .zip(machine_before)
        .map(|(a, b)| a.cores_since(&b, window));
    playing.finish();
    set_phase(OVER);
    let mut seen = Vec::with_capacity(tasks.len());
    let mut panicked = 0usize;
    for t in tasks {
        match t.await {
            Ok(s) => seen.push(s),
            Err(_) => panicked += 1,
        }
    }

    let joined = seen.len();
    let states: u64 = seen.iter().map(|s| s.states).sum();
    let chats: u64 = seen.iter().map(|s| s.chats).sum();
    let delivered = states + chats;
    let inputs_sent: u64 = seen.iter().map(|s| s.inputs_sent).sum();
    let chats_sent: u64 = seen.iter().map(|s| s.chats_sent).sum();
    let mut rates: Vec<f64> = seen.iter().map(|s| s.states as f64 / window).collect();
    let state_rate = Spread::of(&mut rates);
    let mut latencies: Vec<Duration> = seen.iter().flat_map(|s| s.latencies.clone()).collect();
    let latency = Percentiles::of(&mut latencies);
    let mut close_codes = BTreeMap::<String, usize>::new();
    for code in seen.iter().filter_map(|s| s.closed_early) {
        *close_codes.entry(code.to_string()).or_default() += 1;
    }
    let closed_early: usize = close_codes.values().sum();
    let server_errors: u64 = seen.iter().map(|s| s.server_errors).sum();
    let first_server_error = seen.iter().find_map(|s| s.first_server_error.clone());
    let send_errors = seen.iter().filter(|s| s.send_failed).count();
    let delta = |b: Option<(f64, f64)>, a: Option<(f64, f64)>| {
        b.zip(a).map(|(b, a)| (a.0 - b.0, a.1 - b.1))
    };
    let server = delta(server_before, server_after);
    let client = delta(client_before, client_after);
    let per_frame = |secs: f64| (delivered > 0).then(|| secs * 1e6 / delivered as f64);
    let frames_per_cpu_sec = server
        .map(|(u, s)| u + s)
        .filter(|cpu| *cpu > 0.0)
        .map(|cpu| delivered as f64 / cpu);
    let handled_per_cpu_sec = server
        .map(|(u, s)| u + s)
        .filter(|cpu| *cpu > 0.0)
        .map(|cpu| (delivered + inputs_sent + chats_sent) as f64 / cpu);
    // Every chat goes to every member of its room, the sender included.
    let chats_expected = chats_sent * players as u64;

    eprintln!(
        "  {joined} of {sockets} sockets played (joining took {join_secs:.1} s); in {window:.1} s: {delivered} frames delivered ({states} state, {chats} chat) = {} frames/s",
        crate::human::number(delivered as f64 / window)
    );
    eprintln!(
        "  state frames per socket per second: mean {:.2}, p50 {:.2}, 1st percentile {:.2}, min {:.2} (ticks at {tick_hz} Hz)",
        state_rate.mean, state_rate.p50, state_rate.p01, state_rate.min
    );
    eprintln!(
        "  sent {} inputs/s and {} chats/s; chats received {chats} of {chats_expected} sent × players; chat latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        crate::human::number(inputs_sent as f64 / window),
        crate::human::number(chats_sent as f64 / window),
        latency.p50,
        latency.p99,
        latency.max
    );
    if let Some((u, s)) = server {
        eprintln!(
            "  server CPU {u:.2} s user + {s:.2} s system = {:.2} cores; {} frames per CPU second; {:.2} µs user + {:.2} µs system per frame",
            (u + s) / window,
            crate::human::number(frames_per_cpu_sec.unwrap_or(0.0)),
            per_frame(u).unwrap_or(0.0),
            per_frame(s).unwrap_or(0.0)
        );
    }
    if let Some((u, s)) = client {
        eprintln!(
            "  this load client: {u:.2} s user + {s:.2} s system = {:.2} cores",
            (u + s) / window
        );
    }
    // What else ran on the machine meanwhile: other processes, and kernel work charged to
    // no process (softirq, where much of loopback TCP runs).
    let others = machine.as_ref().map(|m| {
        let counted = server.map_or(0.0, |(u, s)| u + s) + client.map_or(0.0, |(u, s)| u + s);
        (m.busy - counted / window).max(0.0)
    });
    if let (Some(m), Some(o)) = (&machine, others) {
        eprintln!(
            "  the machine: {:.2} cores busy of {} ({o:.2} neither server nor load client; softirq {:.2}, steal {:.2}), {:.2} idle",
            m.busy, m.cpus, m.softirq, m.steal, m.idle
        );
    }
    if closed_early + server_errors as usize + send_errors + panicked > 0 {
        eprintln!(
            "  {closed_early} sockets closed early {close_codes:?}, {server_errors} error frames (first: {}), {send_errors} failed sends, {panicked} player tasks failed",
            first_server_error.as_deref().unwrap_or("none")
        );
    }
    let mut line = json!({
        "scenario": "broadcast", "rooms": rooms, "players": players, "users": tokens.len(),
        "sockets": sockets, "joined": joined, "join_errors": join_errors + panicked,
        "first_error": first_error, "join_secs": join_secs,
        "tick_hz": tick_hz, "chat_rate": plan.chat_rate, "input_rate": plan.input_rate,
        "seconds": window, "warmup_secs": plan.warmup,
        "delivered": delivered, "delivered_per_sec": delivered as f64 / window,
        "states": states, "chats": chats,
        "states_per_socket_per_sec": state_rate.to_json(),
        "inputs_sent": inputs_sent, "chats_sent": chats_sent,
        "inputs_per_sec": inputs_sent as f64 / window, "chats_sent_per_sec": chats_sent as f64 / window,
        "chats_expected": chats_expected,
        "chat_latency_ms": latency.to_json(), "chat_samples": latencies.len(),
    });
    // In two parts: one json! this long passes the macro's recursion limit.
    let cpu = json!({
        "server_cpu_secs": server.map(|(u, s)| u + s),
        "server_cpu_user_secs": server.map(|(u, _)| u),
        "server_cpu_system_secs": server.map(|(_, s)| s),
        "server_cores": server.map(|(u, s)| (u + s) / window),
        "frames_per_cpu_sec": frames_per_cpu_sec,
        "handled_per_cpu_sec": handled_per_cpu_sec,
        "user_us_per_frame": server.and_then(|(u, _)| per_frame(u)),
        "system_us_per_frame": server.and_then(|(_, s)| per_frame(s)),
        "client_cpu_user_secs": client.map(|(u, _)| u),
        "client_cpu_system_secs": client.map(|(_, s)| s),
        "client_cores": client.map(|(u, s)| (u + s) / window),
        "machine_cores": machine.as_ref().map(MachineCpu::to_json),
        "other_cores": others,
        "closed_early": closed_early, "close_codes": close_codes,
        "server_errors": server_errors, "first_server_error": first_server_error,
        "send_errors": send_errors,
    });
    if let (Some(line), Value::Object(more)) = (line.as_object_mut(), cpu) {
        line.extend(more);
    }
    line
}

/// The machine's CPU time by kind, from the first line of /proc/stat (Linux), in jiffies;
/// after [`MachineCpu::cores_since`], in cores (seconds per second).
struct MachineCpu {
    busy: f64,
    user: f64,
    system: f64,
    softirq: f64,
    steal: f64,
    idle: f64,
    cpus: usize,
}

impl MachineCpu {
    fn now() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let f: Vec<f64> = lines
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
        // user nice system idle iowait irq softirq steal
        let (user, system, softirq) = (at(0) + at(1), at(2), at(5) + at(6));
        Some(MachineCpu {
            busy: user + system + softirq,
            user,
            system,
            softirq,
            steal: at(7),
            idle: at(3) + at(4),
            cpus: lines.filter(|l| l.starts_with("cpu")).count(),
        })
    }

    fn cores_since(&self, before: &MachineCpu, secs: f64) -> MachineCpu {
        let c = |a: f64, b: f64| (a - b) / 100.0 / secs; // USER_HZ is 100 on Linux
        MachineCpu {
            busy: c(self.busy, before.busy),
            user: c(self.user, before.user),
            system: c(self.system, before.system),
            softirq: c(self.softirq, before.softirq),
            steal: c(self.steal, before.steal),
            idle: c(self.idle, before.idle),
            cpus: self.cpus,
        }
    }

    fn to_json(&self) -> Value {
        json!({"cpus": self.cpus, "busy": self.busy, "user": self.user, "system": self.system,
            "softirq": self.softirq, "steal": self.steal, "idle": self.idle})
    }
}

/// The spread of per-socket rates, with the low tail (the sockets left behind).
struct Spread {
    mean: f64,
    min: f64,
    p01: f64,
    p50: f64,
    max: f64,
}

impl Spread {
    fn of(values: &mut [f64]) -> Spread {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if values.is_empty() {
                0.0
            } else {
                values[((values.len() as f64 - 1.0) * q).round() as usize]
            }
        };
        let mean = if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        };
        Spread {
            mean,
            min: at(0.0),
            p01: at(0.01),
            p50: at(0.5),
            max: at(1.0),
        }
    }

    fn to_json(&self) -> Value {
        json!({"mean": self.mean, "min": self.min, "p01": self.p01, "p50": self.p50, "max": self.max})
    }
}

/// One socket's player.
struct Player {
    index: usize,
    /// The run's start: chat texts carry µs since it.
    epoch: Instant,
    input_every: Duration,
    chat_every: Option<Duration>,
    phase: Arc<AtomicU8>,
    phase_rx: watch::Receiver<u8>,
}

/// What one socket saw and sent while measuring.
#[derive(Default)]
struct Seen {
    states: u64,
    chats: u64,
    latencies: Vec<Duration>,
    inputs_sent: u64,
    chats_sent: u64,
    /// The close code (1006: no close frame) when the socket ended before the run did.
    closed_early: Option<u16>,
    server_errors: u64,
    first_server_error: Option<String>,
    send_failed: bool,
}

impl Player {
    /// Send inputs and chats until the run is over, reading everything meanwhile.
    async fn play(self, socket: Socket) -> Seen {
        let (mut write, read) = socket.split();
        let reader = tokio::spawn(read_all(
            read,
            self.index,
            self.epoch,
            self.phase.clone(),
            self.phase_rx.clone(),
        ));
        let measuring = || self.phase.load(Ordering::Relaxed) == MEASURING;
        let (mut inputs_sent, mut chats_sent, mut send_failed) = (0u64, 0u64, false);
        let mut phase_rx = self.phase_rx.clone();
        let _ = phase_rx.wait_for(|p| *p >= WARMING).await;
        let stop = phase_rx.wait_for(|p| *p >= OVER);
        tokio::pin!(stop);
        let mut input = tokio::time::interval(self.input_every);
        input.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Chats start at a different moment for each player, then keep their period.
        let mut chat = self.chat_every.map(|every| {
            let offset = every.mul_f64((self.index as f64 * 0.618_034) % 1.0);
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut seq = 0u64;
        loop {
            let is_chat = tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = input.tick() => false,
                _ = async { chat.as_mut()?.tick().await; Some(()) }, if chat.is_some() => true,
            };
            let msg = if is_chat {
                let text = format!("{}:{}", self.index, self.epoch.elapsed().as_micros());
                json!({"type": "chat", "text": text})
            } else {
                seq += 1;
                // A new direction every input, so that every tick's state changes.
                let angle = seq as f64 * 0.7 + self.index as f64;
                json!({"type": "input", "seq": seq, "dx": angle.cos(), "dy": angle.sin()})
            };
            if write.send(Message::text(msg.to_string())).await.is_err() {
                send_failed = true;
                break;
            }
            if measuring() {
                if is_chat {
                    chats_sent += 1;
                } else {
                    inputs_sent += 1;
                }
            }
        }
        let (mut seen, read) = reader.await.unwrap_or_default();
        seen.inputs_sent = inputs_sent;
        seen.chats_sent = chats_sent;
        seen.send_failed = send_failed && seen.closed_early.is_none();
        // Leave: a close frame, then up to 2 s for the server's answer.
        if let Some(mut read) = read {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = write.send(Message::Close(None)).await;
                while let Some(Ok(msg)) = read.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        seen
    }
}

type ReadHalf = futures_util::stream::SplitStream<Socket>;

/// Read a socket until the run is over (its read half is handed back then, to see the
/// close through) or the socket ends (then `closed_early`).
async fn read_all(
    mut read: ReadHalf,
    index: usize,
    epoch: Instant,
    phase: Arc<AtomicU8>,
    mut phase_rx: watch::Receiver<u8>,
) -> (Seen, Option<ReadHalf>) {
    let mut seen = Seen::default();
    let stop = phase_rx.wait_for(|p| *p >= OVER);
    tokio::pin!(stop);
    loop {
        let msg = tokio::select! {
            biased;
            _ = &mut stop => return (seen, Some(read)),
            msg = read.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                if phase.load(Ordering::Relaxed) != OVER {
                    seen.closed_early = Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                return (seen, None);
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                if phase.load(Ordering::Relaxed) != OVER {
                    seen.closed_early = Some(1006);
                }
                return (seen, None);
            }
        };
        let text = text.as_str();
        let measuring = phase.load(Ordering::Relaxed) == MEASURING;
        if text.starts_with(r#"{"type":"state""#) {
            seen.states += measuring as u64;
        } else if text.starts_with(r#"{"type":"chat""#) {
            if measuring {
                seen.chats += 1;
                if let Some(sent_us) = own_chat(text, index) {
                    let sent = Duration::from_micros(sent_us);
                    seen.latencies.push(epoch.elapsed().saturating_sub(sent));
                }
            }
        } else if text.starts_with(r#"{"type":"error""#) {
            seen.server_errors += 1;
            if seen.first_server_error.is_none() {
                seen.first_server_error = Some(text.chars().take(200).collect());
            }
        }
    }
}

/// When a chat frame's text is `<index>:<µs>` (this socket's own), the µs; read without
/// parsing the frame (there are a hundred thousand a second at the largest runs).
fn own_chat(frame: &str, index: usize) -> Option<u64> {
    const KEY: &str = r#""text":""#;
    let rest = &frame[frame.find(KEY)? + KEY.len()..];
    let text = &rest[..rest.find('"')?];
    let (who, at) = text.split_once(':')?;
    (who.parse::<usize>().ok()? == index)
        .then(|| at.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_chat_reads_the_senders_stamp_only() {
        let arena = r#"{"type":"chat","room":"r1","from":{"id":"u_1","username":"a"},"text":"17:123456","ts":1}"#;
        assert_eq!(own_chat(arena, 17), Some(123456));
        assert_eq!(own_chat(arena, 1), None);
        assert_eq!(
            own_chat(r#"{"type":"chat","text":"hello","ts":1}"#, 0),
            None
        );
        assert_eq!(own_chat(r#"{"type":"chat","text":"3:x"}"#, 3), None);
        assert_eq!(own_chat(r#"{"type":"chat","text":"3:9"#, 3), None);
    }

    #[test]
    fn the_spread_has_its_low_tail() {
        let mut v: Vec<f64> = (0..100)
            .map(|i| 20.0 - (i == 0) as u8 as f64 * 5.0)
            .collect();
        let s = Spread::of(&mut v);
        assert_eq!(s.min, 15.0);
        assert_eq!(s.p50, 20.0);
        assert!((s.mean - 19.95).abs() < 1e-9);
        let empty = Spread::of(&mut []);
        assert_eq!(empty.mean, 0.0);
    }
}
