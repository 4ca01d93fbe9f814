//! The route handlers: thin translations between HTTP and [`tw_store::Store`]. Every write goes
//! through [`Store::as_admin`](tw_store::Store::as_admin), so it commits with its audit row.

use crate::AdminState;
use crate::api::{self, Account, AuditRecord, Role};
use crate::auth::Caller;
use crate::openapi::{AccountOrNoRole, AccountOrNotFound, AccountPath, AccountRolePath, Refusals};
use crate::query::{audit_query, clip};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use tw_core::text::terminal_safe;
use tw_core::{Clock, Error, SystemClock};
use tw_http::ApiError;
use tw_http::json::JsonBody;
use tw_http::openapi::ErrorBody;

type Answer = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> Answer {
    Ok(Json(value).into_response())
}

fn log_write(caller: &Caller, action: &str, object: &str) {
    let who = &caller.actor;
    let safe = |v: Option<&str>| terminal_safe(v.unwrap_or("-")).into_owned();
    tracing::info!(
        target: "tokenwarden::admin",
        caller = %terminal_safe(&caller.name),
        subject = %safe(who.subject.as_deref()),
        username = %safe(who.username.as_deref()),
        client_id = %safe(who.client_id.as_deref()),
        issuer = %terminal_safe(&who.issuer),
        grant = %caller.grant,
        action,
        object = %terminal_safe(object),
        "admin change"
    );
}

#[utoipa::path(get, path = "/v1/accounts", operation_id = "listAccounts",
    summary = "List service accounts", security(("bearer" = [])),
    responses((status = 200, description = "Every account", body = [Account]), Refusals))]
pub(crate) async fn list_accounts(State(s): State<AdminState>) -> Answer {
    let accounts = s.store.list_accounts().await?;
    ok(accounts.into_iter().map(Account::from).collect::<Vec<_>>())
}

#[utoipa::path(post, path = "/v1/accounts", operation_id = "createAccount",
    summary = "Register a service account", security(("bearer" = [])),
    request_body = api::NewAccount,
    responses(
        (status = 201, description = "Created", body = Account),
        (status = 400, description = "Invalid JSON or account (invalid_json, invalid_account: a value too long or holding control characters, named by `field`)", body = ErrorBody),
        (status = 404, description = "A listed role does not exist (role_not_found)", body = ErrorBody),
        (status = 409, description = "An account with this issuer and subject or client id exists (account_exists)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn create_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<api::NewAccount>,
) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .create_account(tw_store::NewAccount {
            issuer: req.issuer,
            subject: req.subject,
            client_id: req.client_id,
            display_name: req.display_name,
            enabled: req.enabled,
            roles: req.roles,
            created_by: caller.created_by(),
        })
        .await?;
    log_write(&caller, "account.create", &account.id);
    Ok((StatusCode::CREATED, Json(Account::from(account))).into_response())
}

#[utoipa::path(get, path = "/v1/accounts/{id}", operation_id = "getAccount",
    summary = "Show an account", security(("bearer" = [])),
    params(AccountPath), responses(AccountOrNotFound, Refusals))]
pub(crate) async fn get_account(State(s): State<AdminState>, Path(id): Path<String>) -> Answer {
    ok(Account::from(s.store.get_account(&id).await?))
}

#[utoipa::path(delete, path = "/v1/accounts/{id}", operation_id = "deleteAccount",
    summary = "Delete an account", security(("bearer" = [])),
    params(AccountPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such account (account_not_found)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn delete_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    s.store.as_admin(&caller.actor).delete_account(&id).await?;
    log_write(&caller, "account.delete", &id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/accounts/{id}/enable", operation_id = "enableAccount",
    summary = "Enable an account", security(("bearer" = [])),
    params(AccountPath), responses(AccountOrNotFound, Refusals))]
pub(crate) async fn enable_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
) -> Answer {
    set_enabled(&s, &caller, &id, true).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/disable", operation_id = "disableAccount",
    summary = "Disable an account (its tokens are refused by the registry)", security(("bearer" = [])),
    params(AccountPath), responses(AccountOrNotFound, Refusals))]
pub(crate) async fn disable_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
) -> Answer {
    set_enabled(&s, &caller, &id, false).await
}

async fn set_enabled(s: &AdminState, caller: &Caller, id: &str, enabled: bool) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .set_account_enabled(id, enabled)
        .await?;
    let action = if enabled {
        "account.enable"
    } else {
        "account.disable"
    };
    log_write(caller, action, id);
    ok(Account::from(account))
}

#[utoipa::path(post, path = "/v1/accounts/{id}/roles/{role}", operation_id = "grantRole",
    summary = "Grant a role (idempotent)", security(("bearer" = [])),
    params(AccountRolePath), responses(AccountOrNoRole, Refusals))]
pub(crate) async fn grant_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<AccountRolePath>,
) -> Answer {
    change_role(&s, &caller, &path, true).await
}

#[utoipa::path(delete, path = "/v1/accounts/{id}/roles/{role}", operation_id = "revokeRole",
    summary = "Revoke a role (idempotent)", security(("bearer" = [])),
    params(AccountRolePath), responses(AccountOrNoRole, Refusals))]
