//! The consent callback over HTTP: it redirects only to a page bound into the pending consent's
//! seal and allowed by `vault.consent` right then; a pending consent changed in the database, or
//! a page the configuration no longer allows, is answered in JSON (no redirect, no code
//! exchanged, no entry); on SQLite and on PostgreSQL.

mod common;

use common::*;
use serde_json::Value;
use tw_config::StorageConfig;
use tw_testkit::Idp;

const ALLOWED: &str = "[vault.consent]\nallowed_redirects = [\"https://app.example.org/jobs\"]\n";
const PAGE: &str = "https://app.example.org/jobs/7";

struct Setup {
    idp: Idp,
    dir: tempfile::TempDir,
    storage: StorageConfig,
    _pg: Option<tw_testkit::Postgres>,
    http: reqwest::Client,
    caller: String,
}

impl Setup {
    async fn start(postgres: bool) -> Setup {
        let idp = start_idp().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage, pg) = if postgres {
            let pg = tw_testkit::Postgres::start().await;
            (postgres_storage(dir.path(), &pg).await, Some(pg))
        } else {
            (sqlite_storage(dir.path()), None)
        };
        let http = http_client();
        let caller = user_token(&http, &idp, "alice").await;
        Setup {
            idp,
            dir,
            storage,
            _pg: pg,
            http,
            caller,
        }
    }

    /// A vault instance on the shared database and keys, with `extra` configuration.
    async fn vault(&self, extra: &str) -> String {
        let cfg = vault_config_with(self.dir.path(), &self.idp.issuer(), true, extra);
        serve_vault(&cfg, open_store(self.storage.clone()).await).await
    }

    /// Starts a consent at `base` for `PAGE` and signs alice in: the callback URL at `base`.
    async fn consent_to_callback(&self, base: &str) -> String {
        let resp = self
            .http
            .get(consent_request(base))
            .bearer_auth(&self.caller)
            .send()
            .await
            .expect("consent");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("JSON");
        let url = body["consent_url"].as_str().expect("consent_url");
        let back = self.idp.browser_login(url, "alice").await;
        back.as_str().replacen(PUBLIC_URL, base, 1)
    }

    async fn entries(&self, base: &str) -> usize {
        let v: Value = self
            .http
            .get(format!("{base}/v1/entries"))
            .bearer_auth(&self.caller)
            .send()
            .await
            .expect("entries")
            .json()
            .await
            .expect("JSON");
        v["entries"].as_array().expect("entries").len()
    }

    async fn code_exchanges(&self) -> u64 {
        self.idp
            .stats()
            .await
            .token_requests_by_grant
            .get("authorization_code")
            .copied()
            .unwrap_or(0)
    }
}

/// `GET /v1/offline-token?redirect=PAGE` at `base`.
fn consent_request(base: &str) -> url::Url {
    url::Url::parse_with_params(&format!("{base}/v1/offline-token"), [("redirect", PAGE)])
        .expect("url")
}

/// The callback's answer: status, JSON error code, and whether it redirects.
async fn callback(http: &reqwest::Client, url: &str) -> (u16, Value, Option<String>) {
    let resp = http.get(url).send().await.expect("callback");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        location,
    )
}

async fn a_changed_pending_consent_never_redirects(s: Setup) {
    let base = s.vault(ALLOWED).await;
    s.idp.reset_stats().await;
    for page in [
        "https://evil.example/phish",
        // Allowed by the configuration: only the seal tells it is not this consent's.
        "https://app.example.org/jobs/8",
    ] {
        let url = s.consent_to_callback(&base).await;
        let changed = exec_sql(
            &s.storage,
            &format!("UPDATE vault_pending_consents SET redirect_after = '{page}'"),
        )
        .await;
        assert_eq!(changed, 1);
        let (status, body, location) = callback(&s.http, &url).await;
        assert_eq!(status, 500, "{page}: {body}");
        assert_eq!(body["error"]["code"], "vault_decrypt_failed", "{body}");
        assert_eq!(location, None, "{page}");
    }
    assert_eq!(s.code_exchanges().await, 0, "no code was exchanged");
    assert_eq!(s.entries(&base).await, 0);
    // Untouched, the consent completes and redirects to its page.
    let url = s.consent_to_callback(&base).await;
    let (status, body, location) = callback(&s.http, &url).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location.as_deref(), Some(PAGE));
    assert_eq!(s.entries(&base).await, 1);
}

/// Started where `allowed_redirects` allowed the page, completed at an instance whose
/// configuration no longer does: refused at the callback.
async fn the_callback_checks_allowed_redirects_again(s: Setup) {
    let permissive = s.vault(ALLOWED).await;
    let strict = s.vault("").await;
    s.idp.reset_stats().await;
    let url = s.consent_to_callback(&permissive).await;
    let (status, body, location) = callback(&s.http, &url.replacen(&permissive, &strict, 1)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "redirect_not_allowed", "{body}");
    assert_eq!(location, None);
    assert_eq!(s.code_exchanges().await, 0);
    assert_eq!(s.entries(&strict).await, 0);
    // And the strict one refuses the page from the start.
    let resp = s
        .http
        .get(consent_request(&strict))
        .bearer_auth(&s.caller)
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "redirect_not_allowed", "{body}");
}

macro_rules! both {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Setup::start(false).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Setup::start(true).await).await
            }
        }
    };
}

both!(tampered_pending, a_changed_pending_consent_never_redirects);
both!(
    redirect_rechecked,
    the_callback_checks_allowed_redirects_again
);
