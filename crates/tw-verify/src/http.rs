//! Outbound HTTP to the IdP: discovery, JWKS, introspection. Redirects off, timeouts, size cap.

use serde_json::Value;
use std::time::Duration;
use tw_core::Error;
use url::Url;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest IdP answer read (discovery, JWKS, introspection).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub(crate) fn client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("tokenwarden-verify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal("http_client_init", format!("cannot build HTTP client: {e}")))
}

/// Why a fetch failed; all are transient from the verifier's point of view. The texts never
/// contain bodies.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("answer larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("answer is not a JSON object")]
    NotJson,
    #[error("{0}")]
    Invalid(&'static str),
}

impl FetchError {
    /// Label for metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            FetchError::Transport(_) => "network",
            FetchError::Timeout => "timeout",
            FetchError::Status(s) if *s >= 500 => "http_5xx",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge => "too_large",
            FetchError::NotJson => "garbled",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

fn transport(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        // Without the URL: it is ours anyway, and keeps the message short.
        FetchError::Transport(e.without_url().to_string())
    }
}

/// Reads a JSON object answer, at most [`MAX_RESPONSE_BYTES`], requiring status 200.
pub(crate) async fn read_json(resp: reqwest::Response) -> Result<Value, FetchError> {
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let body = read_capped(resp).await?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(FetchError::NotJson),
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    if resp
        .content_length()
        .is_some_and(|l| l > MAX_RESPONSE_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) async fn get_json(http: &reqwest::Client, url: &Url) -> Result<Value, FetchError> {
    let resp = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    read_json(resp).await
}

/// What discovery tells us.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovered {
    pub jwks_uri: Option<Url>,
    pub introspection_endpoint: Option<Url>,
}

pub(crate) fn discovery_url(issuer: &str) -> Result<Url, FetchError> {
    Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
    .map_err(|_| FetchError::Invalid("the issuer is not a URL"))
}

pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<Discovered, FetchError> {
    let doc = get_json(http, &discovery_url(issuer)?).await?;
    // OpenID Connect Discovery 1.0 section 4.3: the document must name the same issuer.
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(FetchError::Invalid(
            "the discovery document names another issuer",
        ));
    }
    let url_field = |name: &str| -> Result<Option<Url>, FetchError> {
        match doc.get(name).and_then(Value::as_str) {
            None => Ok(None),
            Some(s) => match Url::parse(s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(u)),
                _ => Err(FetchError::Invalid(
                    "the discovery document has an endpoint that is not an http(s) URL",
                )),
            },
        }
    };
    Ok(Discovered {
        jwks_uri: url_field("jwks_uri")?,
        introspection_endpoint: url_field("introspection_endpoint")?,
    })
}

/// RFC 7662 introspection with `client_secret_basic` (RFC 6749 2.3.1: both halves form-encoded).
pub(crate) async fn introspect(
    http: &reqwest::Client,
    url: &Url,
    client_id: &str,
    secret: &tw_core::Secret,
    token: &str,
) -> Result<Value, FetchError> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let resp = http
        .post(url.clone())
        .basic_auth(enc(client_id), Some(enc(secret.expose())))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .map_err(transport)?;
    read_json(resp).await
}
