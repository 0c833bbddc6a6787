//! A flood of `/healthz` must not disconnect the players (issue 26, item 4). A cluster
//! node's database is 25 ms away (a delaying proxy); 2,000 keep-alive connections from
//! two addresses loop `GET /healthz` for 10 s. Health must be answered from memory and the
//! revocation-log reader must have a link of its own: otherwise every health check is a
//! query on the pool the reader waits in, the reader times out, the node declares itself
//! not current, closes every socket with 1001 and answers 503 to its load balancer.
//! The same with logins for unknown users (no account needed either): each is a query on
//! the shared pool, which they may exhaust for each other, but never for the reader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arena_tests::backplane::Deployment;
use arena_tests::delay_proxy::DelayProxy;
use arena_tests::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// The database's distance, each way.
const DB_DELAY: Duration = Duration::from_millis(25);
/// Keep-alive connections looping their request, half from each source address.
const FLOODERS: usize = 2_000;
const SOURCES: [&str; 2] = ["127.0.0.2", "127.0.0.3"];
const FLOOD_FOR: Duration = Duration::from_secs(10);
/// How long one check of the player or of the node's health may take under the flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Counts {
    /// Requests sent (each a new number, for a new username).
    sent: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
    broken: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthz_flood_neither_disconnects_players_nor_fails_the_node() {
    let _one_flood_at_a_time = ONE_FLOOD.lock().unwrap_or_else(|p| p.into_inner());
    let (counts, watched) = flood_while_watching(Flood::Health).await;
    watched.assert_unharmed(&counts);
    assert_eq!(
        counts.unavailable.load(Ordering::Relaxed),
        0,
        "the flood was answered 503: {}",
        tally(&counts)
    );
}

/// Logins for accounts that do not exist need no account either, and each one costs a
/// query on the shared pool (then a hash): they may make each other wait, never the log
/// reader, nor the health probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_for_unknown_users_neither_disconnects_players_nor_fails_the_node() {
    let _one_flood_at_a_time = ONE_FLOOD.lock().unwrap_or_else(|p| p.into_inner());
    let (counts, watched) = flood_while_watching(Flood::Logins).await;
    watched.assert_unharmed(&counts);
}

/// The two floods load the same two cores: one at a time.
static ONE_FLOOD: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Clone, Copy)]
enum Flood {
    /// `GET /healthz`.
    Health,
    /// `POST /auth/login` for a new unknown username each time.
    Logins,
}

