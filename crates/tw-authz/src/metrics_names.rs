//! Names of the metrics authorization emits.

/// Counter: authorization decisions. Labels: `outcome` (`allow`, `deny`, `dry_run_deny`,
/// `rate_limited`), `reason` (the stable code).
pub const METRIC_AUTHZ_DECISIONS: &str = "tokenwarden_authz_decisions_total";
/// Counter: audit events dropped because the audit queue was full.
pub const METRIC_AUDIT_DROPPED: &str = "tokenwarden_audit_dropped_total";
/// Counter: audit batches the sink failed to write.
pub const METRIC_AUDIT_WRITE_ERRORS: &str = "tokenwarden_audit_write_errors_total";
/// Counter: registry lookups that failed (the decision answered 503).
pub const METRIC_REGISTRY_ERRORS: &str = "tokenwarden_authz_registry_errors_total";
