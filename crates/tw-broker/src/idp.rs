//! Talking to an OAuth2 token endpoint: discovery, client authentication, response classification.
//!
//! Classification decides everything downstream:
//! - permanent (`IdpRejected`): `invalid_client`, `invalid_grant`, `unauthorized_client`,
//!   `unsupported_grant_type`, `invalid_scope`, other 4xx, redirects. Retrying will not help.
//! - transient (`IdpUnavailable`): network errors, timeouts, 408, 429, 5xx, and a 200 whose body
//!   is not a usable token response. `Retry-After` is carried along.
//!
//! Nothing here logs a request or response body: bodies carry secrets.

use crate::assertion::{AssertionKey, client_assertion};
use base64::Engine;
use serde::Deserialize;
use std::time::Duration;
use tw_core::{Error, ErrorKind, Secret, UnixTime};
use url::Url;

/// A successful token response, normalised.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: String,
    /// `None` when the IdP sent no usable `expires_in`.
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
}

/// How the client proves who it is to the token endpoint.
pub enum ClientAuth {
    /// RFC 6749 §2.3.1 HTTP Basic (id and secret form-urlencoded first).
    Basic { client_id: String, secret: Secret },
    /// Credentials in the form body.
    Post { client_id: String, secret: Secret },
    /// RFC 7523 signed assertion.
    PrivateKeyJwt {
        client_id: String,
        key: AssertionKey,
    },
    /// Public client.
    None { client_id: String },
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::PrivateKeyJwt { client_id, .. }
            | ClientAuth::None { client_id } => client_id,
        }
    }
}

/// Builds the shared HTTP client for IdP calls: no redirects (a redirect from a token endpoint is
/// a misconfiguration, and following it could send credentials elsewhere), bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("tokenwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal("http_client_init", format!("cannot build HTTP client: {e}")))
}

/// The part of an OIDC discovery document we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub token_endpoint: Url,
    pub jwks_uri: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    pub authorization_endpoint: Option<Url>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
}

/// `{issuer}/.well-known/openid-configuration`, checking the document names the same issuer.
pub fn discovery_url(issuer: &Url) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.as_str().trim_end_matches('/')
    )
}

pub async fn discover(
    http: &reqwest::Client,
    issuer: &Url,
    timeout: Duration,
) -> Result<Discovery, Error> {
    let url = discovery_url(issuer);
    let resp = http
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(&e, "discovery").with("url", url.clone()))?;
    let status = resp.status();
    if !status.is_success() {
        let kind = if is_transient_status(status.as_u16()) {
            ErrorKind::IdpUnavailable
        } else {
            ErrorKind::IdpRejected
        };
        return Err(Error::new(
            kind,
            "idp_discovery_failed",
            format!("OIDC discovery at {url} answered HTTP {status}; check the issuer URL"),
        )
        .with("url", url));
    }
    let doc: Discovery = resp.json().await.map_err(|e| {
        Error::new(
            ErrorKind::IdpUnavailable,
            "idp_discovery_malformed",
            format!("OIDC discovery at {url} is not a valid discovery document: {e}"),
        )
    })?;
    if doc.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
        return Err(Error::new(
            ErrorKind::IdpRejected,
            "idp_issuer_mismatch",
            format!(
                "discovery document at {url} names issuer {} but {} was configured",
                doc.issuer, issuer
            ),
        ));
    }
    Ok(doc)
}

/// Sends one token request. `form` holds grant fields; client authentication is added here.
pub async fn token_request(
    http: &reqwest::Client,
    token_url: &Url,
    auth: &ClientAuth,
    form: Vec<(String, String)>,
    timeout: Duration,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    token_request_with_body(http, token_url, auth, form, timeout, now)
        .await
        .map(|(token, _)| token)
}

/// [`token_request`], also handing back the raw 200 body for fields beyond [`TokenResponse`]
/// (`id_token`, `refresh_expires_in`, `session_state`). The body holds secrets: never log it.
pub async fn token_request_with_body(
    http: &reqwest::Client,
    token_url: &Url,
    auth: &ClientAuth,
    form: Vec<(String, String)>,
    timeout: Duration,
    now: UnixTime,
) -> Result<(TokenResponse, Vec<u8>), Error> {
    let answer =
        post_authenticated(http, token_url, auth, form, timeout, now, "token endpoint").await?;
    let token = classify_token_response(answer.status, &answer.body, answer.retry_after)?;
    Ok((token, answer.body))
}

