//! `tokenwarden accounts|roles|audit`: manage the service-account registry and read the audit log
//! in the configured `[storage]` (SQLite `sqlite://tokenwarden.db` by default).
//!
//! Output: aligned tables, or the store's JSON types with `--json`. What is printed came from
//! admins, tokens or the database (rows of older versions, or written by SQL), so control
//! characters and bidirectional overrides are always shown escaped (`\u{1b}` in tables,
//! `\u001b` in JSON) and table cells are cut at [`CELL_MAX`] characters (`…`; `--json` has
//! them whole). Input is checked by the store: too long, or holding control characters, is
//! exit 2 naming the field.
//!
//! Exit codes (see `main.rs`): 0 done; 2 bad input or configuration (nothing was changed); 1
//! anything else, including "not found", "already exists", "role in use" and storage
//! unavailable. Errors name the database by its redacted URL: never the password.

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tw_core::text::{is_terminal_unsafe, terminal_cell};
use tw_core::{Clock, Error, SystemClock, UnixTime};
use tw_store::{Account, AuditRecord, NewAccount, Role, Store};

/// The longest table cell (characters, after escaping); longer values end in `…`.
const CELL_MAX: usize = 120;

/// What every registry command takes.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Configuration file (TOML); only its `[storage]` section is used. Without one (and without
    /// TOKENWARDEN_CONFIG): SQLite `sqlite://tokenwarden.db` in the working directory.
    #[arg(short, long, env = "TOKENWARDEN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON (the API's types) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `tokenwarden accounts ...`
#[derive(Debug, Args)]
pub struct AccountsArgs {
    #[command(flatten)]
    pub common: StoreArgs,
    #[command(subcommand)]
    pub command: AccountsCommand,
}

/// `tokenwarden roles ...`
#[derive(Debug, Args)]
pub struct RolesArgs {
    #[command(flatten)]
    pub common: StoreArgs,
    #[command(subcommand)]
    pub command: RolesCommand,
}

/// `tokenwarden audit ...`
#[derive(Debug, Args)]
pub struct AuditArgsTop {
    #[command(flatten)]
    pub common: StoreArgs,
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Which account: by ID, or by issuer + client id / subject.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("target").args(["id", "client_id", "subject"]).required(true).multiple(false))]
pub struct AccountRef {
    /// The account's ID (as printed by `accounts list`).
    pub id: Option<String>,
    #[command(flatten)]
    pub identity: IdentityFlags,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Register a service account: issuer plus subject (`sub`) and/or client id (`azp`)
    ///
    /// Example:
    ///   tokenwarden accounts create --issuer https://kc.example/realms/evently \
    ///       --client-id evently-confidential-client --name "Evently backend" \
    ///       --role mcp-agent-events-manager --config gateway.toml
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// List every account (ID, issuer, client id, subject, name, enabled, roles)
    ///
    /// Example:
    ///   tokenwarden accounts list --config gateway.toml --json
    #[command(verbatim_doc_comment)]
    List,
    /// Show one account, by ID or by --issuer with --client-id or --subject
    ///
    /// Examples:
    ///   tokenwarden accounts show 1b4e28ba-2fa1-41d2-883f-0016d3cca427
    ///   tokenwarden accounts show --issuer https://kc.example/realms/evently \
    ///       --client-id evently-confidential-client
    #[command(verbatim_doc_comment)]
    Show(AccountRef),
    /// Enable an account (its tokens count again).
    Enable(AccountRef),
    /// Disable an account: the gateway refuses its tokens (registry permissions) until enabled.
    Disable(AccountRef),
    /// Grant a role (idempotent; the role must exist)
    ///
    /// Examples:
    ///   tokenwarden accounts grant ACCOUNT_ID mcp-agent-attributes-readonly
    ///   tokenwarden accounts grant --issuer https://kc.example/realms/evently \
    ///       --client-id evently-confidential-client mcp-agent-attributes-readonly
    #[command(verbatim_doc_comment)]
    Grant(RoleChangeArgs),
    /// Revoke a role (idempotent; the role must exist)
    ///
    /// Example:
    ///   tokenwarden accounts revoke ACCOUNT_ID mcp-agent-attributes-readonly
    #[command(verbatim_doc_comment)]
    Revoke(RoleChangeArgs),
    /// Delete an account and its role grants.
    Delete(AccountRef),
}

