//! The route handlers: thin translations between HTTP and [`tw_store::Store`]. Every write goes
//! through [`Store::as_admin`](tw_store::Store::as_admin), so it commits with its audit row.

use crate::AdminState;
use crate::auth::Caller;
use crate::query::{audit_query, clip};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;
use tw_core::text::terminal_safe;
use tw_core::{Clock, Error, SystemClock};
use tw_http::ApiError;
use tw_http::json::JsonBody;
use tw_store::NewAccount;

type Answer = Result<Response, ApiError>;

/// `POST /v1/accounts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccount {
    issuer: String,
    subject: Option<String>,
    client_id: Option<String>,
    display_name: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    roles: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `PUT /v1/roles/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutRole {
    description: Option<String>,
    permissions: Vec<String>,
}

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

pub(crate) async fn list_accounts(State(s): State<AdminState>) -> Answer {
    ok(s.store.list_accounts().await?)
}

pub(crate) async fn create_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateAccount>,
) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .create_account(NewAccount {
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
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

pub(crate) async fn get_account(State(s): State<AdminState>, Path(id): Path<String>) -> Answer {
    ok(s.store.get_account(&id).await?)
}

pub(crate) async fn delete_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    s.store.as_admin(&caller.actor).delete_account(&id).await?;
    log_write(&caller, "account.delete", &id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn enable_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .set_account_enabled(&id, true)
        .await?;
    log_write(&caller, "account.enable", &id);
    ok(account)
}

pub(crate) async fn disable_account(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .set_account_enabled(&id, false)
        .await?;
    log_write(&caller, "account.disable", &id);
    ok(account)
}

pub(crate) async fn grant_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((id, role)): Path<(String, String)>,
) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .grant_role(&id, &role)
        .await?;
    log_write(&caller, "account.grant", &format!("{id} {role}"));
    ok(account)
}

pub(crate) async fn revoke_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((id, role)): Path<(String, String)>,
) -> Answer {
    let account = s
        .store
        .as_admin(&caller.actor)
        .revoke_role(&id, &role)
        .await?;
    log_write(&caller, "account.revoke", &format!("{id} {role}"));
    ok(account)
}

pub(crate) async fn list_roles(State(s): State<AdminState>) -> Answer {
    ok(s.store.list_roles().await?)
}

pub(crate) async fn get_role(State(s): State<AdminState>, Path(name): Path<String>) -> Answer {
    ok(s.store.get_role(&name).await?)
}

pub(crate) async fn put_role(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PutRole>,
) -> Answer {
    let role = s
        .store
        .as_admin(&caller.actor)
        .upsert_role(&name, req.description.as_deref(), &req.permissions)
        .await?;
    log_write(&caller, "role.put", &name);
    ok(role)
}

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

pub(crate) async fn query_audit(State(s): State<AdminState>, RawQuery(query): RawQuery) -> Answer {
    let raw = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let q = audit_query(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SystemClock.now(),
    )?;
    ok(s.store.query_audit(&q).await?)
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
