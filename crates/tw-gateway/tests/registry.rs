//! The account registry in the database, end to end: the real test IdP → a real gateway whose
//! authorizer uses a `tw_store::Store` (as the registry and the audit log) → a real upstream.
//! Every scenario runs against a SQLite file and a real PostgreSQL server.
//!
//! Registry changes are made through a second `Store` handle on the same database (its own pool
//! and change watcher: what another instance or the management CLI would be) and must be
//! enforced within a second, without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tw_authz::{AccountKey, Authz, ProvisionRequest, RegistrySource};
use tw_config::{SecretRef, StorageConfig};
use tw_core::{Clock, ManualClock, SystemClock};
use tw_gateway::Decision;
use tw_store::{AuditOutcome, AuditQuery, AuditRecord, Backend, NewAccount, Store, StoreAuditSink};
use tw_testkit::{ClientSpec, Idp, IdpConfig, UserSpec};

/// A registry change must be enforced within this long.
const PROPAGATION: Duration = Duration::from_secs(1);

const AUTHZ: &str = r#"
[gateway.authz]
mode = "MODE"
sources = ["registry"]
EXTRA

[gateway.authz.roles]
"provisioned-agent" = ["events:read"]

[gateway.authz.rate_limits]
"limited" = { per_second = 1, burst = 1 }

[[gateway.authz.rules]]
name = "events-read"
methods = ["GET", "HEAD"]
paths = ["/api/events", "/api/events/**"]
require_any = ["events:read", "events:search"]

[[gateway.authz.rules]]
name = "events-write"
methods = ["PUT", "POST", "PATCH"]
paths = ["/api/events/{id}"]
require_all = ["events:update"]

[[gateway.authz.rules]]
name = "attributes-read"
methods = ["GET"]
paths = ["/api/attributes", "/api/attributes/**"]
require_all = ["attributes:read"]
"#;

// ----- databases -----

/// One database, opened by as many `Store`s ("instances") as a scenario wants.
struct Db {
    backend: Backend,
    cfg: StorageConfig,
    _pg: Option<tw_testkit::Postgres>,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = StorageConfig {
            url: format!("sqlite://{}", dir.path().join("tw.db").display()),
            ..StorageConfig::default()
        };
        Db {
            backend: Backend::Sqlite,
            cfg,
            _pg: None,
            _dir: dir,
        }
    }

    async fn postgres() -> Db {
        let pg = tw_testkit::Postgres::start().await;
        let db = pg.create_database().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("db-password");
        std::fs::write(&secret, pg.password()).expect("write password file");
        let cfg = StorageConfig {
            url: pg.url(&db),
            password: Some(SecretRef::File(secret)),
            ..StorageConfig::default()
        };
        Db {
            backend: Backend::Postgres,
            cfg,
            _pg: Some(pg),
            _dir: dir,
        }
    }

    /// A new instance's store.
    async fn open(&self) -> Store {
        let store = Store::open(&self.cfg, Arc::new(SystemClock))
            .await
            .unwrap_or_else(|e| panic!("open {:?}: {e}", self.backend));
        assert_eq!(store.backend(), self.backend);
        store
    }
}

/// `both!(name, scenario)`: tests `name::sqlite` and `name::postgres`.
macro_rules! both {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Db::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Db::postgres().await).await
            }
        }
    };
}

// ----- gateway -----

fn idp_config() -> IdpConfig {
    let client = |id: &str| ClientSpec::secret_basic(id, &format!("{id}-secret"));
    IdpConfig::default()
        // Its service account calls the API; people sign in through it too.
        .client(client("registered").grants(["client_credentials", "refresh_token"]))
        .client(client("stranger"))
        .client(client("limited"))
        .client(client("newcomer"))
        .user(UserSpec::new("alice"))
        .user(UserSpec::new("service-account-registered-x"))
        .user(UserSpec::new("service-account-stranger"))
}

