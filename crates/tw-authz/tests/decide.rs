//! The decision core without HTTP: rule order, deny by default, wildcards, unknown principals,
//! auto-provisioning, dry-run, rate limits, config validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tw_authz::{
    AccountKey, AuditEvent, AuditOutcome, Authz, AuthzDecision, AuthzRequest, MemoryAuditSink,
    MemoryRegistry, PermissionSet, PrincipalKind, RegistryAccount, Resolution,
};
use tw_claims::{VerifiedBy, VerifiedToken};
use tw_config::AuthzConfig;
use tw_core::{ManualClock, UnixTime};

const ISSUER: &str = "https://kc.example/realms/evently";

fn doc(authz: &str) -> String {
    format!("[gateway]\n[[gateway.issuers]]\nissuer = \"{ISSUER}\"\n\n[gateway.authz]\n{authz}\n")
}

fn cfg(authz: &str) -> AuthzConfig {
    tw_config::load_str(&doc(authz), "authz.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .gateway
        .expect("gateway")
        .authz
        .expect("authz")
}

fn config_error(authz: &str) -> String {
    tw_config::load_str(&doc(authz), "authz.toml")
        .expect_err("invalid")
        .to_string()
}

/// A user's token through `client` (its `azp`), as a browser sign-in gives it.
fn user(username: &str, client: &str, claims: Value) -> VerifiedToken {
    VerifiedToken {
        subject: Some(format!("sub-{username}")),
        username: Some(username.into()),
        service_account: username.starts_with("service-account-"),
        ..sa(client, claims)
    }
}

fn sa(client: &str, claims: Value) -> VerifiedToken {
    VerifiedToken {
        issuer: ISSUER.into(),
        subject: Some(format!("sub-{client}")),
        client_id: Some(client.into()),
        username: Some(format!("service-account-{client}")),
        service_account: true,
        scopes: vec![],
        audiences: vec![],
        expires_at: UnixTime::from_secs(0),
        claims: claims.as_object().cloned().unwrap_or_default(),
        via: VerifiedBy::Jwt,
    }
}

const BASE: &str = r#"
[gateway.authz.roles]
"mcp-agent-events-manager" = ["events:read", "events:search", "events:update"]
"mcp-agent-admin" = ["*"]
"api:writer" = ["events:*"]

[[gateway.authz.rules]]
name = "events-delete"
methods = ["DELETE"]
paths = ["/api/events/{id}"]
require_all = ["events:delete", "events:update"]

[[gateway.authz.rules]]
name = "events-any"
methods = "*"
paths = ["/api/events/**"]
require_any = ["events:read", "events:search"]

[[gateway.authz.rules]]
name = "never-reached"
paths = ["/api/events/**"]
require_all = ["nobody:has-this"]

[[gateway.authz.rules]]
paths = ["/public/**"]
allow_any_authenticated = true
"#;

struct Harness {
    authz: Authz,
    audit: Arc<MemoryAuditSink>,
    clock: Arc<ManualClock>,
}

fn harness(authz_toml: &str, registry: Option<Arc<MemoryRegistry>>) -> Harness {
    let audit = Arc::new(MemoryAuditSink::new());
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_700_000_000)));
    let mut b = Authz::builder(&cfg(authz_toml))
        .clock(clock.clone())
        .audit_sink(audit.clone());
    if let Some(r) = registry {
        let v = r.version();
        b = b.registry(r, Some(v));
    }
    Harness {
        authz: b.build().expect("build"),
        audit,
        clock,
    }
}

async fn decide(h: &Harness, token: &VerifiedToken, method: &str, path: &str) -> AuthzDecision {
    h.authz
        .decide(&AuthzRequest {
            method,
            host: None,
            path: Some(path),
            token,
        })
        .await
}

fn code(d: &AuthzDecision) -> &'static str {
    match d {
        AuthzDecision::Allow { .. } => "allow",
        AuthzDecision::Deny { code, .. } => code,
        AuthzDecision::RateLimited { .. } => "rate_limited",
        AuthzDecision::Unavailable { .. } => "unavailable",
    }
}

async fn events(sink: &MemoryAuditSink, n: usize) -> Vec<AuditEvent> {
    for _ in 0..1000 {
        let e = sink.events();
        if e.len() >= n {
            return e;
        }
        tokio::task::yield_now().await;
    }
    panic!("only {} audit events", sink.events().len());
}

