//! `tokenwarden accounts|roles|audit` as an operator runs them: the real binary against a SQLite
//! file in a temp directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use tw_core::SystemClock;
use tw_store::{
    AdminActor, AuditKind, AuditOutcome, AuditRecord, NewAccount, PrincipalKind, Store,
};

const ISSUER: &str = "https://kc.example/realms/evently";

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db_url: String,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("registry.db");
        let db_url = format!("sqlite://{}", db.display());
        let config = dir.path().join("tw.toml");
        std::fs::write(&config, format!("[storage]\nurl = \"{db_url}\"\n")).unwrap();
        Self {
            _dir: dir,
            config,
            db_url,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run_in(&self.config, args)
    }

    /// Runs, asserts exit 1 (a failure other than bad input) with `reason` on stderr.
    fn fails(&self, args: &[&str], reason: &str) {
        let out = self.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }

    /// Runs, asserts exit 0, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}",
            out.status.code(),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    async fn store(&self) -> Store {
        let cfg = tw_config::StorageConfig {
            url: self.db_url.clone(),
            ..Default::default()
        };
        Store::open(&cfg, Arc::new(SystemClock)).await.unwrap()
    }
}

fn run_in(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run tokenwarden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn accounts_and_roles_lifecycle() {
    let env = Env::new();
    // Roles (upsert: the second create replaces the permission set).
    env.ok(&[
        "roles",
        "create",
        "mcp-agent-events-manager",
        "--permission",
        "events:read",
        "--description",
        "Evently agent",
    ]);
    let role = env.json(&[
        "roles",
        "create",
        "mcp-agent-events-manager",
        "--permission",
        "events:read",
        "--permission",
        "events:search",
        "--permission",
        "events:update",
    ]);
    assert_eq!(
        role["permissions"],
        serde_json::json!(["events:read", "events:search", "events:update"])
    );
    env.ok(&[
        "roles",
        "create",
        "mcp-agent-attributes-readonly",
        "--permission",
        "attributes:read",
    ]);
    let table = env.ok(&["roles", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    // Columns are aligned: PERMISSIONS starts at the same offset in every line.
    let col = lines[0].find("PERMISSIONS").unwrap();
    assert!(lines[1][col..].starts_with("attributes:read"), "{table}");
    assert!(lines[2][col..].starts_with("events:read"), "{table}");

    // Create an account with a role.
    let created = env.json(&[
        "accounts",
        "create",
        "--issuer",
        ISSUER,
        "--client-id",
        "evently-confidential-client",
        "--name",
        "Evently backend",
        "--role",
        "mcp-agent-events-manager",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["enabled"], true);
    assert_eq!(created["created_by"], "cli");
    assert_eq!(
        created["roles"],
        serde_json::json!(["mcp-agent-events-manager"])
    );

    // List: table and JSON.
    let table = env.ok(&["accounts", "list"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains(&id) && table.contains("evently-confidential-client"),
        "{table}"
    );
    let list = env.json(&["accounts", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    // Show by ID and by issuer + client id.
    let shown = env.ok(&["accounts", "show", &id]);
    assert!(shown.contains("Evently backend"), "{shown}");
    let by_client = env.json(&[
        "accounts",
        "show",
        "--issuer",
        ISSUER,
        "--client-id",
        "evently-confidential-client",
    ]);
    assert_eq!(by_client["id"], id.as_str());

    // Disable / enable.
    assert_eq!(env.json(&["accounts", "disable", &id])["enabled"], false);
    assert_eq!(
        env.json(&[
            "accounts",
            "enable",
            "--issuer",
            ISSUER,
            "--client-id",
            "evently-confidential-client"
        ])["enabled"],
        true
    );

    // Grant / revoke (by ID, and by identity with only the role positional).
    let granted = env.json(&["accounts", "grant", &id, "mcp-agent-attributes-readonly"]);
    assert_eq!(
        granted["roles"],
        serde_json::json!(["mcp-agent-attributes-readonly", "mcp-agent-events-manager"])
    );
    let revoked = env.json(&[
        "accounts",
        "revoke",
        "--issuer",
        ISSUER,
        "--client-id",
        "evently-confidential-client",
        "mcp-agent-events-manager",
    ]);
    assert_eq!(
        revoked["roles"],
        serde_json::json!(["mcp-agent-attributes-readonly"])
    );

    // A held role is not deleted without --force.
    env.fails(
        &["roles", "delete", "mcp-agent-attributes-readonly"],
        "held by 1 account",
    );
    env.ok(&[
        "roles",
        "delete",
        "mcp-agent-attributes-readonly",
        "--force",
    ]);
    assert_eq!(
        env.json(&["accounts", "show", &id])["roles"],
        serde_json::json!([])
    );

    // Duplicate account: exit 1 with the reason.
    env.fails(
        &[
            "accounts",
            "create",
            "--issuer",
            ISSUER,
            "--client-id",
            "evently-confidential-client",
        ],
        "already exists",
    );

    // Delete.
    assert!(env.ok(&["accounts", "delete", &id]).contains(&id));
    env.fails(&["accounts", "show", &id], "no account");
    assert_eq!(env.json(&["accounts", "list"]), serde_json::json!([]));
}

#[test]
fn bad_input_exits_2_or_1_with_a_clear_message() {
    let env = Env::new();
    // Usage: neither a subject nor a client id.
    let out = env.run(&["accounts", "create", "--issuer", ISSUER]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A role that does not exist: not found, exit 1.
    env.fails(
        &[
            "accounts",
            "create",
            "--issuer",
            ISSUER,
            "--subject",
            "0b3f6bd0-5a3e-4a5e-9f0e-7d6d1d1a8b11",
            "--role",
            "ghost",
        ],
        "ghost",
    );
    // An invalid permission code (store validation): exit 2.
    let out = env.run(&["roles", "create", "r", "--permission", "has space"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Audit filters are checked before the database is opened.
    let out = env.run(&["audit", "query", "--outcome", "maybe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("dry_run_deny"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["audit", "query", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("RFC 3339"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["audit", "query", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2));
    // Not found by identity.
    env.fails(
        &[
            "accounts",
            "disable",
            "--issuer",
            ISSUER,
            "--client-id",
            "nobody",
        ],
        "nobody",
    );
    // --client-id without --issuer: clap usage error.
    let out = env.run(&["accounts", "show", "--client-id", "x"]);
    assert_eq!(out.status.code(), Some(2));
    // grant with an ID but no role.
    let out = env.run(&["accounts", "grant", "only-one"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn storage_errors_exit_1_and_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tw.toml");
    // Nothing listens on port 9: the connection fails.
    std::fs::write(
        &config,
        "[storage]\nurl = \"postgres://tw@127.0.0.1:9/tw\"\npassword = { env = \"TW_TEST_DB_PASSWORD\" }\nconnect_timeout = \"2s\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["accounts", "list", "--config"])
        .arg(&config)
        .env("TW_TEST_DB_PASSWORD", "hunter2-very-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("storage unavailable"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // A password in the URL is a configuration error, and is not echoed.
    std::fs::write(
        &config,
        "[storage]\nurl = \"postgres://tw:hunter2-very-secret@127.0.0.1:9/tw\"\n",
    )
    .unwrap();
    let out = run_in(&config, &["roles", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !text(&out.stderr).contains("hunter2"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn audit_query_filters_rows_written_by_the_gateway() {
    let env = Env::new();
    let store = env.store().await;
    let now = tw_core::Clock::now(&SystemClock);
    let record = |minutes_ago: u64, client: &str, outcome: AuditOutcome, path: &str| AuditRecord {
        id: None,
        kind: AuditKind::Decision,
        at: now.minus(std::time::Duration::from_secs(minutes_ago * 60)),
        issuer: ISSUER.into(),
        subject: Some(format!("sub-{client}")),
        username: None,
        client_id: Some(client.into()),
        principal_kind: PrincipalKind::ServiceAccount,
        method: "GET".into(),
        path: path.into(),
        rule: Some("events-read".into()),
        permissions_used: vec!["events:read".into()],
        outcome,
        reason: None,
        instance: "gw-1".into(),
        action: None,
        object: None,
    };
    store
        .append_audit(&[
            record(
                180,
                "evently-confidential-client",
                AuditOutcome::Allow,
                "/api/events/old",
            ),
            record(
                20,
                "evently-confidential-client",
                AuditOutcome::Allow,
                "/api/events",
            ),
            record(
                10,
                "evently-confidential-client",
                AuditOutcome::Deny,
                "/api/attributes",
            ),
            record(5, "stranger", AuditOutcome::Deny, "/api/events"),
        ])
        .await
        .unwrap();

    let all = env.json(&["audit", "query"]);
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert_eq!(all[0]["client_id"], "stranger", "newest first");

    let recent = env.json(&[
        "audit",
        "query",
        "--principal",
        "evently-confidential-client",
        "--since",
        "1h",
    ]);
    let paths: Vec<&str> = recent
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/api/attributes", "/api/events"]);

    let denied = env.json(&["audit", "query", "--outcome", "deny", "--limit", "1"]);
    assert_eq!(denied.as_array().unwrap().len(), 1);
    assert_eq!(denied[0]["outcome"], "deny");

    let since = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(
                u64::try_from(
                    now.minus(std::time::Duration::from_secs(4 * 3600))
                        .as_millis(),
                )
                .unwrap(),
            ),
    )
    .to_string();
    let older = env.json(&["audit", "query", "--since", &since, "--until", "2h"]);
    assert_eq!(older.as_array().unwrap().len(), 1);
    assert_eq!(older[0]["path"], "/api/events/old");

    let table = env.ok(&["audit", "query", "--outcome", "deny"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains("stranger") && lines[1].contains("deny"),
        "{table}"
    );
}

/// Characters that would drive an operator's terminal, and how many of them are left raw.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| *c != '\n' && tw_core::text::is_terminal_unsafe(*c))
        .collect()
}

const ESCAPES: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31m\u{9b}1m\u{7f}\u{202e}\r";

#[test]
fn hostile_input_exits_2_naming_the_field() {
    let env = Env::new();
    env.ok(&["roles", "create", "reader", "--permission", "a:read"]);
    let huge = "n".repeat(100 * 1024);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "accounts",
                "create",
                "--issuer",
                ISSUER,
                "--client-id",
                "c",
                "--name",
                &huge,
            ],
            "display_name",
        ),
        (
            vec![
                "accounts",
                "create",
                "--issuer",
                ISSUER,
                "--client-id",
                "c",
                "--name",
                ESCAPES,
            ],
            "display_name",
        ),
        (
            vec![
                "accounts",
                "create",
                "--issuer",
                ISSUER,
                "--client-id",
                ESCAPES,
            ],
            "client_id",
        ),
        (
            vec!["accounts", "create", "--issuer", ESCAPES, "--subject", "s"],
            "issuer",
        ),
        (
            vec!["accounts", "create", "--issuer", ISSUER, "--subject", &huge],
            "subject",
        ),
        (
            vec![
                "roles",
                "create",
                "r",
                "--permission",
                "a:b",
                "--description",
                ESCAPES,
            ],
            "description",
        ),
        (
            vec![
                "roles",
                "create",
                "r",
                "--permission",
                "a:b",
                "--description",
                &huge,
            ],
            "description",
        ),
        (
            vec!["roles", "create", ESCAPES, "--permission", "a:b"],
            "name",
        ),
        (
            vec!["roles", "create", "r", "--permission", ESCAPES],
            "permissions",
        ),
    ];
    for (args, field) in cases {
        let out = env.run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(
            stderr.contains(&format!("field={field}")),
            "{field}: {stderr}"
        );
        assert!(raw_controls(&stderr).is_empty(), "{field}: {stderr:?}");
        assert!(
            stderr.len() < 1000,
            "{field}: {} bytes on stderr",
            stderr.len()
        );
    }
    assert_eq!(env.json(&["accounts", "list"]), serde_json::json!([]));
    assert_eq!(env.json(&["roles", "list"]).as_array().unwrap().len(), 1);
}

/// Rows the CLI never accepted (an older version wrote them, or SQL did) are printed escaped
/// and cut, in tables; whole and escaped in JSON. No panic, no raw control character.
#[tokio::test]
async fn stored_hostile_rows_are_printed_safely() {
    let env = Env::new();
    let store = env.store().await;
    store.upsert_role("reader", None, &[]).await.unwrap();
    drop(store);
    let huge_name = format!("{}{ESCAPES}", "y".repeat(100 * 1024));
    let hostile_role = format!("evil{ESCAPES}");
    let description = format!("bad {ESCAPES} {}", "d".repeat(5000));
    {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&env.db_url).await.unwrap();
        let insert_account = "INSERT INTO accounts (id, issuer, subject, client_id, display_name, enabled, created_at, updated_at, created_by) VALUES ($1, $2, $3, $4, $5, 1, 0, 0, $6)";
        sqlx::query(insert_account)
            .bind("acc-huge")
            .bind(ISSUER)
            .bind(None::<String>)
            .bind("svc-huge")
            .bind(&huge_name)
            .bind("cli")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query(insert_account)
            .bind(format!("acc{ESCAPES}"))
            .bind(format!("{ISSUER}{ESCAPES}"))
            .bind(format!("sub{ESCAPES}"))
            .bind(format!("cl{ESCAPES}"))
            .bind(ESCAPES)
            .bind(format!("sql{ESCAPES}"))
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO roles (name, description, created_at) VALUES ($1, $2, 0)")
            .bind(&hostile_role)
            .bind(&description)
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO role_permissions (role, permission) VALUES ($1, $2)")
            .bind(&hostile_role)
            .bind(format!("p:{ESCAPES}"))
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO account_roles (account_id, role) VALUES ($1, $2)")
            .bind("acc-huge")
            .bind(&hostile_role)
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO audit_log (at, issuer, subject, client_id, principal_kind, method, path, rule, permissions_used, outcome, reason, instance, kind, username, action, object) VALUES (0, $1, $2, 'c', 'user', 'GET', $3, NULL, '', 'deny', $4, 'gw', 'decision', $5, NULL, NULL)")
            .bind(ISSUER)
            .bind(format!("sub{ESCAPES}"))
            .bind(format!("/api/{ESCAPES}{}", "p".repeat(10_000)))
            .bind(ESCAPES)
            .bind(format!("u{ESCAPES}"))
            .execute(&mut db)
            .await
            .unwrap();
    }
    let hostile_id = format!("acc{ESCAPES}");
    for args in [
        vec!["accounts", "list"],
        vec!["accounts", "show", "acc-huge"],
        vec!["accounts", "show", &hostile_id],
        vec!["roles", "list"],
        vec!["roles", "show", &hostile_role],
        vec!["audit", "query"],
    ] {
        let table = env.ok(&args);
        assert!(
            raw_controls(&table).is_empty(),
            "{args:?}: {:?}",
            raw_controls(&table)
        );
        assert!(!table.as_bytes().contains(&0x1b), "{args:?}");
        assert!(
            table.lines().all(|l| l.chars().count() < 2000),
            "{args:?}: cells are cut"
        );
        assert!(
            table.contains(r"\u{1b}"),
            "{args:?}: shown escaped:\n{table}"
        );

        let json = env.ok(&[args.as_slice(), &["--json"]].concat());
        assert!(raw_controls(&json).is_empty(), "{args:?} --json");
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert!(!parsed.is_null());
    }
    // JSON keeps every value whole: what was stored is what is read back.
    let accounts = env.json(&["accounts", "list"]);
    let huge = accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "acc-huge")
        .unwrap();
    assert_eq!(huge["display_name"], huge_name.as_str());
    let role = env.json(&["roles", "show", &hostile_role]);
    assert_eq!(role["description"], description.as_str());
    assert_eq!(role["permissions"][0], format!("p:{ESCAPES}"));
    // The table marks a cut cell.
    let table = env.ok(&["accounts", "list"]);
    assert!(table.contains("yyy…"), "{table}");
    let shown = env.ok(&["roles", "show", &hostile_role]);
    assert!(shown.contains(r"p:\u{1b}]0;owned\u{7}"), "{shown}");
}

/// `audit query` shows admin changes: who (subject, username, client), what and on what.
#[tokio::test]
async fn audit_query_shows_admin_changes() {
    let env = Env::new();
    let store = env.store().await;
    let carol = AdminActor {
        issuer: ISSUER.into(),
        subject: Some("7c0e-carol".into()),
        username: Some("carol".into()),
        client_id: Some("ops-console".into()),
        principal_kind: PrincipalKind::User,
        permissions_used: vec!["tokenwarden:admin".into()],
        method: "PUT".into(),
        path: "/admin/v1/roles/reader".into(),
        instance: "gw-1".into(),
    };
    store
        .as_admin(&carol)
        .upsert_role("reader", None, &["a:read".into()])
        .await
        .unwrap();
    let account = store
        .as_admin(&carol)
        .create_account(NewAccount::with_client_id(ISSUER, "svc", "api:user:carol"))
        .await
        .unwrap();

    let table = env.ok(&["audit", "query", "--kind", "admin"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "KIND",
        "SUBJECT",
        "USERNAME",
        "CLIENT_ID",
        "ACTION",
        "OBJECT",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].contains("admin")
            && lines[1].contains("7c0e-carol")
            && lines[1].contains("carol")
            && lines[1].contains("ops-console")
            && lines[1].contains("account.create")
            && lines[1].contains(&account.id),
        "{table}"
    );
    assert!(
        lines[2].contains("role.put") && lines[2].contains("reader"),
        "{table}"
    );

    let by_name = env.json(&["audit", "query", "--kind", "admin", "--principal", "carol"]);
    let rows = by_name.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["subject"], "7c0e-carol");
    assert_eq!(rows[0]["username"], "carol");
    assert_eq!(rows[0]["client_id"], "ops-console");
    assert_eq!(rows[0]["action"], "account.create");
    assert_eq!(
        env.json(&["audit", "query", "--kind", "decision"]),
        serde_json::json!([])
    );
    let out = env.run(&["audit", "query", "--kind", "people"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("decision or admin"));
}
