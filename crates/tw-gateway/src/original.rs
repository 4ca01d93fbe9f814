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

use crate::paths::host_of;
use crate::refusal::Refusal;
use http::header::HOST;
use http::{HeaderMap, HeaderName, Method, Uri};
use tw_http::path::{CanonicalPath, PathPolicy, PathRefusal, canonicalize};
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
    /// The canonical path (query dropped); `None` when no source names it.
    pub path: Option<CanonicalPath>,
    /// Without port, lower case.
    pub host: Option<String>,
    /// The asker sent nginx's `X-Original-*` headers: nginx `auth_request` passes on only 2xx,
    /// 401 and 403 (anything else becomes a 500 for the client).
    pub only_401_403: bool,
}

fn invalid(description: &str) -> Refusal {
    Refusal::Verify(VerifyError::invalid_request(description).into())
}

/// Reads the original request from a call to the forward-auth endpoint `endpoint` (e.g. `/auth`)
/// whose own canonical path is `request_path`. Every path source is made canonical under
/// `policy` the way nginx resolves `$uri` for its `location` match, and what cannot be made
/// unambiguous is refused, never allowed: here that includes `.` and `..` segments, because the
/// front proxy forwards the path as sent (nginx's `proxy_pass` without a URI part, Traefik,
/// Envoy) and upstreams disagree on resolving them (Express does not). The sources must agree.
pub fn original_request(
    endpoint: &str,
    method: &Method,
    request_path: &CanonicalPath,
    headers: &HeaderMap,
    policy: PathPolicy,
) -> Result<OriginalRequest, Refusal> {
    let refuse = |why: PathRefusal| Refusal::Request(why.into_error());
    let canonical = |raw: &str| match canonicalize(raw, policy) {
        Ok(c) if c.had_dot_segments() => Err(refuse(PathRefusal::DotSegment)),
        Ok(c) => Ok(c),
        Err(why) => Err(refuse(why)),
    };
    if request_path.had_dot_segments() {
        return Err(refuse(PathRefusal::DotSegment));
    }
    let mut paths: Vec<CanonicalPath> = Vec::new();
    let mut authority: Option<String> = None;
    // Envoy: the original path appended to the endpoint path. `/auth/` alone says `/`, but weakly:
    // nginx setups often proxy to `/auth/` and name the path in a header instead.
    let suffix = request_path
        .encoded()
        .strip_prefix(endpoint)
        .filter(|rest| rest.starts_with('/'));
    let envoy_path = suffix.is_some_and(|r| r != "/");
    if let Some(rest) = suffix.filter(|r| *r != "/") {
        paths.push(canonical(rest)?);
    }
    for name in [&X_ORIGINAL_URI, &X_FORWARDED_URI] {
        if let Some(v) = single(headers, name)? {
            let (path, target_authority) = split_target(v, name)?;
            paths.push(canonical(&path)?);
            if let Some(a) = target_authority {
                if authority.as_ref().is_some_and(|prior| *prior != a) {
                    return Err(invalid(
                        "X-Original-URI and X-Forwarded-Uri name different hosts",
                    ));
                }
                authority = Some(a);
            }
        }
    }
    if paths.is_empty() && suffix == Some("/") {
        paths.push(canonical("/")?);
    }
    if paths.windows(2).any(|w| w[0].decoded() != w[1].decoded()) {
        return Err(invalid(
            "the original request's path is named differently by the Envoy path, X-Original-URI and X-Forwarded-Uri",
        ));
    }

    let mut methods: Vec<Method> = Vec::new();
    for name in [&X_ORIGINAL_METHOD, &X_FORWARDED_METHOD] {
        if let Some(v) = single(headers, name)? {
            let m = Method::from_bytes(v.trim().as_bytes())
                .map_err(|_| invalid(&format!("{name} is not an HTTP method")))?;
            methods.push(m);
        }
    }
    if methods.windows(2).any(|w| w[0] != w[1]) {
        return Err(invalid(
            "X-Original-Method and X-Forwarded-Method name different methods",
        ));
    }
    // Envoy asks with the original method itself (and the path after the endpoint): a method
    // header there can only come from the client, so it must name the same method.
    if envoy_path && methods.iter().any(|m| m != method) {
        return Err(invalid(
            "a method header names another method than the request's own (Envoy asks with the original method)",
        ));
    }

    // A chain `a, b` names the client-facing host first.
    let named_host =
        single(headers, &X_FORWARDED_HOST)?.map(|v| v.split(',').next().unwrap_or("").trim());
    let host = match named_host {
        Some(h) => host_of(authority.as_deref(), Some(h)),
        // Without X-Forwarded-Host, `Host` names the gateway itself (nginx, Traefik) or the
        // original host (Envoy); an absolute-form original target names it better.
        None => match &authority {
            Some(a) => host_of(Some(a), None),
            None => host_of(None, single(headers, &HOST)?),
        },
    }
    .map_err(Refusal::Request)?;

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
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid(&format!("the request has several {name} headers")));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| invalid(&format!("{name} is not visible ASCII")))
}

