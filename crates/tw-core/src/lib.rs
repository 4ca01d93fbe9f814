//! Shared vocabulary for every tokenwarden crate.
//!
//! - [`Error`]: the one error model. Every error carries its [`ErrorKind`], whether it is worth
//!   retrying, the HTTP status and the stable machine-readable code it maps to.
//! - [`Clock`]: core logic takes time from here, never from `SystemTime::now()` directly, so tests
//!   can move time by hand.
//! - [`backoff`]: the one exponential backoff policy (delays from `backon`).
//! - [`secret`]: redacting wrappers so tokens and client secrets cannot reach a log line by accident.
//! - [`text`]: outside text made safe for a terminal (control characters and bidi overrides escaped).
//! - [`ListenAddr`]: a listener's address (`HOST:PORT` or `unix:/path`).

pub mod backoff;
pub mod clock;
pub mod duration;
pub mod error;
pub mod fsutil;
pub mod invalid;
pub mod listen;
pub mod secret;
pub mod secret_ref;
pub mod text;

pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use error::{Error, ErrorKind, NetworkClass, OAuthErrorFact, Result};
pub use invalid::{CONFIG_INVALID, Invalid, SettingsProblem};
pub use listen::ListenAddr;
pub use secret::{Secret, TokenFingerprint};
pub use secret_ref::SecretRef;
