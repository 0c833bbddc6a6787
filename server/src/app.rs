//! Assembling a running server: open the store, load the signing keyring and the
//! revocation lists, bind, serve, and shut down in order (sockets get 1001, in-flight
//! requests finish, the database is closed). Only this module assembles; what the running
//! parts share is [`crate::state::App`].

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arena_protocol::CloseCode;
use governor::{Quota, RateLimiter};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::keys::{Keyring, SigningAlgorithm};
use crate::auth::password::Passwords;
use crate::auth::revocation::RevocationList;
use crate::auth::tokens::TokenKeys;
use crate::auth::Auth;
use crate::cluster::{Cluster, ClusterConfig};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::game::rooms::RoomLimits;
use crate::game::Rooms;
use crate::registry::{Registry, RegistryLimits};
use crate::serve::{serve, ServeLimits};
use crate::state::{App, AppState};
use crate::store::Store;

/// A server that is serving.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Graceful shutdown: close every socket with 1001, stop accepting, let in-flight
    /// requests finish, close the database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let closed = self
            .state
            .auth
            .registry
            .close_all(CloseCode::GoingAway)
            .await;
        tracing::info!(sockets = closed, "sockets closed for shutdown");
        // The rooms this node runs go to the nodes of their other members at once.
        self.state.rooms.shutdown().await;
        self.stop.cancel();
        // The accept loop bounds its own drain; this only guards against a bug there.
        let result = match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::other("the server did not stop in time")),
        };
        // Left after the drain: requests in flight still see their revocations
        // acknowledged, and this node applies the others' until then.
        if let Some(cluster) = &self.state.cluster {
            cluster.leave().await;
        }
        if let Err(e) = self.state.auth.flush_last_seen().await {
            tracing::warn!(error = %e, "could not record last_seen_at");
        }
        self.state.auth.store.close().await;
        result
    }
}