async fn token(idp: &Idp, client: &str) -> String {
    idp_token(idp, client, &format!("{client}-secret")).await
}

/// A gateway instance whose authorizer uses `store` as registry and audit log, as
/// `tokenwarden gateway` builds it.
async fn gateway(
    idp: &Idp,
    up: &Upstream,
    store: &Store,
    mode: &str,
    extra: &str,
    clock: Arc<dyn Clock>,
    instance: &str,
) -> RunningGateway {
    let routes = format!(
        "[[gateway.routes]]\nprefix = \"/api\"\nupstream = \"{}\"\n{}",
        up.url(),
        AUTHZ.replace("MODE", mode).replace("EXTRA", extra)
    );
    let cfg = gateway_config(&idp_gateway_toml(idp, "", &routes));
    // Each instance's audit spool in a directory of its own, not in the working directory (the
    // spool is deleted once replayed; the empty directory stays in the system's temp dir).
    let mut authz_cfg = cfg.authz.clone().expect("authz");
    authz_cfg.audit.spool_path = tempfile::tempdir()
        .expect("temp dir")
        .keep()
        .join("audit.spool");
    let authz = Authz::builder(&authz_cfg)
        .clock(clock)
        .registry(Arc::new(store.clone()), Some(store.watch()))
        .audit_sink(Arc::new(StoreAuditSink::new(store.clone(), instance)))
        .build()
        .expect("authz");
    let decision: Arc<dyn Decision> = Arc::new(authz);
    RunningGateway::start_with(&cfg, Arc::new(SystemClock), Some(decision), None).await
}

/// A request as the caller saw it, to compare with the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    outcome: AuditOutcome,
    reason: String,
}

/// Makes requests with one token and remembers what each was answered.
struct Caller {
    client: reqwest::Client,
    token: String,
    seen: Vec<Seen>,
}

/// Status, `X-Auth-Permissions` seen by the upstream (allowed) or the error code (refused).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    permissions: Vec<String>,
    code: Option<String>,
    body: String,
}

impl Caller {
    async fn new(idp: &Idp, client: &str) -> Caller {
        Caller {
            client: common::client(),
            token: token(idp, client).await,
            seen: Vec::new(),
        }
    }

    /// `username`'s token through `client` (a user, not the client's service account).
    async fn user(idp: &Idp, client: &str, username: &str) -> Caller {
        Caller {
            client: common::client(),
            token: idp
                .user_access_token(client, &format!("{client}-secret"), username)
                .await,
            seen: Vec::new(),
        }
    }

    async fn call(&mut self, gw: &RunningGateway, method: &str, path: &str) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .client
            .request(m, gw.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let answer = match status {
            200 => Answer {
                status,
                permissions: echoed(&json, "x-auth-permissions"),
                code: None,
                body,
            },
            _ => Answer {
                status,
                permissions: Vec::new(),
                code: json["error"]["code"].as_str().map(str::to_owned),
                body,
            },
        };
        let (outcome, reason) = match (status, answer.code.as_deref()) {
            (200, _) => (AuditOutcome::Allow, "allowed".to_owned()),
            (429, _) => (AuditOutcome::RateLimited, "rate_limited".to_owned()),
            (_, code) => (AuditOutcome::Deny, code.unwrap_or("?").to_owned()),
        };
        self.seen.push(Seen {
            method: method.to_owned(),
            path: path.to_owned(),
            outcome,
            reason,
        });
        answer
    }

