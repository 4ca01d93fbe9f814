//! Forwarding requests to upstreams, shared by every proxying server (the agent's injecting proxy,
//! the gateway's verifying proxy): one pooled client, one set of header rules, one way to map
//! transport failures to errors.
//!
//! - [`upstream_client`]: hyper-util's pooled client, rustls with the platform verifier, plain
//!   `http://` allowed (local upstreams);
//! - [`Target`]: route matching by path prefix on segment boundaries and upstream URI building;
//! - [`forwarded_request_headers`] / [`remove_hop_by_hop`]: RFC 9110 §7.6.1 hop-by-hop fields
//!   dropped, `X-Forwarded-For/-Proto/-Host` set;
//! - [`send`]: one request with a deadline, failures classified ([`SendFailure`]);
//! - [`downstream_response`]: the upstream's answer, streamed back without hop-by-hop fields.

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tw_core::{Error, ErrorKind};
use url::Url;

/// The pooled upstream client. Cheap to clone (clones share the pool).
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Idle pooled connections are closed after this.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the pooled client: TLS (rustls, platform trust store) for `https://`, plain TCP for
/// `http://`, `TCP_NODELAY`, HTTP/1.1.
pub fn upstream_client() -> Result<UpstreamClient, Error> {
    let mut http = HttpConnector::new();
    // The TLS wrapper decides per scheme; plain http stays allowed for local upstreams.
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .try_with_platform_verifier()
        .map_err(|e| {
            Error::internal(
                "tls_init_failed",
                format!("cannot initialise TLS for upstreams: {e}"),
            )
        })?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https))
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes `Connection`, the fields it names, and the fixed hop-by-hop set (incl. all `Proxy-*`).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy_fields: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_fields {
        headers.remove(name);
    }
}

/// Prepares the caller's headers for the upstream: hop-by-hop fields go, `Host` is left to the
/// client (the upstream's own) and passed on as `X-Forwarded-Host`, the peer is appended to
/// `X-Forwarded-For`, `X-Forwarded-Proto` is `http` (we serve plain HTTP). `Authorization` is
/// untouched: the caller decides (the agent replaces it, the gateway passes it on).
pub fn forwarded_request_headers(mut headers: HeaderMap, peer: Option<SocketAddr>) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    let host = headers.remove(header::HOST);

    if let Some(peer) = peer {
        let ip = peer.ip().to_string();
        let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers
}

/// The parts of a route that decide where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Configured prefix without trailing `/` (empty for `/`).
    prefix: String,
    strip_prefix: bool,
    /// `scheme://host[:port]`, the only part of the upstream named in errors and metrics.
    origin: String,
    /// Upstream base path without trailing `/`.
    base_path: String,
}

impl Target {
    pub fn new(prefix: &str, upstream: &Url, strip_prefix: bool) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
            strip_prefix,
            origin: upstream.origin().ascii_serialization(),
            base_path: upstream.path().trim_end_matches('/').to_owned(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Length used to pick the longest match.
    pub fn specificity(&self) -> usize {
        self.prefix.len()
    }

    /// `/api` matches `/api` and `/api/x`, not `/apix`.
    pub fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// The upstream URI for a request to `uri` (which [`Target::matches`]).
    pub fn upstream_uri(&self, uri: &Uri) -> Result<Uri, http::Error> {
        self.upstream_uri_for(uri.path(), uri.query())
    }

    /// The upstream URI for `path` (which [`Target::matches`], in any case) and `query`: the
    /// prefix's segments are dropped when the route strips its prefix.
    pub fn upstream_uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let rest = if self.strip_prefix {
            let prefix_segments = self.prefix.matches('/').count();
            match path.match_indices('/').nth(prefix_segments) {
                Some((i, _)) => &path[i..],
                None => "/",
            }
        } else {
            path
        };
        let rest = if rest.starts_with('/') { rest } else { "/" };
        let mut out =
            String::with_capacity(self.origin.len() + self.base_path.len() + path.len() + 16);
        out.push_str(&self.origin);
        out.push_str(&self.base_path);
        out.push_str(rest);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Ok(Uri::try_from(out)?)
    }
}

/// True when a path segment is `..`, literally or percent-encoded: the upstream would resolve it
/// and the request could leave the route's prefix.
pub fn has_dot_dot_segment(path: &str) -> bool {
    // Compared without allocating: this runs on every proxied request.
    path.split('/').any(|seg| {
        ["..", "%2e%2e", ".%2e", "%2e."]
            .iter()
            .any(|dots| seg.eq_ignore_ascii_case(dots))
    })
}

/// The 400 for a path with a `..` segment.
pub fn dot_dot_error() -> Error {
    Error::bad_request(
        "invalid_path",
        "the path contains a `..` segment; the proxy does not forward those",
    )
}

/// An HTTP/1.1 request for the upstream client (`uri` absolute, `Host` left to the client).
pub fn upstream_request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> hyper::Request<Body> {
    let mut req = hyper::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    req
}

/// Why an upstream request produced no response.
#[derive(Debug)]
pub enum SendFailure {
    /// The deadline passed before the response headers arrived.
    Timeout,
    /// No connection could be made (safe to retry: nothing was sent).
    Connect(String),
    /// The connection broke after the request started.
    Lost(String),
}

impl SendFailure {
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    /// The error for the caller: 504 `upstream_timeout` or 502 `upstream_unreachable`, naming
    /// the upstream's origin only (never its path, query or headers).
    pub fn into_error(self, origin: &str, timeout: Duration) -> Error {
        match self {
            Self::Timeout => timeout_error(origin, timeout),
            Self::Connect(cause) => unreachable_error("cannot connect to", origin, &cause),
            Self::Lost(cause) => unreachable_error("lost the connection to", origin, &cause),
        }
    }
}

