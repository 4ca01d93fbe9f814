//! Names of the metrics authorization emits.

/// Counter: authorization decisions. Labels: `outcome` (`allow`, `deny`, `dry_run_deny`,
/// `rate_limited`), `reason` (the stable code).
pub const METRIC_AUTHZ_DECISIONS: &str = "tokenwarden_authz_decisions_total";
/// Counter: audit events dropped, not in the audit log. Label `reason`: `queue_full` (the
/// request side's queue, or the writer's memory without a spool), `spool_full` (the spool at its
/// `spool_max_bytes`), `spool_error` (the spool could not be written), `spool_corrupt` (an
/// unreadable spool line), `shutdown` (the writer stopped while the database failed, no spool).
pub const METRIC_AUDIT_DROPPED: &str = "tokenwarden_audit_dropped_total";
/// Gauge: audit events in the local spool, waiting for the database.
pub const METRIC_AUDIT_SPOOLED: &str = "tokenwarden_audit_spooled_rows";
/// Counter: audit batch writes that failed (the batch is kept and retried).
pub const METRIC_AUDIT_WRITE_ERRORS: &str = "tokenwarden_audit_write_errors_total";
/// Counter: registry lookups that failed (the decision answered 503).
pub const METRIC_REGISTRY_ERRORS: &str = "tokenwarden_authz_registry_errors_total";
