//! `tokenwarden doctor` on the server side: the token's claims against a `[gateway]` (audience,
//! azp, route permissions through `tw_authz`), and `--url` through a real gateway in front of a
//! small upstream: 200 with the allowing rule, 403 with the deciding rule, 401 with the
//! challenge, 502 with the upstream down. Real IdP, real gateway, real HTTP.

mod doctor_common;

use doctor_common::{Files, doctor, profile_toml};
use std::sync::Arc;
use tw_config::ListenAddr;
use tw_core::{Error, SystemClock};
use tw_testkit::{Idp, Running, TestServer};

const SECRET: &str = "agent-basic-secret";

/// `[gateway]` for the IdP with the default test clients (agent-basic: realm role `agent`,
/// `aud` `api`): GET /grids/** needs grids:read (granted by `agent`), POST grids:write (not
/// granted), /down/** goes to an upstream nothing listens on.
fn gateway_toml(issuer: &str, audiences: &str, allowed_azp: &str, upstream: &str) -> String {
    let down = tw_testkit::free_port();
    format!(
        r#"[gateway]
listen = "127.0.0.1:0"

[[gateway.issuers]]
issuer = "{issuer}"
audiences = [{audiences}]
allowed_azp = [{allowed_azp}]

[[gateway.routes]]
prefix = "/down/"
upstream = "http://127.0.0.1:{down}/"

[[gateway.routes]]
prefix = "/"
upstream = "{upstream}"

[gateway.authz.roles]
"agent" = ["grids:read"]

[[gateway.authz.rules]]
name = "grids-read"
methods = ["GET"]
paths = ["/grids/**"]
require_all = ["grids:read"]

[[gateway.authz.rules]]
name = "grids-write"
methods = ["POST"]
paths = ["/grids/**"]
require_all = ["grids:write"]

[[gateway.authz.rules]]
name = "down"
paths = ["/down/**"]
allow_any_authenticated = true
"#
    )
}

/// A gateway serving `toml`'s `[gateway]` on 127.0.0.1.
async fn start_gateway(toml: &str) -> (String, Running<Error>) {
    let cfg = tw_config::load_str(toml, "gateway.toml")
        .unwrap_or_else(|e| panic!("gateway config: {e}"))
        .gateway
        .expect("[gateway]");
    let verifier = Arc::new(
        tw_verify::Verifier::new(&cfg.verifier_settings(), Arc::new(SystemClock))
            .expect("verifier"),
    );
    verifier.start().await;
    let bound = tw_gateway::Gateway::new(&cfg.gateway_settings(), verifier)
        .expect("gateway")
        .bind()
        .await
        .expect("bind");
    let ListenAddr::Tcp(addr) = bound.local_addr() else {
        panic!("a TCP listener");
    };
    (
        format!("http://{addr}"),
        Running::spawn(|shutdown| bound.run(shutdown)),
    )
}

