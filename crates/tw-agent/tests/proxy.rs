//! The injecting reverse proxy against a real IdP and real upstream servers.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tw_core::{Clock, ManualClock, SystemClock};

/// Agent config with the given `[[agent.proxy.routes]]` entries.
fn proxy_toml(h: &Harness, routes: &str) -> String {
    format!(
        r#"{profile}
[agent]
listen = "127.0.0.1:0"

[agent.proxy]
listen = "127.0.0.1:0"
{routes}
"#,
        profile = h.profile_toml("api"),
    )
}

fn route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "\n[[agent.proxy.routes]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\nprofile = \"api\"\n{extra}\n"
    )
}

async fn start(h: &Harness, routes: &str) -> RunningAgent {
    start_with_clock(h, routes, Arc::new(SystemClock)).await
}

async fn start_with_clock(h: &Harness, routes: &str, clock: Arc<dyn Clock>) -> RunningAgent {
    let a = RunningAgent::start(&proxy_toml(h, routes), clock).await;
    a.token("api").await;
    a
}

async fn raw_request(addr: std::net::SocketAddr, request_line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{request_line}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(LIMIT, s.read_to_string(&mut out))
        .await
        .expect("in time")
        .expect("read");
    out
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn proxy_injects_the_token_routes_by_longest_prefix_and_drops_hop_headers() {
    let h = Harness::start().await;
    let general = Upstream::start().await;
    let special = Upstream::start().await;
    let routes = [
        route(
            "/svc/",
            &format!("{}/base/", general.url()),
            "strip_prefix = true",
        ),
        route("/svc/special/", &special.url(), ""),
    ]
    .concat();
    let a = start(&h, &routes).await;
    let token = a.token("api").await;
    let proxy = a.proxy.expect("proxy");

    let resp = client()
        .post(a.proxy_url("/svc/items?x=1&y=two"))
        .header("Authorization", "Bearer callers-own-credential")
        .header("Connection", "X-Hop")
        .header("X-Hop", "1")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("X-Forwarded-For", "10.9.9.9")
        .header("X-Custom", "kept")
        .body("hello upstream")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let echo = json_of(resp).await;
    assert_eq!(echo["path"], "/base/items?x=1&y=two");
    assert_eq!(echo["body_len"], 14);

    let seen = general.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    let expected_auth = format!("Bearer {}", token.access_token.expose());
    assert_eq!(s.authorization.as_deref(), Some(expected_auth.as_str()));
    let auths: Vec<_> = s
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(
        auths.len(),
        1,
        "exactly one Authorization reaches the upstream"
    );
    assert_eq!(header(s, "x-hop"), None);
    assert_eq!(header(s, "proxy-authorization"), None);
    assert_eq!(header(s, "x-custom"), Some("kept"));
    assert_eq!(header(s, "x-forwarded-for"), Some("10.9.9.9, 127.0.0.1"));
    assert_eq!(header(s, "x-forwarded-proto"), Some("http"));
    let proxy_host = proxy.to_string();
    assert_eq!(header(s, "x-forwarded-host"), Some(proxy_host.as_str()));
    assert_eq!(header(s, "host"), Some(general.addr.to_string().as_str()));

    // The longer prefix wins, and without strip_prefix the path is kept.
    let resp = client()
        .get(a.proxy_url("/svc/special/thing"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await["path"], "/svc/special/thing");
    assert_eq!(special.seen().len(), 1);
    assert_eq!(general.seen().len(), 1);

    // A prefix matches whole segments only; nothing matches here.
    let resp = client()
        .get(a.proxy_url("/svcx/thing"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "route_not_found");

    // Sent raw: URL libraries resolve `%2e%2e` before sending, a hostile client does not.
    let reply = raw_request(proxy, "GET /svc/%2e%2e/admin HTTP/1.1").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("\"invalid_path\""), "{reply}");
    a.stop().await;
}

#[tokio::test]
async fn an_upstream_401_causes_one_refresh_and_one_replay() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let a = start(&h, &route("/", &up.url(), "")).await;
    let before = h.token_requests().await;
    up.state.reject_first_token.store(true, Ordering::SeqCst);

    let resp = client()
        .put(a.proxy_url("/doc"))
        .body(r#"{"k":"v"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        h.token_requests().await,
        before + 1,
        "exactly one extra token"
    );

    let seen = up.seen();
    assert_eq!(seen.len(), 2, "the request was replayed once");
    assert_ne!(seen[0].authorization, seen[1].authorization);
    assert_eq!(seen[0].body_len, 9);
    assert_eq!(seen[1].body_len, 9, "the replay carries the same body");
    let current = a.token("api").await;
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some(format!("Bearer {}", current.access_token.expose()).as_str())
    );
    a.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_401s_for_the_same_token_cause_one_refresh() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let a = start(&h, &route("/", &up.url(), "")).await;
    let rejected = a.token("api").await;
    up.state
        .rejected
        .lock()
        .insert(format!("Bearer {}", rejected.access_token.expose()));
    let before = h.token_requests().await;

    let c = client();
    let requests = (0..20).map(|i| {
        let c = c.clone();
        let url = a.proxy_url(&format!("/item/{i}"));
        async move { c.get(url).send().await.expect("send").status() }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(h.token_requests().await, before + 1, "one refresh for all");
    let rejections = up
        .seen()
        .iter()
        .filter(|s| s.authorization == Some(format!("Bearer {}", rejected.access_token.expose())))
        .count();
    assert!(rejections >= 1, "the old token was rejected at least once");
    a.stop().await;
}

#[tokio::test]
async fn bodies_too_large_to_keep_are_streamed_and_a_401_is_passed_on() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let a = start(&h, &route("/", &up.url(), "max_replay_body_bytes = 1024")).await;
    let before = h.token_requests().await;
    up.state.reject_first_token.store(true, Ordering::SeqCst);

    let big = vec![b'x'; 64 * 1024];
    let resp = client()
        .post(a.proxy_url("/upload"))
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        401,
        "not replayed: the upstream's answer is passed on"
    );
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        h.token_requests().await,
        before,
        "no refresh for a request that cannot be replayed"
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, 64 * 1024, "the body arrived whole");

    // A body of unknown length is streamed too, however small.
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![Ok(b"ab"), Ok(b"cd")];
    let resp = client()
        .post(a.proxy_url("/upload"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(up.seen().len(), 2);
    assert_eq!(up.seen()[1].body_len, 4);
    assert_eq!(h.token_requests().await, before);
    a.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let a = start(
        &h,
        &route("/", &up.url(), "rate_limit = { per_second = 1, burst = 2 }"),
    )
    .await;
    let c = client();
    for _ in 0..2 {
        let r = c.get(a.proxy_url("/x")).send().await.expect("send");
        assert_eq!(r.status(), 200);
    }
    let r = c.get(a.proxy_url("/x")).send().await.expect("send");
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["profile"], "api");
    assert_eq!(body["error"]["upstream"], up.url());
    assert_eq!(
        up.seen().len(),
        2,
        "the refused request never reached the upstream"
    );
    a.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_naming_it() {
    let h = Harness::start().await;
    let port = closed_port().await;
    let upstream = format!("http://127.0.0.1:{port}");
    let a = start(
        &h,
        &route("/", &format!("{upstream}/base"), "connect_retries = 2"),
    )
    .await;
    let r = client()
        .get(a.proxy_url("/x?access_token=query-secret"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    let text = r.text().await.expect("text");
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert_eq!(body["error"]["upstream"], upstream, "the origin only");
    assert_eq!(body["error"]["profile"], "api");
    assert!(!text.contains("query-secret"), "{text}");
    assert!(!text.contains(a.token("api").await.access_token.expose()));
    a.stop().await;
}

#[tokio::test]
async fn a_failed_tls_handshake_is_a_502_and_sends_no_token() {
    let h = Harness::start().await;
    // A plain-HTTP server behind an https:// upstream URL: the handshake cannot succeed.
    let plain = Upstream::start().await;
    let upstream = format!("https://{}", plain.addr);
    let a = start(&h, &route("/", &upstream, "connect_retries = 0")).await;
    let r = client().get(a.proxy_url("/x")).send().await.expect("send");
    assert_eq!(r.status(), 502);
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert_eq!(body["error"]["upstream"], upstream);
    assert!(
        plain.seen().is_empty(),
        "no request (and so no token) went over the failed connection"
    );
    a.stop().await;
}

#[tokio::test]
async fn the_circuit_opens_after_failures_and_a_trial_closes_it() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let clock = ManualClock::starting_now();
    let a = start_with_clock(
        &h,
        &route(
            "/",
            &up.url(),
            "circuit_breaker = { failure_threshold = 2, open_for = \"30s\" }",
        ),
        Arc::new(clock.clone()),
    )
    .await;
    let c = client();
    up.state.status.store(503, Ordering::SeqCst);
    for _ in 0..2 {
        let r = c.get(a.proxy_url("/x")).send().await.expect("send");
        assert_eq!(r.status(), 503);
        assert_eq!(
            json_of(r).await["method"],
            "GET",
            "the upstream's own answer"
        );
    }
    let r = c.get(a.proxy_url("/x")).send().await.expect("send");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "30");
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "upstream_circuit_open");
    assert_eq!(body["error"]["upstream"], up.url());
    assert_eq!(body["error"]["profile"], "api");
    assert_eq!(up.seen().len(), 2, "an open circuit sends nothing");

    clock.advance(Duration::from_secs(29));
    let r = c.get(a.proxy_url("/x")).send().await.expect("send");
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(up.seen().len(), 2);

    // After open_for, one trial goes through; the upstream has recovered, so the circuit closes.
    clock.advance(Duration::from_secs(1));
    up.state.status.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        let r = c.get(a.proxy_url("/x")).send().await.expect("send");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(up.seen().len(), 5);
    a.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_gets_a_504() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let a = start(&h, &route("/", &up.url(), "timeout = \"300ms\"")).await;
    up.state.delay_ms.store(10_000, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let r = client()
        .get(a.proxy_url("/slow"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert_eq!(body["error"]["upstream"], up.url());
    assert_eq!(body["error"]["profile"], "api");
    a.stop().await;
}

#[tokio::test]
async fn an_http_1_0_upstream_does_not_downgrade_the_client_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    // A minimal HTTP/1.0 server, like Python's http.server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    .await;
            });
        }
    });
    let a = start(&h, &route("/", &format!("http://{addr}"), "")).await;
    let out = raw_request(a.proxy.expect("proxy"), "GET /x HTTP/1.1").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("hello"), "{out}");
    a.stop().await;
}
