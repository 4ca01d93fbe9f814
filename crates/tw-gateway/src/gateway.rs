//! [`Gateway`]: the router (probes, forward-auth endpoint, verifying proxy) and its runner.

use crate::decision::{AllowAll, Decision, DecisionRequest, Mode, Verdict};
use crate::identity::{IdentityHeaderNames, is_method_override};
use crate::metrics_names::*;
use crate::original::{asked_by_nginx, original_request};
use crate::paths::{ExemptPaths, Route, Routes, request_host};
use crate::refusal::{Refusal, outcome, unrepresentable};
use crate::settings::{ConnectionsConfig, GatewaySettings, check_gateway};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use tw_core::ListenAddr;
use tw_core::{Error, TokenFingerprint};
use tw_http::ConnectionLimits;
use tw_http::forward::{self, UpstreamClient};
use tw_http::path::{CanonicalPath, PathPolicy, canonicalize};
use tw_http::{ApiError, Listener, MetricsRender, PeerAddr, Readiness, ReadinessFn};
use tw_verify::{Verifier, VerifyOptions};

/// How a gateway request ended: the `outcome` label of [`METRIC_GATEWAY_REQUESTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A verified token, allowed by the decision.
    Allowed,
    /// An exempt path: no token needed.
    Exempt,
    /// No bearer token (401, bare challenge).
    MissingToken,
    /// Malformed `Authorization` or forward-auth headers (400; 401 for nginx).
    InvalidRequest,
    /// A token refused by a check (401).
    InvalidToken,
    /// The decision denied the request (403).
    Forbidden,
    /// The decision rate-limited the caller (429).
    RateLimited,
    /// Keys or introspection unavailable (503).
    Unavailable,
    /// Proxy mode: no route for the host and path (404).
    NoRoute,
    /// A path that cannot be made canonical unambiguously (400 `invalid_path`).
    BadPath,
    /// Proxy mode: allowed, but the upstream could not be reached (502).
    UpstreamUnreachable,
    /// Proxy mode: allowed, but the upstream did not answer in time (504).
    UpstreamTimeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Exempt => "exempt",
            Outcome::MissingToken => "missing_token",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::InvalidToken => "invalid_token",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
            Outcome::NoRoute => "no_route",
            Outcome::BadPath => "bad_path",
            Outcome::UpstreamUnreachable => "upstream_unreachable",
            Outcome::UpstreamTimeout => "upstream_timeout",
        }
    }
}

/// The gateway, configured but not yet listening. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    listen: String,
    connections: ConnectionLimits,
    metrics: Option<MetricsRender>,
    /// Further readiness checks (e.g. the account store): name → check.
    checks: Vec<(&'static str, ReadinessFn)>,
    /// Served ahead of the proxy routes (see [`Gateway::with_routes`]).
    extra_routes: Option<Router>,
}

#[derive(Clone)]
struct Shared {
    verifier: Arc<Verifier>,
    routes: Routes,
    exempt: ExemptPaths,
    identity: IdentityHeaderNames,
    forward_auth_path: String,
    decision: Arc<dyn Decision>,
    client: UpstreamClient,
    paths: PathPolicy,
    keep_method_override: bool,
}

impl Gateway {
    /// Checks `cfg` (the same rules as a config file's `[gateway]`) and builds the gateway around
    /// `verifier` (built from the same `cfg`). No I/O. With `[gateway.authz]`, the decision is a
    /// [`tw_authz::Authz`] auditing to the log (its audit writer needs a Tokio runtime; a
    /// configuration using the account registry needs [`Gateway::with_decision`] instead:
    /// build with [`Gateway::new_with_decision`]); without, every verified token is allowed.
    pub fn new(cfg: &GatewaySettings, verifier: Arc<Verifier>) -> Result<Self, Error> {
        let decision: Arc<dyn Decision> = match &cfg.authz {
            Some(authz) => Arc::new(
                tw_authz::Authz::builder(authz)
                    .case_insensitive_paths(cfg.paths.case_insensitive)
                    .build()?,
            ),
            None => Arc::new(AllowAll),
        };
        Self::new_with_decision(cfg, verifier, decision)
    }

