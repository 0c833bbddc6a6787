//! A TCP proxy that puts a distance between a server and what it talks to: every chunk
//! read from either side is written to the other `delay` later (chunks keep their order
//! and stay pipelined, so the link has latency but not less bandwidth), as a database in
//! another zone would be. Links end with either side; all of them end on drop.
//!
//! It runs on a thread and runtime of its own, so that a test that loads its own runtime
//! (thousands of client tasks) does not stretch the delay it means to add.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Chunks in flight per direction before the proxy stops reading (TCP's own backpressure
/// then reaches the sender).
const IN_FLIGHT: usize = 256;

pub struct DelayProxy {
    /// Where to connect instead of the target (`127.0.0.1:port`).
    pub addr: String,
    /// The delay each way, in microseconds (read for every chunk).
    delay_us: Arc<AtomicU64>,
    /// Dropped (or sent) to stop the proxy's runtime, and with it every link.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl DelayProxy {
    /// Listen on a free loopback port; forward to `target` with `delay` each way.
    pub fn start(target: &str, delay: Duration) -> DelayProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the delaying proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let target = target.to_string();
        let delay_us = Arc::new(AtomicU64::new(micros(delay)));
        let delay = delay_us.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(link(client, target.clone(), delay.clone()));
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    _ = accept => {}
                }
            });
            // Dropping the runtime here ends every link.
        });
        DelayProxy {
            addr,
            delay_us,
            _stop: stop,
        }
    }

    /// Change the delay, for chunks read from now on (a server can start on a near
    /// database, then find it far).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(micros(delay), Ordering::Relaxed);
    }
}

fn micros(delay: Duration) -> u64 {
    u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)
}

async fn link(client: TcpStream, target: String, delay: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        delayed(client_read, server_write, delay.clone()),
        delayed(server_read, client_write, delay),
    );
}

/// Copy `from` to `to`, each chunk `delay` after it was read; at `from`'s end (or an
/// error on either side) shut `to` down.
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Arc<AtomicU64>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
