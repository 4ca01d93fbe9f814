//! The one reading of request bodies: [`JsonBody`] (a JSON body of a type) and [`RawBody`] (the
//! bytes, for a body that may be empty), both answering with tw-http's JSON errors instead of
//! axum's plain-text rejections.
//!
//! An error names where the body went wrong (line and column, or the member's path) but never
//! echoes a value from it: bodies hold tokens and secrets.

use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use http::StatusCode;
use serde::de::DeserializeOwned;
use tw_core::{Error, ErrorKind};

/// The body limit a router was given by [`limit_body`], so the 413 can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BodyLimit(usize);

/// Caps request bodies at `max` bytes for every route of `router` (413 `body_too_large` from
/// [`JsonBody`] and [`RawBody`], naming the limit).
pub fn limit_body<S: Clone + Send + Sync + 'static>(router: Router<S>, max: usize) -> Router<S> {
    router
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::Extension(BodyLimit(max)))
}

/// The request body's bytes; too large: 413 `body_too_large`; unreadable: 400 `invalid_body`.
#[derive(Debug, Clone)]
pub struct RawBody(pub Bytes);

impl RawBody {
    /// Whether the body holds nothing but whitespace (an absent optional body).
    pub fn is_blank(&self) -> bool {
        self.0.iter().all(u8::is_ascii_whitespace)
    }
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| unreadable(&r, limit))
    }
}

/// A JSON body of type `T` (400 `invalid_json` when it is not one; see the module docs).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn unreadable(rejection: &BytesRejection, limit: Option<BodyLimit>) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let message = match limit {
            Some(BodyLimit(n)) => format!("the body is larger than {n} bytes"),
            None => "the body is larger than this server accepts".to_owned(),
        };
        Error::new(ErrorKind::PayloadTooLarge, "body_too_large", message).into()
    } else {
        Error::bad_request("invalid_body", "the request body could not be read").into()
    }
}

/// Parses a JSON body: 400 `invalid_json` naming the line and column of a syntax error, or the
/// path of the member that is missing, unknown or of the wrong type; never a value of the body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // Only the first member of the path is named, and only when the type knows it: member
        // names below it (map keys) and unknown ones come from the body.
        let member = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let inner = e.into_inner();
        let unknown = inner.to_string().starts_with("unknown field");
        let what = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                )
            }
            _ if unknown => {
                "the body has a member this endpoint does not know (see the OpenAPI document)"
                    .to_owned()
            }
            _ => match member {
                Some(m) => {
                    format!("`{m}` is missing or of the wrong type (see the OpenAPI document)")
                }
                None => "the body does not have the expected members (see the OpenAPI document)"
                    .to_owned(),
            },
        };
        Error::bad_request("invalid_json", what).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        token: String,
        n: Option<u32>,
        #[serde(default)]
        attrs: std::collections::BTreeMap<String, String>,
    }

    fn message(e: ApiError) -> String {
        e.error().message().to_owned()
    }

    #[test]
    fn errors_never_echo_the_body() {
        for (body, says) in [
            (
                &br#"{"token": "s3cret-value", "n": "s3cret-value"}"#[..],
                "`n`",
            ),
            (
                br#"{"token": "s3cret-value", "s3cret-value": 1}"#,
                "does not know",
            ),
            (
                br#"{"token": "s3cret-value", "m": {"s3cret-value": 1}}"#,
                "does not know",
            ),
            (
                br#"{"token": "t", "attrs": {"s3cret-value": 1}}"#,
                "`attrs`",
            ),
            (br#"{"n": 1}"#, "expected members"),
            (br#"{"token": "s3cret-value"#, "not valid JSON"),
            (br#"s3cret-value"#, "not valid JSON"),
        ] {
            let e = parse_json::<Body>(body).expect_err("refused");
            assert_eq!(e.error().code(), "invalid_json");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            let m = message(e);
            assert!(m.contains(says), "{m}");
            assert!(!m.contains("s3cret"), "{m}");
        }
        assert!(parse_json::<Body>(br#"{"token": "t"}"#).is_ok());
    }

    #[tokio::test]
    async fn too_large_bodies_are_json_413_naming_the_limit() {
        let router = limit_body(
            Router::new().route(
                "/",
                post(|JsonBody(b): JsonBody<Body>| async move { b.token }),
            ),
            16,
        );
        let response = router
            .oneshot(
                Request::post("/")
                    .body(axum::body::Body::from(vec![b' '; 64]))
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let bytes = crate::body_bytes(response).await;
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["error"]["code"], "body_too_large");
        assert_eq!(v["error"]["message"], "the body is larger than 16 bytes");
    }
}
