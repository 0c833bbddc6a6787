//! Promise 2: an upgrade that races a logout is either refused or closed by it, never
//! left open. 100 upgrades race one logout, many rounds, with the logout landing at
//! different moments of the burst.

use std::time::Duration;

use arena_tests::*;

const UPGRADES: usize = 100;
const ROUNDS: u64 = 20;

#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the fields are read through Debug in the failure message"
)]
enum Outcome {
    Refused(u16, String),
    Closed(u16),
    Dropped(String),
    LeftOpen,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_racing_a_logout_are_refused_or_closed() {
    let data = DataDir::new();
    let (server, admin) = start_with_admin(&data, &["--max-sockets-per-user", "1000"]).await;
    let server = std::sync::Arc::new(server);
    let player = server.new_player("race").await;
    let (mut accepted, mut refused) = (0, 0);

    for round in 0..ROUNDS {
        let session = server.login(&player.username, &player.password).await;
        let token = session.access_token.clone();
        let mut tasks = Vec::with_capacity(UPGRADES);
        for _ in 0..UPGRADES {
            let server = server.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                match server.ws(WsAuth::Header(&token)).await {
                    Err(r) => Outcome::Refused(
                        r.status,
                        r.body["error"]["code"].as_str().unwrap_or("").into(),
                    ),
                    Ok(mut ws) => match ws.ended_within(DEADLINE).await {
                        Some(Ended::Closed(code, _)) => Outcome::Closed(code),
                        Some(Ended::Dropped(why)) => Outcome::Dropped(why),
                        None => Outcome::LeftOpen,
                    },
                }
            }));
        }
        // Land the logout at a different point of the burst each round.
        tokio::time::sleep(Duration::from_millis(round * 3)).await;
        assert_eq!(server.logout(&token, false).await, 204);

        for task in tasks {
            match task.await.expect("task") {
                Outcome::Closed(4001) => accepted += 1,
                Outcome::Refused(401, code) if code == "token_revoked" => refused += 1,
                other => panic!("round {round}: a racing socket ended as {other:?}"),
            }
        }
        let open = server.connections_of(&admin, player.id()).await;
        assert!(
            open.is_empty(),
            "round {round}: registry still holds {open:?}"
        );
    }
    eprintln!("race: {accepted} sockets opened then closed with 4001, {refused} upgrades refused");
    assert_eq!(accepted + refused, UPGRADES * ROUNDS as usize);
    assert!(
        accepted > 0,
        "no upgrade ever won the race: the test did not race"
    );
}