    /// Repeats the request until `done(answer)`; fails after [`PROPAGATION`].
    async fn until(
        &mut self,
        gw: &RunningGateway,
        method: &str,
        path: &str,
        what: &str,
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let start = Instant::now();
        loop {
            let a = self.call(gw, method, path).await;
            if done(&a) {
                return a;
            }
            assert!(
                start.elapsed() < PROPAGATION,
                "{what}: not in effect after {PROPAGATION:?}; last answer {a:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The audit rows of `principal` (subject or client id), oldest first, once there are `n` (or
/// after [`LIMIT`]). A gateway on a manual clock paces its audit writes on that clock: `clock` is
/// moved 5 ms per poll.
async fn audit_rows_on(
    store: &Store,
    principal: &str,
    n: usize,
    clock: Option<&ManualClock>,
) -> Vec<AuditRecord> {
    let query = AuditQuery {
        principal: Some(principal.to_owned()),
        limit: Some(10_000),
        ..AuditQuery::default()
    };
    let start = Instant::now();
    loop {
        let mut rows = store.query_audit(&query).await.expect("query audit");
        if rows.len() >= n || start.elapsed() > LIMIT {
            rows.reverse();
            return rows;
        }
        if let Some(clock) = clock {
            clock.advance(Duration::from_millis(5));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audit_rows(store: &Store, principal: &str, n: usize) -> Vec<AuditRecord> {
    audit_rows_on(store, principal, n, None).await
}

/// The rows as requests: method, path, outcome, reason.
fn as_seen(rows: &[AuditRecord]) -> Vec<Seen> {
    rows.iter()
        .map(|r| Seen {
            method: r.method.clone(),
            path: r.path.clone(),
            outcome: r.outcome,
            reason: r.reason.clone().unwrap_or_default(),
        })
        .collect()
}

async fn setup_roles(store: &Store) {
    store
        .upsert_role(
            "events-reader",
            Some("reads events"),
            &["events:read".into(), "events:search".into()],
        )
        .await
        .expect("role");
    store
        .upsert_role("attributes-all", None, &["attributes:*".into()])
        .await
        .expect("role");
}

async fn register(store: &Store, idp: &Idp, client_id: &str, roles: &[&str]) -> String {
    let mut new = NewAccount::with_client_id(&idp.issuer(), client_id, "test");
    new.roles = roles.iter().map(|r| r.to_string()).collect();
    store.create_account(new).await.expect("create account").id
}

// ----- scenarios -----

/// Exactly the registered permissions; unknown principals refused with the reason; grant,
/// revoke and disable through another instance's store take effect within a second; the audit
/// rows in the database match the requests made.
async fn registry_decides_and_follows_changes(db: Db) {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let admin = db.open().await; // another instance, e.g. the management CLI
    setup_roles(&admin).await;
    let id = register(&admin, &idp, "registered", &["events-reader"]).await;
    let store = db.open().await;
    let gw = gateway(
        &idp,
        &up,
        &store,
        "enforce",
        "",
        Arc::new(SystemClock),
        "gw-a",
    )
    .await;

    let mut registered = Caller::new(&idp, "registered").await;
    let a = registered.call(&gw, "GET", "/api/events/42").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.permissions,
        ["events:read events:search"],
        "exactly its permissions"
    );
    let a = registered.call(&gw, "PUT", "/api/events/42").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("insufficient_scope")),
        "{a:?}"
    );
    let a = registered.call(&gw, "GET", "/api/attributes/7").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("insufficient_scope")),
        "{a:?}"
    );
    assert!(a.body.contains("attributes:read"), "{}", a.body);

    // No row: unknown principal, with the reason.
    let mut stranger = Caller::new(&idp, "stranger").await;
    let a = stranger.call(&gw, "GET", "/api/events").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("unknown_principal")),
        "{a:?}"
    );
    assert!(a.body.contains("no registered account"), "{}", a.body);
    assert!(a.body.contains("service_account:stranger"), "{}", a.body);

    // Grant (a wildcard role) through the other instance: enforced within a second.
    admin
        .grant_role(&id, "attributes-all")
        .await
        .expect("grant");
    let a = registered
        .until(&gw, "GET", "/api/attributes/7", "grant", |a| {
            a.status == 200
        })
        .await;
    assert_eq!(a.permissions, ["attributes:* events:read events:search"]);

