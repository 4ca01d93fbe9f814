//! Shared harness: a real test IdP, a real agent on 127.0.0.1:0, real upstream servers.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;
use tw_agent::{Agent, BoundAgent};
use tw_broker::{Broker, IssuedToken};
use tw_config::ListenAddr;
use tw_core::{Clock, Error};
use tw_testkit::{Idp, IdpConfig, Running, TestServer};

pub const CLIENT_ID: &str = "agent-basic";
pub const CLIENT_SECRET: &str = "agent-basic-secret";
/// Lifetime of the IdP's tokens: long enough that no background refresh happens during a test.
pub const TOKEN_TTL: u64 = 600;
/// Upper bound for any single wait in a test, so a bug fails the test instead of hanging it.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A test IdP plus a directory holding the client secret file (secrets are referenced, never
/// written into the config).
pub struct Harness {
    pub idp: Idp,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        let idp = Idp::start(IdpConfig::default().access_token_ttl(TOKEN_TTL)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("client-secret"), CLIENT_SECRET).expect("secret file");
        Self { idp, dir }
    }

    /// A `[profiles.<name>]` section for the IdP's `agent-basic` client.
    pub fn profile_toml(&self, name: &str) -> String {
        format!(
            r#"
[profiles.{name}]
token_url = "{token_url}"
client_id = "{CLIENT_ID}"
client_secret = {{ file = "{secret}" }}
"#,
            token_url = self.idp.token_url(),
            secret = self.dir.path().join("client-secret").display(),
        )
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub async fn token_requests(&self) -> u64 {
        self.idp.stats().await.token_requests_for(CLIENT_ID)
    }
}

pub fn load(toml: &str) -> tw_config::Config {
    tw_config::load_str(toml, "test.toml").unwrap_or_else(|e| panic!("config: {e}\n{toml}"))
}

/// A running agent and the means to stop it.
pub struct RunningAgent {
    pub api: ListenAddr,
    /// The proxy's TCP address, one a client can connect to (`0.0.0.0` becomes `127.0.0.1`).
    pub proxy: Option<SocketAddr>,
    /// The proxy's listener as bound (TCP or a unix socket).
    pub proxy_listen: Option<ListenAddr>,
    pub broker: Arc<Broker>,
    running: Running<Error>,
}

/// The agent of `toml`, bound but not running: the error if it refuses to start.
pub async fn bind_agent(toml: &str, clock: Arc<dyn Clock>) -> Result<BoundAgent, Error> {
    bind_config(&load(toml), clock).await
}

/// [`bind_agent`] for a configuration built or changed in code (skipping load-time checks).
pub async fn bind_config(
    cfg: &tw_config::Config,
    clock: Arc<dyn Clock>,
) -> Result<BoundAgent, Error> {
    let broker = Arc::new(Broker::from_profiles(&cfg.profiles, clock.clone()).expect("broker"));
    Agent::new(&cfg.agent, broker, Some(Arc::new(|| "# test\n".to_owned())))
        .with_clock(clock)
        .bind()
        .await
}

/// An address a client can connect to: the wildcard becomes the loopback of its family.
pub fn connectable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, a.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, a.port())),
        _ => a,
    }
}

impl RunningAgent {
    pub async fn start(toml: &str, clock: Arc<dyn Clock>) -> Self {
        let cfg = load(toml);
        let broker = Arc::new(Broker::from_profiles(&cfg.profiles, clock.clone()).expect("broker"));
        let bound = Agent::new(
            &cfg.agent,
            broker.clone(),
            Some(Arc::new(|| "# test\n".to_owned())),
        )
        .with_clock(clock)
        .bind()
        .await
        .expect("bind");
        let api = bound.api_addr();
        let proxy_listen = bound.proxy_addr();
        let proxy = match &proxy_listen {
            Some(ListenAddr::Tcp(a)) => Some(connectable(*a)),
            _ => None,
        };
        Self {
            api,
            proxy,
            proxy_listen,
            broker,
            running: Running::spawn(|shutdown| bound.run(shutdown)),
        }
    }

