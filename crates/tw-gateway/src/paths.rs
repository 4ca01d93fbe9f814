//! Paths: exempt paths (served without a token), proxy routes (host and longest path prefix), and
//! the request's host.

use axum::extract::Request;
use http::header::HOST;
use std::time::Duration;
use tw_config::GatewayRouteConfig;
use tw_http::forward::{Target, has_dot_dot_segment};

/// `exempt_paths`: exact paths, or prefixes when ending in `*` (a plain string prefix: `/docs*`
/// also covers `/docs-internal`; write `/docs/*` for the folder).
#[derive(Debug, Clone, Default)]
pub struct ExemptPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ExemptPaths {
    pub fn new(paths: &[String]) -> Self {
        let mut out = Self::default();
        for p in paths {
            match p.strip_suffix('*') {
                Some(prefix) => out.prefixes.push(prefix.to_owned()),
                None => out.exact.push(p.clone()),
            }
        }
        out
    }

    /// Whether `path` (without query) is exempt. Fails closed: a path an upstream might resolve
    /// differently from its text — `..` segments, encoded `/`, `\` or `.`, `\`, `;` (path
    /// parameters), a NUL — is never exempt, so `/docs/..%2fadmin` needs a token.
    pub fn matches(&self, path: &str) -> bool {
        if (self.exact.is_empty() && self.prefixes.is_empty()) || ambiguous(path) {
            return false;
        }
        self.exact.iter().any(|e| e == path) || self.prefixes.iter().any(|p| path.starts_with(p))
    }
}

fn ambiguous(path: &str) -> bool {
    if has_dot_dot_segment(path) || path.contains(['\\', ';']) {
        return true;
    }
    let lower = path.to_ascii_lowercase();
    ["%2f", "%5c", "%2e", "%00", "%3b"]
        .iter()
        .any(|enc| lower.contains(enc))
}

/// One `[[gateway.routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// `prefix`, or `host/prefix` for a host route: the metrics label and log field.
    pub label: String,
    host: Option<String>,
    pub target: Target,
    pub introspect: bool,
    pub timeout: Duration,
}

/// The routes, most specific first.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn new(cfg: &[GatewayRouteConfig]) -> Self {
        let mut routes: Vec<Route> = cfg
            .iter()
            .map(|rc| {
                let host = rc.host.as_deref().map(normalize_host);
                Route {
                    label: match &host {
                        Some(h) => format!("{h}{}", rc.prefix),
                        None => rc.prefix.clone(),
                    },
                    host,
                    target: Target::new(&rc.prefix, &rc.upstream, rc.strip_prefix),
                    introspect: rc.introspect,
                    timeout: rc.timeout,
                }
            })
            .collect();
        // Longest prefix first; for equal prefixes, a host route before a host-less one.
        routes.sort_by_key(|r| (std::cmp::Reverse(r.target.specificity()), r.host.is_none()));
        Self(routes)
    }

    /// The route for a request to `host` (normalized, see [`request_host`]) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.0.iter().find(|r| {
            r.target.matches(path)
                && match &r.host {
                    None => true,
                    Some(h) => host == Some(h.as_str()),
                }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The host a request was sent to: the URI's authority (HTTP/2, absolute form), else `Host`;
/// without port, lower case, no trailing dot.
pub fn request_host(req: &Request) -> Option<String> {
    if let Some(h) = req.uri().host() {
        return Some(normalize_host(h));
    }
    let value = req.headers().get(HOST)?.to_str().ok()?;
    Some(normalize_host(value))
}

/// `API.Example.org.:8443` → `api.example.org`; `[::1]:80` → `[::1]`.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim();
    let without_port = if h.starts_with('[') {
        match h.find(']') {
            Some(i) => &h[..=i],
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exempt_paths_exact_and_prefix_fail_closed() {
        let e = ExemptPaths::new(&["/health".into(), "/openapi.json".into(), "/docs*".into()]);
        assert!(e.matches("/health"));
        assert!(!e.matches("/health/"));
        assert!(!e.matches("/healthz"));
        assert!(e.matches("/openapi.json"));
        assert!(e.matches("/docs"));
        assert!(e.matches("/docs/index.html"));
        for tricky in [
            "/docs/../admin",
            "/docs/%2e%2e/admin",
            "/docs%2f..%2fadmin",
            "/docs/..;/admin",
            "/docs\\..\\admin",
            "/docs/%2E%2E%2Fadmin",
            "/docs/x%00",
        ] {
            assert!(!e.matches(tricky), "{tricky}");
        }
        assert!(!ExemptPaths::new(&[]).matches("/health"));
    }

    fn route(host: Option<&str>, prefix: &str, upstream: &str) -> GatewayRouteConfig {
        serde_json::from_value(serde_json::json!({
            "host": host, "prefix": prefix, "upstream": upstream,
        }))
        .expect("route")
    }

    #[test]
    fn routes_by_host_then_longest_prefix_on_segments() {
        let routes = Routes::new(&[
            route(None, "/", "http://root"),
            route(None, "/api/", "http://api"),
            route(Some("Admin.Example.org"), "/api", "http://admin-api"),
            route(None, "/api/v2", "http://v2"),
        ]);
        let origin = |host: Option<&str>, path: &str| {
            routes
                .find(host, path)
                .map(|r| r.target.origin().to_owned())
        };
        assert_eq!(origin(None, "/api/x").as_deref(), Some("http://api"));
        assert_eq!(origin(None, "/apix").as_deref(), Some("http://root"));
        assert_eq!(origin(None, "/api/v2/x").as_deref(), Some("http://v2"));
        assert_eq!(
            origin(Some("admin.example.org"), "/api/x").as_deref(),
            Some("http://admin-api")
        );
        assert_eq!(
            origin(Some("admin.example.org"), "/api/v2").as_deref(),
            Some("http://v2")
        );
        assert_eq!(
            routes
                .find(Some("admin.example.org"), "/api")
                .map(|r| r.label.as_str()),
            Some("admin.example.org/api")
        );
        assert!(
            Routes::new(&[route(None, "/api", "http://api")])
                .find(None, "/x")
                .is_none()
        );
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("API.Example.org.:8443"), "api.example.org");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("localhost"), "localhost");
    }
}
