//! A whole cluster for contract tests: one Redis, one PostgreSQL database and n nodes
//! (`node-a`, `node-b`, …) that the test can SIGKILL, stop, restart with the same
//! arguments, or cut off from Redis and PostgreSQL through [`Proxy`]s.
//!
//! Built on [`crate::backplane`] (its `RedisServer` and `Deployment`); what this adds is
//! the node bookkeeping a fault test needs (a node's arguments and environment are kept
//! so that a restart is the same process again) and the answer helpers the contract
//! names (`Arena-Nodes-Acked`, `"nodes"`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backplane::{until_nodes, Deployment};
use crate::*;

/// How one node is started, beyond the cluster's shared arguments.
#[derive(Default, Clone)]
pub struct NodeOpts {
    pub env: Vec<(String, String)>,
    pub extra: Vec<String>,
    /// Route this node's Redis and PostgreSQL links through proxies the test can cut.
    pub proxied: bool,
}

/// One node: its process while it runs, and what it takes to start it again.
pub struct Node {
    pub id: String,
    pub server: Option<TestServer>,
    dir: DataDir,
    opts: NodeOpts,
    /// (PostgreSQL, Redis) proxies when `opts.proxied`.
    pub links: Option<(Proxy, Proxy)>,
}

pub struct Cluster {
    pub dep: Deployment,
    pub nodes: Vec<Node>,
    /// An admin's access token (issued by node-a).
    pub admin: String,
    args: Vec<String>,
}

/// `node-a`, `node-b`, …
pub fn node_id(i: usize) -> String {
    let letter = (b'a' + u8::try_from(i).expect("fewer than 26 nodes")) as char;
    format!("node-{letter}")
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl Cluster {
    /// n nodes with the same `extra` arguments; waits until every node lists all n.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        Self::start_with(n, extra, |_| NodeOpts::default()).await
    }

    /// As [`Cluster::start`], with per-node options (environment, proxied links).
    pub async fn start_with(n: usize, extra: &[&str], opts: impl Fn(usize) -> NodeOpts) -> Cluster {
        let dep = Deployment::new().await;
        let mut nodes = Vec::new();
        for i in 0..n {
            let opts = opts(i);
            let links = if opts.proxied {
                let pg = Proxy::start("127.0.0.1:5432").await;
                let redis = Proxy::start(leak(format!("127.0.0.1:{}", dep.redis.port))).await;
                Some((pg, redis))
            } else {
                None
            };
            nodes.push(Node {
                id: node_id(i),
                server: None,
                dir: DataDir::new(),
                opts,
                links,
            });
        }
        let mut cluster = Cluster {
            dep,
            nodes,
            admin: String::new(),
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        let servers = futures_util::future::join_all((0..n).map(|i| cluster.spawn_node(i))).await;
        for (node, server) in cluster.nodes.iter_mut().zip(servers) {
            node.server = Some(server);
        }
        cluster.admin = cluster
            .node(0)
            .login(ADMIN, ADMIN_PASSWORD)
            .await
            .access_token;
        for i in 0..n {
            until_nodes(cluster.node(i), &cluster.admin, n).await;
        }
        cluster
    }

    fn spawn_node(&self, i: usize) -> impl std::future::Future<Output = TestServer> + '_ {
        let node = &self.nodes[i];
        let (database_url, redis_url) = match &node.links {
            Some((pg, redis)) => (
                format!("postgres://postgres@{}/{}", pg.addr, self.dep.db.name),
                format!("redis://{}", redis.addr),
            ),
            None => (self.dep.db.url(), self.dep.redis.url()),
        };
        async move {
            let extra: Vec<&str> = self
                .args
                .iter()
                .chain(node.opts.extra.iter())
                .map(String::as_str)
                .collect();
            let env: Vec<(&str, &str)> = node
                .opts
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.dep
                .node_via(&node.dir, &node.id, &database_url, &redis_url, &extra, &env)
                .await
        }
    }

    /// The running node i (panics if it was killed and not restarted).
    pub fn node(&self, i: usize) -> &TestServer {
        self.nodes[i].server.as_ref().expect("node is running")
    }

    pub fn links(&self, i: usize) -> &(Proxy, Proxy) {
        self.nodes[i]
            .links
            .as_ref()
            .expect("node was started proxied")
    }

    /// SIGKILL node i and wait for it to exit.
    pub async fn kill(&mut self, i: usize) {
        let server = self.nodes[i].server.take().expect("node is running");
        server.signal_and_wait("KILL").await;
    }

    /// SIGTERM node i (a clean stop) and wait for it to exit; its exit code.
    pub async fn stop(&mut self, i: usize) -> Option<i32> {
        let server = self.nodes[i].server.take().expect("node is running");
        server.signal_and_wait("TERM").await
    }

    /// Start node i again with the same id, data dir, arguments and environment.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].server.is_none(), "node {i} still runs");
        let server = self.spawn_node(i).await;
        self.nodes[i].server = Some(server);
    }
}

