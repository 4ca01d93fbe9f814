//! What the gateway takes: its listener, routes, exempt paths, identity headers, path and
//! connection policies, and the verifier and authorizer settings it checks them against. The
//! configuration's `[gateway]` section is turned into [`GatewaySettings`] by the front end.

use serde::Deserialize;
use std::time::Duration;
use tw_authz::settings::{AuthzConfig, check_canonical_path, is_plain_host};
use tw_core::{Invalid, ListenAddr, SettingsProblem};
use tw_verify::VerifierSettings;
use url::Url;

/// Everything [`Gateway::new`](crate::Gateway::new) takes.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: String,
    pub routes: Vec<GatewayRouteConfig>,
    pub exempt_paths: Vec<String>,
    pub forward_auth_path: String,
    pub identity_headers: IdentityHeaders,
    pub paths: PathsConfig,
    pub connections: ConnectionsConfig,
    pub keep_method_override: bool,
    pub strip_headers: Vec<String>,
    /// Absent: every verified token is allowed.
    pub authz: Option<AuthzConfig>,
    /// The verifier's settings (routes that introspect need an issuer that can).
    pub verifier: VerifierSettings,
}

fn default_true() -> bool {
    true
}

fn default_route_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `[gateway.paths]`. Every request path is decoded and resolved once (dot segments, merged
/// slashes, unreserved escapes); what upstreams resolve differently is refused with 400
/// `invalid_path` unless allowed here. See the README's "Path handling".
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Rules, exempt paths and routes match regardless of case. On by default: ASP.NET Core,
    /// IIS and Express route case-insensitively, and a case-sensitive match there lets
    /// `/API/admin` past a rule for `/api/admin`.
    #[serde(default = "default_true")]
    pub case_insensitive: bool,
    /// Let `%2F` through inside a segment (kept encoded). Safe only for upstreams that treat it as
    /// data (ASP.NET Core, Express, Go); nginx decodes it before matching locations.
    #[serde(default)]
    pub allow_encoded_slash: bool,
    /// Let `\` and `%5C` through (forwarded as `%5C`). Unsafe for IIS, which treats `\` as `/`.
    #[serde(default)]
    pub allow_backslash: bool,
    /// Let `;` through as an ordinary character. Unsafe for Tomcat, Spring and Jetty, which
    /// strip `;parameters` from segments.
    #[serde(default)]
    pub allow_semicolon: bool,
    /// Let `%25` (an encoded `%`) through, kept encoded. Unsafe for any upstream chain that
    /// decodes twice.
    #[serde(default)]
    pub allow_encoded_percent: bool,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self {
            case_insensitive: true,
            allow_encoded_slash: false,
            allow_backslash: false,
            allow_semicolon: false,
            allow_encoded_percent: false,
        }
    }
}

/// `[gateway.connections]`: limits every client connection obeys.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// A request's headers must arrive within this (slowloris protection).
    #[serde(default = "default_header_read_timeout", with = "tw_core::duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    #[serde(default = "default_idle_timeout", with = "tw_core::duration")]
    pub idle_timeout: Duration,
    /// A connection serving a request is closed when its client stops reading the response, or
    /// stops sending the request body the upstream is waiting for, for this long.
    #[serde(default = "default_stall_timeout", with = "tw_core::duration")]
    pub stall_timeout: Duration,
    /// Concurrent connections at most (lowered to fit the process's file-descriptor limit). A
    /// connection over the cap makes room by closing the oldest connection that has no request
    /// in progress; when all are busy, a few more are admitted for `/healthz` and `/readyz`
    /// only, and anything else is answered 503 and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests served on one connection before it is closed (`Connection: close`).
    #[serde(default = "default_max_requests_per_connection")]
    pub max_requests_per_connection: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            stall_timeout: default_stall_timeout(),
            max_connections: default_max_connections(),
            max_requests_per_connection: default_max_requests_per_connection(),
        }
    }
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_requests_per_connection() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRouteConfig {
    /// Match only this `Host` (without port). Absent: any host.
    pub host: Option<String>,
    #[serde(default = "default_route_prefix")]
    pub prefix: String,
    pub upstream: Url,
    #[serde(default)]
    pub strip_prefix: bool,
    /// Check every token on this route by introspection, even valid JWTs (revocation).
    #[serde(default)]
    pub introspect: bool,
    #[serde(default = "default_route_timeout", with = "tw_core::duration")]
    pub timeout: Duration,
}

