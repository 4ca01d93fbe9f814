//! What the vault's end-to-end tests share: the test IdP laid out for the vault (the vault's own
//! client, a caller app, a scheduler service account, two users), the `tokenwarden vault serve`
//! child process with a temp config and its captured stderr, and small HTTP helpers.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tw_testkit::{ClientSpec, Idp, IdpConfig, Postgres, UserSpec};

pub const VAULT_CLIENT: &str = "token-vault";
pub const VAULT_SECRET: &str = "token-vault-secret-3b1f";
/// The app users sign in to; its tokens (aud `api`) are what callers present to the vault.
pub const CALLER_APP: &str = "caller-app";
pub const SCHEDULER: &str = "scheduler";
pub const SCHEDULER_SECRET: &str = "scheduler-secret-77a0";

/// Where the vault keeps its entries.
pub enum Storage {
    Sqlite,
    Postgres(Box<Postgres>),
}

impl Storage {
    /// A PostgreSQL server of the test's own.
    pub async fn postgres() -> Storage {
        Storage::Postgres(Box::new(Postgres::start().await))
    }
}

/// `on_both_backends!(name, scenario)`: a module `name` with the tests `sqlite` and `postgres`,
/// each running `scenario(storage).await` (the issue asks for the same tests on both).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::vault_support::Storage::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::vault_support::Storage::postgres().await).await
            }
        }
    };
}

/// A random 32-byte key, base64 (what `tokenwarden vault keygen` prints).
pub fn new_key() -> String {
    let key: [u8; 32] = rand::random();
    STANDARD.encode(key)
}

/// The test IdP with the vault's clients and users; the vault will listen on `vault_port`.
pub async fn start_idp(vault_port: u16) -> Idp {
    let cfg = IdpConfig::default()
        .client(
            ClientSpec::secret_basic(VAULT_CLIENT, VAULT_SECRET)
                .grants(["authorization_code", "refresh_token"])
                .redirect_uris([format!(
                    "http://127.0.0.1:{vault_port}/v1/offline-token/callback"
                )]),
        )
        .client(
            ClientSpec::secret_basic(CALLER_APP, "caller-app-secret")
                .grants(["authorization_code", "refresh_token"]),
        )
        .client(
            ClientSpec::secret_basic(SCHEDULER, SCHEDULER_SECRET).realm_roles(["vault-scheduler"]),
        )
        .user(UserSpec::new("alice"))
        .user(UserSpec::new("bob"));
    Idp::start(cfg).await
}

