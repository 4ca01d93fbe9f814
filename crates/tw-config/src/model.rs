//! The configuration schema of the agent, its profiles and the gateway (the file's root is
//! [`Config`](crate::Config), in `config.rs`). Every struct rejects unknown keys.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tw_core::Error;
use tw_core::SecretRef;
use tw_verify::VerifierSettings;
use url::Url;

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

/// `tokenwarden agent`: token API, file sinks, injecting proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Local token API: `127.0.0.1:8790` or `unix:/run/tokenwarden/agent.sock`.
    #[serde(default = "default_agent_listen")]
    pub listen: String,
    /// Let other hosts (containers, pods, machines) reach the token API. Without it, a `listen`
    /// address other than loopback or a unix socket is refused. Requires `caller_key`.
    #[serde(default)]
    pub allow_remote: bool,
    /// Shared secret every caller of `/v1/token/...` must send in `caller_key_header`. Required
    /// by `allow_remote`, optional otherwise. A file reference is re-read at each request.
    pub caller_key: Option<SecretRef>,
    /// The header carrying `caller_key`.
    #[serde(default = "default_caller_key_header")]
    pub caller_key_header: String,
    #[serde(default)]
    pub sinks: Vec<FileSinkConfig>,
    pub proxy: Option<ProxyConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: default_agent_listen(),
            allow_remote: false,
            caller_key: None,
            caller_key_header: default_caller_key_header(),
            sinks: Vec::new(),
            proxy: None,
        }
    }
}

impl AgentConfig {
    /// Who may call the token API.
    pub fn api_access(&self) -> ListenerAccess<'_> {
        ListenerAccess {
            section: "agent",
            what: "the token API",
            listen: &self.listen,
            allow_remote: self.allow_remote,
            caller_key: self.caller_key.as_ref(),
            caller_key_header: &self.caller_key_header,
        }
    }
}

fn default_agent_listen() -> String {
    "127.0.0.1:8790".into()
}

/// Default header for an agent listener's `caller_key`. Not `Authorization`: on the proxy that
/// header is the upstream's, and the token API's callers should not confuse the key with a token.
pub const DEFAULT_CALLER_KEY_HEADER: &str = "X-Tokenwarden-Key";

fn default_caller_key_header() -> String {
    DEFAULT_CALLER_KEY_HEADER.into()
}

/// The settings that decide who may call one of the agent's listeners (the token API or the
/// proxy), checked by the same rules for both.
#[derive(Debug, Clone, Copy)]
pub struct ListenerAccess<'a> {
    /// The config section, e.g. `agent` or `agent.proxy`.
    pub section: &'static str,
    /// The listener in words, for messages: "the token API", "the proxy".
    pub what: &'static str,
    pub listen: &'a str,
    pub allow_remote: bool,
    pub caller_key: Option<&'a SecretRef>,
    pub caller_key_header: &'a str,
}

impl ListenerAccess<'_> {
    /// The full config key of one of the listener's fields, e.g. `agent.proxy.listen`.
    pub fn key(&self, field: &str) -> String {
        format!("{}.{field}", self.section)
    }
}

/// Writes a profile's current token to a file, atomically, whenever it changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub profile: String,
    pub path: PathBuf,
    #[serde(default)]
    pub format: SinkFormat,
    /// Octal file mode, as a string.
    #[serde(default = "default_sink_mode")]
    pub mode: String,
    /// Program and arguments run after each write (e.g. to signal a consumer to re-read).
    pub command: Option<Vec<String>>,
    #[serde(default = "default_command_timeout", with = "tw_core::duration")]
    pub command_timeout: Duration,
}

fn default_sink_mode() -> String {
    "0600".into()
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// The bare access token, no newline.
    #[default]
    Raw,
    /// `{"access_token":..,"token_type":..,"expires_at":..}`.
    Json,
}

/// Reverse proxy that injects `Authorization: Bearer <token>` on the way to upstreams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default = "default_proxy_listen")]
    pub listen: String,
    /// Let other hosts reach the proxy (as `agent.allow_remote` for the token API). Requires
    /// `caller_key`.
    #[serde(default)]
    pub allow_remote: bool,
    /// Shared secret every proxy caller must send in `caller_key_header`; the header is removed
    /// before the request goes upstream. Required by `allow_remote`, optional otherwise.
    pub caller_key: Option<SecretRef>,
    /// The header carrying `caller_key`; removed from every proxied request, key or not.
    #[serde(default = "default_caller_key_header")]
    pub caller_key_header: String,
    pub routes: Vec<RouteConfig>,
}

impl ProxyConfig {
    /// Who may call the proxy.
    pub fn access(&self) -> ListenerAccess<'_> {
        ListenerAccess {
            section: "agent.proxy",
            what: "the proxy",
            listen: &self.listen,
            allow_remote: self.allow_remote,
            caller_key: self.caller_key.as_ref(),
            caller_key_header: &self.caller_key_header,
        }
    }
}

fn default_proxy_listen() -> String {
    "127.0.0.1:8791".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix this route serves, e.g. `/smartem/`. Longest prefix wins.
    pub prefix: String,
    /// Base URL requests are forwarded to.
    pub upstream: Url,
    /// Token profile injected into requests on this route.
    pub profile: String,
    /// Remove `prefix` from the path before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Whole-request timeout towards the upstream (until response headers).
    #[serde(default = "default_route_timeout", with = "tw_core::duration")]
    pub timeout: Duration,
    /// Extra attempts for idempotent requests when the upstream connection fails.
    #[serde(default = "default_connect_retries")]
    pub connect_retries: u32,
    /// Largest request body kept in memory so the request can be replayed after a 401;
    /// larger (or unknown-length) bodies are streamed and never retried.
    #[serde(default = "default_replay_body_limit")]
    pub max_replay_body_bytes: u64,
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
}

fn default_route_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_retries() -> u32 {
    2
}
fn default_replay_body_limit() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: u32,
    /// Requests allowed in a burst; defaults to `per_second`.
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures (connection errors, timeouts, 502/503/504) that open the circuit.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long the circuit stays open before one trial request is let through.
    #[serde(default = "default_open_for", with = "tw_core::duration")]
    pub open_for: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            open_for: default_open_for(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
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
    pub authz: Option<crate::authz::AuthzConfig>,
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
