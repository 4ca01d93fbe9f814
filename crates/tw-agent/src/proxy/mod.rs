//! The injecting reverse proxy: `Authorization: Bearer <token>` added on the way to upstreams.
//!
//! Per request: caller checks ([`CallerAccess`]: `Host`, caller key, whose header never goes
//! upstream) → route by longest prefix → rate limit → circuit breaker → token → forward (bodies
//! streamed) → on a 401 to the token just sent, one coalesced refresh and one replay, if the body
//! was small enough to be kept.

mod breaker;
mod headers;

pub use breaker::BreakerState;

use crate::access::{self, CallerAccess};
use crate::metrics_names::*;
use crate::settings::{ProxyConfig, RouteConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use breaker::Breaker;
use bytes::Bytes;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Method, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;
use tw_broker::{Broker, IssuedToken, Profile, TokenRequest};
use tw_core::backoff::Backoff;
use tw_core::{Clock, Error, ErrorKind};
use tw_http::forward::{self, SendFailure, Target, UpstreamClient as HttpClient};
use tw_http::{ApiError, PeerAddr};

/// First pause before re-trying a failed connection; doubles per attempt (no cap: the attempts
/// are bounded by `connect_retries`).
const CONNECT_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// The proxy's routes and its pooled upstream client. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    access: CallerAccess,
    /// Most specific prefix first.
    routes: Vec<Route>,
    client: HttpClient,
    breakers: HashMap<String, Arc<Breaker>>,
}

struct Route {
    /// The configured prefix, as the metrics label.
    label: String,
    target: Target,
    profile: Arc<Profile>,
    timeout: Duration,
    connect_retries: u32,
    max_replay_body_bytes: u64,
    limiter: Option<DefaultDirectRateLimiter>,
    rate: Option<u32>,
    breaker: Arc<Breaker>,
}

impl Proxy {
    /// Builds routes for `cfg`; each route's profile must exist in `broker`. Routes sharing an
    /// upstream origin share one circuit breaker (configured by the first of them). Checks who
    /// may call it (`listen`, `allow_remote`, `caller_key`) and reads the caller key once.
    pub fn new(cfg: &ProxyConfig, broker: &Broker, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let access = CallerAccess::from_config(&cfg.access(), "proxy")?;
        let mut breakers: HashMap<String, Arc<Breaker>> = HashMap::new();
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for (i, rc) in cfg.routes.iter().enumerate() {
            let route = Route::new(rc, i, broker, |origin| {
                breakers
                    .entry(origin.to_owned())
                    .or_insert_with(|| {
                        Breaker::new(origin.to_owned(), rc.circuit_breaker, clock.clone())
                    })
                    .clone()
            })?;
            routes.push(route);
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.target.specificity()));
        Ok(Self {
            inner: Arc::new(Inner {
                access,
                routes,
                client: forward::upstream_client()?,
                breakers,
            }),
        })
    }

    /// The proxy as an axum router: every path is proxied, after the caller checks.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handle)
            .with_state(self.inner.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.inner.access.clone(),
                access::guard,
            ))
            .layer(tw_http::trace_layer())
    }

    /// The address to bind (`agent.proxy.listen`, checked).
    pub fn listen(&self) -> &tw_core::ListenAddr {
        self.inner.access.listen()
    }

    /// Whether callers must present `agent.proxy.caller_key`.
    pub fn requires_key(&self) -> bool {
        self.inner.access.requires_key()
    }

    /// The circuit state of an upstream origin (`http://host:port`), if a route uses it.
    pub fn breaker_state(&self, origin: &str) -> Option<BreakerState> {
        self.inner.breakers.get(origin).map(|b| b.state())
    }
}

