//! Forward-auth: which request the asking proxy is asking about.
//!
//! | proxy | path | method | host |
//! |---|---|---|---|
//! | nginx `auth_request` | `X-Original-URI` | `X-Original-Method` | `X-Forwarded-Host` (if set) |
//! | Traefik `forwardAuth` | `X-Forwarded-Uri` | `X-Forwarded-Method` | `X-Forwarded-Host` |
//! | Envoy `ext_authz` (HTTP service) | after the endpoint path (`/auth/api/x` → `/api/x`) | the request's | `Host` |
//!
//! Proxies pass the client's own headers on to the auth request, so a client may add any of these
//! headers itself. The gateway therefore takes every source present and requires them to agree:
//! a client can make its own request fail (400), never make it look like another (say, an exempt
//! path). Query strings are dropped at once: they never reach logs, metrics or decisions.

use crate::paths::normalize_host;
use http::header::HOST;
use http::{HeaderMap, HeaderName, Method, Uri};
use tw_verify::VerifyError;

static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The request a forward-auth call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: Method,
    /// Path without query; `None` when no source names it.
    pub path: Option<String>,
    /// Without port, lower case.
    pub host: Option<String>,
    /// The asker sent nginx's `X-Original-*` headers: nginx `auth_request` passes on only 2xx,
    /// 401 and 403 (anything else becomes a 500 for the client).
    pub only_401_403: bool,
}

/// Reads the original request from a call to the forward-auth endpoint `endpoint` (e.g. `/auth`).
/// `Err` (an `invalid_request`) when sources disagree or a header is malformed.
pub fn original_request(
    endpoint: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<OriginalRequest, VerifyError> {
    let mut paths: Vec<String> = Vec::new();
    // Envoy: the original path appended to the endpoint path. `/auth/` alone says `/`, but weakly:
    // nginx setups often proxy to `/auth/` and name the path in a header instead.
    let suffix = uri
        .path()
        .strip_prefix(endpoint)
        .filter(|rest| rest.starts_with('/'));
    if let Some(rest) = suffix.filter(|r| *r != "/") {
        paths.push(rest.to_owned());
    }
    for name in [&X_ORIGINAL_URI, &X_FORWARDED_URI] {
        if let Some(v) = single(headers, name)? {
            paths.push(path_of(v, name)?);
        }
    }
    if paths.is_empty() && suffix == Some("/") {
        paths.push("/".to_owned());
    }
    if paths.windows(2).any(|w| w[0] != w[1]) {
        return Err(VerifyError::invalid_request(
            "the original request's path is named differently by the Envoy path, X-Original-URI and X-Forwarded-Uri",
        ));
    }

    let mut methods: Vec<Method> = Vec::new();
    for name in [&X_ORIGINAL_METHOD, &X_FORWARDED_METHOD] {
        if let Some(v) = single(headers, name)? {
            let m = Method::from_bytes(v.trim().as_bytes()).map_err(|_| {
                VerifyError::invalid_request(&format!("{name} is not an HTTP method"))
            })?;
            methods.push(m);
        }
    }
    if methods.windows(2).any(|w| w[0] != w[1]) {
        return Err(VerifyError::invalid_request(
            "X-Original-Method and X-Forwarded-Method name different methods",
        ));
    }

    let host = match single(headers, &X_FORWARDED_HOST)? {
        // A chain `a, b` names the client-facing host first.
        Some(v) => v.split(',').next().map(normalize_host),
        None => headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(normalize_host),
    }
    .filter(|h| !h.is_empty());

    Ok(OriginalRequest {
        method: methods.pop().unwrap_or_else(|| method.clone()),
        path: paths.pop(),
        host,
        only_401_403: asked_by_nginx(headers),
    })
}

/// nginx `auth_request` passes on only 2xx, 401 and 403 (anything else becomes a 500 for the
/// client); it is recognized by its `X-Original-*` headers.
pub fn asked_by_nginx(headers: &HeaderMap) -> bool {
    headers.contains_key(&X_ORIGINAL_URI) || headers.contains_key(&X_ORIGINAL_METHOD)
}

/// The header's one value as text; several values or a non-ASCII one are malformed.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VerifyError::invalid_request(&format!(
            "the request has several {name} headers"
        )));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| VerifyError::invalid_request(&format!("{name} is not visible ASCII")))
}

