//! Paths and hosts: exempt paths (served without a token), proxy routes (host and longest path
//! prefix), and the one host a request is for. Every comparison is on the canonical path
//! ([`tw_http::path`]), in lower case when `[gateway.paths] case_insensitive` is on.

use crate::settings::GatewayRouteConfig;
use axum::extract::Request;
use http::header::HOST;
use std::time::Duration;
pub use tw_authz::settings::normalize_host;
use tw_core::Error;
use tw_http::forward::Target;

/// Lower-cases configured paths when matching ignores case.
fn configured(path: &str, case_insensitive: bool) -> String {
    if case_insensitive {
        tw_core::text::fold_case(path)
    } else {
        path.to_owned()
    }
}

/// `exempt_paths`: exact paths, or prefixes when ending in `*` (a plain string prefix: `/docs*`
/// also covers `/docs-internal`; write `/docs/*` for the folder).
#[derive(Debug, Clone, Default)]
pub struct ExemptPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ExemptPaths {
    pub fn new(paths: &[String], case_insensitive: bool) -> Self {
        let mut out = Self::default();
        for p in paths {
            match p.strip_suffix('*') {
                Some(prefix) => out.prefixes.push(configured(prefix, case_insensitive)),
                None => out.exact.push(configured(p, case_insensitive)),
            }
        }
        out
    }

    /// Whether the canonical path (its matching form) is exempt. Fails closed: a path that keeps
    /// an escape (`%2F`, `%5C`, `%25` when the settings allow them) or a `;` is never exempt.
    pub fn matches(&self, matching: &str) -> bool {
        if (self.exact.is_empty() && self.prefixes.is_empty()) || matching.contains(['%', ';']) {
            return false;
        }
        self.exact.iter().any(|e| e == matching)
            || self
                .prefixes
                .iter()
                .any(|p| matching.starts_with(p.as_str()))
    }
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
    pub fn new(cfg: &[GatewayRouteConfig], case_insensitive: bool) -> Self {
        let mut routes: Vec<Route> = cfg
            .iter()
            .map(|rc| {
                let host = rc.host.as_deref().map(normalize_host);
                let prefix = configured(&rc.prefix, case_insensitive);
                Route {
                    label: match &host {
                        Some(h) => format!("{h}{}", rc.prefix),
                        None => rc.prefix.clone(),
                    },
                    host,
                    target: Target::new(&prefix, &rc.upstream, rc.strip_prefix),
                    introspect: rc.introspect,
                    timeout: rc.timeout,
                }
            })
            .collect();
        // Longest prefix first; for equal prefixes, a host route before a host-less one.
        routes.sort_by_key(|r| (std::cmp::Reverse(r.target.specificity()), r.host.is_none()));
        Self(routes)
    }

