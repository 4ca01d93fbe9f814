//! Where tokens come from: an OAuth2 token endpoint or a custom (non-OAuth) login endpoint.

use crate::settings::{CustomLoginConfig, GrantType, ProfileConfig};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::time::Duration;
use tw_core::SecretRef;
use tw_core::{Error, ErrorKind, Secret, UnixTime};
use tw_idp::classify::{MAX_OAUTH_DESCRIPTION_CHARS, clean};
use tw_idp::{
    AssertionKey, Call, ClientAuthentication, ClientSecretBasic, ClientSecretPost, DiscoveryCache,
    Grant, IdpHttp, IssuerMatch, NoClientAuth, PrivateKeyJwt, TokenResponse, codes,
};
use tw_idp::{AuthMethod, SigningAlg};
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
    http: IdpHttp,
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
        (None, Some(issuer)) => Endpoint::Discover(Box::new(
            DiscoveryCache::new(
                issuer.as_str(),
                IssuerMatch::IgnoreTrailingSlash,
                Some(timeout),
                http.clone(),
            )
            .requiring_token_endpoint(),
        )),
        (None, None) => {
            return Err(Error::config(
                tw_core::CONFIG_INVALID,
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
    Discover(Box<DiscoveryCache>),
}

/// The `private_key_jwt` signing key of a profile: `pem` with the profile's `signing_alg` and
/// `key_id`. `key_name` names the config key in errors.
pub fn assertion_key(
    cfg: &ProfileConfig,
    pem: &Secret,
    key_name: &str,
) -> Result<AssertionKey, Error> {
    key_for(cfg.signing_alg, cfg.key_id.clone(), pem, key_name)
}

fn key_for(
    alg: SigningAlg,
    kid: Option<String>,
    pem: &Secret,
    key_name: &str,
) -> Result<AssertionKey, Error> {
    let alg = match alg {
        SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        SigningAlg::PS256 => jsonwebtoken::Algorithm::PS256,
        SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
    };
    AssertionKey::from_pem(pem, alg, kid, key_name)
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
                tw_core::secret_ref::SECRET_UNAVAILABLE,
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
    http: IdpHttp,
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
    async fn token_url(&self, now: UnixTime) -> Result<Url, Error> {
        match &self.endpoint {
            Endpoint::Fixed(u) => Ok(u.clone()),
            Endpoint::Discover(cache) => Ok(cache.get(now).await?.token_endpoint()?.clone()),
        }
    }

    /// Secrets are read at each use, so a rotated secret file is picked up without a restart.
    fn client_auth(&self) -> Result<Box<dyn ClientAuthentication>, Error> {
        let client_id = self.client_id.clone();
        let key = |field: &str| format!("profiles.{}.{field}", self.profile);
        let secret = |r: &Option<SecretRef>, field: &str| -> Result<Secret, Error> {
            r.as_ref()
                .ok_or_else(|| {
                    Error::config(
                        tw_core::CONFIG_INVALID,
                        format!("`{}` is required", key(field)),
                    )
                })?
                .resolve(&key(field))
        };
        Ok(match self.auth_method {
            AuthMethod::ClientSecretBasic => Box::new(ClientSecretBasic {
                client_id,
                secret: secret(&self.client_secret, "client_secret")?,
            }),
            AuthMethod::ClientSecretPost => Box::new(ClientSecretPost {
                client_id,
                secret: secret(&self.client_secret, "client_secret")?,
            }),
            AuthMethod::PrivateKeyJwt => {
                let pem = secret(&self.private_key, "private_key")?;
                let key = key_for(
                    self.signing_alg,
                    self.key_id.clone(),
                    &pem,
                    &key("private_key"),
                )?;
                Box::new(PrivateKeyJwt { client_id, key })
            }
            AuthMethod::None => Box::new(NoClientAuth { client_id }),
        })
    }

    async fn fetch_inner(&self, now: UnixTime) -> Result<TokenResponse, Error> {
        let token_url = self.token_url(now).await?;
        let auth = self.client_auth()?;
        let grant = match &self.refresh {
            None => Grant::ClientCredentials,
            Some(state) => Grant::RefreshToken(state.current(&self.profile)?),
        };
        let call = Call {
            http: &self.http,
            auth: auth.as_ref(),
            timeout: Some(self.timeout),
            now,
        };
        let resp = call.token(&token_url, &grant, &self.params).await?.token;
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
            Endpoint::Discover(cache) => format!("issuer {}", cache.issuer()),
        };
        format!("{grant} grant for client `{}` at {at}", self.client_id)
    }
}

/// The ways a custom login fails, each with the one stable code the API answers and `doctor`
/// reports (network failures keep the shared `idp_unreachable` / `idp_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomLoginFailure {
    /// A 4xx or 3xx status, or a 2xx error answer the profile declares (`error_pointer`):
    /// permanent, so the retry gates pause as for any IdP rejection.
    Rejected,
    /// A 2xx answer that holds no usable token, or one whose expiry has already passed:
    /// transient.
    Malformed,
    /// 408, 429 or 5xx: transient.
    Unavailable,
}

