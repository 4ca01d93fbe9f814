//! `POST /v1/token/{profile}/refresh` under a burst: concurrent forced refreshes of the same token
//! share one IdP request; later ones are limited as before. Real IdP, real agent, real HTTP.

mod common;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tw_core::ManualClock;
use tw_testkit::TestServer;

const PROFILE: &str = "p";
const CALLERS: usize = 1000;

fn agent_toml(profile: &str) -> String {
    format!("{profile}\n[agent]\nlisten = \"127.0.0.1:0\"\n")
}

/// Starts an agent on a manual clock: the forced-refresh limit refills only when the test says.
async fn agent_with(profile: &str, clock: &ManualClock) -> RunningAgent {
    RunningAgent::start(&agent_toml(profile), Arc::new(clock.clone())).await
}

/// `CALLERS` concurrent refresh calls with `body`; the status and body of each.
async fn burst(a: &RunningAgent, body: Option<Value>) -> Vec<(u16, Value)> {
    let c = client();
    let url = a.api_url(&format!("/v1/token/{PROFILE}/refresh"));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let mut req = c.post(&url);
            if let Some(b) = &body {
                req = req.json(b);
            }
            tokio::spawn(async move {
                let resp = req.send().await.expect("send");
                let status = resp.status().as_u16();
                (status, json_of(resp).await)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(CALLERS);
    for t in tasks {
        out.push(t.await.expect("caller task"));
    }
    out
}

/// Every answer is a 200 with the same token; that token.
fn one_shared_token(answers: &[(u16, Value)]) -> String {
    let statuses: BTreeSet<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, BTreeSet::from([200]), "every caller got a token");
    let tokens: BTreeSet<&str> = answers
        .iter()
        .map(|(_, b)| b["access_token"].as_str().expect("access_token"))
        .collect();
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    tokens.into_iter().next().expect("one").to_owned()
}

async fn refresh(a: &RunningAgent, body: Option<Value>) -> (u16, Value) {
    let mut req = client().post(a.api_url(&format!("/v1/token/{PROFILE}/refresh")));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("send");
    (resp.status().as_u16(), json_of(resp).await)
}

#[tokio::test]
async fn a_thousand_concurrent_refreshes_naming_the_same_token_make_one_idp_request() {
    let h = Harness::start().await;
    let clock = ManualClock::starting_now();
    let a = agent_with(&h.profile_toml(PROFILE), &clock).await;
    let old = a.token(PROFILE).await;
    let before = h.token_requests().await;

    // However the 1,000 calls spread out in time, each names the token it wants replaced.
    let answers = burst(
        &a,
        Some(json!({ "rejected_token": old.access_token.expose() })),
    )
    .await;
    let shared = one_shared_token(&answers);
    assert_ne!(shared, old.access_token.expose(), "a new token");
    assert_eq!(
        h.token_requests().await,
        before + 1,
        "one IdP request for 1,000 refreshes of the same token"
    );
    a.stop().await;
}

/// Forwards the IdP's token endpoint, holding every request while closed.
struct Gate {
    open: watch::Sender<bool>,
    target: String,
    http: reqwest::Client,
    requests: AtomicU64,
}

async fn gate_handler(State(g): State<Arc<Gate>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("request body");
    g.requests.fetch_add(1, Ordering::SeqCst);
    let mut open = g.open.subscribe();
    open.wait_for(|o| *o).await.expect("gate alive");
    let mut forward = g.http.post(&g.target).body(body);
    for (k, v) in &parts.headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            forward = forward.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = forward.send().await.expect("IdP answers");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = resp.bytes().await.expect("IdP body");
    (
        status,
        [(http::header::CONTENT_TYPE, content_type)],
        body.to_vec(),
    )
        .into_response()
}

#[tokio::test]
async fn a_thousand_concurrent_unnamed_refreshes_while_one_is_in_flight_make_one_idp_request() {
    let h = Harness::start().await;
    let gate = Arc::new(Gate {
        open: watch::Sender::new(true),
        target: h.idp.token_url(),
        http: client(),
        requests: AtomicU64::new(0),
    });
    let server = TestServer::start(
        Router::new()
            .fallback(gate_handler)
            .with_state(gate.clone()),
    )
    .await;
    let profile = h.profile_toml(PROFILE).replace(
        &h.idp.token_url(),
        &format!("http://{}/token", server.addr()),
    );
    let clock = ManualClock::starting_now();
    let a = agent_with(&profile, &clock).await;
    let old = a.token(PROFILE).await;
    let before = h.token_requests().await;
    let via_gate = gate.requests.load(Ordering::SeqCst);

    // The IdP answers only once all 1,000 calls are inside the agent: they are concurrent there.
    gate.open.send_replace(false);
    let agent = Arc::new(a);
    let answers = tokio::spawn({
        let agent = agent.clone();
        async move { burst(&agent, None).await }
    });
    let p = agent.broker.profile(PROFILE).expect("profile").clone();
    eventually("all callers waiting for the one fetch", || {
        p.status().waiting == CALLERS
    })
    .await;
    gate.open.send_replace(true);
    let answers = answers.await.expect("burst");
    let shared = one_shared_token(&answers);
    assert_ne!(shared, old.access_token.expose(), "a new token");
    assert_eq!(gate.requests.load(Ordering::SeqCst), via_gate + 1);
    assert_eq!(
        h.token_requests().await,
        before + 1,
        "one IdP request for 1,000 concurrent refreshes"
    );
    Arc::into_inner(agent).expect("sole owner").stop().await;
}

#[tokio::test]
async fn a_refresh_after_the_shared_one_finished_gets_its_own_token_within_the_limit() {
    let h = Harness::start().await;
    let clock = ManualClock::starting_now();
    let a = agent_with(&h.profile_toml(PROFILE), &clock).await;
    let old = a.token(PROFILE).await;
    let old_token = json!({ "rejected_token": old.access_token.expose() });
    let before = h.token_requests().await;
    let shared = one_shared_token(&burst(&a, Some(old_token.clone())).await);
    assert_eq!(h.token_requests().await, before + 1);

    // Late, for the token the shared refresh replaced: that result, no IdP request.
    let (status, body) = refresh(&a, Some(old_token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["access_token"], shared.as_str());
    assert_eq!(h.token_requests().await, before + 1);

    // Naming no token, within the coalescing window: the token just forced, no IdP request.
    let (status, body) = refresh(&a, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], shared.as_str());
    assert_eq!(h.token_requests().await, before + 1);

    // Naming the current token, one after the other: each a new token, until the burst of
    // three (the shared refresh took one) is spent; then 429 until the limit refills.
    let mut current = shared.clone();
    let mut seen = BTreeSet::from([old.access_token.expose().to_owned(), shared]);
    for n in 2..=3 {
        let (status, body) = refresh(&a, Some(json!({ "rejected_token": current }))).await;
        assert_eq!(status, 200, "{body}");
        let t = body["access_token"].as_str().expect("token").to_owned();
        assert!(seen.insert(t.clone()), "a token of its own");
        current = t;
        assert_eq!(h.token_requests().await, before + n);
    }
    let (status, body) = refresh(&a, Some(json!({ "rejected_token": current }))).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "forced_refresh_limited");
    assert_eq!(h.token_requests().await, before + 3);
    clock.advance(Duration::from_secs(10));
    let (status, body) = refresh(&a, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(seen.insert(body["access_token"].as_str().expect("token").to_owned()));
    assert_eq!(h.token_requests().await, before + 4);
    a.stop().await;
}

#[tokio::test]
async fn a_thousand_concurrent_unnamed_refreshes_make_one_idp_request() {
    // The reported case: plain `POST .../refresh` with no body, 1,000 at once. They arrive over
    // a while, many after the first refresh finished; those share its token.
    let h = Harness::start().await;
    let clock = ManualClock::starting_now();
    let a = agent_with(&h.profile_toml(PROFILE), &clock).await;
    let old = a.token(PROFILE).await;
    let before = h.token_requests().await;
    let shared = one_shared_token(&burst(&a, None).await);
    assert_ne!(shared, old.access_token.expose());
    assert_eq!(h.token_requests().await, before + 1, "one IdP request");
    a.stop().await;
}

#[tokio::test]
async fn a_malformed_refresh_body_is_a_400_that_does_not_echo_it() {
    let h = Harness::start().await;
    let clock = ManualClock::starting_now();
    let a = agent_with(&h.profile_toml(PROFILE), &clock).await;
    a.token(PROFILE).await;
    let before = h.token_requests().await;
    let c = client();
    let url = a.api_url(&format!("/v1/token/{PROFILE}/refresh"));
    for body in [
        "eyJsecret-looking-token",
        r#"{"rejected_token": 5}"#,
        r#"{"rejected_token": "eyJsecret-looking-token", "extra": 1}"#,
        r#"["eyJsecret-looking-token"]"#,
    ] {
        let resp = c.post(&url).body(body).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{body}");
        let text = resp.text().await.expect("text");
        assert!(!text.contains("secret-looking"), "echoed: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(v["error"]["code"], "invalid_refresh_request");
    }
    assert_eq!(
        h.token_requests().await,
        before,
        "no refresh for a bad request"
    );
    a.stop().await;
}
