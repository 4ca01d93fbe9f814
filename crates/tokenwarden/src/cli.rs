//! Command-line interface.

use crate::{logging, token_cmd};
use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Service-account tokens for unattended software, done once and correctly.
///
/// tokenwarden obtains OAuth2/OIDC tokens for service accounts (Keycloak or any compliant IdP),
/// keeps them fresh without refresh storms, and hands them to any process: a local HTTP API,
/// files, or a proxy that injects `Authorization` and retries once on a 401.
#[derive(Debug, Parser)]
#[command(
    name = "tokenwarden",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token agent: keep every profile's token fresh and serve it (HTTP API, file sinks,
    /// injecting proxy) until stopped.
    ///
    /// Example: tokenwarden agent --config /etc/tokenwarden/agent.toml
    Agent(AgentArgs),
    /// Work with tokens from scripts.
    #[command(subcommand)]
    Token(Box<TokenCommand>),
    /// Check a configuration file and print what it defines.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    Get(token_cmd::GetArgs),
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
        Command::Token(cmd) => match *cmd {
            TokenCommand::Get(args) => token_cmd::get(args).await,
        },
        Command::Config(ConfigCommand::Check {
            config,
            skip_secrets,
        }) => {
            let cfg = tw_config::load(&config)?;
            if !skip_secrets {
                tw_broker::Broker::from_config_manual(&cfg, Arc::new(tw_core::SystemClock))?;
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
            Ok(ExitCode::SUCCESS)
        }
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
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let broker = Arc::new(tw_broker::Broker::from_config(
        &cfg,
        Arc::new(tw_core::SystemClock),
    )?);
    let render: tw_http::MetricsRender = {
        let broker = broker.clone();
        Arc::new(move || {
            broker.update_gauges();
            metrics.render()
        })
    };
    let agent = tw_agent::Agent::new(&cfg, broker.clone(), Some(render));
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
