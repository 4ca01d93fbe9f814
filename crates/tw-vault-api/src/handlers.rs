//! The route handlers: thin translations between HTTP and [`tw_vault::Vault`].

use crate::ApiState;
use crate::api::{
    self, AccessToken, ConsentStart, Deleted, Entry, EntryList, Health, Introspection, Readiness,
    Version,
};
use crate::metrics_names::{METRIC_VAULT_REQUEST_SECONDS, METRIC_VAULT_REQUESTS};
use crate::openapi::{EntryIdParam, EntryNotFound, Refusals};
use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue, PRAGMA};
use http::request::Parts;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tw_core::Error;
use tw_http::json::{JsonBody, RawBody, parse_json};
use tw_http::openapi::ErrorBody;
use tw_http::{ApiError, ErrorCode};
use tw_vault::{Caller, ConsentCallback, EntryId, EntryView};
use url::Url;

type Answer = Result<Response, ApiError>;

// ----- middleware -----

/// Authenticates the caller (see [`crate::auth`]) and hands it to the handler.
pub(crate) async fn authenticate(
    State(s): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    match s.auth.authenticate(req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refusal.into_response(false),
    }
}

/// Counts every answer by route pattern and outcome (the error code, never a value).
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let outcome = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0)
        .unwrap_or("ok");
    metrics::counter!(METRIC_VAULT_REQUESTS, "route" => route.clone(), "method" => method.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(METRIC_VAULT_REQUEST_SECONDS, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

// ----- input -----

/// The caller set by [`authenticate`]. Its absence is a wiring bug (a route outside the
/// authenticated router), answered 500 rather than panicked.
pub(crate) struct Authenticated(Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Authenticated)
            .ok_or_else(|| {
                Error::internal("caller_missing", "the request was not authenticated").into()
            })
    }
}

/// The `{id}` of an `/v1/entries/{id}` route, parsed (400 `invalid_entry_id` when it is not one).
pub(crate) struct EntryPath(EntryId);

impl<S: Send + Sync> FromRequestParts<S> for EntryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::bad_request("invalid_entry_id", "the path names no entry id"))?;
        entry_id(&text).map(EntryPath)
    }
}

/// Query parameters; a repeated one is refused (which one counts would be a guess).
fn query(raw: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(Error::bad_request(
                "invalid_query",
                format!("the query parameter `{k}` is given more than once"),
            )
            .into());
        }
    }
    Ok(out)
}

fn entry_id(text: &str) -> Result<EntryId, ApiError> {
    text.parse::<EntryId>().map_err(ApiError::from)
}

// ----- output -----

/// An entry as the API shows it (never the token): [`Entry`]'s JSON.
pub fn entry_json(e: &EntryView) -> Value {
    serde_json::to_value(Entry::from(e)).unwrap_or_default()
}

/// A JSON answer that no cache may keep (answers name entries, sessions and tokens).
fn no_store(status: StatusCode, body: impl Serialize) -> Response {
    uncached((status, Json(body)).into_response())
}

