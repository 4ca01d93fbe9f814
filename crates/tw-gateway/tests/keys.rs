//! Keys at the real IdP: rotation under continuous traffic (no 401 burst), an IdP outage (cached
//! keys keep verifying), and a random-kid flood (at most one JWKS refetch per cooldown, counted
//! at the IdP).

mod common;

use common::*;
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tw_testkit::Idp;
use tw_verify::testing::{decode_segment, with_header};

fn gateway_toml(idp: &Idp, up: &Upstream, issuer_extra: &str) -> String {
    idp_gateway_toml(
        idp,
        issuer_extra,
        &format!(
            "[[gateway.routes]]\nprefix = \"/\"\nupstream = \"{}\"\n",
            up.url()
        ),
    )
}

/// Requests through the agent (and so the gateway) from `workers` loops until `stop`; returns
/// the count of each status.
fn traffic(
    agent_url: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<u16, u64>> {
    tokio::spawn(async move {
        let c = client();
        let loops = (0..workers).map(|i| {
            let c = c.clone();
            let url = format!("{agent_url}worker/{i}");
            let stop = stop.clone();
            async move {
                let mut counts = BTreeMap::new();
                while !stop.load(Ordering::SeqCst) {
                    let status = c.get(&url).send().await.map_or(0, |r| r.status().as_u16());
                    *counts.entry(status).or_insert(0u64) += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                counts
            }
        });
        let mut total = BTreeMap::new();
        for counts in futures::future::join_all(loops).await {
            for (k, v) in counts {
                *total.entry(k).or_insert(0) += v;
            }
        }
        total
    })
}

/// Sends `token` straight to the gateway until it is accepted; returns how long that took.
async fn accepted_within(gw: &RunningGateway, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let resp = client()
            .get(gw.url("/direct"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        if resp.status() == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the new token is still refused after {limit:?}: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_traffic_causes_no_401_burst() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    // A short cooldown so the second rotation (a few seconds later) may refetch again; the
    // production default (30 s) allows one unknown-kid refetch per 30 s.
    let cfg = gateway_config(&gateway_toml(&idp, &up, "jwks_refetch_cooldown = \"2s\""));
    let gw = RunningGateway::start(&cfg).await;
    let agent = FeedingAgent::start(&idp, &gw.url("/")).await;
    let first = agent.token().await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(agent.url("/"), 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Rotation keeping the old key: old tokens stay valid, new ones are accepted at once.
    let kid2 = idp.rotate_keys(true).await;
    let second = agent.refresh().await;
    assert_eq!(decode_segment(&second, 0)["kid"], json!(kid2));
    let took = accepted_within(&gw, &second, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    let resp = client()
        .get(gw.url("/direct"))
        .bearer_auth(&first)
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        200,
        "a token signed by a still-published key"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Rotation dropping the old keys: tokens signed by them stop verifying once the gateway has
    // the new set; the agent's requests in flight with such a token get one 401 at the gateway,
    // which the agent absorbs (one retry with the new token). Callers see none.
    let kid3 = idp.rotate_keys(false).await;
    let third = agent.refresh().await;
    assert_eq!(decode_segment(&third, 0)["kid"], json!(kid3));
    let took = accepted_within(&gw, &third, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::SeqCst);
    let counts = load.await.expect("traffic");
    eprintln!("traffic during the rotations: {counts:?}");
    let ok = counts.get(&200).copied().unwrap_or(0);
    assert!(ok > 50, "too little traffic to mean anything: {counts:?}");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        [200],
        "{counts:?}"
    );
    // Three key loads at most: startup and one per rotation.
    assert!(
        idp.stats().await.jwks_requests <= 3,
        "{:?}",
        idp.stats().await
    );

    agent.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn idp_down_cached_keys_keep_verifying() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    // The background refresh is due every 1.6 s: it fails while the IdP is down.
    let cfg = gateway_config(&gateway_toml(&idp, &up, "jwks_ttl = \"2s\""));
    let gw = RunningGateway::start(&cfg).await;
    let agent = FeedingAgent::start(&idp, &gw.url("/")).await;
    let seen = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let unseen = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let c = client();
    let resp = c
        .get(gw.url("/x"))
        .bearer_auth(&seen)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);

    idp.down().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A token never verified before: checked with the cached keys, not the verified-token cache.
    for token in [&unseen, &seen] {
        let resp = c
            .get(gw.url("/x"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
    }
    for _ in 0..20 {
        let resp = c.get(agent.url("/via-agent")).send().await.expect("send");
        assert_eq!(resp.status(), 200);
    }
    let ready = json_of(c.get(gw.url("/readyz")).send().await.expect("send")).await;
    assert_eq!(ready["ready"], true, "{ready}");

    idp.up().await;
    agent.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kid_flood_costs_at_most_one_jwks_fetch() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let cfg = gateway_config(&gateway_toml(&idp, &up, ""));
    let gw = RunningGateway::start(&cfg).await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let before = idp.stats().await.jwks_requests;
    assert_eq!(before, 1, "the startup load");

    let c = client();
    let url = gw.url("/flood");
    let statuses: Vec<(u16, String)> = futures::stream::iter(0..400)
        .map(|_| {
            let forged = with_header(
                &token,
                &json!({"alg": "RS256", "typ": "JWT", "kid": uuid::Uuid::new_v4().to_string()}),
            );
            let req = c.get(&url).bearer_auth(forged).send();
            async move {
                let resp = req.await.expect("send");
                let ch = resp
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().expect("ascii").to_owned())
                    .unwrap_or_default();
                (resp.status().as_u16(), ch)
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    for (status, ch) in &statuses {
        assert_eq!(*status, 401, "{ch}");
        assert!(ch.contains("error=\"invalid_token\""), "{ch}");
        assert!(ch.contains("kid"), "{ch}");
    }
    let after = idp.stats().await.jwks_requests;
    assert!(
        after - before <= 1,
        "{} JWKS fetches for the flood",
        after - before
    );
    assert_eq!(up.count(), 0);

    let resp = c
        .get(gw.url("/ok"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}
