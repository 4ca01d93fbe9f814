//! A local OAuth2/OIDC issuer laid out like Keycloak, **for development and tests only**: it
//! loads Keycloak realm exports and issues client-credentials tokens with Keycloak's claim
//! shapes, so an agent or an API can be developed and tested without a Keycloak at hand.
//! It is not an identity provider for production: keys live in memory, there are no user logins,
//! and everything it has is on the loopback interface by default.
//!
//! - [`DevIssuer`]: load exports ([`DevIssuer::from_files`], [`DevIssuer::from_exports`]), serve
//!   ([`DevIssuer::router`]), reload, rotate keys.
//! - [`LoadReport`]: what was loaded, and every part of the exports that is not supported, with
//!   what happens instead.

mod claims;
mod export;
mod http;
mod issuer;
mod keys;
mod realm;
mod report;

pub use report::{LoadReport, RealmSummary, Unsupported};

use issuer::{Issuing, Lifetimes, Records};
use keys::RealmKeys;
use parking_lot::{Mutex, RwLock};
use realm::Realm;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Clock, Error, Secret};

/// How the dev issuer presents itself and overrides the realms' lifetimes.
#[derive(Debug, Clone)]
pub struct DevIssuerSettings {
    /// E.g. `http://127.0.0.1:8780`; each realm's issuer is `{base_url}/realms/{realm}`.
    pub base_url: url::Url,
    /// Overrides the realms' and clients' access-token lifespans.
    pub access_token_lifetime: Option<Duration>,
    /// Overrides the realms' refresh-token (session idle) lifespans.
    pub refresh_token_lifetime: Option<Duration>,
}