pub async fn start(config: Config) -> Result<RunningServer> {
    config
        .validate()
        .map_err(|problems| Error::internal(format!("invalid configuration: {problems}")))?;
    prepare_data_dir(&config.data_dir)?;
    crate::telemetry::install();
    let store = Store::open_with_timeout(
        config.database_url.as_deref(),
        &config.data_dir,
        Duration::from_millis(config.database_timeout_ms),
    )
    .await?;
    let keys = TokenKeys::new(
        keyring(&config, &store).await?,
        &config.jwt_issuer,
        &config.jwt_audience,
        config.jwt_leeway,
    );

    let registry = Registry::new(RegistryLimits {
        max_per_user: config.max_sockets_per_user as usize,
        max_total: config.max_sockets,
        outbound_queue: config.ws_outbound_queue,
        close_timeout: config.close_timeout(),
    });
    let leeway = config.jwt_leeway as i64;
    let auth = Auth {
        store,
        keys,
        revocations: RevocationList::new(config.access_ttl as i64 + leeway),
        registry,
        passwords: Passwords::new(
            config.password_hash_threads(),
            config.password_hash_queue as usize,
        )
        .map_err(|e| Error::internal(format!("starting the password hashing threads: {e}")))?,
        access_ttl_secs: config.access_ttl as i64,
        refresh_ttl_secs: config.refresh_ttl as i64,
        leeway_secs: leeway,
        session_max_age_secs: config.session_max_age as i64,
        refresh_grace_secs: config.refresh_grace_secs as i64,
        single_session: config.single_session,
        max_sessions_per_user: config.max_sessions_per_user as usize,
        applied: Default::default(),
        catching_up: tokio::sync::Mutex::new(()),
        reloading: tokio::sync::RwLock::new(()),
        current_as_of: std::sync::atomic::AtomicI64::new(crate::ids::MONO_NEVER),
        stale_after_ms: config.stale_secs() as i64 * 1000,
        last_seen: dashmap::DashMap::new(),
        max_sockets_per_user: config.max_sockets_per_user as usize,
        activity: Default::default(),
        peers: std::sync::OnceLock::new(),
    };
    let auth = Arc::new(auth);
    auth.load_revocations().await?;
    // A rotation another server committed after the ring was read but before the log's
    // head was (which the log reader then never shows us): read the shared ring again.
    auth.reload_keys().await?;
    let stop = CancellationToken::new();
    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("node-{}", crate::ids::random_token(6)));
    let cluster = match &config.redis_url {
        None => None,
        Some(url) => {
            let cluster = Cluster::start(
                ClusterConfig {
                    redis_url: url.clone(),
                    node_id: node_id.clone(),
                    ack_timeout: Duration::from_millis(config.cluster_ack_timeout_ms),
                    heartbeat: Duration::from_millis(config.cluster_heartbeat_ms),
                    stale_after_ms: config.stale_secs() as i64 * 1000,
                    poll: Duration::from_millis(config.revocation_poll_ms),
                    room_lease: Duration::from_millis(config.room_lease_ms),
                },
                &auth,
            )
            .await?;
            let peers: Arc<dyn crate::auth::peers::Peers> = cluster.clone();
            let _ = auth.peers.set(peers);
            Some(cluster)
        }
    };
    let admin = match (&config.admin_username, &config.admin_password) {
        (Some(name), Some(password)) => Some(auth.bootstrap_admin(name, password).await?),
        _ => None,
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;

    let refresh_limiter = NonZeroU32::new(config.refresh_rate_limit)
        .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
    let auth_limiter =
        NonZeroU32::new(config.auth_rate_limit).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
    let login_backoff = (config.auth_rate_limit > 0).then(|| {
        crate::auth::backoff::LoginBackoff::new(
            config.login_backoff_free,
            Duration::from_secs(config.login_backoff_max_secs),
        )
    });
    let login_user_limiter = NonZeroU32::new(config.auth_rate_limit)
        .and(NonZeroU32::new(config.login_user_rate_limit))
        .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
    let link: Arc<dyn crate::game::link::RoomLink> = match &cluster {
        Some(cluster) => cluster.clone(),
        None => Arc::new(crate::game::link::LocalLink::new(&node_id)),
    };
    let rooms = Arc::new(Rooms::new(
        auth.store.clone(),
        link,
        RoomLimits {
            max_rooms: config.max_rooms,
            max_per_user: config.max_rooms_per_user as usize,
            create_per_minute: NonZeroU32::new(config.room_create_rate),
            idle: Duration::from_secs(config.room_idle_secs),
        },
        config.tick_hz,
        config.chat_delivery,
        crate::game::round::RoundTimes {
            round_secs: config.round_secs,
            pause_secs: config.round_pause_secs,
        },
    ));
    rooms.ensure_main_hall().await?;
    if let Some(cluster) = &cluster {
        cluster.attach_rooms(&rooms).await?;
    }
    let state = Arc::new(App {
        origins: config.effective_origins(addr),
        config,
        auth,
        rooms,
        cluster,
        node_id,
        started_at: crate::ids::now_ms(),
        auth_limiter,
        login_user_limiter,
        login_backoff,
        refresh_limiter,
        clock: governor::clock::DefaultClock::default(),
    });

    spawn_pruner(state.clone(), stop.clone());
    spawn_log_reader(state.clone(), stop.clone());
    spawn_health_probe(state.clone(), stop.clone());
    {
        // Idle rooms go on their own period: short enough for the idle time configured.
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move { state.rooms.run_sweeper(stop).await });
    }
    tokio::spawn(state.rooms.clone().run_keeper(stop.clone()));
    let limits = limits_for(&state.config);
    if let Some(addr) = state.config.metrics_listen {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::internal(format!("cannot listen on {addr} for metrics: {e}")))?;
        let metrics_limits = ServeLimits {
            max_connections: state.config.metrics_max_connections,
            ..limits_for(&state.config)
        };
        tokio::spawn(serve(
            metrics_listener,
            crate::http::metrics_router(),
            metrics_limits,
            stop.clone(),
        ));
    }
    let task = tokio::spawn(serve(
        listener,
        crate::http::router(state.clone()),
        limits,
        stop.clone(),
    ));
    // Said once the server serves: before, a failure to listen would follow it.
    if let Some(admin) = admin {
        tracing::info!(user_id = %admin.id, username = %admin.username, "admin account ready");
    }
    Ok(RunningServer {
        addr,
        state,
        stop,
        task,
    })
}

