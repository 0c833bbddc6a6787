//! The players: each lives again and again (register, log in, sockets, play, end by a
//! logout or an admin's kick or ban), and checks the promises after each end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::bound;
use super::world::{Shared, SocketTrack};
use crate::*;

/// One player's life, again and again: register, log in, sockets, play, end.
pub(super) async fn player(shared: Arc<Shared>, worker: usize) {
    let mut n = 0;
    while !shared.stop.load(Ordering::Acquire) {
        n += 1;
        if let Err(what) = one_life(&shared, worker, n).await {
            shared.count(what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A player between its login and its end.
struct Life {
    username: String,
    user_id: String,
    /// Every access token the session had (its login's, then each refresh's).
    tokens: Vec<String>,
    refresh: String,
    sockets: Vec<SocketTrack>,
}

/// How a life ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Logout,
    Kick,
    Ban,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Logout => "logout",
            End::Kick => "kick",
            End::Ban => "ban",
        }
    }
}

async fn one_life(shared: &Shared, worker: usize, n: usize) -> Result<(), &'static str> {
    let mut life = start(shared, worker, n).await?;
    let hold = Instant::now() + shared.millis(300, 2500);
    while Instant::now() < hold {
        tokio::time::sleep(shared.millis(100, 600)).await;
        if shared.rand(4) == 0 {
            refresh(shared, &mut life).await;
        }
    }
    let end = match shared.rand(4) {
        0 | 1 => End::Logout,
        2 => End::Kick,
        _ => End::Ban,
    };
    let Some((answered, all_acked)) = finish(shared, &life, end).await? else {
        return Ok(());
    };
    if all_acked && !shared.uncertain(answered) {
        every_acknowledging_node_refuses(shared, end, &life).await;
    }
    check_after_bound(shared, end, &life, answered).await;
    if end == End::Ban && shared.rand(2) == 0 {
        unban(shared, &life).await?;
    }
    Ok(())
}

/// Register and log in on random nodes, then open one or two sockets.
async fn start(shared: &Shared, worker: usize, n: usize) -> Result<Life, &'static str> {
    let username = format!("chaos{worker}x{n}{}", shared.rand(1_000_000));
    let password = "chaos-password-1";
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let credentials = json!({"username": username, "password": password});
    let (status, _, _) = shared
        .post(&addr, "/auth/register", None, credentials)
        .await;
    if status != 201 {
        return Err("register not answered 201");
    }
    shared.count("register");
    shared
        .accounts
        .lock()
        .unwrap()
        .push((username.clone(), password.to_string(), Instant::now()));
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let (status, session) = shared.login(&addr, &username, password).await;
    if status != 200 {
        return Err("login not answered 200");
    }
    shared.count("login");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut life = Life {
        username,
        user_id: text(&session["user"]["id"]),
        tokens: vec![text(&session["access_token"])],
        refresh: text(&session["refresh_token"]),
        sockets: Vec::new(),
    };
    for k in 0..1 + shared.rand(2) {
        let Some((node, addr)) = shared.pick_node() else {
            break;
        };
        if let Some(s) = open_socket(shared, node, &addr, &life.tokens[0], k == 0).await {
            life.sockets.push(s);
        }
    }
    Ok(life)
}

