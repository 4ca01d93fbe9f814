//! OIDC discovery (`{issuer}/.well-known/openid-configuration`): one fetch, and one cache that
//! every component holds per issuer.

use crate::codes;
use crate::http::IdpHttp;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::OnceCell;
use tw_core::{Error, ErrorKind, UnixTime};
use url::Url;

/// The part of an OIDC discovery document tokenwarden uses. A member tokenwarden does not
/// depend on never makes the document unusable: an optional endpoint that is absent, `null`,
/// not an absolute URL or not http(s) reads as absent (a caller that needs it gets a clear
/// "missing endpoint" error), and a list that is `null` or mistyped reads as empty. The token
/// endpoint, `jwks_uri` and the introspection endpoint, which receive credentials or decide what
/// is trusted, must be http(s) when present, or the document is refused.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    #[serde(default, deserialize_with = "lenient_url")]
    pub token_endpoint: Option<Url>,
    #[serde(default, deserialize_with = "lenient_url")]
    pub jwks_uri: Option<Url>,
    #[serde(default, deserialize_with = "lenient_url")]
    pub introspection_endpoint: Option<Url>,
    #[serde(default, deserialize_with = "lenient_http_url")]
    pub revocation_endpoint: Option<Url>,
    #[serde(default, deserialize_with = "lenient_http_url")]
    pub authorization_endpoint: Option<Url>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub grant_types_supported: Vec<String>,
}

/// An absolute URL, or absent for anything else (`null`, a relative or empty string, another
/// type). The scheme is checked after parsing ([`fetch`]).
fn lenient_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_str().and_then(|s| Url::parse(s).ok()))
}

/// As [`lenient_url`], and absent unless http(s).
fn lenient_http_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    Ok(lenient_url(d)?.filter(|u| matches!(u.scheme(), "http" | "https")))
}

/// The strings of a list; empty for `null` or another type.
fn lenient_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

impl Discovery {
    /// The token endpoint, which a client cannot do without: its absence makes the document
    /// unusable ([`codes::IDP_DISCOVERY_MALFORMED`], transient like any garbled answer).
    pub fn token_endpoint(&self) -> Result<&Url, Error> {
        self.token_endpoint.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::IdpUnavailable,
                codes::IDP_DISCOVERY_MALFORMED,
                format!(
                    "the discovery document of {} is not a valid discovery document: it has no token_endpoint",
                    self.issuer
                ),
            )
        })
    }

    /// An optional endpoint this call needs: its absence is a configuration problem at the IdP.
    pub fn require<'a>(
        &self,
        endpoint: &'a Option<Url>,
        member: &str,
        needed_for: &str,
    ) -> Result<&'a Url, Error> {
        endpoint
            .as_ref()
            .ok_or_else(|| missing_endpoint(member, needed_for))
    }

    fn endpoints(&self) -> [(&'static str, Option<&Url>); 5] {
        [
            ("token_endpoint", self.token_endpoint.as_ref()),
            ("jwks_uri", self.jwks_uri.as_ref()),
            (
                "introspection_endpoint",
                self.introspection_endpoint.as_ref(),
            ),
            ("revocation_endpoint", self.revocation_endpoint.as_ref()),
            (
                "authorization_endpoint",
                self.authorization_endpoint.as_ref(),
            ),
        ]
    }
}

/// The error of a discovery document without an endpoint a call needs.
pub fn missing_endpoint(member: &str, needed_for: &str) -> Error {
    Error::config(
        codes::IDP_ENDPOINT_MISSING,
        format!("the IdP's discovery document has no `{member}`, needed for {needed_for}"),
    )
}

/// How the document's `issuer` must match the configured one (OpenID Connect Discovery 1.0
/// §4.3 asks for equality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerMatch {
    /// Byte for byte: the verifier's rule, since tokens' `iss` is compared so.
    Exact,
    /// Equal once trailing slashes are taken off: a client's rule.
    IgnoreTrailingSlash,
}

impl IssuerMatch {
    /// Whether the document's issuer `found` is the `configured` one by this rule.
    pub fn matches(self, configured: &str, found: &str) -> bool {
        match self {
            IssuerMatch::Exact => configured == found,
            IssuerMatch::IgnoreTrailingSlash => {
                configured.trim_end_matches('/') == found.trim_end_matches('/')
            }
        }
    }
}

/// `{issuer}/.well-known/openid-configuration`; an error when the issuer is not a URL (no
/// discovery is possible then).
pub fn discovery_url(issuer: &str) -> Result<Url, Error> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    Url::parse(&url).map_err(|e| {
        Error::config(
            codes::IDP_DISCOVERY_MALFORMED,
            "the issuer is not a URL: no discovery is possible",
        )
        .with_source(e)
    })
}

/// A discovery document and the `Date` its answer carried (`doctor` compares clocks by it).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub doc: Discovery,
    pub date: Option<UnixTime>,
}

/// Fetches and checks the discovery document: status 200, a JSON document of the right shape,
/// every endpoint an http(s) URL, the same issuer. Failures: the transport's
/// ([`codes::IDP_UNREACHABLE`], [`codes::IDP_TIMEOUT`]), [`codes::IDP_DISCOVERY_FAILED`] (with the
/// status), [`codes::IDP_ANSWER_TOO_LARGE`], [`codes::IDP_DISCOVERY_MALFORMED`] (the
/// `serde_json::Error` as the cause: `doctor` tells "not JSON" from "not a discovery document"
/// by its category), [`codes::IDP_ISSUER_MISMATCH`].
pub async fn fetch(
    http: &IdpHttp,
    issuer: &str,
    rule: IssuerMatch,
    timeout: Option<Duration>,
    now: UnixTime,
) -> Result<Fetched, Error> {
    let fetched = fetch_unchecked(http, issuer, timeout, now).await?;
    if !rule.matches(issuer, &fetched.doc.issuer) {
        return Err(Error::new(
            ErrorKind::IdpRejected,
            codes::IDP_ISSUER_MISMATCH,
            format!(
                "discovery document at {} names issuer {} but {issuer} was configured",
                discovery_url(issuer)?,
                crate::classify::clean(&fetched.doc.issuer, 200)
            ),
        ));
    }
    Ok(fetched)
}

