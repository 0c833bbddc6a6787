//! A PostgreSQL 15 of the test's own, for what the machine's shared server cannot do:
//! a primary (`initdb` + `pg_ctl`) on a free port in a temporary directory, optionally an
//! asynchronous streaming replica of it (`pg_basebackup -R`) on another port, and the
//! operator's tools against them: kill the primary, promote the replica, `pg_dump` a
//! database and restore it (into a new database, or over the same name as an operator
//! restoring last night's dump would).
//!
//! Clients (arena nodes) connect to [`PgPrivate::url`]: a TCP proxy in front of whichever
//! server is the primary, switched to the replica by [`PgPrivate::promote_replica`], as a
//! virtual IP or a proxy in front of a real failover pair would be. The servers themselves
//! run as the `postgres` user when the test runs as root (PostgreSQL refuses root).
//! Everything is stopped (`pg_ctl stop -m immediate`) and removed on drop
//! (`ARENA_TEST_KEEP=1` keeps the directory, with each server's log); servers left
//! behind by a test process that was killed are stopped by the next one that starts.
//!
//! Every call is async (`tokio::process`): the proxy runs on the test's runtime, which
//! a blocking call (a `std::process::Command` psql through the proxy) would stall.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{free_local_addr, unique, DEADLINE};

/// Where Debian's `postgresql-15` package puts the server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The database every [`PgPrivate`] creates at start (what [`PgPrivate::url`] names).
pub const DATABASE: &str = "arena";

/// The user the servers run as when the test runs as root.
const SERVER_USER: &str = "postgres";

fn bin(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let out = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("run id -u");
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    })
}

/// `program args…`, as the server user when we are root (for what writes a data dir).
fn server_command(program: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd;
    if running_as_root() {
        cmd = tokio::process::Command::new("runuser");
        cmd.args(["-u", SERVER_USER, "--", program]);
    } else {
        cmd = tokio::process::Command::new(program);
    }
    cmd.args(args).kill_on_drop(true);
    cmd
}

/// Run to completion; stdout (trimmed), or panic with stderr.
async fn run(mut cmd: tokio::process::Command, what: &str) -> String {
    match try_run(&mut cmd).await {
        Ok(out) => out,
        Err(err) => panic!("{what}: {err}"),
    }
}

