//! What the auth rules need from the other nodes of a cluster, as a trait: publish a
//! revocation and learn who confirmed it, count a user's sockets elsewhere, hold a
//! deployment-wide socket quota and rate limit. `cluster::Cluster` implements it over
//! Redis; without a backplane there are no peers and every answer is this node's own.
//! Keeping it a trait keeps the dependency one way: `cluster` knows `auth` (it applies
//! what it receives through [`super::Auth`]), `auth` knows only this.

use std::collections::HashMap;

use futures_util::future::BoxFuture;

use crate::events::LoggedEvent;

/// What the other live nodes said about a published revocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerAcks {
    /// Other nodes that confirmed they applied it in time.
    pub acked: usize,
    /// Other nodes that were live when it was published (or that confirmed it).
    pub live: usize,
    /// Sockets the confirming nodes closed.
    pub closed: usize,
}

/// A socket counted against the deployment-wide per-user cap; dropping it gives the
/// place back.
pub trait SocketLease: Send + Sync {}

/// The deployment-wide socket cap refused one more socket for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota;

pub trait Peers: Send + Sync {
    /// Publish an event this node committed and wait, at most the ack timeout, for every
    /// other live node to confirm it applied it.
    fn deliver<'a>(&'a self, event: &'a LoggedEvent) -> BoxFuture<'a, PeerAcks>;

    /// The user's open sockets on the other live nodes, by session id (those that
    /// answered within the ack timeout).
    fn sockets_by_session<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, HashMap<String, usize>>;

    /// Count one more socket of `user_id` against `max` for the whole deployment.
    /// `Ok(None)`: the backplane is out of reach and the cap holds per node only.
    fn acquire_socket<'a>(
        &'a self,
        user_id: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Option<Box<dyn SocketLease>>, OverQuota>>;

    /// Charge one attempt to `key` against `per_minute` for the whole deployment:
    /// `Some(Ok)` allowed, `Some(Err(wait_secs))` refused, `None` the backplane is out of
    /// reach (the caller falls back to its own limiter).
    fn check_rate<'a>(
        &'a self,
        key: &'a str,
        per_minute: u32,
    ) -> BoxFuture<'a, Option<Result<(), u64>>>;
}
