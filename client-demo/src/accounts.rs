//! A file of load accounts reused from one `load` run to the next (`--accounts FILE`), so
//! that a script running several scenarios against one server registers and logs in its
//! users once: password hashing (Argon2 for Arena, bcrypt for the Node.js server) costs
//! tens of milliseconds per user and would otherwise dominate a benchmark's runtime.
//!
//! One JSON object per line: first `{"servers": [...]}` (the `--server` list the accounts
//! were made on), then `{"username", "id", "token", "expires_at_ms"}` per user. A token
//! that would expire within [`MIN_VALIDITY`] is replaced by a fresh login.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::{now_ms, register_users, PASSWORD};
use crate::nodes::Nodes;

/// A pooled token must stay valid at least this long, or its user logs in again: long
/// enough for the longest scenario a script runs with it.
const MIN_VALIDITY: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize)]
struct Header {
    servers: Vec<String>,
}

/// One logged-in load user.
#[derive(Serialize, Deserialize, Clone)]
pub struct Account {
    pub username: String,
    pub id: String,
    pub token: String,
    pub expires_at_ms: i64,
}

/// The first `n` accounts of the file at `path` (made on these `nodes`), registering and
/// logging in users as needed and writing the file back.
pub async fn take(nodes: &Nodes, path: &Path, n: usize) -> Result<Vec<Account>, String> {
    let servers = nodes.bases();
    let shown = path.display();
    let mut accounts = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, servers).map_err(|e| format!("accounts file {shown}: {e}"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read accounts file {shown}: {e}")),
    };
    let reused = accounts.len().min(n);
    if let Some(first) = accounts.first() {
        // A file from an earlier server process (same address, other data) holds tokens
        // this one never issued: say so instead of failing every upgrade with a 401.
        if let Err(e) = nodes
            .api(0)
            .call("GET", "/lobby/rooms", &first.token, None)
            .await
        {
            return Err(format!(
                "the accounts in {shown} are not valid on this server ({e}); delete the file to start afresh"
            ));
        }
    }
    let deadline = now_ms() + MIN_VALIDITY.as_millis() as i64;
    let mut relogged = 0usize;
    for account in accounts.iter_mut().take(n) {
        if account.expires_at_ms < deadline {
            let session = nodes.any().login(&account.username, PASSWORD).await?;
            account.token = session.access_token;
            account.expires_at_ms = now_ms() + session.expires_in as i64 * 1000;
            relogged += 1;
        }
    }
    let missing = n.saturating_sub(accounts.len());
    if missing > 0 {
        let names = register_users(nodes, missing).await?;
        let progress = crate::load::bar(missing, "logins");
        for username in names {
            let session = nodes.any().login(&username, PASSWORD).await?;
            accounts.push(Account {
                username,
                id: session.user.id,
                token: session.access_token,
                expires_at_ms: now_ms() + session.expires_in as i64 * 1000,
            });
            progress.inc(1);
        }
        progress.finish();
    }
    if missing + relogged > 0 {
        write(path, servers, &accounts).map_err(|e| format!("cannot write {shown}: {e}"))?;
    }
    eprintln!(
        "  accounts from {shown}: {reused} reused ({relogged} logged in again), {missing} new"
    );
    accounts.truncate(n);
    Ok(accounts)
}

fn parse(text: &str, servers: &[String]) -> Result<Vec<Account>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).enumerate();
    let Some((_, first)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Header =
        serde_json::from_str(first).map_err(|e| format!("line 1 is not a header: {e}"))?;
    if header.servers != servers {
        return Err(format!(
            "made for {:?}, not {servers:?}; use another file",
            header.servers
        ));
    }
    lines
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn write(path: &Path, servers: &[String], accounts: &[Account]) -> std::io::Result<()> {
    let mut out = serde_json::to_string(&Header {
        servers: servers.to_vec(),
    })?;
    out.push('\n');
    for a in accounts {
        out.push_str(&serde_json::to_string(a)?);
        out.push('\n');
    }
    // Write beside it and rename, so that an interrupted run leaves the old file whole.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_back_and_tied_to_its_servers() {
        let dir = std::env::temp_dir().join(format!("arena-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pool.jsonl");
        let servers = vec!["http://127.0.0.1:1".to_string()];
        let a = Account {
            username: "u".into(),
            id: "u_1".into(),
            token: "t".into(),
            expires_at_ms: 5,
        };
        write(&path, &servers, &[a.clone(), a]).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(parse(&text, &servers).expect("parse").len(), 2);
        let other = vec!["http://127.0.0.1:2".to_string()];
        assert!(parse(&text, &other).is_err());
        assert!(parse("", &servers).expect("empty").is_empty());
        assert!(parse("{\"servers\":[\"http://127.0.0.1:1\"]}\nnot json", &servers).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
