//! `tokenwarden gateway` with the account registry in the database: the store is opened (a
//! SQLite file created and migrated on first start), `/readyz` reports it, a registry change made
//! by another process is enforced without a restart, decisions land in the audit table; a
//! database that cannot be reached is an error naming `storage.url`, never the password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tw_config::StorageConfig;
use tw_core::SystemClock;
use tw_store::{AuditOutcome, AuditQuery, NewAccount, Store};
use tw_testkit::{Idp, free_port};

/// Forward-auth as Traefik asks: the status, the body and the permissions header.
async fn auth(base: &str, token: &str, path: &str) -> (u16, String, Option<String>) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/auth"))
        .bearer_auth(token)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", path)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let perms = resp
        .headers()
        .get("x-auth-permissions")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.text().await.unwrap(), perms)
}

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .ok()?;
    Some((resp.status().as_u16(), resp.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_uses_the_registry_in_sqlite() {
    let idp = Idp::start_default().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("tw.db");
    let url = format!("sqlite://{}", db.display());
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[storage]
url = "{url}"

[gateway]
listen = "127.0.0.1:{port}"

[[gateway.issuers]]
issuer = "{issuer}"
audiences = ["api"]

[gateway.authz]
sources = ["registry"]

[[gateway.authz.rules]]
name = "items-read"
methods = ["GET"]
paths = ["/api/items/**"]
require_all = ["items:read"]
"#,
            issuer = idp.issuer()
        ),
    )
    .unwrap();
    assert!(!db.exists());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["gateway", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run tokenwarden gateway");
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = None;
    for _ in 0..200 {
        if let Some((200, body)) = get(&format!("{base}/readyz")).await {
            ready = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("the gateway never became ready");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["storage"]["reachable"], true, "{ready}");
    assert_eq!(ready["storage"]["backend"], "sqlite", "{ready}");
    assert!(db.exists(), "created on first start");

    let token = idp
        .client_credentials_token("agent-basic", "agent-basic-secret")
        .await;
    let (status, body, _) = auth(&base, &token, "/api/items/1").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("unknown_principal"), "{body}");

    // Another process registers the caller: enforced without a restart.
    let storage = StorageConfig {
        url: url.clone(),
        ..StorageConfig::default()
    };
    let store = Store::open(&storage, Arc::new(SystemClock)).await.unwrap();
    store
        .upsert_role("items-reader", None, &["items:*".into()])
        .await
        .unwrap();
    store
        .create_account(NewAccount {
            roles: vec!["items-reader".into()],
            ..NewAccount::with_client_id(&idp.issuer(), "agent-basic", "test")
        })
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let (status, body, perms) = auth(&base, &token, "/api/items/1").await;
        if status == 200 {
            assert_eq!(perms.as_deref(), Some("items:*"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not enforced within a second: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The decisions are in the audit table, naming this instance.
    let start = Instant::now();
    let rows = loop {
        let rows = store
            .query_audit(&AuditQuery {
                principal: Some("agent-basic".into()),
                outcome: Some(AuditOutcome::Allow),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        if !rows.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].path, "/api/items/1");
    assert!(
        rows[0].instance.ends_with(&format!("/127.0.0.1:{port}")),
        "{:?}",
        rows[0]
    );
    let denied = store
        .query_audit(&AuditQuery {
            principal: Some("agent-basic".into()),
            outcome: Some(AuditOutcome::Deny),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(!denied.is_empty());
    assert!(
        denied
            .iter()
            .all(|r| r.reason.as_deref() == Some("unknown_principal")),
        "{denied:?}"
    );

    let pid = child.id().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            r#"[storage]
url = "postgres://tokenwarden@127.0.0.1:{port}/tokenwarden"
password = {{ env = "TW_TEST_DB_PASSWORD" }}
connect_timeout = "2s"

[gateway]
listen = "127.0.0.1:0"

[[gateway.issuers]]
issuer = "https://idp.example/realms/r"
jwks_url = "https://idp.example/realms/r/jwks"
audiences = ["api"]

[gateway.authz]
sources = ["registry"]

[[gateway.authz.rules]]
name = "all"
methods = "*"
paths = ["/**"]
allow_any_authenticated = true
"#
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["gateway", "--config", cfg.to_str().unwrap()])
        .env("TW_TEST_DB_PASSWORD", "hunter2-secret-pw")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("storage.url"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_the_admin_api_on_its_listener() {
    use tw_testkit::{ClientSpec, IdpConfig};
    let idp = Idp::start(
        IdpConfig::default()
            .client(
                ClientSpec::secret_basic("ops", "ops-secret").realm_roles(["tokenwarden-admin"]),
            )
            .client(ClientSpec::secret_basic("app", "app-secret")),
    )
    .await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nurl = \"sqlite://{}\"\n\n[gateway]\nlisten = \"127.0.0.1:{port}\"\n\n[[gateway.issuers]]\nissuer = \"{}\"\n\n[gateway.admin]\nenabled = true\n",
            dir.path().join("tw.db").display(),
            idp.issuer()
        ),
    )
    .unwrap();
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["gateway", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run tokenwarden gateway");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if matches!(get(&format!("{base}/readyz")).await, Some((200, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let accounts = format!("{base}/admin/v1/accounts");

    let r = client.get(&accounts).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let app = idp.client_credentials_token("app", "app-secret").await;
    let r = client
        .get(&accounts)
        .bearer_auth(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a token without tokenwarden:admin");

    let ops = idp.client_credentials_token("ops", "ops-secret").await;
    let r = client
        .post(&accounts)
        .bearer_auth(&ops)
        .json(
            &serde_json::json!({"issuer": idp.issuer(), "client_id": "app", "display_name": "App"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let list: serde_json::Value = client
        .get(&accounts)
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.to_string().contains("\"app\""), "{list}");

    let spec = get(&format!("{base}/admin/v1/openapi.json"))
        .await
        .expect("openapi");
    assert_eq!(spec.0, 200);
    assert!(spec.1.contains("/admin/v1/accounts"));
    assert_eq!(
        get(&format!("{base}/admin/docs")).await.expect("docs").0,
        200
    );
}
