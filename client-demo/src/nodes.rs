//! The servers (nodes) a load run spreads over. It owns placement: HTTP calls go to the
//! nodes in turn, socket `i` of a user goes to node `i mod N`, and a user's revocation
//! is sent to a node that holds none of that user's sockets when there is one (else to
//! one that holds only some), so every measured revocation has to cross nodes. With
//! one server every call and socket goes to it, exactly as before.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::api::{Api, Socket};
use crate::dial::Dialer;

pub struct Nodes {
    bases: Vec<String>,
    apis: Vec<Api>,
    dialer: Dialer,
    next_http: AtomicUsize,
}

impl Nodes {
    /// `bases` are the servers' http:// URLs (at least one); `sources` the local
    /// addresses to dial from (see [`Dialer::new`]).
    pub fn new(bases: &[String], sources: &[IpAddr]) -> Result<Nodes, String> {
        if bases.is_empty() {
            return Err("no --server given".into());
        }
        let apis = bases
            .iter()
            .map(|b| Api::new(b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Nodes {
            bases: bases.to_vec(),
            apis,
            dialer: Dialer::new(bases, sources)?,
            next_http: AtomicUsize::new(0),
        })
    }

    /// The servers' base URLs, as given.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    pub fn len(&self) -> usize {
        self.apis.len()
    }

    /// The next node's API, in turn.
    pub fn any(&self) -> &Api {
        let n = self.next_http.fetch_add(1, Ordering::Relaxed);
        &self.apis[n % self.apis.len()]
    }

    /// Node `node mod N`'s API.
    pub fn api(&self, node: usize) -> &Api {
        &self.apis[node % self.apis.len()]
    }

    /// Open an authenticated socket on node `node mod N`.
    pub async fn connect(&self, node: usize, token: &str) -> Result<Socket, String> {
        self.dialer.connect(node % self.apis.len(), token).await
    }

    /// The node to revoke user number `user` on, when that user's `sockets` sockets sit
    /// on nodes `0, 1, …` (socket `i` on node `i mod N`): one holding none of them when
    /// there is one, spreading users over those; otherwise node `user mod N`, which
    /// holds only some of them when N > 1.
    pub fn revoking_node(&self, user: usize, sockets: usize) -> usize {
        let n = self.apis.len();
        if sockets < n {
            sockets + user % (n - sockets)
        } else {
            user % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Nodes {
        let bases: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 18000 + i))
            .collect();
        Nodes::new(&bases, &[]).expect("valid servers")
    }

    #[test]
    fn a_revocation_goes_to_a_node_without_the_users_sockets_when_there_is_one() {
        let three = nodes(3);
        for user in 0..12 {
            for sockets in 1..3 {
                let node = three.revoking_node(user, sockets);
                assert!(node < 3);
                // Sockets 0..sockets sit on nodes 0..sockets (fewer sockets than nodes).
                assert!(
                    node >= sockets,
                    "user {user} with {sockets} socket(s) -> node {node}"
                );
            }
        }
        // Both free nodes are used when the user has one socket.
        assert_ne!(three.revoking_node(0, 1), three.revoking_node(1, 1));
    }

    #[test]
    fn with_as_many_sockets_as_nodes_users_rotate_over_every_node() {
        let three = nodes(3);
        let picked: Vec<usize> = (0..6).map(|u| three.revoking_node(u, 10)).collect();
        assert_eq!(picked, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn one_server_gets_everything() {
        let one = nodes(1);
        assert_eq!(one.revoking_node(5, 10), 0);
        assert_eq!(one.revoking_node(5, 0), 0);
        assert!(std::ptr::eq(one.any(), one.api(7)));
    }
}
