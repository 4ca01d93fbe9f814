//! `tokenwarden doctor`: step-by-step diagnosis (the logic is in `tw-doctor`; this parses flags,
//! loads the files, prints the report and picks the exit code).

use crate::token_cmd;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tw_config::Config;
use tw_core::{Clock, Error, SystemClock};
use tw_doctor::{Doctor, Options, Report};
use url::Url;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("client").args(["issuer", "token_url"]).conflicts_with("config"))]
pub struct DoctorArgs {
    /// Configuration file (TOML) with the profiles to check and, optionally, a [gateway] section.
    #[arg(short, long, env = "TOKENWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check only this profile (default: every profile).
    #[arg(long)]
    pub profile: Option<String>,
    /// Call this URL with each profile's token and explain the answer (401, 403, 429, 5xx).
    /// Called directly, not through the agent's proxy (which would refresh and retry).
    #[arg(long)]
    pub url: Option<Url>,
    /// HTTP method for --url and for the authorization check.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Check the gateway's route rules for this path (default: the path of --url); alone, nothing
    /// is called. Give it when a proxy between --url and the gateway rewrites paths.
    #[arg(long)]
    pub path: Option<String>,
    /// Check tokens against the [gateway] section of this file (default: the one in --config).
    #[arg(long)]
    pub gateway_config: Option<PathBuf>,
    /// Print one JSON document (steps with id, status, cause and fix) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: token_cmd::ClientFlags,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (loaded, source) = match &args.config {
        Some(path) => {
            require_file(path, "the configuration file")?;
            (tw_config::load(path), path.display().to_string())
        }
        None => (config_from_flags(&args), "command-line flags".to_owned()),
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) if args.config.is_none() => return Err(e.into()),
        Err(e) => return Ok(finish(&Doctor::config_error(&e), args.json)),
    };
    if let Some(p) = &args.profile
        && !cfg.profiles.contains_key(p)
    {
        let known: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
        return Err(usage(format!(
            "there is no profile `{p}` in {source} (profiles: {})",
            known.join(", ")
        ))
        .into());
    }
    // The file the gateway's settings (and its registry's storage) come from.
    let mut gateway_file = None;
    let gateway = match &args.gateway_config {
        None => None,
        Some(path) => {
            require_file(path, "the gateway configuration file")?;
            let loaded = tw_config::load(path).and_then(|file| {
                let gateway = tw_serve::gateway::gateway_section(&file, path)?.clone();
                Ok((file, gateway))
            });
            match loaded {
                Ok((file, gateway)) => {
                    gateway_file = Some(file);
                    Some(gateway)
                }
                Err(e) => return Ok(finish(&Doctor::config_error(&e), args.json)),
            }
        }
    };
    let mut doctor = Doctor::new(clock.clone());
    // The registry is read only when the configuration names its storage explicitly: the doctor
    // never creates a database.
    let storage_from = gateway_file.as_ref().unwrap_or(&cfg);
    if storage_from.storage.is_some()
        && let Some(gw) = gateway.as_ref().or(cfg.gateway.as_ref())
        && tw_serve::gateway::uses_storage(storage_from, gw)
    {
        match tw_serve::gateway::open_store(storage_from, clock).await {
            Ok(store) => doctor = doctor.with_registry(Arc::new(store)),
            Err(e) => eprintln!("note: the account registry is not checked: {e}"),
        }
    }
    let opts = Options {
        profile: args.profile.clone(),
        url: args.url.clone(),
        method: Some(args.method.to_ascii_uppercase()),
        path: args.path.clone(),
        gateway,
    };
    let report = doctor.diagnose(&cfg, &source, &opts).await;
    Ok(finish(&report, args.json))
}

/// Prints the report; 0 when nothing failed (warnings allowed), 1 otherwise.
fn finish(report: &Report, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        );
    } else {
        print!("{report}");
    }
    if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(m: String) -> Error {
    Error::bad_request("usage", m)
}

/// A usage error unless `path` is an existing file; `what` names the file in the message.
fn require_file(path: &Path, what: &str) -> Result<(), Error> {
    if path.is_file() {
        Ok(())
    } else {
        Err(usage(format!(
            "{}: {what} does not exist or is not a file",
            path.display()
        )))
    }
}

/// A one-profile configuration from the flags, built and validated exactly as `token get` does.
fn config_from_flags(args: &DoctorArgs) -> Result<Config, Error> {
    if args.client.issuer.is_none() && args.client.token_url.is_none() {
        return Err(usage(
            "give --config FILE, or --issuer URL (or --token-url URL) with --client-id and --client-secret-env VAR".to_owned(),
        ));
    }
    token_cmd::config_from_flags(&args.client)
}
