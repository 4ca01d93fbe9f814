//! One issuer's published keys: startup load, background refresh before `jwks_ttl`, last good keys
//! kept on failure, and the unknown-`kid` refetch rules.
//!
//! # Unknown `kid`s
//!
//! A token whose `kid` is not in the key set may cause a refetch, single-flight (a caller joins
//! the fetch in flight, whatever the rules below). Otherwise the rules, by the injected clock:
//!
//! - **Adaptive cooldown.** After an unknown-kid refetch, a kid not seen before waits for the
//!   cooldown. It starts at [`MIN_REFETCH_COOLDOWN`] (1 s), doubles after each unknown-kid fetch
//!   that brought no new key (or failed), up to `jwks_refetch_cooldown` (the cap, default 30 s);
//!   it is back at the minimum when any fetch brings a key not published before, and once no
//!   unknown kid has been seen for one full cap. A flood of made-up kids thus costs fetches at
//!   0, 2, 6, 14, 30 s, then one per cap.
//! - **Kids asked about again.** A kid refused without a fetch is remembered as *unchecked* (never
//!   as unknown). When it is presented again, it gets a fetch once
//!   [`REPEATED_KID_REFETCH_INTERVAL`] (1 s) has passed since the last unknown-kid refetch,
//!   whatever the cooldown. A genuinely new key is presented by every caller holding a new
//!   token, a made-up kid of a flood once: so a rotation is accepted within about 1 s of its
//!   first token even during or after a flood, while a flood of single-use kids stays on the
//!   cooldown. (Made-up kids each sent twice can cost at most one fetch per second: the price of
//!   that guarantee, since they cannot be told from a real rotation without the key.)
//! - **Confirmed unknown.** A kid is remembered as unknown (refused with no fetch, for the cap)
//!   only when a successful fetch that *started after* the kid was first presented did not
//!   publish it. A caller that joined a fetch begun before its token arrived (perhaps before the
//!   IdP rotated) learns nothing about its kid from that fetch.

use crate::keys::KeySet;
use crate::metrics_names::METRIC_JWKS_FETCHES;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tw_core::{Clock, UnixTime};
use tw_idp::{DiscoveryCache, IdpHttp, failure_label};
use url::Url;

/// Background refresh happens once this fraction of `jwks_ttl` has passed since the last success.
pub const REFRESH_FRACTION: f64 = 0.8;
/// The background loop re-reads the clock at least this often (so a moved clock is noticed).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// First retry delay after a failed background fetch; doubles up to [`MAX_RETRY_DELAY`].
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(1);
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Most unknown `kid`s remembered per issuer (as confirmed unknown, and as unchecked, each).
pub const NEGATIVE_KID_CAPACITY: u64 = 10_000;
/// The floor of the adaptive unknown-kid refetch cooldown (its cap is `jwks_refetch_cooldown`).
pub const MIN_REFETCH_COOLDOWN: Duration = Duration::from_secs(1);
/// A kid already refused once without a fetch gets a fetch when presented again, once this long
/// has passed since the last unknown-kid refetch (at most the cap).
pub const REPEATED_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

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

/// The outcome of a fetch, shared with every caller that joined it: on failure, the metrics
/// label of why (`tw_idp::failure_label`).
pub(crate) type FetchResult = Result<(), &'static str>;

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

struct RefetchState {
    /// When the last unknown-kid refetch started.
    last_unknown_kid_fetch: Option<UnixTime>,
    /// The adaptive cooldown: how long a kid not seen before waits after the last unknown-kid
    /// refetch. [`MIN_REFETCH_COOLDOWN`] ..= the configured cap.
    cooldown: Duration,
    /// The last unknown kid that reached the refetch decision (for the decay after a quiet cap).
    last_unknown_kid: Option<UnixTime>,
    /// Generation of the newest successful fetch (0: none).
    ok_generation: u64,
    in_flight: Option<InFlight>,
    /// When the background loop tries again after a failure (None: follow the TTL).
    retry_at: Option<UnixTime>,
    retry_delay: Duration,
}

/// A kid refused without a fetch that would have told whether it is published.
#[derive(Debug, Clone, Copy)]
struct Unchecked {
    /// The fetch generation when the kid was first presented: only a fetch of a later generation
    /// started after it.
    seen_generation: u64,
    first_seen: UnixTime,
}