    /// As [`Gateway::new`], with this decision (e.g. a [`tw_authz::Authz`] built with the
    /// account registry and the audit store).
    pub fn new_with_decision(
        cfg: &GatewaySettings,
        verifier: Arc<Verifier>,
        decision: Arc<dyn Decision>,
    ) -> Result<Self, Error> {
        check_gateway(cfg).map_err(|p| p.into_error_in("gateway configuration"))?;
        let permissions_header = cfg.authz.as_ref().map(|a| a.permissions_header.as_str());
        let p = &cfg.paths;
        let paths = PathPolicy {
            allow_encoded_slash: p.allow_encoded_slash,
            allow_backslash: p.allow_backslash,
            allow_semicolon: p.allow_semicolon,
            allow_encoded_percent: p.allow_encoded_percent,
            case_insensitive: p.case_insensitive,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                verifier,
                routes: Routes::new(&cfg.routes, p.case_insensitive),
                exempt: ExemptPaths::new(&cfg.exempt_paths, p.case_insensitive),
                identity: IdentityHeaderNames::new(&cfg.identity_headers, permissions_header)?
                    .with_extra(&cfg.strip_headers),
                forward_auth_path: cfg.forward_auth_path.clone(),
                decision,
                client: forward::upstream_client()?,
                paths,
                keep_method_override: cfg.keep_method_override,
            }),
            listen: cfg.listen.clone(),
            connections: connection_limits(&cfg.connections),
            metrics: None,
            checks: Vec::new(),
            extra_routes: None,
        })
    }

    /// Replaces the authorization step (default: [`AllowAll`]).
    pub fn with_decision(mut self, decision: Arc<dyn Decision>) -> Self {
        Arc::make_mut(&mut self.shared).decision = decision;
        self
    }

    /// Serves `/metrics` with this renderer (the binary's Prometheus recorder).
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }
    /// Extra routes served on the gateway's listener ahead of the proxy routes (the admin API),
    /// like the probes and the forward-auth endpoint.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// Adds a readiness check: `/readyz` is ready only while it is, and its detail appears under
    /// `name`. Called at every `/readyz`, so it must not wait (read a state kept by a task).
    pub fn with_readiness_check(mut self, name: &'static str, check: ReadinessFn) -> Self {
        self.checks.push((name, check));
        self
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.shared.verifier
    }

    /// `/healthz`, `/readyz`, `/metrics`; the forward-auth endpoint (`forward_auth_path` and
    /// everything under it, any method); every other path is proxied by the routes.
    pub fn router(&self) -> Router {
        let verifier = self.shared.verifier.clone();
        let checks = self.checks.clone();
        let readiness: ReadinessFn = Arc::new(move || {
            let mut r = readiness(&verifier);
            for (name, check) in &checks {
                let c = check();
                r.ready &= c.ready;
                r.detail[*name] = c.detail;
            }
            r
        });
        let gateway = Router::new()
            .fallback(dispatch)
            .with_state(self.shared.clone());
        let mut app = tw_http::probes_router(readiness, self.metrics.clone());
        if let Some(extra) = &self.extra_routes {
            app = app.merge(extra.clone());
        }
        app.merge(gateway)
            .method_not_allowed_fallback(tw_http::method_not_allowed_fallback)
            .layer(tw_http::trace_layer())
    }

    /// Binds `gateway.listen` (TCP or `unix:`).
    pub async fn bind(self) -> Result<BoundGateway, Error> {
        let addr = ListenAddr::parse(&self.listen).map_err(|m| {
            Error::config(tw_core::CONFIG_INVALID, format!("gateway.listen: {m}"))
                .with("key", "gateway.listen")
        })?;
        let listener = tw_http::bind(&addr, "gateway.listen").await?;
        Ok(BoundGateway {
            router: self.router(),
            verifier: self.shared.verifier.clone(),
            listener,
            connections: self.connections,
        })
    }
}

/// The gateway with its listener bound (a port `0` is resolved).
pub struct BoundGateway {
    listener: Listener,
    router: Router,
    verifier: Arc<Verifier>,
    connections: ConnectionLimits,
}

impl BoundGateway {
    pub fn local_addr(&self) -> ListenAddr {
        self.listener.local_addr()
    }

    /// Starts the verifier (first key loads, then background refresh; `/readyz` says when keys
    /// are loaded) and serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let verifier = self.verifier.clone();
        let starter = tokio::spawn(async move { verifier.start().await });
        tracing::info!(listen = ?self.listener.local_addr(), "gateway listening");
        let result =
            tw_http::serve_with(self.listener, self.router, shutdown, self.connections).await;
        starter.abort();
        result
    }
}

fn readiness(verifier: &Verifier) -> Readiness {
    let issuers: serde_json::Map<String, serde_json::Value> = verifier
        .status()
        .into_iter()
        .map(|s| {
            let detail = json!({
                "keys_loaded": s.keys_loaded,
                "key_ids": s.key_ids,
                "introspection": s.introspection,
            });
            (s.issuer, detail)
        })
        .collect();
    Readiness {
        ready: verifier.is_ready(),
        detail: json!({ "issuers": issuers }),
    }
}