fn uncached(mut r: Response) -> Response {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ----- consent -----

/// `GET /v1/offline-token?attributes={..}&redirect=URL`.
#[utoipa::path(get, path = "/v1/offline-token", operation_id = "startConsent",
    summary = "A consent URL: send the user's browser there to grant the vault an offline token",
    security(("bearer" = [])),
    params(
        ("attributes" = Option<String>, Query, description = "Free attributes stored with the entry: a JSON object of strings, URL-encoded"),
        ("redirect" = Option<String>, Query, format = "uri", description = "Page the browser goes to after consent (must be allowed by vault.consent)"),
    ),
    responses(
        (status = 200, description = "The consent URL (authorization code + PKCE, single-use signed state)", body = ConsentStart),
        (status = 400, description = "Bad attributes, an unknown parameter or a redirect that is not allowed (invalid_attributes, invalid_query, redirect_not_allowed)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn start_consent(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Answer {
    let mut q = query(raw.as_deref())?;
    let attributes: BTreeMap<String, String> = match q.remove("attributes") {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str(&text).map_err(|_| {
            Error::bad_request(
                "invalid_attributes",
                "`attributes` must be a JSON object of strings, e.g. {\"job\":\"nightly\"}",
            )
        })?,
    };
    // The vault checks the page against vault.consent (here, and again at the callback).
    let redirect = match q.remove("redirect") {
        None => s.config.redirect_after.clone(),
        Some(text) => Some(Url::parse(&text).map_err(|_| {
            Error::bad_request("redirect_not_allowed", "`redirect` is not an absolute URL")
        })?),
    };
    if let Some(unknown) = q.keys().next() {
        return Err(Error::bad_request(
            "invalid_query",
            format!("unknown query parameter `{unknown}` (known: attributes, redirect)"),
        )
        .into());
    }
    let start = s.vault.begin_consent(&caller, attributes, redirect).await?;
    Ok(no_store(StatusCode::OK, ConsentStart::from(&start)))
}

/// The IdP's redirect back: `?state=&code=` or `?state=&error=&error_description=`. Redirects
/// only to a page the vault re-checked against `vault.consent` (a refusal is JSON, never a
/// redirect). Documented at the default path; served at `vault.consent.callback_path`.
#[utoipa::path(get, path = "/v1/offline-token/callback", operation_id = "consentCallback",
    summary = "Where the IdP sends the browser back: exchanges the code and stores the offline token (no bearer token: the signed state identifies the request)",
    params(
        ("state" = Option<String>, Query, description = "The signed state of the consent URL"),
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("error" = Option<String>, Query, description = "The IdP's error code (e.g. access_denied)"),
        ("error_description" = Option<String>, Query, description = "The IdP's error text"),
    ),
    responses(
        (status = 200, description = "Stored (when no page to redirect to is configured)", body = Entry),
        (status = 303, description = "Stored; the browser is sent to the consent's page, checked against vault.consent again"),
        (status = 400, description = "vault_state_invalid, vault_state_expired, vault_state_used, consent_denied (the IdP's error in `idp_error`), redirect_not_allowed (the consent's page is no longer allowed; nothing stored, no redirect)", body = ErrorBody),
        (status = 403, description = "consent_user_mismatch: the user who signed in is not the one who asked", body = ErrorBody),
        (status = 500, description = "vault_decrypt_failed: the consent in progress was altered in the database (nothing stored, no redirect), vault_key_unknown", body = ErrorBody),
        (status = 502, description = "The IdP refused the code exchange", body = ErrorBody),
        (status = 503, description = "The IdP or the storage is unavailable; retry after Retry-After", body = ErrorBody),
    ))]
pub(crate) async fn consent_callback(State(s): State<ApiState>, RawQuery(raw): RawQuery) -> Answer {
    let mut q = query(raw.as_deref())?;
    let Some(state) = q.remove("state") else {
        return Err(Error::bad_request(
            tw_vault::codes::VAULT_STATE_INVALID,
            "the callback carries no `state`: start the consent again",
        )
        .into());
    };
    let done = s
        .vault
        .complete_consent(ConsentCallback {
            state,
            code: q.remove("code"),
            error: q.remove("error"),
            error_description: q.remove("error_description"),
        })
        .await?;
    Ok(match done.redirect_to {
        Some(url) => uncached(Redirect::to(url.as_str()).into_response()),
        None => no_store(StatusCode::OK, Entry::from(&done.entry)),
    })
}

// ----- mint, store -----

