//! Signing keys: EdDSA tokens verifiable by a third party from the published JWKS alone,
//! rotation that keeps older tokens valid until they expire, unknown `kid`s refused.

use arena_tests::*;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Verify a token the way an outside service would: with nothing but the JWKS document.
fn verify_with_jwks(token: &str, jwks: &Value) -> Result<Value, String> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["arena"]);
    validation.set_issuer(&["arena"]);
    decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn jwks(server: &TestServer) -> Value {
    let (status, body) = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn eddsa_tokens_verify_with_the_published_jwks() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &["--jwt-algorithm", "EdDSA"]).await;
    let p = server.new_player("ed").await;
    let header = decode_header(p.token()).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let doc = jwks(&server).await;
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["kid"].as_str(), header.kid.as_deref());
    let claims = verify_with_jwks(p.token(), &doc).expect("verifies with the JWKS alone");
    assert_eq!(claims["sub"], p.id());
    assert_eq!(claims["sid"], p.session.session_id.as_str());
    for claim in [
        "iss",
        "aud",
        "jti",
        "iat",
        "nbf",
        "exp",
        "auth_time",
        "role",
    ] {
        assert!(!claims[claim].is_null(), "token lacks {claim}");
    }
    // And the server itself takes it on both channels.
    assert_eq!(server.get("/auth/me", Some(p.token())).await.0, 200);
    server.ws_ok(p.token()).await.assert_alive().await;
}

#[tokio::test]
async fn hs256_keys_are_never_published() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    assert_eq!(jwks(&server).await["keys"], serde_json::json!([]));
}

#[tokio::test]
async fn rotation_keeps_older_tokens_valid_and_unknown_kids_are_refused() {
    let data = DataDir::new();
    // Start on HS256, then switch to EdDSA, then rotate EdDSA.
    let server = TestServer::start(&data, &[]).await;
    let p = server.new_player("kr").await;
    let hs_token = p.session.access_token.clone();
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));

    let server = TestServer::start(&data, &["--jwt-algorithm", "EdDSA"]).await;
    let ed1 = server.login(&p.username, &p.password).await;
    assert_eq!(
        server.get("/auth/me", Some(&hs_token)).await.0,
        200,
        "HS256 token still valid"
    );
    assert_eq!(
        decode_header(&ed1.access_token).unwrap().alg,
        Algorithm::EdDSA
    );
    assert_eq!(server.signal_and_wait("TERM").await, Some(0));

    let server =
        TestServer::start(&data, &["--jwt-algorithm", "EdDSA", "--rotate-signing-key"]).await;
    let ed2 = server.login(&p.username, &p.password).await;
    let kid1 = decode_header(&ed1.access_token).unwrap().kid.unwrap();
    let kid2 = decode_header(&ed2.access_token).unwrap().kid.unwrap();
    assert_ne!(kid1, kid2);
    for token in [&hs_token, &ed1.access_token, &ed2.access_token] {
        assert_eq!(server.get("/auth/me", Some(token)).await.0, 200);
    }
    let doc = jwks(&server).await;
    assert_eq!(doc["keys"].as_array().unwrap().len(), 2, "{doc}");
    verify_with_jwks(&ed1.access_token, &doc).expect("old token verifies with the JWKS");
    verify_with_jwks(&ed2.access_token, &doc).expect("new token verifies with the JWKS");

    // The same token with a kid the server never issued: refused, on HTTP and upgrade.
    let forged = with_header(
        &ed2.access_token,
        &format!(r#"{{"alg":"EdDSA","kid":"{}x"}}"#, kid2),
    );
    let (status, body) = server.get("/auth/me", Some(&forged)).await;
    assert_error(status, &body, 401, "token_invalid");
    let refusal = server
        .ws(WsAuth::Header(&forged))
        .await
        .err()
        .expect("refused");
    assert_eq!(refusal.status, 401);
    // No kid at all: refused too.
    let bare = with_header(&ed2.access_token, r#"{"alg":"EdDSA"}"#);
    assert_eq!(server.get("/auth/me", Some(&bare)).await.0, 401);
}

/// The token with its header replaced (the signature no longer matters: the key lookup
/// must fail first).
fn with_header(token: &str, header: &str) -> String {
    let mut parts = token.split('.');
    let _ = parts.next();
    let payload = parts.next().unwrap();
    let signature = parts.next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
    format!("{header}.{payload}.{signature}")
}
