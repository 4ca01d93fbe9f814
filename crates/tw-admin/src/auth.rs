//! Who may use the admin API: a bearer token verified by the gateway's own [`Verifier`], whose
//! principal holds `tokenwarden:admin` by the gateway's own authorizer ([`tw_authz::Authz`]).
//!
//! The permission is decided exactly as for the gateway's routes, with the same `[gateway.authz]`
//! settings ([`AdminConfig::authz`](crate::AdminConfig::authz)):
//! - the principal (user or service account) and its roles by the configured claim paths
//!   (`roles_claims`, `client_role_format`, `service_accounts`);
//! - per issuer, only the configured permission sources (`sources`, `issuer_sources`): token roles
//!   count only where `roles` is a source, registry accounts only where `registry` is;
//! - token roles through the role map (`[gateway.authz.roles]`), where each role of
//!   [`AdminConfig::roles`](crate::AdminConfig::roles) (default `tokenwarden-admin`) also grants
//!   `tokenwarden:admin`;
//! - the registry through the same lookup as the gateway: issuer + subject, else — service
//!   accounts only — issuer + client id. A user signing in through a registered client never
//!   holds that client's account.
//!
//! Wildcard grants count (`tokenwarden:*`, `*`).
//!
//! The token is read by tw-http's one bearer parser and refused with its RFC 6750 refusals
//! ([`tw_http::bearer::Refusal`], the gateway's and the vault's too): no token → 401 with a bare
//! challenge; a malformed `Authorization` → 400 `invalid_request`; a refused token → 401
//! `invalid_token`; keys unavailable → 503; the registry unavailable → 503
//! `authorization_unavailable`; no permission → 403 `insufficient_scope` (code
//! `admin_permission_required`, or `account_disabled`).

use crate::AdminState;
use axum::extract::{OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use std::time::Duration;
use tw_authz::{Principal, PrincipalKind, Resolution};
use tw_core::text::{terminal_cell, terminal_safe};
use tw_http::bearer::{Denied, Refusal};
use tw_store::{AdminActor, MAX_CREATED_BY_LEN};
use tw_verify::VerifyOptions;

/// The permission code the admin API requires.
pub const ADMIN_PERMISSION: &str = "tokenwarden:admin";

/// `Retry-After` when the registry cannot answer.
const REGISTRY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The authenticated admin, attached to the request for handlers, logs and audit rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `user:<username or subject>` or `service_account:<client id>`: what logs name.
    pub name: String,
    /// The grant that satisfied `tokenwarden:admin` (`tokenwarden:admin`, `tokenwarden:*`, `*`).
    pub grant: String,
    /// The registry account that applied to the caller, if any.
    pub account: Option<String>,
    /// Who the audit rows of this request's changes name, and the request.
    pub actor: AdminActor,
}

impl Caller {
    /// `created_by` of accounts created through the API: `api:<name>` (escaped, bounded).
    pub fn created_by(&self) -> String {
        terminal_cell(&format!("api:{}", self.name), MAX_CREATED_BY_LEN)
    }
}

/// The middleware: authenticate and authorize, then run the handler with a [`Caller`].
pub(crate) async fn require_admin(
    State(state): State<AdminState>,
    mut req: Request,
    next: Next,
) -> Response {
    // Nested routers see their path without the prefix: the audit row wants the full one.
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |o| o.0.path().to_owned());
    let method = req.method().as_str().to_owned();
    match authorize(&state, req.headers(), method, path).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refusal.into_response(false),
    }
}

async fn authorize(
    state: &AdminState,
    headers: &HeaderMap,
    method: String,
    path: String,
) -> Result<Caller, Refusal> {
    let token = Refusal::bearer(headers)?;
    let verified = state
        .verifier
        .verify(token, VerifyOptions::default())
        .await
        .map_err(|e| Refusal::Verify(e.into()))?;
    let (principal, resolution) = state.authz.resolve(&verified).await;
    let name = principal.display();
    let grants = match resolution {
        Resolution::Grants(g) => g,
        Resolution::Disabled { account } => {
            refused(&principal, "its registry account is disabled");
            return Err(Refusal::Denied(Denied {
                code: "account_disabled",
                description: format!(
                    "the registry account {account} of the caller is disabled, so it holds no permission"
                ),
                rule: None,
                scope: Some(ADMIN_PERMISSION.to_owned()),
            }));
        }
        Resolution::Unavailable(e) => {
            tracing::warn!(target: "tokenwarden::admin", code = e.code(), error = %e, "admin API: the account registry is unavailable");
            return Err(Refusal::DecisionUnavailable {
                description: "the account registry cannot be reached; retry later".into(),
                retry_after: REGISTRY_RETRY_AFTER,
            });
        }
    };
    let Some(grant) = grants.permissions.grant_for(ADMIN_PERMISSION) else {
        refused(&principal, "it lacks the permission");
        return Err(Refusal::Denied(Denied {
            code: "admin_permission_required",
            description: format!(
                "the admin API needs the permission {ADMIN_PERMISSION} (a role in admin.roles or [gateway.authz.roles], or a registry account granted it, from a permission source of the token's issuer)"
            ),
            rule: None,
            scope: Some(ADMIN_PERMISSION.to_owned()),
        }));
    };
    Ok(Caller {
        grant: grant.to_owned(),
        account: grants.account.clone(),
        actor: AdminActor {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
            username: principal.username.clone(),
            client_id: principal.client_id.clone(),
            principal_kind: match principal.kind {
                PrincipalKind::User => tw_store::PrincipalKind::User,
                PrincipalKind::ServiceAccount => tw_store::PrincipalKind::ServiceAccount,
            },
            permissions_used: vec![grant.to_owned()],
            method,
            path,
            instance: state.config.instance.clone(),
        },
        name,
    })
}

/// Logs a refused caller (names from the token, escaped).
fn refused(principal: &Principal, why: &str) {
    tracing::warn!(
        target: "tokenwarden::admin",
        caller = %terminal_safe(&principal.display()),
        subject = %terminal_safe(principal.subject.as_deref().unwrap_or("-")),
        client_id = %terminal_safe(principal.client_id.as_deref().unwrap_or("-")),
        issuer = %terminal_safe(&principal.issuer),
        "admin API refused: {why} ({ADMIN_PERMISSION})"
    );
}
