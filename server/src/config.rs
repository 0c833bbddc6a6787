//! The server's command line: every option is a flag and an `ARENA_*` environment
//! variable (PROTOCOL.md, "Running the server"). Nothing here does I/O; [`Config`] is a
//! plain value the rest of the server reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::auth::keys::SigningAlgorithm;

#[derive(Debug, Clone, Parser)]
#[command(name = "arena-server", version, about = "Arena real-time game server")]
pub struct Config {
    /// Address to serve on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "ARENA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where the embedded database and the generated signing secret live.
    #[arg(long, env = "ARENA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Another database instead of the embedded SQLite one (sqlite:// or postgres://).
    #[arg(long, env = "ARENA_DATABASE_URL")]
    pub database_url: Option<String>,

    /// How long a request waits for a database connection before it is answered 503
    /// `unavailable`, in ms.
    #[arg(long, env = "ARENA_DATABASE_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub database_timeout_ms: u64,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "ARENA_ACCESS_TTL", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub access_ttl: u64,

    /// Refresh-token lifetime in seconds (default 30 days).
    #[arg(long, env = "ARENA_REFRESH_TTL", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(u64).range(1..=366 * 86_400))]
    pub refresh_ttl: u64,

    /// Absolute session lifetime since the user typed their password (default 30 days):
    /// past it, refresh fails and the user must log in again.
    #[arg(long, env = "ARENA_SESSION_MAX_AGE", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_max_age: u64,

    /// Seconds after a rotation during which the previous refresh token, presented again,
    /// returns the same new pair instead of counting as theft (0: no grace).
    #[arg(long, env = "ARENA_REFRESH_GRACE_SECS", default_value_t = 10)]
    pub refresh_grace_secs: u64,

    /// A new login revokes the user's other sessions and closes their sockets with 4004.
    #[arg(long, env = "ARENA_SINGLE_SESSION", default_value_t = false)]
    pub single_session: bool,

    /// Live sessions one user may hold; a login beyond it revokes the user's oldest
    /// session (its sockets close with 4001).
    #[arg(long, env = "ARENA_MAX_SESSIONS_PER_USER", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_sessions_per_user: u32,

    /// A server that cannot confirm, for this long, that it has applied every revocation
    /// (it can reach neither the backplane nor the database's revocation log) answers
    /// authenticated requests and upgrades with 503 until it has caught up: fail closed.
    /// 0 keeps serving (fail open). Default: 5 with `--redis-url` (a node of a cluster
    /// must not serve tokens revoked elsewhere), 0 without (a lone server has nobody
    /// else's revocations to miss).
    #[arg(long, env = "ARENA_CLUSTER_STALE_SECS",
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub cluster_stale_secs: Option<u64>,

    /// The Redis backplane between the nodes of a cluster (`redis://host:port`): every
    /// revocation is published there and acknowledged by every live node before the
    /// answer. Needs a shared `--database-url`.
    #[arg(long, env = "ARENA_REDIS_URL")]
    pub redis_url: Option<String>,

    /// This node's name, unique in the deployment (default: generated at start).
    #[arg(long, env = "ARENA_NODE_ID")]
    pub node_id: Option<String>,

    /// How long a revocation waits for the other live nodes to confirm it, in ms.
    #[arg(long, env = "ARENA_CLUSTER_ACK_TIMEOUT_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub cluster_ack_timeout_ms: u64,

    /// How often a node announces itself on the backplane, in ms. A node that stops is
    /// no longer counted as live (nor waited for) three heartbeats after its last one.
    #[arg(long, env = "ARENA_CLUSTER_HEARTBEAT_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub cluster_heartbeat_ms: u64,

    /// How often the revocation log in the database is read for revocations made by
    /// other servers sharing it, in ms.
    #[arg(long, env = "ARENA_REVOCATION_POLL_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub revocation_poll_ms: u64,

    /// Seconds between sweeps that delete ended sessions, expired refresh tokens and
    /// ended bans from the database.
    #[arg(long, env = "ARENA_DB_PRUNE_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub db_prune_secs: u64,

    /// Seconds before a socket's token expires that it is sent `token_expiring`.
    #[arg(long, env = "ARENA_TOKEN_EXPIRING_SECS", default_value_t = 60)]
    pub token_expiring_secs: u64,

