//! Where tokens come from: an OAuth2 token endpoint or a custom (non-OAuth) login endpoint.

use crate::assertion::AssertionKey;
use crate::idp::{self, ClientAuth, TokenResponse};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::time::Duration;
use tw_config::{AuthMethod, CustomLoginConfig, GrantType, ProfileConfig, SecretRef, SigningAlg};
use tw_core::{Error, ErrorKind, Secret, UnixTime};
use url::Url;

/// One way of obtaining a token. `fetch` is called by at most one task at a time per profile.
pub trait TokenSource: Send + Sync + 'static {
    fn fetch(&self, now: UnixTime) -> BoxFuture<'_, Result<TokenResponse, Error>>;
    /// Short, secret-free description for logs and diagnostics.
    fn describe(&self) -> String;
}

/// Builds the source for a validated profile configuration.
pub fn from_config(
    name: &str,
    cfg: &ProfileConfig,
    http: reqwest::Client,
) -> Result<Box<dyn TokenSource>, Error> {
    let timeout = cfg.timing.request_timeout;
    if let Some(custom) = &cfg.custom {
        return Ok(Box::new(CustomLoginSource {
            profile: name.to_owned(),
            http,
            cfg: custom.clone(),
            timeout,
        }));
    }
    let endpoint = match (&cfg.token_url, &cfg.issuer) {
        (Some(url), _) => Endpoint::Fixed(url.clone()),
        (None, Some(issuer)) => Endpoint::Discover {
            issuer: issuer.clone(),
            cached: Mutex::new(None),
        },
        (None, None) => {
            return Err(Error::config(
                "config_invalid",
                format!("profile `{name}` needs `issuer` or `token_url`"),
            ));
        }
    };
    let mut params = Vec::new();
    for (k, v) in [
        ("scope", &cfg.scope),
        ("audience", &cfg.audience),
        ("resource", &cfg.resource),
    ] {
        if let Some(v) = v {
            params.push((k.to_owned(), v.clone()));
        }
    }
    params.extend(cfg.extra_params.iter().map(|(k, v)| (k.clone(), v.clone())));
    let refresh = (cfg.grant == GrantType::RefreshToken).then(|| RefreshState::load(cfg));
    Ok(Box::new(OAuthSource {
        profile: name.to_owned(),
        http,
        endpoint,
        client_id: cfg.client_id.clone().unwrap_or_default(),
        auth_method: cfg.auth_method,
        client_secret: cfg.client_secret.clone(),
        private_key: cfg.private_key.clone(),
        signing_alg: cfg.signing_alg,
        key_id: cfg.key_id.clone(),
        refresh,
        params,
        timeout,
    }))
}

enum Endpoint {
    Fixed(Url),
    Discover {
        issuer: Url,
        cached: Mutex<Option<Url>>,
    },
}

/// The refresh token in use; rotated tokens replace it (and are persisted when configured)
/// before the access token that came with them is handed out.
struct RefreshState {
    initial: Option<SecretRef>,
    current: Mutex<Option<Secret>>,
    state_file: Option<PathBuf>,
}

impl RefreshState {
    fn load(cfg: &ProfileConfig) -> Self {
        let persisted = cfg
            .refresh_token_state_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        Self {
            initial: cfg.refresh_token.clone(),
            current: Mutex::new(persisted),
            state_file: cfg.refresh_token_state_file.clone(),
        }
    }

    fn current(&self, profile: &str) -> Result<Secret, Error> {
        if let Some(t) = self.current.lock().clone() {
            return Ok(t);
        }
        let key = format!("profiles.{profile}.refresh_token");
        let initial = self.initial.as_ref().ok_or_else(|| {
            Error::config(
                "secret_unavailable",
                format!("`{key}` is not set and no persisted refresh token exists"),
            )
        })?;
        let t = initial.resolve(&key)?;
        *self.current.lock() = Some(t.clone());
        Ok(t)
    }

    /// Keeps a rotated refresh token: memory first (so the next refresh uses it even if the disk
    /// fails), then the state file.
    fn rotate(&self, profile: &str, new: Secret) {
        *self.current.lock() = Some(new.clone());
        if let Some(path) = &self.state_file {
            match tw_core::fsutil::atomic_write(path, new.expose().as_bytes(), 0o600) {
                Ok(()) => tracing::debug!(profile, "rotated refresh token persisted"),
                Err(e) => tracing::error!(
                    profile,
                    file = %path.display(),
                    error = %e,
                    "could not persist the rotated refresh token; it is kept in memory, but a restart would reuse a spent token"
                ),
            }
        }
    }
}

struct OAuthSource {
    profile: String,
    http: reqwest::Client,
    endpoint: Endpoint,
    client_id: String,
    auth_method: AuthMethod,
    client_secret: Option<SecretRef>,
    private_key: Option<SecretRef>,
    signing_alg: SigningAlg,
    key_id: Option<String>,
    refresh: Option<RefreshState>,
    params: Vec<(String, String)>,
    timeout: Duration,
}

impl OAuthSource {
    async fn token_url(&self) -> Result<Url, Error> {
        match &self.endpoint {
            Endpoint::Fixed(u) => Ok(u.clone()),
            Endpoint::Discover { issuer, cached } => {
                if let Some(u) = cached.lock().clone() {
                    return Ok(u);
                }
                let doc = idp::discover(&self.http, issuer, self.timeout).await?;
                *cached.lock() = Some(doc.token_endpoint.clone());
                Ok(doc.token_endpoint)
            }
        }
    }

