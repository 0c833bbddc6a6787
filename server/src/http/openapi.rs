//! The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json` and checked
//! in as `docs/openapi.json`.
//!
//! It is derived, not written: the bodies are the protocol crate's types (its feature
//! `openapi` derives their schemas), each route's method, path, parameters and answers
//! come from the `#[utoipa::path]` on its handler, and the error answers are built here
//! from [`ErrorCode::http_status`], one response per status, each naming the codes it can
//! carry. The answers an extractor gives every route that uses it are one set
//! ([`AuthErrors`], [`BodyErrors`]), so that a handler lists only what is its own. What a
//! derive cannot say is added after: which headers an answer always has
//! ([`REQUIRED_HEADERS`]), and that an optional body is one that may be left out, not a
//! JSON `null` ([`optional_bodies`]); and utoipa 5.5 writes a link's fields in snake case
//! (`operation_id`), which [`link_field_names`] puts right (`operationId`).
//!
//! The test at the bottom fails when `docs/openapi.json` differs from what the code
//! describes now, naming the paths and schemas that differ; run it with
//! `ARENA_WRITE_OPENAPI=1` to write the file:
//!
//! ```text
//! ARENA_WRITE_OPENAPI=1 cargo test -p arena-server openapi
//! ```
//!
//! `tests/schemathesis/` runs a fuzzer against a live server with this description.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arena_protocol::http::{
    AuditEntry, AuditResponse, BanInfo, BanRequest, BanResponse, BansResponse, Connection,
    ConnectionsResponse, CreateRoomRequest, Credentials, Health, KickRequest, KickResponse,
    LogoutRequest, MeResponse, Member, MinuteActivity, NodeAcks, NodeInfo, NodesResponse,
    OverviewResponse, RefreshRequest, RegisterResponse, RoleRequest, RoleResponse, Room,
    RoomDetail, RoomsResponse, Session, SessionInfo, SessionsResponse, User, UserDetail, UserRef,
    UserSummary, UsersResponse,
};
use arena_protocol::{ErrorBody, ErrorCode, ErrorDetail, Role, ACCESS_COOKIE};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{admin, auth, health, lobby};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Arena HTTP API",
        version = "1",
        description = "The HTTP half of Arena's wire protocol, version 1 (docs/PROTOCOL.md \
            is the contract in prose; the WebSocket messages are there and in \
            client-demo/sdk/types).\n\n\
            Every error answer has the body `{\"error\": {\"code\", \"message\"}}`; each \
            status's response below names the codes it can carry. A request never gets a 500 \
            for bad input. Request bodies must be `Content-Type: application/json` (415 \
            otherwise); an empty body reads as `{}`. A body over `--max-body-bytes` is 413, \
            one that does not arrive within `--body-timeout-ms` is 408. A known path with \
            another method is 405 `method_not_allowed` with an `Allow` header; a path no \
            route has is 404 `not_found` (`GET /` and other paths serve the browser client's \
            files and the admin console at `/admin/`).\n\n\
            Authentication: the access token of `POST /auth/login` as `Authorization: Bearer \
            <token>`, or the `arena_access` cookie login sets. A POST, PUT, PATCH or DELETE \
            authenticated by the cookie needs an `Origin` on the server's allow-list, else \
            403 `origin_forbidden`.",
        license(name = "MIT")
    ),
    paths(
        health::healthz,
        super::metrics,
        openapi_json,
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        auth::sessions,
        auth::end_session,
        auth::jwks,
        lobby::list,
        lobby::create,
        lobby::detail,
        admin::overview,
        admin::connections,
        admin::nodes,
        admin::users,
        admin::user,
        admin::end_session,
        admin::kick,
        admin::ban,
        admin::unban,
        admin::set_role,
        admin::bans,
        admin::audit_log,
        websocket,
    ),
    components(
        schemas(
            ErrorBody, ErrorDetail, ErrorCode, Role, User, Credentials, RegisterResponse,
            Session, RefreshRequest, LogoutRequest, MeResponse, SessionInfo, SessionsResponse,
            Room, Member, RoomDetail, RoomsResponse, CreateRoomRequest, Connection,
            ConnectionsResponse, KickRequest, KickResponse, NodeAcks, BanRequest, BanResponse,
            NodeInfo, MinuteActivity, OverviewResponse, UserDetail, NodesResponse, RoleRequest,
            RoleResponse, Health, UserRef, BanInfo, BansResponse, UserSummary, UsersResponse,
            AuditEntry, AuditResponse, Jwks, Jwk,
        ),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, RequestTimeout,
            Conflict, PayloadTooLarge, UnsupportedMediaType, TooManyRequests, Internal,
            Unavailable,
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "auth", description = "Accounts, sessions and tokens"),
        (name = "lobby", description = "Rooms"),
        (name = "admin", description = "The admin console's API: every route needs the admin role"),
        (name = "websocket", description = "The game channel's upgrade"),
    )
)]
pub struct ApiDoc;

