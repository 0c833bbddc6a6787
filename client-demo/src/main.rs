//! `arena-client`: try Arena from a terminal.
//!
//! ```text
//! arena-client register --username alice --password secret-pass
//! arena-client play     --username alice --password secret-pass      # chat from stdin
//! arena-client kick     --username admin --password admin-pass --user alice --reason "spam"
//! ```
//!
//! It speaks only PROTOCOL.md, through the `arena-protocol` types, so it works against
//! any server that implements the protocol.

mod accounts;
mod api;
mod broadcast;
mod dial;
mod load;
mod nodes;
mod rooms;

use std::process::ExitCode;

use arena_protocol::ws::ServerMessage;
use arena_protocol::CloseCode;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use api::Api;

#[derive(Parser)]
#[command(name = "arena-client", version, about = "Terminal client for Arena")]
struct Cli {
    /// The server's base URL. Load scenarios take several (comma-separated, or the flag
    /// repeated) and spread over them; other commands use the first.
    #[arg(
        long,
        env = "ARENA_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_delimiter = ',',
        global = true
    )]
    server: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Login {
    #[arg(long, env = "ARENA_USERNAME")]
    username: String,
    #[arg(long, env = "ARENA_PASSWORD", hide_env_values = true)]
    password: String,
}

impl Login {
    async fn token(&self, api: &Api) -> Result<String, String> {
        Ok(api
            .login(&self.username, &self.password)
            .await?
            .access_token)
    }
}

/// An admin command's admin (who logs in) and the user it acts on.
#[derive(clap::Args, Clone)]
struct Target {
    #[command(flatten)]
    login: Login,
    /// The user's id, or the username of a connected user (a banned user is not
    /// connected: give the id).
    #[arg(long)]
    user: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account.
    Register(Login),
    /// Log in and print the session (tokens included) as JSON.
    Login(Login),
    /// List the rooms.
    Rooms(Login),
    /// Log in, open a socket, join a room and chat: each line you type is sent as chat.
    /// Commands: /rooms, /join <room id>, /leave, /ping, /quit.
    Play {
        #[command(flatten)]
        login: Login,
        /// Room id to join (default: the first room listed).
        #[arg(long)]
        room: Option<String>,
    },
    /// Admin: list live connections.
    Connections(Login),
    /// Admin: close every socket of a user with 4003 and revoke their sessions.
    Kick {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Admin: kick and refuse logins until the ban ends.
    Ban {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: Option<String>,
        /// Ban length in seconds (default: permanent).
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Load-test scenarios (the server needs --auth-rate-limit 0).
    #[command(subcommand)]
    Load(load::Scenario),
    /// Admin: make a user an admin or a player (revokes that user's sessions).
    Role {
        #[command(flatten)]
        target: Target,
        /// `admin` or `player`.
        #[arg(long)]
        role: String,
    },
    /// Admin: lift a ban.
    Unban {
        #[command(flatten)]
        target: Target,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arena-client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let first = cli.server.first().ok_or("no --server given")?;
    let api = Api::new(first)?;
    match cli.command {
        Command::Register(l) => {
            let user = api.register(&l.username, &l.password).await?;
            println!(
                "registered {} (id {})",
                user["user"]["username"].as_str().unwrap_or(""),
                user["user"]["id"].as_str().unwrap_or("")
            );
        }
        Command::Login(l) => {
            let session = api.login(&l.username, &l.password).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&session).unwrap_or_default()
            );
        }
        Command::Rooms(l) => {
            let token = l.token(&api).await?;
            for room in api.rooms(&token).await? {
                let node = room.node.as_deref().map(|n| format!("  on {n}"));
                println!(
                    "{}  {:<24} {}/{}{}",
                    room.id,
                    room.name,
                    room.players,
                    room.capacity,
                    node.unwrap_or_default()
                );
            }
        }
        Command::Play { login, room } => play(&api, &login, room).await?,
        Command::Connections(l) => {
            let token = l.token(&api).await?;
            let list = api.call("GET", "/admin/connections", &token, None).await?;
            for c in list["connections"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<16} user {}  session {}  room {}  from {}{}",
                    c["connection_id"].as_str().unwrap_or(""),
                    c["username"].as_str().unwrap_or(""),
                    c["user_id"].as_str().unwrap_or(""),
                    c["session_id"].as_str().unwrap_or(""),
                    c["room"].as_str().unwrap_or("-"),
                    c["remote_addr"].as_str().unwrap_or(""),
                    c["node"]
                        .as_str()
                        .map(|n| format!("  on {n}"))
                        .unwrap_or_default(),
                );
            }
        }
        Command::Kick { target, reason } => {
            let r = admin_call(&api, &target, "POST", "kick", json!({ "reason": reason })).await?;
            println!(
                "kicked {}: {} socket(s) closed{}",
                target.user,
                r["closed"],
                nodes_note(&r)
            );
        }
        Command::Ban {
            target,
            reason,
            duration,
        } => {
            let body = json!({"reason": reason, "duration_secs": duration});
            let r = admin_call(&api, &target, "POST", "ban", body).await?;
            println!(
                "banned {}: {} socket(s) closed{}, until {}",
                target.user,
                r["closed"],
                nodes_note(&r),
                r["banned_until"]
            );
        }
        Command::Load(scenario) => load::run(&cli.server, scenario).await?,
        Command::Role { target, role } => {
            let r = admin_call(&api, &target, "PUT", "role", json!({ "role": role })).await?;
            let verb = if r["changed"] == true {
                "is now"
            } else {
                "was already"
            };
            println!(
                "{} {verb} {}",
                target.user,
                r["user"]["role"].as_str().unwrap_or("?")
            );
        }
        Command::Unban { target } => {
            let (token, user) = (target.login.token(&api).await?, &target.user);
            api.call("DELETE", &format!("/admin/users/{user}/ban"), &token, None)
                .await?;
            println!("unbanned {user}");
        }
    }
    Ok(())
}

