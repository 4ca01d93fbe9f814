//! tw-verify's hostile-token corpus sent over HTTP to the gateway, in both modes: every token is
//! refused with 401 `invalid_token` naming the failed check (or 400 `invalid_request` when it
//! cannot even be a bearer credential), never a 5xx, never accepted. The controls are accepted.

mod common;

use common::*;
use std::sync::Arc;
use tw_core::{Clock, ManualClock};
use tw_verify::testing::{CorpusParams, KeyPublisher, fixture_jwks, hostile_corpus, valid_corpus};

/// A bearer credential per RFC 6750 (what `Authorization: Bearer <t>` can legally carry).
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[tokio::test]
async fn every_hostile_token_is_refused_over_http_with_the_check_named() {
    let publisher = KeyPublisher::start(fixture_jwks()).await;
    let up = Upstream::start().await;
    let clock = ManualClock::starting_now();
    let p = CorpusParams::new("https://idp.example/realms/test", clock.now());
    let settings = p.verifier_settings(&publisher.jwks_url());
    let mut cfg: tw_config::GatewayConfig =
        serde_json::from_value(serde_json::json!({ "issuers": [] })).expect("gateway section");
    cfg.issuers = settings.issuers;
    cfg.max_token_bytes = settings.max_token_bytes;
    cfg.listen = "127.0.0.1:0".into();
    cfg.routes = vec![
        serde_json::from_value(serde_json::json!({"prefix": "/", "upstream": up.url()}))
            .expect("route"),
    ];
    let gw = RunningGateway::start_with(&cfg, Arc::new(clock.clone()), None, None).await;
    let c = client();

    for (name, token) in valid_corpus(&p) {
        for path in ["/api/x", "/auth/api/x"] {
            let resp = c
                .get(gw.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 200, "control {name} on {path}");
        }
    }

    let corpus = hostile_corpus(&p);
    let mut wrong = Vec::new();
    let mut invalid_requests = 0;
    for h in &corpus {
        let header = format!("Bearer {}", h.token);
        if http::HeaderValue::from_str(&header).is_err() {
            // A newline or non-ASCII byte: no HTTP client can send it as a header value.
            invalid_requests += 1;
            continue;
        }
        for path in ["/api/x", "/auth/api/x"] {
            let resp = c
                .get(gw.url(path))
                .header("authorization", &header)
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().expect("ascii").to_owned())
                .unwrap_or_default();
            let text = resp.text().await.expect("body");
            for seg in h.token.split('.').filter(|s| s.len() > 8) {
                assert!(
                    !text.contains(seg) && !challenge.contains(seg),
                    "{}: the answer echoes the token",
                    h.name
                );
            }
            let body: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) => {
                    wrong.push(format!("{} on {path}: {status}, not JSON: {text}", h.name));
                    continue;
                }
            };
            let expect_400 = h.token.is_empty() || !is_b64token(&h.token);
            match (status, expect_400) {
                (400, true) => {
                    invalid_requests += 1;
                    assert!(
                        challenge.contains("error=\"invalid_request\""),
                        "{challenge}"
                    );
                    assert_eq!(body["error"]["code"], "invalid_request");
                }
                (401, false) => {
                    let ok = challenge.starts_with(
                        "Bearer realm=\"tokenwarden\", error=\"invalid_token\", error_description=\"",
                    ) && body["error"]["code"] == "invalid_token"
                        && body["error"]["check"] == h.expected.code();
                    if !ok {
                        wrong.push(format!(
                            "{} on {path}: expected check {}, got {challenge} / {body}",
                            h.name, h.expected
                        ));
                    }
                }
                _ => wrong.push(format!(
                    "{} on {path}: status {status} (expected {}) {challenge} {body}",
                    h.name,
                    if expect_400 { 400 } else { 401 }
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        corpus.len(),
        wrong.join("\n")
    );
    eprintln!(
        "{} corpus tokens, {invalid_requests} answered (or unsendable) as invalid requests",
        corpus.len()
    );
    assert!(invalid_requests < corpus.len() / 4, "{invalid_requests}");
    assert_eq!(
        up.count() as usize,
        valid_corpus(&p).len(),
        "only the controls got through"
    );
    gw.stop().await;
}