/// Makes the path canonical once, then serves the forward-auth endpoint or the proxy routes with
/// it: every later step (exempt paths, routes, rules, forwarding) sees the same path.
async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let endpoint = shared.forward_auth_path.as_str();
    let under_endpoint = |path: &str| {
        path.strip_prefix(endpoint)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let canonical = match canonicalize(req.uri().path(), shared.paths) {
        Ok(c) => c,
        Err(why) => {
            let mode = if under_endpoint(req.uri().path()) {
                Mode::ForwardAuth
            } else {
                Mode::Proxy
            };
            let mut tally = Tally::new(mode, req.method());
            tally.decided();
            let refusal = Refusal::Request(why.into_error());
            log_refusal(&refusal, None);
            let nginx = asked_by_nginx(req.headers());
            return tally.finish(outcome(&refusal), refusal.into_response(nginx));
        }
    };
    // The raw path decides too: `/auth/%2e%2e/api` is a forward-auth call whose dot segments
    // are refused there, not a proxied request for `/api`.
    if under_endpoint(req.uri().path()) || under_endpoint(canonical.decoded()) {
        shared.forward_auth(req, canonical).await
    } else {
        shared.proxy(req, canonical).await
    }
}

/// Per-request bookkeeping: metrics at the end, whatever the path taken.
struct Tally {
    mode: Mode,
    route: String,
    method: &'static str,
    started: Instant,
    decided: Option<f64>,
}

impl Tally {
    fn new(mode: Mode, method: &Method) -> Self {
        Self {
            mode,
            route: "none".to_owned(),
            method: method_label(method),
            started: Instant::now(),
            decided: None,
        }
    }

    /// The access decision is made: records its latency.
    fn decided(&mut self) {
        self.decided = Some(self.started.elapsed().as_secs_f64());
    }

    fn finish(self, outcome: Outcome, response: Response) -> Response {
        metrics::counter!(METRIC_GATEWAY_REQUESTS,
            "mode" => self.mode.as_str(), "route" => self.route, "method" => self.method,
            "outcome" => outcome.as_str())
        .increment(1);
        if let Some(secs) = self.decided {
            metrics::histogram!(METRIC_GATEWAY_DECISION_SECONDS,
                "mode" => self.mode.as_str(), "outcome" => outcome.as_str())
            .record(secs);
        }
        response
    }
}

/// Metric label for a method: the standard ones, else `other` (methods are caller-chosen text).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The identity headers for an allowed request.
type Identity = Vec<(HeaderName, HeaderValue)>;

/// The request as the decision sees it, before the token is verified.
#[derive(Clone, Copy)]
struct DecisionContext<'a> {
    mode: Mode,
    /// The request's method, then any kept method override: each must be allowed.
    methods: &'a [Method],
    host: Option<&'a str>,
    path: Option<&'a str>,
    route: Option<&'a str>,
}

