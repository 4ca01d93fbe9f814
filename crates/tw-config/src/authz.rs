//! Checks of `[gateway.authz]` as a whole (the settings themselves are the authorizer's:
//! `tw_authz::AuthzConfig`).

use tw_authz::settings::*;
use tw_core::Error;

/// The longest role name the registry stores (tw-store's `MAX_CODE_LEN`).
const MAX_ROLE_NAME_LEN: usize = 200;

/// Checks `[gateway.authz]`; `identity_headers` are the other identity header names (lower case)
/// the permissions header must not collide with.
pub(crate) fn validate_authz(
    a: &AuthzConfig,
    identity_headers: &[String],
    issuers: &[&str],
    fail: &dyn Fn(String, String) -> Error,
) -> Result<(), Error> {
    let k = |rest: &str| format!("gateway.authz.{rest}");
    let h = &a.permissions_header;
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if h.is_empty() || !h.chars().all(is_tchar) {
        return Err(fail(
            k("permissions_header"),
            format!("`{h}` is not a valid HTTP header name"),
        ));
    }
    let lower = h.to_ascii_lowercase();
    if identity_headers.contains(&lower)
        || [
            "authorization",
            "host",
            "cookie",
            "content-type",
            "content-length",
        ]
        .contains(&lower.as_str())
    {
        return Err(fail(
            k("permissions_header"),
            format!("`{h}` is already used (identity or reserved header)"),
        ));
    }
    if a.roles_claims.is_empty() {
        return Err(fail(
            k("roles_claims"),
            "list at least one claim path, e.g. \"realm_access.roles\"".into(),
        ));
    }
    for (i, c) in a.roles_claims.iter().enumerate() {
        if c.is_empty() || c.split('.').any(str::is_empty) {
            return Err(fail(
                format!("gateway.authz.roles_claims[{i}]"),
                format!("`{c}` is not a dot path like \"resource_access.*.roles\""),
            ));
        }
    }
    if !a.client_role_format.contains("{role}") {
        return Err(fail(
            k("client_role_format"),
            "must contain `{role}` (and usually `{client}`), e.g. \"{client}:{role}\"".into(),
        ));
    }
    if let Some(c) = &a.service_accounts.claim
        && (c.claim.is_empty() || c.claim.split('.').any(str::is_empty))
    {
        return Err(fail(
            k("service_accounts.claim.claim"),
            format!("`{}` is not a dot path", c.claim),
        ));
    }
    if a.sources.is_empty() {
        return Err(fail(
            k("sources"),
            "list at least one of \"roles\", \"registry\"".into(),
        ));
    }
    for (iss, s) in &a.issuer_sources {
        if !issuers.contains(&iss.as_str()) {
            return Err(fail(
                format!("gateway.authz.issuer_sources.\"{iss}\""),
                format!("`{iss}` is not one of the [[gateway.issuers]]"),
            ));
        }
        if s.is_empty() {
            return Err(fail(
                format!("gateway.authz.issuer_sources.\"{iss}\""),
                "list at least one of \"roles\", \"registry\"".into(),
            ));
        }
    }
    for (role, perms) in &a.roles {
        if role.is_empty() {
            return Err(fail(k("roles"), "a role name must not be empty".into()));
        }
        for (j, p) in perms.iter().enumerate() {
            check_permission_code(p, true)
                .map_err(|m| fail(format!("gateway.authz.roles.\"{role}\"[{j}]"), m.into()))?;
        }
    }
    if let Some(ap) = &a.auto_provision {
        // The role may live in the registry only: it is looked up (or created) when an account
        // is provisioned, so only its spelling can be checked here.
        let role = &ap.role;
        if role.is_empty()
            || role.chars().count() > MAX_ROLE_NAME_LEN
            || role
                .chars()
                .any(|c| c.is_whitespace() || tw_core::text::is_terminal_unsafe(c))
        {
            return Err(fail(
                k("auto_provision.role"),
                format!(
                    "`{}` is not a role name: 1 to {MAX_ROLE_NAME_LEN} characters, without spaces, control characters or bidirectional overrides",
                    tw_core::text::terminal_cell(role, 64)
                ),
            ));
        }
        let uses_registry = a.sources.contains(&PermissionSourceKind::Registry)
            || a.issuer_sources
                .values()
                .any(|s| s.contains(&PermissionSourceKind::Registry));
        if !uses_registry {
            return Err(fail(
                k("auto_provision"),
                "auto-provisioning records accounts in the registry: add \"registry\" to `sources`"
                    .into(),
            ));
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, r) in a.rules.iter().enumerate() {
        let rk = |f: &str| format!("gateway.authz.rules[{i}].{f}");
        let name = r.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
        if name.is_empty() {
            return Err(fail(rk("name"), "must not be empty".into()));
        }
        if !names.insert(name.clone()) {
            return Err(fail(
                rk("name"),
                format!("`{name}` is used by an earlier rule"),
            ));
        }
        for (j, h) in r.hosts.iter().enumerate() {
            if !is_plain_host(h) {
                return Err(fail(
                    format!("{}[{j}]", rk("hosts")),
                    format!(
                        "`{h}` is not a host name (give it without scheme, port or path, e.g. \"api.example.org\")"
                    ),
                ));
            }
        }
        if r.paths.is_empty() {
            return Err(fail(
                rk("paths"),
                "list at least one path pattern, e.g. \"/api/**\"".into(),
            ));
        }
        for (j, p) in r.paths.iter().enumerate() {
            check_path_pattern(p).map_err(|m| fail(format!("{}[{j}]", rk("paths")), m.into()))?;
        }
        match &r.methods {
            Methods::List(l) if l.is_empty() => {
                return Err(fail(
                    rk("methods"),
                    "list at least one method, or \"*\"".into(),
                ));
            }
            m => {
                for method in m.list().unwrap_or_default() {
                    if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
                        return Err(fail(
                            rk("methods"),
                            format!("`{method}` is not an HTTP method"),
                        ));
                    }
                }
            }
        }
        let kinds = usize::from(!r.require_all.is_empty())
            + usize::from(!r.require_any.is_empty())
            + usize::from(r.allow_any_authenticated);
        if kinds != 1 {
            return Err(fail(
                format!("gateway.authz.rules[{i}]"),
                "give exactly one of `require_all`, `require_any` or `allow_any_authenticated = true`"
                    .into(),
            ));
        }
        for (field, list) in [
            ("require_all", &r.require_all),
            ("require_any", &r.require_any),
        ] {
            for (j, p) in list.iter().enumerate() {
                check_permission_code(p, false)
                    .map_err(|m| fail(format!("{}[{j}]", rk(field)), m.into()))?;
            }
        }
    }
    let bad_limit = |l: &PrincipalRateLimit| l.per_second == 0 || l.burst == Some(0);
    if a.rate_limit.as_ref().is_some_and(bad_limit) {
        return Err(fail(
            k("rate_limit"),
            "per_second and burst must be positive".into(),
        ));
    }
    for (who, l) in &a.rate_limits {
        if bad_limit(l) {
            return Err(fail(
                format!("gateway.authz.rate_limits.\"{who}\""),
                "per_second and burst must be positive".into(),
            ));
        }
    }
    if a.registry_cache.ttl.is_zero() || a.registry_cache.max_entries == 0 {
        return Err(fail(
            k("registry_cache"),
            "ttl and max_entries must be positive".into(),
        ));
    }
    if a.audit.queue_capacity == 0 || a.audit.drop_report_interval.is_zero() {
        return Err(fail(
            k("audit"),
            "queue_capacity and drop_report_interval must be positive".into(),
        ));
    }
    if a.audit.retry_min_delay.is_zero() || a.audit.retry_min_delay > a.audit.retry_max_delay {
        return Err(fail(
            k("audit"),
            "retry_min_delay must be positive and at most retry_max_delay".into(),
        ));
    }
    if a.audit.spool_max_bytes > 0 && a.audit.spool_path.as_os_str().is_empty() {
        return Err(fail(
            k("audit"),
            "spool_path must not be empty (set spool_max_bytes = 0 to turn the spool off)".into(),
        ));
    }
    Ok(())
}
