//! Who may reach the agent's listeners: loopback or a unix socket unless `allow_remote`, and
//! `allow_remote` only with a caller key. Errors name the file and the key and say what to do.

// figment::Jail closures return figment::Error, which is large by design.
#![allow(clippy::result_large_err)]

use figment::Jail;
use std::io::Write;
use std::path::PathBuf;
use tw_config::{DEFAULT_CALLER_KEY_HEADER, ListenAddr, SecretRef, load, load_str};

const PROFILE: &str = r#"
[profiles.api]
token_url = "https://kc.example/realms/r/protocol/openid-connect/token"
client_id = "a"
client_secret = { env = "A_SECRET" }
"#;

const KEY: &str = r#"caller_key = { file = "/run/secrets/tokenwarden-caller-key" }"#;

/// A config whose token API section is `api` and whose proxy section (if any) is `proxy`.
fn doc(api: &str, proxy: Option<&str>) -> String {
    let mut out = format!("{PROFILE}\n[agent]\n{api}\n");
    if let Some(p) = proxy {
        out.push_str(&format!(
            "\n[agent.proxy]\n{p}\n[[agent.proxy.routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nprofile = \"api\"\n"
        ));
    }
    out
}

fn isolated(f: impl FnOnce()) {
    Jail::expect_with(|_| {
        f();
        Ok(())
    });
}

/// Every address other hosts can reach, in the spellings an operator might use.
const REACHABLE: &[&str] = &[
    "0.0.0.0:8790",
    "[::]:8790",
    "10.1.2.3:8790",
    "192.168.0.7:0",
    "[::ffff:10.1.2.3]:8790",
    "[::ffff:0.0.0.0]:8790",
    "[fe80::1%1]:8790",
    "[2001:db8::1]:8790",
];

/// Loopback in every form, and unix sockets.
const LOCAL: &[&str] = &[
    "127.0.0.1:8790",
    "127.0.0.1:0",
    "127.45.6.7:8790",
    "[::1]:8790",
    "[::ffff:127.0.0.1]:8790",
    "unix:/run/tokenwarden/agent.sock",
];

#[test]
fn addresses_other_hosts_reach_are_refused_on_both_listeners_with_the_fix() {
    isolated(|| {
        for addr in REACHABLE {
            let api = doc(&format!("listen = \"{addr}\""), None);
            let msg = load_str(&api, "agent.toml").expect_err(addr).to_string();
            for part in [
                "agent.toml",
                "`agent.listen`",
                "reachable from other hosts",
                "agent.allow_remote = true",
                "agent.caller_key",
                "unix:",
                DEFAULT_CALLER_KEY_HEADER,
            ] {
                assert!(msg.contains(part), "{addr}: expected `{part}` in: {msg}");
            }

            let proxy = doc("", Some(&format!("listen = \"{addr}\"")));
            let err = load_str(&proxy, "agent.toml").expect_err(addr);
            assert_eq!(err.context_value("key"), Some("agent.proxy.listen"));
            let msg = err.to_string();
            assert!(
                msg.contains("the proxy") && msg.contains("agent.proxy.allow_remote = true"),
                "{addr}: {msg}"
            );
        }
    });
}

#[test]
fn loopback_and_unix_sockets_need_no_flag() {
    isolated(|| {
        for addr in LOCAL {
            let cfg = load_str(
                &doc(
                    &format!("listen = \"{addr}\""),
                    Some(&format!("listen = \"{addr}\"")),
                ),
                "agent.toml",
            )
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert!(!cfg.agent.allow_remote);
            assert!(ListenAddr::parse(addr).expect("parse").is_local(), "{addr}");
        }
        for addr in REACHABLE {
            assert!(
                !ListenAddr::parse(addr).expect("parse").is_local(),
                "{addr}"
            );
        }
    });
}

#[test]
fn allow_remote_without_a_caller_key_is_refused() {
    isolated(|| {
        let api = doc("listen = \"0.0.0.0:8790\"\nallow_remote = true", None);
        let err = load_str(&api, "agent.toml").expect_err("no key");
        assert_eq!(err.context_value("key"), Some("agent.caller_key"));
        let msg = err.to_string();
        for part in [
            "agent.toml",
            "required by agent.allow_remote = true",
            DEFAULT_CALLER_KEY_HEADER,
            "{ file = ",
        ] {
            assert!(msg.contains(part), "expected `{part}` in: {msg}");
        }

        // Also on loopback: allow_remote always means "callers prove themselves".
        let proxy = doc("", Some("listen = \"127.0.0.1:8791\"\nallow_remote = true"));
        let err = load_str(&proxy, "agent.toml").expect_err("no key");
        assert_eq!(err.context_value("key"), Some("agent.proxy.caller_key"));
    });
}

