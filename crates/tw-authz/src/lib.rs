//! Authorization for `tokenwarden gateway`: after a token is verified, may this principal make
//! this request?
//!
//! - [`principal`]: user or service account, roles from the claims (`realm_access.roles`,
//!   `resource_access.<client>.roles` as `client:role`, paths configurable). The token
//!   (`VerifiedToken`) and [`Principal`] types are `tw-claims`'; this crate depends on no HTTP
//!   client and no JOSE library.
//! - Permissions from the configured role map and/or the [`registry`] ([`RegistrySource`],
//!   implemented by `tw-store`; [`CachedRegistry`] keeps lookups off the hot path), combinable
//!   per issuer; wildcard grants ([`permission`]).
//! - Ordered route [`rules`]: first match wins, no match is denied (`no_matching_rule`).
//! - Unknown principals are denied (`unknown_principal`) or auto-provisioned.
//! - Users may pass through (`users = "pass_through"`, per section or rule): on a route a rule
//!   matches, a token that names its user is let through without permissions, for an upstream
//!   that authorizes its users itself; service accounts are always authorized here.
//! - Per-principal rate limits ([`ratelimit`]); every decision audited ([`audit`]), never
//!   blocking the request.
//! - The `testing` feature adds test doubles for dependents' tests: `MemoryRegistry` and
//!   `MemoryAuditSink`.
//!
//! [`Authz::decide`] gives an [`AuthzDecision`]; `tw-gateway` turns it into its verdict.
//! [`Authz::resolve`] gives what a token's principal holds by the same sources (no rules), for
//! the admin API. Registry lookups use [`AccountKey::of`]: a client id only for service
//! accounts, so users signing in through a registered client never hold its account.

pub mod audit;
mod metrics_names;
pub mod pattern;
pub mod permission;
pub mod principal;
pub mod ratelimit;
pub mod registry;
pub mod rules;
pub mod settings;

#[cfg(any(test, feature = "testing"))]
pub use audit::MemoryAuditSink;
pub use audit::{
    AuditEvent, AuditOutcome, AuditQueue, AuditSettings, AuditSink, SpoolSettings, TracingAuditSink,
};
pub use metrics_names::*;
pub use pattern::PathPattern;
pub use permission::{PermissionSet, grant_satisfies};
pub use principal::{Principal, PrincipalExtractor, PrincipalKind};
pub use ratelimit::PrincipalLimiter;
#[cfg(any(test, feature = "testing"))]
pub use registry::MemoryRegistry;
pub use registry::{AccountKey, CachedRegistry, ProvisionRequest, RegistryAccount, RegistrySource};
pub use rules::{Requirement, Rule, RuleSet};

use settings::{AuthzConfig, AuthzMode, PermissionSourceKind, UserAuthorization};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tw_claims::VerifiedToken;
use tw_core::{Clock, Error, SystemClock};

/// The request being authorized.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    pub method: &'a str,
    /// The host the request was sent to (lower case, no port); rules with `hosts` match only it.
    pub host: Option<&'a str>,
    /// The path without query; `None` when a forward-auth caller did not say (no rule matches).
    pub path: Option<&'a str>,
    pub token: &'a VerifiedToken,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzDecision {
    /// Let through; `permissions` (everything granted to the principal; none for a user passed
    /// through, audited with reason `user_pass_through`) go upstream.
    Allow {
        permissions: PermissionSet,
        rule: String,
    },
    /// Refused (403); `code` is `insufficient_scope`, `unknown_principal`, `no_matching_rule`
    /// or `account_disabled`.
    Deny {
        code: &'static str,
        description: String,
        rule: Option<String>,
        /// The permission(s) that would be needed.
        scope: Option<String>,
    },
    /// 429 + `Retry-After`.
    RateLimited { retry_after: Duration },
    /// The registry could not answer (503 + `Retry-After`): not the caller's fault.
    Unavailable {
        description: String,
        retry_after: Duration,
    },
}

