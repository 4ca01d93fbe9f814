//! An in-process vault for this crate's tests and benchmark: the real test IdP (the vault's
//! client, a caller app, alice), a `Vault` over SQLite in a temp dir, the API router served on a
//! free port. Secrets are passed by file reference (tests cannot set environment variables).
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tw_config::{StorageConfig, VaultConfig};
use tw_core::{Clock, SystemClock};
use tw_testkit::{ClientSpec, Idp, IdpConfig, UserSpec};
use tw_vault::Vault;
use tw_vault_api::CallerAuth;
use tw_verify::Verifier;

pub const VAULT_CLIENT: &str = "token-vault";
pub const VAULT_SECRET: &str = "token-vault-inproc-secret-91c2";
pub const CALLER_APP: &str = "caller-app";
const CALLER_SECRET: &str = "caller-app-secret";
/// The vault's public URL in the config. Nothing listens there: tests take the IdP's redirect
/// to it and send it to the vault's real address.
pub const PUBLIC_URL: &str = "http://127.0.0.1:1";
pub const PUBLIC_CALLBACK: &str = "http://127.0.0.1:1/v1/offline-token/callback";

pub async fn start_idp() -> Idp {
    Idp::start(
        IdpConfig::default()
            .client(
                ClientSpec::secret_basic(VAULT_CLIENT, VAULT_SECRET)
                    .grants(["authorization_code", "refresh_token"])
                    .redirect_uris([PUBLIC_CALLBACK]),
            )
            .client(
                ClientSpec::secret_basic(CALLER_APP, CALLER_SECRET)
                    .grants(["authorization_code", "refresh_token"]),
            )
            .user(UserSpec::new("alice")),
    )
    .await
}

/// The `[vault]` section for `issuer`, secrets in files under `dir` (the key made once).
pub fn vault_config(dir: &Path, issuer: &str, cache: bool) -> VaultConfig {
    let secret = dir.join("client-secret");
    let key = dir.join("key");
    std::fs::write(&secret, VAULT_SECRET).expect("write secret");
    if !key.exists() {
        let bytes: [u8; 32] = rand::random();
        std::fs::write(
            &key,
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )
        .expect("write key");
    }
    let toml = format!(
        r#"[vault]
listen = "127.0.0.1:0"
public_url = "{PUBLIC_URL}"

[vault.idp]
issuer = "{issuer}"
client_id = "{VAULT_CLIENT}"
client_secret = {{ file = "{secret}" }}

[vault.encryption]
active_key = "k1"
keys = {{ k1 = {{ file = "{key}" }} }}

[[vault.callers.issuers]]
issuer = "{issuer}"
audiences = ["api"]

[vault.mint]
cache = {cache}
"#,
        secret = secret.display(),
        key = key.display(),
    );
    tw_config::load_str(&toml, "vault-test.toml")
        .expect("vault config")
        .vault
        .expect("[vault]")
}

/// A SQLite store in `dir`.
pub async fn sqlite_store(dir: &Path) -> tw_store::Store {
    let storage = StorageConfig {
        url: format!("sqlite://{}", dir.join("vault.db").display()),
        ..StorageConfig::default()
    };
    tw_store::Store::open(&storage, Arc::new(SystemClock))
        .await
        .expect("store")
}

/// Serves a vault over `store` on a free port until the process ends; returns its base URL.
pub async fn serve_vault(cfg: &VaultConfig, store: tw_store::Store) -> String {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = tw_vault_api::vault_settings(cfg).expect("settings");
    let vault = Vault::new(settings, store, clock.clone())
        .await
        .expect("vault");
    let verifier =
        Arc::new(Verifier::new(&cfg.callers.verifier_config(), clock).expect("verifier"));
    verifier.start().await;
    let auth = Arc::new(CallerAuth::new(&cfg.callers, verifier));
    let router = tw_vault_api::router(vault, auth.clone(), cfg, None);
    let listener = tw_vault_api::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.tcp_addr().expect("tcp");
    tokio::spawn(async move {
        let _ = tw_vault_api::run(listener, router, &auth, std::future::pending()).await;
    });
    format!("http://{addr}")
}

/// `username`'s access token from the caller app (aud `api`): what a caller presents.
pub async fn user_token(http: &reqwest::Client, idp: &Idp, username: &str) -> String {
    let rt = idp
        .mint_refresh_token(CALLER_APP, username, "openid offline_access")
        .await;
    let v: Value = http
        .post(idp.token_url())
        .basic_auth(CALLER_APP, Some(CALLER_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .expect("caller token")
        .json()
        .await
        .expect("JSON");
    v["access_token"].as_str().expect("access_token").to_owned()
}

/// Stores `refresh_token` as the caller's entry; returns its id.
pub async fn store_entry(
    http: &reqwest::Client,
    base: &str,
    caller: &str,
    refresh_token: &str,
) -> String {
    let v: Value = http
        .post(format!("{base}/v1/refresh-token"))
        .bearer_auth(caller)
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .expect("store")
        .json()
        .await
        .expect("JSON");
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("entry id: {v}"))
        .to_owned()
}
