//! Shared harness: the real test IdP, a real gateway on 127.0.0.1:0, real upstream servers, and
//! (for the end-to-end tests) a real agent whose proxy feeds the gateway.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tw_config::{GatewayConfig, ListenAddr};
use tw_core::{Clock, Error, SystemClock};
use tw_gateway::{Decision, Gateway};
use tw_testkit::{Idp, Running, TestServer};
use tw_verify::Verifier;

pub const CLIENT_ID: &str = "agent-basic";
pub const CLIENT_SECRET: &str = "agent-basic-secret";
/// Upper bound for any single wait, so a bug fails the test instead of hanging it.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Parses a `[gateway]` document (the file format, with its validation).
pub fn gateway_config(toml: &str) -> GatewayConfig {
    tw_config::load_str(toml, "gateway.toml")
        .unwrap_or_else(|e| panic!("config: {e}\n{toml}"))
        .gateway
        .expect("a [gateway] section")
}

/// `[gateway]` for the IdP's issuer, plus `extra` (routes, exempt paths, ...).
pub fn idp_gateway_toml(idp: &Idp, issuer_extra: &str, extra: &str) -> String {
    format!(
        r#"[gateway]
listen = "127.0.0.1:0"
{extra_top}

[[gateway.issuers]]
issuer = "{issuer}"
audiences = ["api"]
{issuer_extra}
"#,
        issuer = idp.issuer(),
        extra_top = extra,
    )
}

/// A running gateway and the means to stop it.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub verifier: Arc<Verifier>,
    running: Running<Error>,
}

impl RunningGateway {
    /// Builds the verifier, loads the keys (so tests start ready), binds and serves.
    pub async fn start(cfg: &GatewayConfig) -> Self {
        Self::start_with(cfg, Arc::new(SystemClock), None, None).await
    }

