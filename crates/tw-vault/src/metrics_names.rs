//! Names of the metrics the vault emits (the binary exports them at `/metrics`).

/// Counter: mint requests, label `outcome`: `cached`, `refreshed`, or an error code.
pub const METRIC_MINTS: &str = "tokenwarden_vault_mints_total";
/// Histogram: seconds of one refresh at the IdP (the round trip only), label `outcome` (`ok`
/// or an error code).
pub const METRIC_IDP_REFRESH_SECONDS: &str = "tokenwarden_vault_idp_refresh_seconds";
/// Counter: refresh tokens rotated and committed.
pub const METRIC_ROTATIONS: &str = "tokenwarden_vault_rotations_total";
/// Counter: completed consent callbacks, label `outcome`: `stored` or an error code.
pub const METRIC_CONSENTS: &str = "tokenwarden_vault_consents_total";
