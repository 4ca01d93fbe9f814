//! Helpers shared by the integration test binaries.
#![allow(dead_code)]

use std::sync::Arc;
use tw_broker::{Broker, Profile};
use tw_core::ManualClock;
use tw_testkit::Idp;

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
    pub fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
}

pub fn broker(toml: &str, clock: &ManualClock) -> Broker {
    let cfg = tw_config::load_str(toml, "test.toml").expect("config");
    Broker::from_profiles_manual(&cfg.profiles, Arc::new(clock.clone())).expect("broker")
}

pub fn profile<'a>(b: &'a Broker, name: &str) -> &'a Arc<Profile> {
    b.profile(name).expect("profile")
}

pub fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

pub fn basic_profile(idp: &Idp, s: &Secrets, name: &str) -> String {
    format!(
        "[profiles.{name}]\nissuer = \"{}\"\nclient_id = \"agent-basic\"\nclient_secret = {{ file = \"{}\" }}\n",
        idp.issuer(),
        s.file("basic", "agent-basic-secret")
    )
}

/// Profile `name` for the `agent-post` client with `client_secret_post`, sending `secret` (kept
/// in the secret file `name`).
pub fn post_profile(idp: &Idp, s: &Secrets, name: &str, secret: &str) -> String {
    format!(
        "[profiles.{name}]\ntoken_url = \"{}\"\nclient_id = \"agent-post\"\nauth_method = \"client_secret_post\"\nclient_secret = {{ file = \"{}\" }}\n",
        idp.token_url(),
        s.file(name, secret)
    )
}

/// Profile `name` for the `refresh-client` client with the refresh-token grant, starting from
/// `refresh_token` (secret files `{name}-secret` and `{name}-rt`).
pub fn refresh_profile(idp: &Idp, s: &Secrets, name: &str, refresh_token: &str) -> String {
    format!(
        "[profiles.{name}]\ntoken_url = \"{}\"\nclient_id = \"refresh-client\"\nclient_secret = {{ file = \"{}\" }}\ngrant = \"refresh_token\"\nrefresh_token = {{ file = \"{}\" }}\n",
        idp.token_url(),
        s.file(&format!("{name}-secret"), "refresh-client-secret"),
        s.file(&format!("{name}-rt"), refresh_token),
    )
}