async fn try_run(cmd: &mut tokio::process::Command) -> Result<String, String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("could not run (are PostgreSQL 15's binaries in {PG_BIN}?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `psql` against 127.0.0.1:`port` as `postgres`, one statement, unaligned tuples only.
fn psql_command(port: u16, database: &str, sql: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin("psql"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-XtAqc", sql])
        .kill_on_drop(true);
    cmd
}

/// Run SQL on 127.0.0.1:`port`; its output, or the error.
pub async fn try_psql(port: u16, database: &str, sql: &str) -> Result<String, String> {
    try_run(&mut psql_command(port, database, sql)).await
}

/// Run SQL through a `postgres://` URL (the proxy of [`PgPrivate::url`], say); its output
/// or the error. Async like every call here: a blocking `psql` through the proxy would
/// stall the test's runtime, which runs the proxy.
pub async fn try_psql_url(url: &str, sql: &str) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(bin("psql"));
    cmd.arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-XtAqc", sql])
        .kill_on_drop(true);
    try_run(&mut cmd).await
}

/// Run SQL on 127.0.0.1:`port`; its output (panics if it fails).
pub async fn psql_at(port: u16, database: &str, sql: &str) -> String {
    try_psql(port, database, sql)
        .await
        .unwrap_or_else(|e| panic!("psql -p {port} -d {database} {sql}: {e}"))
}

/// `pg_dump -Fc` of `database` on 127.0.0.1:`port` into `file` (works on the machine's
/// server at 5432 too).
pub async fn pg_dump(port: u16, database: &str, file: &Path) {
    let mut cmd = tokio::process::Command::new(bin("pg_dump"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-Fc", "-f"])
        .arg(file)
        .arg(database)
        .kill_on_drop(true);
    run(cmd, &format!("pg_dump {database}")).await;
}

/// Restore a [`pg_dump`] file into a database `database` that does not exist yet.
pub async fn pg_restore_into_new(port: u16, database: &str, file: &Path) {
    psql_at(port, "postgres", &format!("CREATE DATABASE {database}")).await;
    let mut cmd = tokio::process::Command::new(bin("pg_restore"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["--exit-on-error", "--no-owner", "-d", database])
        .arg(file)
        .kill_on_drop(true);
    run(cmd, &format!("pg_restore into {database}")).await;
}

/// Restore a [`pg_dump`] file over `database`, as an operator restoring last night's
/// dump does: every connection to it is ended, it is dropped, created again empty and
/// the dump is restored into it.
pub async fn pg_restore_over(port: u16, database: &str, file: &Path) {
    psql_at(
        port,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )
    .await;
    pg_restore_into_new(port, database, file).await;
}

/// One PostgreSQL server process (a data directory and its port).
struct Instance {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl Instance {
    fn new(root: &Path, name: &str) -> Instance {
        let port = free_local_addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a free port");
        Instance {
            dir: root.join(name),
            port,
            running: false,
        }
    }

    fn dir(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// `pg_ctl start` (waits until it accepts connections).
    async fn start(&mut self) {
        let log = format!("{}.log", self.dir());
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
             -c wal_level=replica -c max_wal_senders=10 -c max_connections=200 \
             -c fsync=off -c full_page_writes=off",
            self.port
        );
        let cmd = server_command(
            &bin("pg_ctl"),
            &[
                "-D",
                self.dir(),
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
        run(cmd, &format!("pg_ctl start {}", self.dir())).await;
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: every process ends at once, nothing is flushed or
    /// checkpointed (a crash, as far as the database is concerned).
    async fn kill(&mut self) {
        let cmd = server_command(
            &bin("pg_ctl"),
            &["-D", self.dir(), "-m", "immediate", "stop"],
        );
        run(cmd, &format!("pg_ctl stop {}", self.dir())).await;
        self.running = false;
    }

    fn kill_blocking(&mut self) {
        if !self.running {
            return;
        }
        let pg_ctl = bin("pg_ctl");
        let args = ["-D", self.dir(), "-m", "immediate", "stop"];
        let mut cmd = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", SERVER_USER, "--", &pg_ctl]);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = cmd.args(args).output();
        self.running = false;
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// A primary, maybe a streaming replica, and the proxy clients connect through.
pub struct PgPrivate {
    root: PathBuf,
    primary: Instance,
    replica: Option<Instance>,
    /// The replica was promoted: it is now the one that takes writes.
    promoted: bool,
    /// The replica's `primary_conninfo` as `pg_basebackup -R` wrote it (for resuming).
    conninfo: String,
    service: Service,
}

impl PgPrivate {
    /// A primary alone (enough for dump and restore), with database [`DATABASE`].
    pub async fn primary() -> PgPrivate {
        sweep_leftovers();
        let root = std::env::temp_dir().join(unique(DIR_PREFIX));
        std::fs::create_dir_all(&root).expect("create the PostgreSQL test dir");
        std::fs::write(root.join(OWNER_FILE), std::process::id().to_string())
            .expect("write the owner file");
        if running_as_root() {
            give_to_server_user(&root);
        }
        let mut primary = Instance::new(&root, "primary");
        let cmd = server_command(
            &bin("initdb"),
            &[
                "-D",
                primary.dir(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        run(cmd, "initdb").await;
        primary.start().await;
        psql_at(
            primary.port,
            "postgres",
            &format!("CREATE DATABASE {DATABASE}"),
        )
        .await;
        let service = Service::start(primary.port).await;
        PgPrivate {
            root,
            primary,
            replica: None,
            promoted: false,
            conninfo: String::new(),
            service,
        }
    }

    /// A primary and an asynchronous streaming replica of it, caught up.
    pub async fn with_replica() -> PgPrivate {
        let mut pg = Self::primary().await;
        pg.start_replica().await;
        pg
    }

    /// Start a streaming replica of the primary now (`pg_basebackup -R -X stream`).
    pub async fn start_replica(&mut self) {
        assert!(self.replica.is_none(), "a replica already runs");
        let mut replica = Instance::new(&self.root, "replica");
        let port = self.primary.port.to_string();
        let cmd = server_command(
            &bin("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                replica.dir(),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        run(cmd, "pg_basebackup").await;
        replica.start().await;
        self.conninfo = psql_at(replica.port, "postgres", "SHOW primary_conninfo").await;
        self.replica = Some(replica);
        self.wait_replica_caught_up().await;
    }

    /// The URL arena nodes use: the proxy in front of the current primary (the replica
    /// after [`PgPrivate::promote_replica`]).
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/{DATABASE}", self.service.addr)
    }

    /// The proxy's address (`127.0.0.1:port`), for a test's own [`crate::Proxy`] chain.
    pub fn service_addr(&self) -> &str {
        &self.service.addr
    }

    /// The original primary, directly.
    pub fn primary_url(&self) -> String {
        self.primary.url(DATABASE)
    }

    /// The replica, directly (read-only until promoted).
    pub fn replica_url(&self) -> String {
        self.replica().url(DATABASE)
    }

    fn replica(&self) -> &Instance {
        self.replica.as_ref().expect("no replica was started")
    }

    /// The port of the server that takes writes now.
    pub fn current_port(&self) -> u16 {
        if self.promoted {
            self.replica().port
        } else {
            self.primary.port
        }
    }

    /// SQL in [`DATABASE`] on the server that takes writes now; its output.
    pub async fn psql(&self, sql: &str) -> String {
        psql_at(self.current_port(), DATABASE, sql).await
    }

    /// SQL in [`DATABASE`] on the replica; its output.
    pub async fn replica_psql(&self, sql: &str) -> String {
        psql_at(self.replica().port, DATABASE, sql).await
    }

    /// One number from the server that takes writes now.
    pub async fn number(&self, sql: &str) -> i64 {
        let answer = self.psql(sql).await;
        answer
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {answer:?}"))
    }

    /// Wait until the replica has replayed everything the primary had written when
    /// this was called.
    pub async fn wait_replica_caught_up(&self) {
        let lsn = psql_at(self.primary.port, "postgres", "SELECT pg_current_wal_lsn()").await;
        let replica = self.replica().port;
        let check = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        until(DEADLINE, "the replica catches up", || async {
            try_psql(replica, "postgres", &check).await.as_deref() == Ok("t")
        })
        .await;
    }

    /// From now on the replica receives nothing more from the primary: commits made on
    /// the primary afterwards are missing from it, as from an asynchronous replica that
    /// is behind when the primary dies.
    ///
    /// This detaches the replica from the WAL stream (`primary_conninfo` emptied and
    /// reloaded, and waits until its WAL receiver is gone). `pg_wal_replay_pause()` alone
    /// is not enough: the replica still receives the WAL, and a promotion replays
    /// everything received first (checked: the row is then present after promotion).
    pub async fn pause_replica_replay(&self) {
        let replica = self.replica().port;
        psql_at(
            replica,
            "postgres",
            "ALTER SYSTEM SET primary_conninfo = ''",
        )
        .await;
        psql_at(replica, "postgres", "SELECT pg_reload_conf()").await;
        until(DEADLINE, "the replica's WAL receiver stops", || async {
            try_psql(
                replica,
                "postgres",
                "SELECT count(*) FROM pg_stat_wal_receiver",
            )
            .await
            .as_deref()
                == Ok("0")
        })
        .await;
    }

    /// Attach the replica to the primary's WAL stream again (after
    /// [`PgPrivate::pause_replica_replay`]).
    pub async fn resume_replica_replay(&self) {
        let replica = self.replica().port;
        let conninfo = self.conninfo.replace('\'', "''");
        psql_at(
            replica,
            "postgres",
            &format!("ALTER SYSTEM SET primary_conninfo = '{conninfo}'"),
        )
        .await;
        psql_at(replica, "postgres", "SELECT pg_reload_conf()").await;
    }

    /// Crash the primary: `pg_ctl stop -m immediate` (every backend ends at once, no
    /// checkpoint). Connections through [`PgPrivate::url`] fail until a promotion.
    pub async fn kill_primary(&mut self) {
        assert!(!self.promoted, "the primary is already gone");
        self.primary.kill().await;
    }

    /// `pg_ctl promote` the replica, wait until it accepts writes, and point
    /// [`PgPrivate::url`] at it (existing links through the proxy are dropped, as a
    /// moved virtual IP drops them).
    pub async fn promote_replica(&mut self) {
        let replica = self.replica().port;
        let dir = self.replica().dir().to_string();
        let cmd = server_command(&bin("pg_ctl"), &["-D", &dir, "-w", "-t", "30", "promote"]);
        run(cmd, "pg_ctl promote").await;
        until(DEADLINE, "the promoted replica accepts writes", || async {
            try_psql(
                replica,
                "postgres",
                "SELECT NOT pg_is_in_recovery() AND txid_current() > 0",
            )
            .await
            .as_deref()
                == Ok("t")
        })
        .await;
        self.promoted = true;
        self.service.switch(replica);
    }

    /// A file in this harness's directory (for dumps).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `pg_dump` [`DATABASE`] from the server that takes writes now into `file`.
    pub async fn dump(&self, file: &Path) {
        pg_dump(self.current_port(), DATABASE, file).await;
    }

    /// Restore `file` over [`DATABASE`] (connections ended, dropped, created, restored).
    pub async fn restore_over(&self, file: &Path) {
        pg_restore_over(self.current_port(), DATABASE, file).await;
    }

    /// Restore `file` into a new database `database` on the server that takes writes now;
    /// its URL through the proxy.
    pub async fn restore_into_new(&self, database: &str, file: &Path) -> String {
        pg_restore_into_new(self.current_port(), database, file).await;
        format!("postgres://postgres@{}/{database}", self.service.addr)
    }
}

impl Drop for PgPrivate {
    fn drop(&mut self) {
        self.service.stop();
        self.primary.kill_blocking();
        if let Some(replica) = self.replica.as_mut() {
            replica.kill_blocking();
        }
        if std::env::var_os("ARENA_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.root.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// How a harness directory's name starts (in the temp dir).
const DIR_PREFIX: &str = "arena-pg-";
/// The file in it naming the test process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Stop the servers of, and remove, harness directories whose test process is gone (it
/// was killed: its `Drop` never ran).
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let root = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        let Some(owner) = is_ours
            .then(|| std::fs::read_to_string(root.join(OWNER_FILE)).ok())
            .flatten()
        else {
            continue;
        };
        if Path::new("/proc").join(owner.trim()).exists() {
            continue;
        }
        for name in ["primary", "replica"] {
            let dir = root.join(name);
            if dir.join("postmaster.pid").exists() {
                let mut instance = Instance {
                    dir,
                    port: 0,
                    running: true,
                };
                instance.kill_blocking();
            }
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// Hand the directory to the server user (initdb and the servers write under it).
fn give_to_server_user(dir: &Path) {
    let id = |flag: &str| -> u32 {
        let out = std::process::Command::new("id")
            .args([flag, SERVER_USER])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {SERVER_USER}: install postgresql-15"))
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g")))
        .expect("chown the PostgreSQL test dir");
}

/// Poll `check` until it holds; panic after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy to 127.0.0.1:`target`, where `target` can be switched (dropping every
/// link to the old one).
struct Service {
    addr: String,
    target: Arc<Mutex<u16>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Service {
    async fn start(target: u16) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the PostgreSQL proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let target = Arc::new(Mutex::new(target));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let accept = {
            let (target, links) = (target.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let port = *target.lock().expect("target");
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut links = links.lock().expect("links");
                    links.retain(|l| !l.is_finished());
                    links.push(link);
                }
            })
        };
        Service {
            addr,
            target,
            links,
            accept,
        }
    }

    fn switch(&self, port: u16) {
        *self.target.lock().expect("target") = port;
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    fn stop(&self) {
        self.accept.abort();
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }
}