    /// Comma-separated Origins allowed for cookie-authenticated requests and sockets.
    /// Empty means the server's own origin(s).
    #[arg(long, env = "ARENA_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Create (or promote) this admin at start; needs --admin-password.
    #[arg(long, env = "ARENA_ADMIN_USERNAME", requires = "admin_password")]
    pub admin_username: Option<String>,

    #[arg(
        long,
        env = "ARENA_ADMIN_PASSWORD",
        requires = "admin_username",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,

    /// Login and register attempts per minute per client address (an IPv6 /64 counts
    /// as one); login attempts per minute per username from one client address, and
    /// per known device (0 turns these limits off).
    #[arg(long, env = "ARENA_AUTH_RATE_LIMIT", default_value_t = 30)]
    pub auth_rate_limit: u32,

    /// Login attempts per minute per username from all addresses together, for logins
    /// without a known-device token (a login with one is not charged here, so guessing
    /// from many addresses cannot lock the owner out of a device they used before).
    /// Only in effect while --auth-rate-limit is.
    #[arg(long, env = "ARENA_LOGIN_USER_RATE_LIMIT", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_user_rate_limit: u32,

    /// Failed logins in a row from one (username, client address), or one known device,
    /// before each further attempt must wait: 1 s, then 2 s, 4 s, ... up to
    /// --login-backoff-max-secs. Only in effect while --auth-rate-limit is.
    #[arg(long, env = "ARENA_LOGIN_BACKOFF_FREE", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub login_backoff_free: u32,

    /// The longest wait between failed logins from one (username, client address) or one
    /// known device, in seconds; after twice this long without a failure it starts over.
    #[arg(long, env = "ARENA_LOGIN_BACKOFF_MAX_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_backoff_max_secs: u64,

    /// Days a known-device token (given with every successful login) stays valid.
    #[arg(long, env = "ARENA_DEVICE_TOKEN_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub device_token_days: u32,

    /// Refresh attempts per minute per client address (0 turns the limit off). A
    /// client refreshes a few times an hour; many users behind one address share this.
    #[arg(long, env = "ARENA_REFRESH_RATE_LIMIT", default_value_t = 300)]
    pub refresh_rate_limit: u32,

    /// Threads that hash passwords (Argon2id, 19 MiB each while busy): at most this many
    /// hashes run at once. 0: one per core.
    #[arg(long, env = "ARENA_PASSWORD_HASH_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=256))]
    pub password_hash_threads: u32,

    /// Password hashes (logins, registrations) that may wait for a hashing thread; one
    /// more is answered 503 `unavailable` with `Retry-After` at once.
    #[arg(long, env = "ARENA_PASSWORD_HASH_QUEUE", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub password_hash_queue: u32,

    /// Open sockets one user may hold.
    #[arg(long, env = "ARENA_MAX_SOCKETS_PER_USER", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets_per_user: u32,

    /// Messages per second a socket may send, with a burst of twice that (0: no limit).
    #[arg(long, env = "ARENA_WS_RATE_LIMIT", default_value_t = 60)]
    pub ws_rate_limit: u32,

    /// Issuer (`iss`) put in and required of every access token.
    #[arg(long, env = "ARENA_JWT_ISSUER", default_value = "arena")]
    pub jwt_issuer: String,

    /// Audience (`aud`) put in and required of every access token.
    #[arg(long, env = "ARENA_JWT_AUDIENCE", default_value = "arena")]
    pub jwt_audience: String,

    /// Token signing algorithm for new tokens. Keys live in `<data>/signing-keys.json`;
    /// changing the algorithm rotates to a new key.
    #[arg(long, env = "ARENA_JWT_ALGORITHM", value_enum, default_value = "HS256")]
    pub jwt_algorithm: SigningAlgorithm,

    /// Start signing with a new key; tokens signed by the previous one stay valid until
    /// they expire.
    #[arg(long, env = "ARENA_ROTATE_SIGNING_KEY", default_value_t = false)]
    pub rotate_signing_key: bool,

