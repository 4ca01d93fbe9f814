//! Who is calling: a bearer token verified by the gateway's [`Verifier`] (same issuers, same
//! checks), its roles mapped to vault permissions by `[vault.callers.roles]`.
//!
//! Refusals are the gateway's ([`tw_gateway::Refusal`], RFC 6750): no token → 401 with a bare
//! challenge; a malformed `Authorization` → 400 `invalid_request`; a refused token → 401
//! `invalid_token` naming the failed check; keys unavailable → 503 with `Retry-After`. A verified
//! token without `sub` cannot own entries: 401 `invalid_token`.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tw_authz::{PermissionSet, PrincipalExtractor};
use tw_config::{CallersConfig, VAULT_PERMISSIONS};
use tw_core::{Error, ErrorKind};
use tw_gateway::Refusal;
use tw_gateway::credentials::{Credentials, bearer_token};
use tw_gateway::refusal::challenge;
use tw_http::ApiError;
use tw_vault::Caller;
use tw_verify::{INVALID_TOKEN, Verifier, VerifyOptions};

/// Authenticates callers and computes their vault permissions.
pub struct CallerAuth {
    verifier: Arc<Verifier>,
    principals: PrincipalExtractor,
    roles: BTreeMap<String, PermissionSet>,
}

impl std::fmt::Debug for CallerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerAuth")
            .field("verifier", &self.verifier)
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CallerAuth {
    /// `verifier` is built from [`CallersConfig::verifier_config`] (see [`crate::verifier`]).
    pub fn new(cfg: &CallersConfig, verifier: Arc<Verifier>) -> Self {
        let roles = cfg
            .roles
            .iter()
            .map(|(role, codes)| {
                let mut set = PermissionSet::new();
                set.extend(codes.iter().cloned());
                (role.clone(), set)
            })
            .collect();
        Self {
            verifier,
            principals: PrincipalExtractor::new(&cfg.authz_config()),
            roles,
        }
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The caller of a request, or the refusal to send back.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
        let refuse = |r: Refusal| Box::new(r.into_response(false));
        let token = match bearer_token(headers) {
            Ok(Credentials::Bearer(t)) => t,
            Ok(Credentials::Missing) => return Err(refuse(Refusal::Missing)),
            Err(e) => return Err(refuse(Refusal::Verify(e))),
        };
        let verified = self
            .verifier
            .verify(token, VerifyOptions::default())
            .await
            .map_err(|e| refuse(Refusal::Verify(e)))?;
        let Some(subject) = verified.subject.clone().filter(|s| !s.is_empty()) else {
            let d = "the token has no subject (sub), so it cannot own vault entries";
            let api = ApiError::new(
                Error::new(ErrorKind::Unauthenticated, INVALID_TOKEN, d).with("check", "sub"),
            )
            .with_challenge(challenge(Some(INVALID_TOKEN), Some(d), None));
            return Err(Box::new(api.into_response()));
        };
        let principal = self.principals.principal(&verified);
        let mut granted = PermissionSet::new();
        for role in &principal.roles {
            if let Some(set) = self.roles.get(role) {
                granted.extend(set.iter().map(str::to_owned));
            }
        }
        let permissions: BTreeSet<String> = VAULT_PERMISSIONS
            .iter()
            .filter(|p| granted.satisfies(p))
            .map(|p| (*p).to_owned())
            .collect();
        Ok(Caller {
            issuer: verified.issuer.clone(),
            subject,
            permissions,
        })
    }
}
