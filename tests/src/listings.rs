//! The admin listings (users, bans, audit log) checked end to end on whatever database
//! the server runs on: the same scenario runs on SQLite (`admin.rs`) and PostgreSQL
//! (`postgres.rs`), since its SQL (prefix search, paging, joins) is written once for both.

use serde_json::{json, Value};

use crate::{assert_error, unique, TestServer, ADMIN};

fn names(users: &Value) -> Vec<String> {
    users["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            u["user"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Find offline users by name prefix (any case, `_` taken literally) and by id, page
/// through them, ban, kick, change a role and unban, and find each action in the bans
/// list and the audit log with who did it to whom, why and when.
pub async fn admin_listings(server: &TestServer, admin: &str) {
    let tag = unique("ls");
    let password = "listing-password";
    // Two names share the prefix `{tag}_`; the third has a letter where they have `_`.
    let (n0, n1, n2) = (format!("{tag}_a"), format!("{tag}xb"), format!("{tag}_c"));
    let mut ids = Vec::new();
    for name in [&n0, &n1, &n2] {
        ids.push(
            server.register(name, password).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let session = server.login(&n0, password).await; // one live session, no socket

    let (status, found) = server
        .get(
            &format!("/admin/users?query={}_", tag.to_uppercase()),
            Some(admin),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(names(&found), vec![n0.clone(), n2.clone()], "{found}");
    let first = &found["users"][0];
    assert_eq!(first["user"]["id"], ids[0].as_str());
    assert_eq!(first["user"]["role"], "player");
    assert_eq!(first["sessions"], 1, "{first}");
    assert_eq!(first["sockets"], 0, "{first}");
    assert!(
        first["ban"].is_null() && first["created_at"].is_i64(),
        "{first}"
    );
    assert!(found["next_offset"].is_null(), "{found}");

    let (_, by_id) = server
        .get(&format!("/admin/users?query={}", ids[1]), Some(admin))
        .await;
    assert_eq!(names(&by_id), vec![n1.clone()], "{by_id}");

    let (_, page1) = server
        .get(&format!("/admin/users?query={tag}&limit=2"), Some(admin))
        .await;
    assert_eq!(page1["users"].as_array().map(Vec::len), Some(2), "{page1}");
    assert_eq!(page1["next_offset"], 2, "{page1}");
    let (_, page2) = server
        .get(
            &format!("/admin/users?query={tag}&limit=2&offset=2"),
            Some(admin),
        )
        .await;
    assert_eq!(page2["users"].as_array().map(Vec::len), Some(1), "{page2}");
    assert!(page2["next_offset"].is_null(), "{page2}");
    let mut all = names(&page1);
    all.extend(names(&page2));
    all.sort();
    let mut expected = vec![n0.clone(), n1.clone(), n2.clone()];
    expected.sort();
    assert_eq!(all, expected);
    for bad in ["limit=0", "limit=101", "limit=x", "offset=-1"] {
        let (status, body) = server
            .get(&format!("/admin/users?{bad}"), Some(admin))
            .await;
        assert_error(status, &body, 400, "invalid_request");
    }

    // Ban n0 for an hour, kick n2, make n1 an admin, then lift n0's ban.
    let (status, banned) = server
        .post(
            &format!("/admin/users/{}/ban", ids[0]),
            Some(admin),
            json!({"reason": "griefing", "duration_secs": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{banned}");
    let until = banned["banned_until"].as_i64().expect("banned_until");
    let (_, bans) = server.get("/admin/bans", Some(admin)).await;
    let ban = bans["bans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["user"]["id"] == ids[0].as_str())
        .unwrap_or_else(|| panic!("ban not listed: {bans}"))
        .clone();
    assert_eq!(ban["user"]["username"], n0.as_str());
    assert_eq!(ban["reason"], "griefing");
    assert_eq!(ban["banned_until"], until);
    assert_eq!(ban["banned_by"]["username"], ADMIN, "{ban}");
    let (_, found) = server
        .get(&format!("/admin/users?query={n0}"), Some(admin))
        .await;
    assert_eq!(found["users"][0]["ban"]["reason"], "griefing", "{found}");
    assert_eq!(
        found["users"][0]["sessions"], 0,
        "the ban ended the session: {found}"
    );
    drop(session);

    let (status, _) = server
        .post(
            &format!("/admin/users/{}/kick", ids[2]),
            Some(admin),
            json!({"reason": "afk"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .request(
            reqwest::Method::PUT,
            &format!("/admin/users/{}/role", ids[1]),
            Some(admin),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/users/{}/ban", ids[0]),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, bans) = server.get("/admin/bans", Some(admin)).await;
    assert!(
        !bans["bans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["user"]["id"] == ids[0].as_str()),
        "lifted ban still listed: {bans}"
    );

    let (status, log) = server
        .get(&format!("/admin/audit?user={}", ids[0]), Some(admin))
        .await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unban", "ban"], "newest first: {log}");
    let ban_entry = &entries[1];
    assert_eq!(ban_entry["admin"]["username"], ADMIN);
    assert_eq!(ban_entry["target"]["username"], n0.as_str());
    assert_eq!(ban_entry["reason"], "griefing");
    assert_eq!(ban_entry["banned_until"], until);
    assert!(ban_entry["at"].as_i64().unwrap() <= entries[0]["at"].as_i64().unwrap());

    let (_, log) = server.get("/admin/audit?limit=100", Some(admin)).await;
    let about = |id: &str, action: &str| {
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["target"]["id"] == id && e["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} of {id} in {log}"))
    };
    assert_eq!(about(&ids[2], "kick")["reason"], "afk");
    assert_eq!(about(&ids[1], "role")["role"], "admin");
    let (status, body) = server.get("/admin/audit?limit=0", Some(admin)).await;
    assert_error(status, &body, 400, "invalid_request");
}
