//! `tokenwarden vault`: serve the token vault, re-seal its entries under the active key, list
//! them, make a new key.

use base64::Engine as _;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tw_config::VaultConfig;
use tw_core::{Clock, Error, SystemClock};
use tw_store::Store;
use tw_store::health::StoreHealth;
use tw_vault::{Caller, PERM_READ_ANY, Vault};
use tw_vault_api::CallerAuth;
use tw_verify::Verifier;

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Serve the vault API until stopped (SIGTERM / Ctrl-C)
    ///
    /// Users consent once in a browser (GET /v1/offline-token gives the URL); jobs then mint
    /// access tokens from the stored offline or refresh token (POST /v1/access-token). Entries
    /// live in [storage] (SQLite by default, created on first start; PostgreSQL for several
    /// instances), sealed with AES-256-GCM under [vault.encryption]. The API document is at
    /// /openapi.json, a readable page at /docs.
    ///
    /// Example:
    ///   TW_VAULT_KEY_2026_01=$(tokenwarden vault keygen) TW_VAULT_CLIENT_SECRET=... \
    ///       tokenwarden vault serve --config examples/vault.toml
    #[command(verbatim_doc_comment)]
    Serve(VaultArgs),
    /// Re-seal every entry under [vault.encryption] active_key, then exit
    ///
    /// Key rotation without downtime: add the new key to [vault.encryption.keys], make it the
    /// active_key and restart the vault (new writes use it; old entries stay readable), run
    /// this, then remove the old key. Safe while the vault serves (each row is rewritten under
    /// its version). Exit code 0 when every entry is under the active key; 1 if some could not
    /// be opened (their key is missing or the row was tampered with: listed in the log).
    ///
    /// Example:
    ///   tokenwarden vault rekey --config /etc/tokenwarden/vault.toml
    #[command(verbatim_doc_comment)]
    Rekey(VaultArgs),
    /// List every entry (owner, type, status, session, key; never a token)
    ///
    /// Example:
    ///   tokenwarden vault list --config /etc/tokenwarden/vault.toml --json
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Print a new random encryption key: 32 bytes from a CSPRNG seeded by the OS, base64
    ///
    /// Store it where a secret reference can find it and name it in [vault.encryption.keys].
    ///
    /// Example:
    ///   tokenwarden vault keygen > /run/secrets/tw-vault-key-2026-01
    ///   # [vault.encryption.keys]
    ///   # "2026-01" = { file = "/run/secrets/tw-vault-key-2026-01" }
    #[command(verbatim_doc_comment)]
    Keygen,
}

#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Configuration file (TOML) with a [vault] section (see examples/vault.toml).
    /// TOKENWARDEN_* environment variables override its values.
    #[arg(short, long, env = "TOKENWARDEN_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Print the entries as JSON (the API's shape) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: VaultCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VaultCommand::Serve(args) => serve(&args.config).await,
        VaultCommand::Rekey(args) => rekey(&args.config).await,
        VaultCommand::List(args) => list(&args.vault.config, args.json).await,
        VaultCommand::Keygen => {
            let key: [u8; 32] = rand::random();
            println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `config check` for `[vault]`: the callers' verifier rules, every secret (unless skipped:
/// keys are then not checked either), and a summary.
pub fn check(section: &VaultConfig, skip_secrets: bool) -> anyhow::Result<()> {
    Verifier::new(&section.callers.verifier_settings(), Arc::new(SystemClock))?;
    if !skip_secrets {
        tw_config::vault_settings(section)?;
    }
    println!(
        "  vault {}: redirect URI {}, client {} at {}, {} key(s) (active {}), {} caller issuer(s), {} role(s)",
        section.listen,
        section.redirect_uri(),
        section.idp.client_id,
        section.idp.issuer,
        section.encryption.keys.len(),
        section.encryption.active_key,
        section.callers.issuers.len(),
        section.callers.roles.len()
    );
    Ok(())
}

/// The `[vault]` section of `cfg`, or a config error naming the file.
fn vault_section<'a>(cfg: &'a tw_config::Config, path: &Path) -> Result<&'a VaultConfig, Error> {
    cfg.vault.as_ref().ok_or_else(|| {
        Error::config(
            "no_vault_section",
            format!(
                "{}: there is no [vault] section (see examples/vault.toml)",
                path.display()
            ),
        )
        .with("file", path.display().to_string())
    })
}

/// The configuration, its `[vault]`, the vault over `[storage]` and that store.
async fn open(path: &Path, log: bool) -> anyhow::Result<(tw_config::Config, Vault, Store)> {
    let cfg = tw_config::load(path)?;
    let section = vault_section(&cfg, path)?;
    if log {
        crate::logging::init(&cfg.log);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = tw_config::vault_settings(section)?;
    let store = tw_serve::gateway::open_store(&cfg, clock.clone()).await?;
    let tables = Arc::new(tw_store::VaultTables::new(store.clone()));
    let vault = Vault::new(settings, tables, clock).await?;
    Ok((cfg, vault, store))
}

async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let (cfg, vault, store) = open(path, true).await?;
    let section = vault_section(&cfg, path)?;
    let metrics = crate::process::install_metrics_recorder()?;
    let verifier = Arc::new(Verifier::new(
        &section.callers.verifier_settings(),
        Arc::new(SystemClock),
    )?);
    let auth = Arc::new(CallerAuth::new(
        &tw_config::vault_caller_settings(section),
        verifier,
        Arc::new(SystemClock),
    )?);
    let router = tw_vault_api::router(
        vault,
        auth.clone(),
        StoreHealth::start(store),
        &tw_config::vault_api_settings(section),
        Some(Arc::new(move || metrics.render())),
    );
    let listener = tw_vault_api::bind(&section.listen).await?;
    tw_vault_api::run(listener, router, &auth, crate::process::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn rekey(path: &Path) -> anyhow::Result<ExitCode> {
    let (_, vault, _) = open(path, true).await?;
    let report = vault.rekey().await?;
    println!(
        "rekey: {} re-sealed, {} already under the active key, {} could not be opened",
        report.rewritten, report.unchanged, report.failed
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn list(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (_, vault, _) = open(path, false).await?;
    let operator = Caller::new("tokenwarden-cli", "operator").with_permission(PERM_READ_ANY);
    let entries = vault.list_all(&operator).await?;
    if json {
        let out: Vec<serde_json::Value> = entries.iter().map(tw_vault_api::entry_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<8}  {:<18}  {:<10}  OWNER",
        "ID", "TYPE", "STATUS", "KEY"
    );
    for e in &entries {
        println!(
            "{:<36}  {:<8}  {:<18}  {:<10}  {} {}",
            e.id,
            e.token_type.as_str(),
            e.status.as_str(),
            e.key_id,
            e.owner_issuer,
            e.owner_subject
        );
    }
    Ok(ExitCode::SUCCESS)
}
