//! What the generated OpenAPI documents of the admin API and the vault share: the `Error`
//! schema of [`crate::ApiError`]'s body ([`ErrorBody`]), [`with_path_renamed`] for paths known
//! only at run time (a mount prefix, a configured callback path), and [`docs_page`], a
//! self-contained page (no external assets) that renders a document fetched from the server
//! itself. With the `testing` feature, [`testing`] validates real answers against a document.

use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue};
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The body of every error answer, `{"error": {"code", "message", "retryable", <context>}}`
/// ([`crate::error_body`]), as the schema `Error` of the documents.
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let string = |description: Option<&str>| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(description)
        };
        let inner = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("code", string(Some("Stable, machine-readable")))
            .required("code")
            .property("message", string(None))
            .required("message")
            .property("retryable", ObjectBuilder::new().schema_type(Type::Boolean))
            .required("retryable")
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
                string(Some("Context of the error (check, field, ...)")).build(),
            )))));
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("error", inner)
                .required("error")
                .build(),
        ))
    }
}

impl ToSchema for ErrorBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "Error".into()
    }
}

/// Moves the operations documented at `from` to `to` (a path the server learns only when it
/// starts). Nothing happens when `from` is not documented.
pub fn with_path_renamed(mut doc: OpenApi, from: &str, to: &str) -> OpenApi {
    if let Some(item) = doc.paths.paths.remove(from) {
        doc.paths.paths.insert(to.to_owned(), item);
    }
    doc
}

/// Prefixes every documented path with `prefix` (a mount point, e.g. `/admin`).
pub fn with_prefix(mut doc: OpenApi, prefix: &str) -> OpenApi {
    if !prefix.is_empty() {
        let paths = std::mem::take(&mut doc.paths.paths);
        doc.paths.paths = paths
            .into_iter()
            .map(|(path, item)| (format!("{prefix}{path}"), item))
            .collect();
    }
    doc
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

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_error_schema_follows_error_body() {
        let schema = serde_json::to_value(ErrorBody::schema()).expect("json");
        assert_eq!(schema["required"], serde_json::json!(["error"]));
        assert_eq!(
            schema["properties"]["error"]["required"],
            serde_json::json!(["code", "message", "retryable"])
        );
        assert_eq!(
            schema["properties"]["error"]["additionalProperties"]["type"],
            "string"
        );
    }

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
