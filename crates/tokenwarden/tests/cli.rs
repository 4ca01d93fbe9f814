//! The binary as a user runs it: exit codes, output, messages. Against the real test IdP.

use std::process::{Command, Output};
use tw_testkit::{Idp, repo_root};

fn tokenwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    cmd.args(args);
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

/// `tokenwarden config check` of `examples/<name>`.
fn check_example(name: &str, skip_secrets: bool, env: &[(&str, &str)]) -> Output {
    let example = repo_root().join("examples").join(name);
    let mut args = vec![
        "config",
        "check",
        "--config",
        example.to_str().expect("UTF-8 path"),
    ];
    if skip_secrets {
        args.push("--skip-secrets");
    }
    tokenwarden(&args, env)
}

#[test]
fn the_shipped_example_config_is_valid() {
    let out = check_example("agent.toml", true, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("profile smartem"));
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
fn agent_listeners_other_hosts_reach_are_refused_with_the_fix_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote.toml");
    let key = dir.path().join("caller-key");
    std::fs::write(&key, "2d7c0f4e9a1b3c5d7e9f1a3b5c7d9e1f").unwrap();
    let proxy = "\n[agent.proxy]\nlisten = \"LISTEN\"\nEXTRA\n[[agent.proxy.routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nprofile = \"p\"\n";
    let profile = "[profiles.p]\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\nclient_secret = { env = \"P_SECRET\" }\n";
    let api =
        |listen: &str, extra: &str| format!("[agent]\nlisten = \"{listen}\"\n{extra}\n{profile}");
    let with_proxy = |listen: &str, extra: &str| {
        format!(
            "[agent]\nlisten = \"127.0.0.1:0\"\n{profile}{}",
            proxy.replace("LISTEN", listen).replace("EXTRA", extra)
        )
    };
    let cases = [
        (
            api("0.0.0.0:8790", ""),
            "agent.listen",
            "agent.allow_remote = true",
        ),
        (
            api("[::]:8790", ""),
            "agent.listen",
            "agent.allow_remote = true",
        ),
        (
            with_proxy("0.0.0.0:8791", ""),
            "agent.proxy.listen",
            "agent.proxy.allow_remote = true",
        ),
        (
            api("0.0.0.0:8790", "allow_remote = true"),
            "agent.caller_key",
            "X-Tokenwarden-Key",
        ),
        (
            with_proxy("0.0.0.0:8791", "allow_remote = true"),
            "agent.proxy.caller_key",
            "X-Tokenwarden-Key",
        ),
    ];
    for (doc, key, fix) in cases {
        std::fs::write(&path, &doc).unwrap();
        for args in [
            vec!["config", "check", "--skip-secrets", "--config"],
            vec!["agent", "--config"],
        ] {
            let mut args = args.clone();
            args.push(path.to_str().unwrap());
            let out = tokenwarden(&args, &[("P_SECRET", "x")]);
            assert_eq!(out.status.code(), Some(2), "{args:?} {key}");
            let err = text(&out.stderr);
            assert!(
                err.contains("remote.toml")
                    && err.contains(&format!("`{key}`"))
                    && err.contains(fix),
                "{args:?}: {err}"
            );
        }
    }

    // A weak key stops the agent at start (config check does not read it).
    let weak = dir.path().join("weak-key");
    std::fs::write(&weak, "tooshort").unwrap();
    let doc = api(
        "0.0.0.0:0",
        &format!(
            "allow_remote = true\ncaller_key = {{ file = \"{}\" }}",
            weak.display()
        ),
    );
    std::fs::write(&path, doc).unwrap();
    let out = tokenwarden(
        &["agent", "--config", path.to_str().unwrap()],
        &[("P_SECRET", "x")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("agent.caller_key") && err.contains("openssl rand"),
        "{err}"
    );
    assert!(!err.contains("tooshort"), "{err}");
}

#[test]
fn the_remote_agent_example_is_valid() {
    let out = check_example("agent-remote.toml", true, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("profile flowise"));
}

#[tokio::test]
async fn remote_agent_serves_only_callers_with_the_key_until_sigterm() {
    const KEY: &str = "6f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let idp = Idp::start_default().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tokenwarden-caller-key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"0.0.0.0:{port}\"\nallow_remote = true\ncaller_key = {{ file = \"{}\" }}\n[profiles.p]\ntoken_url = \"{}\"\nclient_id = \"agent-basic\"\nclient_secret = {{ env = \"P_SECRET\" }}\n",
            key.display(),
            idp.token_url()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .env("P_SECRET", "agent-basic-secret")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tokenwarden agent");
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok((200, _)) = get(&format!("{base}/readyz"), None).await {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the agent never became ready (probes need no key)");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |key: Option<&'static str>| {
        let mut req = client
            .get(format!("{base}/v1/token/p"))
            .header("Host", format!("tokenwarden:{port}"));
        if let Some(k) = key {
            req = req.header("X-Tokenwarden-Key", k);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            (status, body)
        }
    };
    let (status, body) = call(None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("caller_key_missing"))
    );
    let (status, body) = call(Some("6f1e2d3c4b5a69788796a5b4c3d2e1f1")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("caller_key_invalid"))
    );
    let (status, body) = call(Some(KEY)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let pid = child.id().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("token API listening"), "{stderr}");
    for secret in [KEY, token.as_str(), "agent-basic-secret"] {
        assert!(!stderr.contains(secret), "a secret in the logs: {stderr}");
    }
}

