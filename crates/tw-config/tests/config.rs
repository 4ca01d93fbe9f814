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
