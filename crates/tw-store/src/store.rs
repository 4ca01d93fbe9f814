//! [`Store`]: one API over a SQLite or a PostgreSQL pool.

use crate::codes;
use crate::error::{db, unavailable};
use crate::model::*;
use crate::queries as q;
use crate::settings::{StorageConfig, StorageKind};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteRow, SqliteSynchronous,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tw_core::text::terminal_cell;
use tw_core::{Clock, Error, Result, UnixTime};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How often a SQLite store polls the version counter (other processes on the same file).
const SQLITE_POLL: Duration = Duration::from_millis(250);
/// PostgreSQL: a poll as a safety net besides LISTEN/NOTIFY (missed notifications on reconnect).
const POSTGRES_POLL: Duration = Duration::from_secs(5);
/// Rows per audit INSERT statement (17 parameters each: well under SQLite's and PostgreSQL's
/// limits).
const AUDIT_INSERT_CHUNK: usize = 200;
/// The NOTIFY channel the `registry_version` trigger announces on.
const NOTIFY_CHANNEL: &str = "tw_registry";

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool this is: `$p` is a `&SqlitePool` or a `&PgPool`,
/// and the body is type-checked for each. The one place the two databases branch.
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Inside `with_pool!`: a registry-changing transaction. Bumps the version first, runs `$body`
/// (with `$tx` the transaction), commits, and yields `(body result, new version)`.
macro_rules! registry_tx {
    ($p:ident, $op:expr, |$tx:ident| $body:expr) => {{
        let mut $tx = $p.begin().await.map_err(db($op))?;
        let version: i64 = tx_scalar!($tx, q::BUMP_VERSION, $op, [])?;
        let out = $body;
        $tx.commit().await.map_err(db($op))?;
        (out, version)
    }};
}

/// Inside `registry_tx!`: one statement with `binds` in the transaction; the rows it changed.
/// Yields a `Result` so that callers can refine the error before `?`.
macro_rules! tx_execute {
    ($tx:ident, $sql:expr, $op:expr, [$($bind:expr),* $(,)?]) => {
        sqlx::query($sql)
            $(.bind($bind))*
            .execute(&mut *$tx)
            .await
            .map(|done| done.rows_affected())
            .map_err(db($op))
    };
}

pub(crate) use tx_execute;

/// Inside `registry_tx!`: the single value of a one-row, one-column query with `binds`.
macro_rules! tx_scalar {
    ($tx:ident, $sql:expr, $op:expr, [$($bind:expr),* $(,)?]) => {
        sqlx::query_scalar($sql)
            $(.bind($bind))*
            .fetch_one(&mut *$tx)
            .await
            .map_err(db($op))
    };
}

/// Inside `registry_tx!`: returns `role_not_found` unless role `$role` exists.
macro_rules! tx_require_role {
    ($tx:ident, $role:expr, $op:expr) => {{
        let n: i64 = tx_scalar!($tx, q::ROLE_EXISTS, $op, [$role])?;
        if n == 0 {
            return Err(role_not_found($role));
        }
    }};
}

struct Inner {
    pool: Pool,
    backend: Backend,
    location: String,
    clock: Arc<dyn Clock>,
    version: watch::Sender<i64>,
    /// How many health pingers ([`crate::health::StoreHealth`]) count the store as down (their last two pings failed). While
    /// it is not zero, the registry port answers `storage_unavailable` without touching the pool
    /// (see [`Store::fail_fast_if_down`]). Only the pingers change it, and each takes its count
    /// back when it stops, so a failed lookup can never keep the store marked down.
    health_down: AtomicUsize,
}

/// The registry and audit log. Cheap to clone (one shared pool).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

type AccountRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    String,
);

/// `name, description`.
type RoleRow = (String, Option<String>);

/// The columns of `q::QUERY_AUDIT`.
#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    issuer: String,
    subject: Option<String>,
    client_id: Option<String>,
    principal_kind: String,
    method: String,
    path: String,
    rule: Option<String>,
    permissions_used: String,
    outcome: String,
    reason: Option<String>,
    instance: String,
    kind: String,
    username: Option<String>,
    action: Option<String>,
    object: Option<String>,
}

