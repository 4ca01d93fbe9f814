//! `tokenwarden demo`: the whole path on one machine with nothing else installed. It writes the
//! configuration files a real deployment would use, starts the dev issuer, a sample API, the
//! gateway (authorization, SQLite registry, audit log) and the agent from them, in this process,
//! through the same `tw_serve` functions the binary's `gateway` and `agent` commands use, then
//! walks through the story step by step and checks each step's outcome. Its last step runs the
//! `audit query` command of the binary running the demo (`std::env::current_exe`).
//!
//! The binary keeps only the subcommand: it parses the flags into [`DemoOptions`], sets up
//! logging and the metrics recorder, and calls [`run`].

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tw_core::{Clock, Error, Secret, SystemClock};
use tw_store::{NewAccount, Store};

/// The demo's realm export (Keycloak's format), embedded so the binary alone runs the demo.
const DEMO_REALM: &str = include_str!("../../../examples/realms/demo-realm.json");
/// The demo client's secret, as in the realm export above (a development fixture).
const DEMO_AGENT_SECRET: &str = "demo-agent-secret";
const REALM: &str = "demo";
const CLIENT_ID: &str = "demo-agent";
/// How long a step waits for a service or an audit record.
const PATIENCE: Duration = Duration::from_secs(20);

/// What `tokenwarden demo` was asked to do (its flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Run the story once and return: exit code 0 only if every step behaved as expected.
    pub once: bool,
    /// Directory for the demo's files: the configuration files of each service, the realm
    /// export, the client secret file, the SQLite registry and the agent's token file.
    pub dir: PathBuf,
    /// Ports: dev issuer = P, agent token API = P+10, agent proxy = P+11, sample API = P+12,
    /// gateway = P+20. 0 lets the system choose free ports.
    pub base_port: u16,
}

/// Where each service listens.
#[derive(Debug, Clone, Copy)]
struct Ports {
    issuer: u16,
    agent: u16,
    proxy: u16,
    api: u16,
    gateway: u16,
}

impl Ports {
    fn from_base(base: u16) -> Result<Ports, Error> {
        if base == 0 {
            return Ok(Ports {
                issuer: free_port()?,
                agent: free_port()?,
                proxy: free_port()?,
                api: free_port()?,
                gateway: free_port()?,
            });
        }
        let at = |offset: u16| {
            base.checked_add(offset).ok_or_else(|| {
                Error::bad_request(
                    "usage",
                    format!("--base-port {base} is too high (the demo uses up to base+20)"),
                )
            })
        };
        Ok(Ports {
            issuer: at(0)?,
            agent: at(10)?,
            proxy: at(11)?,
            api: at(12)?,
            gateway: at(20)?,
        })
    }

    fn issuer_url(&self) -> String {
        format!("http://127.0.0.1:{}/realms/{REALM}", self.issuer)
    }
}

/// A port that was free a moment ago (the services bind their configured addresses themselves).
fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::internal("no_free_port", format!("cannot find a free port: {e}")))
}

/// The files the demo writes; each service is started from them, as it would be for real.
struct DemoFiles {
    dir: PathBuf,
    realm: PathBuf,
    agent: PathBuf,
    gateway: PathBuf,
    registry: PathBuf,
    token_file: PathBuf,
}

