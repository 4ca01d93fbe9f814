//! The OpenAPI 3.1 document of the vault API, written by hand (the API is small and the document
//! must build offline), with the shared builders of [`tw_http::openapi`].

use serde_json::{Value, json};
use tw_http::openapi::{
    bearer_operation, error_response as err, error_schema, path_param, query_param, response as ok,
    schema_ref,
};

/// One authenticated operation, with the refusals every one of them can answer.
fn op(summary: &str, id: &str, params: Vec<Value>, body: Option<Value>, responses: Value) -> Value {
    bearer_operation(
        summary,
        id,
        params,
        body,
        responses,
        &[
            (
                "401",
                "No or an invalid bearer token (RFC 6750 challenge in WWW-Authenticate); codes missing_token, invalid_token (also for a token the vault minted itself)",
            ),
            (
                "429",
                "Over the caller's rate limit (rate_limited; vault.limits), or, starting a consent, too many of the user's consents waiting to be completed (vault_too_many_pending_consents); retry after Retry-After",
            ),
            (
                "503",
                "The IdP, its keys or the storage is unavailable; retry after Retry-After",
            ),
        ],
    )
}

/// An operation that needs no bearer token.
fn public(summary: &str, id: &str, params: Vec<Value>, responses: Value) -> Value {
    json!({ "summary": summary, "operationId": id, "parameters": params, "responses": responses })
}

