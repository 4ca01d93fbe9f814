//! Everything the agent logs at TRACE level, through every output, holds no token and no secret.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tw_core::SystemClock;

const CALLER_CREDENTIAL: &str = "callers-own-credential-7f3a";
const QUERY_SECRET: &str = "query-secret-91bd";

#[tokio::test]
async fn trace_logs_contain_no_token_and_no_secret() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let down = closed_port().await;
    let toml = format!(
        r#"{profile}
[agent]
listen = "127.0.0.1:0"

[[agent.sinks]]
profile = "api"
path = "{sink}"
format = "json"
command = ["true"]

[agent.proxy]
listen = "127.0.0.1:0"

[[agent.proxy.routes]]
prefix = "/up/"
upstream = "{up}"
profile = "api"

[[agent.proxy.routes]]
prefix = "/down/"
upstream = "http://127.0.0.1:{down}"
profile = "api"
connect_retries = 1
"#,
        profile = h.profile_toml("api"),
        sink = h.path("token.json").display(),
        up = up.url(),
    );
    let a = RunningAgent::start(&toml, Arc::new(SystemClock)).await;
    let c = client();
    let mut tokens = Vec::new();

    // Token API: fetch, cached read, forced refresh, a failing min_ttl.
    for (method, path) in [
        ("GET", "/v1/token/api"),
        ("GET", "/v1/token/api?min_ttl=10s"),
        ("POST", "/v1/token/api/refresh"),
    ] {
        let req = match method {
            "GET" => c.get(a.api_url(path)),
            _ => c.post(a.api_url(path)),
        };
        let body = json_of(req.send().await.expect("send")).await;
        tokens.push(body["access_token"].as_str().expect("token").to_owned());
    }
    let resp = c
        .get(a.api_url("/v1/token/api?min_ttl=10h"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);

    // Proxy: the caller's own credential and a token-like query, a 401 with refresh and replay,
    // and an unreachable upstream.
    up.state.reject_first_token.store(true, Ordering::SeqCst);
    let resp = c
        .get(a.proxy_url(&format!("/up/data?access_token={QUERY_SECRET}")))
        .header("Authorization", format!("Bearer {CALLER_CREDENTIAL}"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(a.proxy_url(&format!("/down/x?access_token={QUERY_SECRET}")))
        .header("Authorization", format!("Bearer {CALLER_CREDENTIAL}"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 502);
    for seen in up.seen() {
        let auth = seen.authorization.expect("injected");
        tokens.push(auth.trim_start_matches("Bearer ").to_owned());
    }

    let current = a.token("api").await.access_token.expose().to_owned();
    eventually("the sink to hold the current token", || {
        std::fs::read_to_string(h.path("token.json")).is_ok_and(|t| t.contains(&current))
    })
    .await;
    tokens.push(current);
    a.stop().await;

    tokens.sort();
    tokens.dedup();
    assert!(
        tokens.len() >= 3,
        "several distinct tokens went through: {}",
        tokens.len()
    );

    // The capture is live: the work above was logged, in detail.
    for expected in [
        "obtained token",
        "token file written",
        "http_request",
        "retrying once with a new one",
        "upstream_unreachable",
    ] {
        assert!(
            logs.contains(expected),
            "expected `{expected}` in the captured logs"
        );
    }
    for token in &tokens {
        logs.assert_absent(token);
        // Nor any long piece of it (a JWT's payload or signature on its own).
        for part in token.split('.').filter(|p| p.len() >= 16) {
            logs.assert_absent(part);
        }
    }
    logs.assert_absent(CLIENT_SECRET);
    logs.assert_absent(CALLER_CREDENTIAL);
    logs.assert_absent(QUERY_SECRET);
}

const CALLER_KEY: &str = "5be1c0d2a9f8e7d6c5b4a3928170f6e5";
const ROTATED_CALLER_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const WRONG_CALLER_KEY: &str = "wrong-caller-key-3c9d1e7f5a2b4c6d";

#[tokio::test]
async fn caller_keys_of_remote_listeners_are_never_logged() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let key = h.path("caller-key");
    std::fs::write(&key, CALLER_KEY).expect("key file");
    let remote = format!(
        "listen = \"0.0.0.0:0\"\nallow_remote = true\ncaller_key = {{ file = \"{}\" }}",
        key.display()
    );
    let toml = format!(
        "{profile}\n[agent]\n{remote}\n\n[agent.proxy]\n{remote}\n\n[[agent.proxy.routes]]\nprefix = \"/up/\"\nupstream = \"{up}\"\nprofile = \"api\"\n",
        profile = h.profile_toml("api"),
        up = up.url(),
    );
    let a = RunningAgent::start(&toml, Arc::new(SystemClock)).await;
    let c = client();
    let mut tokens = Vec::new();
    let get = |url: String, header: &'static str, value: &'static str| {
        let c = c.clone();
        async move { c.get(url).header(header, value).send().await.expect("send") }
    };

    for (header, value, status) in [
        ("X-Tokenwarden-Key", CALLER_KEY, 200),
        ("X-Tokenwarden-Key", WRONG_CALLER_KEY, 401),
        ("X-Tokenwarden_Key", CALLER_KEY, 401),
        ("Authorization", CALLER_KEY, 401),
    ] {
        let resp = get(a.api_url("/v1/token/api"), header, value).await;
        assert_eq!(resp.status(), status, "{header}");
        if status == 200 {
            tokens.push(
                json_of(resp).await["access_token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
            );
        }
        let resp = get(a.proxy_url("/up/x"), header, value).await;
        assert_eq!(resp.status(), status, "{header}");
    }
    let resp = c
        .get(a.api_url(&format!("/v1/token/api?key={CALLER_KEY}")))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);

    // Rotated, then unreadable: the operator's warning names the config key and the file only.
    std::fs::write(&key, ROTATED_CALLER_KEY).expect("rotate");
    assert_eq!(
        get(
            a.api_url("/v1/token/api"),
            "X-Tokenwarden-Key",
            ROTATED_CALLER_KEY
        )
        .await
        .status(),
        200
    );
    std::fs::remove_file(&key).expect("remove");
    assert_eq!(
        get(
            a.proxy_url("/up/x"),
            "X-Tokenwarden-Key",
            ROTATED_CALLER_KEY
        )
        .await
        .status(),
        500
    );
    for seen in up.seen() {
        tokens.push(
            seen.authorization
                .expect("injected")
                .trim_start_matches("Bearer ")
                .to_owned(),
        );
    }
    tokens.push(a.token("api").await.access_token.expose().to_owned());
    a.stop().await;

    for expected in [
        "caller refused",
        "caller_key_invalid",
        "cannot read the caller key",
    ] {
        assert!(
            logs.contains(expected),
            "expected `{expected}` in the captured logs"
        );
    }
    for secret in [
        CALLER_KEY,
        ROTATED_CALLER_KEY,
        WRONG_CALLER_KEY,
        CLIENT_SECRET,
    ] {
        logs.assert_absent(secret);
        logs.assert_absent(&secret[..16]);
    }
    for token in &tokens {
        logs.assert_absent(token);
    }
}
