//! `[vault]` (the configuration) → [`VaultSettings`] (what [`tw_vault::Vault::new`] takes):
//! secrets resolved, errors naming the key.

use crate::{AuthMethod, VaultConfig};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tw_core::{Error, Secret};
use tw_vault::{IdpClientSettings, KeyRing, VaultSettings};

/// What the derived state key is derived for (changing it invalidates pending consents only).
const STATE_KEY_CONTEXT: &[u8] = b"tokenwarden vault: consent state signing key, v1";

/// The key ring of `[vault.encryption]`, every key read now. A key that cannot be read, or is
/// not 32 bytes of base64, is an error naming `vault.encryption.keys."<id>"`.
pub fn key_ring(cfg: &VaultConfig) -> Result<KeyRing, Error> {
    let mut keys = Vec::new();
    for (id, reference) in &cfg.encryption.keys {
        let key = format!("vault.encryption.keys.\"{id}\"");
        keys.push((id.clone(), reference.resolve(&key)?));
    }
    KeyRing::new(&cfg.encryption.active_key, keys).map_err(|e| {
        let message = format!("key `vault.encryption`: {}", e.message());
        Error::new(e.kind(), e.code(), message).with("key", "vault.encryption")
    })
}

/// The vault's settings from `[vault]`, secrets resolved.
pub fn vault_settings(cfg: &VaultConfig) -> Result<VaultSettings, Error> {
    let keys = key_ring(cfg)?;
    let client_secret = match cfg.idp.auth_method {
        AuthMethod::None => None,
        _ => cfg
            .idp
            .client_secret
            .as_ref()
            .map(|r| r.resolve("vault.idp.client_secret"))
            .transpose()?,
    };
    // Named as they are, so the IdP client refuses a method it does not speak (configuration
    // validation refuses `private_key_jwt` already) instead of quietly using another.
    let auth_method = cfg.idp.auth_method.name();
    let state_signing_key = match &cfg.consent.state_signing_key {
        Some(r) => r.resolve("vault.consent.state_signing_key")?,
        None => {
            let active = cfg
                .encryption
                .keys
                .get(&cfg.encryption.active_key)
                .ok_or_else(|| {
                    Error::config(
                        tw_core::CONFIG_INVALID,
                        "key `vault.encryption.active_key`: not one of vault.encryption.keys",
                    )
                    .with("key", "vault.encryption.active_key")
                })?
                .resolve(&format!(
                    "vault.encryption.keys.\"{}\"",
                    cfg.encryption.active_key
                ))?;
            derive_state_key(&active)?
        }
    };
    Ok(VaultSettings {
        idp: IdpClientSettings {
            issuer: cfg.idp.issuer.clone(),
            client_id: cfg.idp.client_id.clone(),
            client_secret,
            auth_method: auth_method.to_owned(),
            request_timeout: cfg.idp.request_timeout,
        },
        redirect_uri: cfg.redirect_uri(),
        consent_scope: cfg.consent.scope.clone(),
        state_ttl: cfg.consent.state_ttl,
        access_token_reuse_margin: if cfg.mint.cache {
            cfg.mint.reuse_margin
        } else {
            std::time::Duration::ZERO
        },
        keys,
        accept_v1_seals: cfg.encryption.accept_v1_seals,
        redirects: cfg.consent.redirect_policy(),
        state_signing_key,
        max_pending_consents: cfg.limits.max_pending_consents,
    })
}

/// HMAC-SHA256(active encryption key, fixed context), base64: a key of its own for `state`, so
/// the encryption key itself never signs anything.
fn derive_state_key(active: &Secret) -> Result<Secret, Error> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(active.expose().as_bytes())
        .map_err(|_| Error::config("vault_key_invalid", "unusable active vault key"))?;
    mac.update(STATE_KEY_CONTEXT);
    Ok(Secret::new(STANDARD.encode(mac.finalize().into_bytes())))
}

/// What the vault API takes from `[vault]` besides the vault's own settings.
pub fn vault_api_settings(cfg: &VaultConfig) -> tw_vault_api::ApiSettings {
    tw_vault_api::ApiSettings {
        callback_path: cfg.consent.callback_path.clone(),
        redirect_after: cfg.consent.redirect_after.clone(),
    }
}

/// Who may call the vault, from `[vault.callers]` and `[vault.limits]`.
pub fn vault_caller_settings(cfg: &VaultConfig) -> tw_vault_api::CallerSettings {
    tw_vault_api::CallerSettings {
        authz: cfg.callers.authz_config(),
        own_client_id: cfg.idp.client_id.clone(),
        rate_limit: cfg.limits.rate_limit,
        rate_limits: cfg.limits.rate_limits.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_state_key_is_stable_long_and_not_the_key() {
        let k = Secret::new("c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy4uLi4=");
        let a = derive_state_key(&k).unwrap();
        assert_eq!(a, derive_state_key(&k).unwrap());
        assert!(a.expose().len() >= 32);
        assert_ne!(a.expose(), k.expose());
        assert_ne!(a, derive_state_key(&Secret::new("another")).unwrap());
    }
}
