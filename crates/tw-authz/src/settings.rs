//! What the authorizer takes (`[gateway.authz]`): who may do what, decided after a token is
//! verified; and the checks of the values it matches (permission codes, path patterns, hosts).
//!
//! ```toml
//! [gateway.authz]
//! mode = "enforce"                  # or "dry_run": log and audit would-be denials, but allow
//! roles_claims = ["realm_access.roles", "resource_access.*.roles"]
//!
//! [gateway.authz.roles]
//! "mcp-agent-events-manager" = ["events:read", "events:search", "events:update"]
//!
//! [[gateway.authz.rules]]
//! name = "events-read"
//! methods = ["GET"]
//! paths = ["/api/events/**"]
//! require_all = ["events:read"]
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tw_core::{Invalid, SettingsProblem};

/// The authorization section of the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    /// `enforce` (default) or `dry_run`.
    #[serde(default)]
    pub mode: AuthzMode,
    /// Header carrying the granted permissions upstream (space-separated). Stripped from incoming
    /// requests like the identity headers.
    #[serde(default = "default_permissions_header")]
    pub permissions_header: String,
    /// Where roles are read: dot paths into the claims. A `*` segment takes every key of an object
    /// (the key is the role's client namespace); `${client_id}` is the token's client id. Roles
    /// found under a namespace are named by `client_role_format`.
    #[serde(default = "default_roles_claims")]
    pub roles_claims: Vec<String>,
    /// How a client role is named: `{client}` and `{role}` are replaced.
    #[serde(default = "default_client_role_format")]
    pub client_role_format: String,
    /// Which tokens are service accounts (besides `preferred_username` = `service-account-<the
    /// token's own client id>`, any case).
    #[serde(default)]
    pub service_accounts: ServiceAccountRules,
    /// Permission sources used for every issuer unless `issuer_sources` says otherwise.
    #[serde(default = "default_sources")]
    pub sources: Vec<PermissionSourceKind>,
    /// Per issuer (exact `iss`): the permission sources.
    #[serde(default)]
    pub issuer_sources: BTreeMap<String, Vec<PermissionSourceKind>>,
    /// Role (realm role, or client role as `client:role`) → permission codes (`events:read`,
    /// wildcards `events:*`, `*`).
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Unknown principals: denied (`unknown_principal`) unless auto-provisioning is on.
    #[serde(default)]
    pub auto_provision: Option<AutoProvisionConfig>,
    /// What users (tokens that are not service accounts) get on the routes a rule matches:
    /// `authorize` (default: the rule's requirement, as for service accounts) or `pass_through`
    /// (let through without permissions, for an upstream that authorizes its users itself).
    /// A rule's own `users` overrides it. Service accounts are always authorized here.
    #[serde(default)]
    pub users: UserAuthorization,
    /// Ordered route rules: the first match wins; no match is denied (`no_matching_rule`).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Default per-principal rate limit. Absent: no limit.
    pub rate_limit: Option<PrincipalRateLimit>,
    /// Per client id (service accounts) or subject: a specific limit.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, PrincipalRateLimit>,
    #[serde(default)]
    pub registry_cache: RegistryCacheConfig,
    #[serde(default)]
    pub audit: AuditConfig,
}

