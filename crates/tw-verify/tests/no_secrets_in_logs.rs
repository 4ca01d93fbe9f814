//! TRACE-level logs of a busy verifier never contain a token, a token part, or the introspection
//! secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Secrets;
use serde_json::json;
use tw_core::{ManualClock, TokenFingerprint};
use tw_testkit::{Endpoint, Fault, Idp};
use tw_verify::VerifyOptions;
use tw_verify::testing::{CorpusParams, hostile_corpus};

#[tokio::test(flavor = "current_thread")]
async fn tokens_and_secrets_never_reach_the_logs() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let idp = Idp::start_default().await;
    let secrets = Secrets::new();
    let clock = ManualClock::starting_now();
    let cfg = common::gateway(json!([{
        "issuer": idp.issuer(),
        "audiences": ["api"],
        "introspection": {
            "client_id": "agent-basic",
            "client_secret": { "file": secrets.file("s", "agent-basic-secret") },
        },
    }]));
    let v = common::verifier(&cfg, &clock);
    v.start().await;
    let t = common::idp_token(&idp.token_url(), "agent-basic", "agent-basic-secret").await;
    let intro = VerifyOptions { introspect: true };
    v.verify(&t, intro).await.expect("ok");
    v.verify(&t, intro).await.expect("cached");
    let jti = tw_verify::testing::decode_segment(&t, 1)["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    v.verify(&jti, VerifyOptions::default())
        .await
        .expect("opaque");
    let _ = v.inspect(&t).await;
    let mut sent = vec![t.clone(), jti.clone()];
    for h in hostile_corpus(&CorpusParams::new(idp.issuer(), clock_now(&clock))) {
        let _ = v.verify(&h.token, VerifyOptions::default()).await;
        sent.push(h.token);
    }
    idp.fault(Fault::status(Endpoint::Introspect, 500)).await;
    let t2 = common::idp_token(&idp.token_url(), "agent-basic", "agent-basic-secret").await;
    let _ = v.verify(&t2, intro).await;
    sent.push(t2.clone());

    let out = logs.contents();
    assert!(
        out.contains(&TokenFingerprint::of(&t2).short()),
        "the fingerprint is what is logged"
    );
    assert!(
        !out.contains("agent-basic-secret"),
        "the introspection secret was logged"
    );
    for token in &sent {
        for part in token.split('.').filter(|p| p.len() >= 16) {
            assert!(
                !out.contains(part),
                "a token part was logged: {}",
                &part[..16]
            );
        }
    }
}

fn clock_now(c: &ManualClock) -> tw_core::UnixTime {
    use tw_core::Clock;
    c.now()
}