fn account_from(row: AccountRow, roles: Vec<String>) -> Account {
    let (id, issuer, subject, client_id, display_name, enabled, created, updated, created_by) = row;
    Account {
        id,
        issuer,
        subject,
        client_id,
        display_name,
        enabled: enabled != 0,
        roles,
        created_at: UnixTime::from_millis(created),
        updated_at: UnixTime::from_millis(updated),
        created_by,
    }
}

fn audit_from(row: AuditRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: Some(row.id),
        kind: AuditKind::parse(&row.kind)?,
        at: UnixTime::from_millis(row.at),
        issuer: row.issuer,
        subject: row.subject,
        username: row.username,
        client_id: row.client_id,
        principal_kind: PrincipalKind::parse(&row.principal_kind)?,
        method: row.method,
        path: row.path,
        rule: row.rule,
        permissions_used: row
            .permissions_used
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        outcome: AuditOutcome::parse(&row.outcome)?,
        reason: row.reason,
        instance: row.instance,
        action: row.action,
        object: row.object,
    })
}

/// Caller input quoted in a message: escaped and short, however it came.
fn quoted(v: &str) -> String {
    terminal_cell(v, 64)
}

fn account_not_found(id: &str) -> Error {
    let id = quoted(id);
    Error::not_found(
        codes::ACCOUNT_NOT_FOUND,
        format!("no account with id `{id}`"),
    )
    .with("account", id)
}

fn role_not_found(name: &str) -> Error {
    let name = quoted(name);
    Error::not_found(codes::ROLE_NOT_FOUND, format!("no role named `{name}`")).with("role", name)
}

fn role_in_use(name: &str, holders: i64) -> Error {
    let name = quoted(name);
    Error::conflict(
        codes::ROLE_IN_USE,
        format!(
            "role `{name}` is held by {holders} account(s); revoke it first or delete with force"
        ),
    )
    .with("role", name)
}

/// Inside `registry_tx!`: the audit row of this change when an admin made it (same
/// transaction: no change without its row, no row without its change).
macro_rules! tx_audit {
    ($tx:ident, $actor:expr, $now:expr, $action:expr, $object:expr, $op:expr) => {
        if let Some(actor) = $actor {
            let r = actor.record(UnixTime::from_millis($now), $action, $object);
            tx_execute!(
                $tx,
                q::INSERT_AUDIT_ROW,
                $op,
                [
                    r.at.as_millis(),
                    &r.issuer,
                    &r.subject,
                    &r.client_id,
                    r.principal_kind.as_str(),
                    &r.method,
                    &r.path,
                    &r.rule,
                    r.permissions_used.join(" "),
                    r.outcome.as_str(),
                    &r.reason,
                    &r.instance,
                    r.kind.as_str(),
                    &r.username,
                    &r.action,
                    &r.object,
                ]
            )?;
        }
    };
}

/// The registry writes of an admin ([`Store::as_admin`]): each change and its audit row
/// ([`AuditKind::Admin`]: the actor, `action`, `object`) commit in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct AdminWrites<'a> {
    store: &'a Store,
    actor: &'a AdminActor,
}

impl AdminWrites<'_> {
    /// Audited as `account.create` on the new id.
    pub async fn create_account(&self, new: NewAccount) -> Result<Account> {
        self.store.create_account_by(new, Some(self.actor)).await
    }
    /// `account.enable` / `account.disable`.
    pub async fn set_account_enabled(&self, id: &str, enabled: bool) -> Result<Account> {
        self.store
            .set_account_enabled_by(id, enabled, Some(self.actor))
            .await
    }
    /// `account.grant` on `<id> <role>`.
    pub async fn grant_role(&self, id: &str, role: &str) -> Result<Account> {
        self.store
            .change_role(id, role, true, Some(self.actor))
            .await
    }
    /// `account.revoke` on `<id> <role>`.
    pub async fn revoke_role(&self, id: &str, role: &str) -> Result<Account> {
        self.store
            .change_role(id, role, false, Some(self.actor))
            .await
    }
    /// `account.delete`.
    pub async fn delete_account(&self, id: &str) -> Result<()> {
        self.store.delete_account_by(id, Some(self.actor)).await
    }
    /// `role.put` on the role's name.
    pub async fn upsert_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: &[String],
    ) -> Result<Role> {
        self.store
            .upsert_role_by(name, description, permissions, Some(self.actor))
            .await
    }
    /// `role.delete` (`role.delete_forced` with `force`).
    pub async fn delete_role(&self, name: &str, force: bool) -> Result<()> {
        self.store
            .delete_role_by(name, force, Some(self.actor))
            .await
    }
}