/// The raw answer of an IdP endpoint to a client-authenticated POST. The body may hold secrets:
/// never log it.
pub struct IdpAnswer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// POSTs `form` with the client's authentication to one of the IdP's endpoints (token,
/// introspection, revocation). Transport failures are classified; the status is the caller's to
/// judge. `what` names the endpoint in errors.
pub async fn post_authenticated(
    http: &reqwest::Client,
    endpoint: &Url,
    auth: &ClientAuth,
    mut form: Vec<(String, String)>,
    timeout: Duration,
    now: UnixTime,
    what: &str,
) -> Result<IdpAnswer, Error> {
    let req = authenticate(
        http.post(endpoint.clone()).timeout(timeout),
        &mut form,
        auth,
        endpoint,
        now,
    )?;
    let resp = req
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| transport_error(&e, what))?;
    let status = resp.status().as_u16();
    let retry_after = parse_retry_after(resp.headers(), now);
    let body = resp.bytes().await.map_err(|e| transport_error(&e, what))?;
    Ok(IdpAnswer {
        status,
        retry_after,
        body: body.to_vec(),
    })
}

/// Adds the client's authentication to a request to one of the IdP's endpoints (token,
/// introspection, revocation): a Basic header, or fields in `form`. `endpoint` is the assertion's
/// audience for `private_key_jwt`.
fn authenticate(
    mut req: reqwest::RequestBuilder,
    form: &mut Vec<(String, String)>,
    auth: &ClientAuth,
    endpoint: &Url,
    now: UnixTime,
) -> Result<reqwest::RequestBuilder, Error> {
    match auth {
        ClientAuth::Basic { client_id, secret } => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(client_id), enc(secret.expose()));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {b64}"));
        }
        ClientAuth::Post { client_id, secret } => {
            form.push(("client_id".into(), client_id.clone()));
            form.push(("client_secret".into(), secret.expose().to_owned()));
        }
        ClientAuth::PrivateKeyJwt { client_id, key } => {
            let assertion = client_assertion(client_id, endpoint.as_str(), key, now)?;
            form.push(("client_id".into(), client_id.clone()));
            form.push((
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion".into(), assertion.expose().to_owned()));
        }
        ClientAuth::None { client_id } => form.push(("client_id".into(), client_id.clone())),
    }
    Ok(req)
}

/// Context key of the OAuth `error` code of an IdP's refusal (RFC 6749 §5.2), capped.
pub const OAUTH_ERROR: &str = "oauth_error";
/// Context key of the IdP's `error_description`, capped and without control characters.
pub const OAUTH_ERROR_DESCRIPTION: &str = "oauth_error_description";
/// Longest `error` kept: real codes are short; anything longer is not one.
const MAX_OAUTH_ERROR_CHARS: usize = 64;
/// Longest `error_description` kept (in messages and context alike).
pub(crate) const MAX_OAUTH_DESCRIPTION_CHARS: usize = 200;

/// Turns a token endpoint answer into a token or a classified error. An OAuth error body's
/// `error` and `error_description` are also attached as context ([`OAUTH_ERROR`],
/// [`OAUTH_ERROR_DESCRIPTION`]) so callers need not parse the message. Both are the IdP's words,
/// capped; nothing of the request (secret, assertion, refresh token) is copied into them.
pub fn classify_token_response(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<TokenResponse, Error> {
    if status == 200 {
        return parse_token_body(body);
    }
    let oauth = serde_json::from_slice::<OAuthError>(body)
        .ok()
        .map(OAuthError::capped);
    let described = match &oauth {
        Some(e) => match &e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error.clone(),
        },
        None => "no OAuth error body".to_owned(),
    };
    let error = if is_transient_status(status) {
        let mut err = Error::new(
            ErrorKind::IdpUnavailable,
            "idp_unavailable",
            format!(
                "the IdP's token endpoint answered HTTP {status} ({described}); will retry with backoff"
            ),
        );
        if let Some(ra) = retry_after {
            err = err.with_retry_after(ra);
        }
        err
    } else {
        let (code, hint) = rejection_code(oauth.as_ref().map(|e| e.error.as_str()), status);
        Error::new(
            ErrorKind::IdpRejected,
            code,
            format!("{hint} (HTTP {status}, {described})"),
        )
    };
    Err(match oauth {
        Some(e) => e.attach_to(error),
        None => error,
    })
}

