//! The route handlers: thin translations between HTTP and [`tw_vault::Vault`].

use crate::ApiState;
use crate::metrics_names::{METRIC_VAULT_REQUEST_SECONDS, METRIC_VAULT_REQUESTS};
use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue, PRAGMA};
use http::request::Parts;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tw_core::{Error, Secret};
use tw_http::json::{JsonBody, RawBody, parse_json};
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

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

fn entry_id(text: &str) -> Result<EntryId, ApiError> {
    text.parse::<EntryId>().map_err(ApiError::from)
}

// ----- output -----

/// An entry as the API shows it (never the token).
pub fn entry_json(e: &EntryView) -> Value {
    json!({
        "id": e.id.to_string(),
        "owner": { "issuer": e.owner_issuer, "subject": e.owner_subject },
        "token_type": e.token_type.as_str(),
        "status": e.status.as_str(),
        "session_id": e.session_id,
        "created_at": e.created_at.as_secs(),
        "last_used_at": e.last_used_at.map(|t| t.as_secs()),
        "expires_at": e.expires_at.map(|t| t.as_secs()),
        "key_id": e.key_id,
        "attributes": e.attributes,
    })
}

/// A JSON answer that no cache may keep (answers name entries, sessions and tokens).
fn no_store(status: StatusCode, body: Value) -> Response {
    uncached((status, Json(body)).into_response())
}

fn uncached(mut r: Response) -> Response {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ----- consent -----

/// `GET /v1/offline-token?attributes={..}&redirect=URL`.
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
        None => s.config.consent.redirect_after.clone(),
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
    Ok(no_store(
        StatusCode::OK,
        json!({
            "consent_url": start.consent_url.as_str(),
            "expires_at": start.expires_at.as_secs(),
        }),
    ))
}

/// The IdP's redirect back: `?state=&code=` or `?state=&error=&error_description=`. Redirects
/// only to a page the vault re-checked against `vault.consent` (a refusal is JSON, never a
/// redirect).
pub(crate) async fn consent_callback(State(s): State<ApiState>, RawQuery(raw): RawQuery) -> Answer {
    let mut q = query(raw.as_deref())?;
    let Some(state) = q.remove("state") else {
        return Err(Error::bad_request(
            "vault_state_invalid",
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
        None => no_store(StatusCode::OK, entry_json(&done.entry)),
    })
}

// ----- mint, store -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintBody {
    id: Option<String>,
}

/// `POST /v1/access-token` with `{"id": ..}` or `?id=`.
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
        parse_json::<MintBody>(&body.0)?.id
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
    let mut body = json!({
        "access_token": minted.access_token.expose(),
        "expires_in": minted.expires_in,
        "token_type": minted.token_type,
    });
    if let Some(scope) = &minted.scope {
        body["scope"] = scope.as_str().into();
    }
    let mut r = no_store(StatusCode::OK, body);
    r.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreBody {
    #[serde(deserialize_with = "de_secret")]
    refresh_token: Secret,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// `POST /v1/refresh-token`.
pub(crate) async fn store_token(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(b): JsonBody<StoreBody>,
) -> Answer {
    let entry = s
        .vault
        .store_token(&caller, b.refresh_token, b.attributes)
        .await?;
    Ok(no_store(StatusCode::CREATED, entry_json(&entry)))
}

// ----- entries -----

/// `GET /v1/entries[?all=true]`: entries and the sessions they share.
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
    let mut sessions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &entries {
        if let Some(sid) = &e.session_id {
            sessions.entry(sid).or_default().push(e.id.to_string());
        }
    }
    let sessions: Vec<Value> = sessions
        .into_iter()
        .map(|(sid, ids)| json!({ "session_id": sid, "entries": ids }))
        .collect();
    Ok(no_store(
        StatusCode::OK,
        json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "sessions": sessions,
        }),
    ))
}

pub(crate) async fn get_entry(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    EntryPath(id): EntryPath,
) -> Answer {
    let entry = s.vault.get(&caller, &id).await?;
    Ok(no_store(StatusCode::OK, entry_json(&entry)))
}

pub(crate) async fn delete_entry(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    EntryPath(id): EntryPath,
) -> Answer {
    let outcome = s.vault.delete(&caller, &id).await?;
    Ok(no_store(
        StatusCode::OK,
        json!({
            "id": id.to_string(),
            "revoked_at_idp": outcome.revoked_at_idp,
            "session_revoked": outcome.session_revoked,
        }),
    ))
}

pub(crate) async fn duplicate_entry(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    EntryPath(id): EntryPath,
) -> Answer {
    let entry = s.vault.duplicate(&caller, &id).await?;
    Ok(no_store(StatusCode::CREATED, entry_json(&entry)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateBody {
    #[serde(deserialize_with = "de_secret")]
    token: Secret,
}

/// `POST /v1/validate-token` `{"token": ..}`: the IdP's RFC 7662 answer.
pub(crate) async fn validate_token(
    State(s): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(b): JsonBody<ValidateBody>,
) -> Answer {
    let answer = s.vault.introspect(&caller, b.token).await?;
    Ok(no_store(StatusCode::OK, answer))
}

// ----- probes, documents -----

/// Ready when the storage answered its last background ping (see [`tw_store::health`]: the
/// probe itself never waits on the database) and the callers' issuers' keys are loaded.
pub(crate) fn readiness(s: &ApiState) -> tw_http::Readiness {
    let storage = s.storage.readiness();
    let keys = s.auth.verifier().is_ready();
    tw_http::Readiness {
        ready: storage.reachable && keys,
        detail: json!({ "storage": storage.detail(), "caller_keys_loaded": keys }),
    }
}

pub(crate) async fn version() -> Response {
    no_store(
        StatusCode::OK,
        json!({ "name": "tokenwarden-vault", "version": env!("CARGO_PKG_VERSION") }),
    )
}

pub(crate) async fn openapi(State(s): State<ApiState>) -> Response {
    Json(s.openapi.as_ref().clone()).into_response()
}

pub(crate) async fn docs() -> Response {
    // Relative, so the page works behind a path prefix too.
    tw_http::openapi::docs_page("openapi.json")
}
