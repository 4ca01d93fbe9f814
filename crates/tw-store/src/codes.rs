//! The store's error codes: the stable `code` of every [`tw_core::Error`] this crate returns.
//! Callers that branch on a store failure compare [`tw_core::Error::code`] with these constants,
//! never with a string literal, so a misspelt code does not compile.

/// 404: no account with that id (or identity).
pub const ACCOUNT_NOT_FOUND: &str = "account_not_found";
/// 404: no role with that name.
pub const ROLE_NOT_FOUND: &str = "role_not_found";
/// 409: an account with that identity exists already (a concurrent creator may have won).
pub const ACCOUNT_EXISTS: &str = "account_exists";
/// 409: the role is still granted (delete with force, or revoke it first).
pub const ROLE_IN_USE: &str = "role_in_use";
/// 400: an account field out of bounds; the context's `field` names it.
pub const INVALID_ACCOUNT: &str = "invalid_account";
/// 400: a role field out of bounds; the context's `field` names it.
pub const INVALID_ROLE: &str = "invalid_role";
/// 400: a permission code out of bounds.
pub const INVALID_PERMISSION: &str = "invalid_permission";
/// 400: an audit query's `limit` out of range.
pub const INVALID_LIMIT: &str = "invalid_limit";
/// 409: a write conflicts with an existing row (a unique key).
pub const STORAGE_CONFLICT: &str = "storage_conflict";
/// 503 (retryable): the database cannot be reached or is busy.
pub const STORAGE_UNAVAILABLE: &str = "storage_unavailable";
/// 500: anything else the database reported, or a stored value this version cannot read.
pub const STORAGE_ERROR: &str = "storage_error";
/// At open: the database refused the credentials.
pub const STORAGE_AUTH_FAILED: &str = "storage_auth_failed";
/// At open: the configured PostgreSQL database does not exist.
pub const STORAGE_DATABASE_MISSING: &str = "storage_database_missing";
/// At open: the migrations could not be applied.
pub const STORAGE_MIGRATION_FAILED: &str = "storage_migration_failed";
