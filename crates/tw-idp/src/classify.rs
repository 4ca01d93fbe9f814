//! The classification of IdP answers. It decides everything downstream:
//!
//! - permanent (`IdpRejected`): `invalid_client`, `invalid_grant`, `unauthorized_client`,
//!   `unsupported_grant_type`, `invalid_scope`, other 4xx, redirects. Retrying will not help.
//! - transient (`IdpUnavailable`): network errors, timeouts, 408, 429, 5xx, an answer over the
//!   cap, and a 200 whose body is not a usable answer. `Retry-After` is carried along.
//!
//! Every refusal carries the status it came with ([`Error::upstream_status`]) and, when the body
//! is an OAuth error (RFC 6749 §5.2), the IdP's `error` and `error_description`
//! ([`Error::oauth_error`], and as context [`OAUTH_ERROR`], [`OAUTH_ERROR_DESCRIPTION`]): only
//! the IdP's words, control characters dropped, capped. Nothing of the request (secret,
//! assertion, refresh token) and nothing else of the body is copied into an error.

use crate::codes;
use crate::token::TokenResponse;
use serde::Deserialize;
use std::time::Duration;
use tw_core::{Error, ErrorKind, NetworkClass, Secret, UnixTime};

/// Context key of the OAuth `error` code of an IdP's refusal, capped.
pub const OAUTH_ERROR: &str = "oauth_error";
/// Context key of the IdP's `error_description`, capped and without control characters.
pub const OAUTH_ERROR_DESCRIPTION: &str = "oauth_error_description";
/// Longest `error` kept: real codes are short; anything longer is not one.
pub const MAX_OAUTH_ERROR_CHARS: usize = 64;
/// Longest `error_description` kept (in messages and context alike).
pub const MAX_OAUTH_DESCRIPTION_CHARS: usize = 200;

/// 408, 429 and 5xx are worth retrying; every other non-success status is not.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// `Retry-After` as delta-seconds or an HTTP date (then measured from `now`).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap, now: UnixTime) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        now.until(UnixTime::from_millis(i64::try_from(at_ms).ok()?))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The longest `Retry-After` taken from an IdP: a larger value (a misconfiguration, or a hostile
/// answer) must not silence a client for days; the broker's gate applies the same cap.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Turns a token endpoint answer into a token or a classified error.
pub fn classify_token_response(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<TokenResponse, Error> {
    if status == 200 {
        return parse_token_body(body);
    }
    Err(refusal(status, body, retry_after, "token endpoint"))
}

/// A non-200 answer of an OAuth endpoint (token, introspection, revocation), classified:
/// transient statuses with `Retry-After`, others permanent with a stable code by the OAuth
/// `error`. `endpoint` names it in the message.
pub fn refusal(status: u16, body: &[u8], retry_after: Option<Duration>, endpoint: &str) -> Error {
    let oauth = serde_json::from_slice::<OAuthError>(body)
        .ok()
        .map(OAuthError::capped);
    let described = match &oauth {
        Some(e) => match &e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error.clone(),
        },
        None => "no OAuth error body".to_owned(),
    };
    let error = if is_transient_status(status) {
        let mut err = Error::new(
            ErrorKind::IdpUnavailable,
            codes::IDP_UNAVAILABLE,
            format!(
                "the IdP's {endpoint} answered HTTP {status} ({described}); will retry with backoff"
            ),
        );
        if let Some(ra) = retry_after {
            err = err.with_retry_after(ra);
        }
        err
    } else {
        let (code, hint) = rejection_code(oauth.as_ref().map(|e| e.error.as_str()), status);
        Error::new(
            ErrorKind::IdpRejected,
            code,
            format!("{hint} (HTTP {status}, {described})"),
        )
    }
    .with_upstream_status(status);
    match oauth {
        Some(e) => e.attach_to(error),
        None => error,
    }
}

