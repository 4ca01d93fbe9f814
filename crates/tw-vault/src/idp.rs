//! The vault's calls to its IdP, on `tw_idp` (the client, discovery, client authentication, the
//! token, introspection and revocation endpoints, answer classification) and
//! `tw_verify::Verifier` (id_token signatures through the IdP's JWKS).
//! Nothing here logs a request or response body: they carry tokens.

use crate::model::IdpClientSettings;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tw_core::{Error, ErrorKind, Secret, UnixTime};
use tw_idp::{
    Call, ClientAuthentication, ClientSecretBasic, ClientSecretPost, Discovery, DiscoveryCache,
    Grant as IdpGrant, IdpHttp, IssuerMatch, NoClientAuth, TokenResponse,
};
use tw_verify::{Verifier, VerifyOptions};
use url::Url;

/// Introspection answers are cut to these members (RFC 7662 and the usual Keycloak ones): what
/// else an IdP adds (e.g. Keycloak's session state, realm roles) is not the vault's to pass on.
pub const INTROSPECTION_FIELDS: &[&str] = &[
    "active",
    "scope",
    "client_id",
    "username",
    "preferred_username",
    "token_type",
    "typ",
    "exp",
    "iat",
    "nbf",
    "sub",
    "aud",
    "iss",
    "jti",
    "azp",
    "sid",
];

/// A token endpoint answer with the members beyond [`TokenResponse`] the vault uses.
pub(crate) struct Grant {
    pub(crate) token: TokenResponse,
    pub(crate) id_token: Option<Secret>,
    /// `refresh_expires_in` (Keycloak); `None` when absent or 0 (no expiry, e.g. offline tokens).
    pub(crate) refresh_expires_in: Option<Duration>,
    /// Keycloak's `session_state`.
    pub(crate) session_state: Option<String>,
}

#[derive(Deserialize, Default)]
struct ExtraMembers {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_expires_in: Option<Value>,
    #[serde(default)]
    session_state: Option<String>,
}

/// Who a grant is for, from a verified id_token or the IdP's introspection of the access token.
pub(crate) struct GrantIdentity {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) nonce: Option<String>,
    pub(crate) session_id: Option<String>,
}

pub(crate) struct IdpClient {
    http: IdpHttp,
    client_id: String,
    auth: Box<dyn ClientAuthentication>,
    timeout: Duration,
    clock: Arc<dyn tw_core::Clock>,
    discovered: DiscoveryCache,
    /// Built (and its keys loaded) at the first id_token to check: the refresh grant never
    /// needs it, so a mint never waits on the IdP's JWKS.
    id_tokens: OnceCell<Arc<Verifier>>,
}

impl IdpClient {
    pub(crate) fn new(
        settings: &IdpClientSettings,
        clock: Arc<dyn tw_core::Clock>,
    ) -> Result<Self, Error> {
        let client_id = settings.client_id.clone();
        if client_id.is_empty() {
            return Err(Error::config(
                tw_core::CONFIG_INVALID,
                "the vault's IdP client needs a client id",
            ));
        }
        // By the method named: a missing secret is an error, never a quiet switch to a public
        // client.
        let auth: Box<dyn ClientAuthentication> = match (
            settings.auth_method.as_str(),
            &settings.client_secret,
        ) {
            ("none", _) => Box::new(NoClientAuth { client_id }),
            ("client_secret_basic", Some(secret)) => Box::new(ClientSecretBasic {
                client_id,
                secret: secret.clone(),
            }),
            ("client_secret_post", Some(secret)) => Box::new(ClientSecretPost {
                client_id,
                secret: secret.clone(),
            }),
            ("client_secret_basic" | "client_secret_post", None) => {
                return Err(Error::config(
                    tw_core::CONFIG_INVALID,
                    format!(
                        "the vault's IdP client auth method `{}` needs a client secret",
                        settings.auth_method
                    ),
                ));
            }
            (other, _) => {
                return Err(Error::config(
                    tw_core::CONFIG_INVALID,
                    format!(
                        "the vault's IdP client auth method `{other}` is not supported (client_secret_basic, client_secret_post or none)"
                    ),
                ));
            }
        };
        if settings.request_timeout.is_zero() {
            return Err(Error::config(
                tw_core::CONFIG_INVALID,
                "the vault's IdP request timeout must be positive",
            ));
        }
        let http = IdpHttp::new()?;
        Ok(Self {
            discovered: DiscoveryCache::new(
                settings.issuer.as_str(),
                IssuerMatch::IgnoreTrailingSlash,
                Some(settings.request_timeout),
                http.clone(),
            )
            .requiring_token_endpoint(),
            http,
            client_id: settings.client_id.clone(),
            auth,
            timeout: settings.request_timeout,
            clock,
            id_tokens: OnceCell::new(),
        })
    }

