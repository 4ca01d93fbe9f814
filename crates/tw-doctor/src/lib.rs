//! `tokenwarden doctor`: checks, step by step, everything between a service account and the API
//! it calls, and explains each failure in plain words with the fix.
//!
//! Steps (per profile after the first): `config` (the file loads and validates) → `secrets`
//! (every secret reference resolves; values never shown) → `discovery` (the issuer's discovery
//! document: reachability told apart as connection refused, DNS, TLS, timeout, HTTP status, not a
//! discovery document, issuer mismatch) → `clock` (the IdP's `Date` header against the local
//! clock) → `token` (a token fetched exactly as the agent does, through `tw_broker`'s token
//! sources; refusals classified, with a probe of the authorization endpoint to tell an unknown
//! or disabled client from a wrong secret) → `claims` (the token through the gateway's own
//! `tw_verify::Verifier`) → `authz` (the gateway's `tw_authz::Authz` for a method and path) →
//! `call` (the URL itself, 401 vs 403 vs 429 vs 5xx).
//!
//! Every failure has a stable `cause` code. Nothing here prints a secret or a token (tokens are
//! named by [`tw_core::TokenFingerprint`]). Time comes from the injected [`tw_core::Clock`].

mod classify;
mod report;

pub use report::{Report, Status, Step};

use classify::{Credentials, credentials_of, explain_network, host_of, token_failure_cause};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tw_authz::{Authz, AuthzDecision, AuthzRequest, PrincipalExtractor, RegistrySource};
use tw_broker::source::CustomLoginFailure;
use tw_config::{AuthMethod, Config, GatewayConfig, PermissionSourceKind, ProfileConfig};
use tw_core::NetworkClass;
use tw_core::{Clock, Secret, TokenFingerprint, UnixTime};
use tw_idp::http::root_cause;
use tw_idp::{Discovery, HttpSettings, IdpHttp, IssuerMatch, Overflow, codes};
use tw_verify::{Check, InspectReport, VerifiedToken, Verifier};
use url::Url;

/// A clock difference below this is never mentioned.
pub const CLOCK_NOTICE: Duration = Duration::from_secs(5);
/// The tolerance assumed when no gateway section says (the gateway's default leeway).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Timeout of the `--url` call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer body read from the authorization-endpoint probe or the called URL (longer
/// answers are cut there).
const MAX_BODY: usize = 64 * 1024;
/// Largest discovery document read: every component's limit, so doctor refuses what the gateway
/// would.
const MAX_DISCOVERY_BYTES: usize = tw_idp::MAX_ANSWER_BYTES;

/// What to check beyond the configuration itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this profile (default: every profile).
    pub profile: Option<String>,
    /// Call this URL with each profile's token.
    pub url: Option<Url>,
    /// Method of the call and of the authorization check (default `GET`).
    pub method: Option<String>,
    /// Path for the authorization check (default: the path of `url`).
    pub path: Option<String>,
    /// The gateway whose demands the token is checked against (default: the config's
    /// `[gateway]`).
    pub gateway: Option<GatewayConfig>,
}

/// Runs the checks. Build once; [`Doctor::diagnose`] never panics and never fails: every problem
/// is a step of the report.
pub struct Doctor {
    clock: Arc<dyn Clock>,
    registry: Option<Arc<dyn RegistrySource>>,
}

/// The gateway's view, built once for every profile.
struct GatewayView {
    cfg: GatewayConfig,
    verifier: Arc<Verifier>,
    authz: Option<Authz>,
}

/// What the discovery step learned.
struct Discovered {
    doc: Option<Discovery>,
    /// The IdP's clock, from its `Date` header.
    idp_time: Option<UnixTime>,
}

