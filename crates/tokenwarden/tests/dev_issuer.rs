//! `tokenwarden dev-issuer` as a user runs it: a child process serving discovery and tokens that
//! `token get` accepts, reloading its realm file on SIGHUP, refusing bad input with exit 2, and
//! exposed to other hosts only when asked to, with its `/dev` controls kept to loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tw_testkit::repo_root;

/// The child process and its stdout lines as they come.
struct DevIssuer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl DevIssuer {
    fn start(realm_file: &std::path::Path) -> Self {
        Self::start_with(realm_file, &["--listen", "127.0.0.1:0"])
    }

    fn start_with(realm_file: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .arg("dev-issuer")
            .args(args)
            .arg("--realm-file")
            .arg(realm_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tokenwarden dev-issuer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Lines up to and including the first that contains `needle`.
    fn read_until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no line with {needle:?}; got {seen:#?}"));
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token(token_url: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(token_url)
        .basic_auth("demo-agent", Some("demo-agent-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    let payload = body["access_token"]
        .as_str()
        .expect("token")
        .split('.')
        .nth(1)
        .expect("payload")
        .to_owned();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("claims")
}

fn roles(claims: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(claims["realm_access"]["roles"].clone()).expect("roles")
}

#[tokio::test]
async fn serves_discovery_and_tokens_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("demo-realm.json");
    let original = std::fs::read_to_string(repo_root().join("examples/realms/demo-realm.json"))
        .expect("demo realm");
    std::fs::write(&file, &original).expect("write realm");

    let server = DevIssuer::start(&file);
    let start = server.read_until("token URL");
    let text = start.join("\n");
    assert!(text.contains("realm \"demo\" from"), "{text}");
    assert!(text.contains("custom authentication flow"), "{text}");
    let issuer = start
        .iter()
        .find_map(|l| l.trim().strip_prefix("issuer"))
        .expect("issuer line")
        .trim()
        .to_owned();
    let token_url = start
        .iter()
        .find_map(|l| l.trim().strip_prefix("token URL"))
        .expect("token URL line")
        .trim()
        .to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");

    let discovery: serde_json::Value =
        reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["token_endpoint"], token_url.as_str());

    let before = token(&token_url).await;
    assert!(!roles(&before).contains(&"attributes-writer".to_owned()));

    // The broker's own client accepts it too (discovery, then client_secret_basic).
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "token",
            "get",
            "--issuer",
            &issuer,
            "--client-id",
            "demo-agent",
        ])
        .args(["--client-secret-env", "TW_DEMO_SECRET"])
        .env("TW_DEMO_SECRET", "demo-agent-secret")
        .output()
        .expect("token get");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );

    // A new role in the file shows in the next token after SIGHUP.
    let mut realm: serde_json::Value = serde_json::from_str(&original).expect("json");
    realm["users"][0]["realmRoles"] = serde_json::json!(["lab-agent", "attributes-writer"]);
    std::fs::write(&file, realm.to_string()).expect("rewrite realm");
    server.hangup();
    server.read_until("reloaded:");
    server.read_until("token URL");
    let after = token(&token_url).await;
    assert!(roles(&after).contains(&"attributes-writer".to_owned()));
}

#[test]
fn unloadable_realm_file_exits_2_naming_file_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.json");
    std::fs::write(&file, r#"{"realm": "x", "clients": [{"clientId": 7}]}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["dev-issuer", "--listen", "127.0.0.1:0", "--realm-file"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.json: $.clients[0].clientId"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["dev-issuer", "--realm-file"])
        .arg(&file)
        .args(["--access-token-lifetime", "soon"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

fn demo_realm() -> std::path::PathBuf {
    repo_root().join("examples/realms/demo-realm.json")
}

/// Runs a dev issuer expected to refuse its arguments; one that serves instead is stopped.
fn run_dev_issuer(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .arg("dev-issuer")
        .args(args)
        .arg("--realm-file")
        .arg(demo_realm())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tokenwarden dev-issuer");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dev-issuer {args:?} is serving instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_listen_address_other_hosts_reach_needs_allow_remote_and_a_public_url() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = run_dev_issuer(&["--listen", listen]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("reachable from other hosts"), "{stderr}");
        assert!(stderr.contains("no authentication"), "{stderr}");
        assert!(stderr.contains("--allow-remote"), "{stderr}");

        // Allowed, but 0.0.0.0 is no issuer a client can reach.
        let out = run_dev_issuer(&["--listen", listen, "--allow-remote"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("--public-url"), "{stderr}");
    }
}

/// This machine's address on its default route, if it has one (no packet is sent).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn with_allow_remote_tokens_name_the_public_url_and_dev_controls_stay_loopback_only() {
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .expect("free port")
        .local_addr()
        .expect("port")
        .port();
    let public = format!("http://localhost:{port}");
    let listen = format!("0.0.0.0:{port}");
    let server = DevIssuer::start_with(
        &demo_realm(),
        &[
            "--listen",
            &listen,
            "--allow-remote",
            "--public-url",
            &public,
        ],
    );
    let start = server.read_until("token URL").join("\n");
    assert!(
        start.contains(&format!("issuer     {public}/realms/demo")),
        "{start}"
    );
    let token_url = format!("http://127.0.0.1:{port}/realms/demo/protocol/openid-connect/token");
    let claims = token(&token_url).await;
    assert_eq!(claims["iss"], format!("{public}/realms/demo"));

    let http = reqwest::Client::new();
    let reload = |host: String| http.post(format!("http://{host}:{port}/dev/reload")).send();
    let local = reload("127.0.0.1".into()).await.expect("reload");
    assert_eq!(local.status(), 200);
    match non_loopback_address() {
        Some(ip) => {
            let host = match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            };
            let remote = reload(host)
                .await
                .expect("reload from a non-loopback address");
            assert_eq!(remote.status(), 403);
            let body: serde_json::Value = remote.json().await.expect("json");
            assert_eq!(body["error"]["code"], "dev_control_refused", "{body}");
        }
        None => eprintln!(
            "no non-loopback address here; the remote refusal is covered in tw-devissuer's tests"
        ),
    }
}
