//! `arena-server`: parse and check the command line, start, print the address, wait for SIGINT or
//! SIGTERM, shut down gracefully and exit 0.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use arena_server::config::Config;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    // Before anything is opened: a bad combination would otherwise panic or misbehave
    // only later, on the first request or socket that meets it.
    if let Err(problems) = config.validate() {
        for problem in problems.lines() {
            eprintln!("arena-server: invalid configuration: {problem}");
        }
        return ExitCode::from(2);
    }
    init_logging(&config.log_format);
    let server = match arena_server::app::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("arena-server: {}", e.startup_message());
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", server.addr);
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %server.addr, "serving");

    wait_for_signal().await;
    tracing::info!("shutting down");
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arena-server: shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("ARENA_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file or a log collector they
    // are noise around every field. NO_COLOR (no-color.org) turns them off there too.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