impl Doctor {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            registry: None,
        }
    }

    /// The account registry the gateway's authorization reads (when `[gateway.authz]` lists
    /// `registry` as a permission source). Without it, only the role map is evaluated.
    pub fn with_registry(mut self, registry: Arc<dyn RegistrySource>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The report for a configuration that did not load: the `config` step, failed, naming the
    /// file and the key.
    pub fn config_error(e: &tw_core::Error) -> Report {
        let mut step = failed_on("config", None, tw_core::CONFIG_INVALID, e);
        if let Some(file) = e.context_value("file") {
            step = step.detail(format!("file: {file}"));
        }
        if let Some(key) = e.context_value("key") {
            step = step.detail(format!("key: {key}"));
        }
        step = step
            .fix("correct the key named above; `tokenwarden config check --config FILE` re-checks it")
            .fix("examples/agent.toml and examples/gateway.toml show every key with a comment");
        Report { steps: vec![step] }
    }

    /// Checks `cfg` (already loaded from `source`) as `opts` asks.
    pub async fn diagnose(&self, cfg: &Config, source: &str, opts: &Options) -> Report {
        let mut report = Report::default();
        let gateway_cfg = opts.gateway.clone().or_else(|| cfg.gateway.clone());
        let mut summary = format!("{source} is valid: {} profile(s)", cfg.profiles.len());
        if gateway_cfg.is_some() {
            summary.push_str(", a gateway");
        }
        report.push(Step::pass("config", None, summary));

        let profiles: Vec<(&String, &ProfileConfig)> = match &opts.profile {
            Some(name) => match cfg.profiles.get_key_value(name) {
                Some(p) => vec![p],
                None => {
                    let known: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
                    report.push(
                        Step::fail(
                            "config",
                            Some(name),
                            "profile_not_found",
                            format!("there is no profile `{name}` in {source}"),
                        )
                        .detail(format!("profiles defined: {}", list_or_none(&known))),
                    );
                    return report;
                }
            },
            None => cfg.profiles.iter().collect(),
        };
        if profiles.is_empty() {
            report.push(
                Step::warn("config", None, "no_profiles", "no [profiles.*]: there is no token to check")
                    .fix("add a profile (see examples/agent.toml), or run doctor with --issuer, --client-id and --client-secret-env"),
            );
        }

        let gateway = match gateway_cfg {
            Some(gw) => self.gateway_view(gw, &mut report).await,
            None => None,
        };
        let http = match Clients::new() {
            Ok(h) => h,
            Err(e) => {
                report.push(failed_on("config", None, "internal", &e));
                return report;
            }
        };
        for (name, profile) in profiles {
            self.profile(&mut report, name, profile, &http, gateway.as_ref(), opts)
                .await;
        }
        report
    }

    async fn gateway_view(&self, cfg: GatewayConfig, report: &mut Report) -> Option<GatewayView> {
        let verifier = match Verifier::new(&cfg.verifier_settings(), self.clock.clone()) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                report.push(failed_on("gateway", None, tw_core::CONFIG_INVALID, &e));
                return None;
            }
        };
        verifier.start().await;
        for st in verifier.status() {
            if !st.keys_loaded {
                report.push(
                    Step::fail(
                        "gateway",
                        None,
                        "jwks_unavailable",
                        format!("the gateway cannot load the signing keys of {}", st.issuer),
                    )
                    .detail("every token of this issuer would be answered 503 until the keys load")
                    .fix("check `gateway.issuers[].issuer` (discovery) or `jwks_url`, and that the IdP is reachable from the gateway"),
                );
            }
        }
        let authz = match &cfg.authz {
            None => None,
            Some(a) => {
                let mut a = a.clone();
                // The doctor looks, it never writes: no account is provisioned.
                a.auto_provision = None;
                let uses_registry = a.sources.contains(&PermissionSourceKind::Registry)
                    || a.issuer_sources
                        .values()
                        .any(|s| s.contains(&PermissionSourceKind::Registry));
                let case_insensitive = cfg.paths.case_insensitive;
                let mut builder = Authz::builder(&a)
                    .case_insensitive_paths(case_insensitive)
                    .clock(self.clock.clone());
                match (&self.registry, uses_registry) {
                    (Some(r), true) => builder = builder.registry(r.clone(), None),
                    (None, true) => {
                        a.sources = vec![PermissionSourceKind::Roles];
                        a.issuer_sources.clear();
                        builder = Authz::builder(&a)
                            .case_insensitive_paths(case_insensitive)
                            .clock(self.clock.clone());
                        report.push(Step::warn(
                            "gateway",
                            None,
                            "registry_not_checked",
                            "permissions from the account registry are not evaluated here (no [storage] given); only the role map is",
                        ));
                    }
                    _ => {}
                }
                match builder.build() {
                    Ok(z) => Some(z),
                    Err(e) => {
                        report.push(failed_on("gateway", None, tw_core::CONFIG_INVALID, &e));
                        None
                    }
                }
            }
        };
        Some(GatewayView {
            cfg,
            verifier,
            authz,
        })
    }

    async fn profile(
        &self,
        report: &mut Report,
        name: &str,
        p: &ProfileConfig,
        http: &Clients,
        gateway: Option<&GatewayView>,
        opts: &Options,
    ) {
        let pn = Some(name);
        if !secrets_step(report, name, p) {
            return skip_rest(report, name, "secrets", &["discovery", "token"]);
        }
        let discovered = match (&p.issuer, &p.custom) {
            (Some(issuer), None) => match self.discovery(report, name, issuer, p, http).await {
                Some(d) => d,
                None => return skip_rest(report, name, "discovery", &["token"]),
            },
            _ => {
                report.push(Step::skip(
                    "discovery",
                    pn,
                    if p.custom.is_some() {
                        "custom login endpoint: no discovery"
                    } else {
                        "token_url given: no discovery"
                    },
                ));
                Discovered {
                    doc: None,
                    idp_time: None,
                }
            }
        };
        let leeway = leeway_for(gateway, p.issuer.as_ref());
        let token = self
            .token_step(report, name, p, http, discovered.doc.as_ref())
            .await;
        // The IdP's clock: its Date header, else the `iat` of the token it just issued.
        let reference = discovered
            .idp_time
            .map(|t| (t, "its Date header"))
            .or_else(|| {
                token
                    .as_ref()
                    .and_then(issued_at)
                    .map(|t| (t, "the token's iat"))
            });
        let skewed = self.clock_step(report, name, reference, leeway);
        let Some(token) = token else {
            let mut next = Vec::new();
            if gateway.is_some() {
                next.push("claims");
            }
            if opts.url.is_some() {
                next.push("call");
            }
            return skip_rest(report, name, "token", &next);
        };

        let verified = match gateway {
            Some(gw) => self.claims_step(report, name, &token, gw, skewed).await,
            None => {
                report.push(Step::skip(
                    "claims",
                    pn,
                    "no [gateway] section: give --gateway-config FILE to check the token against what the gateway demands",
                ));
                None
            }
        };

        let method = opts.method.clone().unwrap_or_else(|| "GET".to_owned());
        // The path the gateway's rules see: --path when a proxy in between rewrites it.
        let path = opts
            .path
            .clone()
            .or_else(|| opts.url.as_ref().map(|u| u.path().to_owned()));
        let rule = match (gateway.and_then(|g| g.authz.as_ref()), &verified, &path) {
            (Some(authz), Some(vt), Some(path)) => {
                authz_step(report, name, authz, gateway, vt, &method, path).await
            }
            (Some(_), Some(_), None) => {
                report.push(Step::skip(
                    "authz",
                    pn,
                    "give --url URL or --path PATH to check the gateway's route rules",
                ));
                None
            }
            _ => None,
        };

        if let Some(url) = &opts.url {
            call_step(
                report,
                name,
                url,
                &method,
                &token,
                verified.is_some(),
                rule,
                self.clock.now(),
            )
            .await;
        }
    }

    async fn discovery(
        &self,
        report: &mut Report,
        name: &str,
        issuer: &Url,
        p: &ProfileConfig,
        http: &Clients,
    ) -> Option<Discovered> {
        let pn = Some(name);
        let url = tw_idp::discovery::discovery_url(issuer.as_str())
            .map(|u| u.to_string())
            .unwrap_or_else(|_| issuer.to_string());
        let host = host_of(issuer);
        let fetched = tw_idp::discovery::fetch_unchecked(
            &http.idp,
            issuer.as_str(),
            Some(p.timing.request_timeout),
            self.clock.now(),
        )
        .await;
        let e = match fetched {
            Ok(f) => return self.discovered(report, name, issuer, p, f),
            Err(e) => e,
        };
        let step = if let Some(class) = e.network() {
            let step = Step::fail(
                "discovery",
                pn,
                class.as_str(),
                format!("cannot fetch the issuer's discovery document {url}"),
            );
            let mut step =
                explain_network(class, step, &host).detail(format!("error: {}", root_cause(&e)));
            if class == NetworkClass::Timeout {
                step = step.detail(format!(
                    "timed out after {} (timing.request_timeout)",
                    humanize(p.timing.request_timeout)
                ));
            }
            step
        } else if let (codes::IDP_DISCOVERY_FAILED, Some(status)) = (e.code(), e.upstream_status())
        {
            let step = Step::fail(
                "discovery",
                pn,
                "discovery_http_status",
                format!("the discovery document {url} answered HTTP {status}"),
            );
            match status {
                404 => step
                    .detail("the issuer URL does not name a realm this server knows")
                    .fix("Keycloak's issuer is https://HOST/realms/REALM (before Keycloak 17: https://HOST/auth/realms/REALM); realm names are case-sensitive"),
                401 | 403 => step
                    .detail("something in front of the IdP demands authentication for a public document")
                    .fix("let /.well-known/openid-configuration through the proxy or firewall in front of the IdP"),
                s if s >= 500 => step
                    .detail("the IdP (or a proxy in front of it) is failing")
                    .fix("check the IdP's logs and health; a 502/504 from a proxy means the IdP behind it is down or slow"),
                _ => step.fix("check the issuer URL"),
            }
        } else if e.code() == codes::IDP_ANSWER_TOO_LARGE {
            Step::fail(
                "discovery",
                pn,
                "discovery_invalid",
                format!("the discovery document {url} is larger than {MAX_DISCOVERY_BYTES} bytes"),
            )
            .detail("a discovery document is a few kilobytes; the gateway's verifier reads no more than this from an IdP and would refuse it too")
            .fix("open the URL with curl; check the issuer URL and any proxy or file server answering in front of the IdP")
        } else if std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<serde_json::Error>())
            .is_some_and(|j| j.is_syntax() || j.is_eof())
        {
            Step::fail(
                "discovery",
                pn,
                "discovery_invalid",
                format!("{url} answered 200, but not with JSON"),
            )
            .detail("an HTML page (a login page, a proxy's error page) or a truncated answer came back instead of the discovery document")
            .fix("open the URL in a browser or with curl; check the issuer URL and any proxy in front of the IdP")
        } else if e.code() == codes::IDP_DISCOVERY_MALFORMED {
            let problem = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.message().to_owned());
            not_a_discovery_document(pn, &url, &problem)
        } else {
            failed_on("discovery", pn, token_failure_cause(&e), &e)
        };
        report.push(step);
        None
    }

    /// The checks of a fetched discovery document doctor explains itself: the token endpoint,
    /// the issuer (both values shown), the client's authentication method.
    fn discovered(
        &self,
        report: &mut Report,
        name: &str,
        issuer: &Url,
        p: &ProfileConfig,
        fetched: tw_idp::discovery::Fetched,
    ) -> Option<Discovered> {
        let pn = Some(name);
        let url = tw_idp::discovery::discovery_url(issuer.as_str())
            .map(|u| u.to_string())
            .unwrap_or_else(|_| issuer.to_string());
        let idp_time = fetched.date;
        let doc = fetched.doc;
        let Some(token_endpoint) = doc.token_endpoint.clone() else {
            report.push(not_a_discovery_document(
                pn,
                &url,
                "missing field `token_endpoint`",
            ));
            return None;
        };
        if !IssuerMatch::IgnoreTrailingSlash.matches(issuer.as_str(), &doc.issuer) {
            report.push(
                Step::fail(
                    "discovery",
                    pn,
                    "issuer_mismatch",
                    "the discovery document names another issuer than the one configured",
                )
                .detail(format!("configured: {issuer}"))
                .detail(format!("the IdP says: {}", doc.issuer))
                .detail("tokens carry the IdP's value in `iss`; clients and gateways compare it exactly")
                .fix(format!("set `issuer = \"{}\"` in the profile (and in gateway.issuers) if that is the URL you mean", doc.issuer))
                .fix("if the IdP names itself wrongly: Keycloak builds the issuer from its public hostname (KC_HOSTNAME / --hostname); behind a reverse proxy set --proxy-headers xforwarded so it sees the external scheme and host"),
            );
            return None;
        }
        let mut step = Step::pass(
            "discovery",
            pn,
            format!("the issuer's discovery document is valid; token endpoint {token_endpoint}"),
        );
        let method = p.auth_method.name();
        if p.token_url.is_none()
            && !doc.token_endpoint_auth_methods_supported.is_empty()
            && !doc
                .token_endpoint_auth_methods_supported
                .iter()
                .any(|m| m == method)
        {
            step = Step::warn(
                "discovery",
                pn,
                "auth_method_unsupported",
                format!("the IdP does not list `{method}` among its client authentication methods"),
            )
            .detail(format!(
                "it lists: {}",
                doc.token_endpoint_auth_methods_supported.join(", ")
            ))
            .fix("set the profile's `auth_method` to one the IdP supports");
        }
        report.push(step);
        Some(Discovered {
            doc: Some(doc),
            idp_time,
        })
    }

    /// Compares the IdP's clock to ours. True when they differ by more than `leeway`.
    fn clock_step(
        &self,
        report: &mut Report,
        name: &str,
        reference: Option<(UnixTime, &str)>,
        leeway: Duration,
    ) -> bool {
        let pn = Some(name);
        let Some((idp_time, from)) = reference else {
            report.push(Step::skip(
                "clock",
                pn,
                "the IdP's clock is unknown (no Date header, no token)",
            ));
            return false;
        };
        let now = self.clock.now();
        let diff_ms = now.as_millis().saturating_sub(idp_time.as_millis());
        let diff = Duration::from_millis(diff_ms.unsigned_abs());
        // The Date header has whole seconds: allow for that before speaking of skew.
        if diff <= CLOCK_NOTICE {
            report.push(Step::pass(
                "clock",
                pn,
                "the local clock agrees with the IdP's",
            ));
            return false;
        }
        let direction = if diff_ms > 0 { "ahead of" } else { "behind" };
        let summary = format!(
            "the local clock is {} {direction} the IdP's (from {from})",
            humanize(diff)
        );
        let base = if diff > leeway {
            Step::fail("clock", pn, "clock_skew", summary).detail(format!(
                "beyond the {} leeway of token checks: fresh tokens look {}",
                humanize(leeway),
                if diff_ms > 0 {
                    "expired"
                } else {
                    "not yet valid (iat/nbf in the future)"
                }
            ))
        } else {
            Step::warn("clock", pn, "clock_skew", summary).detail(format!(
                "within the {} leeway of token checks, but tokens live shorter than they seem",
                humanize(leeway)
            ))
        };
        report.push(base.fix("synchronise the clocks with NTP (timedatectl set-ntp true; chrony) on this machine, the IdP's and the gateway's"));
        diff > leeway
    }

    async fn token_step(
        &self,
        report: &mut Report,
        name: &str,
        p: &ProfileConfig,
        http: &Clients,
        doc: Option<&Discovery>,
    ) -> Option<Secret> {
        let pn = Some(name);
        let source = match tw_broker::source::from_config(name, p, http.idp.clone()) {
            Ok(s) => s,
            Err(e) => {
                report.push(failed_on("token", pn, tw_core::CONFIG_INVALID, &e));
                return None;
            }
        };
        let now = self.clock.now();
        let e = match source.fetch(now).await {
            Ok(resp) => {
                let fp = TokenFingerprint::of(resp.access_token.expose());
                let life = resp.expires_in.map_or_else(
                    || "no expires_in (the default lifetime applies)".to_owned(),
                    |d| format!("lifetime {}", humanize(d)),
                );
                let mut step = Step::pass(
                    "token",
                    pn,
                    format!(
                        "{}: got a {} token (sha256:{}), {life}",
                        source.describe(),
                        resp.token_type,
                        fp.short()
                    ),
                );
                if let Some(scope) = &resp.scope {
                    step = step.detail(format!("scope: {scope}"));
                }
                if resp.expires_in.is_some_and(|d| d < Duration::from_secs(60)) {
                    step = Step::warn("token", pn, "short_lifetime", step.summary.clone())
                        .detail("tokens living under a minute mean a refresh every few seconds; Keycloak's default is 5 minutes (Realm settings → Tokens → Access Token Lifespan)");
                }
                report.push(step);
                return Some(resp.access_token);
            }
            Err(e) => e,
        };
        let step = match credentials_of(&e, p.auth_method) {
            Some(c) => credentials_step(name, p, &e, c, doc, http, self.clock.now()).await,
            None => {
                let cause = token_failure_cause(&e);
                let step = failed_on("token", pn, cause, &e);
                match CustomLoginFailure::of(&e) {
                    Some(failure) => explain_custom_login_failure(step, failure, p),
                    None => explain_token_failure(step, cause, e.network(), p),
                }
            }
        };
        report.push(step);
        None
    }

    async fn claims_step(
        &self,
        report: &mut Report,
        name: &str,
        token: &Secret,
        gw: &GatewayView,
        skewed: bool,
    ) -> Option<Arc<VerifiedToken>> {
        let pn = Some(name);
        let r = gw.verifier.inspect(token.expose()).await;
        match &r.verdict {
            Ok(vt) => {
                let mut step = Step::pass(
                    "claims",
                    pn,
                    format!("the gateway would accept this token (iss {})", vt.issuer),
                );
                step = step.detail(format!(
                    "aud: {}",
                    list_or_none(&vt.audiences.iter().map(String::as_str).collect::<Vec<_>>())
                ));
                if let Some(c) = &vt.client_id {
                    step = step.detail(format!("azp: {c}"));
                }
                let now = self.clock.now();
                step = step.detail(format!("expires in {}", humanize(now.until(vt.expires_at))));
                report.push(step);
                Some(vt.clone())
            }
            Err(ve) => {
                report.push(explain_refusal(
                    &r,
                    ve.check(),
                    ve.description(),
                    &gw.cfg,
                    name,
                    skewed,
                    self.clock.now(),
                ));
                None
            }
        }
    }
}

