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

/// The admin's user page and the actions taken from it, naming the user `@username`:
/// the page lists the user's sessions, sockets (with the room's name) and the admin
/// actions on them; ending one session closes its socket with 4001 and leaves the other
/// one playing; ban, unban and kick by name; each is in the user's history, and the
/// overview counts the logins and revocations.
pub async fn user_page_and_actions_by_name(server: &TestServer, admin: &str) {
    let owned_name = unique("up");
    let name = owned_name.as_str();
    let password = "user-page-password";
    let id = server.register(name, password).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (one, two) = (
        server.login(name, password).await,
        server.login(name, password).await,
    );
    let (_, room) = server
        .post(
            "/lobby/rooms",
            Some(&one.access_token),
            json!({"name": "Den of Names"}),
        )
        .await;
    let mut ws_one = server.ws_ok(&one.access_token).await;
    ws_one
        .send_json(json!({"type": "join", "room": room["id"]}))
        .await;
    ws_one.recv_type("joined").await;
    let mut ws_two = server.ws_ok(&two.access_token).await;
    let page = |who: String| async move {
        server
            .get(&format!("/admin/users/{who}"), Some(admin))
            .await
    };

    let (status, by_name) = page(format!("@{name}")).await;
    assert_eq!(status, 200, "{by_name}");
    let (_, by_id) = page(id.clone()).await;
    assert_eq!(by_name["summary"], by_id["summary"]);
    let summary = &by_name["summary"];
    assert_eq!(summary["user"]["id"], id.as_str());
    assert_eq!(
        (summary["sessions"].as_u64(), summary["sockets"].as_u64()),
        (Some(2), Some(2)),
        "{summary}"
    );
    let sessions = by_name["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{by_name}");
    assert!(
        sessions
            .iter()
            .all(|s| s["sockets"] == 1 && s["current"] == false),
        "{by_name}"
    );
    let connections = by_name["connections"].as_array().expect("connections");
    let in_room: Vec<_> = connections
        .iter()
        .filter(|c| c["room"] == room["id"])
        .collect();
    assert_eq!(connections.len(), 2, "{by_name}");
    assert_eq!(in_room.len(), 1, "{by_name}");
    assert_eq!(in_room[0]["room_name"], "Den of Names", "{by_name}");
    assert_eq!(in_room[0]["session_id"], one.session_id.as_str());
    assert_eq!(by_name["history"], json!([]));
    for nobody in ["@nobody-at-all", "u_nosuchuser1", "@not a name"] {
        let (status, body) = page(nobody.replace(' ', "%20")).await;
        assert_error(status, &body, 404, "not_found");
    }

    // End one session: its socket closes with 4001, the other session plays on.
    let end = |session: String| async move {
        server
            .request(
                reqwest::Method::DELETE,
                &format!("/admin/users/@{name}/sessions/{session}"),
                Some(admin),
                None,
            )
            .await
    };
    assert_eq!(end(one.session_id.clone()).await.0, 204);
    assert_eq!(ws_one.close_code().await, 4001);
    ws_two.assert_alive().await;
    let (status, body) = server.get("/auth/me", Some(&one.access_token)).await;
    assert_error(status, &body, 401, "token_revoked");
    assert_eq!(server.get("/auth/me", Some(&two.access_token)).await.0, 200);
    // Ending it again changes nothing (and is not logged twice); a session that is not
    // theirs is not found.
    assert_eq!(end(one.session_id.clone()).await.0, 204);
    let (status, body) = end("s_notasession".to_string()).await;
    assert_error(status, &body, 404, "not_found");

    // Ban, unban and kick by name.
    let (status, body) = server
        .post(
            &format!("/admin/users/@{name}/ban"),
            Some(admin),
            json!({"reason": "by name"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closed"], 1, "{body}");
    assert_eq!(ws_two.close_code().await, 4003);
    let (_, bans) = server.get("/admin/bans", Some(admin)).await;
    assert!(
        bans["bans"]
            .as_array()
            .expect("bans")
            .iter()
            .any(|b| b["user"]["id"] == id.as_str()),
        "{bans}"
    );
    let (status, body) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/users/@{name}/ban"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let back = server.login(name, password).await;
    let (status, body) = server
        .post(
            &format!("/admin/users/@{name}/kick"),
            Some(admin),
            json!({"reason": "one more"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/auth/me", Some(&back.access_token)).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = server
        .post("/admin/users/@nobody-at-all/kick", Some(admin), json!({}))
        .await;
    assert_error(status, &body, 404, "not_found");

    let (_, after) = page(format!("@{name}")).await;
    let history = after["history"].as_array().expect("history");
    let actions: Vec<&str> = history
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["kick", "unban", "ban", "end_session"],
        "newest first: {after}"
    );
    let ended = &history[3];
    assert_eq!(ended["session_id"], one.session_id.as_str());
    assert_eq!(ended["admin"]["username"], ADMIN);
    assert_eq!(ended["target"]["username"], name);
    assert_eq!(after["summary"]["sessions"], 0, "{after}");
    assert_eq!(after["connections"], json!([]), "{after}");

    // The overview counts this scenario's logins and revocations in the last minutes.
    let (status, overview) = server.get("/admin/overview", Some(admin)).await;
    assert_eq!(status, 200, "{overview}");
    let minutes = overview["minutes"].as_array().expect("minutes");
    assert_eq!(
        minutes.len(),
        arena_protocol::http::ACTIVITY_MINUTES,
        "{overview}"
    );
    let total = |field: &str| {
        minutes
            .iter()
            .filter_map(|m| m[field].as_u64())
            .sum::<u64>()
    };
    assert!(total("logins") >= 3, "three logins here: {overview}");
    // One session ended, one ban, one kick.
    assert!(total("revocations") >= 3, "{overview}");
    assert!(
        overview["rooms"].as_u64() >= Some(1) && overview["nodes"] == 1,
        "{overview}"
    );
}
