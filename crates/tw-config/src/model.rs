//! The configuration schema of the agent, its profiles and the gateway (the file's root is
//! [`Config`](crate::Config), in `config.rs`). Every struct rejects unknown keys.

use serde::Deserialize;
use std::time::Duration;
use tw_core::Error;
use tw_core::SecretRef;
use tw_verify::VerifierSettings;
use url::Url;

pub use tw_agent::settings::{
    AgentConfig, CircuitBreakerConfig, DEFAULT_CALLER_KEY_HEADER, FileSinkConfig, ListenerAccess,
    ProxyConfig, RateLimitConfig, RouteConfig, SinkFormat, check_listener_access, parse_mode,
};
pub use tw_broker::{CustomLoginConfig, GrantType, ProfileConfig, TimingConfig};
pub use tw_idp::{AuthMethod, SigningAlg};
pub use tw_verify::{
    ACCEPTABLE_ALGORITHMS, DEFAULT_VERIFIED_CACHE_MAX_BYTES, IntrospectionConfig, IssuerConfig,
    TokenTypeMode,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directive, e.g. `info` or `info,tw_broker=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `tokenwarden gateway`: bearer-token verification as a reverse proxy and/or forward-auth check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens (proxy routes, the forward-auth endpoint and probes).
    #[serde(default = "default_gateway_listen")]
    pub listen: String,
    /// Trusted token issuers. At least one.
    pub issuers: Vec<IssuerConfig>,
    /// Reverse-proxy routes (host and/or path prefix to upstream). Empty: forward-auth only.
    #[serde(default)]
    pub routes: Vec<GatewayRouteConfig>,
    /// Paths served without a token (exact, or a prefix when ending in `*`).
    #[serde(default)]
    pub exempt_paths: Vec<String>,
    /// Path of the forward-auth endpoint (nginx auth_request, Traefik forwardAuth, Envoy ext_authz).
    #[serde(default = "default_forward_auth_path")]
    pub forward_auth_path: String,
    /// Largest accepted token, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified-token cache entries (keyed by SHA-256 of the token, never past `exp`).
    #[serde(default = "default_verified_cache_entries")]
    pub verified_cache_entries: u64,
    /// Bytes the verified-token cache may hold (each entry weighed by its claims' heap size),
    /// alongside the entry cap; 0 = no cache.
    #[serde(default = "default_verified_cache_max_bytes")]
    pub verified_cache_max_bytes: u64,
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// `[gateway.paths]`: how request paths are made canonical and compared.
    #[serde(default)]
    pub paths: PathsConfig,
    /// `[gateway.connections]`: timeouts and caps that keep slow or idle clients from holding
    /// the listener.
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// Pass `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override` on to the upstream.
    /// Off (default): they are removed in proxy mode and refused in forward-auth mode, so a
    /// GET-only rule cannot be turned into a DELETE by an upstream that honours them. On: the
    /// overriding method must be allowed by the rules too.
    #[serde(default)]
    pub keep_method_override: bool,
    /// More request headers only the gateway's side may set (e.g. a header your API trusts for
    /// the tenant): removed in proxy mode, refused in forward-auth mode, with their `_`
    /// look-alikes. `Forwarded`, `X-Original-URL`, `X-Rewrite-URL`, `X-Forwarded-Prefix`,
    /// `X-Real-IP`, `Remote-User` and the like are always removed.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Authorization after verification (route rules, role map, registry). Absent: every
    /// verified token is allowed.
    pub authz: Option<tw_authz::settings::AuthzConfig>,
    /// `[gateway.admin]`: the admin API (accounts, roles, audit) on this listener. Off by default.
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
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

fn default_gateway_listen() -> String {
    "127.0.0.1:8800".into()
}
fn default_forward_auth_path() -> String {
    "/auth".into()
}
pub(crate) fn default_max_token_bytes() -> usize {
    tw_verify::DEFAULT_MAX_TOKEN_BYTES
}
fn default_verified_cache_entries() -> u64 {
    tw_verify::DEFAULT_VERIFIED_CACHE_ENTRIES
}
fn default_verified_cache_max_bytes() -> u64 {
    tw_verify::DEFAULT_VERIFIED_CACHE_MAX_BYTES
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

impl GatewayConfig {
    /// What the gateway's verifier takes from this section.
    pub fn verifier_settings(&self) -> VerifierSettings {
        VerifierSettings {
            max_token_bytes: self.max_token_bytes,
            verified_cache_entries: self.verified_cache_entries,
            verified_cache_max_bytes: self.verified_cache_max_bytes,
            ..VerifierSettings::new("gateway", self.issuers.clone())
        }
    }
}

/// Checks a list of trusted issuers (`[[gateway.issuers]]`, `[[vault.callers.issuers]]`); `key`
/// is the list's key in error messages.
pub(crate) fn validate_issuers(
    issuers: &[IssuerConfig],
    key: &str,
    fail: &dyn Fn(String, String) -> Error,
) -> Result<(), Error> {
    tw_verify::check_issuers(issuers, key).map_err(|p| fail(p.key, p.message))
}

fn default_true() -> bool {
    true
}

fn default_route_timeout() -> Duration {
    Duration::from_secs(30)
}
