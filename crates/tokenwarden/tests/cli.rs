//! The binary as a user runs it: exit codes, output, messages. Against the real test IdP.

use std::process::{Command, Output};
use tw_testkit::{Idp, repo_root};

fn tokenwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    cmd.args(args)
        .env_remove("TOKENWARDEN_CONFIG")
        .env_remove("TOKENWARDEN_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tokenwarden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn token_get_from_flags_alone_prints_a_token() {
    let idp = Idp::start_default().await;
    let issuer = idp.issuer();
    let out = tokenwarden(
        &[
            "token",
            "get",
            "--issuer",
            &issuer,
            "--client-id",
            "agent-basic",
            "--client-secret-env",
            "TW_TEST_SECRET",
        ],
        &[("TW_TEST_SECRET", "agent-basic-secret")],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let token = text(&out.stdout);
    assert_eq!(token.trim().split('.').count(), 3, "a JWT on stdout");
    assert!(!text(&out.stderr).contains("agent-basic-secret"));

    let key = tw_testkit::fixture_path("keys/agent-ec.pem");
    let out = tokenwarden(
        &[
            "token",
            "get",
            "--token-url",
            &idp.token_url(),
            "--client-id",
            "agent-jwt",
            "--auth-method",
            "private-key-jwt",
            "--signing-alg",
            "es256",
            "--private-key-file",
            key.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["expires_in"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn token_get_with_a_wrong_secret_fails_clearly_without_echoing_it() {
    let idp = Idp::start_default().await;
    let out = tokenwarden(
        &[
            "token",
            "get",
            "--token-url",
            &idp.token_url(),
            "--client-id",
            "agent-basic",
            "--client-secret-env",
            "S",
        ],
        &[("S", "definitely-wrong-secret")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("definitely-wrong-secret"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn token_get_usage_errors_exit_2_with_a_hint() {
    let out = tokenwarden(
        &[
            "token",
            "get",
            "--issuer",
            "https://kc.example/realms/x",
            "--client-id",
            "a",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--client-secret-env or --client-secret-file"),
        "{}",
        text(&out.stderr)
    );

    let out = tokenwarden(&["token", "get", "--client-id", "a"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = repo_root().join("examples/agent.toml");
    let out = tokenwarden(
        &[
            "config",
            "check",
            "--skip-secrets",
            "--config",
            example.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("profile smartem"));
    let demo = repo_root().join("examples/demo-agent.toml");
    let out = tokenwarden(
        &["config", "check", "--config", demo.to_str().unwrap()],
        &[("DEMO_AGENT_SECRET", "x")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn config_errors_name_file_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[profiles.x]\nissuer = \"https://kc/realms/r\"\nclient_id = \"a\"\nclient_secret = { env = \"UNSET_TW_VAR_FOR_TEST\" }\n").unwrap();
    let out = tokenwarden(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("profiles.x.client_secret") && err.contains("UNSET_TW_VAR_FOR_TEST"),
        "{err}"
    );

    std::fs::write(
        &path,
        "[agent]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 1\n",
    )
    .unwrap();
    let out = tokenwarden(&["agent", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("listen_typo"),
        "{err}"
    );
}

#[tokio::test]
async fn agent_once_writes_every_sink_and_exits() {
    let idp = Idp::start_default().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("t.token");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"127.0.0.1:0\"\n[profiles.p]\ntoken_url = \"{}\"\nclient_id = \"agent-post\"\nauth_method = \"client_secret_post\"\nclient_secret = {{ env = \"P_SECRET\" }}\n[[agent.sinks]]\nprofile = \"p\"\npath = \"{}\"\nformat = \"json\"\n",
            idp.token_url(),
            sink.display()
        ),
    )
    .unwrap();
    let out = tokenwarden(
        &["agent", "--once", "--config", cfg.to_str().unwrap()],
        &[("P_SECRET", "agent-post-secret")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sink).unwrap()).unwrap();
    assert_eq!(written["token_type"], "Bearer");
    assert!(written["access_token"].as_str().unwrap().contains('.'));
    let logs = text(&out.stderr);
    assert!(
        !logs.contains(written["access_token"].as_str().unwrap()),
        "token in logs"
    );
    assert!(!logs.contains("agent-post-secret"));
}

#[test]
fn completions_are_generated() {
    let out = tokenwarden(&["completions", "bash"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("tokenwarden"));
}