/// Resolves every secret the profile uses. False when one does not resolve.
fn secrets_step(report: &mut Report, name: &str, p: &ProfileConfig) -> bool {
    let pn = Some(name);
    let mut refs: Vec<(String, &tw_config::SecretRef)> = Vec::new();
    let key = |f: &str| format!("profiles.{name}.{f}");
    if let Some(custom) = &p.custom {
        for (k, r) in &custom.secret_fields {
            refs.push((key(&format!("custom.secret_fields.{k}")), r));
        }
    } else {
        match p.auth_method {
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
                if let Some(r) = &p.client_secret {
                    refs.push((key("client_secret"), r));
                }
            }
            AuthMethod::PrivateKeyJwt => {
                if let Some(r) = &p.private_key {
                    refs.push((key("private_key"), r));
                }
            }
            AuthMethod::None => {}
        }
        let persisted = p
            .refresh_token_state_file
            .as_ref()
            .is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0));
        if let (Some(r), false) = (&p.refresh_token, persisted) {
            refs.push((key("refresh_token"), r));
        }
    }
    let mut found = Vec::new();
    for (k, r) in refs {
        match r.resolve(&k) {
            Ok(secret) => {
                if k.ends_with(".private_key")
                    && let Err(e) = tw_broker::source::assertion_key(p, &secret, &k)
                {
                    report.push(
                        failed_on("secrets", pn, "private_key_invalid", &e)
                            .fix("give a PEM private key (PKCS#8 or traditional) matching `signing_alg` (RS256/PS256: RSA, ES256: P-256)"),
                    );
                    return false;
                }
                found.push(format!("`{k}` from {}", r.describe()));
            }
            Err(e) => {
                report.push(
                    failed_on("secrets", pn, tw_core::secret_ref::SECRET_UNAVAILABLE, &e)
                        .detail(format!("`{k}` is read from {}", r.describe()))
                        .fix(match r {
                            tw_config::SecretRef::Env(v) => format!("export {v} in the environment of the process (systemd: Environment=/EnvironmentFile=; compose: environment:)"),
                            tw_config::SecretRef::File(f) => format!("create {} readable by this user (mode 0600), holding only the secret", f.display()),
                        }),
                );
                return false;
            }
        }
    }
    let summary = if found.is_empty() {
        "no secrets to resolve".to_owned()
    } else {
        format!(
            "every secret resolves (values not shown): {}",
            found.join(", ")
        )
    };
    report.push(Step::pass("secrets", pn, summary));
    true
}

