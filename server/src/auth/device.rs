//! Known-device tokens: what lets an account's owner log in while someone else is
//! guessing its password.
//!
//! A successful login answers with a `device_token`; the client keeps it and sends it
//! with its next logins. It says "this device logged in as this username before" and
//! nothing more: it is not a credential (the password is still required) and not tied to
//! a session (logging out does not end it). A login that carries a valid one for its
//! username is charged to that device's own attempt limit instead of the username's
//! limits, so a guesser hammering the username (from anywhere) cannot lock the owner out
//! of a device they used before; a guesser holding a stolen device token gets that one
//! device's limit and no more.
//!
//! The token is `d1.<device id>.<issued at, s>.<HMAC-SHA256>`, the HMAC over the
//! lower-cased username, the device id and the time, under a key derived from the
//! keyring's chain key (shared by every node of a deployment): any node verifies it with
//! no lookup. It expires after `--device-token-days`; each successful login renews it.

use aws_lc_rs::constant_time::verify_slices_are_equal;

use crate::ids;

/// Longest token accepted for parsing; a real one is about 80 characters.
const MAX_TOKEN_BYTES: usize = 160;

/// A verified device: its id (the key of its attempt limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDevice {
    pub id: String,
}

/// The HMAC of one token's contents. The message holds newlines, which no refresh token
/// (the chain key's other use: base64url) can hold, so the two uses never collide.
fn mac(chain_key: &[u8], username: &str, device_id: &str, issued: i64) -> String {
    let name = username.to_ascii_lowercase();
    ids::hmac_token(
        chain_key,
        &format!("arena device token v1\n{name}\n{device_id}\n{issued}"),
    )
}

/// A token for `device_id` (a new id when `None`) and `username`, issued at `now_secs`.
pub fn issue(
    chain_key: &[u8],
    username: &str,
    device: Option<&KnownDevice>,
    now_secs: i64,
) -> String {
    let id = device.map_or_else(|| ids::random_token(12), |d| d.id.clone());
    let tag = mac(chain_key, username, &id, now_secs);
    format!("d1.{id}.{now_secs}.{tag}")
}

/// The device `token` names, if it was issued for `username` by this deployment no more
/// than `ttl_secs` ago. Anything else (malformed, another username, forged, expired) is
/// `None`: the login is then treated as one from an unknown device, never refused for it.
pub fn verify(
    chain_key: &[u8],
    token: &str,
    username: &str,
    now_secs: i64,
    ttl_secs: i64,
) -> Option<KnownDevice> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let mut parts = token.split('.');
    let (Some("d1"), Some(id), Some(issued), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let valid_id = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let issued: i64 = issued.parse().ok()?;
    if !valid_id || issued > now_secs + 60 || now_secs.saturating_sub(issued) > ttl_secs {
        return None;
    }
    let expected = mac(chain_key, username, id, issued);
    verify_slices_are_equal(expected.as_bytes(), tag.as_bytes()).ok()?;
    Some(KnownDevice { id: id.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const DAY: i64 = 86_400;

    #[test]
    fn a_token_is_known_for_its_username_only_and_until_it_expires() {
        let token = issue(KEY, "Alice", None, 1_000_000);
        let device = verify(KEY, &token, "alice", 1_000_000 + DAY, 30 * DAY).expect("known");
        // Renewed: the same device, a new time.
        let renewed = issue(KEY, "alice", Some(&device), 1_000_000 + DAY);
        assert_eq!(
            verify(KEY, &renewed, "ALICE", 1_000_000 + DAY, 30 * DAY),
            Some(device)
        );
        assert_eq!(verify(KEY, &token, "bob", 1_000_000, 30 * DAY), None);
        assert_eq!(
            verify(KEY, &token, "alice", 1_000_000 + 31 * DAY, 30 * DAY),
            None
        );
        assert_eq!(
            verify(
                b"another deployment's key",
                &token,
                "alice",
                1_000_000,
                30 * DAY
            ),
            None
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_unknown() {
        let token = issue(KEY, "alice", None, 1_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        let other_id = format!("d1.someoneelse.{}.{}", parts[2], parts[3]);
        let later = format!("d1.{}.{}.{}", parts[1], 1_000_500, parts[3]);
        for bad in [
            String::new(),
            "d1".into(),
            "d1...".into(),
            other_id,
            later,
            format!("{token}.extra"),
            "x".repeat(10_000),
            token.replace("d1.", "d2."),
        ] {
            assert_eq!(
                verify(KEY, &bad, "alice", 1_000_600, 30 * DAY),
                None,
                "{bad:.40}"
            );
        }
    }
}
