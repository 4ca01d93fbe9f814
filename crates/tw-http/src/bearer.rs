//! The bearer-token edge every server shares (gateway, admin API, vault): the one strict reading
//! of `Authorization` (RFC 6750 §2.1, RFC 9110 §11) and the one set of refusals with their
//! RFC 6750 challenges.
//!
//! Only the header is read: tokens in query strings or form bodies (RFC 6750 §2.2-2.3) are never
//! looked at, so they can never be logged or cached by intermediaries on our account.
//!
//! | refusal | status | challenge |
//! |---|---|---|
//! | the request itself (path, host, spoofed identity header) | 400 (403 behind nginx) | none |
//! | no bearer token | 401 | `Bearer realm="tokenwarden"` (no error: RFC 6750 §3.1) |
//! | malformed `Authorization` | 400 (401 behind nginx) | `error="invalid_request"` |
//! | token refused by a check | 401 | `error="invalid_token", error_description="<check>"` |
//! | keys or introspection unavailable | 503 + `Retry-After` | none (retry later, not a refusal) |
//! | denied by authorization | 403 | `error="insufficient_scope"` |
//! | rate-limited | 429 + `Retry-After` | none |
//! | authorization cannot decide now | 503 + `Retry-After` | none |
//!
//! The verifier's own error type stays in the verifier: a refusal carries its
//! [`tw_core::Error`] (kind `BadRequest` / code `invalid_request`, `Unauthenticated` /
//! `invalid_token`, or a retryable kind), so this module needs no verifier.

use crate::error::{ApiError, DEFAULT_RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use std::time::Duration;
use tw_core::{Error, ErrorKind};

/// The `realm` of every challenge.
pub const REALM: &str = "tokenwarden";
/// RFC 6750 §3.1: the token was refused.
pub const INVALID_TOKEN: &str = "invalid_token";
/// RFC 6750 §3.1: the request (the `Authorization` header) is malformed.
pub const INVALID_REQUEST: &str = "invalid_request";
/// RFC 6750 §3.1: the token does not grant what the request needs.
pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

/// What the caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization` header, or one with another scheme (`Basic`, ...): no bearer token.
    /// RFC 6750 §3.1: answered with a bare challenge, no error code.
    Missing,
    /// The token after `Bearer ` (syntactically a `b64token`; not verified yet).
    Bearer(&'a str),
}

/// A malformed `Authorization` header: why, in words safe for `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedAuthorization(&'static str);

impl MalformedAuthorization {
    pub fn description(&self) -> &'static str {
        self.0
    }

    /// 400 `invalid_request` (check `request`), as a verifier names a malformed request.
    pub fn into_error(self) -> Error {
        invalid_request(self.0)
    }
}

/// 400 `invalid_request` with the `check` context `request`: a malformed credential.
pub fn invalid_request(description: impl Into<String>) -> Error {
    Error::bad_request(INVALID_REQUEST, description).with("check", "request")
}

/// Reads the bearer token. A malformed `Authorization` (several headers, not ASCII, `Bearer`
/// without a token, two tokens, characters a `b64token` cannot have) is an `invalid_request`
/// (400). The scheme is case-insensitive; spaces around and between the parts are tolerated.
pub fn bearer_token(headers: &HeaderMap) -> Result<Credentials<'_>, MalformedAuthorization> {
    let malformed = |why| Err(MalformedAuthorization(why));
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credentials::Missing);
    };
    if values.next().is_some() {
        return malformed("the request has several Authorization headers");
    }
    let Ok(text) = value.to_str() else {
        return malformed("the Authorization header is not visible ASCII");
    };
    // Byte-wise: the header is visible ASCII (checked above), so byte and char offsets agree, and
    // this runs on every request with a ~1.4 KB token.
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
    let text = text.trim_matches([' ', '\t']);
    let bytes = text.as_bytes();
    let (scheme, rest) = match bytes.iter().position(is_blank) {
        Some(i) => (&text[..i], text[i..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Missing);
    }
    if rest.is_empty() {
        return malformed("the Authorization header says Bearer but holds no token");
    }
    if rest.as_bytes().iter().any(is_blank) {
        return malformed(
            "the Authorization header holds more than one token, or a token with spaces",
        );
    }
    if !is_b64token(rest) {
        return malformed("the bearer token has characters RFC 6750 does not allow (b64token)");
    }
    Ok(Credentials::Bearer(rest))
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| B64TOKEN[usize::from(b)])
}

/// The bytes of a `b64token` before its `=` padding, as a table (one lookup per byte).
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// An authorization decision's "no" (403 `insufficient_scope` challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Stable code of the JSON body: `insufficient_scope`, `unknown_principal`,
    /// `no_matching_rule`, `account_disabled`, ...
    pub code: &'static str,
    /// Shown to the caller (`error_description` and the JSON message): no secrets, no token.
    pub description: String,
    /// The rule that denied it (in the JSON body's details).
    pub rule: Option<String>,
    /// The scope(s) that would be needed, for the challenge's `scope` attribute.
    pub scope: Option<String>,
}