/// `POST /v1/access-token` with `{"id": ..}` or `?id=`.
#[utoipa::path(post, path = "/v1/access-token", operation_id = "mintAccessToken",
    summary = "Mint an access token from an entry (a refresh at the IdP, or a cached token until shortly before it expires)",
    security(("bearer" = [])),
    params(("id" = Option<String>, Query, description = "The entry id (alternative to the body)")),
    request_body(content = Option<api::MintRequest>, description = "The entry id (alternative to the query)"),
    responses(
        (status = 200, description = "A fresh access token (Cache-Control: no-store)", body = AccessToken),
        (status = 400, description = "No entry id, one that is not a UUID, or two different ones (invalid_entry_id, invalid_json, invalid_query)", body = ErrorBody),
        (status = 404, description = "No such entry for this caller (vault_entry_not_found): knowing an id is never enough", body = ErrorBody),
        (status = 409, description = "vault_reconsent_required: the IdP says the stored token is spent, revoked or expired; ask the user to consent again", body = ErrorBody),
        (status = 502, description = "The IdP refused the refresh for another reason", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn mint(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
    body: RawBody,
) -> Answer {
    let from_query = query(raw.as_deref())?.remove("id");
    let from_body = if body.is_blank() {
        None
    } else {
        parse_json::<api::MintRequest>(&body.0)?.id
    };
    let id = match (from_query, from_body) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::bad_request(
                "invalid_entry_id",
                "the query and the body name different entries",
            )
            .into());
        }
        (Some(id), _) | (None, Some(id)) => entry_id(&id)?,
        (None, None) => {
            return Err(Error::bad_request(
                "invalid_entry_id",
                "name the entry: {\"id\": \"<entry id>\"} or ?id=<entry id>",
            )
            .into());
        }
    };
    let minted = s.vault.mint(&caller, &id).await?;
    let mut r = no_store(StatusCode::OK, AccessToken::from(&minted));
    r.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// `POST /v1/refresh-token`.
#[utoipa::path(post, path = "/v1/refresh-token", operation_id = "storeRefreshToken",
    summary = "Store a refresh or offline token the caller already holds (it becomes the caller's entry)",
    security(("bearer" = [])),
    request_body = api::StoreToken,
    responses(
        (status = 201, description = "Stored", body = Entry),
        (status = 400, description = "invalid_json, invalid_attributes, vault_token_missing, vault_token_rejected (the IdP refused the token)", body = ErrorBody),
        (status = 403, description = "token_owner_mismatch: the refresh token belongs to another user (nothing stored; the grant the check obtained is revoked)", body = ErrorBody),
        (status = 413, description = "The body is larger than the vault accepts (body_too_large)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn store_token(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(b): JsonBody<api::StoreToken>,
) -> Answer {
    let entry = s
        .vault
        .store_token(&caller, b.refresh_token, b.attributes)
        .await?;
    Ok(no_store(StatusCode::CREATED, Entry::from(&entry)))
}

// ----- entries -----

/// `GET /v1/entries[?all=true]`: entries and the sessions they share.
#[utoipa::path(get, path = "/v1/entries", operation_id = "listEntries",
    summary = "The caller's entries and the IdP sessions they belong to (`all=true` with vault:read-any: everyone's)",
    security(("bearer" = [])),
    params(("all" = Option<bool>, Query, description = "Every owner's entries (needs vault:read-any)")),
    responses(
        (status = 200, description = "Entries, newest first, and sessions", body = EntryList),
        (status = 400, description = "An invalid query (invalid_query)", body = ErrorBody),
        (status = 403, description = "all=true without vault:read-any (vault_forbidden)", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn list_entries(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Answer {
    let mut q = query(raw.as_deref())?;
    let all = match q.remove("all").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(Error::bad_request("invalid_query", "`all` is true or false").into());
        }
    };
    let entries = if all {
        s.vault.list_all(&caller).await?
    } else {
        s.vault.list(&caller).await?
    };
    Ok(no_store(
        StatusCode::OK,
        EntryList::from(entries.as_slice()),
    ))
}

#[utoipa::path(get, path = "/v1/entries/{id}", operation_id = "getEntry",
    summary = "One entry (never the token)", security(("bearer" = [])),
    params(EntryIdParam),
    responses(
        (status = 200, description = "The entry", body = Entry),
        EntryNotFound,
        Refusals,
    ))]
pub(crate) async fn get_entry(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    EntryPath(id): EntryPath,
) -> Answer {
    let entry = s.vault.get(&caller, &id).await?;
    Ok(no_store(StatusCode::OK, Entry::from(&entry)))
}

