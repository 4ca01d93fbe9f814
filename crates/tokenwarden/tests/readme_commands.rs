//! Every shell command shown in README.md and in the comments of examples/*.toml, run as written
//! against the dev issuer, so a documented command cannot break silently.
//!
//! What "as written" allows, and nothing more:
//! - hosts of the docs (`keycloak.example.org`, `kc.example`, `api.example`, the upstreams) are
//!   replaced by local servers, and system paths (`/run/...`, `/etc/tokenwarden/...`,
//!   `/var/lib/tokenwarden/...`) are rooted in a temporary directory;
//! - a `...` placeholder (`export AGENT_SECRET=...`) gets the fixture's value;
//! - commands that serve until stopped run in the background until their probe answers 200;
//! - `curl` fails on an HTTP error (`--fail-with-body`), so a 4xx/5xx answer fails the command.
//!
//! A command that cannot run here (a Kubernetes cluster, a container engine, a Keycloak, the
//! test command itself) is listed in [`NOT_RUN`] with the reason. A command that is neither run
//! nor listed fails the test, and so does a list entry that no longer matches any command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tw_testkit::repo_root;

/// The dev issuer holding the fixture realms the docs' hosts are mapped to.
const ISSUER: &str = "http://127.0.0.1:8781";
/// How long a background command may take to answer its probe.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one foreground command may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Commands not run here, by how they start, with the reason.
const NOT_RUN: &[(&str, &str)] = &[
    ("scripts/test.sh", "the test command itself"),
    (
        "scripts/fuzz.sh ",
        "scripts/test.sh runs `scripts/fuzz.sh 20`; longer runs take minutes to hours",
    ),
    (
        "cargo run -p tokenwarden -- demo",
        "serves until Ctrl-C; scripts/test.sh runs `tokenwarden demo --once` and tests/demo.rs checks its story",
    ),
    (
        "cargo install --locked --path crates/tokenwarden",
        "installs into ~/.cargo/bin; the suite runs the binary cargo built (on PATH as `tokenwarden`)",
    ),
    ("kubectl ", "needs a Kubernetes cluster"),
    ("docker compose ", "needs a container engine and images"),
    ("kcadm.sh ", "Keycloak's admin CLI, against a real Keycloak"),
    (
        "cargo bench ",
        "benchmarks take minutes each; run by hand (see Performance)",
    ),
    (
        "scripts/bench.sh",
        "scripts/test.sh runs it briefly (1 s per row, 2,000 tokens); a full run takes minutes",
    ),
    (
        "TW_BENCH_ROUNDS=3 scripts/bench.sh",
        "the full benchmark three times over: about ten minutes",
    ),
];

/// The entry id the README's vault commands show, as a placeholder.
const VAULT_ENTRY_PLACEHOLDER: &str = "ee9e9ad6-...";
/// Why the README's vault commands on an entry id are not run here.
const VAULT_ENTRY: &str = "acts on an entry a user's browser consent made; the dev issuer serves no logins \
     and the vault refuses a service account's refresh token as another caller's; \
     tests/vault_flow.rs sends these requests after a scripted consent at the test IdP";

/// Commands that serve until stopped: how they start, the ports they hold, the probe URL.
const BACKGROUND: &[(&str, &[u16], &str)] = &[
    (
        "tokenwarden agent --config agent.toml",
        &[8790, 8791],
        "http://127.0.0.1:8790/readyz",
    ),
    (
        "tokenwarden gateway --config gateway.toml",
        &[8800],
        "http://127.0.0.1:8800/readyz",
    ),
    (
        "tokenwarden vault serve --config vault.toml",
        &[8820],
        "http://127.0.0.1:8820/health/ready",
    ),
    (
        "tokenwarden dev-issuer --realm-file examples/realms/demo-realm.json",
        &[8780],
        "http://127.0.0.1:8780/realms/demo/.well-known/openid-configuration",
    ),
    (
        "tokenwarden agent --config examples/agent.toml",
        &[8790, 8791],
        "http://127.0.0.1:8790/readyz",
    ),
    (
        "tokenwarden agent --config examples/agent-remote.toml",
        &[8790, 8791],
        "http://127.0.0.1:8790/readyz",
    ),
    (
        "tokenwarden gateway --config examples/gateway.toml",
        &[8800],
        "http://127.0.0.1:8800/readyz",
    ),
    (
        "tokenwarden gateway --config examples/evently-gateway.toml",
        &[8800],
        "http://127.0.0.1:8800/readyz",
    ),
    (
        "tokenwarden vault serve --config examples/vault.toml",
        &[8820],
        "http://127.0.0.1:8820/health/ready",
    ),
];

