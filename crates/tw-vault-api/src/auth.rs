//! Who is calling: a bearer token verified by the gateway's [`Verifier`] (same issuers, same
//! checks), its roles mapped to vault permissions by `[vault.callers.roles]` through the
//! gateway's own authorization core ([`Authz::resolve`]: principal extraction with
//! `roles_claims` and `client_role_format`, the role map, and per issuer the permission sources
//! of `[vault.callers] issuer_sources`: an issuer limited to `[]` grants no `vault:*` permission
//! whatever roles its tokens carry).
//!
//! The token is read by tw-http's one bearer parser and refused with its RFC 6750 refusals
//! ([`tw_http::bearer::Refusal`], the gateway's and the admin API's too): no token → 401 with a bare
//! challenge; a malformed `Authorization` → 400 `invalid_request`; a refused token → 401
//! `invalid_token` naming the failed check; keys unavailable → 503 with `Retry-After`. A verified
//! token without `sub` cannot own entries: 401 `invalid_token`. Neither can a token the vault
//! minted itself (its `azp`, else `client_id`, is `vault.idp.client_id`): 401 `invalid_token`,
//! so a leaked minted access token never becomes the power to mint more.
//!
//! Then each caller's budget (`[vault.limits]`, governor through tw-authz's
//! [`PrincipalLimiter`], keyed by issuer + subject, specific limits by client id or subject):
//! over it, 429 `rate_limited` with `Retry-After`, before any IdP request or stored row.

use http::HeaderMap;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use tw_authz::settings::{AuthzConfig, PrincipalRateLimit};
use tw_authz::{Authz, PrincipalLimiter, Resolution};
use tw_core::{Clock, Error};
use tw_http::bearer::Refusal;
use tw_vault::Caller;
use tw_vault::PERMISSIONS as VAULT_PERMISSIONS;
use tw_verify::{Verifier, VerifyOptions};

/// Authenticates callers and computes their vault permissions.
pub struct CallerAuth {
    verifier: Arc<Verifier>,
    /// `[vault.callers]` as an authorization core without rules: only its principal and
    /// permission resolution is used.
    authz: Authz,
    roles: Vec<String>,
    /// `vault.idp.client_id`: tokens issued to it are the vault's own minted tokens.
    own_client_id: String,
    limiter: PrincipalLimiter,
}

impl std::fmt::Debug for CallerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerAuth")
            .field("verifier", &self.verifier)
            .field("roles", &self.roles)
            .finish()
    }
}

/// Who may call the vault and how often (`[vault.callers]`, `[vault.limits]`).
#[derive(Debug, Clone)]
pub struct CallerSettings {
    /// The callers' role map as an authorization section: token roles are the only source.
    pub authz: AuthzConfig,
    /// The vault's own client id at the IdP: tokens issued to it are refused as callers'.
    pub own_client_id: String,
    /// The rate limit of every caller, and those of particular clients or subjects.
    pub rate_limit: PrincipalRateLimit,
    pub rate_limits: BTreeMap<String, PrincipalRateLimit>,
}

impl CallerAuth {
    /// `verifier` checks the callers' tokens (the issuers of `vault.callers`); `clock` times the
    /// rate limits. Needs a Tokio runtime (the authorization core starts its idle audit writer).
    pub fn new(
        settings: &CallerSettings,
        verifier: Arc<Verifier>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let authz = Authz::builder(&settings.authz)
            .clock(clock.clone())
            .build()?;
        Ok(Self {
            verifier,
            authz,
            roles: settings.authz.roles.keys().cloned().collect(),
            own_client_id: settings.own_client_id.clone(),
            limiter: PrincipalLimiter::new(
                Some(&settings.rate_limit),
                &settings.rate_limits,
                clock,
            ),
        })
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The caller of a request, or the refusal to send back.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let token = Refusal::bearer(headers)?;
        let verified = self
            .verifier
            .verify(token, VerifyOptions::default())
            .await
            .map_err(|e| Refusal::Verify(e.into()))?;
        let claim = |name: &str| {
            verified
                .claims
                .get(name)
                .and_then(serde_json::Value::as_str)
        };
        // Keycloak names the client a token was issued to in `azp` (RFC 9068 / RFC 8693 use
        // `client_id`).
        let client_id = claim("azp").or_else(|| claim("client_id"));
        if client_id == Some(self.own_client_id.as_str()) {
            return Err(Refusal::invalid_token(
                "the vault itself minted this token (it was issued to the vault's own client); present the caller's own token",
                "azp",
            ));
        }
        let Some(subject) = verified.subject.clone().filter(|s| !s.is_empty()) else {
            return Err(Refusal::invalid_token(
                "the token has no subject (sub), so it cannot own vault entries",
                "sub",
            ));
        };
        let key = format!("{}\n{subject}", verified.issuer);
        if let Err(wait) = self
            .limiter
            .check(&key, &[client_id, Some(subject.as_str())])
        {
            tracing::info!(caller = %subject, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "vault caller rate limited");
            return Err(Refusal::RateLimited(wait));
        }
        // Token roles are the callers' only permission source (no registry), so every answer is
        // the grants; anything else grants nothing rather than failing the request.
        let permissions: BTreeSet<String> = match self.authz.resolve(&verified).await {
            (_, Resolution::Grants(grants)) => VAULT_PERMISSIONS
                .iter()
                .filter(|p| grants.permissions.satisfies(p))
                .map(|p| (*p).to_owned())
                .collect(),
            (_, Resolution::Disabled { .. } | Resolution::Unavailable(_)) => BTreeSet::new(),
        };
        Ok(Caller {
            issuer: verified.issuer.clone(),
            subject,
            permissions,
        })
    }
}