#[utoipa::path(delete, path = "/v1/entries/{id}", operation_id = "deleteEntry",
    summary = "Delete an entry: its token is revoked at the IdP (RFC 7009), and the IdP session too when no other entry shares it",
    security(("bearer" = [])),
    params(EntryIdParam),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        EntryNotFound,
        Refusals,
    ))]
pub(crate) async fn delete_entry(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    EntryPath(id): EntryPath,
) -> Answer {
    let outcome = s.vault.delete(&caller, &id).await?;
    Ok(no_store(StatusCode::OK, Deleted::new(&id, outcome)))
}

#[utoipa::path(post, path = "/v1/entries/{id}/duplicate", operation_id = "duplicateEntry",
    summary = "Duplicate an offline entry: a second entry for the same session (deleting one keeps the session for the other)",
    security(("bearer" = [])),
    params(EntryIdParam),
    responses(
        (status = 201, description = "The new entry", body = Entry),
        EntryNotFound,
        Refusals,
    ))]
pub(crate) async fn duplicate_entry(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    EntryPath(id): EntryPath,
) -> Answer {
    let entry = s.vault.duplicate(&caller, &id).await?;
    Ok(no_store(StatusCode::CREATED, Entry::from(&entry)))
}

/// `POST /v1/validate-token` `{"token": ..}`: the IdP's RFC 7662 answer.
#[utoipa::path(post, path = "/v1/validate-token", operation_id = "validateToken",
    summary = "Is this token active? RFC 7662 introspection at the IdP, with the vault's client",
    security(("bearer" = [])),
    request_body = api::ValidateToken,
    responses(
        (status = 200, description = "The introspection answer (RFC 7662)", body = Introspection),
        (status = 400, description = "invalid_json, vault_token_missing", body = ErrorBody),
        Refusals,
    ))]
pub(crate) async fn validate_token(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(b): JsonBody<api::ValidateToken>,
) -> Answer {
    let answer = s.vault.introspect(&caller, b.token).await?;
    Ok(no_store(StatusCode::OK, Introspection(answer)))
}

// ----- probes, documents -----

/// Ready when the storage answered its last background ping (see [`tw_store::health`]: the
/// probe itself never waits on the database) and the callers' issuers' keys are loaded.
pub(crate) fn readiness(s: &ApiState) -> tw_http::Readiness {
    let storage = s.storage.readiness();
    let keys = s.auth.verifier().is_ready();
    let answer = Readiness {
        ready: storage.reachable && keys,
        storage: storage.into(),
        caller_keys_loaded: keys,
    };
    tw_http::Readiness {
        ready: answer.ready,
        detail: serde_json::to_value(answer).unwrap_or_default(),
    }
}

/// The probes' documentation: served by [`tw_http::Probes`] (also at `/healthz`).
#[utoipa::path(get, path = "/health", operation_id = "health",
    summary = "Liveness: 200 while the process serves",
    responses((status = 200, description = "Alive", body = Health)))]
#[allow(dead_code)]
fn health_doc() {}

/// The probes' documentation: served by [`tw_http::Probes`] (also at `/readyz`).
#[utoipa::path(get, path = "/health/ready", operation_id = "ready",
    summary = "Readiness: storage reachable and the callers' issuer keys loaded",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready, with the reason", body = Readiness),
    ))]
#[allow(dead_code)]
fn ready_doc() {}

/// The probes' documentation: served by [`tw_http::Probes`].
#[utoipa::path(get, path = "/metrics", operation_id = "metrics",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics_doc() {}

#[utoipa::path(get, path = "/version", operation_id = "version",
    summary = "Name and version",
    responses((status = 200, description = "Version", body = Version)))]
pub(crate) async fn version() -> Response {
    no_store(
        StatusCode::OK,
        Version {
            name: "tokenwarden-vault".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
}

pub(crate) async fn openapi(State(s): State<ApiState>) -> Response {
    Json(s.openapi.as_ref().clone()).into_response()
}

pub(crate) async fn docs() -> Response {
    // Relative, so the page works behind a path prefix too.
    tw_http::openapi::docs_page("openapi.json")
}