/// What a command's output must show, beyond exiting 0 (by how the command starts).
const EXPECT: &[(&str, &str)] = &[
    ("tokenwarden --help", "Usage"),
    (
        "curl -s http://127.0.0.1:8790/v1/token/smartem",
        "\"access_token\":\"eyJ",
    ),
    (
        "curl -s -X POST http://127.0.0.1:8790/v1/token/smartem/refresh",
        "\"access_token\":\"eyJ",
    ),
    (
        "curl -s http://127.0.0.1:8791/smartem/grids",
        "upstream GET /api/grids with a bearer token",
    ),
    ("cat ", "eyJ"),
    ("tokenwarden token get --issuer", "eyJ"),
    ("tokenwarden token get --token-url", "\"access_token\""),
    ("tokenwarden token inspect", "smartem-backend"),
    ("tokenwarden accounts list", "evently-confidential-client"),
    (
        "curl -s -H \"Authorization: Bearer $TOKEN\" -G",
        "\"consent_url\"",
    ),
    (
        "curl -s -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8820/v1/entries",
        "\"entries\"",
    ),
    (
        "curl -s -u demo-agent:demo-agent-secret",
        "\"access_token\"",
    ),
    ("tokenwarden doctor", "all checks passed"),
    ("tokenwarden vault keygen", "="),
];

/// Secrets the docs show as `...` or expect in the environment, with the fixture realms' values.
const SECRETS: &[(&str, &str)] = &[
    ("AGENT_SECRET", "smartem-agent-secret"),
    ("SMARTEM_AGENT_SECRET", "smartem-agent-secret"),
    ("FLOWISE_CLIENT_SECRET", "flowise-agent-secret"),
    ("TW_VAULT_CLIENT_SECRET", "token-vault-secret"),
    ("GATEWAY_INTROSPECTION_SECRET", "tokenwarden-gateway-secret"),
    ("RAGBOT_PASSWORD", "ragbot-password"),
];

/// One documented command (continuation lines joined), where it is shown.
#[derive(Debug, Clone)]
struct DocCommand {
    source: String,
    text: String,
}

/// The `sh` fences of a Markdown file (indented ones too), each as its commands.
fn markdown_commands(path: &str, markdown: &str) -> Vec<Vec<DocCommand>> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<(usize, String)>)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match current.take() {
                Some((_, lines)) => blocks.push(join_commands(path, &lines)),
                None if lang.trim() == "sh" => current = Some((line.len() - trimmed.len(), vec![])),
                None if ["bash", "shell", "console", "zsh", "shell-session"]
                    .contains(&lang.trim()) =>
                {
                    panic!(
                        "{path}:{}: a ```{} fence: write shell commands in ```sh fences, which this test runs",
                        n + 1,
                        lang.trim()
                    )
                }
                None => current = Some((usize::MAX, vec![])),
            }
            continue;
        }
        if let Some((indent, lines)) = current.as_mut()
            && *indent != usize::MAX
        {
            lines.push((n + 1, line.get(*indent..).unwrap_or("").to_owned()));
        }
    }
    blocks.retain(|b: &Vec<DocCommand>| !b.is_empty());
    blocks
}

