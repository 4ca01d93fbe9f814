//! The root of the configuration file: one section per component. Every section's schema lives in
//! its own module; this one only puts them together.

use crate::model::{AgentConfig, GatewayConfig, LogConfig, ProfileConfig};
use crate::vault::VaultConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use tw_store::StorageConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    /// Token profiles by name: how to obtain one kind of token.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// `tokenwarden gateway`: verifies bearer tokens in front of an API.
    pub gateway: Option<GatewayConfig>,
    /// Service-account registry and audit log (SQLite by default, or PostgreSQL).
    #[serde(default)]
    pub storage: Option<StorageConfig>,
    /// `tokenwarden vault`: refresh and offline tokens kept encrypted, minted into access tokens.
    pub vault: Option<VaultConfig>,
}
