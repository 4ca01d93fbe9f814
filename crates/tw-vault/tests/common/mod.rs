//! A vault on a real test IdP and a real database (a SQLite temp file or a fresh PostgreSQL
//! database), and a scripted browser for the consent.

#![allow(dead_code)]

use base64::Engine;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tw_config::{SecretRef, StorageConfig};
use tw_core::{ManualClock, Secret};
use tw_store::Store;
use tw_testkit::{Idp, IdpConfig, UserSpec};
use tw_vault::{Caller, ConsentCallback, IdpClientSettings, KeyRing, Vault, VaultSettings};
use url::Url;

pub const CLIENT_ID: &str = "refresh-client";
pub const CLIENT_SECRET: &str = "refresh-client-secret";
pub const REDIRECT_URI: &str = "http://127.0.0.1/cb";
pub const STATE_KEY: &str = "state-signing-key-for-tests-0123456789";

/// base64 of 32 bytes of `byte`.
pub fn key_material(byte: u8) -> Secret {
    Secret::new(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
}

pub fn ring(active: &str, keys: &[(&str, u8)]) -> KeyRing {
    KeyRing::new(
        active,
        keys.iter()
            .map(|(id, byte)| ((*id).to_owned(), key_material(*byte)))
            .collect(),
    )
    .expect("key ring")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// One database as every vault instance of a test sees it.
pub struct Storage {
    pub cfg: StorageConfig,
    pub db: Db,
    pub pg: Option<tw_testkit::Postgres>,
    pub pg_database: Option<String>,
    pub sqlite_path: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl Storage {
    pub async fn new(db: Db) -> Storage {
        let dir = tempfile::tempdir().expect("temp dir");
        match db {
            Db::Sqlite => {
                let path = dir.path().join("vault.db");
                Storage {
                    cfg: StorageConfig {
                        url: format!("sqlite://{}", path.display()),
                        ..StorageConfig::default()
                    },
                    db,
                    pg: None,
                    pg_database: None,
                    sqlite_path: Some(path),
                    _dir: dir,
                }
            }
            Db::Postgres => {
                let pg = tw_testkit::Postgres::start().await;
                let name = pg.create_database().await;
                let secret = dir.path().join("db-password");
                std::fs::write(&secret, pg.password()).expect("write password file");
                Storage {
                    cfg: StorageConfig {
                        url: pg.url(&name),
                        password: Some(SecretRef::File(secret)),
                        ..StorageConfig::default()
                    },
                    db,
                    pg: Some(pg),
                    pg_database: Some(name),
                    sqlite_path: None,
                    _dir: dir,
                }
            }
        }
    }

    pub async fn open(&self, clock: &ManualClock) -> Store {
        Store::open(&self.cfg, Arc::new(clock.clone()))
            .await
            .expect("open store")
    }
}

pub struct Harness {
    pub idp: Idp,
    pub clock: ManualClock,
    pub storage: Storage,
    pub store: Store,
    pub vault: Vault,
    pub alice: Caller,
    pub bob: Caller,
}

impl Harness {
    pub async fn start(db: Db) -> Harness {
        let idp = Idp::start(
            IdpConfig::default()
                .user(UserSpec::new("alice"))
                .user(UserSpec::new("bob")),
        )
        .await;
        // The IdP signs with the real time: the vault's clock starts there and moves by hand.
        let clock = ManualClock::starting_now();
        let storage = Storage::new(db).await;
        let store = storage.open(&clock).await;
        let alice = Caller::new(idp.issuer(), idp.user_id("alice").await);
        let bob = Caller::new(idp.issuer(), idp.user_id("bob").await);
        let vault = vault_with(&idp, &store, &clock, ring("k1", &[("k1", 1)])).await;
        Harness {
            idp,
            clock,
            storage,
            store,
            vault,
            alice,
            bob,
        }
    }

    /// Another vault (another instance, or new keys) on the same database and IdP.
    pub async fn vault_with_keys(&self, keys: KeyRing) -> Vault {
        vault_with(&self.idp, &self.store, &self.clock, keys).await
    }

    /// Runs the consent for `caller` in a scripted browser that signs in as `username`, and
    /// hands the callback to the vault.
    pub async fn consent(
        &self,
        caller: &Caller,
        username: &str,
    ) -> tw_core::Result<tw_vault::ConsentDone> {
        let cb = self.browser_consent(caller, username, &[]).await;
        self.vault.complete_consent(cb).await
    }

    /// The consent up to the IdP's redirect to the callback; `extra` query pairs are added to
    /// the consent URL (as a user's browser could).
    pub async fn browser_consent(
        &self,
        caller: &Caller,
        username: &str,
        extra: &[(&str, &str)],
    ) -> ConsentCallback {
        let start = self
            .vault
            .begin_consent(
                caller,
                BTreeMap::from([("job".to_owned(), "nightly".to_owned())]),
                Some(Url::parse("https://app.example/done").expect("url")),
            )
            .await
            .expect("begin consent");
        follow_consent(start.consent_url, username, extra).await
    }

    /// An offline token of `username`'s issued to the vault's client, as a caller could hold one.
    pub async fn offline_token_of(&self, username: &str) -> String {
        self.idp
            .mint_refresh_token(CLIENT_ID, username, "openid offline_access")
            .await
    }

    pub fn refresh_grants(stats: &tw_testkit::IdpStats) -> u64 {
        stats
            .token_requests_by_grant
            .get("refresh_token")
            .copied()
            .unwrap_or(0)
    }
}

pub async fn vault_with(idp: &Idp, store: &Store, clock: &ManualClock, keys: KeyRing) -> Vault {
    Vault::new(
        VaultSettings {
            idp: IdpClientSettings {
                issuer: Url::parse(&idp.issuer()).expect("issuer url"),
                client_id: CLIENT_ID.into(),
                client_secret: Some(Secret::new(CLIENT_SECRET)),
                auth_method: "client_secret_basic".into(),
                request_timeout: Duration::from_secs(5),
            },
            redirect_uri: Url::parse(REDIRECT_URI).expect("redirect uri"),
            consent_scope: tw_vault::DEFAULT_CONSENT_SCOPE.into(),
            state_ttl: Duration::from_secs(600),
            access_token_reuse_margin: Duration::from_secs(30),
            keys,
            state_signing_key: Secret::new(STATE_KEY),
            max_pending_consents: tw_vault::DEFAULT_MAX_PENDING_CONSENTS,
        },
        store.clone(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("vault")
}

/// A browser: follows the IdP's redirects with cookies (the test IdP signs in the user named by
/// `login_hint` and grants consent by itself) and stops at the redirect to the callback.
pub async fn follow_consent(
    mut consent_url: Url,
    username: &str,
    extra: &[(&str, &str)],
) -> ConsentCallback {
    consent_url
        .query_pairs_mut()
        .append_pair("login_hint", username)
        .extend_pairs(extra);
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().as_str().starts_with(REDIRECT_URI) {
                attempt.stop()
            } else if attempt.previous().len() > 20 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("browser");
    let resp = browser
        .get(consent_url)
        .send()
        .await
        .expect("consent request");
    assert!(
        resp.status().is_redirection(),
        "the IdP should end with a redirect to the callback, got {}",
        resp.status()
    );
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    let back = resp.url().join(location).expect("callback URL");
    assert!(back.as_str().starts_with(REDIRECT_URI), "{back}");
    let q: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    ConsentCallback {
        state: q.get("state").cloned().unwrap_or_default(),
        code: q.get("code").cloned(),
        error: q.get("error").cloned(),
        error_description: q.get("error_description").cloned(),
    }
}

/// `both!(name, scenario)`: tests `name::sqlite` and `name::postgres`, each running
/// `scenario(Harness::start(db).await)`.
#[macro_export]
macro_rules! both {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::common::Harness::start($crate::common::Db::Sqlite).await)
                    .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::common::Harness::start($crate::common::Db::Postgres).await)
                    .await
            }
        }
    };
}