    /// A fixed HMAC signing secret (at least 32 bytes) instead of the generated keyring,
    /// for servers that must share one key without sharing a data dir.
    #[arg(long, env = "ARENA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Clock-skew leeway for `exp`/`nbf`, in seconds.
    #[arg(long, env = "ARENA_JWT_LEEWAY", default_value_t = 5)]
    pub jwt_leeway: u64,

    /// Mark the cookie `Secure` (set when the server sits behind TLS).
    #[arg(long, env = "ARENA_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Time a client has to send a request's headers before its connection is closed
    /// (slowloris), in ms.
    #[arg(long, env = "ARENA_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Time an accepted WebSocket upgrade has to complete before its place in the
    /// registry is released (checked every 30 s), in ms.
    #[arg(long, env = "ARENA_UPGRADE_TIMEOUT_MS", default_value_t = 10_000)]
    pub upgrade_timeout_ms: u64,

    /// HTTP connections served at once (further clients wait to be accepted).
    #[arg(long, env = "ARENA_MAX_CONNECTIONS", default_value_t = 19_000)]
    pub max_connections: usize,

    /// HTTP connections one client address (an IPv6 /64 counts as one) may hold at once;
    /// one more is closed at once. WebSockets leave this count with their upgrade.
    #[arg(
        long,
        env = "ARENA_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1_024
    )]
    pub max_connections_per_address: usize,

    /// Open WebSockets the server holds at once; one more is refused with 503.
    #[arg(long, env = "ARENA_MAX_SOCKETS", default_value_t = 19_000)]
    pub max_sockets: usize,

    /// Seconds between server pings on an idle socket; a socket that sends nothing for
    /// two intervals is closed as dead (half-open TCP). 0 turns heartbeats off.
    #[arg(long, env = "ARENA_HEARTBEAT_SECS", default_value_t = 30)]
    pub heartbeat_secs: u64,

    /// Invalid frames in a row a socket may send before it is closed with 4000.
    #[arg(long, env = "ARENA_MAX_INVALID_FRAMES", default_value_t = 10)]
    pub max_invalid_frames: u32,

    /// Separate address for `GET /metrics` (it is also served on the main address
    /// unless this is set).
    #[arg(long, env = "ARENA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Largest HTTP request body, in bytes.
    #[arg(long, env = "ARENA_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Largest WebSocket message (and frame), in bytes.
    #[arg(long, env = "ARENA_MAX_WS_MESSAGE_BYTES", default_value_t = 4 * 1024)]
    pub max_ws_message_bytes: usize,

    /// Per-socket read buffer, in bytes. tungstenite allocates it with the socket and
    /// keeps it, so every idle socket pays for it (its 128 KiB default would be most of
    /// the server's memory). An input frame is under 100 bytes and a chat line rarely
    /// over a few hundred; a larger message is still read whole (up to the message
    /// limit), in several reads.
    #[arg(long, env = "ARENA_WS_READ_BUFFER_BYTES", default_value_t = 512)]
    pub ws_read_buffer_bytes: usize,

    /// Bytes of outgoing frames gathered before a write; a batch of queued frames is
    /// written with one flush. (0: every frame is written at once.)
    #[arg(long, env = "ARENA_WS_WRITE_BUFFER_BYTES", default_value_t = 8 * 1024)]
    pub ws_write_buffer_bytes: usize,

    /// Frames queued for one socket before it is closed as too slow (1008).
    #[arg(long, env = "ARENA_WS_OUTBOUND_QUEUE", default_value_t = 256)]
    pub ws_outbound_queue: usize,

    /// Bytes of unsent data one socket may hold before it is closed as too slow.
    #[arg(long, env = "ARENA_WS_MAX_WRITE_BUFFER_BYTES", default_value_t = 256 * 1024)]
    pub ws_max_write_buffer_bytes: usize,

    /// How long one frame may take to be written before the socket is closed as too
    /// slow to read (1008), in ms.
    #[arg(long, env = "ARENA_WS_SEND_TIMEOUT_MS", default_value_t = 5_000)]
    pub ws_send_timeout_ms: u64,

    /// How long a revocation waits for each socket to send its close frame, in ms.
    #[arg(long, env = "ARENA_CLOSE_TIMEOUT_MS", default_value_t = 2_000)]
    pub close_timeout_ms: u64,

    /// After the server sent a socket its close frame: how long it keeps reading (and
    /// discarding) what the client still sends, waiting for the client's close reply,
    /// before it drops the connection, in ms. Dropping a connection with unread input
    /// makes the kernel send a reset, which a client still sending sees as a network
    /// error instead of the close code.
    #[arg(long, env = "ARENA_WS_CLOSE_LINGER_MS", default_value_t = 2_000)]
    pub ws_close_linger_ms: u64,

    /// When chat lines reach the room's members: `tick` (with the next tick's state, so a
    /// socket gets one write per tick; chat waits up to one tick, 50 ms at 20 Hz) or
    /// `immediate` (a write of its own as soon as it is said).
    #[arg(long, env = "ARENA_CHAT_DELIVERY", value_enum, default_value = "tick")]
    pub chat_delivery: crate::game::room::ChatDelivery,

    /// Seconds a round is played before its winner is announced.
    #[arg(long, env = "ARENA_ROUND_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub round_secs: u64,

    /// Seconds between a round's end (the winner banner) and the next round.
    #[arg(long, env = "ARENA_ROUND_PAUSE_SECS", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub round_pause_secs: u64,

    /// Game ticks per second in every room.
    #[arg(long, env = "ARENA_TICK_HZ", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=120))]
    pub tick_hz: u32,

    /// Milliseconds a room's ownership lasts in a cluster without renewal (renewed every
    /// third of it). A room whose node dies runs on another node within this and a second.
    #[arg(long, env = "ARENA_ROOM_LEASE_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(300..=60_000))]
    pub room_lease_ms: u64,

    /// Rooms that may exist at once.
    #[arg(long, env = "ARENA_MAX_ROOMS", default_value_t = 1_000)]
    pub max_rooms: usize,

    /// Seconds a room a player created may stay empty before it is removed ("Main Hall",
    /// created at start, stays).
    #[arg(long, env = "ARENA_ROOM_IDLE_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub room_idle_secs: u64,

    /// Rooms one user may have created that still exist.
    #[arg(long, env = "ARENA_MAX_ROOMS_PER_USER", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms_per_user: u32,

    /// Rooms one user may create per minute (0 turns the limit off).
    #[arg(long, env = "ARENA_ROOM_CREATE_RATE", default_value_t = 10)]
    pub room_create_rate: u32,

    /// Directory of the browser client served at `/`.
    #[arg(long, env = "ARENA_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Log format: `text` or `json`.
    #[arg(long, env = "ARENA_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    pub log_format: String,

    // Connection deadlines beyond the header timeout: with them every phase of an HTTP
    // connection is bounded (see `serve`).
    /// Time a request body has, in total, to arrive once its headers are in (a body
    /// trickled byte by byte does not extend it), and a response body to be taken by a
    /// slow reader, in ms. A late request body is answered 408 and its connection closed.
    #[arg(long, env = "ARENA_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,

    /// Time a connection may wait between requests (HTTP/1 keep-alive, HTTP/2 with no
    /// open stream) before it is closed, in ms. An HTTP/1 connection waiting for its next
    /// request is also bound by --header-timeout-ms: the shorter one applies to it.
    #[arg(long, env = "ARENA_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Connections served at once on --metrics-listen.
    #[arg(long, env = "ARENA_METRICS_MAX_CONNECTIONS", default_value_t = 64)]
    pub metrics_max_connections: usize,
}