    /// Secrets are read at each use, so a rotated secret file is picked up without a restart.
    fn client_auth(&self) -> Result<ClientAuth, Error> {
        let client_id = self.client_id.clone();
        let key = |field: &str| format!("profiles.{}.{field}", self.profile);
        let secret = |r: &Option<SecretRef>, field: &str| -> Result<Secret, Error> {
            r.as_ref()
                .ok_or_else(|| {
                    Error::config("config_invalid", format!("`{}` is required", key(field)))
                })?
                .resolve(&key(field))
        };
        Ok(match self.auth_method {
            AuthMethod::ClientSecretBasic => ClientAuth::Basic {
                client_id,
                secret: secret(&self.client_secret, "client_secret")?,
            },
            AuthMethod::ClientSecretPost => ClientAuth::Post {
                client_id,
                secret: secret(&self.client_secret, "client_secret")?,
            },
            AuthMethod::PrivateKeyJwt => {
                let pem = secret(&self.private_key, "private_key")?;
                let key = AssertionKey::from_pem(
                    &pem,
                    self.signing_alg,
                    self.key_id.clone(),
                    &key("private_key"),
                )?;
                ClientAuth::PrivateKeyJwt { client_id, key }
            }
            AuthMethod::None => ClientAuth::None { client_id },
        })
    }

    async fn fetch_inner(&self, now: UnixTime) -> Result<TokenResponse, Error> {
        let token_url = self.token_url().await?;
        let auth = self.client_auth()?;
        let mut form: Vec<(String, String)> = Vec::with_capacity(self.params.len() + 2);
        match &self.refresh {
            None => form.push(("grant_type".into(), "client_credentials".into())),
            Some(state) => {
                form.push(("grant_type".into(), "refresh_token".into()));
                form.push((
                    "refresh_token".into(),
                    state.current(&self.profile)?.expose().to_owned(),
                ));
            }
        }
        form.extend(self.params.iter().cloned());
        let resp =
            idp::token_request(&self.http, &token_url, &auth, form, self.timeout, now).await?;
        if let (Some(state), Some(rotated)) = (&self.refresh, &resp.refresh_token) {
            state.rotate(&self.profile, rotated.clone());
        }
        Ok(resp)
    }
}

impl TokenSource for OAuthSource {
    fn fetch(&self, now: UnixTime) -> BoxFuture<'_, Result<TokenResponse, Error>> {
        Box::pin(self.fetch_inner(now))
    }

    fn describe(&self) -> String {
        let grant = if self.refresh.is_some() {
            "refresh_token"
        } else {
            "client_credentials"
        };
        let at = match &self.endpoint {
            Endpoint::Fixed(u) => u.to_string(),
            Endpoint::Discover { issuer, .. } => format!("issuer {issuer}"),
        };
        format!("{grant} grant for client `{}` at {at}", self.client_id)
    }
}

/// A login endpoint that is not OAuth: POST JSON credentials, read the token (and maybe its
/// lifetime) from the JSON answer by JSON pointer.
struct CustomLoginSource {
    profile: String,
    http: reqwest::Client,
    cfg: CustomLoginConfig,
    timeout: Duration,
}

impl CustomLoginSource {
    async fn fetch_inner(&self) -> Result<TokenResponse, Error> {
        let mut body = serde_json::Map::new();
        for (k, v) in &self.cfg.fields {
            body.insert(k.clone(), v.clone());
        }
        for (k, r) in &self.cfg.secret_fields {
            let key = format!("profiles.{}.custom.secret_fields.{k}", self.profile);
            body.insert(
                k.clone(),
                serde_json::Value::String(r.resolve(&key)?.expose().to_owned()),
            );
        }
        let mut req = self
            .http
            .post(self.cfg.url.clone())
            .timeout(self.timeout)
            .json(&body);
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| idp::transport_error(&e, "custom login endpoint"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| idp::transport_error(&e, "custom login endpoint"))?;
        if !(200..300).contains(&status) {
            let (kind, code) = if idp::is_transient_status(status) {
                (ErrorKind::IdpUnavailable, "custom_login_unavailable")
            } else {
                (ErrorKind::IdpRejected, "custom_login_rejected")
            };
            return Err(Error::new(
                kind,
                code,
                format!("the login endpoint {} answered HTTP {status}", self.cfg.url),
            ));
        }
        let malformed = |why: String| {
            Error::new(
                ErrorKind::IdpUnavailable,
                "custom_login_malformed",
                format!(
                    "the login endpoint {} answered {status} but {why}",
                    self.cfg.url
                ),
            )
        };
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| malformed("the body is not JSON".into()))?;
        let token = json
            .pointer(&self.cfg.token_pointer)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                malformed(format!("no non-empty string at {}", self.cfg.token_pointer))
            })?;
        let expires_in = self
            .cfg
            .expires_in_pointer
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(idp::lifetime_from_json);
        Ok(TokenResponse {
            access_token: Secret::new(token),
            token_type: self.cfg.token_type.clone(),
            expires_in,
            refresh_token: None,
            scope: None,
        })
    }
}

impl TokenSource for CustomLoginSource {
    fn fetch(&self, _now: UnixTime) -> BoxFuture<'_, Result<TokenResponse, Error>> {
        Box::pin(self.fetch_inner())
    }

    fn describe(&self) -> String {
        format!("custom login at {}", self.cfg.url)
    }
}
