//! Failed-login limiting slows a guesser without locking the account's owner out.
//!
//! Before: every login attempt for a username, from anywhere, was charged to one
//! per-username bucket, so one address sending wrong passwords for `admin` kept the
//! admin from logging in at all, from any address, for as long as it kept sending.
//! Now a login is charged per address, per (username, address), and per username from
//! everywhere only when it comes from an unknown device; a login carrying the
//! `device_token` of an earlier successful login is charged to that device instead.
//!
//! Source addresses are 127.0.0.x (the loopback /8 is all local on Linux).

use std::net::{IpAddr, Ipv4Addr};

use arena_tests::*;
use serde_json::{json, Value};

/// Per address, per (username, address), per device: attempts a minute.
const PER_ADDRESS: u32 = 4;
/// Per username from unknown devices, from every address together.
const PER_USERNAME: u32 = 10;

struct Client {
    http: reqwest::Client,
}

impl Client {
    fn from(last_octet: u8) -> Client {
        Client {
            http: reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
                .timeout(DEADLINE)
                .build()
                .expect("client"),
        }
    }

    /// A login: status, `Retry-After` and body.
    async fn login(
        &self,
        server: &TestServer,
        username: &str,
        password: &str,
        device_token: Option<&str>,
    ) -> (u16, Option<u64>, Value) {
        let mut body = json!({"username": username, "password": password});
        if let Some(token) = device_token {
            body["device_token"] = json!(token);
        }
        let resp = self
            .http
            .post(format!("{}/auth/login", server.base))
            .json(&body)
            .send()
            .await
            .expect("login request");
        let status = resp.status().as_u16();
        let retry_after = retry_after(&resp);
        (
            status,
            retry_after,
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Wrong passwords for `username` until refused; how many were answered 401.
    async fn guess_until_refused(&self, server: &TestServer, username: &str) -> u32 {
        for attempt in 0..100 {
            let (status, retry_after, body) =
                self.login(server, username, "not-the-password", None).await;
            match status {
                401 => continue,
                429 => {
                    assert!(
                        retry_after.is_some_and(|s| s >= 1),
                        "429 without Retry-After: {body}"
                    );
                    return attempt;
                }
                other => panic!("a guess got {other}: {body}"),
            }
        }
        panic!("100 guesses and never refused: the guesser is not slowed")
    }
}

async fn start() -> (TestServer, DataDir) {
    let data = DataDir::new();
    let per_address = PER_ADDRESS.to_string();
    let per_username = PER_USERNAME.to_string();
    let server = TestServer::start_raw(
        &data,
        &[
            "--admin-username",
            ADMIN,
            "--admin-password",
            ADMIN_PASSWORD,
            "--auth-rate-limit",
            &per_address,
            "--login-user-rate-limit",
            &per_username,
        ],
    )
    .await;
    (server, data)
}

#[tokio::test]
async fn one_address_guessing_the_admins_password_cannot_keep_the_admin_out() {
    let (server, _data) = start().await;
    let attacker = Client::from(2);
    let refused_after = attacker.guess_until_refused(&server, ADMIN).await;
    assert_eq!(
        refused_after, PER_ADDRESS,
        "the guesser is slowed at its limit"
    );

    // The admin, from another address, logs in at once.
    let admin = Client::from(3);
    let (status, _, body) = admin.login(&server, ADMIN, ADMIN_PASSWORD, None).await;
    assert_eq!(
        status, 200,
        "the admin was locked out by one guessing address: {body}"
    );
    assert!(
        body["device_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );

    // The guesser is still slowed, whatever it does meanwhile.
    let (status, _, _) = attacker
        .login(&server, ADMIN, "not-the-password", None)
        .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn guessing_from_many_addresses_cannot_keep_the_admin_out_of_a_known_device() {
    let (server, _data) = start().await;
    // The admin logged in once on this device: it holds a device token.
    let admin_device = Client::from(20);
    let (status, _, body) = admin_device
        .login(&server, ADMIN, ADMIN_PASSWORD, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let device_token = body["device_token"]
        .as_str()
        .expect("a device token")
        .to_string();

    // Guessers on many addresses, each within its own limits, together use up the
    // username's limit for unknown devices.
    let mut guesses = 0;
    for octet in 30..=(30 + PER_USERNAME as u8) {
        let guesser = Client::from(octet);
        for _ in 0..2 {
            let (status, _, body) = guesser
                .login(&server, ADMIN, "not-the-password", None)
                .await;
            assert!(status == 401 || status == 429, "{status} {body}");
            guesses += u32::from(status == 401);
        }
    }
    assert!(guesses <= PER_USERNAME + 1, "{guesses} guesses got through");
    let (status, retry_after, _) = Client::from(50)
        .login(&server, ADMIN, "not-the-password", None)
        .await;
    assert_eq!(
        status, 429,
        "the username's limit for unknown devices is used up"
    );
    assert!(retry_after.is_some());

    // The admin's known device still logs in, from any address; a forged or another
    // user's token is no key.
    for octet in [21, 40] {
        let (status, _, body) = Client::from(octet)
            .login(&server, ADMIN, ADMIN_PASSWORD, Some(&device_token))
            .await;
        assert_eq!(
            status, 200,
            "the admin's known device was locked out: {body}"
        );
    }
    let forged = format!("{device_token}x");
    let (status, _, _) = Client::from(22)
        .login(&server, ADMIN, ADMIN_PASSWORD, Some(&forged))
        .await;
    assert_eq!(status, 429, "a forged device token counted as known");

    // A stolen device token buys one device's limit of guesses, no more.
    let thief = Client::from(60);
    let mut stolen_guesses = 0;
    loop {
        let (status, _, body) = thief
            .login(&server, ADMIN, "not-the-password", Some(&device_token))
            .await;
        match status {
            401 => stolen_guesses += 1,
            429 => break,
            other => panic!("{other}: {body}"),
        }
        assert!(
            stolen_guesses <= PER_ADDRESS,
            "a device token gives unlimited guesses"
        );
    }
}

#[tokio::test]
async fn registering_a_taken_name_does_not_spend_its_owners_logins() {
    let (server, _data) = start().await;
    let squatter = Client::from(70);
    for _ in 0..PER_ADDRESS {
        let resp = squatter
            .http
            .post(format!("{}/auth/register", server.base))
            .json(&json!({"username": ADMIN, "password": "whatever-password"}))
            .send()
            .await
            .expect("register");
        assert_eq!(resp.status().as_u16(), 409);
    }
    let (status, _, body) = Client::from(71)
        .login(&server, ADMIN, ADMIN_PASSWORD, None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn failed_guesses_from_one_address_wait_exponentially_longer_but_not_the_owner() {
    let data = DataDir::new();
    let server = TestServer::start_raw(
        &data,
        &[
            "--admin-username",
            ADMIN,
            "--admin-password",
            ADMIN_PASSWORD,
            "--auth-rate-limit",
            "1000",
            "--login-backoff-free",
            "2",
            "--login-backoff-max-secs",
            "4",
        ],
    )
    .await;
    // The admin's device, from the address the guesser will use.
    let shared = Client::from(80);
    let (status, _, body) = shared.login(&server, ADMIN, ADMIN_PASSWORD, None).await;
    assert_eq!(status, 200, "{body}");
    let device_token = body["device_token"]
        .as_str()
        .expect("device token")
        .to_string();

    let guesser = Client::from(80);
    for _ in 0..2 {
        let (status, _, _) = guesser
            .login(&server, ADMIN, "not-the-password", None)
            .await;
        assert_eq!(status, 401, "the first guesses are free");
    }
    // Each further failure doubles the wait: 1 s, 2 s, then the 4 s cap.
    let mut waits = vec![];
    for _ in 0..3 {
        let (status, retry_after, body) = guesser
            .login(&server, ADMIN, "not-the-password", None)
            .await;
        assert_eq!(status, 429, "{body}");
        let wait = retry_after.expect("Retry-After");
        waits.push(wait);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        let (status, _, body) = guesser
            .login(&server, ADMIN, "not-the-password", None)
            .await;
        assert_eq!(
            status, 401,
            "after its wait a guess is checked again: {body}"
        );
    }
    assert_eq!(waits, [1, 2, 4]);

    // Meanwhile the admin logs in from anywhere else, and from the guesser's own address
    // on the known device.
    let (status, _, body) = Client::from(81)
        .login(&server, ADMIN, ADMIN_PASSWORD, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = shared
        .login(&server, ADMIN, ADMIN_PASSWORD, Some(&device_token))
        .await;
    assert_eq!(status, 200, "{body}");
}