/// Commands in an example file's comments: `# Run:  tokenwarden ...`, `#   tokenwarden ... \`.
fn example_commands(path: &str, toml: &str) -> Vec<Vec<DocCommand>> {
    let mut lines = Vec::new();
    let mut continuing = false;
    for (n, line) in toml.lines().enumerate() {
        let Some(comment) = line.trim_start().strip_prefix('#') else {
            continuing = false;
            continue;
        };
        let body = comment.trim();
        // A command is shown indented (`#   tokenwarden ...`) or after a label (`# Run:  ...`);
        // prose that merely starts with the word `tokenwarden` is not one.
        let command = if comment.starts_with("   ") {
            Some(body)
        } else {
            body.split_once(':')
                .filter(|(label, _)| {
                    label.split(' ').count() <= 2
                        && label.starts_with(|c: char| c.is_ascii_uppercase())
                        && label.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
                })
                .map(|(_, rest)| rest.trim())
        };
        if continuing {
            lines.push((n + 1, body.to_owned()));
        } else if let Some(command) = command
            && ["tokenwarden ", "kcadm.sh ", "curl "]
                .iter()
                .any(|p| command.starts_with(p))
        {
            lines.push((n + 1, command.to_owned()));
        } else {
            continue;
        }
        continuing = body.ends_with('\\');
    }
    join_commands(path, &lines)
        .into_iter()
        .map(|c| vec![c])
        .collect()
}

/// Joins `\` continuations; drops blank lines and comment lines.
fn join_commands(path: &str, lines: &[(usize, String)]) -> Vec<DocCommand> {
    let mut out: Vec<DocCommand> = Vec::new();
    let mut open = false;
    for (n, line) in lines {
        let t = line.trim();
        if !open && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if open {
            let last = out.last_mut().unwrap();
            last.text.push('\n');
            last.text.push_str(line);
        } else {
            out.push(DocCommand {
                source: format!("{path}:{n}"),
                text: line.clone(),
            });
        }
        open = t.ends_with('\\');
    }
    out
}

/// The README's configuration shown in a `toml` fence that contains `marker`.
fn readme_toml(markdown: &str, marker: &str) -> String {
    let mut in_toml = false;
    let mut block = String::new();
    for line in markdown.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            if in_toml && block.contains(marker) {
                return block;
            }
            in_toml = t == "```toml" && !in_toml;
            block.clear();
            continue;
        }
        if in_toml {
            block.push_str(line);
            block.push('\n');
        }
    }
    panic!("README.md has no toml block with `{marker}`");
}

/// The temporary world the commands run in: files, environment, local servers.
struct World {
    dir: PathBuf,
    upstream: String,
    background: Vec<(String, Vec<u16>, Child)>,
    report: String,
    failures: Vec<String>,
    used: BTreeMap<&'static str, usize>,
}

impl World {
    /// Maps the docs' hosts and system paths into this world.
    fn substitute(&self, text: &str) -> String {
        let mut s = text
            .replace("https://keycloak.example.org", ISSUER)
            .replace("https://kc.example", ISSUER)
            .replace("https://api.example", "http://127.0.0.1:8800")
            .replace("https://smartem.example.org", &self.upstream)
            .replace("https://portal.example.com", &self.upstream);
        for port in ["8000", "5000", "8080", "8081"] {
            s = s.replace(&format!("http://127.0.0.1:{port}"), &self.upstream);
        }
        root_system_paths(&s, &self.dir)
    }

