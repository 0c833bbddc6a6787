//! Ready for the open internet: nothing an unauthenticated client sends can exhaust the
//! HTTP server (connection slots, metric series), every error it answers has the
//! protocol's JSON body, JSON routes refuse other content types, and a configuration
//! that would misbehave later stops the server at start.
//!
//! The servers here are configured through `ARENA_*` variables, so the same test runs
//! against a build that predates a flag (which then ignores it) and shows the old
//! behaviour failing.

use std::time::{Duration, Instant};

use arena_tests::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a normal client may wait for `/healthz` while attackers hold every slot.
const SERVED_WITHIN: Duration = Duration::from_secs(4);

/// The tight configuration of the connection tests: 20 slots, short deadlines.
const TIGHT: &[(&str, &str)] = &[
    ("ARENA_AUTH_RATE_LIMIT", "0"),
    ("ARENA_MAX_CONNECTIONS", "20"),
    ("ARENA_HEADER_TIMEOUT_MS", "500"),
    ("ARENA_BODY_TIMEOUT_MS", "1000"),
    ("ARENA_IDLE_TIMEOUT_MS", "1000"),
];
const SLOTS: usize = 20;

/// The tight configuration with some variables set otherwise (or added).
fn tight_with<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<_> = TIGHT
        .iter()
        .copied()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .collect();
    env.extend_from_slice(overrides);
    env
}

async fn start_env(data: &DataDir, env: &[(&str, &str)]) -> TestServer {
    TestServer::start_env(data, env).await
}

/// `GET /healthz` on a fresh connection; how long it took. Panics if it is not served
/// within `limit`.
async fn healthz_within(addr: &str, limit: Duration) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(limit)
        .build()
        .unwrap();
    let started = Instant::now();
    let resp = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz not served within {limit:?}: {e}"));
    assert_eq!(resp.status().as_u16(), 200);
    started.elapsed()
}

/// Read until the peer closes (or resets); everything read. Panics past `limit`.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server kept the connection open past its deadline");
    all
}

/// Open `n` TCP connections and send `first` on each (possibly nothing).
async fn open(addr: &str, n: usize, first: &[u8]) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if !first.is_empty() {
            s.write_all(first).await.unwrap();
        }
        conns.push(s);
    }
    conns
}

// ---- 1. Metric labels ----

