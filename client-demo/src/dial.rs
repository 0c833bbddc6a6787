//! Opening many sockets from one process: spread over several loopback source addresses
//! (one address has only ~28k ephemeral ports), and say plainly when the process runs out
//! of file descriptors instead of failing with an obscure error. It dials any of several
//! servers; which one is the caller's choice (see `nodes.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::MaybeTlsStream;

use crate::api::Socket;

/// Connections per source address before moving to the next (the kernel offers
/// 32768–60999 here, and TIME_WAIT keeps some of them busy after a run).
const PER_SOURCE: usize = 25_000;

pub struct Dialer {
    /// Each server's ws:// URL and address.
    servers: Vec<(String, SocketAddr)>,
    sources: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Dialer {
    /// `bases` are the servers' http:// URLs; `sources` the local addresses to dial from
    /// (empty: 127.0.0.1, 127.0.0.2, … as needed when the servers are on loopback).
    /// Ports are taken per source address whatever the server, so several servers do
    /// not give more sockets per source.
    pub fn new(bases: &[String], sources: &[IpAddr]) -> Result<Dialer, String> {
        let mut servers = Vec::with_capacity(bases.len());
        for base in bases {
            let hostport = base
                .trim_end_matches('/')
                .strip_prefix("http://")
                .ok_or("load scenarios need an http:// server URL")?;
            let server: SocketAddr = hostport.parse().map_err(|_| {
                format!("load scenarios need an IP:port server address, not {hostport:?}")
            })?;
            servers.push((format!("ws://{hostport}/ws"), server));
        }
        if servers.is_empty() {
            return Err("no server to dial".into());
        }
        let all_loopback = servers.iter().all(|(_, s)| s.ip().is_loopback());
        let sources = if !sources.is_empty() {
            sources.to_vec()
        } else if all_loopback {
            (1..=8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect()
        } else {
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        };
        Ok(Dialer {
            servers,
            sources,
            next: AtomicUsize::new(0),
        })
    }

    /// Open an authenticated socket (token in the Authorization header) to server
    /// number `server` (taken modulo their count).
    pub async fn connect(&self, server: usize, token: &str) -> Result<Socket, String> {
        let (url, addr) = &self.servers[server % self.servers.len()];
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let source = self.sources[(n / PER_SOURCE) % self.sources.len()];
        let socket = TcpSocket::new_v4().map_err(explain)?;
        socket.bind(SocketAddr::new(source, 0)).map_err(explain)?;
        let stream = socket.connect(*addr).await.map_err(explain)?;
        let _ = stream.set_nodelay(true);
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        req.headers_mut().insert("authorization", auth);
        // Small buffers: the load client holds thousands of sockets too.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        match tokio_tungstenite::client_async_with_config(
            req,
            MaybeTlsStream::Plain(stream),
            Some(config),
        )
        .await
        {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                Err(format!("upgrade refused: HTTP {}", resp.status()))
            }
            Err(e) => Err(format!("handshake failed: {e}")),
        }
    }
}

/// Turn "too many open files" into an explanation with the limit.
fn explain(e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => format!(
            "this process hit its file-descriptor limit ({}): open fewer sockets, or raise `ulimit -n`",
            fd_limit().map_or_else(|| "unknown".into(), |n| n.to_string())
        ),
        Some(99) => "no free local port on the source address: add source addresses \
                     (--source 127.0.0.2,...) or wait for TIME_WAIT to clear"
            .into(),
        _ => e.to_string(),
    }
}

/// This process's open-files limit, from /proc (Linux).
pub fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