impl Route {
    fn new(
        rc: &RouteConfig,
        index: usize,
        broker: &Broker,
        breaker_for: impl FnOnce(&str) -> Arc<Breaker>,
    ) -> Result<Self, Error> {
        let key = format!("agent.proxy.routes[{index}]");
        let profile = broker.profile(&rc.profile).cloned().ok_or_else(|| {
            Error::config(
                "unknown_profile",
                format!("{key}.profile: no profile named `{}`", rc.profile),
            )
            .with("key", format!("{key}.profile"))
        })?;
        let target = Target::new(&rc.prefix, &rc.upstream, rc.strip_prefix);
        let limiter = match rc.rate_limit {
            None => None,
            Some(rl) => {
                let invalid = || {
                    Error::config(
                        tw_core::CONFIG_INVALID,
                        format!("{key}.rate_limit: per_second and burst must be positive"),
                    )
                    .with("key", format!("{key}.rate_limit"))
                };
                let rate = NonZeroU32::new(rl.per_second).ok_or_else(invalid)?;
                let burst =
                    NonZeroU32::new(rl.burst.unwrap_or(rl.per_second)).ok_or_else(invalid)?;
                Some(RateLimiter::direct(
                    Quota::per_second(rate).allow_burst(burst),
                ))
            }
        };
        Ok(Self {
            label: rc.prefix.clone(),
            breaker: breaker_for(target.origin()),
            target,
            profile,
            timeout: rc.timeout,
            connect_retries: rc.connect_retries,
            max_replay_body_bytes: rc.max_replay_body_bytes,
            limiter,
            rate: rc.rate_limit.map(|r| r.per_second),
        })
    }

    /// Adds `profile` and `upstream` to an error unless it names them already.
    fn context(&self, mut e: Error) -> Error {
        if e.context_value("profile").is_none() {
            e = e.with("profile", self.profile.name());
        }
        if e.context_value("upstream").is_none() {
            e = e.with("upstream", self.target.origin());
        }
        e
    }

    async fn forward(
        &self,
        client: &HttpClient,
        req: Request,
        peer: Option<SocketAddr>,
    ) -> Result<Response, Error> {
        if forward::has_dot_dot_segment(req.uri().path()) {
            return Err(forward::dot_dot_error());
        }
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(Error::new(
                ErrorKind::RateLimited,
                "rate_limited",
                format!(
                    "route {} allows {} requests per second",
                    self.label,
                    self.rate.unwrap_or_default()
                ),
            )
            .with("route", self.label.clone())
            .with_retry_after(wait));
        }
        let uri = self.target.upstream_uri(req.uri()).map_err(|_| {
            Error::bad_request(
                tw_http::path::INVALID_PATH,
                "the request path cannot be forwarded",
            )
        })?;
        let permit = self.breaker.admit().map_err(|wait| {
            Error::new(
                ErrorKind::UpstreamCircuitOpen,
                "upstream_circuit_open",
                format!(
                    "upstream {} failed repeatedly; requests are paused for {}s",
                    self.target.origin(),
                    tw_http::retry_after_secs(wait)
                ),
            )
            .with_retry_after(wait)
        })?;

        let (parts, body) = req.into_parts();
        let mut body = OutBody::prepare(body, self.max_replay_body_bytes).await?;
        let headers = headers::outbound_request_headers(parts.headers, peer);
        let out = Outbound {
            method: parts.method,
            uri,
            headers,
            deadline: Instant::now() + self.timeout,
        };

