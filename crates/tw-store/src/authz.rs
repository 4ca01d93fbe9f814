//! The store as the ports of the authorization core (`tw-authz`): storage implements the policy's
//! traits, so `tw-authz` stays free of SQL and `tw-store` of policy.
//!
//! - [`RegistrySource`] for [`Store`]: `find` looks the account up by issuer + subject, else
//!   issuer + client id — the key carries a client id only for service accounts
//!   ([`AccountKey::of`]), so a user signing in through a registered client never matches that
//!   client's account — and answers its enabled flag, its role names and the union of its roles'
//!   stored permission codes ([`Store::permissions_of`], wildcards as stored). The authorizer also
//!   maps the role names through `[gateway.authz.roles]`, so a role may be defined in either
//!   place. `provision` creates the account (`created_by = "auto-provision"`) with the configured
//!   role, creating that role (without stored permissions: they come from
//!   `[gateway.authz.roles]`) when the database does not have it yet. It is idempotent: when
//!   another instance (or a concurrent request) created the account first, `account_exists` is
//!   answered with the existing account. A username that cannot be stored as a display name
//!   (too long, control characters) is left out.
//!
//!   While a [`crate::health::StoreHealth`] pinger of this store counts it as down (two failed pings in a row), both
//!   answer `storage_unavailable` (503, retryable, `Retry-After` 1 s) at once, without waiting
//!   for the pool's connect timeout; the registry cache in front of them keeps serving its
//!   entries for their TTL. The next ping that answers lets them through again.
//! - [`StoreAuditSink`]: [`AuditEvent`]s → [`AuditRecord`]s, one batch insert per queue drain,
//!   each decision stored once by its event id (`audit_log.event_id`, unique), so the audit
//!   writer's replay of its spool after a crash adds no row twice.

use crate::codes;
use crate::model::{
    AuditKind, AuditOutcome as StoredOutcome, AuditRecord, MAX_DISPLAY_NAME_LEN, NewAccount,
    PrincipalKind, check_text,
};
use crate::store::Store;
use futures::future::BoxFuture;
use tw_authz::{
    AccountKey, AuditEvent, AuditOutcome, AuditSink, ProvisionRequest, RegistryAccount,
    RegistrySource,
};
use tw_core::{Error, Result};

/// `created_by` of the accounts made by auto-provisioning.
pub const AUTO_PROVISION_CREATED_BY: &str = "auto-provision";

/// At most one audit transaction per this long (per gateway instance): the audit writer keeps
/// this pace ([`AuditSink::pace`]) on its clock.
const AUDIT_WRITE_PACE: std::time::Duration = std::time::Duration::from_millis(20);

/// The description of a role created by auto-provisioning.
const PROVISIONED_ROLE_DESCRIPTION: &str =
    "created by auto-provisioning; permissions from [gateway.authz.roles]";

impl Store {
    /// The registry's view of an account (see the module documentation).
    async fn registry_account(&self, key: &AccountKey) -> Result<Option<RegistryAccount>> {
        let Some(account) = self
            .find_account(key.issuer(), key.subject(), key.client_id())
            .await?
        else {
            return Ok(None);
        };
        let permissions = match self.permissions_of(&account.id).await {
            Ok(p) => p,
            // Deleted between the two reads: unknown now.
            Err(e) if e.code() == codes::ACCOUNT_NOT_FOUND => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(RegistryAccount {
            id: account.id,
            enabled: account.enabled,
            permissions: permissions.into_iter().collect(),
            roles: account.roles,
        }))
    }

    async fn provision_account(&self, request: &ProvisionRequest) -> Result<RegistryAccount> {
        let display_name = request.username.clone().filter(|u| {
            check_text(
                codes::INVALID_ACCOUNT,
                "display_name",
                u,
                MAX_DISPLAY_NAME_LEN,
            )
            .is_ok()
        });
        let new = NewAccount {
            issuer: request.key.issuer().to_owned(),
            subject: request.key.subject().map(str::to_owned),
            client_id: request.key.client_id().map(str::to_owned),
            display_name,
            enabled: true,
            roles: vec![request.role.clone()],
            created_by: AUTO_PROVISION_CREATED_BY.to_owned(),
        };
        let mut created = self.create_account(new.clone()).await;
        if matches!(&created, Err(e) if e.code() == codes::ROLE_NOT_FOUND) {
            self.ensure_role(&request.role).await?;
            created = self.create_account(new).await;
        }
        match created {
            Ok(_) => {}
            // Another instance or request was first: theirs is the account.
            Err(e) if e.code() == codes::ACCOUNT_EXISTS => {}
            Err(e) => return Err(e),
        }
        self.registry_account(&request.key).await?.ok_or_else(|| {
            Error::internal(
                codes::STORAGE_ERROR,
                "the provisioned account cannot be found again",
            )
        })
    }

