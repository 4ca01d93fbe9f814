//! `tokenwarden dev-issuer` as a user runs it: a child process serving discovery and tokens that
//! `token get` accepts, reloading its realm file on SIGHUP, and refusing bad input with exit 2.

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .args(["dev-issuer", "--listen", "127.0.0.1:0", "--realm-file"])
            .arg(realm_file)
            .env_remove("TOKENWARDEN_LOG")
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
        .env_remove("TOKENWARDEN_CONFIG")
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