#[tokio::test]
async fn claims_permissions_and_calls_through_a_real_gateway_are_explained() {
    let idp = Idp::start_default().await;
    let upstream = TestServer::start(axum::Router::new().fallback(|| async { "grid 1" })).await;
    let files = Files::new();
    let env = [("TW_DOCTOR_SECRET", SECRET)];
    let issuer = idp.issuer();
    let profile = profile_toml("agent", &issuer, "agent-basic", "");

    let gw = gateway_toml(&issuer, "\"api\"", "", &upstream.url());
    let (gateway, running) = start_gateway(&gw).await;
    let both = files.write("both.toml", &format!("{profile}\n{gw}"));
    let both = both.to_str().unwrap();

    // 200: claims pass, the rule that allows it is named, in the authz step and in the call's.
    let d = doctor(
        &["--config", both, "--url", &format!("{gateway}/grids/1")],
        &env,
    )
    .await;
    assert_eq!(d.code, Some(0), "{}\n{}", d.stdout, d.stderr);
    assert_eq!(d.outcome("claims").0, "pass");
    assert_eq!(d.outcome("authz").0, "pass");
    d.assert_says("authz", "grids-read");
    assert_eq!(d.outcome("call").0, "pass");
    assert!(d.text_of("call").contains("HTTP 200") && d.text_of("call").contains("grids-read"));

    // 403: the permission is missing; the doctor predicts it and the gateway's answer names the
    // deciding rule.
    let d = doctor(
        &[
            "--config",
            both,
            "--url",
            &format!("{gateway}/grids/1"),
            "--method",
            "POST",
        ],
        &env,
    )
    .await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("authz", "missing_permission");
    d.assert_says("authz", "grids:write");
    d.assert_fails("call", "forbidden_403");
    d.assert_says("call", "deciding rule: grids-write");

    // The same without calling anything: --path.
    let d = doctor(
        &["--config", both, "--path", "/grids/1", "--method", "POST"],
        &env,
    )
    .await;
    d.assert_fails("authz", "missing_permission");
    assert!(
        d.json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != "call")
    );

    // 502: the route's upstream is down.
    let d = doctor(
        &["--config", both, "--url", &format!("{gateway}/down/x")],
        &env,
    )
    .await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("call", "upstream_5xx");
    d.assert_says("call", "502");

    // Connection refused at the URL itself.
    let nothing = format!("http://127.0.0.1:{}/grids/1", tw_testkit::free_port());
    let d = doctor(&["--config", both, "--url", &nothing], &env).await;
    d.assert_fails("call", "connection_refused");

    // Audience: the gateway the doctor checks against demands another one.
    let other_aud = gateway_toml(&issuer, "\"grids-api\"", "", &upstream.url());
    let aud_file = files.write("aud.toml", &format!("{profile}\n{other_aud}"));
    let d = doctor(&["--config", aud_file.to_str().unwrap()], &env).await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("claims", "audience_mismatch");
    let t = d.text_of("claims");
    assert!(t.contains("api") && t.contains("grids-api"), "{t}");

    // azp: the client is not among the allowed ones (the gateway given by --gateway-config).
    let azp_gw = files.write(
        "azp-gateway.toml",
        &gateway_toml(&issuer, "\"api\"", "\"smartem-frontend\"", &upstream.url()),
    );
    let only_profile = files.write("profile.toml", &profile);
    let d = doctor(
        &[
            "--config",
            only_profile.to_str().unwrap(),
            "--gateway-config",
            azp_gw.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    d.assert_fails("claims", "azp_not_allowed");
    d.assert_says("claims", "agent-basic");

    // 401: a gateway that demands another audience, called without a local [gateway] (the doctor
    // reads the challenge).
    let (strict, strict_running) = start_gateway(&other_aud).await;
    let d = doctor(
        &[
            "--config",
            only_profile.to_str().unwrap(),
            "--url",
            &format!("{strict}/grids/1"),
        ],
        &env,
    )
    .await;
    assert_eq!(d.code, Some(1));
    d.assert_fails("call", "unauthorized_401");
    d.assert_says("call", "invalid_token");
    assert!(!d.stdout.contains(SECRET));

    // A custom login endpoint whose answer holds the token elsewhere than configured.
    let login = TestServer::start(axum::Router::new().fallback(|| async {
        axum::Json(serde_json::json!({ "data": { "jwt": "opaque-login-token" } }))
    }))
    .await;
    let custom = files.write(
        "custom.toml",
        &format!(
            r#"[profiles.portal]
custom = {{ url = "{}/getAuthToken", token_pointer = "/token", secret_fields = {{ password = {{ env = "TW_DOCTOR_SECRET" }} }} }}
"#,
            login.url()
        ),
    );
    let d = doctor(&["--config", custom.to_str().unwrap()], &env).await;
    d.assert_fails("token", "custom_login_malformed");
    d.assert_says("token", "token_pointer");
    assert!(!d.stdout.contains("opaque-login-token"));

    strict_running.stop().await;
    running.stop().await;
}
