//! What the verifier takes: the trusted issuers and its limits. The gateway's `[gateway]` and the
//! vault's `[vault.callers]` sections both carry a list of [`IssuerConfig`]; the configuration
//! front end turns either into [`VerifierSettings`].

use serde::Deserialize;
use std::time::Duration;
use tw_core::{SecretRef, SettingsProblem};
use url::Url;

/// Largest accepted token by default (16 KiB).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Verified-token cache entries by default.
pub const DEFAULT_VERIFIED_CACHE_ENTRIES: u64 = 10_000;
/// 16 MiB: a verified Keycloak access token of ~1.3 KB holds ~9 KB of claims in memory, so about
/// 1,900 such tokens (more for smaller tokens; the entry cap applies too).
pub const DEFAULT_VERIFIED_CACHE_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Algorithms a verifier may accept: asymmetric only (HS* with published keys is the classic
/// key-confusion attack; `none` is never a signature).
pub const ACCEPTABLE_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Everything [`Verifier::new`](crate::Verifier::new) takes.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// Where these settings sit in the configuration (`gateway`, `vault.callers`), for the keys
    /// named in error messages.
    pub config_key: String,
    pub issuers: Vec<IssuerConfig>,
    pub max_token_bytes: usize,
    /// 0 (or a zero `verified_cache_max_bytes`): no cache.
    pub verified_cache_entries: u64,
    pub verified_cache_max_bytes: u64,
}

impl VerifierSettings {
    /// These issuers with the default limits.
    pub fn new(config_key: impl Into<String>, issuers: Vec<IssuerConfig>) -> Self {
        Self {
            config_key: config_key.into(),
            issuers,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            verified_cache_entries: DEFAULT_VERIFIED_CACHE_ENTRIES,
            verified_cache_max_bytes: DEFAULT_VERIFIED_CACHE_MAX_BYTES,
        }
    }
}

/// Checks a list of trusted issuers; `key` is the list's key in messages
/// (`gateway.issuers`). The configuration front end and [`Verifier::new`](crate::Verifier::new)
/// both run it.
pub fn check_issuers(issuers: &[IssuerConfig], key: &str) -> Result<(), SettingsProblem> {
    let fail = |key: String, message: &str| SettingsProblem {
        key,
        message: message.to_owned(),
    };
    if issuers.is_empty() {
        return Err(fail(key.into(), "at least one trusted issuer is required"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, iss) in issuers.iter().enumerate() {
        let k = |field: &str| format!("{key}[{i}].{field}");
        if iss.issuer.is_empty() {
            return Err(fail(k("issuer"), "must not be empty"));
        }
        if !seen.insert(iss.issuer.as_str()) {
            return Err(fail(
                k("issuer"),
                &format!("`{}` is listed twice", iss.issuer),
            ));
        }
        let discoverable = tw_idp::discovery::discovery_url(&iss.issuer).is_ok();
        match &iss.jwks_url {
            Some(u) if !matches!(u.scheme(), "http" | "https") => {
                return Err(fail(k("jwks_url"), "must be an http(s) URL"));
            }
            None if !discoverable => {
                return Err(fail(
                    k("jwks_url"),
                    "required when `issuer` is not a URL (no discovery possible)",
                ));
            }
            _ => {}
        }
        if iss.algorithms.is_empty() {
            return Err(fail(k("algorithms"), "list at least one algorithm"));
        }
        for alg in &iss.algorithms {
            if !ACCEPTABLE_ALGORITHMS.contains(&alg.as_str())
                || crate::Alg::from_name(alg).is_none()
            {
                return Err(fail(
                    k("algorithms"),
                    &format!(
                        "`{alg}` is not accepted; choose from {}",
                        ACCEPTABLE_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if iss.jwks_refetch_cooldown.is_zero() || iss.jwks_ttl.is_zero() {
            return Err(fail(
                k("jwks_ttl"),
                "jwks_ttl and jwks_refetch_cooldown must be positive",
            ));
        }
        // The cap of a cooldown that starts at 1 s: below it, made-up kids would cost more than
        // one JWKS fetch per second.
        if iss.jwks_refetch_cooldown < Duration::from_secs(1) {
            return Err(fail(
                k("jwks_refetch_cooldown"),
                "must be at least 1s (it caps a wait that starts at 1 s)",
            ));
        }
        if let Some(intro) = &iss.introspection {
            match &intro.url {
                Some(u) if !matches!(u.scheme(), "http" | "https") => {
                    return Err(fail(k("introspection.url"), "must be an http(s) URL"));
                }
                None if !discoverable => {
                    return Err(fail(
                        k("introspection.url"),
                        "required when `issuer` is not a URL (no discovery possible)",
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// One trusted issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value. Discovery (`/.well-known/openid-configuration`) finds the JWKS and
    /// introspection endpoints unless given below.
    pub issuer: String,
    pub jwks_url: Option<Url>,
    /// Accepted `aud` values (any one must be present). Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted signature algorithms.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Accepted `azp` (authorized party = client id). Empty: any.
    #[serde(default)]
    pub allowed_azp: Vec<String>,
    #[serde(default = "default_leeway", with = "tw_core::duration")]
    pub leeway: Duration,
    #[serde(default)]
    pub token_type: TokenTypeMode,
    /// How long fetched keys are trusted before a background refresh replaces them.
    #[serde(default = "default_jwks_ttl", with = "tw_core::duration")]
    pub jwks_ttl: Duration,
    /// The cap of the adaptive wait between JWKS refetches for unknown `kid`s (it starts at 1 s and
    /// doubles while they find no new key), and how long a kid confirmed unknown is remembered.
    #[serde(default = "default_jwks_cooldown", with = "tw_core::duration")]
    pub jwks_refetch_cooldown: Duration,
    /// RFC 7662 introspection for opaque tokens (and for JWTs on routes that demand it).
    pub introspection: Option<IntrospectionConfig>,
}

impl IssuerConfig {
    /// This issuer with every other setting at its default (discovery finds the keys).
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_url: None,
            audiences: Vec::new(),
            algorithms: default_algorithms(),
            allowed_azp: Vec::new(),
            leeway: default_leeway(),
            token_type: TokenTypeMode::default(),
            jwks_ttl: default_jwks_ttl(),
            jwks_refetch_cooldown: default_jwks_cooldown(),
            introspection: None,
        }
    }
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_jwks_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_jwks_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// Which token types are accepted.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenTypeMode {
    /// Keycloak's access tokens: header `typ` `JWT` (or `at+jwt`), payload `typ` `Bearer` when
    /// present (ID and refresh tokens are refused).
    #[default]
    Keycloak,
    /// RFC 9068: header `typ` must be `at+jwt`.
    Strict,
    /// No check.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Defaults to the discovery document's `introspection_endpoint`.
    pub url: Option<Url>,
    pub client_id: String,
    pub client_secret: SecretRef,
    /// Longest time a positive answer is cached (never past the token's `exp`).
    #[serde(default = "default_introspection_ttl", with = "tw_core::duration")]
    pub cache_ttl: Duration,
    /// How long an inactive answer is cached.
    #[serde(default = "default_negative_ttl", with = "tw_core::duration")]
    pub negative_cache_ttl: Duration,
}

fn default_introspection_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(10)
}
