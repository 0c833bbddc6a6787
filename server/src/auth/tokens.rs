//! Access tokens: what a JWT carries, how we sign it, and the one verification path
//! every HTTP route and every WebSocket upgrade goes through.
//!
//! Verification pins the algorithm from configuration (the token's header never chooses
//! it), requires `exp`, `nbf`, `iss`, `aud` and `sub`, validates `nbf`, allows a small
//! configured leeway, and refuses headers that point at outside keys (`jku`, `x5u`,
//! `jwk`, `x5c`). Revocation is checked after this, in [`super::Authenticator`].

use arena_protocol::{ErrorCode, Role};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// HMAC secrets shorter than this are refused at start (RFC 7518 §3.2 for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

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

/// Signs and verifies access tokens with the configured key.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    header: Header,
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
    /// HS256 keys from a secret of at least [`MIN_SECRET_BYTES`].
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str, leeway: u64) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the HMAC secret must be at least {MIN_SECRET_BYTES} bytes (got {})",
                secret.len()
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = leeway;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            header: Header::new(Algorithm::HS256),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
        })
    }

    /// Mint an access token issued at `now` (seconds) and valid for `ttl_secs`. The
    /// caller passes `now` so that the `exp` it recorded is exactly the token's.
    pub fn issue(
        &self,
        subject: &TokenSubject<'_>,
        now: i64,
        ttl_secs: i64,
    ) -> Result<(String, Claims), Error> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id.to_string(),
            sid: subject.session_id.to_string(),
            jti: ids::random_token(12),
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            auth_time: subject.auth_time,
            role: subject.role,
            username: subject.username.to_string(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(|e| Error::internal(format!("signing a token: {e}")))?;
        Ok((token, claims))
    }

    /// Check signature and claims. Says nothing about revocation.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        let invalid = |why: &str| Error::new(ErrorCode::TokenInvalid, why.to_string());
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the token is malformed"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("the token is malformed"))?;
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
        {
            return Err(invalid("the token names an outside key"));
        }
        if header.kid.is_some() {
            return Err(invalid("the token names an unknown key"));
        }
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
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

    #[test]
    fn huge_token_refused_fast() {
        assert_eq!(
            keys().verify(&"a".repeat(100_000)).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }
}
