//! Names of the metrics the vault API emits.

/// Counter: requests answered by the vault API. Labels: `route` (the route pattern, e.g.
/// `/v1/entries/{id}`, or `unmatched`), `method`, `outcome` (`ok`, or the error's stable code such
/// as `vault_entry_not_found`, `vault_reconsent_required`, `missing_token`).
pub const METRIC_VAULT_REQUESTS: &str = "tokenwarden_vault_requests_total";
/// Histogram: seconds to answer, labels `route`, `method`.
pub const METRIC_VAULT_REQUEST_SECONDS: &str = "tokenwarden_vault_request_seconds";
