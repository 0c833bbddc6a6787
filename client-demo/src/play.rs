//! `arena-client play`: one socket, one room, chat from stdin. Any close from the server
//! ends the process at once with that close's exit status (see `exit.rs`): the stdin
//! read never holds it back.

use std::collections::HashMap;
use std::time::Instant;

use arena_protocol::ws::{RoundPhase, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{self, Api};
use crate::exit::Exit;
use crate::human::date;

/// The commands `play` knows, as listed to the user.
pub const COMMANDS: &str = "/rooms, /join <room id>, /leave, /ping, /help, /quit";

/// What a typed line asks for.
#[derive(Debug, PartialEq)]
pub enum Input<'a> {
    Nothing,
    Chat(&'a str),
    Rooms,
    Join(&'a str),
    Leave,
    Ping,
    Help,
    Quit,
    /// A `/command` that is not one of [`COMMANDS`], or one missing its argument.
    Refused(String),
}

/// A line starting with `/` is a command; `//text` is chat starting with `/`.
pub fn parse(line: &str) -> Input<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Input::Nothing;
    }
    if let Some(chat) = line.strip_prefix("//") {
        return Input::Chat(&line[line.len() - chat.len() - 1..]);
    }
    if !line.starts_with('/') {
        return Input::Chat(line);
    }
    let (cmd, arg) = match line.split_once(char::is_whitespace) {
        Some((cmd, arg)) => (cmd, arg.trim()),
        None => (line, ""),
    };
    match (cmd, arg) {
        ("/rooms", _) => Input::Rooms,
        ("/join", "") => Input::Refused("/join needs a room id: /join <room id>".into()),
        ("/join", id) => Input::Join(id),
        ("/leave", _) => Input::Leave,
        ("/ping", _) => Input::Ping,
        ("/help", _) => Input::Help,
        ("/quit", _) => Input::Quit,
        (other, _) => Input::Refused(format!(
            "unknown command {other}, not sent; commands: {COMMANDS} (start a chat line with // to send a leading /)"
        )),
    }
}

pub async fn play(
    api: &Api,
    username: &str,
    password: &str,
    room: Option<String>,
) -> Result<(), Exit> {
    let session = api.login(username, password).await?;
    let token = session.access_token.clone();
    let room = match room {
        Some(r) => Some(r),
        None => api.rooms(&token).await?.into_iter().next().map(|r| r.id),
    };
    let mut socket = api.connect(&token).await?;
    println!(
        "connected as {} — type to chat; {COMMANDS}",
        session.user.username
    );
    if let Some(room) = &room {
        send(&mut socket, json!({"type": "join", "room": room})).await?;
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut ping_id = 0u64;
    let mut pings: HashMap<u64, Instant> = HashMap::new();
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => {
                let line = match line {
                    Ok(Some(line)) => line,
                    // The end of the input ends the session, as /quit does.
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("arena-client: stdin: {e}; still connected, reading the server only");
                        stdin_open = false;
                        continue;
                    }
                };
                match parse(&line) {
                    Input::Nothing => {}
                    Input::Quit => break,
                    Input::Help => println!("* commands: {COMMANDS}; any other line is chat"),
                    Input::Refused(why) => println!("! {why}"),
                    Input::Leave => send(&mut socket, json!({"type": "leave"})).await?,
                    Input::Join(id) => send(&mut socket, json!({"type": "join", "room": id})).await?,
                    Input::Ping => {
                        ping_id += 1;
                        pings.insert(ping_id, Instant::now());
                        send(&mut socket, json!({"type": "ping", "id": ping_id})).await?;
                    }
                    Input::Rooms => {
                        for r in api.rooms(&token).await? {
                            println!("  {}  {} ({}/{})", r.id, r.name, r.players, r.capacity);
                        }
                    }
                    Input::Chat(text) => send(&mut socket, json!({"type": "chat", "text": text})).await?,
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => show(text.as_str(), &mut pings),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(Exit::Closed { code, reason });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Exit::Lost(e.to_string())),
                None => return Err(Exit::Lost("the server ended the connection".into())),
            }
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

async fn send(socket: &mut api::Socket, v: serde_json::Value) -> Result<(), Exit> {
    socket
        .send(Message::text(v.to_string()))
        .await
        .map_err(|e| Exit::Lost(format!("send: {e}")))
}

fn show(text: &str, pings: &mut HashMap<u64, Instant>) {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(ServerMessage::Welcome {
            user,
            session_id,
            expires_at,
            ..
        }) => {
            println!(
                "* welcome {} ({}), session {session_id}; token valid until {}",
                user.username,
                user.role.as_str(),
                date(expires_at)
            )
        }
        Ok(ServerMessage::Joined { room, members, .. }) => {
            let names: Vec<_> = members.iter().map(|m| m.username.as_str()).collect();
            println!("* joined {} ({}): {}", room.name, room.id, names.join(", "))
        }
        Ok(ServerMessage::Left { room, reason }) => {
            use arena_protocol::ws::LeftReason;
            match reason {
                Some(LeftReason::Replaced) => {
                    println!("* left {room}: your newer connection took your place")
                }
                Some(LeftReason::Unavailable) => {
                    println!("* left {room}: its game stopped; /join it again later")
                }
                Some(LeftReason::Removed) => println!("* left {room}: the room no longer exists"),
                None => println!("* left {room}"),
            }
        }
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
        Ok(ServerMessage::Pong { id, server_time }) => match pings.remove(&id) {
            Some(sent) => println!(
                "* pong {id}: {:.1} ms round trip (server time {})",
                sent.elapsed().as_secs_f64() * 1000.0,
                date(server_time)
            ),
            None => println!("* pong {id} (server time {})", date(server_time)),
        },
        Ok(ServerMessage::TokenExpiring { expires_at }) => {
            println!(
                "* your token expires at {}; the server will then close this connection",
                date(expires_at)
            )
        }
        Ok(ServerMessage::Error { code, message }) => println!("! {code}: {message}"),
        Ok(ServerMessage::Round {
            round,
            phase,
            winners,
            ..
        }) => match phase {
            RoundPhase::Playing => println!("* round {round} has started"),
            RoundPhase::Pause if winners.is_empty() => {
                println!("* round {round} is over: nobody scored")
            }
            RoundPhase::Pause => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_commands_are_parsed() {
        assert_eq!(parse("  /rooms "), Input::Rooms);
        assert_eq!(parse("/join  main-hall "), Input::Join("main-hall"));
        assert_eq!(parse("/leave"), Input::Leave);
        assert_eq!(parse("/ping"), Input::Ping);
        assert_eq!(parse("/help"), Input::Help);
        assert_eq!(parse("/quit"), Input::Quit);
        assert_eq!(parse("   "), Input::Nothing);
    }

    #[test]
    fn unknown_commands_are_refused_not_chat() {
        match parse("/kick bob") {
            Input::Refused(why) => {
                assert!(why.contains("unknown command /kick"), "{why}");
                assert!(why.contains(COMMANDS), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("/join"), Input::Refused(_)));
        assert!(matches!(parse("/"), Input::Refused(_)));
        assert!(matches!(parse("/quitnow"), Input::Refused(_)));
    }

    #[test]
    fn chat_is_chat_and_a_double_slash_sends_one() {
        assert_eq!(parse(" hello there "), Input::Chat("hello there"));
        assert_eq!(parse("//shrug"), Input::Chat("/shrug"));
        assert_eq!(parse("a /slash inside"), Input::Chat("a /slash inside"));
    }
}
