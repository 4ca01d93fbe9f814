//! Helpers shared by the integration test binaries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tw_core::ManualClock;
use tw_verify::Verifier;

/// Files holding secrets for `{ file = ... }` references (tests may not touch the environment).
pub struct Secrets(tempfile::TempDir);

impl Secrets {
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("tempdir"))
    }
    pub fn file(&self, name: &str, value: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, value).expect("write secret");
        p.display().to_string()
    }
}

/// Verifier settings (as the gateway's) from JSON issuer objects.
pub fn gateway(issuers: Value) -> tw_verify::VerifierSettings {
    tw_verify::VerifierSettings::new(
        "gateway",
        serde_json::from_value(issuers).expect("issuer settings"),
    )
}

pub fn verifier(cfg: &tw_verify::VerifierSettings, clock: &ManualClock) -> Arc<Verifier> {
    Arc::new(Verifier::new(cfg, Arc::new(clock.clone())).expect("verifier"))
}

/// A client-credentials access token from the test IdP.
pub async fn idp_token(token_url: &str, client: &str, secret: &str) -> String {
    let resp = reqwest::Client::new()
        .post(token_url)
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert!(
        resp.status().is_success(),
        "token endpoint: {}",
        resp.status()
    );
    let v: Value = resp.json().await.expect("token JSON");
    v["access_token"].as_str().expect("access_token").to_owned()
}

/// Polls `cond` every 50 ms for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