/// The description as JSON text, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        require_headers(&mut doc);
        optional_bodies(&mut doc);
        link_field_names(&mut doc);
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    })
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    operation_id = "openapi",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// Open the game's WebSocket (handled by `crate::ws::upgrade`; its messages are in
/// docs/PROTOCOL.md and client-demo/sdk/types).
///
/// Authentication happens on the upgrade request, before any WebSocket resources exist:
/// the `Authorization: Bearer` header; or, from a browser, `Sec-WebSocket-Protocol:
/// arena.v1, bearer.<token>` (answered with the subprotocol `arena.v1`); or the
/// `arena_access` cookie, which needs an `Origin` on the allow-list (else 403). A token in
/// the query string is never accepted. Every refusal has the JSON error body and no
/// upgrade: 400 `invalid_request` for an authenticated request that is not a WebSocket
/// upgrade; 401 for the token; 403 `origin_forbidden` for a cookie without an allowed
/// `Origin`; 429 `rate_limited` (`Retry-After: 1`) for one socket more than
/// `--max-sockets-per-user`; 503 `unavailable` when the socket cap (`--max-sockets`) is
/// reached, a shutdown is in progress, or a cluster node cannot confirm it holds every
/// revocation.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "websocket",
    operation_id = "websocket",
    params(
        ("Connection" = String, Header, pattern = "(?i)upgrade", description = "Contains `Upgrade` (any case)"),
        ("Upgrade" = String, Header, pattern = "^(?i:websocket)$", description = "`websocket` (any case)"),
        ("Sec-WebSocket-Version" = String, Header, pattern = "^13$", description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's nonce (RFC 6455: 16 random bytes in base64)"),
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 101, description = "Switching Protocols: the socket is open; the server's first frame is `welcome`"),
        (status = 400, response = BadRequest),
        (status = 429, response = TooManyRequests),
        AuthErrors,
    )
)]
#[allow(dead_code)] // Describes `crate::ws::upgrade`; never called.
fn websocket() {}

/// `GET /.well-known/jwks.json` (RFC 7517).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `Keyring::jwks`'s JSON; never built.
pub struct Jwks {
    /// The public keys of asymmetric signing keys (EdDSA): the current key and retired
    /// keys that still verify live tokens. Empty when every key is HMAC.
    keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    #[schema(example = "OKP")]
    kty: String,
    #[schema(example = "Ed25519")]
    crv: String,
    /// The public key, base64url without padding.
    x: String,
    /// The `kid` of the tokens this key verifies.
    kid: String,
    #[schema(example = "EdDSA")]
    alg: String,
    #[schema(rename = "use", example = "sig")]
    use_: String,
}

/// Bearer token and cookie, as every authenticated route accepts either.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <access token>` (`bearer` in lower case too). \
                         A header that is present but not of this form is 401 \
                         `token_invalid`, even with a cookie.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                ACCESS_COOKIE,
                "The HttpOnly cookie login and refresh set. A POST, PUT, PATCH or DELETE \
                 authenticated by it needs an `Origin` header on the allow-list, else 403 \
                 `origin_forbidden`.",
            ))),
        );
    }
}

