//! The generated OpenAPI document against the real API: every documented operation is called
//! over HTTP (tokens from the real test IdP, a SQLite store), once answering with success and once
//! with an error, and every answer's body is validated against the schema the served document
//! gives for that path, method and status (`tw_http::openapi::testing`, the `jsonschema` crate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tw_admin::router;
use tw_config::StorageConfig;
use tw_core::SystemClock;
use tw_http::openapi::testing::Schemas;
use tw_store::Store;
use tw_testkit::{ClientSpec, Idp, IdpConfig, TestServer};
use tw_verify::Verifier;

struct Api {
    _idp: Idp,
    server: TestServer,
    http: reqwest::Client,
    schemas: Schemas,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> (Api, String, String) {
        let client = |id: &str, roles: &[&str]| {
            ClientSpec::secret_basic(id, &format!("{id}-secret")).realm_roles(roles.iter().copied())
        };
        let idp = Idp::start(
            IdpConfig::default()
                .client(client("ops-admin", &["tokenwarden-admin"]))
                .client(client("plain", &["other"])),
        )
        .await;
        let toml = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n\n[[gateway.issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\n[gateway.authz]\nsources = [\"roles\", \"registry\"]\n",
            idp.issuer()
        );
        let gw = tw_config::load_str(&toml, "gateway.toml")
            .unwrap()
            .gateway
            .unwrap();
        let verifier =
            Arc::new(Verifier::new(&gw.verifier_settings(), Arc::new(SystemClock)).unwrap());
        verifier.start().await;
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageConfig {
            url: format!("sqlite://{}", dir.path().join("tw.db").display()),
            ..StorageConfig::default()
        };
        let store = Store::open(&storage, Arc::new(SystemClock)).await.unwrap();
        let app = router(store, verifier, gw.admin_settings()).unwrap();
        let server = TestServer::start(app).await;
        let http = tw_testkit::http_client(Duration::from_secs(20));
        let doc: Value = http
            .get(format!("{}/admin/v1/openapi.json", server.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let admin = idp
            .client_credentials_token("ops-admin", "ops-admin-secret")
            .await;
        let plain = idp.client_credentials_token("plain", "plain-secret").await;
        let api = Api {
            _idp: idp,
            server,
            http,
            schemas: Schemas::new(doc),
            _dir: dir,
        };
        (api, admin, plain)
    }

    /// Calls `path` (with `template`, the documented path, for the schema), checks the answer
    /// against the document and returns it.
    async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expect: u16,
    ) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.server.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, expect, "{method} {path}: {text}");
        let json: Option<Value> = (!text.is_empty()).then(|| serde_json::from_str(&text).unwrap());
        self.schemas
            .check(method.as_str(), template, status, json.as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
        json.unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn every_operation_answers_as_documented() {
    let (api, admin, plain) = Api::start().await;
    let a = Some(admin.as_str());
    use Method as M;

    // The refusals every operation shares.
    api.call(
        M::GET,
        "/admin/v1/accounts",
        "/admin/v1/accounts",
        None,
        None,
        401,
    )
    .await;
    api.call(
        M::GET,
        "/admin/v1/accounts",
        "/admin/v1/accounts",
        Some(&plain),
        None,
        403,
    )
    .await;

    // Roles.
    let role = "/admin/v1/roles/{name}";
    api.call(
        M::PUT,
        role,
        "/admin/v1/roles/readers",
        a,
        Some(json!({ "description": "Reads", "permissions": ["events:read"] })),
        200,
    )
    .await;
    api.call(
        M::PUT,
        role,
        "/admin/v1/roles/readers",
        a,
        Some(json!({ "permissions": "events:read" })),
        400,
    )
    .await;
    api.call(
        M::PUT,
        role,
        "/admin/v1/roles/spare",
        a,
        Some(json!({ "permissions": [] })),
        200,
    )
    .await;
    api.call(M::GET, "/admin/v1/roles", "/admin/v1/roles", a, None, 200)
        .await;
    api.call(
        M::GET,
        "/admin/v1/roles",
        "/admin/v1/roles",
        None,
        None,
        401,
    )
    .await;
    api.call(M::GET, role, "/admin/v1/roles/readers", a, None, 200)
        .await;
    api.call(M::GET, role, "/admin/v1/roles/nope", a, None, 404)
        .await;

    // Accounts.
    let accounts = "/admin/v1/accounts";
    let new =
        json!({ "issuer": "https://partner.example", "client_id": "svc", "roles": ["readers"] });
    let account = api
        .call(M::POST, accounts, accounts, a, Some(new.clone()), 201)
        .await;
    let id = account["id"].as_str().unwrap().to_owned();
    api.call(M::POST, accounts, accounts, a, Some(new), 409)
        .await;
    api.call(
        M::POST,
        accounts,
        accounts,
        a,
        Some(
            json!({ "issuer": "https://partner.example", "client_id": "svc2", "roles": ["nope"] }),
        ),
        404,
    )
    .await;
    api.call(
        M::POST,
        accounts,
        accounts,
        a,
        Some(json!({ "issuer": "x", "colour": "red" })),
        400,
    )
    .await;
    api.call(M::GET, accounts, accounts, a, None, 200).await;
    let one = "/admin/v1/accounts/{id}";
    let missing = "/admin/v1/accounts/00000000-0000-4000-8000-000000000000";
    api.call(M::GET, one, &format!("{accounts}/{id}"), a, None, 200)
        .await;
    api.call(M::GET, one, missing, a, None, 404).await;
    for action in ["enable", "disable"] {
        let template = format!("/admin/v1/accounts/{{id}}/{action}");
        api.call(
            M::POST,
            &template,
            &format!("{accounts}/{id}/{action}"),
            a,
            None,
            200,
        )
        .await;
        api.call(
            M::POST,
            &template,
            &format!("{missing}/{action}"),
            a,
            None,
            404,
        )
        .await;
    }
    let grant = "/admin/v1/accounts/{id}/roles/{role}";
    for method in [M::POST, M::DELETE] {
        api.call(
            method.clone(),
            grant,
            &format!("{accounts}/{id}/roles/spare"),
            a,
            None,
            200,
        )
        .await;
        api.call(
            method,
            grant,
            &format!("{missing}/roles/spare"),
            a,
            None,
            404,
        )
        .await;
    }

    // The audit log holds the changes above.
    let audit = "/admin/v1/audit";
    let rows = api
        .call(M::GET, audit, "/admin/v1/audit?kind=admin", a, None, 200)
        .await;
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
    api.call(M::GET, audit, "/admin/v1/audit?kind=bogus", a, None, 400)
        .await;

    // Deletes.
    api.call(M::DELETE, role, "/admin/v1/roles/readers", a, None, 409)
        .await;
    api.call(
        M::DELETE,
        role,
        "/admin/v1/roles/readers?colour=red",
        a,
        None,
        400,
    )
    .await;
    api.call(
        M::DELETE,
        role,
        "/admin/v1/roles/readers?force=true",
        a,
        None,
        204,
    )
    .await;
    api.call(M::DELETE, role, "/admin/v1/roles/readers", a, None, 404)
        .await;
    api.call(M::DELETE, one, &format!("{accounts}/{id}"), a, None, 204)
        .await;
    api.call(M::DELETE, one, &format!("{accounts}/{id}"), a, None, 404)
        .await;

    // Every documented operation was seen succeeding and failing.
    let checked = api.schemas.checked();
    for (method, path) in api.schemas.operations() {
        let statuses: BTreeSet<u16> = checked
            .iter()
            .filter(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{method} {path}: no success checked"
        );
        assert!(
            statuses.iter().any(|s| *s >= 400),
            "{method} {path}: no error checked"
        );
    }
}

#[tokio::test]
async fn a_body_that_breaks_the_document_fails_validation() {
    let (api, admin, _) = Api::start().await;
    let resp = api
        .http
        .get(format!("{}/admin/v1/roles", api.server.url()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s = &api.schemas;
    let account = json!({
        "id": "a", "issuer": "i", "subject": null, "client_id": "c", "display_name": null,
        "enabled": true, "roles": [], "created_at": 1, "updated_at": 2, "created_by": "cli",
    });
    let one = "/admin/v1/accounts/{id}";
    assert_eq!(s.check("GET", one, 200, Some(&account)), Ok(()));
    let mut wrong = account.clone();
    wrong["enabled"] = json!("yes");
    assert!(s.check("GET", one, 200, Some(&wrong)).is_err());
    let mut wrong = account.clone();
    wrong.as_object_mut().unwrap().remove("created_by");
    assert!(s.check("GET", one, 200, Some(&wrong)).is_err());
    // Inside the array of a list answer, one $ref down.
    assert!(
        s.check("GET", "/admin/v1/accounts", 200, Some(&json!([wrong])))
            .is_err()
    );
    // An error body without its code.
    let error = json!({ "error": { "message": "m", "retryable": false } });
    assert!(s.check("GET", one, 404, Some(&error)).is_err());
    // An audit row with an outcome the API does not have.
    let row = json!([{ "id": 1, "kind": "admin", "at": 1, "issuer": "i", "subject": null,
        "username": null, "client_id": null, "principal_kind": "user", "method": "GET",
        "path": "/", "rule": null, "permissions_used": [], "outcome": "maybe", "reason": null,
        "instance": "x", "action": null, "object": null }]);
    assert!(s.check("GET", "/admin/v1/audit", 200, Some(&row)).is_err());
}