impl Shared {
    /// Bearer token → verification → decision → identity headers.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        opts: VerifyOptions,
        ctx: DecisionContext<'_>,
    ) -> Result<Identity, Refusal> {
        let token = match Refusal::bearer(headers) {
            Ok(t) => t,
            Err(refusal) => {
                log_refusal(&refusal, None);
                return Err(refusal);
            }
        };
        let fingerprint = TokenFingerprint::of(token).short();
        let result = async {
            let verified = self
                .verifier
                .verify(token, opts)
                .await
                .map_err(|e| Refusal::Verify(e.into()))?;
            let mut allowed = None;
            for method in ctx.methods {
                let request = DecisionRequest {
                    mode: ctx.mode,
                    method,
                    host: ctx.host,
                    path: ctx.path,
                    route: ctx.route,
                    token: &verified,
                };
                allowed = Some(match self.decision.decide(&request).await {
                    Verdict::Allow(a) => a,
                    Verdict::Deny(d) => return Err(Refusal::Denied(d)),
                    Verdict::RateLimited { retry_after } => {
                        return Err(Refusal::RateLimited(retry_after));
                    }
                    Verdict::Unavailable {
                        description,
                        retry_after,
                    } => {
                        return Err(Refusal::DecisionUnavailable {
                            description,
                            retry_after,
                        });
                    }
                });
            }
            let allowed = allowed.unwrap_or_default();
            let identity = self
                .identity
                .values(
                    &verified,
                    &allowed.permissions,
                    ctx.mode == Mode::ForwardAuth,
                )
                .map_err(unrepresentable)?;
            tracing::debug!(
                token = %fingerprint,
                issuer = %verified.issuer,
                client_id = verified.client_id.as_deref().unwrap_or("-"),
                rule = allowed.rule.as_deref().unwrap_or("-"),
                "token accepted"
            );
            Ok(identity)
        }
        .await;
        if let Err(r) = &result {
            log_refusal(r, Some(&fingerprint));
        }
        result
    }

    /// The methods the rules must allow: the request's, then (only with `keep_method_override`)
    /// each method-override header's, which an upstream may act on instead.
    fn methods_to_authorize(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Vec<Method>, Refusal> {
        let mut out = vec![method.clone()];
        if !self.keep_method_override {
            return Ok(out);
        }
        for (name, value) in headers.iter().filter(|(k, _)| is_method_override(k)) {
            let m = value
                .to_str()
                .ok()
                .and_then(|v| Method::from_bytes(v.trim().as_bytes()).ok())
                .ok_or_else(|| {
                    Refusal::Request(Error::bad_request(
                        "invalid_method_override",
                        format!("{name} is not an HTTP method"),
                    ))
                })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn proxy(&self, req: Request, path: CanonicalPath) -> Response {
        let mut tally = Tally::new(Mode::Proxy, req.method());
        let host = match request_host(&req) {
            Ok(h) => h,
            Err(e) => {
                let refusal = Refusal::Request(e);
                log_refusal(&refusal, None);
                return tally.finish(outcome(&refusal), refusal.into_response(false));
            }
        };
        let Some(route) = self.routes.find(host.as_deref(), path.matching()) else {
            let err = Error::not_found(
                "route_not_found",
                format!("no gateway route serves the path {}", path.decoded()),
            );
            return tally.finish(Outcome::NoRoute, ApiError::from(err).into_response());
        };
        tally.route = route.label.clone();
        let span = tracing::info_span!(
            "gateway",
            mode = "proxy",
            route = %route.label,
            method = %req.method(),
            path = %path.decoded(),
        );
        async move {
            let identity = if self.exempt.matches(path.matching()) {
                tally.decided();
                None
            } else {
                let opts = VerifyOptions {
                    introspect: route.introspect,
                };
                let result = match self.methods_to_authorize(req.method(), req.headers()) {
                    Ok(methods) => {
                        let ctx = DecisionContext {
                            mode: Mode::Proxy,
                            methods: &methods,
                            host: host.as_deref(),
                            path: Some(path.decoded()),
                            route: Some(&route.label),
                        };
                        self.authenticate(req.headers(), opts, ctx).await
                    }
                    Err(refusal) => Err(refusal),
                };
                tally.decided();
                match result {
                    Ok(identity) => Some(identity),
                    Err(refusal) => {
                        let outcome = outcome(&refusal);
                        return tally.finish(outcome, refusal.into_response(false));
                    }
                }
            };
            let outcome = if identity.is_some() {
                Outcome::Allowed
            } else {
                Outcome::Exempt
            };
            match self
                .forward(route, req, &path, host.as_deref(), identity)
                .await
            {
                Ok(response) => tally.finish(outcome, response),
                Err((outcome, e)) => {
                    tracing::debug!(code = e.code(), error = %e, "upstream request failed");
                    tally.finish(outcome, ApiError::from(e).into_response())
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Sends an allowed (or exempt) request upstream with the canonical path (the one that was
    /// authorized): identity headers (and look-alikes, and method overrides unless kept)
    /// replaced, the caller's `Authorization` kept, hop-by-hop fields dropped, bodies streamed
    /// both ways.
    async fn forward(
        &self,
        route: &Route,
        req: Request,
        path: &CanonicalPath,
        host: Option<&str>,
        identity: Option<Identity>,
    ) -> Result<Response, (Outcome, Error)> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<PeerAddr>>()
            .and_then(|c| c.0.0);
        let (mut parts, body) = req.into_parts();
        let uri = route
            .target
            .upstream_uri_for(path.encoded(), parts.uri.query())
            .map_err(|_| {
                let e = Error::bad_request(
                    tw_http::path::INVALID_PATH,
                    "the request path cannot be forwarded",
                );
                (Outcome::BadPath, e)
            })?;
        // An absolute-form request may come without `Host`: the upstream still learns the host
        // it was routed by.
        if !parts.headers.contains_key(http::header::HOST)
            && let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok())
        {
            parts.headers.insert(http::header::HOST, v);
        }
        let mut headers = forward::forwarded_request_headers(parts.headers, peer);
        self.identity.strip(&mut headers, self.keep_method_override);
        for (name, value) in identity.into_iter().flatten() {
            headers.insert(name, value);
        }
        let out = forward::upstream_request(parts.method, uri, headers, body);
        let deadline = tokio::time::Instant::now() + route.timeout;
        let started = Instant::now();
        let result = forward::send(&self.client, out, deadline).await;
        metrics::histogram!(METRIC_GATEWAY_UPSTREAM_SECONDS, "route" => route.label.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(response) => Ok(forward::downstream_response(response)),
            Err(failure) => {
                let outcome = match failure {
                    forward::SendFailure::Timeout => Outcome::UpstreamTimeout,
                    _ => Outcome::UpstreamUnreachable,
                };
                let origin = route.target.origin();
                let e = failure
                    .into_error(origin, route.timeout)
                    .with("route", route.label.clone())
                    .with("upstream", origin);
                Err((outcome, e))
            }
        }
    }

    async fn forward_auth(&self, req: Request, request_path: CanonicalPath) -> Response {
        let nginx = asked_by_nginx(req.headers());
        let refuse = |method: &Method, refusal: Refusal| {
            let mut tally = Tally::new(Mode::ForwardAuth, method);
            tally.decided();
            log_refusal(&refusal, None);
            tally.finish(outcome(&refusal), refusal.into_response(nginx))
        };
        let original = match original_request(
            &self.forward_auth_path,
            req.method(),
            &request_path,
            req.headers(),
            self.paths,
        ) {
            Ok(o) => o,
            Err(refusal) => return refuse(req.method(), refusal),
        };
        // The front proxy forwards the client's headers to the upstream; the gateway cannot
        // remove them there, so a request carrying one only the gateway may set is refused.
        if let Some(name) = self
            .identity
            .spoofed(req.headers(), self.keep_method_override)
        {
            let e = Error::bad_request(
                "reserved_header",
                format!("the request carries {name}, which only the gateway may set"),
            )
            .with("header", name.as_str());
            return refuse(&original.method, Refusal::Request(e));
        }
        let methods = match self.methods_to_authorize(&original.method, req.headers()) {
            Ok(m) => m,
            Err(refusal) => return refuse(&original.method, refusal),
        };
        let mut tally = Tally::new(Mode::ForwardAuth, &original.method);
        let path = original.path.as_ref();
        let span = tracing::info_span!(
            "gateway",
            mode = "forward_auth",
            method = %original.method,
            path = path.map(CanonicalPath::decoded).unwrap_or("(not given)"),
        );
        async move {
            if path.is_some_and(|p| self.exempt.matches(p.matching())) {
                tally.decided();
                return tally.finish(Outcome::Exempt, allow(self.identity.blank()));
            }
            let ctx = DecisionContext {
                mode: Mode::ForwardAuth,
                methods: &methods,
                host: original.host.as_deref(),
                path: path.map(CanonicalPath::decoded),
                route: None,
            };
            let result = self
                .authenticate(req.headers(), VerifyOptions::default(), ctx)
                .await;
            tally.decided();
            match result {
                Ok(identity) => tally.finish(Outcome::Allowed, allow(identity)),
                Err(refusal) => {
                    let outcome = outcome(&refusal);
                    tally.finish(outcome, refusal.into_response(original.only_401_403))
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// `[gateway.connections]` as the listener's limits.
fn connection_limits(c: &ConnectionsConfig) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: c.header_read_timeout,
        idle_timeout: c.idle_timeout,
        stall_timeout: c.stall_timeout,
        max_connections: c.max_connections,
        max_requests_per_connection: c.max_requests_per_connection,
    }
}

/// The forward-auth "yes": 200, empty body, the identity headers.
fn allow(identity: Identity) -> Response {
    let mut response = (StatusCode::OK, Body::empty()).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in identity {
        headers.insert(name, value);
    }
    response
}

fn log_refusal(refusal: &Refusal, fingerprint: Option<&str>) {
    let label = outcome(refusal).as_str();
    let check = refusal.check().unwrap_or("-");
    let token = fingerprint.unwrap_or("-");
    let reason = refusal.reason();
    match outcome(refusal) {
        Outcome::Unavailable => {
            tracing::warn!(outcome = label, check, token, reason = %reason, "token could not be verified now")
        }
        Outcome::MissingToken => tracing::debug!(outcome = label, "request without a bearer token"),
        _ => tracing::info!(outcome = label, check, token, reason = %reason, "request refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_connection_defaults_are_the_listeners_defaults() {
        assert_eq!(
            connection_limits(&ConnectionsConfig::default()),
            ConnectionLimits::default()
        );
    }
}
