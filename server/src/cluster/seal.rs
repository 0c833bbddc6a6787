//! Sealed backplane messages: every revocation, acknowledgement, query, answer and ping
//! a node puts on Redis carries an HMAC-SHA256 under a key derived from the secret the
//! deployment's nodes share (their keyring's refresh chain key), over the channel it is
//! published on and the message.
//!
//! What it promises: a client of Redis without that secret (anyone who can `PUBLISH`,
//! having read the channel names with `PUBSUB CHANNELS`) can delay, drop or replay what
//! nodes say, but cannot make a node apply a revocation it did not get from a node, nor
//! count an acknowledgement no node sent, nor move a message to another channel (a reply
//! meant for one node never counts for another). Replays are harmless by construction:
//! an event is applied at most once (`auth::applied`), a reply only counts for the
//! request it answers (request numbers are random per process and never reused), and a
//! ping only for the nonce this node sent (`super::subscriber`).
//!
//! The form on the wire is `v1.<mac, base64url>.<message JSON>`. A message without it
//! (a node of an earlier release, or a stranger) is refused and counted
//! (`arena_cluster_messages_refused_total`); such a node's revocations still arrive
//! through the database's log, within `--revocation-poll-ms`.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

const VERSION: &str = "v1";

/// Seals and opens the backplane's messages of one deployment.
pub struct Seal {
    key: hmac::Key,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not in the sealed form (an earlier release, or not from a node).
    Unsealed,
    /// Sealed, but not by a holder of the deployment's secret, or altered, or published
    /// on another channel than it was sealed for.
    BadSeal,
    /// Sealed correctly, but not a message this release understands.
    Unreadable,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Unsealed => "unsealed",
            Refused::BadSeal => "bad_seal",
            Refused::Unreadable => "unreadable",
        }
    }
}

impl Seal {
    /// The seal of the deployment whose nodes share `secret`.
    pub fn for_secret(secret: &[u8]) -> Seal {
        let derived = crate::ids::hmac_token(secret, "arena backplane message seal");
        Seal {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_bytes()),
        }
    }

    fn tag(&self, channel: &str, body: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(channel.as_bytes());
        ctx.update(b"\n");
        ctx.update(body.as_bytes());
        ctx.sign()
    }

    /// `message`, sealed for `channel`.
    pub fn seal<T: Serialize>(&self, channel: &str, message: &T) -> Option<String> {
        let body = serde_json::to_string(message).ok()?;
        let mac = URL_SAFE_NO_PAD.encode(self.tag(channel, &body).as_ref());
        Some(format!("{VERSION}.{mac}.{body}"))
    }

    /// The message in `payload`, if it was sealed for `channel` with this deployment's key.
    pub fn open<T: DeserializeOwned>(&self, channel: &str, payload: &[u8]) -> Result<T, Refused> {
        let text = std::str::from_utf8(payload).map_err(|_| Refused::Unsealed)?;
        let rest = text
            .strip_prefix(VERSION)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or(Refused::Unsealed)?;
        let (mac, body) = rest.split_once('.').ok_or(Refused::Unsealed)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| Refused::BadSeal)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(self.tag(channel, body).as_ref(), &mac)
            .map_err(|_| Refused::BadSeal)?;
        serde_json::from_str(body).map_err(|_| Refused::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_deployments_own_seal_on_the_same_channel_opens() {
        let seal = Seal::for_secret(b"deployment one");
        let sealed = seal.seal("events", &serde_json::json!({"id": 6})).unwrap();
        let opened: serde_json::Value = seal.open("events", sealed.as_bytes()).unwrap();
        assert_eq!(opened["id"], 6);
        assert_eq!(
            seal.open::<serde_json::Value>("replies:b", sealed.as_bytes()),
            Err(Refused::BadSeal),
            "moved to another channel"
        );
        let stranger = Seal::for_secret(b"deployment two");
        assert_eq!(
            stranger.open::<serde_json::Value>("events", sealed.as_bytes()),
            Err(Refused::BadSeal)
        );
        let altered = sealed.replace("6", "7");
        assert_eq!(
            seal.open::<serde_json::Value>("events", altered.as_bytes()),
            Err(Refused::BadSeal)
        );
        assert_eq!(
            seal.open::<serde_json::Value>("events", br#"{"id":6}"#),
            Err(Refused::Unsealed),
            "an earlier release's plain JSON"
        );
        assert_eq!(
            seal.open::<serde_json::Value>("events", b"v1.!!.{}"),
            Err(Refused::BadSeal)
        );
    }
}
