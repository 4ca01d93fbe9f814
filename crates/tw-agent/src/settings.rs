//! What the agent takes (`[agent]`): the token API's listener, the file sinks and the injecting
//! proxy; and the rules every agent listener obeys.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tw_core::{Invalid, ListenAddr, SecretRef, SettingsProblem};
use url::Url;

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

/// The rules for an agent listener (token API or proxy): a parseable address; an address other
/// hosts can reach only with `allow_remote = true`; `allow_remote` only with a `caller_key`; a
/// usable header name. Returns the address to bind.
pub fn check_listener_access(access: &ListenerAccess<'_>) -> Result<ListenAddr, SettingsProblem> {
    let problem = |field: &str, message: String| SettingsProblem {
        key: access.key(field),
        message,
    };
    let addr = ListenAddr::parse(access.listen).map_err(|m| problem("listen", m.into()))?;
    let header = access.caller_key_header;
    check_caller_key_header(header).map_err(|m| problem("caller_key_header", m.into()))?;
    let section = access.section;
    let example_key = "{ file = \"/run/secrets/tokenwarden-caller-key\" }";
    if let ListenAddr::Tcp(tcp) = &addr
        && !addr.is_local()
        && !access.allow_remote
    {
        return Err(problem(
            "listen",
            format!(
                "`{tcp}` is reachable from other hosts, and whoever reaches {} gets the use of the agent's tokens. Listen on loopback (127.0.0.1:{}) or on a unix socket (e.g. unix:/run/tokenwarden/{}.sock in a volume shared with the app); or, to serve other containers or hosts, set {section}.allow_remote = true and {section}.caller_key = {example_key}, a shared secret every caller must then send in the {header} header",
                access.what,
                tcp.port(),
                section.rsplit('.').next().unwrap_or(section),
            ),
        ));
    }
    if access.allow_remote && access.caller_key.is_none() {
        return Err(problem(
            "caller_key",
            format!(
                "required by {section}.allow_remote = true: every caller must send this shared secret in the {header} header; give it by reference, e.g. caller_key = {example_key} (generate one with `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(addr)
}

/// A header name callers can send and that no other part of the request uses.
fn check_caller_key_header(name: &str) -> Result<(), Invalid> {
    tw_http::check_custom_header(name, DEFAULT_CALLER_KEY_HEADER)
}

/// Parses an octal file mode such as `0600`.
pub fn parse_mode(s: &str) -> Result<u32, Invalid> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("`{s}` is not an octal file mode like \"0600\"").into())
}