/// A registry and the channel of its version.
type RegistryWithVersion = (Arc<dyn RegistrySource>, Option<watch::Receiver<i64>>);

/// Builds an [`Authz`].
pub struct AuthzBuilder {
    cfg: AuthzConfig,
    clock: Arc<dyn Clock>,
    registry: Option<RegistryWithVersion>,
    audit: Option<Arc<dyn AuditSink>>,
    case_insensitive_paths: bool,
}

impl AuthzBuilder {
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The account registry, with the version channel that invalidates its cache.
    pub fn registry(
        mut self,
        source: Arc<dyn RegistrySource>,
        version: Option<watch::Receiver<i64>>,
    ) -> Self {
        self.registry = Some((source, version));
        self
    }

    /// Rule paths match regardless of case (for upstreams that route case-insensitively; the
    /// gateway's `[gateway.paths] case_insensitive`).
    pub fn case_insensitive_paths(mut self, yes: bool) -> Self {
        self.case_insensitive_paths = yes;
        self
    }

    /// Where audit events go (default: the tracing log). Only with a sink given here does the
    /// audit writer use its spool (`[gateway.authz.audit] spool_path`).
    pub fn audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Compiles the rules and starts the audit writer (needs a Tokio runtime). Fails when the
    /// configuration names the registry as a source but none was given.
    pub fn build(self) -> Result<Authz, Error> {
        let cfg = self.cfg;
        let uses_registry = cfg.sources.contains(&PermissionSourceKind::Registry)
            || cfg
                .issuer_sources
                .values()
                .any(|s| s.contains(&PermissionSourceKind::Registry));
        if uses_registry && self.registry.is_none() {
            return Err(Error::config(
                "registry_unavailable",
                "gateway.authz.sources: the registry is a permission source but no account registry is configured",
            )
            .with("key", "gateway.authz.sources"));
        }
        let rules = RuleSet::new(&cfg.rules, self.case_insensitive_paths)
            .map_err(tw_core::SettingsProblem::into_error)?;
        let registry = self.registry.map(|(src, version)| {
            CachedRegistry::new(
                src,
                cfg.registry_cache.ttl,
                cfg.registry_cache.max_entries,
                version,
            )
        });
        let mut audit_settings = AuditSettings::from(&cfg.audit);
        let sink: Arc<dyn AuditSink> = match self.audit {
            Some(sink) => sink,
            None => {
                // The log never fails, and a spool left by a database sink must not be replayed
                // into it (the doctor builds an authorizer of the gateway's config this way).
                audit_settings.spool = None;
                Arc::new(TracingAuditSink)
            }
        };
        let (audit, _task) = AuditQueue::start_with(sink, audit_settings, self.clock.clone())?;
        Ok(Authz {
            dry_run: cfg.mode == AuthzMode::DryRun,
            extractor: PrincipalExtractor::new(&cfg),
            roles: cfg.roles.clone().into_iter().collect(),
            sources: cfg.sources.clone(),
            issuer_sources: cfg.issuer_sources.clone(),
            auto_provision: cfg.auto_provision.clone(),
            users: cfg.users,
            permissions_header: cfg.permissions_header.clone(),
            rules,
            limiter: PrincipalLimiter::new(
                cfg.rate_limit.as_ref(),
                &cfg.rate_limits,
                self.clock.clone(),
            ),
            registry,
            audit,
            clock: self.clock,
        })
    }
}

/// The decision core.
pub struct Authz {
    dry_run: bool,
    extractor: PrincipalExtractor,
    roles: HashMap<String, Vec<String>>,
    sources: Vec<PermissionSourceKind>,
    issuer_sources: BTreeMap<String, Vec<PermissionSourceKind>>,
    auto_provision: Option<settings::AutoProvisionConfig>,
    users: UserAuthorization,
    permissions_header: String,
    rules: RuleSet,
    limiter: PrincipalLimiter,
    registry: Option<CachedRegistry>,
    audit: AuditQueue,
    clock: Arc<dyn Clock>,
}

