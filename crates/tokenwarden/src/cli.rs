//! Command-line interface.

use crate::process::{install_metrics_recorder, shutdown_signal};
use crate::{doctor_cmd, gateway_cmd, logging, registry_cmd, token_cmd, vault_cmd};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Service-account tokens for unattended software, done once and correctly.
///
/// tokenwarden obtains OAuth2/OIDC tokens for service accounts (Keycloak or any compliant IdP),
/// keeps them fresh without refresh storms, and hands them to any process: a local HTTP API,
/// files, or a proxy that injects `Authorization` and retries once on a 401. On the API's side,
/// its gateway verifies those tokens (as a reverse proxy or a forward-auth check) and authorizes
/// service accounts by permission. Its vault keeps users' offline tokens encrypted and mints
/// access tokens from them for unattended jobs. A local dev issuer, a demo and a doctor help
/// along the way.
// (A build without the `dev-issuer` feature has neither the dev issuer nor the demo: its long
// help is `SLIM_LONG_ABOUT`.)
#[derive(Debug, Parser)]
#[cfg_attr(not(feature = "dev-issuer"), command(long_about = SLIM_LONG_ABOUT))]
#[command(
    name = "tokenwarden",
    version,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Shown after the list of subcommands: where to start, and the conventions every command shares.
#[cfg(feature = "dev-issuer")]
const AFTER_HELP: &str = concat!(
    "\
Start here:
  tokenwarden demo                      the whole path on this machine in a minute
",
    after_help_rest!()
);

/// A build without the `dev-issuer` feature has no demo to start with.
#[cfg(not(feature = "dev-issuer"))]
const AFTER_HELP: &str = concat!("Start here:\n", after_help_rest!());

/// The doctor as a place to start, and the conventions every command shares.
macro_rules! after_help_rest {
    () => {
        "  tokenwarden doctor --config agent.toml --url https://api.example/x
                                        why a token is refused, step by step

Every command that reads a file takes --config FILE (or TOKENWARDEN_CONFIG); any key can be
overridden by TOKENWARDEN_<SECTION>__<KEY> variables. Secrets are given by reference
({ env = \"VAR\" } or { file = \"/run/secrets/x\" }), never in clear text.
Exit codes: 0 success, 1 failure (the reason on stderr), 2 bad input or configuration.
`tokenwarden help <command>` shows a command's options and examples."
    };
}
use after_help_rest;

/// The long help of a build without the `dev-issuer` feature (no dev issuer, no demo).
#[cfg(not(feature = "dev-issuer"))]
const SLIM_LONG_ABOUT: &str = "\
Service-account tokens for unattended software, done once and correctly.

tokenwarden obtains OAuth2/OIDC tokens for service accounts (Keycloak or any compliant IdP),
keeps them fresh without refresh storms, and hands them to any process: a local HTTP API,
files, or a proxy that injects `Authorization` and retries once on a 401. On the API's side,
its gateway verifies those tokens (as a reverse proxy or a forward-auth check) and authorizes
service accounts by permission. Its vault keeps users' offline tokens encrypted and mints
access tokens from them for unattended jobs. A doctor helps along the way.";

/// The variable every `--config` falls back to.
const CONFIG_ENV: &str = "TOKENWARDEN_CONFIG";

/// Parses the command line. `TOKENWARDEN_CONFIG` is only a default for `--config`: a command
/// given a client by flags instead (`token get --issuer`, `doctor --token-url`, ...), which a
/// config file excludes, goes ahead without it rather than failing because of an exported
/// variable. `--config` written on the command line still conflicts with those flags.
pub fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if e.kind() == clap::error::ErrorKind::ArgumentConflict
                && std::env::var_os(CONFIG_ENV).is_some() =>
        {
            let mut command = without_config_env(Cli::command());
            command
                .try_get_matches_from_mut(std::env::args_os())
                .and_then(|matches| Cli::from_arg_matches(&matches))
                .unwrap_or_else(|e| e.format(&mut command).exit())
        }
        Err(e) => e.exit(),
    }
}