/// The raw path (without query or fragment) of a request target (`/p?q`, or an absolute
/// `http://h/p?q`), and the absolute form's authority.
fn split_target(target: &str, name: &HeaderName) -> Result<(String, Option<String>), Refusal> {
    let target = target.trim();
    let no_fragment = target.split('#').next().unwrap_or("");
    let (path, authority) = if no_fragment.starts_with('/') {
        (no_fragment.split('?').next().unwrap_or("").to_owned(), None)
    } else {
        match no_fragment.parse::<Uri>() {
            Ok(u) if u.scheme().is_some() => (
                u.path().to_owned(),
                u.authority().map(|a| a.as_str().to_owned()),
            ),
            _ => (String::new(), None),
        }
    };
    if !path.starts_with('/') {
        return Err(invalid(&format!("{name} is not a request path")));
    }
    Ok((path, authority))
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
        let uri: Uri = uri.parse().expect("uri");
        let request_path = canonicalize(uri.path(), PathPolicy::default()).expect("canonical");
        original_request(
            "/auth",
            &Method::from_bytes(method.as_bytes()).expect("method"),
            &request_path,
            &h,
            PathPolicy::default(),
        )
        .map_err(|e| e.reason())
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
        assert_eq!(
            nginx.path.as_ref().map(CanonicalPath::decoded),
            Some("/api/items")
        );
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
        assert_eq!(
            traefik.path.as_ref().map(CanonicalPath::decoded),
            Some("/api/items")
        );
        assert_eq!(traefik.method, Method::POST);
        assert_eq!(traefik.host.as_deref(), Some("api.example.org"));
        assert!(!traefik.only_401_403);

        let envoy =
            ask("PUT", "/auth/api/items?x=1", &[("host", "api.example.org")]).expect("envoy");
        assert_eq!(
            envoy.path.as_ref().map(CanonicalPath::decoded),
            Some("/api/items")
        );
        assert_eq!(envoy.method, Method::PUT);
        assert_eq!(envoy.host.as_deref(), Some("api.example.org"));

        let root = ask("GET", "/auth/", &[]).expect("envoy root");
        assert_eq!(root.path.as_ref().map(CanonicalPath::decoded), Some("/"));
        let unknown = ask("GET", "/auth", &[]).expect("nothing said");
        assert_eq!(unknown.path, None);
        let absolute = ask("GET", "/auth/", &[("x-original-uri", "http://h/x?y")]).expect("abs");
        assert_eq!(
            absolute.path.as_ref().map(CanonicalPath::decoded),
            Some("/x")
        );
        assert_eq!(absolute.host.as_deref(), Some("h"));
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
        assert_eq!(ok.path.as_ref().map(CanonicalPath::decoded), Some("/a"));
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

    #[test]
    fn original_paths_are_canonical_like_nginx_uri() {
        for (raw, want) in [
            ("/api//admin/users", "/api/admin/users"),
            ("/api/%61dmin/users", "/api/admin/users"),
            ("http://host/api/%70ublic/x", "/api/public/x"),
        ] {
            let got = ask("GET", "/auth", &[("x-original-uri", raw)]).expect(raw);
            assert_eq!(
                got.path.as_ref().map(CanonicalPath::decoded),
                Some(want),
                "{raw}"
            );
        }
        // Dot segments reach the upstream as sent, so they are refused rather than resolved.
        for raw in [
            "/api/public/../admin/users",
            "/api/public/%2e%2e/admin/users",
            "/api/public/x%3f/../../admin/users",
            "/docs/../api/admin/users",
            "http://host/api/public/../admin/users",
            "/api/admin/../public/items",
            "/./api",
        ] {
            let err = ask("GET", "/auth", &[("x-original-uri", raw)]).expect_err(raw);
            assert!(err.contains("`.` or `..`"), "{raw}: {err}");
        }
        let envoy = ask("GET", "/auth/api/admin/../public", &[]).expect_err("envoy dots");
        // Envoy's own method wins; a client's method header cannot replace it.
        ask(
            "DELETE",
            "/auth/api/items/7",
            &[("x-forwarded-method", "GET")],
        )
        .expect_err("a client method header under Envoy");
        ask(
            "DELETE",
            "/auth/api/items/7",
            &[("x-original-method", "GET")],
        )
        .expect_err("a client method header under Envoy");
        let same = ask(
            "DELETE",
            "/auth/api/items/7",
            &[("x-forwarded-method", "DELETE")],
        )
        .expect("agreeing");
        assert_eq!(same.method, Method::DELETE);
        assert!(envoy.contains("`.` or `..`"), "{envoy}");
        for raw in [
            "/api/public/..%2fadmin",
            "/docs/x%252f..%252f..%252fapi",
            "/a/..;/b",
            "/../x",
        ] {
            let err = ask("GET", "/auth", &[("x-original-uri", raw)]).expect_err(raw);
            assert!(err.contains("path"), "{raw}: {err}");
        }
    }

    #[test]
    fn one_original_host() {
        let h = ask(
            "GET",
            "/auth",
            &[
                ("x-original-uri", "http://admin.example.org/x"),
                ("host", "127.0.0.1:8800"),
            ],
        )
        .expect("absolute names the host");
        assert_eq!(h.host.as_deref(), Some("admin.example.org"));
        ask(
            "GET",
            "/auth",
            &[
                ("x-original-uri", "http://admin.example.org/x"),
                ("x-forwarded-host", "api.example.org"),
            ],
        )
        .expect_err("authority and X-Forwarded-Host disagree");
        ask(
            "GET",
            "/auth",
            &[("x-forwarded-host", "x@admin.example.org")],
        )
        .expect_err("userinfo");
    }
}
