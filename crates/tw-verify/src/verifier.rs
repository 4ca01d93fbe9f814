//! The verifier: issuers, the verified-token cache and the ordered checks.

use crate::error::{Check, VerifyError};
use crate::introspect::{Answer, Introspector};
use crate::jwks::{FetchCause, JwksSource, UnknownKid};
use crate::keys::VerifyKey;
use crate::metrics_names::{
    METRIC_CACHE_HITS, METRIC_CACHE_MISSES, METRIC_DECISIONS, METRIC_VERIFY_SECONDS,
};
use crate::parse::{
    Alg, RegisteredClaims, UnverifiedJwt, check_header, check_size, decode, is_b64token,
    looks_like_jwt,
};
use crate::settings::{TokenTypeMode, VerifierSettings, check_issuers};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Instrument;
use tw_core::{Clock, Error, TokenFingerprint, UnixTime};

/// The verified token and how it was verified live in `tw-claims` (no HTTP, no JOSE), so crates
/// that only read them need not depend on this one.
pub use tw_claims::{VerifiedBy, VerifiedToken};

/// Per-call options.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Also introspect a valid JWT at its issuer (revocation check); it must be active.
    pub introspect: bool,
}

/// One issuer's rules, from the config.
struct Issuer {
    name: String,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    allowed_azp: Vec<String>,
    leeway: Duration,
    token_type: TokenTypeMode,
    jwks: Arc<JwksSource>,
    introspection: Option<Introspector>,
}

/// Where opaque tokens (no dot) go.
#[derive(Debug, Clone, Copy)]
enum OpaqueRoute {
    /// No issuer has introspection: refused as malformed.
    Refused,
    /// Exactly one issuer has introspection: asked there.
    Single(usize),
    /// Several have: the issuer cannot be known, so refused rather than asking them all (which
    /// would send every token to every IdP).
    Ambiguous,
}

#[derive(Clone)]
struct CachedToken {
    token: Arc<VerifiedToken>,
    issuer: usize,
    key: Arc<VerifyKey>,
    ttl: Duration,
    /// Estimated bytes held by this entry (see [`entry_weight`]), computed once at insertion.
    weight: u32,
}

/// Heap bytes one allocation of `n` bytes costs (malloc's header and 16-byte granularity, 32-byte
/// minimum chunk).
fn alloc_bytes(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).div_ceil(16).max(2) * 16
    }
}

/// A `BTreeMap<String, Value>` node: 11 keys and 11 values, plus parent link and lengths; internal
/// nodes add 12 child pointers.
const BTREE_LEAF_BYTES: usize = 11 * (24 + 32) + 16;
const BTREE_INTERNAL_BYTES: usize = BTREE_LEAF_BYTES + 12 * 8;

fn string_bytes(s: &str) -> usize {
    alloc_bytes(s.len())
}

/// Heap bytes below a JSON value (not counting the value's own 32-byte slot).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => string_bytes(s),
        Value::Array(a) => {
            alloc_bytes(a.capacity() * 32) + a.iter().map(value_bytes).sum::<usize>()
        }
        Value::Object(m) => map_bytes(m),
    }
}

fn map_bytes(m: &Map<String, Value>) -> usize {
    if m.is_empty() {
        return 0;
    }
    // A half-full B-tree in the worst case: one leaf per 6 entries, one internal node per 6 leaves.
    let leaves = m.len().div_ceil(6);
    let internal = if leaves > 1 { leaves.div_ceil(6) } else { 0 };
    leaves * alloc_bytes(BTREE_LEAF_BYTES)
        + internal * alloc_bytes(BTREE_INTERNAL_BYTES)
        + m.iter()
            .map(|(k, v)| string_bytes(k) + value_bytes(v))
            .sum::<usize>()
}

/// The cache's own cost of an entry: its key, the value, and moka's bookkeeping (entry info,
/// access-order and timer nodes, hash-table slot), rounded up.
const CACHE_ENTRY_OVERHEAD: usize = 512;

