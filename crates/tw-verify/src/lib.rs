//! Bearer-token verification for `tokenwarden gateway`.
//!
//! [`Verifier`] checks a token in a fixed order, cheapest first, and stops at the first failure:
//!
//! 1. size (`max_token_bytes`);
//! 2. shape: three non-empty strict base64url segments, header and payload JSON objects without
//!    duplicate keys, registered claims of the right JSON types;
//! 3. header: `alg` a string, never `none` nor HS*, no `crit`, `kid` an opaque string of at most
//!    256 bytes; `jku`, `x5u`, `jwk`, `x5c` are ignored (never fetched, never used);
//! 4. `iss` exactly a configured issuer;
//! 5. `alg` in that issuer's list and fitting the key (RSA ⇒ RS*/PS*, P-256 ⇒ ES256, P-384 ⇒
//!    ES384, Ed25519 ⇒ EdDSA; a JWK's own `alg` must equal the token's);
//! 6. signature (jsonwebtoken, aws-lc-rs backend; its claim validation is not used);
//! 7. `exp` (required), 8. `nbf`, 9. `iat`, all with the issuer's leeway, by the [`tw_core::Clock`];
//! 10. `aud`, 11. `azp`, 12. token type (Keycloak / strict RFC 9068 / off).
//!
//! Keys come from each issuer's JWKS (discovery or `jwks_url`), refreshed in the background before
//! `jwks_ttl`; the last good keys are kept when a refresh fails. An unknown `kid` causes a refetch
//! (single-flight per issuer) under an adaptive cooldown: 1 s ([`MIN_REFETCH_COOLDOWN`]), doubled
//! by each refetch that brought no new key up to `jwks_refetch_cooldown` (the cap), back to 1 s
//! when a new key appears or after a quiet cap. A kid refused without a fetch and presented again
//! gets a fetch once [`REPEATED_KID_REFETCH_INTERVAL`] (1 s) has passed since the last one, so a
//! real rotation is accepted within about a second of its first token whatever came before,
//! while a flood of random kids costs a handful of fetches, then one per cap. A kid is remembered
//! as unknown (for the cap) only when a fetch begun after it was first seen did not publish it.
//!
//! Valid JWTs are cached by SHA-256 (never past `exp`, dropped when their key is no longer
//! published), bounded by `verified_cache_entries` and by `verified_cache_max_bytes` (each entry
//! weighed by an estimate of the heap its claims hold, so the cache's memory stays flat). Opaque
//! tokens, and JWTs on routes that ask for it, are introspected (RFC 7662) with a per-token cache.
//!
//! Errors: [`VerifyError`] names the failed [`Check`]; its description is safe for
//! `WWW-Authenticate`; [`VerifyError::into_error`] gives the [`tw_core::Error`] (401
//! `invalid_token`, or 503 `temporarily_unavailable` when keys or introspection are unavailable).
//! Tokens are never logged (only [`tw_core::TokenFingerprint::short`]).

mod error;
mod inspect;
mod introspect;
mod jwks;
mod keys;
mod metrics_names;
mod parse;
mod settings;
mod verifier;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Check, INVALID_REQUEST, INVALID_TOKEN, TEMPORARILY_UNAVAILABLE, VerifyError};
/// Largest IdP answer read (discovery, JWKS, introspection): `tw_idp`'s cap on every answer.
pub use tw_idp::MAX_ANSWER_BYTES as MAX_RESPONSE_BYTES;
/// Connect timeout of the verifier's IdP calls (`tw_idp`'s).
pub use tw_idp::http::CONNECT_TIMEOUT;
/// Whole-request timeout of the verifier's IdP calls (discovery, JWKS, introspection).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The verifier's IdP client: `tw_idp`'s factory with [`REQUEST_TIMEOUT`] on every call.
fn idp_http() -> Result<tw_idp::IdpHttp, tw_core::Error> {
    tw_idp::HttpSettings::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_user_agent(concat!("tokenwarden-verify/", env!("CARGO_PKG_VERSION")))
        .build()
}
pub use inspect::{INSPECT_ORDER, InspectReport, InspectStep, StepStatus};
pub use introspect::INTROSPECTION_CACHE_ENTRIES;
pub use jwks::{
    FetchCause, INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, MIN_REFETCH_COOLDOWN, NEGATIVE_KID_CAPACITY,
    RECHECK_INTERVAL, REFRESH_FRACTION, REPEATED_KID_REFETCH_INTERVAL,
};
pub use keys::{KeyKind, MAX_KEYS, MAX_KIDLESS_CANDIDATES, MIN_RSA_BITS};
pub use metrics_names::*;
pub use parse::{
    Alg, MAX_KID_BYTES, RegisteredClaims, StrictValue, UnverifiedJwt, parse_unverified,
};
pub use settings::*;
pub use verifier::{IssuerStatus, VerifiedBy, VerifiedToken, Verifier, VerifyOptions};