fn default_route_prefix() -> String {
    "/".into()
}

/// Names of the identity headers sent upstream (incoming ones with these names are removed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    #[serde(default = "h_subject")]
    pub subject: String,
    #[serde(default = "h_client_id")]
    pub client_id: String,
    #[serde(default = "h_service_account")]
    pub service_account: String,
    #[serde(default = "h_scopes")]
    pub scopes: String,
    #[serde(default = "h_issuer")]
    pub issuer: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            subject: h_subject(),
            client_id: h_client_id(),
            service_account: h_service_account(),
            scopes: h_scopes(),
            issuer: h_issuer(),
        }
    }
}

fn h_subject() -> String {
    "X-Auth-Subject".into()
}
fn h_client_id() -> String {
    "X-Auth-Client-Id".into()
}
fn h_service_account() -> String {
    "X-Auth-Service-Account".into()
}
fn h_scopes() -> String {
    "X-Auth-Scopes".into()
}
fn h_issuer() -> String {
    "X-Auth-Issuer".into()
}

/// Checks a gateway's settings: what types alone cannot express. Each problem names its key.
pub fn check_gateway(gw: &GatewaySettings) -> Result<(), SettingsProblem> {
    let fail = |key: String, message: String| SettingsProblem { key, message };
    ListenAddr::parse(&gw.listen).map_err(|m| fail("gateway.listen".into(), m.into()))?;
    tw_verify::check_issuers(&gw.verifier.issuers, "gateway.issuers")?;
    check_forward_auth_path(&gw.forward_auth_path)
        .map_err(|m| fail("gateway.forward_auth_path".into(), m.into()))?;
    for (i, p) in gw.exempt_paths.iter().enumerate() {
        check_exempt_path(p).map_err(|m| fail(format!("gateway.exempt_paths[{i}]"), m.into()))?;
    }
    check_identity_headers(&gw.identity_headers)?;
    for (i, name) in gw.strip_headers.iter().enumerate() {
        tw_http::check_custom_header(name, "X-Tenant-Id")
            .map_err(|m| fail(format!("gateway.strip_headers[{i}]"), m.into()))?;
    }
    if let Some(authz) = &gw.authz {
        let h = &gw.identity_headers;
        let names = [
            &h.subject,
            &h.client_id,
            &h.service_account,
            &h.scopes,
            &h.issuer,
        ]
        .map(|n| n.to_ascii_lowercase());
        let issuers: Vec<&str> = gw
            .verifier
            .issuers
            .iter()
            .map(|i| i.issuer.as_str())
            .collect();
        tw_authz::settings::check_authz(authz, &names, &issuers)?;
    }
    let mut routes_seen = std::collections::HashSet::new();
    for (i, r) in gw.routes.iter().enumerate() {
        let k = |field: &str| format!("gateway.routes[{i}].{field}");
        if !r.prefix.starts_with('/') {
            return Err(fail(k("prefix"), "must start with `/`".into()));
        }
        check_canonical_path(&r.prefix).map_err(|m| fail(k("prefix"), m.into()))?;
        if let Some(host) = &r.host
            && !is_plain_host(host)
        {
            return Err(fail(
                k("host"),
                "a host name without scheme, port or path, e.g. \"api.example.org\"".into(),
            ));
        }
        let host = r.host.as_deref().map(str::to_ascii_lowercase);
        if !routes_seen.insert((host, r.prefix.trim_end_matches('/').to_owned())) {
            return Err(fail(
                k("prefix"),
                format!(
                    "`{}` is used by an earlier route for the same host",
                    r.prefix
                ),
            ));
        }
        if !matches!(r.upstream.scheme(), "http" | "https") {
            return Err(fail(
                k("upstream"),
                "must be an http:// or https:// URL".into(),
            ));
        }
        if r.introspect
            && gw
                .verifier
                .issuers
                .iter()
                .all(|iss| iss.introspection.is_none())
        {
            return Err(fail(
                k("introspect"),
                "no issuer has an `introspection` section".into(),
            ));
        }
    }
    let c = &gw.connections;
    for (key, d) in [
        ("header_read_timeout", c.header_read_timeout),
        ("idle_timeout", c.idle_timeout),
        ("stall_timeout", c.stall_timeout),
    ] {
        if d.is_zero() {
            return Err(fail(
                format!("gateway.connections.{key}"),
                "must be more than 0".into(),
            ));
        }
    }
    if c.max_connections == 0 {
        return Err(fail(
            "gateway.connections.max_connections".into(),
            "must be at least 1".into(),
        ));
    }
    if c.max_requests_per_connection == 0 {
        return Err(fail(
            "gateway.connections.max_requests_per_connection".into(),
            "must be at least 1".into(),
        ));
    }
    if gw.verifier.max_token_bytes < 256 {
        return Err(fail(
            "gateway.max_token_bytes".into(),
            "must be at least 256".into(),
        ));
    }
    Ok(())
}

