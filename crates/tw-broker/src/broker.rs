//! The set of configured profiles.

use crate::profile::Profile;
use crate::settings::{GrantType, ProfileConfig};
use crate::source;
use std::collections::BTreeMap;
use std::sync::Arc;
use tw_core::{Clock, Error};
use tw_idp::AuthMethod;

/// All token profiles of one process.
#[derive(Debug)]
pub struct Broker {
    profiles: BTreeMap<String, Arc<Profile>>,
}

impl Broker {
    /// Builds every profile, checking that each secret reference resolves and each key parses,
    /// so a typo fails at start with the config key named.
    pub fn from_profiles(
        profiles: &BTreeMap<String, ProfileConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        Self::build(profiles, clock, true)
    }

    /// Like [`Broker::from_profiles`] but without background refresh loops: tests that move a
    /// [`tw_core::ManualClock`] by hand drive every fetch themselves.
    pub fn from_profiles_manual(
        profiles: &BTreeMap<String, ProfileConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        Self::build(profiles, clock, false)
    }

    fn build(
        cfg: &BTreeMap<String, ProfileConfig>,
        clock: Arc<dyn Clock>,
        background: bool,
    ) -> Result<Self, Error> {
        let http = tw_idp::IdpHttp::new()?;
        let mut profiles = BTreeMap::new();
        for (name, p) in cfg {
            check_secrets(name, p)?;
            let source = source::from_config(name, p, http.clone())?;
            let profile = Profile::new(
                name.clone(),
                p.eager,
                p.timing,
                source,
                clock.clone(),
                background,
            );
            profiles.insert(name.clone(), profile);
        }
        Ok(Self { profiles })
    }

    pub fn profile(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.get(name)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.profiles.values()
    }

    /// Starts the refresh loops of eager profiles (lazy ones start on first use).
    pub fn start_background(&self) {
        for p in self.profiles.values().filter(|p| p.is_eager()) {
            p.ensure_refresher();
        }
    }

    /// Ready once every eager profile holds a usable token.
    pub fn is_ready(&self) -> bool {
        self.profiles
            .values()
            .filter(|p| p.is_eager())
            .all(|p| p.status().usable)
    }

    pub fn update_gauges(&self) {
        for p in self.profiles.values() {
            p.update_gauges();
        }
    }
}

fn check_secrets(name: &str, p: &ProfileConfig) -> Result<(), Error> {
    let key = |f: &str| format!("profiles.{name}.{f}");
    match p.auth_method {
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost if p.custom.is_none() => {
            if let Some(r) = &p.client_secret {
                r.resolve(&key("client_secret"))?;
            }
        }
        AuthMethod::PrivateKeyJwt => {
            if let Some(r) = &p.private_key {
                let pem = r.resolve(&key("private_key"))?;
                source::assertion_key(p, &pem, &key("private_key"))?;
            }
        }
        _ => {}
    }
    let persisted = p
        .refresh_token_state_file
        .as_ref()
        .is_some_and(|f| f.is_file());
    if p.grant == GrantType::RefreshToken
        && !persisted
        && let Some(r) = &p.refresh_token
    {
        r.resolve(&key("refresh_token"))?;
    }
    if let Some(c) = &p.custom {
        for (field, r) in &c.secret_fields {
            r.resolve(&key(&format!("custom.secret_fields.{field}")))?;
        }
    }
    Ok(())
}
