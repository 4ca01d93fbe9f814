//! Who may use the admin API: a bearer token verified by the gateway's own [`Verifier`], whose
//! principal holds `tokenwarden:admin`.
//!
//! The permission comes from either source, checked in this order:
//! 1. **Token roles**: a realm role (`realm_access.roles`) or client role
//!    (`resource_access.<client>.roles`, named `<client>:<role>`) listed in
//!    [`AdminConfig::roles`](crate::AdminConfig::roles) (default `tokenwarden-admin`).
//! 2. **Registry**: the caller's enabled account (issuer + subject, else issuer + client id) has a
//!    role whose permissions satisfy `tokenwarden:admin` (wildcards count: `tokenwarden:*`, `*`).
//!
//! Refusals follow RFC 6750: no token → 401 with a bare challenge; a malformed `Authorization`
//! → 400 `invalid_request`; a refused token → 401 `invalid_token`; keys unavailable → 503; no
//! permission → 403 `insufficient_scope` (code `admin_permission_required`).

use crate::AdminState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tw_core::{Error, ErrorKind};
use tw_http::ApiError;
use tw_verify::{VerifiedToken, VerifyOptions};

/// The permission code the admin API requires.
pub const ADMIN_PERMISSION: &str = "tokenwarden:admin";

/// The `realm` of every challenge.
const REALM: &str = "tokenwarden";

/// The authenticated admin, attached to the request for handlers and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client id, else the subject: what admin logs and `created_by` name.
    pub name: String,
    pub issuer: String,
    /// How the permission was granted: `role:<name>` or `registry:<account id>`.
    pub via: String,
}

impl Caller {
    /// `created_by` of accounts created through the API.
    pub fn created_by(&self) -> String {
        format!("api:{}", self.name)
    }
}

/// The middleware: authenticate and authorize, then run the handler with a [`Caller`].
pub(crate) async fn require_admin(
    State(state): State<AdminState>,
    mut req: Request,
    next: Next,
) -> Response {
    match authorize(&state, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers)?;
    let verified = state
        .verifier
        .verify(token, VerifyOptions::default())
        .await
        .map_err(|e| {
            if e.is_transient() {
                let retry = e.retry_after().unwrap_or(Duration::from_secs(1));
                ApiError::new(e.into_error().with_retry_after(retry))
            } else {
                let header = challenge(Some(e.error_code()), Some(e.description()), None);
                ApiError::new(e.into_error()).with_challenge(header)
            }
        })?;
    let name = verified
        .client_id
        .clone()
        .or_else(|| verified.subject.clone())
        .unwrap_or_else(|| "-".to_owned());
    let caller = |via: String| Caller {
        name: name.clone(),
        issuer: verified.issuer.clone(),
        via,
    };
    let roles = token_roles(&verified);
    if let Some(role) = state.config.roles.iter().find(|r| roles.contains(*r)) {
        return Ok(caller(format!("role:{role}")));
    }
    if let Some(account) = registry_grant(state, &verified).await? {
        return Ok(caller(format!("registry:{account}")));
    }
    tracing::warn!(
        target: "tokenwarden::admin",
        caller = %name,
        issuer = %verified.issuer,
        "admin API refused: the caller lacks {ADMIN_PERMISSION}"
    );
    let description = format!(
        "the admin API needs the permission {ADMIN_PERMISSION} (a role in admin.roles, or a registry account granted it)"
    );
    Err(ApiError::new(
        Error::new(
            ErrorKind::Forbidden,
            "admin_permission_required",
            description.clone(),
        )
        .with("scope", ADMIN_PERMISSION),
    )
    .with_challenge(challenge(
        Some("insufficient_scope"),
        Some(&description),
        Some(ADMIN_PERMISSION),
    )))
}

/// The caller's enabled registry account, if its permissions satisfy `tokenwarden:admin`.
async fn registry_grant(
    state: &AdminState,
    token: &VerifiedToken,
) -> Result<Option<String>, ApiError> {
    let found = state
        .store
        .find_account(
            &token.issuer,
            token.subject.as_deref(),
            token.client_id.as_deref(),
        )
        .await?;
    let Some(account) = found.filter(|a| a.enabled) else {
        return Ok(None);
    };
    let permissions: tw_authz::PermissionSet = state
        .store
        .permissions_of(&account.id)
        .await?
        .into_iter()
        .collect();
    Ok(permissions
        .satisfies(ADMIN_PERMISSION)
        .then_some(account.id))
}

/// Realm roles as is; client roles as `<client>:<role>` (the gateway's default role format).
fn token_roles(token: &VerifiedToken) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let obj = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let realm: Map<String, Value> = obj(token.claims.get("realm_access"));
    out.extend(strings(realm.get("roles")));
    for (client, access) in obj(token.claims.get("resource_access")) {
        for role in strings(access.get("roles")) {
            out.insert(format!("{client}:{role}"));
        }
    }
    out
}

/// The bearer token of `Authorization` (RFC 6750 §2.1, the header only).
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let invalid = |d: &str| {
        ApiError::new(Error::bad_request("invalid_request", d.to_owned()))
            .with_challenge(challenge(Some("invalid_request"), Some(d), None))
    };
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(missing());
    };
    if values.next().is_some() {
        return Err(invalid("the request has several Authorization headers"));
    }
    let text = value
        .to_str()
        .map_err(|_| invalid("the Authorization header is not visible ASCII"))?
        .trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    let rest = rest.trim();
    if rest.is_empty() || rest.contains([' ', '\t']) {
        return Err(invalid(
            "the Authorization header must be `Bearer <one token>`",
        ));
    }
    Ok(rest)
}

fn missing() -> ApiError {
    ApiError::new(Error::new(
        ErrorKind::Unauthenticated,
        "missing_token",
        "a bearer token is required (Authorization: Bearer <token>)",
    ))
    .with_challenge(challenge(None, None, None))
}

/// `Bearer realm="tokenwarden"[, error=..][, error_description=..][, scope=..]`.
fn challenge(error: Option<&str>, description: Option<&str>, scope: Option<&str>) -> HeaderValue {
    let mut s = format!("Bearer realm=\"{REALM}\"");
    for (name, value) in [
        ("error", error),
        ("error_description", description),
        ("scope", scope),
    ] {
        if let Some(v) = value {
            let v: String = v
                .chars()
                .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
                .take(200)
                .collect();
            s.push_str(&format!(", {name}=\"{v}\""));
        }
    }
    HeaderValue::from_str(&s)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"tokenwarden\""))
}