/// The stable code and a hint for a permanent refusal, by the OAuth `error` code.
fn rejection_code(oauth_error: Option<&str>, status: u16) -> (&'static str, &'static str) {
    match oauth_error {
        Some("invalid_client") => (
            codes::IDP_INVALID_CLIENT,
            "the IdP does not accept this client's credentials: check client_id, the secret or key, and auth_method",
        ),
        Some("unauthorized_client") => (
            codes::IDP_UNAUTHORIZED_CLIENT,
            "the client may not use this grant (is the service account enabled for it?)",
        ),
        Some("invalid_grant") => (
            codes::IDP_INVALID_GRANT,
            "the grant was refused (refresh token expired, revoked or already used?)",
        ),
        Some("unsupported_grant_type") => (
            codes::IDP_UNSUPPORTED_GRANT_TYPE,
            "the IdP does not support this grant",
        ),
        Some("invalid_scope") => (
            codes::IDP_INVALID_SCOPE,
            "a requested scope is unknown or not allowed for this client",
        ),
        Some("invalid_request") => (
            codes::IDP_INVALID_REQUEST,
            "the IdP found the request malformed",
        ),
        Some(_) => (codes::IDP_REJECTED, "the IdP refused the request"),
        None if (300..400).contains(&status) => (
            codes::IDP_REDIRECT,
            "the token endpoint redirected; the token URL is probably wrong (http vs https, realm path?)",
        ),
        None => (codes::IDP_REJECTED, "the IdP refused the request"),
    }
}

/// An OAuth error body (RFC 6749 §5.2).
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl OAuthError {
    /// Capped to fit a log line, control characters (line breaks) dropped, empty description
    /// as none.
    fn capped(self) -> Self {
        Self {
            error: clean(&self.error, MAX_OAUTH_ERROR_CHARS),
            error_description: self
                .error_description
                .map(|d| clean(&d, MAX_OAUTH_DESCRIPTION_CHARS))
                .filter(|d| !d.is_empty()),
        }
    }

    fn attach_to(self, error: Error) -> Error {
        let error = error
            .with_oauth_error(self.error.clone(), self.error_description.clone())
            .with(OAUTH_ERROR, self.error);
        match self.error_description {
            Some(d) => error.with(OAUTH_ERROR_DESCRIPTION, d),
            None => error,
        }
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// A garbled answer of a success status: transient.
pub(crate) fn malformed(message: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::IdpUnavailable,
        codes::IDP_MALFORMED_RESPONSE,
        message,
    )
}

fn parse_token_body(body: &[u8]) -> Result<TokenResponse, Error> {
    let garbled = |why: &str| {
        malformed(format!(
            "the token endpoint answered 200 but {why}; treating as a transient failure"
        ))
        .with_upstream_status(200)
    };
    let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|e| {
        // serde's category names the problem, never the content of a string value; the error
        // itself (which may quote content) is not kept.
        garbled(&format!(
            "the body is not a token response ({})",
            json_problem(&e)
        ))
    })?;
    if raw.access_token.trim().is_empty() {
        return Err(garbled("access_token is empty"));
    }
    Ok(TokenResponse {
        access_token: Secret::new(raw.access_token),
        token_type: raw.token_type.unwrap_or_else(|| "Bearer".into()),
        expires_in: raw.expires_in.as_ref().and_then(lifetime_from_json),
        refresh_token: raw.refresh_token.filter(|s| !s.is_empty()).map(Secret::new),
        scope: raw.scope,
    })
}

/// What is wrong with a JSON text, in words that quote nothing of it.
pub fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "missing or mistyped fields",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

/// A positive lifetime in seconds from a JSON number or numeric string.
pub fn lifetime_from_json(v: &serde_json::Value) -> Option<Duration> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    (secs.is_finite() && secs > 0.0 && secs < 1e10).then(|| Duration::from_secs_f64(secs))
}

/// The metrics label of a failed IdP call, from its typed facts.
pub fn failure_label(e: &Error) -> &'static str {
    if let Some(class) = e.network() {
        return if class == NetworkClass::Timeout {
            "timeout"
        } else {
            "network"
        };
    }
    match e.code() {
        codes::IDP_ANSWER_TOO_LARGE => "too_large",
        codes::IDP_MALFORMED_RESPONSE => "garbled",
        codes::IDP_DISCOVERY_MALFORMED if e.upstream_status().is_none() => "garbled",
        _ => match e.upstream_status() {
            Some(s) if s >= 500 => "http_5xx",
            Some(s) if s != 200 => "http_status",
            _ => "invalid",
        },
    }
}

