//! Authorization through the gateway with the real test IdP: Keycloak-shaped role claims mapped
//! to permissions, the registry, unknown principals, route rules, dry-run, rate limits, audit,
//! users authorized or passed through, and the Evently example as shipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use tw_authz::{
    AccountKey, AuditEvent, AuditOutcome, Authz, MemoryAuditSink, MemoryRegistry, RegistryAccount,
};
use tw_core::{ManualClock, SystemClock};
use tw_gateway::Decision;
use tw_testkit::{ClientSpec, Idp, IdpConfig, UserSpec};

const AUTHZ: &str = r#"
[gateway.authz]
mode = "MODE"
sources = ["roles", "registry"]
EXTRA

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
        .client(client("attr-reader", &["mcp-agent-attributes-readonly"]))
        // People sign in through `web`; its service account is a caller too.
        .client(client("web", &[]).grants(["client_credentials", "refresh_token"]))
        .user(UserSpec::new("alice"))
        .user(UserSpec::new("bob").realm_roles(["mcp-agent-events-manager"]))
        .user(UserSpec::new("carol"))
        // A person whose name looks like another client's service account.
        .user(UserSpec::new("service-account-stranger"))
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
    setup_with(mode, "", &[]).await
}

/// [`AUTHZ`] with `extra` in `[gateway.authz]` and each `(from, to)` of `edits` applied once.
async fn setup_with(mode: &str, extra: &str, edits: &[(&str, &str)]) -> Setup {
    let mut authz = AUTHZ.replace("MODE", mode).replace("EXTRA", extra);
    for (from, to) in edits {
        assert_eq!(authz.matches(from).count(), 1, "{from}");
        authz = authz.replace(from, to);
    }
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let routes = format!(
        "[[gateway.routes]]\nprefix = \"/api\"\nupstream = \"{}\"\n{}",
        up.url(),
        authz
    );
    let cfg = gateway_config(&idp_gateway_toml(&idp, "", &routes));
    start(idp, up, &cfg).await
}

/// A gateway for `cfg` whose authorizer has an in-memory registry (with the `registered`
/// client's account) and a manual clock, and matches rule paths as `[gateway.paths]` says (as
/// `tokenwarden gateway` builds it).
async fn start(idp: Idp, up: Upstream, cfg: &tw_config::GatewayConfig) -> Setup {
    let audit = Arc::new(MemoryAuditSink::new());
    let registry = Arc::new(MemoryRegistry::new());
    let version = registry.version();
    registry.put_client("registered", registered_account(true));
    let clock = Arc::new(ManualClock::starting_now());
    let authz = Authz::builder(cfg.authz.as_ref().expect("authz"))
        .case_insensitive_paths(cfg.paths.case_insensitive)
        .clock(clock.clone())
        .registry(registry.clone(), Some(version))
        .audit_sink(audit.clone())
        .build()
        .expect("authz");
    let decision: Arc<dyn Decision> = Arc::new(authz);
    let gw = RunningGateway::start_with(cfg, Arc::new(SystemClock), Some(decision), None).await;
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

/// `username`'s access token through the `web` client.
async fn user_token(idp: &Idp, username: &str) -> String {
    idp.user_access_token("web", "web-secret", username).await
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

/// `users` at its default (`authorize`): a person without a role mapping or registry row is an
/// unknown principal, one with a mapped role gets its permissions (today's behaviour).
#[tokio::test]
async fn users_are_authorized_by_default() {
    let s = setup("enforce").await;
    let c = client();
    let alice = user_token(&s.idp, "alice").await;
    let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&alice)).await;
    let body = assert_refused(resp, 403, "unknown_principal").await;
    assert!(body.to_string().contains("user:alice"), "{body}");
    let bob = user_token(&s.idp, "bob").await;
    let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&bob)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        echoed(&json_of(resp).await, "x-auth-permissions"),
        ["events:read events:search events:update"]
    );
    let resp = send(c.get(s.gw.url("/api/attributes")).bearer_auth(&bob)).await;
    assert_refused(resp, 403, "insufficient_scope").await;
    s.gw.stop().await;
}