    /// The token API's TCP address, one a client can connect to.
    pub fn api_tcp(&self) -> SocketAddr {
        match &self.api {
            ListenAddr::Tcp(a) => connectable(*a),
            ListenAddr::Unix(p) => panic!("API on unix socket {}", p.display()),
        }
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api_tcp())
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.expect("proxy configured"))
    }

    /// Waits (without polling) until `profile` holds a token.
    pub async fn token(&self, profile: &str) -> Arc<IssuedToken> {
        let mut rx = self.broker.profile(profile).expect("profile").subscribe();
        let tok = tokio::time::timeout(LIMIT, rx.wait_for(|t| t.is_some()))
            .await
            .expect("a token within the limit")
            .expect("profile alive");
        tok.clone().expect("some")
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

pub fn client() -> reqwest::Client {
    tw_testkit::http_client(LIMIT)
}

pub async fn json_of(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

/// A real HTTP upstream that records requests and can be told to misbehave.
#[derive(Default)]
pub struct UpstreamState {
    pub seen: Mutex<Vec<Seen>>,
    /// `Authorization` values answered with 401.
    pub rejected: Mutex<HashSet<String>>,
    /// The first `Authorization` value seen is added to `rejected`.
    pub reject_first_token: AtomicBool,
    /// Status to answer with instead of 200 (0: none).
    pub status: AtomicU16,
    /// Delay before answering, in ms.
    pub delay_ms: AtomicU64,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
    _server: TestServer,
}

impl Upstream {
    pub async fn start() -> Self {
        let state = Arc::new(UpstreamState::default());
        let app = Router::new()
            .fallback(upstream_handler)
            .with_state(state.clone());
        let server = TestServer::start(app).await;
        Self {
            addr: server.addr(),
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }
}

async fn upstream_handler(State(st): State<Arc<UpstreamState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let authorization = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    st.seen.lock().push(Seen {
        method: parts.method.to_string(),
        path_and_query: path_and_query.clone(),
        authorization: authorization.clone(),
        headers: headers.clone(),
        body_len: body.len(),
    });
    let delay = st.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(auth) = &authorization {
        let mut rejected = st.rejected.lock();
        if st.reject_first_token.swap(false, Ordering::SeqCst) {
            rejected.insert(auth.clone());
        }
        if rejected.contains(auth) {
            return (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer error=\"invalid_token\"")],
                "token rejected",
            )
                .into_response();
        }
    }
    let status = match st.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s).expect("status"),
    };
    let echo = json!({
        "method": parts.method.to_string(),
        "path": path_and_query,
        "authorization": authorization,
        "headers": headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "body_len": body.len(),
    });
    (status, axum::Json(echo)).into_response()
}

/// A local port with nothing listening on it.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits until `cond` holds, checking every 20 ms, at most [`LIMIT`]. For effects of other tasks
/// on the file system, which offer nothing to await.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The claims of a JWT (signature not checked: the IdP is trusted here; the shape is the point).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON claims")
}

/// Where a raw request goes: a TCP address or a unix socket.
#[derive(Debug, Clone)]
pub enum Dest {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

impl From<&ListenAddr> for Dest {
    fn from(a: &ListenAddr) -> Self {
        match a {
            ListenAddr::Tcp(a) => Dest::Tcp(connectable(*a)),
            ListenAddr::Unix(p) => Dest::Unix(p.clone()),
        }
    }
}

/// An HTTP/1.1 answer read off the wire.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// The header block, lower-cased names, as sent.
    pub head: String,
    pub body: String,
}

impl RawReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The stable error code of a JSON error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", self.body))
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `GET target` with exactly the given header lines (bytes as given: no client library
/// normalizes names, merges duplicates or refuses odd bytes) and `Connection: close`.
pub async fn raw_get(dest: &Dest, target: &str, headers: &[(&str, &[u8])]) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!("GET {target} HTTP/1.1\r\n").into_bytes();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.extend_from_slice(b"Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut out = Vec::new();
    let exchange = async {
        match dest {
            Dest::Tcp(a) => {
                let mut s = tokio::net::TcpStream::connect(a).await.expect("connect");
                s.write_all(&req).await.expect("write");
                s.read_to_end(&mut out).await.expect("read");
            }
            Dest::Unix(p) => {
                let mut s = tokio::net::UnixStream::connect(p).await.expect("connect");
                s.write_all(&req).await.expect("write");
                s.read_to_end(&mut out).await.expect("read");
            }
        }
    };
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("in time");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    RawReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
