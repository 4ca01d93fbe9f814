//! Metric names (the binary installs the recorder; this crate only emits).

/// Counter: one per `verify` call. Labels: `issuer` (a configured issuer, or `unknown`),
/// `outcome` (`ok`, or the failed [`crate::Check::code`]).
pub const METRIC_DECISIONS: &str = "tokenwarden_verify_decisions_total";
/// Counter: JWKS fetches. Labels: `issuer`, `cause` (`startup`, `ttl`, `unknown_kid`), `result`
/// (`ok`, `network`, `timeout`, `http_5xx`, `http_status`, `too_large`, `garbled`, `invalid`).
pub const METRIC_JWKS_FETCHES: &str = "tokenwarden_jwks_fetches_total";
/// Counter: verified-token cache lookups that found a usable entry.
pub const METRIC_CACHE_HITS: &str = "tokenwarden_verify_cache_hits_total";
/// Counter: verified-token cache lookups that did not.
pub const METRIC_CACHE_MISSES: &str = "tokenwarden_verify_cache_misses_total";
/// Counter: introspection requests sent. Labels: `issuer`, `result` (`active`, `inactive`, or a
/// failure label as for JWKS fetches).
pub const METRIC_INTROSPECTIONS: &str = "tokenwarden_introspection_requests_total";
/// Counter: introspection cache lookups. Labels: `issuer`, `result` (`hit`, `miss`).
pub const METRIC_INTROSPECTION_CACHE: &str = "tokenwarden_introspection_cache_total";
/// Histogram: seconds spent in `verify` (cache hits included). Label: `outcome` (`ok`/`refused`/`unavailable`).
pub const METRIC_VERIFY_SECONDS: &str = "tokenwarden_verify_duration_seconds";
