//! No secret or token in any log line, at TRACE level, across every auth method and an error.
//! In a test binary of its own: log capture is per thread, and tracing caches per-callsite
//! interest across the process, so tests running beside it could hide events from the capture.

mod common;

use common::*;
use tw_broker::TokenRequest;
use tw_core::ManualClock;
use tw_testkit::Idp;

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let rt = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let toml = [
        basic_profile(&idp, &s, "basic"),
        post_profile(&idp, &s, "post", "agent-post-secret"),
        refresh_profile(&idp, &s, "user", &rt),
        post_profile(&idp, &s, "wrong", "wrong-secret-value-xyz"),
    ]
    .join("\n");
    let clock = ManualClock::starting_now();
    let b = broker(&toml, &clock);
    let mut tokens = vec![];
    for name in ["basic", "post", "user"] {
        let served = profile(&b, name)
            .token(TokenRequest::default())
            .await
            .unwrap();
        tokens.push(served.token.access_token.expose().to_owned());
        tracing::debug!(status = ?profile(&b, name).status(), "status");
    }
    let e = profile(&b, "wrong")
        .token(TokenRequest::default())
        .await
        .unwrap_err();
    tracing::error!(error = ?e, "captured error");

    let out = logs.contents();
    assert!(
        out.contains("obtained token"),
        "logging was captured: {out}"
    );
    let mut secrets = vec![
        "agent-basic-secret".to_owned(),
        "agent-post-secret".to_owned(),
        "refresh-client-secret".to_owned(),
        "wrong-secret-value-xyz".to_owned(),
        rt,
    ];
    secrets.extend(tokens);
    for secret in &secrets {
        assert!(
            !out.contains(secret.as_str()),
            "a secret or token reached the logs"
        );
    }
}
