//! `tokenwarden doctor` against the real test IdP with faults injected: every failure class of
//! the config, discovery and client-authentication steps, through the binary. One IdP for the
//! whole file: the cases run one after the other (faults are per endpoint, IdP-wide).

mod doctor_common;

use doctor_common::{Files, doctor, profile_toml};
use std::time::Duration;
use tw_testkit::{ClientSpec, Endpoint, Fault, Idp, IdpConfig};

const SECRET: &str = "agent-basic-secret";

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
        .env_remove("TOKENWARDEN_CONFIG")
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
    assert_eq!(
        d.outcome("config"),
        ("fail".into(), "config_invalid".into())
    );
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
    assert_eq!(
        d.outcome("secrets"),
        ("fail".into(), "secret_unavailable".into())
    );
    assert!(d.text_of("secrets").contains("TW_DOCTOR_SECRET"));

    // Connection refused: a port nothing listens on.
    let port = tw_testkit::free_port();
    let refused = files.write(
        "refused.toml",
        &profile_toml(
            "main",
            &format!("http://127.0.0.1:{port}/realms/test"),
            "agent-basic",
            "",
        ),
    );
    let d = doctor(&["--config", refused.to_str().unwrap()], &env).await;
    assert_eq!(d.code, Some(1));
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "connection_refused".into())
    );

    // The IdP itself down: refused as well; up again: fine.
    idp.down().await;
    let d = doctor(&["--config", ok.to_str().unwrap()], &env).await;
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "connection_refused".into())
    );
    idp.up().await;

    // DNS: a name that cannot resolve.
    let dns = files.write(
        "dns.toml",
        &profile_toml(
            "main",
            "http://keycloak.doctor.invalid/realms/test",
            "agent-basic",
            "",
        ),
    );
    let d = doctor(&["--config", dns.to_str().unwrap()], &env).await;
    assert_eq!(d.code, Some(1));
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "dns".into()),
        "{}",
        d.stdout
    );

    // TLS: https:// to the IdP's plain-HTTP port.
    let tls = files.write(
        "tls.toml",
        &profile_toml(
            "main",
            &idp.issuer().replace("http://", "https://"),
            "agent-basic",
            "",
        ),
    );
    let d = doctor(&["--config", tls.to_str().unwrap()], &env).await;
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "tls".into()),
        "{}",
        d.stdout
    );

    // Timeout: the discovery document comes later than the configured request timeout.
    idp.fault(Fault::delay(Endpoint::Discovery, Duration::from_secs(3)))
        .await;
    let slow = files.write(
        "slow.toml",
        &profile_toml(
            "main",
            &idp.issuer(),
            "agent-basic",
            "timing = { request_timeout = \"500ms\" }",
        ),
    );
    let d = doctor(&["--config", slow.to_str().unwrap()], &env).await;
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "timeout".into()),
        "{}",
        d.stdout
    );
    idp.clear_faults().await;

    // A garbled discovery document.
    idp.fault(Fault::garbled(Endpoint::Discovery)).await;
    let d = doctor(&["--config", ok.to_str().unwrap()], &env).await;
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "discovery_invalid".into())
    );
    idp.clear_faults().await;

    // A 404: a wrong realm.
    let realm = files.write(
        "realm.toml",
        &profile_toml(
            "main",
            &idp.issuer().replace("/realms/test", "/realms/nope"),
            "agent-basic",
            "",
        ),
    );
    let d = doctor(&["--config", realm.to_str().unwrap()], &env).await;
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "discovery_http_status".into())
    );
    assert!(d.text_of("discovery").contains("404"));

    // Issuer mismatch: the same server under another name (localhost vs 127.0.0.1).
    let other_name = files.write(
        "mismatch.toml",
        &profile_toml(
            "main",
            &idp.issuer().replace("127.0.0.1", "localhost"),
            "agent-basic",
            "",
        ),
    );
    let d = doctor(&["--config", other_name.to_str().unwrap()], &env).await;
    assert_eq!(
        d.outcome("discovery"),
        ("fail".into(), "issuer_mismatch".into())
    );
    assert!(d.text_of("discovery").contains(&idp.issuer()));
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
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "wrong_secret".into()),
        "{}",
        d.stdout
    );
    assert!(!d.stdout.contains("not-the-secret"));

    // Unknown client.
    let d = run(&cfg("no-such-client"), SECRET).await;
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "unknown_client".into()),
        "{}",
        d.stdout
    );

    // Disabled client: Keycloak's (and the test IdP's) token endpoint answers as for an unknown
    // client; the authorization endpoint tells.
    idp.disable_client("agent-basic").await;
    let d = run(&basic, SECRET).await;
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "client_disabled".into()),
        "{}",
        d.stdout
    );
    idp.enable_client("agent-basic").await;

    // Service account not enabled: the client may not use client_credentials.
    let d = run(&cfg("browser-app"), "browser-app-secret").await;
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "service_account_disabled".into()),
        "{}",
        d.stdout
    );

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
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "wrong_secret_or_unknown_client".into()),
        "{}",
        d.stdout
    );
    let t = d.text_of("token");
    assert!(t.contains("Credentials") && t.contains("Clients"), "{t}");

    // Rate limiting and 5xx at the token endpoint.
    idp.fault(Fault::status(Endpoint::Token, 429).retry_after("7"))
        .await;
    let d = run(&basic, SECRET).await;
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "rate_limited".into()),
        "{}",
        d.stdout
    );
    idp.fault(Fault::status(Endpoint::Token, 503)).await;
    let d = run(&basic, SECRET).await;
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "idp_5xx".into()),
        "{}",
        d.stdout
    );
    idp.clear_faults().await;

    // invalid_scope.
    let scoped = files.write(
        "scope.toml",
        &profile_toml(
            "main",
            &idp.issuer(),
            "agent-basic",
            "scope = \"no-such-scope\"",
        ),
    );
    let d = run(&scoped, SECRET).await;
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "invalid_scope".into()),
        "{}",
        d.stdout
    );

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
    assert_eq!(
        d.outcome("token"),
        ("fail".into(), "invalid_client_assertion".into()),
        "{}",
        d.stdout
    );
    assert!(!d.stdout.contains("PRIVATE KEY"));

    // Not a key at all: caught before anything is sent.
    let d = doctor(&["--config", cfg("README.md").to_str().unwrap()], &[]).await;
    assert_eq!(
        d.outcome("secrets"),
        ("fail".into(), "private_key_invalid".into()),
        "{}",
        d.stdout
    );
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
