//! The admin API's request and response bodies: its own types, converted from the store's rows
//! (`From`), so a change of storage never changes the API silently. The OpenAPI document is
//! generated from them ([`crate::openapi`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A registered service account. Identity is `issuer` + `subject`, or `issuer` + `client_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Account {
    /// A UUID.
    pub id: String,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub display_name: Option<String>,
    pub enabled: bool,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Epoch milliseconds.
    #[schema(format = Int64)]
    pub created_at: i64,
    /// Epoch milliseconds.
    #[schema(format = Int64)]
    pub updated_at: i64,
    /// Who created it: `cli`, `api:user:<username>`, `api:service_account:<client id>`,
    /// `auto-provision`, ...
    pub created_by: String,
}

impl From<tw_store::Account> for Account {
    fn from(a: tw_store::Account) -> Self {
        Self {
            id: a.id,
            issuer: a.issuer,
            subject: a.subject,
            client_id: a.client_id,
            display_name: a.display_name,
            enabled: a.enabled,
            roles: a.roles,
            created_at: a.created_at.as_millis(),
            updated_at: a.updated_at.as_millis(),
            created_by: a.created_by,
        }
    }
}

/// `POST /v1/accounts`: an issuer plus a subject or a client id (or both); no value may hold
/// control characters or bidirectional overrides.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[schema(max_length = 1024)]
    pub issuer: String,
    #[schema(max_length = 255)]
    pub subject: Option<String>,
    #[schema(max_length = 255)]
    pub client_id: Option<String>,
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub enabled: bool,
    /// Roles granted at creation; each must exist.
    #[serde(default)]
    pub roles: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A role: a name and the permission codes it grants (`attributes:read`, `events:*`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    /// Sorted, stored verbatim (wildcards included).
    pub permissions: Vec<String>,
}

impl From<tw_store::Role> for Role {
    fn from(r: tw_store::Role) -> Self {
        Self {
            name: r.name,
            description: r.description,
            permissions: r.permissions,
        }
    }
}

/// `PUT /v1/roles/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Permission codes; wildcards `events:*` and `*` allowed (at most 256, each at most 200
    /// characters).
    pub permissions: Vec<String>,
}

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An authorization decision of the gateway.
    Decision,
    /// A change made through the admin API.
    Admin,
}

impl From<tw_store::AuditKind> for AuditKind {
    fn from(k: tw_store::AuditKind) -> Self {
        match k {
            tw_store::AuditKind::Decision => Self::Decision,
            tw_store::AuditKind::Admin => Self::Admin,
        }
    }
}

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Allow,
    Deny,
    /// Would have been denied; let through because the rule runs in dry-run mode.
    DryRunDeny,
    RateLimited,
}

impl From<tw_store::AuditOutcome> for AuditOutcome {
    fn from(o: tw_store::AuditOutcome) -> Self {
        match o {
            tw_store::AuditOutcome::Allow => Self::Allow,
            tw_store::AuditOutcome::Deny => Self::Deny,
            tw_store::AuditOutcome::DryRunDeny => Self::DryRunDeny,
            tw_store::AuditOutcome::RateLimited => Self::RateLimited,
        }
    }
}

/// Who made an audited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl From<tw_store::PrincipalKind> for PrincipalKind {
    fn from(k: tw_store::PrincipalKind) -> Self {
        match k {
            tw_store::PrincipalKind::User => Self::User,
            tw_store::PrincipalKind::ServiceAccount => Self::ServiceAccount,
        }
    }
}

/// One audited decision, or one admin change (`kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: Option<i64>,
    pub kind: AuditKind,
    /// Epoch milliseconds.
    #[schema(format = Int64)]
    pub at: i64,
    pub issuer: String,
    pub subject: Option<String>,
    /// `preferred_username` (admin changes: the person who made it).
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub principal_kind: PrincipalKind,
    pub method: String,
    pub path: String,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// Permission codes the decision relied on.
    pub permissions_used: Vec<String>,
    pub outcome: AuditOutcome,
    pub reason: Option<String>,
    /// Which gateway instance decided.
    pub instance: String,
    /// Admin changes: `account.create`, `account.grant`, `role.put`, ...
    pub action: Option<String>,
    /// Admin changes: the account id (`<id> <role>` for grants) or the role name.
    pub object: Option<String>,
}

impl From<tw_store::AuditRecord> for AuditRecord {
    fn from(r: tw_store::AuditRecord) -> Self {
        Self {
            id: r.id,
            kind: r.kind.into(),
            at: r.at.as_millis(),
            issuer: r.issuer,
            subject: r.subject,
            username: r.username,
            client_id: r.client_id,
            principal_kind: r.principal_kind.into(),
            method: r.method,
            path: r.path,
            rule: r.rule,
            permissions_used: r.permissions_used,
            outcome: r.outcome.into(),
            reason: r.reason,
            instance: r.instance,
            action: r.action,
            object: r.object,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tw_core::UnixTime;

    /// The API type serializes exactly as the store row always did (the JSON the API served).
    #[test]
    fn account_json_is_the_rows_json() {
        let row = tw_store::Account {
            id: "a1".into(),
            issuer: "https://idp".into(),
            subject: None,
            client_id: Some("app".into()),
            display_name: None,
            enabled: true,
            roles: vec!["r".into()],
            created_at: UnixTime::from_millis(1_700_000_000_123),
            updated_at: UnixTime::from_millis(1_700_000_000_456),
            created_by: "cli".into(),
        };
        let before = serde_json::to_value(&row).expect("json");
        let after = serde_json::to_value(Account::from(row)).expect("json");
        assert_eq!(before, after);
    }
}