fn realm(roles: &[&str]) -> Value {
    json!({ "realm_access": { "roles": roles } })
}

#[tokio::test]
async fn rule_order_wildcards_and_deny_by_default() {
    let h = harness(BASE, None);
    let manager = sa(
        "mgr",
        realm(&["mcp-agent-events-manager", "offline_access"]),
    );

    let d = decide(&h, &manager, "GET", "/api/events/1").await;
    assert_eq!(
        d,
        AuthzDecision::Allow {
            permissions: ["events:read", "events:search", "events:update"]
                .into_iter()
                .collect::<PermissionSet>(),
            rule: "events-any".into(),
        }
    );
    // First match wins: DELETE hits events-delete, which needs more than the manager has.
    match decide(&h, &manager, "delete", "/api/events/1").await {
        AuthzDecision::Deny {
            code, rule, scope, ..
        } => {
            assert_eq!(code, "insufficient_scope");
            assert_eq!(rule.as_deref(), Some("events-delete"));
            assert_eq!(
                scope.as_deref(),
                Some("events:delete"),
                "only what is missing"
            );
        }
        other => panic!("{other:?}"),
    }
    // Deny by default.
    assert_eq!(
        code(&decide(&h, &manager, "GET", "/api/orders").await),
        "no_matching_rule"
    );
    let unknown_path = h
        .authz
        .decide(&AuthzRequest {
            method: "GET",
            host: None,
            path: None,
            token: &manager,
        })
        .await;
    assert_eq!(code(&unknown_path), "no_matching_rule");
    // Default names: rules[i].
    let d = decide(&h, &sa("x", json!({})), "GET", "/public/a").await;
    assert!(
        matches!(d, AuthzDecision::Allow { ref rule, .. } if rule == "rules[3]"),
        "{d:?}"
    );

    // `*` and `events:*` grants; client roles namespaced as client:role.
    let admin = sa("admin", realm(&["mcp-agent-admin"]));
    assert_eq!(
        code(&decide(&h, &admin, "DELETE", "/api/events/1").await),
        "allow"
    );
    let writer = sa(
        "w",
        json!({ "resource_access": { "api": { "roles": ["writer"] } } }),
    );
    assert_eq!(
        code(&decide(&h, &writer, "DELETE", "/api/events/1").await),
        "allow"
    );
    // The same role name as a realm role is another role.
    let not_writer = sa("w2", realm(&["writer"]));
    assert_eq!(
        code(&decide(&h, &not_writer, "GET", "/api/events").await),
        "unknown_principal"
    );

    let audit = events(&h.audit, 8).await;
    assert_eq!(audit[0].rule.as_deref(), Some("events-any"));
    assert_eq!(audit[0].permissions, ["events:read"]);
    assert_eq!(audit[1].outcome, AuditOutcome::Deny);
    assert_eq!(audit[1].permissions, ["events:delete"]);
    assert_eq!(audit[1].time, UnixTime::from_secs(1_700_000_000));
    assert_eq!(audit[5].permissions, ["*"], "the grants used");
}

