//! `arena-client` as a user runs it: the real binary against a real server. A `play`
//! client ends at once, with its close's exit status and the reason, when the server
//! closes it (stdin is a pipe left open, so a client that waited for input would hang);
//! an unknown `/command` is refused and never reaches the room; admin commands take a
//! username (`--user`) or an id (`--user-id`).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arena_tests::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The `arena-client` binary beside this test binary, brought up to date once per test
/// process (`cargo test -p arena-tests` does not build it: it is not a dependency).
fn client_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            let dir = exe.parent().and_then(Path::parent).expect("target dir");
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "arena-client", "--bin", "arena-client"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building arena-client failed");
            dir.join("arena-client")
        })
        .clone()
}

/// A running `arena-client`: stdin held open, stdout and stderr collected as they come.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = sink.lock().expect("output lock");
            all.push_str(&line);
            all.push('\n');
        }
    });
    text
}

impl Client {
    fn spawn(server: &TestServer, args: &[&str]) -> Client {
        let mut child = Command::new(client_binary())
            .arg("--server")
            .arg(&server.base)
            .args(args)
            .env_remove("ARENA_USERNAME")
            .env_remove("ARENA_PASSWORD")
            .env_remove("ARENA_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start arena-client");
        let stdin = child.stdin.take();
        let out = collect(child.stdout.take().expect("stdout"));
        let err = collect(child.stderr.take().expect("stderr"));
        Client {
            child,
            stdin,
            out,
            err,
        }
    }

    fn stdout(&self) -> String {
        self.out.lock().expect("output lock").clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().expect("output lock").clone()
    }

    /// Wait (at most [`DEADLINE`]) until stdout holds `text`.
    async fn wait_stdout(&mut self, text: &str) {
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if self.stdout().contains(text) {
                    return;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "arena-client exited ({status}) before printing {text:?}\nstdout:\n{}\nstderr:\n{}",
                        self.stdout(),
                        self.stderr()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "no {text:?} on stdout in time\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to arena-client");
        stdin.flush().await.expect("flush");
    }

    /// The exit status, which must come within [`DEADLINE`] (stdin stays open).
    async fn exited(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "arena-client still running after {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                )
            })
            .expect("wait for arena-client");
        // Let the readers drain what the process wrote last.
        tokio::time::sleep(Duration::from_millis(50)).await;
        status
    }
}

/// Run a command to its end (at most [`DEADLINE`]): exit code, stdout, stderr.
async fn run(server: &TestServer, args: &[&str]) -> (Option<i32>, String, String) {
    let mut client = Client::spawn(server, args);
    client.stdin = None;
    let status = client.exited().await;
    (status.code(), client.stdout(), client.stderr())
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Start `play` for a player in `main-hall` and wait until it has joined.
async fn playing(server: &TestServer, player: &Player) -> Client {
    let mut client = Client::spawn(
        server,
        &[
            "play",
            "--username",
            &player.username,
            "--password",
            &player.password,
            "--room",
            "main-hall",
        ],
    );
    client.wait_stdout("* joined").await;
    client
}

#[tokio::test]
async fn a_kicked_play_client_exits_at_once_with_the_reason() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &[]).await;
    let alice = server.new_player("clk").await;
    let mut client = playing(&server, &alice).await;

    let (status, body) = server
        .post(
            &format!("/admin/users/{}/kick", alice.id()),
            Some(&admin),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let exit = client.exited().await;
    let stderr = client.stderr();
    assert_eq!(exit.code(), Some(23), "stderr: {stderr}");
    assert!(
        stderr.contains("closed 4003") && stderr.contains("spam"),
        "stderr: {stderr}"
    );
}

#[tokio::test]
async fn a_logged_out_play_client_exits_with_its_own_status() {
    let data = DataDir::new();
    let (server, _admin) = start_with_admin(&data, &[]).await;
    let alice = server.new_player("clo").await;
    let mut client = playing(&server, &alice).await;

    // Logging out every session from elsewhere revokes the client's too: 4001.
    assert_eq!(server.logout(alice.token(), true).await, 204);
    let exit = client.exited().await;
    let stderr = client.stderr();
    assert_eq!(exit.code(), Some(21), "stderr: {stderr}");
    assert!(stderr.contains("closed 4001"), "stderr: {stderr}");
}