    /// Discovery once (retried on the next call while it fails). Bounded by the request timeout;
    /// [`crate::Vault`] calls it before taking a refresh lease, so the lease never waits on it.
    pub(crate) async fn discovered(&self) -> Result<&Discovery, Error> {
        self.discovered.get(self.clock.now()).await
    }

    /// One call as the vault's client, dated now.
    fn call(&self) -> Call<'_> {
        Call {
            http: &self.http,
            auth: self.auth.as_ref(),
            timeout: Some(self.timeout),
            now: self.clock.now(),
        }
    }

    /// The id_token verifier for the issuer discovery names, its keys loaded (once).
    async fn id_tokens(&self) -> Result<&Arc<Verifier>, Error> {
        let doc = self.discovered().await?;
        self.id_tokens
            .get_or_try_init(|| async {
                let issuer = tw_verify::IssuerConfig {
                    jwks_url: doc.jwks_uri.clone(),
                    audiences: vec![self.client_id.clone()],
                    token_type: tw_verify::TokenTypeMode::Off,
                    ..tw_verify::IssuerConfig::new(doc.issuer.clone())
                };
                let settings = tw_verify::VerifierSettings::new("vault.idp", vec![issuer]);
                let verifier = Arc::new(Verifier::new(&settings, self.clock.clone())?);
                verifier.start().await;
                Ok(verifier)
            })
            .await
    }

    /// The authorization endpoint with `params` added.
    pub(crate) async fn authorization_url(&self, params: &[(&str, &str)]) -> Result<Url, Error> {
        let d = self.discovered().await?;
        let mut url = d
            .require(
                &d.authorization_endpoint,
                "authorization_endpoint",
                "the authorization code flow",
            )?
            .clone();
        url.query_pairs_mut().extend_pairs(params);
        Ok(url)
    }

    async fn token(&self, grant: IdpGrant) -> Result<Grant, Error> {
        let d = self.discovered().await?;
        let answer = self.call().token(d.token_endpoint()?, &grant, &[]).await?;
        // The body already parsed as a token response; members of the wrong type are ignored.
        let extra: ExtraMembers = serde_json::from_slice(&answer.body).unwrap_or_default();
        Ok(Grant {
            token: answer.token,
            id_token: extra.id_token.filter(|t| !t.is_empty()).map(Secret::new),
            refresh_expires_in: extra
                .refresh_expires_in
                .as_ref()
                .and_then(tw_idp::lifetime_from_json),
            session_state: extra.session_state.filter(|s| !s.is_empty()),
        })
    }

    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        verifier: &Secret,
        redirect_uri: &Url,
    ) -> Result<Grant, Error> {
        self.token(IdpGrant::AuthorizationCode {
            code: code.to_owned(),
            redirect_uri: redirect_uri.clone(),
            code_verifier: verifier.clone(),
        })
        .await
    }

    pub(crate) async fn refresh(&self, refresh_token: &Secret) -> Result<Grant, Error> {
        self.token(IdpGrant::RefreshToken(refresh_token.clone()))
            .await
    }

    /// RFC 7009. An unknown or already invalid token is a success (the RFC says so too).
    pub(crate) async fn revoke(&self, token: &Secret, hint: &str) -> Result<(), Error> {
        let d = self.discovered().await?;
        let url = d.require(
            &d.revocation_endpoint,
            "revocation_endpoint",
            "deleting entries",
        )?;
        self.call().revoke(url, token, hint).await
    }

    /// RFC 7662 with the vault's client. The answer is cut to [`INTROSPECTION_FIELDS`].
    pub(crate) async fn introspect(&self, token: &Secret) -> Result<Map<String, Value>, Error> {
        let d = self.discovered().await?;
        let url = d.require(
            &d.introspection_endpoint,
            "introspection_endpoint",
            "introspection",
        )?;
        let answer = self.call().introspect(url, token.expose(), None).await?;
        Ok(answer
            .into_iter()
            .filter(|(k, _)| INTROSPECTION_FIELDS.contains(&k.as_str()))
            .collect())
    }

    /// Who the grant is for: the id_token, verified (signature by the IdP's JWKS, issuer,
    /// audience = our client id, expiry), else the IdP's introspection of the access token.
    pub(crate) async fn identity(&self, grant: &Grant) -> Result<GrantIdentity, Error> {
        if let Some(id_token) = &grant.id_token {
            let verified = self
                .id_tokens()
                .await?
                .verify(id_token.expose(), VerifyOptions::default())
                .await
                .map_err(|e| {
                    let wrapped = if e.is_transient() {
                        Error::new(
                            ErrorKind::IdpUnavailable,
                            tw_idp::codes::IDP_UNAVAILABLE,
                            format!("cannot check the id_token now: {}", e.description()),
                        )
                    } else {
                        Error::new(
                            ErrorKind::IdpRejected,
                            crate::codes::IDP_ID_TOKEN_INVALID,
                            format!(
                                "the IdP's id_token failed verification: {}",
                                e.description()
                            ),
                        )
                    };
                    wrapped.with_source(e)
                })?;
            let subject = verified.subject.clone().ok_or_else(|| {
                Error::new(
                    ErrorKind::IdpRejected,
                    crate::codes::IDP_ID_TOKEN_INVALID,
                    "the IdP's id_token has no `sub`",
                )
            })?;
            let claim = |name: &str| {
                verified
                    .claims
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            return Ok(GrantIdentity {
                issuer: verified.issuer.clone(),
                subject,
                nonce: claim("nonce"),
                session_id: grant.session_state.clone().or_else(|| claim("sid")),
            });
        }
        let answer = self.introspect(&grant.token.access_token).await?;
        let active = answer.get("active").and_then(Value::as_bool) == Some(true);
        let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        match (active, text("sub")) {
            (true, Some(subject)) => Ok(GrantIdentity {
                issuer: self.discovered().await?.issuer.clone(),
                subject,
                nonce: None,
                session_id: grant.session_state.clone().or_else(|| text("sid")),
            }),
            _ => Err(Error::new(
                ErrorKind::IdpRejected,
                crate::codes::IDP_TOKEN_UNVERIFIABLE,
                "the IdP sent no id_token and its introspection does not vouch for the access token's subject",
            )),
        }
    }
}