#[tokio::test]
async fn unknown_principals_denied_or_provisioned() {
    let reg = Arc::new(MemoryRegistry::new());
    let h = harness(
        &format!(
            "sources = [\"roles\", \"registry\"]\nauto_provision = {{ role = \"mcp-agent-events-manager\" }}\n{BASE}"
        ),
        Some(reg.clone()),
    );
    let newcomer = sa("newcomer", json!({}));
    let d = decide(&h, &newcomer, "GET", "/api/events").await;
    assert_eq!(code(&d), "allow", "{d:?}");
    let d = decide(&h, &newcomer, "GET", "/api/events").await;
    assert_eq!(code(&d), "allow");
    let provisioned = reg.provisioned();
    assert_eq!(provisioned.len(), 1, "provisioned once, then cached");
    assert_eq!(provisioned[0].key.client_id(), Some("newcomer"));
    assert_eq!(provisioned[0].role, "mcp-agent-events-manager");
    let audit = events(&h.audit, 3).await;
    assert_eq!(audit[0].outcome, AuditOutcome::Provisioned);
    assert_eq!(audit[0].permissions, ["mcp-agent-events-manager"]);
    assert_eq!(audit[1].outcome, AuditOutcome::Allow);

    // A user (not a service account) is not provisioned by default.
    let mut user = sa("webapp", json!({}));
    user.service_account = false;
    user.username = Some("alice".into());
    assert_eq!(
        code(&decide(&h, &user, "GET", "/api/events").await),
        "unknown_principal"
    );
    assert_eq!(reg.provisioned().len(), 1);

    // Without auto-provisioning: denied, never an error.
    let h = harness(BASE, None);
    match decide(
        &h,
        &sa("ghost", json!({"realm_access": {"roles": ["unmapped"]}})),
        "GET",
        "/api/events",
    )
    .await
    {
        AuthzDecision::Deny {
            code, description, ..
        } => {
            assert_eq!(code, "unknown_principal");
            assert!(
                description.contains("service_account:ghost"),
                "{description}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn registry_per_issuer_and_disabled_accounts() {
    let reg = Arc::new(MemoryRegistry::new());
    reg.put_client(
        "reg",
        tw_authz::RegistryAccount {
            id: "1".into(),
            enabled: true,
            permissions: vec!["events:search".into()],
            roles: vec!["api:writer".into()],
        },
    );
    // Registry only for this issuer: roles in the token are ignored.
    let h = harness(
        &format!("[gateway.authz.issuer_sources]\n\"{ISSUER}\" = [\"registry\"]\n{BASE}"),
        Some(reg.clone()),
    );
    let t = sa("reg", realm(&["mcp-agent-admin"]));
    match decide(&h, &t, "GET", "/api/events").await {
        AuthzDecision::Allow { permissions, .. } => {
            assert_eq!(permissions.header_value(), "events:* events:search")
        }
        other => panic!("{other:?}"),
    }
    let admin_by_token_only = sa("other", realm(&["mcp-agent-admin"]));
    assert_eq!(
        code(&decide(&h, &admin_by_token_only, "GET", "/api/events").await),
        "unknown_principal"
    );
}

#[tokio::test]
async fn dry_run_allows_but_audits_and_rate_limits_use_the_clock() {
    let h = harness(
        &format!("mode = \"dry_run\"\nrate_limit = {{ per_second = 2, burst = 2 }}\n{BASE}"),
        None,
    );
    let nobody = sa("nobody", json!({}));
    let d = decide(&h, &nobody, "GET", "/api/events").await;
    assert!(
        matches!(d, AuthzDecision::Allow { ref rule, .. } if rule == "events-any"),
        "{d:?}"
    );
    let d = decide(&h, &nobody, "GET", "/elsewhere").await;
    assert_eq!(code(&d), "allow");
    // Rate limits are enforced even in dry-run.
    match decide(&h, &nobody, "GET", "/api/events").await {
        AuthzDecision::RateLimited { retry_after } => {
            assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    // Another principal has its own bucket.
    assert_eq!(
        code(&decide(&h, &sa("other", json!({})), "GET", "/public/x").await),
        "allow"
    );
    h.clock.advance(Duration::from_millis(500));
    assert_eq!(
        code(&decide(&h, &nobody, "GET", "/public/x").await),
        "allow"
    );

    let audit = events(&h.audit, 5).await;
    assert_eq!(
        audit[2].rule.as_deref(),
        Some("events-any"),
        "a 429 names the rule too"
    );
    let outcomes: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.outcome.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("dry_run_deny", "unknown_principal"),
            ("dry_run_deny", "no_matching_rule"),
            ("rate_limited", "rate_limited"),
            ("allow", "allowed"),
            ("allow", "allowed"),
        ]
    );
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (
            "[gateway.authz.roles]\nr = [\"events read\"]",
            "gateway.authz.roles.\"r\"[0]",
        ),
        (
            "[[gateway.authz.rules]]\npaths = [\"/a\"]\nrequire_all = [\"events:*\"]",
            "gateway.authz.rules[0].require_all[0]",
        ),
        (
            "[[gateway.authz.rules]]\npaths = []\nallow_any_authenticated = true",
            "gateway.authz.rules[0].paths",
        ),
        (
            "[[gateway.authz.rules]]\npaths = [\"/a\"]",
            "gateway.authz.rules[0]",
        ),
        (
            "[[gateway.authz.rules]]\npaths = [\"/a/**x\"]\nallow_any_authenticated = true",
            "gateway.authz.rules[0].paths[0]",
        ),
        (
            "[[gateway.authz.rules]]\nmethods = []\npaths = [\"/a\"]\nallow_any_authenticated = true",
            "gateway.authz.rules[0].methods",
        ),
        (
            "sources = [\"registry\"]\nauto_provision = { role = \"two words\" }",
            "gateway.authz.auto_provision.role",
        ),
        (
            "sources = [\"registry\"]\nauto_provision = { role = \"\" }",
            "gateway.authz.auto_provision.role",
        ),
        (
            "sources = [\"registry\"]\nauto_provision = { role = \"r\\u001b[2J\" }",
            "gateway.authz.auto_provision.role",
        ),
        (
            "sources = [\"registry\"]\nauto_provision = { role = \"admin\\u202e\" }",
            "gateway.authz.auto_provision.role",
        ),
        ("users = \"allow\"", "users"),
        (
            "[[gateway.authz.rules]]\npaths = [\"/a\"]\nallow_any_authenticated = true\nusers = \"PassThrough\"",
            "users",
        ),
        (
            "auto_provision = { role = \"r\" }\n[gateway.authz.roles]\nr = [\"a:b\"]",
            "gateway.authz.auto_provision",
        ),
        (
            "permissions_header = \"X-Auth-Subject\"",
            "gateway.authz.permissions_header",
        ),
        (
            "rate_limit = { per_second = 0 }",
            "gateway.authz.rate_limit",
        ),
        ("colour = \"blue\"", "colour"),
        (
            "[gateway.authz.issuer_sources]\n\"https://other\" = [\"roles\"]",
            "gateway.authz.issuer_sources.\"https://other\"",
        ),
        (
            "[[gateway.authz.rules]]\nname = \"a\"\npaths = [\"/a\"]\nallow_any_authenticated = true\n[[gateway.authz.rules]]\nname = \"a\"\npaths = [\"/b\"]\nallow_any_authenticated = true",
            "gateway.authz.rules[1].name",
        ),
    ];
    for (toml, key) in cases {
        let e = config_error(toml);
        assert!(e.contains("authz.toml"), "{e}");
        assert!(e.contains(key), "expected `{key}` in: {e}");
    }
    let long = format!(
        "sources = [\"registry\"]\nauto_provision = {{ role = \"{}\" }}",
        "r".repeat(201)
    );
    let e = config_error(&long);
    assert!(e.contains("gateway.authz.auto_provision.role"), "{e}");
    assert!(!e.contains(&"r".repeat(100)), "the value is cut: {e}");
}

/// The README's registry example: the provisioning role is defined in the registry only, not
/// in `[gateway.authz.roles]`, and is what an unknown service account gets.
#[tokio::test]
async fn auto_provision_with_a_role_only_the_registry_defines() {
    let readme = "sources = [\"registry\"]\nauto_provision = { role = \"mcp-agent-attributes-readonly\" }\n[[gateway.authz.rules]]\npaths = [\"/api/attributes/**\"]\nrequire_all = [\"attributes:read\"]";
    let config = cfg(readme);
    assert!(config.roles.is_empty());
    assert_eq!(
        config.auto_provision.as_ref().map(|a| a.role.as_str()),
        Some("mcp-agent-attributes-readonly")
    );
    let reg = Arc::new(MemoryRegistry::new());
    let h = harness(readme, Some(reg.clone()));
    let newcomer = sa("newcomer", json!({}));
    // The in-memory registry stores no role permissions: known, but without the permission.
    assert_eq!(
        code(&decide(&h, &newcomer, "GET", "/api/attributes").await),
        "insufficient_scope"
    );
    let provisioned = reg.provisioned();
    assert_eq!(provisioned.len(), 1);
    assert_eq!(provisioned[0].role, "mcp-agent-attributes-readonly");
}

/// `users = "pass_through"`: a user's token is let through on a matched rule without
/// permissions; service accounts, unmatched routes, disabled accounts and tokens that do not
/// name a person are decided as before.
#[tokio::test]
async fn users_pass_through_only_on_matched_rules() {
    let reg = Arc::new(MemoryRegistry::new());
    let h = harness(
        &format!(
            "sources = [\"roles\", \"registry\"]\nusers = \"pass_through\"\nrate_limit = {{ per_second = 1, burst = 3 }}\nauto_provision = {{ role = \"mcp-agent-events-manager\", service_accounts_only = false }}\n{BASE}"
        ),
        Some(reg.clone()),
    );
    let alice = user("alice", "webapp", json!({}));
    for (method, path) in [("GET", "/api/events/1"), ("DELETE", "/api/events/1")] {
        assert_eq!(
            decide(&h, &alice, method, path).await,
            AuthzDecision::Allow {
                permissions: PermissionSet::new(),
                rule: if method == "GET" {
                    "events-any"
                } else {
                    "events-delete"
                }
                .into(),
            },
            "{method} {path}"
        );
    }
    // Deny by default holds for users too.
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/orders").await),
        "no_matching_rule"
    );
    // Rate limits still apply (burst 3).
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/events").await),
        "rate_limited"
    );
    assert!(
        reg.provisioned().is_empty(),
        "a user passed through is not provisioned"
    );

    // A user with roles is passed through too: the gateway grants nothing it would forward.
    let bob = user("bob", "webapp", realm(&["mcp-agent-admin"]));
    assert_eq!(
        decide(&h, &bob, "GET", "/api/events").await,
        AuthzDecision::Allow {
            permissions: PermissionSet::new(),
            rule: "events-any".into()
        }
    );

    // A disabled registry account of the user is still refused.
    let mut off = account("carol", &[], &[]);
    off.enabled = false;
    reg.put(AccountKey::user(ISSUER, Some("sub-carol")), off);
    let carol = user("carol", "webapp", json!({}));
    assert_eq!(
        code(&decide(&h, &carol, "GET", "/api/events").await),
        "account_disabled"
    );

    // Service accounts are authorized here, whatever `users` says.
    assert_eq!(
        code(&decide(&h, &sa("robot", json!({})), "GET", "/api/events").await),
        "allow",
        "provisioned with the events role"
    );
    assert_eq!(reg.provisioned().len(), 1);
    assert_eq!(
        code(
            &decide(
                &h,
                &sa("reader", realm(&["mcp-agent-events-manager"])),
                "DELETE",
                "/api/events/1"
            )
            .await
        ),
        "insufficient_scope"
    );

    // Tokens of kind "user" that do not name a person are authorized, not passed through: a
    // client's token without `preferred_username`, service-account names of another client
    // (any case), blank names.
    let h = harness(&format!("users = \"pass_through\"\n{BASE}"), None);
    let mut nameless = sa("nameless", json!({}));
    nameless.username = None;
    nameless.service_account = false;
    let mut cases = vec![("no preferred_username".to_owned(), nameless)];
    for name in [
        "service-account-other",
        "SERVICE-ACCOUNT-other",
        "Service-Account-",
        "",
        " ",
    ] {
        cases.push((format!("{name:?}"), user(name, "webapp", json!({}))));
    }
    for (what, token) in cases {
        let d = decide(&h, &token, "GET", "/api/events").await;
        assert_eq!(code(&d), "unknown_principal", "{what}: {d:?}");
    }
    // Look-alike prefixes are ordinary names of people.
    let lookalike = user("service\u{2010}account-other", "webapp", json!({}));
    assert_eq!(
        code(&decide(&h, &lookalike, "GET", "/api/events").await),
        "allow"
    );

    let audit = events(&h.audit, 7).await;
    let last = audit.last().expect("events");
    assert_eq!(
        (last.outcome, last.reason.as_str(), last.permissions.len()),
        (AuditOutcome::Allow, "user_pass_through", 0)
    );
    assert!(last.principal.starts_with("user:"), "{}", last.principal);
}

