//! What the run's tasks share: the nodes' addresses and states, the history of pauses
//! and restores (to tell when a check applies), the operations, the violations, and
//! the answers the final checks need.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::RwLock;

use super::NODES;
use crate::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum NodeState {
    Up,
    Paused,
    Down,
}

pub(super) struct Shared {
    pub(super) t0: Instant,
    /// Each node's address while it runs.
    pub(super) addrs: std::sync::RwLock<Vec<Option<String>>>,
    pub(super) states: Mutex<Vec<NodeState>>,
    /// (node, paused at, continued at)
    pub(super) pauses: Mutex<Vec<(usize, Instant, Option<Instant>)>>,
    /// Database restores under way or done: (dump started, restore finished).
    pub(super) restores: Mutex<Vec<(Instant, Option<Instant>)>>,
    pub(super) violations: Mutex<Vec<String>>,
    pub(super) ops: Mutex<BTreeMap<String, u64>>,
    pub(super) http: reqwest::Client,
    pub(super) admin: RwLock<String>,
    /// Accounts whose registration was answered: (username, password, answered at).
    pub(super) accounts: Mutex<Vec<(String, String, Instant)>>,
    /// Ban state by username, as last answered: (banned, answered at); `None`: a ban or
    /// unban was sent without an answer (it may or may not have committed).
    pub(super) bans: Mutex<BTreeMap<String, (Option<bool>, Instant)>>,
    /// When each node last changed state (killed, restarted, paused, continued).
    pub(super) changed: Mutex<Vec<Instant>>,
    pub(super) stop: AtomicBool,
    pub(super) rng: Mutex<fastrand::Rng>,
}

impl Shared {
    pub(super) fn count(&self, what: &str) {
        *self
            .ops
            .lock()
            .unwrap()
            .entry(what.to_string())
            .or_default() += 1;
    }

    pub(super) fn violation(&self, what: String) {
        eprintln!("VIOLATION at {} ms: {what}", self.t0.elapsed().as_millis());
        self.violations.lock().unwrap().push(what);
    }

    pub(super) fn rand(&self, n: usize) -> usize {
        self.rng.lock().unwrap().usize(..n.max(1))
    }

    pub(super) fn millis(&self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.lock().unwrap().u64(lo..hi))
    }

    /// A node that runs and is not paused, and its address.
    pub(super) fn pick_node(&self) -> Option<(usize, String)> {
        let addrs = self.addrs.read().unwrap();
        let states = self.states.lock().unwrap();
        let up: Vec<usize> = (0..NODES)
            .filter(|i| states[*i] == NodeState::Up && addrs[*i].is_some())
            .collect();
        let i = *up.get(self.rand(up.len()))?;
        Some((i, addrs[i].clone()?))
    }

    pub(super) fn up_nodes(&self) -> Vec<(usize, String)> {
        let addrs = self.addrs.read().unwrap();
        let states = self.states.lock().unwrap();
        (0..NODES)
            .filter(|i| states[*i] == NodeState::Up)
            .filter_map(|i| addrs[i].clone().map(|a| (i, a)))
            .collect()
    }

    /// Whether `at` falls where a database restore may have lost what was answered.
    pub(super) fn uncertain(&self, at: Instant) -> bool {
        self.restores
            .lock()
            .unwrap()
            .iter()
            .any(|(from, to)| at >= *from && to.is_none_or(|to| at <= to))
    }

    /// When node `i` was last continued after a pause that overlaps [since, now], if any.
    pub(super) fn paused_since(&self, i: usize, since: Instant) -> Option<Option<Instant>> {
        self.pauses
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, end)| *n == i && end.is_none_or(|e| e >= since))
            .map(|(_, _, end)| *end)
            .max_by_key(|end| end.map_or(Instant::now() + Duration::from_secs(3600), |e| e))
    }

    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut req = self.http.request(method, format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let acked = resp
                    .headers()
                    .get("arena-nodes-acked")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = resp.json().await.unwrap_or(Value::Null);
                (status, body, acked)
            }
            Err(_) => (0, Value::Null, None),
        }
    }

    /// `POST` `body` to `path` on the node at `addr`: status, body, `Arena-Nodes-Acked`.
    pub(super) async fn post(
        &self,
        addr: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value, Option<String>) {
        self.send(reqwest::Method::POST, addr, path, token, Some(body))
            .await
    }

    /// Whether the node at `addr` accepts `token` now (`GET /auth/me` answers 200).
    pub(super) async fn accepts(&self, addr: &str, token: &str) -> bool {
        self.send(reqwest::Method::GET, addr, "/auth/me", Some(token), None)
            .await
            .0
            == 200
    }

    /// `POST /auth/login` on the node at `addr`.
    pub(super) async fn login(&self, addr: &str, username: &str, password: &str) -> (u16, Value) {
        let (status, body, _) = self
            .post(
                addr,
                "/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        (status, body)
    }

    /// Record the ban state of `username` as answered at `at` (`None`: unknown).
    pub(super) fn set_ban(&self, username: &str, banned: Option<bool>, at: Instant) {
        self.bans
            .lock()
            .unwrap()
            .insert(username.to_string(), (banned, at));
    }

    pub(super) async fn admin_token(&self) -> String {
        self.admin.read().await.clone()
    }

    pub(super) async fn relogin_admin(&self) {
        if let Some((_, addr)) = self.pick_node() {
            let (status, body) = self.login(&addr, ADMIN, ADMIN_PASSWORD).await;
            if status == 200 {
                if let Some(t) = body["access_token"].as_str() {
                    *self.admin.write().await = t.to_string();
                }
            }
        }
    }
}

/// One socket a player holds: whether it has ended.
pub(super) struct SocketTrack {
    pub(super) node: usize,
    pub(super) ended: Arc<AtomicBool>,
}
