//! A vault on a real test IdP and a real database (a SQLite temp file or a fresh PostgreSQL
//! database), and a scripted browser for the consent.

#![allow(dead_code)]

use base64::Engine;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tw_config::{SecretRef, StorageConfig};
use tw_core::{ManualClock, Secret};
use tw_store::{Store, VaultTables};
use tw_testkit::{Idp, IdpConfig, UserSpec};
use tw_vault::{Caller, ConsentCallback, IdpClientSettings, KeyRing, Vault, VaultSettings};
use url::Url;

pub const CLIENT_ID: &str = "refresh-client";
pub const CLIENT_SECRET: &str = "refresh-client-secret";
pub const REDIRECT_URI: &str = "http://127.0.0.1/cb";
pub const STATE_KEY: &str = "state-signing-key-for-tests-0123456789";
/// The pages consents of these tests may return to (`allowed_redirects`).
pub const APP_PAGES: &str = "https://app.example/";

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

    /// The vault's tables in this database, through a store of their own.
    pub async fn open(&self, clock: &ManualClock) -> VaultTables {
        let store = Store::open(&self.cfg, Arc::new(clock.clone()))
            .await
            .expect("open store");
        VaultTables::new(store)
    }
}

pub struct Harness {
    pub idp: Idp,
    pub clock: ManualClock,
    pub storage: Storage,
    pub store: VaultTables,
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

pub async fn vault_with(
    idp: &Idp,
    store: &VaultTables,
    clock: &ManualClock,
    keys: KeyRing,
) -> Vault {
    vault_from(settings(idp, keys), store, clock).await
}

/// The settings every test vault starts from.
pub fn settings(idp: &Idp, keys: KeyRing) -> VaultSettings {
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
        accept_v1_seals: true,
        redirects: tw_vault::RedirectPolicy {
            redirect_after: None,
            allowed_redirects: vec![Url::parse(APP_PAGES).expect("url")],
        },
        state_signing_key: Secret::new(STATE_KEY),
        max_pending_consents: tw_vault::DEFAULT_MAX_PENDING_CONSENTS,
    }
}

pub async fn vault_from(
    settings: VaultSettings,
    store: &VaultTables,
    clock: &ManualClock,
) -> Vault {
    Vault::new(settings, Arc::new(store.clone()), Arc::new(clock.clone()))
        .await
        .expect("vault")
}

/// A connection of its own to the harness's database, as an attacker with write access (or a
/// fault injection) would use.
pub enum DbConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Storage {
    pub async fn connect(&self) -> DbConn {
        use sqlx::Connection;
        match self.db {
            Db::Sqlite => {
                let path = self.sqlite_path.as_ref().expect("sqlite path");
                DbConn::Sqlite(
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("connect sqlite"),
                )
            }
            Db::Postgres => {
                let pg = self.pg.as_ref().expect("postgres");
                let opts = sqlx::postgres::PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(pg.port())
                    .username(tw_testkit::POSTGRES_USER)
                    .password(pg.password())
                    .database(self.pg_database.as_ref().expect("database"));
                DbConn::Postgres(
                    sqlx::PgConnection::connect_with(&opts)
                        .await
                        .expect("connect postgres"),
                )
            }
        }
    }

    /// Runs `sql` (several statements allowed, no parameters) on a new connection.
    pub async fn exec(&self, sql: &str) {
        self.connect().await.exec(sql).await;
    }

    /// Runs one statement with text parameters (`$1`, ...; `None` is NULL): the rows it changed.
    pub async fn exec_with(&self, sql: &str, binds: &[Option<&str>]) -> u64 {
        match self.connect().await {
            DbConn::Sqlite(mut c) => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for b in binds {
                    q = q.bind(b.map(str::to_owned));
                }
                q.execute(&mut c).await.expect("sql").rows_affected()
            }
            DbConn::Postgres(mut c) => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for b in binds {
                    q = q.bind(b.map(str::to_owned));
                }
                q.execute(&mut c).await.expect("sql").rows_affected()
            }
        }
    }
}

impl DbConn {
    pub async fn exec(&mut self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            DbConn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            DbConn::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        }
        .expect("sql");
    }
}

/// Seals as the vault writes rows, in its documented associated-data layouts (see
/// `tw-vault/src/binding.rs`): v1, as versions before v2 wrote every row, and v2, as every seal
/// now. Built here from the format, not from the vault's code: a change of either layout breaks
/// stored rows, and these tests.
pub mod seal {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use std::collections::BTreeMap;
    use tw_store::{Sealed, VaultRow};

    fn aad(prefix: &str, context: &str, parts: &[&str]) -> Vec<u8> {
        let mut out = prefix.as_bytes().to_vec();
        for part in std::iter::once(context).chain(parts.iter().copied()) {
            out.extend_from_slice(&u32::try_from(part.len()).expect("short").to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    fn optional(value: Option<&str>) -> [&str; 2] {
        match value {
            Some(v) => ["1", v],
            None => ["0", ""],
        }
    }

    fn attributes(a: &BTreeMap<String, String>) -> String {
        serde_json::to_string(a).expect("json")
    }

    pub fn entry_v1(row: &VaultRow) -> Vec<u8> {
        aad(
            "tokenwarden-vault-v1",
            "entry",
            &[
                &row.id,
                &row.owner_issuer,
                &row.owner_subject,
                row.token_type.as_str(),
            ],
        )
    }

    pub fn entry_v2(row: &VaultRow) -> Vec<u8> {
        let [has, session] = optional(row.session_id.as_deref());
        let attributes = attributes(&row.attributes);
        aad(
            "tokenwarden-vault-v2",
            "entry",
            &[
                &row.id,
                &row.owner_issuer,
                &row.owner_subject,
                row.token_type.as_str(),
                has,
                session,
                &attributes,
            ],
        )
    }

    pub fn pending_v1(nonce: &str, owner_issuer: &str, owner_subject: &str) -> Vec<u8> {
        aad(
            "tokenwarden-vault-v1",
            "pending",
            &[nonce, owner_issuer, owner_subject],
        )
    }

    /// AES-256-GCM under key `key_id` = 32 bytes of `key_byte` (the harness's `ring`).
    pub fn seal(key_id: &str, key_byte: u8, aad: &[u8], plaintext: &str) -> Sealed {
        let cipher = Aes256Gcm::new_from_slice(&[key_byte; 32]).expect("key");
        let nonce: [u8; 12] = rand::random();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .expect("encrypt");
        Sealed {
            key_id: key_id.to_owned(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Whether `sealed` opens under `aad` with 32 bytes of `key_byte`.
    pub fn opens(key_byte: u8, sealed: &Sealed, aad: &[u8]) -> bool {
        let cipher = Aes256Gcm::new_from_slice(&[key_byte; 32]).expect("key");
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .is_ok()
    }
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