/// A rule's own `users` overrides the section's, in both directions.
#[tokio::test]
async fn a_rule_overrides_the_users_setting() {
    let rules = r#"
[gateway.authz.roles]
"events-reader" = ["events:read"]

[[gateway.authz.rules]]
name = "admin"
paths = ["/api/admin/**"]
require_all = ["events:admin"]
users = "authorize"

[[gateway.authz.rules]]
name = "profile"
paths = ["/api/profile/**"]
require_all = ["profile:read"]
users = "pass_through"

[[gateway.authz.rules]]
name = "events"
paths = ["/api/events/**"]
require_all = ["events:read"]
"#;
    let alice = user("alice", "webapp", json!({}));
    let reader = user("rita", "webapp", realm(&["events-reader"]));

    let h = harness(&format!("users = \"pass_through\"\n{rules}"), None);
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/admin/x").await),
        "unknown_principal"
    );
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/profile/me").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/events/1").await),
        "allow"
    );

    // The default (authorize) with one rule opting in.
    let h = harness(rules, None);
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/profile/me").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/events/1").await),
        "unknown_principal"
    );
    match decide(&h, &reader, "GET", "/api/events/1").await {
        AuthzDecision::Allow { permissions, .. } => {
            assert_eq!(permissions.header_value(), "events:read")
        }
        other => panic!("{other:?}"),
    }
    let audit = events(&h.audit, 3).await;
    let reasons: Vec<&str> = audit.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["user_pass_through", "unknown_principal", "allowed"]
    );
}

