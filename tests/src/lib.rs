//! Test harness: start real `arena-server` processes on `127.0.0.1:0`, and talk to them
//! over real HTTP (reqwest) and real WebSocket (tokio-tungstenite).
//!
//! Nothing here sleeps a fixed time: every wait is for an event, with a deadline.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arena_protocol::http::Session;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod backplane;
pub mod chaos;
pub mod cluster;
pub mod delay_proxy;
pub mod listings;
pub mod pg_private;
pub mod ticks;
pub use cluster::{Cluster, NodeOpts};

/// The longest any single expected event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name for users and directories in this test process.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// The `arena-server` binary next to this test binary (cargo builds it for
/// `cargo test --workspace`); built on demand when a single package is tested.
/// `ARENA_SERVER_BIN` names another (to run a test against an earlier build, say).
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ARENA_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("arena-server");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "arena-server", "--bin", "arena-server"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building arena-server failed");
    }
    bin
}

/// A data directory removed when dropped.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new() -> DataDir {
        let dir = std::env::temp_dir().join(unique("arena-test-"));
        std::fs::create_dir_all(&dir).expect("create data dir");
        DataDir(dir)
    }
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        // ARENA_TEST_KEEP=1 keeps data dirs (with each server's log) for a post-mortem.
        if std::env::var_os("ARENA_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server process. Killed when dropped.
pub struct TestServer {
    pub addr: String,
    pub base: String,
    child: Child,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Start with the auth and refresh rate limits off (tests log in and refresh often
    /// from one address).
    pub async fn start(data: &DataDir, extra: &[&str]) -> TestServer {
        let mut args = vec!["--auth-rate-limit", "0", "--refresh-rate-limit", "0"];
        args.extend_from_slice(extra);
        Self::start_raw(data, &args).await
    }

    pub async fn start_raw(data: &DataDir, args: &[&str]) -> TestServer {
        Self::spawn(data, args, &[]).await
    }

    /// Start configured through `ARENA_*` variables only (plus listen and data dir).
    pub async fn start_env(data: &DataDir, env: &[(&str, &str)]) -> TestServer {
        Self::spawn(data, &[], env).await
    }

    /// Start with exactly these arguments and extra environment variables (the
    /// arguments must include `--listen` and `--data-dir`).
    pub async fn spawn_with(data: &DataDir, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        Self::spawn_command(data, args, env, false).await
    }

    async fn spawn(data: &DataDir, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        Self::spawn_command(data, args, env, env.is_empty()).await
    }

    async fn spawn_command(
        data: &DataDir,
        args: &[&str],
        env: &[(&str, &str)],
        default_listen: bool,
    ) -> TestServer {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.0.join("server.log"))
            .expect("server log");
        let mut command = Command::new(server_binary());
        if default_listen {
            command
                .arg("--listen")
                .arg("127.0.0.1:0")
                .arg("--data-dir")
                .arg(&data.0);
        } else if !args.contains(&"--listen") {
            command
                .env("ARENA_LISTEN", "127.0.0.1:0")
                .env("ARENA_DATA_DIR", &data.0);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            // ARENA_TEST_LOG (say `arena_server=debug`) sets the servers' log filter.
            .env(
                "ARENA_LOG",
                std::env::var("ARENA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn arena-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    return addr.trim().to_string();
                }
            }
            let log = std::fs::read_to_string(data.0.join("server.log")).unwrap_or_default();
            panic!("server exited before listening; log:\n{log}");
        })
        .await
        .expect("server did not print its address in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestServer {
            base: format!("http://{addr}"),
            addr,
            child,
            http: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("client"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn origin(&self) -> String {
        self.base.clone()
    }

    /// Send a signal and wait for the process to exit; returns its exit code.
    pub async fn signal_and_wait(mut self, signal: &str) -> Option<i32> {
        let pid = self.child.id().expect("pid").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server did not exit in time")
            .expect("wait");
        status.code()
    }

    // ---- HTTP helpers ----

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn register(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/auth/register",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {body}");
        body["user"].clone()
    }

    pub async fn login(&self, username: &str, password: &str) -> Session {
        let (status, body) = self
            .post(
                "/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {body}");
        serde_json::from_value(body).expect("session body")
    }

    /// Register a fresh user and log in once.
    pub async fn new_player(&self, prefix: &str) -> Player {
        let username = unique(prefix);
        let password = "correct-horse-battery".to_string();
        self.register(&username, &password).await;
        let session = self.login(&username, &password).await;
        Player {
            username,
            password,
            session,
        }
    }

    pub async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.post(
            "/auth/refresh",
            None,
            json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// An admin kicks a user (no reason).
    pub async fn kick(&self, admin_token: &str, user_id: &str) -> (u16, Value) {
        self.post(
            &format!("/admin/users/{user_id}/kick"),
            Some(admin_token),
            json!({}),
        )
        .await
    }

    pub async fn logout(&self, token: &str, all: bool) -> u16 {
        let body = if all { json!({"all": true}) } else { json!({}) };
        self.post("/auth/logout", Some(token), body).await.0
    }

    /// Connections the admin view lists for a user.
    pub async fn connections_of(&self, admin_token: &str, user_id: &str) -> Vec<Value> {
        let (status, body) = self.get("/admin/connections", Some(admin_token)).await;
        assert_eq!(status, 200, "{body}");
        body["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["user_id"] == user_id)
            .collect()
    }

    // ---- WebSocket helpers ----

    /// Open a socket authenticated the given way; `Err` carries the HTTP refusal.
    pub async fn ws(&self, auth: WsAuth<'_>) -> Result<Ws, Refusal> {
        let mut req = self.ws_url().into_client_request().expect("ws request");
        let headers = req.headers_mut();
        match auth {
            WsAuth::Header(t) => {
                headers.insert("authorization", hv(&format!("Bearer {t}")));
            }
            WsAuth::Subprotocol(t) => {
                headers.insert(
                    "sec-websocket-protocol",
                    hv(&format!("arena.v1, bearer.{t}")),
                );
            }
            WsAuth::Cookie(t, origin) => {
                headers.insert("cookie", hv(&format!("arena_access={t}")));
                if let Some(o) = origin {
                    headers.insert("origin", hv(o));
                }
            }
            WsAuth::Query(t) => {
                *req.uri_mut() = format!("{}?access_token={t}&token={t}", self.ws_url())
                    .parse()
                    .expect("uri");
            }
            WsAuth::None => {}
        }
        connect(req).await
    }

    /// Open a socket with the Authorization header and read its `welcome`.
    pub async fn ws_ok(&self, token: &str) -> Ws {
        let mut ws = self
            .ws(WsAuth::Header(token))
            .await
            .expect("upgrade refused");
        let welcome = ws.recv_json().await.expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws.welcome = welcome;
        ws
    }
}

/// Assert an HTTP error answer: its status and its protocol error code.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want_status, Some(want_code)),
        "answer: {body}"
    );
}

/// The `Set-Cookie` header of a response (panics if there is none).
pub fn set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie header")
        .to_string()
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header value")
}

pub struct Player {
    pub username: String,
    pub password: String,
    pub session: Session,
}

impl Player {
    pub fn token(&self) -> &str {
        &self.session.access_token
    }

    pub fn id(&self) -> &str {
        &self.session.user.id
    }
}

pub enum WsAuth<'a> {
    Header(&'a str),
    Subprotocol(&'a str),
    Cookie(&'a str, Option<&'a str>),
    Query(&'a str),
    None,
}

/// An upgrade the server refused: its HTTP status and JSON body.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
}

pub async fn connect(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Ws, Refusal> {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async_with_config(req, Some(WebSocketConfig::default()), false)
        .await
    {
        Ok((stream, response)) => Ok(Ws {
            stream,
            protocol: response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            welcome: Value::Null,
            last_close: None,
        }),
        Err(Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err(Refusal { status, body })
        }
        Err(e) => Err(Refusal {
            status: 0,
            body: json!({ "transport_error": e.to_string() }),
        }),
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    pub welcome: Value,
    last_close: Option<u16>,
}

/// How a socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16, String),
    /// The stream ended or failed without a close frame.
    Dropped(String),
}

impl Ws {
    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("send");
    }

    /// The next JSON text frame, or `None` if the socket closed first (its close code
    /// is then in [`Ws::close_code_after_end`]).
    pub async fn recv_json(&mut self) -> Option<Value> {
        tokio::time::timeout(DEADLINE, async {
            while let Some(msg) = self.stream.next().await {
                match msg {
                    Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
                    Ok(Message::Close(frame)) => {
                        self.last_close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                        return None;
                    }
                    Err(_) => return None,
                    Ok(_) => continue,
                }
            }
            None
        })
        .await
        .expect("no frame before the deadline")
    }

    /// The next frame of the given type, skipping others (state frames, say).
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self
                .recv_json()
                .await
                .unwrap_or_else(|| panic!("socket closed waiting for {ty}"));
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Read until the socket ends; how it ended.
    pub async fn ended(&mut self) -> Ended {
        self.ended_within(DEADLINE)
            .await
            .expect("socket still open after the deadline")
    }

    /// Read until the socket ends or `limit` passes (`None`: still open).
    pub async fn ended_within(&mut self, limit: Duration) -> Option<Ended> {
        tokio::time::timeout(limit, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Close(Some(f)))) => {
                        return Ended::Closed(u16::from(f.code), f.reason.to_string())
                    }
                    Some(Ok(Message::Close(None))) => return Ended::Closed(1005, String::new()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Ended::Dropped(e.to_string()),
                    None => return Ended::Dropped("stream ended".into()),
                }
            }
        })
        .await
        .ok()
    }

    /// The close code the socket ends with; panics if it ends without one.
    pub async fn close_code(&mut self) -> u16 {
        match self.ended().await {
            Ended::Closed(code, _) => code,
            Ended::Dropped(why) => panic!("socket ended without a close frame: {why}"),
        }
    }

    /// The close code seen by [`Ws::recv_json`] when it returned `None`.
    pub fn close_code_after_end(&self) -> Option<u16> {
        self.last_close
    }

    /// A ping/pong round trip: proof the socket is open and served.
    pub async fn assert_alive(&mut self) {
        let id = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.send_json(json!({"type": "ping", "id": id})).await;
        loop {
            let v = self
                .recv_json()
                .await
                .expect("socket closed, expected it alive");
            if v["type"] == "pong" && v["id"] == id {
                return;
            }
        }
    }
}

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// Start a server with an admin account and return it with the admin's access token.
pub async fn start_with_admin(data: &DataDir, extra: &[&str]) -> (TestServer, String) {
    let mut args = vec![
        "--admin-username",
        ADMIN,
        "--admin-password",
        ADMIN_PASSWORD,
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start(data, &args).await;
    let admin = server.login(ADMIN, ADMIN_PASSWORD).await;
    (server, admin.access_token)
}

// ---- PostgreSQL ----

/// A fresh database on the machine's PostgreSQL (127.0.0.1:5432, trust auth), dropped
/// (with its connections) when this value is dropped.
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = unique("arena_test_").to_lowercase();
        psql(&format!("CREATE DATABASE {name}"));
        PgDatabase { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// Run SQL inside this database (to install a trigger, say); panics if it fails.
    pub fn psql(&self, sql: &str) {
        psql_in(&self.name, sql);
    }

    /// One number from this database (`SELECT count(*) …`); panics if it is not one.
    pub fn number(&self, sql: &str) -> i64 {
        let answer = psql_in(&self.name, sql);
        answer
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {answer:?}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// Run SQL in the `test` database; panics if it fails.
pub fn psql(sql: &str) {
    psql_in("test", sql);
}

/// Send `sig` (`STOP`, `CONT`, `KILL`…) to process `pid`; panics if `kill` fails.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A response's `Retry-After` in seconds, if it has one.
pub fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A loopback address with a port that was free a moment ago (for a second listener the
/// server must bind itself, such as `--metrics-listen`).
pub fn free_local_addr() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    let port = probe.local_addr().expect("probe address").port();
    format!("127.0.0.1:{port}")
}

fn psql_in(database: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAqc",
            sql,
        ])
        .output()
        .expect("psql must be installed: PostgreSQL is one of this project's services");
    assert!(
        out.status.success(),
        "psql -d {database} {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A TCP proxy to `target` that can be cut (every link dropped, new ones refused at once)
/// and restored.
pub struct Proxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &'static str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let accept = {
            let (cut, links) = (cut.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().expect("links").push(link);
                }
            })
        };
        Proxy {
            addr,
            cut,
            links,
            accept,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
