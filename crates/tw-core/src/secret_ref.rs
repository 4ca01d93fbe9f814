//! `{ env = "VAR" }` / `{ file = "/path" }` secret references.

use crate::{Error, Secret};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The code of an error resolving a secret reference: the variable is unset, the file unreadable
/// or empty.
pub const SECRET_UNAVAILABLE: &str = "secret_unavailable";

/// Where a secret lives. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// Name of an environment variable holding the secret.
    Env(String),
    /// Path of a file holding the secret (surrounding whitespace is trimmed). Re-read at each use,
    /// so a rotated secret file is picked up without a restart.
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret. `key` names the config key for the error message.
    pub fn resolve(&self, key: &str) -> Result<Secret, Error> {
        let value = match self {
            SecretRef::Env(var) => std::env::var(var).map_err(|_| {
                Error::config(
                    SECRET_UNAVAILABLE,
                    format!("`{key}`: environment variable {var} is not set"),
                )
                .with("key", key)
            })?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    Error::config(
                        SECRET_UNAVAILABLE,
                        format!("`{key}`: cannot read secret file {}: {e}", path.display()),
                    )
                    .with("key", key)
                })?
                .trim()
                .to_owned(),
        };
        if value.is_empty() {
            return Err(Error::config(
                SECRET_UNAVAILABLE,
                format!("`{key}`: the secret at {} is empty", self.describe()),
            )
            .with("key", key));
        }
        Ok(Secret::new(value))
    }

    /// Safe description ("env FOO", "file /run/x") for messages.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(v) => format!("env {v}"),
            SecretRef::File(p) => format!("file {}", p.display()),
        }
    }
}

const HOWTO: &str = "secrets are given by reference: { env = \"VAR\" } or { file = \"/run/secrets/name\" }; clear text is not accepted";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret reference { env = \"VAR\" } or { file = \"/path\" }")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(HOWTO))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found: Option<SecretRef> = None;
                while let Some(k) = map.next_key::<String>()? {
                    let r = match k.as_str() {
                        "env" => SecretRef::Env(map.next_value()?),
                        "file" => SecretRef::File(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                    };
                    if found.replace(r).is_some() {
                        return Err(de::Error::custom(
                            "give exactly one of `env` or `file` in a secret reference",
                        ));
                    }
                }
                found.ok_or_else(|| de::Error::custom(HOWTO))
            }
        }
        d.deserialize_any(V)
    }
}
