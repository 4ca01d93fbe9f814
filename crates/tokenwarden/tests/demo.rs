//! `tokenwarden demo --once`: the README's main-job command runs its story end to end (dev
//! issuer, sample API, gateway with authorization and the SQLite registry, agent) and exits 0
//! only if every step behaved as expected.

use std::process::Command;

#[test]
fn demo_once_runs_the_whole_story() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["demo", "--once", "--base-port", "0", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run tokenwarden demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "1. The service account gets a token",
        "✔ 200 from the sample API",
        "✔ 403 insufficient_scope",
        "✔ 401, WWW-Authenticate: Bearer",
        "✔ new token",
        "✔ the allowed calls and the refusal are all on record",
        "Every step behaved as expected.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    assert!(!stdout.contains('✖'), "a step failed:\n{stdout}");

    // Step 5: the token the sample API received is the refreshed one, by fingerprint.
    let new = after(&stdout, "✔ new token ");
    let old = after(&stdout, " replaces ");
    assert_ne!(new, old);
    assert_eq!(
        after(&stdout, "the sample API received token "),
        new,
        "{stdout}"
    );

    // Step 6: the printed command is the one that ran; typed again, it shows the story.
    let printed = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("$ tokenwarden audit query "))
        .unwrap_or_else(|| panic!("no audit command printed:\n{stdout}"));
    let config = dir.path().canonicalize().unwrap().join("gateway.toml");
    assert_eq!(
        printed,
        format!("--since 5m --config {}", config.display()),
        "{stdout}"
    );
    assert!(
        stdout.contains("OUTCOME"),
        "the command's table is shown:\n{stdout}"
    );
    let again = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["audit", "query"])
        .args(printed.split(' '))
        .output()
        .expect("run the printed command");
    let table = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        table.lines().any(|l| l.contains(" deny ")
            && l.contains(" POST ")
            && l.contains("attributes-write")),
        "{table}"
    );

    // The story prints fingerprints, never a token or the client secret.
    let token = std::fs::read_to_string(dir.path().join("demo.token")).expect("token file");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "the file sink holds a JWT");
    for output in [&stdout, &stderr] {
        assert!(!output.contains(token), "a token was printed");
        assert!(!output.contains("eyJ"), "something JWT-like was printed");
        assert!(
            !output.contains("demo-agent-secret"),
            "the secret was printed"
        );
    }

    // The configuration files it ran from are valid on their own.
    for file in ["gateway.toml", "agent.toml"] {
        let check = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .args(["config", "check", "--config"])
            .arg(dir.path().join(file))
            .output()
            .expect("run config check");
        assert!(
            check.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// The word after `marker` on the line that has it.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let rest = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in:\n{text}"))
        + marker.len()..];
    rest.split([' ', '\n', ',', ')']).next().unwrap_or_default()
}

#[test]
fn demo_explains_a_port_in_use() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["demo", "--once", "--base-port", &port.to_string(), "--dir"])
        .arg(dir.path())
        .output()
        .expect("run tokenwarden demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stdout.contains("--base-port"),
        "{stdout}"
    );
}