#[tokio::test]
async fn an_unknown_command_is_refused_and_not_sent_as_chat() {
    let data = DataDir::new();
    let (server, _admin) = start_with_admin(&data, &[]).await;
    let alice = server.new_player("clu").await;
    let bob = server.new_player("clu").await;
    let mut watcher = server.ws_ok(bob.token()).await;
    watcher
        .send_json(json!({"type": "join", "room": "main-hall"}))
        .await;
    watcher.recv_type("joined").await;

    let mut client = playing(&server, &alice).await;
    let joined = watcher.recv_type("player_joined").await;
    assert_eq!(joined["player"]["username"], alice.username.as_str());

    client.type_line("/kick bob").await;
    client.wait_stdout("unknown command /kick").await;
    assert!(
        client.stdout().contains("/rooms, /join <room id>"),
        "the refusal lists the commands: {}",
        client.stdout()
    );
    client.type_line("hello after").await;
    // The first chat the room sees is the line after the refused command.
    let chat = watcher.recv_type("chat").await;
    assert_eq!(chat["text"], "hello after", "{chat}");
    assert_eq!(chat["from"]["username"], alice.username.as_str());

    client.type_line("/quit").await;
    assert_eq!(client.exited().await.code(), Some(0));
}

#[tokio::test]
async fn ban_and_unban_take_a_username() {
    let data = DataDir::new();
    let (server, _admin) = start_with_admin(&data, &[]).await;
    let carol = server.new_player("clb").await;
    let admin_flags = ["--admin", ADMIN, "--admin-password", ADMIN_PASSWORD];
    let with = |cmd: &str, extra: &[&str]| -> Vec<String> {
        std::iter::once(cmd)
            .chain(admin_flags)
            .chain(extra.iter().copied())
            .map(String::from)
            .collect()
    };

    let ban = with(
        "ban",
        &[
            "--user",
            &carol.username,
            "--duration",
            "600",
            "--reason",
            "cheating",
        ],
    );
    let (code, out, err) = run(&server, &strs(&ban)).await;
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    let named = format!("banned {} ({})", carol.username, carol.id());
    assert!(out.contains(&named), "{out}");
    assert!(out.contains(" GMT"), "the end of the ban is a date: {out}");
    let (status, body) = server
        .post(
            "/auth/login",
            None,
            json!({"username": carol.username, "password": carol.password}),
        )
        .await;
    assert_error(status, &body, 403, "banned");

    let unban = with("unban", &["--user", &carol.username]);
    let (code, out, err) = run(&server, &strs(&unban)).await;
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!("unbanned {} ({})", carol.username, carol.id())),
        "{out}"
    );
    server.login(&carol.username, &carol.password).await;

    // By id, the answer names the user too.
    let kick = with("kick", &["--user-id", carol.id()]);
    let (code, out, err) = run(&server, &strs(&kick)).await;
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!("kicked {} ({})", carol.username, carol.id())),
        "{out}"
    );

    // A name nobody has is a clear refusal, exit status 1.
    let ghost = with("unban", &["--user", "nobody-by-this-name"]);
    let (code, _, err) = run(&server, &strs(&ghost)).await;
    assert_eq!(code, Some(1), "stderr: {err}");
    assert!(err.contains("nobody-by-this-name"), "{err}");
}

#[tokio::test]
async fn a_target_is_a_username_or_an_id_never_both() {
    let data = DataDir::new();
    let (server, _admin) = start_with_admin(&data, &[]).await;
    let admin = ["--admin", ADMIN, "--admin-password", ADMIN_PASSWORD];
    let both: Vec<&str> = ["kick"]
        .into_iter()
        .chain(admin)
        .chain(["--user", "bob", "--user-id", "u_1"])
        .collect();
    let (code, _, err) = run(&server, &both).await;
    assert_eq!(code, Some(2), "{err}");
    let neither: Vec<&str> = ["kick"].into_iter().chain(admin).collect();
    let (code, _, err) = run(&server, &neither).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--user"), "{err}");
}
