use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::config::IdpConfig;
use crate::paths::idp_dir;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
const STDERR_CAP: usize = 1 << 20;

/// An IdP endpoint that faults can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Jwks,
    Discovery,
    Introspect,
    Revoke,
    Userinfo,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Jwks => "jwks",
            Endpoint::Discovery => "discovery",
            Endpoint::Introspect => "introspect",
            Endpoint::Revoke => "revoke",
            Endpoint::Userinfo => "userinfo",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum FaultMode {
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<Value>,
    },
    Garbled {
        body: Option<String>,
    },
    Delay(Duration),
    Reset,
    Hold(Duration),
}

/// A fault for [`Idp::fault`]: what the endpoint does instead of (or before)
/// answering normally, for the next `times(n)` requests or until cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    endpoint: Endpoint,
    mode: FaultMode,
    count: Option<u32>,
}

impl Fault {
    /// Answer with this HTTP status and an OAuth-style JSON error body.
    pub fn status(endpoint: Endpoint, status: u16) -> Self {
        Self {
            endpoint,
            mode: FaultMode::Status {
                status,
                retry_after: None,
                body: None,
            },
            count: None,
        }
    }

    /// 200 with a body that is not JSON (or `body(..)`'s text).
    pub fn garbled(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            mode: FaultMode::Garbled { body: None },
            count: None,
        }
    }

    /// Wait this long, then answer normally.
    pub fn delay(endpoint: Endpoint, delay: Duration) -> Self {
        Self {
            endpoint,
            mode: FaultMode::Delay(delay),
            count: None,
        }
    }

    /// Reset the connection without answering.
    pub fn reset(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            mode: FaultMode::Reset,
            count: None,
        }
    }

    /// Process the request normally (a refresh token is rotated and spent, a code redeemed), then
    /// hold the finished answer back this long before sending it. [`IdpStats::held_responses`]
    /// counts answers ready and held, so a test knows the grant was processed while its client
    /// still waits — and can kill that client then.
    pub fn hold(endpoint: Endpoint, hold: Duration) -> Self {
        Self {
            endpoint,
            mode: FaultMode::Hold(hold),
            count: None,
        }
    }

    /// Adds a `Retry-After` header (status faults only), e.g. `"7"` or an HTTP date.
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        if let FaultMode::Status { retry_after, .. } = &mut self.mode {
            *retry_after = Some(value.into());
        }
        self
    }

    /// Replaces the JSON error body (status faults only).
    pub fn body(mut self, value: Value) -> Self {
        if let FaultMode::Status { body, .. } = &mut self.mode {
            *body = Some(value);
        }
        self
    }

    /// Replaces the garbled body's text (garbled faults only).
    pub fn garbled_body(mut self, text: impl Into<String>) -> Self {
        if let FaultMode::Garbled { body } = &mut self.mode {
            *body = Some(text.into());
        }
        self
    }

    /// Affect only the next `n` requests (default: all until cleared).
    pub fn times(mut self, n: u32) -> Self {
        self.count = Some(n);
        self
    }

    fn to_json(&self) -> Value {
        let mut v = json!({ "endpoint": self.endpoint.as_str(), "count": self.count });
        let o = v.as_object_mut().expect("object");
        match &self.mode {
            FaultMode::Status {
                status,
                retry_after,
                body,
            } => {
                o.insert("mode".into(), json!("status"));
                o.insert("status".into(), json!(status));
                o.insert("retry_after".into(), json!(retry_after));
                o.insert("body".into(), body.clone().unwrap_or(Value::Null));
            }
            FaultMode::Garbled { body } => {
                o.insert("mode".into(), json!("garbled"));
                o.insert("body".into(), json!(body));
            }
            FaultMode::Delay(d) | FaultMode::Hold(d) => {
                let mode = if matches!(self.mode, FaultMode::Hold(_)) {
                    "hold"
                } else {
                    "delay"
                };
                o.insert("mode".into(), json!(mode));
                o.insert(
                    "delay_ms".into(),
                    json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                );
            }
            FaultMode::Reset => {
                o.insert("mode".into(), json!("reset"));
            }
        }
        v
    }
}