/// The file of a `sqlite://` URL (query string dropped).
fn sqlite_path(url: &str) -> PathBuf {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or("");
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    PathBuf::from(rest.split('?').next().unwrap_or(""))
}

impl Store {
    /// Opens the configured database. SQLite: creates the file (and its parent directory), WAL,
    /// migrates. PostgreSQL: connects (password from `storage.password`), migrates. Then starts
    /// watching the registry version.
    pub async fn open(cfg: &StorageConfig, clock: Arc<dyn Clock>) -> Result<Store> {
        cfg.validate()?;
        let (pool, backend, location) = match cfg.kind() {
            Some(StorageKind::Postgres) => {
                let mut opts = PgConnectOptions::from_str(&cfg.url).map_err(|e| {
                    Error::config(
                        tw_core::CONFIG_INVALID,
                        format!("key `storage.url`: not a usable PostgreSQL URL: {e}"),
                    )
                    .with("key", "storage.url")
                })?;
                if let Some(password) = &cfg.password {
                    opts = opts.password(password.resolve("storage.password")?.expose());
                }
                let pool = connect_migrated(cfg, opts, &POSTGRES_MIGRATOR).await?;
                (Pool::Postgres(pool), Backend::Postgres, cfg.redacted_url())
            }
            _ => {
                let path = sqlite_path(&cfg.url);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::internal(
                            codes::STORAGE_ERROR,
                            format!(
                                "cannot create the directory {} for the SQLite database: {e}",
                                parent.display()
                            ),
                        )
                    })?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = connect_migrated(cfg, opts, &SQLITE_MIGRATOR).await?;
                (
                    Pool::Sqlite(pool),
                    Backend::Sqlite,
                    path.display().to_string(),
                )
            }
        };
        let (version, _) = watch::channel(0);
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                location,
                clock,
                version,
                health_down: AtomicUsize::new(0),
            }),
        };
        let current = store.registry_version().await?;
        store.seen(current);
        store.spawn_watcher().await?;
        tracing::info!(backend = backend.as_str(), location = %store.inner.location, "storage opened");
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(&self.inner.pool, |p| {
            sqlx::query(q::PING).execute(p).await.map_err(db("ping"))?;
        });
        Ok(())
    }

    fn now(&self) -> i64 {
        self.inner.clock.now().as_millis()
    }

    /// A health pinger's verdict changed: `down` after two failed pings in a row, else back up.
    /// Called by [`crate::health`] only (every change is matched by its opposite, at the latest
    /// when the pinger stops).
    pub(crate) fn report_health(&self, down: bool) {
        if down {
            self.inner.health_down.fetch_add(1, Ordering::AcqRel);
        } else {
            self.inner.health_down.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// `storage_unavailable` (503, retryable, `Retry-After`) at once, without waiting on the
    /// pool, while a health pinger has seen the store down; `Ok` otherwise (and always when no
    /// pinger runs). For the registry port ([`tw_authz::RegistrySource`]), whose callers would
    /// otherwise wait for the pool's connect timeout on every lookup during an outage.
    pub(crate) fn fail_fast_if_down(&self, op: &'static str) -> Result<()> {
        if self.inner.health_down.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        Err(
            unavailable(op, "the database did not answer the last health check")
                .with("operation", op),
        )
    }

    /// The pool, for the other table modules of this crate (`vault::VaultTables`).
    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// All rows of `rows_sql`, and the `(key, value)` rows of the join table `pairs_sql` grouped
    /// by key (`list_accounts`: roles by account, `list_roles`: permissions by role).
    async fn rows_with_groups<R>(
        &self,
        rows_sql: &'static str,
        pairs_sql: &'static str,
        op: &'static str,
    ) -> Result<(Vec<R>, BTreeMap<String, Vec<String>>)>
    where
        R: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let (rows, pairs): (Vec<R>, Vec<(String, String)>) = with_pool!(&self.inner.pool, |p| {
            let rows = sqlx::query_as(rows_sql)
                .fetch_all(p)
                .await
                .map_err(db(op))?;
            let pairs = sqlx::query_as(pairs_sql)
                .fetch_all(p)
                .await
                .map_err(db(op))?;
            (rows, pairs)
        });
        Ok((rows, group_pairs(pairs)))
    }

    /// Publishes `v` to watchers if it is newer than what they saw.
    fn seen(&self, v: i64) {
        publish(&self.inner.version, v);
    }

    // ----- registry -----

    pub async fn create_account(&self, new: NewAccount) -> Result<Account> {
        self.create_account_by(new, None).await
    }

    /// The registry writes of `actor`, each audited with its change (see [`AdminWrites`]).
    pub fn as_admin<'a>(&'a self, actor: &'a AdminActor) -> AdminWrites<'a> {
        AdminWrites { store: self, actor }
    }

    async fn create_account_by(
        &self,
        new: NewAccount,
        actor: Option<&AdminActor>,
    ) -> Result<Account> {
        new.check()?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = self.now();
        let blank = |v: Option<String>| v.filter(|s| !s.is_empty());
        let (subject, client_id) = (blank(new.subject.clone()), blank(new.client_id.clone()));
        let roles: BTreeSet<&str> = new.roles.iter().map(String::as_str).collect();
        let conflict = |e: Error| {
            if e.kind() == tw_core::ErrorKind::Conflict {
                Error::conflict(
                    codes::ACCOUNT_EXISTS,
                    format!(
                        "an account for issuer `{}` with this {} already exists",
                        new.issuer,
                        match (&subject, &client_id) {
                            (Some(_), Some(_)) => "subject or client id",
                            (Some(_), None) => "subject",
                            _ => "client id",
                        }
                    ),
                )
                .with("issuer", new.issuer.clone())
            } else {
                e
            }
        };
        let op = "create account";
        let ((), version) = with_pool!(&self.inner.pool, |p| registry_tx!(p, op, |tx| {
            tx_execute!(
                tx,
                q::INSERT_ACCOUNT,
                op,
                [
                    &id,
                    &new.issuer,
                    &subject,
                    &client_id,
                    &new.display_name,
                    i64::from(new.enabled),
                    now,
                    now,
                    &new.created_by,
                ]
            )
            .map_err(conflict)?;
            for role in &roles {
                tx_require_role!(tx, *role, op);
                tx_execute!(tx, q::GRANT, op, [&id, *role])?;
            }
            tx_audit!(tx, actor, now, "account.create", &id, op);
        }));
        self.seen(version);
        self.get_account(&id).await
    }

    pub async fn get_account(&self, id: &str) -> Result<Account> {
        let op = "get account";
        let row: Option<AccountRow> =
            with_pool!(&self.inner.pool, |p| sqlx::query_as(q::GET_ACCOUNT)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db(op))?);
        let row = row.ok_or_else(|| account_not_found(id))?;
        self.with_roles(row, op).await
    }

    /// The account of `row`, with the roles it holds.
    async fn with_roles(&self, row: AccountRow, op: &'static str) -> Result<Account> {
        let roles: Vec<String> = with_pool!(&self.inner.pool, |p| sqlx::query_scalar(q::ROLES_OF)
            .bind(&row.0)
            .fetch_all(p)
            .await
            .map_err(db(op))?);
        Ok(account_from(row, roles))
    }

    /// The account of an identity: by `issuer` + `subject` first, then by `issuer` +
    /// `client_id`. For explicit lookups (the CLI's `--client-id` / `--subject`); a token's
    /// account is looked up through [`tw_authz::RegistrySource`] with its
    /// [`tw_authz::AccountKey`], which carries a client id only for service accounts.
    pub async fn find_account(
        &self,
        issuer: &str,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<Option<Account>> {
        let op = "find account";
        let lookups = [
            (q::FIND_BY_SUBJECT, subject),
            (q::FIND_BY_CLIENT_ID, client_id),
        ];
        for (query, value) in lookups {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            let row: Option<AccountRow> = with_pool!(&self.inner.pool, |p| sqlx::query_as(query)
                .bind(issuer)
                .bind(value)
                .fetch_optional(p)
                .await
                .map_err(db(op))?);
            if let Some(row) = row {
                return self.with_roles(row, op).await.map(Some);
            }
        }
        Ok(None)
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        let (rows, mut roles) = self
            .rows_with_groups::<AccountRow>(q::LIST_ACCOUNTS, q::ALL_ACCOUNT_ROLES, "list accounts")
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let r = roles.remove(&row.0).unwrap_or_default();
                account_from(row, r)
            })
            .collect())
    }

    pub async fn set_account_enabled(&self, id: &str, enabled: bool) -> Result<Account> {
        self.set_account_enabled_by(id, enabled, None).await
    }

    async fn set_account_enabled_by(
        &self,
        id: &str,
        enabled: bool,
        actor: Option<&AdminActor>,
    ) -> Result<Account> {
        let now = self.now();
        let op = "set account enabled";
        let action = if enabled {
            "account.enable"
        } else {
            "account.disable"
        };
        let ((), version) = with_pool!(&self.inner.pool, |p| registry_tx!(p, op, |tx| {
            let changed = tx_execute!(tx, q::SET_ENABLED, op, [id, i64::from(enabled), now])?;
            if changed == 0 {
                return Err(account_not_found(id));
            }
            tx_audit!(tx, actor, now, action, id, op);
        }));
        self.seen(version);
        self.get_account(id).await
    }

    /// Grants an existing role (idempotent).
    pub async fn grant_role(&self, id: &str, role: &str) -> Result<Account> {
        self.change_role(id, role, true, None).await
    }

    /// Takes a role away (idempotent; the role must exist).
    pub async fn revoke_role(&self, id: &str, role: &str) -> Result<Account> {
        self.change_role(id, role, false, None).await
    }

    async fn change_role(
        &self,
        id: &str,
        role: &str,
        grant: bool,
        actor: Option<&AdminActor>,
    ) -> Result<Account> {
        let now = self.now();
        let (query, action) = if grant {
            (q::GRANT, "account.grant")
        } else {
            (q::REVOKE, "account.revoke")
        };
        let object = format!("{id} {role}");
        let op = "change account roles";
        let ((), version) = with_pool!(&self.inner.pool, |p| registry_tx!(p, op, |tx| {
            let touched = tx_execute!(tx, q::TOUCH_ACCOUNT, op, [id, now])?;
            if touched == 0 {
                return Err(account_not_found(id));
            }
            tx_require_role!(tx, role, op);
            tx_execute!(tx, query, op, [id, role])?;
            tx_audit!(tx, actor, now, action, &object, op);
        }));
        self.seen(version);
        self.get_account(id).await
    }

    pub async fn delete_account(&self, id: &str) -> Result<()> {
        self.delete_account_by(id, None).await
    }

    async fn delete_account_by(&self, id: &str, actor: Option<&AdminActor>) -> Result<()> {
        let now = self.now();
        let op = "delete account";
        let ((), version) = with_pool!(&self.inner.pool, |p| registry_tx!(p, op, |tx| {
            tx_execute!(tx, q::DELETE_ACCOUNT_ROLES, op, [id])?;
            let deleted = tx_execute!(tx, q::DELETE_ACCOUNT, op, [id])?;
            if deleted == 0 {
                return Err(account_not_found(id));
            }
            tx_audit!(tx, actor, now, "account.delete", id, op);
        }));
        self.seen(version);
        Ok(())
    }

    /// Creates the role or replaces its description and permission set. Codes are stored as
    /// given (`events:*` stays `events:*`); duplicates collapse. Names and codes are 1 to
    /// [`MAX_CODE_LEN`] characters without spaces, descriptions at most [`MAX_DESCRIPTION_LEN`],
    /// none with control characters (400 `invalid_role` / `invalid_permission` naming the field).
    pub async fn upsert_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: &[String],
    ) -> Result<Role> {
        self.upsert_role_by(name, description, permissions, None)
            .await
    }

    async fn upsert_role_by(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: &[String],
        actor: Option<&AdminActor>,
    ) -> Result<Role> {
        check_code(codes::INVALID_ROLE, "name", "role name", name)?;
        if let Some(d) = description {
            check_text(codes::INVALID_ROLE, "description", d, MAX_DESCRIPTION_LEN)?;
        }
        if permissions.len() > MAX_LIST_LEN {
            return Err(Error::bad_request(
                codes::INVALID_PERMISSION,
                format!(
                    "a role has at most {MAX_LIST_LEN} permission codes, not {}",
                    permissions.len()
                ),
            )
            .with("field", "permissions"));
        }
        for code in permissions {
            check_code(
                codes::INVALID_PERMISSION,
                "permissions",
                "permission code",
                code,
            )?;
        }
        let codes: BTreeSet<&str> = permissions.iter().map(String::as_str).collect();
        let now = self.now();
        let op = "upsert role";
        let ((), version) = with_pool!(&self.inner.pool, |p| registry_tx!(p, op, |tx| {
            tx_execute!(tx, q::UPSERT_ROLE, op, [name, description, now])?;
            tx_execute!(tx, q::CLEAR_ROLE_PERMISSIONS, op, [name])?;
            for code in &codes {
                tx_execute!(tx, q::INSERT_ROLE_PERMISSION, op, [name, *code])?;
            }
            tx_audit!(tx, actor, now, "role.put", name, op);
        }));
        self.seen(version);
        self.get_role(name).await
    }

    pub async fn get_role(&self, name: &str) -> Result<Role> {
        let op = "get role";
        with_pool!(&self.inner.pool, |p| {
            let row: Option<RoleRow> = sqlx::query_as(q::GET_ROLE)
                .bind(name)
                .fetch_optional(p)
                .await
                .map_err(db(op))?;
            let (name, description) = row.ok_or_else(|| role_not_found(name))?;
            let permissions: Vec<String> = sqlx::query_scalar(q::ROLE_PERMISSIONS)
                .bind(&name)
                .fetch_all(p)
                .await
                .map_err(db(op))?;
            Ok(Role {
                name,
                description,
                permissions,
            })
        })
    }

    pub async fn list_roles(&self) -> Result<Vec<Role>> {
        let (rows, mut by_role) = self
            .rows_with_groups::<RoleRow>(q::LIST_ROLES, q::ALL_ROLE_PERMISSIONS, "list roles")
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, description)| Role {
                permissions: by_role.remove(&name).unwrap_or_default(),
                name,
                description,
            })
            .collect())
    }

    /// Deletes a role. While accounts hold it this is refused (409 `role_in_use`), unless
    /// `force`, which also takes it from those accounts.
    pub async fn delete_role(&self, name: &str, force: bool) -> Result<()> {
        self.delete_role_by(name, force, None).await
    }

    async fn delete_role_by(
        &self,
        name: &str,
        force: bool,
        actor: Option<&AdminActor>,
    ) -> Result<()> {
        let now = self.now();
        let action = if force {
            "role.delete_forced"
        } else {
            "role.delete"
        };
        let op = "delete role";
        let ((), version) = with_pool!(&self.inner.pool, |p| registry_tx!(p, op, |tx| {
            let holders: i64 = tx_scalar!(tx, q::ROLE_HOLDERS, op, [name])?;
            if holders > 0 && !force {
                return Err(role_in_use(name, holders));
            }
            tx_execute!(tx, q::DELETE_ROLE_HOLDINGS, op, [name])?;
            tx_execute!(tx, q::CLEAR_ROLE_PERMISSIONS, op, [name])?;
            let deleted = tx_execute!(tx, q::DELETE_ROLE, op, [name])?;
            if deleted == 0 {
                return Err(role_not_found(name));
            }
            tx_audit!(tx, actor, now, action, name, op);
        }));
        self.seen(version);
        Ok(())
    }

    /// The union of the permission codes of the account's roles (whether or not it is enabled:
    /// callers check `enabled`).
    pub async fn permissions_of(&self, account_id: &str) -> Result<BTreeSet<String>> {
        let op = "permissions of account";
        let codes: Vec<String> = with_pool!(&self.inner.pool, |p| {
            let n: i64 = sqlx::query_scalar(q::ACCOUNT_EXISTS)
                .bind(account_id)
                .fetch_one(p)
                .await
                .map_err(db(op))?;
            if n == 0 {
                return Err(account_not_found(account_id));
            }
            sqlx::query_scalar(q::PERMISSIONS_OF)
                .bind(account_id)
                .fetch_all(p)
                .await
                .map_err(db(op))?
        });
        Ok(codes.into_iter().collect())
    }

    /// The registry's change counter as stored in the database.
    pub async fn registry_version(&self) -> Result<i64> {
        with_pool!(&self.inner.pool, |p| sqlx::query_scalar(q::GET_VERSION)
            .fetch_one(p)
            .await
            .map_err(db("read registry version")))
    }

    /// The registry version seen by this process: bumped at once by changes made through this
    /// store, and within a second by changes made elsewhere (NOTIFY on PostgreSQL, a 250 ms poll
    /// on SQLite).
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.inner.version.subscribe()
    }

    // ----- audit -----

    /// Appends the records in one transaction. Their `id`s are ignored.
    pub async fn append_audit(&self, rows: &[AuditRecord]) -> Result<()> {
        let keyed: Vec<(Option<&str>, &AuditRecord)> = rows.iter().map(|r| (None, r)).collect();
        self.insert_audit(&keyed).await
    }

    /// Appends `(event id, record)`s in one transaction. A record whose event id (a decision's
    /// [`tw_authz::AuditEvent::id`]) is stored already is skipped, so a batch written twice (a
    /// spool replayed after a crash) is stored once; records without one are always appended.
    pub(crate) async fn insert_audit(&self, rows: &[(Option<&str>, &AuditRecord)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let op = "append audit";
        // Multi-row INSERTs (far fewer round trips than one statement per row), in order, with
        // at most AUDIT_INSERT_CHUNK rows (17 parameters each) per statement.
        with_pool!(&self.inner.pool, |p| {
            let mut tx = p.begin().await.map_err(db(op))?;
            for chunk in rows.chunks(AUDIT_INSERT_CHUNK) {
                let mut insert = sqlx::QueryBuilder::new(q::INSERT_AUDIT_PREFIX);
                insert.push_values(chunk, |mut b, (event_id, r)| {
                    b.push_bind(r.at.as_millis())
                        .push_bind(r.issuer.clone())
                        .push_bind(r.subject.clone())
                        .push_bind(r.client_id.clone())
                        .push_bind(r.principal_kind.as_str())
                        .push_bind(r.method.clone())
                        .push_bind(r.path.clone())
                        .push_bind(r.rule.clone())
                        .push_bind(r.permissions_used.join(" "))
                        .push_bind(r.outcome.as_str())
                        .push_bind(r.reason.clone())
                        .push_bind(r.instance.clone())
                        .push_bind(r.kind.as_str())
                        .push_bind(r.username.clone())
                        .push_bind(r.action.clone())
                        .push_bind(r.object.clone())
                        .push_bind(event_id.map(str::to_owned));
                });
                insert.push(q::INSERT_AUDIT_SUFFIX);
                insert.build().execute(&mut *tx).await.map_err(db(op))?;
            }
            tx.commit().await.map_err(db(op))?;
        });
        Ok(())
    }

    /// Newest first. A `limit` above [`AUDIT_MAX_LIMIT`] is refused (400 `invalid_limit`).
    pub async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = query.limit.unwrap_or(AUDIT_DEFAULT_LIMIT);
        if limit == 0 || limit > AUDIT_MAX_LIMIT {
            return Err(Error::bad_request(
                codes::INVALID_LIMIT,
                format!("limit must be between 1 and {AUDIT_MAX_LIMIT}"),
            ));
        }
        let op = "query audit";
        let rows: Vec<AuditRow> = with_pool!(&self.inner.pool, |p| {
            sqlx::query_as(q::QUERY_AUDIT)
                .bind(&query.principal)
                .bind(query.outcome.map(AuditOutcome::as_str))
                .bind(query.since.map(UnixTime::as_millis))
                .bind(query.until.map(UnixTime::as_millis))
                .bind(i64::from(limit))
                .bind(query.kind.map(AuditKind::as_str))
                .fetch_all(p)
                .await
                .map_err(db(op))?
        });
        rows.into_iter().map(audit_from).collect()
    }

    // ----- change watching -----

    async fn spawn_watcher(&self) -> Result<()> {
        let weak = Arc::downgrade(&self.inner);
        match &self.inner.pool {
            Pool::Sqlite(pool) => {
                tokio::spawn(poll_sqlite(weak, Pool::Sqlite(pool.clone())));
            }
            Pool::Postgres(pool) => {
                let mut listener = PgListener::connect_with(pool)
                    .await
                    .map_err(db("listen for registry changes"))?;
                listener
                    .listen(NOTIFY_CHANNEL)
                    .await
                    .map_err(db("listen for registry changes"))?;
                tokio::spawn(listen_postgres(
                    weak,
                    Pool::Postgres(pool.clone()),
                    listener,
                ));
            }
        }
        Ok(())
    }
}