/// The path of a request target (`/p?q`, or an absolute `http://h/p?q`), without query.
fn path_of(target: &str, name: &HeaderName) -> Result<String, VerifyError> {
    let target = target.trim();
    let no_fragment = target.split('#').next().unwrap_or("");
    let path = if no_fragment.starts_with('/') {
        no_fragment.split('?').next().unwrap_or("").to_owned()
    } else {
        match no_fragment.parse::<Uri>() {
            Ok(u) if u.scheme().is_some() => u.path().to_owned(),
            _ => String::new(),
        }
    };
    if !path.starts_with('/') {
        return Err(VerifyError::invalid_request(&format!(
            "{name} is not a request path"
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ask(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<OriginalRequest, String> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        original_request(
            "/auth",
            &Method::from_bytes(method.as_bytes()).expect("method"),
            &uri.parse().expect("uri"),
            &h,
        )
        .map_err(|e| e.description().to_owned())
    }

    #[test]
    fn nginx_traefik_and_envoy_styles() {
        let nginx = ask(
            "GET",
            "/auth",
            &[
                ("x-original-uri", "/api/items?access_token=secret"),
                ("x-original-method", "DELETE"),
                ("host", "127.0.0.1:8800"),
                ("x-forwarded-host", "API.example.org"),
            ],
        )
        .expect("nginx");
        assert_eq!(nginx.path.as_deref(), Some("/api/items"));
        assert_eq!(nginx.method, Method::DELETE);
        assert_eq!(nginx.host.as_deref(), Some("api.example.org"));
        assert!(nginx.only_401_403);

        let traefik = ask(
            "GET",
            "/auth",
            &[
                ("x-forwarded-uri", "/api/items?x=1"),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-host", "api.example.org:443"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .expect("traefik");
        assert_eq!(traefik.path.as_deref(), Some("/api/items"));
        assert_eq!(traefik.method, Method::POST);
        assert_eq!(traefik.host.as_deref(), Some("api.example.org"));
        assert!(!traefik.only_401_403);

        let envoy =
            ask("PUT", "/auth/api/items?x=1", &[("host", "api.example.org")]).expect("envoy");
        assert_eq!(envoy.path.as_deref(), Some("/api/items"));
        assert_eq!(envoy.method, Method::PUT);
        assert_eq!(envoy.host.as_deref(), Some("api.example.org"));

        let root = ask("GET", "/auth/", &[]).expect("envoy root");
        assert_eq!(root.path.as_deref(), Some("/"));
        let unknown = ask("GET", "/auth", &[]).expect("nothing said");
        assert_eq!(unknown.path, None);
        let absolute = ask("GET", "/auth/", &[("x-original-uri", "http://h/x?y")]).expect("abs");
        assert_eq!(absolute.path.as_deref(), Some("/x"));
    }

    #[test]
    fn sources_must_agree() {
        // A client adding X-Forwarded-Uri to an nginx request cannot pick an exempt path.
        let err = ask(
            "GET",
            "/auth",
            &[("x-original-uri", "/admin"), ("x-forwarded-uri", "/health")],
        )
        .expect_err("conflict");
        assert!(err.contains("differently"), "{err}");
        ask("GET", "/auth/admin", &[("x-original-uri", "/health")]).expect_err("envoy conflict");
        ask(
            "GET",
            "/auth",
            &[("x-original-method", "GET"), ("x-forwarded-method", "POST")],
        )
        .expect_err("method conflict");
        // Agreeing sources are fine (query strings do not count).
        let ok = ask(
            "GET",
            "/auth",
            &[("x-original-uri", "/a?x=1"), ("x-forwarded-uri", "/a")],
        )
        .expect("agree");
        assert_eq!(ok.path.as_deref(), Some("/a"));
    }

    #[test]
    fn malformed_headers_are_invalid_requests() {
        ask("GET", "/auth", &[("x-original-uri", "api/x")]).expect_err("relative");
        ask("GET", "/auth", &[("x-original-uri", "*")]).expect_err("asterisk");
        ask("GET", "/auth", &[("x-original-method", "G E T")]).expect_err("method");
        ask(
            "GET",
            "/auth",
            &[("x-original-uri", "/a"), ("x-original-uri", "/b")],
        )
        .expect_err("two values");
    }
}
