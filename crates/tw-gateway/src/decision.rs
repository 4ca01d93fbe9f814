//! The authorization hook: after a token is verified, a [`Decision`] says whether this caller may
//! make this request. It is async (a decision may consult an account registry on a cache miss).
//! The default, [`AllowAll`], lets every verified token through; `[gateway.authz]` plugs in
//! [`tw_authz::Authz`] (route rules, role map, registry, rate limits, audit).

use futures::future::BoxFuture;
use http::Method;
use std::time::Duration;
use tw_authz::{Authz, AuthzDecision, AuthzRequest};
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

/// Let through, with what the caller was granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// Granted permission codes, sent upstream in the permissions header (none: no header).
    pub permissions: Vec<String>,
    /// The rule that allowed it.
    pub rule: Option<String>,
}

/// Why a verified caller is refused: answered 403 with
/// `WWW-Authenticate: Bearer error="insufficient_scope"`; the JSON body's code is `code`. The
/// type lives in tw-http, with the refusals of every server.
pub use tw_http::bearer::Denied;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Allowed),
    /// 403.
    Deny(Denied),
    /// 429 with `Retry-After`.
    RateLimited {
        retry_after: Duration,
    },
    /// 503 with `Retry-After`: the decision could not be made now (a registry down).
    Unavailable {
        description: String,
        retry_after: Duration,
    },
}

impl Verdict {
    /// Allowed, no permissions to forward.
    pub fn allow() -> Self {
        Verdict::Allow(Allowed::default())
    }
}

/// Decides, after verification, whether a request may go through. Called once per request with a
/// verified token (never for exempt paths). Should not wait on I/O on its hot path (cache).
pub trait Decision: Send + Sync + 'static {
    fn decide<'a>(&'a self, request: &'a DecisionRequest<'a>) -> BoxFuture<'a, Verdict>;
}

/// Every verified token may make every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Decision for AllowAll {
    fn decide<'a>(&'a self, _: &'a DecisionRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(std::future::ready(Verdict::allow()))
    }
}

/// A synchronous closure is a decision.
impl<F> Decision for F
where
    F: Fn(&DecisionRequest<'_>) -> Verdict + Send + Sync + 'static,
{
    fn decide<'a>(&'a self, request: &'a DecisionRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(std::future::ready(self(request)))
    }
}

impl Decision for Authz {
    fn decide<'a>(&'a self, request: &'a DecisionRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let req = AuthzRequest {
                method: request.method.as_str(),
                host: request.host,
                path: request.path,
                token: request.token,
            };
            match Authz::decide(self, &req).await {
                AuthzDecision::Allow { permissions, rule } => Verdict::Allow(Allowed {
                    permissions: permissions.to_vec(),
                    rule: Some(rule),
                }),
                AuthzDecision::Deny {
                    code,
                    description,
                    rule,
                    scope,
                } => Verdict::Deny(Denied {
                    code,
                    description,
                    rule,
                    scope,
                }),
                AuthzDecision::RateLimited { retry_after } => Verdict::RateLimited { retry_after },
                AuthzDecision::Unavailable {
                    description,
                    retry_after,
                } => Verdict::Unavailable {
                    description,
                    retry_after,
                },
            }
        })
    }
}
