//! `[vault]`: `tokenwarden vault` keeps users' refresh and offline tokens encrypted and mints
//! access tokens from them on demand.
//!
//! ```toml
//! [vault]
//! listen = "127.0.0.1:8820"
//! public_url = "https://vault.example.org"       # the IdP redirects browsers back here
//!
//! [vault.idp]                                     # the vault's own confidential client
//! issuer = "https://keycloak.example.org/realms/dls"
//! client_id = "token-vault"
//! client_secret = { env = "TW_VAULT_CLIENT_SECRET" }
//!
//! [vault.encryption]
//! active_key = "2026-01"
//! keys = { "2026-01" = { env = "TW_VAULT_KEY_2026_01" } }
//!
//! [[vault.callers.issuers]]                       # exactly like [[gateway.issuers]]
//! issuer = "https://keycloak.example.org/realms/dls"
//! ```
//!
//! Storage is the top-level `[storage]` (SQLite by default, or PostgreSQL).

use crate::model::{AuthMethod, IssuerConfig, validate_issuers};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tw_authz::settings::{
    AuthzConfig, PermissionSourceKind, PrincipalRateLimit, check_permission_code,
};
use tw_core::Error;
use tw_core::ListenAddr;
use tw_core::SecretRef;
use tw_vault::{PERMISSIONS as VAULT_PERMISSIONS, RedirectPolicy};
use tw_verify::VerifierSettings;
use url::Url;

/// Where the IdP sends the browser back after consent, unless configured otherwise.
pub const DEFAULT_CALLBACK_PATH: &str = "/v1/offline-token/callback";

/// `[vault]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `127.0.0.1:8820` or `unix:/run/tokenwarden/vault.sock`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The vault's base URL as a browser reaches it (behind a reverse proxy, the public one).
    /// The consent redirect URI is this plus `consent.callback_path`; register it at the IdP.
    pub public_url: Url,
    /// The vault's own client at the IdP (authorization code, refresh, revocation).
    pub idp: VaultIdpConfig,
    #[serde(default)]
    pub consent: ConsentConfig,
    /// AES-256-GCM keys that seal the stored tokens.
    pub encryption: EncryptionConfig,
    /// Who may call the vault: bearer tokens verified like the gateway's, permissions by role.
    pub callers: CallersConfig,
    #[serde(default)]
    pub mint: MintConfig,
    /// What one caller may ask of the vault.
    #[serde(default)]
    pub limits: VaultLimitsConfig,
}

fn default_listen() -> String {
    "127.0.0.1:8820".into()
}