    fn write(&self, rel: &str, contents: &str) {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn bash(&self, script: &str, env: &BTreeMap<String, String>) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-o", "pipefail", "-euc", script])
            .current_dir(&self.dir)
            .envs(env)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs one block's commands in order; the block's `export`s carry to its later commands.
    fn run_block(&mut self, block: &[DocCommand], mut env: BTreeMap<String, String>) {
        for command in block {
            let head = command.text.trim();
            if head.contains(VAULT_ENTRY_PLACEHOLDER) {
                *self.used.entry(VAULT_ENTRY_PLACEHOLDER).or_default() += 1;
                let _ = writeln!(
                    self.report,
                    "not run  {}  {}  ({VAULT_ENTRY})",
                    command.source,
                    first_line(head)
                );
                continue;
            }
            if let Some((pattern, reason)) = NOT_RUN.iter().find(|(p, _)| head.starts_with(p)) {
                *self.used.entry(pattern).or_default() += 1;
                let _ = writeln!(
                    self.report,
                    "not run  {}  {}  ({reason})",
                    command.source,
                    first_line(head)
                );
                continue;
            }
            let text = self.substitute(&self.fill_placeholders(head));
            if let Some(rest) = text.strip_prefix("export ") {
                let name = rest.split('=').next().unwrap().to_owned();
                // `export X=$(cmd)` hides a failing cmd; `X=$(cmd)` under `-e` does not.
                let out = self
                    .bash(&format!("{rest}\nprintf '%s' \"${name}\""), &env)
                    .output()
                    .unwrap();
                if out.status.success() {
                    env.insert(name, String::from_utf8(out.stdout).unwrap());
                } else {
                    self.fail(command, &out);
                }
                let _ = writeln!(self.report, "ran      {}  {}", command.source, head);
                continue;
            }
            if let Some((pattern, ports, probe)) = BACKGROUND
                .iter()
                .find(|(p, _, _)| head.starts_with(p) && !head.contains("--once"))
            {
                *self.used.entry(pattern).or_default() += 1;
                self.start_background(command, &text, ports, probe, &env);
                continue;
            }
            if is_server(head) {
                self.failures.push(format!(
                    "{}: `{}` serves until stopped: add it to BACKGROUND with a probe",
                    command.source,
                    first_line(head)
                ));
                continue;
            }
            self.run_foreground(command, &text, &env);
        }
    }

    /// `export NAME=...` gets the fixture's value for NAME.
    fn fill_placeholders(&self, text: &str) -> String {
        // `export NAME=...`, perhaps with a comment after it.
        let placeholder = text.strip_prefix("export ").and_then(|r| {
            let (name, value) = r.split_once('=')?;
            let value = value.split(" #").next().unwrap_or("").trim();
            (value == "...").then_some(name)
        });
        if let Some(name) = placeholder {
            let value = SECRETS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no fixture value for `{text}`: add it to SECRETS"))
                .1;
            return format!("export {name}={value}");
        }
        text.to_owned()
    }

    fn run_foreground(&mut self, command: &DocCommand, text: &str, env: &BTreeMap<String, String>) {
        let mut child = self
            .bash(text, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > COMMAND_LIMIT {
                let _ = child.kill();
                self.failures.push(format!(
                    "{}: `{}` still running after {COMMAND_LIMIT:?}",
                    command.source,
                    first_line(text)
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let expected = EXPECT
            .iter()
            .find(|(p, _)| command.text.trim().starts_with(p));
        if let Some((pattern, _)) = expected {
            *self.used.entry(pattern).or_default() += 1;
        }
        if !out.status.success() {
            self.fail(command, &out);
        } else if let Some((_, want)) = expected
            && !stdout.contains(want)
        {
            self.failures.push(format!(
                "{}: `{}` printed no `{want}`:\n{stdout}\n{}",
                command.source,
                first_line(text),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let _ = writeln!(
            self.report,
            "ran      {}  {}",
            command.source,
            first_line(&command.text)
        );
    }

    fn start_background(
        &mut self,
        command: &DocCommand,
        text: &str,
        ports: &[u16],
        probe: &str,
        env: &BTreeMap<String, String>,
    ) {
        // Whatever holds these ports from an earlier block stops first.
        let (stop, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.background)
            .into_iter()
            .partition(|(_, held, _)| held.iter().any(|p| ports.contains(p)));
        self.background = keep;
        for (_, _, child) in stop {
            terminate(child);
        }
        let log = self
            .dir
            .join(format!("background-{}.log", self.background.len()));
        let child = self
            .bash(&format!("exec {text}"), env)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        self.background
            .push((command.source.clone(), ports.to_vec(), child));
        let started = Instant::now();
        loop {
            if get_status(probe) == Some(200) {
                break;
            }
            let (_, _, child) = self.background.last_mut().unwrap();
            let exited = child.try_wait().unwrap();
            if exited.is_some() || started.elapsed() > START_LIMIT {
                let stderr = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
                self.failures.push(format!(
                    "{}: `{}` did not answer {probe} (exit {exited:?}):\n{stderr}",
                    command.source,
                    first_line(text)
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = writeln!(
            self.report,
            "started  {}  {}  (probe {probe})",
            command.source,
            first_line(&command.text)
        );
    }

    fn fail(&mut self, command: &DocCommand, out: &std::process::Output) {
        self.failures.push(format!(
            "{}: `{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            command.source,
            first_line(&command.text),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for (_, _, child) in self.background.drain(..) {
            terminate(child);
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\\')
        .trim()
}

fn is_server(command: &str) -> bool {
    ["agent", "gateway", "vault serve", "dev-issuer"]
        .iter()
        .any(|s| command.starts_with(&format!("tokenwarden {s} ")))
        && !command.contains("--once")
}

/// `/run/x`, `/etc/tokenwarden/x`, `/var/lib/tokenwarden/x` as paths under `dir` (only where the
/// path starts: after a space, a quote, `=`, `:` or `(`).
fn root_system_paths(text: &str, dir: &Path) -> String {
    let root = dir.display().to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        let at_start = out
            .chars()
            .last()
            .is_none_or(|c| matches!(c, ' ' | '"' | '\'' | '=' | ':' | '(' | '\n'));
        if at_start {
            for prefix in ["/run/", "/etc/tokenwarden/", "/var/lib/tokenwarden/"] {
                if rest.starts_with(prefix) {
                    out.push_str(&root);
                    out.push_str(prefix);
                    rest = &rest[prefix.len()..];
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() && started.elapsed() < START_LIMIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn get_status(url: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            url,
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).parse().ok()
}

/// A client-credentials token of `client` from the fixture issuer.
fn token(realm: &str, client: &str, secret: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args([
            "-s",
            "--fail-with-body",
            "-u",
            &format!("{client}:{secret}"),
        ])
        .args(["-d", "grant_type=client_credentials"])
        .arg(format!(
            "{ISSUER}/realms/{realm}/protocol/openid-connect/token"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "token for {client}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small upstream for the proxies: says what it received, never the token itself.
async fn serve_upstream(listener: tokio::net::TcpListener) {
    use axum::http::{HeaderMap, Method, Uri};
    let app =
        axum::Router::new().fallback(|method: Method, uri: Uri, headers: HeaderMap| async move {
            if uri.path().ends_with("/getAuthToken") {
                let exp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 3600;
                return format!(
                    r#"{{"status":"ok","data":{{"token":"portal-token","expiresAt":{exp}}}}}"#
                );
            }
            let bearer = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer ey"));
            let with = if bearer {
                "with a bearer token"
            } else {
                "without a token"
            };
            format!("upstream {method} {} {with}\n", uri.path())
        });
    axum::serve(listener, app).await.unwrap();
}

#[test]
fn every_documented_command_runs_as_written() {
    let root = repo_root();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tokenwarden"));
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let fixtures = root.join("crates/tokenwarden/tests/readme_commands");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(serve_upstream(listener));

    // `tokenwarden` on PATH, and a curl that fails on HTTP errors.
    let shims = dir_path.join("bin");
    std::fs::create_dir_all(&shims).unwrap();
    std::os::unix::fs::symlink(&bin, shims.join("tokenwarden")).unwrap();
    let real_curl = String::from_utf8(
        Command::new("bash")
            .args(["-c", "command -v curl"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !real_curl.trim().is_empty(),
        "curl is needed (scripts/test.sh installs it)"
    );
    std::fs::write(
        shims.join("curl"),
        format!(
            "#!/bin/sh\nexec {} --fail-with-body \"$@\"\n",
            real_curl.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shims.join("curl"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // The README's blocks get only what they export themselves (and `$TOKEN`, which the README
    // says is the reader's); the examples' comments assume the secrets their files reference.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HOME".into(), dir_path.join("home").display().to_string());
    env.insert(
        "PATH".into(),
        format!("{}:{}", shims.display(), std::env::var("PATH").unwrap()),
    );
    let mut examples_env = env.clone();
    examples_env.extend(
        SECRETS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    examples_env.insert(
        "TW_VAULT_KEY_2026_01".into(),
        "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=".into(),
    );

    let mut world = World {
        dir: dir_path.clone(),
        upstream,
        background: Vec::new(),
        report: String::new(),
        failures: Vec::new(),
        used: BTreeMap::new(),
    };

    // The fixture issuer the docs' hosts point at (not a documented command: the world's IdP).
    let issuer = Command::new(&bin)
        .args(["dev-issuer", "--listen", "127.0.0.1:8781"])
        .arg("--realm-file")
        .arg(fixtures.join("dls-realm.json"))
        .arg("--realm-file")
        .arg(fixtures.join("evently-realm.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    world
        .background
        .push(("fixture issuer".into(), vec![8781], issuer));
    let started = Instant::now();
    while get_status(&format!(
        "{ISSUER}/realms/dls/.well-known/openid-configuration"
    )) != Some(200)
    {
        assert!(
            started.elapsed() < START_LIMIT,
            "the fixture issuer did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Files the docs assume: their configurations, keys, secrets, a token.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (file, marker) in [
        ("agent.toml", "[profiles.smartem]"),
        ("gateway.toml", "[[gateway.issuers]]"),
        ("vault.toml", "[vault.idp]"),
    ] {
        world.write(file, &world.substitute(&readme_toml(&readme, marker)));
    }
    let mut examples = Vec::new();
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            world.write(&format!("examples/{name}"), &world.substitute(&text));
            examples.push((name, text));
        }
    }
    examples.sort();
    world.write(
        "examples/realms/demo-realm.json",
        &std::fs::read_to_string(root.join("examples/realms/demo-realm.json")).unwrap(),
    );
    let evently = std::fs::read_to_string(world.dir.join("examples/evently-gateway.toml")).unwrap();
    world.write("etc/tokenwarden/gateway.toml", &evently);
    let signer = std::fs::read_to_string(fixtures.join("test-only-signer.pem")).unwrap();
    world.write("agent.pem", &signer);
    world.write("run/secrets/smartem-agent.pem", &signer);
    world.write("run/secrets/lab-notebook-secret", "lab-notebook-secret");
    let lab = token("dls", "lab-notebook", "lab-notebook-secret");
    world.write(
        "run/secrets/lab-offline-token",
        lab["refresh_token"].as_str().unwrap(),
    );
    world.write("run/secrets/flowise-client-secret", "flowise-agent-secret");
    world.write(
        "run/secrets/tokenwarden-caller-key",
        "3f9c1a7e5b2d4c6e8f0a1b3c5d7e9f1a",
    );
    world.write("run/tokenwarden/.keep", "");
    world.write("var/lib/tokenwarden/.keep", "");
    world.write("home/.keep", "");
    let smartem = token("dls", "SmartEM_Agent", "smartem-agent-secret")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    world.write("token.txt", &smartem);
    let vault_caller = token("dls", "nightly-report", "nightly-report-secret")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // README.md, block by block, then the examples' comments.
    for block in markdown_commands("README.md", &readme) {
        let mut block_env = env.clone();
        // The vault's block takes `$TOKEN` as given ("the user's access token from your app").
        let text: String = block.iter().map(|c| c.text.as_str()).collect();
        if text.contains("8820") {
            block_env.insert("TOKEN".into(), vault_caller.clone());
        }
        world.run_block(&block, block_env);
    }
    // The examples are another way through: they start on a fresh database.
    for db in ["tokenwarden.db", "tokenwarden.db-wal", "tokenwarden.db-shm"] {
        let _ = std::fs::remove_file(world.dir.join(db));
    }
    for (name, text) in &examples {
        for block in example_commands(&format!("examples/{name}"), text) {
            world.run_block(&block, examples_env.clone());
        }
    }

    if !world.used.contains_key(VAULT_ENTRY_PLACEHOLDER) {
        world
            .failures
            .push("no README command shows the vault entry placeholder any more".into());
    }
    for (pattern, _) in NOT_RUN {
        if !world.used.contains_key(pattern) {
            world.failures.push(format!(
                "NOT_RUN entry `{pattern}` matches no documented command"
            ));
        }
    }
    for (pattern, _, _) in BACKGROUND {
        if !world.used.contains_key(pattern) {
            world.failures.push(format!(
                "BACKGROUND entry `{pattern}` matches no documented command"
            ));
        }
    }
    for (pattern, _) in EXPECT {
        if !world.used.contains_key(pattern) {
            world.failures.push(format!(
                "EXPECT entry `{pattern}` matched no command that ran"
            ));
        }
    }
    println!("{}", world.report);
    let failures = std::mem::take(&mut world.failures);
    drop(world);
    assert!(
        failures.is_empty(),
        "{} documented command(s) do not work as written:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