/// Below this, reading a frame header alone could take several reads.
const MIN_WS_READ_BUFFER_BYTES: usize = 64;

/// The longest any time flag may be. Far beyond any sane setting, and far enough from
/// the end of time that adding it to an `Instant` cannot overflow (which panics).
const MAX_MS: u64 = 7 * 86_400_000;
/// The smallest `--max-body-bytes`: a register or login body at the protocol's longest
/// username and password (128 characters of up to 4 bytes each) must fit.
pub const MIN_BODY_BYTES: usize = 1024;
/// The smallest `--max-ws-message-bytes`: a `reauth` frame carries an access token.
pub const MIN_WS_MESSAGE_BYTES: usize = 1024;
/// The largest `--jwt-leeway`: more is not clock skew but tokens that do not expire.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// The longest `--session-max-age` (10 years); it is stored as signed seconds.
pub const MAX_SESSION_AGE_SECS: u64 = 3_650 * 86_400;

impl Config {
    /// `--cluster-stale-secs` as in force: given, or the default for the mode.
    pub fn stale_secs(&self) -> u64 {
        self.cluster_stale_secs
            .unwrap_or(if self.redis_url.is_some() { 5 } else { 0 })
    }

    /// Refuse, before anything is opened or bound, every combination of flags that would
    /// make the server panic or misbehave later (clap checks each value alone; this checks
    /// what clap cannot: zeros, combinations, and what our dependencies assert). Every
    /// problem is listed, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut at_least_one = |flag: &str, value: usize| {
            if value == 0 {
                problems.push(format!("{flag} must be at least 1"));
            }
        };
        at_least_one("--max-connections", self.max_connections);
        at_least_one(
            "--max-connections-per-address",
            self.max_connections_per_address,
        );
        at_least_one("--max-sockets", self.max_sockets);
        // tokio's bounded channel panics on a capacity of 0.
        at_least_one("--ws-outbound-queue", self.ws_outbound_queue);
        at_least_one("--max-rooms", self.max_rooms);
        at_least_one("--metrics-max-connections", self.metrics_max_connections);

        if self.ws_read_buffer_bytes < MIN_WS_READ_BUFFER_BYTES {
            problems.push(format!(
                "--ws-read-buffer-bytes ({}) must be at least {MIN_WS_READ_BUFFER_BYTES}",
                self.ws_read_buffer_bytes
            ));
        }
        // tungstenite asserts this on every upgrade: each one would panic.
        if self.ws_write_buffer_bytes >= self.ws_max_write_buffer_bytes {
            problems.push(format!(
                "--ws-write-buffer-bytes ({}) must be below --ws-max-write-buffer-bytes ({})",
                self.ws_write_buffer_bytes, self.ws_max_write_buffer_bytes
            ));
        }
        if self.max_ws_message_bytes < MIN_WS_MESSAGE_BYTES {
            problems.push(format!(
                "--max-ws-message-bytes ({}) must be at least {MIN_WS_MESSAGE_BYTES}: a \
                 `reauth` message carries a whole access token",
                self.max_ws_message_bytes
            ));
        }
        if self.max_body_bytes < MIN_BODY_BYTES {
            problems.push(format!(
                "--max-body-bytes ({}) must be at least {MIN_BODY_BYTES}: a login body must fit",
                self.max_body_bytes
            ));
        }

        // A zero deadline fails every request or socket; a huge one overflows `Instant`.
        for (flag, ms) in [
            ("--header-timeout-ms", self.header_timeout_ms),
            ("--body-timeout-ms", self.body_timeout_ms),
            ("--idle-timeout-ms", self.idle_timeout_ms),
            ("--upgrade-timeout-ms", self.upgrade_timeout_ms),
            ("--ws-send-timeout-ms", self.ws_send_timeout_ms),
            ("--close-timeout-ms", self.close_timeout_ms),
            ("--ws-close-linger-ms", self.ws_close_linger_ms),
            ("--database-timeout-ms", self.database_timeout_ms),
            (
                "--db-prune-secs (in ms)",
                self.db_prune_secs.saturating_mul(1000),
            ),
        ] {
            if !(1..=MAX_MS).contains(&ms) {
                problems.push(format!("{flag} ({ms}) must be between 1 and {MAX_MS}"));
            }
        }
        let stale_ms = self.stale_secs().saturating_mul(1000);
        if stale_ms > 0 {
            // Reading the log to its end is what confirms a node is current.
            let confirmation = ("--revocation-poll-ms", self.revocation_poll_ms);
            for (flag, ms) in [confirmation] {
                if ms.saturating_mul(2) > stale_ms {
                    problems.push(format!(
                        "{flag} ({ms}) must be at most half of --cluster-stale-secs ({} s): \
                         it is how a node confirms it is current",
                        self.stale_secs()
                    ));
                }
            }
        }
        if self.redis_url.is_some() && self.database_url.is_none() {
            problems.push(
                "--redis-url needs --database-url: the nodes of a cluster share one database \
                 (PostgreSQL), which holds the revocation log every node catches up from"
                    .to_string(),
            );
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                problems.push(format!(
                    "--redis-url ({url:?}) must start with redis:// or rediss://"
                ));
            }
        }
        if let Some(id) = &self.node_id {
            if !crate::cluster::valid_node_id(id) {
                problems.push(format!(
                    "--node-id ({id:?}) must be 1-64 of A-Z, a-z, 0-9, '.', '_' and '-'"
                ));
            }
        }
        if self.heartbeat_secs > MAX_MS / 1000 {
            problems.push(format!(
                "--heartbeat-secs ({}) must be at most {} (0 turns heartbeats off)",
                self.heartbeat_secs,
                MAX_MS / 1000
            ));
        }

        // Token timings. (`--token-expiring-secs` at or above `--access-ttl` is allowed:
        // every socket is warned at once, which short-lived test setups rely on.)
        if self.jwt_leeway > MAX_LEEWAY_SECS {
            problems.push(format!(
                "--jwt-leeway ({}) must be at most {MAX_LEEWAY_SECS}: past that, expired \
                 tokens keep working; fix the clocks instead",
                self.jwt_leeway
            ));
        }
        if self.refresh_grace_secs >= self.refresh_ttl {
            problems.push(format!(
                "--refresh-grace-secs ({}) must be below --refresh-ttl ({}): a reused refresh \
                 token would never count as theft",
                self.refresh_grace_secs, self.refresh_ttl
            ));
        }
        if self.session_max_age > MAX_SESSION_AGE_SECS {
            problems.push(format!(
                "--session-max-age ({}) must be at most {MAX_SESSION_AGE_SECS}",
                self.session_max_age
            ));
        }
        for (flag, value) in [
            ("--jwt-issuer", &self.jwt_issuer),
            ("--jwt-audience", &self.jwt_audience),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{flag} must not be empty"));
            }
        }

        // Origins are compared exactly with the browser's `Origin` header: anything that
        // is not `scheme://host[:port]` would silently match nothing.
        for origin in &self.allowed_origins {
            let origin = origin.trim().trim_end_matches('/');
            if !origin.is_empty() && !is_origin(origin) {
                problems.push(format!(
                    "--allowed-origins: {origin:?} is not an origin such as \
                     https://game.example or http://localhost:8080 (no path, no wildcard)"
                ));
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    pub fn ws_send_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_send_timeout_ms)
    }

    pub fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout_ms)
    }

    /// The password hashing threads: `--password-hash-threads`, or one per core.
    pub fn password_hash_threads(&self) -> usize {
        match self.password_hash_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n as usize,
        }
    }

    pub fn ws_close_linger(&self) -> Duration {
        Duration::from_millis(self.ws_close_linger_ms)
    }

    /// The allow-list for cookie-authenticated requests: the configured list, or by
    /// default the origins a browser uses to reach the bound address.
    pub fn effective_origins(&self, bound: SocketAddr) -> Vec<String> {
        let configured: Vec<String> = self
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if !configured.is_empty() {
            return configured;
        }
        let port = bound.port();
        let mut own = vec![format!("http://{bound}")];
        if bound.ip().is_loopback() || bound.ip().is_unspecified() {
            own.push(format!("http://localhost:{port}"));
            own.push(format!("http://127.0.0.1:{port}"));
        }
        own.dedup();
        own
    }
}