/// Paths the gateway serves itself, whatever the routes say.
pub const GATEWAY_PROBE_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// `/auth`-like: a plain path (no trailing `/`), not `/`, not a probe path.
fn check_forward_auth_path(p: &str) -> Result<(), Invalid> {
    let plain = p.len() > 1
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c));
    if !plain {
        return Err(format!(
            "`{p}` must be a plain path such as \"/auth\": starting with `/`, not `/` alone, no trailing `/`, letters, digits and `-._~` only"
        ).into());
    }
    for probe in GATEWAY_PROBE_PATHS {
        let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if under(p, probe) || under(probe, p) {
            return Err(format!("`{p}` collides with the probe path {probe}").into());
        }
    }
    Ok(())
}

/// Exact paths, or prefixes ending in `*` (the only place a `*` may be).
fn check_exempt_path(p: &str) -> Result<(), Invalid> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/`").into());
    }
    if p.contains(['?', '#']) {
        return Err(format!("`{p}`: give the path only, without `?` or `#`").into());
    }
    if p.trim_end_matches('*').contains('*') || p.ends_with("**") {
        return Err(format!(
            "`{p}`: `*` is allowed only once, at the end (a prefix), e.g. \"/docs/*\""
        )
        .into());
    }
    check_canonical_path(p.trim_end_matches('*'))
}

fn check_identity_headers(h: &IdentityHeaders) -> Result<(), SettingsProblem> {
    let fail = |key: String, message: String| SettingsProblem { key, message };
    let mut seen = std::collections::HashSet::new();
    for (field, name) in [
        ("subject", &h.subject),
        ("client_id", &h.client_id),
        ("service_account", &h.service_account),
        ("scopes", &h.scopes),
        ("issuer", &h.issuer),
    ] {
        let key = format!("gateway.identity_headers.{field}");
        tw_http::check_custom_header(name, "X-Auth-Subject")
            .map_err(|m| fail(key.clone(), m.into()))?;
        // Servers that read `_` as `-` see these as one name: they must differ after that too.
        let lower = name.to_ascii_lowercase().replace('_', "-");
        if !seen.insert(lower) {
            return Err(fail(
                key,
                format!("`{name}` is already used by another identity header"),
            ));
        }
    }
    Ok(())
}