impl CustomLoginFailure {
    pub const ALL: [CustomLoginFailure; 3] = [
        CustomLoginFailure::Rejected,
        CustomLoginFailure::Malformed,
        CustomLoginFailure::Unavailable,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            CustomLoginFailure::Rejected => "custom_login_rejected",
            CustomLoginFailure::Malformed => "custom_login_malformed",
            CustomLoginFailure::Unavailable => "custom_login_unavailable",
        }
    }

    pub const fn kind(self) -> ErrorKind {
        match self {
            CustomLoginFailure::Rejected => ErrorKind::IdpRejected,
            CustomLoginFailure::Malformed | CustomLoginFailure::Unavailable => {
                ErrorKind::IdpUnavailable
            }
        }
    }

    /// The failure an error stands for, when it came from a custom login.
    pub fn of(e: &Error) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == e.code())
    }

    fn error(self, message: String) -> Error {
        Error::new(self.kind(), self.code(), message)
    }
}

/// Context key of the portal's own explanation of a refused login (`error_message_pointer`),
/// cleaned and capped.
pub const CUSTOM_LOGIN_MESSAGE: &str = "custom_login_message";
/// Epoch values at or above this cannot be seconds (year 5138) and are read as milliseconds.
const EPOCH_MILLIS_FROM: f64 = 1e11;

/// A login endpoint that is not OAuth: POST JSON credentials, read the token (and maybe its
/// lifetime) from the JSON answer by JSON pointer.
struct CustomLoginSource {
    profile: String,
    http: IdpHttp,
    cfg: CustomLoginConfig,
    timeout: Duration,
}

impl CustomLoginSource {
    async fn fetch_inner(&self, now: UnixTime) -> Result<TokenResponse, Error> {
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
        let answer = match self
            .http
            .send(req, "the IdP's custom login endpoint", now)
            .await
        {
            Ok(a) => a,
            // Too large to read: not a usable answer, whatever its status.
            Err(e) if e.code() == codes::IDP_ANSWER_TOO_LARGE => {
                let message = format!(
                    "the login endpoint {} answered with a body larger than {} bytes",
                    self.cfg.url,
                    self.http.max_answer_bytes()
                );
                return Err(CustomLoginFailure::Malformed
                    .error(message)
                    .with_shared_source(std::sync::Arc::new(e)));
            }
            Err(e) => return Err(e),
        };
        let status = answer.status;
        let json = serde_json::from_slice::<serde_json::Value>(&answer.body).ok();
        if !(200..300).contains(&status) {
            let failure = if tw_idp::is_transient_status(status) {
                CustomLoginFailure::Unavailable
            } else {
                CustomLoginFailure::Rejected
            };
            let error = failure
                .error(format!(
                    "the login endpoint {} answered HTTP {status}",
                    self.cfg.url
                ))
                .with_upstream_status(status);
            return Err(self.with_portal_message(error, json.as_ref()));
        }
        let malformed = |why: String| {
            CustomLoginFailure::Malformed.error(format!(
                "the login endpoint {} answered {status} but {why}",
                self.cfg.url
            ))
        };
        let json = json.ok_or_else(|| malformed("the body is not JSON".into()))?;
        if let Some(matched) = self.error_answer(&json) {
            let error = CustomLoginFailure::Rejected.error(format!(
                "the login endpoint {} answered {status} with an error answer ({} is {matched}); check the credentials",
                self.cfg.url,
                self.cfg.error_pointer.as_deref().unwrap_or_default()
            ));
            return Err(self.with_portal_message(error, Some(&json)));
        }
        let token = json
            .pointer(&self.cfg.token_pointer)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                malformed(format!("no non-empty string at {}", self.cfg.token_pointer))
            })?;
        let expires_in = self
            .lifetime(&json, token, now)
            .map_err(|past| malformed(past.to_string()))?;
        Ok(TokenResponse {
            access_token: Secret::new(token),
            token_type: self.cfg.token_type.clone(),
            expires_in,
            refresh_token: None,
            scope: None,
        })
    }

    /// The configured error value the answer holds at `error_pointer`, if it is an error answer.
    fn error_answer(&self, json: &serde_json::Value) -> Option<String> {
        let found = json.pointer(self.cfg.error_pointer.as_deref()?)?;
        let found_text = scalar_text(found)?;
        self.cfg
            .error_values
            .iter()
            .find(|want| {
                *want == found
                    || scalar_text(want).is_some_and(|w| w.eq_ignore_ascii_case(&found_text))
            })
            .map(|want| want.to_string())
    }

    /// Adds the portal's explanation (`error_message_pointer`), cleaned and capped, to the message
    /// and as context. Only that one field is read: nothing else of the body is copied.
    fn with_portal_message(&self, error: Error, json: Option<&serde_json::Value>) -> Error {
        let said = self
            .cfg
            .error_message_pointer
            .as_deref()
            .and_then(|p| json?.pointer(p))
            .and_then(scalar_text)
            .map(|t| clean(&t, MAX_OAUTH_DESCRIPTION_CHARS))
            .filter(|t| !t.is_empty());
        match said {
            Some(said) => {
                let message = format!("{}; the portal says: {said}", error.message());
                error.with_message(message).with(CUSTOM_LOGIN_MESSAGE, said)
            }
            None => error,
        }
    }

    /// The token's lifetime, from the first source that has one: `expires_in_pointer`,
    /// `expires_at_pointer`, the token's `exp` when it is a JWT (read, not verified: this side
    /// only needs to know when to fetch again). `None`: the default lifetime applies. An expiry
    /// that has already passed is an error (the token is dead, or a clock is wrong).
    fn lifetime(
        &self,
        json: &serde_json::Value,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<Duration>, PastExpiry> {
        if let Some(d) = self
            .cfg
            .expires_in_pointer
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(tw_idp::lifetime_from_json)
        {
            return Ok(Some(d));
        }
        let absolute = self.cfg.expires_at_pointer.as_deref().and_then(|p| {
            let at = expiry_from_json(json.pointer(p)?);
            if at.is_none() {
                tracing::warn!(
                    profile = %self.profile,
                    pointer = p,
                    "the value at expires_at_pointer is neither epoch seconds nor an RFC 3339 time with a zone; ignored"
                );
            }
            Some((at?, p))
        });
        let Some((at, from)) =
            absolute.or_else(|| jwt_expiry(token).map(|at| (at, "the token's exp")))
        else {
            return Ok(None);
        };
        if at <= now {
            return Err(PastExpiry {
                from: from.to_owned(),
                at,
                now,
            });
        }
        Ok(Some(now.until(at)))
    }
}