fn publish(tx: &watch::Sender<i64>, v: i64) {
    tx.send_if_modified(|seen| {
        if v > *seen {
            *seen = v;
            true
        } else {
            false
        }
    });
}

/// Reads the version and publishes it; `false` once every `Store` is gone.
async fn refresh(weak: &Weak<Inner>, pool: &Pool) -> bool {
    let result: std::result::Result<i64, sqlx::Error> =
        with_pool!(pool, |p| sqlx::query_scalar(q::GET_VERSION)
            .fetch_one(p)
            .await);
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    match result {
        Ok(v) => publish(&inner.version, v),
        Err(e) => tracing::debug!(
            error = %unavailable("poll registry version", e),
            "registry version poll failed"
        ),
    }
    true
}

async fn poll_sqlite(weak: Weak<Inner>, pool: Pool) {
    let mut tick = tokio::time::interval(SQLITE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !refresh(&weak, &pool).await {
            return;
        }
    }
}

async fn listen_postgres(weak: Weak<Inner>, pool: Pool, mut listener: PgListener) {
    let mut idle_seconds = 0u64;
    loop {
        // Wake at least every second to notice that the stores are gone, and poll now and then
        // in case a notification was lost while the listener reconnected.
        match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
            Ok(Ok(Some(n))) => {
                let Some(inner) = weak.upgrade() else { return };
                match n.payload().parse::<i64>() {
                    Ok(v) => publish(&inner.version, v),
                    Err(_) => drop(inner),
                }
                continue;
            }
            // The connection was lost and re-established: notifications may have been missed.
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %unavailable("listen for registry changes", e), "registry listener failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_elapsed) => {
                if weak.strong_count() == 0 {
                    return;
                }
                idle_seconds += 1;
                if !idle_seconds.is_multiple_of(POSTGRES_POLL.as_secs().max(1)) {
                    continue;
                }
            }
        }
        if !refresh(&weak, &pool).await {
            return;
        }
    }
}

