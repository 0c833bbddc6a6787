//! Access tokens: what a JWT carries, how we sign it, and the one verification path
//! every HTTP route and every WebSocket upgrade goes through.
//!
//! Verification pins the algorithm to the one of the key the token's `kid` names (the
//! header never chooses it), requires `exp`, `nbf`, `iss`, `aud` and `sub`, validates `nbf`, allows a small
//! configured leeway, and refuses headers that point at outside keys (`jku`, `x5u`,
//! `jwk`, `x5c`). Revocation is checked after this, in [`super::Authenticator`].
//!
//! The ring can be replaced while tokens are being verified (another server rotated the
//! shared ring): each call takes the ring once, so it signs or verifies with one whole
//! ring, never half of an old one and half of a new one.

use arena_protocol::{ErrorCode, Role};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::keys::{KeySource, Keyring, SigningAlgorithm};
use crate::error::Error;
use crate::ids;
use crate::store::Store;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// When the user last typed a password (seconds).
    pub auth_time: i64,
    pub role: Role,
    /// The username, so the socket's `welcome` needs no database read.
    pub username: String,
}

/// Signs access tokens with the keyring's current key and verifies them with the key
/// their `kid` names.
pub struct TokenKeys {
    /// Replaced whole by [`TokenKeys::replace`]; readers clone the `Arc` and let go of the
    /// lock at once, so a replacement never waits for a verification.
    ring: RwLock<Arc<Keyring>>,
    /// One reload at a time, so an older read of the database never replaces a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// A reload was asked for and has not succeeded yet (see [`TokenKeys::reload`]).
    reload_pending: AtomicBool,
    hs256: Validation,
    eddsa: Validation,
    issuer: String,
    audience: String,
}

/// What a token is minted for.
pub struct TokenSubject<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub role: Role,
    pub session_id: &'a str,
    pub auth_time: i64,
}

