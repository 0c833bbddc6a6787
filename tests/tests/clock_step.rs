//! A node's wall clock stepped (issue 26, item 5): NTP, an operator or a VM restored from
//! a snapshot can move it either way at any moment. Being "current" (holding every
//! revocation) is measured on the monotonic clock, so a step back never lets a node cut
//! off from the database serve past `--cluster-stale-secs`, and a step forward never
//! makes it refuse requests or close sockets for nothing. The server runs under
//! libfaketime with a clock file the test rewrites (monotonic time is left alone, as a
//! real step leaves it); everything else is real.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arena_tests::*;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const STALE_SECS: u64 = 2;
const POLL_MS: u64 = 500;

struct SteppedServer {
    server: TestServer,
    clock: PathBuf,
    link: Proxy,
    _db: PgDatabase,
    _data: DataDir,
}

impl SteppedServer {
    async fn start() -> SteppedServer {
        assert!(
            std::path::Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: scripts/test installs Debian's faketime"
        );
        let db = PgDatabase::create();
        let link = Proxy::start("127.0.0.1:5432").await;
        let data = DataDir::new();
        let clock = data.0.join("clock-offset");
        std::fs::write(&clock, "+0").expect("clock file");
        let url = format!("postgres://postgres@{}/{}", link.addr, db.name);
        let (stale, poll) = (STALE_SECS.to_string(), POLL_MS.to_string());
        let clock_path = clock.to_string_lossy().into_owned();
        let server = TestServer::spawn_with(
            &data,
            &[
                "--database-url",
                &url,
                "--cluster-stale-secs",
                &stale,
                "--revocation-poll-ms",
                &poll,
                "--database-timeout-ms",
                "500",
            ],
            &[
                ("LD_PRELOAD", LIBFAKETIME),
                ("FAKETIME_TIMESTAMP_FILE", &clock_path),
                ("FAKETIME_NO_CACHE", "1"),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ],
        )
        .await;
        SteppedServer {
            server,
            clock,
            link,
            _db: db,
            _data: data,
        }
    }

    /// Step the server's wall clock to `offset` (libfaketime's form: "-120", "+120").
    fn step(&self, offset: &str) {
        std::fs::write(&self.clock, offset).expect("clock file");
    }
}

#[tokio::test]
async fn a_clock_stepped_back_never_lets_a_node_cut_off_serve_past_its_stale_time() {
    let s = SteppedServer::start().await;
    let p = s.server.new_player("back").await;
    let mut ws = s.server.ws_ok(p.token()).await;
    s.step("-120");
    s.link.cut();
    let cut = Instant::now();
    let bound = Duration::from_secs(STALE_SECS)
        + Duration::from_millis(POLL_MS) * 2
        + Duration::from_secs(2);
    match ws.ended_within(bound).await {
        Some(Ended::Closed(1001, _)) => {}
        other => panic!("the socket of a node cut off for {bound:?}: {other:?}"),
    }
    let (status, body) = s.server.get("/auth/me", Some(p.token())).await;
    assert_error(status, &body, 503, "unavailable");
    println!(
        "cut off, clock stepped back 120 s: socket closed 1001 after {:?}",
        cut.elapsed()
    );
}

#[tokio::test]
async fn a_clock_stepped_forward_refuses_nothing_and_closes_nothing() {
    let s = SteppedServer::start().await;
    let p = s.server.new_player("forward").await;
    let mut ws = s.server.ws_ok(p.token()).await;
    s.step("+120");
    // Past the stale time and several log reads: every answer is still 200.
    let watch = Duration::from_secs(STALE_SECS) + Duration::from_millis(POLL_MS * 2);
    let started = Instant::now();
    while started.elapsed() < watch {
        let (status, body) = s.server.get("/auth/me", Some(p.token())).await;
        assert_eq!(
            status,
            200,
            "{:?} after a step forward: {body}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ws.assert_alive().await;
}
