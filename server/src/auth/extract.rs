//! Where a request's token comes from, and the [`AuthUser`] extractor.
//!
//! Sources, in order: the `Authorization: Bearer` header; on `/ws` only, the
//! `arena.v1, bearer.<token>` subprotocol pair; the `arena_access` cookie. Never the query
//! string. A cookie is sent by the browser on its own, so a request authenticated by it
//! must prove it comes from one of our pages: a state-changing method, or a WebSocket
//! upgrade, needs an `Origin` on the allow-list (CSRF and cross-site WebSocket
//! hijacking).

use arena_protocol::{ErrorCode, ACCESS_COOKIE, BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};

use crate::error::Error;
use crate::state::AppState;

use super::tokens::Claims;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Subprotocol,
    Cookie,
}

/// Find the token a request carries. `websocket` also looks at the subprotocol offer.
/// `Err` when a source is present but malformed; `Ok(None)` when there is none.
pub fn find_token(
    headers: &HeaderMap,
    websocket: bool,
) -> Result<Option<(String, TokenSource)>, Error> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::TokenInvalid,
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        return Ok(Some((token.to_string(), TokenSource::Header)));
    }
    if websocket {
        if let Some(token) = subprotocol_token(headers) {
            return Ok(Some((token, TokenSource::Subprotocol)));
        }
    }
    Ok(cookie_token(headers).map(|t| (t, TokenSource::Cookie)))
}

/// `Sec-WebSocket-Protocol: arena.v1, bearer.<token>`: the token rides in the second
/// entry, because a browser's WebSocket API cannot set an Authorization header.
pub fn subprotocol_token(headers: &HeaderMap) -> Option<String> {
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let mut has_arena = false;
    let mut token = None;
    for p in offered.by_ref() {
        if p == SUBPROTOCOL {
            has_arena = true;
        } else if let Some(t) = p.strip_prefix(BEARER_SUBPROTOCOL_PREFIX) {
            token = Some(t.to_string());
        }
    }
    token.filter(|t| has_arena && !t.is_empty())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == ACCESS_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|t| !t.is_empty())
}

/// Whether a cookie-authenticated request must show an allowed Origin.
pub fn cookie_needs_origin(method: &Method, websocket: bool) -> bool {
    websocket || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Error> {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match origin {
        Some(o)
            if allowed
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o.trim_end_matches('/'))) =>
        {
            Ok(())
        }
        _ => Err(Error::new(
            ErrorCode::OriginForbidden,
            "a request authenticated by cookie must come from an allowed Origin",
        )),
    }
}

/// Authenticate a request (HTTP or upgrade): find the token, apply the cookie's Origin
/// rule, then run the one verification path.
pub fn authenticate_request(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    websocket: bool,
) -> Result<(Claims, TokenSource), Error> {
    let found = find_and_check(state, method, headers, websocket);
    if let Err(e) = &found {
        crate::telemetry::auth_failure(e.code().as_str());
    }
    found
}

fn find_and_check(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    websocket: bool,
) -> Result<(Claims, TokenSource), Error> {
    let (token, source) = find_token(headers, websocket)?
        .ok_or_else(|| Error::new(ErrorCode::TokenMissing, "no access token was sent"))?;
    if source == TokenSource::Cookie && cookie_needs_origin(method, websocket) {
        check_origin(headers, &state.origins)?;
    }
    Ok((state.auth.authenticate(&token)?, source))
}

/// An authenticated caller: the verified, unrevoked claims of their access token.
pub struct AuthUser {
    pub claims: Claims,
    pub source: TokenSource,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (claims, source) = authenticate_request(state, &parts.method, &parts.headers, false)?;
        Ok(AuthUser { claims, source })
    }
}

/// An authenticated admin. The role is read from the token; a role change revokes the
/// user's tokens, so a stale role cannot outlive it.
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.claims.role != arena_protocol::Role::Admin {
            return Err(Error::new(ErrorCode::Forbidden, "this needs an admin"));
        }
        Ok(AdminUser(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_wins_then_subprotocol_then_cookie() {
        let h = headers(&[
            ("authorization", "Bearer A"),
            ("sec-websocket-protocol", "arena.v1, bearer.B"),
            ("cookie", "x=1; arena_access=C"),
        ]);
        assert_eq!(
            find_token(&h, true).unwrap().unwrap(),
            ("A".into(), TokenSource::Header)
        );
        let h = headers(&[
            ("sec-websocket-protocol", "arena.v1, bearer.B"),
            ("cookie", "arena_access=C"),
        ]);
        assert_eq!(
            find_token(&h, true).unwrap().unwrap().1,
            TokenSource::Subprotocol
        );
        assert_eq!(
            find_token(&h, false).unwrap().unwrap(),
            ("C".into(), TokenSource::Cookie)
        );
    }

    #[test]
    fn subprotocol_needs_arena_v1() {
        let h = headers(&[("sec-websocket-protocol", "bearer.B")]);
        assert_eq!(subprotocol_token(&h), None);
    }

    #[test]
    fn malformed_authorization_is_an_error() {
        let h = headers(&[("authorization", "Basic Zm9vOmJhcg==")]);
        assert!(find_token(&h, false).is_err());
    }

    #[test]
    fn origin_rules() {
        let allowed = vec!["http://127.0.0.1:8080".to_string()];
        assert!(check_origin(&headers(&[("origin", "http://127.0.0.1:8080")]), &allowed).is_ok());
        assert!(check_origin(&headers(&[("origin", "http://evil.example")]), &allowed).is_err());
        assert!(check_origin(&HeaderMap::new(), &allowed).is_err());
        assert!(!cookie_needs_origin(&Method::GET, false));
        assert!(cookie_needs_origin(&Method::GET, true));
        assert!(cookie_needs_origin(&Method::POST, false));
    }
}