    // Revoke.
    admin
        .revoke_role(&id, "events-reader")
        .await
        .expect("revoke");
    let a = registered
        .until(&gw, "GET", "/api/events/42", "revoke", |a| a.status == 403)
        .await;
    assert_eq!(a.code.as_deref(), Some("insufficient_scope"), "{a:?}");
    let a = registered.call(&gw, "GET", "/api/attributes/7").await;
    assert_eq!(a.status, 200, "the other role stays: {a:?}");

    // Disable.
    admin
        .set_account_enabled(&id, false)
        .await
        .expect("disable");
    let a = registered
        .until(&gw, "GET", "/api/attributes/7", "disable", |a| {
            a.status == 403
        })
        .await;
    assert_eq!(a.code.as_deref(), Some("account_disabled"), "{a:?}");
    // Registering the stranger lets it in, too.
    admin
        .create_account(NewAccount {
            roles: vec!["events-reader".into()],
            ..NewAccount::with_client_id(&idp.issuer(), "stranger", "test")
        })
        .await
        .expect("register stranger");
    stranger
        .until(&gw, "GET", "/api/events", "registration", |a| {
            a.status == 200
        })
        .await;

    // The audit log in the database: one row per request, in order, as answered.
    for (principal, caller) in [("registered", &registered), ("stranger", &stranger)] {
        let rows = audit_rows(&admin, principal, caller.seen.len()).await;
        assert_eq!(as_seen(&rows), caller.seen, "audit rows of {principal}");
        for r in &rows {
            assert_eq!(r.client_id.as_deref(), Some(principal));
            assert_eq!(r.issuer, idp.issuer());
            assert_eq!(r.principal_kind, tw_store::PrincipalKind::ServiceAccount);
            assert_eq!(r.instance, "gw-a");
        }
    }
    let rows = audit_rows(&admin, "registered", registered.seen.len()).await;
    assert_eq!(rows[0].rule.as_deref(), Some("events-read"));
    assert_eq!(rows[0].permissions_used, ["events:read"]);
    let denied = admin
        .query_audit(&AuditQuery {
            principal: Some("registered".into()),
            outcome: Some(AuditOutcome::Deny),
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    let seen_denied = registered
        .seen
        .iter()
        .filter(|s| s.outcome == AuditOutcome::Deny)
        .count();
    assert_eq!(denied.len(), seen_denied, "filter by outcome");
    gw.stop().await;
}
both!(
    registry_in_the_database,
    registry_decides_and_follows_changes
);

/// Dry-run lets a refused request through and audits it as `dry_run_deny`; a rate limit
/// answers 429 and is audited as `rate_limited`.
async fn dry_run_and_rate_limit(db: Db) {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let store = db.open().await;
    setup_roles(&store).await;
    register(&store, &idp, "limited", &["events-reader"]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let gw = gateway(&idp, &up, &store, "dry_run", "", clock.clone(), "gw-dry").await;

    let mut stranger = Caller::new(&idp, "stranger").await;
    let a = stranger.call(&gw, "GET", "/api/events").await;
    assert_eq!(a.status, 200, "dry run lets it through: {a:?}");
    let a = stranger.call(&gw, "DELETE", "/api/anything").await;
    assert_eq!(a.status, 200, "{a:?}");
    let rows = audit_rows_on(&store, "stranger", 2, Some(&clock)).await;
    let got: Vec<(AuditOutcome, Option<&str>, Option<&str>)> = rows
        .iter()
        .map(|r| (r.outcome, r.reason.as_deref(), r.rule.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                AuditOutcome::DryRunDeny,
                Some("unknown_principal"),
                Some("events-read")
            ),
            (AuditOutcome::DryRunDeny, Some("no_matching_rule"), None),
        ]
    );

    // `limited`: 1 per second, burst 1, on the authorizer's (manual) clock.
    let mut limited = Caller::new(&idp, "limited").await;
    assert_eq!(limited.call(&gw, "GET", "/api/events").await.status, 200);
    let a = limited.call(&gw, "GET", "/api/events").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (429, Some("rate_limited")),
        "{a:?}"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(limited.call(&gw, "GET", "/api/events").await.status, 200);
    let rows = audit_rows_on(&store, "limited", 3, Some(&clock)).await;
    assert_eq!(as_seen(&rows), limited.seen);
    let limited_rows = store
        .query_audit(&AuditQuery {
            outcome: Some(AuditOutcome::RateLimited),
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(limited_rows.len(), 1);
    assert_eq!(limited_rows[0].client_id.as_deref(), Some("limited"));
    gw.stop().await;
}
both!(dry_run_and_rate_limit_audited, dry_run_and_rate_limit);

/// An unknown service account is registered on first sight with the configured role (created
/// in the database when missing, its permissions from `[gateway.authz.roles]`), recorded in the
/// audit log; a concurrent double provision succeeds once.
async fn auto_provision(db: Db) {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let store = db.open().await;
    let gw = gateway(
        &idp,
        &up,
        &store,
        "enforce",
        "auto_provision = { role = \"provisioned-agent\" }",
        Arc::new(SystemClock),
        "gw-ap",
    )
    .await;

    let mut newcomer = Caller::new(&idp, "newcomer").await;
    let a = newcomer.call(&gw, "GET", "/api/events").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.permissions, ["events:read"]);
    let a = newcomer.call(&gw, "GET", "/api/attributes").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("insufficient_scope")),
        "{a:?}"
    );

    let account = store
        .find_account(&idp.issuer(), None, Some("newcomer"))
        .await
        .expect("find")
        .expect("provisioned");
    assert_eq!(account.created_by, tw_store::AUTO_PROVISION_CREATED_BY);
    assert_eq!(account.roles, ["provisioned-agent"]);
    assert!(account.enabled);
    assert!(account.subject.is_some(), "known by subject and client id");
    let role = store
        .get_role("provisioned-agent")
        .await
        .expect("role created");
    assert!(role.permissions.is_empty(), "{role:?}");

    // Audit: the provisioning, then the two decisions.
    let rows = audit_rows(&store, "newcomer", 3).await;
    let got: Vec<(AuditOutcome, Option<&str>, Vec<String>)> = rows
        .iter()
        .map(|r| (r.outcome, r.reason.as_deref(), r.permissions_used.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                AuditOutcome::Allow,
                Some("auto_provisioned"),
                vec!["provisioned-agent".to_owned()]
            ),
            (
                AuditOutcome::Allow,
                Some("allowed"),
                vec!["events:read".to_owned()]
            ),
            (
                AuditOutcome::Deny,
                Some("insufficient_scope"),
                vec!["attributes:read".to_owned()]
            ),
        ]
    );
    assert_eq!(rows.len(), 3, "provisioned once");

