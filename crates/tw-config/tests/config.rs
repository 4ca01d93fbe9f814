// figment::Jail closures return figment::Error, which is large by design.
#![allow(clippy::result_large_err)]

use figment::Jail;
use std::io::Write;
use tw_config::{AuthMethod, GrantType, SecretRef, load, load_str};
use tw_core::ErrorKind;

const GOOD: &str = r#"
[profiles.smartem]
issuer = "https://kc.example/realms/dls"
client_id = "SmartEM_Agent"
client_secret = { env = "SMARTEM_SECRET" }

[[agent.sinks]]
profile = "smartem"
path = "/run/tokens/smartem"
"#;

/// Runs `f` under figment's jail lock so env-override tests cannot leak variables into it.
fn isolated(f: impl FnOnce()) {
    Jail::expect_with(|_| {
        f();
        Ok(())
    });
}

fn write_temp(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(contents.as_bytes()).expect("write");
    f
}

#[test]
fn good_config_loads_with_defaults() {
    isolated(|| {
        let c = load_str(GOOD, "inline").unwrap();
        let p = &c.profiles["smartem"];
        assert_eq!(p.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(p.grant, GrantType::ClientCredentials);
        assert_eq!(p.timing.refresh_fraction, 0.75);
        assert_eq!(
            p.client_secret,
            Some(SecretRef::Env("SMARTEM_SECRET".into()))
        );
        assert_eq!(c.agent.sinks[0].mode, "0600");
        assert_eq!(c.agent.listen, "127.0.0.1:8790");
    });
}

#[test]
fn unknown_key_names_file_and_key() {
    isolated(|| {
        let f = write_temp(&format!(
            "{GOOD}\n[profiles.other]\nissuer = \"https://x/\"\nclient_id = \"a\"\nclient_secret = {{ env = \"A\" }}\nclinet_secret2 = 1\n"
        ));
        let err = load(f.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.to_string();
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(msg.contains("clinet_secret2"), "{msg}");
        assert!(msg.contains("profiles.other"), "{msg}");
    });
}

#[test]
fn clear_text_secret_is_refused_with_howto() {
    isolated(|| {
        let doc = GOOD.replace(r#"{ env = "SMARTEM_SECRET" }"#, r#""s3cr3t-value""#);
        let err = load_str(&doc, "agent.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("profiles.smartem.client_secret"), "{msg}");
        assert!(msg.contains("by reference"), "{msg}");
        assert!(
            !msg.contains("s3cr3t-value"),
            "the secret must not be echoed: {msg}"
        );
    });
}

#[test]
fn secret_ref_takes_exactly_one_source() {
    isolated(|| {
        let doc = GOOD.replace(
            r#"{ env = "SMARTEM_SECRET" }"#,
            r#"{ env = "A", file = "/b" }"#,
        );
        let msg = load_str(&doc, "agent.toml").unwrap_err().to_string();
        assert!(msg.contains("exactly one"), "{msg}");
    });
}

#[test]
fn semantic_errors_name_the_key() {
    isolated(|| {
        let cases = [
            (
                GOOD.replace("client_secret = { env = \"SMARTEM_SECRET\" }", ""),
                "profiles.smartem.client_secret",
            ),
            (
                GOOD.replace("issuer = \"https://kc.example/realms/dls\"", ""),
                "profiles.smartem.issuer",
            ),
            (
                GOOD.replace("profile = \"smartem\"", "profile = \"nope\""),
                "agent.sinks[0].profile",
            ),
            (format!("{GOOD}mode = \"0999\"\n"), "agent.sinks[0].mode"),
            (
                format!("{GOOD}\n[profiles.smartem.timing]\nrefresh_fraction = 1.5\n"),
                "profiles.smartem.timing.refresh_fraction",
            ),
            (
                format!("[agent]\nlisten = \"nonsense\"\n{GOOD}"),
                "agent.listen",
            ),
            (
                GOOD.replace(
                    "client_id = \"SmartEM_Agent\"",
                    "client_id = \"SmartEM_Agent\"\ngrant = \"refresh_token\"",
                ),
                "profiles.smartem.refresh_token",
            ),
        ];
        for (doc, key) in cases {
            let err = load_str(&doc, "agent.toml").expect_err(key);
            let msg = err.to_string();
            assert!(msg.contains("agent.toml"), "{msg}");
            assert!(msg.contains(key), "expected key {key} in: {msg}");
        }
    });
}

#[test]
fn env_overrides_file_values() {
    Jail::expect_with(|jail| {
        let path = jail.directory().join("agent.toml");
        std::fs::write(&path, GOOD).unwrap();
        jail.set_env("TOKENWARDEN_PROFILES__SMARTEM__CLIENT_ID", "from-env");
        jail.set_env("TOKENWARDEN_AGENT__LISTEN", "127.0.0.1:9999");
        let c = load(&path).unwrap();
        assert_eq!(c.profiles["smartem"].client_id.as_deref(), Some("from-env"));
        assert_eq!(c.agent.listen, "127.0.0.1:9999");
        Ok(())
    });
}

#[test]
fn bad_env_override_is_reported_as_coming_from_the_environment() {
    Jail::expect_with(|jail| {
        let path = jail.directory().join("agent.toml");
        std::fs::write(&path, GOOD).unwrap();
        jail.set_env("TOKENWARDEN_PROFILES__SMARTEM__EAGER", "notabool");
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("environment"), "{msg}");
        assert!(msg.contains("profiles.smartem.eager"), "{msg}");
        Ok(())
    });
}

#[test]
fn missing_file_is_a_clear_error() {
    isolated(|| {
        let msg = load(std::path::Path::new("/nonexistent/tw.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/nonexistent/tw.toml") && msg.contains("does not exist"),
            "{msg}"
        );
    });
}

#[test]
fn secret_refs_resolve_from_env_and_file() {
    Jail::expect_with(|jail| {
        jail.set_env("TW_TEST_SECRET", "from-env-value");
        let s = SecretRef::Env("TW_TEST_SECRET".into())
            .resolve("k")
            .unwrap();
        assert_eq!(s.expose(), "from-env-value");
        let file = jail.directory().join("secret");
        std::fs::write(&file, "from-file-value\n").unwrap();
        let s = SecretRef::File(file).resolve("k").unwrap();
        assert_eq!(s.expose(), "from-file-value");
        let err = SecretRef::Env("TW_TEST_UNSET_VAR".into())
            .resolve("profiles.x.client_secret")
            .unwrap_err();
        assert!(err.to_string().contains("profiles.x.client_secret"));
        assert!(err.to_string().contains("TW_TEST_UNSET_VAR"));
        Ok(())
    });
}

const GATEWAY: &str = r#"
[gateway]
exempt_paths = ["/health", "/docs/*"]

[[gateway.issuers]]
issuer = "https://kc.example/realms/dls"

[[gateway.routes]]
prefix = "/api/"
upstream = "http://127.0.0.1:8080/"
"#;

#[test]
fn gateway_section_rules_name_the_key() {
    isolated(|| {
        let c = load_str(GATEWAY, "gw.toml").unwrap();
        let gw = c.gateway.expect("gateway");
        assert_eq!(gw.forward_auth_path, "/auth");
        assert_eq!(gw.identity_headers.subject, "X-Auth-Subject");
        let cases = [
            (
                GATEWAY.replace("\"/docs/*\"", "\"/do*cs\""),
                "gateway.exempt_paths[1]",
            ),
            (
                GATEWAY.replace("\"/health\"", "\"health\""),
                "gateway.exempt_paths[0]",
            ),
            (
                format!("{GATEWAY}\n[gateway.identity_headers]\nsubject = \"Authorization\"\n"),
                "gateway.identity_headers.subject",
            ),
            (
                format!("{GATEWAY}\n[gateway.identity_headers]\nscopes = \"X-Auth-Subject\"\n"),
                "gateway.identity_headers.scopes",
            ),
            (
                format!("{GATEWAY}\n[gateway.identity_headers]\nissuer = \"X Bad\"\n"),
                "gateway.identity_headers.issuer",
            ),
            (
                GATEWAY.replace("[gateway]", "[gateway]\nforward_auth_path = \"/healthz\""),
                "gateway.forward_auth_path",
            ),
            (
                GATEWAY.replace("[gateway]", "[gateway]\nforward_auth_path = \"/auth/\""),
                "gateway.forward_auth_path",
            ),
            (
                format!(
                    "{GATEWAY}\n[[gateway.routes]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9/\"\n"
                ),
                "gateway.routes[1].prefix",
            ),
            (
                GATEWAY.replace(
                    "prefix = \"/api/\"",
                    "host = \"https://x\"\nprefix = \"/api/\"",
                ),
                "gateway.routes[0].host",
            ),
            (
                GATEWAY.replace(
                    "issuer = \"https://kc.example/realms/dls\"",
                    "issuer = \"https://kc.example/realms/dls\"\njwks_refetch_cooldown = \"500ms\"",
                ),
                "gateway.issuers[0].jwks_refetch_cooldown",
            ),
        ];
        for (doc, key) in cases {
            let err = load_str(&doc, "gw.toml").expect_err(key);
            let msg = err.to_string();
            assert!(msg.contains(key), "expected key {key} in: {msg}");
        }
        // The same path on another host is another route.
        let two_hosts = format!(
            "{GATEWAY}\n[[gateway.routes]]\nhost = \"api.example.org\"\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9/\"\n"
        );
        load_str(&two_hosts, "gw.toml").unwrap();
    });
}

#[test]
fn the_admin_prefix_must_not_hide_other_gateway_paths() {
    isolated(|| {
        let base = "[gateway]\n[[gateway.issuers]]\nissuer = \"https://kc.example/realms/r\"\n";
        let ok = format!(
            "{base}[gateway.admin]\nenabled = true\n[[gateway.routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9/\"\n"
        );
        load_str(&ok, "gw.toml").expect("a catch-all route may sit beside /admin");
        for (extra, why) in [
            (
                "[gateway.admin]\nenabled = true\npath_prefix = \"/auth\"\n",
                "/auth",
            ),
            (
                "[gateway.admin]\nenabled = true\npath_prefix = \"/metrics\"\n",
                "/metrics",
            ),
            (
                "[gateway.admin]\nenabled = true\n[[gateway.routes]]\nprefix = \"/admin/api/\"\nupstream = \"http://127.0.0.1:9/\"\n",
                "/admin/api/",
            ),
        ] {
            let msg = load_str(&format!("{base}{extra}"), "gw.toml")
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("gateway.admin.path_prefix") && msg.contains(why),
                "{msg}"
            );
        }
    });
}

const MINIMAL_GATEWAY: &str = r#"
[gateway]
listen = "127.0.0.1:0"

[[gateway.issuers]]
issuer = "https://kc.example/realms/dls"
"#;

#[test]
fn gateway_path_and_connection_settings_have_safe_defaults() {
    isolated(|| {
        let gw = load_str(MINIMAL_GATEWAY, "gateway.toml")
            .expect("loads")
            .gateway
            .expect("gateway");
        assert!(gw.paths.case_insensitive);
        assert!(!gw.paths.allow_encoded_slash);
        assert!(!gw.paths.allow_backslash);
        assert!(!gw.paths.allow_semicolon);
        assert!(!gw.paths.allow_encoded_percent);
        assert!(!gw.keep_method_override);
        assert_eq!(gw.connections.header_read_timeout.as_secs(), 10);
        assert_eq!(gw.connections.idle_timeout.as_secs(), 30);
        assert_eq!(gw.connections.max_connections, 4096);
        let doc = format!(
            "{MINIMAL_GATEWAY}\n[gateway.paths]\ncase_insensitive = false\nallow_semicolon = true\n\n[gateway.connections]\nheader_read_timeout = \"2s\"\n"
        );
        let gw = load_str(&doc, "gateway.toml")
            .expect("loads")
            .gateway
            .expect("gw");
        assert!(!gw.paths.case_insensitive);
        assert!(gw.paths.allow_semicolon);
        assert_eq!(gw.connections.header_read_timeout.as_secs(), 2);
    });
}

#[test]
fn gateway_paths_hosts_and_limits_are_checked_with_their_key() {
    isolated(|| {
        let rule = |extra: &str| {
            format!(
                "{MINIMAL_GATEWAY}\n[gateway.authz]\n\n[gateway.authz.roles]\n\"r\" = [\"p\"]\n\n[[gateway.authz.rules]]\npaths = [\"/api/**\"]\nrequire_all = [\"p\"]\n{extra}\n"
            )
        };
        let cases = [
            (
                MINIMAL_GATEWAY.replace(
                    "[gateway]\n",
                    "[gateway]\nexempt_paths = [\"/docs/../admin\"]\n",
                ),
                "gateway.exempt_paths[0]",
            ),
            (
                MINIMAL_GATEWAY
                    .replace("[gateway]\n", "[gateway]\nexempt_paths = [\"/docs%2f*\"]\n"),
                "gateway.exempt_paths[0]",
            ),
            (
                format!(
                    "{MINIMAL_GATEWAY}\n[[gateway.routes]]\nprefix = \"/api//v1\"\nupstream = \"http://127.0.0.1:1\"\n"
                ),
                "gateway.routes[0].prefix",
            ),
            (
                format!("{MINIMAL_GATEWAY}\n[gateway.connections]\nmax_connections = 0\n"),
                "gateway.connections.max_connections",
            ),
            (
                format!("{MINIMAL_GATEWAY}\n[gateway.connections]\nidle_timeout = \"0s\"\n"),
                "gateway.connections.idle_timeout",
            ),
            (
                format!("{MINIMAL_GATEWAY}\n[gateway.paths]\nallow_everything = true\n"),
                "allow_everything",
            ),
            (
                rule("hosts = [\"https://admin.example.org\"]"),
                "gateway.authz.rules[0].hosts[0]",
            ),
            (
                rule("hosts = [\"admin.example.org:8443\"]"),
                "gateway.authz.rules[0].hosts[0]",
            ),
            (
                rule("").replace("\"/api/**\"", "\"/api/./x\""),
                "gateway.authz.rules[0].paths[0]",
            ),
        ];
        for (doc, key) in cases {
            let err = load_str(&doc, "gateway.toml").expect_err(key);
            let msg = err.to_string();
            assert!(msg.contains("gateway.toml"), "{msg}");
            assert!(msg.contains(key), "expected key {key} in: {msg}");
        }
        let ok = rule("hosts = [\"Admin.Example.org\"]");
        load_str(&ok, "gateway.toml").expect("a host name is fine");
    });
}

#[test]
fn the_clis_own_variables_are_not_config_keys() {
    Jail::expect_with(|jail| {
        jail.set_env("TOKENWARDEN_CONFIG", "/etc/tokenwarden/gateway.toml");
        jail.set_env("TOKENWARDEN_LOG", "debug,tw_gateway=trace");
        jail.set_env("TOKENWARDEN_GATEWAY__LISTEN", "127.0.0.1:9900");
        let cfg = load_str(MINIMAL_GATEWAY, "gateway.toml").expect("loads with both set");
        assert_eq!(cfg.gateway.expect("gateway").listen, "127.0.0.1:9900");
        Ok(())
    });
}

/// A duration reads the same in the file and in the environment: humantime text or whole seconds.
#[test]
fn durations_are_humantime_or_whole_seconds_in_the_file_and_the_environment() {
    use std::time::Duration;
    let with_leeway =
        |v: &str| MINIMAL_GATEWAY.replace("issuer = ", &format!("leeway = {v}\nissuer = "));
    let leeway = |doc: &str| {
        load_str(doc, "gateway.toml").map(|c| c.gateway.expect("gateway").issuers[0].leeway)
    };
    isolated(|| {
        assert_eq!(leeway(&with_leeway("60")).unwrap(), Duration::from_secs(60));
        assert_eq!(
            leeway(&with_leeway("\"90\"")).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            leeway(&with_leeway("\"2m\"")).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            leeway(&with_leeway("\"1m 30s\"")).unwrap(),
            Duration::from_secs(90)
        );
        for bad in [
            "-5",
            "1.5",
            "\"-5\"",
            "\"5 parsecs\"",
            "\"\"",
            "true",
            "[60]",
        ] {
            let msg = leeway(&with_leeway(bad)).expect_err(bad).to_string();
            assert!(msg.contains("gateway.toml"), "{bad}: {msg}");
            assert!(msg.contains("gateway.issuers.0.leeway`"), "{bad}: {msg}");
            assert!(msg.contains("whole number of seconds"), "{bad}: {msg}");
        }
    });
    Jail::expect_with(|jail| {
        // figment reads `60` from the environment as an integer, `30s` as a string.
        jail.set_env("TOKENWARDEN_GATEWAY__CONNECTIONS__IDLE_TIMEOUT", "60");
        jail.set_env(
            "TOKENWARDEN_GATEWAY__CONNECTIONS__HEADER_READ_TIMEOUT",
            "5s",
        );
        jail.set_env("TOKENWARDEN_STORAGE__CONNECT_TIMEOUT", "7");
        jail.set_env(
            "TOKENWARDEN_PROFILES__SMARTEM__TIMING__DEFAULT_LIFETIME",
            "300",
        );
        let doc = format!("{GOOD}\n{MINIMAL_GATEWAY}");
        let cfg = load_str(&doc, "all.toml").expect("integer and text durations from env");
        let connections = cfg.gateway.expect("gateway").connections;
        assert_eq!(connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(connections.header_read_timeout, Duration::from_secs(5));
        assert_eq!(
            cfg.storage.expect("storage").connect_timeout,
            Duration::from_secs(7)
        );
        assert_eq!(
            cfg.profiles["smartem"].timing.default_lifetime,
            Duration::from_secs(300)
        );
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("TOKENWARDEN_GATEWAY__CONNECTIONS__IDLE_TIMEOUT", "-60");
        let msg = load_str(MINIMAL_GATEWAY, "gateway.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("environment"), "{msg}");
        assert!(msg.contains("gateway.connections.idle_timeout"), "{msg}");
        assert!(msg.contains("negative"), "{msg}");
        Ok(())
    });
}

mod environment_allowlist {
    // figment::Jail closures return figment::Error, which is large by design.
    #![allow(clippy::result_large_err)]
    use figment::Jail;

    const DOC: &str = "[gateway]\n[[gateway.issuers]]\nissuer = \"https://kc.example/realms/r\"\n";

    fn load_error(jail: &mut Jail, var: &str, value: &str) -> String {
        jail.set_env(var, value);
        let err = tw_config::load_str(DOC, "gw.toml").expect_err(var);
        jail.clear_env();
        err.to_string()
    }

    #[test]
    fn an_override_of_an_allowed_section_applies() {
        Jail::expect_with(|jail| {
            jail.set_env("TOKENWARDEN_GATEWAY__LISTEN", "127.0.0.1:9911");
            let cfg = tw_config::load_str(DOC, "gw.toml").expect("config");
            assert_eq!(cfg.gateway.expect("gateway").listen, "127.0.0.1:9911");
            Ok(())
        });
    }

    #[test]
    fn the_cli_variables_and_others_are_never_keys() {
        Jail::expect_with(|jail| {
            for (var, value) in [
                ("TOKENWARDEN_CONFIG", "/etc/tokenwarden/x.toml"),
                ("TOKENWARDEN_LOG", "debug"),
                // Set by the agent for its sink commands, which may run tokenwarden again.
                ("TOKENWARDEN_PROFILE", "p"),
                ("TOKENWARDEN_SINK_PATH", "/run/t"),
            ] {
                jail.set_env(var, value);
            }
            let cfg = tw_config::load_str(DOC, "gw.toml").expect("config");
            assert_eq!(cfg.gateway.expect("gateway").listen, "127.0.0.1:8800");
            Ok(())
        });
    }

    #[test]
    fn a_variable_meant_as_an_override_that_is_none_is_an_error_naming_it() {
        Jail::expect_with(|jail| {
            for var in [
                "TOKENWARDEN_GATEWAYS__LISTEN",
                "tokenwarden_gateways__listen",
            ] {
                let e = load_error(jail, var, "127.0.0.1:1");
                assert!(e.contains(&format!("environment variable {var}")), "{e}");
                assert!(e.contains("`gateways` is not a section"), "{e}");
                assert!(e.contains("gateway, storage"), "{e}");
            }
            let e = load_error(jail, "TOKENWARDEN_PROFILES_P__CLIENT_ID", "x");
            assert!(
                e.contains("write TOKENWARDEN_PROFILES__P__CLIENT_ID"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn names_without_the_override_separator_are_left_alone() {
        Jail::expect_with(|jail| {
            // Such as the names of secrets that `{ env = ... }` references read.
            for var in [
                "TOKENWARDEN_VAULT_CLIENT_SECRET",
                "TOKENWARDEN_AGENT_CALLER_KEY",
                "TOKENWARDEN_LOG_DIR",
            ] {
                jail.set_env(var, "x");
            }
            tw_config::load_str(DOC, "gw.toml").expect("config");
            Ok(())
        });
    }

    #[test]
    fn an_error_never_shows_the_value() {
        Jail::expect_with(|jail| {
            let e = load_error(jail, "TOKENWARDEN_VAULTS__X", "s3cr3t-value");
            assert!(!e.contains("s3cr3t-value"), "{e}");
            Ok(())
        });
    }
}
