//! The values the store reads and writes.

use crate::codes;
use serde::{Serialize, Serializer};
use tw_core::text::{is_terminal_unsafe, terminal_cell};
use tw_core::{Error, UnixTime};

/// Longest issuer (characters): an URL.
pub const MAX_ISSUER_LEN: usize = 1024;
/// Longest subject or client id (OpenID Connect bounds `sub` at 255 ASCII characters).
pub const MAX_IDENTIFIER_LEN: usize = 255;
/// Longest account display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
/// Longest role description.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// Longest role name or permission code.
pub const MAX_CODE_LEN: usize = 200;
/// Longest `created_by`.
pub const MAX_CREATED_BY_LEN: usize = 255;
/// Most roles granted at creation, and most permission codes of one role.
pub const MAX_LIST_LEN: usize = 256;

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
    /// Who created it: `cli`, `api:user:<username>`, `api:service_account:<client id>`,
    /// `auto-provision`, ...
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

    /// Every field bounded and free of control characters (400 `invalid_account` naming the
    /// field), an issuer and a subject or client id present.
    pub(crate) fn check(&self) -> Result<(), Error> {
        const CODE: &str = codes::INVALID_ACCOUNT;
        let bad = |field: &'static str, m: &str| {
            Error::bad_request(CODE, m.to_owned()).with("field", field)
        };
        if self.issuer.trim().is_empty() {
            return Err(bad("issuer", "an account needs an issuer"));
        }
        check_text(CODE, "issuer", &self.issuer, MAX_ISSUER_LEN)?;
        for (field, value) in [("subject", &self.subject), ("client_id", &self.client_id)] {
            if let Some(v) = value {
                check_text(CODE, field, v, MAX_IDENTIFIER_LEN)?;
            }
        }
        if let Some(name) = &self.display_name {
            check_text(CODE, "display_name", name, MAX_DISPLAY_NAME_LEN)?;
        }
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !present(&self.subject) && !present(&self.client_id) {
            return Err(bad(
                "subject",
                "an account needs a subject or a client id (or both)",
            ));
        }
        if self.roles.len() > MAX_LIST_LEN {
            return Err(bad(
                "roles",
                &format!("at most {MAX_LIST_LEN} roles, not {}", self.roles.len()),
            ));
        }
        for role in &self.roles {
            check_code(codes::INVALID_ROLE, "roles", "role name", role)?;
        }
        if self.created_by.trim().is_empty() {
            return Err(bad(
                "created_by",
                "`created_by` must say who created the account",
            ));
        }
        check_text(CODE, "created_by", &self.created_by, MAX_CREATED_BY_LEN)?;
        Ok(())
    }
}

/// Free text an operator will read in a terminal: at most `max` characters, no control
/// characters or bidirectional overrides (400 `code`, naming `field`). The message quotes at
/// most the start of the value, escaped.
pub(crate) fn check_text(
    code: &'static str,
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), Error> {
    let len = value.chars().count();
    let problem = if len > max {
        format!("`{field}` must be at most {max} characters, not {len}")
    } else if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| is_terminal_unsafe(*c))
    {
        format!(
            "`{field}` must not contain control characters or bidirectional overrides (U+{:04X} at character {}): `{}`",
            u32::from(c),
            i + 1,
            terminal_cell(value, 64)
        )
    } else {
        return Ok(());
    };
    Err(Error::bad_request(code, problem).with("field", field))
}

/// Role names and permission codes: 1 to [`MAX_CODE_LEN`] characters, no whitespace (audit rows
/// space-join codes) and no control characters (400 `code`, naming `field`).
pub(crate) fn check_code(
    code: &'static str,
    field: &'static str,
    what: &str,
    value: &str,
) -> Result<(), Error> {
    let len = value.chars().count();
    if len == 0
        || len > MAX_CODE_LEN
        || value
            .chars()
            .any(|c| c.is_whitespace() || is_terminal_unsafe(c))
    {
        return Err(Error::bad_request(
            code,
            format!(
                "{what} `{}` must be 1 to {MAX_CODE_LEN} characters without spaces or control characters",
                terminal_cell(value, 64)
            ),
        )
        .with("field", field));
    }
    Ok(())
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

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An authorization decision of the gateway.
    #[default]
    Decision,
    /// A change made through the admin API: who (subject, username, client), `action`, `object`.
    Admin,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Decision => "decision",
            AuditKind::Admin => "admin",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "decision" => Ok(AuditKind::Decision),
            "admin" => Ok(AuditKind::Admin),
            other => Err(corrupt("kind", other)),
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
        codes::STORAGE_ERROR,
        format!("unexpected value `{value}` in audit_log.{column}"),
    )
}

/// One audited decision, or one admin change ([`AuditKind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Assigned by the database; ignored by [`Store::append_audit`](crate::Store::append_audit).
    pub id: Option<i64>,
    pub kind: AuditKind,
    #[serde(serialize_with = "ser_time")]
    pub at: UnixTime,
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
    /// Permission codes the decision relied on (stored space-joined).
    pub permissions_used: Vec<String>,
    pub outcome: AuditOutcome,
    pub reason: Option<String>,
    /// Which gateway instance decided.
    pub instance: String,
    /// Admin changes: `account.create`, `account.grant`, `role.put`, ...
    pub action: Option<String>,
    /// Admin changes: the account id (with the role for grants: `<id> <role>`) or role name.
    pub object: Option<String>,
}

pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 10_000;

/// Filters for [`Store::query_audit`](crate::Store::query_audit); results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Matches the subject, the username or the client id.
    pub principal: Option<String>,
    /// Decisions or admin changes; `None`: both.
    pub kind: Option<AuditKind>,
    pub outcome: Option<AuditOutcome>,
    /// Inclusive.
    pub since: Option<UnixTime>,
    /// Exclusive.
    pub until: Option<UnixTime>,
    /// Default [`AUDIT_DEFAULT_LIMIT`], at most [`AUDIT_MAX_LIMIT`].
    pub limit: Option<u32>,
}

/// Who makes an admin change, as the audit row names them: a verified token's issuer, subject,
/// username and client, and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminActor {
    pub issuer: String,
    pub subject: Option<String>,
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub principal_kind: PrincipalKind,
    /// The grant that admitted the caller (`tokenwarden:admin`, `*`, ...).
    pub permissions_used: Vec<String>,
    /// The HTTP method and path of the change.
    pub method: String,
    pub path: String,
    /// Which instance served it.
    pub instance: String,
}

impl AdminActor {
    /// The audit row of a change `action` on `object` at `at`.
    pub(crate) fn record(&self, at: UnixTime, action: &str, object: &str) -> AuditRecord {
        AuditRecord {
            id: None,
            kind: AuditKind::Admin,
            at,
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            username: self.username.clone(),
            client_id: self.client_id.clone(),
            principal_kind: self.principal_kind,
            method: self.method.clone(),
            path: self.path.clone(),
            rule: None,
            permissions_used: self.permissions_used.clone(),
            outcome: AuditOutcome::Allow,
            reason: None,
            instance: self.instance.clone(),
            action: Some(action.to_owned()),
            object: Some(object.to_owned()),
        }
    }
}
