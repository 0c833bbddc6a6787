//! `GET /openapi.json`: the server serves its OpenAPI 3.1 description, the very document
//! checked in as `docs/openapi.json` (the server's unit test keeps that file current), as
//! JSON and with the headers every answer carries. `tests/schemathesis/` fuzzes a live
//! server with it.

use arena_tests::*;
use serde_json::Value;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[tokio::test]
async fn the_description_is_served_as_checked_in() {
    let data = DataDir::new();
    let server = TestServer::start(&data, &[]).await;
    let resp = reqwest::get(format!("{}/openapi.json", server.origin()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.contains_key("content-security-policy"));
    let text = resp.text().await.unwrap();
    let checked_in = std::fs::read_to_string(CHECKED_IN).expect("docs/openapi.json");
    assert!(
        text == checked_in,
        "GET /openapi.json differs from docs/openapi.json: rebuild the server, or \
         `ARENA_WRITE_OPENAPI=1 cargo test -p arena-server openapi`"
    );
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/auth/login"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Not a route for any other method.
    let resp = reqwest::Client::new()
        .post(format!("{}/openapi.json", server.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}
