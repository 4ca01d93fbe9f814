//! The client-authenticated endpoints: token (RFC 6749 §3.2, with any [`Grant`]), introspection
//! (RFC 7662) and revocation (RFC 7009). Every answer is read within the client's cap and
//! classified by [`crate::classify`].

use crate::auth::{ClientAuthentication, Form};
use crate::classify::{self, malformed};
use crate::http::IdpHttp;
use serde_json::{Map, Value};
use std::time::Duration;
use tw_core::{Error, Secret, UnixTime};
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

/// The grant of a token request: its `grant_type` and the fields that go with it. New grants
/// (token exchange, ...) are new variants here; the endpoint code does not change.
pub enum Grant {
    ClientCredentials,
    RefreshToken(Secret),
    AuthorizationCode {
        code: String,
        redirect_uri: Url,
        code_verifier: Secret,
    },
}

impl Grant {
    /// The `grant_type` value.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }

    fn form(&self) -> Form {
        let mut form = vec![("grant_type".to_owned(), self.grant_type().to_owned())];
        match self {
            Grant::ClientCredentials => {}
            Grant::RefreshToken(t) => form.push(("refresh_token".into(), t.expose().to_owned())),
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                form.push(("code".into(), code.clone()));
                form.push(("redirect_uri".into(), redirect_uri.to_string()));
                form.push(("code_verifier".into(), code_verifier.expose().to_owned()));
            }
        }
        form
    }
}

/// A token endpoint's answer: the token and the raw 200 body for members beyond
/// [`TokenResponse`] (`id_token`, `refresh_expires_in`, `session_state`). The body holds
/// secrets: never log it.
pub struct TokenAnswer {
    pub token: TokenResponse,
    pub body: Vec<u8>,
}

/// One call to an IdP endpoint on behalf of a client: where, as whom, and how long to wait.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub http: &'a IdpHttp,
    pub auth: &'a dyn ClientAuthentication,
    pub timeout: Option<Duration>,
    pub now: UnixTime,
}

impl Call<'_> {
    /// POSTs `form` with the client's authentication; transport failures classified, the status
    /// the caller's to judge. `what` names the endpoint in errors.
    async fn post(
        &self,
        endpoint: &Url,
        mut form: Form,
        what: &str,
    ) -> Result<crate::http::Answer, Error> {
        let mut req = self.http.post(endpoint.clone());
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let req = self.auth.apply(req, &mut form, endpoint, self.now)?;
        let req = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        self.http
            .send(req, &format!("the IdP's {what}"), self.now)
            .await
    }

    /// A token request with `grant`, plus `params` (scope, audience, resource, ...).
    pub async fn token(
        &self,
        endpoint: &Url,
        grant: &Grant,
        params: &[(String, String)],
    ) -> Result<TokenAnswer, Error> {
        let mut form = grant.form();
        form.extend(params.iter().cloned());
        let answer = self.post(endpoint, form, "token endpoint").await?;
        let token =
            classify::classify_token_response(answer.status, &answer.body, answer.retry_after)?;
        Ok(TokenAnswer {
            token,
            body: answer.body,
        })
    }

    /// RFC 7662: the answer as a JSON object with a boolean `active`. A non-200 is classified
    /// like a token endpoint's refusal ([`classify::refusal`]); a 200 without that shape is
    /// [`crate::codes::IDP_MALFORMED_RESPONSE`].
    pub async fn introspect(
        &self,
        endpoint: &Url,
        token: &str,
        hint: Option<&str>,
    ) -> Result<Map<String, Value>, Error> {
        let mut form = vec![("token".to_owned(), token.to_owned())];
        if let Some(h) = hint {
            form.push(("token_type_hint".into(), h.to_owned()));
        }
        let answer = self.post(endpoint, form, "introspection endpoint").await?;
        if answer.status != 200 {
            return Err(classify::refusal(
                answer.status,
                &answer.body,
                answer.retry_after,
                "introspection endpoint",
            )
            .with("endpoint", "introspection"));
        }
        let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(&answer.body) else {
            return Err(malformed(
                "the introspection endpoint answered 200 without a JSON object",
            ));
        };
        if !matches!(doc.get("active"), Some(Value::Bool(_))) {
            return Err(malformed(
                "the introspection answer has no boolean `active`",
            ));
        }
        Ok(doc)
    }

    /// RFC 7009. A 200 is a success, an unknown or already invalid token included (the RFC
    /// says so); anything else is classified like a token endpoint's refusal.
    pub async fn revoke(&self, endpoint: &Url, token: &Secret, hint: &str) -> Result<(), Error> {
        let form = vec![
            ("token".to_owned(), token.expose().to_owned()),
            ("token_type_hint".to_owned(), hint.to_owned()),
        ];
        let answer = self.post(endpoint, form, "revocation endpoint").await?;
        if answer.status == 200 {
            return Ok(());
        }
        Err(classify::refusal(
            answer.status,
            &answer.body,
            answer.retry_after,
            "revocation endpoint",
        )
        .with("endpoint", "revocation"))
    }
}

/// Fetches a JSON document (a JWKS) with no client authentication: status 200 and a JSON
/// object, else [`crate::codes::IDP_HTTP_STATUS`] or [`crate::codes::IDP_MALFORMED_RESPONSE`]
/// (all transient).
pub async fn get_json(
    http: &IdpHttp,
    url: &Url,
    timeout: Option<Duration>,
    what: &str,
    now: UnixTime,
) -> Result<Map<String, Value>, Error> {
    let mut req = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let answer = http.send(req, &format!("the IdP's {what}"), now).await?;
    if answer.status != 200 {
        return Err(tw_core::Error::new(
            tw_core::ErrorKind::IdpUnavailable,
            crate::codes::IDP_HTTP_STATUS,
            format!("the IdP's {what} answered HTTP {}", answer.status),
        )
        .with_upstream_status(answer.status));
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(doc)) => Ok(doc),
        _ => Err(malformed(format!("the IdP's {what} is not a JSON object"))),
    }
}

/// The IdP's JWKS document (`jwks_uri`), as a JSON object; [`get_json`]'s rules.
pub async fn fetch_jwks(
    http: &IdpHttp,
    url: &Url,
    timeout: Option<Duration>,
    now: UnixTime,
) -> Result<Map<String, Value>, Error> {
    get_json(http, url, timeout, "JWKS", now).await
}
