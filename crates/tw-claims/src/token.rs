//! A bearer token that passed verification, as the verifier hands it on.

use serde_json::{Map, Value};
use tw_core::UnixTime;

/// How a token was found valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// Signature and claims checked locally (an extra introspection, if asked, only gates).
    Jwt,
    /// An opaque token, vouched for by the issuer's introspection endpoint.
    Introspection,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The configured issuer that vouches for the token.
    pub issuer: String,
    pub subject: Option<String>,
    /// `azp`, else `client_id`.
    pub client_id: Option<String>,
    /// `preferred_username`.
    pub username: Option<String>,
    /// `preferred_username` starts with `service-account-` (Keycloak's client-credentials tokens).
    pub service_account: bool,
    /// `scope` split on spaces (or `scp` when it is a list).
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    /// `exp` (for an introspected token without `exp`: the end of the cached answer's validity).
    pub expires_at: UnixTime,
    /// Every claim (for authorization: `realm_access`, `resource_access`, ...).
    pub claims: Map<String, Value>,
    pub via: VerifiedBy,
}
