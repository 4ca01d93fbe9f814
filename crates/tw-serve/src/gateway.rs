//! The gateway of a configuration: `[gateway]` served with its verifier, the authorizer (with the
//! store as account registry and audit log when configured) and the admin API; the store of
//! `[storage]`.

use std::path::Path;
use std::sync::Arc;
use tw_config::{GatewayConfig, PermissionSourceKind};
use tw_core::{Clock, Error, SystemClock};
use tw_store::health::StoreHealth;
use tw_store::{Store, StoreAuditSink};
use tw_verify::Verifier;

/// The `[gateway]` section of `cfg`, or a config error naming the file.
pub fn gateway_section<'a>(
    cfg: &'a tw_config::Config,
    path: &Path,
) -> Result<&'a GatewayConfig, Error> {
    cfg.gateway.as_ref().ok_or_else(|| {
        Error::config(
            "no_gateway_section",
            format!(
                "{}: there is no [gateway] section (see examples/gateway.toml)",
                path.display()
            ),
        )
        .with("file", path.display().to_string())
    })
}

/// Serves the `[gateway]` of `cfg` (loaded from `path`) until `shutdown` completes: verifier,
/// authorizer with the registry and audit log when configured, admin API, `/metrics`.
pub async fn serve<F>(
    cfg: &tw_config::Config,
    path: &Path,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: F,
) -> Result<(), Error>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let gw = gateway_section(cfg, path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let verifier = Arc::new(Verifier::new(&gw.verifier_settings(), clock.clone())?);
    let registry = open_registry(cfg, gw, clock.clone()).await?;
    // The admin API manages the same store the authorizer reads (opened here if only it needs it).
    let admin_store = match (&registry, gw.admin.enabled) {
        (_, false) => None,
        (Some((store, _)), true) => Some(store.clone()),
        (None, true) => Some(open_store(cfg, clock).await?),
    };
    let mut gateway = match registry {
        Some((store, decision)) => {
            let health = StoreHealth::start(store);
            let readiness = move || {
                let storage = health.readiness();
                tw_http::Readiness {
                    ready: storage.reachable,
                    detail: storage.detail(),
                }
            };
            tw_gateway::Gateway::new_with_decision(
                &gw.gateway_settings(),
                verifier.clone(),
                decision,
            )?
            .with_readiness_check("storage", Arc::new(readiness))
        }
        None => tw_gateway::Gateway::new(&gw.gateway_settings(), verifier.clone())?,
    };
    if let Some(store) = admin_store {
        // Admin permissions are decided by `[gateway.authz]`, as for the gateway's routes.
        let admin = gw.admin_settings().with_instance(instance_name(gw));
        gateway = gateway.with_routes(tw_admin::router(store, verifier, admin)?);
    }
    gateway = gateway.with_metrics(Arc::new(move || metrics.render()));
    gateway.bind().await?.run(shutdown).await
}

/// Whether the authorizer uses the store: `[gateway.authz]` names the registry as a permission
/// source (globally or for an issuer), or it is present along with a `[storage]` section (the
/// store is then at least the audit log). Without `[gateway.authz]` there is nothing to decide.
pub fn uses_storage(cfg: &tw_config::Config, gw: &GatewayConfig) -> bool {
    let registry = gw.authz.as_ref().is_some_and(|a| {
        a.sources.contains(&PermissionSourceKind::Registry)
            || a.issuer_sources
                .values()
                .any(|s| s.contains(&PermissionSourceKind::Registry))
    });
    registry || (cfg.storage.is_some() && gw.authz.is_some())
}

/// With `[gateway.authz]` and storage in use (see [`uses_storage`]): opens the store (the
/// `[storage]` section, else `sqlite://tokenwarden.db`, created and migrated on first start) and
/// builds the authorizer with it as the account registry (its cache dropped whenever the registry
/// version moves, here or in another instance) and as the audit log.
pub async fn open_registry(
    cfg: &tw_config::Config,
    gw: &GatewayConfig,
    clock: Arc<dyn Clock>,
) -> Result<Option<(Store, Arc<dyn tw_gateway::Decision>)>, Error> {
    let Some(authz_cfg) = gw.authz.as_ref().filter(|_| uses_storage(cfg, gw)) else {
        return Ok(None);
    };
    let store = open_store(cfg, clock.clone()).await?;
    let sink = StoreAuditSink::new(store.clone(), instance_name(gw));
    let authz = tw_authz::Authz::builder(authz_cfg)
        .case_insensitive_paths(gw.paths.case_insensitive)
        .clock(clock)
        .registry(Arc::new(store.clone()), Some(store.watch()))
        .audit_sink(Arc::new(sink))
        .build()?;
    Ok(Some((store, Arc::new(authz))))
}

/// Opens `[storage]` (default `sqlite://tokenwarden.db`, created and migrated on first start).
pub async fn open_store(cfg: &tw_config::Config, clock: Arc<dyn Clock>) -> Result<Store, Error> {
    let storage = cfg.storage.clone().unwrap_or_default();
    Store::open(&storage, clock)
        .await
        .map_err(|e| storage_error(&storage, e))
}

/// The error of opening the store, naming `storage.url` (redacted: never a password).
fn storage_error(storage: &tw_config::StorageConfig, e: Error) -> Error {
    let url = storage.redacted_url();
    let message = if e.message().contains(&url) {
        format!("key `storage.url`: {}", e.message())
    } else {
        format!("key `storage.url` ({url}): {}", e.message())
    };
    let mut out = Error::new(e.kind(), e.code(), message).with("key", "storage.url");
    if let Some(d) = e.retry_after() {
        out = out.with_retry_after(d);
    }
    out
}

/// This gateway's name in the audit log's `instance` column: host name and listen address.
fn instance_name(gw: &GatewayConfig) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}/{}", gw.listen)
}