/// Every key at its default (what an empty `[gateway.authz]` means), for code that needs only
/// parts of it, such as the role claims `tw_authz::PrincipalExtractor` reads.
impl Default for AuthzConfig {
    fn default() -> Self {
        Self {
            mode: AuthzMode::default(),
            permissions_header: default_permissions_header(),
            roles_claims: default_roles_claims(),
            client_role_format: default_client_role_format(),
            service_accounts: ServiceAccountRules::default(),
            sources: default_sources(),
            issuer_sources: BTreeMap::new(),
            roles: BTreeMap::new(),
            auto_provision: None,
            users: UserAuthorization::default(),
            rules: Vec::new(),
            rate_limit: None,
            rate_limits: BTreeMap::new(),
            registry_cache: RegistryCacheConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthzMode {
    #[default]
    Enforce,
    /// Log and audit what would be denied, but allow.
    DryRun,
}

/// How the gateway treats a user's token on a route a rule matches.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UserAuthorization {
    /// The rule's requirement applies, as for service accounts.
    #[default]
    Authorize,
    /// Verified and let through with no permissions header; the upstream authorizes the user.
    /// Only for a token that names its user (`preferred_username`, not a `service-account-`
    /// name): anything else is authorized as usual.
    PassThrough,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PermissionSourceKind {
    /// `[gateway.authz.roles]`: roles in the token mapped to permissions.
    Roles,
    /// The service-account registry in the database.
    Registry,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountRules {
    /// `azp` / `client_id` values whose tokens are service accounts.
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// A claim (dot path) that must equal `value` for a service account.
    pub claim: Option<ClaimEquals>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimEquals {
    pub claim: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoProvisionConfig {
    /// Give unknown principals this role on first sight, through the registry (recorded in the
    /// audit log). The role's permissions are those stored in the registry plus, when the role
    /// is also in `[gateway.authz.roles]`, those; a role the registry lacks is created there
    /// without stored permissions.
    pub role: String,
    /// Only service accounts (default) or every principal.
    #[serde(default = "default_true")]
    pub service_accounts_only: bool,
}

fn default_true() -> bool {
    true
}

/// `methods = "*"` or `methods = ["GET", "HEAD"]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Methods {
    One(String),
    List(Vec<String>),
}

impl Default for Methods {
    fn default() -> Self {
        Methods::One("*".into())
    }
}

impl Methods {
    /// `None` for any method, else the upper-case names.
    pub fn list(&self) -> Option<Vec<String>> {
        let all: Vec<String> = match self {
            Methods::One(m) => vec![m.clone()],
            Methods::List(l) => l.clone(),
        };
        if all.iter().any(|m| m == "*") {
            None
        } else {
            Some(all.iter().map(|m| m.to_ascii_uppercase()).collect())
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown in decisions, logs and the audit log. Default `rules[<index>]`.
    pub name: Option<String>,
    #[serde(default)]
    pub methods: Methods,
    /// Path patterns: literal segments, `*` or `{name}` (one segment), `prefix*` inside a segment,
    /// `**` (any number of segments, also none).
    pub paths: Vec<String>,
    /// Hosts the rule applies to (the request's `Host` or absolute-form authority, without port,
    /// any case). Empty: every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub require_all: Vec<String>,
    #[serde(default)]
    pub require_any: Vec<String>,
    #[serde(default)]
    pub allow_any_authenticated: bool,
    /// Overrides `[gateway.authz] users` on this rule's routes.
    #[serde(default)]
    pub users: Option<UserAuthorization>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRateLimit {
    pub per_second: u32,
    /// Default: `per_second`.
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCacheConfig {
    #[serde(default = "default_cache_ttl", with = "tw_core::duration")]
    pub ttl: Duration,
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
}

impl Default for RegistryCacheConfig {
    fn default() -> Self {
        Self {
            ttl: default_cache_ttl(),
            max_entries: default_cache_entries(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Bounded queue between the request path and the audit writer; full = dropped and counted.
    #[serde(default = "default_audit_queue")]
    pub queue_capacity: usize,
    /// Dropped events are reported in the log at most once per this interval.
    #[serde(default = "default_drop_report", with = "tw_core::duration")]
    pub drop_report_interval: Duration,
    /// The local spool: an append-only file (one JSON line per decision, fsynced per batch) that
    /// holds the decisions the database has not taken yet (it failed, or the in-memory queue was
    /// full). Replayed in order, first thing at start and as soon as the database answers again;
    /// emptied only once its rows are committed. A relative path is taken from the working
    /// directory. Default `tokenwarden-audit.spool`. Only one gateway process may use a file.
    #[serde(default = "default_spool_path")]
    pub spool_path: PathBuf,
    /// The spool's size limit in bytes (default 256 MiB, about a million decisions); decisions
    /// beyond it are dropped and counted (`tokenwarden_audit_dropped_total{reason="spool_full"}`).
    /// `0` turns the spool off: failed batches are then retried from memory only.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// The first wait before a failed write is retried; doubles up to `retry_max_delay`.
    #[serde(default = "default_retry_min", with = "tw_core::duration")]
    pub retry_min_delay: Duration,
    /// The longest wait between two attempts while the database fails.
    #[serde(default = "default_retry_max", with = "tw_core::duration")]
    pub retry_max_delay: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            queue_capacity: default_audit_queue(),
            drop_report_interval: default_drop_report(),
            spool_path: default_spool_path(),
            spool_max_bytes: default_spool_max_bytes(),
            retry_min_delay: default_retry_min(),
            retry_max_delay: default_retry_max(),
        }
    }
}

fn default_permissions_header() -> String {
    "X-Auth-Permissions".into()
}
fn default_roles_claims() -> Vec<String> {
    vec![
        "realm_access.roles".into(),
        "resource_access.*.roles".into(),
    ]
}
fn default_client_role_format() -> String {
    "{client}:{role}".into()
}
fn default_sources() -> Vec<PermissionSourceKind> {
    vec![PermissionSourceKind::Roles]
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_cache_entries() -> u64 {
    10_000
}
fn default_audit_queue() -> usize {
    10_000
}
fn default_drop_report() -> Duration {
    Duration::from_secs(60)
}
fn default_spool_path() -> PathBuf {
    PathBuf::from("tokenwarden-audit.spool")
}
fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_retry_min() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(5)
}

/// A permission code: `resource:action` segments of `[A-Za-z0-9._-]`, separated by `:`; the last
/// segment may be `*` (`events:*`); `*` alone is every permission.
pub fn check_permission_code(code: &str, allow_wildcard: bool) -> Result<(), Invalid> {
    if code == "*" {
        return if allow_wildcard {
            Ok(())
        } else {
            Err("`*` may be granted, not required".into())
        };
    }
    let segments: Vec<&str> = code.split(':').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *s == "*" && last && i > 0 {
            if !allow_wildcard {
                return Err(format!(
                    "`{code}`: wildcards may be granted, not required; name the permission"
                )
                .into());
            }
            continue;
        }
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "`{code}` is not a permission code: use segments of letters, digits, `.`, `_`, `-` separated by `:`, e.g. \"events:read\" (a final `*` segment grants all below)"
            ).into());
        }
    }
    Ok(())
}

/// A `Host`-like value (`name[:port]`, `[v6]:port`) as compared with configured hosts, or `None`
/// when it is not one: a port must be 1 to 5 digits and a name only letters, digits, `-`, `_` and
/// `.`, so `admin.example.org:80abc` or `admin.example.org;x` cannot slip past a host rule that
/// other servers (Go's `SplitHostPort`, Express, ASP.NET Core) would still apply.
pub fn parse_host(value: &str) -> Option<String> {
    let value = value.trim();
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            let literal = inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c));
            if inner.is_empty() || !literal {
                return None;
            }
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':')?),
            };
            (format!("[{}]", inner.to_ascii_lowercase()), port)
        }
        None => {
            let (name, port) = match value.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (value, None),
            };
            let name = name.trim_end_matches('.');
            let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
            if name.is_empty() || name.len() > 253 || !name.bytes().all(plain) {
                return None;
            }
            (name.to_ascii_lowercase(), port)
        }
    };
    match port {
        Some(p) if !(1..=5).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

/// `API.Example.org.:8443` → `api.example.org`; `[::1]:80` → `[::1]`: how hosts are compared.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim();
    let without_port = if h.starts_with('[') {
        match h.find(']') {
            Some(i) => &h[..=i],
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// A path pattern: starts with `/`; segments are literal, `*`, `{name}`, `**`, or hold one `*`.
pub fn check_path_pattern(p: &str) -> Result<(), Invalid> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/`").into());
    }
    if p.contains(['?', '#']) {
        return Err(format!("`{p}`: give the path only, without `?` or `#`").into());
    }
    check_canonical_path(p)?;
    for seg in p[1..].split('/') {
        if seg == "**" || seg == "*" {
            continue;
        }
        if seg.starts_with('{') || seg.ends_with('}') {
            let inner = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            match inner {
                Some(name)
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {}
                _ => return Err(format!("`{p}`: `{seg}` is not a parameter like `{{id}}`").into()),
            }
            continue;
        }
        if seg.contains("**") || seg.matches('*').count() > 1 || seg.contains(['{', '}']) {
            return Err(
                format!("`{p}`: `{seg}` may hold one `*`; `**` must be a whole segment").into(),
            );
        }
    }
    Ok(())
}

/// `api.example.org`, `10.0.0.1` or `[::1]`: no scheme, port or path.
pub fn is_plain_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return !inner.is_empty() && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
    }
    !h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

