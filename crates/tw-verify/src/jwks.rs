//! One issuer's published keys: startup load, background refresh before `jwks_ttl`, last good keys
//! kept on failure, and the unknown-`kid` refetch rules (single-flight, at most one per cooldown,
//! negative cache).

use crate::http::{self, Discovered, FetchError};
use crate::keys::KeySet;
use crate::metrics_names::METRIC_JWKS_FETCHES;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::OnceCell;
use tw_core::{Clock, UnixTime};
use url::Url;

/// Background refresh happens once this fraction of `jwks_ttl` has passed since the last success.
pub const REFRESH_FRACTION: f64 = 0.8;
/// The background loop re-reads the clock at least this often (so a moved clock is noticed).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// First retry delay after a failed background fetch; doubles up to [`MAX_RETRY_DELAY`].
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(1);
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Most unknown `kid`s remembered per issuer.
pub const NEGATIVE_KID_CAPACITY: u64 = 10_000;

/// Why a JWKS fetch happens (`cause` label of [`METRIC_JWKS_FETCHES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCause {
    Startup,
    Ttl,
    UnknownKid,
}

impl FetchCause {
    pub fn as_str(self) -> &'static str {
        match self {
            FetchCause::Startup => "startup",
            FetchCause::Ttl => "ttl",
            FetchCause::UnknownKid => "unknown_kid",
        }
    }
}

/// The outcome of a fetch, shared with every caller that joined it.
pub(crate) type FetchResult = Result<(), &'static str>;

/// Discovery, done once successfully and shared by the JWKS and introspection sides.
#[derive(Debug)]
pub(crate) struct DiscoveryCell {
    issuer: String,
    http: reqwest::Client,
    cell: OnceCell<Discovered>,
}

impl DiscoveryCell {
    pub(crate) fn new(issuer: String, http: reqwest::Client) -> Self {
        Self {
            issuer,
            http,
            cell: OnceCell::new(),
        }
    }

    /// Concurrent callers share one request; a failure is not remembered (the next call retries).
    pub(crate) async fn get(&self) -> Result<Discovered, FetchError> {
        self.cell
            .get_or_try_init(|| async {
                let d = http::discover(&self.http, &self.issuer).await;
                if let Err(e) = &d {
                    tracing::warn!(issuer = %self.issuer, error = %e, "OIDC discovery failed");
                }
                d
            })
            .await
            .cloned()
    }
}

/// What a caller learns when its `kid` is not in the key set.
#[derive(Debug, Clone)]
pub(crate) enum UnknownKid {
    /// A refetch (this caller's or one it joined) brought the kid: use these keys.
    Found(Arc<KeySet>),
    /// Still unknown after a fetch, or seen recently, or the cooldown forbids a fetch.
    Unknown,
}

struct InFlight {
    generation: u64,
    fut: Shared<BoxFuture<'static, FetchResult>>,
}

#[derive(Default)]
struct RefetchState {
    last_unknown_kid_fetch: Option<UnixTime>,
    in_flight: Option<InFlight>,
    /// When the background loop tries again after a failure (None: follow the TTL).
    retry_at: Option<UnixTime>,
    retry_delay: Duration,
}