impl DemoFiles {
    fn write(dir: &Path, ports: &Ports) -> Result<DemoFiles, Error> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Error::config(
                "demo_dir",
                format!("cannot write {what} {}: {e}", p.display()),
            )
        };
        std::fs::create_dir_all(dir).map_err(|e| io("the directory", dir, e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| io("the directory", dir, e))?;
        let files = DemoFiles {
            realm: dir.join("demo-realm.json"),
            agent: dir.join("agent.toml"),
            gateway: dir.join("gateway.toml"),
            registry: dir.join("registry.db"),
            token_file: dir.join("demo.token"),
            dir,
        };
        let secret_file = files.dir.join("demo-agent.secret");
        let write = |p: &Path, text: &str, mode: u32| {
            tw_core::fsutil::atomic_write(p, text.as_bytes(), mode)
                .map_err(|e| Error::config("demo_dir", format!("{}: {e}", p.display())))
        };
        write(&files.realm, DEMO_REALM, 0o644)?;
        write(&secret_file, DEMO_AGENT_SECRET, 0o600)?;
        write(
            &files.agent,
            &agent_toml(ports, &secret_file, &files.token_file),
            0o644,
        )?;
        write(&files.gateway, &gateway_toml(ports, &files.registry), 0o644)?;
        // A fresh registry and audit log for each run (the story counts its own decisions).
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", files.registry.display()));
            let _ = std::fs::remove_file(p);
        }
        let spool = files.registry.with_extension("audit-spool");
        for p in [
            spool.clone(),
            PathBuf::from(format!("{}.offset", spool.display())),
        ] {
            let _ = std::fs::remove_file(p);
        }
        Ok(files)
    }
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn agent_toml(ports: &Ports, secret_file: &Path, token_file: &Path) -> String {
    format!(
        r#"# The demo's agent: one service account, its token API, a file sink and the injecting proxy.
# Run it alone:  tokenwarden agent --config agent.toml
[log]
level = "warn"

[agent]
listen = "127.0.0.1:{agent}"

[profiles.demo]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = {{ file = {secret} }}   # never in clear text in a config file

[[agent.sinks]]
profile = "demo"
path = {token_file}

[agent.proxy]
listen = "127.0.0.1:{proxy}"

# Apps call the proxy with no token logic; it adds `Authorization` and retries once on a 401.
[[agent.proxy.routes]]
prefix = "/api/"
upstream = "http://127.0.0.1:{gateway}/api/"
profile = "demo"
strip_prefix = true
"#,
        agent = ports.agent,
        proxy = ports.proxy,
        gateway = ports.gateway,
        issuer = ports.issuer_url(),
        secret = quoted(&secret_file.display().to_string()),
        token_file = quoted(&token_file.display().to_string()),
    )
}

fn gateway_toml(ports: &Ports, registry: &Path) -> String {
    format!(
        r#"# The demo's gateway: verifies the demo realm's tokens in front of the sample API and
# authorizes the service account from its Keycloak roles and the registry.
# Run it alone:  tokenwarden gateway --config gateway.toml
[log]
level = "warn"

[storage]
url = {registry}

[gateway]
listen = "127.0.0.1:{gateway}"

[[gateway.issuers]]
issuer = "{issuer}"
audiences = ["demo-api"]

[[gateway.routes]]
prefix = "/api/"
upstream = "http://127.0.0.1:{api}/"
strip_prefix = true

[gateway.authz]
mode = "enforce"
sources = ["roles", "registry"]
service_accounts = {{ client_ids = ["{CLIENT_ID}"] }}

# Decisions the database cannot take at once wait here (replayed in order).
[gateway.authz.audit]
spool_path = {spool}

# Keycloak realm roles -> permissions.
[gateway.authz.roles]
"attributes-reader" = ["attributes:read"]
"attributes-writer" = ["attributes:write"]

[[gateway.authz.rules]]
name = "attributes-read"
methods = ["GET", "HEAD"]
paths = ["/api/attributes", "/api/attributes/**"]
require_all = ["attributes:read"]

[[gateway.authz.rules]]
name = "attributes-write"
methods = ["POST", "PUT", "PATCH", "DELETE"]
paths = ["/api/attributes", "/api/attributes/**"]
require_all = ["attributes:write"]

[[gateway.authz.rules]]
name = "reports-read"
methods = ["GET"]
paths = ["/api/reports", "/api/reports/**"]
require_all = ["reports:read"]
"#,
        gateway = ports.gateway,
        api = ports.api,
        issuer = ports.issuer_url(),
        registry = quoted(&format!("sqlite://{}", registry.display())),
        spool = quoted(&registry.with_extension("audit-spool").display().to_string()),
    )
}

/// Stops every service when dropped or told to.
struct Services {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<Result<(), Error>>)>,
}

impl Services {
    fn new() -> Services {
        Services {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    fn spawn<F>(&mut self, name: &'static str, service: F)
    where
        F: std::future::Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.tasks.push((name, tokio::spawn(service)));
    }

    /// The first service that stopped on its own, with its error.
    fn failed(&self) -> Option<String> {
        self.tasks
            .iter()
            .find(|(_, t)| t.is_finished())
            .map(|(name, _)| format!("the {name} stopped (see the messages above)"))
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Err(e))) => eprintln!("{name}: {e}"),
                Ok(Err(e)) => eprintln!("{name}: {e}"),
                _ => {}
            }
        }
    }
}