    /// Creates `role` without stored permissions unless it exists.
    async fn ensure_role(&self, role: &str) -> Result<()> {
        match self.get_role(role).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == codes::ROLE_NOT_FOUND => {
                self.upsert_role(role, Some(PROVISIONED_ROLE_DESCRIPTION), &[])
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl RegistrySource for Store {
    fn find<'a>(
        &'a self,
        key: &'a AccountKey,
    ) -> BoxFuture<'a, std::result::Result<Option<RegistryAccount>, Error>> {
        Box::pin(async move {
            self.fail_fast_if_down("find account")?;
            self.registry_account(key).await
        })
    }

    fn provision<'a>(
        &'a self,
        request: &'a ProvisionRequest,
    ) -> BoxFuture<'a, std::result::Result<RegistryAccount, Error>> {
        Box::pin(async move {
            self.fail_fast_if_down("provision account")?;
            self.provision_account(request).await
        })
    }
}

/// Writes audit events into the store's audit log, naming the gateway instance that decided.
#[derive(Debug, Clone)]
pub struct StoreAuditSink {
    store: Store,
    instance: String,
}

impl StoreAuditSink {
    /// `instance`: this gateway's name in the `instance` column (e.g. the host name).
    pub fn new(store: Store, instance: impl Into<String>) -> Self {
        Self {
            store,
            instance: instance.into(),
        }
    }

    /// The row for `event`. An auto-provisioning event is stored with outcome `allow`, reason
    /// `auto_provisioned` and the granted role as its permission; a path the forward-auth caller
    /// did not give is stored empty.
    pub fn record(&self, event: &AuditEvent) -> AuditRecord {
        let outcome = match event.outcome {
            AuditOutcome::Allow | AuditOutcome::Provisioned => StoredOutcome::Allow,
            AuditOutcome::Deny => StoredOutcome::Deny,
            AuditOutcome::DryRunDeny => StoredOutcome::DryRunDeny,
            AuditOutcome::RateLimited => StoredOutcome::RateLimited,
        };
        let principal_kind = if event.principal.starts_with("service_account:") {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        };
        AuditRecord {
            id: None,
            kind: AuditKind::Decision,
            at: event.time,
            issuer: event.issuer.clone(),
            subject: event.subject.clone(),
            username: None,
            client_id: event.client_id.clone(),
            principal_kind,
            method: event.method.clone(),
            path: event.path.clone().unwrap_or_default(),
            rule: event.rule.clone(),
            permissions_used: event.permissions.clone(),
            outcome,
            reason: Some(event.reason.clone()),
            instance: self.instance.clone(),
            action: None,
            object: None,
        }
    }
}

impl AuditSink for StoreAuditSink {
    /// One transaction per batch, each decision stored once by its id (a replayed batch adds
    /// nothing twice). While a health pinger sees the store down, fails at once (the audit
    /// writer keeps the batch, spools and retries it) instead of waiting for the pool.
    fn write<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, std::result::Result<(), Error>> {
        Box::pin(async move {
            self.store.fail_fast_if_down("append audit")?;
            let records: Vec<AuditRecord> = events.iter().map(|e| self.record(e)).collect();
            let rows: Vec<(Option<&str>, &AuditRecord)> = events
                .iter()
                .map(|e| e.id.as_deref())
                .zip(&records)
                .collect();
            self.store.insert_audit(&rows).await
        })
    }

    /// The writer starts at most one transaction per 20 ms: meanwhile the queue fills, so the
    /// next batch is bigger and the database sees a few large transactions instead of one per
    /// request.
    fn pace(&self) -> std::time::Duration {
        AUDIT_WRITE_PACE
    }
}