/// A failed step whose summary is the error's own (secret-free) message.
fn failed_on(
    id: &'static str,
    profile: Option<&str>,
    cause: &'static str,
    e: &tw_core::Error,
) -> Step {
    Step::fail(id, profile, cause, e.message().to_owned())
}

/// When the IdP issued `token`, if it is a JWT with `iat`.
fn issued_at(token: &Secret) -> Option<UnixTime> {
    tw_verify::parse_unverified(token.expose(), tw_verify::DEFAULT_MAX_TOKEN_BYTES)
        .ok()?
        .registered()
        .iat
}

/// Marks the later steps of a profile as not run.
fn skip_rest(report: &mut Report, name: &str, failed: &str, next: &[&'static str]) {
    for id in next {
        report.push(Step::skip(
            id,
            Some(name),
            format!("not tried: the {failed} step failed"),
        ));
    }
}

/// What a client-authentication refusal means, probing the authorization endpoint when the
/// token endpoint's answer alone cannot tell.
async fn credentials_step(
    name: &str,
    p: &ProfileConfig,
    e: &tw_core::Error,
    c: Credentials,
    doc: Option<&Discovery>,
    http: &Clients,
    now: UnixTime,
) -> Step {
    let pn = Some(name);
    let client = p.client_id.clone().unwrap_or_default();
    let said = format!(
        "the IdP refused the client `{client}`: {}",
        classify::oauth_description(e)
    );
    let check_client = format!(
        "check that client `{client}` exists in the realm (Keycloak admin console → Clients; client IDs are case-sensitive)"
    );
    let check_secret = format!(
        "compare the secret with Keycloak's (Clients → {client} → Credentials → Client secret); regenerate it there and update the secret reference if unsure"
    );
    let check_enabled = format!(
        "check that client `{client}` is enabled (Clients → {client} → Settings → Enabled)"
    );
    match c {
        Credentials::ServiceAccountDisabled => Step::fail("token", pn, "service_account_disabled", said)
            .detail("the client authenticated, but may not use the client_credentials grant: its service account is not enabled")
            .fix(format!("Keycloak: Clients → {client} → Settings → Capability config → Client authentication ON and Service accounts roles ON (serviceAccountsEnabled: true)")),
        Credentials::InvalidAssertion => Step::fail("token", pn, "invalid_client_assertion", said)
            .detail("the private_key_jwt client assertion was refused: unknown client, a key the IdP does not hold, a wrong `kid`, or a clock far off")
            .fix(format!("register the public key of `private_key` for `{client}` (Keycloak: Clients → {client} → Keys → JWKS URL or import the certificate), and set `key_id` to its kid if the IdP holds several"))
            .fix(check_client),
        Credentials::Disabled => Step::fail("token", pn, "client_disabled", said).fix(check_enabled),
        Credentials::WrongSecret => Step::fail("token", pn, "wrong_secret", said).fix(check_secret),
        Credentials::Ambiguous => {
            let auth_endpoint = doc
                .and_then(|d| d.authorization_endpoint.clone())
                .or_else(|| keycloak_auth_endpoint(p.token_url.as_ref()));
            match probe_client(&http.probe, auth_endpoint.as_ref(), &client, p.timing.request_timeout, now).await {
                Probe::Unknown => Step::fail("token", pn, "unknown_client", said)
                    .detail(format!("the IdP's authorization endpoint does not know a client `{client}`"))
                    .fix(check_client),
                Probe::Disabled => Step::fail("token", pn, "client_disabled", said)
                    .detail(format!("the IdP's authorization endpoint says client `{client}` is disabled"))
                    .fix(check_enabled),
                Probe::Exists => Step::fail("token", pn, "wrong_secret", said)
                    .detail(format!("client `{client}` exists and is enabled (its authorization endpoint knows it), so the credentials are wrong"))
                    .fix(check_secret)
                    .fix(format!("check `auth_method` (now `{}`) matches the client's authenticator (Keycloak: Credentials → Client Authenticator)", p.auth_method.name())),
                Probe::Inconclusive => Step::fail("token", pn, "wrong_secret_or_unknown_client", said)
                    .detail("the IdP answers an unknown client, a wrong secret and (Keycloak) a disabled client alike, and could not be asked which one it is")
                    .detail("it is one of: the client id is unknown in this realm; the secret is wrong; the client is disabled")
                    .fix(check_client)
                    .fix(check_secret)
                    .fix(check_enabled),
            }
        }
    }
}

enum Probe {
    Unknown,
    Disabled,
    Exists,
    Inconclusive,
}

/// Asks the authorization endpoint about `client` (no credentials are sent): Keycloak answers
/// "Client not found." or "Client disabled." before looking at anything else; oidc-provider
/// answers `invalid_client` for an unknown client. Any other answer about the request means the
/// client is known.
async fn probe_client(
    http: &IdpHttp,
    endpoint: Option<&Url>,
    client: &str,
    timeout: Duration,
    now: UnixTime,
) -> Probe {
    let Some(endpoint) = endpoint else {
        return Probe::Inconclusive;
    };
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        // Keycloak localizes its error pages; the texts matched below are the English ones.
        .append_pair("ui_locales", "en");
    let req = http
        .get(url)
        .header(reqwest::header::ACCEPT_LANGUAGE, "en")
        .timeout(timeout);
    let Ok(answer) = http
        .send_with(
            req,
            "the IdP's authorization endpoint",
            now,
            Overflow::KeepPrefix,
        )
        .await
    else {
        return Probe::Inconclusive;
    };
    let status = answer.status;
    let text = String::from_utf8_lossy(&answer.body).to_ascii_lowercase();
    if text.contains("client not found")
        || (text.contains("invalid_client") && text.contains("client is invalid"))
    {
        Probe::Unknown
    } else if text.contains("client disabled") {
        Probe::Disabled
    } else if matches!(status, 200 | 302 | 303 | 400) {
        Probe::Exists
    } else {
        Probe::Inconclusive
    }
}

/// Keycloak's authorization endpoint next to its token endpoint.
fn keycloak_auth_endpoint(token_url: Option<&Url>) -> Option<Url> {
    let t = token_url?.as_str();
    let base = t.strip_suffix("/protocol/openid-connect/token")?;
    Url::parse(&format!("{base}/protocol/openid-connect/auth")).ok()
}

/// The HTTP clients doctor uses, all from `tw_idp`'s factory: the IdP client every component
/// uses (so doctor refuses what they would), and one that keeps the first [`MAX_BODY`] bytes of
/// an answer, for the authorization-endpoint probe (the `--url` call has its own,
/// [`Clients::call`]).
struct Clients {
    idp: IdpHttp,
    probe: IdpHttp,
}

impl Clients {
    fn new() -> Result<Self, tw_core::Error> {
        Ok(Self {
            idp: IdpHttp::new()?,
            probe: HttpSettings::default()
                .with_max_answer_bytes(MAX_BODY)
                .build()?,
        })
    }

    /// The client of the `--url` call: [`CALL_TIMEOUT`], answers cut at [`MAX_BODY`].
    fn call() -> Result<IdpHttp, tw_core::Error> {
        HttpSettings::default()
            .with_max_answer_bytes(MAX_BODY)
            .with_request_timeout(CALL_TIMEOUT)
            .build()
    }
}

/// The discovery document is JSON, but not one: `problem` says what is missing or mistyped.
fn not_a_discovery_document(pn: Option<&str>, url: &str, problem: &str) -> Step {
    Step::fail(
        "discovery",
        pn,
        "discovery_invalid",
        format!("{url} is JSON, but not an OpenID discovery document"),
    )
    .detail(format!("problem: {problem}"))
    .fix("the issuer URL must be the realm's (…/realms/REALM), whose discovery document has `issuer` and `token_endpoint`")
}

fn explain_token_failure(
    step: Step,
    cause: &'static str,
    network: Option<NetworkClass>,
    p: &ProfileConfig,
) -> Step {
    let host = p
        .token_url
        .as_ref()
        .or(p.issuer.as_ref())
        .or(p.custom.as_ref().map(|c| &c.url))
        .map(host_of)
        .unwrap_or_default();
    if let Some(class) = network.filter(|c| *c != NetworkClass::Other) {
        return explain_network(class, step, &host);
    }
    match cause {
        "invalid_scope" => step
            .detail("a requested scope does not exist in the realm or is not assigned to this client")
            .fix(format!("check `scope` (now {:?}); in Keycloak add the client scope to the client (Clients → CLIENT → Client scopes)", p.scope.as_deref().unwrap_or(""))),
        "invalid_grant" => step
            .detail("the refresh token was refused: expired, revoked, or already used (rotation)")
            .fix("mint a new offline/refresh token; keep `refresh_token_state_file` so rotated tokens survive restarts"),
        "rate_limited" => step
            .detail("the IdP (or a proxy in front) rate-limits this client")
            .fix("the agent backs off by itself; look for other processes fetching a token per request"),
        "idp_5xx" => step
            .detail("the IdP failed (5xx): down, restarting, or its database is unavailable")
            .fix("check the IdP's health and logs; the agent retries with backoff"),
        "token_endpoint_redirect" => step
            .fix("use the exact token URL: https vs http, and the realm path (…/realms/REALM/protocol/openid-connect/token)"),
        "token_response_invalid" => step
            .detail("the token endpoint answered 200 without a usable token (an HTML page from a proxy?)")
            .fix("check the token URL and any proxy in front of the IdP"),
        _ => step,
    }
}

/// What a custom login's failure means and how to fix it; the cause is the API's code.
fn explain_custom_login_failure(
    step: Step,
    failure: CustomLoginFailure,
    p: &ProfileConfig,
) -> Step {
    let Some(custom) = &p.custom else {
        return step;
    };
    let declares_errors = custom.error_pointer.is_some();
    match failure {
        CustomLoginFailure::Rejected => {
            let step = step
                .detail("the login endpoint refused the login; the agent does not retry it until `timing.backoff_max` has passed")
                .fix("check the credentials in `custom.fields` / `custom.secret_fields`");
            if declares_errors {
                step.fix(format!(
                    "if the portal answers a good login with {} at `custom.error_pointer` too, correct `custom.error_values`",
                    custom.error_pointer.as_deref().unwrap_or_default()
                ))
            } else {
                step
            }
        }
        CustomLoginFailure::Malformed => {
            let step = step
                .detail("the login endpoint answered 2xx, but not with a usable token: not JSON, no token where the profile looks for it, or an expiry that has already passed")
                .fix(format!(
                    "if the answer holds a token, set `custom.token_pointer` (now {:?}; a JSON pointer, e.g. /data/token) to where it is",
                    custom.token_pointer
                ));
            let step = if declares_errors {
                step
            } else {
                step.fix(format!("if this is how the portal refuses a login (a 2xx with e.g. {{\"status\":\"error\"}}), declare it: `custom.error_pointer = \"/status\"` and `custom.error_values = [\"error\"]`, so it counts as a refusal ({}) and is not retried", CustomLoginFailure::Rejected.code()))
            };
            step.fix("an expiry in the past: compare this machine's clock with the portal's, or check `custom.expires_at_pointer`")
        }
        CustomLoginFailure::Unavailable => step
            .detail("the login endpoint failed (408, 429 or 5xx): down, restarting or overloaded")
            .fix("check the portal's health; the agent retries with backoff"),
    }
}

/// Why the gateway would refuse the token, with what the token has and what is demanded.
fn explain_refusal(
    r: &InspectReport,
    check: Check,
    description: &str,
    gw: &GatewayConfig,
    name: &str,
    skewed: bool,
    now: UnixTime,
) -> Step {
    let pn = Some(name);
    let claims = r.claims.clone().unwrap_or_default();
    let strings = |k: &str| -> Vec<String> {
        match claims.get(k) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let iss = strings("iss").into_iter().next().unwrap_or_default();
    let issuer_cfg = gw.issuers.iter().find(|i| i.issuer == iss);
    let time = |k: &str| claims.get(k).and_then(Value::as_i64);
    let summary = format!("the gateway would refuse this token: {description}");
    match check {
        Check::Audience => {
            let demanded = issuer_cfg.map(|i| i.audiences.clone()).unwrap_or_default();
            Step::fail("claims", pn, "audience_mismatch", summary)
                .detail(format!("the token's aud: {}", list_or_none(&strings("aud").iter().map(String::as_str).collect::<Vec<_>>())))
                .detail(format!("the gateway demands one of: {}", demanded.join(", ")))
                .fix(format!("Keycloak: add an Audience mapper (Clients → {} → Client scopes → dedicated scope → Add mapper → Audience) with the audience {}", strings("azp").first().map_or("CLIENT", String::as_str), demanded.first().map_or("API", String::as_str)))
                .fix("or add the token's audience to `gateway.issuers[].audiences` if the API is meant to accept it")
        }
        Check::AuthorizedParty => {
            let allowed = issuer_cfg.map(|i| i.allowed_azp.clone()).unwrap_or_default();
            let azp = strings("azp").into_iter().next().unwrap_or_else(|| "(none)".to_owned());
            Step::fail("claims", pn, "azp_not_allowed", summary)
                .detail(format!("the token's azp (the client it was issued to): {azp}"))
                .detail(format!("the gateway allows: {}", allowed.join(", ")))
                .fix(format!("add \"{azp}\" to `gateway.issuers[].allowed_azp`, or fetch the token with an allowed client"))
        }
        Check::Issuer => Step::fail("claims", pn, "issuer_not_trusted", summary)
            .detail(format!("the token's iss: {iss}"))
            .detail(format!("the gateway trusts: {}", gw.issuers.iter().map(|i| i.issuer.as_str()).collect::<Vec<_>>().join(", ")))
            .fix("make `gateway.issuers[].issuer` exactly the token's iss (scheme, host, port and path; Keycloak derives it from its public hostname)"),
        Check::Expiry | Check::NotBefore | Check::IssuedAt => {
            let mut step = if skewed || check != Check::Expiry {
                Step::fail("claims", pn, "clock_skew", summary)
                    .detail("the token was just issued, so the clocks disagree (see the clock step)")
                    .fix("synchronise the clocks with NTP on this machine, the IdP's and the gateway's")
            } else {
                Step::fail("claims", pn, "token_expired", summary)
                    .fix("the token expired before it could be used: raise the access token lifespan, or check the clocks")
            };
            for k in ["iat", "nbf", "exp"] {
                if let Some(t) = time(k) {
                    let rel = t.saturating_mul(1000).saturating_sub(now.as_millis()) / 1000;
                    step = step.detail(format!("{k}: {t} ({rel:+} s from the local clock)"));
                }
            }
            step
        }
        Check::TokenType => Step::fail("claims", pn, "token_type", summary)
            .fix("send the access token, not an ID or refresh token; or set `gateway.issuers[].token_type`"),
        Check::Signature | Check::Key => Step::fail("claims", pn, "signature_invalid", summary)
            .detail("the gateway does not hold the key this token is signed with")
            .fix("check that the gateway's issuer (or `jwks_url`) is the same realm that issued the token"),
        Check::Algorithm => Step::fail("claims", pn, "algorithm_not_allowed", summary)
            .fix("add the token's alg to `gateway.issuers[].algorithms`, or change the realm's signing algorithm"),
        Check::KeysUnavailable => Step::fail("claims", pn, "jwks_unavailable", summary)
            .fix("the gateway cannot load the issuer's keys: check discovery / `jwks_url` from the gateway's host"),
        _ => Step::fail("claims", pn, "token_rejected", summary),
    }
}

async fn authz_step(
    report: &mut Report,
    name: &str,
    authz: &Authz,
    gateway: Option<&GatewayView>,
    token: &VerifiedToken,
    method: &str,
    path: &str,
) -> Option<String> {
    let pn = Some(name);
    let decision = authz
        .decide(&AuthzRequest {
            method,
            host: None,
            path: Some(path),
            token,
        })
        .await;
    let authz_cfg = gateway.and_then(|g| g.cfg.authz.as_ref());
    let principal = authz_cfg.map(|a| PrincipalExtractor::new(a).principal(token));
    let roles: Vec<String> = principal
        .as_ref()
        .map(|p| p.roles.iter().cloned().collect())
        .unwrap_or_default();
    // The registry command that names this account, when the registry is one of the
    // permission sources for the token's issuer.
    let registry_account = match (authz_cfg, &principal) {
        (Some(a), Some(p)) if registry_is_source(a, &token.issuer) => Some(account_flags(p)),
        _ => None,
    };
    let roles_line = format!(
        "the token's roles: {}",
        list_or_none(&roles.iter().map(String::as_str).collect::<Vec<_>>())
    );
    match decision {
        AuthzDecision::Allow { permissions, rule } => {
            report.push(
                Step::pass("authz", pn, format!("rule `{rule}` allows {method} {path}")).detail(
                    format!(
                        "permissions granted: {}",
                        list_or_none(&permissions.iter().collect::<Vec<_>>())
                    ),
                ),
            );
            Some(rule)
        }
        AuthzDecision::Deny {
            code,
            description,
            rule,
            scope,
        } => {
            let cause = match code {
                "insufficient_scope" => "missing_permission",
                "no_matching_rule" => "no_matching_rule",
                "unknown_principal" => "unknown_principal",
                "account_disabled" => "account_disabled",
                _ => "forbidden",
            };
            let mut step = Step::fail(
                "authz",
                pn,
                cause,
                format!("the gateway would answer 403 {code} to {method} {path}"),
            )
            .detail(description)
            .detail(roles_line);
            if let Some(rule) = &rule {
                step = step.detail(format!("deciding rule: {rule}"));
            }
            let permission = scope.as_deref().unwrap_or("PERMISSION");
            step = match cause {
                "missing_permission" => {
                    let step = step.fix(format!(
                        "grant {}: map one of the token's roles to it in [gateway.authz.roles], or give the service account a role that maps to it (Keycloak: Clients → {} → Service accounts roles → Assign role)",
                        scope.as_deref().unwrap_or("the permission"),
                        token.client_id.as_deref().unwrap_or("CLIENT")
                    ));
                    match &registry_account {
                        Some(account) => step.fix(format!(
                            "or grant it in the account registry (a permission source of this gateway): `tokenwarden accounts grant {account} ROLE` with a ROLE holding {permission} (`tokenwarden roles list`; a new one: `tokenwarden roles create ROLE --permission {}`; an account not registered yet: `tokenwarden accounts create {account} --role ROLE`)",
                            shell_word(permission)
                        )),
                        None => step,
                    }
                }
                "no_matching_rule" => step.fix("add a [[gateway.authz.rules]] entry whose `paths` and `methods` match this request (rules are ordered; the first match wins)"),
                "unknown_principal" => match &registry_account {
                    Some(account) => step.fix(format!(
                        "map one of the token's roles in [gateway.authz.roles], or register the account: `tokenwarden accounts create {account} --role ROLE`"
                    )),
                    None => step.fix("map one of the token's roles in [gateway.authz.roles] (the account registry is not a permission source for this issuer)"),
                },
                "account_disabled" => step.fix(format!(
                    "enable the account: `tokenwarden accounts enable {}`",
                    registry_account.as_deref().unwrap_or("…")
                )),
                _ => step,
            };
            report.push(step);
            rule
        }
        AuthzDecision::RateLimited { retry_after } => {
            report.push(Step::warn(
                "authz",
                pn,
                "rate_limited",
                format!(
                    "the gateway would rate-limit this caller (retry after {})",
                    humanize(retry_after)
                ),
            ));
            None
        }
        AuthzDecision::Unavailable { description, .. } => {
            report.push(Step::warn("authz", pn, "registry_unavailable", description));
            None
        }
    }
}

/// Whether `[gateway.authz]` reads the account registry for tokens of `issuer` (`issuer_sources`
/// for that issuer, else `sources`).
fn registry_is_source(a: &tw_config::AuthzConfig, issuer: &str) -> bool {
    a.issuer_sources
        .get(issuer)
        .unwrap_or(&a.sources)
        .contains(&PermissionSourceKind::Registry)
}

/// `--issuer ISS --client-id ID` (a service account) or `--issuer ISS --subject SUB`: the
/// account the registry would look up for this principal, as `tokenwarden accounts` flags.
fn account_flags(p: &tw_authz::Principal) -> String {
    let identity = match (p.is_service_account(), &p.client_id, &p.subject) {
        (true, Some(client), _) => format!("--client-id {}", shell_word(client)),
        (_, _, Some(subject)) => format!("--subject {}", shell_word(subject)),
        _ => "--subject SUBJECT".to_owned(),
    };
    format!("--issuer {} {identity}", shell_word(&p.issuer))
}

/// `s` as one shell word: as is when it holds only harmless characters, else single-quoted, so a
/// claim value cannot turn a suggested command into another one.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Calls the URL with the token, directly (not through the agent's proxy, which would retry
/// and hide the first answer).
#[allow(clippy::too_many_arguments)]
async fn call_step(
    report: &mut Report,
    name: &str,
    url: &Url,
    method: &str,
    token: &Secret,
    claims_ok: bool,
    rule: Option<String>,
    now: UnixTime,
) {
    let pn = Some(name);
    let http = match Clients::call() {
        Ok(h) => h,
        Err(e) => {
            report.push(failed_on("call", pn, "internal", &e));
            return;
        }
    };
    let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
        report.push(Step::fail(
            "call",
            pn,
            "usage",
            format!("`{method}` is not an HTTP method"),
        ));
        return;
    };
    let target = format!("{method} {url}");
    let req = http.request(m, url.clone()).bearer_auth(token.expose());
    let resp = match http
        .send_with(req, "the called URL", now, Overflow::KeepPrefix)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let class = e.network().unwrap_or(NetworkClass::Other);
            report.push(
                explain_network(
                    class,
                    Step::fail("call", pn, class.as_str(), format!("{target}: no answer")),
                    &host_of(url),
                )
                .detail(format!("error: {}", root_cause(&e))),
            );
            return;
        }
    };
    let status = resp.status;
    let challenge = resp
        .header(reqwest::header::WWW_AUTHENTICATE)
        .map(str::to_owned);
    let retry_after = resp.header(reqwest::header::RETRY_AFTER).map(str::to_owned);
    let body = resp.body;
    let error: Value = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .unwrap_or(Value::Null);
    let field = |k: &str| {
        error
            .get(k)
            .or_else(|| error.get("details").and_then(|d| d.get(k)))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let step = match status {
        200..=299 => {
            let mut s = Step::pass("call", pn, format!("{target}: HTTP {status}"));
            if let Some(rule) = rule {
                s = s.detail(format!("allowed by rule `{rule}`"));
            }
            s
        }
        401 => {
            let params = challenge
                .as_deref()
                .map(challenge_params)
                .unwrap_or_default();
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let mut s = Step::fail(
                "call",
                pn,
                "unauthorized_401",
                format!("{target}: HTTP 401, the token was not accepted"),
            );
            match (get("error"), get("error_description")) {
                (Some(err), desc) => {
                    s = s.detail(format!(
                        "WWW-Authenticate: error={err}{}",
                        desc.map(|d| format!(", error_description=\"{d}\""))
                            .unwrap_or_default()
                    ));
                }
                (None, _) => {
                    s = s.detail("no error in WWW-Authenticate: no token arrived (a proxy in between dropped the Authorization header?)");
                }
            }
            if claims_ok {
                s = s.detail("this token passed the claims check above: the API verifies with other rules than the gateway configuration used here (another issuer, audience, or clock?)");
            }
            s.fix("see the claims step; send the access token of this profile, fetched fresh")
        }
        403 => {
            let code = field("code").unwrap_or_else(|| "forbidden".to_owned());
            let mut s = Step::fail(
                "call",
                pn,
                "forbidden_403",
                format!("{target}: HTTP 403 {code}"),
            );
            if let Some(m) = field("message") {
                s = s.detail(m);
            }
            if let Some(r) = field("rule") {
                s = s.detail(format!("deciding rule: {r}"));
            }
            if let Some(sc) = field("scope") {
                s = s.detail(format!("required permission: {sc}"));
            }
            s.fix("the token is valid but lacks a permission: see the authz step, [gateway.authz.roles] and the service account's roles")
        }
        429 => Step::fail(
            "call",
            pn,
            "rate_limited_429",
            format!("{target}: HTTP 429, too many requests"),
        )
        .detail(format!(
            "Retry-After: {}",
            retry_after.as_deref().unwrap_or("(none)")
        ))
        .fix("slow down, or raise the caller's limit (gateway.authz.rate_limits)"),
        500 | 502..=504 => {
            let (what, fix) = match status {
                502 => (
                    "the gateway or proxy could not reach the API behind it (down, refused, or a wrong upstream address)",
                    "start the upstream API; check the route's `upstream` URL",
                ),
                503 => (
                    "the service is unavailable: the gateway cannot verify now (the IdP's keys or the registry are unreachable) or the API is down",
                    "see the JSON code; check the IdP and the registry from the gateway's host",
                ),
                504 => (
                    "the API behind the gateway did not answer in time",
                    "check the upstream's health; raise the route's `timeout` if it is merely slow",
                ),
                _ => ("the API itself failed", "read the API's logs"),
            };
            let mut s = Step::fail(
                "call",
                pn,
                "upstream_5xx",
                format!("{target}: HTTP {status}"),
            )
            .detail(what.to_owned());
            if let Some(c) = field("code") {
                s = s.detail(format!("error code: {c}"));
            }
            s.fix(fix)
        }
        _ => Step::fail(
            "call",
            pn,
            if status >= 500 {
                "upstream_5xx"
            } else {
                "http_4xx"
            },
            format!("{target}: HTTP {status}"),
        )
        .fix("check the URL (method and path) against the API's routes"),
    };
    report.push(step);
}

