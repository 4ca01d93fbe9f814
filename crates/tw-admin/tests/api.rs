//! The admin API over real HTTP: tokens from the real test IdP (service-account tokens and users'
//! tokens through a client), the gateway's own `Verifier` and `[gateway.authz]` settings, a
//! SQLite (and one PostgreSQL) store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tw_admin::{AdminConfig, router};
use tw_config::{SecretRef, StorageConfig};
use tw_core::{Clock, SystemClock};
use tw_store::{AuditKind, AuditOutcome, AuditRecord, PrincipalKind, Store};
use tw_testkit::{ClientSpec, Idp, IdpConfig, TestServer, UserSpec};
use tw_verify::Verifier;

const LIMIT: Duration = Duration::from_secs(20);

/// The permission sources the admin tests run with, as a gateway with a registry has them.
const AUTHZ: &str = "[gateway.authz]\nsources = [\"roles\", \"registry\"]\n";

struct Setup {
    idp: Idp,
    /// A second trusted issuer, when the scenario has one.
    partner: Option<Idp>,
    server: TestServer,
    store: Store,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _pg: Option<tw_testkit::Postgres>,
}

fn idp_config() -> IdpConfig {
    let client = |id: &str, roles: &[&str]| {
        ClientSpec::secret_basic(id, &format!("{id}-secret")).realm_roles(roles.iter().copied())
    };
    IdpConfig::default()
        .client(client("ops-admin", &["tokenwarden-admin"]))
        .client(client("plain", &["mcp-agent-events-manager"]))
        .client(client("registry-admin", &[]))
        .client(
            ClientSpec::secret_basic("client-role-admin", "client-role-admin-secret")
                .client_roles("tokenwarden", ["admin"]),
        )
        .client(
            ClientSpec::secret_basic("self-admin", "self-admin-secret")
                .client_roles("self-admin", ["admin"])
                .realm_roles(["tokenwarden-admin"]),
        )
        // Operators sign in through the console; the console has a service account too.
        .client(
            ClientSpec::secret_basic("ops-console", "ops-console-secret")
                .grants(["client_credentials", "refresh_token"]),
        )
        .user(UserSpec::new("alice"))
        .user(UserSpec::new("carol").realm_roles(["tokenwarden-admin"]))
        .user(UserSpec::new("service-account-ops-console-x"))
        .user(UserSpec::new("service-account-other"))
}

fn sqlite(dir: &tempfile::TempDir) -> StorageConfig {
    StorageConfig {
        url: format!("sqlite://{}", dir.path().join("tw.db").display()),
        ..StorageConfig::default()
    }
}

/// The admin API as `tokenwarden gateway` mounts it: `[gateway]` with the IdP's issuer (and the
/// partner's), `authz` as its `[gateway.authz]`, `adjust` applied to the resulting config.
async fn setup_with(
    storage: StorageConfig,
    dir: tempfile::TempDir,
    pg: Option<tw_testkit::Postgres>,
    partner: Option<Idp>,
    authz: &str,
    adjust: impl FnOnce(AdminConfig) -> AdminConfig,
) -> Setup {
    let idp = Idp::start(idp_config()).await;
    let mut toml = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n\n[[gateway.issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n",
        idp.issuer()
    );
    if let Some(p) = &partner {
        toml.push_str(&format!(
            "\n[[gateway.issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n",
            p.issuer()
        ));
    }
    let partner_issuer = partner.as_ref().map(Idp::issuer).unwrap_or_default();
    toml.push_str(&authz.replace("PARTNER", &partner_issuer));
    let gw = tw_config::load_str(&toml, "gateway.toml")
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
        .gateway
        .expect("gateway");
    let verifier =
        Arc::new(Verifier::new(&gw.verifier_settings(), Arc::new(SystemClock)).expect("verifier"));
    verifier.start().await;
    let store = Store::open(&storage, Arc::new(SystemClock))
        .await
        .expect("store");
    let config = adjust(gw.admin_settings().with_instance("gw-test"));
    let app = router(store.clone(), verifier, config).expect("router");
    let server = TestServer::start(app).await;
    Setup {
        idp,
        partner,
        server,
        store,
        http: tw_testkit::http_client(LIMIT),
        _dir: dir,
        _pg: pg,
    }
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    setup_with(sqlite(&dir), dir, None, None, AUTHZ, |c| c).await
}

async fn setup_custom(authz: &str, adjust: impl FnOnce(AdminConfig) -> AdminConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    setup_with(sqlite(&dir), dir, None, None, authz, adjust).await
}

impl Setup {
    /// A service-account token of `client`.
    async fn token(&self, client: &str) -> String {
        self.idp
            .client_credentials_token(client, &format!("{client}-secret"))
            .await
    }

    /// `username`'s token through the operators' console.
    async fn user_token(&self, username: &str) -> String {
        self.idp
            .user_access_token("ops-console", "ops-console-secret", username)
            .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, headers, json)
    }

    /// Registers `client_id` of `issuer` with one role granting `permissions`.
    async fn register(&self, issuer: &str, client_id: &str, role: &str, permissions: &[&str]) {
        let codes: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        self.store.upsert_role(role, None, &codes).await.unwrap();
        let mut new = tw_store::NewAccount::with_client_id(issuer, client_id, "test");
        new.roles = vec![role.into()];
        self.store.create_account(new).await.unwrap();
    }
}

