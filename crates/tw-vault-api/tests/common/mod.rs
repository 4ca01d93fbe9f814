//! An in-process vault for this crate's tests and benchmark: the real test IdP (the vault's
//! client, a caller app, alice and bob), a `Vault` over SQLite in a temp dir, the API router served on a
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
    start_idp_with(Vec::new()).await
}

/// [`start_idp`] with more clients.
pub async fn start_idp_with(clients: Vec<ClientSpec>) -> Idp {
    let mut cfg = IdpConfig::default()
        .client(
            ClientSpec::secret_basic(VAULT_CLIENT, VAULT_SECRET)
                .grants(["authorization_code", "refresh_token"])
                .redirect_uris([PUBLIC_CALLBACK]),
        )
        .client(
            ClientSpec::secret_basic(CALLER_APP, CALLER_SECRET)
                .grants(["authorization_code", "refresh_token"]),
        )
        .user(UserSpec::new("alice"))
        .user(UserSpec::new("bob"));
    for client in clients {
        cfg = cfg.client(client);
    }
    Idp::start(cfg).await
}

/// The `[vault]` section for `issuer`, secrets in files under `dir` (the key made once).
pub fn vault_config(dir: &Path, issuer: &str, cache: bool) -> VaultConfig {
    vault_config_with(dir, issuer, cache, "")
}

/// [`vault_config`] with `extra` TOML appended (more `[vault.*]` tables).
pub fn vault_config_with(dir: &Path, issuer: &str, cache: bool, extra: &str) -> VaultConfig {
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
{extra}
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
    open_store(sqlite_storage(dir)).await
}

/// The `[storage]` of a SQLite file in `dir`.
pub fn sqlite_storage(dir: &Path) -> StorageConfig {
    StorageConfig {
        url: format!("sqlite://{}", dir.join("vault.db").display()),
        ..StorageConfig::default()
    }
}

/// A store on a new database of `pg` (its password in a file under `dir`).
pub async fn postgres_store(dir: &Path, pg: &tw_testkit::Postgres) -> tw_store::Store {
    open_store(postgres_storage(dir, pg).await).await
}

/// The `[storage]` of a new database of `pg` (its password in a file under `dir`).
pub async fn postgres_storage(dir: &Path, pg: &tw_testkit::Postgres) -> StorageConfig {
    let password = dir.join("db-password");
    std::fs::write(&password, pg.password()).expect("write password file");
    StorageConfig {
        url: pg.url(&pg.create_database().await),
        password: Some(tw_config::SecretRef::File(password)),
        ..StorageConfig::default()
    }
}

/// Runs one statement on the database of `storage` from a connection of its own, as someone
/// with write access to the database (and not the vault's keys) could: the rows it changed.
pub async fn exec_sql(storage: &StorageConfig, sql: &str) -> u64 {
    use sqlx::Connection;
    use std::str::FromStr;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if storage.url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&storage.url)
            .await
            .expect("connect sqlite");
        return sqlx::query(sql)
            .execute(&mut c)
            .await
            .expect("sql")
            .rows_affected();
    }
    let password = match &storage.password {
        Some(tw_config::SecretRef::File(path)) => std::fs::read_to_string(path).expect("password"),
        _ => String::new(),
    };
    let opts = sqlx::postgres::PgConnectOptions::from_str(&storage.url)
        .expect("postgres url")
        .password(&password);
    let mut c = sqlx::PgConnection::connect_with(&opts)
        .await
        .expect("connect postgres");
    sqlx::query(sql)
        .execute(&mut c)
        .await
        .expect("sql")
        .rows_affected()
}

pub async fn open_store(storage: StorageConfig) -> tw_store::Store {
    tw_store::Store::open(&storage, Arc::new(SystemClock))
        .await
        .expect("store")
}

/// Serves a vault over `store` on a free port until the process ends; returns its base URL.
pub async fn serve_vault(cfg: &VaultConfig, store: tw_store::Store) -> String {
    serve_vault_with_clock(cfg, store, Arc::new(SystemClock)).await
}

/// [`serve_vault`] with the vault's, the verifier's and the rate limits' time from `clock`.
pub async fn serve_vault_with_clock(
    cfg: &VaultConfig,
    store: tw_store::Store,
    clock: Arc<dyn Clock>,
) -> String {
    let settings = tw_config::vault_settings(cfg).expect("settings");
    let tables = Arc::new(tw_store::VaultTables::new(store.clone()));
    let vault = Vault::new(settings, tables, clock.clone())
        .await
        .expect("vault");
    let verifier =
        Arc::new(Verifier::new(&cfg.callers.verifier_settings(), clock.clone()).expect("verifier"));
    verifier.start().await;
    let auth = Arc::new(
        CallerAuth::new(&tw_config::vault_caller_settings(cfg), verifier, clock)
            .expect("caller auth"),
    );
    let storage = tw_store::health::StoreHealth::start(store.clone());
    let router = tw_vault_api::router(
        vault,
        auth.clone(),
        storage,
        &tw_config::vault_api_settings(cfg),
        None,
    );
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

/// An HTTP client for tests: no proxy, redirects returned rather than followed.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A vault over SQLite on the real test IdP, and alice signed in to the caller app.
pub struct Scene {
    pub idp: Idp,
    /// Holds the database, the key (`key`) and the client secret.
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    /// Alice's access token (what she presents to the vault).
    pub caller: String,
}

impl Scene {
    /// `cache`: whether minted access tokens are cached (`[vault.mint] cache`).
    pub async fn start(cache: bool) -> Scene {
        Scene::start_with(cache, "").await
    }

    /// [`Scene::start`] with more `[vault]` configuration (`extra`, TOML).
    pub async fn start_with(cache: bool, extra: &str) -> Scene {
        let idp = start_idp().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = vault_config_with(dir.path(), &idp.issuer(), cache, extra);
        let base = serve_vault(&cfg, sqlite_store(dir.path()).await).await;
        let http = http_client();
        let caller = user_token(&http, &idp, "alice").await;
        Scene {
            idp,
            dir,
            base,
            http,
            caller,
        }
    }

    /// A refresh token of alice's issued to the vault's client (what a caller may store).
    pub async fn alice_refresh_token(&self) -> String {
        self.idp
            .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
            .await
    }

    /// A new entry of alice's holding a fresh refresh token: its id.
    pub async fn alice_entry(&self) -> String {
        let rt = self.alice_refresh_token().await;
        store_entry(&self.http, &self.base, &self.caller, &rt).await
    }

    /// `POST /v1/access-token` for entry `id` as alice: the JSON answer.
    pub async fn mint(&self, id: &str) -> Value {
        mint(&self.http, &self.base, &self.caller, id).await
    }
}

/// `POST /v1/access-token` for entry `id`: the JSON answer.
pub async fn mint(http: &reqwest::Client, base: &str, caller: &str, id: &str) -> Value {
    http.post(format!("{base}/v1/access-token"))
        .bearer_auth(caller)
        .json(&json!({ "id": id }))
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("JSON")
}