/// `users = "pass_through"`: a person's verified token reaches the upstream on every route a
/// rule matches, without permissions (a caller's own permissions header removed), in both
/// gateway modes; unmatched routes stay denied, a disabled registry account stays refused, and
/// service accounts (and a person named like one) are authorized as before.
#[tokio::test]
async fn users_pass_through_where_a_rule_matches() {
    let s = setup_with("enforce", "users = \"pass_through\"", &[]).await;
    let c = client();
    let alice = user_token(&s.idp, "alice").await;
    let alice_id = s.idp.user_id("alice").await;

    for (method, path) in [
        ("GET", "/api/events/42"),
        ("PUT", "/api/events/42"),
        ("GET", "/api/attributes/7"),
        ("GET", "/api/Events/42"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = send(
            c.request(m, s.gw.url(path))
                .bearer_auth(&alice)
                .header("X-Auth-Permissions", "*")
                .header("X-Auth_Permissions", "*"),
        )
        .await;
        assert_eq!(resp.status(), 200, "{method} {path}");
        let echo = json_of(resp).await;
        assert!(
            echoed(&echo, "x-auth-permissions").is_empty(),
            "{method} {path}: {echo}"
        );
        assert!(echoed(&echo, "x-auth_permissions").is_empty(), "{echo}");
        assert_eq!(
            echoed_one(&echo, "x-auth-subject").as_deref(),
            Some(alice_id.as_str())
        );
        assert_eq!(
            echoed_one(&echo, "x-auth-service-account").as_deref(),
            Some("false")
        );
    }
    // Deny by default: no rule, no pass.
    for (method, path) in [("DELETE", "/api/events/42"), ("GET", "/api/orders")] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = send(c.request(m, s.gw.url(path)).bearer_auth(&alice)).await;
        assert_refused(resp, 403, "no_matching_rule").await;
    }
    // A user with mapped roles is passed through as well: no permissions go upstream.
    let bob = user_token(&s.idp, "bob").await;
    let resp = send(c.get(s.gw.url("/api/attributes/7")).bearer_auth(&bob)).await;
    assert_eq!(resp.status(), 200);
    assert!(echoed(&json_of(resp).await, "x-auth-permissions").is_empty());

    // Forward auth: 200 with an empty permissions header, so the front proxy overwrites any.
    let resp = send(
        c.get(s.gw.url("/auth"))
            .bearer_auth(&alice)
            .header("x-original-uri", "/api/events?page=2")
            .header("x-original-method", "GET"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-permissions"], "");
    let resp = send(
        c.get(s.gw.url("/auth"))
            .bearer_auth(&alice)
            .header("x-original-uri", "/api/orders")
            .header("x-original-method", "GET"),
    )
    .await;
    assert_eq!(resp.status(), 403);

    // A disabled registry account of the person is refused.
    let carol_id = s.idp.user_id("carol").await;
    s.registry.put(
        AccountKey::user(&s.idp.issuer(), Some(&carol_id)),
        RegistryAccount {
            id: "carol".into(),
            enabled: false,
            permissions: vec![],
            roles: vec![],
        },
    );
    let carol = user_token(&s.idp, "carol").await;
    let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&carol)).await;
    assert_refused(resp, 403, "account_disabled").await;

    // Service accounts are authorized here: the `web` client's own, a stranger, a manager.
    for client_id in ["web", "stranger"] {
        let t = token(&s.idp, client_id).await;
        let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&t)).await;
        assert_refused(resp, 403, "unknown_principal").await;
    }
    let manager = token(&s.idp, "events-manager").await;
    let resp = send(c.get(s.gw.url("/api/attributes")).bearer_auth(&manager)).await;
    assert_refused(resp, 403, "insufficient_scope").await;
    // A person named like a service account is not passed through.
    let lookalike = user_token(&s.idp, "service-account-stranger").await;
    let resp = send(c.get(s.gw.url("/api/events")).bearer_auth(&lookalike)).await;
    assert_refused(resp, 403, "unknown_principal").await;

    let events = audited(&s.audit, 14).await;
    let alice_events: Vec<(&str, &str, usize)> = events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(alice_id.as_str()))
        .map(|e| (e.outcome.as_str(), e.reason.as_str(), e.permissions.len()))
        .collect();
    assert_eq!(
        alice_events,
        [
            ("allow", "user_pass_through", 0),
            ("allow", "user_pass_through", 0),
            ("allow", "user_pass_through", 0),
            ("allow", "user_pass_through", 0),
            ("deny", "no_matching_rule", 0),
            ("deny", "no_matching_rule", 0),
            ("allow", "user_pass_through", 0),
            ("deny", "no_matching_rule", 0),
        ]
    );
    assert!(
        events
            .iter()
            .filter(|e| e.reason == "user_pass_through")
            .all(|e| e.principal.starts_with("user:")),
        "{events:?}"
    );
    s.gw.stop().await;
}

