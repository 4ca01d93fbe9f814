//! [`Invalid`]: a value that fails a check, with why in words. Checks of single values (a path,
//! a host, a listen address, a header name) return it; the caller knows which setting or field
//! the value came from and wraps it into an [`Error`](crate::Error) that names it.

use std::fmt;

/// A value that fails a check; the message says why (never echoes a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(String);

impl Invalid {
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl From<Invalid> for String {
    fn from(i: Invalid) -> String {
        i.0
    }
}

impl From<String> for Invalid {
    fn from(why: String) -> Self {
        Self(why)
    }
}

impl From<&str> for Invalid {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

/// The code of a configuration error.
pub const CONFIG_INVALID: &str = "config_invalid";

/// A setting that cannot work: its full key (`agent.proxy.listen`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    pub key: String,
    pub message: String,
}

impl SettingsProblem {
    /// As a configuration error naming the key.
    pub fn into_error(self) -> crate::Error {
        crate::Error::config(
            CONFIG_INVALID,
            format!("key `{}`: {}", self.key, self.message),
        )
        .with("key", self.key)
    }
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for SettingsProblem {}

impl SettingsProblem {
    /// As a configuration error of `source` (a file's path, or what built the settings), in the
    /// words a file's error has: `SOURCE: key `KEY`: MESSAGE`.
    pub fn into_error_in(self, source: &str) -> crate::Error {
        crate::Error::config(
            CONFIG_INVALID,
            format!("{source}: key `{}`: {}", self.key, self.message),
        )
        .with("file", source)
        .with("key", self.key)
    }
}
