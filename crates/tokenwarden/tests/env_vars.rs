//! The documented environment variables, set the way the README sets them, through the binary:
//! `TOKENWARDEN_CONFIG` instead of `--config`, `TOKENWARDEN_LOG` for the log filter, and
//! `TOKENWARDEN_<SECTION>__<KEY>` overrides. Also the CLI's spellings of auth methods and
//! durations. Against the real test IdP.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tw_testkit::{Idp, IdpConfig};

/// Runs `tokenwarden args` with `env` added to the inherited environment.
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

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A profile `p` of the IdP's `agent-post` client (client_secret_post), with a JSON file sink.
fn agent_toml(idp: &Idp, client_id: &str, sink: &Path) -> String {
    format!(
        "[agent]\nlisten = \"127.0.0.1:0\"\n\n[profiles.p]\ntoken_url = \"{}\"\nclient_id = \"{client_id}\"\nauth_method = \"client_secret_post\"\nclient_secret = {{ env = \"P_SECRET\" }}\n\n[[agent.sinks]]\nprofile = \"p\"\npath = \"{}\"\nformat = \"json\"\n",
        idp.token_url(),
        sink.display()
    )
}

fn gateway_toml(idp: &Idp, listen: &str) -> String {
    format!(
        "[gateway]\nlisten = \"{listen}\"\n\n[[gateway.issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\nallowed_azp = [\"agent-basic\"]\n",
        idp.issuer()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn config_check_reads_tokenwarden_config_and_log_and_key_overrides() {
    let idp = Idp::start_default().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, gateway_toml(&idp, "127.0.0.1:8800")).unwrap();
    let config = path_str(&cfg);

    for log in [
        "debug",
        "debug,tw_gateway=trace",
        "info",
        "warn",
        "not a [filter",
    ] {
        let out = tokenwarden(
            &["config", "check"],
            &[("TOKENWARDEN_CONFIG", config), ("TOKENWARDEN_LOG", log)],
        );
        assert!(out.status.success(), "{log}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("{config}: OK")), "{stdout}");
        assert!(stdout.contains("gateway 127.0.0.1:8800"), "{stdout}");
    }

    // A key override applies next to both, and a bare number of seconds is a duration.
    let out = tokenwarden(
        &["config", "check"],
        &[
            ("TOKENWARDEN_CONFIG", config),
            ("TOKENWARDEN_LOG", "debug"),
            ("TOKENWARDEN_GATEWAY__LISTEN", "127.0.0.1:9911"),
            ("TOKENWARDEN_GATEWAY__CONNECTIONS__IDLE_TIMEOUT", "60"),
            ("TOKENWARDEN_STORAGE__CONNECT_TIMEOUT", "5s"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("gateway 127.0.0.1:9911"),
        "{}",
        text(&out.stdout)
    );

    // The variable is really what is read: a missing file is named, exit 2.
    let missing = dir.path().join("nowhere.toml");
    let out = tokenwarden(
        &["config", "check"],
        &[("TOKENWARDEN_CONFIG", path_str(&missing))],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nowhere.toml"),
        "{}",
        text(&out.stderr)
    );
    // --config on the command line wins over the variable.
    let out = tokenwarden(
        &["config", "check", "--config", config],
        &[("TOKENWARDEN_CONFIG", path_str(&missing))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A bad override is still refused, named as coming from the environment.
    let out = tokenwarden(
        &["config", "check"],
        &[
            ("TOKENWARDEN_CONFIG", config),
            ("TOKENWARDEN_GATEWAY__CONNECTIONS__IDLE_TIMEOUT", "-60"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("environment") && err.contains("gateway.connections.idle_timeout"),
        "{err}"
    );
}

#[tokio::test]
async fn agent_once_and_doctor_run_from_tokenwarden_config_with_debug_logs() {
    let idp = Idp::start_default().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("p.token");
    let cfg = dir.path().join("agent.toml");
    // The file names a client the IdP does not know; the documented override corrects it.
    std::fs::write(&cfg, agent_toml(&idp, "no-such-client", &sink)).unwrap();
    let env = [
        ("TOKENWARDEN_CONFIG", path_str(&cfg)),
        ("TOKENWARDEN_LOG", "debug"),
        ("TOKENWARDEN_PROFILES__P__CLIENT_ID", "agent-post"),
        ("TOKENWARDEN_PROFILES__P__TIMING__REQUEST_TIMEOUT", "10"),
        ("P_SECRET", "agent-post-secret"),
    ];

    let out = tokenwarden(&["agent", "--once"], &env);
    let logs = text(&out.stderr);
    assert!(out.status.success(), "{logs}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sink).unwrap()).unwrap();
    let token = written["access_token"].as_str().unwrap();
    assert!(token.contains('.'), "a JWT in the sink");
    assert!(
        logs.contains("DEBUG"),
        "TOKENWARDEN_LOG=debug is applied: {logs}"
    );
    assert!(!logs.contains(token), "token in the debug logs");
    assert!(
        !logs.contains("agent-post-secret"),
        "secret in the debug logs"
    );

    // Without the override the file's client is used (and refused): the override was real.
    let out = tokenwarden(&["agent", "--once"], &[env[0], env[1], env[4]]);
    assert!(!out.status.success());

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .arg("doctor")
        .envs(env)
        .output()
        .await
        .expect("run tokenwarden doctor");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("✔ token [p]"), "{stdout}");
    assert!(!stdout.contains("agent-post-secret"), "{stdout}");
    assert!(!text(&out.stderr).contains("agent-post-secret"));
}

#[tokio::test]
async fn gateway_serves_from_tokenwarden_config_with_a_listen_override() {
    let idp = Idp::start_default().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    // The file's address is taken; the variable moves the gateway to a free one.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file_listen = taken.local_addr().unwrap().to_string();
    std::fs::write(&cfg, gateway_toml(&idp, &file_listen)).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .arg("gateway")
        .env("TOKENWARDEN_CONFIG", &cfg)
        .env("TOKENWARDEN_LOG", "debug")
        .env("TOKENWARDEN_GATEWAY__LISTEN", &listen)
        .env("TOKENWARDEN_GATEWAY__CONNECTIONS__IDLE_TIMEOUT", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tokenwarden gateway");
    let token = idp
        .client_credentials_token("agent-basic", "agent-basic-secret")
        .await;
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway never became ready at {listen}");
    let status = |r: reqwest::Response| r.status().as_u16();
    let with_token = http.get(format!("{base}/auth")).bearer_auth(&token);
    assert_eq!(status(with_token.send().await.unwrap()), 200);
    assert_eq!(
        status(http.get(format!("{base}/auth")).send().await.unwrap()),
        401
    );

    let pid = child.id().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let logs = text(&out.stderr);
    assert!(out.status.success(), "{logs}");
    assert!(logs.contains("gateway listening"), "{logs}");
    assert!(
        logs.contains("DEBUG"),
        "TOKENWARDEN_LOG=debug is applied: {logs}"
    );
    assert!(!logs.contains(&token), "token in the debug logs");
    drop(taken);
}

#[test]
fn roles_and_accounts_work_on_the_storage_of_tokenwarden_config() {
    let dir = tempfile::tempdir().unwrap();
    let file_db = dir.path().join("from-file.db");
    let env_db = dir.path().join("from-env.db");
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\nurl = \"sqlite://{}\"\n", file_db.display()),
    )
    .unwrap();
    let env_url = format!("sqlite://{}", env_db.display());
    let env = [
        ("TOKENWARDEN_CONFIG", path_str(&cfg)),
        ("TOKENWARDEN_LOG", "debug"),
        ("TOKENWARDEN_STORAGE__URL", env_url.as_str()),
        ("TOKENWARDEN_STORAGE__CONNECT_TIMEOUT", "5"),
    ];
    let ok = |args: &[&str]| {
        let out = tokenwarden(args, &env);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&[
        "roles",
        "create",
        "mcp-agent-attributes-readonly",
        "--permission",
        "attributes:read",
    ]);
    ok(&[
        "accounts",
        "create",
        "--issuer",
        "https://keycloak.example.org/realms/evently",
        "--client-id",
        "evently-confidential-client",
        "--role",
        "mcp-agent-attributes-readonly",
    ]);
    let roles = ok(&["roles", "list"]);
    assert!(roles.contains("mcp-agent-attributes-readonly"), "{roles}");
    let accounts = ok(&["accounts", "list"]);
    assert!(
        accounts.contains("evently-confidential-client"),
        "{accounts}"
    );
    assert!(env_db.exists(), "the overridden storage.url is used");
    assert!(!file_db.exists(), "the file's storage.url is overridden");
}

#[tokio::test]
async fn flags_naming_a_client_go_ahead_when_tokenwarden_config_is_exported() {
    let idp = Idp::start_default().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, gateway_toml(&idp, "127.0.0.1:0")).unwrap();
    let exported = [
        ("TOKENWARDEN_CONFIG", path_str(&cfg)),
        ("S", "agent-basic-secret"),
    ];
    let issuer = idp.issuer();
    let get = [
        "token",
        "get",
        "--issuer",
        &issuer,
        "--client-id",
        "agent-basic",
        "--client-secret-env",
        "S",
    ];
    let out = tokenwarden(&get, &exported);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT on stdout");

    let inspect = [
        "token",
        "inspect",
        &token,
        "--issuer",
        &issuer,
        "--audience",
        "api",
    ];
    let out = tokenwarden(&inspect, &exported);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let doctor = [
        "doctor",
        "--issuer",
        &issuer,
        "--client-id",
        "agent-basic",
        "--client-secret-env",
        "S",
    ];
    let out = tokenwarden(&doctor, &exported);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Written on the command line, --config still conflicts with them.
    for args in [&get[..], &inspect[..], &doctor[..]] {
        let mut args = args.to_vec();
        args.extend(["--config", path_str(&cfg)]);
        let out = tokenwarden(&args, &exported);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("cannot be used with"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn auth_method_takes_the_registered_oauth_names_and_the_kebab_ones() {
    let idp = Idp::start_default().await;
    let token_url = idp.token_url();
    let get = |client: &str, method: &str| {
        tokenwarden(
            &[
                "token",
                "get",
                "--token-url",
                &token_url,
                "--client-id",
                client,
                "--client-secret-env",
                "S",
                "--auth-method",
                method,
            ],
            &[("S", &format!("{client}-secret"))],
        )
    };
    for method in ["client_secret_post", "client-secret-post"] {
        let out = get("agent-post", method);
        assert!(out.status.success(), "{method}: {}", text(&out.stderr));
    }
    for method in ["client_secret_basic", "client-secret-basic"] {
        let out = get("agent-basic", method);
        assert!(out.status.success(), "{method}: {}", text(&out.stderr));
    }
    // A name is not just any accepted value: `none` sends no secret, and the IdP refuses.
    let out = get("agent-basic", "none");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let key = tw_testkit::fixture_path("keys/agent-ec.pem");
    for method in ["private_key_jwt", "private-key-jwt"] {
        let out = tokenwarden(
            &[
                "token",
                "get",
                "--token-url",
                &token_url,
                "--client-id",
                "agent-jwt",
                "--auth-method",
                method,
                "--signing-alg",
                "es256",
                "--private-key-file",
                path_str(&key),
            ],
            &[],
        );
        assert!(out.status.success(), "{method}: {}", text(&out.stderr));
    }
    // doctor shares the flags.
    let out = tokenwarden(
        &[
            "doctor",
            "--token-url",
            &token_url,
            "--client-id",
            "agent-post",
            "--client-secret-env",
            "S",
            "--auth-method",
            "client_secret_post",
        ],
        &[("S", "agent-post-secret")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Look-alikes are refused as bad input, with the accepted values listed.
    for method in [
        "CLIENT_SECRET_POST",
        "Client_Secret_Post",
        "client_secret-post",
        "client secret post",
        "clientsecretpost",
        "client_secret_post ",
        "client_secret_post,client_secret_basic",
        "ｃlient_secret_post",
        "client_secret_jwt",
        "",
    ] {
        let out = get("agent-post", method);
        assert_eq!(out.status.code(), Some(2), "{method:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("--auth-method") && err.contains("client-secret-post"),
            "{method:?}: {err}"
        );
    }
}

#[tokio::test]
async fn duration_flags_take_a_bare_number_of_seconds() {
    let idp = Idp::start(IdpConfig::default().access_token_ttl(1)).await;
    let token = idp
        .client_credentials_token("agent-basic", "agent-basic-secret")
        .await;
    // Expired by a few seconds: a leeway of 0 refuses it, one of 60 seconds accepts it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let issuer = idp.issuer();
    // `--leeway=VALUE`, so that a negative value reaches the parser rather than reading as a flag.
    let inspect = |leeway: &str| {
        let flag = format!("--leeway={leeway}");
        tokenwarden(
            &[
                "token",
                "inspect",
                &token,
                "--issuer",
                &issuer,
                "--audience",
                "api",
                &flag,
            ],
            &[],
        )
    };
    // As the issue wrote it: `--leeway 60`, a separate argument.
    let out = tokenwarden(
        &[
            "token",
            "inspect",
            &token,
            "--issuer",
            &issuer,
            "--audience",
            "api",
            "--leeway",
            "60",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    for leeway in ["0", "0s"] {
        let out = inspect(leeway);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{leeway}: {}",
            text(&out.stdout)
        );
    }
    for leeway in ["60", "60s", "1m", " 60 "] {
        let out = inspect(leeway);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{leeway}: {}",
            text(&out.stdout)
        );
    }
    for leeway in [
        "-60",
        "1.5",
        "60x",
        "",
        "sixty",
        "６０",
        "99999999999999999999999",
    ] {
        let out = inspect(leeway);
        assert_eq!(out.status.code(), Some(2), "{leeway:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("--leeway") && err.contains("whole number of seconds"),
            "{leeway:?}: {err}"
        );
    }
    // The dev issuer's lifetimes read the same way (refused before it starts anything); a build
    // without the `dev-issuer` feature has no such command.
    let dev_issuer_flags: &[&str] = if cfg!(feature = "dev-issuer") {
        &["--access-token-lifetime", "--refresh-token-lifetime"]
    } else {
        &[]
    };
    for &flag in dev_issuer_flags {
        let out = tokenwarden(&["dev-issuer", flag, "1.5"], &[]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = text(&out.stderr);
        assert!(
            err.contains(flag) && err.contains("whole number of seconds"),
            "{flag}: {err}"
        );
    }
}
