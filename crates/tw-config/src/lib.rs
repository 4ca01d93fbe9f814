//! Configuration: one TOML file, environment overrides, secrets only by reference.
//!
//! - Unknown keys are rejected; every error names the file and the key.
//! - `TOKENWARDEN_<SECTION>__<KEY>` environment variables override file values
//!   (`__` separates levels: `TOKENWARDEN_PROFILES__SMARTEM__CLIENT_ID=x`), for the sections
//!   of [`ENV_OVERRIDE_SECTIONS`] only; a variable that looks meant as one but is none is an
//!   error naming it.
//! - Each component takes its own settings type, defined in its crate (`tw_verify::VerifierSettings`,
//!   `tw_broker::ProfileConfig`, `tw_gateway::GatewaySettings`, ...); this crate is the front end
//!   that reads the file and the environment into them and checks what spans sections.
//! - Secrets are written as `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`; a clear-text value is
//!   refused. They are resolved into redacting [`tw_core::Secret`]s only when used.

mod admin;
mod config;
mod load;
mod model;
mod vault;
mod vault_settings;

pub use admin::AdminConfig;
pub use config::Config;
pub use load::{
    CLI_VARIABLES, ConfigSource, ENV_OVERRIDE_SECTIONS, ENV_PREFIX, load, load_str,
    validate_config, validate_gateway_config,
};
pub use model::*;
pub use tw_authz::settings::*;
pub use tw_core::ListenAddr;
pub use tw_core::{SecretRef, duration};
pub use tw_store::{DEFAULT_STORAGE_URL, StorageConfig, StorageKind, redact_url};
pub use vault::*;
pub use vault_settings::{key_ring, vault_api_settings, vault_caller_settings, vault_settings};