/// Text a remote party chose (an IdP's `error_description`, a login portal's message), fit for a
/// message or a log line: control characters and bidirectional marks dropped, trimmed, at most
/// `max` characters (then `…`).
pub fn clean(s: &str, max: usize) -> String {
    let printable: String = s
        .chars()
        .filter(|c| !tw_core::text::is_terminal_unsafe(*c))
        .collect();
    truncate(printable.trim(), max)
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).chain("…".chars()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tw_core::ErrorKind;

    #[test]
    fn permanent_errors_are_not_retryable() {
        for (err, code) in [
            ("invalid_client", "idp_invalid_client"),
            ("invalid_grant", "idp_invalid_grant"),
            ("unauthorized_client", "idp_unauthorized_client"),
        ] {
            let body = format!(r#"{{"error":"{err}","error_description":"nope"}}"#);
            let e = classify_token_response(401, body.as_bytes(), None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::IdpRejected);
            assert_eq!(e.code(), code);
            assert!(!e.is_retryable());
            assert!(e.message().contains("nope"));
        }
    }

    #[test]
    fn oauth_error_and_description_are_context_capped_and_on_one_line() {
        let long = "x".repeat(5000);
        let body = format!(
            r#"{{"error":"invalid_client","error_description":"Invalid client\nsecret {long}"}}"#
        );
        let e = classify_token_response(401, body.as_bytes(), None).unwrap_err();
        assert_eq!(e.code(), "idp_invalid_client");
        assert_eq!(e.context_value(OAUTH_ERROR), Some("invalid_client"));
        let description = e.context_value(OAUTH_ERROR_DESCRIPTION).unwrap();
        assert!(
            description.starts_with("Invalid clientsecret xxx"),
            "{description}"
        );
        assert_eq!(description.chars().count(), MAX_OAUTH_DESCRIPTION_CHARS + 1);
        assert!(!e.message().contains('\n'));

        // Transient answers carry them too; no body, no context; no description, no key.
        let e = classify_token_response(503, br#"{"error":"temporarily_unavailable"}"#, None)
            .unwrap_err();
        assert_eq!(
            e.context_value(OAUTH_ERROR),
            Some("temporarily_unavailable")
        );
        assert_eq!(e.context_value(OAUTH_ERROR_DESCRIPTION), None);
        let e = classify_token_response(400, b"<html>no</html>", None).unwrap_err();
        assert!(e.context().is_empty());
        let e = classify_token_response(
            400,
            br#"{"error":"invalid_scope","error_description":""}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(e.code(), "idp_invalid_scope");
        assert_eq!(e.context_value(OAUTH_ERROR_DESCRIPTION), None);
    }

    #[test]
    fn transient_statuses_carry_retry_after() {
        for status in [408, 429, 500, 502, 503, 504] {
            let e = classify_token_response(status, b"", Some(Duration::from_secs(7))).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::IdpUnavailable, "{status}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
    }

    #[test]
    fn garbled_200_is_transient_and_secret_free() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{}",
            br#"{"access_token":""}"#,
            b"{\"access_token\":\"abc",
        ] {
            let e = classify_token_response(200, body, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::IdpUnavailable);
            assert_eq!(e.code(), "idp_malformed_response");
        }
        let e = classify_token_response(200, br#"{"access_token":12345}"#, None).unwrap_err();
        assert!(!e.message().contains("12345"));
    }

    #[test]
    fn expires_in_accepts_numbers_and_numeric_strings_only() {
        let ok = classify_token_response(200, br#"{"access_token":"t","expires_in":"300"}"#, None)
            .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(300)));
        let none =
            classify_token_response(200, br#"{"access_token":"t","expires_in":-5}"#, None).unwrap();
        assert_eq!(none.expires_in, None);
        let absent = classify_token_response(200, br#"{"access_token":"t"}"#, None).unwrap();
        assert_eq!(absent.expires_in, None);
        assert_eq!(absent.token_type, "Bearer");
    }

    #[test]
    fn redirect_is_a_config_problem() {
        let e = classify_token_response(302, b"", None).unwrap_err();
        assert_eq!(e.code(), "idp_redirect");
        assert!(!e.is_retryable());
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "12".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h, UnixTime::from_secs(0)),
            Some(Duration::from_secs(12))
        );
        h.insert(
            "retry-after",
            "Thu, 01 Jan 1970 00:01:40 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after(&h, UnixTime::from_secs(40)),
            Some(Duration::from_secs(60))
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h, UnixTime::from_secs(0)), None);
        // A week, or a date far ahead, is held to the cap.
        h.insert("retry-after", "604800".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h, UnixTime::from_secs(0)),
            Some(MAX_RETRY_AFTER)
        );
        h.insert(
            "retry-after",
            "Fri, 01 Jan 2100 00:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after(&h, UnixTime::from_secs(0)),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn classification_table() {
        // (status, body) → (kind, code)
        let table: &[(u16, &str, ErrorKind, &str)] = &[
            (
                400,
                r#"{"error":"invalid_client"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_INVALID_CLIENT,
            ),
            (
                401,
                r#"{"error":"invalid_client"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_INVALID_CLIENT,
            ),
            (
                400,
                r#"{"error":"invalid_grant"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_INVALID_GRANT,
            ),
            (
                400,
                r#"{"error":"unauthorized_client"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_UNAUTHORIZED_CLIENT,
            ),
            (
                400,
                r#"{"error":"unsupported_grant_type"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_UNSUPPORTED_GRANT_TYPE,
            ),
            (
                400,
                r#"{"error":"invalid_scope"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_INVALID_SCOPE,
            ),
            (
                400,
                r#"{"error":"invalid_request"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_INVALID_REQUEST,
            ),
            (
                400,
                r#"{"error":"something_new"}"#,
                ErrorKind::IdpRejected,
                codes::IDP_REJECTED,
            ),
            (403, "", ErrorKind::IdpRejected, codes::IDP_REJECTED),
            (404, "<html>", ErrorKind::IdpRejected, codes::IDP_REJECTED),
            (301, "", ErrorKind::IdpRejected, codes::IDP_REDIRECT),
            (307, "", ErrorKind::IdpRejected, codes::IDP_REDIRECT),
            (408, "", ErrorKind::IdpUnavailable, codes::IDP_UNAVAILABLE),
            (429, "", ErrorKind::IdpUnavailable, codes::IDP_UNAVAILABLE),
            (
                500,
                r#"{"error":"invalid_client"}"#,
                ErrorKind::IdpUnavailable,
                codes::IDP_UNAVAILABLE,
            ),
            (503, "", ErrorKind::IdpUnavailable, codes::IDP_UNAVAILABLE),
            (
                200,
                "{}",
                ErrorKind::IdpUnavailable,
                codes::IDP_MALFORMED_RESPONSE,
            ),
        ];
        for (status, body, kind, code) in table {
            let e = classify_token_response(*status, body.as_bytes(), None).unwrap_err();
            assert_eq!((e.kind(), e.code()), (*kind, *code), "{status} {body}");
            assert_eq!(e.is_retryable(), *kind == ErrorKind::IdpUnavailable);
            assert_eq!(e.upstream_status(), Some(*status), "{status}");
        }
        // The IdP's OAuth error is a typed fact, the same as the context.
        let e = classify_token_response(
            401,
            br#"{"error":"invalid_client","error_description":"Client\u0007 disabled"}"#,
            None,
        )
        .unwrap_err();
        let oauth = e.oauth_error().unwrap();
        assert_eq!(oauth.error, "invalid_client");
        assert_eq!(oauth.description.as_deref(), Some("Client disabled"));
        assert_eq!(
            e.context_value(OAUTH_ERROR_DESCRIPTION),
            Some("Client disabled")
        );
    }

    #[test]
    fn a_refusal_never_echoes_a_body_that_is_not_an_oauth_error() {
        let e = classify_token_response(400, b"secret-value-in-a-page", None).unwrap_err();
        assert!(!e.to_string().contains("secret-value"), "{e}");
        let e = classify_token_response(200, br#"{"access_token":["secret-value"]}"#, None)
            .unwrap_err();
        assert!(!e.to_string().contains("secret-value"), "{e}");
    }

    #[test]
    fn metrics_labels_come_from_typed_facts() {
        use tw_core::NetworkClass;
        let base = || Error::new(ErrorKind::IdpUnavailable, codes::IDP_UNREACHABLE, "x");
        assert_eq!(
            failure_label(&base().with_network(NetworkClass::Timeout)),
            "timeout"
        );
        assert_eq!(
            failure_label(&base().with_network(NetworkClass::Dns)),
            "network"
        );
        let status = |s| {
            Error::new(ErrorKind::IdpUnavailable, codes::IDP_HTTP_STATUS, "x")
                .with_upstream_status(s)
        };
        assert_eq!(failure_label(&status(502)), "http_5xx");
        assert_eq!(failure_label(&status(404)), "http_status");
        assert_eq!(failure_label(&malformed("x")), "garbled");
        let e = Error::new(ErrorKind::IdpUnavailable, codes::IDP_ANSWER_TOO_LARGE, "x");
        assert_eq!(failure_label(&e), "too_large");
        let e = Error::new(ErrorKind::IdpUnavailable, codes::IDP_INVALID_DOCUMENT, "x");
        assert_eq!(failure_label(&e), "invalid");
    }
}