/// Log in as the admin, resolve `user` (id or connected username) and call
/// `/admin/users/{id}/{action}`.
async fn admin_call(
    api: &Api,
    target: &Target,
    method: &str,
    action: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let token = target.login.token(api).await?;
    let id = api.resolve_user(&token, &target.user).await?;
    api.call(
        method,
        &format!("/admin/users/{id}/{action}"),
        &token,
        Some(body),
    )
    .await
}

async fn play(api: &Api, login: &Login, room: Option<String>) -> Result<(), String> {
    let session = api.login(&login.username, &login.password).await?;
    let token = session.access_token.clone();
    let room = match room {
        Some(r) => Some(r),
        None => api.rooms(&token).await?.into_iter().next().map(|r| r.id),
    };
    let mut socket = api.connect(&token).await?;
    println!(
        "connected as {} — type to chat; /rooms /join <id> /leave /ping /quit",
        session.user.username
    );
    if let Some(room) = &room {
        send(&mut socket, json!({"type": "join", "room": room})).await?;
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut ping_id = 0u64;
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let Ok(Some(line)) = line else { break };
                let line = line.trim();
                let mut words = line.splitn(2, ' ');
                match (words.next().unwrap_or(""), words.next()) {
                    ("", _) => {}
                    ("/quit", _) => break,
                    ("/leave", _) => send(&mut socket, json!({"type": "leave"})).await?,
                    ("/join", Some(id)) => send(&mut socket, json!({"type": "join", "room": id.trim()})).await?,
                    ("/ping", _) => {
                        ping_id += 1;
                        send(&mut socket, json!({"type": "ping", "id": ping_id})).await?;
                    }
                    ("/rooms", _) => {
                        for r in api.rooms(&token).await? {
                            println!("  {}  {} ({}/{})", r.id, r.name, r.players, r.capacity);
                        }
                    }
                    _ => send(&mut socket, json!({"type": "chat", "text": line})).await?,
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => show(text.as_str()),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    println!("{}", describe_close(code, &reason));
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("connection lost: {e}")),
                None => return Err("connection closed".into()),
            }
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

async fn send(socket: &mut api::Socket, v: serde_json::Value) -> Result<(), String> {
    socket
        .send(Message::text(v.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))
}

fn show(text: &str) {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(ServerMessage::Welcome {
            user, session_id, ..
        }) => {
            println!(
                "* welcome {} ({:?}), session {session_id}",
                user.username, user.role
            )
        }
        Ok(ServerMessage::Joined { room, members, .. }) => {
            let names: Vec<_> = members.iter().map(|m| m.username.as_str()).collect();
            println!("* joined {} ({}): {}", room.name, room.id, names.join(", "))
        }
        Ok(ServerMessage::Left { room, reason }) => match reason {
            Some(why) => println!("* left {room} ({why:?})"),
            None => println!("* left {room}"),
        },
        Ok(ServerMessage::RoomMoved { room, .. }) => {
            println!(
                "* {} moved to node {}; the game starts afresh",
                room.name,
                room.node.unwrap_or_default()
            )
        }
        Ok(ServerMessage::PlayerJoined { player, .. }) => println!("* {} joined", player.username),
        Ok(ServerMessage::PlayerLeft { player, .. }) => println!("* {} left", player.username),
        Ok(ServerMessage::Chat { from, text, .. }) => println!("<{}> {text}", from.username),
        Ok(ServerMessage::Pong { id, server_time }) => {
            println!("* pong {id} (server time {server_time})")
        }
        Ok(ServerMessage::TokenExpiring { expires_at }) => {
            println!("* token expires at {expires_at}")
        }
        Ok(ServerMessage::Error { code, message }) => println!("! {code}: {message}"),
        Ok(ServerMessage::Round {
            round,
            phase,
            winners,
            ..
        }) => match phase {
            arena_protocol::ws::RoundPhase::Playing => println!("* round {round} has started"),
            arena_protocol::ws::RoundPhase::Pause if winners.is_empty() => {
                println!("* round {round} is over: nobody scored")
            }
            arena_protocol::ws::RoundPhase::Pause => {
                let names: Vec<&str> = winners.iter().map(|w| w.username.as_str()).collect();
                let score = winners.first().map_or(0, |w| w.score);
                println!(
                    "* round {round} is over: {} won with {score}",
                    names.join(" and ")
                )
            }
        },
        Ok(ServerMessage::State { .. }) | Ok(ServerMessage::Reauthed { .. }) => {}
        Err(_) => println!("? {text}"),
    }
}

fn describe_close(code: u16, reason: &str) -> String {
    let what = match CloseCode::from_code(code) {
        Some(CloseCode::SessionRevoked) => "you were logged out",
        Some(CloseCode::Kicked) => "an admin removed you",
        Some(CloseCode::TokenExpired) => "your token expired",
        Some(CloseCode::SessionReplaced) => "you logged in elsewhere",
        Some(CloseCode::GoingAway) => "the server is shutting down",
        Some(c) => c.reason(),
        None => "connection closed",
    };
    format!(
        "* closed {code}: {what}{}",
        if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        }
    )
}

/// In a cluster, how many nodes confirmed a kick or ban.
fn nodes_note(answer: &serde_json::Value) -> String {
    match (
        answer["nodes"]["acked"].as_u64(),
        answer["nodes"]["live"].as_u64(),
    ) {
        (Some(acked), Some(live)) => format!(" on {acked} of {live} nodes"),
        _ => String::new(),
    }
}