/// Configured paths are compared with canonical request paths, so they must be canonical
/// themselves: no `.`/`..` or empty segments, no `%`-escapes, `;` or `\`.
pub fn check_canonical_path(p: &str) -> Result<(), Invalid> {
    let rest = p.strip_prefix('/').unwrap_or(p);
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(seg, "." | "..") || (seg.is_empty() && !last) {
            return Err(format!(
                "`{p}` is not canonical: no `.`, `..` or empty segments (request paths are compared after resolving them)"
            ).into());
        }
    }
    if p.contains(['%', ';', '\\']) || p.chars().any(char::is_control) {
        return Err(
            format!("`{p}`: write the path decoded, without `%`-escapes, `;` or `\\`").into(),
        );
    }
    Ok(())
}

/// The longest role name the registry stores (tw-store's `MAX_CODE_LEN`).
const MAX_ROLE_NAME_LEN: usize = 200;

/// Checks `[gateway.authz]`; `identity_headers` are the other identity header names (lower case)
/// the permissions header must not collide with.
pub fn check_authz(
    a: &AuthzConfig,
    identity_headers: &[String],
    issuers: &[&str],
) -> Result<(), SettingsProblem> {
    let fail = |key: String, message: String| SettingsProblem { key, message };
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
    check_role_claims(&a.roles_claims, &a.client_role_format, "gateway.authz")?;
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

/// Where roles are read from a token and how client roles are named: `roles_claims` (dot paths,
/// at least one) and `client_role_format` (with `{role}`), under `section` in messages. Shared by
/// `[gateway.authz]` and `[vault.callers]`.
pub fn check_role_claims(
    roles_claims: &[String],
    client_role_format: &str,
    section: &str,
) -> Result<(), SettingsProblem> {
    let fail = |key: String, message: String| SettingsProblem { key, message };
    if roles_claims.is_empty() {
        return Err(fail(
            format!("{section}.roles_claims"),
            "list at least one claim path, e.g. \"realm_access.roles\"".into(),
        ));
    }
    for (i, c) in roles_claims.iter().enumerate() {
        if c.is_empty() || c.split('.').any(str::is_empty) {
            return Err(fail(
                format!("{section}.roles_claims[{i}]"),
                format!("`{c}` is not a dot path like \"resource_access.*.roles\""),
            ));
        }
    }
    if !client_role_format.contains("{role}") {
        return Err(fail(
            format!("{section}.client_role_format"),
            "must contain `{role}` (and usually `{client}`), e.g. \"{client}:{role}\"".into(),
        ));
    }
    Ok(())
}