/// The issuer. Cheap to clone (shared state).
#[derive(Clone)]
pub struct DevIssuer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("base_url", &self.inner.settings.base_url.as_str())
            .field(
                "realms",
                &self.inner.realms.read().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

enum Sources {
    Files(Vec<PathBuf>),
    Exports(Vec<(String, String)>),
}

struct Inner {
    settings: DevIssuerSettings,
    clock: Arc<dyn Clock>,
    sources: Sources,
    /// (realm or "" for any realm, client id) → secret supplied outside the export.
    secret_overrides: RwLock<BTreeMap<(String, String), Secret>>,
    realms: RwLock<Arc<BTreeMap<String, Arc<Realm>>>>,
    keys: Mutex<BTreeMap<String, RealmKeys>>,
    records: Mutex<Records>,
    reload_listener: RwLock<Option<ReloadListener>>,
}

/// Told the outcome of every reload (by [`DevIssuer::reload`], `POST /dev/reload`, or a signal).
pub type ReloadListener = Arc<dyn Fn(&Result<LoadReport, Error>) + Send + Sync>;

/// A client secret supplied outside the realm export (for exports that mask secrets).
#[derive(Debug, Clone)]
pub struct ClientSecretOverride {
    /// The realm, or `None` for a client of that id in any realm.
    pub realm: Option<String>,
    pub client_id: String,
    pub secret: Secret,
}

impl DevIssuer {
    /// Loads one realm export per file.
    pub fn from_files(
        files: &[PathBuf],
        settings: DevIssuerSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<DevIssuer, Error> {
        Self::new(Sources::Files(files.to_vec()), settings, clock)
    }

    /// Loads exports given as (source name, JSON text), e.g. embedded with `include_str!`.
    pub fn from_exports(
        exports: Vec<(String, String)>,
        settings: DevIssuerSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<DevIssuer, Error> {
        Self::new(Sources::Exports(exports), settings, clock)
    }

    fn new(
        sources: Sources,
        settings: DevIssuerSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<DevIssuer, Error> {
        let issuer = DevIssuer {
            inner: Arc::new(Inner {
                settings,
                clock,
                sources,
                secret_overrides: RwLock::new(BTreeMap::new()),
                realms: RwLock::new(Arc::new(BTreeMap::new())),
                keys: Mutex::new(BTreeMap::new()),
                records: Mutex::new(Records::default()),
                reload_listener: RwLock::new(None),
            }),
        };
        issuer.load()?;
        Ok(issuer)
    }

    /// Calls `listener` after every later reload with its outcome (e.g. to print the new report).
    pub fn on_reload(&self, listener: ReloadListener) {
        *self.inner.reload_listener.write() = Some(listener);
    }

    /// Supplies client secrets the exports mask, and reloads so they take effect (also on every
    /// later reload).
    pub fn set_client_secrets(
        &self,
        overrides: Vec<ClientSecretOverride>,
    ) -> Result<LoadReport, Error> {
        {
            let mut map = self.inner.secret_overrides.write();
            for given in overrides {
                map.insert(
                    (given.realm.unwrap_or_default(), given.client_id),
                    given.secret,
                );
            }
        }
        self.reload()
    }

    /// What is loaded now.
    pub fn report(&self) -> LoadReport {
        let realms = self.inner.realms.read().clone();
        LoadReport {
            realms: realms
                .values()
                .map(|r| {
                    let mut s = r.summary.clone();
                    s.issuer = self.issuer_url(&r.name);
                    s
                })
                .collect(),
        }
    }

    /// Re-reads the sources. Signing keys and issued refresh tokens are kept. On error the realms
    /// loaded before stay, and the error names the file and the JSON path.
    pub fn reload(&self) -> Result<LoadReport, Error> {
        let result = self.load();
        match &result {
            Ok(_) => tracing::info!("realm exports reloaded"),
            Err(e) => tracing::warn!(error = %e, "reload failed; the realms loaded before stay"),
        }
        let listener = self.inner.reload_listener.read().clone();
        if let Some(listener) = listener {
            listener(&result);
        }
        result
    }

    fn load(&self) -> Result<LoadReport, Error> {
        let texts: Vec<(String, String)> = match &self.inner.sources {
            Sources::Exports(e) => e.clone(),
            Sources::Files(files) => {
                let mut out = Vec::new();
                for f in files {
                    let name = f.display().to_string();
                    let text = std::fs::read_to_string(f).map_err(|e| {
                        Error::config(
                            "realm_file_unreadable",
                            format!("{name}: cannot read the realm export: {e}"),
                        )
                        .with("file", name.clone())
                    })?;
                    out.push((name, text));
                }
                out
            }
        };
        let overrides = self.inner.secret_overrides.read().clone();
        let mut realms: BTreeMap<String, Arc<Realm>> = BTreeMap::new();
        for (source, text) in &texts {
            let realm = load_export(source, text, &overrides)?;
            if let Some(other) = realms.get(&realm.name) {
                return Err(Error::config(
                    "duplicate_realm",
                    format!(
                        "{source}: realm \"{}\" is already loaded from {}; give each realm once",
                        realm.name, other.source
                    ),
                )
                .with("file", source.clone()));
            }
            realms.insert(realm.name.clone(), Arc::new(realm));
        }
        {
            let mut keys = self.inner.keys.lock();
            for name in realms.keys() {
                if !keys.contains_key(name) {
                    keys.insert(name.clone(), RealmKeys::generate()?);
                }
            }
        }
        *self.inner.realms.write() = Arc::new(realms);
        Ok(self.report())
    }

    /// Makes a new key the realm's signer; with `keep_old` the previous public keys stay in
    /// `/certs` (tokens they signed still verify), without they are dropped.
    pub fn rotate_keys(&self, realm: &str, keep_old: bool) -> Result<String, Error> {
        let mut keys = self.inner.keys.lock();
        let Some(k) = keys.get_mut(realm) else {
            return Err(Error::not_found(
                "unknown_realm",
                format!("no realm \"{realm}\" is loaded"),
            ));
        };
        let kid = k.rotate(keep_old)?;
        tracing::info!(realm, kid = %kid, keep_old, "signing key rotated");
        Ok(kid)
    }

    /// The HTTP endpoints (Keycloak's paths, plus `/dev/...` controls). The controls have no
    /// authentication: they answer only callers on loopback or a Unix socket, so serve the router
    /// with connect info (`tw_http::serve` does; without it every control request is refused),
    /// and refuse what a web page may have sent: an `Origin` other than `base_url`'s, or a `Host`
    /// naming neither this machine nor `base_url`'s host (DNS rebinding).
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// `{base_url}/realms/{realm}`.
    pub fn issuer_url(&self, realm: &str) -> String {
        format!(
            "{}/realms/{realm}",
            self.inner.settings.base_url.as_str().trim_end_matches('/')
        )
    }

    /// The web origin of `base_url` (`http://127.0.0.1:8780`), the only `Origin` a `/dev`
    /// control request may carry.
    fn origin(&self) -> String {
        self.inner.settings.base_url.origin().ascii_serialization()
    }

    /// The host of `base_url` (`devbox.lan`, `127.0.0.1`, `::1`), a `Host` a `/dev` control
    /// request may name.
    fn public_host(&self) -> Option<String> {
        let host = self.inner.settings.base_url.host_str()?;
        Some(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
    }

    /// `{issuer}/protocol/openid-connect/token`.
    pub fn token_url(&self, realm: &str) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer_url(realm))
    }

    /// A served realm (a disabled realm is not served, as in Keycloak).
    fn realm(&self, name: &str) -> Option<Arc<Realm>> {
        self.inner
            .realms
            .read()
            .get(name)
            .filter(|r| r.enabled)
            .cloned()
    }

    /// Runs `f` with what one request to `realm` needs: its keys, the records, clock, lifetimes.
    fn with_realm<T>(&self, realm: &Realm, f: impl FnOnce(&Issuing<'_>) -> T) -> T {
        let issuer = self.issuer_url(&realm.name);
        let issuing = Issuing {
            realm,
            issuer: &issuer,
            keys: &self.inner.keys,
            records: &self.inner.records,
            clock: &self.inner.clock,
            lifetimes: Lifetimes {
                access: self.inner.settings.access_token_lifetime,
                refresh: self.inner.settings.refresh_token_lifetime,
            },
        };
        f(&issuing)
    }

    fn public_key(&self, realm: &str) -> Option<String> {
        self.inner
            .keys
            .lock()
            .get(realm)
            .map(|k| k.public_key().to_owned())
    }

    fn jwks(&self, realm: &str) -> Option<serde_json::Value> {
        self.inner.keys.lock().get(realm).map(RealmKeys::jwks)
    }
}

/// Checks one realm export the way loading it would (parse, compile, every refusal with the
/// source and the JSON path), without loading it: no keys are made and nothing is served.
pub fn check_export(source: &str, text: &str) -> Result<(), Error> {
    load_export(source, text, &BTreeMap::new()).map(drop)
}

/// Parses and compiles one export; errors name the source and the JSON path.
fn load_export(
    source: &str,
    text: &str,
    overrides: &BTreeMap<(String, String), Secret>,
) -> Result<Realm, Error> {
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::config(
            "bad_realm_export",
            format!(
                "{source}: not valid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                json_error_reason(&e)
            ),
        )
        .with("file", source)
    })?;
    let rep: export::RealmRep = serde_path_to_error::deserialize(&raw).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "$".to_owned()
        } else {
            format!("$.{path}")
        };
        // serde echoes the offending value; under a secret that value may be the secret.
        let reason = if path.contains("secret") || path.contains("credentials") {
            "wrong type (the value is not shown)".to_owned()
        } else {
            json_error_reason(e.inner())
        };
        Error::config("bad_realm_export", format!("{source}: {path}: {reason}"))
            .with("file", source)
            .with("key", path)
    })?;
    realm::compile(source, &raw, rep, overrides).map_err(|e| {
        if e.context_value("file").is_some() {
            return e;
        }
        let named = Error::config(e.code(), format!("{source}: {}", e.message()));
        e.context()
            .iter()
            .fold(named, |named, (k, v)| named.with(k, v.clone()))
            .with("file", source)
    })
}

/// serde_json's message without its " at line X column Y" suffix (we say where ourselves).
fn json_error_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
