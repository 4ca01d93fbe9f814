//! Why a token was refused, in a form that is safe to send back to the caller.

use std::fmt;
use std::time::Duration;
use tw_core::{Error, ErrorKind};

/// The check a token failed, in the order [`crate::Verifier::verify`] runs them.
///
/// [`Check::code`] is stable: it is the `outcome` label of
/// [`crate::METRIC_DECISIONS`] and the `check` context of the [`tw_core::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// 1. Larger than `max_token_bytes`.
    Size,
    /// 2. Not three non-empty strict base64url segments; header or payload not a JSON object;
    ///    duplicate keys; a registered claim of the wrong JSON type; an opaque token that cannot be
    ///    introspected.
    Format,
    /// 3. Header: `alg` missing or not a string, any `crit`, `kid` not a string or too long,
    ///    `typ` not a string.
    Header,
    /// 3./5. `alg`: `none`, HS*, unsupported, not in the issuer's list, or not matching the key.
    Algorithm,
    /// 4. `iss` missing or not a configured issuer (also: opaque token with no single issuer).
    Issuer,
    /// 5. No signing key for the token's `kid` (or, without `kid`, no key of the right type).
    Key,
    /// 6. The signature does not verify.
    Signature,
    /// 7. `exp` missing or past (with leeway).
    Expiry,
    /// 8. `nbf` in the future (with leeway).
    NotBefore,
    /// 9. `iat` in the future (with leeway).
    IssuedAt,
    /// 10. No accepted audience in `aud`.
    Audience,
    /// 11. `azp` missing or not allowed.
    AuthorizedParty,
    /// 12. Not an access token for the issuer's token-type mode (ID, refresh, logout tokens...).
    TokenType,
    /// Introspection says the token is not active (revoked, expired, unknown), or its answer does
    /// not fit the issuer's rules.
    Introspection,
    /// The `Authorization` header itself is malformed (built by the caller, see
    /// [`VerifyError::invalid_request`]).
    Request,
    /// Transient: the issuer's keys have never been loaded (IdP unreachable since start).
    KeysUnavailable,
    /// Transient: the introspection endpoint failed (network, 5xx, garbled answer).
    IntrospectionUnavailable,
}

impl Check {
    /// Stable snake_case name.
    pub fn code(self) -> &'static str {
        match self {
            Check::Size => "size",
            Check::Format => "format",
            Check::Header => "header",
            Check::Algorithm => "alg",
            Check::Issuer => "iss",
            Check::Key => "kid",
            Check::Signature => "signature",
            Check::Expiry => "exp",
            Check::NotBefore => "nbf",
            Check::IssuedAt => "iat",
            Check::Audience => "aud",
            Check::AuthorizedParty => "azp",
            Check::TokenType => "typ",
            Check::Introspection => "introspection",
            Check::Request => "request",
            Check::KeysUnavailable => "keys_unavailable",
            Check::IntrospectionUnavailable => "introspection_unavailable",
        }
    }

    /// Every check, in evaluation order (the transient and caller-side ones last).
    pub const ALL: [Check; 17] = [
        Check::Size,
        Check::Format,
        Check::Header,
        Check::Algorithm,
        Check::Issuer,
        Check::Key,
        Check::Signature,
        Check::Expiry,
        Check::NotBefore,
        Check::IssuedAt,
        Check::Audience,
        Check::AuthorizedParty,
        Check::TokenType,
        Check::Introspection,
        Check::Request,
        Check::KeysUnavailable,
        Check::IntrospectionUnavailable,
    ];

    /// Whether a failure of this check is transient (503, retry later) rather than the token's
    /// fault (401).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Check::KeysUnavailable | Check::IntrospectionUnavailable
        )
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused (or, for the transient checks, not verifiable now) token.
///
/// The description names the failed check and is safe for a `WWW-Authenticate`
/// `error_description`: it is built from fixed text, configured issuer names and known algorithm
/// names only — never from the token or its claim values — and holds only the characters RFC 6750
/// allows there.
#[derive(Clone)]
pub struct VerifyError {
    check: Check,
    description: String,
    retry_after: Option<Duration>,
    /// The IdP failure behind a transient refusal (introspection unavailable), for `source()`.
    cause: Option<std::sync::Arc<Error>>,
}

