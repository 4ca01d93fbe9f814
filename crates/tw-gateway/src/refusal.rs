//! Why a request is not let through, as an RFC 6750 answer: status, `WWW-Authenticate` challenge
//! and the JSON error body (stable code) of [`tw_http::ApiError`].
//!
//! | refusal | status | challenge |
//! |---|---|---|
//! | the request itself (path, host, spoofed identity header) | 400 (403 behind nginx) | none |
//! | no bearer token | 401 | `Bearer realm="tokenwarden"` (no error: RFC 6750 §3.1) |
//! | malformed `Authorization` | 400 | `error="invalid_request"` |
//! | token refused by a check | 401 | `error="invalid_token", error_description="<check>"` |
//! | keys or introspection unavailable | 503 + `Retry-After` | none (retry later, not a refusal) |
//! | [`Decision`](crate::Decision) denies | 403 | `error="insufficient_scope"` |
//! | [`Decision`](crate::Decision) rate-limits | 429 + `Retry-After` | none |
//! | [`Decision`](crate::Decision) cannot decide now | 503 + `Retry-After` | none |

use crate::decision::Denied;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::HeaderValue;
use std::time::Duration;
use tw_core::{Error, ErrorKind};
use tw_http::ApiError;
use tw_verify::{INVALID_TOKEN, VerifyError};

/// The `realm` of every challenge.
pub const REALM: &str = "tokenwarden";

/// `Retry-After` of a 503 when the verifier gives none.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A request the gateway does not let through.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The request itself is refused before any token is looked at: a path that cannot be made
    /// canonical (400 `invalid_path`), hosts that disagree (400 `invalid_host`), a spoofed
    /// identity header or a method override (400). JSON, no challenge.
    Request(Error),
    /// No bearer token at all.
    Missing,
    /// The `Authorization` header or the token was refused, or could not be checked now.
    Verify(VerifyError),
    /// Verified, but a claim cannot be passed on as an identity header (a control character).
    Unrepresentable(&'static str),
    /// Verified, and the [`Decision`](crate::Decision) said no.
    Denied(Denied),
    /// Verified, and the caller is over its rate limit.
    RateLimited(Duration),
    /// Verified, but the decision cannot be made now (account registry down).
    DecisionUnavailable {
        description: String,
        retry_after: Duration,
    },
}

impl Refusal {
    /// The `outcome` label of the gateway's metrics.
    pub fn outcome(&self) -> crate::Outcome {
        use crate::Outcome;
        match self {
            Refusal::Request(e) if e.code() == "invalid_path" => Outcome::BadPath,
            Refusal::Request(_) => Outcome::InvalidRequest,
            Refusal::Missing => Outcome::MissingToken,
            Refusal::Verify(e) if e.is_transient() => Outcome::Unavailable,
            Refusal::Verify(e) if e.error_code() == INVALID_TOKEN => Outcome::InvalidToken,
            Refusal::Verify(_) => Outcome::InvalidRequest,
            Refusal::Unrepresentable(_) => Outcome::InvalidToken,
            Refusal::Denied(_) => Outcome::Forbidden,
            Refusal::RateLimited(_) => Outcome::RateLimited,
            Refusal::DecisionUnavailable { .. } => Outcome::Unavailable,
        }
    }

    /// The failed check's code, for logs (`None` when no check ran).
    pub fn check(&self) -> Option<&'static str> {
        match self {
            Refusal::Verify(e) => Some(e.check().code()),
            _ => None,
        }
    }

    /// The safe reason, for logs.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Request(e) => e.message().to_owned(),
            Refusal::Missing => "no bearer token".to_owned(),
            Refusal::Verify(e) => e.description().to_owned(),
            Refusal::Unrepresentable(claim) => unrepresentable(claim),
            Refusal::Denied(d) => format!("{}: {}", d.code, d.description),
            Refusal::RateLimited(d) => format!("rate limited for {} ms", d.as_millis()),
            Refusal::DecisionUnavailable { description, .. } => description.clone(),
        }
    }

    /// The HTTP answer. `only_401_403`: the asking proxy turns any status but 2xx/401/403 into a
    /// 500 (nginx `auth_request`), so a malformed `Authorization` is answered 401 (with the same
    /// `invalid_request` challenge) rather than 400, which the client would see as a server error.
    pub fn into_response(self, only_401_403: bool) -> Response {
        let api = match self {
            // Not about credentials, so no challenge; behind nginx a 403 (a 401 would need one).
            Refusal::Request(e) if only_401_403 => {
                ApiError::new(e).with_status(StatusCode::FORBIDDEN)
            }
            Refusal::Request(e) => ApiError::new(e),
            Refusal::Missing => ApiError::new(Error::new(
                ErrorKind::Unauthenticated,
                "missing_token",
                "a bearer token is required (Authorization: Bearer <token>)",
            ))
            .with_challenge(challenge(None, None, None)),
            Refusal::Verify(e) if e.is_transient() => {
                let retry = e.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
                ApiError::new(e.into_error().with_retry_after(retry))
            }
            Refusal::Verify(e) => {
                let header = challenge(Some(e.error_code()), Some(e.description()), None);
                let bad_request = e.error_code() != INVALID_TOKEN;
                let api = ApiError::new(e.into_error()).with_challenge(header);
                if bad_request && only_401_403 {
                    api.with_status(StatusCode::UNAUTHORIZED)
                } else {
                    api
                }
            }
            Refusal::Unrepresentable(claim) => {
                let d = unrepresentable(claim);
                ApiError::new(
                    Error::new(ErrorKind::Unauthenticated, INVALID_TOKEN, d.clone())
                        .with("check", "identity"),
                )
                .with_challenge(challenge(Some(INVALID_TOKEN), Some(&d), None))
            }
            Refusal::Denied(d) => {
                let header = challenge(
                    Some("insufficient_scope"),
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
        };
        api.into_response()
    }
}

fn unrepresentable(claim: &str) -> String {
    format!("the token's {claim} cannot be passed on in an HTTP header")
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
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};

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

        let bad = Refusal::Verify(VerifyError::invalid_request("two tokens"));
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

        let denied = Refusal::Denied(Denied::new("needs the admin role").with_scope("admin"));
        assert_eq!(denied.outcome(), crate::Outcome::Forbidden);
        let r = denied.into_response(true);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(RETRY_AFTER).is_none());

        let limited = Refusal::RateLimited(Duration::from_millis(1500));
        assert_eq!(limited.outcome(), crate::Outcome::RateLimited);
        let r = limited.into_response(true);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
    }
}