impl Denied {
    /// `insufficient_scope` with this description.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            code: INSUFFICIENT_SCOPE,
            description: description.into(),
            rule: None,
            scope: None,
        }
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
}

/// A request a server does not let through (see the module docs for the answers).
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The request itself is refused before any token is looked at: a path that cannot be made
    /// canonical (400 `invalid_path`), hosts that disagree (400 `invalid_host`), a spoofed
    /// identity header or a method override (400). JSON, no challenge.
    Request(Error),
    /// No bearer token at all.
    Missing,
    /// The `Authorization` header or the token was refused, or could not be checked now: the
    /// verifier's error (`invalid_request`, `invalid_token`, or a retryable kind).
    Verify(Error),
    /// Verified, and authorization said no.
    Denied(Denied),
    /// Verified, and the caller is over its rate limit.
    RateLimited(Duration),
    /// Verified, but the decision cannot be made now (account registry down).
    DecisionUnavailable {
        description: String,
        retry_after: Duration,
    },
}

impl From<MalformedAuthorization> for Refusal {
    fn from(m: MalformedAuthorization) -> Self {
        Refusal::Verify(m.into_error())
    }
}

impl Refusal {
    /// The bearer token of a request, or the refusal: [`Refusal::Missing`] without one, a
    /// malformed header as [`Refusal::Verify`] (`invalid_request`).
    pub fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
        match bearer_token(headers)? {
            Credentials::Bearer(t) => Ok(t),
            Credentials::Missing => Err(Refusal::Missing),
        }
    }

    /// 401 `invalid_token` for a token that verified but cannot be taken (`check` names why).
    pub fn invalid_token(description: impl Into<String>, check: &'static str) -> Self {
        Refusal::Verify(
            Error::new(ErrorKind::Unauthenticated, INVALID_TOKEN, description).with("check", check),
        )
    }

    /// The failed check's code, for logs (`None` when no check ran).
    pub fn check(&self) -> Option<&str> {
        match self {
            Refusal::Verify(e) => e.context_value("check"),
            _ => None,
        }
    }

    /// The safe reason, for logs.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Request(e) | Refusal::Verify(e) => e.message().to_owned(),
            Refusal::Missing => "no bearer token".to_owned(),
            Refusal::Denied(d) => format!("{}: {}", d.code, d.description),
            Refusal::RateLimited(d) => format!("rate limited for {} ms", d.as_millis()),
            Refusal::DecisionUnavailable { description, .. } => description.clone(),
        }
    }

    /// The error answer. `only_401_403`: the asking proxy turns any status but 2xx/401/403 into a
    /// 500 (nginx `auth_request`), so a malformed `Authorization` is answered 401 (with the same
    /// `invalid_request` challenge) rather than 400, which the client would see as a server error,
    /// and a refused request 403.
    pub fn into_api_error(self, only_401_403: bool) -> ApiError {
        match self {
            // Not about credentials, so no challenge; behind nginx a 403 (a 401 would need one).
            Refusal::Request(e) if only_401_403 => ApiError::new(e.with_kind(ErrorKind::Forbidden)),
            Refusal::Request(e) => ApiError::new(e),
            Refusal::Missing => ApiError::new(Error::new(
                ErrorKind::Unauthenticated,
                "missing_token",
                "a bearer token is required (Authorization: Bearer <token>)",
            ))
            .with_challenge(challenge(None, None, None)),
            Refusal::Verify(e) if e.is_retryable() => {
                let retry = e.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
                ApiError::new(e.with_retry_after(retry))
            }
            Refusal::Verify(e) => {
                let header = challenge(Some(e.code()), Some(e.message()), None);
                let e = if only_401_403 && e.kind() != ErrorKind::Unauthenticated {
                    e.with_kind(ErrorKind::Unauthenticated)
                } else {
                    e
                };
                ApiError::new(e).with_challenge(header)
            }
            Refusal::Denied(d) => {
                let header = challenge(
                    Some(INSUFFICIENT_SCOPE),
                    Some(&d.description),
                    d.scope.as_deref(),
                );
                let mut e = Error::new(ErrorKind::Forbidden, d.code, d.description);
                if let Some(rule) = d.rule {
                    e = e.with("rule", rule);
                }
                if let Some(scope) = d.scope {
                    e = e.with("scope", scope);
                }
                ApiError::new(e).with_challenge(header)
            }
            Refusal::RateLimited(retry) => ApiError::new(
                Error::new(
                    ErrorKind::RateLimited,
                    "rate_limited",
                    "too many requests from this caller; retry later",
                )
                .with_retry_after(retry),
            ),
            Refusal::DecisionUnavailable {
                description,
                retry_after,
            } => ApiError::new(
                Error::new(
                    ErrorKind::StorageUnavailable,
                    "authorization_unavailable",
                    description,
                )
                .with_retry_after(retry_after),
            ),
        }
    }

    /// The HTTP answer (see [`Refusal::into_api_error`]).
    pub fn into_response(self, only_401_403: bool) -> Response {
        self.into_api_error(only_401_403).into_response()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Refusal::into_response(self, false)
    }
}

