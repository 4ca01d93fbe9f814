//! What every hand-written OpenAPI document and its docs page share: small builders for the
//! document's repetitive parts, and [`docs_page`], a self-contained page (no external assets)
//! that renders a document fetched from the server itself.

use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue};
use serde_json::{Value, json};

/// `{"$ref": "#/components/schemas/<name>"}`.
pub fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON body (request or response) of this schema.
pub fn json_body(schema: Value) -> Value {
    json!({ "content": { "application/json": { "schema": schema } } })
}

/// A response with a JSON body.
pub fn response(description: &str, schema: Value) -> Value {
    let mut r = json_body(schema);
    r["description"] = description.into();
    r
}

/// An error response (the `Error` schema: [`crate::ApiError`]'s body).
pub fn error_response(description: &str) -> Value {
    response(description, schema_ref("Error"))
}

/// A bearer-authenticated operation: `responses` plus the `refusals` (status, description) every
/// operation of the API can answer, and a required JSON request body when `body` is given.
pub fn bearer_operation(
    summary: &str,
    id: &str,
    params: Vec<Value>,
    body: Option<Value>,
    mut responses: Value,
    refusals: &[(&str, &str)],
) -> Value {
    for (status, description) in refusals {
        responses[*status] = error_response(description);
    }
    let mut o = json!({
        "summary": summary,
        "operationId": id,
        "parameters": params,
        "responses": responses,
        "security": [{ "bearer": [] }],
    });
    if let Some(b) = body {
        let mut b = json_body(b);
        b["required"] = true.into();
        o["requestBody"] = b;
    }
    o
}

/// The `Error` schema every [`crate::ApiError`] body follows.
pub fn error_schema() -> Value {
    json!({
        "type": "object", "required": ["error"],
        "properties": { "error": {
            "type": "object", "required": ["code", "message", "retryable"],
            "properties": {
                "code": { "type": "string", "description": "Stable, machine-readable" },
                "message": { "type": "string" },
                "retryable": { "type": "boolean" }
            },
            "additionalProperties": { "type": "string" }
        }}
    })
}

/// A required string path parameter.
pub fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
}

/// An optional query parameter.
pub fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": schema })
}

/// The browsable docs: one self-contained page that renders the OpenAPI document at
/// `openapi_url` (a path on the same server). Served with a strict Content-Security-Policy.
pub fn docs_page(openapi_url: &str) -> Response {
    // A JSON string literal inside a script: `<` escaped so it cannot close the script element.
    let url = Value::from(openapi_url).to_string().replace('<', "\\u003c");
    let page = include_str!("docs.html").replace("\"{{OPENAPI_URL}}\"", &url);
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn docs_page_embeds_the_url_safely() {
        let r = docs_page("/x/openapi.json</script>");
        assert!(
            r.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .contains("default-src 'none'")
        );
        let body = r.into_body().collect().await.expect("body").to_bytes();
        let html = String::from_utf8_lossy(&body);
        assert!(html.contains("const url = \"/x/openapi.json\\u003c/script>\";"));
        assert!(!html.contains("{{OPENAPI_URL}}"));
    }
}
