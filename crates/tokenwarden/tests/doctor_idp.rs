//! `tokenwarden doctor` against the real test IdP with faults injected: every failure class of
//! the config, discovery and client-authentication steps, through the binary. One IdP for the
//! whole file: the cases run one after the other (faults are per endpoint, IdP-wide).

mod doctor_common;

use doctor_common::{Diagnosis, Files, doctor, profile_toml};
use std::time::Duration;
use tw_testkit::{ClientSpec, Endpoint, Fault, Idp, IdpConfig};

const SECRET: &str = "agent-basic-secret";

/// Runs doctor on a `main` profile of the client `agent-basic` at `issuer`, plus `extra` lines.
async fn doctor_at(files: &Files, issuer: &str, extra: &str, env: &[(&str, &str)]) -> Diagnosis {
    let config = files.write(
        "main.toml",
        &profile_toml("main", issuer, "agent-basic", extra),
    );
    doctor(&["--config", config.to_str().expect("UTF-8 path")], env).await
}

#[tokio::test]
async fn config_and_reachability_failures_are_told_apart() {
    let idp = Idp::start_default().await;
    let files = Files::new();
    let env = [("TW_DOCTOR_SECRET", SECRET)];

    // Happy path: every step passes, exit 0, and neither the secret nor the token is printed.
    let ok = files.write(
        "ok.toml",
        &profile_toml("main", &idp.issuer(), "agent-basic", ""),
    );
    let d = doctor(&["--config", ok.to_str().unwrap()], &env).await;
    assert_eq!(d.code, Some(0), "{}\n{}", d.stdout, d.stderr);
    assert_eq!(d.json["ok"], true);
    for id in ["config", "secrets", "discovery", "clock", "token"] {
        assert_eq!(d.outcome(id).0, "pass", "{id}: {}", d.stdout);
    }
    assert!(!d.stdout.contains(SECRET));
    assert!(!d.stdout.contains("eyJ"), "no token in the output");

    // The same as text: one line per step, symbols, exit 0.
    let text = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["doctor", "--config", ok.to_str().unwrap()])
        .env("TW_DOCTOR_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{out}");
    assert!(out.contains("✔ token [main]"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");

    // A config error names the file and the key; exit 1 with the diagnosis.
    let bad = files.write(
        "bad.toml",
        &format!(
            "{}client_secert = \"x\"\n",
            profile_toml("main", &idp.issuer(), "agent-basic", "")
        ),
    );
    let d = doctor(&["--config", bad.to_str().unwrap()], &env).await;
    assert_eq!(d.code, Some(1), "{}", d.stdout);
    d.assert_fails("config", "config_invalid");
    let t = d.text_of("config");
    assert!(t.contains("bad.toml") && t.contains("client_secert"), "{t}");

    // A missing file or an unknown profile is a usage error: exit 2.
    let d = doctor(&["--config", "/nonexistent/doctor.toml"], &env).await;
    assert_eq!(d.code, Some(2), "{}", d.stderr);
    let d = doctor(
        &["--config", ok.to_str().unwrap(), "--profile", "nope"],
        &env,
    )
    .await;
    assert_eq!(d.code, Some(2), "{}", d.stderr);
    assert!(d.stderr.contains("nope"), "{}", d.stderr);

    // An unset secret variable: named, never guessed.
    let d = doctor(&["--config", ok.to_str().unwrap()], &[]).await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("secrets", "secret_unavailable");
    d.assert_says("secrets", "TW_DOCTOR_SECRET");

    // Connection refused: a port nothing listens on.
    let port = tw_testkit::free_port();
    let d = doctor_at(
        &files,
        &format!("http://127.0.0.1:{port}/realms/test"),
        "",
        &env,
    )
    .await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("discovery", "connection_refused");

    // The IdP itself down: refused as well; up again: fine.
    idp.down().await;
    let d = doctor(&["--config", ok.to_str().unwrap()], &env).await;
    d.assert_fails("discovery", "connection_refused");
    idp.up().await;

    // DNS: a name that cannot resolve.
    let d = doctor_at(
        &files,
        "http://keycloak.doctor.invalid/realms/test",
        "",
        &env,
    )
    .await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("discovery", "dns");

    // TLS: https:// to the IdP's plain-HTTP port.
    let d = doctor_at(
        &files,
        &idp.issuer().replace("http://", "https://"),
        "",
        &env,
    )
    .await;
    d.assert_fails("discovery", "tls");

    // Timeout: the discovery document comes later than the configured request timeout.
    idp.fault(Fault::delay(Endpoint::Discovery, Duration::from_secs(3)))
        .await;
    let d = doctor_at(
        &files,
        &idp.issuer(),
        "timing = { request_timeout = \"500ms\" }",
        &env,
    )
    .await;
    d.assert_fails("discovery", "timeout");
    idp.clear_faults().await;

    // A garbled discovery document.
    idp.fault(Fault::garbled(Endpoint::Discovery)).await;
    let d = doctor(&["--config", ok.to_str().unwrap()], &env).await;
    d.assert_fails("discovery", "discovery_invalid");
    idp.clear_faults().await;

    // A 404: a wrong realm.
    let d = doctor_at(
        &files,
        &idp.issuer().replace("/realms/test", "/realms/nope"),
        "",
        &env,
    )
    .await;
    d.assert_fails("discovery", "discovery_http_status");
    d.assert_says("discovery", "404");

    // Issuer mismatch: the same server under another name (localhost vs 127.0.0.1).
    let d = doctor_at(
        &files,
        &idp.issuer().replace("127.0.0.1", "localhost"),
        "",
        &env,
    )
    .await;
    d.assert_fails("discovery", "issuer_mismatch");
    d.assert_says("discovery", &idp.issuer());
}

#[tokio::test]
async fn client_authentication_failures_are_told_apart() {
    let idp = Idp::start(
        IdpConfig::default()
            .client(ClientSpec::secret_basic("agent-basic", SECRET).realm_roles(["agent"]))
            .client(
                ClientSpec::secret_basic("browser-app", "browser-app-secret")
                    .grants(["authorization_code", "refresh_token"])
                    .redirect_uris(["http://127.0.0.1/cb"]),
            ),
    )
    .await;
    let files = Files::new();
    let cfg = |client: &str| {
        files.write(
            &format!("{client}.toml"),
            &profile_toml("main", &idp.issuer(), client, ""),
        )
    };
    let basic = cfg("agent-basic");
    let run = |path: &std::path::PathBuf, secret: &str| {
        let path = path.to_str().unwrap().to_owned();
        let secret = secret.to_owned();
        async move { doctor(&["--config", &path], &[("TW_DOCTOR_SECRET", &secret)]).await }
    };

    // Wrong secret: the client exists and is enabled (the authorization endpoint knows it).
    let d = run(&basic, "not-the-secret").await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("token", "wrong_secret");
    // What the IdP said, from the broker's error context.
    d.assert_says("token", "refused the client `agent-basic`: invalid_client");
    assert!(!d.stdout.contains("not-the-secret"));

    // Unknown client.
    let d = run(&cfg("no-such-client"), SECRET).await;
    d.assert_fails("token", "unknown_client");

    // Disabled client: Keycloak's (and the test IdP's) token endpoint answers as for an unknown
    // client; the authorization endpoint tells.
    idp.disable_client("agent-basic").await;
    let d = run(&basic, SECRET).await;
    d.assert_fails("token", "client_disabled");
    idp.enable_client("agent-basic").await;

    // Service account not enabled: the client may not use client_credentials.
    let d = run(&cfg("browser-app"), "browser-app-secret").await;
    d.assert_fails("token", "service_account_disabled");

    // When the authorization endpoint cannot be asked (a token URL of no known layout, here
    // through its query), the doctor says it cannot tell, and lists every cause.
    let unknown_layout = files.write(
        "fixed.toml",
        &format!(
            r#"[profiles.main]
token_url = "{}?via=gateway"
client_id = "agent-basic"
client_secret = {{ env = "TW_DOCTOR_SECRET" }}
"#,
            idp.token_url()
        ),
    );
    let d = run(&unknown_layout, "not-the-secret").await;
    d.assert_fails("token", "wrong_secret_or_unknown_client");
    let t = d.text_of("token");
    assert!(t.contains("Credentials") && t.contains("Clients"), "{t}");

    // Rate limiting and 5xx at the token endpoint.
    idp.fault(Fault::status(Endpoint::Token, 429).retry_after("7"))
        .await;
    let d = run(&basic, SECRET).await;
    d.assert_fails("token", "rate_limited");
    idp.fault(Fault::status(Endpoint::Token, 503)).await;
    let d = run(&basic, SECRET).await;
    d.assert_fails("token", "idp_5xx");
    idp.clear_faults().await;

    // invalid_scope.
    let d = doctor_at(
        &files,
        &idp.issuer(),
        "scope = \"no-such-scope\"",
        &[("TW_DOCTOR_SECRET", SECRET)],
    )
    .await;
    d.assert_fails("token", "invalid_scope");

    // Back to healthy.
    let d = run(&basic, SECRET).await;
    assert_eq!(d.code, Some(0), "{}", d.stdout);
}

#[tokio::test]
async fn private_key_jwt_refusals_name_the_assertion() {
    let idp = Idp::start_default().await;
    let files = Files::new();
    let cfg = |key: &str| {
        files.write(
            &format!("{key}.toml"),
            &format!(
                r#"[profiles.jwt]
issuer = "{}"
client_id = "agent-jwt"
auth_method = "private_key_jwt"
private_key = {{ file = "{}" }}
"#,
                idp.issuer(),
                tw_testkit::fixture_path(&format!("keys/{key}")).display()
            ),
        )
    };
    let d = doctor(&["--config", cfg("agent-rsa.pem").to_str().unwrap()], &[]).await;
    assert_eq!(d.code, Some(0), "{}", d.stdout);

    // A key the IdP does not hold for this client.
    let d = doctor(
        &["--config", cfg("untrusted-rsa.pem").to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("token", "invalid_client_assertion");
    assert!(!d.stdout.contains("PRIVATE KEY"));

    // Not a key at all: caught before anything is sent.
    let d = doctor(&["--config", cfg("README.md").to_str().unwrap()], &[]).await;
    d.assert_fails("secrets", "private_key_invalid");
}

#[tokio::test]
async fn doctor_runs_without_a_config_file_from_flags() {
    let idp = Idp::start_default().await;
    let d = doctor(
        &[
            "--issuer",
            &idp.issuer(),
            "--client-id",
            "agent-basic",
            "--client-secret-env",
            "TW_DOCTOR_SECRET",
        ],
        &[("TW_DOCTOR_SECRET", SECRET)],
    )
    .await;
    assert_eq!(d.code, Some(0), "{}\n{}", d.stdout, d.stderr);
    assert_eq!(d.outcome("token").0, "pass");

    let d = doctor(&["--client-id", "agent-basic"], &[]).await;
    assert_eq!(d.code, Some(2), "{}", d.stderr);
}

/// `tokenwarden doctor` with its text report (what a terminal shows): (exit code, stdout).
async fn doctor_text(config: &std::path::Path) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["doctor", "--config"])
        .arg(config)
        .env("TW_DOCTOR_SECRET", SECRET)
        .output()
        .await
        .expect("run tokenwarden doctor");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn idp_supplied_text_cannot_drive_the_terminal() {
    let idp = Idp::start_default().await;
    let files = Files::new();
    // A discovery document whose issuer clears the screen, turns red, rings, and forges a line.
    let hostile =
        "\u{1b}[2J\u{1b}[31mhttp://evil.example/realms/test\u{7}\r\nfix: trust me \u{202e}";
    idp.fault(
        Fault::status(Endpoint::Discovery, 200).body(serde_json::json!({
            "issuer": hostile,
            "token_endpoint": format!("{}/protocol/openid-connect/token", idp.issuer()),
        })),
    )
    .await;
    let config = files.write(
        "main.toml",
        &profile_toml("main", &idp.issuer(), "agent-basic", ""),
    );

    let (code, stdout) = doctor_text(&config).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        !stdout
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "raw control characters reach the terminal: {stdout:?}"
    );
    assert!(
        stdout.contains(r"the IdP says: \u{1b}[2J\u{1b}[31mhttp://evil.example/realms/test\u{7}\r\nfix: trust me \u{202e}"),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("fix: trust me")),
        "{stdout}"
    );

    // The JSON report keeps the IdP's text as it came (JSON escapes it).
    let d = doctor(
        &["--config", config.to_str().unwrap()],
        &[("TW_DOCTOR_SECRET", SECRET)],
    )
    .await;
    d.assert_fails("discovery", "issuer_mismatch");
    d.assert_says("discovery", hostile);
    assert!(!d.stdout.contains('\u{1b}'), "{}", d.stdout);
}

#[tokio::test]
async fn an_oversized_discovery_document_is_refused_without_reading_it_all() {
    // The test IdP's control API takes no fault body this large, so a fake serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/realms/big", listener.local_addr().unwrap());
    let document = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
        "padding": "x".repeat(2 * 1024 * 1024),
    })
    .to_string();
    let app = axum::Router::new().route(
        "/realms/big/.well-known/openid-configuration",
        axum::routing::get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                document,
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let files = Files::new();
    let d = doctor_at(&files, &issuer, "", &[("TW_DOCTOR_SECRET", SECRET)]).await;
    d.assert_fails("discovery", "discovery_invalid");
    d.assert_says("discovery", "larger than 1048576 bytes");
}
