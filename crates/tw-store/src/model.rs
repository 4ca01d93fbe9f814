//! The values the store reads and writes.

use serde::{Serialize, Serializer};
use tw_core::{Error, UnixTime};

/// Which database a [`Store`](crate::Store) talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

pub(crate) fn ser_time<S: Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.as_millis())
}

/// A registered service account. Identity is `issuer` + `subject`, or `issuer` + `client_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: String,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub display_name: Option<String>,
    pub enabled: bool,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Epoch milliseconds in JSON.
    #[serde(serialize_with = "ser_time")]
    pub created_at: UnixTime,
    #[serde(serialize_with = "ser_time")]
    pub updated_at: UnixTime,
    /// Who created it: `cli`, `api:<subject>`, `auto-provision`, ...
    pub created_by: String,
}

/// What [`Store::create_account`](crate::Store::create_account) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub display_name: Option<String>,
    pub enabled: bool,
    /// Roles granted at creation; each must exist.
    pub roles: Vec<String>,
    pub created_by: String,
}

impl NewAccount {
    /// An enabled account known by `issuer` + `subject`, created by `created_by`.
    pub fn with_subject(issuer: &str, subject: &str, created_by: &str) -> Self {
        Self {
            issuer: issuer.into(),
            subject: Some(subject.into()),
            client_id: None,
            display_name: None,
            enabled: true,
            roles: Vec::new(),
            created_by: created_by.into(),
        }
    }
    /// An enabled account known by `issuer` + `client_id`, created by `created_by`.
    pub fn with_client_id(issuer: &str, client_id: &str, created_by: &str) -> Self {
        Self {
            subject: None,
            client_id: Some(client_id.into()),
            ..Self::with_subject(issuer, "", created_by)
        }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |m: &str| Error::bad_request("invalid_account", m.to_owned());
        if self.issuer.trim().is_empty() {
            return Err(bad("an account needs an issuer"));
        }
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !present(&self.subject) && !present(&self.client_id) {
            return Err(bad("an account needs a subject or a client id (or both)"));
        }
        if self.created_by.trim().is_empty() {
            return Err(bad("`created_by` must say who created the account"));
        }
        Ok(())
    }
}

/// A role: a name and the permission codes it grants (`attributes:read`, `events:*`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    /// Sorted, stored verbatim (wildcards included).
    pub permissions: Vec<String>,
}

/// Who made an audited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "user" => Ok(PrincipalKind::User),
            "service_account" => Ok(PrincipalKind::ServiceAccount),
            other => Err(corrupt("principal_kind", other)),
        }
    }
}

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Allow,
    Deny,
    /// Would have been denied; let through because the rule runs in dry-run mode.
    DryRunDeny,
    RateLimited,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allow => "allow",
            AuditOutcome::Deny => "deny",
            AuditOutcome::DryRunDeny => "dry_run_deny",
            AuditOutcome::RateLimited => "rate_limited",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "allow" => Ok(AuditOutcome::Allow),
            "deny" => Ok(AuditOutcome::Deny),
            "dry_run_deny" => Ok(AuditOutcome::DryRunDeny),
            "rate_limited" => Ok(AuditOutcome::RateLimited),
            other => Err(corrupt("outcome", other)),
        }
    }
}

fn corrupt(column: &str, value: &str) -> Error {
    Error::internal(
        "storage_error",
        format!("unexpected value `{value}` in audit_log.{column}"),
    )
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Assigned by the database; ignored by [`Store::append_audit`](crate::Store::append_audit).
    pub id: Option<i64>,
    #[serde(serialize_with = "ser_time")]
    pub at: UnixTime,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub principal_kind: PrincipalKind,
    pub method: String,
    pub path: String,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// Permission codes the decision relied on (stored space-joined).
    pub permissions_used: Vec<String>,
    pub outcome: AuditOutcome,
    pub reason: Option<String>,
    /// Which gateway instance decided.
    pub instance: String,
}

pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 10_000;

/// Filters for [`Store::query_audit`](crate::Store::query_audit); results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Matches the subject or the client id.
    pub principal: Option<String>,
    pub outcome: Option<AuditOutcome>,
    /// Inclusive.
    pub since: Option<UnixTime>,
    /// Exclusive.
    pub until: Option<UnixTime>,
    /// Default [`AUDIT_DEFAULT_LIMIT`], at most [`AUDIT_MAX_LIMIT`].
    pub limit: Option<u32>,
}