/// `Bearer realm="tokenwarden"[, error="..."][, error_description="..."][, scope="..."]`.
pub fn challenge(
    error: Option<&str>,
    description: Option<&str>,
    scope: Option<&str>,
) -> HeaderValue {
    let mut s = format!("Bearer realm=\"{REALM}\"");
    for (name, value) in [
        ("error", error),
        ("error_description", description),
        ("scope", scope),
    ] {
        if let Some(v) = value {
            s.push_str(&format!(", {name}=\"{}\"", quoted(v)));
        }
    }
    HeaderValue::from_str(&s)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"tokenwarden\""))
}

/// The inside of an RFC 9110 quoted-string: `"` and `\` escaped, anything but printable ASCII
/// dropped, at most 200 characters.
fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars().filter(|c| (' '..='~').contains(c)).take(200) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};

    /// `Ok(None)`: no credentials; `Ok(Some(token))`; `Err(description)`.
    fn parse(values: &[&[u8]]) -> Result<Option<String>, String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).expect("value"));
        }
        match bearer_token(&h) {
            Ok(Credentials::Missing) => Ok(None),
            Ok(Credentials::Bearer(t)) => Ok(Some(t.to_owned())),
            Err(e) => Err(e.description().to_owned()),
        }
    }

    fn token(t: &str) -> Result<Option<String>, String> {
        Ok(Some(t.to_owned()))
    }

    #[test]
    fn well_formed_bearer_tokens() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[b"Bearer abc.def-_~+/=="]), token("abc.def-_~+/=="));
        assert_eq!(parse(&[b"bearer   abc "]), token("abc"));
        assert_eq!(parse(&[b"BEARER\tabc"]), token("abc"));
    }

    #[test]
    fn other_schemes_are_no_credentials() {
        assert_eq!(parse(&[b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"]), Ok(None));
        assert_eq!(parse(&[b"DPoP abc"]), Ok(None));
        assert_eq!(parse(&[b"Bearerabc"]), Ok(None));
    }

    #[test]
    fn malformed_headers_are_invalid_requests() {
        for (value, why) in [
            (&b"Bearer"[..], "no token"),
            (b"Bearer   ", "no token"),
            (b"Bearer a b", "more than one token"),
            (b"Bearer a,b", "b64token"),
            (b"Bearer a=b", "b64token"),
            (b"Bearer ====", "b64token"),
            (b"Bearer \"abc\"", "b64token"),
            (b"Bearer abc\xff", "not visible ASCII"),
        ] {
            let err = parse(&[value]).expect_err(why);
            assert!(err.contains(why), "{value:?}: {err}");
        }
        let err = parse(&[b"Bearer a", b"Bearer b"]).expect_err("two headers");
        assert!(err.contains("several"), "{err}");
        let err = parse(&[b"Bearer a", b"Basic b"]).expect_err("two headers");
        assert!(err.contains("several"), "{err}");
    }

    #[test]
    fn challenges_are_rfc_6750_shaped_and_escaped() {
        assert_eq!(challenge(None, None, None), "Bearer realm=\"tokenwarden\"");
        assert_eq!(
            challenge(Some("invalid_token"), Some("say \"hi\" \\ bye\r\n"), None),
            "Bearer realm=\"tokenwarden\", error=\"invalid_token\", error_description=\"say \\\"hi\\\" \\\\ bye\""
        );
        assert_eq!(
            challenge(Some("insufficient_scope"), None, Some("read write")),
            "Bearer realm=\"tokenwarden\", error=\"insufficient_scope\", scope=\"read write\""
        );
    }

    #[test]
    fn statuses_follow_the_refusal() {
        let r = Refusal::Missing.into_response(false);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"tokenwarden\""
        );

        let bad = Refusal::Verify(invalid_request("two tokens"));
        assert_eq!(
            bad.clone().into_response(false).status(),
            StatusCode::BAD_REQUEST
        );
        let r = bad.into_response(true);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .contains("error=\"invalid_request\"")
        );

        let request = Refusal::Request(Error::bad_request("invalid_path", "dot segments"));
        assert_eq!(
            request.clone().into_response(false).status(),
            StatusCode::BAD_REQUEST
        );
        let r = request.into_response(true);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());

        let denied = Refusal::Denied(Denied::new("needs the admin role").with_scope("admin"));
        let r = denied.into_response(true);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(RETRY_AFTER).is_none());

        let limited = Refusal::RateLimited(Duration::from_millis(1500));
        let r = limited.into_response(true);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "2");

        let down = Refusal::Verify(Error::new(
            ErrorKind::IdpUnavailable,
            "temporarily_unavailable",
            "keys not loaded",
        ));
        let r = down.into_response(true);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());

        let r = Refusal::invalid_token("no subject", "sub").into_response(false);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"tokenwarden\", error=\"invalid_token\", error_description=\"no subject\""
        );
    }
}
