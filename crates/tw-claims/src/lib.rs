//! The claims vocabulary shared by verification, authorization and storage, in a crate that knows
//! no HTTP, no SQL and no JOSE (it depends on `tw-core` and `serde_json` only), so a crate that
//! only reads these types (the store, the authorization core) pulls in neither the HTTP client nor
//! the signature stack.
//!
//! - [`VerifiedToken`] / [`VerifiedBy`]: a bearer token that passed every check of
//!   `tw_verify::Verifier` (which re-exports them), with its extracted fields and all its claims.
//! - [`Principal`] / [`PrincipalKind`]: who is calling, as authorization sees it (re-exported by
//!   `tw_authz`, whose `PrincipalExtractor` reads it from a token by the configured claim paths).

mod principal;
mod token;

pub use principal::{Principal, PrincipalKind, SERVICE_ACCOUNT_PREFIX, has_service_account_prefix};
pub use token::{VerifiedBy, VerifiedToken};