/// Request counters of the IdP (`GET /stats`). Requests answered by an
/// injected fault are counted too.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct IdpStats {
    pub token_requests: u64,
    /// Keyed by client id (from Basic auth, form `client_id`, or the
    /// assertion's `sub`/`iss`); `"(none)"` when none could be found.
    pub token_requests_by_client: BTreeMap<String, u64>,
    /// Keyed by `grant_type`.
    pub token_requests_by_grant: BTreeMap<String, u64>,
    pub jwks_requests: u64,
    pub discovery_requests: u64,
    pub introspection_requests: u64,
    pub revocation_requests: u64,
    pub userinfo_requests: u64,
    /// Answers processed and then held back by a [`Fault::hold`].
    pub held_responses: u64,
    /// Refresh grants that presented an already-rotated refresh token: refused (and the grant
    /// revoked) under strict rotation, accepted under [`Idp::set_refresh_token_reuse_grace`].
    pub refresh_token_reuse: u64,
}

impl IdpStats {
    /// Token requests made by this client.
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.token_requests_by_client
            .get(client_id)
            .copied()
            .unwrap_or(0)
    }
}

/// A client as the IdP sees it (`GET /clients`; never includes secrets).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClientInfo {
    pub client_id: String,
    pub auth_method: String,
    /// `sub` of this client's service-account tokens.
    pub service_account_id: String,
    /// `preferred_username` of its service-account tokens.
    pub service_account_username: String,
    pub realm_roles: Vec<String>,
    pub client_roles: BTreeMap<String, Vec<String>>,
    pub grants: Vec<String>,
    /// kids (RFC 7638 thumbprints) of the keys trusted for `private_key_jwt`.
    pub key_ids: Vec<String>,
    pub disabled: bool,
}

/// A user as the IdP sees it (`GET /users`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UserInfo {
    pub username: String,
    /// The user's `sub`.
    pub id: String,
    pub realm_roles: Vec<String>,
}

#[derive(Deserialize)]
struct Ready {
    ready: bool,
    port: u16,
    control_port: u16,
    issuer: String,
}

/// A running test IdP (Node `oidc-provider`, Keycloak layout) and a handle on
/// its control API. The process is killed when this is dropped, and exits by
/// itself if the test process dies (it watches its stdin pipe).
pub struct Idp {
    child: Child,
    // Held open: the IdP exits when this pipe closes.
    _stdin: ChildStdin,
    _config_dir: tempfile::TempDir,
    port: u16,
    control_port: u16,
    issuer: String,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.issuer)
            .field("control_port", &self.control_port)
            .finish_non_exhaustive()
    }
}

fn spawn_collector<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    sink: Arc<Mutex<String>>,
    echo: bool,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[test-idp] {line}");
            }
            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
            if s.len() < STDERR_CAP {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
}

struct Spawned {
    child: Child,
    stdin: ChildStdin,
    ready: Ready,
    stderr: Arc<Mutex<String>>,
}

