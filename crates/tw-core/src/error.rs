//! The one error model.
//!
//! Every failure in tokenwarden is an [`Error`] with:
//! - a [`ErrorKind`], which fixes whether it is retryable and which HTTP status it maps to;
//! - a stable `code` (snake_case, part of the public API: clients and dashboards key on it);
//! - a human message that is safe to show and log: it never contains a secret or a token;
//! - optional context (profile, upstream, file, key) and `Retry-After` hint;
//! - typed facts for programs that decide by them ([`Error::network`], [`Error::upstream_status`],
//!   [`Error::oauth_error`]): they are set where the failure is classified and never re-parsed
//!   from the message;
//! - the cause chain ([`std::error::Error::source`]) when the error wraps another.
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

/// The class of a network failure (no answer came), for callers that explain or count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkClass {
    /// Nothing accepts connections at the address.
    ConnectionRefused,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (plain HTTP port, untrusted certificate, wrong name).
    Tls,
    /// No answer within the timeout.
    Timeout,
    /// The peer closed or reset the connection without an answer.
    Reset,
    /// Anything else.
    Other,
}

impl NetworkClass {
    /// Label for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionRefused => "connection_refused",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "connection_reset",
            Self::Other => "unreachable",
        }
    }
}

/// A remote party's OAuth error (RFC 6749 §5.2): its `error` code and `error_description`,
/// already cleaned and capped by whoever read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthErrorFact {
    pub error: String,
    pub description: Option<String>,
}

/// A tokenwarden error. See the module docs.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    context: Vec<(&'static str, String)>,
    network: Option<NetworkClass>,
    upstream_status: Option<u16>,
    oauth: Option<Arc<OAuthErrorFact>>,
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
            network: None,
            upstream_status: None,
            oauth: None,
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
    /// [`Error::with_source`] for a cause already shared.
    pub fn with_shared_source(mut self, source: Arc<dyn std::error::Error + Send + Sync>) -> Self {
        self.source = Some(source);
        self
    }
    /// The class of the network failure this error stands for.
    pub fn with_network(mut self, class: NetworkClass) -> Self {
        self.network = Some(class);
        self
    }
    /// The HTTP status a remote party answered (not the status this error maps to: that is
    /// [`Error::http_status`]).
    pub fn with_upstream_status(mut self, status: u16) -> Self {
        self.upstream_status = Some(status);
        self
    }
    /// The remote party's OAuth error. The caller has cleaned and capped both texts.
    pub fn with_oauth_error(
        mut self,
        error: impl Into<String>,
        description: Option<String>,
    ) -> Self {
        self.oauth = Some(Arc::new(OAuthErrorFact {
            error: error.into(),
            description,
        }));
        self
    }
    /// The same error under another message (a wrapper adding what it was doing): every typed
    /// fact, the context and the cause are kept.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
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
    /// The class of the network failure, when no answer came.
    pub fn network(&self) -> Option<NetworkClass> {
        self.network
    }
    /// The HTTP status the remote party answered, when one did.
    pub fn upstream_status(&self) -> Option<u16> {
        self.upstream_status
    }
    /// The remote party's OAuth error, when it sent one.
    pub fn oauth_error(&self) -> Option<&OAuthErrorFact> {
        self.oauth.as_deref()
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
            .field("network", &self.network)
            .field("upstream_status", &self.upstream_status)
            .field("oauth", &self.oauth)
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

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    #[test]
    fn typed_facts_and_the_cause_survive_a_new_message() {
        let e = Error::new(ErrorKind::IdpUnavailable, "idp_unreachable", "first")
            .with_network(NetworkClass::Dns)
            .with_upstream_status(503)
            .with_oauth_error("temporarily_unavailable", None)
            .with_source(Inner)
            .with("endpoint", "token")
            .with_message("second");
        assert_eq!(e.message(), "second");
        assert_eq!(e.network(), Some(NetworkClass::Dns));
        assert_eq!(e.upstream_status(), Some(503));
        assert_eq!(
            e.oauth_error().map(|o| o.error.as_str()),
            Some("temporarily_unavailable")
        );
        assert_eq!(e.context_value("endpoint"), Some("token"));
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("inner cause"));
        // A plain error has none of them.
        let plain = Error::internal("x", "y");
        assert_eq!(plain.network(), None);
        assert_eq!(plain.upstream_status(), None);
        assert!(plain.oauth_error().is_none());
    }
}