/// Every code an HTTP answer can carry; the WebSocket-only ones are left out. The match
/// is exhaustive, so a new code must be placed here.
fn on_http(code: ErrorCode) -> bool {
    use ErrorCode::*;
    match code {
        InvalidRequest | TokenMissing | TokenInvalid | TokenExpired | TokenRevoked
        | InvalidCredentials | RefreshInvalid | Forbidden | Banned | OriginForbidden | NotFound
        | MethodNotAllowed | RequestTimeout | UsernameTaken | PayloadTooLarge
        | UnsupportedMediaType | RateLimited | Internal | Unavailable => true,
        InvalidJson | UnknownType | RoomNotFound | RoomFull | NotInRoom => false,
    }
}

/// The codes an HTTP answer with `status` carries.
fn codes_for(status: u16) -> Vec<ErrorCode> {
    ErrorCode::ALL
        .into_iter()
        .filter(|c| on_http(*c) && c.http_status() == status)
        .collect()
}

/// The error response of one status: the protocol's [`ErrorBody`], its `code` narrowed to
/// the codes of that status.
fn error_response(status: u16, description: &str) -> utoipa::openapi::Response {
    let codes = codes_for(status);
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new().property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names.clone())),
        ),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorBody"))
        .item(narrowed);
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = ResponseBuilder::new()
        .description(format!("{description} ({list})"))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    for (name, doc) in REQUIRED_HEADERS
        .iter()
        .filter(|h| h.0 == status)
        .map(|h| (h.1, h.2))
    {
        let schema = if name == "Retry-After" {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
        } else {
            ObjectBuilder::new().schema_type(Type::String)
        };
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(schema)
                .description(Some(doc))
                .build(),
        );
    }
    response.build()
}

/// Headers an error answer of a status always carries: (status, name, description).
/// utoipa's header object has no `required`; [`require_headers`] adds it.
const REQUIRED_HEADERS: [(u16, &str, &str); 3] = [
    (405, "Allow", "The methods this path allows"),
    (429, "Retry-After", "Seconds until a retry may succeed"),
    (503, "Retry-After", "Seconds until a retry may succeed"),
];

/// Mark the headers of [`REQUIRED_HEADERS`] `required` in the document's responses.
fn require_headers(doc: &mut serde_json::Value) {
    let Some(responses) = doc
        .pointer_mut("/components/responses")
        .and_then(|r| r.as_object_mut())
    else {
        return;
    };
    for response in responses.values_mut() {
        if let Some(headers) = response.get_mut("headers").and_then(|h| h.as_object_mut()) {
            for (name, header) in headers.iter_mut() {
                if REQUIRED_HEADERS.iter().any(|h| h.1 == name) {
                    header["required"] = serde_json::Value::Bool(true);
                }
            }
        }
    }
}

/// utoipa describes a `request_body = Option<T>` as `oneOf: [null, T]` and not required.
/// The server reads an empty body as `{}` but answers a JSON `null` with 400, so such a
/// body is `T`, not required: it may be left out.
fn optional_bodies(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let Some(content) = operation
            .pointer_mut("/requestBody/content")
            .and_then(|c| c.as_object_mut())
        else {
            continue;
        };
        for media in content.values_mut() {
            let Some(one_of) = media.pointer("/schema/oneOf").and_then(|o| o.as_array()) else {
                continue;
            };
            let not_null: Vec<&serde_json::Value> = one_of
                .iter()
                .filter(|s| s.get("type").and_then(|t| t.as_str()) != Some("null"))
                .collect();
            if let ([only], true) = (not_null.as_slice(), one_of.len() == 2) {
                media["schema"] = (*only).clone();
            }
        }
    }
}

/// OpenAPI's Link object has `operationId`, `operationRef` and `requestBody`; utoipa 5.5
/// serializes them as `operation_id`, `operation_ref`, `request_body`, which no tool reads.
fn link_field_names(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|r| r.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (wrong, right) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(wrong) {
                    link.insert(right.to_string(), v);
                }
            }
        }
    }
}