#[tokio::test]
async fn the_registry_is_required_when_configured() {
    let e = Authz::builder(&cfg("sources = [\"registry\"]"))
        .build()
        .err()
        .expect("no registry given");
    assert_eq!(e.code(), "registry_unavailable");
}

#[tokio::test]
async fn the_evently_example_gives_exact_permissions() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/evently-gateway.toml");
    let cfg = tw_config::load(&path).expect("example");
    let authz_cfg = cfg.gateway.expect("gateway").authz.expect("authz");
    let reg = Arc::new(MemoryRegistry::new());
    reg.put_client(
        "evently-confidential-client",
        tw_authz::RegistryAccount {
            id: "1".into(),
            enabled: true,
            permissions: vec![],
            roles: vec!["mcp-agent-events-manager".into()],
        },
    );
    let authz = Authz::builder(&authz_cfg)
        .registry(reg.clone(), Some(reg.version()))
        .audit_sink(Arc::new(MemoryAuditSink::new()))
        .build()
        .expect("build");
    let h = Harness {
        authz,
        audit: Arc::new(MemoryAuditSink::new()),
        clock: Arc::new(ManualClock::starting_now()),
    };
    let reader = sa("attr-reader", realm(&["mcp-agent-attributes-readonly"]));
    assert_eq!(
        code(&decide(&h, &reader, "GET", "/api/attributes").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &reader, "GET", "/api/attributes/5").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &reader, "GET", "/api/events").await),
        "insufficient_scope"
    );
    // Attribute writes have rules: the missing permission is named, not "no matching rule".
    for (method, path, needed) in [
        ("POST", "/api/attributes", "attributes:create"),
        ("POST", "/api/attributes/5/values", "attributes:create"),
        ("PUT", "/api/attributes/5", "attributes:update"),
        ("PATCH", "/api/attributes/5", "attributes:update"),
        ("DELETE", "/api/attributes/5", "attributes:delete"),
    ] {
        match decide(&h, &reader, method, path).await {
            AuthzDecision::Deny { code, scope, .. } => {
                assert_eq!(
                    (code, scope.as_deref()),
                    ("insufficient_scope", Some(needed)),
                    "{method} {path}"
                );
            }
            other => panic!("{method} {path}: {other:?}"),
        }
    }
    let confidential = sa("evently-confidential-client", json!({}));
    assert_eq!(
        code(&decide(&h, &confidential, "GET", "/api/events/search").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &confidential, "PUT", "/api/events/1").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &confidential, "POST", "/api/orders").await),
        "insufficient_scope"
    );
    let admin = sa("admin", realm(&["mcp-agent-admin"]));
    for (m, p) in [
        ("PUT", "/api/tickets/ABC/check-in"),
        ("GET", "/api/event-statistics/1"),
        ("PUT", "/api/carts/remove"),
        ("POST", "/api/orders"),
        ("POST", "/api/attributes"),
        ("DELETE", "/api/attributes/5"),
    ] {
        assert_eq!(code(&decide(&h, &admin, m, p).await), "allow", "{m} {p}");
    }
    assert_eq!(
        code(&decide(&h, &admin, "DELETE", "/api/users/1").await),
        "no_matching_rule"
    );
}