    pub async fn start_with(
        cfg: &GatewayConfig,
        clock: Arc<dyn Clock>,
        decision: Option<Arc<dyn Decision>>,
        metrics: Option<tw_http::MetricsRender>,
    ) -> Self {
        let verifier = Arc::new(Verifier::new(&cfg.verifier_settings(), clock).expect("verifier"));
        verifier.start().await;
        let mut gateway = match decision {
            Some(d) => Gateway::new_with_decision(&cfg.gateway_settings(), verifier.clone(), d),
            None => Gateway::new(&cfg.gateway_settings(), verifier.clone()),
        }
        .expect("gateway");
        if let Some(m) = metrics {
            gateway = gateway.with_metrics(m);
        }
        let bound = gateway.bind().await.expect("bind");
        let addr = tcp(bound.local_addr());
        Self {
            addr,
            verifier,
            running: Running::spawn(|shutdown| bound.run(shutdown)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// The address of a TCP listener (tests never use unix sockets here).
fn tcp(addr: ListenAddr) -> SocketAddr {
    match addr {
        ListenAddr::Tcp(a) => a,
        ListenAddr::Unix(p) => panic!("unix socket {}", p.display()),
    }
}

pub fn client() -> reqwest::Client {
    tw_testkit::http_client(LIMIT)
}

/// A client-credentials access token from the test IdP.
pub async fn idp_token(idp: &Idp, client_id: &str, secret: &str) -> String {
    idp.client_credentials_token(client_id, secret).await
}

pub async fn json_of(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One `[[gateway.routes]]` entry sending `prefix` to `upstream`.
pub fn route_toml(prefix: &str, upstream: &str) -> String {
    format!("\n[[gateway.routes]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n")
}

/// The default test IdP, an echo upstream, and a gateway config for the IdP's issuer: `top`
/// (exempt paths, ...) in `[gateway]`, and one route sending `prefix` to the upstream.
pub async fn idp_and_routed_upstream(top: &str, prefix: &str) -> (Idp, Upstream, GatewayConfig) {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let extra = format!("{top}\n{}", route_toml(prefix, &up.url()));
    let cfg = gateway_config(&idp_gateway_toml(&idp, "", &extra));
    (idp, up, cfg)
}

/// Sends `req`; a transport error fails the test (the client bounds the wait by [`LIMIT`]).
pub async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.expect("send")
}

/// The bare RFC 6750 challenge: no credentials were offered.
pub const BARE_CHALLENGE: &str = "Bearer realm=\"tokenwarden\"";

/// The `WWW-Authenticate` value of an answer (empty when there is none).
pub fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(http::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

/// Checks a JSON refusal: its status and its stable error code. Returns the body for more checks.
pub async fn assert_refused(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status(), status, "expected {status} {code}");
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

/// Checks the identity headers an upstream saw for the IdP's `agent-basic` service account
/// (`info`): subject, client id, service-account flag and issuer, each exactly once.
pub fn assert_agent_basic_identity(echo: &Value, idp: &Idp, info: &tw_testkit::ClientInfo) {
    assert_eq!(
        echoed_one(echo, "x-auth-subject").as_deref(),
        Some(info.service_account_id.as_str())
    );
    assert_eq!(
        echoed_one(echo, "x-auth-client-id").as_deref(),
        Some(CLIENT_ID)
    );
    assert_eq!(
        echoed_one(echo, "x-auth-service-account").as_deref(),
        Some("true")
    );
    assert_eq!(
        echoed_one(echo, "x-auth-issuer").as_deref(),
        Some(idp.issuer().as_str())
    );
}

/// A real HTTP upstream answering every request with what it saw:
/// `{"method","path","headers":[[name,value],...],"body_len"}`; `/slow` waits 2 s first.
pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    _server: TestServer,
}

impl Upstream {
    pub async fn start() -> Self {
        let requests = Arc::new(AtomicU64::new(0));
        let server =
            TestServer::start(Router::new().fallback(echo).with_state(requests.clone())).await;
        Self {
            addr: server.addr(),
            requests,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn echo(State(requests): State<Arc<AtomicU64>>, req: Request) -> Response {
    requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    if parts.uri.path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "headers": headers,
        "body_len": body.len(),
    }))
    .into_response()
}

/// Every value of header `name` in an echo answer.
pub fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().expect("value").to_owned())
        .collect()
}

/// The one value of header `name` in an echo answer.
pub fn echoed_one(echo: &Value, name: &str) -> Option<String> {
    let all = echoed(echo, name);
    assert!(
        all.len() <= 1,
        "{name} appears {} times: {all:?}",
        all.len()
    );
    all.into_iter().next()
}

/// Sends raw bytes as one HTTP/1.1 request (`Connection: close`) and returns the raw answer.
pub async fn raw_request(addr: SocketAddr, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading everything, e.g. a 431: not an error.
    let _ = s.write_all(head).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .expect("in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw HTTP/1.1 request, byte for byte as written (no client normalizes the target):
/// `method target`, `Connection: close`, then `headers` in order.
pub fn raw_http(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The status code of a raw answer; 0 when there is none.
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A local port with nothing listening on it.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

/// A real tokenwarden agent (profile `api` = the IdP's `agent-basic`) whose proxy sends every
/// path to `upstream` (the gateway), injecting its token.
pub struct FeedingAgent {
    pub proxy: SocketAddr,
    pub broker: Arc<tw_broker::Broker>,
    _dir: tempfile::TempDir,
    running: Running<Error>,
}

impl FeedingAgent {
    pub async fn start(idp: &Idp, upstream: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, CLIENT_SECRET).expect("secret file");
        // One profile, one catch-all proxy route to the gateway.
        let cfg: tw_config::Config = serde_json::from_value(json!({
            "agent": {
                "listen": "127.0.0.1:0",
                "proxy": {
                    "listen": "127.0.0.1:0",
                    "routes": [{ "prefix": "/", "upstream": upstream, "profile": "api" }],
                },
            },
            "profiles": { "api": {
                "token_url": idp.token_url(),
                "client_id": CLIENT_ID,
                "client_secret": { "file": secret },
            }},
        }))
        .expect("agent config");
        tw_config::validate_config(&cfg, "agent config").expect("valid agent config");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let broker = Arc::new(
            tw_broker::Broker::from_profiles(&cfg.profiles, clock.clone()).expect("broker"),
        );
        let bound = tw_agent::Agent::new(&cfg.agent, broker.clone(), None)
            .with_clock(clock)
            .bind()
            .await
            .expect("bind agent");
        let proxy = tcp(bound.proxy_addr().expect("proxy"));
        let agent = Self {
            proxy,
            broker,
            _dir: dir,
            running: Running::spawn(|shutdown| bound.run(shutdown)),
        };
        agent.token().await;
        agent
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// The profile's current token (waits for the first one).
    pub async fn token(&self) -> String {
        let mut rx = self.broker.profile("api").expect("profile").subscribe();
        let tok = tokio::time::timeout(LIMIT, rx.wait_for(|t| t.is_some()))
            .await
            .expect("a token within the limit")
            .expect("profile alive")
            .clone()
            .expect("some");
        tok.access_token.expose().to_owned()
    }

    /// Fetches a new token now (as after a rotation at the IdP).
    pub async fn refresh(&self) -> String {
        let t = self
            .broker
            .profile("api")
            .expect("profile")
            .force_refresh(None)
            .await
            .expect("refresh");
        t.access_token.expose().to_owned()
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}