/// Read the revocation log every `--revocation-poll-ms` and apply what other server
/// processes sharing the database revoked (with one server nothing arrives: its own
/// events are applied as they are made), and while the log cannot be read past the
/// stale time, close every socket (see `Auth::close_sockets_if_stale`).
fn spawn_log_reader(state: AppState, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut every =
            tokio::time::interval(Duration::from_millis(state.config.revocation_poll_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {
                    match state.auth.catch_up().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(events = n, "revocations from other servers applied"),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the revocation log");
                            let closed = state.auth.close_sockets_if_stale().await;
                            if closed > 0 {
                                tracing::warn!(closed, "sockets closed: this node is not current");
                            }
                        }
                    }
                    // A keyring reload that failed when its event was applied.
                    if state.auth.keys.reload_pending() {
                        match state.auth.reload_keys().await {
                            Ok(()) => tracing::info!("signing keyring reloaded"),
                            Err(e) => tracing::warn!(error = %e, "could not reload the signing keyring"),
                        }
                    }
                }
            }
        }
    });
}

/// Ping the database once a second on the log reader's link, for `/healthz` to read (it
/// never asks the database itself: a flood of health checks costs no query).
fn spawn_health_probe(state: AppState, stop: CancellationToken) {
    tokio::spawn(async move {
        let timeout = Duration::from_millis(state.config.database_timeout_ms);
        let mut every = tokio::time::interval(HEALTH_PROBE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {
                    if !state.auth.store.refresh_liveness(timeout).await {
                        tracing::warn!("the database did not answer the health probe");
                    }
                }
            }
        }
    });
}

/// How often the health probe pings the database.
const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Drop revocation entries and rate-limit keys that can no longer matter, and (on its
/// own period) database rows that can no longer matter.
fn spawn_pruner(state: AppState, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        let mut database = tokio::time::interval(Duration::from_secs(state.config.db_prune_secs));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = database.tick() => match state.auth.prune_database().await {
                    Ok(0) => {}
                    Ok(rows) => tracing::debug!(rows, "ended sessions and tokens deleted"),
                    Err(e) => tracing::warn!(error = %e, "could not prune the database"),
                },
                _ = every.tick() => {
                    let pruned = state.auth.revocations.prune(crate::ids::now_secs(), state.auth.leeway_secs);
                    if pruned > 0 {
                        tracing::debug!(pruned, "revocation entries pruned");
                    }
                    if let Some(l) = &state.refresh_limiter {
                        l.retain_recent();
                    }
                    if let Some(l) = &state.auth_limiter {
                        l.retain_recent();
                    }
                    if let Some(l) = &state.login_user_limiter {
                        l.retain_recent();
                    }
                    if let Some(b) = &state.login_backoff {
                        b.prune(tokio::time::Instant::now());
                    }
                    if let Err(e) = state.auth.flush_last_seen().await {
                        tracing::warn!(error = %e, "could not record last_seen_at");
                    }
                    let cutoff = crate::ids::now_ms() - state.config.upgrade_timeout_ms as i64;
                    let released = state.auth.registry.release_unstarted(cutoff);
                    if released > 0 {
                        tracing::debug!(released, "upgrades that never completed released");
                    }
                }
            }
        }
    });
}

fn limits_for(config: &Config) -> ServeLimits {
    ServeLimits {
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        body_timeout: Duration::from_millis(config.body_timeout_ms),
        idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        max_connections: config.max_connections,
        max_per_address: config.max_connections_per_address,
        drain: Duration::from_secs(10),
    }
}

fn prepare_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// The signing keys: a fixed secret if one is configured; else, with a database of its
/// own choosing (`--database-url`, which other servers may share), the deployment's ring
/// in that database; else the keyring file under the data dir. Created, rotated and
/// pruned here.
async fn keyring(config: &Config, store: &Store) -> Result<Keyring> {
    if let Some(secret) = &config.jwt_secret {
        if config.jwt_algorithm != SigningAlgorithm::Hs256 {
            return Err(Error::internal(
                "--jwt-secret is an HMAC secret: it needs --jwt-algorithm HS256",
            ));
        }
        return Keyring::from_secret(secret.as_bytes()).map_err(Error::Internal);
    }
    // A retired key verifies until every token it signed has expired.
    let retire_after = config.access_ttl as i64 + config.jwt_leeway as i64;
    let file = config.data_dir.join("signing-keys.json");
    let (alg, rotate) = (config.jwt_algorithm, config.rotate_signing_key);
    if config.database_url.is_some() {
        Keyring::open_shared(store, &file, alg, rotate, retire_after).await
    } else {
        Keyring::load_or_create(&file, alg, rotate, retire_after)
    }
    .map_err(Error::Internal)
}