#[test]
fn completions_are_generated() {
    let out = tokenwarden(&["completions", "bash"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("tokenwarden"));
}

/// `tokenwarden token get` for the IdP's `agent-basic` client.
fn idp_token(idp: &Idp) -> String {
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
        &[("S", "agent-basic-secret")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn gateway_toml(idp: &Idp, audience: &str) -> String {
    format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n\n[[gateway.issuers]]\nissuer = \"{}\"\naudiences = [\"{audience}\"]\nallowed_azp = [\"agent-basic\"]\n",
        idp.issuer()
    )
}

/// Runs `tokenwarden` with `input` on stdin.
fn tokenwarden_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tokenwarden");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// The check lines (`✓ name reason`) of the human output, as (symbol, check name).
fn check_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (sym, rest) = l.split_once(' ')?;
            matches!(sym, "✓" | "✗" | "-").then(|| {
                (
                    sym.to_owned(),
                    rest.split_whitespace().next().unwrap_or("").to_owned(),
                )
            })
        })
        .collect()
}

/// `tokenwarden token inspect TOKEN --config <a gateway.toml for the IdP, with `audience`>`
/// plus `extra` arguments.
fn inspect_with_config(idp: &Idp, audience: &str, token: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, gateway_toml(idp, audience)).expect("write config");
    let mut args = vec![
        "token",
        "inspect",
        token,
        "--config",
        cfg.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    tokenwarden(&args, &[])
}