/// `command` with no `--config` reading `TOKENWARDEN_CONFIG`, in every subcommand.
fn without_config_env(command: clap::Command) -> clap::Command {
    let command = if command.get_arguments().any(|a| a.get_id() == "config") {
        command.mut_arg("config", |a| a.env(None::<&str>))
    } else {
        command
    };
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    names.iter().fold(command, |command, name| {
        command.mut_subcommand(name, without_config_env)
    })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// See tokenwarden work in a minute, with nothing else installed
    ///
    /// Starts a dev issuer, a sample API, the gateway (authorization, SQLite registry, audit
    /// log) and the agent in one process, then walks through six checked steps. A service account gets a token, calls the API through the agent's proxy, is allowed one
    /// permission and refused another with a clear 403, its token is refreshed, and the audit
    /// log shows it all. The configuration files each service runs from are written to --dir,
    /// so the same services can then be run on their own. Without --once the stack keeps
    /// running until Ctrl-C, with curl commands to try by hand.
    ///
    /// Examples:
    ///   tokenwarden demo
    ///   tokenwarden demo --once --base-port 0 --dir /tmp/tw-demo   # CI: exit 0 only if all went right
    #[cfg(feature = "dev-issuer")]
    #[command(verbatim_doc_comment)]
    Demo(crate::demo_cmd::DemoArgs),
    /// Run the token agent: keep every profile's token fresh and serve it (HTTP API, file sinks,
    /// injecting proxy) until stopped.
    ///
    /// Example: tokenwarden agent --config /etc/tokenwarden/agent.toml
    Agent(AgentArgs),
    /// Run the gateway: verify bearer tokens in front of an API, as a reverse proxy (routes) and
    /// as a forward-auth endpoint for nginx auth_request, Traefik forwardAuth and Envoy ext_authz,
    /// until stopped.
    ///
    /// Example: tokenwarden gateway --config /etc/tokenwarden/gateway.toml
    Gateway(gateway_cmd::GatewayArgs),
    /// Work with tokens from scripts.
    #[command(subcommand)]
    Token(Box<TokenCommand>),
    /// Check a configuration file and print what it defines.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the service-account registry: register, list, enable/disable, grant roles, delete
    ///
    /// Works on `[storage]` of --config (default SQLite `sqlite://tokenwarden.db`).
    /// Exit codes: 0 done; 2 bad input or configuration; 1 anything else (not found, already
    /// exists, storage unavailable), with the reason on stderr.
    ///
    /// Examples:
    ///   tokenwarden accounts create --issuer https://kc.example/realms/evently \
    ///       --client-id evently-confidential-client --role mcp-agent-events-manager -c gateway.toml
    ///   tokenwarden accounts list -c gateway.toml
    ///   tokenwarden accounts disable --issuer https://kc.example/realms/evently \
    ///       --client-id evently-confidential-client -c gateway.toml
    #[command(verbatim_doc_comment)]
    Accounts(registry_cmd::AccountsArgs),
    /// Manage the registry's roles: named sets of permission codes (`events:read`, `events:*`)
    ///
    /// Examples:
    ///   tokenwarden roles create mcp-agent-attributes-readonly --permission attributes:read
    ///   tokenwarden roles list --json
    ///   tokenwarden roles delete mcp-agent-attributes-readonly --force
    #[command(verbatim_doc_comment)]
    Roles(registry_cmd::RolesArgs),
    /// Read the gateway's audit log (authorization decisions) from `[storage]`
    ///
    /// Example:
    ///   tokenwarden audit query --since 1h --outcome deny -c gateway.toml
    #[command(verbatim_doc_comment)]
    Audit(registry_cmd::AuditArgsTop),
    /// Diagnose, step by step, why a token is refused or cannot be had, with the fix
    ///
    /// Checks config, secrets, the issuer's discovery
    /// (connection refused, DNS, TLS, timeout, wrong issuer), client authentication (unknown
    /// client, wrong secret, disabled client, service account not enabled), the token's claims
    /// against the [gateway] (aud, azp, expiry, clock skew, route permissions) and, with --url, a
    /// real call (401 vs 403 with the deciding rule vs 429 vs 5xx). Each failure comes with its fix.
    ///
    /// Exit codes: 0 nothing failed (warnings allowed); 1 a check failed; 2 bad flags or a
    /// missing file. --json prints one document with a stable `cause` code per failure.
    ///
    /// Examples:
    ///   tokenwarden doctor --config agent.toml
    ///   tokenwarden doctor --config agent.toml --profile smartem --url https://api.example/grids
    ///   tokenwarden doctor --config agent.toml --gateway-config gateway.toml --path /api/events --json
    ///   tokenwarden doctor --issuer https://kc.example/realms/dls --client-id SmartEM_Agent \
    ///       --client-secret-env AGENT_SECRET
    #[command(verbatim_doc_comment)]
    Doctor(Box<doctor_cmd::DoctorArgs>),
    /// The token vault: users' offline tokens kept encrypted, minted into access tokens on demand
    ///
    /// Users consent once in a browser; unattended jobs then ask for fresh access tokens.
    /// Subcommands: serve, rekey, list, keygen.
    #[command(subcommand)]
    Vault(vault_cmd::VaultCommand),
    /// Run a local issuer laid out like Keycloak, from realm export files (development only)
    ///
    /// For development and tests only, never production: client-credentials tokens with
    /// Keycloak's claims, refresh tokens, introspection, revocation, key rotation, reload.
    ///
    /// Example: tokenwarden dev-issuer --realm-file examples/realms/demo-realm.json
    #[cfg(feature = "dev-issuer")]
    DevIssuer(crate::dev_issuer_cmd::DevIssuerArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    ///
    /// Example: tokenwarden completions bash > /etc/bash_completion.d/tokenwarden
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Configuration file (TOML). TOKENWARDEN_* environment variables override its values.
    #[arg(short, long, env = "TOKENWARDEN_CONFIG")]
    pub config: PathBuf,
    /// Write every file sink once, then exit (for init containers). Exit code 0 only if all
    /// sinks were written.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh access token for PROFILE (from --config), or for a client given by flags
    /// alone. No running agent is needed.
    ///
    /// Examples:
    ///   tokenwarden token get smartem --config agent.toml
    ///   tokenwarden token get --issuer https://kc.example/realms/dls --client-id SmartEM_Agent \
    ///       --client-secret-env AGENT_SECRET
    #[command(verbatim_doc_comment)]
    Get(token_cmd::GetArgs),
    /// Decode a token and say, check by check, whether the gateway would accept it and why not.
    /// Exit code 0 only if it would; 1 if not; 2 for usage or configuration problems. The token
    /// itself is never printed (header and payload are, the signature is not).
    ///
    /// Examples:
    ///   tokenwarden token inspect "$TOKEN" --config gateway.toml
    ///   tokenwarden token get smartem --config agent.toml | tokenwarden token inspect - \
    ///       --issuer https://kc.example/realms/dls --audience smartem-backend --json
    #[command(verbatim_doc_comment)]
    Inspect(gateway_cmd::InspectArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file: syntax, unknown keys, rules between keys, and that every
    /// secret reference resolves. Exit code 2 on any problem.
    Check {
        #[arg(short, long, env = "TOKENWARDEN_CONFIG")]
        config: PathBuf,
        /// Check only the file itself, not that secret references resolve (e.g. on a build
        /// machine that does not hold the secrets).
        #[arg(long)]
        skip_secrets: bool,
    },
}

/// How long `agent --once` waits for transient IdP failures to clear before giving up.
const ONCE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => run_agent(args).await,
        #[cfg(feature = "dev-issuer")]
        Command::Demo(args) => crate::demo_cmd::run(args).await,
        Command::Gateway(args) => gateway_cmd::run(args).await,
        Command::Token(cmd) => match *cmd {
            TokenCommand::Get(args) => token_cmd::get(args).await,
            TokenCommand::Inspect(args) => gateway_cmd::inspect(args).await,
        },
        Command::Accounts(args) => registry_cmd::accounts(args).await,
        Command::Roles(args) => registry_cmd::roles(args).await,
        Command::Audit(args) => registry_cmd::audit(args).await,
        Command::Config(ConfigCommand::Check {
            config,
            skip_secrets,
        }) => {
            let cfg = tw_config::load(&config)?;
            if !skip_secrets {
                tw_broker::Broker::from_profiles_manual(
                    &cfg.profiles,
                    Arc::new(tw_core::SystemClock),
                )?;
            }
            println!("{}: OK", config.display());
            for (name, p) in &cfg.profiles {
                let target = p
                    .token_url
                    .as_ref()
                    .or(p.issuer.as_ref())
                    .map(|u| u.to_string())
                    .or_else(|| p.custom.as_ref().map(|c| format!("custom login {}", c.url)))
                    .unwrap_or_default();
                println!("  profile {name}: {target}");
            }
            if let Some(gw) = &cfg.gateway {
                check_gateway(gw, skip_secrets)?;
            }
            if let Some(vault) = &cfg.vault {
                vault_cmd::check(vault, skip_secrets)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => doctor_cmd::run(*args).await,
        Command::Vault(cmd) => vault_cmd::run(cmd).await,
        #[cfg(feature = "dev-issuer")]
        Command::DevIssuer(args) => crate::dev_issuer_cmd::run(args).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "tokenwarden", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let cfg = tw_config::load(&args.config)?;
    logging::init(&cfg.log);
    let metrics = install_metrics_recorder()?;
    let (broker, agent) = tw_serve::agent::build_agent(&cfg, metrics)?;
    if args.once {
        if cfg.agent.sinks.is_empty() {
            return Err(tw_core::Error::config(
                "no_sinks",
                format!(
                    "{}: `agent --once` writes file sinks, but `agent.sinks` is empty",
                    args.config.display()
                ),
            )
            .into());
        }
        agent.write_sinks_once(ONCE_PATIENCE).await?;
        tracing::info!(
            sinks = cfg.agent.sinks.len(),
            "every file sink written once; exiting"
        );
        return Ok(ExitCode::SUCCESS);
    }
    broker.start_background();
    agent.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `config check` for the `[gateway]` section: the verifier's own rules, the introspection
/// secrets (unless skipped), and a summary.
fn check_gateway(gw: &tw_config::GatewayConfig, skip_secrets: bool) -> anyhow::Result<()> {
    tw_verify::Verifier::new(&gw.verifier_settings(), Arc::new(tw_core::SystemClock))?;
    if !skip_secrets {
        for (i, iss) in gw.issuers.iter().enumerate() {
            if let Some(intro) = &iss.introspection {
                intro
                    .client_secret
                    .resolve(&format!("gateway.issuers[{i}].introspection.client_secret"))?;
            }
        }
    }
    println!(
        "  gateway {}: {} route(s), forward auth at {}, {} exempt path(s)",
        gw.listen,
        gw.routes.len(),
        gw.forward_auth_path,
        gw.exempt_paths.len()
    );
    if let Some(a) = &gw.authz {
        let sources: Vec<&str> = a
            .sources
            .iter()
            .map(|s| match s {
                tw_config::PermissionSourceKind::Roles => "roles",
                tw_config::PermissionSourceKind::Registry => "registry",
            })
            .collect();
        println!(
            "  authz {}: {} rule(s), {} role(s), permissions from {}",
            match a.mode {
                tw_config::AuthzMode::Enforce => "enforce",
                tw_config::AuthzMode::DryRun => "dry_run",
            },
            a.rules.len(),
            a.roles.len(),
            sources.join(" + ")
        );
    }
    for iss in &gw.issuers {
        let keys = iss
            .jwks_url
            .as_ref()
            .map_or_else(|| "keys by discovery".to_owned(), |u| format!("keys {u}"));
        println!("  issuer {}: {keys}", iss.issuer);
    }
    for r in &gw.routes {
        let host = r
            .host
            .as_deref()
            .map(|h| format!("{h} "))
            .unwrap_or_default();
        println!("  route {host}{} -> {}", r.prefix, r.upstream);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `dev-issuer` feature (on by default) brings the `dev-issuer` and `demo` commands; a
    /// build without it has neither, nor mentions the demo in its help.
    #[test]
    fn the_dev_issuer_and_the_demo_come_with_the_dev_issuer_feature() {
        let mut command = Cli::command();
        let with = cfg!(feature = "dev-issuer");
        for name in ["dev-issuer", "demo"] {
            assert_eq!(command.find_subcommand(name).is_some(), with, "{name}");
        }
        let help = command.render_long_help().to_string();
        assert_eq!(help.contains("tokenwarden demo"), with, "{help}");
        assert_eq!(help.contains("a demo"), with, "{help}");
        assert!(help.contains("tokenwarden doctor"), "{help}");
    }
}