macro_rules! error_responses {
    ($($name:ident = $status:literal, $description:literal;)*) => {$(
        #[doc = concat!("The ", stringify!($status), " answer: ", $description, ".")]
        pub struct $name;

        impl $name {
            /// The one place the status is written: the response is built for it and a
            /// set ([`error_sets`]) files it under it, so the two cannot disagree.
            const STATUS: u16 = $status;
        }

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), error_response(Self::STATUS, $description).into())
            }
        }
    )*};
}

/// Sets of error answers that many routes share because the same extractor gives them,
/// named once in a handler's `responses(...)`: each answer is a reference to its
/// component, under its own status, exactly as `(status = …, response = …)` writes it.
macro_rules! error_sets {
    ($($(#[doc = $doc:literal])* $name:ident = [$($response:ident),+ $(,)?];)*) => {$(
        $(#[doc = $doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([$((
                    $response::STATUS.to_string(),
                    Ref::from_response_name(<$response as utoipa::ToResponse>::response().0)
                        .into(),
                )),+])
            }
        }
    )*};
}

error_responses! {
    BadRequest = 400, "A malformed JSON body, or a missing or invalid field or parameter: the message names it";
    Unauthorized = 401, "No token, or one that is invalid, expired or revoked; wrong credentials; an invalid refresh token";
    Forbidden = 403, "Not an admin, a banned account, or a cookie without an allowed `Origin`";
    NotFound = 404, "No such resource (or path)";
    MethodNotAllowed = 405, "A known path, another method; `Allow` lists the methods";
    RequestTimeout = 408, "The request body did not arrive within `--body-timeout-ms`";
    Conflict = 409, "The username is taken (ignoring case)";
    PayloadTooLarge = 413, "The request body is larger than `--max-body-bytes`";
    UnsupportedMediaType = 415, "A request body not sent as `Content-Type: application/json`";
    TooManyRequests = 429, "A rate or quota limit; the message names it, `Retry-After` says when to retry";
    Internal = 500, "A fault of the server (never an answer to bad input)";
    Unavailable = 503, "The database out of reach, a cap reached, shutting down, or (in a cluster) a node that cannot confirm it holds every revocation; `Retry-After` says when to retry";
}