/// The stable code and a hint for a permanent refusal, by the OAuth `error` code.
fn rejection_code(oauth_error: Option<&str>, status: u16) -> (&'static str, &'static str) {
    match oauth_error {
        Some("invalid_client") => (
            "idp_invalid_client",
            "the IdP does not accept this client's credentials: check client_id, the secret or key, and auth_method",
        ),
        Some("unauthorized_client") => (
            "idp_unauthorized_client",
            "the client may not use this grant (is the service account enabled for it?)",
        ),
        Some("invalid_grant") => (
            "idp_invalid_grant",
            "the grant was refused (refresh token expired, revoked or already used?)",
        ),
        Some("unsupported_grant_type") => (
            "idp_unsupported_grant_type",
            "the IdP does not support this grant",
        ),
        Some("invalid_scope") => (
            "idp_invalid_scope",
            "a requested scope is unknown or not allowed for this client",
        ),
        Some("invalid_request") => ("idp_invalid_request", "the IdP found the request malformed"),
        Some(_) => ("idp_rejected", "the IdP refused the request"),
        None if (300..400).contains(&status) => (
            "idp_redirect",
            "the token endpoint redirected; the token URL is probably wrong (http vs https, realm path?)",
        ),
        None => ("idp_rejected", "the IdP refused the request"),
    }
}

