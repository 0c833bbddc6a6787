//! Random identifiers and secrets, the wall clock in the protocol's units, and the
//! monotonic clock that every interval this node measures for itself is taken on.
//!
//! Ids are opaque to clients (PROTOCOL.md); we make them unguessable so that knowing
//! one (a session id shown to an admin, say) grants nothing.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `n` random bytes from the OS generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG only fails if the OS cannot supply randomness at all, in which case
    // no secret we could make would be safe to hand out.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("operating system RNG failed");
    buf
}

/// `bytes` random bytes from the OS generator, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

/// A new id with a readable prefix: `u_…` users, `s_…` sessions, `c_…` connections.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_token(12))
}

/// SHA-256 of a high-entropy secret, hex-encoded. Refresh tokens carry 256 random bits,
/// so a fast hash is enough: there is nothing to brute-force.
pub fn sha256_hex(input: &str) -> String {
    sha256_hex_bytes(input.as_bytes())
}

pub fn sha256_hex_bytes(input: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `message` under `key`, base64url: a value only the holder of `key` can
/// compute, and the same every time.
pub fn hmac_token(key: &[u8], message: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, message.as_bytes()).as_ref())
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Milliseconds on this process's monotonic clock (since its first reading). Intervals a
/// node measures for itself (how long since it last confirmed it holds every revocation,
/// since its last ping came back) are taken on it: the wall clock can be stepped either
/// way (NTP, an operator, a VM restored from a snapshot), which would let a node cut off
/// from the database serve past its stale time, or close every socket for nothing.
pub fn mono_ms() -> i64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// A [`mono_ms`] reading older than any window: "never".
pub const MONO_NEVER: i64 = i64::MIN / 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_prefixed() {
        let a = new_id("u");
        let b = new_id("u");
        assert!(a.starts_with("u_"));
        assert_ne!(a, b);
        assert_eq!(random_token(32).len(), 43);
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