/// A custom login's token whose expiry has already passed.
#[derive(Debug)]
struct PastExpiry {
    /// Where the expiry was read (a pointer, or the token's `exp`).
    from: String,
    at: UnixTime,
    now: UnixTime,
}

impl std::fmt::Display for PastExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the expiry at {} ({} s since the epoch) has already passed ({} s now); the token is dead or a clock is wrong",
            self.from,
            self.at.as_secs(),
            self.now.as_secs()
        )
    }
}

/// A string, number or boolean as text (what error values are compared by).
fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An absolute expiry: epoch seconds (milliseconds when too large for seconds) as a number or a
/// numeric string, or an RFC 3339 time with `Z` or a numeric offset.
fn expiry_from_json(v: &serde_json::Value) -> Option<UnixTime> {
    let epoch = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) => Some(n),
            Err(_) => return rfc3339(s.trim()),
        },
        _ => None,
    }?;
    if !epoch.is_finite() || epoch <= 0.0 {
        return None;
    }
    let millis = if epoch >= EPOCH_MILLIS_FROM {
        epoch
    } else {
        epoch * 1000.0
    };
    // Beyond the year 10000 nothing is meant.
    (millis < 253_402_300_800_000.0).then(|| UnixTime::from_millis(millis as i64))
}

/// RFC 3339 (`2026-05-01T10:00:00Z`, `…T10:00:00.5+02:00`): humantime reads the UTC form; a
/// numeric offset is taken off here. A time without a zone is refused: it means no instant.
fn rfc3339(s: &str) -> Option<UnixTime> {
    let s = s.replacen(['t', ' '], "T", 1);
    let (local, offset_secs) = if let Some(utc) = s.strip_suffix(['Z', 'z']) {
        (utc.to_owned(), 0i64)
    } else {
        let split = s.len().checked_sub(6)?;
        let (local, zone) = (s.get(..split)?, s.get(split..)?);
        let sign = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = zone.get(1..)?.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        (local.to_owned(), sign * (h * 3600 + m * 60))
    };
    let utc = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let millis = i64::try_from(utc.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(UnixTime::from_millis(millis - offset_secs * 1000))
}

/// The `exp` of a token that is a JWT, read without verifying it: the broker is a client, the
/// API verifies. `None` for opaque tokens or a JWT without a numeric `exp`.
fn jwt_expiry(token: &str) -> Option<UnixTime> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<serde_json::Value>,
    }
    if token.split('.').count() != 3 {
        return None;
    }
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Exp>(token).ok()?;
    match claims.exp? {
        serde_json::Value::Number(n) => {
            let secs = n.as_f64()?;
            (secs.is_finite() && secs > 0.0 && secs < 253_402_300_800.0)
                .then(|| UnixTime::from_millis((secs * 1000.0) as i64))
        }
        _ => None,
    }
}

impl TokenSource for CustomLoginSource {
    fn fetch(&self, now: UnixTime) -> BoxFuture<'_, Result<TokenResponse, Error>> {
        Box::pin(self.fetch_inner(now))
    }

    fn describe(&self) -> String {
        format!("custom login at {}", self.cfg.url)
    }
}
