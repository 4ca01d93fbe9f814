//! The one HTTP client factory for IdP calls, the bounded reading of every answer, and the
//! classification of network failures.
//!
//! Every client built here: follows no redirect (a redirect from an IdP endpoint is a
//! misconfiguration, and following it could send credentials elsewhere), has a connect timeout,
//! trusts the platform's roots plus any extra CA certificates given, presents a client identity
//! when one is given (the slot mTLS client authentication will use), and reads at most
//! [`HttpSettings::max_answer_bytes`] of any answer: a longer one is refused
//! ([`codes::IDP_ANSWER_TOO_LARGE`]) as soon as its `Content-Length` or its bytes pass the cap,
//! never buffered whole.
//!
//! Network failures become [`tw_core::Error`]s with their [`NetworkClass`] as a typed fact and the
//! reqwest error (without its URL) as the cause. Nothing here logs or echoes a body.

use crate::codes;
use std::time::Duration;
use tw_core::{Error, ErrorKind, NetworkClass, UnixTime};
use url::Url;

/// Connect timeout of every client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default cap on any answer read from an IdP (discovery, JWKS, token, introspection, ...).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How to build an [`IdpHttp`]. [`HttpSettings::default`] is what the components use.
#[derive(Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// A whole-request timeout for every call that names none of its own.
    pub request_timeout: Option<Duration>,
    /// The largest answer body read.
    pub max_answer_bytes: usize,
    pub user_agent: String,
    /// CA certificates trusted besides the platform's roots.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// The client certificate and key presented in TLS handshakes (mTLS), if any.
    pub identity: Option<reqwest::Identity>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: None,
            max_answer_bytes: MAX_ANSWER_BYTES,
            user_agent: concat!("tokenwarden/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_roots: Vec::new(),
            identity: None,
        }
    }
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("user_agent", &self.user_agent)
            .field("extra_roots", &self.extra_roots.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl HttpSettings {
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }
    pub fn with_max_answer_bytes(mut self, max: usize) -> Self {
        self.max_answer_bytes = max;
        self
    }
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }
    /// Trusts the CA certificates of a PEM bundle besides the platform's roots.
    pub fn with_extra_roots_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            Error::config(
                codes::TLS_MATERIAL_INVALID,
                "the extra CA certificates are not a PEM bundle",
            )
            .with_source(e.without_url())
        })?;
        self.extra_roots.extend(certs);
        Ok(self)
    }
    /// Presents this client certificate (PEM: certificate chain and private key) in TLS.
    pub fn with_identity_pem(mut self, pem: &tw_core::Secret) -> Result<Self, Error> {
        let identity = reqwest::Identity::from_pem(pem.expose().as_bytes()).map_err(|e| {
            Error::config(
                codes::TLS_MATERIAL_INVALID,
                "the client identity is not a PEM certificate with its private key",
            )
            .with_source(e.without_url())
        })?;
        self.identity = Some(identity);
        Ok(self)
    }

    pub fn build(&self) -> Result<IdpHttp, Error> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone());
        if let Some(t) = self.request_timeout {
            b = b.timeout(t);
        }
        if !self.extra_roots.is_empty() {
            b = b.tls_certs_merge(self.extra_roots.iter().cloned());
        }
        if let Some(identity) = &self.identity {
            b = b.identity(identity.clone());
        }
        let client = b.build().map_err(|e| {
            Error::internal(codes::HTTP_CLIENT_INIT, "cannot build the HTTP client")
                .with_source(e.without_url())
        })?;
        Ok(IdpHttp {
            client,
            max_answer_bytes: self.max_answer_bytes,
        })
    }
}

/// What to do with an answer longer than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it: [`codes::IDP_ANSWER_TOO_LARGE`] (every IdP endpoint).
    Refuse,
    /// Keep its first bytes (`doctor`'s probes, which only look for a phrase).
    KeepPrefix,
}

/// An HTTP client for IdP calls, from [`HttpSettings::build`]. Cheap to clone (one pool).
#[derive(Debug, Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
    max_answer_bytes: usize,
}

/// An answer, its body read within the cap. The body may hold secrets: never log it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// `Retry-After`, as a delay from the `now` the request was sent at.
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
    /// The body was longer than the cap and `body` is its beginning ([`Overflow::KeepPrefix`]).
    pub truncated: bool,
}

impl Answer {
    /// The answer's `Date` header, if it is a valid HTTP date.
    pub fn date(&self) -> Option<UnixTime> {
        let v = self.headers.get(reqwest::header::DATE)?.to_str().ok()?;
        let at = httpdate::parse_http_date(v).ok()?;
        let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        Some(UnixTime::from_millis(i64::try_from(ms).ok()?))
    }

    /// A header's value as text.
    pub fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

impl IdpHttp {
    /// A client with [`HttpSettings::default`].
    pub fn new() -> Result<Self, Error> {
        HttpSettings::default().build()
    }

    pub fn max_answer_bytes(&self) -> usize {
        self.max_answer_bytes
    }