/// `now + lifetime`.
pub(crate) fn expiry(now: UnixTime, lifetime: Option<Duration>) -> Option<UnixTime> {
    lifetime.map(|d| now.plus(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(auth_method: &str, secret: Option<&str>) -> IdpClientSettings {
        IdpClientSettings {
            issuer: Url::parse("https://idp.example/realms/r").unwrap(),
            client_id: "vault".into(),
            client_secret: secret.map(Secret::new),
            auth_method: auth_method.into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn build(auth_method: &str, secret: Option<&str>) -> Result<IdpClient, Error> {
        IdpClient::new(
            &settings(auth_method, secret),
            Arc::new(tw_core::ManualClock::new(UnixTime::from_secs(0))),
        )
    }

    #[test]
    fn the_auth_method_is_taken_as_named() {
        assert_eq!(
            build("client_secret_basic", Some("s"))
                .unwrap()
                .auth
                .method(),
            "client_secret_basic"
        );
        assert_eq!(
            build("client_secret_post", Some("s"))
                .unwrap()
                .auth
                .method(),
            "client_secret_post"
        );
        assert_eq!(build("none", None).unwrap().auth.method(), "none");
        // A secret-based method without its secret is refused, not turned into a public client.
        for method in ["client_secret_basic", "client_secret_post"] {
            let e = build(method, None).err().unwrap();
            assert_eq!(e.code(), tw_core::CONFIG_INVALID);
            assert!(e.message().contains("needs a client secret"), "{e}");
        }
        let e = build("private_key_jwt", None).err().unwrap();
        assert!(e.message().contains("not supported"), "{e}");
    }
}