impl TokenKeys {
    pub fn new(ring: Keyring, issuer: &str, audience: &str, leeway: u64) -> TokenKeys {
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
            v.validate_nbf = true;
            v.validate_exp = true;
            v.leeway = leeway;
            v.set_issuer(&[issuer]);
            v.set_audience(&[audience]);
            v
        };
        TokenKeys {
            ring: RwLock::new(Arc::new(ring)),
            reloading: tokio::sync::Mutex::new(()),
            reload_pending: AtomicBool::new(false),
            hs256: validation(Algorithm::HS256),
            eddsa: validation(Algorithm::EdDSA),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
        }
    }

    /// HS256 with a fixed secret of at least [`super::keys::MIN_SECRET_BYTES`].
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str, leeway: u64) -> Result<Self, String> {
        Ok(TokenKeys::new(
            Keyring::from_secret(secret)?,
            issuer,
            audience,
            leeway,
        ))
    }

    /// The ring in use now.
    pub fn ring(&self) -> Arc<Keyring> {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Use `ring` from now on, for signing and for verifying.
    pub fn replace(&self, ring: Keyring) {
        *self.ring.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
    }

    /// Read the shared ring from the database again and use it (another server rotated or
    /// pruned it). A ring of this server's own (a file, a fixed secret) stays as it is. On
    /// failure the ring in use stays and [`TokenKeys::reload_pending`] says so, for the
    /// caller to try again.
    pub async fn reload(&self, store: &Store) -> Result<(), Error> {
        if self.ring().source != KeySource::Database {
            return Ok(());
        }
        let _one_at_a_time = self.reloading.lock().await;
        self.reload_pending.store(true, Ordering::Release);
        let ring = Keyring::load_shared(store).await.map_err(Error::Internal)?;
        self.replace(ring);
        self.reload_pending.store(false, Ordering::Release);
        Ok(())
    }

    /// A reload failed and has not been retried successfully yet.
    pub fn reload_pending(&self) -> bool {
        self.reload_pending.load(Ordering::Acquire)
    }

    /// The secret that derives refresh-token successors.
    pub fn chain_key(&self) -> Arc<[u8]> {
        self.ring().chain_key.clone()
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        self.ring().jwks()
    }

    /// Mint an access token issued at `now` (seconds) and valid for `ttl_secs`. The
    /// caller passes `now` so that the `exp` it recorded is exactly the token's.
    pub fn issue(
        &self,
        subject: &TokenSubject<'_>,
        now: i64,
        ttl_secs: i64,
    ) -> Result<(String, Claims), Error> {
        self.issue_with_id(subject, now, ttl_secs, ids::random_token(12))
    }

    /// As [`TokenKeys::issue`] with a given `jti`: the same inputs give the same token
    /// (HMAC and Ed25519 signatures are deterministic), which lets a refresh retried
    /// within its grace window get back exactly the answer it lost.
    pub fn issue_with_id(
        &self,
        subject: &TokenSubject<'_>,
        now: i64,
        ttl_secs: i64,
        jti: String,
    ) -> Result<(String, Claims), Error> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id.to_string(),
            sid: subject.session_id.to_string(),
            jti,
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            auth_time: subject.auth_time,
            role: subject.role,
            username: subject.username.to_string(),
        };
        let ring = self.ring();
        let key = &ring.signing;
        let mut header = Header::new(key.alg.jwt());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| Error::internal(format!("signing a token: {e}")))?;
        Ok((token, claims))
    }

    /// Check signature and claims. Says nothing about revocation.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the token is malformed"));
        }
        let ring = self.ring();
        match self.accept_own(&ring, token) {
            Some(claims) => Ok(claims),
            None => self.verify_with_crate(&ring, token),
        }
    }

    /// The fast path for the tokens this deployment signs. `jsonwebtoken::decode` costs
    /// 5–6 µs per HS256 token here (measured in `benches/auth.rs`): it parses the
    /// header three times and the claims twice and sets up the HMAC key on every call.
    /// A token whose header is byte for byte the one our own key writes needs none of
    /// that: one HMAC check with the key set up once, one parse of the claims, and the
    /// same time and audience rules as the crate's `Validation`.
    ///
    /// It only ever *accepts*. Any token it does not accept, for whatever reason, goes
    /// through [`TokenKeys::verify_with_crate`] for the verdict and the error message,
    /// so the two paths cannot disagree on a rejection; a test checks that they agree on
    /// every acceptance.
    fn accept_own(&self, ring: &Keyring, token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let key = ring.verifying.iter().find(|k| k.own_header == header)?;
        let hmac = key.hmac.as_ref()?;
        let mut mac = [0u8; 48];
        let len = URL_SAFE_NO_PAD.decode_slice(signature, &mut mac).ok()?;
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        aws_lc_rs::hmac::verify(hmac, signed, &mac[..len]).ok()?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let claims: Claims = serde_json::from_slice(&json).ok()?;
        // `Validation`'s rules: exp and nbf are non-negative seconds; expired when
        // exp < now - leeway, not yet valid when nbf > now + leeway.
        let (now, leeway) = (ids::now_secs(), self.hs256.leeway as i64);
        let in_time = claims.exp >= 0
            && claims.nbf >= 0
            && claims.exp >= now - leeway
            && claims.nbf <= now + leeway;
        (in_time && claims.iss == self.issuer && claims.aud == self.audience).then_some(claims)
    }

    /// Every check, by `jsonwebtoken`, with our own header rules first.
    fn verify_with_crate(&self, ring: &Keyring, token: &str) -> Result<Claims, Error> {
        check_header_members(token).map_err(invalid)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("the token is malformed"))?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| ring.find(kid))
            .ok_or_else(|| invalid("the token names an unknown key"))?;
        // The key decides the algorithm; the token's header only has to agree.
        let validation = match key.alg {
            SigningAlgorithm::Hs256 => &self.hs256,
            SigningAlgorithm::EdDsa => &self.eddsa,
        };
        match jsonwebtoken::decode::<Claims>(token, &key.decoding, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Error::new(ErrorCode::TokenExpired, "the token has expired")
                }
                ErrorKind::ImmatureSignature => invalid("the token is not valid yet"),
                ErrorKind::InvalidSignature => invalid("the token's signature is invalid"),
                ErrorKind::InvalidAlgorithm => invalid("the token's algorithm is not accepted"),
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    invalid("the token was not issued for this server")
                }
                ErrorKind::MissingRequiredClaim(_) => invalid("the token lacks a required claim"),
                _ => invalid("the token is malformed"),
            }),
        }
    }
}