/// `[vault.idp]`: the confidential client the vault uses at the IdP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultIdpConfig {
    /// OIDC issuer; discovery finds the authorization, token, revocation and introspection
    /// endpoints and the keys that sign ID tokens.
    pub issuer: Url,
    pub client_id: String,
    /// Required by `client_secret_basic` (default) and `client_secret_post`.
    pub client_secret: Option<SecretRef>,
    #[serde(default)]
    pub auth_method: AuthMethod,
    /// Timeout of one request to the IdP.
    #[serde(default = "default_request_timeout", with = "tw_core::duration")]
    pub request_timeout: Duration,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[vault.consent]`: the browser round trip that gives the vault an offline token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Scope requested at the IdP; must include `openid` (the ID token proves who consented).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// How long a consent URL (its signed `state`) stays usable.
    #[serde(default = "default_state_ttl", with = "tw_core::duration")]
    pub state_ttl: Duration,
    /// Where the browser goes after a successful consent. Absent: the callback answers JSON.
    pub redirect_after: Option<Url>,
    /// URL prefixes a caller may name as `redirect` when asking for a consent URL (an open
    /// redirect otherwise). `redirect_after` is always allowed.
    #[serde(default)]
    pub allowed_redirects: Vec<Url>,
    /// Path of the callback under `public_url`.
    #[serde(default = "default_callback_path")]
    pub callback_path: String,
    /// HMAC key of the `state` parameter. Absent: derived from the active encryption key.
    pub state_signing_key: Option<SecretRef>,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            scope: default_scope(),
            state_ttl: default_state_ttl(),
            redirect_after: None,
            allowed_redirects: Vec::new(),
            callback_path: default_callback_path(),
            state_signing_key: None,
        }
    }
}

fn default_scope() -> String {
    "openid offline_access".into()
}
fn default_state_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_callback_path() -> String {
    DEFAULT_CALLBACK_PATH.into()
}

/// `[vault.encryption]`: a key ring. New writes use `active_key`; `tokenwarden vault rekey`
/// re-seals older entries under it, after which retired keys can be removed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The key id new entries are sealed with.
    pub active_key: String,
    /// Key id → 32 random bytes, base64 (`tokenwarden vault keygen` prints one), by reference.
    pub keys: BTreeMap<String, SecretRef>,
    /// Open rows sealed in the first layout (v1: associated data without the session id,
    /// attributes and redirect), as versions before it wrote them. New seals are always v2, and
    /// `tokenwarden vault rekey` re-seals v1 rows; once a rekey re-seals nothing, set this to
    /// `false` so that no v1 ciphertext (from an old backup, say) opens again with altered
    /// metadata. Default `true`.
    #[serde(default = "default_true")]
    pub accept_v1_seals: bool,
}

/// `[vault.callers]`: who may call the vault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallersConfig {
    /// Trusted issuers of callers' bearer tokens, exactly like `[[gateway.issuers]]`.
    pub issuers: Vec<IssuerConfig>,
    /// Largest accepted caller token, in bytes.
    #[serde(default = "crate::model::default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Where roles are read from the caller's token (as in `[gateway.authz]`).
    #[serde(default = "default_roles_claims")]
    pub roles_claims: Vec<String>,
    /// How client roles are named: `{client}` and `{role}` are replaced.
    #[serde(default = "default_client_role_format")]
    pub client_role_format: String,
    /// Role → vault permissions (`vault:mint-any`, `vault:read-any`, `vault:admin`, or
    /// `vault:*`). Without any, a caller reaches only its own entries.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Per issuer (exactly as in `issuers`): whether its tokens' roles count, as
    /// `[gateway.authz] issuer_sources` — `["roles"]`, or `[]` for an issuer whose callers reach
    /// only their own entries whatever roles their tokens carry (a partner realm). An issuer not
    /// listed: `["roles"]`.
    #[serde(default)]
    pub issuer_sources: BTreeMap<String, Vec<PermissionSourceKind>>,
}

fn default_roles_claims() -> Vec<String> {
    AuthzConfig::default().roles_claims
}
fn default_client_role_format() -> String {
    AuthzConfig::default().client_role_format
}

/// `[vault.mint]`: minting access tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintConfig {
    /// Serve a minted access token again (to callers allowed the entry) until shortly before it
    /// expires. Off: every mint is a refresh at the IdP.
    #[serde(default = "default_true")]
    pub cache: bool,
    /// A cached token is served until `exp` minus this margin.
    #[serde(default = "default_reuse_margin", with = "tw_core::duration")]
    pub reuse_margin: Duration,
}

impl Default for MintConfig {
    fn default() -> Self {
        Self {
            cache: true,
            reuse_margin: default_reuse_margin(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_reuse_margin() -> Duration {
    Duration::from_secs(30)
}

/// `[vault.limits]`: every authenticated request may cost the vault IdP requests (under its own
/// client's credentials) or a stored row, so each caller gets a budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultLimitsConfig {
    /// Requests per caller (issuer + subject) on the authenticated routes; over it: 429 with
    /// `Retry-After`. Default 10 per second, bursts of 50.
    #[serde(default = "default_vault_rate_limit")]
    pub rate_limit: PrincipalRateLimit,
    /// A specific limit by the caller's client id (`azp`) or subject, e.g. a scheduler that
    /// mints for many users.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, PrincipalRateLimit>,
    /// Consents started and neither completed nor expired, per owner; one more: 429
    /// `vault_too_many_pending_consents`. Default 10.
    #[serde(default = "default_max_pending_consents")]
    pub max_pending_consents: u32,
}

impl Default for VaultLimitsConfig {
    fn default() -> Self {
        Self {
            rate_limit: default_vault_rate_limit(),
            rate_limits: BTreeMap::new(),
            max_pending_consents: default_max_pending_consents(),
        }
    }
}

fn default_vault_rate_limit() -> PrincipalRateLimit {
    PrincipalRateLimit {
        per_second: 10,
        burst: Some(50),
    }
}
fn default_max_pending_consents() -> u32 {
    10
}

impl VaultConfig {
    /// The redirect URI registered at the IdP: `public_url` (with its path, if any) followed by
    /// `consent.callback_path`.
    pub fn redirect_uri(&self) -> Url {
        let mut url = self.public_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{}", self.consent.callback_path));
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// Whether a caller may name `target` as the page after consent (see [`RedirectPolicy`]).
    pub fn redirect_allowed(&self, target: &Url) -> bool {
        self.consent.redirect_policy().allows(target)
    }
}

impl ConsentConfig {
    pub fn redirect_policy(&self) -> RedirectPolicy {
        RedirectPolicy {
            redirect_after: self.redirect_after.clone(),
            allowed_redirects: self.allowed_redirects.clone(),
        }
    }
}

impl CallersConfig {
    /// What the vault's caller verifier takes from this section (the same checks as the
    /// gateway's).
    pub fn verifier_settings(&self) -> VerifierSettings {
        VerifierSettings {
            max_token_bytes: self.max_token_bytes,
            ..VerifierSettings::new("vault.callers", self.issuers.clone())
        }
    }

    /// The role map as an authorization section (for `tw_authz`'s principal extraction and
    /// role grants): token roles are the only permission source, per issuer as
    /// `issuer_sources` says.
    pub fn authz_config(&self) -> AuthzConfig {
        AuthzConfig {
            roles_claims: self.roles_claims.clone(),
            client_role_format: self.client_role_format.clone(),
            roles: self.roles.clone(),
            sources: vec![PermissionSourceKind::Roles],
            issuer_sources: self.issuer_sources.clone(),
            ..AuthzConfig::default()
        }
    }
}

fn plain_path(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
}

/// The vault's own routes (tw-vault-api), which the consent callback must not shadow.
const RESERVED_PATHS: &[&str] = &[
    "/v1/offline-token",
    "/v1/access-token",
    "/v1/refresh-token",
    "/v1/entries",
    "/v1/validate-token",
    "/health",
    "/healthz",
    "/health/ready",
    "/readyz",
    "/version",
    "/metrics",
    "/openapi.json",
    "/docs",
];

fn is_reserved_path(p: &str) -> bool {
    RESERVED_PATHS.contains(&p) || p.starts_with("/v1/entries/")
}

fn http_url(u: &Url) -> bool {
    matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
}

fn key_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Checks a `[vault]` section. `fail(key, message)` builds the error naming file and key.
pub(crate) fn validate_vault(
    v: &VaultConfig,
    fail: &dyn Fn(String, String) -> Error,
) -> Result<(), Error> {
    let k = |rest: &str| format!("vault.{rest}");
    ListenAddr::parse(&v.listen).map_err(|m| fail(k("listen"), m.into()))?;
    if !http_url(&v.public_url) || v.public_url.query().is_some() {
        return Err(fail(
            k("public_url"),
            "an http(s) URL without query, e.g. \"https://vault.example.org\"".into(),
        ));
    }

    let idp = &v.idp;
    if !http_url(&idp.issuer) {
        return Err(fail(k("idp.issuer"), "must be an http(s) URL".into()));
    }
    if idp.client_id.trim().is_empty() {
        return Err(fail(k("idp.client_id"), "must not be empty".into()));
    }
    match idp.auth_method {
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
            if idp.client_secret.is_none() =>
        {
            return Err(fail(
                k("idp.client_secret"),
                "required by this auth_method; e.g. client_secret = { env = \"TW_VAULT_CLIENT_SECRET\" }".into(),
            ));
        }
        AuthMethod::PrivateKeyJwt => {
            return Err(fail(
                k("idp.auth_method"),
                "the vault supports \"client_secret_basic\", \"client_secret_post\" and \"none\""
                    .into(),
            ));
        }
        _ => {}
    }
    if idp.request_timeout.is_zero() {
        return Err(fail(k("idp.request_timeout"), "must be positive".into()));
    }

    let c = &v.consent;
    if !c.scope.split(' ').any(|s| s == "openid") {
        return Err(fail(
            k("consent.scope"),
            "must include `openid` (the ID token proves who consented), e.g. \"openid offline_access\"".into(),
        ));
    }
    if c.state_ttl < Duration::from_secs(10) || c.state_ttl > Duration::from_secs(24 * 3600) {
        return Err(fail(
            k("consent.state_ttl"),
            "must be between 10s and 24h".into(),
        ));
    }
    if !plain_path(&c.callback_path) {
        return Err(fail(
            k("consent.callback_path"),
            format!(
                "`{}` must be a plain path such as \"{DEFAULT_CALLBACK_PATH}\"",
                c.callback_path
            ),
        ));
    }
    if is_reserved_path(&c.callback_path) {
        return Err(fail(
            k("consent.callback_path"),
            format!(
                "`{}` is one of the vault's own routes; choose another, e.g. \"{DEFAULT_CALLBACK_PATH}\"",
                c.callback_path
            ),
        ));
    }
    if let Some(u) = &c.redirect_after
        && !http_url(u)
    {
        return Err(fail(
            k("consent.redirect_after"),
            "must be an http(s) URL".into(),
        ));
    }
    for (i, u) in c.allowed_redirects.iter().enumerate() {
        if !http_url(u) || u.query().is_some() {
            return Err(fail(
                format!("vault.consent.allowed_redirects[{i}]"),
                "must be an http(s) URL prefix without query".into(),
            ));
        }
    }

    if v.mint.cache && v.mint.reuse_margin.is_zero() {
        return Err(fail(
            k("mint.reuse_margin"),
            "must be positive while the cache is on (cache = false turns it off)".into(),
        ));
    }

    let bad_limit = |l: &PrincipalRateLimit| l.per_second == 0 || l.burst == Some(0);
    if bad_limit(&v.limits.rate_limit) {
        return Err(fail(
            k("limits.rate_limit"),
            "per_second and burst must be positive, e.g. { per_second = 10, burst = 50 }".into(),
        ));
    }
    for (who, l) in &v.limits.rate_limits {
        if bad_limit(l) {
            return Err(fail(
                format!("vault.limits.rate_limits.\"{who}\""),
                "per_second and burst must be positive".into(),
            ));
        }
    }
    if v.limits.max_pending_consents == 0 || v.limits.max_pending_consents > 1000 {
        return Err(fail(
            k("limits.max_pending_consents"),
            "must be between 1 and 1000".into(),
        ));
    }

    let e = &v.encryption;
    if e.keys.is_empty() {
        return Err(fail(
            k("encryption.keys"),
            "give at least one key, e.g. keys = { \"2026-01\" = { env = \"TW_VAULT_KEY\" } } (tokenwarden vault keygen prints one)".into(),
        ));
    }
    for id in e.keys.keys() {
        if !key_id_ok(id) {
            return Err(fail(
                format!("vault.encryption.keys.\"{id}\""),
                "key ids use letters, digits, `-`, `_` and `.` (at most 64)".into(),
            ));
        }
    }
    if !e.keys.contains_key(&e.active_key) {
        return Err(fail(
            k("encryption.active_key"),
            format!("`{}` is not one of vault.encryption.keys", e.active_key),
        ));
    }

    let callers = &v.callers;
    validate_issuers(&callers.issuers, "vault.callers.issuers", fail)?;
    // Without an audience, a token meant for any API of the realm (even one the vault minted)
    // would let whoever holds it act here as its user.
    for (i, issuer) in callers.issuers.iter().enumerate() {
        if issuer.audiences.is_empty() {
            return Err(fail(
                format!("vault.callers.issuers[{i}].audiences"),
                "list the audience of tokens meant for the vault, e.g. [\"token-vault\"] (a Keycloak audience mapper adds it); without it any token of this issuer, issued for any API, could act for its user here".into(),
            ));
        }
    }
    if callers.max_token_bytes < 256 {
        return Err(fail(
            k("callers.max_token_bytes"),
            "must be at least 256".into(),
        ));
    }
    tw_authz::settings::check_role_claims(
        &callers.roles_claims,
        &callers.client_role_format,
        "vault.callers",
    )
    .map_err(|p| fail(p.key, p.message))?;
    for (issuer, sources) in &callers.issuer_sources {
        let key = format!("vault.callers.issuer_sources.\"{issuer}\"");
        // Exact, like the verifier's issuer names: a look-alike (trailing slash, case) would
        // otherwise apply to nobody and leave the issuer it was meant for at the default.
        if !callers.issuers.iter().any(|i| &i.issuer == issuer) {
            return Err(fail(
                key,
                format!(
                    "`{issuer}` is not one of the [[vault.callers.issuers]] (spelled exactly as there)"
                ),
            ));
        }
        if sources.contains(&PermissionSourceKind::Registry) {
            return Err(fail(
                key,
                "the vault reads caller permissions from token roles only: use [\"roles\"] or [] (no role of this issuer's tokens counts)".into(),
            ));
        }
    }
    for (role, perms) in &callers.roles {
        let key = |j: usize| format!("vault.callers.roles.\"{role}\"[{j}]");
        if role.is_empty() {
            return Err(fail(
                k("callers.roles"),
                "a role name must not be empty".into(),
            ));
        }
        for (j, p) in perms.iter().enumerate() {
            check_permission_code(p, true).map_err(|m| fail(key(j), m.into()))?;
            // Only `*`, `vault:*` and the codes themselves reach a vault permission.
            if !(p == "*" || p == "vault:*" || VAULT_PERMISSIONS.contains(&p.as_str())) {
                return Err(fail(
                    key(j),
                    format!(
                        "`{p}` grants nothing in the vault; use {} (or vault:*)",
                        VAULT_PERMISSIONS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[vault]
public_url = "https://vault.example.org/tw"

[vault.idp]
issuer = "https://kc.example/realms/dls"
client_id = "token-vault"
client_secret = { env = "TW_VAULT_CLIENT_SECRET" }

[vault.encryption]
active_key = "k2"
keys = { k1 = { env = "K1" }, k2 = { file = "/run/secrets/k2" } }

[[vault.callers.issuers]]
issuer = "https://kc.example/realms/dls"
audiences = ["token-vault"]

[vault.callers.roles]
"vault-operator" = ["vault:mint-any", "vault:read-any"]
"vault-admin" = ["vault:*"]
"#;

    fn load(toml: &str) -> Result<crate::Config, Error> {
        crate::load_str(toml, "vault.toml")
    }

    fn key_of(toml: &str) -> String {
        let e = load(toml).expect_err("invalid");
        assert!(e.message().starts_with("vault.toml: key `"), "{e}");
        e.context_value("key").unwrap_or_default().to_owned()
    }

    #[test]
    fn defaults_and_derived_values() {
        let cfg = load(BASE).expect("valid");
        let v = cfg.vault.expect("vault");
        assert_eq!(v.listen, "127.0.0.1:8820");
        assert_eq!(v.consent.scope, "openid offline_access");
        assert_eq!(v.consent.state_ttl, Duration::from_secs(600));
        assert!(v.mint.cache);
        assert_eq!(v.mint.reuse_margin, Duration::from_secs(30));
        assert_eq!(
            v.limits.rate_limit,
            PrincipalRateLimit {
                per_second: 10,
                burst: Some(50)
            }
        );
        assert_eq!(v.limits.max_pending_consents, 10);
        assert_eq!(
            v.redirect_uri().as_str(),
            "https://vault.example.org/tw/v1/offline-token/callback"
        );
        assert_eq!(v.callers.verifier_settings().issuers.len(), 1);
        let authz = v.callers.authz_config();
        assert_eq!(authz.roles.len(), 2);
        assert_eq!(authz.roles_claims, AuthzConfig::default().roles_claims);
    }

    #[test]
    fn redirects_are_allowed_only_as_configured() {
        let toml = BASE.replace(
            "[vault.encryption]",
            "[vault.consent]\nredirect_after = \"https://app.example.org/done\"\nallowed_redirects = [\"https://app.example.org/jobs\"]\n\n[vault.encryption]",
        );
        let v = load(&toml).expect("valid").vault.expect("vault");
        let ok = |s: &str| v.redirect_allowed(&Url::parse(s).expect("url"));
        assert!(ok("https://app.example.org/done"));
        assert!(ok("https://app.example.org/jobs/42"));
        assert!(!ok("https://app.example.org/jobsx"));
        assert!(!ok("https://evil.example.org/jobs/42"));
        assert!(!ok("http://app.example.org/jobs/42"));
        let policy = v.consent.redirect_policy();
        for target in [
            "https://app.example.org/done",
            "https://app.example.org/jobs/42",
            "https://app.example.org/jobsx",
            "https://evil.example.org/jobs/42",
        ] {
            let url = Url::parse(target).expect("url");
            assert_eq!(policy.allows(&url), v.redirect_allowed(&url), "{target}");
        }
        assert!(
            !RedirectPolicy::default()
                .allows(&Url::parse("https://app.example.org/done").expect("url"))
        );
    }

    #[test]
    fn issuer_sources_name_a_caller_issuer_exactly_and_only_roles() {
        const PARTNER: &str = "https://partner.example/realms/p";
        let with = |sources: &str| {
            BASE.replace(
                "[vault.callers.roles]",
                &format!(
                    "[[vault.callers.issuers]]\nissuer = \"{PARTNER}\"\naudiences = [\"token-vault\"]\n\n[vault.callers.issuer_sources]\n{sources}\n\n[vault.callers.roles]"
                ),
            )
        };
        let v = load(&with(&format!("\"{PARTNER}\" = []")))
            .expect("valid")
            .vault
            .expect("vault");
        assert_eq!(v.callers.issuer_sources[PARTNER], Vec::new());
        let authz = v.callers.authz_config();
        assert_eq!(authz.sources, [PermissionSourceKind::Roles], "the default");
        assert_eq!(authz.issuer_sources, v.callers.issuer_sources);
        assert!(
            load(&with(&format!("\"{PARTNER}\" = [\"roles\"]")))
                .expect("valid")
                .vault
                .is_some()
        );
        // Unlisted by default, a look-alike of a caller issuer is refused rather than left
        // applying to nobody.
        assert!(
            load(BASE)
                .expect("valid")
                .vault
                .expect("vault")
                .callers
                .issuer_sources
                .is_empty()
        );
        for look_alike in [
            format!("{PARTNER}/"),
            PARTNER.to_uppercase(),
            format!(" {PARTNER}"),
            "https://partner.example/realms/p2".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                key_of(&with(&format!("\"{look_alike}\" = []"))),
                format!("vault.callers.issuer_sources.\"{look_alike}\""),
                "{look_alike:?}"
            );
        }
        let e = load(&with(&format!("\"{PARTNER}\" = [\"registry\"]"))).expect_err("registry");
        assert_eq!(
            e.context_value("key"),
            Some(format!("vault.callers.issuer_sources.\"{PARTNER}\"").as_str())
        );
        assert!(e.message().contains("token roles only"), "{e}");
        let e = load(&with(&format!("\"{PARTNER}\" = [\"tokens\"]"))).expect_err("unknown source");
        assert!(e.message().contains("issuer_sources"), "{e}");
    }

    #[test]
    fn v1_seals_open_until_turned_off() {
        let v = load(BASE).expect("valid").vault.expect("vault");
        assert!(v.encryption.accept_v1_seals);
        let off = BASE.replace(
            "active_key = \"k2\"",
            "active_key = \"k2\"\naccept_v1_seals = false",
        );
        let v = load(&off).expect("valid").vault.expect("vault");
        assert!(!v.encryption.accept_v1_seals);
    }

    #[test]
    fn callers_must_name_the_vaults_audience() {
        let toml = BASE.replace("audiences = [\"token-vault\"]\n", "");
        assert_eq!(key_of(&toml), "vault.callers.issuers[0].audiences");
    }

    #[test]
    fn the_callback_cannot_shadow_a_vault_route() {
        for path in [
            "/health",
            "/v1/entries",
            "/v1/entries/x",
            "/metrics",
            "/docs",
        ] {
            let toml = BASE.replace(
                "[vault.encryption]",
                &format!("[vault.consent]\ncallback_path = \"{path}\"\n\n[vault.encryption]"),
            );
            assert_eq!(key_of(&toml), "vault.consent.callback_path", "{path}");
        }
        let toml = BASE.replace(
            "[vault.encryption]",
            "[vault.consent]\ncallback_path = \"/consent/done\"\n\n[vault.encryption]",
        );
        assert!(load(&toml).is_ok());
    }

    #[test]
    fn limits_are_checked_and_name_their_key() {
        let with = |limits: &str| {
            BASE.replace(
                "[vault.encryption]",
                &format!("[vault.limits]\n{limits}\n\n[vault.encryption]"),
            )
        };
        let v = load(&with(
            "rate_limit = { per_second = 2, burst = 5 }\nrate_limits = { scheduler = { per_second = 100 } }\nmax_pending_consents = 3",
        ))
        .expect("valid")
        .vault
        .expect("vault");
        assert_eq!(v.limits.rate_limit.burst, Some(5));
        assert_eq!(v.limits.rate_limits["scheduler"].per_second, 100);
        assert_eq!(v.limits.max_pending_consents, 3);
        assert_eq!(
            key_of(&with("rate_limit = { per_second = 0 }")),
            "vault.limits.rate_limit"
        );
        assert_eq!(
            key_of(&with(
                "rate_limits = { scheduler = { per_second = 5, burst = 0 } }"
            )),
            "vault.limits.rate_limits.\"scheduler\""
        );
        assert_eq!(
            key_of(&with("max_pending_consents = 0")),
            "vault.limits.max_pending_consents"
        );
        let e = load(&with("max_pending = 3")).expect_err("unknown key");
        assert!(e.message().contains("max_pending"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            key_of(&BASE.replace("active_key = \"k2\"", "active_key = \"k9\"")),
            "vault.encryption.active_key"
        );
        assert_eq!(
            key_of(&BASE.replace("client_secret = { env = \"TW_VAULT_CLIENT_SECRET\" }", "")),
            "vault.idp.client_secret"
        );
        assert_eq!(
            key_of(&BASE.replace("\"vault:*\"", "\"events:read\"")),
            "vault.callers.roles.\"vault-admin\"[0]"
        );
        assert_eq!(
            key_of(&BASE.replace(
                "[[vault.callers.issuers]]\nissuer = \"https://kc.example/realms/dls\"",
                "[[vault.callers.issuers]]\nissuer = \"\""
            )),
            "vault.callers.issuers[0].issuer"
        );
        assert_eq!(
            key_of(&BASE.replace(
                "[vault.encryption]",
                "[vault.consent]\nscope = \"offline_access\"\n\n[vault.encryption]"
            )),
            "vault.consent.scope"
        );
        assert_eq!(
            key_of(&BASE.replace("keys = { k1", "keys = { \"bad key\" = { env = \"X\" }, k1")),
            "vault.encryption.keys.\"bad key\""
        );
        // Clear-text secrets and unknown keys are refused while loading, naming the key.
        let e = load(&BASE.replace("{ env = \"TW_VAULT_CLIENT_SECRET\" }", "\"hunter2\""))
            .expect_err("clear text");
        assert_eq!(e.context_value("key"), Some("vault.idp.client_secret"));
        assert!(!e.message().contains("hunter2"), "{e}");
        let e =
            load(&BASE.replace("[vault.idp]", "[vault.idp]\nclient_sekret = 1")).expect_err("typo");
        assert!(e.message().contains("client_sekret"), "{e}");
    }
}
