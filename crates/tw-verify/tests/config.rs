//! `Verifier::new` validates its config (no I/O) and routes opaque tokens as documented.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::json;
use std::sync::Arc;
use tw_core::{ErrorKind, ManualClock, SystemClock};
use tw_verify::{Check, Verifier, VerifyOptions};

fn new(issuers: serde_json::Value) -> Result<Verifier, tw_core::Error> {
    Verifier::new(&common::gateway(issuers), Arc::new(SystemClock))
}

#[test]
fn bad_configs_are_refused() {
    let cases = [
        (json!([]), "gateway.issuers"),
        (
            json!([{"issuer": "https://a", "algorithms": ["HS256"]}]),
            "gateway.issuers[0].algorithms",
        ),
        (
            json!([{"issuer": "https://a", "algorithms": ["none"]}]),
            "gateway.issuers[0].algorithms",
        ),
        (
            json!([{"issuer": "https://a", "algorithms": []}]),
            "gateway.issuers[0].algorithms",
        ),
        (
            json!([{"issuer": "not a url"}]),
            "gateway.issuers[0].jwks_url",
        ),
        (
            json!([{"issuer": "https://a"}, {"issuer": "https://a"}]),
            "gateway.issuers[1].issuer",
        ),
        (
            json!([{"issuer": "https://a", "jwks_url": "file:///etc/jwks"}]),
            "gateway.issuers[0].jwks_url",
        ),
        (
            json!([{"issuer": "https://a", "jwks_ttl": "0s"}]),
            "gateway.issuers[0].jwks_ttl",
        ),
        (
            json!([{"issuer": "x", "jwks_url": "https://a/jwks", "introspection": {"client_id": "c", "client_secret": {"env": "X"}}}]),
            "gateway.issuers[0].introspection.url",
        ),
    ];
    for (issuers, key) in cases {
        let e = new(issuers.clone()).expect_err(&issuers.to_string());
        assert_eq!(e.kind(), ErrorKind::Config, "{issuers}");
        assert_eq!(e.context_value("key"), Some(key), "{issuers}: {e}");
    }
    new(json!([{"issuer": "https://a"}, {"issuer": "urn:x", "jwks_url": "https://b/jwks"}]))
        .expect("valid");
}

#[tokio::test]
async fn opaque_tokens_need_exactly_one_introspecting_issuer() {
    let clock = ManualClock::starting_now();
    let intro = json!({"client_id": "c", "client_secret": {"env": "TW_VERIFY_TEST_UNSET"}});
    let none = common::verifier(&common::gateway(json!([{"issuer": "https://a"}])), &clock);
    let e = none
        .verify("opaque-token", VerifyOptions::default())
        .await
        .expect_err("refused");
    assert_eq!(e.check(), Check::Format);

    let two = common::verifier(
        &common::gateway(json!([
            {"issuer": "https://a", "introspection": intro},
            {"issuer": "https://b", "introspection": intro},
        ])),
        &clock,
    );
    let e = two
        .verify("opaque-token", VerifyOptions::default())
        .await
        .expect_err("ambiguous");
    assert_eq!(e.check(), Check::Issuer);

    // One issuer: introspected there (here the secret is missing: transient, 503).
    let one = common::verifier(
        &common::gateway(json!([{"issuer": "https://a", "introspection": intro}])),
        &clock,
    );
    let e = one
        .verify("opaque-token", VerifyOptions::default())
        .await
        .expect_err("no secret");
    assert_eq!(e.check(), Check::IntrospectionUnavailable);
    assert!(!e.description().contains("TW_VERIFY_TEST_UNSET"));
}