pub(crate) struct JwksSource {
    issuer: String,
    configured_url: Option<Url>,
    discovery: Arc<DiscoveryCache>,
    http: IdpHttp,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    /// `jwks_refetch_cooldown`: the cap of the adaptive cooldown, and how long a kid confirmed
    /// unknown (or left unchecked) is remembered.
    max_cooldown: Duration,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_success: Mutex<Option<UnixTime>>,
    state: Mutex<RefetchState>,
    /// Number of fetches started (any cause); a fetch's generation is the value it set.
    generation: AtomicU64,
    /// Kid confirmed unknown → when (decisions by `clock`; moka's own TTL only bounds memory).
    negative: moka::sync::Cache<String, UnixTime>,
    /// Kids refused without a fetch, not known either way.
    unchecked: moka::sync::Cache<String, Unchecked>,
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
        discovery: Arc<DiscoveryCache>,
        http: IdpHttp,
        clock: Arc<dyn Clock>,
        ttl: Duration,
        max_cooldown: Duration,
    ) -> Self {
        let min_cooldown = MIN_REFETCH_COOLDOWN.min(max_cooldown);
        Self {
            issuer,
            configured_url,
            discovery,
            http,
            clock,
            ttl,
            max_cooldown,
            keys: RwLock::new(None),
            last_success: Mutex::new(None),
            state: Mutex::new(RefetchState {
                last_unknown_kid_fetch: None,
                cooldown: min_cooldown,
                last_unknown_kid: None,
                ok_generation: 0,
                in_flight: None,
                retry_at: None,
                retry_delay: INITIAL_RETRY_DELAY,
            }),
            generation: AtomicU64::new(0),
            negative: moka::sync::Cache::builder()
                .max_capacity(NEGATIVE_KID_CAPACITY)
                .time_to_live(max_cooldown)
                .build(),
            unchecked: moka::sync::Cache::builder()
                .max_capacity(NEGATIVE_KID_CAPACITY)
                .time_to_live(max_cooldown)
                .build(),
        }
    }

    fn min_cooldown(&self) -> Duration {
        MIN_REFETCH_COOLDOWN.min(self.max_cooldown)
    }

    /// The current key set, if it publishes `kid`.
    fn keys_with(&self, kid: &str) -> Option<Arc<KeySet>> {
        self.current().filter(|k| !k.with_kid(kid).is_empty())
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
        let (_, fut) = {
            let mut st = self.state.lock();
            self.join_or_start(&mut st, cause)
        };
        fut.await
    }

    /// Must be called with the state lock held; never awaits. Returns the fetch's generation.
    fn join_or_start(
        self: &Arc<Self>,
        st: &mut RefetchState,
        cause: FetchCause,
    ) -> (u64, Shared<BoxFuture<'static, FetchResult>>) {
        if let Some(f) = &st.in_flight {
            return (f.generation, f.fut.clone());
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let this = self.clone();
        // The fetch runs in its own task: a caller that gives up never cancels it.
        let handle = tokio::spawn(async move {
            let result = this.do_fetch(cause, generation).await;
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
        (generation, fut)
    }

    async fn jwks_url(&self) -> Result<Url, tw_core::Error> {
        if let Some(u) = &self.configured_url {
            return Ok(u.clone());
        }
        let doc = self.discovery.get(self.clock.now()).await?;
        doc.require(&doc.jwks_uri, "jwks_uri", "the signing keys")
            .cloned()
    }

    async fn do_fetch(&self, cause: FetchCause, generation: u64) -> FetchResult {
        let started = self.clock.now();
        let outcome = async {
            let url = self.jwks_url().await?;
            let doc = tw_idp::token::fetch_jwks(&self.http, &url, None, self.clock.now()).await?;
            KeySet::from_jwks(&serde_json::Value::Object(doc)).map_err(|why| {
                tw_core::Error::new(
                    tw_core::ErrorKind::IdpUnavailable,
                    tw_idp::codes::IDP_INVALID_DOCUMENT,
                    format!("the JWKS is not usable: {why}"),
                )
            })
        }
        .await;
        let result_label = match &outcome {
            Ok(_) => "ok",
            Err(e) => failure_label(e),
        };
        metrics::counter!(METRIC_JWKS_FETCHES,
            "issuer" => self.issuer.clone(), "cause" => cause.as_str(), "result" => result_label)
        .increment(1);
        match outcome {
            Ok((set, skipped)) => {
                tracing::info!(issuer = %self.issuer, cause = cause.as_str(), keys = set.len(), skipped,
                    "JWKS loaded");
                let brought_new = self.current().is_none_or(|old| set.has_keys_not_in(&old));
                // Keys first, then the generation: whoever sees the generation sees the keys.
                *self.keys.write() = Some(Arc::new(set));
                *self.last_success.lock() = Some(started);
                let mut st = self.state.lock();
                st.retry_at = None;
                st.retry_delay = INITIAL_RETRY_DELAY;
                st.ok_generation = st.ok_generation.max(generation);
                if brought_new {
                    st.cooldown = self.min_cooldown();
                } else if cause == FetchCause::UnknownKid {
                    self.lengthen_cooldown(&mut st);
                }
                Ok(())
            }
            Err(e) => {
                let kept = self.is_loaded();
                tracing::warn!(issuer = %self.issuer, cause = cause.as_str(), error = %e,
                    kept_last_good_keys = kept, "JWKS fetch failed");
                if cause == FetchCause::UnknownKid {
                    self.lengthen_cooldown(&mut self.state.lock());
                } else {
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

    /// After a fruitless (or failed) unknown-kid fetch: the cooldown doubles, up to the cap.
    fn lengthen_cooldown(&self, st: &mut RefetchState) {
        st.cooldown = (st.cooldown * 2).clamp(self.min_cooldown(), self.max_cooldown);
        tracing::debug!(issuer = %self.issuer, cooldown = ?st.cooldown,
            "unknown-kid refetch found no new key; cooldown lengthened");
    }

    fn confirm_unknown(&self, kid: &str, at: UnixTime) {
        self.negative.insert(kid.to_owned(), at);
        self.unchecked.invalidate(kid);
    }

    /// A token names `kid`, which is not in the current key set. Joins the fetch in flight, or
    /// starts one if the adaptive cooldown (or, for a kid presented again, the
    /// [`REPEATED_KID_REFETCH_INTERVAL`]) allows; a kid confirmed unknown within the cap neither
    /// waits nor fetches. See the module documentation.
    pub(crate) async fn unknown_kid(self: &Arc<Self>, kid: &str) -> UnknownKid {
        // The set may have changed since the caller looked.
        if let Some(keys) = self.keys_with(kid) {
            return UnknownKid::Found(keys);
        }
        let now = self.clock.now();
        if self
            .negative
            .get(kid)
            .is_some_and(|seen| now < seen.plus(self.max_cooldown))
        {
            return UnknownKid::Unknown;
        }
        let unchecked = self
            .unchecked
            .get(kid)
            .filter(|u| now < u.first_seen.plus(self.max_cooldown));
        let (seen_generation, fetch_generation, fut) = {
            let mut st = self.state.lock();
            if st
                .last_unknown_kid
                .is_some_and(|t| now >= t.plus(self.max_cooldown))
            {
                // A full cap without unknown kids: back to the minimum.
                st.cooldown = self.min_cooldown();
            }
            st.last_unknown_kid = Some(now);
            let seen_generation = unchecked.map_or_else(
                || self.generation.load(Ordering::Relaxed),
                |u| u.seen_generation,
            );
            if st.in_flight.is_none() {
                if unchecked.is_some() && st.ok_generation > seen_generation {
                    // A fetch that started after this kid was first presented succeeded: the
                    // current keys are its (or newer).
                    if let Some(keys) = self.keys_with(kid) {
                        return UnknownKid::Found(keys);
                    }
                    drop(st);
                    self.confirm_unknown(kid, now);
                    return UnknownKid::Unknown;
                }
                let wait = if unchecked.is_some() {
                    st.cooldown
                        .min(REPEATED_KID_REFETCH_INTERVAL.min(self.max_cooldown))
                } else {
                    st.cooldown
                };
                if st
                    .last_unknown_kid_fetch
                    .is_some_and(|t| now < t.plus(wait))
                {
                    // Refused without a fetch. Not remembered as unknown: only a fetch may
                    // confirm that, or one attacker kid would keep a genuinely new key refused.
                    drop(st);
                    if unchecked.is_none() {
                        self.unchecked.insert(
                            kid.to_owned(),
                            Unchecked {
                                seen_generation,
                                first_seen: now,
                            },
                        );
                    }
                    return UnknownKid::Unknown;
                }
                st.last_unknown_kid_fetch = Some(now);
            }
            let (generation, fut) = self.join_or_start(&mut st, FetchCause::UnknownKid);
            (seen_generation, generation, fut)
        };
        let fetched = fut.await;
        if let Some(keys) = self.keys_with(kid) {
            self.unchecked.invalidate(kid);
            return UnknownKid::Found(keys);
        }
        if fetched.is_ok() && fetch_generation > seen_generation {
            self.confirm_unknown(kid, self.clock.now());
        } else if unchecked.is_none() {
            // A fetch begun before this token arrived (or a failed one) says nothing about it.
            self.unchecked.insert(
                kid.to_owned(),
                Unchecked {
                    seen_generation,
                    first_seen: now,
                },
            );
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