// ---- answers the contract names ----

/// The `Arena-Nodes-Acked` header of a response, or "" if absent.
pub fn acked_header(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("arena-nodes-acked")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// `DELETE /auth/sessions/{id}` with `token`: status and `Arena-Nodes-Acked`.
pub async fn end_session_acked(node: &TestServer, token: &str, session_id: &str) -> (u16, String) {
    let resp = node
        .http
        .delete(format!("{}/auth/sessions/{session_id}", node.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete session");
    (resp.status().as_u16(), acked_header(&resp))
}

/// `POST /admin/users/{id}/ban` (permanent, no reason).
pub async fn ban(node: &TestServer, admin: &str, user_id: &str) -> (u16, Value) {
    node.post(
        &format!("/admin/users/{user_id}/ban"),
        Some(admin),
        json!({}),
    )
    .await
}

/// `DELETE /admin/users/{id}/ban`.
pub async fn unban(node: &TestServer, admin: &str, user_id: &str) -> u16 {
    node.request(
        reqwest::Method::DELETE,
        &format!("/admin/users/{user_id}/ban"),
        Some(admin),
        None,
    )
    .await
    .0
}

/// `PUT /admin/users/{id}/role`.
pub async fn set_role(node: &TestServer, admin: &str, user_id: &str, role: &str) -> (u16, Value) {
    node.request(
        reqwest::Method::PUT,
        &format!("/admin/users/{user_id}/role"),
        Some(admin),
        Some(json!({ "role": role })),
    )
    .await
}

/// At this moment (no retry): HTTP with `token` is 401 `code` and an upgrade is refused
/// 401. `what` names the check in the failure message.
pub async fn refused_now(node: &TestServer, token: &str, code: &str, what: &str) {
    let (status, body) = node.get("/auth/me", Some(token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some(code)),
        "{what}: GET /auth/me on {} answered {status} {body}",
        node.addr
    );
    match node.ws(WsAuth::Header(token)).await {
        Err(refusal) => assert_eq!(
            refusal.status, 401,
            "{what}: upgrade on {} refused with {} {}",
            node.addr, refusal.status, refusal.body
        ),
        Ok(_) => panic!("{what}: upgrade on {} accepted a revoked token", node.addr),
    }
}

/// The socket ends with close `code` within `limit`; how long it took.
pub async fn closed_within(ws: &mut Ws, code: u16, limit: Duration, what: &str) -> Duration {
    let started = Instant::now();
    match ws.ended_within(limit).await {
        Some(Ended::Closed(got, _)) if got == code => started.elapsed(),
        other => panic!("{what}: expected close {code} within {limit:?}, got {other:?}"),
    }
}

/// Connections listed by `GET /admin/connections` on `node` for `user_id`.
pub async fn listed(node: &TestServer, admin: &str, user_id: &str) -> Vec<Value> {
    node.connections_of(admin, user_id).await
}

/// A reqwest client whose connections come from `source` (127.0.0.2, …): another client
/// address as the server sees it.
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().expect("an IP address"))
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

/// `POST /auth/login` from `client` to `node`: status and error code.
pub async fn login_from(
    client: &reqwest::Client,
    node: &TestServer,
    username: &str,
    password: &str,
) -> (u16, Value) {
    let resp = client
        .post(format!("{}/auth/login", node.base))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}