#[tokio::test]
async fn refusals_follow_rfc_6750() {
    let s = setup().await;
    // No token: 401 with a bare challenge.
    let (status, headers, body) = s.call(Method::GET, "/admin/v1/accounts", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"tokenwarden\"");
    assert_eq!(body["error"]["code"], "missing_token");
    // A garbage token: 401 invalid_token.
    let (status, headers, body) = s
        .call(Method::GET, "/admin/v1/accounts", Some("not.a.jwt"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert_eq!(body["error"]["code"], "invalid_token");
    // A malformed Authorization (the gateway's strict RFC 6750 parser): 400 invalid_request.
    for value in ["Bearer a b", "Bearer", "Bearer a,b", "Bearer \"x\""] {
        let resp = s
            .http
            .get(format!("{}/admin/v1/accounts", s.server.url()))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{value}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{challenge}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{value}");
    }
    // Another scheme is no credentials at all.
    let resp = s
        .http
        .get(format!("{}/admin/v1/accounts", s.server.url()))
        .basic_auth("ops-admin", Some("ops-admin-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A valid token without the admin role: 403 insufficient_scope.
    let plain = s.token("plain").await;
    let (status, headers, body) = s
        .call(Method::GET, "/admin/v1/accounts", Some(&plain), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"tokenwarden:admin\""),
        "{challenge}"
    );
    assert_eq!(body["error"]["code"], "admin_permission_required");
    // Writes are refused too, and change nothing.
    let (status, _, _) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/sneaky",
            Some(&plain),
            Some(json!({ "permissions": ["*"] })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(s.store.list_roles().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_admin_manages_roles_and_accounts() {
    let s = setup().await;
    let admin = s.token("ops-admin").await;
    let t = Some(admin.as_str());
    let issuer = s.idp.issuer();

    // Roles.
    let (status, _, role) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/mcp-agent-events-manager",
            t,
            Some(json!({ "description": "Evently agent", "permissions": ["events:read", "events:*"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    assert_eq!(role["permissions"], json!(["events:*", "events:read"]));
    let (status, _, _) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/mcp-agent-attributes-readonly",
            t,
            Some(json!({ "permissions": ["attributes:read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, roles) = s.call(Method::GET, "/admin/v1/roles", t, None).await;
    assert_eq!(roles.as_array().unwrap().len(), 2);
    let (status, _, role) = s
        .call(
            Method::GET,
            "/admin/v1/roles/mcp-agent-attributes-readonly",
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(role["description"], Value::Null);

    // Accounts.
    let (status, _, account) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(json!({
                "issuer": issuer,
                "client_id": "evently-confidential-client",
                "display_name": "Evently backend",
                "roles": ["mcp-agent-events-manager"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["created_by"], "api:service_account:ops-admin");
    assert_eq!(account["enabled"], true);
    let id = account["id"].as_str().unwrap().to_owned();

    // Duplicate: 409.
    let (status, _, body) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(json!({ "issuer": issuer, "client_id": "evently-confidential-client" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "account_exists");

    let (_, _, list) = s.call(Method::GET, "/admin/v1/accounts", t, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    let (status, _, shown) = s
        .call(Method::GET, &format!("/admin/v1/accounts/{id}"), t, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["display_name"], "Evently backend");

    // Disable / enable.
    let (status, _, a) = s
        .call(
            Method::POST,
            &format!("/admin/v1/accounts/{id}/disable"),
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a["enabled"], false);
    assert!(!s.store.get_account(&id).await.unwrap().enabled);
    let (_, _, a) = s
        .call(
            Method::POST,
            &format!("/admin/v1/accounts/{id}/enable"),
            t,
            None,
        )
        .await;
    assert_eq!(a["enabled"], true);

    // Grant / revoke.
    let (status, _, a) = s
        .call(
            Method::POST,
            &format!("/admin/v1/accounts/{id}/roles/mcp-agent-attributes-readonly"),
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        a["roles"],
        json!(["mcp-agent-attributes-readonly", "mcp-agent-events-manager"])
    );
    let (_, _, a) = s
        .call(
            Method::DELETE,
            &format!("/admin/v1/accounts/{id}/roles/mcp-agent-events-manager"),
            t,
            None,
        )
        .await;
    assert_eq!(a["roles"], json!(["mcp-agent-attributes-readonly"]));
    let (status, _, body) = s
        .call(
            Method::POST,
            &format!("/admin/v1/accounts/{id}/roles/ghost"),
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "role_not_found");

    // Role in use: 409, then force.
    let (status, _, body) = s
        .call(
            Method::DELETE,
            "/admin/v1/roles/mcp-agent-attributes-readonly",
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "role_in_use");
    let (status, _, _) = s
        .call(
            Method::DELETE,
            "/admin/v1/roles/mcp-agent-attributes-readonly?force=true",
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Delete; then 404.
    let (status, _, _) = s
        .call(Method::DELETE, &format!("/admin/v1/accounts/{id}"), t, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = s
        .call(Method::GET, &format!("/admin/v1/accounts/{id}"), t, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "account_not_found");
    let (status, _, body) = s.call(Method::GET, "/admin/v1/roles/nope", t, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "role_not_found");
}

#[tokio::test]
async fn bad_input_is_400_with_a_code() {
    let s = setup().await;
    let admin = s.token("ops-admin").await;
    let t = Some(admin.as_str());
    // Not JSON at all.
    let resp = s
        .http
        .post(format!("{}/admin/v1/accounts", s.server.url()))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    // Unknown field.
    let (status, _, body) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(json!({ "issuer": "x", "client_id": "c", "colour": "red" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");
    // Well-formed, but neither subject nor client id.
    let (status, _, body) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(json!({ "issuer": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_account");
    // A permission code with a space.
    let (status, _, body) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/r",
            t,
            Some(json!({ "permissions": ["events read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_permission");
    // Audit filters.
    for (q, code) in [
        ("outcome=maybe", "invalid_outcome"),
        ("since=soon", "invalid_time"),
        ("limit=0", "invalid_limit"),
        ("limit=abc", "invalid_limit"),
        ("colour=red", "invalid_parameter"),
    ] {
        let (status, _, body) = s
            .call(Method::GET, &format!("/admin/v1/audit?{q}"), t, None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(body["error"]["code"], code, "{q}");
    }
    // Unknown route and wrong method: JSON too.
    let (status, _, body) = s.call(Method::GET, "/admin/v1/nothing", t, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _, body) = s.call(Method::PATCH, "/admin/v1/roles", t, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn registry_accounts_with_tokenwarden_admin_are_admitted() {
    let s = setup().await;
    let token = s.token("registry-admin").await;
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/roles", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Register the client with a role granting tokenwarden:* (a wildcard counts).
    s.store
        .upsert_role("registry-ops", None, &["tokenwarden:*".to_owned()])
        .await
        .unwrap();
    let mut new = tw_store::NewAccount::with_client_id(&s.idp.issuer(), "registry-admin", "test");
    new.roles = vec!["registry-ops".into()];
    let account = s.store.create_account(new).await.unwrap();
    let (status, _, roles) = s
        .call(Method::GET, "/admin/v1/roles", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(roles[0]["name"], "registry-ops");
    // Disabled: refused again.
    s.store
        .set_account_enabled(&account.id, false)
        .await
        .unwrap();
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/roles", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn audit_is_queryable() {
    let s = setup().await;
    let admin = s.token("ops-admin").await;
    let now = SystemClock.now();
    let record = |secs_ago: u64, client: &str, outcome: AuditOutcome| AuditRecord {
        id: None,
        kind: AuditKind::Decision,
        at: now.minus(Duration::from_secs(secs_ago)),
        issuer: "https://kc.example/realms/evently".into(),
        subject: None,
        username: None,
        client_id: Some(client.into()),
        principal_kind: PrincipalKind::ServiceAccount,
        method: "GET".into(),
        path: "/api/events".into(),
        rule: Some("events-read".into()),
        permissions_used: vec!["events:read".into()],
        outcome,
        reason: None,
        instance: "gw-1".into(),
        action: None,
        object: None,
    };
    s.store
        .append_audit(&[
            record(7200, "evently-confidential-client", AuditOutcome::Allow),
            record(60, "evently-confidential-client", AuditOutcome::Deny),
            record(30, "other", AuditOutcome::RateLimited),
        ])
        .await
        .unwrap();
    let (status, _, all) = s
        .call(Method::GET, "/admin/v1/audit", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["client_id"], "other");
    let (_, _, some) = s
        .call(
            Method::GET,
            "/admin/v1/audit?principal=evently-confidential-client&since=1h",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(some.as_array().unwrap().len(), 1);
    assert_eq!(some[0]["outcome"], "deny");
    let (_, _, limited) = s
        .call(
            Method::GET,
            "/admin/v1/audit?outcome=rate_limited&limit=5",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(limited.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn openapi_and_docs_are_served() {
    let s = setup().await;
    let (status, _, doc) = s
        .call(Method::GET, "/admin/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/admin/v1/accounts",
        "/admin/v1/accounts/{id}",
        "/admin/v1/accounts/{id}/enable",
        "/admin/v1/accounts/{id}/disable",
        "/admin/v1/accounts/{id}/roles/{role}",
        "/admin/v1/roles",
        "/admin/v1/roles/{name}",
        "/admin/v1/audit",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(doc["paths"]["/admin/v1/roles/{name}"]["put"].is_object());
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }

    let resp = s
        .http
        .get(format!("{}/admin/docs", s.server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("<html"));
    assert!(html.contains("\"/admin/v1/openapi.json\""));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

#[tokio::test]
async fn works_on_postgresql() {
    let pg = tw_testkit::Postgres::start().await;
    let db = pg.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("db-password");
    std::fs::write(&secret, pg.password()).unwrap();
    let storage = StorageConfig {
        url: pg.url(&db),
        password: Some(SecretRef::File(secret)),
        ..StorageConfig::default()
    };
    let s = setup_with(storage, dir, Some(pg), None, AUTHZ, |c| c).await;
    let admin = s.token("ops-admin").await;
    let t = Some(admin.as_str());
    let (status, _, _) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/mcp-agent-events-manager",
            t,
            Some(json!({ "permissions": ["events:read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, account) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(json!({
                "issuer": s.idp.issuer(),
                "client_id": "evently-confidential-client",
                "roles": ["mcp-agent-events-manager"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let id = account["id"].as_str().unwrap();
    let (status, _, body) = s
        .call(
            Method::DELETE,
            "/admin/v1/roles/mcp-agent-events-manager",
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "role_in_use");
    let (status, _, _) = s
        .call(Method::DELETE, &format!("/admin/v1/accounts/{id}"), t, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, list) = s.call(Method::GET, "/admin/v1/accounts", t, None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn client_roles_and_the_path_prefix_are_configurable() {
    let s = setup_custom(AUTHZ, |c| AdminConfig {
        roles: vec!["tokenwarden:admin".into()],
        path_prefix: "/ops/admin/".into(),
        ..c
    })
    .await;
    let by_client_role = s.token("client-role-admin").await;
    let (status, _, roles) = s
        .call(
            Method::GET,
            "/ops/admin/v1/roles",
            Some(&by_client_role),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{roles}");
    // The realm role of the default configuration is not listed here.
    let realm_admin = s.token("ops-admin").await;
    let (status, _, _) = s
        .call(Method::GET, "/ops/admin/v1/roles", Some(&realm_admin), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/roles", Some(&by_client_role), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, doc) = s
        .call(Method::GET, "/ops/admin/v1/openapi.json", None, None)
        .await;
    assert!(doc["paths"]["/ops/admin/v1/accounts"].is_object());
}

#[tokio::test]
async fn admin_writes_are_logged_without_tokens() {
    let logs = tw_testkit::logcapture::capture_global();
    let s = setup().await;
    let admin = s.token("ops-admin").await;
    let (status, _, _) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/logged-role",
            Some(&admin),
            Some(json!({ "permissions": ["events:read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = logs.contents();
    let line = text
        .lines()
        .find(|l| l.contains("logged-role"))
        .unwrap_or_else(|| panic!("no log line for the write:\n{text}"));
    assert!(line.contains("role.put"), "{line}");
    assert!(line.contains("ops-admin"), "{line}");
    logs.assert_absent(&admin);
    logs.assert_absent("ops-admin-secret");
}

/// The gateway mounts the router next to its own routes and fallback: both keep working.
#[tokio::test]
async fn merges_into_a_router_with_its_own_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig {
        url: format!("sqlite://{}", dir.path().join("tw.db").display()),
        ..StorageConfig::default()
    };
    let store = Store::open(&storage, Arc::new(SystemClock)).await.unwrap();
    let toml = "[gateway]\n[[gateway.issuers]]\nissuer = \"https://issuer.invalid/realms/x\"\naudiences = [\"api\"]\njwks_url = \"http://127.0.0.1:9/jwks\"\n";
    let gw = tw_config::load_str(toml, "t.toml")
        .unwrap()
        .gateway
        .unwrap();
    let verifier = Arc::new(Verifier::new(&gw.verifier_settings(), Arc::new(SystemClock)).unwrap());
    let app = axum::Router::new()
        .route("/auth", axum::routing::get(|| async { "gateway" }))
        .merge(router(store, verifier, AdminConfig::default()).unwrap())
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "gateway fallback") });
    let server = TestServer::start(app).await;
    let http = tw_testkit::http_client(LIMIT);
    let get = |path: &str| http.get(format!("{}{path}", server.url())).send();
    assert_eq!(get("/auth").await.unwrap().text().await.unwrap(), "gateway");
    assert_eq!(
        get("/elsewhere").await.unwrap().status(),
        StatusCode::IM_A_TEAPOT
    );
    let resp = get("/admin/v1/accounts").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/admin/docs").await.unwrap().status(), StatusCode::OK);
}

/// `ops-console` is registered by client id with a `*` role. Its service-account token is an
/// admin; the people who sign in through the console are not, whatever their usernames, and
/// write nothing.
#[tokio::test]
async fn users_of_a_registered_client_get_nothing_of_its_account() {
    let s = setup().await;
    let issuer = s.idp.issuer();
    s.register(&issuer, "ops-console", "ops-admin", &["*"])
        .await;
    let console = s.token("ops-console").await;
    let (status, _, list) = s
        .call(Method::GET, "/admin/v1/accounts", Some(&console), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);

    for username in [
        "alice",
        "service-account-ops-console-x",
        "service-account-other",
    ] {
        let token = s.user_token(username).await;
        let (status, _, body) = s
            .call(Method::GET, "/admin/v1/accounts", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{username}: {body}");
        assert_eq!(body["error"]["code"], "admin_permission_required");
        let (status, _, _) = s
            .call(
                Method::POST,
                "/admin/v1/accounts",
                Some(&token),
                Some(json!({ "issuer": issuer, "subject": "me", "roles": ["ops-admin"] })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{username}");
        let (status, _, _) = s
            .call(
                Method::PUT,
                "/admin/v1/roles/mine",
                Some(&token),
                Some(json!({ "permissions": ["*"] })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{username}");
    }
    assert_eq!(s.store.list_accounts().await.unwrap().len(), 1);
    assert!(s.store.get_role("mine").await.is_err());
    // A user with the admin role is an admin in her own right.
    let carol = s.user_token("carol").await;
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/accounts", Some(&carol), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A second trusted issuer whose permissions come from the registry only: the admin roles in
/// its tokens (and roles the role map grants `*`) count for nothing; its registered clients do.
#[tokio::test]
async fn a_registry_only_issuer_gets_nothing_from_token_roles() {
    let partner = Idp::start(
        IdpConfig::default().realm("partner").client(
            ClientSpec::secret_basic("partner-admin", "partner-admin-secret")
                .realm_roles(["tokenwarden-admin", "ops"])
                .client_roles("tokenwarden", ["admin"]),
        ),
    )
    .await;
    let authz = format!(
        "{AUTHZ}[gateway.authz.issuer_sources]\n\"PARTNER\" = [\"registry\"]\n[gateway.authz.roles]\n\"ops\" = [\"*\"]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let s = setup_with(sqlite(&dir), dir, None, Some(partner), &authz, |c| {
        AdminConfig {
            roles: vec!["tokenwarden-admin".into(), "tokenwarden:admin".into()],
            ..c
        }
    })
    .await;
    let partner = s.partner.as_ref().unwrap();
    let token = partner
        .client_credentials_token("partner-admin", "partner-admin-secret")
        .await;
    for (method, path, body) in [
        (Method::GET, "/admin/v1/accounts", None),
        (Method::GET, "/admin/v1/audit", None),
        (
            Method::PUT,
            "/admin/v1/roles/partner-root",
            Some(json!({ "permissions": ["*"] })),
        ),
        (
            Method::POST,
            "/admin/v1/accounts",
            Some(json!({ "issuer": partner.issuer(), "client_id": "partner-admin" })),
        ),
    ] {
        let (status, _, answer) = s.call(method.clone(), path, Some(&token), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "admin_permission_required");
    }
    assert!(s.store.list_roles().await.unwrap().is_empty());
    assert!(s.store.list_accounts().await.unwrap().is_empty());
    // The same roles from the main issuer (sources roles + registry) do count.
    let main = s.token("ops-admin").await;
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/accounts", Some(&main), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Registered at the partner's issuer with an admin role: admitted by the registry.
    s.register(
        &partner.issuer(),
        "partner-admin",
        "partner-ops",
        &["tokenwarden:admin"],
    )
    .await;
    let (status, _, roles) = s
        .call(Method::GET, "/admin/v1/roles", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{roles}");
    // An account of that client id at the main issuer is another account.
    let other = s.token("registry-admin").await;
    s.register(
        &partner.issuer(),
        "registry-admin",
        "partner-ops",
        &["tokenwarden:admin"],
    )
    .await;
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/roles", Some(&other), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Role claims, the client-role format and the role map are the gateway's.
#[tokio::test]
async fn claim_paths_and_role_format_come_from_gateway_authz() {
    let s = setup_custom(
        "[gateway.authz]\nroles_claims = [\"resource_access.${client_id}.roles\"]\nclient_role_format = \"{client}/{role}\"\n[gateway.authz.roles]\n\"plain/none\" = [\"events:read\"]\n",
        |c| AdminConfig {
            roles: vec!["self-admin/admin".into(), "tokenwarden-admin".into()],
            ..c
        },
    )
    .await;
    // Its own client role, named by the configured format: admitted.
    let own = s.token("self-admin").await;
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/roles", Some(&own), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Realm roles are not read by these claim paths, nor other clients' roles.
    for client in ["ops-admin", "client-role-admin"] {
        let t = s.token(client).await;
        let (status, _, _) = s.call(Method::GET, "/admin/v1/roles", Some(&t), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{client}");
    }
    // The role map counts: a role mapped to `*` is an admin role too.
    let s = setup_custom(
        "[gateway.authz]\n[gateway.authz.roles]\n\"mcp-agent-events-manager\" = [\"tokenwarden:*\"]\n",
        |c| c,
    )
    .await;
    let plain = s.token("plain").await;
    let (status, _, _) = s
        .call(Method::GET, "/admin/v1/roles", Some(&plain), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Without `registry` among the sources, a registry account grants nothing.
    s.register(&s.idp.issuer(), "registry-admin", "ops", &["*"])
        .await;
    let t = s.token("registry-admin").await;
    let (status, _, _) = s.call(Method::GET, "/admin/v1/roles", Some(&t), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Every change is in the audit log, naming the person (subject and username) and the client;
/// `?kind=admin&principal=` finds them.
#[tokio::test]
async fn admin_writes_are_audited_with_the_person() {
    let s = setup().await;
    let carol = s.user_token("carol").await;
    let carol_id = s.idp.user_id("carol").await;
    let t = Some(carol.as_str());
    let (status, _, _) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/reader",
            t,
            Some(json!({ "permissions": ["events:read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, account) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(json!({ "issuer": s.idp.issuer(), "client_id": "svc", "roles": ["reader"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["created_by"], "api:user:carol");
    let id = account["id"].as_str().unwrap().to_owned();
    let (status, _, _) = s
        .call(
            Method::POST,
            &format!("/admin/v1/accounts/{id}/disable"),
            t,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A refused change is not an audited change.
    let (status, _, _) = s
        .call(Method::DELETE, "/admin/v1/roles/ghost", t, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A service account's change names it too.
    let ops = s.token("ops-admin").await;
    let (status, _, _) = s
        .call(
            Method::DELETE,
            &format!("/admin/v1/accounts/{id}"),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, _, rows) = s
        .call(Method::GET, "/admin/v1/audit?kind=admin", t, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows.as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .rev()
        .map(|r| {
            (
                r["username"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["object"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("carol", "role.put", "reader"),
            ("carol", "account.create", id.as_str()),
            ("carol", "account.disable", id.as_str()),
            ("service-account-ops-admin", "account.delete", id.as_str()),
        ]
    );
    for r in &rows[1..] {
        assert_eq!(r["kind"], "admin");
        assert_eq!(r["subject"], carol_id.as_str(), "{r}");
        assert_eq!(r["client_id"], "ops-console");
        assert_eq!(r["principal_kind"], "user");
        assert_eq!(r["issuer"], s.idp.issuer().as_str());
        assert_eq!(r["instance"], "gw-test");
        assert_eq!(r["permissions_used"], json!(["tokenwarden:admin"]));
    }
    assert_eq!(rows[3]["method"], "PUT");
    assert_eq!(rows[3]["path"], "/admin/v1/roles/reader");
    let ops_info = s.idp.client_info("ops-admin").await;
    assert_eq!(rows[0]["subject"], ops_info.service_account_id.as_str());
    assert_eq!(rows[0]["client_id"], "ops-admin");
    assert_eq!(rows[0]["principal_kind"], "service_account");
    let (_, _, by_name) = s
        .call(
            Method::GET,
            "/admin/v1/audit?kind=admin&principal=carol",
            t,
            None,
        )
        .await;
    assert_eq!(by_name.as_array().unwrap().len(), 3);
    let (status, _, body) = s
        .call(Method::GET, "/admin/v1/audit?kind=robot", t, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_kind");
}

/// Oversized and control-character input is a 400 naming the field; nothing is stored.
#[tokio::test]
async fn hostile_input_is_refused_and_names_the_field() {
    let s = setup().await;
    let admin = s.token("ops-admin").await;
    let t = Some(admin.as_str());
    let issuer = s.idp.issuer();
    let huge = "n".repeat(100 * 1024);
    let account = |field: &str, value: &str| {
        let mut body = json!({ "issuer": issuer, "client_id": "svc" });
        body[field] = value.into();
        body
    };
    let mut cases = vec![
        (account("display_name", &huge), "display_name"),
        (account("client_id", &huge), "client_id"),
        (account("subject", &"s".repeat(256)), "subject"),
    ];
    for hostile in [
        "\u{1b}[2J\u{1b}[31mroot",
        "a\u{9b}31m",
        "x\u{7f}",
        "rtl\u{202e}gnp.exe",
        "two\nlines",
    ] {
        cases.push((account("display_name", hostile), "display_name"));
        cases.push((account("client_id", hostile), "client_id"));
        cases.push((account("issuer", hostile), "issuer"));
    }
    for (body, field) in cases {
        let (status, _, answer) = s
            .call(Method::POST, "/admin/v1/accounts", t, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_account");
        assert_eq!(answer["error"]["field"], field);
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.len() < 400, "{field}: short message");
        assert!(
            !message.chars().any(tw_core::text::is_terminal_unsafe),
            "{message:?}"
        );
    }
    for (description, field) in [
        (huge.clone(), "description"),
        ("\u{1b}]0;owned\u{7}".to_owned(), "description"),
    ] {
        let (status, _, answer) = s
            .call(
                Method::PUT,
                "/admin/v1/roles/r",
                t,
                Some(json!({ "description": description, "permissions": [] })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"]["code"], "invalid_role");
        assert_eq!(answer["error"]["field"], field);
    }
    // Role names from the path, percent-encoded controls included.
    for name in ["%1B%5B2J", "a%C2%9Bb", &"r".repeat(201), "a%E2%80%AEb"] {
        let (status, _, answer) = s
            .call(
                Method::PUT,
                &format!("/admin/v1/roles/{name}"),
                t,
                Some(json!({ "permissions": [] })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_role");
        assert_eq!(answer["error"]["field"], "name");
    }
    let (status, _, answer) = s
        .call(
            Method::PUT,
            "/admin/v1/roles/r",
            t,
            Some(json!({ "permissions": ["events:\u{1b}read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "invalid_permission");
    assert!(s.store.list_accounts().await.unwrap().is_empty());
    assert!(s.store.list_roles().await.unwrap().is_empty());
    // The longest accepted values are accepted.
    let (status, _, _) = s
        .call(
            Method::POST,
            "/admin/v1/accounts",
            t,
            Some(account("display_name", &"é".repeat(200))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
