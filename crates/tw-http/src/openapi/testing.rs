//! For tests: real answers checked against the OpenAPI document a server serves.
//!
//! [`Schemas::check`] finds the schema documented for an operation's answer (method, path
//! template, status; `application/json`) and validates the body with the `jsonschema` crate
//! (draft 2020-12, the dialect of OpenAPI 3.1). The document's `components` travel with the
//! schema, so every `$ref` (`#/components/schemas/...`, nested ones included) resolves inside the
//! document; a `$ref` to anything else is an error. [`Schemas::checked`] tells which answers a
//! test has validated, so it can assert that every documented operation was reached.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;
use tw_core::Invalid;

/// A served OpenAPI document, and the answers checked against it so far.
pub struct Schemas {
    doc: Value,
    checked: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Schemas {
    pub fn new(doc: Value) -> Self {
        Self {
            doc,
            checked: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every documented operation: (method in lower case, path template).
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        if let Some(paths) = self.doc["paths"].as_object() {
            for (path, item) in paths {
                for method in ["get", "put", "post", "delete", "patch"] {
                    if item.get(method).is_some() {
                        out.insert((method.to_owned(), path.clone()));
                    }
                }
            }
        }
        out
    }

    /// The statuses documented for an operation.
    pub fn statuses(&self, method: &str, path: &str) -> BTreeSet<u16> {
        self.doc["paths"][path][method.to_ascii_lowercase()]["responses"]
            .as_object()
            .map(|r| r.keys().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Validates `body`, the answer of `method` `path` (the documented template, e.g.
    /// `/v1/entries/{id}`) with `status`, against the documented schema. `body` is `None` for an
    /// answer without a body: then the document must not give the answer a JSON schema.
    /// Fails when the operation or the status is not documented.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), Invalid> {
        let method = method.to_ascii_lowercase();
        let operation = &self.doc["paths"][path][&method];
        if !operation.is_object() {
            return Err(format!("{method} {path} is not documented").into());
        }
        let response = &operation["responses"][status.to_string()];
        if !response.is_object() {
            return Err(format!("{method} {path}: status {status} is not documented").into());
        }
        let schema = &response["content"]["application/json"]["schema"];
        match (body, schema.is_object()) {
            (None, false) => {}
            (None, true) => {
                return Err(format!(
                    "{method} {path} {status}: documented with a JSON body, answered without one"
                )
                .into());
            }
            (Some(_), false) => {
                return Err(format!(
                    "{method} {path} {status}: answered with a JSON body the document does not describe"
                ).into());
            }
            (Some(body), true) => validate(schema, &self.doc["components"], body)
                .map_err(|e| format!("{method} {path} {status}: {e}"))?,
        }
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((method, path.to_owned(), status));
        Ok(())
    }

    /// The answers validated so far: (method, path template, status).
    pub fn checked(&self) -> BTreeSet<(String, String, u16)> {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Validates `instance` against `schema`, whose `$ref`s point into `components`.
pub fn validate(schema: &Value, components: &Value, instance: &Value) -> Result<(), Invalid> {
    let root = json!({ "allOf": [schema], "components": components });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        // Documented formats (`uuid`, `uri`, `date-time`) are part of the contract.
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| format!("the documented schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the body does not follow the documented schema: {}; body: {instance}",
            errors.join("; ")
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/things/{id}": { "get": { "responses": {
                    "200": { "description": "ok", "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/List" } } } },
                    "204": { "description": "none" },
                } } }
            },
            "components": { "schemas": {
                "List": { "type": "object", "required": ["items"], "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Thing" } } } },
                "Thing": { "type": "object", "required": ["id", "enabled"], "properties": {
                    "id": { "type": "string" },
                    "enabled": { "type": "boolean" },
                    "note": { "type": ["string", "null"] } } },
            } }
        })
    }

    #[test]
    fn nested_refs_are_followed_and_wrong_bodies_fail() {
        let s = Schemas::new(doc());
        let good = json!({ "items": [{ "id": "a", "enabled": true, "note": null }] });
        assert_eq!(s.check("GET", "/things/{id}", 200, Some(&good)), Ok(()));
        // Wrong only two $refs deep.
        let wrong = json!({ "items": [{ "id": "a", "enabled": "yes" }] });
        let e = s
            .check("GET", "/things/{id}", 200, Some(&wrong))
            .expect_err("wrong type");
        assert!(e.message().contains("/items/0/enabled"), "{e}");
        let missing = json!({ "items": [{ "enabled": true }] });
        assert!(s.check("GET", "/things/{id}", 200, Some(&missing)).is_err());
        assert!(s.check("GET", "/things/{id}", 200, None).is_err());
        assert_eq!(s.check("GET", "/things/{id}", 204, None), Ok(()));
        assert!(s.check("GET", "/things/{id}", 204, Some(&good)).is_err());
        assert!(s.check("GET", "/things/{id}", 404, Some(&good)).is_err());
        assert!(s.check("PUT", "/things/{id}", 200, Some(&good)).is_err());
        assert_eq!(
            s.checked(),
            BTreeSet::from([
                ("get".to_owned(), "/things/{id}".to_owned(), 200),
                ("get".to_owned(), "/things/{id}".to_owned(), 204),
            ])
        );
    }

    #[test]
    fn documented_formats_are_checked() {
        let schema = json!({ "type": "object", "properties": {
            "id": { "type": "string", "format": "uuid" },
            "at": { "type": "string", "format": "uri" },
        }});
        let none = json!({});
        let good =
            json!({ "id": "ee9e9ad6-9d1c-4c6b-8f5e-2f1b8f0f3a11", "at": "https://a.example/x" });
        assert_eq!(validate(&schema, &none, &good), Ok(()));
        assert!(validate(&schema, &none, &json!({ "id": "not-a-uuid" })).is_err());
        assert!(validate(&schema, &none, &json!({ "at": "no scheme" })).is_err());
    }

    #[test]
    fn an_unresolvable_ref_is_an_error() {
        let schema = json!({ "$ref": "#/components/schemas/Missing" });
        assert!(validate(&schema, &json!({ "schemas": {} }), &json!({})).is_err());
    }
}
