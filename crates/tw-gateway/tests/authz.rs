//! Authorization through the gateway with the real test IdP: Keycloak-shaped role claims mapped
//! to permissions, the registry, unknown principals, route rules, dry-run, rate limits, audit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use tw_authz::{AuditEvent, AuditOutcome, Authz, MemoryAuditSink, MemoryRegistry, RegistryAccount};
use tw_core::{ManualClock, SystemClock};
use tw_gateway::Decision;
use tw_testkit::{ClientSpec, Idp, IdpConfig};

const AUTHZ: &str = r#"
[gateway.authz]
mode = "MODE"
sources = ["roles", "registry"]

[gateway.authz.roles]
"mcp-agent-events-manager" = ["events:read", "events:search", "events:update"]
"mcp-agent-attributes-readonly" = ["attributes:read"]

[gateway.authz.rate_limits]
"limited" = { per_second = 1, burst = 1 }

[[gateway.authz.rules]]
name = "me"
methods = "*"
paths = ["/api/me"]
allow_any_authenticated = true

[[gateway.authz.rules]]
name = "events-read"
methods = ["GET", "HEAD"]
paths = ["/api/events", "/api/events/**"]
require_any = ["events:read", "events:search"]

[[gateway.authz.rules]]
name = "events-write"
methods = ["PUT", "POST", "PATCH"]
paths = ["/api/events/{id}"]
require_all = ["events:update"]

[[gateway.authz.rules]]
name = "attributes-read"
methods = ["GET"]
paths = ["/api/attributes", "/api/attributes/**"]
require_all = ["attributes:read"]
"#;

fn idp_config() -> IdpConfig {
    let client = |id: &str, roles: &[&str]| {
        ClientSpec::secret_basic(id, &format!("{id}-secret")).realm_roles(roles.iter().copied())
    };
    IdpConfig::default()
        .client(client("events-manager", &["mcp-agent-events-manager"]))
        .client(client("limited", &["mcp-agent-events-manager"]))
        .client(client("stranger", &[]))
        .client(client("registered", &[]))
}

struct Setup {
    idp: Idp,
    up: Upstream,
    gw: RunningGateway,
    audit: Arc<MemoryAuditSink>,
    registry: Arc<MemoryRegistry>,
    clock: Arc<ManualClock>,
}

async fn setup(mode: &str) -> Setup {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let routes = format!(
        "[[gateway.routes]]\nprefix = \"/api\"\nupstream = \"{}\"\n{}",
        up.url(),
        AUTHZ.replace("MODE", mode)
    );
    let cfg = gateway_config(&idp_gateway_toml(&idp, "", &routes));
    let audit = Arc::new(MemoryAuditSink::new());
    let registry = Arc::new(MemoryRegistry::new());
    let version = registry.version();
    registry.put_client("registered", registered_account(true));
    let clock = Arc::new(ManualClock::starting_now());
    let authz = Authz::builder(cfg.authz.as_ref().expect("authz"))
        .clock(clock.clone())
        .registry(registry.clone(), Some(version))
        .audit_sink(audit.clone())
        .build()
        .expect("authz");
    let decision: Arc<dyn Decision> = Arc::new(authz);
    let gw = RunningGateway::start_with(&cfg, Arc::new(SystemClock), Some(decision), None).await;
    Setup {
        idp,
        up,
        gw,
        audit,
        registry,
        clock,
    }
}

/// The registry row of the `registered` client: `attributes:read`, which its token lacks.
fn registered_account(enabled: bool) -> RegistryAccount {
    RegistryAccount {
        id: "acct-1".into(),
        enabled,
        permissions: vec!["attributes:read".into()],
        roles: vec![],
    }
}

async fn token(idp: &Idp, client: &str) -> String {
    idp_token(idp, client, &format!("{client}-secret")).await
}