/// 504 `upstream_timeout`.
pub fn timeout_error(origin: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::UpstreamTimeout,
        "upstream_timeout",
        format!(
            "upstream {origin} did not answer within {}s",
            timeout.as_secs_f64()
        ),
    )
}

fn unreachable_error(what: &str, origin: &str, cause: &str) -> Error {
    Error::new(
        ErrorKind::UpstreamUnreachable,
        "upstream_unreachable",
        format!("{what} upstream {origin}: {cause}"),
    )
}

/// Sends `req` and waits for the response headers until `deadline`. The body streams.
pub async fn send(
    client: &UpstreamClient,
    req: hyper::Request<Body>,
    deadline: Instant,
) -> Result<hyper::Response<Incoming>, SendFailure> {
    match tokio::time::timeout_at(deadline, client.request(req)).await {
        Ok(Ok(response)) => Ok(response),
        Err(_) => Err(SendFailure::Timeout),
        Ok(Err(e)) if e.is_connect() => Err(SendFailure::Connect(cause_chain(&e))),
        Ok(Err(e)) => Err(SendFailure::Lost(cause_chain(&e))),
    }
}

/// The upstream's response for our caller: hop-by-hop fields removed, the body streamed.
pub fn downstream_response(response: hyper::Response<Incoming>) -> Response {
    let (mut parts, incoming) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    // The upstream's protocol version is a property of that hop only; relaying an HTTP/1.0
    // status line would make keep-alive clients drop their connection after every response.
    parts.version = http::Version::default();
    Response::from_parts(parts, Body::new(incoming))
}

/// The innermost causes, e.g. `tcp connect error: Connection refused (os error 111)`.
/// hyper's errors describe transport failures only; they never include headers.
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_go_and_forwarded_fields_are_set() {
        let h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("authorization", "Bearer callers-own"),
            ("host", "127.0.0.1:8791"),
            ("x-forwarded-for", "10.1.1.1"),
            ("accept", "application/json"),
        ]);
        let out = forwarded_request_headers(h, Some("127.0.0.1:5555".parse().expect("addr")));
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "authorization",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto"
            ],
        );
        assert_eq!(out["authorization"], "Bearer callers-own");
        assert_eq!(out["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-host"], "127.0.0.1:8791");
    }

    #[test]
    fn a_caller_supplied_forwarded_host_is_dropped_without_a_host() {
        let out = forwarded_request_headers(map(&[("x-forwarded-host", "evil.example")]), None);
        assert!(out.get("x-forwarded-host").is_none());
        assert!(out.get("x-forwarded-for").is_none());
    }

    fn target(prefix: &str, upstream: &str, strip: bool) -> Target {
        Target::new(prefix, &Url::parse(upstream).expect("url"), strip)
    }

    fn up(t: &Target, uri: &str) -> String {
        t.upstream_uri(&uri.parse().expect("uri"))
            .expect("ok")
            .to_string()
    }

    #[test]
    fn matching_respects_segment_boundaries() {
        let t = target("/api/", "http://up:81", false);
        assert!(t.matches("/api"));
        assert!(t.matches("/api/"));
        assert!(t.matches("/api/v1/x"));
        assert!(!t.matches("/apix"));
        assert!(!t.matches("/other"));
        let root = target("/", "http://up", false);
        assert!(root.matches("/anything"));
        assert_eq!(root.specificity(), 0);
    }

    #[test]
    fn upstream_uri_with_and_without_strip_and_base_path() {
        let keep = target("/api/", "http://up:81", false);
        assert_eq!(
            up(&keep, "/api/v1/x?a=1&b=2"),
            "http://up:81/api/v1/x?a=1&b=2"
        );
        let strip = target("/api/", "http://up:81/base/", true);
        assert_eq!(up(&strip, "/api/v1/x?a=1"), "http://up:81/base/v1/x?a=1");
        assert_eq!(up(&strip, "/api"), "http://up:81/base/");
        let strip_root = target("/api", "https://up.example", true);
        assert_eq!(up(&strip_root, "/api/"), "https://up.example/");
        assert_eq!(up(&strip_root, "/api"), "https://up.example/");
        let deep = target("/a/b", "http://up", true);
        assert_eq!(
            deep.upstream_uri_for("/A/B/c/d", None)
                .expect("ok")
                .to_string(),
            "http://up/c/d"
        );
        assert_eq!(strip_root.origin(), "https://up.example");
    }

    #[test]
    fn dot_dot_segments_are_detected_in_any_spelling() {
        assert!(has_dot_dot_segment("/api/../admin"));
        assert!(has_dot_dot_segment("/api/%2E%2e/admin"));
        assert!(has_dot_dot_segment("/api/.%2e"));
        assert!(!has_dot_dot_segment("/api/..foo/x"));
        assert!(!has_dot_dot_segment("/api/v1.2/x"));
    }

    #[test]
    fn failures_map_to_502_and_504_naming_the_origin_only() {
        let e = SendFailure::Timeout.into_error("http://up:81", Duration::from_millis(1500));
        assert_eq!(e.http_status(), 504);
        assert_eq!(
            e.message(),
            "upstream http://up:81 did not answer within 1.5s"
        );
        let e = SendFailure::Connect("connection refused".into())
            .into_error("http://up:81", Duration::from_secs(1));
        assert_eq!(e.http_status(), 502);
        assert_eq!(e.code(), "upstream_unreachable");
        assert_eq!(
            e.message(),
            "cannot connect to upstream http://up:81: connection refused"
        );
        assert!(
            SendFailure::Lost("reset".into())
                .into_error("http://up:81", Duration::from_secs(1))
                .message()
                .starts_with("lost the connection to")
        );
    }
}