/// `http://` or `https://`, a host, an optional port, and nothing else.
fn is_origin(value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_protocol() {
        let c = Config::try_parse_from(["arena-server"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.access_ttl, 900);
        assert_eq!(c.refresh_ttl, 30 * 86_400);
        assert_eq!(c.auth_rate_limit, 30);
        assert_eq!(c.max_sockets_per_user, 16);
        assert_eq!(c.ws_rate_limit, 60);
    }

    #[test]
    fn default_origins_are_own() {
        let c = Config::try_parse_from(["arena-server"]).unwrap();
        let o = c.effective_origins("127.0.0.1:9000".parse().unwrap());
        assert!(o.contains(&"http://127.0.0.1:9000".to_string()));
        assert!(o.contains(&"http://localhost:9000".to_string()));
    }

    #[test]
    fn origins_list_splits() {
        let c = Config::try_parse_from([
            "arena-server",
            "--allowed-origins",
            "https://a.example, https://b.example/",
        ])
        .unwrap();
        assert_eq!(
            c.effective_origins("127.0.0.1:1".parse().unwrap()),
            vec![
                "https://a.example".to_string(),
                "https://b.example".to_string()
            ]
        );
    }

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["arena-server"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(parse(&[]).validate(), Ok(()));
    }

    #[test]
    fn bad_combinations_are_refused_naming_the_flag() {
        for (args, flag) in [
            (&["--max-connections", "0"][..], "--max-connections"),
            (&["--max-sockets", "0"], "--max-sockets"),
            (&["--ws-outbound-queue", "0"], "--ws-outbound-queue"),
            (&["--max-rooms", "0"], "--max-rooms"),
            (
                &["--metrics-max-connections", "0"],
                "--metrics-max-connections",
            ),
            (
                &["--ws-write-buffer-bytes", "262144"],
                "--ws-write-buffer-bytes",
            ),
            (
                &[
                    "--ws-write-buffer-bytes",
                    "10",
                    "--ws-max-write-buffer-bytes",
                    "5",
                ],
                "--ws-write-buffer-bytes",
            ),
            (&["--max-ws-message-bytes", "100"], "--max-ws-message-bytes"),
            (&["--max-body-bytes", "0"], "--max-body-bytes"),
            (&["--header-timeout-ms", "0"], "--header-timeout-ms"),
            (&["--body-timeout-ms", "0"], "--body-timeout-ms"),
            (&["--idle-timeout-ms", "0"], "--idle-timeout-ms"),
            (&["--upgrade-timeout-ms", "0"], "--upgrade-timeout-ms"),
            (&["--ws-send-timeout-ms", "0"], "--ws-send-timeout-ms"),
            (&["--close-timeout-ms", "0"], "--close-timeout-ms"),
            (
                &["--database-timeout-ms", "18446744073709551615"],
                "--database-timeout-ms",
            ),
            (
                &["--db-prune-secs", "18446744073709551615"],
                "--db-prune-secs",
            ),
            (
                &["--cluster-stale-secs", "1", "--revocation-poll-ms", "1000"],
                "--revocation-poll-ms",
            ),
            (
                &["--idle-timeout-ms", "18446744073709551615"],
                "--idle-timeout-ms",
            ),
            (
                &["--heartbeat-secs", "18446744073709551615"],
                "--heartbeat-secs",
            ),
            (&["--jwt-leeway", "9223372036854775808"], "--jwt-leeway"),
            (
                &["--refresh-ttl", "10", "--refresh-grace-secs", "10"],
                "--refresh-grace-secs",
            ),
            (
                &["--session-max-age", "18446744073709551615"],
                "--session-max-age",
            ),
            (&["--jwt-issuer", " "], "--jwt-issuer"),
            (&["--allowed-origins", "*"], "--allowed-origins"),
            (
                &["--allowed-origins", "https://a.example/app"],
                "--allowed-origins",
            ),
            (&["--allowed-origins", "a.example"], "--allowed-origins"),
        ] {
            let problems = parse(args)
                .validate()
                .expect_err(&format!("{args:?} passed"));
            assert!(problems.contains(flag), "{args:?}: {problems}");
        }
    }

    #[test]
    fn every_problem_is_listed() {
        let problems = parse(&["--max-connections", "0", "--max-sockets", "0"])
            .validate()
            .unwrap_err();
        assert_eq!(problems.lines().count(), 2, "{problems}");
    }

    #[test]
    fn edge_values_that_work_pass() {
        let c = parse(&[
            "--heartbeat-secs",
            "0",
            "--refresh-grace-secs",
            "0",
            "--ws-write-buffer-bytes",
            "0",
            "--max-ws-message-bytes",
            "1024",
            "--max-body-bytes",
            "1024",
            "--jwt-leeway",
            "300",
            "--access-ttl",
            "2",
            "--allowed-origins",
            "https://a.example, http://localhost:8080/, http://[::1]:9000",
        ]);
        assert_eq!(c.validate(), Ok(()));
    }
}
