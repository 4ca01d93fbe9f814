//! The admin HTTP API of tokenwarden: service accounts, roles and the audit log.
//!
//! [`router`] builds an axum [`Router`] from a [`Store`], the gateway's own [`Verifier`] and its
//! `[gateway.authz]` settings; the gateway mounts it on its listener. Every route under
//! `{prefix}/v1/` needs a bearer token whose principal holds `tokenwarden:admin`, decided by the
//! gateway's authorizer (see [`auth`]); `{prefix}/v1/openapi.json` (the OpenAPI 3.1 document) and
//! `{prefix}/docs` (a self-contained page rendering it) are public: they describe the API, not its
//! data. The bodies are the types of [`api`] (converted from the store's rows), and the document
//! is generated from them and the handlers by utoipa.
//!
//! | Route | |
//! |---|---|
//! | `GET/POST {prefix}/v1/accounts` | list / create |
//! | `GET/DELETE {prefix}/v1/accounts/{id}` | show / delete |
//! | `POST {prefix}/v1/accounts/{id}/enable`, `.../disable` | |
//! | `POST/DELETE {prefix}/v1/accounts/{id}/roles/{role}` | grant / revoke |
//! | `GET {prefix}/v1/roles`, `GET/PUT/DELETE {prefix}/v1/roles/{name}` | `DELETE ?force=true` |
//! | `GET {prefix}/v1/audit?principal=&kind=&outcome=&since=&until=&limit=` | newest first |
//!
//! Errors are [`tw_http::ApiError`] JSON bodies with stable codes: 400 for bad input
//! (`invalid_json`, `invalid_account`, `invalid_role`, `invalid_permission`, `invalid_time`, ...),
//! 404 `account_not_found` / `role_not_found`, 409 `account_exists` / `role_in_use`, 503
//! `storage_unavailable`. Input is bounded (lengths, no control characters): 400 naming the field.
//! Every write commits with its audit row (kind `admin`: the caller's issuer, subject, username
//! and client, the grant that admitted them, action and object; see
//! [`Store::as_admin`](tw_store::Store::as_admin)) and is logged (target `tokenwarden::admin`),
//! never with a token.

pub mod api;
pub mod auth;
mod handlers;
mod openapi;
pub mod query;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use std::sync::Arc;
use tw_authz::Authz;
use tw_authz::settings::AuthzConfig;
use tw_core::Error;
use tw_store::Store;
use tw_verify::Verifier;

pub use auth::{ADMIN_PERMISSION, Caller};
pub use openapi::document as openapi_document;

/// The role that grants `tokenwarden:admin` unless configured otherwise.
pub const DEFAULT_ADMIN_ROLE: &str = "tokenwarden-admin";
/// Where the API is mounted unless configured otherwise.
pub const DEFAULT_PATH_PREFIX: &str = "/admin";

/// The `instance` of admin audit rows unless configured otherwise.
pub const DEFAULT_INSTANCE: &str = "admin-api";

/// How the admin API is exposed and who may use it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Token roles that grant `tokenwarden:admin`, named as `authz` names roles (realm roles as
    /// is, client roles by `client_role_format`, `<client>:<role>` by default). They count only
    /// where the issuer's permission sources include `roles`. Default `["tokenwarden-admin"]`.
    pub roles: Vec<String>,
    /// Where the routes live: `{path_prefix}/v1/...`, `{path_prefix}/docs`. Default `/admin`.
    pub path_prefix: String,
    /// The gateway's `[gateway.authz]` (default: every key at its default): the principal model,
    /// role claims, role map, permission sources per issuer and registry lookup the caller's
    /// permissions are decided by, exactly as for the gateway's routes.
    pub authz: AuthzConfig,
    /// This instance's name in the audit rows of admin changes. Default `admin-api`.
    pub instance: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            roles: vec![DEFAULT_ADMIN_ROLE.to_owned()],
            path_prefix: DEFAULT_PATH_PREFIX.to_owned(),
            authz: AuthzConfig::default(),
            instance: DEFAULT_INSTANCE.to_owned(),
        }
    }
}

impl AdminConfig {
    /// Names this instance in admin audit rows.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// The authorizer's settings: the gateway's, with each admin role granting
    /// `tokenwarden:admin` besides what the role map gives it.
    fn authz_config(&self) -> AuthzConfig {
        let mut cfg = self.authz.clone();
        for role in &self.roles {
            cfg.roles
                .entry(role.clone())
                .or_default()
                .push(ADMIN_PERMISSION.to_owned());
        }
        // Admin calls never register anyone.
        cfg.auto_provision = None;
        cfg
    }
}

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) store: Store,
    pub(crate) verifier: Arc<Verifier>,
    /// The gateway's authorizer settings over the same store: who holds `tokenwarden:admin`.
    pub(crate) authz: Arc<Authz>,
    pub(crate) config: Arc<AdminConfig>,
    pub(crate) openapi: Arc<serde_json::Value>,
}

/// The admin API, mounted at `config.path_prefix` (a trailing `/` is ignored). Needs a Tokio
/// runtime (the authorizer's registry cache follows the store's change notifications).
pub fn router(store: Store, verifier: Arc<Verifier>, config: AdminConfig) -> Result<Router, Error> {
    let prefix = config.path_prefix.trim_end_matches('/').to_owned();
    let authz = Authz::builder(&config.authz_config())
        .registry(Arc::new(store.clone()), Some(store.watch()))
        .build()?;
    let state = AdminState {
        store,
        verifier,
        authz: Arc::new(authz),
        openapi: Arc::new(openapi::document(&prefix)),
        config: Arc::new(config),
    };
    use handlers as h;
    let api = Router::new()
        .route(
            "/v1/accounts",
            get(h::list_accounts).post(h::create_account),
        )
        .route(
            "/v1/accounts/{id}",
            get(h::get_account).delete(h::delete_account),
        )
        .route("/v1/accounts/{id}/enable", post(h::enable_account))
        .route("/v1/accounts/{id}/disable", post(h::disable_account))
        .route(
            "/v1/accounts/{id}/roles/{role}",
            post(h::grant_role).delete(h::revoke_role),
        )
        .route("/v1/roles", get(h::list_roles))
        .route(
            "/v1/roles/{name}",
            get(h::get_role).put(h::put_role).delete(h::delete_role),
        )
        .route("/v1/audit", get(h::query_audit))
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin))
        .route("/v1/openapi.json", get(h::openapi))
        .route("/docs", get(h::docs))
        .fallback(tw_http::not_found_fallback)
        .method_not_allowed_fallback(tw_http::method_not_allowed_fallback)
        .with_state(state);
    Ok(if prefix.is_empty() {
        api
    } else {
        Router::new().nest(&prefix, api)
    })
}