pub(crate) async fn revoke_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<AccountRolePath>,
) -> Answer {
    change_role(&s, &caller, &path, false).await
}

async fn change_role(s: &AdminState, caller: &Caller, p: &AccountRolePath, grant: bool) -> Answer {
    let admin = s.store.as_admin(&caller.actor);
    let (account, action) = if grant {
        (admin.grant_role(&p.id, &p.role).await?, "account.grant")
    } else {
        (admin.revoke_role(&p.id, &p.role).await?, "account.revoke")
    };
    log_write(caller, action, &format!("{} {}", p.id, p.role));
    ok(Account::from(account))
}

#[utoipa::path(get, path = "/v1/roles", operation_id = "listRoles",
    summary = "List roles with their permission codes", security(("bearer" = [])),
    responses((status = 200, description = "Every role", body = [Role]), Refusals))]
pub(crate) async fn list_roles(State(s): State<AdminState>) -> Answer {
    let roles = s.store.list_roles().await?;
    ok(roles.into_iter().map(Role::from).collect::<Vec<_>>())
}

#[utoipa::path(get, path = "/v1/roles/{name}", operation_id = "getRole",
    summary = "Show a role", security(("bearer" = [])),
    params(("name" = String, Path, description = "The role's name")),
    responses(
        (status = 200, description = "The role", body = Role),
        (status = 404, description = "No such role (role_not_found)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn get_role(State(s): State<AdminState>, Path(name): Path<String>) -> Answer {
    ok(Role::from(s.store.get_role(&name).await?))
}

#[utoipa::path(put, path = "/v1/roles/{name}", operation_id = "putRole",
    summary = "Create or replace a role", security(("bearer" = [])),
    params(("name" = String, Path, description = "The role's name")),
    request_body = api::RoleBody,
    responses(
        (status = 200, description = "The role as stored", body = Role),
        (status = 400, description = "Invalid JSON, role name, description or permission code (invalid_json, invalid_role, invalid_permission; `field` names it)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn put_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<api::RoleBody>,
) -> Answer {
    let role = s
        .store
        .as_admin(&caller.actor)
        .upsert_role(&name, req.description.as_deref(), &req.permissions)
        .await?;
    log_write(&caller, "role.put", &name);
    ok(Role::from(role))
}

#[utoipa::path(delete, path = "/v1/roles/{name}", operation_id = "deleteRole",
    summary = "Delete a role", security(("bearer" = [])),
    params(("name" = String, Path, description = "The role's name"),
           ("force" = Option<bool>, Query, description = "Also take the role from the accounts holding it")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An unknown or invalid query parameter (invalid_parameter)", body = ErrorBody),
        (status = 404, description = "No such role (role_not_found)", body = ErrorBody),
        (status = 409, description = "Accounts hold the role; use force=true (role_in_use)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn delete_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let mut force = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("force", "true" | "1" | "") => force = true,
            ("force", "false" | "0") => force = false,
            (k, _) => {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    format!(
                        "unknown or invalid query parameter `{}`; use force=true",
                        clip(k)
                    ),
                )
                .into());
            }
        }
    }
    s.store
        .as_admin(&caller.actor)
        .delete_role(&name, force)
        .await?;
    log_write(
        &caller,
        if force {
            "role.delete_forced"
        } else {
            "role.delete"
        },
        &name,
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/audit", operation_id = "queryAudit",
    summary = "Query the audit log (newest first)", security(("bearer" = [])),
    params(
        ("principal" = Option<String>, Query, description = "Subject, username or client id"),
        ("kind" = Option<api::AuditKind>, Query, description = "decision (the gateway's) or admin (changes through this API); default both"),
        ("outcome" = Option<api::AuditOutcome>, Query, description = "The decision"),
        ("since" = Option<String>, Query, description = "Inclusive: a duration back from now (1h, 30m) or an RFC 3339 time"),
        ("until" = Option<String>, Query, description = "Exclusive: a duration back from now or an RFC 3339 time"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "At most this many records (default 100, at most 10000)"),
    ),
    responses(
        (status = 200, description = "Matching records", body = [AuditRecord]),
        (status = 400, description = "Invalid filter (invalid_kind, invalid_outcome, invalid_time, invalid_limit, invalid_parameter)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn query_audit(State(s): State<AdminState>, RawQuery(query): RawQuery) -> Answer {
    let raw = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let q = audit_query(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SystemClock.now(),
    )?;
    let records = s.store.query_audit(&q).await?;
    ok(records
        .into_iter()
        .map(AuditRecord::from)
        .collect::<Vec<_>>())
}

pub(crate) async fn openapi(State(s): State<AdminState>) -> Response {
    Json(s.openapi.as_ref().clone()).into_response()
}

/// The browsable docs: one self-contained page (no external assets) that renders the OpenAPI
/// document fetched from `v1/openapi.json` next to it.
pub(crate) async fn docs(State(s): State<AdminState>) -> Response {
    let prefix = s.config.path_prefix.trim_end_matches('/');
    tw_http::openapi::docs_page(&format!("{prefix}/v1/openapi.json"))
}
