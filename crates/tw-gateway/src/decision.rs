//! The authorization hook: after a token is verified, a [`Decision`] says whether this caller may
//! make this request. The default, [`AllowAll`], lets every verified token through; route rules
//! (roles, scopes, clients per path and method) plug in here.

use http::Method;
use tw_verify::VerifiedToken;

/// Which side of the gateway asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The gateway proxies the request itself.
    Proxy,
    /// A front proxy (nginx, Traefik, Envoy) asks on the forward-auth endpoint.
    ForwardAuth,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::ForwardAuth => "forward_auth",
        }
    }
}

/// The request being decided: the original one in forward-auth mode.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    pub mode: Mode,
    pub method: &'a Method,
    /// `Host` without port, lower case, when known.
    pub host: Option<&'a str>,
    /// The path (never the query string). `None` in forward-auth mode when the asking proxy did
    /// not say (no `X-Original-URI`, `X-Forwarded-Uri` nor path suffix): rules that depend on the
    /// path should deny then.
    pub path: Option<&'a str>,
    /// The matched route's label (proxy mode).
    pub route: Option<&'a str>,
    pub token: &'a VerifiedToken,
}

/// Why a verified caller is refused: answered 403 with
/// `WWW-Authenticate: Bearer error="insufficient_scope"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Shown to the caller (`error_description` and the JSON message): no secrets, no token.
    pub description: String,
    /// The scope(s) that would be needed, for the challenge's `scope` attribute.
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Denied),
}

/// Decides, after verification, whether a request may go through. Called once per request with a
/// verified token (never for exempt paths); must not block (no I/O).
pub trait Decision: Send + Sync + 'static {
    fn decide(&self, request: &DecisionRequest<'_>) -> Verdict;
}

/// Every verified token may make every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Decision for AllowAll {
    fn decide(&self, _: &DecisionRequest<'_>) -> Verdict {
        Verdict::Allow
    }
}

impl<F> Decision for F
where
    F: Fn(&DecisionRequest<'_>) -> Verdict + Send + Sync + 'static,
{
    fn decide(&self, request: &DecisionRequest<'_>) -> Verdict {
        self(request)
    }
}