/// Runs the demo: writes its files, starts the services (their `/metrics` rendered from
/// `metrics`), walks through the story. With `once`, stops the services and returns 0 only if
/// every step behaved as expected; otherwise prints how to try the services by hand and keeps
/// them running until `shutdown` completes.
pub async fn run(
    args: &DemoOptions,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ExitCode, Error> {
    let ports = Ports::from_base(args.base_port)?;
    let files = DemoFiles::write(&args.dir, &ports)?;
    let story = Story::new(ports, &files);

    println!("tokenwarden demo: a service account calls an API through the agent and the gateway,");
    println!("all on this machine (dev issuer, sample API, gateway, agent in one process).");
    println!("Configuration files written to {}", files.dir.display());

    let mut services = Services::new();
    let started = start_services(&mut services, &ports, &files, metrics).await;
    let outcome = match started {
        Ok(()) => story.run(&services).await,
        Err(e) => {
            println!("  ✖ {e}");
            Outcome::failed()
        }
    };

    if args.once {
        services.stop().await;
        return Ok(if outcome.ok() {
            println!("\nEvery step behaved as expected.");
            ExitCode::SUCCESS
        } else {
            println!("\n{} step(s) did not behave as expected.", outcome.failures);
            ExitCode::from(1)
        });
    }
    print!("{}", story.try_it_yourself(&files));
    shutdown.await;
    services.stop().await;
    Ok(if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Starts the dev issuer, the sample API, the gateway and the agent, each from the files just
/// written, and waits until each is ready.
async fn start_services(
    services: &mut Services,
    ports: &Ports,
    files: &DemoFiles,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), Error> {
    let http = plain_client()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    step_title("Starting the dev issuer (Keycloak-shaped, for development only)");
    let base_url = format!("http://127.0.0.1:{}", ports.issuer);
    let issuer = tw_devissuer::DevIssuer::from_files(
        std::slice::from_ref(&files.realm),
        tw_devissuer::DevIssuerSettings {
            base_url: base_url
                .parse()
                .map_err(|e| Error::internal("demo_url", format!("{base_url}: {e}")))?,
            access_token_lifetime: None,
            refresh_token_lifetime: None,
        },
        clock.clone(),
    )?;
    for line in issuer.report().to_string().lines() {
        println!("    {line}");
    }
    let listener = bind(ports.issuer, "the dev issuer").await?;
    let router = issuer.router();
    let stop = services.shutdown_signal();
    services.spawn("dev issuer", async move {
        tw_http::serve(listener, router, stop).await
    });
    wait_ready(
        &http,
        &format!("{}/.well-known/openid-configuration", ports.issuer_url()),
    )
    .await?;
    println!("  ✔ issuer {}", ports.issuer_url());

    step_title("Starting the sample API (it reports who called it and with which permissions)");
    let listener = bind(ports.api, "the sample API").await?;
    let stop = services.shutdown_signal();
    services.spawn("sample API", async move {
        tw_http::serve(listener, sample_api(), stop).await
    });
    println!(
        "  ✔ http://127.0.0.1:{} (reachable only through the gateway in this story)",
        ports.api
    );

    step_title("Starting the gateway (authorization on, registry and audit log in SQLite)");
    let gateway_cfg = tw_config::load(&files.gateway)?;
    let store = tw_serve::gateway::open_store(&gateway_cfg, clock.clone()).await?;
    register_demo_account(&store, &ports.issuer_url()).await?;
    println!(
        "    registry: service account {CLIENT_ID} registered with role `report-viewers` (reports:read)"
    );
    {
        let path = files.gateway.clone();
        let stop = services.shutdown_signal();
        let metrics = metrics.clone();
        services.spawn("gateway", async move {
            tw_serve::gateway::serve(&gateway_cfg, &path, metrics, stop).await
        });
    }
    wait_ready(&http, &format!("http://127.0.0.1:{}/readyz", ports.gateway)).await?;
    println!(
        "  ✔ http://127.0.0.1:{} (routes /api/ to the sample API)",
        ports.gateway
    );

    step_title("Starting the agent (token API, file sink, injecting proxy)");
    let agent_cfg = tw_config::load(&files.agent)?;
    let (broker, agent) = tw_serve::agent::build_agent(&agent_cfg, metrics)?;
    broker.start_background();
    let stop = services.shutdown_signal();
    services.spawn("agent", async move { agent.run(stop).await });
    wait_ready(&http, &format!("http://127.0.0.1:{}/readyz", ports.agent)).await?;
    println!(
        "  ✔ token API http://127.0.0.1:{}, proxy http://127.0.0.1:{}",
        ports.agent, ports.proxy
    );
    Ok(())
}

/// The demo client as a registry account with a registry role: permissions from the registry
/// add to those from Keycloak roles.
async fn register_demo_account(store: &Store, issuer: &str) -> Result<(), Error> {
    store
        .upsert_role(
            "report-viewers",
            Some("may read reports (granted in the registry)"),
            &["reports:read".to_owned()],
        )
        .await?;
    let mut account = NewAccount::with_client_id(issuer, CLIENT_ID, "tokenwarden demo");
    account.display_name = Some("the demo's service account".into());
    account.roles = vec!["report-viewers".into()];
    store.create_account(account).await?;
    Ok(())
}

async fn bind(port: u16, what: &str) -> Result<tw_http::Listener, Error> {
    let addr = tw_config::ListenAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    tw_http::bind(&addr, "--base-port").await.map_err(|e| {
        Error::config(
            "port_in_use",
            format!(
                "cannot listen on 127.0.0.1:{port} for {what}: {} (is another demo running? \
                 choose other ports with --base-port, or 0 for free ones)",
                e.message()
            ),
        )
    })
}

/// An HTTP client that never goes through a proxy from the environment.
fn plain_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::internal("http_client", e.to_string()))
}

async fn wait_ready(http: &reqwest::Client, url: &str) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(Error::internal(
                    "demo_not_ready",
                    format!("{url} was not ready within {}s", PATIENCE.as_secs()),
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The sample API: answers any path with what it was told about the caller by the gateway, and
/// the fingerprint of the bearer token it received (never the token), so the story can tell
/// which token reached it.
fn sample_api() -> axum::Router {
    axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let token_fingerprint = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
            .map(|token| Secret::new(token).fingerprint().short());
        axum::Json(json!({
            "api": "sample",
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "token_fingerprint": token_fingerprint,
            "caller": {
                "subject": header("x-auth-subject"),
                "client_id": header("x-auth-client-id"),
                "service_account": header("x-auth-service-account"),
                "permissions": header("x-auth-permissions"),
            },
        }))
    })
}

fn step_title(title: &str) {
    println!("\n▸ {title}");
}

/// How many steps failed.
struct Outcome {
    failures: u32,
}

impl Outcome {
    fn failed() -> Outcome {
        Outcome { failures: 1 }
    }
    fn ok(&self) -> bool {
        self.failures == 0
    }
}

/// The story's steps, each a request a user could make by hand (the curl line is printed).
struct Story {
    ports: Ports,
    token_file: PathBuf,
    gateway_file: PathBuf,
}

/// One HTTP answer, kept for checks and display.
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

impl Story {
    fn new(ports: Ports, files: &DemoFiles) -> Story {
        Story {
            ports,
            token_file: files.token_file.clone(),
            gateway_file: files.gateway.clone(),
        }
    }

    async fn run(&self, services: &Services) -> Outcome {
        let mut outcome = Outcome { failures: 0 };
        let http = match plain_client() {
            Ok(c) => c,
            Err(e) => {
                println!("  ✖ {e}");
                return Outcome::failed();
            }
        };
        let steps: [(&str, StepFuture<'_>); 6] = [
            (
                "1. The service account gets a token from the agent",
                Box::pin(self.fetch_token(&http)),
            ),
            (
                "2. An app calls the API through the agent's proxy, with no token logic of its own",
                Box::pin(self.allowed_call(&http)),
            ),
            (
                "3. The same app tries to change data: the gateway refuses with a clear 403",
                Box::pin(self.denied_call(&http)),
            ),
            (
                "4. A caller without a token is stopped at the gateway (401 with a challenge)",
                Box::pin(self.no_token_call(&http)),
            ),
            (
                "5. The token is refreshed (the agent also does this on its own before expiry)",
                Box::pin(self.refresh(&http)),
            ),
            (
                "6. The audit log shows every decision",
                Box::pin(self.audit()),
            ),
        ];
        for (title, step) in steps {
            step_title(title);
            match step.await {
                Ok(lines) => {
                    for line in lines.lines() {
                        println!("  {line}");
                    }
                }
                Err(why) => {
                    outcome.failures += 1;
                    println!("  ✖ {why}");
                }
            }
            if let Some(stopped) = services.failed() {
                outcome.failures += 1;
                println!("  ✖ {stopped}");
                break;
            }
        }
        outcome
    }

    async fn fetch_token(&self, http: &reqwest::Client) -> Result<String, StepFailed> {
        let url = format!("http://127.0.0.1:{}/v1/token/demo", self.ports.agent);
        let mut out = format!("$ curl -s {url}\n");
        let a = call(http.get(&url)).await?;
        expect_status(&a, 200)?;
        let token = a.body["access_token"].as_str().unwrap_or_default();
        let claims = claims_of(token)?;
        let written = std::fs::read_to_string(&self.token_file).unwrap_or_default();
        if written.trim() != token {
            return Err(format!(
                "the file sink {} does not hold the served token",
                self.token_file.display()
            )
            .into());
        }
        writeln!(
            out,
            "✔ {} token for {}s (fingerprint {}), also in {} (mode 0600)",
            a.body["token_type"].as_str().unwrap_or("?"),
            a.body["expires_in"],
            Secret::new(token.to_owned()).fingerprint().short(),
            self.token_file.display()
        )
        .ok();
        writeln!(
            out,
            "  claims: azp={} preferred_username={} aud={} realm roles={}",
            claims["azp"],
            claims["preferred_username"],
            claims["aud"],
            claims["realm_access"]["roles"]
        )
        .ok();
        if claims["azp"] != CLIENT_ID {
            return Err(format!("the token's azp is {}, not {CLIENT_ID}", claims["azp"]).into());
        }
        Ok(out)
    }

    async fn allowed_call(&self, http: &reqwest::Client) -> Result<String, StepFailed> {
        let url = format!("http://127.0.0.1:{}/api/attributes", self.ports.proxy);
        let mut out = format!("$ curl -s {url}\n");
        let a = call(http.get(&url)).await?;
        expect_status(&a, 200)?;
        let permissions = a.body["caller"]["permissions"].as_str().unwrap_or_default();
        writeln!(
            out,
            "✔ 200 from the sample API; the gateway told it: client {}, permissions [{permissions}]",
            a.body["caller"]["client_id"]
        )
        .ok();
        out.push_str("  attributes:read comes from the Keycloak role attributes-reader (inside the composite\n");
        out.push_str("  role lab-agent), reports:read from the registry role report-viewers.\n");
        if !permissions
            .split([' ', ','])
            .any(|p| p == "attributes:read")
        {
            return Err(format!(
                "the API was not told of attributes:read (permissions: [{permissions}])"
            )
            .into());
        }
        Ok(out)
    }

    async fn denied_call(&self, http: &reqwest::Client) -> Result<String, StepFailed> {
        let url = format!("http://127.0.0.1:{}/api/attributes", self.ports.proxy);
        let mut out = format!("$ curl -s -X POST {url}\n");
        let a = call(http.post(&url).json(&json!({"name": "colour"}))).await?;
        expect_status(&a, 403)?;
        let error = &a.body["error"];
        writeln!(
            out,
            "✔ 403 {}: {}",
            error["code"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or("?")
        )
        .ok();
        let rule = error["rule"].as_str().unwrap_or_default();
        if rule != "attributes-write" {
            return Err(format!(
                "the refusal should name the rule attributes-write, it names `{rule}`"
            )
            .into());
        }
        Ok(out)
    }

    async fn no_token_call(&self, http: &reqwest::Client) -> Result<String, StepFailed> {
        let url = format!("http://127.0.0.1:{}/api/attributes", self.ports.gateway);
        let mut out = format!("$ curl -si {url}\n");
        let a = call(http.get(&url)).await?;
        expect_status(&a, 401)?;
        let challenge = a.www_authenticate.unwrap_or_default();
        if !challenge.starts_with("Bearer") {
            return Err(format!("no Bearer challenge (WWW-Authenticate: {challenge})").into());
        }
        writeln!(out, "✔ 401, WWW-Authenticate: {challenge}").ok();
        Ok(out)
    }

    async fn refresh(&self, http: &reqwest::Client) -> Result<String, StepFailed> {
        let token_url = format!("http://127.0.0.1:{}/v1/token/demo", self.ports.agent);
        let before = call(http.get(&token_url)).await?;
        let url = format!("{token_url}/refresh");
        let mut out = format!("$ curl -s -X POST {url}\n");
        let after = call(http.post(&url)).await?;
        expect_status(&after, 200)?;
        let fp = |a: &Answer| {
            Secret::new(
                a.body["access_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .fingerprint()
            .short()
        };
        let (old, new) = (fp(&before), fp(&after));
        if old == new {
            return Err("the refreshed token is the same as the old one".into());
        }
        writeln!(out, "✔ new token {new} replaces {old}").ok();
        let api = format!("http://127.0.0.1:{}/api/attributes", self.ports.proxy);
        writeln!(out, "$ curl -s {api}").ok();
        let again = call(http.get(&api)).await?;
        expect_status(&again, 200)?;
        // A 200 alone proves nothing (the old token is still valid): the sample API must have
        // received the new one.
        let received = upstream_received(&again, &new, &old)?;
        writeln!(
            out,
            "✔ the proxy now uses it: the sample API received token {received}"
        )
        .ok();
        Ok(out)
    }

    /// Runs `tokenwarden audit query` as printed (this very binary) and checks its table.
    async fn audit(&self) -> Result<String, StepFailed> {
        let args = [
            "audit".to_owned(),
            "query".to_owned(),
            "--since".to_owned(),
            "5m".to_owned(),
            "--config".to_owned(),
            self.gateway_file.display().to_string(),
        ];
        let mut out = format!("$ tokenwarden {}\n", shell_words(&args));
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the tokenwarden binary: {e}"))?;
        // The gateway writes audit records from a queue, a moment after each decision: ask
        // again until they are in or the patience is spent.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let (table, verdict) = loop {
            let run = tokio::process::Command::new(&exe)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
            let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
            let verdict = if run.status.success() {
                audit_shows_the_story(&stdout)
            } else {
                Err(format!(
                    "the command failed ({}): {}",
                    run.status,
                    String::from_utf8_lossy(&run.stderr).trim()
                )
                .into())
            };
            if verdict.is_ok() || tokio::time::Instant::now() >= deadline {
                break (stdout, verdict);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        for line in table.lines() {
            writeln!(out, "  {line}").ok();
        }
        let summary = verdict.map_err(|why| format!("{out}{why}"))?;
        writeln!(
            out,
            "✔ the allowed calls and the refusal are all on record ({summary})"
        )
        .ok();
        Ok(out)
    }

    fn try_it_yourself(&self, files: &DemoFiles) -> String {
        let p = &self.ports;
        let dir = files.dir.display();
        let curls = [
            (
                format!("curl -s http://127.0.0.1:{}/v1/token/demo", p.agent),
                "a token for the service account",
            ),
            (
                format!("curl -s http://127.0.0.1:{}/api/attributes", p.proxy),
                "through the proxy: allowed",
            ),
            (
                format!(
                    "curl -s -X POST http://127.0.0.1:{}/api/attributes",
                    p.proxy
                ),
                "403: attributes:write is missing",
            ),
            (
                format!("curl -s http://127.0.0.1:{}/api/reports", p.proxy),
                "allowed by the registry role",
            ),
            (
                format!("curl -si http://127.0.0.1:{}/api/attributes", p.gateway),
                "401: no token",
            ),
            (
                format!(
                    "curl -s {}/.well-known/openid-configuration",
                    p.issuer_url()
                ),
                "the dev issuer",
            ),
            (
                format!("curl -s http://127.0.0.1:{}/metrics", p.gateway),
                "Prometheus metrics",
            ),
        ];
        let width = curls.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        let mut out = "\nThe stack keeps running until Ctrl-C. Try it yourself:\n\n".to_owned();
        for (command, what) in &curls {
            writeln!(out, "  {command:<width$}  # {what}").ok();
        }
        write!(
            out,
            r#"
  tokenwarden audit query --since 10m --config {dir}/gateway.toml
  tokenwarden accounts list --config {dir}/gateway.toml
  tokenwarden doctor --config {dir}/agent.toml --gateway-config {dir}/gateway.toml \
      --url http://127.0.0.1:{gateway}/api/attributes --method POST

The same services run on their own from the files in {dir}:
  tokenwarden dev-issuer --realm-file {dir}/demo-realm.json --listen 127.0.0.1:{issuer}
  tokenwarden gateway --config {dir}/gateway.toml
  tokenwarden agent --config {dir}/agent.toml
(the sample API is part of the demo only; point the gateway's route at your own API.)
"#,
            gateway = p.gateway,
            issuer = p.issuer,
        )
        .ok();
        out
    }
}

/// Why a step of the story did not show what it should; printed under the step.
#[derive(Debug, PartialEq, Eq)]
struct StepFailed(String);

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for StepFailed {
    fn from(why: String) -> Self {
        Self(why)
    }
}

impl From<&str> for StepFailed {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

type StepFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, StepFailed>> + Send + 'a>>;

async fn call(request: reqwest::RequestBuilder) -> Result<Answer, StepFailed> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        www_authenticate,
        body,
    })
}

fn expect_status(a: &Answer, want: u16) -> Result<(), StepFailed> {
    if a.status == want {
        return Ok(());
    }
    Err(format!("expected HTTP {want}, got {}: {}", a.status, a.body).into())
}

/// The payload of a JWT, for display (the signature was checked by the gateway, not here).
fn claims_of(token: &str) -> Result<Value, StepFailed> {
    let jwt = tw_verify::parse_unverified(token, 64 * 1024)
        .map_err(|e| format!("the agent's token is not a JWT: {}", e.description()))?;
    Ok(Value::Object(jwt.claims().clone()))
}

/// The fingerprint of the token the sample API received, if it is `new` (the refreshed token);
/// otherwise why not.
fn upstream_received(answer: &Answer, new: &str, old: &str) -> Result<String, StepFailed> {
    match answer.body["token_fingerprint"].as_str() {
        Some(got) if got == new => Ok(got.to_owned()),
        Some(got) if got == old => Err(format!(
            "the sample API still received the old token {old}, not the new {new}"
        )
        .into()),
        Some(got) => Err(format!(
            "the sample API received token {got}, neither the new {new} nor the old {old}"
        )
        .into()),
        None => Err(format!("the sample API received no bearer token: {}", answer.body).into()),
    }
}

/// Checks the table `tokenwarden audit query` printed: the story's allowed reads (steps 2 and
/// 5) and its refused write (step 3, by the rule attributes-write). Returns a summary.
fn audit_shows_the_story(table: &str) -> Result<String, StepFailed> {
    let rows = table_rows(table)?;
    let count = |outcome: &str, method: &str, rule: &str| {
        rows.iter()
            .filter(|r| {
                r.get("KIND").map(String::as_str) == Some("decision")
                    && r.get("OUTCOME").map(String::as_str) == Some(outcome)
                    && r.get("METHOD").map(String::as_str) == Some(method)
                    && r.get("PATH").map(String::as_str) == Some("/api/attributes")
                    && r.get("RULE").map(String::as_str) == Some(rule)
            })
            .count()
    };
    let (allowed, denied) = (
        count("allow", "GET", "attributes-read"),
        count("deny", "POST", "attributes-write"),
    );
    if allowed < 2 || denied < 1 {
        return Err(format!(
            "the audit log should show the two allowed GETs and the denied POST of /api/attributes \
             (found {allowed} allowed, {denied} denied)"
        )
        .into());
    }
    Ok(format!("{allowed} allowed, {denied} denied"))
}

/// The rows of a table as the CLI prints it (a header line, columns padded to the header's
/// positions), keyed by column name.
fn table_rows(table: &str) -> Result<Vec<BTreeMap<String, String>>, StepFailed> {
    let mut lines = table.lines();
    let header: Vec<char> = lines.next().unwrap_or_default().chars().collect();
    let mut columns: Vec<(usize, String)> = Vec::new();
    let mut at = 0;
    while at < header.len() {
        if header[at] == ' ' {
            at += 1;
            continue;
        }
        let start = at;
        while at < header.len() && header[at] != ' ' {
            at += 1;
        }
        columns.push((start, header[start..at].iter().collect()));
    }
    if !columns.iter().any(|(_, name)| name == "OUTCOME") {
        return Err(format!(
            "the command printed no audit table: {}",
            table.lines().next().unwrap_or_default()
        )
        .into());
    }
    Ok(lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            let cell = |from: usize, to: usize| -> String {
                let to = to.min(chars.len());
                chars
                    .get(from..to)
                    .unwrap_or_default()
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_owned()
            };
            columns
                .iter()
                .enumerate()
                .map(|(i, (start, name))| {
                    let end = columns.get(i + 1).map_or(usize::MAX, |(next, _)| *next);
                    (name.clone(), cell(*start, end))
                })
                .collect()
        })
        .collect())
}

/// Arguments as a shell would need them typed.
fn shell_words(args: &[String]) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:=+@,%".contains(c);
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(plain) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The story's checks refuse what they are there to catch. (The whole story, where each check
/// passes, runs in `tests/demo.rs`.)
#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(token: &str) -> String {
        Secret::new(token.to_owned()).fingerprint().short()
    }

    /// Step 5 against the real sample API: the token it received must be the new one; the
    /// old one (which the API would also answer 200 to) or none fails the step.
    #[tokio::test]
    async fn the_refresh_step_fails_when_the_upstream_got_the_old_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, sample_api()).await });
        let http = plain_client().unwrap();
        let url = format!("http://{addr}/attributes");
        let (old, new) = ("old.token.value", "new.token.value");
        let (old_fp, new_fp) = (fingerprint(old), fingerprint(new));

        let with_new = call(http.get(&url).bearer_auth(new)).await.unwrap();
        assert_eq!(with_new.status, 200);
        assert_eq!(
            upstream_received(&with_new, &new_fp, &old_fp),
            Ok(new_fp.clone())
        );

        let with_old = call(http.get(&url).bearer_auth(old)).await.unwrap();
        assert_eq!(with_old.status, 200, "a 200 alone proves nothing");
        let why = upstream_received(&with_old, &new_fp, &old_fp).unwrap_err();
        assert!(why.0.contains("old token"), "{why}");

        let other = call(http.get(&url).bearer_auth("another")).await.unwrap();
        assert!(upstream_received(&other, &new_fp, &old_fp).is_err());
        let without = call(http.get(&url)).await.unwrap();
        let why = upstream_received(&without, &new_fp, &old_fp).unwrap_err();
        assert!(why.0.contains("no bearer token"), "{why}");
        // The API reports fingerprints, never the token.
        assert!(!with_new.body.to_string().contains(new));
    }

    /// A table in the layout `tokenwarden audit query` prints (columns padded to the widest
    /// cell plus two spaces, the last one unpadded).
    fn audit_table(rows: &[[&str; 5]]) -> String {
        let header = [
            "TIME",
            "KIND",
            "OUTCOME",
            "SUBJECT",
            "USERNAME",
            "CLIENT_ID",
            "METHOD",
            "PATH",
            "RULE",
            "ACTION",
            "OBJECT",
            "REASON",
        ];
        let full: Vec<Vec<String>> = rows
            .iter()
            .map(|[kind, outcome, method, rule, reason]| {
                [
                    "2026-11-22T06:00:00Z",
                    kind,
                    outcome,
                    "0c1d-subject",
                    "service-account-demo-agent",
                    "demo-agent",
                    method,
                    "/api/attributes",
                    rule,
                    "-",
                    "-",
                    reason,
                ]
                .map(str::to_owned)
                .to_vec()
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                full.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap()
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(widths[i] - cell.len() + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut lines = vec![line(header.to_vec())];
        lines.extend(
            full.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        );
        lines.join("\n")
    }

    /// Step 6: the story's two allowed reads and its refused write must be in what the command
    /// printed; a log missing any of them, or with them under another outcome, method or rule,
    /// fails the step.
    #[test]
    fn the_audit_step_fails_without_the_story_on_record() {
        let read = ["decision", "allow", "GET", "attributes-read", "-"];
        let refused = [
            "decision",
            "deny",
            "POST",
            "attributes-write",
            "missing attributes:write",
        ];
        let whole = audit_table(&[refused, read, read]);
        assert_eq!(
            audit_shows_the_story(&whole),
            Ok("2 allowed, 1 denied".to_owned())
        );
        for (what, table) in [
            ("no refusal", audit_table(&[read, read])),
            ("one read", audit_table(&[refused, read])),
            (
                "the refusal as a dry run",
                audit_table(&[
                    ["decision", "dry_run_deny", "POST", "attributes-write", "-"],
                    read,
                    read,
                ]),
            ),
            (
                "another rule",
                audit_table(&[
                    ["decision", "deny", "POST", "reports-read", "-"],
                    read,
                    read,
                ]),
            ),
            (
                "an admin change",
                audit_table(&[
                    ["admin", "deny", "POST", "attributes-write", "-"],
                    read,
                    read,
                ]),
            ),
            ("nothing", "no audit records".to_owned()),
            ("no output", String::new()),
        ] {
            assert!(audit_shows_the_story(&table).is_err(), "{what}:\n{table}");
        }
    }

    #[test]
    fn printed_commands_are_quoted_for_a_shell() {
        let args = ["--config", "/tmp/a b/it's.toml", "", "5m"].map(str::to_owned);
        assert_eq!(
            shell_words(&args),
            r#"--config '/tmp/a b/it'\''s.toml' '' 5m"#
        );
    }
}
