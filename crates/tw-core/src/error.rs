//! The one error model.
//!
//! Every failure in tokenwarden is an [`Error`] with:
//! - a [`ErrorKind`], which fixes whether it is retryable and which HTTP status it maps to;
//! - a stable `code` (snake_case, part of the public API: clients and dashboards key on it);
//! - a human message that is safe to show and log: it never contains a secret or a token;
//! - optional context (profile, upstream, file, key) and `Retry-After` hint.
//!
//! Errors are cheap to clone so one failed fetch can be handed to every waiter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms of who must act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The operator's configuration is invalid. Fix the config; retrying will not help.
    Config,
    /// The caller's request is malformed.
    BadRequest,
    /// The named thing (profile, route, entry) does not exist.
    NotFound,
    /// The path exists but not with this method (HTTP 405).
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. the thing already exists, or is in use).
    Conflict,
    /// The caller presented no or an invalid credential.
    Unauthenticated,
    /// The caller is known but not allowed.
    Forbidden,
    /// The caller exceeded a rate limit.
    RateLimited,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request is well-formed but what it names cannot be processed as it is (e.g. a file to
    /// reload that does not validate; HTTP 422).
    Unprocessable,
    /// The IdP refused our credentials or grant (invalid_client, invalid_grant, ...).
    /// Permanent until someone changes the config or the IdP.
    IdpRejected,
    /// The IdP could not be reached or answered with a transient failure (network, 408, 429,
    /// 5xx, a garbled 200). Retry later.
    IdpUnavailable,
    /// No token can be handed out now: the cached one expired and no fresh one arrived in time.
    TokenUnavailable,
    /// The upstream could not be reached or broke the connection.
    UpstreamUnreachable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream's circuit breaker is open after repeated failures.
    UpstreamCircuitOpen,
    /// The database (registry, audit log) could not be reached or failed transiently. Retry later.
    StorageUnavailable,
    /// This server is at a capacity limit (connections). Retry shortly.
    Overloaded,
    /// A bug or an environment failure (disk full, ...) on our side.
    Internal,
}

impl ErrorKind {
    /// Whether doing the same thing again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::IdpUnavailable
                | Self::TokenUnavailable
                | Self::UpstreamUnreachable
                | Self::UpstreamTimeout
                | Self::UpstreamCircuitOpen
                | Self::StorageUnavailable
                | Self::Overloaded
        )
    }

    /// The HTTP status this kind maps to when it reaches an HTTP caller.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::Unprocessable => 422,
            Self::RateLimited => 429,
            Self::Config | Self::Internal => 500,
            Self::IdpRejected | Self::UpstreamUnreachable => 502,
            Self::IdpUnavailable
            | Self::TokenUnavailable
            | Self::UpstreamCircuitOpen
            | Self::StorageUnavailable
            | Self::Overloaded => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unprocessable => "unprocessable",
            Self::IdpRejected => "idp_rejected",
            Self::IdpUnavailable => "idp_unavailable",
            Self::TokenUnavailable => "token_unavailable",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamCircuitOpen => "upstream_circuit_open",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }
}

/// A tokenwarden error. See the module docs.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    context: Vec<(&'static str, String)>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// `code` is the stable identifier; `message` must not contain secrets.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: None,
            context: Vec::new(),
            source: None,
        }
    }

    pub fn config(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, code, message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, code, message)
    }

    /// Adds a named piece of context (profile, upstream, file, key). Values must not be secrets.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }
    /// Keeps the underlying cause for `source()` chains. Its Display must be secret-free too.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same error (code, message, context, `Retry-After`, cause) as another kind, for a
    /// boundary that must answer with that kind's status (e.g. a proxy that only relays 401/403).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn code(&self) -> &'static str {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
    pub fn http_status(&self) -> u16 {
        self.kind.http_status()
    }
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for (k, v) in &self.context {
            write!(f, " [{k}={v}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("context", &self.context)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_status_and_retryability() {
        assert_eq!(ErrorKind::TokenUnavailable.http_status(), 503);
        assert!(ErrorKind::TokenUnavailable.is_retryable());
        assert_eq!(ErrorKind::IdpRejected.http_status(), 502);
        assert!(!ErrorKind::IdpRejected.is_retryable());
        assert_eq!(ErrorKind::UpstreamTimeout.http_status(), 504);
        assert_eq!(ErrorKind::BadRequest.http_status(), 400);
        assert!(!ErrorKind::Config.is_retryable());
        assert_eq!(ErrorKind::Conflict.http_status(), 409);
        assert!(!ErrorKind::Conflict.is_retryable());
        assert_eq!(ErrorKind::Conflict.as_str(), "conflict");
        assert_eq!(ErrorKind::StorageUnavailable.http_status(), 503);
        assert!(ErrorKind::StorageUnavailable.is_retryable());
        assert_eq!(
            ErrorKind::StorageUnavailable.as_str(),
            "storage_unavailable"
        );
    }

    #[test]
    fn display_includes_context() {
        let e = Error::new(
            ErrorKind::IdpRejected,
            "idp_invalid_client",
            "client rejected",
        )
        .with("profile", "smartem");
        assert_eq!(e.to_string(), "client rejected [profile=smartem]");
        assert_eq!(e.context_value("profile"), Some("smartem"));
        assert_eq!(e.code(), "idp_invalid_client");
    }
}