#[tokio::test]
async fn token_inspect_with_config_accepts_a_valid_token_check_by_check() {
    let idp = Idp::start_default().await;
    let token = idp_token(&idp);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, gateway_toml(&idp, "api")).unwrap();

    let out = inspect_with_config(&idp, "api", &token, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let checks = check_lines(&stdout);
    let names: Vec<&str> = checks.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "size",
            "format",
            "header",
            "iss",
            "alg",
            "kid",
            "signature",
            "exp",
            "nbf",
            "iat",
            "aud",
            "azp",
            "typ",
            "introspection"
        ],
        "{stdout}"
    );
    for (sym, name) in &checks {
        let expected = if name == "introspection" { "-" } else { "✓" };
        assert_eq!(sym, expected, "{name} in:\n{stdout}");
    }
    assert!(stdout.contains("\"azp\": \"agent-basic\""), "{stdout}");
    assert!(stdout.contains("Result: ACCEPTED"), "{stdout}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !stdout.contains(&token) && !stdout.contains(signature),
        "the token was printed"
    );

    // The same from standard input, as JSON.
    let out = tokenwarden_stdin(
        &[
            "token",
            "inspect",
            "-",
            "--config",
            cfg.to_str().unwrap(),
            "--json",
        ],
        &format!("Bearer {token}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["valid"], true);
    assert_eq!(json["issuer"], idp.issuer());
    assert_eq!(json["identity"]["client_id"], "agent-basic");
    assert_eq!(json["identity"]["service_account"], true);
    assert_eq!(json["checks"].as_array().unwrap().len(), 14);
    assert_eq!(json["checks"][0]["status"], "pass");
    assert!(!text(&out.stdout).contains(signature));
}

#[tokio::test]
async fn token_inspect_names_the_failing_check_and_exits_1() {
    let idp = Idp::start_default().await;
    let token = idp_token(&idp);

    // Wrong audience, from a config file.
    let out = inspect_with_config(&idp, "another-api", &token, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        check_lines(&stdout).contains(&("✗".to_owned(), "aud".to_owned())),
        "{stdout}"
    );
    assert!(stdout.contains("REJECTED by the aud check"), "{stdout}");
    let out = inspect_with_config(&idp, "another-api", &token, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["valid"], false);
    assert_eq!(json["error"]["check"], "aud");
    assert_eq!(json["error"]["error"], "invalid_token");

    // Expired, judged from flags alone (discovery from --issuer), no leeway.
    idp.set_access_token_ttl(1).await;
    let short = idp_token(&idp);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let issuer = idp.issuer();
    let out = tokenwarden(
        &[
            "token",
            "inspect",
            &short,
            "--issuer",
            &issuer,
            "--audience",
            "api",
            "--azp",
            "agent-basic",
            "--alg",
            "RS256",
            "--leeway",
            "0s",
            "--token-type",
            "keycloak",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        check_lines(&stdout).contains(&("✗".to_owned(), "exp".to_owned())),
        "{stdout}"
    );
    assert!(stdout.contains("expired"), "{stdout}");
    assert!(stdout.contains("ago)"), "{stdout}");
}

#[tokio::test]
async fn token_inspect_from_flags_alone_accepts_and_usage_errors_exit_2() {
    let idp = Idp::start_default().await;
    let token = idp_token(&idp);
    let issuer = idp.issuer();
    let out = tokenwarden(
        &[
            "token",
            "inspect",
            &token,
            "--issuer",
            &issuer,
            "--audience",
            "api",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    for args in [
        vec!["token", "inspect", "abc"],
        vec![
            "token",
            "inspect",
            "abc",
            "--jwks-url",
            "http://127.0.0.1:9/jwks",
        ],
        vec![
            "token", "inspect", "abc", "--issuer", &issuer, "--alg", "HS256",
        ],
        vec!["token", "inspect", "", "--issuer", &issuer],
    ] {
        let out = tokenwarden(&args, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A config without a [gateway] section.
    let example = repo_root().join("examples/agent.toml");
    let out = tokenwarden(
        &[
            "token",
            "inspect",
            "abc",
            "--config",
            example.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[gateway]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_evently_gateway_example_is_valid() {
    let out = check_example("evently-gateway.toml", true, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("authz enforce: 21 rule(s), 3 role(s), permissions from roles + registry"),
        "{stdout}"
    );
}

#[test]
fn the_shipped_gateway_example_is_valid() {
    let out = check_example("gateway.toml", true, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("gateway 127.0.0.1:8800: 2 route(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("issuer https://keycloak.example.org/realms/dls"),
        "{stdout}"
    );
    // Without --skip-secrets the introspection secret must resolve.
    let out = check_example("gateway.toml", false, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("GATEWAY_INTROSPECTION_SECRET"), "{stderr}");
    let out = check_example(
        "gateway.toml",
        false,
        &[("GATEWAY_INTROSPECTION_SECRET", "x")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn gateway_serves_until_sigterm() {
    let idp = Idp::start_default().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        gateway_toml(&idp, "api").replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["gateway", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tokenwarden gateway");
    let token = idp_token(&idp);
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok((200, _)) = get(&format!("{base}/readyz"), None).await {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway never became ready");
    let (status, _) = get(&format!("{base}/auth"), Some(&token)).await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = get(&format!("{base}/auth"), None).await.unwrap();
    assert_eq!(status, 401);
    let (_, body) = get(&format!("{base}/metrics"), None).await.unwrap();
    assert!(
        body.contains("tokenwarden_gateway_requests_total"),
        "{body}"
    );

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("gateway listening"), "{stderr}");
    assert!(!stderr.contains(&token), "token in the logs");
}

/// GET `url` (with a bearer token): the status and the body.
async fn get(url: &str, token: Option<&str>) -> Result<(u16, String), reqwest::Error> {
    let mut req = reqwest::Client::builder().no_proxy().build()?.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}
