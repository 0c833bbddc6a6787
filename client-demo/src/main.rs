//! `arena-client`: try Arena from a terminal.
//!
//! ```text
//! arena-client register --username alice --password secret-pass
//! arena-client play     --username alice --password secret-pass      # chat from stdin
//! arena-client kick     --admin admin --admin-password admin-pass --user alice --reason "spam"
//! ```
//!
//! It speaks only PROTOCOL.md, through the `arena-protocol` types, so it works against
//! any server that implements the protocol. Exit statuses: see `exit.rs`.

mod accounts;
mod admin;
mod api;
mod broadcast;
mod dial;
mod exit;
mod human;
mod load;
mod nodes;
mod play;
mod rooms;

use std::io::Write;

use clap::{Parser, Subcommand};

use admin::{AdminLogin, Target};
use api::Api;
use exit::Exit;

#[derive(Parser)]
#[command(
    name = "arena-client",
    version,
    about = "Terminal client for Arena: play, chat, admin commands and load scenarios",
    after_help = exit::HELP
)]
struct Cli {
    /// The server's base URL. Load scenarios take several (comma-separated, or the flag
    /// repeated) and spread over them; other commands use the first.
    #[arg(
        long,
        env = "ARENA_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_delimiter = ',',
        global = true,
        value_name = "URL"
    )]
    server: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

/// A player's own account.
#[derive(clap::Args, Clone)]
struct Login {
    /// Your username.
    #[arg(long, env = "ARENA_USERNAME", value_name = "NAME")]
    username: String,
    /// Your password.
    #[arg(
        long,
        env = "ARENA_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
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

#[derive(Subcommand)]
enum Command {
    /// Create an account.
    Register(Login),
    /// Log in and print the session (tokens included) as JSON.
    Login(Login),
    /// List the rooms.
    Rooms(Login),
    /// Log in, open a socket, join a room and chat: each line you type is sent as chat.
    ///
    /// Commands: /rooms, /join <room id>, /leave, /ping, /help, /quit (any other line
    /// starting with / is refused; start a chat line with // to send a leading /). Any
    /// close from the server ends the client at once with its exit status (below).
    #[command(after_help = exit::HELP)]
    Play {
        #[command(flatten)]
        login: Login,
        /// Room id to join (default: the first room listed).
        #[arg(long, value_name = "ROOM_ID")]
        room: Option<String>,
    },
    /// Admin: list live connections.
    Connections(AdminLogin),
    /// Admin: close every socket of a user with 4003 and revoke their sessions.
    Kick {
        #[command(flatten)]
        admin: AdminLogin,
        #[command(flatten)]
        target: Target,
        /// Why: sent to the user as the close frame's reason.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Admin: kick and refuse logins until the ban ends.
    Ban {
        #[command(flatten)]
        admin: AdminLogin,
        #[command(flatten)]
        target: Target,
        /// Why: sent to the user as the close frame's reason, and kept with the ban.
        #[arg(long)]
        reason: Option<String>,
        /// Ban length in seconds (default: permanent).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Admin: lift a ban.
    Unban {
        #[command(flatten)]
        admin: AdminLogin,
        #[command(flatten)]
        target: Target,
    },
    /// Admin: make a user an admin or a player (revokes that user's sessions).
    Role {
        #[command(flatten)]
        admin: AdminLogin,
        #[command(flatten)]
        target: Target,
        /// The new role: `admin` or `player`.
        #[arg(long, value_parser = ["admin", "player"])]
        role: String,
    },
    /// Load-test scenarios (the server needs --auth-rate-limit 0 for large runs).
    #[command(subcommand)]
    Load(load::Scenario),
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("arena-client: cannot start: {e}");
            std::process::exit(i32::from(exit::ERROR));
        }
    };
    let status = match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("arena-client: {}", e.message());
            e.status()
        }
    };
    // Do not wait for the runtime's threads: a `play` session's stdin read sits on a
    // blocking thread that nothing can interrupt, and dropping the runtime would wait
    // for it (that is, for the next Enter).
    runtime.shutdown_background();
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(status));
}

async fn run(cli: Cli) -> Result<(), Exit> {
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
        Command::Play { login, room } => {
            play::play(&api, &login.username, &login.password, room).await?
        }
        Command::Connections(admin) => admin::connections(&api, &admin).await?,
        Command::Kick {
            admin,
            target,
            reason,
        } => admin::kick(&api, &admin, &target, reason).await?,
        Command::Ban {
            admin,
            target,
            reason,
            duration,
        } => admin::ban(&api, &admin, &target, reason, duration).await?,
        Command::Unban { admin, target } => admin::unban(&api, &admin, &target).await?,
        Command::Role {
            admin,
            target,
            role,
        } => admin::role(&api, &admin, &target, &role).await?,
        Command::Load(scenario) => load::run(&cli.server, scenario).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag of every subcommand says what it is for.
    #[test]
    fn every_flag_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "arena-client", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_admin_command_takes_exactly_one_target() {
        let base = [
            "arena-client",
            "unban",
            "--admin",
            "a",
            "--admin-password",
            "p",
        ];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            Cli::try_parse_from(args)
        };
        assert!(with(&["--user", "bob"]).is_ok());
        assert!(with(&["--user-id", "u_1"]).is_ok());
        assert!(with(&[]).is_err());
        assert!(with(&["--user", "bob", "--user-id", "u_1"]).is_err());
    }
}