/// Records one audit event: rule, permissions, outcome, reason.
type AuditFn<'x> = dyn Fn(Option<&str>, Vec<String>, AuditOutcome, &str) + Sync + 'x;

/// What a principal holds, from the sources configured for its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// From the role map (token roles, when the issuer's sources include `roles`) and the
    /// registry account (when they include `registry`).
    pub permissions: PermissionSet,
    /// Some role mapping or a registry row made the principal known.
    pub known: bool,
    /// The registry account that applied, if any.
    pub account: Option<String>,
}

/// The answer of [`Authz::resolve`].
#[derive(Debug, Clone)]
pub enum Resolution {
    Grants(Grants),
    /// The principal's registry account is disabled: it holds nothing.
    Disabled {
        account: String,
    },
    /// The registry could not answer: not the caller's fault.
    Unavailable(Error),
}

/// `Retry-After` when the registry cannot answer.
const REGISTRY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Authz {
    pub fn builder(cfg: &AuthzConfig) -> AuthzBuilder {
        AuthzBuilder {
            cfg: cfg.clone(),
            clock: Arc::new(SystemClock),
            registry: None,
            audit: None,
            case_insensitive_paths: false,
        }
    }

    /// The configured header for granted permissions.
    pub fn permissions_header(&self) -> &str {
        &self.permissions_header
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The audit queue (its drop count).
    pub fn audit_queue(&self) -> &AuditQueue {
        &self.audit
    }

    /// Decides `req`. Never fails: every problem is a deny, 429 or 503 answer, and audited.
    pub async fn decide(&self, req: &AuthzRequest<'_>) -> AuthzDecision {
        let principal = self.extractor.principal(req.token);
        let audit = |rule: Option<&str>,
                     perms: Vec<String>,
                     outcome: AuditOutcome,
                     reason: &str| {
            metrics::counter!(METRIC_AUTHZ_DECISIONS, "outcome" => outcome.as_str(), "reason" => reason.to_owned())
                .increment(1);
            self.audit.push(AuditEvent {
                id: None,
                time: self.clock.now(),
                principal: principal.display(),
                issuer: principal.issuer.clone(),
                subject: principal.subject.clone(),
                client_id: principal.client_id.clone(),
                method: req.method.to_owned(),
                path: req.path.map(str::to_owned),
                rule: rule.map(str::to_owned),
                permissions: perms,
                outcome,
                reason: reason.to_owned(),
            });
        };

        // Rule matching is pure and cheap: done first so every decision, a 429 included, names
        // the rule. The rate limit comes before any registry lookup.
        let rule = self.rules.find(req.method, req.host, req.path);
        if let Err(retry_after) = self.limiter.check(
            &principal.key(),
            &[principal.client_id.as_deref(), principal.subject.as_deref()],
        ) {
            audit(
                rule.map(|r| r.name.as_str()),
                Vec::new(),
                AuditOutcome::RateLimited,
                "rate_limited",
            );
            tracing::info!(
                principal = %principal.display(),
                retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                "rate limited"
            );
            return AuthzDecision::RateLimited { retry_after };
        }

        let Some(rule) = rule else {
            let description = match req.path {
                Some(p) => format!("no authorization rule allows {} {p}", req.method),
                None => "the original request path is unknown, so no authorization rule can match"
                    .to_owned(),
            };
            return self.deny_or_dry_run(
                &audit,
                &principal,
                None,
                PermissionSet::new(),
                "no_matching_rule",
                description,
                None,
            );
        };
        let rule_name = rule.name.as_str();
        // Passing a user through skips the requirement, never the rule (deny by default stays)
        // nor the account's disabled flag; such a user is not provisioned, since nothing here
        // uses its grants.
        let pass_through = rule.users.unwrap_or(self.users) == UserAuthorization::PassThrough
            && principal.is_named_user();
        let provision: Option<&AuditFn<'_>> = (!pass_through).then_some(&audit);

        let grants = match self.grants_of(&principal, provision).await {
            Resolution::Grants(g) => g,
            Resolution::Disabled { .. } => {
                return self.deny_or_dry_run(
                    &audit,
                    &principal,
                    Some(rule_name),
                    PermissionSet::new(),
                    "account_disabled",
                    format!("the account of {} is disabled", principal.display()),
                    None,
                );
            }
            Resolution::Unavailable(e) => {
                metrics::counter!(METRIC_REGISTRY_ERRORS).increment(1);
                tracing::warn!(code = e.code(), error = %e, principal = %principal.display(), "account registry unavailable");
                audit(
                    Some(rule_name),
                    Vec::new(),
                    AuditOutcome::Deny,
                    "registry_unavailable",
                );
                return AuthzDecision::Unavailable {
                    description: "the account registry cannot be reached; retry later".into(),
                    retry_after: REGISTRY_RETRY_AFTER,
                };
            }
        };

        if pass_through {
            audit(
                Some(rule_name),
                Vec::new(),
                AuditOutcome::Allow,
                "user_pass_through",
            );
            // No permissions header: what this user may do is the upstream's decision.
            return AuthzDecision::Allow {
                permissions: PermissionSet::new(),
                rule: rule.name.clone(),
            };
        }

        let (used, missing) = match &rule.requirement {
            Requirement::Authenticated => (Vec::new(), None),
            _ if !grants.known => {
                return self.deny_or_dry_run(
                    &audit,
                    &principal,
                    Some(rule_name),
                    grants.permissions,
                    "unknown_principal",
                    format!(
                        "{} has no permissions: no role mapping and no registered account (rule {rule_name})",
                        principal.display()
                    ),
                    rule.requirement.scope(),
                );
            }
            Requirement::All(reqs) => {
                let missing: Vec<&str> = reqs
                    .iter()
                    .filter(|r| !grants.permissions.satisfies(r))
                    .map(String::as_str)
                    .collect();
                let mut used: Vec<String> = reqs
                    .iter()
                    .filter_map(|r| grants.permissions.grant_for(r).map(str::to_owned))
                    .collect();
                used.dedup();
                (used, (!missing.is_empty()).then(|| missing.join(" ")))
            }
            Requirement::Any(reqs) => {
                match reqs.iter().find_map(|r| grants.permissions.grant_for(r)) {
                    Some(g) => (vec![g.to_owned()], None),
                    None => (Vec::new(), Some(reqs.join(" "))),
                }
            }
        };
        if let Some(missing) = missing {
            let how = match rule.requirement {
                Requirement::Any(_) => "one of",
                _ => "",
            };
            return self.deny_or_dry_run(
                &audit,
                &principal,
                Some(rule_name),
                grants.permissions,
                "insufficient_scope",
                format!(
                    "rule {rule_name} requires {how}{}{missing}, which {} lacks",
                    if how.is_empty() { "" } else { " " },
                    principal.display()
                ),
                Some(missing),
            );
        }
        audit(Some(rule_name), used, AuditOutcome::Allow, "allowed");
        AuthzDecision::Allow {
            permissions: grants.permissions,
            rule: rule.name.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deny_or_dry_run(
        &self,
        audit: &AuditFn<'_>,
        principal: &Principal,
        rule: Option<&str>,
        permissions: PermissionSet,
        code: &'static str,
        description: String,
        scope: Option<String>,
    ) -> AuthzDecision {
        let required: Vec<String> = scope
            .as_deref()
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default();
        if self.dry_run {
            audit(rule, required, AuditOutcome::DryRunDeny, code);
            tracing::warn!(
                principal = %principal.display(),
                rule = rule.unwrap_or("-"),
                code,
                reason = %description,
                "dry run: this request would be denied"
            );
            return AuthzDecision::Allow {
                permissions,
                rule: rule.unwrap_or("none").to_owned(),
            };
        }
        audit(rule, required, AuditOutcome::Deny, code);
        tracing::info!(
            principal = %principal.display(),
            rule = rule.unwrap_or("-"),
            code,
            reason = %description,
            "authorization denied"
        );
        AuthzDecision::Deny {
            code,
            description,
            rule: rule.map(str::to_owned),
            scope,
        }
    }

    fn sources_for(&self, issuer: &str) -> &[PermissionSourceKind] {
        self.issuer_sources
            .get(issuer)
            .map_or(&self.sources, |s| s.as_slice())
    }

    fn map_roles<'r>(
        &self,
        roles: impl Iterator<Item = &'r String>,
        out: &mut PermissionSet,
    ) -> bool {
        let mut any = false;
        for role in roles {
            if let Some(perms) = self.roles.get(role) {
                any |= !perms.is_empty();
                out.extend(perms.iter().cloned());
            }
        }
        any
    }

    /// The principal of `token` and what it holds, by the same extraction, sources, role map and
    /// registry lookup as [`Authz::decide`], for callers that check a permission themselves
    /// (the admin API). No rule, rate limit or dry-run applies, nothing is audited and unknown
    /// principals are never provisioned.
    pub async fn resolve(&self, token: &VerifiedToken) -> (Principal, Resolution) {
        let principal = self.extractor.principal(token);
        let resolution = self.grants_of(&principal, None).await;
        (principal, resolution)
    }

    /// What `principal` holds. With `audit` (a decision), an unknown principal may be
    /// auto-provisioned, and that is audited.
    async fn grants_of(&self, principal: &Principal, audit: Option<&AuditFn<'_>>) -> Resolution {
        let mut permissions = PermissionSet::new();
        let mut known = false;
        let mut account_id = None;
        let sources = self.sources_for(&principal.issuer);
        if sources.contains(&PermissionSourceKind::Roles) {
            known |= self.map_roles(principal.roles.iter(), &mut permissions);
        }
        if sources.contains(&PermissionSourceKind::Registry)
            && let Some(registry) = &self.registry
        {
            // The one place a principal becomes a registry key: a client id only for service
            // accounts, so no user inherits the account of the client they signed in through.
            let key = AccountKey::of(principal);
            let account = match registry.find(&key).await {
                Ok(a) => a,
                Err(e) => return Resolution::Unavailable(e),
            };
            let account = match (account, &self.auto_provision, audit) {
                (Some(a), _, _) => Some(a),
                (None, Some(ap), Some(audit))
                    if !known && (principal.is_service_account() || !ap.service_accounts_only) =>
                {
                    let request = ProvisionRequest {
                        key,
                        username: principal.username.clone(),
                        service_account: principal.is_service_account(),
                        role: ap.role.clone(),
                    };
                    match registry.provision(&request).await {
                        Ok(a) => {
                            audit(
                                None,
                                vec![ap.role.clone()],
                                AuditOutcome::Provisioned,
                                "auto_provisioned",
                            );
                            tracing::info!(principal = %principal.display(), role = %ap.role, account = %a.id, "unknown principal provisioned");
                            Some(a)
                        }
                        // The token's identity cannot be stored (too long, control
                        // characters): it stays unknown, which is the caller's business.
                        Err(e) if e.kind() == tw_core::ErrorKind::BadRequest => {
                            tracing::warn!(principal = %principal.display(), code = e.code(), "unknown principal not provisioned: its identity cannot be stored");
                            None
                        }
                        Err(e) => return Resolution::Unavailable(e),
                    }
                }
                (None, _, _) => None,
            };
            if let Some(a) = account {
                if !a.enabled {
                    return Resolution::Disabled { account: a.id };
                }
                known = true;
                permissions.extend(a.permissions.iter().cloned());
                self.map_roles(a.roles.iter(), &mut permissions);
                account_id = Some(a.id);
            }
        }
        Resolution::Grants(Grants {
            permissions,
            known,
            account: account_id,
        })
    }
}