/// An access token of `username` as the caller app holds it (a real refresh at the IdP).
pub async fn user_token(idp: &Idp, username: &str) -> String {
    let rt = idp
        .mint_refresh_token(CALLER_APP, username, "openid offline_access")
        .await;
    let resp = http()
        .post(idp.token_url())
        .basic_auth(CALLER_APP, Some("caller-app-secret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .expect("caller token request");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("JSON");
    v["access_token"].as_str().expect("access_token").to_owned()
}

/// The claims of a JWT (not verified: for assertions only).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// One `tokenwarden vault` configuration: a temp dir with the TOML file, its database and the
/// environment holding its secrets.
pub struct VaultSetup {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
    pub storage_toml: String,
    pub issuer: String,
    /// Extra TOML appended to `[vault]` (e.g. a `[vault.mint]` table).
    pub extra: String,
    /// Key id → key (base64) in the key ring; the first is active unless `active` says.
    pub keys: Vec<(String, String)>,
    pub active: String,
    _postgres: Option<Box<Postgres>>,
}

impl VaultSetup {
    pub async fn new(idp: &Idp, port: u16, storage: Storage) -> VaultSetup {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = vec![("TW_VAULT_CLIENT_SECRET".to_owned(), VAULT_SECRET.to_owned())];
        let (storage_toml, pg) = match storage {
            Storage::Sqlite => (
                format!(
                    "[storage]\nurl = \"sqlite://{}\"\n",
                    dir.path().join("vault.db").display()
                ),
                None,
            ),
            Storage::Postgres(pg) => {
                let db = pg.create_database().await;
                env.push(("TW_DB_PASSWORD".to_owned(), pg.password().to_owned()));
                (
                    format!(
                        "[storage]\nurl = \"{}\"\npassword = {{ env = \"TW_DB_PASSWORD\" }}\n",
                        pg.url(&db)
                    ),
                    Some(pg),
                )
            }
        };
        let mut setup = VaultSetup {
            config: dir.path().join("vault.toml"),
            dir,
            port,
            env,
            storage_toml,
            issuer: idp.issuer(),
            extra: String::new(),
            keys: vec![("k1".to_owned(), new_key())],
            active: "k1".to_owned(),
            _postgres: pg,
        };
        setup.write();
        setup
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes the config file from the current fields.
    pub fn write(&mut self) {
        let keys: String = self
            .keys
            .iter()
            .map(|(id, _)| {
                format!(
                    "{id} = {{ env = \"TW_VAULT_KEY_{}\" }}\n",
                    id.to_uppercase()
                )
            })
            .collect();
        for (id, key) in &self.keys {
            let var = format!("TW_VAULT_KEY_{}", id.to_uppercase());
            self.env.retain(|(k, _)| *k != var);
            self.env.push((var, key.clone()));
        }
        let text = format!(
            r#"[log]
level = "debug"

{storage}
[vault]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[vault.idp]
issuer = "{issuer}"
client_id = "{VAULT_CLIENT}"
client_secret = {{ env = "TW_VAULT_CLIENT_SECRET" }}

[vault.encryption]
active_key = "{active}"

[vault.encryption.keys]
{keys}
[[vault.callers.issuers]]
issuer = "{issuer}"
audiences = ["api"]

[vault.callers.roles]
"vault-scheduler" = ["vault:mint-any"]
{extra}
"#,
            storage = self.storage_toml,
            port = self.port,
            issuer = self.issuer,
            active = self.active,
            extra = self.extra,
        );
        std::fs::write(&self.config, text).expect("write vault config");
    }

    /// Runs a one-shot `tokenwarden vault <args> --config <file>`: (exit code, stdout, stderr).
    pub async fn run_cli(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", config.as_str()]);
        self.run_cli_plain(&all).await
    }

    /// Runs `tokenwarden vault <args>` with this setup's environment.
    pub async fn run_cli_plain(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        cmd.arg("vault").args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.expect("run tokenwarden vault");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `tokenwarden vault serve` and waits until `/health/ready` answers 200.
    pub async fn start(&self) -> VaultProcess {
        let run = self.dir.path().join(format!(
            "stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_nanos()
        ));
        let stderr = std::fs::File::create(&run).expect("stderr file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        cmd.args(["vault", "serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("run tokenwarden vault serve");
        let mut p = VaultProcess {
            child,
            stderr_path: run,
            base: self.base(),
        };
        p.wait_ready().await;
        p
    }
}

/// A running `tokenwarden vault serve`.
pub struct VaultProcess {
    pub child: tokio::process::Child,
    pub stderr_path: PathBuf,
    pub base: String,
}

impl VaultProcess {
    async fn wait_ready(&mut self) {
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the vault exited ({status}); its stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(r) = http()
                .get(format!("{}/health/ready", self.base))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the vault never became ready; its stderr:\n{}",
            self.stderr()
        );
    }

    pub fn stderr(&self) -> String {
        read(&self.stderr_path)
    }

    /// `kill -9`: no shutdown, no flush, nothing finished.
    pub async fn kill9(mut self) -> String {
        self.child.start_kill().expect("SIGKILL the vault");
        let _ = self.child.wait().await;
        self.stderr()
    }

    /// SIGTERM and wait: a clean stop.
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        self.stderr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        answer(http().get(self.url(path)).bearer_auth(token).send().await).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        answer(
            http()
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await,
        )
        .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        answer(
            http()
                .delete(self.url(path))
                .bearer_auth(token)
                .send()
                .await,
        )
        .await
    }

    pub async fn mint(&self, token: &str, id: &str) -> (u16, Value) {
        self.post(token, "/v1/access-token", serde_json::json!({ "id": id }))
            .await
    }

    /// The whole consent: a consent URL for the caller, the user's sign-in at the IdP, the
    /// callback. Returns the callback URL (to replay) and the callback's answer.
    pub async fn consent(&self, idp: &Idp, token: &str, user: &str) -> (url::Url, (u16, Value)) {
        let (status, start) = self
            .get(
                token,
                "/v1/offline-token?attributes=%7B%22job%22%3A%22nightly%22%7D",
            )
            .await;
        assert_eq!(status, 200, "{start}");
        let consent_url = start["consent_url"].as_str().expect("consent_url");
        let back = idp.browser_login(consent_url, user).await;
        assert!(
            back.as_str()
                .starts_with(&self.url("/v1/offline-token/callback")),
            "the IdP sends the browser to the vault's callback: {back}"
        );
        let answer = answer(http().get(back.clone()).send().await).await;
        (back, answer)
    }
}

async fn answer(resp: reqwest::Result<reqwest::Response>) -> (u16, Value) {
    let resp = resp.expect("request to the vault");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Panics if any of `secrets` appears in `output` (naming which one by position, not value).
pub fn assert_no_secret(output: &str, secrets: &[&str]) {
    for (i, s) in secrets.iter().enumerate() {
        assert!(!s.is_empty(), "secret #{i} is empty");
        assert!(
            !output.contains(s),
            "secret #{i} appears in the vault's output"
        );
    }
}