    // A concurrent double provision (two instances) must not fail: one account.
    let other = db.open().await;
    let request = ProvisionRequest {
        key: AccountKey::service_account(&idp.issuer(), Some("sub-twice"), Some("twice")),
        username: Some("service-account-twice".into()),
        service_account: true,
        role: "provisioned-agent".into(),
    };
    let (a, b) = tokio::join!(store.provision(&request), other.provision(&request));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.id, b.id);
    assert_eq!(a.roles, ["provisioned-agent"]);
    let again = RegistrySource::provision(&store, &request)
        .await
        .expect("again");
    assert_eq!(again.id, a.id, "idempotent");
    gw.stop().await;
}
both!(auto_provision_on_first_sight, auto_provision);

/// As the README documents it: the provisioning role exists only in the registry (not in
/// `[gateway.authz.roles]`), and a newcomer gets exactly its stored permissions. A role the
/// registry lacks as well is created there without permissions: the newcomer holds nothing
/// until `roles create` gives the role some, which applies within a second.
async fn auto_provision_registry_role(db: Db) {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let store = db.open().await;
    setup_roles(&store).await;
    let gw = gateway(
        &idp,
        &up,
        &store,
        "enforce",
        "auto_provision = { role = \"attributes-all\" }",
        Arc::new(SystemClock),
        "gw-apr",
    )
    .await;
    let mut newcomer = Caller::new(&idp, "newcomer").await;
    let a = newcomer.call(&gw, "GET", "/api/attributes/7").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.permissions, ["attributes:*"]);
    let a = newcomer.call(&gw, "GET", "/api/events").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("insufficient_scope")),
        "{a:?}"
    );
    let account = store
        .find_account(&idp.issuer(), None, Some("newcomer"))
        .await
        .expect("find")
        .expect("provisioned");
    assert_eq!(account.roles, ["attributes-all"]);
    let role = store.get_role("attributes-all").await.expect("role");
    assert_eq!(
        role.permissions,
        ["attributes:*"],
        "the stored role untouched"
    );
    gw.stop().await;

    let gw = gateway(
        &idp,
        &up,
        &store,
        "enforce",
        "auto_provision = { role = \"defined-later\" }",
        Arc::new(SystemClock),
        "gw-apl",
    )
    .await;
    let mut stranger = Caller::new(&idp, "stranger").await;
    let a = stranger.call(&gw, "GET", "/api/events").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("insufficient_scope")),
        "{a:?}"
    );
    let role = store.get_role("defined-later").await.expect("role created");
    assert!(role.permissions.is_empty(), "{role:?}");
    let admin = db.open().await;
    admin
        .upsert_role("defined-later", None, &["events:read".into()])
        .await
        .expect("define the role");
    let a = stranger
        .until(
            &gw,
            "GET",
            "/api/events",
            "the role's new permission",
            |a| a.status == 200,
        )
        .await;
    assert_eq!(a.permissions, ["events:read"]);
    gw.stop().await;
}
both!(
    auto_provision_with_a_role_only_in_the_registry,
    auto_provision_registry_role
);

