//! `tokenwarden dev-issuer`: a local, Keycloak-shaped OAuth2/OIDC issuer for development and
//! tests, from Keycloak realm export files (`tw-devissuer`).

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tw_config::ListenAddr;
use tw_core::{Error, Secret};
use tw_devissuer::{ClientSecretOverride, DevIssuer, DevIssuerSettings, LoadReport};

const WARNING: &str = "WARNING: tokenwarden dev-issuer is for development and tests only — not an identity provider for production. Keys live in memory, secrets come from the realm files, and there are no user logins.";

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tokenwarden dev-issuer --realm-file examples/realms/demo-realm.json
  curl -s -u demo-agent:demo-agent-secret -d grant_type=client_credentials \\
      http://127.0.0.1:8780/realms/demo/protocol/openid-connect/token

  # A partial export from the admin console masks secrets; give them from the environment:
  FIELD_AGENT_SECRET=... tokenwarden dev-issuer --realm-file realm-export.json \\
      --client-secret field-agent=FIELD_AGENT_SECRET --access-token-lifetime 5m

Endpoints per realm (Keycloak's paths): /realms/REALM/.well-known/openid-configuration,
/realms/REALM/protocol/openid-connect/{token,certs,token/introspect,revoke}.
Development controls: POST /dev/realms/REALM/rotate-keys[?keep_old=true], POST /dev/reload,
GET /dev/report. `kill -HUP PID` reloads the files too. They have no authentication, so they
answer only callers on this machine (loopback), never a request with another site's Origin or
a Host that names neither this machine nor --public-url.

Other hosts: the issuer listens on loopback only unless given --allow-remote, e.g.
  tokenwarden dev-issuer --realm-file demo-realm.json --allow-remote \
      --listen 0.0.0.0:8780 --public-url http://devbox.lan:8780

Exit codes: 0 stopped by Ctrl-C/SIGTERM; 2 bad arguments or a realm file that cannot be loaded;
1 anything else.")]
pub struct DevIssuerArgs {
    /// A Keycloak realm export (admin console partial export or `kc.sh export`), one realm per
    /// file. Repeat for several realms.
    #[arg(long = "realm-file", value_name = "FILE", required = true)]
    pub realm_files: Vec<PathBuf>,
    /// Address to listen on: a loopback address (or unix:/path) unless --allow-remote.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8780")]
    pub listen: String,
    /// Allow a --listen address other hosts can reach. Still for development only: tokens are
    /// served to anyone who has a client secret, while the /dev controls stay loopback-only.
    #[arg(long)]
    pub allow_remote: bool,
    /// The URL clients reach this server at (issuers are URL/realms/REALM). Default: http://ADDR.
    /// Required with an unspecified --listen address (0.0.0.0, [::]) or a Unix socket.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<url::Url>,
    /// Access-token lifetime for every client, e.g. 5m (default: the realm's accessTokenLifespan,
    /// or the client's access.token.lifespan attribute).
    #[arg(long, value_name = "DURATION", value_parser = tw_config::duration::parse)]
    pub access_token_lifetime: Option<Duration>,
    /// Refresh-token lifetime, e.g. 30m (default: the realm's ssoSessionIdleTimeout). Refresh
    /// tokens are issued to clients with the attribute client_credentials.use_refresh_token=true.
    #[arg(long, value_name = "DURATION", value_parser = tw_config::duration::parse)]
    pub refresh_token_lifetime: Option<Duration>,
    /// A client secret the export masks ("**********"), read from an environment variable:
    /// CLIENT=ENV_VAR, or REALM/CLIENT=ENV_VAR for one realm only. Repeatable.
    #[arg(long = "client-secret", value_name = "CLIENT=ENV_VAR")]
    pub client_secrets: Vec<String>,
}

pub async fn run(args: DevIssuerArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(&tw_config::LogConfig::default());
    let listen = ListenAddr::parse(&args.listen)
        .map_err(|e| Error::config("bad_listen", format!("--listen {}: {e}", args.listen)))?;
    check_exposure(&listen, args.allow_remote, args.public_url.is_some())?;
    let overrides = secret_overrides(&args.client_secrets)?;
    let listener = tw_http::bind(&listen, "--listen").await?;
    let base_url = match &args.public_url {
        Some(u) => u.clone(),
        None => {
            let addr = listener
                .tcp_addr()
                .context("the dev issuer listens on TCP only")?;
            url::Url::parse(&format!("http://{addr}")).context("listen address as URL")?
        }
    };
    if args.allow_remote {
        eprintln!(
            "WARNING: --allow-remote: other hosts can get tokens from this dev issuer at {base_url}; the /dev controls answer loopback callers only."
        );
    }
    let settings = DevIssuerSettings {
        base_url,
        access_token_lifetime: args.access_token_lifetime,
        refresh_token_lifetime: args.refresh_token_lifetime,
    };
    let issuer =
        DevIssuer::from_files(&args.realm_files, settings, Arc::new(tw_core::SystemClock))?;
    let report = if overrides.is_empty() {
        issuer.report()
    } else {
        issuer.set_client_secrets(overrides)?
    };
    eprintln!("{WARNING}");
    print_report(&issuer, &report);
    issuer.on_reload({
        let issuer = issuer.clone();
        Arc::new(move |result| match result {
            Ok(report) => {
                println!("reloaded:");
                print_report(&issuer, report);
            }
            Err(e) => eprintln!("reload failed (the realms loaded before stay): {e}"),
        })
    });
    tokio::spawn(reload_on_sighup(issuer.clone()));
    let router = issuer.router().layer(tw_http::trace_layer());
    tw_http::serve(listener, router, crate::process::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The dev issuer is for one developer's machine: its `/dev` controls have no authentication,
/// so another host may reach it only when asked for, and the issuer URL tokens carry must be one
/// clients can reach (not `0.0.0.0`).
fn check_exposure(
    listen: &ListenAddr,
    allow_remote: bool,
    has_public_url: bool,
) -> Result<(), Error> {
    let usage =
        |code: &'static str, message: String| Error::config(code, message).with("key", "--listen");
    match listen {
        ListenAddr::Tcp(addr) if !addr.ip().to_canonical().is_loopback() && !allow_remote => {
            Err(usage(
                "listen_not_loopback",
                format!(
                    "--listen {addr} is reachable from other hosts, and the dev issuer is for development only: it has no user logins, keys live in memory, and its /dev controls (key rotation, reload) have no authentication. Listen on 127.0.0.1, or pass --allow-remote if other hosts must get tokens (the /dev controls then still answer loopback callers only)"
                ),
            ))
        }
        ListenAddr::Tcp(addr) if addr.ip().is_unspecified() && !has_public_url => Err(usage(
            "public_url_required",
            format!(
                "--listen {addr} names no host clients can reach, and tokens name the issuer by this URL; give --public-url http://HOST:{} with the name clients use",
                addr.port()
            ),
        )),
        ListenAddr::Unix(path) if !has_public_url => Err(usage(
            "public_url_required",
            format!(
                "--listen unix:{} has no URL of its own; give --public-url with the URL clients use to reach the socket",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

fn print_report(issuer: &DevIssuer, report: &LoadReport) {
    print!("{report}");
    for r in &report.realms {
        println!("realm \"{}\":", r.realm);
        println!("  issuer     {}", r.issuer);
        println!("  token URL  {}", issuer.token_url(&r.realm));
    }
}

/// `CLIENT=ENV_VAR` or `REALM/CLIENT=ENV_VAR` → the secret from that variable.
fn secret_overrides(specs: &[String]) -> Result<Vec<ClientSecretOverride>, Error> {
    specs
        .iter()
        .map(|spec| {
            let bad = |why: &str| {
                Error::config(
                    "bad_client_secret",
                    format!("--client-secret {spec}: {why}"),
                )
            };
            let (target, var) = spec
                .split_once('=')
                .ok_or_else(|| bad("expected CLIENT=ENV_VAR or REALM/CLIENT=ENV_VAR"))?;
            let (realm, client) = match target.split_once('/') {
                Some((r, c)) => (Some(r.to_owned()), c),
                None => (None, target),
            };
            if client.is_empty() || var.is_empty() {
                return Err(bad("expected CLIENT=ENV_VAR or REALM/CLIENT=ENV_VAR"));
            }
            let secret = std::env::var(var)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad(&format!("environment variable {var} is not set")))?;
            Ok(ClientSecretOverride {
                realm,
                client_id: client.to_owned(),
                secret: Secret::new(secret),
            })
        })
        .collect()
}

#[cfg(unix)]
async fn reload_on_sighup(issuer: DevIssuer) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /dev/reload");
        return;
    };
    while hup.recv().await.is_some() {
        // The reload listener prints the outcome.
        let _ = issuer.reload();
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_issuer: DevIssuer) {}