    /// The route for a request to `host` (normalized) and the canonical path's matching form.
    pub fn find(&self, host: Option<&str>, matching: &str) -> Option<&Route> {
        self.0.iter().find(|r| {
            r.target.matches(matching)
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

fn invalid_host(message: &str) -> Error {
    Error::bad_request("invalid_host", message.to_owned())
}

/// The one host a request is for, normalized: the absolute-form authority and `Host` must agree
/// when both are given (refused otherwise: a proxy in front could route by one and the gateway
/// by the other); several `Host` headers and userinfo (`user@host`) are refused.
pub fn request_host(req: &Request) -> Result<Option<String>, Error> {
    let mut values = req.headers().get_all(HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(invalid_host("the request has several Host headers"));
    }
    let header = header
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid_host("the Host header is not visible ASCII"))
        })
        .transpose()?;
    let authority = req.uri().authority().map(|a| a.as_str());
    host_of(authority, header)
}

/// The normalized host from an absolute-form authority and/or a `Host`-like header value.
pub fn host_of(authority: Option<&str>, header: Option<&str>) -> Result<Option<String>, Error> {
    let parse = |value: &str, what: &str| -> Result<String, Error> {
        if value.contains('@') {
            return Err(invalid_host(&format!(
                "{what} must not hold userinfo (`user@`)"
            )));
        }
        tw_authz::settings::parse_host(value).ok_or_else(|| {
            invalid_host(&format!(
                "{what} is not a host name with an optional port of 1 to 5 digits"
            ))
        })
    };
    let from_authority = authority
        .map(|a| parse(a, "the request target's authority"))
        .transpose()?;
    let from_header = header.map(|h| parse(h, "the Host header")).transpose()?;
    match (from_authority, from_header) {
        (Some(a), Some(h)) if a != h => Err(invalid_host(
            "the request target's authority and the Host header name different hosts",
        )),
        (a, h) => Ok(a.or(h)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exempt_paths_exact_and_prefix_fail_closed() {
        let e = ExemptPaths::new(
            &["/health".into(), "/openapi.json".into(), "/docs*".into()],
            false,
        );
        assert!(e.matches("/health"));
        assert!(!e.matches("/health/"));
        assert!(!e.matches("/healthz"));
        assert!(e.matches("/openapi.json"));
        assert!(e.matches("/docs"));
        assert!(e.matches("/docs/index.html"));
        // Canonical paths that keep an escape or a `;` (allowed by settings) are never exempt.
        for kept in ["/docs/x%2Fy", "/docs/a;b", "/docs/%5C"] {
            assert!(!e.matches(kept), "{kept}");
        }
        assert!(!ExemptPaths::new(&[], false).matches("/health"));
        let ci = ExemptPaths::new(&["/Health".into(), "/Docs/*".into()], true);
        assert!(ci.matches("/health"));
        assert!(ci.matches("/docs/x"));
    }

    fn route(host: Option<&str>, prefix: &str, upstream: &str) -> GatewayRouteConfig {
        serde_json::from_value(serde_json::json!({
            "host": host, "prefix": prefix, "upstream": upstream,
        }))
        .expect("route")
    }

    #[test]
    fn routes_by_host_then_longest_prefix_on_segments() {
        let routes = Routes::new(
            &[
                route(None, "/", "http://root"),
                route(None, "/api/", "http://api"),
                route(Some("Admin.Example.org"), "/api", "http://admin-api"),
                route(None, "/api/v2", "http://v2"),
            ],
            false,
        );
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
            Routes::new(&[route(None, "/api", "http://api")], false)
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

    #[test]
    fn one_host_per_request() {
        let host = |a: Option<&str>, h: Option<&str>| host_of(a, h).map_err(|e| e.code());
        assert_eq!(
            host(None, Some("API.example.org:80")),
            Ok(Some("api.example.org".into()))
        );
        assert_eq!(
            host(Some("api.example.org"), Some("API.example.org.")),
            Ok(Some("api.example.org".into()))
        );
        assert_eq!(
            host(Some("admin.example.org"), None),
            Ok(Some("admin.example.org".into()))
        );
        assert_eq!(host(None, None), Ok(None));
        assert_eq!(host(None, Some("[::1]:8443")), Ok(Some("[::1]".into())));
        assert_eq!(
            host(None, Some("my_service:8080")),
            Ok(Some("my_service".into()))
        );
        for (a, h) in [
            (Some("admin.example.org"), Some("127.0.0.1")),
            (None, Some("x@admin.example.org")),
            (Some("x@admin.example.org"), None),
            (None, Some("a.example, b.example")),
            (None, Some("")),
            (None, Some("admin.example.org:80abc")),
            (None, Some("admin.example.org:80:80")),
            (None, Some("admin.example.org:+80")),
            (None, Some("admin.example.org%2e")),
            (None, Some("[admin.example.org]")),
            (None, Some("admin.example.org;x")),
            (None, Some("admin.example.org?")),
            (None, Some("admin.example.org#")),
            (None, Some("admin.example.org:123456")),
        ] {
            assert_eq!(host(a, h), Err("invalid_host"), "{a:?} {h:?}");
        }
    }
}