error_sets! {
    /// What authenticating a request ([`crate::auth::AuthUser`], `AdminUser`) can answer:
    /// the token (401), the admin role or the cookie's `Origin` (403), and a cluster node
    /// that cannot confirm it holds every revocation (503).
    AuthErrors = [Unauthorized, Forbidden, Unavailable];
    /// What reading a JSON request body ([`super::JsonBody`]) can answer: malformed (400),
    /// too slow (408), too large (413), not `application/json` (415).
    BodyErrors = [BadRequest, RequestTimeout, PayloadTooLarge, UnsupportedMediaType];
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    /// What differs between two JSON objects, one entry per key: `what key differs`,
    /// `... is missing` (only in `now`), `... is left over` (only in `old`).
    fn differences(what: &str, now: &Value, old: &Value) -> Vec<String> {
        let empty = serde_json::Map::new();
        let now = now.as_object().unwrap_or(&empty);
        let old = old.as_object().unwrap_or(&empty);
        let keys: BTreeSet<&String> = now.keys().chain(old.keys()).collect();
        keys.into_iter()
            .filter_map(|k| match (now.get(k), old.get(k)) {
                (Some(a), Some(b)) if a != b => Some(format!("{what} {k} differs")),
                (Some(_), None) => Some(format!("{what} {k} is missing")),
                (None, Some(_)) => Some(format!("{what} {k} is left over")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn openapi_json_in_docs_is_current() {
        let generated = document();
        let path = Path::new(CHECKED_IN);
        if std::env::var_os("ARENA_WRITE_OPENAPI").is_some() {
            std::fs::write(path, generated).expect("write docs/openapi.json");
        }
        let Ok(checked_in) = std::fs::read_to_string(path) else {
            panic!(
                "docs/openapi.json is missing; write it with \
                 `ARENA_WRITE_OPENAPI=1 cargo test -p arena-server openapi`"
            );
        };
        if checked_in == generated {
            return;
        }
        let now: Value = serde_json::from_str(generated).expect("generated JSON");
        let old: Value = serde_json::from_str(&checked_in).unwrap_or(Value::Null);
        let mut wrong = differences("path", &now["paths"], &old["paths"]);
        for part in ["schemas", "responses", "securitySchemes"] {
            wrong.extend(differences(
                part.trim_end_matches('s'),
                &now["components"][part],
                &old["components"][part],
            ));
        }
        let rest = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("paths");
                o.remove("components");
            }
            v
        };
        if rest(&now) != rest(&old) {
            wrong.push("the info, tags or version differ".into());
        }
        if wrong.is_empty() {
            wrong.push("only the formatting differs".into());
        }
        panic!(
            "docs/openapi.json is out of date with the handlers ({}); regenerate with \
             `ARENA_WRITE_OPENAPI=1 cargo test -p arena-server openapi`",
            wrong.join(", ")
        );
    }

    #[test]
    fn every_route_is_described() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        let described: BTreeSet<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| format!("{} {path}", method.to_uppercase()))
            })
            .collect();
        // The router's routes (http/mod.rs), method by method.
        let routes = [
            "GET /healthz",
            "GET /metrics",
            "GET /openapi.json",
            "POST /auth/register",
            "POST /auth/login",
            "POST /auth/refresh",
            "POST /auth/logout",
            "GET /auth/me",
            "GET /auth/sessions",
            "DELETE /auth/sessions/{id}",
            "GET /.well-known/jwks.json",
            "GET /lobby/rooms",
            "POST /lobby/rooms",
            "GET /lobby/rooms/{id}",
            "GET /admin/overview",
            "GET /admin/connections",
            "GET /admin/users",
            "GET /admin/users/{id}",
            "DELETE /admin/users/{id}/sessions/{session}",
            "GET /admin/bans",
            "GET /admin/audit",
            "GET /admin/nodes",
            "POST /admin/users/{id}/kick",
            "POST /admin/users/{id}/ban",
            "DELETE /admin/users/{id}/ban",
            "PUT /admin/users/{id}/role",
            "GET /ws",
        ];
        let routes: BTreeSet<String> = routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(described, routes);
    }

    #[test]
    fn error_responses_name_their_codes_and_headers() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        let unauthorized = &doc["components"]["responses"]["Unauthorized"];
        let codes = &unauthorized["content"]["application/json"]["schema"]["allOf"][1]
            ["properties"]["error"]["properties"]["code"]["enum"];
        assert_eq!(
            codes,
            &serde_json::json!([
                "token_missing",
                "token_invalid",
                "token_expired",
                "token_revoked",
                "invalid_credentials",
                "refresh_invalid"
            ])
        );
        let link =
            &doc["paths"]["/auth/sessions"]["get"]["responses"]["200"]["links"]["EndSession"];
        assert_eq!(link["operationId"], "end_own_session", "{link}");
        let retry = &doc["components"]["responses"]["Unavailable"]["headers"]["Retry-After"];
        assert_eq!(retry["required"], true);
        // No WebSocket-only code is offered as an HTTP answer.
        let text = serde_json::to_string(&doc["components"]["responses"]).unwrap();
        assert!(!text.contains("room_full") && !text.contains("invalid_json"));
        // Every HTTP code has a response of its status.
        for code in ErrorCode::ALL.into_iter().filter(|c| on_http(*c)) {
            assert!(text.contains(&format!("\"{}\"", code.as_str())), "{code}");
        }
    }

    /// A handler whose route authenticates or reads a JSON body but leaves out the set
    /// would describe fewer answers than its extractor gives.
    #[test]
    fn every_authenticated_route_and_json_body_has_its_set() {
        use utoipa::IntoResponses;

        let doc: Value = serde_json::from_str(document()).unwrap();
        let auth = serde_json::to_value(AuthErrors::responses()).unwrap();
        let body = serde_json::to_value(BodyErrors::responses()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let sets = [("security", &auth), ("requestBody", &body)];
                for (_, set) in sets.iter().filter(|(key, _)| op.get(key).is_some()) {
                    for (status, response) in set.as_object().unwrap() {
                        assert_eq!(
                            op["responses"].get(status),
                            Some(response),
                            "{method} {path} lacks {status}"
                        );
                    }
                }
            }
        }
    }
}