/// The document; `callback_path` is where the consent callback is served.
pub fn document(callback_path: &str) -> Value {
    let entry_id = || path_param("id", "The entry's id (a UUID)");
    let entry = || schema_ref("Entry");
    let not_found = || {
        err("No such entry for this caller (vault_entry_not_found): knowing an id is never enough")
    };
    let bad_id = || err("The id is not a UUID (invalid_entry_id)");
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/v1/offline-token".into(),
        json!({ "get": op(
            "A consent URL: send the user's browser there to grant the vault an offline token",
            "startConsent",
            vec![
                query_param("attributes", "Free attributes stored with the entry: a JSON object of strings, URL-encoded", json!({"type": "string"})),
                query_param("redirect", "Page the browser goes to after consent (must be allowed by vault.consent)", json!({"type": "string", "format": "uri"})),
            ],
            None,
            json!({
                "200": ok("The consent URL (authorization code + PKCE, single-use signed state)", schema_ref("ConsentStart")),
                "400": err("Bad attributes or a redirect that is not allowed (invalid_attributes, redirect_not_allowed)"),
            }),
        )}),
    );
    paths.insert(
        callback_path.into(),
        json!({ "get": public(
            "Where the IdP sends the browser back: exchanges the code and stores the offline token (no bearer token: the signed state identifies the request)",
            "consentCallback",
            vec![
                query_param("state", "The signed state of the consent URL", json!({"type": "string"})),
                query_param("code", "The authorization code", json!({"type": "string"})),
                query_param("error", "The IdP's error code (e.g. access_denied)", json!({"type": "string"})),
                query_param("error_description", "The IdP's error text", json!({"type": "string"})),
            ],
            json!({
                "200": ok("Stored (when no page to redirect to is configured)", entry()),
                "303": { "description": "Stored; the browser is sent to the consent's page, checked against vault.consent again" },
                "400": err("vault_state_invalid, vault_state_expired, vault_state_used, consent_denied (the IdP's error in `idp_error`), consent_user_mismatch (403), redirect_not_allowed (the consent's page is no longer allowed; nothing stored, no redirect)"),
                "500": err("vault_decrypt_failed: the consent in progress was altered in the database (nothing stored, no redirect), vault_key_unknown"),
                "502": err("The IdP refused the code exchange"),
            }),
        )}),
    );
    paths.insert(
        "/v1/access-token".into(),
        json!({ "post": op(
            "Mint an access token from an entry (a refresh at the IdP, or a cached token until shortly before it expires)",
            "mintAccessToken",
            vec![query_param("id", "The entry id (alternative to the body)", json!({"type": "string"}))],
            None,
            json!({
                "200": ok("A fresh access token (Cache-Control: no-store)", schema_ref("AccessToken")),
                "400": err("No entry id, one that is not a UUID, or two different ones (invalid_entry_id, invalid_json)"),
                "404": not_found(),
                "409": err("vault_reconsent_required: the IdP says the stored token is spent, revoked or expired; ask the user to consent again"),
                "502": err("The IdP refused the refresh for another reason"),
            }),
        )}),
    );
    paths.insert(
        "/v1/refresh-token".into(),
        json!({ "post": op(
            "Store a refresh or offline token the caller already holds (it becomes the caller's entry)",
            "storeRefreshToken",
            vec![],
            Some(schema_ref("StoreToken")),
            json!({
                "201": ok("Stored", entry()),
                "400": err("invalid_json, invalid_attributes, vault_token_missing, vault_token_rejected (the IdP refused the token)"),
                "403": err("token_owner_mismatch: the refresh token belongs to another user (nothing stored; the grant the check obtained is revoked)"),
            }),
        )}),
    );
    paths.insert(
        "/v1/entries".into(),
        json!({ "get": op(
            "The caller's entries and the IdP sessions they belong to (`all=true` with vault:read-any: everyone's)",
            "listEntries",
            vec![query_param("all", "Every owner's entries (needs vault:read-any)", json!({"type": "boolean"}))],
            None,
            json!({ "200": ok("Entries, newest first, and sessions", schema_ref("EntryList")),
                    "403": err("all=true without vault:read-any (insufficient_scope)") }),
        )}),
    );
    paths.insert(
        "/v1/entries/{id}".into(),
        json!({
            "get": op("One entry (never the token)", "getEntry", vec![entry_id()], None,
                json!({ "200": ok("The entry", entry()), "400": bad_id(), "404": not_found() })),
            "delete": op(
                "Delete an entry: its token is revoked at the IdP (RFC 7009), and the IdP session too when no other entry shares it",
                "deleteEntry", vec![entry_id()], None,
                json!({ "200": ok("Deleted", schema_ref("Deleted")), "400": bad_id(), "404": not_found() })),
        }),
    );
    paths.insert(
        "/v1/entries/{id}/duplicate".into(),
        json!({ "post": op(
            "Duplicate an offline entry: a second entry for the same session (deleting one keeps the session for the other)",
            "duplicateEntry", vec![entry_id()], None,
            json!({ "201": ok("The new entry", entry()), "400": bad_id(), "404": not_found(),
                    "503": err("vault_refresh_in_progress, vault_lease_lost (another instance took the entry's lease over: nothing written, retry), vault_commit_conflict") }),
        )}),
    );
    paths.insert(
        "/v1/validate-token".into(),
        json!({ "post": op(
            "Is this token active? RFC 7662 introspection at the IdP, with the vault's client",
            "validateToken", vec![], Some(schema_ref("ValidateToken")),
            json!({ "200": ok("The introspection answer (RFC 7662)", json!({"type": "object", "required": ["active"], "properties": {"active": {"type": "boolean"}}})),
                    "400": err("invalid_json") }),
        )}),
    );
    paths.insert(
        "/health".into(),
        json!({ "get": public("Liveness: 200 while the process serves", "health", vec![],
            json!({ "200": ok("Alive", json!({"type": "object"})) })) }),
    );
    paths.insert(
        "/health/ready".into(),
        json!({ "get": public("Readiness: storage reachable and the callers' issuer keys loaded", "ready", vec![],
            json!({ "200": ok("Ready", json!({"type": "object"})), "503": ok("Not ready, with the reason", json!({"type": "object"})) })) }),
    );
    paths.insert(
        "/version".into(),
        json!({ "get": public("Name and version", "version", vec![],
            json!({ "200": ok("Version", json!({"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}})) })) }),
    );
    paths.insert(
        "/metrics".into(),
        json!({ "get": public("Prometheus metrics", "metrics", vec![],
            json!({ "200": { "description": "Prometheus text exposition" } })) }),
    );

    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tokenwarden vault API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Refresh and offline tokens kept encrypted (AES-256-GCM) and minted into access tokens on demand. Callers present bearer tokens verified like the gateway's; a caller reaches only its own entries unless a role grants vault:mint-any, vault:read-any or vault:admin. Tokens and secrets are never returned except the minted access token.",
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": error_schema(),
                "ConsentStart": {
                    "type": "object", "required": ["consent_url", "expires_at"],
                    "properties": {
                        "consent_url": { "type": "string", "format": "uri" },
                        "expires_at": { "type": "integer", "description": "Unix time after which the state is refused" }
                    }
                },
                "AccessToken": {
                    "type": "object", "required": ["access_token", "expires_in", "token_type"],
                    "properties": {
                        "access_token": { "type": "string" },
                        "expires_in": { "type": "integer" },
                        "token_type": { "type": "string" },
                        "scope": { "type": "string" }
                    }
                },
                "StoreToken": {
                    "type": "object", "required": ["refresh_token"],
                    "properties": { "refresh_token": { "type": "string" }, "attributes": string_map.clone() },
                    "additionalProperties": false
                },
                "ValidateToken": {
                    "type": "object", "required": ["token"],
                    "properties": { "token": { "type": "string" } },
                    "additionalProperties": false
                },
                "Entry": {
                    "type": "object",
                    "required": ["id", "owner", "token_type", "status", "created_at", "key_id", "attributes"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "owner": { "type": "object", "properties": { "issuer": { "type": "string" }, "subject": { "type": "string" } } },
                        "token_type": { "enum": ["refresh", "offline"] },
                        "status": { "enum": ["active", "reconsent_required"] },
                        "session_id": { "type": ["string", "null"] },
                        "created_at": { "type": "integer" },
                        "last_used_at": { "type": ["integer", "null"] },
                        "expires_at": { "type": ["integer", "null"] },
                        "key_id": { "type": "string", "description": "Which encryption key seals it" },
                        "attributes": string_map,
                    }
                },
                "EntryList": {
                    "type": "object", "required": ["entries", "sessions"],
                    "properties": {
                        "entries": { "type": "array", "items": schema_ref("Entry") },
                        "sessions": { "type": "array", "items": { "type": "object", "properties": {
                            "session_id": { "type": "string" },
                            "entries": { "type": "array", "items": { "type": "string" } } } } }
                    }
                },
                "Deleted": {
                    "type": "object", "required": ["id", "revoked_at_idp", "session_revoked"],
                    "properties": {
                        "id": { "type": "string" },
                        "revoked_at_idp": { "type": "boolean" },
                        "session_revoked": { "type": "boolean" }
                    }
                }
            }
        },
        "paths": paths,
    })
}
