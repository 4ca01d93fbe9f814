//! The HTTP API of `tokenwarden vault`: an axum [`Router`] over a [`tw_vault::Vault`].
//!
//! | Route | |
//! |---|---|
//! | `GET /v1/offline-token?attributes=&redirect=` | a consent URL for the caller |
//! | `GET /v1/offline-token/callback?state=&code=` (or `&error=`) | the IdP's redirect back (no bearer token) |
//! | `POST /v1/access-token` (`{"id":..}` or `?id=`) | mint: `access_token`, `expires_in`, `token_type` |
//! | `POST /v1/refresh-token` | store a caller-supplied refresh token |
//! | `GET /v1/entries[?all=true]`, `GET/DELETE /v1/entries/{id}`, `POST /v1/entries/{id}/duplicate` | entries |
//! | `POST /v1/validate-token` | RFC 7662 introspection at the IdP |
//! | `GET /health`, `/health/ready`, `/healthz`, `/readyz`, `/version`, `/metrics` | probes (ready: the storage as its background ping last saw it, and the callers' keys loaded) |
//! | `GET /openapi.json`, `/docs` | the OpenAPI 3.1 document and a page rendering it |
//!
//! Callers authenticate with bearer tokens verified by the gateway's [`tw_verify::Verifier`]
//! ([`auth`], through tw-http's bearer parser and refusals); a caller reaches only its own
//! entries (owner = issuer + subject) unless a role grants `vault:mint-any`, `vault:read-any` or
//! `vault:admin`. Errors are [`tw_http::ApiError`] JSON bodies with stable codes; request bodies
//! are read by [`tw_http::json`], so a malformed one is a 400 whose message never echoes a value.
//! The probes are [`tw_http::Probes`], also at the vault's `/health` and `/health/ready`. Tokens appear only in the mint answer (with
//! `Cache-Control: no-store`); spans record method and path only.

pub mod auth;
mod handlers;
mod metrics_names;
mod openapi;
mod settings;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use std::sync::Arc;
use tw_config::{ListenAddr, VaultConfig};
use tw_core::Error;
use tw_http::MetricsRender;
use tw_store::health::StoreHealth;
use tw_vault::Vault;

pub use auth::CallerAuth;
pub use handlers::entry_json;
pub use metrics_names::*;
pub use openapi::document as openapi_document;
pub use settings::{key_ring, vault_settings};

/// Largest accepted request body (the largest is a refresh token with attributes).
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) vault: Vault,
    pub(crate) auth: Arc<CallerAuth>,
    /// The storage's reachability as a background pinger last saw it (`/health/ready`).
    pub(crate) storage: StoreHealth,
    pub(crate) config: Arc<VaultConfig>,
    pub(crate) openapi: Arc<serde_json::Value>,
    pub(crate) metrics: Option<MetricsRender>,
}

/// The vault API. `storage` pings the vault's store for `/health/ready`; `config` gives the
/// callback path and the redirects callers may ask for; `metrics` renders `/metrics` (absent: no
/// such route).
pub fn router(
    vault: Vault,
    auth: Arc<CallerAuth>,
    storage: StoreHealth,
    config: &VaultConfig,
    metrics: Option<MetricsRender>,
) -> Router {
    let state = ApiState {
        vault,
        auth,
        storage,
        openapi: Arc::new(openapi::document(&config.consent.callback_path)),
        config: Arc::new(config.clone()),
        metrics,
    };
    use handlers as h;
    let authenticated = Router::new()
        .route("/v1/offline-token", get(h::start_consent))
        .route("/v1/access-token", post(h::mint))
        .route("/v1/refresh-token", post(h::store_token))
        .route("/v1/entries", get(h::list_entries))
        .route(
            "/v1/entries/{id}",
            get(h::get_entry).delete(h::delete_entry),
        )
        .route("/v1/entries/{id}/duplicate", post(h::duplicate_entry))
        .route("/v1/validate-token", post(h::validate_token))
        .route_layer(from_fn_with_state(state.clone(), h::authenticate));
    let probe_state = state.clone();
    let probes = tw_http::Probes::new(Arc::new(move || h::readiness(&probe_state)))
        .also_at("/health", "/health/ready")
        .metrics(state.metrics.clone())
        .router();
    let public = Router::new()
        .route(&config.consent.callback_path, get(h::consent_callback))
        .route("/version", get(h::version))
        .route("/openapi.json", get(h::openapi))
        .route("/docs", get(h::docs))
        .merge(probes);
    let router = authenticated
        .merge(public)
        .route_layer(from_fn(h::observe))
        .fallback(tw_http::not_found_fallback)
        .method_not_allowed_fallback(tw_http::method_not_allowed_fallback);
    tw_http::json::limit_body(router, BODY_LIMIT)
        .layer(tw_http::trace_layer())
        .with_state(state)
}

/// Binds the listener (`vault.listen`); [`run`] serves on it (two steps, so a caller can learn
/// the port before serving).
pub async fn bind(listen: &str) -> Result<tw_http::Listener, Error> {
    let addr = ListenAddr::parse(listen).map_err(|m| {
        Error::config("config_invalid", format!("key `vault.listen`: {m}"))
            .with("key", "vault.listen")
    })?;
    tw_http::bind(&addr, "vault.listen").await
}

/// Serves `router` on a bound listener until `shutdown`; the verifier's keys are loaded in the
/// background (callers get 503 until they are).
pub async fn run<F>(
    listener: tw_http::Listener,
    router: Router,
    auth: &CallerAuth,
    shutdown: F,
) -> Result<(), Error>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let verifier = auth.verifier().clone();
    let starter = tokio::spawn(async move { verifier.start().await });
    tracing::info!(listen = ?listener.local_addr(), "vault listening");
    let result = tw_http::serve(listener, router, shutdown).await;
    starter.abort();
    result
}
