//! The admin commands: who runs them (`--admin`, `--admin-password`) is kept apart from
//! whom they act on (`--user NAME` or `--user-id ID`, exactly one).

use serde_json::{json, Value};

use crate::api::Api;
use crate::human::date;

/// The admin who runs the command.
#[derive(clap::Args, Clone)]
pub struct AdminLogin {
    /// Your admin account's username: who runs this command (not the user it acts on).
    #[arg(long = "admin", env = "ARENA_USERNAME", value_name = "NAME")]
    pub name: String,
    /// Your admin account's password.
    #[arg(
        long = "admin-password",
        env = "ARENA_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: String,
}

impl AdminLogin {
    pub async fn token(&self, api: &Api) -> Result<String, String> {
        Ok(api
            .login(&self.name, &self.password)
            .await
            .map_err(|e| format!("admin login as {}: {e}", self.name))?
            .access_token)
    }
}

/// The user an admin command acts on.
#[derive(clap::Args, Clone)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The user to act on, by username (online or not).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The user to act on, by user id (`u_…`, as `connections` shows it).
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,
}

impl Target {
    /// The `{id}` path segment: the id, or `@NAME` for a username.
    pub fn segment(&self) -> String {
        match (&self.user, &self.user_id) {
            (Some(name), _) => format!("@{}", encode_segment(name)),
            (None, Some(id)) => encode_segment(id),
            (None, None) => String::new(),
        }
    }

    /// How the target was given, for messages.
    fn given(&self) -> String {
        match (&self.user, &self.user_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Percent-encode everything but unreserved characters (RFC 3986) and `@`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Log in as the admin and call `/admin/users/{user}/{action}`.
async fn call(
    api: &Api,
    admin: &AdminLogin,
    target: &Target,
    method: &str,
    action: &str,
    body: Option<Value>,
) -> Result<(String, Value), String> {
    let token = admin.token(api).await?;
    let path = format!("/admin/users/{}/{action}", target.segment());
    let answer = api.call(method, &path, &token, body).await.map_err(|e| {
        if e.contains("(not_found)") {
            format!("{e}: no such user {}", target.given())
        } else {
            e
        }
    })?;
    Ok((token, answer))
}

/// `alice (u_…)`: the target by name and id, from the answer when it names the user,
/// else from `GET /admin/users/{user}` (what was given alone if that fails).
async fn who(api: &Api, token: &str, target: &Target, answer: &Value) -> String {
    let named = |u: &Value| -> Option<String> {
        Some(format!(
            "{} ({})",
            u["username"].as_str()?,
            u["id"].as_str()?
        ))
    };
    if let Some(found) = answer.get("user").and_then(named) {
        return found;
    }
    let path = format!("/admin/users/{}", target.segment());
    match api.call("GET", &path, token, None).await {
        Ok(page) => named(&page["summary"]["user"]).unwrap_or_else(|| target.given()),
        Err(_) => target.given(),
    }
}

pub async fn kick(
    api: &Api,
    admin: &AdminLogin,
    target: &Target,
    reason: Option<String>,
) -> Result<(), String> {
    let (token, r) = call(
        api,
        admin,
        target,
        "POST",
        "kick",
        Some(json!({ "reason": reason })),
    )
    .await?;
    println!(
        "kicked {}: {} socket(s) closed{}",
        who(api, &token, target, &r).await,
        r["closed"].as_u64().unwrap_or(0),
        nodes_note(&r)
    );
    Ok(())
}

pub async fn ban(
    api: &Api,
    admin: &AdminLogin,
    target: &Target,
    reason: Option<String>,
    duration: Option<u64>,
) -> Result<(), String> {
    let body = json!({"reason": reason, "duration_secs": duration});
    let (token, r) = call(api, admin, target, "POST", "ban", Some(body)).await?;
    let until = match r["banned_until"].as_i64() {
        Some(ms) => format!("until {}", date(ms)),
        None => "permanently".to_string(),
    };
    println!(
        "banned {} {until}: {} socket(s) closed{}",
        who(api, &token, target, &r).await,
        r["closed"].as_u64().unwrap_or(0),
        nodes_note(&r)
    );
    Ok(())
}

pub async fn unban(api: &Api, admin: &AdminLogin, target: &Target) -> Result<(), String> {
    let (token, r) = call(api, admin, target, "DELETE", "ban", None).await?;
    println!("unbanned {}", who(api, &token, target, &r).await);
    Ok(())
}

pub async fn role(
    api: &Api,
    admin: &AdminLogin,
    target: &Target,
    role: &str,
) -> Result<(), String> {
    let (token, r) = call(
        api,
        admin,
        target,
        "PUT",
        "role",
        Some(json!({ "role": role })),
    )
    .await?;
    let verb = if r["changed"] == true {
        "is now"
    } else {
        "was already"
    };
    println!(
        "{} {verb} {}",
        who(api, &token, target, &r).await,
        r["user"]["role"].as_str().unwrap_or(role)
    );
    Ok(())
}

pub async fn connections(api: &Api, admin: &AdminLogin) -> Result<(), String> {
    let token = admin.token(api).await?;
    let list = api.call("GET", "/admin/connections", &token, None).await?;
    let all = list["connections"].as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        println!("no live connections");
    }
    for c in all {
        println!(
            "{}  {:<16} user {}  session {}  room {}  from {}  since {}{}",
            c["connection_id"].as_str().unwrap_or(""),
            c["username"].as_str().unwrap_or(""),
            c["user_id"].as_str().unwrap_or(""),
            c["session_id"].as_str().unwrap_or(""),
            match (c["room"].as_str(), c["room_name"].as_str()) {
                (Some(id), Some(name)) => format!("{name} ({id})"),
                (Some(id), None) => id.to_string(),
                (None, _) => "-".to_string(),
            },
            c["remote_addr"].as_str().unwrap_or(""),
            c["connected_at"].as_i64().map_or_else(|| "?".into(), date),
            c["node"]
                .as_str()
                .map(|n| format!("  on {n}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// In a cluster, how many nodes confirmed a kick or ban.
fn nodes_note(answer: &Value) -> String {
    match (
        answer["nodes"]["acked"].as_u64(),
        answer["nodes"]["live"].as_u64(),
    ) {
        (Some(acked), Some(live)) => format!(" on {acked} of {live} nodes"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_is_sent_as_at_name_and_odd_bytes_are_encoded() {
        let by_name = Target {
            user: Some("alice_1-x".into()),
            user_id: None,
        };
        assert_eq!(by_name.segment(), "@alice_1-x");
        let by_id = Target {
            user: None,
            user_id: Some("u_abc".into()),
        };
        assert_eq!(by_id.segment(), "u_abc");
        assert_eq!(encode_segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
