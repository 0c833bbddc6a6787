//! A socket the server closes while its client is still sending: the client must read the
//! close frame (with its code), and its writes must not fail with a TCP reset before it
//! has. An SDK whose write fails with a reset reports a network error and reconnects
//! (most libraries drop the frames they had not read yet); one that reads 4000 or 1008
//! knows why it was closed and does not.
//!
//! The client here never stops sending on its own: a writer task sends on a timer until
//! its library refuses (after the close frame was read), while a reader reads, after a
//! pause as a busy client would (shorter than the server's `--ws-close-linger-ms`). Every
//! round opens a fresh socket: a reset is a race, so one round proves little.

use std::time::Duration;

use arena_tests::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How the client's reader pauses before reading (the server lingers 2 s by default).
const READ_PAUSE: Duration = Duration::from_millis(1_000);

/// How the socket ended for the client.
#[derive(Debug)]
struct Seen {
    /// What the reader read last: the close code, or the error or end it met instead.
    reader: Result<u16, String>,
    /// Why the writer stopped: `None` if its library refused to send after the close
    /// (the orderly end), `Some(error)` if the connection failed under it.
    writer_failed: Option<String>,
}

/// Open a socket, send `burst` binary frames at once, then a protocol ping every `every`
/// without stopping, and report how the socket ended for the client.
async fn close_while_sending(
    server: &TestServer,
    token: &str,
    burst: usize,
    every: Duration,
) -> Seen {
    let ws = server.ws_ok(token).await;
    let (mut tx, mut rx) = ws.stream.split();
    let writer = tokio::spawn(async move {
        let mut frames = (0..burst)
            .map(|_| Message::binary(vec![0u8; 16]))
            .collect::<Vec<_>>()
            .into_iter();
        let mut tick = tokio::time::interval(every);
        for n in 0u64.. {
            let frame = match frames.next() {
                Some(frame) => frame,
                None => {
                    tick.tick().await;
                    Message::text(json!({"type": "ping", "id": n}).to_string())
                }
            };
            if let Err(e) = tx.send(frame).await {
                return match e {
                    // The library read the close frame (or sent its reply): the orderly end.
                    WsError::Protocol(ProtocolError::SendAfterClosing)
                    | WsError::AlreadyClosed
                    | WsError::ConnectionClosed => None,
                    other => Some(other.to_string()),
                };
            }
        }
        unreachable!()
    });
    let reader = tokio::time::timeout(DEADLINE, async {
        tokio::time::sleep(READ_PAUSE).await;
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return Ok(frame.map_or(1005, |f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the stream ended".into()),
            }
        }
    })
    .await
    .expect("the socket was not closed before the deadline");
    let writer_failed = tokio::time::timeout(DEADLINE, writer)
        .await
        .expect("the writer still sends after the close")
        .expect("writer task");
    Seen {
        reader,
        writer_failed,
    }
}

#[track_caller]
fn assert_closed_cleanly(round: usize, seen: &Seen, code: u16) {
    assert!(
        seen.reader == Ok(code) && seen.writer_failed.is_none(),
        "round {round}: expected the {code} close frame and no failed write, the client saw {seen:?}"
    );
}

#[tokio::test]
async fn a_client_still_sending_after_invalid_frames_reads_the_4000_close() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--max-invalid-frames", "8"]).await;
    let player = server.new_player("cs").await;
    for round in 0..3 {
        let seen = close_while_sending(&server, player.token(), 9, Duration::from_millis(20)).await;
        assert_closed_cleanly(round, &seen, 4000);
    }
}

#[tokio::test]
async fn a_client_flooding_past_the_rate_reads_the_1008_close() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--ws-rate-limit", "5"]).await;
    let player = server.new_player("cs").await;
    for round in 0..3 {
        let seen = close_while_sending(&server, player.token(), 0, Duration::from_millis(2)).await;
        assert_closed_cleanly(round, &seen, 1008);
    }
}