fn invalid(why: &str) -> Error {
    Error::new(ErrorCode::TokenInvalid, why.to_string())
}

/// Header members we refuse outright (RFC 8725 §3.10, OWASP JWT cheat sheet): keys or
/// key locations supplied by the token itself (`jku`, `x5u`, `jwk`, `x5c`), and `crit`,
/// which names extensions a recipient must understand; we understand none, so RFC 7515
/// §4.1.11 requires rejecting the token. The jsonwebtoken crate ignores `crit`, so we
/// read the header's members ourselves.
fn check_header_members(token: &str) -> Result<(), &'static str> {
    const OUTSIDE_KEYS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "x5t#S256"];
    let encoded = token.split('.').next().unwrap_or("");
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| "the token is malformed")?;
    let members: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| "the token is malformed")?;
    if members.contains_key("crit") {
        return Err("the token requires extensions this server does not support");
    }
    if OUTSIDE_KEYS.iter().any(|k| members.contains_key(*k)) {
        return Err("the token names an outside key");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn keys() -> TokenKeys {
        TokenKeys::hs256(&[7u8; 32], "arena", "arena", 0).unwrap()
    }

    fn subject() -> TokenSubject<'static> {
        TokenSubject {
            user_id: "u_1",
            username: "alice",
            role: Role::Player,
            session_id: "s_1",
            auth_time: 0,
        }
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let (t, c) = k.issue(&subject(), ids::now_secs(), 60).unwrap();
        assert_eq!(k.verify(&t).unwrap(), c);
    }

    fn eddsa_keys() -> TokenKeys {
        let dir = std::env::temp_dir().join(format!("arena-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("keys-{}.json", ids::random_token(4)));
        let ring = Keyring::load_or_create(&path, SigningAlgorithm::EdDsa, false, 60).unwrap();
        TokenKeys::new(ring, "arena", "arena", 0)
    }

    #[test]
    fn eddsa_round_trip_with_kid() {
        let k = eddsa_keys();
        let (t, c) = k.issue(&subject(), ids::now_secs(), 60).unwrap();
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert!(header.kid.is_some());
        assert_eq!(k.verify(&t).unwrap(), c);
    }

    #[test]
    fn hmac_made_with_the_public_key_is_refused() {
        let k = eddsa_keys();
        let jwk = k.jwks()["keys"][0].clone();
        let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let (_, claims) = k.issue(&subject(), ids::now_secs(), 60).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = jwk["kid"].as_str().map(String::from);
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            k.verify(&forged).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }

    #[test]
    fn unknown_kid_refused() {
        let (t, claims) = keys().issue(&subject(), ids::now_secs(), 60).unwrap();
        let _ = t;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("someone-elses".into());
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(
            keys().verify(&forged).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }

    #[test]
    fn deterministic_with_the_same_id() {
        let k = keys();
        let now = ids::now_secs();
        let (a, _) = k.issue_with_id(&subject(), now, 60, "j1".into()).unwrap();
        let (b, _) = k.issue_with_id(&subject(), now, 60, "j1".into()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn short_secret_refused() {
        assert!(TokenKeys::hs256(&[1u8; 31], "a", "a", 0).is_err());
    }

    #[test]
    fn expired_is_token_expired() {
        let k = keys();
        let (t, _) = k.issue(&subject(), ids::now_secs(), -10).unwrap();
        assert_eq!(k.verify(&t).unwrap_err().code(), ErrorCode::TokenExpired);
    }

    #[test]
    fn other_key_or_audience_refused() {
        let (t, _) = keys().issue(&subject(), ids::now_secs(), 60).unwrap();
        let other = TokenKeys::hs256(&[8u8; 32], "arena", "arena", 0).unwrap();
        assert_eq!(
            other.verify(&t).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
        let aud = TokenKeys::hs256(&[7u8; 32], "arena", "elsewhere", 0).unwrap();
        assert_eq!(aud.verify(&t).unwrap_err().code(), ErrorCode::TokenInvalid);
    }

    #[test]
    fn alg_none_refused() {
        let (t, _) = keys().issue(&subject(), ids::now_secs(), 60).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{header}.{payload}.");
        assert_eq!(
            keys().verify(&forged).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }

    #[test]
    fn jku_header_refused() {
        let (t, _) = keys().issue(&subject(), ids::now_secs(), 60).unwrap();
        let mut parts = t.split('.');
        let _ = parts.next();
        let payload = parts.next().unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","jku":"http://evil/"}"#);
        let forged = format!("{header}.{payload}.sig");
        assert_eq!(
            keys().verify(&forged).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }

    /// The fast path and the crate agree on every token with our own header: valid,
    /// out of time, for someone else, malformed claims, tampered. And the tokens we
    /// issue do take the fast path.
    #[test]
    fn the_fast_path_accepts_exactly_what_jsonwebtoken_accepts() {
        let k = TokenKeys::hs256(&[7u8; 32], "arena", "arena", 5).unwrap();
        let ring = k.ring();
        let (issued, _) = k.issue(&subject(), ids::now_secs(), 60).unwrap();
        assert!(
            k.accept_own(&ring, &issued).is_some(),
            "issued tokens skip the crate"
        );
        let now = ids::now_secs();
        let good = serde_json::json!({
            "iss": "arena", "aud": "arena", "sub": "u_1", "sid": "s_1", "jti": "j",
            "iat": now, "nbf": now, "exp": now + 60, "auth_time": 0, "role": "player",
            "username": "alice",
        });
        let with = |field: &str, value: serde_json::Value| {
            let mut c = good.clone();
            c[field] = value;
            c
        };
        let without = |field: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(field);
            c
        };
        let sign = |claims: &serde_json::Value| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(ring.signing.kid.clone());
            let key = jsonwebtoken::EncodingKey::from_secret(&[7u8; 32]);
            jsonwebtoken::encode(&header, claims, &key).unwrap()
        };
        let cases: Vec<(&str, serde_json::Value, bool)> = vec![
            ("valid", good.clone(), true),
            ("an unknown extra claim", with("extra", "x".into()), true),
            (
                "expired within the leeway",
                with("exp", (now - 2).into()),
                true,
            ),
            (
                "not yet valid within the leeway",
                with("nbf", (now + 2).into()),
                true,
            ),
            ("expired", with("exp", (now - 10).into()), false),
            ("not yet valid", with("nbf", (now + 10).into()), false),
            ("negative exp", with("exp", (-1).into()), false),
            (
                "exp as a string",
                with("exp", (now + 60).to_string().into()),
                false,
            ),
            ("another issuer", with("iss", "other".into()), false),
            ("another audience", with("aud", "other".into()), false),
            (
                "audience as a list",
                with("aud", serde_json::json!(["arena"])),
                false,
            ),
            ("no sub", without("sub"), false),
            ("no exp", without("exp"), false),
            ("no nbf", without("nbf"), false),
        ];
        for (what, claims, accepted) in cases {
            let token = sign(&claims);
            assert!(token.starts_with(&format!("{}.", ring.verifying[0].own_header)));
            let fast = k.accept_own(&ring, &token).is_some();
            let full = k.verify_with_crate(&ring, &token).is_ok();
            assert_eq!(full, accepted, "{what}: the crate's verdict");
            assert_eq!(fast, full, "{what}: the fast path disagrees with the crate");
            assert_eq!(k.verify(&token).is_ok(), accepted, "{what}");
        }
        // Tampering: another payload under the old signature, a changed signature.
        let token = sign(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(with("sub", "u_2".into()).to_string());
        let mut sig = parts[2].to_string();
        sig.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
        for forged in [
            format!("{}.{other}.{}", parts[0], parts[2]),
            format!("{}.{}.{sig}", parts[0], parts[1]),
            format!("{}.{}.{}.", parts[0], parts[1], parts[2]),
            format!("{}.{}", parts[0], parts[1]),
        ] {
            assert!(k.accept_own(&ring, &forged).is_none(), "{forged}");
            assert!(k.verify(&forged).is_err(), "{forged}");
        }
    }

    #[test]
    fn huge_token_refused_fast() {
        assert_eq!(
            keys().verify(&"a".repeat(100_000)).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }
}
