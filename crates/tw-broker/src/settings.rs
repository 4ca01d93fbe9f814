//! What a profile takes: where and how to get one kind of token, and when to refresh it. The
//! configuration's `[profiles.NAME]` sections are these.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tw_core::SecretRef;
use tw_idp::{AuthMethod, SigningAlg};
use url::Url;

/// How to obtain one kind of token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// OIDC issuer; the token endpoint is found by discovery.
    pub issuer: Option<Url>,
    /// Explicit token endpoint (skips discovery).
    pub token_url: Option<Url>,
    pub client_id: Option<String>,
    #[serde(default)]
    pub auth_method: AuthMethod,
    pub client_secret: Option<SecretRef>,
    /// PEM private key for `private_key_jwt`.
    pub private_key: Option<SecretRef>,
    #[serde(default)]
    pub signing_alg: SigningAlg,
    /// `kid` put in the client assertion header.
    pub key_id: Option<String>,
    #[serde(default)]
    pub grant: GrantType,
    /// Initial refresh (or offline) token for `grant = "refresh_token"`.
    pub refresh_token: Option<SecretRef>,
    /// File where rotated refresh tokens are persisted (0600), read back at start in preference
    /// to `refresh_token`, so a restart never reuses a spent one.
    pub refresh_token_state_file: Option<PathBuf>,
    pub scope: Option<String>,
    /// Sent as the `audience` form field (Keycloak, Auth0 style).
    pub audience: Option<String>,
    /// RFC 8707 `resource` form field.
    pub resource: Option<String>,
    /// More form fields sent with every token request.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// A non-OAuth login endpoint instead of a token endpoint.
    pub custom: Option<CustomLoginConfig>,
    /// Fetch at start and keep fresh in the background (`/readyz` waits for eager profiles).
    /// Lazy profiles fetch on first use, then stay fresh the same way.
    #[serde(default = "default_true")]
    pub eager: bool,
    #[serde(default)]
    pub timing: TimingConfig,
}

fn default_true() -> bool {
    true
}

/// When to refresh and how long to wait. Defaults suit Keycloak's 300 s tokens.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimingConfig {
    /// Refresh once this fraction of the lifetime has passed.
    #[serde(default = "default_refresh_fraction")]
    pub refresh_fraction: f64,
    /// Random spread applied to the refresh point, as a fraction of the lifetime.
    #[serde(default = "default_jitter_fraction")]
    pub jitter_fraction: f64,
    /// Lifetime assumed when the IdP sends no `expires_in`.
    #[serde(default = "default_lifetime", with = "tw_core::duration")]
    pub default_lifetime: Duration,
    /// How long a caller waits for an in-flight fetch when no usable token is cached.
    #[serde(default = "default_wait_timeout", with = "tw_core::duration")]
    pub wait_timeout: Duration,
    /// Timeout of one request to the IdP.
    #[serde(default = "default_request_timeout", with = "tw_core::duration")]
    pub request_timeout: Duration,
    /// First delay after a transient failure; doubles up to `backoff_max`.
    #[serde(default = "default_backoff_initial", with = "tw_core::duration")]
    pub backoff_initial: Duration,
    #[serde(default = "default_backoff_max", with = "tw_core::duration")]
    pub backoff_max: Duration,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            refresh_fraction: default_refresh_fraction(),
            jitter_fraction: default_jitter_fraction(),
            default_lifetime: default_lifetime(),
            wait_timeout: default_wait_timeout(),
            request_timeout: default_request_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
        }
    }
}

fn default_refresh_fraction() -> f64 {
    0.75
}
fn default_jitter_fraction() -> f64 {
    0.05
}
fn default_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_wait_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    #[default]
    ClientCredentials,
    RefreshToken,
}

/// A non-OAuth login endpoint (e.g. `POST {"email":..,"password":..}` → `{"token":..}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomLoginConfig {
    pub url: Url,
    /// Plain JSON body fields.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// JSON body fields whose values are secrets.
    #[serde(default)]
    pub secret_fields: BTreeMap<String, SecretRef>,
    /// Extra request headers (not secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON pointer (RFC 6901) to the token in the response.
    #[serde(default = "default_token_pointer")]
    pub token_pointer: String,
    /// JSON pointer to the lifetime in seconds (a number or a numeric string).
    ///
    /// The lifetime comes from the first of: this pointer, `expires_at_pointer`, the token's own
    /// `exp` when it is a JWT (read, not verified), then `timing.default_lifetime`.
    pub expires_in_pointer: Option<String>,
    /// JSON pointer to the absolute expiry: epoch seconds (a number or numeric string; values
    /// too large for seconds are read as milliseconds) or an RFC 3339 time with `Z` or an offset.
    pub expires_at_pointer: Option<String>,
    /// JSON pointer to the field that tells an error answer, for portals that answer a refused
    /// login with a 2xx status (e.g. "/status"). Needs `error_values`.
    pub error_pointer: Option<String>,
    /// Values at `error_pointer` that mean the login failed (e.g. ["error", "failed"]): the answer
    /// is then a permanent rejection (`custom_login_rejected`), not retried. Strings compare
    /// case-insensitively; numbers and booleans by value or by their text.
    #[serde(default)]
    pub error_values: Vec<serde_json::Value>,
    /// JSON pointer to the portal's explanation of an error answer (e.g. "/message"), shown in
    /// the error without control characters and cut at 200 characters.
    pub error_message_pointer: Option<String>,
    /// Token type reported to callers.
    #[serde(default = "default_token_type")]
    pub token_type: String,
}

fn default_token_pointer() -> String {
    "/access_token".into()
}
fn default_token_type() -> String {
    "Bearer".into()
}