/// Two gateway instances, each with its own store on one database: a change made through
/// instance A's store is enforced by instance B within a second.
async fn two_instances(db: Db) {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let store_a = db.open().await;
    let store_b = db.open().await;
    setup_roles(&store_a).await;
    let id = register(&store_a, &idp, "registered", &["events-reader"]).await;
    let gw_a = gateway(
        &idp,
        &up,
        &store_a,
        "enforce",
        "",
        Arc::new(SystemClock),
        "gw-a",
    )
    .await;
    let gw_b = gateway(
        &idp,
        &up,
        &store_b,
        "enforce",
        "",
        Arc::new(SystemClock),
        "gw-b",
    )
    .await;

    let mut caller = Caller::new(&idp, "registered").await;
    for gw in [&gw_a, &gw_b] {
        assert_eq!(caller.call(gw, "GET", "/api/events").await.status, 200);
        let a = caller.call(gw, "GET", "/api/attributes").await;
        assert_eq!(a.status, 403, "{a:?}");
    }
    // Both caches are warm; grant through A, enforced by B.
    store_a
        .grant_role(&id, "attributes-all")
        .await
        .expect("grant");
    caller
        .until(&gw_b, "GET", "/api/attributes", "grant seen by B", |a| {
            a.status == 200
        })
        .await;
    store_a
        .set_account_enabled(&id, false)
        .await
        .expect("disable");
    let a = caller
        .until(&gw_b, "GET", "/api/events", "disable seen by B", |a| {
            a.status == 403
        })
        .await;
    assert_eq!(a.code.as_deref(), Some("account_disabled"));

    // Both instances audit into the one log, each naming itself.
    // Each instance writes its own rows, so compare as sets: rows of two instances decided in
    // the same millisecond may be stored in either order.
    let rows = audit_rows(&store_a, "registered", caller.seen.len()).await;
    let sorted = |v: Vec<Seen>| {
        let mut v: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(as_seen(&rows)), sorted(caller.seen.clone()));
    assert!(rows.iter().any(|r| r.instance == "gw-a"));
    assert!(rows.iter().any(|r| r.instance == "gw-b"));
    gw_a.stop().await;
    gw_b.stop().await;
}
both!(two_instances_share_one_database, two_instances);