/// Lines of one histogram's `_count` series in a Prometheus text page.
fn latency_series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("arena_http_request_duration_seconds_count{"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_come_from_a_fixed_set() {
    // HARDENING_METRIC_REQUESTS raises the count for a measurement run.
    let total: usize = std::env::var("HARDENING_METRIC_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let data = DataDir::new();
    let server = start_env(&data, &[("ARENA_AUTH_RATE_LIMIT", "0")]).await;
    let workers = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (http, base) = (server.http.clone(), server.base.clone());
        tasks.spawn(async move {
            for i in (w..total).step_by(workers) {
                // A fresh method token and a fresh path every time; a third of them on
                // a real route, so the route label alone cannot hide the method.
                let method = reqwest::Method::from_bytes(format!("ZZ{i}Q").as_bytes()).unwrap();
                let path = match i % 3 {
                    0 => "/healthz".to_string(),
                    1 => format!("/no/such/{i}"),
                    _ => format!("/lobby/rooms/{i}x"),
                };
                let resp = http.request(method, format!("{base}{path}")).send().await;
                assert!(resp.is_ok(), "request {i} failed: {resp:?}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // A few ordinary requests too, so the fixed labels are in use.
    assert_eq!(server.get("/healthz", None).await.0, 200);
    assert_eq!(server.get("/index.html", None).await.0, 200);
    assert_eq!(server.get("/missing.js", None).await.0, 404);

    let text = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    let text = text.text().await.unwrap();
    let series = latency_series(&text);
    eprintln!(
        "{} latency series after {total} requests with random methods and paths",
        series.len()
    );
    assert!(
        series.len() <= 40,
        "{} series after {total} requests:\n{}",
        series.len(),
        series
            .iter()
            .take(20)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for line in &series {
        assert!(
            !line.contains("ZZ"),
            "a client's method became a label: {line}"
        );
        assert!(
            !line.contains("/no/such"),
            "a client's path became a label: {line}"
        );
    }
    let has = |needle: &str| {
        assert!(
            series.iter().any(|l| l.contains(needle)),
            "no series with {needle}:\n{}",
            series.join("\n")
        )
    };
    has(r#"method="other",route="/healthz""#);
    has(r#"method="GET",route="/healthz",status="200""#);
    has(r#"route="unmatched",status="404""#);
    has(r#"method="GET",route="static",status="200""#);
}

// ---- 2. Connection slots ----

/// Hold every connection slot with connections that send `first_bytes` and then
/// nothing; a normal client must still be served, and each held connection closed.
async fn slots_held_by(server: &TestServer, first_bytes: &[u8], what: &str) {
    let held = open(&server.addr, SLOTS, first_bytes).await;
    served_while_held(server, held, what).await;
}

/// With `held` taking every slot, a normal client is served, and each held connection
/// is closed at its deadline.
async fn served_while_held(server: &TestServer, mut held: Vec<TcpStream>, what: &str) {
    let took = healthz_within(&server.addr, SERVED_WITHIN).await;
    eprintln!("/healthz served in {took:?} with {} {what}", held.len());
    for s in &mut held {
        read_to_close(s, DEADLINE).await;
    }
}

#[tokio::test]
async fn silent_connections_are_closed_at_the_header_deadline() {
    let data = DataDir::new();
    let server = start_env(&data, TIGHT).await;
    slots_held_by(&server, b"", "silent connections").await;
}

#[tokio::test]
async fn a_bare_http2_preface_is_closed_at_the_header_deadline() {
    let data = DataDir::new();
    let server = start_env(&data, TIGHT).await;
    slots_held_by(
        &server,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "bare HTTP/2 prefaces",
    )
    .await;
    // A partial preface (version detection never finishes) is cut off alike.
    let mut partial = open(&server.addr, 1, b"PRI * HTTP/2").await.remove(0);
    let started = Instant::now();
    read_to_close(&mut partial, DEADLINE).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Valid headers announcing 1000 bytes, then a byte every 200 ms: returns what the
/// server answered before it closed the connection.
async fn trickle_body(addr: String) -> Vec<u8> {
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let gave_up = tokio::time::timeout(DEADLINE, async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                n = s.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    // The server may already have closed; the read above sees it.
                    let _ = s.write_all(b" ").await;
                }
            }
        }
    })
    .await
    .is_err();
    assert!(
        !gave_up,
        "a trickled body held its connection past the deadline"
    );
    answer
}

#[tokio::test]
async fn slow_bodies_are_cut_at_the_body_deadline() {
    let data = DataDir::new();
    let server = start_env(&data, TIGHT).await;
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..SLOTS {
        tricklers.spawn(trickle_body(server.addr.clone()));
    }
    // Let every trickler be accepted first, so they hold every slot.
    let mut probe = open(&server.addr, 1, b"").await.remove(0);
    let started = Instant::now();
    let took = healthz_within(&server.addr, SERVED_WITHIN).await;
    eprintln!("/healthz served in {took:?} with {SLOTS} trickled bodies");
    let mut answered_408 = 0;
    while let Some(answer) = tricklers.join_next().await {
        let answer = String::from_utf8_lossy(&answer.unwrap()).to_string();
        if answer.starts_with("HTTP/1.1 408") {
            assert!(
                answer.contains(r#""code":"request_timeout""#),
                "408 without the JSON error body: {answer}"
            );
            answered_408 += 1;
        }
    }
    assert_eq!(answered_408, SLOTS, "every trickler gets a 408");
    assert!(started.elapsed() < Duration::from_secs(6));
    read_to_close(&mut probe, DEADLINE).await;
}

#[tokio::test]
async fn idle_http1_keep_alive_connections_are_closed_at_the_idle_deadline() {
    // A long header timeout: what closes these must be the idle timeout.
    let data = DataDir::new();
    let env = tight_with(&[
        ("ARENA_HEADER_TIMEOUT_MS", "8000"),
        ("ARENA_IDLE_TIMEOUT_MS", "500"),
    ]);
    let server = start_env(&data, &env).await;
    let mut conns = open(
        &server.addr,
        SLOTS,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    for s in &mut conns {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let took = healthz_within(&server.addr, SERVED_WITHIN).await;
    eprintln!("/healthz served in {took:?} with {SLOTS} idle keep-alive connections");
    for s in &mut conns {
        read_to_close(s, DEADLINE).await;
    }
}

/// An HTTP/2 frame header plus payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Speak just enough HTTP/2 by hand (prior knowledge) to complete one `GET /healthz`.
async fn h2_one_request(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS, none changed
                                          // HPACK: :method GET (static 2), :scheme http (static 6), :path literal (name 4).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    out.extend(h2_frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS|END_STREAM
    s.write_all(&out).await.unwrap();
    // Read frames until the response's HEADERS on stream 1.
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut head = [0u8; 9];
            s.read_exact(&mut head).await.expect("h2 frame header");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).await.expect("h2 frame payload");
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            if head[3] == 0x1 && stream == 1 {
                return;
            }
        }
    })
    .await
    .expect("no HTTP/2 response");
    s
}

#[tokio::test]
async fn idle_http2_connections_are_closed_at_the_idle_deadline() {
    let data = DataDir::new();
    let server = start_env(&data, TIGHT).await;
    let mut conns = Vec::new();
    for _ in 0..SLOTS {
        conns.push(h2_one_request(&server.addr).await);
    }
    served_while_held(&server, conns, "idle HTTP/2 connections").await;
}

#[tokio::test]
async fn the_metrics_listener_has_the_same_deadlines() {
    let metrics_addr = free_local_addr();
    let data = DataDir::new();
    let env = tight_with(&[("ARENA_METRICS_LISTEN", &metrics_addr)]);
    let _server = start_env(&data, &env).await;
    // The metrics listener serves 64 connections at once.
    let _silent = open(&metrics_addr, 64, b"").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(SERVED_WITHIN)
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("/metrics not served while silent connections held its slots");
    assert_eq!(resp.status().as_u16(), 200);
    // Its errors are JSON too.
    let resp = client
        .post(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_error(status, &body, 405, "method_not_allowed");
}

#[tokio::test]
async fn websockets_outlive_the_http_deadlines() {
    let data = DataDir::new();
    let env = tight_with(&[
        ("ARENA_BODY_TIMEOUT_MS", "300"),
        ("ARENA_IDLE_TIMEOUT_MS", "300"),
    ]);
    let server = start_env(&data, &env).await;
    let p = server.new_player("wsd").await;
    let mut ws = server.ws_ok(p.token()).await;
    // Quiet for several times every HTTP deadline, then still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.assert_alive().await;
}

// ---- 3. Every error has the JSON body ----

#[tokio::test]
async fn framework_errors_have_the_json_body() {
    let data = DataDir::new();
    let server = start_env(&data, &[("ARENA_AUTH_RATE_LIMIT", "0")]).await;
    let p = server.new_player("fe").await;
    let token = p.token().to_string();
    let huge = format!(r#"{{"username":"{}"}}"#, "a".repeat(100_000));
    use reqwest::Method;
    // (method, path, content type, body, authenticated, status, code)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Method, &str, Option<&str>, String, bool, u16, &str)> = vec![
        (
            Method::GET,
            "/no/such/route",
            None,
            String::new(),
            false,
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/missing.js",
            None,
            String::new(),
            false,
            404,
            "not_found",
        ),
        (
            Method::DELETE,
            "/healthz",
            None,
            String::new(),
            false,
            405,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            "/auth/login",
            None,
            String::new(),
            false,
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/ws",
            None,
            String::new(),
            true,
            405,
            "method_not_allowed",
        ),
        (
            Method::OPTIONS,
            "/lobby/rooms",
            None,
            String::new(),
            true,
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/metrics",
            None,
            String::new(),
            false,
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/lobby/rooms/%FF%FE",
            None,
            String::new(),
            true,
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/lobby/rooms/%C3%28",
            None,
            String::new(),
            true,
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/ws",
            None,
            String::new(),
            true,
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/auth/login",
            Some("application/json"),
            huge,
            false,
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/lobby/rooms",
            Some("text/plain"),
            r#"{"name":"r"}"#.to_string(),
            true,
            415,
            "unsupported_media_type",
        ),
    ];
    // A connection per request: the server closes one whose request body it did not
    // read (the 413), and a pooled client could race that close.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let mut wrong = Vec::new();
    for (method, path, ctype, body, authed, want_status, want_code) in cases {
        let mut req = http.request(method.clone(), format!("{}{path}", server.base));
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        if authed {
            req = req.bearer_auth(&token);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let allow = resp.headers().get("allow").is_some();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("");
        if (status, body["error"]["code"].as_str()) != (want_status, Some(want_code))
            || !content_type.starts_with("application/json")
            || message.is_empty()
            || (want_status == 405 && !allow)
        {
            wrong.push(format!(
                "{method} {path}: want {want_status} {want_code}, got {status} \
                 {content_type:?} {text:?} (Allow header: {allow})"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not the JSON error:\n{}",
        wrong.join("\n")
    );
}

// ---- 4. JSON routes want the JSON content type ----

#[tokio::test]
async fn json_routes_require_the_json_content_type() {
    let data = DataDir::new();
    let server = start_env(&data, &[("ARENA_AUTH_RATE_LIMIT", "0")]).await;
    let name = unique("ct");
    let password = "correct-horse-battery";
    server.register(&name, password).await;
    let body = json!({"username": name, "password": password}).to_string();
    let login = |ctype: Option<&'static str>| {
        let mut req = server
            .http
            .post(format!("{}/auth/login", server.base))
            .body(body.clone());
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // What a cross-site HTML form can send without a preflight.
    for refused in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let (status, answer) = login(refused).await;
        assert_error(status, &answer, 415, "unsupported_media_type");
        assert!(answer.get("access_token").is_none());
    }
    for accepted in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON;Charset=UTF-8"),
    ] {
        let (status, answer) = login(accepted).await;
        assert_eq!(status, 200, "{accepted:?}: {answer}");
    }
    // An empty body (logout's is optional) needs no content type.
    let session = server.login(&name, password).await;
    let resp = server
        .http
        .post(format!("{}/auth/logout", server.base))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}

// ---- 5. Configuration checked at start ----

#[tokio::test]
async fn bad_configurations_stop_the_server_at_start() {
    let data = DataDir::new();
    // (variables, what stderr must name)
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ARENA_MAX_CONNECTIONS", "0")], "--max-connections"),
        (&[("ARENA_MAX_SOCKETS", "0")], "--max-sockets"),
        (&[("ARENA_WS_OUTBOUND_QUEUE", "0")], "--ws-outbound-queue"),
        (
            &[("ARENA_WS_WRITE_BUFFER_BYTES", "262144")],
            "--ws-write-buffer-bytes",
        ),
        (
            &[("ARENA_MAX_WS_MESSAGE_BYTES", "16")],
            "--max-ws-message-bytes",
        ),
        (&[("ARENA_MAX_BODY_BYTES", "10")], "--max-body-bytes"),
        (&[("ARENA_HEADER_TIMEOUT_MS", "0")], "--header-timeout-ms"),
        (&[("ARENA_BODY_TIMEOUT_MS", "0")], "--body-timeout-ms"),
        (&[("ARENA_IDLE_TIMEOUT_MS", "0")], "--idle-timeout-ms"),
        (&[("ARENA_WS_SEND_TIMEOUT_MS", "0")], "--ws-send-timeout-ms"),
        (
            &[("ARENA_HEARTBEAT_SECS", "18446744073709551615")],
            "--heartbeat-secs",
        ),
        (
            &[
                ("ARENA_WS_WRITE_BUFFER_BYTES", "10"),
                ("ARENA_WS_MAX_WRITE_BUFFER_BYTES", "10"),
            ],
            "--ws-max-write-buffer-bytes",
        ),
        (
            &[
                ("ARENA_REFRESH_TTL", "10"),
                ("ARENA_REFRESH_GRACE_SECS", "10"),
            ],
            "--refresh-grace-secs",
        ),
        (
            &[("ARENA_JWT_LEEWAY", "9223372036854775808")],
            "--jwt-leeway",
        ),
        (&[("ARENA_ALLOWED_ORIGINS", "*")], "--allowed-origins"),
        (
            &[("ARENA_WS_READ_BUFFER_BYTES", "16")],
            "--ws-read-buffer-bytes",
        ),
    ];
    let mut wrong = Vec::new();
    for (env, names) in cases {
        match start_refused(&data, env).await {
            Ok((code, stderr)) => {
                if code == Some(0)
                    || !stderr.contains(names)
                    || !stderr.contains("invalid configuration")
                {
                    wrong.push(format!("{env:?}: exit {code:?}, stderr {stderr:?}"));
                }
            }
            Err(()) => wrong.push(format!("{env:?}: the server started anyway")),
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused at start:\n{}",
        wrong.join("\n")
    );
    // The defaults pass.
    let server = start_env(&data, &[("ARENA_AUTH_RATE_LIMIT", "0")]).await;
    assert_eq!(server.get("/healthz", None).await.0, 200);
}

/// Run the binary with these variables: `Ok((exit code, stderr))` if it exits without
/// serving, `Err(())` if it prints its address (it is then killed).
async fn start_refused(data: &DataDir, env: &[(&str, &str)]) -> Result<(Option<i32>, String), ()> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(server_binary())
        .env("ARENA_LISTEN", "127.0.0.1:0")
        .env("ARENA_DATA_DIR", &data.0)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let served = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.starts_with("listening on") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the server neither served nor exited");
    if served {
        return Err(());
    }
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the server did not exit")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    Ok((status.code(), stderr))
}

/// A server that cannot start says why in the operator's words (no "internal error:"
/// label, which is what a client's 500 says) and announces nothing it has not done: the
/// admin account is not "ready" on a server that never served.
#[tokio::test]
async fn a_taken_port_is_named_and_no_admin_is_announced() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = DataDir::new();
    let env = [
        ("ARENA_LISTEN", addr.as_str()),
        ("ARENA_ADMIN_USERNAME", "root_admin"),
        ("ARENA_ADMIN_PASSWORD", "correct horse battery staple"),
    ];
    let (code, stderr) = start_refused(&data, &env)
        .await
        .expect("the server started on a taken port");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("arena-server: cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(!stderr.contains("admin account ready"), "{stderr}");
}

/// An unreachable `--database-url` is reported at once, naming the host and port that
/// refused (never the password), instead of after the pool's acquire timeout.
#[tokio::test]
async fn an_unreachable_database_is_named_at_once() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://arena:s3cret-pw@127.0.0.1:{port}/arena");
    let data = DataDir::new();
    let started = Instant::now();
    // A pool timeout far beyond the bound below: waiting for it would fail the test.
    let env = [
        ("ARENA_DATABASE_URL", url.as_str()),
        ("ARENA_DATABASE_TIMEOUT_MS", "60000"),
    ];
    let (code, stderr) = start_refused(&data, &env)
        .await
        .expect("the server started without its database");
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to the database at 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}

/// Logs written to a file (stderr is not a terminal here) carry no colour codes.
#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes() {
    let data = DataDir::new();
    let server = TestServer::start_env(
        &data,
        &[
            ("ARENA_ADMIN_USERNAME", "root_admin"),
            ("ARENA_ADMIN_PASSWORD", "correct horse battery staple"),
        ],
    )
    .await;
    let (status, _) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));
    let log = std::fs::read_to_string(data.0.join("server.log")).unwrap();
    assert!(log.contains("admin account ready"), "{log}");
    assert!(log.contains("serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in the log file:\n{log:?}"
    );
}

// ---- 6. Security headers ----

/// Every answer carries the security headers: the pages a Content-Security-Policy that
/// allows this origin only, and no answer can be framed or sniffed.
#[tokio::test]
async fn pages_and_answers_carry_the_security_headers() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let client = reqwest::Client::new();
    for path in [
        "/",
        "/admin/",
        "/app.js",
        "/favicon.svg",
        "/healthz",
        "/no-such-page",
    ] {
        let resp = client
            .get(format!("{}{path}", server.origin()))
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp:?}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp:?}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp:?}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp:?}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let icon = client
        .get(format!("{}/favicon.svg", server.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
}

// ---- One address, every slot ----

/// A client that keeps its connections cheaply busy is not stopped by any deadline; the
/// per-address cap is what keeps it from taking every slot.
#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let data = DataDir::new();
    let env = tight_with(&[
        ("ARENA_HEADER_TIMEOUT_MS", "8000"),
        ("ARENA_MAX_CONNECTIONS_PER_ADDRESS", "5"),
    ]);
    let server = start_env(&data, &env).await;
    let _held = open(&server.addr, 5, b"").await;
    // A sixth from the same address is closed at once, long before any deadline.
    let mut sixth = open(&server.addr, 1, b"").await.remove(0);
    let started = Instant::now();
    read_to_close(&mut sixth, Duration::from_secs(4)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Another address is served as usual.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(SERVED_WITHIN)
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("another address is served");
    assert_eq!(resp.status().as_u16(), 200);
}

/// Refresh needs no account, and a well-formed token costs a database write: it is
/// limited per address, and a malformed one is refused before anything else.
#[tokio::test]
async fn refresh_attempts_are_limited_per_address() {
    let data = DataDir::new();
    let server = start_env(&data, &[("ARENA_REFRESH_RATE_LIMIT", "5")]).await;
    let well_formed = "A".repeat(43);
    for _ in 0..5 {
        let (status, body) = server.refresh(&well_formed).await;
        assert_error(status, &body, 401, "refresh_invalid");
    }
    let resp = server
        .http
        .post(format!("{}/auth/refresh", server.base))
        .json(&json!({ "refresh_token": well_formed }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
}