/// A registry whose database is down.
struct DownRegistry;

impl tw_authz::RegistrySource for DownRegistry {
    fn find<'a>(
        &'a self,
        _: &'a tw_authz::AccountKey,
    ) -> futures::future::BoxFuture<'a, Result<Option<tw_authz::RegistryAccount>, tw_core::Error>>
    {
        Box::pin(async {
            Err(tw_core::Error::new(
                tw_core::ErrorKind::StorageUnavailable,
                "storage_unavailable",
                "database down",
            ))
        })
    }

    fn provision<'a>(
        &'a self,
        _: &'a tw_authz::ProvisionRequest,
    ) -> futures::future::BoxFuture<'a, Result<tw_authz::RegistryAccount, tw_core::Error>> {
        Box::pin(async {
            Err(tw_core::Error::new(
                tw_core::ErrorKind::StorageUnavailable,
                "storage_unavailable",
                "database down",
            ))
        })
    }
}

#[tokio::test]
async fn a_registry_outage_is_a_503_never_a_500() {
    let audit = Arc::new(MemoryAuditSink::new());
    let authz = Authz::builder(&cfg(&format!(
        "sources = [\"roles\", \"registry\"]\n{BASE}"
    )))
    .registry(Arc::new(DownRegistry), None)
    .audit_sink(audit.clone())
    .build()
    .expect("build");
    let h = Harness {
        authz,
        audit,
        clock: Arc::new(ManualClock::starting_now()),
    };
    let d = decide(
        &h,
        &sa("x", realm(&["mcp-agent-admin"])),
        "GET",
        "/api/events",
    )
    .await;
    assert!(
        matches!(d, AuthzDecision::Unavailable { retry_after, .. } if retry_after == Duration::from_secs(1)),
        "{d:?}"
    );
    let events = events(&h.audit, 1).await;
    assert_eq!(events[0].reason, "registry_unavailable");
}