    /// A request to build; send it with [`IdpHttp::send`].
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    pub fn get(&self, url: Url) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: Url) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Sends `req` and reads the answer within the cap (refusing a longer one). `what` names the
    /// target in errors ("the IdP's token endpoint"); `now` dates `Retry-After`.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        now: UnixTime,
    ) -> Result<Answer, Error> {
        self.send_with(req, what, now, Overflow::Refuse).await
    }

    /// [`IdpHttp::send`] with a choice for answers over the cap.
    pub async fn send_with(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        now: UnixTime,
        overflow: Overflow,
    ) -> Result<Answer, Error> {
        let mut resp = req.send().await.map_err(|e| transport_error(e, what))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let retry_after = crate::classify::parse_retry_after(&headers, now);
        let limit = self.max_answer_bytes;
        let too_large = || {
            Error::new(
                ErrorKind::IdpUnavailable,
                codes::IDP_ANSWER_TOO_LARGE,
                format!("{what} sent an answer larger than {limit} bytes; it was not read"),
            )
            .with_upstream_status(status)
        };
        if overflow == Overflow::Refuse && resp.content_length().is_some_and(|l| l > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(e, what))? {
            if body.len() + chunk.len() > limit {
                match overflow {
                    Overflow::Refuse => return Err(too_large()),
                    Overflow::KeepPrefix => {
                        body.extend_from_slice(&chunk[..limit - body.len()]);
                        truncated = true;
                        break;
                    }
                }
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            retry_after,
            body,
            truncated,
        })
    }
}

/// A network-level failure (no usable answer): never includes the request (it may hold
/// credentials). The class is a typed fact; the reqwest error, without its URL, is the cause.
pub fn transport_error(e: reqwest::Error, what: &str) -> Error {
    let url = e.url().map(shown_url).unwrap_or_default();
    // reqwest's own text names the URL; everything below is said without it.
    let e = e.without_url();
    let class = network_class(&e);
    let (code, why) = if e.is_timeout() {
        (codes::IDP_TIMEOUT, "timed out".to_owned())
    } else if e.is_connect() {
        (
            codes::IDP_UNREACHABLE,
            format!("connection failed ({})", root_cause_of(&e)),
        )
    } else {
        (
            codes::IDP_UNREACHABLE,
            format!("request failed ({})", root_cause_of(&e)),
        )
    };
    Error::new(
        ErrorKind::IdpUnavailable,
        code,
        format!("cannot reach {what} {url}: {why}"),
    )
    .with_network(class)
    .with_source(e)
}

/// A URL as messages may show it: scheme, host, port and path; never userinfo, query or
/// fragment, which may carry credentials.
pub fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Classifies a reqwest error by walking its sources (hyper, std::io, rustls): typed where the
/// causes are typed (timeouts, `std::io` kinds), else by the words of the lower layers' errors.
pub fn network_class(e: &reqwest::Error) -> NetworkClass {
    if e.is_timeout() {
        return NetworkClass::Timeout;
    }
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return NetworkClass::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return NetworkClass::Timeout,
                _ => {}
            }
        }
        text.push_str(&err.to_string());
        text.push('\n');
        cur = err.source();
    }
    network_class_of_text(&text)
}

/// Classifies the text of a lower layer's error (hyper, the resolver, rustls), which carries no
/// type to tell DNS from TLS.
pub fn network_class_of_text(text: &str) -> NetworkClass {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["connection refused"]) {
        NetworkClass::ConnectionRefused
    } else if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no such host",
        "nodename nor servname",
        "name resolution",
    ]) {
        NetworkClass::Dns
    } else if has(&[
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
        "unknownissuer",
        "peer misbehaved",
    ]) {
        NetworkClass::Tls
    } else if has(&["timed out", "timeout"]) {
        NetworkClass::Timeout
    } else if has(&[
        "connection reset",
        "connection closed",
        "broken pipe",
        "incomplete message",
    ]) {
        NetworkClass::Reset
    } else {
        NetworkClass::Other
    }
}

fn root_cause_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    crate::classify::truncate(&cur.to_string(), 200)
}

/// The innermost cause of an error's chain, at most 200 characters, for a detail line: the
/// lower layer's own words (reqwest errors here never carry a URL, a body or a header).
pub fn root_cause(e: &Error) -> String {
    match std::error::Error::source(e) {
        Some(s) => root_cause_of(s),
        None => crate::classify::truncate(e.message(), 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_real_failures_are_classified() {
        for (text, want) in [
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                NetworkClass::ConnectionRefused,
            ),
            (
                "client error (Connect): dns error: failed to lookup address information: Name or service not known",
                NetworkClass::Dns,
            ),
            (
                "client error (Connect): received corrupt message of type InvalidContentType",
                NetworkClass::Tls,
            ),
            ("invalid peer certificate: UnknownIssuer", NetworkClass::Tls),
            ("operation timed out", NetworkClass::Timeout),
            (
                "connection closed before message completed",
                NetworkClass::Reset,
            ),
            ("something else", NetworkClass::Other),
        ] {
            assert_eq!(network_class_of_text(text), want, "{text}");
        }
    }
}