#[test]
fn allow_remote_with_a_caller_key_loads_with_the_default_header() {
    isolated(|| {
        let remote = format!("listen = \"0.0.0.0:8790\"\nallow_remote = true\n{KEY}");
        let cfg = load_str(&doc(&remote, Some(&remote)), "agent.toml").expect("valid");
        let key = SecretRef::File(PathBuf::from("/run/secrets/tokenwarden-caller-key"));
        assert!(cfg.agent.allow_remote);
        assert_eq!(cfg.agent.caller_key.as_ref(), Some(&key));
        assert_eq!(cfg.agent.caller_key_header, "X-Tokenwarden-Key");
        let proxy = cfg.agent.proxy.expect("proxy");
        assert!(proxy.allow_remote);
        assert_eq!(proxy.caller_key.as_ref(), Some(&key));
        assert_eq!(proxy.caller_key_header, "X-Tokenwarden-Key");

        // A key without allow_remote is allowed: loopback callers must then present it too.
        let cfg = load_str(&doc(KEY, None), "agent.toml").expect("valid");
        assert!(!cfg.agent.allow_remote && cfg.agent.caller_key.is_some());
    });
}

#[test]
fn the_caller_key_is_a_reference_never_clear_text() {
    isolated(|| {
        let api = doc(
            "listen = \"0.0.0.0:8790\"\nallow_remote = true\ncaller_key = \"clear-text-key-1234567\"",
            None,
        );
        let msg = load_str(&api, "agent.toml")
            .expect_err("clear text")
            .to_string();
        assert!(msg.contains("agent.caller_key"), "{msg}");
        assert!(msg.contains("by reference"), "{msg}");
        assert!(!msg.contains("clear-text-key-1234567"), "echoed: {msg}");
    });
}

#[test]
fn caller_key_headers_that_would_clash_are_refused() {
    isolated(|| {
        for bad in [
            "Authorization",
            "authorization",
            "Proxy-Authorization",
            "Host",
            "Cookie",
            "Connection",
            "X-Forwarded-For",
            "Transfer-Encoding",
            "",
            "X Key",
            "X-Key:",
            "X-Kéy",
        ] {
            let api = doc(&format!("{KEY}\ncaller_key_header = \"{bad}\""), None);
            let err = load_str(&api, "agent.toml").expect_err(bad);
            assert_eq!(
                err.context_value("key"),
                Some("agent.caller_key_header"),
                "{bad}: {err}"
            );
            let proxy = doc("", Some(&format!("{KEY}\ncaller_key_header = \"{bad}\"")));
            let err = load_str(&proxy, "agent.toml").expect_err(bad);
            assert_eq!(
                err.context_value("key"),
                Some("agent.proxy.caller_key_header"),
                "{bad}: {err}"
            );
        }
        let cfg = load_str(
            &doc(&format!("{KEY}\ncaller_key_header = \"X-Agent-Key\""), None),
            "agent.toml",
        )
        .expect("a custom name");
        assert_eq!(cfg.agent.caller_key_header, "X-Agent-Key");
    });
}

#[test]
fn a_reachable_address_from_the_environment_is_refused_naming_the_file() {
    Jail::expect_with(|jail| {
        let mut f = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        f.write_all(doc("", None).as_bytes()).expect("write");
        jail.set_env("TOKENWARDEN_AGENT__LISTEN", "0.0.0.0:8790");
        let err = load(f.path()).expect_err("env override to 0.0.0.0");
        let msg = err.to_string();
        assert!(
            msg.contains(&f.path().display().to_string()) && msg.contains("agent.listen"),
            "{msg}"
        );

        // The whole remote setup from the environment alone (compose `environment:` style).
        jail.set_env("TOKENWARDEN_AGENT__ALLOW_REMOTE", "true");
        jail.set_env(
            "TOKENWARDEN_AGENT__CALLER_KEY__FILE",
            "/run/secrets/tokenwarden-caller-key",
        );
        let cfg = load(f.path()).expect("remote with a key");
        assert!(cfg.agent.allow_remote);
        assert_eq!(
            cfg.agent.caller_key,
            Some(SecretRef::File(
                "/run/secrets/tokenwarden-caller-key".into()
            ))
        );
        Ok(())
    });
}

#[test]
fn the_remote_agent_example_serves_other_hosts_only_with_a_key() {
    isolated(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent-remote.toml");
        let cfg = load(&path).expect("examples/agent-remote.toml is valid");
        let key = SecretRef::File(PathBuf::from("/run/secrets/tokenwarden-caller-key"));
        assert_eq!(cfg.agent.listen, "0.0.0.0:8790");
        assert!(cfg.agent.allow_remote);
        assert_eq!(cfg.agent.caller_key.as_ref(), Some(&key));
        let proxy = cfg.agent.proxy.as_ref().expect("[agent.proxy]");
        assert_eq!(proxy.listen, "0.0.0.0:8791");
        assert!(proxy.allow_remote);
        assert_eq!(proxy.caller_key.as_ref(), Some(&key));

        // Its point: without the flag, or without the key, the same file is refused.
        let text = std::fs::read_to_string(&path).expect("read");
        let without_flag = text.replace("allow_remote = true", "allow_remote = false");
        let err = load_str(&without_flag, "agent-remote.toml").expect_err("no flag");
        assert_eq!(err.context_value("key"), Some("agent.listen"));
        let without_key: String = text
            .lines()
            .filter(|l| !l.starts_with("caller_key = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = load_str(&without_key, "agent-remote.toml").expect_err("no key");
        assert_eq!(err.context_value("key"), Some("agent.caller_key"));
    });
}
