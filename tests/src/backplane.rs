//! Pieces for cluster tests: a `redis-server` of the test's own on a free port (killed,
//! restarted on the same port, with or without what it persisted in its own directory),
//! and N `arena-server` nodes sharing it and a fresh PostgreSQL database.

use std::time::Duration;

use tokio::process::{Child, Command};

use crate::*;

/// A `redis-server` child process on a free port; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Its working directory: where it keeps its RDB snapshot and AOF, if it persists.
    pub dir: DataDir,
    pub persistence: Persistence,
    /// More `redis-server` arguments, kept across restarts.
    pub extra_args: Vec<String>,
}

/// What a `redis-server` keeps across a restart (its `--save` and `--appendonly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `--save '' --appendonly no`: a restart comes back empty.
    Nothing,
    /// RDB snapshots (redis-server's own default schedule, and every `SAVE`): a restart
    /// comes back with the last snapshot.
    Rdb,
    /// `--appendonly yes --appendfsync always` (and no snapshots): a restart comes back
    /// with every write it acknowledged.
    Aof,
}

impl Persistence {
    fn args(self) -> &'static [&'static str] {
        match self {
            Persistence::Nothing => &["--save", "", "--appendonly", "no"],
            Persistence::Rdb => &["--save", "3600 1 300 100 60 10000", "--appendonly", "no"],
            Persistence::Aof => &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        }
    }
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = free_local_addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a free port");
        let mut redis = RedisServer {
            port,
            child: None,
            dir: DataDir::new(),
            persistence: Persistence::Nothing,
            extra_args: Vec::new(),
        };
        redis.restart().await;
        redis
    }

    /// Restart it with `persistence` from now on (in the same directory).
    pub async fn restart_with(&mut self, persistence: Persistence) {
        self.persistence = persistence;
        self.restart().await;
    }

    /// Restart it with these further arguments from now on (`--rename-command`, say).
    pub async fn restart_with_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
        self.restart().await;
    }

    /// Run one command (inline, no arguments with spaces) and return its reply line.
    pub async fn command(&self, command: &str) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to redis-server");
        s.write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("send to redis-server");
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(s);
        tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
            .await
            .expect("redis-server answers")
            .expect("read from redis-server");
        line.trim_end().to_string()
    }

    /// `SAVE`: a snapshot now (it must persist RDB snapshots).
    pub async fn save(&self) {
        assert_eq!(self.persistence, Persistence::Rdb, "SAVE without RDB");
        assert_eq!(self.command("SAVE").await, "+OK");
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL it (a restart comes back with what its persistence kept: see
    /// [`Persistence`]).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Start it (again) on the same port and wait until it answers PING.
    pub async fn restart(&mut self) {
        self.kill().await;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(self.persistence.args())
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.extra_args)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed: Redis is one of this project's services");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if ping(self.port).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"+PONG\r\n"
    )
}

/// The shared parts of a cluster: one Redis and one database (which also holds the
/// signing keyring: the nodes share no secret on their command lines).
pub struct Deployment {
    pub redis: RedisServer,
    pub db: PgDatabase,
}

impl Deployment {
    pub async fn new() -> Deployment {
        Deployment {
            redis: RedisServer::start().await,
            db: PgDatabase::create(),
        }
    }

    /// Start nodes `node-a`, `node-b` and `node-c` at once with `extra` flags; returns
    /// them and an admin token once each lists all three.
    pub async fn three(
        &self,
        dirs: &[DataDir; 3],
        extra: &[&str],
    ) -> (TestServer, TestServer, TestServer, String) {
        let (a, b, c) = tokio::join!(
            self.node(&dirs[0], "node-a", extra),
            self.node(&dirs[1], "node-b", extra),
            self.node(&dirs[2], "node-c", extra),
        );
        let admin = a.login(ADMIN, ADMIN_PASSWORD).await.access_token;
        for node in [&a, &b, &c] {
            until_nodes(node, &admin, 3).await;
        }
        (a, b, c, admin)
    }

    /// Start node `id` with an admin account and `extra` flags.
    pub async fn node(&self, data: &DataDir, id: &str, extra: &[&str]) -> TestServer {
        self.node_env(data, id, extra, &[]).await
    }

    pub async fn node_env(
        &self,
        data: &DataDir,
        id: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let (db, redis) = (self.db.url(), self.redis.url());
        self.node_via(data, id, &db, &redis, extra, env).await
    }

    /// Start a node whose database and Redis URLs are given (through a proxy, say).
    pub async fn node_via(
        &self,
        data: &DataDir,
        id: &str,
        database_url: &str,
        redis_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.0.to_str().expect("utf-8 path"),
        ];
        // Rate limits off unless the test sets them (a flag may be given only once).
        for flag in ["--auth-rate-limit", "--refresh-rate-limit"] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, "0"]);
            }
        }
        args.extend_from_slice(&[
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--node-id",
            id,
            "--admin-username",
            ADMIN,
            "--admin-password",
            ADMIN_PASSWORD,
        ]);
        args.extend_from_slice(extra);
        TestServer::spawn_with(data, &args, env).await
    }
}

/// Wait until `node` lists `n` live nodes (each node has seen the others announce).
pub async fn until_nodes(node: &TestServer, admin: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = node.get("/admin/nodes", Some(admin)).await;
        let listed = body["nodes"].as_array().map_or(0, Vec::len);
        if status == 200 && listed == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} lists {listed} nodes, not {n}: {body}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /auth/logout` (with `all`); the status and the `Arena-Nodes-Acked` header.
pub async fn logout_acked(node: &TestServer, token: &str, all: bool) -> (u16, String) {
    let resp = node
        .http
        .post(format!("{}/auth/logout", node.base))
        .bearer_auth(token)
        .json(&serde_json::json!({ "all": all }))
        .send()
        .await
        .expect("logout");
    let acked = resp
        .headers()
        .get("arena-nodes-acked")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (resp.status().as_u16(), acked)
}