/// An account registered by client id is that client's service account: the people signing in
/// through the client get none of its permissions, whatever their usernames look like, while the
/// service account keeps them. A user's own account (by subject) is hers alone, and a user
/// provisioned on first sight is registered by subject only.
async fn users_through_a_registered_client(db: Db) {
    let idp = Idp::start(idp_config()).await;
    let up = Upstream::start().await;
    let admin = db.open().await;
    setup_roles(&admin).await;
    register(&admin, &idp, "registered", &["events-reader"]).await;
    let store = db.open().await;
    let gw = gateway(
        &idp,
        &up,
        &store,
        "enforce",
        "",
        Arc::new(SystemClock),
        "gw-u",
    )
    .await;

    let mut service = Caller::new(&idp, "registered").await;
    let a = service.call(&gw, "GET", "/api/events/1").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.permissions, ["events:read events:search"]);

    for username in [
        "alice",
        "service-account-registered-x",
        "service-account-stranger",
    ] {
        let mut person = Caller::user(&idp, "registered", username).await;
        let a = person.call(&gw, "GET", "/api/events/1").await;
        assert_eq!(
            (a.status, a.code.as_deref()),
            (403, Some("unknown_principal")),
            "{username}: {a:?}"
        );
        assert!(a.body.contains(&format!("user:{username}")), "{}", a.body);
        let subject = idp.user_id(username).await;
        let rows = audit_rows(&admin, &subject, 1).await;
        assert_eq!(as_seen(&rows), person.seen, "{username}");
        assert_eq!(rows[0].principal_kind, tw_store::PrincipalKind::User);
        assert_eq!(rows[0].client_id.as_deref(), Some("registered"));
    }

    // Alice's own account (her subject) gives her its role, not the client's.
    let alice_id = idp.user_id("alice").await;
    admin
        .create_account(NewAccount {
            roles: vec!["attributes-all".into()],
            ..NewAccount::with_subject(&idp.issuer(), &alice_id, "test")
        })
        .await
        .expect("alice's account");
    let mut alice = Caller::user(&idp, "registered", "alice").await;
    let a = alice
        .until(&gw, "GET", "/api/attributes/7", "alice's account", |a| {
            a.status == 200
        })
        .await;
    assert_eq!(a.permissions, ["attributes:*"]);
    let a = alice.call(&gw, "GET", "/api/events/1").await;
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("insufficient_scope")),
        "{a:?}"
    );
    // And the service account is unchanged.
    let a = service.call(&gw, "GET", "/api/attributes/7").await;
    assert_eq!(a.status, 403, "{a:?}");
    gw.stop().await;

    // Provisioning every principal on first sight: a user is registered by subject alone.
    let gw = gateway(
        &idp,
        &up,
        &store,
        "enforce",
        "auto_provision = { role = \"provisioned-agent\", service_accounts_only = false }",
        Arc::new(SystemClock),
        "gw-p",
    )
    .await;
    let mut newcomer = Caller::user(&idp, "registered", "service-account-stranger").await;
    let a = newcomer.call(&gw, "GET", "/api/events").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.permissions, ["events:read"], "the provisioned role only");
    let subject = idp.user_id("service-account-stranger").await;
    let account = store
        .find_account(&idp.issuer(), Some(&subject), None)
        .await
        .expect("find")
        .expect("provisioned");
    assert_eq!(account.client_id, None, "no client id for a user");
    assert_eq!(account.roles, ["provisioned-agent"]);
    // The client's own account is still found for its service account only.
    let a = service.call(&gw, "GET", "/api/events/1").await;
    assert_eq!(a.permissions, ["events:read events:search"], "{a:?}");
    gw.stop().await;
}
both!(
    users_through_a_registered_client_hold_nothing_of_it,
    users_through_a_registered_client
);
