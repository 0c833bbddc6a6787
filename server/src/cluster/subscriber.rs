//! The subscription: what this node receives from the others, in order.
//!
//! One task reads the subscription and hands revocations to one applier task through a
//! bounded queue (so a slow close never delays reading acknowledgements), in the order
//! Redis delivered them. The applier applies each through [`crate::auth::Auth`]
//! (exactly once, whatever road it also came by), acknowledges it, and reads the log if
//! an id below it is missing. Each heartbeat sends this node a ping through its own
//! subscription: while pings come back, the subscription is alive.
//!
//! When the subscription drops, its pings stop coming back (a link that died without a
//! word), or the applier falls a whole queue behind, it is opened again with backoff,
//! and the applier reads the log for whatever was published meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::seal::Refused;
use super::wire::{Published, Query, Reply, ReplyBody};
use super::Cluster;
use crate::events::LoggedEvent;
use crate::ids;

/// How many received revocations may wait for the applier. Past it the subscription is
/// dropped and opened again (the client library would otherwise buffer without bound),
/// and the log brings what was dropped: nothing is lost.
const APPLY_QUEUE: usize = 4096;

enum Inbound {
    Event {
        from: String,
        request: u64,
        logged: LoggedEvent,
    },
    /// Subscribed (again): read the log for what was published while not subscribed.
    CatchUp,
}

impl Cluster {
    pub(super) async fn run_subscriber(self: Arc<Self>, stop: CancellationToken) {
        let (queue, inbound) = mpsc::channel(APPLY_QUEUE);
        tokio::spawn(self.clone().run_applier(inbound, stop.clone()));
        let mut backoff = Duration::from_millis(100);
        loop {
            if stop.is_cancelled() {
                return;
            }
            match self.subscribe().await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    self.last_ping_back.store(ids::mono_ms(), Ordering::Release);
                    self.subscribed.store(true, Ordering::Release);
                    if queue.send(Inbound::CatchUp).await.is_err() {
                        return;
                    }
                    self.read(pubsub, &queue, &stop).await;
                    self.subscribed.store(false, Ordering::Release);
                    crate::telemetry::backplane_up(false);
                    tracing::warn!("backplane: subscription lost; reconnecting");
                }
                Err(e) => tracing::debug!(error = %e, "backplane: cannot subscribe"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn subscribe(&self) -> Result<redis::aio::PubSub, String> {
        let open = async {
            let mut pubsub = self
                .client
                .get_async_pubsub()
                .await
                .map_err(|e| e.to_string())?;
            pubsub
                .subscribe(&[
                    self.names.events().to_string(),
                    self.names.queries().to_string(),
                    self.names.replies_to(&self.config.node_id),
                ])
                .await
                .map_err(|e| e.to_string())?;
            Ok(pubsub)
        };
        tokio::time::timeout(Duration::from_secs(2), open)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Read until the subscription ends, its pings stop coming back, or the server stops.
    async fn read(
        self: &Arc<Self>,
        pubsub: redis::aio::PubSub,
        queue: &mpsc::Sender<Inbound>,
        stop: &CancellationToken,
    ) {
        let mut messages = pubsub.into_on_message();
        let silence = 3 * self.config.heartbeat.as_millis() as i64;
        let mut check = tokio::time::interval(self.config.heartbeat);
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                _ = check.tick() => {
                    if ids::mono_ms() - self.last_ping_back.load(Ordering::Acquire) > silence {
                        return; // a link that died without a word
                    }
                    continue;
                }
                message = messages.next() => match message {
                    Some(m) => m,
                    None => return,
                },
            };
            let channel = message.get_channel_name();
            let payload = message.get_payload_bytes();
            if channel == self.names.events() {
                let Some(p) = self.open::<Published>(channel, payload) else {
                    continue;
                };
                if p.node == self.config.node_id {
                    continue; // applied when it was made
                }
                let inbound = Inbound::Event {
                    from: p.node,
                    request: p.request,
                    logged: LoggedEvent {
                        id: p.id,
                        tag: p.tag,
                        origin: p.origin,
                        event: p.event,
                    },
                };
                if queue.try_send(inbound).is_err() {
                    tracing::warn!("backplane: the applier is a whole queue behind; resubscribing");
                    return;
                }
            } else if channel == self.names.queries() {
                let Some(q) = self.open::<Query>(channel, payload) else {
                    continue;
                };
                if q.node != self.config.node_id {
                    let cluster = self.clone();
                    tokio::spawn(async move { cluster.answer(q).await });
                }
            } else {
                let Some(reply) = self.open::<Reply>(channel, payload) else {
                    continue;
                };
                if let ReplyBody::Ping { nonce } = reply.body {
                    if reply.node == self.config.node_id && self.ping_came_back(nonce) {
                        self.last_ping_back.store(ids::mono_ms(), Ordering::Release);
                    }
                } else if let Some(waiter) = self.pending.get(&reply.request) {
                    let _ = waiter.send(reply);
                }
            }
        }
    }

    /// The message in `payload`, if a node of this deployment sealed it for `channel`;
    /// otherwise it is counted and logged as refused.
    fn open<T: serde::de::DeserializeOwned>(&self, channel: &str, payload: &[u8]) -> Option<T> {
        self.seal
            .open(channel, payload)
            .map_err(|why| refused(channel, why))
            .ok()
    }

    async fn run_applier(
        self: Arc<Self>,
        mut inbound: mpsc::Receiver<Inbound>,
        stop: CancellationToken,
    ) {
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = inbound.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
            };
            let Some(auth) = self.auth.upgrade() else {
                return;
            };
            match item {
                Inbound::Event {
                    from,
                    request,
                    logged,
                } => {
                    // No acknowledgement for an event this node could not place in the
                    // log it follows: an acknowledgement says it was applied.
                    if let Some(closed) = auth.apply_from_peer(&logged).await {
                        self.reply(&from, request, ReplyBody::Applied { closed })
                            .await;
                    }
                    auth.fill_gap_below(logged.id).await;
                }
                Inbound::CatchUp => match auth.catch_up().await {
                    Ok(n) => tracing::debug!(events = n, "backplane: caught up from the log"),
                    Err(e) => {
                        tracing::warn!(error = %e, "backplane: cannot read the log after subscribing");
                    }
                },
            }
        }
    }
}

/// A message on a backplane channel that was not sealed by a node of this deployment
/// (or not in a form this release reads): dropped, counted and logged.
/// Logged at most once every ten seconds: whoever can publish on Redis could otherwise
/// fill the log.
fn refused(channel: &str, why: Refused) {
    static LAST_LOGGED: std::sync::atomic::AtomicI64 =
        std::sync::atomic::AtomicI64::new(ids::MONO_NEVER);
    crate::telemetry::backplane_refused(why.as_str());
    let now = ids::mono_ms();
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if now - last >= 10_000
        && LAST_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            channel,
            reason = why.as_str(),
            "backplane: a message not sealed by a node of this deployment was refused \
             (see arena_cluster_messages_refused_total; logged at most every 10 s)"
        );
    }
}
