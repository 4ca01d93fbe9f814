//! `tokenwarden vault` and `config check` of a `[vault]` section, without a running IdP: the
//! shipped example checks out, key problems are configuration errors (exit 2) naming the key and
//! never showing it, the help explains the commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use tw_testkit::repo_root;

fn tokenwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    cmd.args(args)
        .env_remove("TW_VAULT_KEY_2026_01")
        .env_remove("TW_VAULT_CLIENT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tokenwarden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check_example(env: &[(&str, &str)]) -> Output {
    let example = repo_root().join("examples/vault.toml");
    tokenwarden(
        &["config", "check", "--config", example.to_str().unwrap()],
        env,
    )
}

#[test]
fn the_vault_example_checks_out_with_its_secrets() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let out = check_example(&[
        ("TW_VAULT_KEY_2026_01", key),
        ("TW_VAULT_CLIENT_SECRET", "s3cret-value"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("redirect URI http://127.0.0.1:8820/v1/offline-token/callback"),
        "{stdout}"
    );
    assert!(!stdout.contains(key) && !stdout.contains("s3cret-value"));
}

#[test]
fn key_problems_are_config_errors_naming_the_key() {
    // Not set at all.
    let out = check_example(&[("TW_VAULT_CLIENT_SECRET", "x")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("vault.encryption.keys.\"2026-01\""), "{err}");

    // Not 32 bytes of base64: named, never shown.
    let short = "c2hvcnQta2V5LXNlY3JldA==";
    let out = check_example(&[
        ("TW_VAULT_KEY_2026_01", short),
        ("TW_VAULT_CLIENT_SECRET", "x"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("2026-01"), "{err}");
    assert!(!err.contains(short), "{err}");

    // The client secret is checked too.
    let out = check_example(&[(
        "TW_VAULT_KEY_2026_01",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("vault.idp.client_secret"));
}

#[test]
fn a_config_without_a_vault_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[agent]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    for cmd in ["serve", "rekey", "list"] {
        let out = tokenwarden(&["vault", cmd, "--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(text(&out.stderr).contains("no [vault] section"), "{cmd}");
    }
}

#[test]
fn the_help_teaches_the_commands() {
    let out = tokenwarden(&["vault", "--help"], &[]);
    let help = text(&out.stdout);
    for cmd in ["serve", "rekey", "list", "keygen"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = tokenwarden(&["vault", "rekey", "--help"], &[]);
    let help = text(&out.stdout);
    assert!(
        help.contains("active_key") && help.contains("Example"),
        "{help}"
    );
}
