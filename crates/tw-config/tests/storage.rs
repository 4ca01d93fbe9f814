// figment::Jail closures return figment::Error, which is large by design.
#![allow(clippy::result_large_err)]

use figment::Jail;
use std::time::Duration;
use tw_config::{SecretRef, StorageConfig, StorageKind, load_str};
use tw_core::ErrorKind;

fn isolated(f: impl FnOnce()) {
    Jail::expect_with(|_| {
        f();
        Ok(())
    });
}

#[test]
fn storage_is_optional_and_defaults_to_a_sqlite_file() {
    isolated(|| {
        let c = load_str("", "inline").unwrap();
        assert!(c.storage.is_none());
        let c = load_str("[storage]\n", "inline").unwrap();
        let s = c.storage.unwrap();
        assert_eq!(s.url, "sqlite://tokenwarden.db");
        assert_eq!(s.kind(), Some(StorageKind::Sqlite));
        assert_eq!(s.password, None);
        assert_eq!(s.max_connections, 8);
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
    });
}

#[test]
fn postgres_with_password_reference() {
    isolated(|| {
        let doc = r#"
[storage]
url = "postgres://tokenwarden@db.example.org:5432/tokenwarden"
password = { env = "TW_DB_PASSWORD" }
max_connections = 16
connect_timeout = "2s"
"#;
        let s = load_str(doc, "gw.toml").unwrap().storage.unwrap();
        assert_eq!(s.kind(), Some(StorageKind::Postgres));
        assert_eq!(s.password, Some(SecretRef::Env("TW_DB_PASSWORD".into())));
        assert_eq!(s.max_connections, 16);
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
    });
}

#[test]
fn password_in_url_is_refused_without_echoing_it() {
    isolated(|| {
        for url in [
            "postgres://tokenwarden:hunter2-secret@db:5432/tw",
            "postgresql://tokenwarden@db:5432/tw?password=hunter2-secret",
        ] {
            let doc = format!("[storage]\nurl = \"{url}\"\n");
            let err = load_str(&doc, "gw.toml").unwrap_err();
            let text = format!("{err} {err:?}");
            assert_eq!(err.kind(), ErrorKind::Config);
            assert_eq!(err.context_value("key"), Some("storage.url"), "{text}");
            assert!(text.contains("gw.toml"), "{text}");
            assert!(
                text.contains("storage.password"),
                "points to the fix: {text}"
            );
            assert!(!text.contains("hunter2-secret"), "{text}");
        }
    });
}

#[test]
fn clear_text_password_is_refused() {
    isolated(|| {
        let doc = "[storage]\nurl = \"postgres://u@db/tw\"\npassword = \"hunter2-secret\"\n";
        let err = load_str(doc, "gw.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("storage.password"), "{text}");
        assert!(!text.contains("hunter2-secret"), "{text}");
    });
}

#[test]
fn bad_values_name_the_key() {
    isolated(|| {
        let cases = [
            ("url = \"mysql://u@db/tw\"", "storage.url"),
            ("url = \"sqlite://\"", "storage.url"),
            ("url = \"sqlite::memory:\"", "storage.url"),
            ("url = \"postgres:///tw\"", "storage.url"),
            (
                "password = { file = \"/run/secrets/db\" }",
                "storage.password",
            ),
            ("max_connections = 0", "storage.max_connections"),
            ("connect_timeout = \"0s\"", "storage.connect_timeout"),
            ("pasword = { env = \"X\" }", "storage"),
        ];
        for (line, key) in cases {
            let doc = format!("[storage]\n{line}\n");
            let err = load_str(&doc, "gw.toml").unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), ErrorKind::Config, "{line}: {text}");
            assert!(text.contains(key), "{line}: {text}");
            assert!(text.contains("gw.toml"), "{line}: {text}");
        }
    });
}

#[test]
fn debug_never_shows_a_password() {
    let s = StorageConfig {
        url: "postgres://u:hunter2-secret@db:5432/tw".into(),
        password: Some(SecretRef::File("/run/secrets/db".into())),
        ..StorageConfig::default()
    };
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2-secret"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
    assert!(debug.contains("file /run/secrets/db"), "{debug}");
    assert_eq!(s.redacted_url(), "postgres://u:***@db:5432/tw");
    let err = s.validate().unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2-secret"));
    assert_eq!(err.context_value("key"), Some("storage.url"));
    assert!(StorageConfig::default().validate().is_ok());
}
