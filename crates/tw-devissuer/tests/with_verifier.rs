//! The dev issuer on a real socket, checked by the real token verifier of the gateway
//! (`tw_verify::Verifier`: discovery, JWKS, signature, claims, introspection), key rotation included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tw_core::ManualClock;
use tw_devissuer::{DevIssuer, DevIssuerSettings};
use tw_verify::{Check, Verifier, VerifyOptions};

const PLAIN: VerifyOptions = VerifyOptions { introspect: false };
const INTROSPECT: VerifyOptions = VerifyOptions { introspect: true };

/// Serves a dev issuer on an ephemeral port; its issuer URLs carry that port.
async fn serve(files: &[std::path::PathBuf], clock: &ManualClock) -> (DevIssuer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = DevIssuer::from_files(
        files,
        DevIssuerSettings {
            base_url: url::Url::parse(&base).unwrap(),
            access_token_lifetime: None,
            refresh_token_lifetime: None,
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    let app = issuer
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (issuer, base)
}

async fn token(base: &str, realm: &str, client: &str, secret: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!(
            "{base}/realms/{realm}/protocol/openid-connect/token"
        ))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

fn verifier(issuer: &str, secret_file: &str, clock: &ManualClock) -> Arc<Verifier> {
    let issuers = serde_json::from_value(json!([{
        "issuer": issuer,
        "audiences": ["demo-api"],
        "allowed_azp": ["demo-agent"],
        "jwks_refetch_cooldown": "10s",
        "introspection": { "client_id": "demo-api", "client_secret": { "file": secret_file } },
    }]))
    .unwrap();
    let settings = tw_verify::VerifierSettings::new("gateway", issuers);
    Arc::new(Verifier::new(&settings, Arc::new(clock.clone())).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_pass_the_gateways_verifier_across_key_rotation() {
    let clock = ManualClock::starting_now();
    let (issuer, base) = serve(&[demo_realm()], &clock).await;
    let iss = issuer.issuer_url("demo");
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("demo-api-secret");
    std::fs::write(&secret_file, "demo-api-secret").unwrap();
    let v = verifier(&iss, &secret_file.display().to_string(), &clock);
    v.start().await;
    assert!(v.is_ready());

    let first = token(&base, "demo", "demo-agent", "demo-agent-secret").await;
    let got = v
        .verify(&first, PLAIN)
        .await
        .expect("dev issuer token verifies");
    assert_eq!(got.issuer, iss);
    assert_eq!(got.client_id.as_deref(), Some("demo-agent"));
    assert_eq!(got.username.as_deref(), Some("service-account-demo-agent"));
    assert!(got.service_account);
    assert_eq!(got.audiences, ["demo-api"]);
    assert_eq!(got.claims["clientAddress"], "127.0.0.1");
    // Introspection through the verifier, authenticated as the bearer-only API client.
    v.verify(&first, INTROSPECT)
        .await
        .expect("introspected active");

    // Rotation keeping the old key: the old token still verifies (same JWKS refetch).
    issuer.rotate_keys("demo", true).unwrap();
    let second = token(&base, "demo", "demo-agent", "demo-agent-secret").await;
    v.verify(&second, PLAIN)
        .await
        .expect("new kid fetched from /certs");

    // Rotation dropping old keys: new tokens verify after the cooldown, old keys are gone.
    clock.advance(secs(11));
    issuer.rotate_keys("demo", false).unwrap();
    let third = token(&base, "demo", "demo-agent", "demo-agent-secret").await;
    v.verify(&third, PLAIN).await.expect("newest kid fetched");
    // The old key is no longer published: tokens it signed are refused.
    let err = v.verify(&first, PLAIN).await.expect_err("old key dropped");
    assert_eq!(err.check(), Check::Key);

    // A token of another dev issuer instance (same realm, other keys) is refused.
    let (_other, other_base) = serve(&[demo_realm()], &clock).await;
    let foreign = token(&other_base, "demo", "demo-agent", "demo-agent-secret").await;
    let err = v.verify(&foreign, PLAIN).await.expect_err("foreign issuer");
    assert_eq!(err.check(), Check::Issuer);
}
