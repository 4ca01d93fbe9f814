//! [`tw_core::Error`] as an HTTP response.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Map, Value};
use std::time::Duration;
use tw_core::{Error, ErrorKind};

/// An error on its way to an HTTP caller: the one error type of every server's HTTP edge.
///
/// The response is `{"error":{"code","message","retryable", <context>}}` with the status of the
/// error's kind (the kind alone fixes it: [`tw_core::ErrorKind::http_status`]),
/// `Cache-Control: no-store`, and `Retry-After` (whole seconds) when the error has a hint.
/// Messages and context are secret-free by construction of [`tw_core::Error`].
#[derive(Debug, Clone)]
pub struct ApiError {
    error: Error,
    // Boxed: rare, and it keeps `Result<_, ApiError>` small.
    challenge: Option<Box<HeaderValue>>,
}

impl ApiError {
    pub fn new(error: Error) -> Self {
        Self {
            error,
            challenge: None,
        }
    }

    /// Adds an RFC 6750 `WWW-Authenticate` challenge (e.g. `Bearer error="invalid_token"`).
    pub fn with_challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(Box::new(challenge));
        self
    }

    pub fn error(&self) -> &Error {
        &self.error
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::new(error)
    }
}

/// Response extension naming the error code, so middleware can count errors without parsing bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The JSON body for `error`, without the HTTP parts.
pub fn error_body(error: &Error) -> Value {
    let mut inner = Map::new();
    inner.insert("code".into(), error.code().into());
    inner.insert("message".into(), error.message().into());
    inner.insert("retryable".into(), error.is_retryable().into());
    for (key, value) in error.context() {
        // Context must not overwrite the fixed fields clients key on.
        inner.entry(*key).or_insert_with(|| value.clone().into());
    }
    let mut outer = Map::new();
    outer.insert("error".into(), Value::Object(inner));
    Value::Object(outer)
}

/// `Retry-After` of a 503 whose cause names no time.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `Retry-After` in whole seconds, rounded up so a client never comes back too early.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(error_body(&self.error))).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Every 503 tells the client when to come back (a second when the cause did not say).
        let retry_after = self
            .error
            .retry_after()
            .or((status == StatusCode::SERVICE_UNAVAILABLE).then_some(DEFAULT_RETRY_AFTER));
        if let Some(d) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(d)));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, *challenge);
        }
        response
            .extensions_mut()
            .insert(ErrorCode(self.error.code()));
        response
    }
}

/// JSON 404 for paths no route serves.
pub async fn not_found_fallback(uri: http::Uri) -> ApiError {
    Error::not_found("not_found", format!("no such endpoint: {}", uri.path())).into()
}

/// JSON 405 for a known path with the wrong method.
pub async fn method_not_allowed_fallback(method: http::Method, uri: http::Uri) -> ApiError {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> Value {
        let bytes = crate::body_bytes(response).await;
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn response_carries_status_code_context_and_retry_after() {
        let e = Error::new(
            ErrorKind::TokenUnavailable,
            "token_unavailable",
            "no token yet",
        )
        .with("profile", "smartem")
        .with("code", "must-not-override")
        .with_retry_after(Duration::from_millis(1500));
        let response = ApiError::from(e).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            response.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("token_unavailable"))
        );
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "token_unavailable");
        assert_eq!(body["error"]["message"], "no token yet");
        assert_eq!(body["error"]["profile"], "smartem");
        assert_eq!(body["error"]["retryable"], true);
    }

    #[tokio::test]
    async fn every_503_says_when_to_retry() {
        for kind in [
            ErrorKind::IdpUnavailable,
            ErrorKind::TokenUnavailable,
            ErrorKind::StorageUnavailable,
            ErrorKind::UpstreamCircuitOpen,
            ErrorKind::Overloaded,
        ] {
            let response = ApiError::from(Error::new(kind, "x", "down")).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], "1", "{kind:?}");
        }
        let response = ApiError::from(Error::bad_request("x", "no")).into_response();
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn challenge_and_status_override() {
        let response = ApiError::new(Error::new(
            ErrorKind::Unauthenticated,
            "invalid_token",
            "bad token",
        ))
        .with_challenge(HeaderValue::from_static("Bearer error=\"invalid_token\""))
        .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let response = method_not_allowed_fallback(http::Method::PUT, "/x".parse().expect("uri"))
            .await
            .into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            body_json(response).await["error"]["code"],
            "method_not_allowed"
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::from_millis(3001)), 4);
    }
}