/// Estimated bytes a cached token holds: the claims map and the extracted fields, the `Arc`'d
/// [`VerifiedToken`] itself and the cache's per-entry overhead. Deliberately on the high side, so
/// that the byte bound is a bound on the allocator's real footprint.
fn entry_weight(t: &VerifiedToken) -> u32 {
    let opt = |s: &Option<String>| s.as_deref().map_or(0, string_bytes);
    let list =
        |v: &[String]| alloc_bytes(v.len() * 24) + v.iter().map(|s| string_bytes(s)).sum::<usize>();
    let bytes = CACHE_ENTRY_OVERHEAD
        + alloc_bytes(std::mem::size_of::<VerifiedToken>() + 16)
        + string_bytes(&t.issuer)
        + opt(&t.subject)
        + opt(&t.client_id)
        + opt(&t.username)
        + list(&t.scopes)
        + list(&t.audiences)
        + map_bytes(&t.claims);
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

struct CachedExpiry;

impl moka::Expiry<TokenFingerprint, CachedToken> for CachedExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenFingerprint,
        value: &CachedToken,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Status of one issuer, for readiness probes and `token inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    pub issuer: String,
    pub keys_loaded: bool,
    pub key_ids: Vec<String>,
    pub introspection: bool,
}

/// The bearer-token verifier. Build once, share as `Arc<Verifier>`, call [`Verifier::start`].
pub struct Verifier {
    issuers: Vec<Arc<Issuer>>,
    by_name: HashMap<String, usize>,
    opaque: OpaqueRoute,
    max_token_bytes: usize,
    cache: Option<moka::sync::Cache<TokenFingerprint, CachedToken>>,
    clock: Arc<dyn Clock>,
    started: AtomicBool,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.by_name.keys().collect::<Vec<_>>())
            .field("max_token_bytes", &self.max_token_bytes)
            .finish_non_exhaustive()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

fn cfg_err(key: String, msg: impl Into<String>) -> Error {
    let msg = msg.into();
    tw_core::SettingsProblem {
        key: key.to_string(),
        message: msg.to_string(),
    }
    .into_error()
}

/// The label of an issuer in metrics: configured issuers only, so tokens cannot mint label values.
fn issuer_label(v: &Verifier, idx: Option<usize>) -> String {
    idx.and_then(|i| v.issuers.get(i))
        .map(|i| i.name.clone())
        .unwrap_or_else(|| "unknown".to_owned())
}

type Fail = (Option<usize>, VerifyError);

/// Every check of a JWT, in the one order [`Verifier::verify`] runs them (stopping at the first
/// failure) and `inspect` reports them (`tw_verify::INSPECT_ORDER`).
pub(crate) const CHECK_ORDER: [Check; 14] = [
    Check::Size,
    Check::Format,
    Check::Header,
    Check::Issuer,
    Check::Algorithm,
    Check::Key,
    Check::Signature,
    Check::Expiry,
    Check::NotBefore,
    Check::IssuedAt,
    Check::Audience,
    Check::AuthorizedParty,
    Check::TokenType,
    Check::Introspection,
];

/// The checks of a JWT's claims, after its signature: the run of [`CHECK_ORDER`] from `Expiry`
/// to `TokenType`.
pub(crate) const JWT_CLAIM_CHECKS: &[Check] = CHECK_ORDER.as_slice().split_at(7).1.split_at(6).0;

/// The checks of an opaque token once the issuer is known, in the one order the verifier runs
/// them and `inspect` reports them: the introspection answer (active, same issuer), then its
/// claims.
pub(crate) const OPAQUE_CHECKS: [Check; 6] = [
    Check::Introspection,
    Check::Expiry,
    Check::NotBefore,
    Check::Audience,
    Check::AuthorizedParty,
    Check::TokenType,
];

impl Verifier {
    /// Validates the config and builds the verifier. No I/O (secrets are read at use).
    pub fn new(settings: &VerifierSettings, clock: Arc<dyn Clock>) -> Result<Verifier, Error> {
        let cfg = settings;
        let list_key = format!("{}.issuers", cfg.config_key);
        check_issuers(&cfg.issuers, &list_key).map_err(|p| cfg_err(p.key, p.message))?;
        if cfg.max_token_bytes == 0 {
            return Err(cfg_err(
                format!("{}.max_token_bytes", cfg.config_key),
                "must be positive",
            ));
        }
        let http = crate::idp_http()?;
        let mut issuers = Vec::new();
        let mut by_name = HashMap::new();
        for (i, ic) in cfg.issuers.iter().enumerate() {
            let k = |f: &str| format!("{list_key}[{i}].{f}");
            by_name.insert(ic.issuer.clone(), i);
            let algorithms = ic
                .algorithms
                .iter()
                .filter_map(|a| Alg::from_name(a))
                .collect();
            // The issuer is compared byte for byte, as tokens' `iss` is.
            let discovery = Arc::new(tw_idp::DiscoveryCache::new(
                ic.issuer.clone(),
                tw_idp::IssuerMatch::Exact,
                None,
                http.clone(),
            ));
            let introspection = ic.introspection.as_ref().map(|intro| {
                Introspector::new(
                    ic.issuer.clone(),
                    intro,
                    k("introspection.client_secret"),
                    discovery.clone(),
                    clock.clone(),
                    http.clone(),
                )
            });
            let jwks = Arc::new(JwksSource::new(
                ic.issuer.clone(),
                ic.jwks_url.clone(),
                discovery,
                http.clone(),
                clock.clone(),
                ic.jwks_ttl,
                ic.jwks_refetch_cooldown,
            ));
            issuers.push(Arc::new(Issuer {
                name: ic.issuer.clone(),
                audiences: ic.audiences.clone(),
                algorithms,
                allowed_azp: ic.allowed_azp.clone(),
                leeway: ic.leeway,
                token_type: ic.token_type,
                jwks,
                introspection,
            }));
        }
        let with_intro: Vec<usize> = issuers
            .iter()
            .enumerate()
            .filter(|(_, i)| i.introspection.is_some())
            .map(|(n, _)| n)
            .collect();
        let opaque = match with_intro.as_slice() {
            [] => OpaqueRoute::Refused,
            [one] => OpaqueRoute::Single(*one),
            _ => OpaqueRoute::Ambiguous,
        };
        // Bounded by bytes (the weigher) and by entries: every entry weighs at least
        // `max_bytes / max_entries`, so the byte budget also caps the count.
        let cache =
            (cfg.verified_cache_entries > 0 && cfg.verified_cache_max_bytes > 0).then(|| {
                let (max_bytes, max_entries) =
                    (cfg.verified_cache_max_bytes, cfg.verified_cache_entries);
                let floor = u32::try_from(max_bytes.div_ceil(max_entries)).unwrap_or(u32::MAX);
                // (With the floor clamped to u32::MAX, the capacity keeps the count bound.)
                let capacity = max_bytes.min(max_entries.saturating_mul(u64::from(floor)));
                moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .weigher(move |_: &TokenFingerprint, v: &CachedToken| v.weight.max(floor))
                    .expire_after(CachedExpiry)
                    .build()
            });
        Ok(Verifier {
            issuers,
            by_name,
            opaque,
            max_token_bytes: cfg.max_token_bytes,
            cache,
            clock,
            started: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Discovery and the first JWKS fetch of every issuer (concurrently), then one background
    /// refresher per issuer (refresh at 80 % of `jwks_ttl`; after a failure, retries from 1 s
    /// doubling to 30 s, keeping the last good keys). Returns once the first attempts are done,
    /// whether they succeeded or not: see [`Verifier::is_ready`]. A second call does nothing.
    pub async fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let loads = self.issuers.iter().map(|iss| {
            let jwks = iss.jwks.clone();
            async move { jwks.fetch(FetchCause::Startup).await }
        });
        futures::future::join_all(loads).await;
        let mut tasks = self.tasks.lock();
        for iss in &self.issuers {
            let h = tokio::spawn(JwksSource::run(Arc::downgrade(&iss.jwks)));
            tasks.push(h.abort_handle());
        }
    }

    /// Entries in the verified-token cache (after pending evictions are applied); 0 without a
    /// cache. For memory diagnostics and tests.
    pub fn cached_tokens(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    /// Estimated bytes held by the verified-token cache (the sum of its entries' weights, each at
    /// least `verified_cache_max_bytes / verified_cache_entries`); at most
    /// `verified_cache_max_bytes` once pending evictions are applied.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }

    /// Every issuer has loaded its keys at least once.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.jwks.is_loaded())
    }

    /// Per-issuer state (for readiness details).
    pub fn status(&self) -> Vec<IssuerStatus> {
        self.issuers
            .iter()
            .map(|i| {
                let keys = i.jwks.current();
                IssuerStatus {
                    issuer: i.name.clone(),
                    keys_loaded: keys.is_some(),
                    key_ids: keys.map(|k| k.kids()).unwrap_or_default(),
                    introspection: i.introspection.is_some(),
                }
            })
            .collect()
    }

    /// Fetches every issuer's JWKS now (as the background refresher does when due), joining
    /// fetches already in flight. Failures keep the last good keys. True if all succeeded.
    pub async fn refresh_keys(&self) -> bool {
        let loads = self.issuers.iter().map(|iss| {
            let jwks = iss.jwks.clone();
            async move {
                let cause = if jwks.is_loaded() {
                    FetchCause::Ttl
                } else {
                    FetchCause::Startup
                };
                jwks.fetch(cause).await
            }
        });
        futures::future::join_all(loads)
            .await
            .iter()
            .all(Result::is_ok)
    }

    /// Verifies a bearer token (the value after `Bearer `). Checks in order, stopping at the first
    /// failure: size, shape, header, issuer, algorithm, key, signature, exp, nbf, iat, aud, azp,
    /// token type; then, with `opts.introspect`, introspection. Opaque tokens (no dot) are
    /// introspected at the one issuer that has introspection configured (refused when none or
    /// several have). Valid JWTs are cached by SHA-256 until their `exp`.
    pub async fn verify(
        &self,
        token: &str,
        opts: VerifyOptions,
    ) -> Result<Arc<VerifiedToken>, VerifyError> {
        let started = std::time::Instant::now();
        let result = self.verify_inner(token, opts).await;
        let (idx, outcome, class) = match &result {
            Ok((i, _)) => (Some(*i), "ok", "ok"),
            Err((i, e)) => (
                *i,
                e.check().code(),
                if e.is_transient() {
                    "unavailable"
                } else {
                    "refused"
                },
            ),
        };
        metrics::counter!(METRIC_DECISIONS, "issuer" => issuer_label(self, idx), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(METRIC_VERIFY_SECONDS, "outcome" => class)
            .record(started.elapsed().as_secs_f64());
        result.map(|(_, t)| t).map_err(|(_, e)| e)
    }

    async fn verify_inner(
        &self,
        token: &str,
        opts: VerifyOptions,
    ) -> Result<(usize, Arc<VerifiedToken>), Fail> {
        check_size(token, self.max_token_bytes).map_err(|e| (None, e))?;
        let fp = TokenFingerprint::of(token);
        if let Some((idx, hit)) = self.cache_lookup(&fp) {
            if opts.introspect {
                self.introspection_gate(idx, token, fp)
                    .await
                    .map_err(|e| (Some(idx), e))?;
            }
            return Ok((idx, hit));
        }
        let span = tracing::debug_span!("verify_token", token = %fp.short(), issuer = tracing::field::Empty);
        async {
            let r = if looks_like_jwt(token) {
                self.verify_jwt(token, fp, opts).await
            } else {
                self.verify_opaque(token, fp).await
            };
            if let Some(i) = r.as_ref().map_or_else(|(i, _)| *i, |(i, _)| Some(*i)) {
                tracing::Span::current().record("issuer", self.issuers[i].name.as_str());
            }
            match &r {
                Ok(_) => tracing::debug!("token accepted"),
                Err((_, e)) => tracing::debug!(
                    check = e.check().code(),
                    reason = e.description(),
                    "token refused"
                ),
            }
            r
        }
        .instrument(span)
        .await
    }

    fn cache_lookup(&self, fp: &TokenFingerprint) -> Option<(usize, Arc<VerifiedToken>)> {
        let cache = self.cache.as_ref()?;
        let Some(entry) = cache.get(fp) else {
            metrics::counter!(METRIC_CACHE_MISSES).increment(1);
            return None;
        };
        let now = self.clock.now();
        let still_published = self.issuers[entry.issuer]
            .jwks
            .current()
            .is_some_and(|set| set.contains_key(&entry.key));
        if now >= entry.token.expires_at || !still_published {
            cache.invalidate(fp);
            metrics::counter!(METRIC_CACHE_MISSES).increment(1);
            return None;
        }
        metrics::counter!(METRIC_CACHE_HITS).increment(1);
        Some((entry.issuer, entry.token))
    }

    async fn verify_jwt(
        &self,
        token: &str,
        fp: TokenFingerprint,
        opts: VerifyOptions,
    ) -> Result<(usize, Arc<VerifiedToken>), Fail> {
        let none = |e| (None, e);
        let jwt = decode(token, self.max_token_bytes).map_err(none)?;
        let alg = check_header(&jwt).map_err(none)?;
        let idx = self.check_issuer(jwt.registered()).map_err(none)?;
        let at = |e| (Some(idx), e);
        let iss = &self.issuers[idx];
        iss.check_alg_allowed(alg).map_err(at)?;
        let keys = self.find_keys(iss, &jwt, alg).await.map_err(at)?;
        let key = check_signature(&jwt, alg, &keys).map_err(at)?;
        let now = self.clock.now();
        let reg = jwt.registered();
        for (_, outcome) in self.jwt_claim_checks(Some(idx), &jwt, now) {
            outcome.map_err(at)?;
        }
        // Passed above, so present.
        let exp = check_exp(reg, now, iss.leeway).map_err(at)?;
        let verified = Arc::new(build_token(
            &iss.name,
            reg,
            jwt.claims().clone(),
            exp,
            VerifiedBy::Jwt,
        ));
        if let Some(cache) = &self.cache {
            // Never served past `exp` (leeway not applied to the cache lifetime).
            let ttl = now.until(exp);
            if !ttl.is_zero() {
                cache.insert(
                    fp,
                    CachedToken {
                        weight: entry_weight(&verified),
                        token: verified.clone(),
                        issuer: idx,
                        key,
                        ttl,
                    },
                );
            }
        }
        if opts.introspect {
            self.introspection_gate(idx, token, fp).await.map_err(at)?;
        }
        Ok((idx, verified))
    }

    fn check_issuer(&self, reg: &RegisteredClaims) -> Result<usize, VerifyError> {
        match &reg.iss {
            None => Err(VerifyError::new(Check::Issuer, "the token has no iss")),
            Some(iss) => self
                .by_name
                .get(iss)
                .copied()
                .ok_or_else(|| VerifyError::new(Check::Issuer, "iss is not a trusted issuer")),
        }
    }

    async fn find_keys(
        &self,
        iss: &Issuer,
        jwt: &UnverifiedJwt,
        alg: Alg,
    ) -> Result<Vec<Arc<VerifyKey>>, VerifyError> {
        let Some(set) = iss.jwks.current() else {
            return Err(VerifyError::new(
                Check::KeysUnavailable,
                format!("the signing keys of {} are not loaded yet", iss.name),
            )
            .with_retry_after(Duration::from_secs(1)));
        };
        match jwt.kid() {
            Some(kid) => {
                let mut found = set.with_kid(kid).to_vec();
                if found.is_empty() {
                    match iss.jwks.unknown_kid(kid).await {
                        UnknownKid::Found(set) => found = set.with_kid(kid).to_vec(),
                        UnknownKid::Unknown => {
                            return Err(VerifyError::new(
                                Check::Key,
                                format!("{} publishes no key with this kid", iss.name),
                            ));
                        }
                    }
                }
                let fitting: Vec<_> = found.into_iter().filter(|k| k.accepts(alg)).collect();
                if fitting.is_empty() {
                    return Err(VerifyError::new(
                        Check::Algorithm,
                        format!("alg {alg} does not match the key published under this kid"),
                    ));
                }
                Ok(fitting)
            }
            None => {
                let c = set.for_alg(alg);
                if c.is_empty() {
                    Err(VerifyError::new(
                        Check::Key,
                        format!(
                            "the token has no kid and {} publishes no {alg} key",
                            iss.name
                        ),
                    ))
                } else {
                    Ok(c)
                }
            }
        }
    }

    async fn verify_opaque(
        &self,
        token: &str,
        fp: TokenFingerprint,
    ) -> Result<(usize, Arc<VerifiedToken>), Fail> {
        let idx = self.opaque_issuer(token).map_err(|e| (None, e))?;
        self.introspect_opaque(idx, token, fp)
            .await
            .map(|t| (idx, t))
            .map_err(|e| (Some(idx), e))
    }

    fn opaque_issuer(&self, token: &str) -> Result<usize, VerifyError> {
        if !is_b64token(token) {
            return Err(VerifyError::new(
                Check::Format,
                "not a JWT, nor a well-formed opaque bearer token",
            ));
        }
        match self.opaque {
            OpaqueRoute::Single(i) => Ok(i),
            OpaqueRoute::Refused => Err(VerifyError::new(
                Check::Format,
                "not a JWT, and no issuer has introspection for opaque tokens",
            )),
            OpaqueRoute::Ambiguous => Err(VerifyError::new(
                Check::Issuer,
                "opaque token, and several issuers have introspection: the issuer cannot be told",
            )),
        }
    }

    async fn introspect_opaque(
        &self,
        idx: usize,
        token: &str,
        fp: TokenFingerprint,
    ) -> Result<Arc<VerifiedToken>, VerifyError> {
        let iss = &self.issuers[idx];
        let Some(intro) = &iss.introspection else {
            return Err(VerifyError::new(
                Check::Format,
                "not a JWT, and the issuer has no introspection",
            ));
        };
        let (claims, reg) = match intro.introspect(token, fp).await? {
            Answer::Inactive => {
                return Err(VerifyError::new(
                    Check::Introspection,
                    format!("{} says the token is not active", iss.name),
                ));
            }
            Answer::Active { claims, registered } => (claims, registered),
        };
        let now = self.clock.now();
        let token_type = claims.get("token_type").and_then(Value::as_str);
        for check in OPAQUE_CHECKS {
            match check {
                // Active (above), and by the same issuer.
                Check::Introspection => iss.check_answer_issuer(&reg)?,
                // `exp` is optional in an introspection answer.
                Check::Expiry => {
                    if let Some(exp) = reg.exp
                        && now >= exp.plus(iss.leeway)
                    {
                        return Err(VerifyError::new(Check::Expiry, "the token has expired"));
                    }
                }
                Check::NotBefore => check_nbf(&reg, now, iss.leeway)?,
                Check::Audience => iss.check_aud(&reg)?,
                Check::AuthorizedParty => {
                    iss.check_azp(reg.azp.as_deref().or(reg.client_id.as_deref()))?
                }
                Check::TokenType => {
                    iss.check_token_type(None, reg.typ.as_deref(), Some(token_type))?
                }
                _ => {}
            }
        }
        let mut claims = (*claims).clone();
        claims.remove("active");
        let expires_at = reg.exp.unwrap_or_else(|| now.plus(intro.cache_ttl()));
        Ok(Arc::new(build_token(
            &iss.name,
            &reg,
            claims,
            expires_at,
            VerifiedBy::Introspection,
        )))
    }

    async fn introspection_gate(
        &self,
        idx: usize,
        token: &str,
        fp: TokenFingerprint,
    ) -> Result<(), VerifyError> {
        let iss = &self.issuers[idx];
        let Some(intro) = &iss.introspection else {
            return Err(VerifyError::new(
                Check::Introspection,
                format!(
                    "introspection is required but {} has none configured",
                    iss.name
                ),
            ));
        };
        match intro.introspect(token, fp).await? {
            Answer::Inactive => Err(VerifyError::new(
                Check::Introspection,
                format!("{} says the token is not active (revoked?)", iss.name),
            )),
            Answer::Active { registered, .. } => iss.check_answer_issuer(&registered),
        }
    }

    /// Each of [`JWT_CLAIM_CHECKS`] in order, with its outcome. Without a trusted issuer only the
    /// time checks run (with no leeway).
    fn jwt_claim_checks(
        &self,
        idx: Option<usize>,
        jwt: &UnverifiedJwt,
        now: UnixTime,
    ) -> Vec<(Check, Result<(), VerifyError>)> {
        let reg = jwt.registered();
        let iss = idx.map(|i| &self.issuers[i]);
        let leeway = iss.map(|i| i.leeway).unwrap_or_default();
        JWT_CLAIM_CHECKS
            .iter()
            .copied()
            .filter_map(|check| {
                let outcome = match (check, iss) {
                    (Check::Expiry, _) => check_exp(reg, now, leeway).map(|_| ()),
                    (Check::NotBefore, _) => check_nbf(reg, now, leeway),
                    (Check::IssuedAt, _) => check_iat(reg, now, leeway),
                    (Check::Audience, Some(i)) => i.check_aud(reg),
                    (Check::AuthorizedParty, Some(i)) => i.check_azp(reg.azp.as_deref()),
                    (Check::TokenType, Some(i)) => {
                        i.check_token_type(jwt.header_typ(), reg.typ.as_deref(), None)
                    }
                    _ => return None,
                };
                Some((check, outcome))
            })
            .collect()
    }

    // --- pieces for `inspect` ---

    pub(crate) fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    pub(crate) fn inspect_issuer(&self, reg: &RegisteredClaims) -> Result<usize, VerifyError> {
        self.check_issuer(reg)
    }

    pub(crate) fn issuer_name(&self, idx: usize) -> &str {
        &self.issuers[idx].name
    }

    pub(crate) fn inspect_alg_allowed(&self, idx: usize, alg: Alg) -> Result<(), VerifyError> {
        self.issuers[idx].check_alg_allowed(alg)
    }

    pub(crate) async fn inspect_keys(
        &self,
        idx: usize,
        jwt: &UnverifiedJwt,
        alg: Alg,
    ) -> Result<Vec<Arc<VerifyKey>>, VerifyError> {
        let iss = self.issuers[idx].clone();
        self.find_keys(&iss, jwt, alg).await
    }

    pub(crate) fn inspect_claims(
        &self,
        idx: Option<usize>,
        jwt: &UnverifiedJwt,
    ) -> Vec<(Check, Result<(), VerifyError>)> {
        self.jwt_claim_checks(idx, jwt, self.clock.now())
    }

    pub(crate) async fn inspect_opaque(
        &self,
        token: &str,
    ) -> (Option<usize>, Result<Arc<VerifiedToken>, VerifyError>) {
        let idx = match self.opaque_issuer(token) {
            Ok(i) => i,
            Err(e) => return (None, Err(e)),
        };
        let fp = TokenFingerprint::of(token);
        (Some(idx), self.introspect_opaque(idx, token, fp).await)
    }

    pub(crate) fn inspect_build(&self, idx: usize, jwt: &UnverifiedJwt) -> Arc<VerifiedToken> {
        let reg = jwt.registered();
        Arc::new(build_token(
            &self.issuers[idx].name,
            reg,
            jwt.claims().clone(),
            reg.exp.unwrap_or_else(|| self.clock.now()),
            VerifiedBy::Jwt,
        ))
    }
}

impl Issuer {
    fn check_alg_allowed(&self, alg: Alg) -> Result<(), VerifyError> {
        if self.algorithms.contains(&alg) {
            Ok(())
        } else {
            Err(VerifyError::new(
                Check::Algorithm,
                format!("alg {alg} is not accepted for {}", self.name),
            ))
        }
    }

    fn check_aud(&self, reg: &RegisteredClaims) -> Result<(), VerifyError> {
        if self.audiences.is_empty() || reg.aud.iter().any(|a| self.audiences.contains(a)) {
            Ok(())
        } else if reg.aud.is_empty() {
            Err(VerifyError::new(Check::Audience, "the token has no aud"))
        } else {
            Err(VerifyError::new(
                Check::Audience,
                "the token is not for an accepted audience",
            ))
        }
    }

    fn check_azp(&self, azp: Option<&str>) -> Result<(), VerifyError> {
        if self.allowed_azp.is_empty() {
            return Ok(());
        }
        match azp {
            None => Err(VerifyError::new(
                Check::AuthorizedParty,
                "the token has no azp, and only some clients are allowed",
            )),
            Some(a) if self.allowed_azp.iter().any(|x| x == a) => Ok(()),
            Some(_) => Err(VerifyError::new(
                Check::AuthorizedParty,
                "the token's client (azp) is not allowed",
            )),
        }
    }

    /// `introspection_token_type`: `Some(..)` for introspection answers (RFC 7662 `token_type`).
    fn check_token_type(
        &self,
        header_typ: Option<&str>,
        payload_typ: Option<&str>,
        introspection_token_type: Option<Option<&str>>,
    ) -> Result<(), VerifyError> {
        let is = |v: &str, s: &str| v.eq_ignore_ascii_case(s);
        let at_jwt = |t: &str| is(t, "at+jwt") || is(t, "application/at+jwt");
        match self.token_type {
            TokenTypeMode::Off => return Ok(()),
            TokenTypeMode::Keycloak => {
                if let Some(t) = header_typ
                    && !(is(t, "JWT") || at_jwt(t))
                {
                    return Err(VerifyError::new(
                        Check::TokenType,
                        "header typ is not JWT or at+jwt",
                    ));
                }
            }
            TokenTypeMode::Strict => {
                if introspection_token_type.is_none() && !header_typ.is_some_and(at_jwt) {
                    return Err(VerifyError::new(
                        Check::TokenType,
                        "header typ must be at+jwt (RFC 9068)",
                    ));
                }
            }
        }
        if let Some(t) = payload_typ
            && !is(t, "Bearer")
        {
            let what = if is(t, "ID") {
                "an ID token is not an access token"
            } else if is(t, "Refresh") || is(t, "Offline") {
                "a refresh token is not an access token"
            } else if is(t, "Logout") {
                "a logout token is not an access token"
            } else {
                "payload typ is not Bearer"
            };
            return Err(VerifyError::new(Check::TokenType, what));
        }
        match introspection_token_type {
            // A JWT: its header and payload types were checked above.
            None => {}
            Some(Some(t)) if is(t, "Bearer") || is(t, "access_token") => {}
            Some(Some(_)) => {
                return Err(VerifyError::new(
                    Check::TokenType,
                    "introspection says this is not an access token",
                ));
            }
            // RFC 7662 `token_type` absent: the payload `typ` must vouch for an access token
            // (oidc-provider answers refresh tokens with neither; Keycloak with typ Refresh).
            Some(None) if payload_typ.is_none() => {
                return Err(VerifyError::new(
                    Check::TokenType,
                    "introspection does not say this is an access token",
                ));
            }
            Some(None) => {}
        }
        Ok(())
    }

    fn check_answer_issuer(&self, reg: &RegisteredClaims) -> Result<(), VerifyError> {
        match &reg.iss {
            Some(i) if *i != self.name => Err(VerifyError::new(
                Check::Introspection,
                format!(
                    "the introspection answer of {} names another issuer",
                    self.name
                ),
            )),
            _ => Ok(()),
        }
    }
}

pub(crate) fn check_signature(
    jwt: &UnverifiedJwt,
    alg: Alg,
    keys: &[Arc<VerifyKey>],
) -> Result<Arc<VerifyKey>, VerifyError> {
    for k in keys {
        if let Ok(true) = jsonwebtoken::crypto::verify(
            jwt.signature_b64(),
            jwt.signing_input().as_bytes(),
            &k.key,
            alg.to_jwt(),
        ) {
            return Ok(k.clone());
        }
    }
    Err(VerifyError::new(
        Check::Signature,
        "the signature does not verify",
    ))
}

fn check_exp(
    reg: &RegisteredClaims,
    now: UnixTime,
    leeway: Duration,
) -> Result<UnixTime, VerifyError> {
    match reg.exp {
        None => Err(VerifyError::new(Check::Expiry, "the token has no exp")),
        Some(exp) if now >= exp.plus(leeway) => {
            Err(VerifyError::new(Check::Expiry, "the token has expired"))
        }
        Some(exp) => Ok(exp),
    }
}

fn check_nbf(reg: &RegisteredClaims, now: UnixTime, leeway: Duration) -> Result<(), VerifyError> {
    match reg.nbf {
        Some(nbf) if now.plus(leeway) < nbf => Err(VerifyError::new(
            Check::NotBefore,
            "the token is not valid yet (nbf)",
        )),
        _ => Ok(()),
    }
}

fn check_iat(reg: &RegisteredClaims, now: UnixTime, leeway: Duration) -> Result<(), VerifyError> {
    match reg.iat {
        Some(iat) if iat > now.plus(leeway) => Err(VerifyError::new(
            Check::IssuedAt,
            "the token was issued in the future (iat)",
        )),
        _ => Ok(()),
    }
}

fn build_token(
    issuer: &str,
    reg: &RegisteredClaims,
    claims: Map<String, Value>,
    expires_at: UnixTime,
    via: VerifiedBy,
) -> VerifiedToken {
    let scopes = match (&reg.scope, claims.get("scp")) {
        (Some(s), _) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        (None, Some(Value::Array(a))) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (None, Some(Value::String(s))) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let username = reg.preferred_username.clone();
    VerifiedToken {
        issuer: issuer.to_owned(),
        subject: reg.sub.clone(),
        client_id: reg.azp.clone().or_else(|| reg.client_id.clone()),
        service_account: username
            .as_deref()
            .is_some_and(|u| u.starts_with("service-account-")),
        username,
        scopes,
        audiences: reg.aud.clone(),
        expires_at,
        claims,
        via,
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn the_claim_checks_are_a_run_of_the_check_order() {
        let start = CHECK_ORDER
            .iter()
            .position(|c| *c == JWT_CLAIM_CHECKS[0])
            .unwrap();
        assert_eq!(
            CHECK_ORDER[start..start + JWT_CLAIM_CHECKS.len()],
            *JWT_CLAIM_CHECKS
        );
        assert_eq!(JWT_CLAIM_CHECKS.first(), Some(&Check::Expiry));
        assert_eq!(JWT_CLAIM_CHECKS.last(), Some(&Check::TokenType));
        // The opaque order keeps the JWT order for the claims both have.
        let common: Vec<Check> = CHECK_ORDER
            .into_iter()
            .filter(|c| OPAQUE_CHECKS[1..].contains(c))
            .collect();
        assert_eq!(common, OPAQUE_CHECKS[1..]);
    }
}
