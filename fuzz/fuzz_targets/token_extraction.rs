//! The token path of every request: headers an attacker controls (Authorization, the
//! WebSocket subprotocol offer, Cookie) through extraction and verification. It must
//! never panic, and nothing the fuzzer invents may verify.
#![no_main]

use std::sync::OnceLock;

use arena_server::auth::extract::find_token;
use arena_server::auth::tokens::TokenKeys;
use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::hs256(&[42u8; 32], "arena", "arena", 5).expect("keys"))
}

fuzz_target!(|data: &[u8]| {
    // Split the input into three header values.
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let mut headers = HeaderMap::new();
    for name in ["authorization", "sec-websocket-protocol", "cookie"] {
        if let Some(Ok(value)) = parts.next().map(HeaderValue::from_bytes) {
            headers.insert(name, value);
        }
    }
    for websocket in [false, true] {
        if let Ok(Some((token, _source))) = find_token(&headers, websocket) {
            assert!(keys().verify(&token).is_err(), "a fuzzed token verified");
        }
    }
});