impl Flood {
    fn request(self, n: u64) -> Vec<u8> {
        match self {
            Flood::Health => b"GET /healthz HTTP/1.1\r\nHost: flood\r\n\r\n".to_vec(),
            Flood::Logins => {
                let body = format!(r#"{{"username":"nobody{n}","password":"not-a-password"}}"#);
                format!(
                    "POST /auth/login HTTP/1.1\r\nHost: flood\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        }
    }
}

/// What the watchers saw during the flood.
struct Watched {
    pings: usize,
    player_failure: Option<String>,
    health_failures: Vec<String>,
    slowest_health: Duration,
}

impl Watched {
    /// The player's socket answered throughout, so did the node's health (200), and the
    /// flood did run.
    fn assert_unharmed(&self, counts: &Counts) {
        eprintln!(
            "{} pings; flood answers: {}; health failures: {:?} (slowest answer {:.1?}); \
             player: {:?}",
            self.pings,
            tally(counts),
            self.health_failures,
            self.slowest_health,
            self.player_failure
        );
        assert_eq!(
            (
                &self.player_failure,
                &self.health_failures[..self.health_failures.len().min(3)]
            ),
            (&None, &[][..]),
            "under the flood (of {} failed health checks, the first ones shown; flood answers: {})",
            self.health_failures.len(),
            tally(counts)
        );
        // Logins wait for the shared pool (that is their flood's effect): half as many
        // answers as connections is enough to say the flood ran.
        assert!(
            counts.answered() > FLOODERS as u64 / 2,
            "the flood hardly ran: {}",
            tally(counts)
        );
    }
}

/// Start a cluster node whose database is 25 ms away, flood it with `kind` from 2,000
/// connections while watching a player's socket and the node's health; what was seen.
async fn flood_while_watching(kind: Flood) -> (Arc<Counts>, Watched) {
    let dep = Deployment::new().await;
    // The node starts on a near database (its migrations are many round trips), which
    // is then 25 ms away.
    let to_db = DelayProxy::start("127.0.0.1:5432", Duration::ZERO);
    let database_url = format!("postgres://postgres@{}/{}", to_db.addr, dep.db.name);
    let data = DataDir::new();
    let node = dep
        .node_via(&data, "node-a", &database_url, &dep.redis.url(), &[], &[])
        .await;
    let player = node.new_player("flood").await;
    let mut socket = node.ws_ok(player.token()).await;
    to_db.set_delay(DB_DELAY);

    // The monitor's connection is open before the flood, as a load balancer's would be:
    // a new connection queues behind the flood's 2,000 in the kernel's accept queue.
    let monitor = reqwest::Client::new();
    let health_url = format!("{}/healthz", node.base);
    assert_eq!(
        monitor
            .get(&health_url)
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );

    let counts = Arc::new(Counts::default());
    let until = Instant::now() + FLOOD_FOR;
    let connecting = Arc::new(tokio::sync::Semaphore::new(200));
    // The flood runs on a runtime of its own: it must load the server, not starve the
    // test's checks of the player and of the node's health.
    let flood_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the flood's runtime");
    let flood: Vec<_> = (0..FLOODERS)
        .map(|i| {
            let (addr, counts, connecting) =
                (node.addr.clone(), counts.clone(), connecting.clone());
            flood_runtime.spawn(flooder(
                kind,
                addr,
                SOURCES[i % SOURCES.len()],
                until,
                counts,
                connecting,
            ))
        })
        .collect();

    // Throughout the flood: the node's health answers 200, and the player's socket
    // answers its pings. Each failure is recorded with its time, to show how it fails.
    let started = Instant::now();
    let health = tokio::spawn(async move {
        let (mut failures, mut slowest) = (Vec::new(), Duration::ZERO);
        while Instant::now() < until {
            let asked = Instant::now();
            let answer = tokio::time::timeout(ANSWER_WITHIN, monitor.get(&health_url).send()).await;
            slowest = slowest.max(asked.elapsed());
            match answer {
                Ok(Ok(resp)) if resp.status() == 200 => {}
                Ok(Ok(resp)) => failures.push(format!(
                    "{:.1?}: /healthz answered {} {}",
                    started.elapsed(),
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                )),
                Ok(Err(e)) => {
                    failures.push(format!("{:.1?}: /healthz failed: {e}", started.elapsed()))
                }
                Err(_) => failures.push(format!(
                    "{:.1?}: /healthz not answered within {ANSWER_WITHIN:?}",
                    started.elapsed()
                )),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (failures, slowest)
    });
    let mut player_failure = None;
    let mut pings = 0;
    while Instant::now() < until && player_failure.is_none() {
        player_failure = alive_within(&mut socket, ANSWER_WITHIN)
            .await
            .err()
            .map(|why| format!("{:.1?}: {why}", started.elapsed()));
        pings += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (health_failures, slowest_health) = health.await.expect("health monitor");
    for task in flood {
        task.await.expect("flooder");
    }
    flood_runtime.shutdown_background();
    let watched = Watched {
        pings,
        player_failure,
        health_failures,
        slowest_health,
    };
    if watched.player_failure.is_none() {
        alive_within(&mut socket, ANSWER_WITHIN)
            .await
            .expect("the player's socket after the flood");
        assert_eq!(node.get("/auth/me", Some(player.token())).await.0, 200);
    }
    (counts, watched)
}

impl Counts {
    fn answered(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.unavailable.load(Ordering::Relaxed)
            + self.other.load(Ordering::Relaxed)
    }
}

fn tally(c: &Counts) -> String {
    format!(
        "200: {}, 503: {}, other: {}, broken connections: {}",
        c.ok.load(Ordering::Relaxed),
        c.unavailable.load(Ordering::Relaxed),
        c.other.load(Ordering::Relaxed),
        c.broken.load(Ordering::Relaxed)
    )
}

/// A ping answered by its pong within `limit`, or how it was not.
async fn alive_within(socket: &mut Ws, limit: Duration) -> Result<(), String> {
    let id = rand_id();
    socket.send_json(json!({"type": "ping", "id": id})).await;
    let pong = tokio::time::timeout(limit, async {
        loop {
            match socket.recv_json().await {
                Some(v) if v["type"] == "pong" && v["id"] == id => return Ok(()),
                Some(_) => continue,
                None => return Err(socket.close_code_after_end()),
            }
        }
    })
    .await;
    match pong {
        Ok(Ok(())) => Ok(()),
        Ok(Err(code)) => Err(format!(
            "the player's socket was closed (close code {code:?})"
        )),
        Err(_) => Err(format!("no pong within {limit:?}")),
    }
}

fn rand_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One keep-alive connection from `source` looping `kind`'s request until `until`
/// (connecting again if the server closes it).
async fn flooder(
    kind: Flood,
    addr: String,
    source: &'static str,
    until: Instant,
    counts: Arc<Counts>,
    connecting: Arc<tokio::sync::Semaphore>,
) {
    let target: std::net::SocketAddr = addr.parse().expect("server address");
    while Instant::now() < until {
        let stream = {
            let connected = tokio::time::timeout_at(until, async {
                let _turn = connecting.acquire().await.expect("semaphore");
                connect_from(source, target).await
            });
            match connected.await {
                Ok(stream) => stream,
                Err(_) => return, // the flood is over
            }
        };
        let Some(mut stream) = stream else {
            counts.broken.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut buf = Vec::with_capacity(1024);
        while Instant::now() < until {
            let request = kind.request(counts.sent.fetch_add(1, Ordering::Relaxed));
            let answer = tokio::time::timeout_at(until, async {
                stream.write_all(&request).await.ok()?;
                read_status(&mut stream, &mut buf).await
            })
            .await;
            match answer {
                Err(_) => return, // the flood is over
                Ok(None) => {
                    counts.broken.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Some(200)) => counts.ok.fetch_add(1, Ordering::Relaxed),
                Ok(Some(503)) => counts.unavailable.fetch_add(1, Ordering::Relaxed),
                Ok(Some(_)) => counts.other.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

async fn connect_from(source: &str, target: std::net::SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket
        .bind(std::net::SocketAddr::new(source.parse().ok()?, 0))
        .ok()?;
    socket.connect(target).await.ok()
}

/// Read one HTTP/1.1 response (headers, then a `content-length` body); its status.
async fn read_status(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(status)
}