async fn refresh(shared: &Shared, life: &mut Life) {
    let Some((_, addr)) = shared.pick_node() else {
        return;
    };
    let body = json!({"refresh_token": life.refresh});
    let (status, body, _) = shared.post(&addr, "/auth/refresh", None, body).await;
    if status == 200 {
        shared.count("refresh");
        life.tokens.push(
            body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        life.refresh = body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
}

/// End the life; `Some((answered at, every live node acknowledged))` when the end was
/// answered as done.
async fn finish(
    shared: &Shared,
    life: &Life,
    end: End,
) -> Result<Option<(Instant, bool)>, &'static str> {
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let (status, body, header) = match end {
        End::Logout => {
            let latest = life.tokens.last().map(String::as_str);
            shared.post(&addr, "/auth/logout", latest, json!({})).await
        }
        End::Kick | End::Ban => {
            let admin = shared.admin_token().await;
            let (path, body) = if end == End::Kick {
                ("kick", json!({}))
            } else {
                ("ban", json!({"duration_secs": 3600}))
            };
            let path = format!("/admin/users/{}/{path}", life.user_id);
            shared.post(&addr, &path, Some(&admin), body).await
        }
    };
    let answered = Instant::now();
    let done = if end == End::Logout { 204 } else { 200 };
    if status != done {
        if end == End::Ban && !(400..500).contains(&status) {
            // No answer, or 5xx: the ban may have committed.
            shared.set_ban(&life.username, None, answered);
        }
        if status == 401 && end != End::Logout {
            shared.relogin_admin().await;
        }
        shared.count(&format!("{} not answered (status {status})", end.name()));
        return Ok(None);
    }
    shared.count(end.name());
    if end == End::Ban {
        shared.set_ban(&life.username, Some(true), answered);
    }
    let all_acked = match header {
        Some(h) => h.split_once('/').is_some_and(|(a, l)| a == l),
        None => !body["nodes"].is_null() && body["nodes"]["acked"] == body["nodes"]["live"],
    };
    Ok(Some((answered, all_acked)))
}

/// Every live node said it applied the revocation: none may accept a token of it now. A
/// node that changed state lately may have been outside the live set the answer counted.
async fn every_acknowledging_node_refuses(shared: &Shared, end: End, life: &Life) {
    let settled =
        |node: usize| shared.changed.lock().unwrap()[node].elapsed() > Duration::from_secs(3);
    for (node, addr) in shared.up_nodes().into_iter().filter(|(n, _)| settled(*n)) {
        for t in &life.tokens {
            if shared.accepts(&addr, t).await {
                shared.violation(format!(
                    "{} of {} acknowledged by every live node, yet node {node} accepted its token right after",
                    end.name(),
                    life.username
                ));
            }
        }
    }
}

async fn unban(shared: &Shared, life: &Life) -> Result<(), &'static str> {
    let (_, addr) = shared.pick_node().ok_or("no node up")?;
    let admin = shared.admin_token().await;
    let path = format!("/admin/users/{}/ban", life.user_id);
    let (status, _, _) = shared
        .send(reqwest::Method::DELETE, &addr, &path, Some(&admin), None)
        .await;
    let state = match status {
        204 => Some(false),
        400..=499 => Some(true),
        _ => None,
    };
    if status == 204 {
        shared.count("unban");
    }
    shared.set_ban(&life.username, state, Instant::now());
    Ok(())
}

/// At `answered` + the bound: no node that runs accepts any of the tokens, and every
/// socket has ended (a paused node's: by the bound after it continued).
async fn check_after_bound(shared: &Shared, end: End, life: &Life, answered: Instant) {
    let (kind, username) = (end.name(), &life.username);
    let deadline = answered + bound();
    tokio::time::sleep_until(deadline.into()).await;
    if shared.uncertain(answered) {
        return;
    }
    for (node, addr) in shared.up_nodes() {
        for t in &life.tokens {
            if shared.accepts(&addr, t).await {
                shared.violation(format!(
                    "{kind} of {username}: node {node} still accepted its token {:?} after the answer",
                    answered.elapsed()
                ));
            }
        }
    }
    for s in &life.sockets {
        let mut until = deadline;
        loop {
            if s.ended.load(Ordering::Acquire) {
                break;
            }
            match shared.paused_since(s.node, answered) {
                Some(None) => {
                    // Still paused: its sockets cannot be served either; look again.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Some(Some(continued)) if continued + bound() > until => {
                    until = continued + bound();
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
                _ => {}
            }
            shared.violation(format!(
                "{kind} of {username}: a socket on node {} still open {:?} after the answer",
                s.node,
                answered.elapsed()
            ));
            break;
        }
    }
}

async fn open_socket(
    shared: &Shared,
    node: usize,
    addr: &str,
    token: &str,
    join: bool,
) -> Option<SocketTrack> {
    let mut req = format!("ws://{addr}/ws").into_client_request().ok()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    let mut ws = tokio::time::timeout(Duration::from_secs(2), connect(req))
        .await
        .ok()?
        .ok()?;
    shared.count("socket opened");
    if join {
        use futures_util::SinkExt;
        let _ = ws
            .stream
            .send(Message::text(
                json!({"type": "join", "room": "main-hall"}).to_string(),
            ))
            .await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    tokio::spawn(async move {
        // Read until it ends (a close frame, or the connection lost with a killed node).
        while let Some(Ok(m)) = ws.stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        flag.store(true, Ordering::Release);
    });
    Some(SocketTrack { node, ended })
}