/// Waits (bounded) until the audit writer has written `n` events.
async fn audited(sink: &MemoryAuditSink, n: usize) -> Vec<AuditEvent> {
    tokio::time::timeout(LIMIT, async {
        loop {
            let events = sink.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("audit events written")
}

#[tokio::test]
async fn service_accounts_get_exactly_their_permissions() {
    let s = setup("enforce").await;
    let c = client();
    let manager = token(&s.idp, "events-manager").await;

    // Allowed: the permissions go upstream; a caller's own header is replaced.
    let resp = send(
        c.get(s.gw.url("/api/events/42"))
            .bearer_auth(&manager)
            .header("X-Auth-Permissions", "*"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let echo = json_of(resp).await;
    assert_eq!(
        echoed(&echo, "x-auth-permissions"),
        ["events:read events:search events:update"]
    );
    let resp = send(c.put(s.gw.url("/api/events/42")).bearer_auth(&manager)).await;
    assert_eq!(resp.status(), 200);

    // Another permission: 403 insufficient_scope naming the rule and the permission.
    let before = s.up.count();
    let resp = send(c.get(s.gw.url("/api/attributes")).bearer_auth(&manager)).await;
    let ch = challenge(&resp);
    assert!(ch.contains("error=\"insufficient_scope\""), "{ch}");
    assert!(ch.contains("scope=\"attributes:read\""), "{ch}");
    let body = assert_refused(resp, 403, "insufficient_scope").await;
    let text = body.to_string();
    assert!(text.contains("attributes-read"), "names the rule: {text}");
    assert_eq!(s.up.count(), before, "never forwarded");

    // No rule: denied by default.
    let resp = send(c.delete(s.gw.url("/api/events/42")).bearer_auth(&manager)).await;
    assert_refused(resp, 403, "no_matching_rule").await;

    // Unknown principal: no role mapping, no registry row.
    let stranger = token(&s.idp, "stranger").await;
    let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&stranger)).await;
    assert_refused(resp, 403, "unknown_principal").await;
    // ... but any authenticated caller may use an `allow_any_authenticated` rule.
    let resp = send(c.get(s.gw.url("/api/me")).bearer_auth(&stranger)).await;
    assert_eq!(resp.status(), 200);
    assert!(echoed(&json_of(resp).await, "x-auth-permissions").is_empty());

    // The registry grants what the token's roles do not.
    let registered = token(&s.idp, "registered").await;
    let resp = send(
        c.get(s.gw.url("/api/attributes/7"))
            .bearer_auth(&registered),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        echoed(&json_of(resp).await, "x-auth-permissions"),
        ["attributes:read"]
    );
    // Disabled in the registry (the version bump drops the cache): denied.
    s.registry
        .put_client("registered", registered_account(false));
    let resp = send(
        c.get(s.gw.url("/api/attributes/7"))
            .bearer_auth(&registered),
    )
    .await;
    assert_refused(resp, 403, "account_disabled").await;

    // Forward auth: 200 with the permissions header.
    let resp = send(
        c.get(s.gw.url("/auth"))
            .bearer_auth(&manager)
            .header("x-original-uri", "/api/events?page=2")
            .header("x-original-method", "GET"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-auth-permissions"],
        "events:read events:search events:update"
    );

    let events = audited(&s.audit, 9).await;
    let first = &events[0];
    assert_eq!(first.outcome, AuditOutcome::Allow);
    assert_eq!(first.principal, "service_account:events-manager");
    assert_eq!(first.client_id.as_deref(), Some("events-manager"));
    assert_eq!(first.method, "GET");
    assert_eq!(first.path.as_deref(), Some("/api/events/42"));
    assert_eq!(first.rule.as_deref(), Some("events-read"));
    assert_eq!(first.permissions, ["events:read"]);
    let reasons: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.outcome.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("allow", "allowed"),
            ("allow", "allowed"),
            ("deny", "insufficient_scope"),
            ("deny", "no_matching_rule"),
            ("deny", "unknown_principal"),
            ("allow", "allowed"),
            ("allow", "allowed"),
            ("deny", "account_disabled"),
            ("allow", "allowed"),
        ]
    );
    assert_eq!(
        events[8].path.as_deref(),
        Some("/api/events"),
        "query dropped"
    );
    s.gw.stop().await;
}

#[tokio::test]
async fn dry_run_allows_and_audits_and_rate_limits_answer_429() {
    let s = setup("dry_run").await;
    let c = client();
    let stranger = token(&s.idp, "stranger").await;
    let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&stranger)).await;
    assert_eq!(resp.status(), 200, "dry run lets it through");
    let resp = send(c.delete(s.gw.url("/api/anything")).bearer_auth(&stranger)).await;
    assert_eq!(resp.status(), 200);
    let events = audited(&s.audit, 2).await;
    assert_eq!(events[0].outcome, AuditOutcome::DryRunDeny);
    assert_eq!(events[0].reason, "unknown_principal");
    assert_eq!(events[0].rule.as_deref(), Some("events-read"));
    assert_eq!(events[1].outcome, AuditOutcome::DryRunDeny);
    assert_eq!(events[1].reason, "no_matching_rule");

    // `limited`: 1 per second, burst 1, on the authorizer's (manual) clock.
    let limited = token(&s.idp, "limited").await;
    let get = || send(c.get(s.gw.url("/api/events")).bearer_auth(&limited));
    assert_eq!(get().await.status(), 200);
    let resp = get().await;
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_refused(resp, 429, "rate_limited").await;
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(get().await.status(), 200);
    let events = audited(&s.audit, 5).await;
    assert_eq!(events[3].outcome, AuditOutcome::RateLimited);
    s.gw.stop().await;
}
