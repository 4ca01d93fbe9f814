//! Redacting wrappers for credentials and tokens.
//!
//! `Debug` and `Display` print `[REDACTED]`; the value is reachable only through
//! [`Secret::expose`], which makes every use greppable. The bytes are wiped on drop (via `secrecy`).

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;

/// A secret string: client secret, password, access or refresh token.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
    /// The clear value. Call only where the secret leaves the process on purpose
    /// (a request to the IdP, a token handed to a caller, a file sink).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
    /// A short, non-reversible identifier that is safe to log and compare.
    pub fn fingerprint(&self) -> TokenFingerprint {
        TokenFingerprint::of(self.expose())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

/// SHA-256 of a token: lets us say "the token you were rejected with is still the current one"
/// and key caches without keeping or logging the token itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenFingerprint([u8; 32]);

impl TokenFingerprint {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
    /// First 8 bytes in hex, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-super-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-super-secret");
    }

    #[test]
    fn fingerprint_distinguishes_tokens_without_revealing_them() {
        let a = Secret::new("token-a").fingerprint();
        let b = Secret::new("token-b").fingerprint();
        assert_ne!(a, b);
        assert_eq!(a, TokenFingerprint::of("token-a"));
        assert!(!format!("{a:?}").contains("token-a"));
    }
}