/// A pool of `cfg`'s size and acquire timeout over `opts`, with `migrator` run on it.
async fn connect_migrated<DB>(
    cfg: &StorageConfig,
    opts: <DB::Connection as sqlx::Connection>::Options,
    migrator: &sqlx::migrate::Migrator,
) -> Result<sqlx::Pool<DB>>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    let pool = sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.connect_timeout)
        .connect_with(opts)
        .await
        .map_err(|e| connect_error(cfg, e))?;
    migrator
        .run(&pool)
        .await
        .map_err(|e| migrate_error(cfg, e))?;
    Ok(pool)
}

fn connect_error(cfg: &StorageConfig, e: sqlx::Error) -> Error {
    let kind = match cfg.kind() {
        Some(StorageKind::Postgres) => "PostgreSQL",
        _ => "SQLite",
    };
    let mut err = match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("28P01") => Error::config(
            codes::STORAGE_AUTH_FAILED,
            format!(
                "{kind} at {} refused the credentials (check `storage.password`)",
                cfg.redacted_url()
            ),
        ),
        sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => Error::config(
            codes::STORAGE_DATABASE_MISSING,
            format!(
                "{kind} at {}: the database does not exist",
                cfg.redacted_url()
            ),
        ),
        _ => unavailable(
            "connect",
            format_args!("{kind} at {}: {e}", cfg.redacted_url()),
        ),
    };
    err = err.with("storage", cfg.redacted_url());
    err
}

fn migrate_error(cfg: &StorageConfig, e: sqlx::migrate::MigrateError) -> Error {
    Error::internal(
        codes::STORAGE_MIGRATION_FAILED,
        format!(
            "migrating the database at {} failed: {e}",
            cfg.redacted_url()
        ),
    )
    .with("storage", cfg.redacted_url())
}

/// `(key, value)` rows of a join table, grouped by key in row order.
fn group_pairs(pairs: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in pairs {
        grouped.entry(key).or_default().push(value);
    }
    grouped
}