/// A rule's `users` overrides the section's: one route opted in under the default, one route
/// kept authorized under `pass_through`.
#[tokio::test]
async fn a_rule_decides_for_its_routes() {
    let s = setup_with(
        "enforce",
        "",
        &[(
            "name = \"events-read\"",
            "name = \"events-read\"\nusers = \"pass_through\"",
        )],
    )
    .await;
    let c = client();
    let alice = user_token(&s.idp, "alice").await;
    let resp = send(c.get(s.gw.url("/api/events/1")).bearer_auth(&alice)).await;
    assert_eq!(resp.status(), 200);
    let resp = send(c.put(s.gw.url("/api/events/1")).bearer_auth(&alice)).await;
    assert_refused(resp, 403, "unknown_principal").await;
    let stranger = token(&s.idp, "stranger").await;
    let resp = send(c.get(s.gw.url("/api/events/1")).bearer_auth(&stranger)).await;
    assert_refused(resp, 403, "unknown_principal").await;
    s.gw.stop().await;

    let s = setup_with(
        "enforce",
        "users = \"pass_through\"",
        &[(
            "name = \"attributes-read\"",
            "name = \"attributes-read\"\nusers = \"authorize\"",
        )],
    )
    .await;
    let alice = user_token(&s.idp, "alice").await;
    let resp = send(c.get(s.gw.url("/api/attributes/7")).bearer_auth(&alice)).await;
    assert_refused(resp, 403, "unknown_principal").await;
    let resp = send(c.put(s.gw.url("/api/events/1")).bearer_auth(&alice)).await;
    assert_eq!(resp.status(), 200);
    s.gw.stop().await;
}

/// `examples/evently-gateway.toml` as shipped (only issuer, audience, listener and upstream
/// pointed at the test servers): an agent with `attributes:read` only is refused attribute
/// writes with the permission it lacks, and people are passed through.
#[tokio::test]
async fn the_evently_example_names_the_missing_attributes_permission() {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/evently-gateway.toml");
    let mut text = std::fs::read_to_string(&path).expect("example");
    let issuer = idp.issuer();
    let upstream = format!("upstream = \"{}\"", up.url());
    for (from, to) in [
        (
            "issuer = \"https://keycloak.example.org/realms/evently\"",
            format!("issuer = \"{issuer}\""),
        ),
        (
            "audiences = [\"evently-api\"]",
            "audiences = [\"api\"]".to_owned(),
        ),
        (
            "listen = \"127.0.0.1:8800\"",
            "listen = \"127.0.0.1:0\"".to_owned(),
        ),
        ("upstream = \"http://127.0.0.1:5000\"", upstream),
    ] {
        assert_eq!(text.matches(from).count(), 1, "the example has {from}");
        text = text.replace(from, &to);
    }
    let cfg = gateway_config(&text);
    let s = start(idp, up, &cfg).await;
    let c = client();
    let reader = token(&s.idp, "attr-reader").await;

    let resp = send(c.get(s.gw.url("/api/attributes")).bearer_auth(&reader)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        echoed(&json_of(resp).await, "x-auth-permissions"),
        ["attributes:read"]
    );
    let before = s.up.count();
    for (method, path, rule, needed) in [
        (
            "POST",
            "/api/attributes",
            "attributes-create",
            "attributes:create",
        ),
        (
            "POST",
            "/api/attributes/",
            "attributes-create",
            "attributes:create",
        ),
        (
            "POST",
            "/api/Attributes",
            "attributes-create",
            "attributes:create",
        ),
        (
            "POST",
            "/api/attributes/5/values",
            "attributes-create",
            "attributes:create",
        ),
        (
            "post",
            "/api/attributes",
            "attributes-create",
            "attributes:create",
        ),
        (
            "PUT",
            "/api/attributes/5",
            "attributes-update",
            "attributes:update",
        ),
        (
            "PATCH",
            "/api/attributes/5",
            "attributes-update",
            "attributes:update",
        ),
        (
            "DELETE",
            "/api/attributes/5",
            "attributes-delete",
            "attributes:delete",
        ),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = send(c.request(m, s.gw.url(path)).bearer_auth(&reader)).await;
        let ch = challenge(&resp);
        assert!(
            ch.contains("error=\"insufficient_scope\""),
            "{method} {path}: {ch}"
        );
        assert!(
            ch.contains(&format!("scope=\"{needed}\"")),
            "{method} {path}: {ch}"
        );
        let body = assert_refused(resp, 403, "insufficient_scope").await;
        let text = body.to_string();
        assert!(text.contains(rule), "{method} {path}: {text}");
        assert!(text.contains(needed), "{method} {path}: {text}");
    }
    assert_eq!(s.up.count(), before, "no write reached the upstream");

    // Evently's users are passed through to Evently, which authorizes them itself.
    let alice = user_token(&s.idp, "alice").await;
    let resp = send(c.post(s.gw.url("/api/attributes")).bearer_auth(&alice)).await;
    assert_eq!(resp.status(), 200);
    assert!(echoed(&json_of(resp).await, "x-auth-permissions").is_empty());
    let resp = send(c.delete(s.gw.url("/api/users/1")).bearer_auth(&alice)).await;
    assert_refused(resp, 403, "no_matching_rule").await;
    s.gw.stop().await;
}