/// [`fetch`] without the issuer check, for a caller that explains a mismatch itself (`doctor`
/// shows both values); compare with [`IssuerMatch::matches`].
pub async fn fetch_unchecked(
    http: &IdpHttp,
    issuer: &str,
    timeout: Option<Duration>,
    now: UnixTime,
) -> Result<Fetched, Error> {
    let url = discovery_url(issuer)?;
    let mut req = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let answer = http
        .send(req, "the IdP's discovery endpoint", now)
        .await
        .map_err(|e| e.with("url", url.to_string()))?;
    if answer.status != 200 {
        let status = answer.status;
        let kind = if crate::classify::is_transient_status(status) {
            ErrorKind::IdpUnavailable
        } else {
            ErrorKind::IdpRejected
        };
        return Err(Error::new(
            kind,
            codes::IDP_DISCOVERY_FAILED,
            format!("OIDC discovery at {url} answered HTTP {status}; check the issuer URL"),
        )
        .with_upstream_status(status)
        .with("url", url.to_string()));
    }
    let malformed = |e: serde_json::Error, what: &str| {
        Error::new(
            ErrorKind::IdpUnavailable,
            codes::IDP_DISCOVERY_MALFORMED,
            format!(
                "OIDC discovery at {url} is not a valid discovery document ({})",
                what
            ),
        )
        .with_source(e)
    };
    let json: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| malformed(e, "not JSON"))?;
    let doc: Discovery =
        serde_json::from_value(json).map_err(|e| malformed(e, "missing or mistyped members"))?;
    if let Some((member, _)) = doc
        .endpoints()
        .into_iter()
        .find(|(_, u)| u.is_some_and(|u| !matches!(u.scheme(), "http" | "https")))
    {
        return Err(Error::new(
            ErrorKind::IdpUnavailable,
            codes::IDP_DISCOVERY_MALFORMED,
            format!("OIDC discovery at {url}: `{member}` is not an http(s) URL"),
        ));
    }
    Ok(Fetched {
        doc,
        date: answer.date(),
    })
}

/// One issuer's discovery document, fetched once successfully and shared by every caller:
/// concurrent callers share one request; a failure is not remembered (the next call retries).
#[derive(Debug)]
pub struct DiscoveryCache {
    issuer: String,
    rule: IssuerMatch,
    timeout: Option<Duration>,
    http: IdpHttp,
    /// A document without a token endpoint is not kept (a client's cache).
    needs_token_endpoint: bool,
    cell: OnceCell<Discovery>,
}

impl DiscoveryCache {
    /// `timeout` bounds each attempt (`None`: the client's own timeout).
    pub fn new(
        issuer: impl Into<String>,
        rule: IssuerMatch,
        timeout: Option<Duration>,
        http: IdpHttp,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            rule,
            timeout,
            http,
            needs_token_endpoint: false,
            cell: OnceCell::new(),
        }
    }

    /// For a client: a document without `token_endpoint` is an error and is not kept, so the
    /// next call fetches again.
    pub fn requiring_token_endpoint(mut self) -> Self {
        self.needs_token_endpoint = true;
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The document, fetching it the first time (and after failures); `now` dates the attempt.
    pub async fn get(&self, now: UnixTime) -> Result<&Discovery, Error> {
        self.cell
            .get_or_try_init(|| async {
                let fetched = fetch(&self.http, &self.issuer, self.rule, self.timeout, now).await;
                if let Err(e) = &fetched {
                    tracing::warn!(issuer = %self.issuer, error = %e, "OIDC discovery failed");
                }
                let doc = fetched?.doc;
                if self.needs_token_endpoint {
                    doc.token_endpoint()?;
                }
                Ok(doc)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_tokenwarden_does_not_need_never_spoil_the_document() {
        let doc: Discovery = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example/realms/r",
            "jwks_uri": "https://idp.example/realms/r/certs",
            "token_endpoint": "https://idp.example/realms/r/token",
            "grant_types_supported": null,
            "token_endpoint_auth_methods_supported": "client_secret_basic",
            "revocation_endpoint": "",
            "authorization_endpoint": "urn:example:login",
            "introspection_endpoint": 42,
        }))
        .expect("a usable document");
        assert_eq!(
            doc.jwks_uri.as_ref().map(Url::as_str),
            Some("https://idp.example/realms/r/certs")
        );
        assert!(doc.token_endpoint().is_ok());
        assert!(doc.grant_types_supported.is_empty());
        assert!(doc.token_endpoint_auth_methods_supported.is_empty());
        assert!(doc.revocation_endpoint.is_none());
        assert!(doc.authorization_endpoint.is_none());
        assert!(doc.introspection_endpoint.is_none());
    }

    #[test]
    fn a_credential_endpoint_keeps_its_scheme_for_the_check() {
        let doc: Discovery = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example/realms/r",
            "token_endpoint": "file:///etc/passwd",
        }))
        .expect("parsed");
        let (member, url) = doc
            .endpoints()
            .into_iter()
            .find(|(_, u)| u.is_some_and(|u| !matches!(u.scheme(), "http" | "https")))
            .expect("the check finds it");
        assert_eq!(member, "token_endpoint");
        assert_eq!(url.map(Url::scheme), Some("file"));
    }
}
