//! Storage of tokenwarden: the service-account registry and the audit log.
//!
//! One [`Store`] API over two databases:
//! - **SQLite** (the default): one file, created with its parent directory and migrated on first
//!   open, WAL journal. Other processes on the same file notice registry changes by polling the
//!   `registry_version` counter (every 250 ms).
//! - **PostgreSQL**: for several gateway instances sharing one registry. Changes are announced
//!   with `LISTEN/NOTIFY` (a trigger on `registry_version`), with a slower poll as a safety net.
//!
//! The SQL is the same text on both (TEXT, BIGINT epoch milliseconds, 0/1 flags, `$n`
//! parameters); only the migrations differ (`migrations/sqlite`, `migrations/postgres`). Every
//! registry change bumps `registry_version` as the first statement of its transaction, which also
//! takes the write lock up front (SQLite) and serialises registry writers (PostgreSQL).
//!
//! [`authz`]: the store as the authorization core's ports — [`tw_authz::RegistrySource`] (the
//! account registry, auto-provisioning) and [`tw_authz::AuditSink`] ([`StoreAuditSink`]).
//!
//! `vault`: the token vault's tables as [`VaultTables`], the implementation of the vault's storage
//! port ([`tw_vault_port::VaultStore`]; its row types are re-exported here): sealed tokens with
//! typed CRUD, token updates guarded by a row version (and fenced by a refresh lease, as are a
//! duplicate's inserts: the lease fence is `vault.rs`'s `require_lease!`), pending consents taken
//! exactly once (`DELETE ... RETURNING`), and per-lineage refresh leases (one refresh at a time
//! across instances). This crate only stores sealed bytes; it never sees a token in clear.
//!
//! [`health`]: [`health::StoreHealth`], a background pinger whose last answer readiness probes
//! read, so a probe never waits on the database. While it counts the store as down (two failed
//! pings in a row), the registry port of the pinged store fails fast (`storage_unavailable` at
//! once, not after the pool's connect timeout) and the registry cache serves what it holds; the
//! next ping that answers lets lookups through again.
//!
//! The audit log holds the gateway's decisions and the admin changes ([`AuditKind`]); an admin
//! change made through [`Store::as_admin`] commits with its audit row (who: subject, username,
//! client; what: action, object) in one transaction.
//!
//! Admin input is bounded: identifiers, names and descriptions have maximum lengths
//! ([`MAX_DISPLAY_NAME_LEN`], ...) and hold no control characters or bidirectional overrides,
//! so nothing stored can drive an operator's terminal (400 `invalid_account` / `invalid_role` /
//! `invalid_permission`, the context's `field` naming the field).
//!
//! Every method returns a [`tw_core::Error`] with a stable code, each a constant in [`codes`]:
//! `account_not_found`, `role_not_found` (404), `account_exists`, `role_in_use`,
//! `storage_conflict` (409), `invalid_account`, `invalid_role`, `invalid_permission`,
//! `invalid_limit` (400), `storage_unavailable` (503, retryable), `storage_error` (500); at open
//! also `storage_auth_failed`, `storage_database_missing`, `storage_migration_failed`. Messages
//! never contain the database password.

pub mod authz;
pub mod codes;
mod error;
pub mod health;
mod model;
mod queries;
mod settings;
mod store;
mod vault;

pub use authz::{AUTO_PROVISION_CREATED_BY, StoreAuditSink};
pub use model::{
    AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, Account, AdminActor, AuditKind, AuditOutcome, AuditQuery,
    AuditRecord, Backend, MAX_CODE_LEN, MAX_CREATED_BY_LEN, MAX_DESCRIPTION_LEN,
    MAX_DISPLAY_NAME_LEN, MAX_IDENTIFIER_LEN, MAX_ISSUER_LEN, MAX_LIST_LEN, NewAccount,
    PrincipalKind, Role,
};
pub use settings::{DEFAULT_STORAGE_URL, StorageConfig, StorageKind, redact_url};
pub use store::{AdminWrites, Store};
pub use tw_vault_port::{
    FencedWrite, InsertFence, PendingConsent, Sealed, TokenUpdate, VAULT_PAGE_MAX, VaultRow,
    VaultStatus, VaultStore, VaultTokenType,
};
pub use vault::VaultTables;
