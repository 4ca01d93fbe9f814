//! Everything logged at TRACE level across the proxy and forward-auth paths (accepted, refused,
//! malformed, upstream failures, introspection) holds no token, no secret and no query string.

mod common;

use common::*;
use tw_testkit::Idp;

const QUERY_SECRET: &str = "query-secret-5e1f0a";

#[tokio::test]
async fn trace_logs_contain_no_token_and_no_secret() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let down = closed_port().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("introspect-secret");
    std::fs::write(&secret, CLIENT_SECRET).expect("secret");
    let issuer_extra = format!(
        "\n[gateway.issuers.introspection]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ file = \"{}\" }}\n",
        secret.display()
    );
    let routes = format!(
        r#"exempt_paths = ["/health"]

[[gateway.routes]]
prefix = "/strict"
upstream = "{up}"
introspect = true

[[gateway.routes]]
prefix = "/down"
upstream = "http://127.0.0.1:{down}"

[[gateway.routes]]
prefix = "/"
upstream = "{up}"
"#,
        up = up.url()
    );
    let cfg = gateway_config(&idp_gateway_toml(&idp, &issuer_extra, &routes));
    let gw = RunningGateway::start(&cfg).await;
    let agent = FeedingAgent::start(&idp, &gw.url("/")).await;
    let agent_token = agent.token().await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let bad = format!("{token}x");
    let opaque = "opaque-token-d41d8cd98f00b204";
    let c = client();

    let q = format!("?access_token={QUERY_SECRET}&x=1");
    // Through the agent, then straight to the gateway, in both modes.
    let resp = c
        .get(agent.url(&format!("/api{q}")))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    for auth in [
        Some(format!("Bearer {token}")),
        Some(format!("Bearer {bad}")),
        Some(format!("Bearer {opaque}")),
        Some(format!("Bearer {token} {token}")),
        Some(format!("Basic {token}")),
        None,
    ] {
        for path in [
            format!("/api{q}"),
            format!("/strict/x{q}"),
            format!("/down/x{q}"),
            format!("/health{q}"),
            format!("/auth/api/x{q}"),
        ] {
            let mut req = c.get(gw.url(&path));
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.expect("send");
            assert!(
                resp.status().as_u16() < 500 || path.starts_with("/down"),
                "{path}"
            );
        }
        for (name, value) in [
            ("x-original-uri", format!("/api{q}")),
            ("x-forwarded-uri", format!("/api{q}")),
        ] {
            let mut req = c.get(gw.url("/auth")).header(name, value);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            req.send().await.expect("send");
        }
    }

    let text = logs.contents();
    assert!(
        text.contains("request refused"),
        "nothing captured?\n{text}"
    );
    assert!(text.contains("token accepted"), "nothing captured?\n{text}");
    for t in [&token, &agent_token] {
        logs.assert_absent(t);
        // The signature alone is enough to be a leak (the header segment is common to all).
        logs.assert_absent(t.rsplit('.').next().expect("signature"));
        logs.assert_absent(t.split('.').nth(1).expect("payload"));
    }
    logs.assert_absent(&bad);
    logs.assert_absent(opaque);
    logs.assert_absent(CLIENT_SECRET);
    logs.assert_absent(QUERY_SECRET);

    agent.stop().await;
    gw.stop().await;
}
