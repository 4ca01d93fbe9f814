//! Nothing the dev issuer logs (at any level) contains a client secret, a client assertion, an
//! access token or a refresh token. Its own test binary: capture is thread-local.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tw_core::Secret;
use tw_devissuer::ClientSecretOverride;

#[tokio::test]
async fn secrets_and_tokens_never_reach_the_logs() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let clock = clock();
    let issuer = issuer_with(
        &[
            fixture("lab-realm.json"),
            fixture("field-partial-export.json"),
        ],
        &clock,
    );
    let overrides = vec![ClientSecretOverride {
        realm: Some("field".into()),
        client_id: "field-agent".into(),
        secret: Secret::new("field-override-secret"),
    }];
    assert!(!format!("{overrides:?}").contains("field-override-secret"));
    issuer.set_client_secrets(overrides).unwrap();

    let ok = client_credentials(&issuer, "lab", "lab-agent", "lab-agent-secret").await;
    let at = access_token(&ok);
    let rt = refresh_token(&ok);
    let refreshed = refresh(&issuer, "lab", LAB_AGENT, &rt).await;
    let at2 = access_token(&refreshed);
    let field = client_credentials(&issuer, "field", "field-agent", "field-override-secret").await;
    assert_eq!(field.status, 200);
    // Failures log too: they must not carry what was sent.
    let bad = client_credentials(&issuer, "lab", "lab-agent", "a-wrong-secret-value").await;
    assert_eq!(bad.status, 401);
    let aud = token_url("lab");
    let a = lab_jwt_assertion(&aud, now_secs(&clock) + 60, "log-jti");
    assert_eq!(
        client_credentials_by_assertion(&issuer, "lab", &a)
            .await
            .status,
        200
    );
    assert_eq!(
        client_credentials_by_assertion(&issuer, "lab", &a)
            .await
            .status,
        400
    );
    post_form(
        &issuer,
        &introspect_path("lab"),
        &[("token", &at)],
        Some(("lab-api", "lab-api-secret")),
    )
    .await;
    post_form(
        &issuer,
        &revoke_path("lab"),
        &[("token", &rt)],
        Some(LAB_AGENT),
    )
    .await;
    issuer.rotate_keys("lab", true).unwrap();
    issuer.reload().unwrap();
    let debug = format!("{issuer:?}");

    let text = logs.contents();
    assert!(
        text.contains("issued an access token"),
        "capture works: {text}"
    );
    for secret in [
        "lab-agent-secret",
        "lab-api-secret",
        "field-override-secret",
        "a-wrong-secret-value",
        at.as_str(),
        at2.as_str(),
        rt.as_str(),
        a.as_str(),
    ] {
        logs.assert_absent(secret);
        assert!(!debug.contains(secret), "Debug shows a secret or token");
    }
}