pub(crate) struct JwksSource {
    issuer: String,
    configured_url: Option<Url>,
    discovery: Arc<DiscoveryCell>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cooldown: Duration,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_success: Mutex<Option<UnixTime>>,
    state: Mutex<RefetchState>,
    generation: AtomicU64,
    /// Unknown kid → when it was last found unknown (decisions by `clock`; moka's own TTL only
    /// bounds memory).
    negative: moka::sync::Cache<String, UnixTime>,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        issuer: String,
        configured_url: Option<Url>,
        discovery: Arc<DiscoveryCell>,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        ttl: Duration,
        cooldown: Duration,
    ) -> Self {
        Self {
            issuer,
            configured_url,
            discovery,
            http,
            clock,
            ttl,
            cooldown,
            keys: RwLock::new(None),
            last_success: Mutex::new(None),
            state: Mutex::new(RefetchState {
                retry_delay: INITIAL_RETRY_DELAY,
                ..Default::default()
            }),
            generation: AtomicU64::new(0),
            negative: moka::sync::Cache::builder()
                .max_capacity(NEGATIVE_KID_CAPACITY)
                .time_to_live(cooldown)
                .build(),
        }
    }

    /// The last good key set, if any was ever loaded.
    pub(crate) fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().clone()
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.keys.read().is_some()
    }

    /// Fetches now (joining a fetch already in flight), whatever the cooldown. Used at start and by
    /// the background loop.
    pub(crate) async fn fetch(self: &Arc<Self>, cause: FetchCause) -> FetchResult {
        let fut = {
            let mut st = self.state.lock();
            self.join_or_start(&mut st, cause)
        };
        fut.await
    }

    /// Must be called with the state lock held; never awaits.
    fn join_or_start(
        self: &Arc<Self>,
        st: &mut RefetchState,
        cause: FetchCause,
    ) -> Shared<BoxFuture<'static, FetchResult>> {
        if let Some(f) = &st.in_flight {
            return f.fut.clone();
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let this = self.clone();
        // The fetch runs in its own task: a caller that gives up never cancels it.
        let handle = tokio::spawn(async move {
            let result = this.do_fetch(cause).await;
            let mut st = this.state.lock();
            if st
                .in_flight
                .as_ref()
                .is_some_and(|f| f.generation == generation)
            {
                st.in_flight = None;
            }
            result
        });
        let fut = async move { handle.await.unwrap_or(Err("the fetch task failed")) }
            .boxed()
            .shared();
        st.in_flight = Some(InFlight {
            generation,
            fut: fut.clone(),
        });
        fut
    }

    async fn jwks_url(&self) -> Result<Url, FetchError> {
        if let Some(u) = &self.configured_url {
            return Ok(u.clone());
        }
        self.discovery
            .get()
            .await?
            .jwks_uri
            .ok_or(FetchError::Invalid(
                "the discovery document has no jwks_uri",
            ))
    }

    async fn do_fetch(&self, cause: FetchCause) -> FetchResult {
        let started = self.clock.now();
        let outcome = async {
            let url = self.jwks_url().await?;
            let doc = http::get_json(&self.http, &url).await?;
            KeySet::from_jwks(&doc).map_err(FetchError::Invalid)
        }
        .await;
        let result_label = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        metrics::counter!(METRIC_JWKS_FETCHES,
            "issuer" => self.issuer.clone(), "cause" => cause.as_str(), "result" => result_label)
        .increment(1);
        match outcome {
            Ok((set, skipped)) => {
                tracing::info!(issuer = %self.issuer, cause = cause.as_str(), keys = set.len(), skipped,
                    "JWKS loaded");
                *self.keys.write() = Some(Arc::new(set));
                *self.last_success.lock() = Some(started);
                let mut st = self.state.lock();
                st.retry_at = None;
                st.retry_delay = INITIAL_RETRY_DELAY;
                Ok(())
            }
            Err(e) => {
                let kept = self.is_loaded();
                tracing::warn!(issuer = %self.issuer, cause = cause.as_str(), error = %e,
                    kept_last_good_keys = kept, "JWKS fetch failed");
                if cause != FetchCause::UnknownKid {
                    let mut st = self.state.lock();
                    let delay = st.retry_delay;
                    st.retry_at = Some(self.clock.now().plus(delay));
                    st.retry_delay =
                        (delay * 2).min(MAX_RETRY_DELAY.min(self.ttl / 2).max(INITIAL_RETRY_DELAY));
                }
                Err(result_label)
            }
        }
    }

    /// A token names `kid`, which is not in the current key set. Refetches at most once per
    /// cooldown (single-flight, joining any fetch in flight); a kid found unknown within the
    /// cooldown neither waits nor fetches.
    pub(crate) async fn unknown_kid(self: &Arc<Self>, kid: &str) -> UnknownKid {
        let now = self.clock.now();
        if self
            .negative
            .get(kid)
            .is_some_and(|seen| now < seen.plus(self.cooldown))
        {
            return UnknownKid::Unknown;
        }
        let fut = {
            let mut st = self.state.lock();
            if st.in_flight.is_none()
                && st
                    .last_unknown_kid_fetch
                    .is_some_and(|t| now < t.plus(self.cooldown))
            {
                // Refused without a fetch. Not remembered as unknown: only a fetch may confirm
                // that, or one attacker kid per cooldown would keep a genuinely new key refused
                // for a second cooldown.
                return UnknownKid::Unknown;
            }
            if st.in_flight.is_none() {
                st.last_unknown_kid_fetch = Some(now);
            }
            self.join_or_start(&mut st, FetchCause::UnknownKid)
        };
        let fetched = fut.await;
        if let Some(keys) = self.current()
            && !keys.with_kid(kid).is_empty()
        {
            return UnknownKid::Found(keys);
        }
        if fetched.is_ok() {
            self.negative.insert(kid.to_owned(), self.clock.now());
        }
        UnknownKid::Unknown
    }

    /// When the background loop should fetch next.
    fn next_due(&self) -> UnixTime {
        let retry_at = self.state.lock().retry_at;
        let last = *self.last_success.lock();
        match (last, retry_at) {
            (_, Some(r)) => r,
            (Some(l), None) => l.plus(self.ttl.mul_f64(REFRESH_FRACTION)),
            (None, None) => self.clock.now(),
        }
    }

    /// The background refresher: fetches when due by the clock, re-checking at least every
    /// [`RECHECK_INTERVAL`]; ends when the source is dropped.
    pub(crate) async fn run(this: Weak<Self>) {
        loop {
            let wait = {
                let Some(src) = this.upgrade() else { return };
                let now = src.clock.now();
                let due = src.next_due();
                if now >= due {
                    let cause = if src.is_loaded() {
                        FetchCause::Ttl
                    } else {
                        FetchCause::Startup
                    };
                    let _ = src.fetch(cause).await;
                    continue;
                }
                now.until(due).min(RECHECK_INTERVAL)
            };
            tokio::time::sleep(wait).await;
        }
    }
}