fn account(id: &str, permissions: &[&str], roles: &[&str]) -> RegistryAccount {
    RegistryAccount {
        id: id.into(),
        enabled: true,
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

/// `ops-console` is registered by client id with `*`: its service-account token holds it, the
/// users signing in through the client hold nothing of it, whatever their names look like.
#[tokio::test]
async fn an_account_registered_by_client_id_is_only_its_service_accounts() {
    let reg = Arc::new(MemoryRegistry::new());
    reg.put_client("ops-console", account("ops", &["*"], &[]));
    let h = harness(
        &format!("sources = [\"roles\", \"registry\"]\n{BASE}"),
        Some(reg.clone()),
    );
    let console = sa("ops-console", json!({}));
    assert_eq!(
        code(&decide(&h, &console, "DELETE", "/api/events/1").await),
        "allow"
    );
    for (username, client) in [
        ("alice", "ops-console"),
        // Look-alikes of the client's service-account user.
        ("service-account-ops-console-x", "ops-console"),
        ("service-account-other", "ops-console"),
        ("service-account-ops", "ops-console"),
        ("service-account-ops-console\u{200b}", "ops-console"),
        ("service\u{2010}account-ops-console", "ops-console"),
        ("", "ops-console"),
    ] {
        let t = user(username, client, json!({}));
        let d = decide(&h, &t, "GET", "/api/events/1").await;
        assert_eq!(code(&d), "unknown_principal", "{username:?}: {d:?}");
        let (principal, resolution) = h.authz.resolve(&t).await;
        assert_eq!(principal.kind, PrincipalKind::User, "{username:?}");
        match resolution {
            Resolution::Grants(g) => {
                assert!(g.permissions.is_empty(), "{username:?}: {g:?}");
                assert_eq!(g.account, None);
                assert!(!g.known);
            }
            other => panic!("{username:?}: {other:?}"),
        }
    }
    // A user's own account (by subject) applies to that user, through any client.
    reg.put(
        AccountKey::user(ISSUER, Some("sub-bob")),
        account("bob", &["events:read"], &[]),
    );
    let bob = user("bob", "ops-console", json!({}));
    match h.authz.resolve(&bob).await.1 {
        Resolution::Grants(g) => {
            assert_eq!(g.permissions.header_value(), "events:read");
            assert_eq!(g.account.as_deref(), Some("bob"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(&decide(&h, &bob, "GET", "/api/events/1").await),
        "allow"
    );
    assert_eq!(
        code(&decide(&h, &bob, "DELETE", "/api/events/1").await),
        "insufficient_scope",
        "not the client's `*`"
    );

    // The configured service-account rules decide what a service account is: a client listed
    // in `service_accounts.client_ids` has only service-account tokens.
    let h = harness(
        &format!(
            "sources = [\"roles\", \"registry\"]\nservice_accounts = {{ client_ids = [\"ops-console\"] }}\n{BASE}"
        ),
        Some(reg.clone()),
    );
    let t = user("alice", "ops-console", json!({}));
    assert_eq!(
        h.authz.resolve(&t).await.0.kind,
        PrincipalKind::ServiceAccount
    );
    assert_eq!(
        code(&decide(&h, &t, "DELETE", "/api/events/1").await),
        "allow"
    );
}

/// Auto-provisioning every principal registers a user by subject alone: the next user of the
/// same client is not taken for the first.
#[tokio::test]
async fn a_provisioned_user_is_known_by_subject_only() {
    let reg = Arc::new(MemoryRegistry::new());
    let h = harness(
        &format!(
            "sources = [\"registry\"]\nauto_provision = {{ role = \"mcp-agent-events-manager\", service_accounts_only = false }}\n{BASE}"
        ),
        Some(reg.clone()),
    );
    let alice = user("alice", "webapp", json!({}));
    assert_eq!(
        code(&decide(&h, &alice, "GET", "/api/events").await),
        "allow"
    );
    let provisioned = reg.provisioned();
    assert_eq!(provisioned.len(), 1);
    assert_eq!(provisioned[0].key.subject(), Some("sub-alice"));
    assert_eq!(
        provisioned[0].key.client_id(),
        None,
        "no client id for a user"
    );
    assert!(!provisioned[0].service_account);
    let carol = user("carol", "webapp", json!({}));
    assert_eq!(
        code(&decide(&h, &carol, "GET", "/api/events").await),
        "allow"
    );
    assert_eq!(reg.provisioned().len(), 2, "carol has her own account");

    // The admin API's view (`resolve`) never provisions.
    let dave = user("dave", "webapp", json!({}));
    assert!(matches!(
        h.authz.resolve(&dave).await.1,
        Resolution::Grants(ref g) if !g.known
    ));
    assert_eq!(reg.provisioned().len(), 2);
}

/// `resolve` reads roles by the configured claim paths and honours per-issuer sources.
#[tokio::test]
async fn resolve_uses_the_configured_sources_and_claims() {
    let reg = Arc::new(MemoryRegistry::new());
    let h = harness(
        &format!(
            "roles_claims = [\"groups\"]\n[gateway.authz.issuer_sources]\n\"{ISSUER}\" = [\"registry\"]\n{BASE}"
        ),
        Some(reg.clone()),
    );
    // Token roles do not count for a registry-only issuer.
    let admin = sa("admin", json!({ "groups": ["mcp-agent-admin"] }));
    match h.authz.resolve(&admin).await.1 {
        Resolution::Grants(g) => assert!(g.permissions.is_empty(), "{g:?}"),
        other => panic!("{other:?}"),
    }
    let mut disabled = account("off", &["*"], &[]);
    disabled.enabled = false;
    reg.put_client("admin", disabled);
    assert!(matches!(
        h.authz.resolve(&admin).await.1,
        Resolution::Disabled { ref account } if account == "off"
    ));
    // Roles by the configured path, for an issuer that takes roles.
    let h = harness(&format!("roles_claims = [\"groups\"]\n{BASE}"), None);
    match h.authz.resolve(&admin).await.1 {
        Resolution::Grants(g) => assert_eq!(g.permissions.header_value(), "*"),
        other => panic!("{other:?}"),
    }
    let by_default_path = sa("admin", realm(&["mcp-agent-admin"]));
    match h.authz.resolve(&by_default_path).await.1 {
        Resolution::Grants(g) => assert!(g.permissions.is_empty(), "{g:?}"),
        other => panic!("{other:?}"),
    }
}
