//! What the store takes (`[storage]`): where the service-account registry, the audit log and
//! the vault's entries live.
//!
//! SQLite by default (one file, created and migrated on first start); PostgreSQL when several
//! gateway instances share one registry. The PostgreSQL password is a [`SecretRef`], never part of
//! the URL.

use serde::Deserialize;
use std::time::Duration;
use tw_core::SecretRef;
use tw_core::{Error, SettingsProblem};

/// The default database: a SQLite file next to the working directory.
pub const DEFAULT_STORAGE_URL: &str = "sqlite://tokenwarden.db";

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://path/to/file.db` (created if missing; `sqlite:///abs/path.db` for an absolute
    /// path) or `postgres://user@host:port/db` (no password here: use `password`).
    #[serde(default = "default_storage_url")]
    pub url: String,
    /// PostgreSQL password, by reference: `{ env = "TW_DB_PASSWORD" }` or `{ file = "/run/secrets/db" }`.
    pub password: Option<SecretRef>,
    /// Upper bound of the connection pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long to wait for a connection (at start and from the pool).
    #[serde(default = "default_connect_timeout", with = "tw_core::duration")]
    pub connect_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: default_storage_url(),
            password: None,
            max_connections: default_max_connections(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

// Hand-written so a URL that (wrongly) carries a password is never printed whole.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(SecretRef::describe))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn default_storage_url() -> String {
    DEFAULT_STORAGE_URL.into()
}
fn default_max_connections() -> u32 {
    8
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Which database a storage URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Sqlite,
    Postgres,
}

impl StorageConfig {
    /// The database kind, from the URL scheme (`None` for anything else).
    pub fn kind(&self) -> Option<StorageKind> {
        let scheme = self.url.split_once(':').map(|(s, _)| s)?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(StorageKind::Sqlite),
            "postgres" | "postgresql" => Some(StorageKind::Postgres),
            _ => None,
        }
    }

    /// Checks this section on its own (for callers that build one without a file); errors name
    /// the key (`storage.url`, ...) and never echo a password.
    pub fn validate(&self) -> Result<(), Error> {
        self.check().map_err(SettingsProblem::into_error)
    }

    /// As [`StorageConfig::validate`], the problem as it is (the configuration front end names
    /// the file).
    pub fn check(&self) -> Result<(), SettingsProblem> {
        check_storage(self)
    }

    /// The URL with any userinfo password replaced by `***`, for messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Replaces the password of `scheme://user:password@host` by `***` (no parsing needed to be safe).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Checks a `[storage]` section: each problem names its key and never echoes a password.
fn check_storage(s: &StorageConfig) -> Result<(), SettingsProblem> {
    let fail = |key: String, message: String| SettingsProblem { key, message };
    let key = |k: &str| format!("storage.{k}");
    match s.kind() {
        Some(StorageKind::Sqlite) => {
            let path = s.url.split_once(':').map(|(_, p)| p).unwrap_or("");
            let path = path.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or("");
            if path.is_empty() || path == ":memory:" {
                return Err(fail(
                    key("url"),
                    "a SQLite URL needs a file path, e.g. \"sqlite://tokenwarden.db\" or \"sqlite:///var/lib/tokenwarden/registry.db\"".into(),
                ));
            }
            if s.password.is_some() {
                return Err(fail(
                    key("password"),
                    "only PostgreSQL takes a password; remove it for a SQLite URL".into(),
                ));
            }
        }
        Some(StorageKind::Postgres) => {
            let parsed = url::Url::parse(&s.url).map_err(|e| {
                fail(
                    key("url"),
                    format!("`{}` is not a valid URL: {e}", redact_url(&s.url)),
                )
            })?;
            if parsed.password().is_some() {
                return Err(fail(
                    key("url"),
                    "the URL must not contain a password; give it by reference in `storage.password`, e.g. password = { env = \"TW_DB_PASSWORD\" }".into(),
                ));
            }
            if parsed.host_str().is_none_or(str::is_empty)
                && !parsed.query().unwrap_or("").contains("host=")
            {
                return Err(fail(
                    key("url"),
                    "a PostgreSQL URL needs a host, e.g. \"postgres://tokenwarden@db.example.org:5432/tokenwarden\"".into(),
                ));
            }
            if parsed.query_pairs().any(|(k, _)| k == "password") {
                return Err(fail(
                    key("url"),
                    "the URL must not contain a password (not even as `?password=`); use `storage.password`".into(),
                ));
            }
        }
        None => {
            return Err(fail(
                key("url"),
                format!(
                    "`{}` is neither a sqlite:// nor a postgres:// URL",
                    redact_url(&s.url)
                ),
            ));
        }
    }
    if s.max_connections == 0 {
        return Err(fail(key("max_connections"), "must be at least 1".into()));
    }
    if s.connect_timeout.is_zero() {
        return Err(fail(key("connect_timeout"), "must be positive".into()));
    }
    Ok(())
}
