//! The configuration schema of the agent, its profiles and the gateway (the file's root is
//! [`Config`](crate::Config), in `config.rs`). Every struct rejects unknown keys.

use serde::Deserialize;
use tw_core::Error;
use tw_verify::VerifierSettings;

pub use tw_agent::settings::{
    AgentConfig, CircuitBreakerConfig, DEFAULT_CALLER_KEY_HEADER, FileSinkConfig, ListenerAccess,
    ProxyConfig, RateLimitConfig, RouteConfig, SinkFormat, check_listener_access, parse_mode,
};
pub use tw_broker::{CustomLoginConfig, GrantType, ProfileConfig, TimingConfig};
pub use tw_gateway::{
    ConnectionsConfig, GATEWAY_PROBE_PATHS, GatewayRouteConfig, IdentityHeaders, PathsConfig,
};
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

impl GatewayConfig {
    /// What the admin API takes: `[gateway.admin]` with the gateway's `[gateway.authz]`.
    pub fn admin_settings(&self) -> tw_admin::AdminConfig {
        tw_admin::AdminConfig {
            roles: self.admin.roles.clone(),
            path_prefix: self.admin.path_prefix.clone(),
            authz: self.authz.clone().unwrap_or_default(),
            ..tw_admin::AdminConfig::default()
        }
    }

    /// What the gateway takes from this section.
    pub fn gateway_settings(&self) -> tw_gateway::GatewaySettings {
        tw_gateway::GatewaySettings {
            listen: self.listen.clone(),
            routes: self.routes.clone(),
            exempt_paths: self.exempt_paths.clone(),
            forward_auth_path: self.forward_auth_path.clone(),
            identity_headers: self.identity_headers.clone(),
            paths: self.paths,
            connections: self.connections,
            keep_method_override: self.keep_method_override,
            strip_headers: self.strip_headers.clone(),
            authz: self.authz.clone(),
            verifier: self.verifier_settings(),
        }
    }

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
