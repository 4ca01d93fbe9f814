//! The OpenAPI 3.1 document of the admin API, written out by hand (no code generator: the API is
//! small, and the document must build offline).

use serde_json::{Value, json};
use tw_http::openapi::{
    bearer_operation, error_response as err, path_param, query_param, response as ok, schema_ref,
};

/// One operation with the common refusals (401, 403, 503) added.
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
                "No or an invalid bearer token (RFC 6750 challenge in WWW-Authenticate)",
            ),
            (
                "403",
                "The caller lacks tokenwarden:admin (insufficient_scope; code admin_permission_required or account_disabled)",
            ),
            (
                "503",
                "Storage, the account registry or the issuer's keys unavailable; retry after Retry-After",
            ),
        ],
    )
}

pub fn document(prefix: &str) -> Value {
    let id = || path_param("id", "The account's id (a UUID)");
    let role = || path_param("role", "A role name");
    let name = || path_param("name", "The role's name");
    let account = || ok("The account", schema_ref("Account"));
    let p = |s: &str| format!("{prefix}/v1{s}");
    let mut paths = serde_json::Map::new();
    paths.insert(p("/accounts"), json!({
        "get": op("List service accounts", "listAccounts", vec![], None,
            json!({ "200": ok("Every account", json!({ "type": "array", "items": schema_ref("Account") })) })),
        "post": op("Register a service account", "createAccount", vec![], Some(schema_ref("NewAccount")),
            json!({
                "201": ok("Created", schema_ref("Account")),
                "400": err("Invalid JSON or account (invalid_json, invalid_account: a value too long or holding control characters, named by `field`)"),
                "404": err("A listed role does not exist (role_not_found)"),
                "409": err("An account with this issuer and subject or client id exists (account_exists)"),
            })),
    }));
    paths.insert(p("/accounts/{id}"), json!({
        "get": op("Show an account", "getAccount", vec![id()], None,
            json!({ "200": account(), "404": err("No such account (account_not_found)") })),
        "delete": op("Delete an account", "deleteAccount", vec![id()], None,
            json!({ "204": { "description": "Deleted" }, "404": err("No such account (account_not_found)") })),
    }));
    for (action, summary, op_id) in [
        ("enable", "Enable an account", "enableAccount"),
        (
            "disable",
            "Disable an account (its tokens are refused by the registry)",
            "disableAccount",
        ),
    ] {
        paths.insert(
            p(&format!("/accounts/{{id}}/{action}")),
            json!({
                "post": op(summary, op_id, vec![id()], None,
                    json!({ "200": account(), "404": err("No such account (account_not_found)") })),
            }),
        );
    }
    paths.insert(
        p("/accounts/{id}/roles/{role}"),
        json!({
            "post": op("Grant a role (idempotent)", "grantRole", vec![id(), role()], None,
                json!({ "200": account(), "404": err("No such account or role") })),
            "delete": op("Revoke a role (idempotent)", "revokeRole", vec![id(), role()], None,
                json!({ "200": account(), "404": err("No such account or role") })),
        }),
    );
    paths.insert(p("/roles"), json!({
        "get": op("List roles with their permission codes", "listRoles", vec![], None,
            json!({ "200": ok("Every role", json!({ "type": "array", "items": schema_ref("Role") })) })),
    }));
    paths.insert(p("/roles/{name}"), json!({
        "get": op("Show a role", "getRole", vec![name()], None,
            json!({ "200": ok("The role", schema_ref("Role")), "404": err("No such role (role_not_found)") })),
        "put": op("Create or replace a role", "putRole", vec![name()], Some(schema_ref("RoleBody")),
            json!({ "200": ok("The role as stored", schema_ref("Role")),
                    "400": err("Invalid JSON, role name, description or permission code (invalid_json, invalid_role, invalid_permission; `field` names it)") })),
        "delete": op("Delete a role", "deleteRole",
            vec![name(), query_param("force", "Also take the role from the accounts holding it", json!({ "type": "boolean" }))],
            None,
            json!({ "204": { "description": "Deleted" },
                    "404": err("No such role (role_not_found)"),
                    "409": err("Accounts hold the role; use force=true (role_in_use)") })),
    }));
    paths.insert(p("/audit"), json!({
        "get": op("Query the audit log (newest first)", "queryAudit", vec![
            query_param("principal", "Subject, username or client id", json!({ "type": "string" })),
            query_param("kind", "decision (the gateway's) or admin (changes through this API); default both", json!({ "type": "string", "enum": ["decision", "admin"] })),
            query_param("outcome", "The decision", json!({ "type": "string", "enum": ["allow", "deny", "dry_run_deny", "rate_limited"] })),
            query_param("since", "Inclusive: a duration back from now (1h, 30m) or an RFC 3339 time", json!({ "type": "string" })),
            query_param("until", "Exclusive: a duration back from now or an RFC 3339 time", json!({ "type": "string" })),
            query_param("limit", "At most this many records (default 100, at most 10000)", json!({ "type": "integer", "minimum": 1, "maximum": 10000 })),
        ], None, json!({
            "200": ok("Matching records", json!({ "type": "array", "items": schema_ref("AuditRecord") })),
            "400": err("Invalid filter (invalid_kind, invalid_outcome, invalid_time, invalid_limit, invalid_parameter)"),
        })),
    }));
    let nullable = |t: &str| json!({ "type": [t, "null"] });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let millis =
        json!({ "type": "integer", "format": "int64", "description": "Epoch milliseconds" });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tokenwarden admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Service accounts, roles and the audit log of tokenwarden. Every /v1 route needs a bearer token whose principal holds tokenwarden:admin, decided by the gateway's authorizer with [gateway.authz]: a token role listed in gateway.admin.roles (default tokenwarden-admin; client roles as client_role_format names them) or mapped to it in [gateway.authz.roles], where the issuer's permission sources include roles; or a registry account whose roles grant tokenwarden:admin (or tokenwarden:*, *), where they include registry. An account registered by client id is that client's service account: users signing in through the client do not hold it. Every change is audited (kind admin) with the caller's subject, username and client. Errors are {\"error\":{\"code\",\"message\",\"retryable\"}} with stable codes.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Account": {
                    "type": "object",
                    "required": ["id", "issuer", "enabled", "roles", "created_at", "updated_at", "created_by"],
                    "properties": {
                        "id": { "type": "string" },
                        "issuer": { "type": "string" },
                        "subject": nullable("string"),
                        "client_id": nullable("string"),
                        "display_name": nullable("string"),
                        "enabled": { "type": "boolean" },
                        "roles": strings.clone(),
                        "created_at": millis.clone(),
                        "updated_at": millis.clone(),
                        "created_by": { "type": "string", "description": "cli, api:user:<username>, api:service_account:<client id>, auto-provision, ..." },
                    },
                },
                "NewAccount": {
                    "type": "object",
                    "required": ["issuer"],
                    "additionalProperties": false,
                    "description": "issuer plus a subject or a client id (or both); no value may hold control characters or bidirectional overrides",
                    "properties": {
                        "issuer": { "type": "string", "maxLength": 1024 },
                        "subject": { "type": ["string", "null"], "maxLength": 255 },
                        "client_id": { "type": ["string", "null"], "maxLength": 255 },
                        "display_name": { "type": ["string", "null"], "maxLength": 200 },
                        "enabled": { "type": "boolean", "default": true },
                        "roles": { "type": "array", "items": { "type": "string" }, "default": [] },
                    },
                },
                "Role": {
                    "type": "object",
                    "required": ["name", "permissions"],
                    "properties": {
                        "name": { "type": "string" },
                        "description": nullable("string"),
                        "permissions": strings.clone(),
                    },
                },
                "RoleBody": {
                    "type": "object",
                    "required": ["permissions"],
                    "additionalProperties": false,
                    "properties": {
                        "description": { "type": ["string", "null"], "maxLength": 500 },
                        "permissions": { "type": "array", "items": { "type": "string", "maxLength": 200 }, "maxItems": 256,
                                         "description": "Permission codes; wildcards events:* and * allowed" },
                    },
                },
                "AuditRecord": {
                    "type": "object",
                    "properties": {
                        "id": nullable("integer"),
                        "kind": { "type": "string", "enum": ["decision", "admin"] },
                        "at": millis,
                        "issuer": { "type": "string" },
                        "subject": nullable("string"),
                        "username": nullable("string"),
                        "client_id": nullable("string"),
                        "principal_kind": { "type": "string", "enum": ["user", "service_account"] },
                        "method": { "type": "string" },
                        "path": { "type": "string" },
                        "rule": nullable("string"),
                        "permissions_used": strings,
                        "outcome": { "type": "string", "enum": ["allow", "deny", "dry_run_deny", "rate_limited"] },
                        "reason": nullable("string"),
                        "instance": { "type": "string" },
                        "action": { "type": ["string", "null"], "description": "Admin changes: account.create, account.grant, role.put, ..." },
                        "object": { "type": ["string", "null"], "description": "Admin changes: the account id (`<id> <role>` for grants) or the role name" },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "retryable"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                                "retryable": { "type": "boolean" },
                            },
                        },
                    },
                },
            },
        },
    })
}