        let outcome = self.exchange(client, &out, &mut body).await;
        match &outcome {
            Ok(r) => permit.record(!matches!(r.status().as_u16(), 502..=504)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UpstreamUnreachable | ErrorKind::UpstreamTimeout
                ) =>
            {
                permit.record(false);
            }
            // No token, say: nothing was learnt about the upstream.
            Err(_) => drop(permit),
        }
        Ok(forward::downstream_response(outcome?))
    }

    /// Sends with the current token; after a 401 to that token, once more with a new one.
    async fn exchange(
        &self,
        client: &HttpClient,
        out: &Outbound,
        body: &mut OutBody,
    ) -> Result<hyper::Response<Incoming>, Error> {
        let sent = self.profile.token(TokenRequest::default()).await?.token;
        let first = self.send(client, out, body, &sent).await?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        if !body.replayable() {
            tracing::info!(token = ?sent.fingerprint, "upstream answered 401; the request body was streamed, so it is passed on without a retry");
            return Ok(first);
        }
        match self.profile.force_refresh(Some(sent.fingerprint)).await {
            Ok(fresh) if fresh.fingerprint != sent.fingerprint => {
                metrics::counter!(METRIC_PROXY_401_RETRIES, "route" => self.label.clone())
                    .increment(1);
                tracing::info!(rejected = ?sent.fingerprint, token = ?fresh.fingerprint, "upstream rejected the token; retrying once with a new one");
                drop(first);
                self.send(client, out, body, &fresh).await
            }
            Ok(_) => Ok(first),
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "upstream rejected the token and no new one could be had; passing the 401 on");
                Ok(first)
            }
        }
    }

    /// One request upstream, re-tried on connection failure when that is safe.
    async fn send(
        &self,
        client: &HttpClient,
        out: &Outbound,
        body: &mut OutBody,
        token: &IssuedToken,
    ) -> Result<hyper::Response<Incoming>, Error> {
        let auth = headers::authorization(&token.token_type, token.access_token.expose())
            .ok_or_else(|| {
                Error::internal(
                    "token_not_header_safe",
                    "the token cannot be sent in an HTTP header",
                )
            })?;
        let retry_allowed = is_idempotent(&out.method) && body.replayable();
        let mut retries = 0;
        loop {
            let Some(b) = body.take() else {
                return Err(Error::internal(
                    "body_consumed",
                    "the request body was already sent",
                ));
            };
            let mut headers = out.headers.clone();
            headers.insert(http::header::AUTHORIZATION, auth.clone());
            let req = forward::upstream_request(out.method.clone(), out.uri.clone(), headers, b);

            let started = std::time::Instant::now();
            let result = forward::send(client, req, out.deadline).await;
            metrics::histogram!(METRIC_PROXY_UPSTREAM_SECONDS, "route" => self.label.clone())
                .record(started.elapsed().as_secs_f64());
            let failure = match result {
                Ok(response) => return Ok(response),
                Err(f) => f,
            };
            if let SendFailure::Connect(cause) = &failure
                && retry_allowed
                && retries < self.connect_retries
            {
                retries += 1;
                tracing::debug!(attempt = retries + 1, cause = %cause, "cannot connect to upstream; retrying");
                let pause = Backoff::unbounded(CONNECT_RETRY_BACKOFF).delay(retries);
                if tokio::time::timeout_at(out.deadline, tokio::time::sleep(pause))
                    .await
                    .is_err()
                {
                    return Err(self.timeout_error());
                }
                continue;
            }
            return Err(failure.into_error(self.target.origin(), self.timeout));
        }
    }

    fn timeout_error(&self) -> Error {
        forward::timeout_error(self.target.origin(), self.timeout)
    }
}

/// What goes upstream, apart from the body and the token.
struct Outbound {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    deadline: Instant,
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// The request body: kept in memory (so it can be sent again) or streamed once.
enum OutBody {
    Replayable(Bytes),
    Streaming(Option<Body>),
}

impl OutBody {
    /// Buffers bodies of known length up to `limit`; anything else streams.
    async fn prepare(body: Body, limit: u64) -> Result<Self, Error> {
        if body.is_end_stream() {
            return Ok(Self::Replayable(Bytes::new()));
        }
        match body.size_hint().exact() {
            Some(n) if n <= limit => {
                let cap = usize::try_from(n).unwrap_or(usize::MAX);
                let bytes = Limited::new(body, cap)
                    .collect()
                    .await
                    .map_err(|e| {
                        Error::bad_request(
                            "request_body_unreadable",
                            format!("could not read the request body: {e}"),
                        )
                    })?
                    .to_bytes();
                Ok(Self::Replayable(bytes))
            }
            _ => Ok(Self::Streaming(Some(body))),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Replayable(_))
    }

    fn take(&mut self) -> Option<Body> {
        match self {
            Self::Replayable(b) if b.is_empty() => Some(Body::empty()),
            Self::Replayable(b) => Some(Body::from(b.clone())),
            Self::Streaming(b) => b.take(),
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .and_then(|c| c.0.0);
    let path = req.uri().path();
    let Some(route) = inner.routes.iter().find(|r| r.target.matches(path)) else {
        let err = Error::not_found(
            "route_not_found",
            format!("no proxy route serves the path {path}"),
        );
        metrics::counter!(METRIC_PROXY_REQUESTS, "route" => "none", "status" => "404").increment(1);
        return ApiError::from(err).into_response();
    };
    let span = tracing::info_span!(
        "proxy",
        route = %route.label,
        upstream = %route.target.origin(),
        profile = %route.profile.name(),
    );
    let response = match route
        .forward(&inner.client, req, peer)
        .instrument(span)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let e = route.context(e);
            tracing::debug!(code = e.code(), error = %e, "proxy request failed");
            ApiError::from(e).into_response()
        }
    };
    metrics::counter!(
        METRIC_PROXY_REQUESTS,
        "route" => route.label.clone(),
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}