/// Starts one IdP process and waits for its ready line. `Err` (with the
/// process killed) if it stalls; panics if it fails outright.
async fn spawn_once(
    node: &str,
    server: &Path,
    dir: &Path,
    config_file: &Path,
    timeout: Duration,
) -> Result<Spawned, String> {
    let mut child = Command::new(node)
        .arg(server)
        .arg("--config")
        .arg(config_file)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{node}` for the test IdP: {e} (is Node.js 20+ installed? TW_NODE overrides)")
        });

    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr = Arc::new(Mutex::new(String::new()));
    let echo = std::env::var("TW_IDP_LOG").is_ok_and(|v| v == "1");
    spawn_collector(stderr_pipe, stderr.clone(), echo);

    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    let read = tokio::time::timeout(timeout, stdout.read_line(&mut line)).await;
    let stderr_now = || stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match read {
        Err(_) => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Err(format!(
                "no ready line within {timeout:?}; its stderr:\n{}",
                stderr_now()
            ));
        }
        Ok(Err(e)) => panic!("reading the test IdP's stdout: {e}"),
        Ok(Ok(0)) => {
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            // Give the stderr collector a moment to catch the reason.
            tokio::time::sleep(Duration::from_millis(100)).await;
            panic!(
                "test IdP exited before it was ready ({status:?}); its stderr:\n{}",
                stderr_now()
            );
        }
        Ok(Ok(_)) => {}
    }
    let ready: Ready = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!(
            "unexpected first line from the test IdP ({e}): {line:?}; stderr:\n{}",
            stderr_now()
        )
    });
    assert!(ready.ready, "test IdP said it is not ready: {line}");
    // Nothing more is expected on stdout; drain it so the pipe never fills.
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink).await;
    });
    Ok(Spawned {
        child,
        stdin,
        ready,
        stderr,
    })
}

impl Idp {
    /// Starts an IdP with the default clients and users.
    pub async fn start_default() -> Idp {
        Self::start(IdpConfig::default()).await
    }

    /// Starts an IdP. Panics (with the reason and the IdP's stderr) if it
    /// cannot start, e.g. when `npm ci` was not run in `testing/idp`.
    ///
    /// `TW_NODE` names the node binary (default `node`); `TW_IDP_LOG=1`
    /// echoes the IdP's stderr; `TW_IDP_VERBOSE=1` makes it log every request.
    pub async fn start(cfg: IdpConfig) -> Idp {
        let dir = idp_dir();
        let server = dir.join("server.mjs");
        assert!(
            server.is_file(),
            "test IdP not found at {} (is the repository laid out as expected? TW_REPO_ROOT overrides)",
            server.display()
        );
        assert!(
            dir.join("node_modules").join("oidc-provider").is_dir(),
            "the test IdP's npm dependencies are missing in {}: run `npm ci` in testing/idp (the README test command does this)",
            dir.display()
        );

        let config_dir = tempfile::tempdir().expect("create a temp dir for the IdP config");
        let config_file = config_dir.path().join("idp-config.json");
        std::fs::write(
            &config_file,
            serde_json::to_vec_pretty(&cfg).expect("serialise IdP config"),
        )
        .expect("write IdP config");

        let node = std::env::var("TW_NODE").unwrap_or_else(|_| "node".into());
        // A start that stalls (a loaded machine, or a hang inside node) is
        // retried once with a fresh process before giving up.
        let mut stalled = String::new();
        let mut spawned = None;
        for (attempt, timeout) in [READY_TIMEOUT, READY_TIMEOUT * 2].into_iter().enumerate() {
            match spawn_once(&node, &server, &dir, &config_file, timeout).await {
                Ok(s) => {
                    spawned = Some(s);
                    break;
                }
                Err(why) => {
                    stalled.push_str(&format!("attempt {}: {why}\n", attempt + 1));
                }
            }
        }
        let Some(Spawned {
            child,
            stdin,
            ready,
            stderr,
        }) = spawned
        else {
            panic!("the test IdP did not become ready:\n{stalled}");
        };

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(CONTROL_TIMEOUT)
            .build()
            .expect("build control HTTP client");

        Idp {
            child,
            _stdin: stdin,
            _config_dir: config_dir,
            port: ready.port,
            control_port: ready.control_port,
            issuer: ready.issuer,
            http,
            stderr,
        }
    }

    /// `http://127.0.0.1:<port>/realms/<realm>`
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn control_port(&self) -> u16 {
        self.control_port
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    pub fn token_url(&self) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/protocol/openid-connect/certs", self.issuer)
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/protocol/openid-connect/token/introspect", self.issuer)
    }

    pub fn revocation_url(&self) -> String {
        format!("{}/protocol/openid-connect/revoke", self.issuer)
    }

    pub fn userinfo_url(&self) -> String {
        format!("{}/protocol/openid-connect/userinfo", self.issuer)
    }

    pub fn authorization_url(&self) -> String {
        format!("{}/protocol/openid-connect/auth", self.issuer)
    }

    /// Everything the IdP wrote to stderr so far (at most 1 MiB).
    pub fn stderr_output(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// OS process id of the IdP.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{}", self.control_port, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("test IdP control API {method} {path}: {e}"));
        let status = resp.status();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("test IdP control API {method} {path}: reading body: {e}"));
        assert!(
            status.is_success(),
            "test IdP control API {method} {path} answered {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("test IdP control API {method} {path}: bad JSON ({e}): {text}")
        })
    }

    async fn get(&self, path: &str) -> Value {
        self.control(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn stats(&self) -> IdpStats {
        serde_json::from_value(self.get("/stats").await).expect("stats JSON")
    }

    pub async fn reset_stats(&self) {
        self.post("/stats/reset", json!({})).await;
    }

    /// Injects a fault; it replaces any fault already set on that endpoint.
    pub async fn fault(&self, f: Fault) {
        self.post("/fault", f.to_json()).await;
    }

    /// Clears every injected fault.
    pub async fn clear_faults(&self) {
        self.post("/fault/clear", json!({})).await;
    }

    /// Closes the IdP listener and all its connections: connections are
    /// refused until [`Idp::up`].
    pub async fn down(&self) {
        self.post("/down", json!({})).await;
    }

    /// Listens again, on the same port.
    pub async fn up(&self) {
        self.post("/up", json!({})).await;
    }

    /// Generates a new signing key and signs with it from now on; the old
    /// keys stay in the JWKS when `keep_old`. Returns the new `kid`.
    pub async fn rotate_keys(&self, keep_old: bool) -> String {
        let v = self
            .post("/rotate-keys", json!({ "keep_old": keep_old }))
            .await;
        v["kid"]
            .as_str()
            .expect("kid in rotate-keys answer")
            .to_owned()
    }

    /// `kid`s in the JWKS, the signing one first.
    pub async fn key_ids(&self) -> Vec<String> {
        let v = self.get("/keys").await;
        serde_json::from_value(v["kids"].clone()).expect("kids")
    }

    /// A client-credentials access token for a `client_secret_basic` client (the default clients
    /// `agent-basic` / `agent-basic-secret` and friends). Panics unless the IdP issues one.
    pub async fn client_credentials_token(&self, client_id: &str, secret: &str) -> String {
        let resp = self
            .http
            .post(self.token_url())
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap_or_else(|e| panic!("token request for {client_id}: {e}"));
        let status = resp.status();
        assert!(
            status.is_success(),
            "token request for {client_id}: {status}"
        );
        let v: Value = resp.json().await.expect("token response JSON");
        v["access_token"]
            .as_str()
            .expect("access_token in the token response")
            .to_owned()
    }

    /// Lifetime of access tokens issued from now on.
    pub async fn set_access_token_ttl(&self, secs: u64) {
        self.post("/settings", json!({ "access_token_ttl": secs }))
            .await;
    }

    /// Lifetime of refresh tokens issued from now on.
    pub async fn set_refresh_token_ttl(&self, secs: u64) {
        self.post("/settings", json!({ "refresh_token_ttl": secs }))
            .await;
    }

    /// `true`: like Keycloak's default (`revokeRefreshToken=false`), a refresh still returns a
    /// new refresh token but the presented one stays valid. `false` (the default): strict
    /// one-time refresh tokens; presenting a spent one gives `invalid_grant` and revokes the grant.
    pub async fn set_refresh_token_reuse_grace(&self, grace: bool) {
        self.post("/settings", json!({ "refresh_token_reuse_grace": grace }))
            .await;
    }

    /// Signs `username` in through the authorization endpoint as a browser would: follows the
    /// redirects from `authorization_request` (an authorization URL of this IdP, e.g. a vault's
    /// consent URL), answers the login prompt with `username` (consent is automatic), keeps the
    /// IdP's cookies, and returns the first redirect that leaves the IdP: the client's
    /// `redirect_uri` with `code` and `state` (or `error`). Panics if the IdP answers anything
    /// else.
    pub async fn browser_login(&self, authorization_request: &str, username: &str) -> url::Url {
        let browser = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CONTROL_TIMEOUT)
            .build()
            .expect("build browser client");
        let realm = url::Url::parse(&self.issuer).expect("issuer URL");
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut next = url::Url::parse(authorization_request).expect("authorization URL");
        for _ in 0..12 {
            if next.origin() != realm.origin() || !next.path().starts_with(realm.path()) {
                return next;
            }
            if next.path().contains("/interaction/") && next.query().is_none() {
                next.query_pairs_mut().append_pair("username", username);
            }
            let jar = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let resp = browser
                .get(next.clone())
                .header(reqwest::header::COOKIE, jar)
                .send()
                .await
                .unwrap_or_else(|e| panic!("browser GET {}: {e}", next.path()));
            for set in resp.headers().get_all(reqwest::header::SET_COOKIE) {
                let text = set.to_str().unwrap_or_default();
                let pair = text.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    let expired = text
                        .to_ascii_lowercase()
                        .contains("expires=thu, 01 jan 1970");
                    if value.is_empty() || expired {
                        cookies.remove(name.trim());
                    } else {
                        cookies.insert(name.trim().to_owned(), value.to_owned());
                    }
                }
            }
            let status = resp.status();
            let Some(location) = resp.headers().get(reqwest::header::LOCATION).cloned() else {
                let body = resp.text().await.unwrap_or_default();
                panic!(
                    "the test IdP answered {status} without a redirect at {}: {body}",
                    next.path()
                );
            };
            let location = location.to_str().expect("ASCII Location");
            next = next.join(location).expect("Location URL");
        }
        panic!("too many redirects signing {username} in");
    }

    /// A refresh token for `client_id` and `username`, usable once at the
    /// token endpoint (`grant_type=refresh_token`), which rotates it.
    pub async fn mint_refresh_token(&self, client_id: &str, username: &str, scope: &str) -> String {
        let v = self
            .post(
                "/refresh-token",
                json!({ "client_id": client_id, "username": username, "scope": scope }),
            )
            .await;
        v["refresh_token"]
            .as_str()
            .expect("refresh_token in answer")
            .to_owned()
    }

    /// A user's access token through `client_id` (a `client_secret_basic` client allowed the
    /// `refresh_token` grant): a refresh token minted for `username`, redeemed once. Its `sub`
    /// and `preferred_username` are the user's, its `azp` the client. Panics unless issued.
    pub async fn user_access_token(&self, client_id: &str, secret: &str, username: &str) -> String {
        let refresh = self
            .mint_refresh_token(client_id, username, "openid offline_access")
            .await;
        let resp = self
            .http
            .post(self.token_url())
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("user token request for {username} via {client_id}: {e}"));
        let status = resp.status();
        assert!(
            status.is_success(),
            "user token request for {username} via {client_id}: {status}"
        );
        let v: Value = resp.json().await.expect("token response JSON");
        v["access_token"]
            .as_str()
            .expect("access_token in the token response")
            .to_owned()
    }

    pub async fn set_client_secret(&self, client: &str, secret: &str) {
        self.post(
            &format!("/clients/{client}/secret"),
            json!({ "secret": secret }),
        )
        .await;
    }

    /// Token requests of this client fail from now on, as for a disabled
    /// Keycloak client: 401 `invalid_client`.
    pub async fn disable_client(&self, client: &str) {
        self.post(&format!("/clients/{client}/disable"), json!({}))
            .await;
    }

    pub async fn enable_client(&self, client: &str) {
        self.post(&format!("/clients/{client}/enable"), json!({}))
            .await;
    }

    pub async fn clients(&self) -> Vec<ClientInfo> {
        serde_json::from_value(self.get("/clients").await).expect("clients JSON")
    }

    /// Panics if there is no such client.
    pub async fn client_info(&self, client_id: &str) -> ClientInfo {
        self.clients()
            .await
            .into_iter()
            .find(|c| c.client_id == client_id)
            .unwrap_or_else(|| panic!("the test IdP has no client {client_id}"))
    }

    pub async fn users(&self) -> Vec<UserInfo> {
        serde_json::from_value(self.get("/users").await).expect("users JSON")
    }

    /// The `sub` of a user. Panics if there is no such user.
    pub async fn user_id(&self, username: &str) -> String {
        self.users()
            .await
            .into_iter()
            .find(|u| u.username == username)
            .unwrap_or_else(|| panic!("the test IdP has no user {username}"))
            .id
    }

    /// Stops the IdP now and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