/// `Bearer realm="x", error="invalid_token", error_description="..."` → name/value pairs.
fn challenge_params(header: &str) -> Vec<(String, String)> {
    let rest = header
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .trim_start();
    let mut out = Vec::new();
    let mut s = rest;
    while let Some(eq) = s.find('=') {
        let name = s[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &s[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_owned(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((name, value));
        s = next;
    }
    out
}

fn leeway_for(gateway: Option<&GatewayView>, issuer: Option<&Url>) -> Duration {
    let Some(gw) = gateway else {
        return DEFAULT_LEEWAY;
    };
    issuer
        .and_then(|i| {
            gw.cfg
                .issuers
                .iter()
                .find(|c| c.issuer.trim_end_matches('/') == i.as_str().trim_end_matches('/'))
        })
        .map_or(DEFAULT_LEEWAY, |c| c.leeway)
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{} ms", d.as_millis())
    } else if secs < 120 {
        format!("{secs} s")
    } else if secs < 7200 {
        format!("{} min", secs / 60)
    } else {
        format!("{} h", secs / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let p = challenge_params(
            r#"Bearer realm="tokenwarden", error="invalid_token", error_description="aud: no accepted audience""#,
        );
        assert_eq!(p[0], ("realm".to_owned(), "tokenwarden".to_owned()));
        assert_eq!(p[1], ("error".to_owned(), "invalid_token".to_owned()));
        assert_eq!(p[2].1, "aud: no accepted audience");
        assert!(challenge_params("Bearer").is_empty());
        assert!(challenge_params("Bearer error=\"unterminated").len() == 1);
    }

    #[test]
    fn claim_values_stay_one_shell_word_in_suggested_commands() {
        for (value, word) in [
            ("agent-basic", "agent-basic"),
            (
                "https://kc.example/realms/dls",
                "https://kc.example/realms/dls",
            ),
            ("a b", "'a b'"),
            ("x; rm -rf ~", "'x; rm -rf ~'"),
            ("$(id)", "'$(id)'"),
            ("`id`", "'`id`'"),
            ("it's", "'it'\\''s'"),
            ("*", "'*'"),
            ("new\nline", "'new\nline'"),
            ("", "''"),
        ] {
            assert_eq!(shell_word(value), word, "{value:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn answers_of_any_shape_never_panic(header in ".*", body in ".*") {
            let _ = challenge_params(&header);
            let _ = tw_idp::http::network_class_of_text(&body);
            if let Err(e) = tw_idp::classify_token_response(401, body.as_bytes(), None) {
                let _ = classify::oauth_description(&e);
                let _ = credentials_of(&e, AuthMethod::ClientSecretBasic);
            }
        }
    }

    #[test]
    fn keycloak_authorization_endpoint_is_derived_from_the_token_url() {
        let t = Url::parse("https://kc.example/realms/dls/protocol/openid-connect/token").unwrap();
        assert_eq!(
            keycloak_auth_endpoint(Some(&t)).unwrap().as_str(),
            "https://kc.example/realms/dls/protocol/openid-connect/auth"
        );
        let other = Url::parse("https://idp.example/oauth/token").unwrap();
        assert!(keycloak_auth_endpoint(Some(&other)).is_none());
    }
}