#[derive(Debug, Args)]
#[command(group = ArgGroup::new("identity").args(["subject", "client_id"]).required(true).multiple(true))]
pub struct CreateArgs {
    /// The trusted issuer (the tokens' exact `iss`).
    #[arg(long)]
    pub issuer: String,
    /// The tokens' `sub` (for Keycloak service accounts: the service-account user's UUID).
    #[arg(long)]
    pub subject: Option<String>,
    /// The client id (`azp` / `client_id` of the tokens).
    #[arg(long)]
    pub client_id: Option<String>,
    /// A display name.
    #[arg(long)]
    pub name: Option<String>,
    /// A role to grant (repeatable; each must exist).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct RoleChangeArgs {
    /// `ID ROLE`, or just `ROLE` with --issuer and --client-id / --subject.
    #[arg(value_name = "[ID] ROLE", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub identity: IdentityFlags,
}

/// Finding an account by its identity instead of its ID.
#[derive(Debug, Args)]
pub struct IdentityFlags {
    /// Find the account by client id (needs --issuer) instead of ID.
    #[arg(long, requires = "issuer", conflicts_with = "subject")]
    pub client_id: Option<String>,
    /// Find the account by subject (needs --issuer) instead of ID.
    #[arg(long, requires = "issuer")]
    pub subject: Option<String>,
    /// Issuer of the account to find by --client-id or --subject.
    #[arg(long)]
    pub issuer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Create a role, or replace its permission codes and description (upsert)
    ///
    /// Example:
    ///   tokenwarden roles create mcp-agent-events-manager \
    ///       --permission events:read --permission events:search --permission events:update \
    ///       --description "Evently MCP agent: manage events"
    #[command(verbatim_doc_comment)]
    Create(RoleCreateArgs),
    /// List roles with their permission codes.
    List,
    /// Show one role.
    Show { name: String },
    /// Delete a role; refused while accounts hold it, unless --force (they lose it)
    ///
    /// Example:
    ///   tokenwarden roles delete mcp-agent-attributes-readonly --force
    #[command(verbatim_doc_comment)]
    Delete {
        name: String,
        /// Delete even if accounts hold the role (they lose it).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct RoleCreateArgs {
    pub name: String,
    /// A permission code (repeatable): `events:read`, wildcards `events:*` or `*`.
    #[arg(long = "permission", value_name = "CODE", required = true)]
    pub permissions: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Query the audit log, newest first
    ///
    /// Examples:
    ///   tokenwarden audit query --since 1h --outcome deny
    ///   tokenwarden audit query --kind admin --since 1d
    ///   tokenwarden audit query --principal evently-confidential-client \
    ///       --since 2026-11-22T06:00:00Z --until 30m --limit 20 --json
    #[command(verbatim_doc_comment)]
    Query(AuditArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Subject, username or client id.
    #[arg(long)]
    pub principal: Option<String>,
    /// decision (the gateway's) or admin (changes through the admin API). Default: both.
    #[arg(long)]
    pub kind: Option<String>,
    /// allow, deny, dry_run_deny or rate_limited.
    #[arg(long)]
    pub outcome: Option<String>,
    /// From (inclusive): a duration back from now (1h, 30m, 2days) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Until (exclusive): a duration back from now or an RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records (default 100, at most 10000).
    #[arg(long)]
    pub limit: Option<String>,
}

async fn open(args: &StoreArgs) -> anyhow::Result<Store> {
    let storage = match &args.config {
        Some(path) => tw_config::load(path)?.storage.unwrap_or_default(),
        None => tw_config::StorageConfig::default(),
    };
    Ok(Store::open(&storage, Arc::new(SystemClock)).await?)
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<ExitCode> {
    let text = serde_json::to_string_pretty(value)?;
    emit(&json_terminal_safe(&text))?;
    Ok(ExitCode::SUCCESS)
}

/// JSON with the characters serde_json leaves raw in strings (DEL, C1 controls such as the
/// one-byte CSI, bidirectional overrides) written as `\uXXXX` escapes: the same document,
/// safe on a terminal. Outside strings JSON text has no such characters.
fn json_terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_terminal_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `text` and a newline to stdout. A closed pipe (`| head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub async fn accounts(args: AccountsArgs) -> anyhow::Result<ExitCode> {
    let AccountsArgs {
        common,
        command: cmd,
    } = args;
    let store = open(&common).await?;
    let json = common.json;
    let account = match cmd {
        AccountsCommand::List => {
            let all = store.list_accounts().await?;
            if json {
                return print_json(&all);
            }
            print_accounts(&all)?;
            return Ok(ExitCode::SUCCESS);
        }
        AccountsCommand::Create(a) => {
            store
                .create_account(NewAccount {
                    issuer: a.issuer,
                    subject: a.subject,
                    client_id: a.client_id,
                    display_name: a.name,
                    enabled: !a.disabled,
                    roles: a.roles,
                    created_by: "cli".into(),
                })
                .await?
        }
        AccountsCommand::Show(r) => resolve(&store, &r).await?,
        AccountsCommand::Enable(r) => {
            let id = resolve(&store, &r).await?.id;
            store.set_account_enabled(&id, true).await?
        }
        AccountsCommand::Disable(r) => {
            let id = resolve(&store, &r).await?.id;
            store.set_account_enabled(&id, false).await?
        }
        AccountsCommand::Grant(r) => {
            let (id, role) = role_change(&store, &r).await?;
            store.grant_role(&id, &role).await?
        }
        AccountsCommand::Revoke(r) => {
            let (id, role) = role_change(&store, &r).await?;
            store.revoke_role(&id, &role).await?
        }
        AccountsCommand::Delete(r) => {
            let account = resolve(&store, &r).await?;
            store.delete_account(&account.id).await?;
            if json {
                return print_json(&serde_json::json!({ "deleted": account.id }));
            }
            emit(&format!(
                "deleted account {}",
                terminal_cell(&account.id, CELL_MAX)
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        return print_json(&account);
    }
    print_account(&account)?;
    Ok(ExitCode::SUCCESS)
}

/// The account an [`AccountRef`] names (not found: exit 1 with the reason).
async fn resolve(store: &Store, r: &AccountRef) -> anyhow::Result<Account> {
    lookup(
        store,
        r.id.as_deref(),
        r.identity.issuer.as_deref(),
        r.identity.subject.as_deref(),
        r.identity.client_id.as_deref(),
    )
    .await
}

async fn lookup(
    store: &Store,
    id: Option<&str>,
    issuer: Option<&str>,
    subject: Option<&str>,
    client_id: Option<&str>,
) -> anyhow::Result<Account> {
    if let Some(id) = id {
        return Ok(store.get_account(id).await?);
    }
    let issuer = issuer.unwrap_or_default();
    let found = store.find_account(issuer, subject, client_id).await?;
    found.ok_or_else(|| {
        let quoted = |v: &str| terminal_cell(v, 64);
        let what = match (client_id, subject) {
            (Some(c), _) => format!("client id `{}`", quoted(c)),
            (None, Some(s)) => format!("subject `{}`", quoted(s)),
            (None, None) => "this identity".to_owned(),
        };
        Error::not_found(
            tw_store::codes::ACCOUNT_NOT_FOUND,
            format!("no account with {what} for issuer `{}`", quoted(issuer)),
        )
        .into()
    })
}

async fn role_change(store: &Store, r: &RoleChangeArgs) -> anyhow::Result<(String, String)> {
    let by_identity = r.identity.client_id.is_some() || r.identity.subject.is_some();
    let (id, role) = match (by_identity, r.args.as_slice()) {
        (false, [id, role]) => (Some(id.as_str()), role.clone()),
        (true, [role]) => (None, role.clone()),
        (false, _) => {
            return Err(usage(
                "give the account ID and the ROLE, or ROLE with --issuer and --client-id / --subject",
            ));
        }
        (true, _) => {
            return Err(usage(
                "with --client-id / --subject give only the ROLE, not an ID",
            ));
        }
    };
    let account = lookup(
        store,
        id,
        r.identity.issuer.as_deref(),
        r.identity.subject.as_deref(),
        r.identity.client_id.as_deref(),
    )
    .await?;
    Ok((account.id, role))
}

fn usage(msg: &str) -> anyhow::Error {
    Error::bad_request("usage", msg.to_owned()).into()
}

pub async fn roles(args: RolesArgs) -> anyhow::Result<ExitCode> {
    let RolesArgs {
        common,
        command: cmd,
    } = args;
    let store = open(&common).await?;
    let json = common.json;
    let role = match cmd {
        RolesCommand::List => {
            let all = store.list_roles().await?;
            if json {
                return print_json(&all);
            }
            print_roles(&all)?;
            return Ok(ExitCode::SUCCESS);
        }
        RolesCommand::Create(a) => {
            store
                .upsert_role(&a.name, a.description.as_deref(), &a.permissions)
                .await?
        }
        RolesCommand::Show { name } => store.get_role(&name).await?,
        RolesCommand::Delete { name, force } => {
            store.delete_role(&name, force).await?;
            if json {
                return print_json(&serde_json::json!({ "deleted": name }));
            }
            emit(&format!("deleted role {}", terminal_cell(&name, CELL_MAX)))?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        return print_json(&role);
    }
    print_role(&role)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(args: AuditArgsTop) -> anyhow::Result<ExitCode> {
    let AuditArgsTop {
        common,
        command: AuditCommand::Query(a),
    } = args;
    // Parse the filters before touching the database: bad input is exit 2 with nothing opened.
    let pairs = [
        ("principal", a.principal.as_deref()),
        ("kind", a.kind.as_deref()),
        ("outcome", a.outcome.as_deref()),
        ("since", a.since.as_deref()),
        ("until", a.until.as_deref()),
        ("limit", a.limit.as_deref()),
    ];
    let query = tw_admin::query::audit_query(
        pairs.iter().filter_map(|(k, v)| v.map(|v| (*k, v))),
        SystemClock.now(),
    )?;
    if let Some(limit) = query.limit
        && (limit == 0 || limit > tw_store::AUDIT_MAX_LIMIT)
    {
        return Err(Error::bad_request(
            "invalid_limit",
            format!(
                "--limit must be between 1 and {}",
                tw_store::AUDIT_MAX_LIMIT
            ),
        )
        .into());
    }
    let store = open(&common).await?;
    let records = store.query_audit(&query).await?;
    if common.json {
        return print_json(&records);
    }
    print_audit(&records)?;
    Ok(ExitCode::SUCCESS)
}

// ----- tables -----

/// Rows under a header, columns padded to their widest cell (the last one unpadded). Every cell
/// is escaped and cut to [`CELL_MAX`] characters, whatever the database holds.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| terminal_cell(c, CELL_MAX)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(header)];
    for row in &rows {
        lines.push(line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    lines.join("\n")
}

fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

fn list_or_dash(items: &[String], sep: &str) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(sep)
    }
}

fn time(t: UnixTime) -> String {
    let secs = u64::try_from(t.as_secs()).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn yes_no(v: bool) -> String {
    if v { "yes" } else { "no" }.to_owned()
}

fn print_accounts(accounts: &[Account]) -> anyhow::Result<()> {
    if accounts.is_empty() {
        return emit("no accounts");
    }
    let rows = accounts
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.issuer.clone(),
                dash(a.client_id.as_deref()),
                dash(a.subject.as_deref()),
                dash(a.display_name.as_deref()),
                yes_no(a.enabled),
                list_or_dash(&a.roles, ","),
            ]
        })
        .collect();
    emit(&table(
        &[
            "ID",
            "ISSUER",
            "CLIENT_ID",
            "SUBJECT",
            "NAME",
            "ENABLED",
            "ROLES",
        ],
        rows,
    ))
}

fn print_account(a: &Account) -> anyhow::Result<()> {
    let rows = vec![
        vec!["id".to_owned(), a.id.clone()],
        vec!["issuer".to_owned(), a.issuer.clone()],
        vec!["client_id".to_owned(), dash(a.client_id.as_deref())],
        vec!["subject".to_owned(), dash(a.subject.as_deref())],
        vec!["name".to_owned(), dash(a.display_name.as_deref())],
        vec!["enabled".to_owned(), yes_no(a.enabled)],
        vec!["roles".to_owned(), list_or_dash(&a.roles, ", ")],
        vec![
            "created".to_owned(),
            format!("{} by {}", time(a.created_at), a.created_by),
        ],
        vec!["updated".to_owned(), time(a.updated_at)],
    ];
    emit(&table(&["FIELD", "VALUE"], rows))
}

fn print_roles(roles: &[Role]) -> anyhow::Result<()> {
    if roles.is_empty() {
        return emit("no roles");
    }
    let rows = roles
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                list_or_dash(&r.permissions, " "),
                dash(r.description.as_deref()),
            ]
        })
        .collect();
    emit(&table(&["NAME", "PERMISSIONS", "DESCRIPTION"], rows))
}

/// One role, a permission code per line (a role's codes may be many).
fn print_role(r: &Role) -> anyhow::Result<()> {
    let mut rows = vec![
        vec!["name".to_owned(), r.name.clone()],
        vec!["description".to_owned(), dash(r.description.as_deref())],
    ];
    if r.permissions.is_empty() {
        rows.push(vec!["permissions".to_owned(), "-".to_owned()]);
    }
    for (i, code) in r.permissions.iter().enumerate() {
        let field = if i == 0 { "permissions" } else { "" };
        rows.push(vec![field.to_owned(), code.clone()]);
    }
    emit(&table(&["FIELD", "VALUE"], rows))
}

fn print_audit(records: &[AuditRecord]) -> anyhow::Result<()> {
    if records.is_empty() {
        return emit("no audit records");
    }
    let rows = records
        .iter()
        .map(|r| {
            vec![
                time(r.at),
                r.kind.as_str().to_owned(),
                r.outcome.as_str().to_owned(),
                dash(r.subject.as_deref()),
                dash(r.username.as_deref()),
                dash(r.client_id.as_deref()),
                r.method.clone(),
                r.path.clone(),
                dash(r.rule.as_deref()),
                dash(r.action.as_deref()),
                dash(r.object.as_deref()),
                dash(r.reason.as_deref()),
            ]
        })
        .collect();
    emit(&table(
        &[
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
        ],
        rows,
    ))
}