/// Two refusals are equal when they say the same; the cause is not compared.
impl PartialEq for VerifyError {
    fn eq(&self, other: &Self) -> bool {
        self.check == other.check
            && self.description == other.description
            && self.retry_after == other.retry_after
    }
}
impl Eq for VerifyError {}

/// Stable `error` codes (RFC 6750 section 3.1, plus the transient one).
pub const INVALID_TOKEN: &str = "invalid_token";
pub const INVALID_REQUEST: &str = "invalid_request";
pub const TEMPORARILY_UNAVAILABLE: &str = "temporarily_unavailable";

impl VerifyError {
    pub(crate) fn new(check: Check, description: impl AsRef<str>) -> Self {
        Self {
            check,
            description: sanitize(description.as_ref()),
            retry_after: None,
            cause: None,
        }
    }

    /// Keeps the IdP failure this refusal stands for, as its `source()`.
    pub(crate) fn caused_by(mut self, cause: Error) -> Self {
        self.cause = Some(std::sync::Arc::new(cause));
        self
    }

    pub(crate) fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// For the caller: the `Authorization` header is malformed (not `Bearer <token>`, several
    /// credentials...). Maps to 400 `invalid_request`.
    pub fn invalid_request(description: &str) -> Self {
        Self::new(Check::Request, description)
    }

    /// The failed check.
    pub fn check(&self) -> Check {
        self.check
    }

    /// Safe for `WWW-Authenticate: Bearer error_description="..."` (see the type's docs).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// `invalid_token`, `invalid_request` or `temporarily_unavailable`.
    pub fn error_code(&self) -> &'static str {
        match self.check {
            Check::Request => INVALID_REQUEST,
            c if c.is_transient() => TEMPORARILY_UNAVAILABLE,
            _ => INVALID_TOKEN,
        }
    }

    /// Transient (503, retry later) rather than a refusal of the token.
    pub fn is_transient(&self) -> bool {
        self.check.is_transient()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The boundary error: kind `Unauthenticated` (401) with code `invalid_token`; `BadRequest`
    /// (400) `invalid_request`; or `IdpUnavailable` (503) `temporarily_unavailable`. The failed
    /// check is in the `check` context.
    pub fn into_error(self) -> Error {
        let kind = match self.check {
            Check::Request => ErrorKind::BadRequest,
            c if c.is_transient() => ErrorKind::IdpUnavailable,
            _ => ErrorKind::Unauthenticated,
        };
        let mut e =
            Error::new(kind, self.error_code(), self.description).with("check", self.check.code());
        if let Some(d) = self.retry_after {
            e = e.with_retry_after(d);
        }
        if let Some(cause) = self.cause {
            e = e.with_shared_source(cause);
        }
        e
    }
}

impl From<VerifyError> for Error {
    fn from(e: VerifyError) -> Self {
        e.into_error()
    }
}

impl fmt::Debug for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyError")
            .field("check", &self.check)
            .field("description", &self.description)
            .finish()
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description, self.check.code())
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Keeps only the characters RFC 6750 allows in `error_description`
/// (`%x20-21 / %x23-5B / %x5D-7E`), and at most 200 of them.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(*c, ' '..='~') && *c != '"' && *c != '\\')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_the_error_model() {
        let e = VerifyError::new(Check::Signature, "signature does not verify").into_error();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert_eq!(e.code(), "invalid_token");
        assert_eq!(e.http_status(), 401);
        assert_eq!(e.context_value("check"), Some("signature"));

        let e = VerifyError::new(Check::KeysUnavailable, "keys not loaded").into_error();
        assert_eq!(e.http_status(), 503);
        assert_eq!(e.code(), "temporarily_unavailable");

        let e = VerifyError::invalid_request("expected Bearer").into_error();
        assert_eq!(e.http_status(), 400);
        assert_eq!(e.code(), "invalid_request");
    }

    #[test]
    fn descriptions_are_header_safe() {
        let e = VerifyError::new(Check::Issuer, "bad \"iss\"\\\r\n\u{0}é");
        assert_eq!(e.description(), "bad iss");
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in Check::ALL {
            assert!(seen.insert(c.code()), "{c:?}");
        }
    }
}