/// An OAuth error body (RFC 6749 §5.2).
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl OAuthError {
    /// Capped to fit a log line, control characters (line breaks) dropped, empty description
    /// as none.
    fn capped(self) -> Self {
        Self {
            error: clean(&self.error, MAX_OAUTH_ERROR_CHARS),
            error_description: self
                .error_description
                .map(|d| clean(&d, MAX_OAUTH_DESCRIPTION_CHARS))
                .filter(|d| !d.is_empty()),
        }
    }

    fn attach_to(self, error: Error) -> Error {
        let error = error.with(OAUTH_ERROR, self.error);
        match self.error_description {
            Some(d) => error.with(OAUTH_ERROR_DESCRIPTION, d),
            None => error,
        }
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

fn parse_token_body(body: &[u8]) -> Result<TokenResponse, Error> {
    let malformed = |why: &str| {
        Error::new(
            ErrorKind::IdpUnavailable,
            "idp_malformed_response",
            format!("the token endpoint answered 200 but {why}; treating as a transient failure"),
        )
    };
    let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|e| {
        // serde's message names the problem's place, never the content of a string value.
        malformed(&format!(
            "the body is not a token response ({})",
            e.classify_name()
        ))
    })?;
    if raw.access_token.trim().is_empty() {
        return Err(malformed("access_token is empty"));
    }
    Ok(TokenResponse {
        access_token: Secret::new(raw.access_token),
        token_type: raw.token_type.unwrap_or_else(|| "Bearer".into()),
        expires_in: raw.expires_in.as_ref().and_then(lifetime_from_json),
        refresh_token: raw.refresh_token.filter(|s| !s.is_empty()).map(Secret::new),
        scope: raw.scope,
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// A positive lifetime in seconds from a JSON number or numeric string.
pub fn lifetime_from_json(v: &serde_json::Value) -> Option<Duration> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    (secs.is_finite() && secs > 0.0 && secs < 1e10).then(|| Duration::from_secs_f64(secs))
}

pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap, now: UnixTime) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(now.until(UnixTime::from_millis(i64::try_from(at_ms).ok()?)))
}

/// Network-level failure: never includes the request (it may hold credentials).
pub fn transport_error(e: &reqwest::Error, what: &str) -> Error {
    let (code, why) = if e.is_timeout() {
        ("idp_timeout", "timed out".to_owned())
    } else if e.is_connect() {
        (
            "idp_unreachable",
            format!("connection failed ({})", root_cause(e)),
        )
    } else {
        (
            "idp_unreachable",
            format!("request failed ({})", root_cause(e)),
        )
    };
    let url = e.url().map(|u| u.as_str().to_owned()).unwrap_or_default();
    Error::new(
        ErrorKind::IdpUnavailable,
        code,
        format!("cannot reach the IdP's {what} {url}: {why}"),
    )
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    truncate(&cur.to_string(), 200)
}

/// Text a remote party chose (an IdP's `error_description`, a login portal's message), fit for a
/// message or a log line: control characters and bidirectional marks dropped, trimmed, at most
/// `max` characters (then `…`).
pub(crate) fn clean(s: &str, max: usize) -> String {
    let printable: String = s
        .chars()
        .filter(|c| !tw_core::text::is_terminal_unsafe(*c))
        .collect();
    truncate(printable.trim(), max)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).chain("…".chars()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_not_retryable() {
        for (err, code) in [
            ("invalid_client", "idp_invalid_client"),
            ("invalid_grant", "idp_invalid_grant"),
            ("unauthorized_client", "idp_unauthorized_client"),
        ] {
            let body = format!(r#"{{"error":"{err}","error_description":"nope"}}"#);
            let e = classify_token_response(401, body.as_bytes(), None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::IdpRejected);
            assert_eq!(e.code(), code);
            assert!(!e.is_retryable());
            assert!(e.message().contains("nope"));
        }
    }

    #[test]
    fn oauth_error_and_description_are_context_capped_and_on_one_line() {
        let long = "x".repeat(5000);
        let body = format!(
            r#"{{"error":"invalid_client","error_description":"Invalid client\nsecret {long}"}}"#
        );
        let e = classify_token_response(401, body.as_bytes(), None).unwrap_err();
        assert_eq!(e.code(), "idp_invalid_client");
        assert_eq!(e.context_value(OAUTH_ERROR), Some("invalid_client"));
        let description = e.context_value(OAUTH_ERROR_DESCRIPTION).unwrap();
        assert!(
            description.starts_with("Invalid clientsecret xxx"),
            "{description}"
        );
        assert_eq!(description.chars().count(), MAX_OAUTH_DESCRIPTION_CHARS + 1);
        assert!(!e.message().contains('\n'));

        // Transient answers carry them too; no body, no context; no description, no key.
        let e = classify_token_response(503, br#"{"error":"temporarily_unavailable"}"#, None)
            .unwrap_err();
        assert_eq!(
            e.context_value(OAUTH_ERROR),
            Some("temporarily_unavailable")
        );
        assert_eq!(e.context_value(OAUTH_ERROR_DESCRIPTION), None);
        let e = classify_token_response(400, b"<html>no</html>", None).unwrap_err();
        assert!(e.context().is_empty());
        let e = classify_token_response(
            400,
            br#"{"error":"invalid_scope","error_description":""}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(e.code(), "idp_invalid_scope");
        assert_eq!(e.context_value(OAUTH_ERROR_DESCRIPTION), None);
    }

    #[test]
    fn transient_statuses_carry_retry_after() {
        for status in [408, 429, 500, 502, 503, 504] {
            let e = classify_token_response(status, b"", Some(Duration::from_secs(7))).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::IdpUnavailable, "{status}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
    }

    #[test]
    fn garbled_200_is_transient_and_secret_free() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{}",
            br#"{"access_token":""}"#,
            b"{\"access_token\":\"abc",
        ] {
            let e = classify_token_response(200, body, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::IdpUnavailable);
            assert_eq!(e.code(), "idp_malformed_response");
        }
        let e = classify_token_response(200, br#"{"access_token":12345}"#, None).unwrap_err();
        assert!(!e.message().contains("12345"));
    }

    #[test]
    fn expires_in_accepts_numbers_and_numeric_strings_only() {
        let ok = classify_token_response(200, br#"{"access_token":"t","expires_in":"300"}"#, None)
            .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(300)));
        let none =
            classify_token_response(200, br#"{"access_token":"t","expires_in":-5}"#, None).unwrap();
        assert_eq!(none.expires_in, None);
        let absent = classify_token_response(200, br#"{"access_token":"t"}"#, None).unwrap();
        assert_eq!(absent.expires_in, None);
        assert_eq!(absent.token_type, "Bearer");
    }

    #[test]
    fn redirect_is_a_config_problem() {
        let e = classify_token_response(302, b"", None).unwrap_err();
        assert_eq!(e.code(), "idp_redirect");
        assert!(!e.is_retryable());
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "12".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h, UnixTime::from_secs(0)),
            Some(Duration::from_secs(12))
        );
        h.insert(
            "retry-after",
            "Thu, 01 Jan 1970 00:01:40 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after(&h, UnixTime::from_secs(40)),
            Some(Duration::from_secs(60))
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h, UnixTime::from_secs(0)), None);
    }
}
