//! One token profile: the cache, its single in-flight fetch, and its retry gates.
//!
//! Locking rule: the state mutex is never held across an `.await`; fetches run in their own task
//! and publish their result under the lock when done.
//!
//! Retry gates (the only retry layer in the client side):
//! - after a permanent failure (invalid_client, ...): nothing is sent until `backoff_max` has
//!   passed (or a longer `Retry-After`); callers get the error at once;
//! - after a transient failure: the background refresher waits the exponential backoff; callers
//!   that have no usable token may trigger at most one probe per second (single-flight), so
//!   service resumes within a second of the IdP's return — unless the IdP sent `Retry-After`,
//!   which is always honoured.

use crate::metrics_names::*;
use crate::settings::TimingConfig;
use crate::source::TokenSource;
use crate::timing::{Backoff, Lifetime, TokenState};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tw_core::{Clock, Error, ErrorKind, Secret, TokenFingerprint, UnixTime};
use tw_idp::TokenResponse;

/// Minimum spacing of caller-driven attempts while no usable token exists.
const DEMAND_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Forced refreshes (e.g. after upstream 401s): a burst of this many, then one per interval.
const FORCED_BURST: f64 = 3.0;
const FORCED_REFILL: Duration = Duration::from_secs(10);
/// A forced refresh that names no token, arriving this soon after a forced refresh got the
/// current token, shares that token: the callers of one burst (1,000 `POST .../refresh` take a
/// while to arrive) cause one IdP request. Naming the token forces another at once.
pub const FORCED_REFRESH_COALESCE: Duration = Duration::from_secs(1);
/// How many replaced tokens a forced refresh can still name to get the current one.
const REMEMBERED_REPLACED_TOKENS: usize = 8;
/// The refresher re-checks at least this often (clock jumps, suspend/resume).
const MAX_REFRESHER_SLEEP: Duration = Duration::from_secs(30);

/// A token as handed out.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: Secret,
    pub token_type: String,
    /// Local time when the request that produced it was sent.
    pub obtained_at: UnixTime,
    pub refresh_at: UnixTime,
    pub expires_at: UnixTime,
    pub fingerprint: TokenFingerprint,
    pub scope: Option<String>,
    /// True when the IdP sent no `expires_in` and the configured default was assumed.
    pub lifetime_assumed: bool,
}

impl IssuedToken {
    pub fn expires_in(&self, now: UnixTime) -> Duration {
        now.until(self.expires_at)
    }
    fn lifetime(&self) -> Lifetime {
        Lifetime {
            obtained_at: self.obtained_at,
            refresh_at: self.refresh_at,
            expires_at: self.expires_at,
        }
    }
    pub fn state_at(&self, now: UnixTime) -> TokenState {
        self.lifetime().state_at(now)
    }
}

/// What a caller asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRequest {
    /// The token must stay valid at least this long after it is handed out.
    pub min_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Served while a refresh runs in the background.
    Stale,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Served {
    pub token: Arc<IssuedToken>,
    pub freshness: Freshness,
}

/// A secret-free snapshot for readiness, diagnostics and metrics.
#[derive(Debug, Clone)]
pub struct ProfileStatus {
    pub name: String,
    pub eager: bool,
    pub source: String,
    pub state: Option<TokenState>,
    pub usable: bool,
    pub obtained_at: Option<UnixTime>,
    pub expires_at: Option<UnixTime>,
    pub consecutive_failures: u32,
    pub last_error: Option<Error>,
    pub next_attempt_at: Option<UnixTime>,
    pub fetching: bool,
    /// Callers waiting for the fetch in flight (they all get its outcome).
    pub waiting: usize,
}

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<IssuedToken>, Error>>>;

#[derive(Default)]
struct State {
    current: Option<Arc<IssuedToken>>,
    inflight: Option<(u64, SharedFetch)>,
    failures: u32,
    last_attempt_at: Option<UnixTime>,
    /// Background refreshes wait until then (exponential backoff).
    backoff_until: Option<UnixTime>,
    /// Nobody sends before then (permanent failure, or the IdP's Retry-After).
    hard_gate_until: Option<UnixTime>,
    last_error: Option<Error>,
    forced_budget: f64,
    forced_budget_at: Option<UnixTime>,
    /// The fetch the last forced refresh started, and then the token it got and when.
    forced_fetch: Option<u64>,
    forced_token: Option<(TokenFingerprint, UnixTime)>,
    /// Fingerprints of the tokens this profile held before the current one, newest last.
    replaced: VecDeque<TokenFingerprint>,
}

/// One configured token profile. Share it as `Arc<Profile>`.
pub struct Profile {
    name: String,
    eager: bool,
    source: Box<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    timing: TimingConfig,
    backoff: Backoff,
    background: bool,
    state: Mutex<State>,
    updates: watch::Sender<Option<Arc<IssuedToken>>>,
    wake: Arc<Notify>,
    refresher_started: AtomicBool,
    fetch_ids: AtomicU64,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// `background = false` disables the refresh loop (tests that drive time by hand).
    pub fn new(
        name: impl Into<String>,
        eager: bool,
        timing: TimingConfig,
        source: Box<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        background: bool,
    ) -> Arc<Self> {
        let (updates, _) = watch::channel(None);
        Arc::new(Self {
            name: name.into(),
            eager,
            source,
            clock,
            backoff: Backoff {
                initial: timing.backoff_initial,
                max: timing.backoff_max,
            },
            timing,
            background,
            state: Mutex::new(State {
                forced_budget: FORCED_BURST,
                ..State::default()
            }),
            updates,
            wake: Arc::new(Notify::new()),
            refresher_started: AtomicBool::new(false),
            fetch_ids: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_eager(&self) -> bool {
        self.eager
    }

    /// Receives every new token (file sinks, readiness).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<IssuedToken>>> {
        self.updates.subscribe()
    }

    /// A usable token, fetching or waiting (bounded by `wait_timeout`) when none is cached.
    pub async fn token(self: &Arc<Self>, req: TokenRequest) -> Result<Served, Error> {
        let now = self.clock.now();
        let fut = {
            let mut st = self.state.lock();
            if let Some(tok) = st.current.clone() {
                if tok.expires_at > now && now.until(tok.expires_at) >= req.min_ttl {
                    let freshness = if now < tok.refresh_at {
                        Freshness::Fresh
                    } else {
                        // Stale: serve it, and make sure one refresh is under way.
                        if st.inflight.is_none() && Self::background_may_attempt(&st, now) {
                            drop(self.start_fetch(&mut st, now));
                        }
                        Freshness::Stale
                    };
                    drop(st);
                    self.ensure_refresher();
                    metrics::counter!(METRIC_SERVED, "profile" => self.name.clone(), "state" => freshness.as_str())
                        .increment(1);
                    return Ok(Served {
                        token: tok,
                        freshness,
                    });
                }
                if req.min_ttl >= tok.obtained_at.until(tok.expires_at) {
                    // No fresh token from this IdP could satisfy it; don't fetch in vain.
                    return Err(self.min_ttl_error(req.min_ttl, &tok));
                }
            }
            match st.inflight.clone() {
                Some((_, f)) => f,
                None => {
                    if let Some(err) = self.demand_gate(&st, now) {
                        return Err(err);
                    }
                    self.start_fetch(&mut st, now)
                }
            }
        };
        self.ensure_refresher();
        let tok = self.await_fetch(fut).await?;
        let now = self.clock.now();
        if now.until(tok.expires_at) < req.min_ttl.max(Duration::from_millis(1)) {
            return Err(self.min_ttl_error(req.min_ttl, &tok));
        }
        metrics::counter!(METRIC_SERVED, "profile" => self.name.clone(), "state" => "fresh")
            .increment(1);
        Ok(Served {
            token: tok,
            freshness: Freshness::Fresh,
        })
    }

    /// A token newer than the one the caller wants replaced, from at most one IdP request shared
    /// by every concurrent caller.
    ///
    /// `rejected` names that token (the one an upstream refused); `None` names the token current
    /// when the call arrives. Then, in this order:
    /// - the current token is usable and is not the named one — it replaced the named one since
    ///   the caller saw it: it is returned, no IdP request;
    /// - a fetch is in flight (forced, background or on demand): its outcome, the token or the
    ///   error, is shared;
    /// - otherwise this caller starts the one fetch, unless a permanent failure's pause or the
    ///   IdP's `Retry-After` runs, or the forced-refresh limit (a burst of 3, then one per 10 s)
    ///   is spent. Only a start takes from the limit; callers sharing a fetch take nothing.
    ///
    /// So a refresh asked for after a shared one finished gets that result if it names the token
    /// the shared one replaced, and starts a fetch of its own (within the limit) if it names the
    /// new one. `None` names the new one only once it is [`FORCED_REFRESH_COALESCE`] old: until
    /// then an unnamed forced refresh shares the token a forced refresh just got.
    pub async fn force_refresh(
        self: &Arc<Self>,
        rejected: Option<TokenFingerprint>,
    ) -> Result<Arc<IssuedToken>, Error> {
        let now = self.clock.now();
        let fut = {
            let mut st = self.state.lock();
            let current = st.current.clone();
            // A token this profile never held (another instance's, one from before a restart, a
            // typo) names nothing: it is treated as unnamed, never as "already replaced".
            let rejected = rejected.filter(|fp| {
                current.as_ref().is_some_and(|c| c.fingerprint == *fp) || st.replaced.contains(fp)
            });
            let named = rejected.or_else(|| current.as_ref().map(|t| t.fingerprint));
            if let Some(cur) = current.filter(|t| t.expires_at > now) {
                let just_forced = st.forced_token.is_some_and(|(fp, at)| {
                    fp == cur.fingerprint && now < at.plus(FORCED_REFRESH_COALESCE)
                });
                if Some(cur.fingerprint) != named || (rejected.is_none() && just_forced) {
                    return Ok(cur);
                }
            }
            match st.inflight.clone() {
                Some((id, f)) => {
                    // Whatever started it, its token is what this burst asked for.
                    st.forced_fetch = Some(id);
                    f
                }
                None => {
                    if let Some(err) = self.hard_gate(&st, now) {
                        return Err(err);
                    }
                    if !Self::take_forced_budget(&mut st, now) {
                        return Err(self.forced_limited_error());
                    }
                    let fetch = self.start_fetch(&mut st, now);
                    st.forced_fetch = st.inflight.as_ref().map(|(id, _)| *id);
                    fetch
                }
            }
        };
        self.await_fetch(fut).await
    }

    fn forced_limited_error(&self) -> Error {
        Error::new(
            ErrorKind::RateLimited,
            "forced_refresh_limited",
            format!(
                "profile `{}`: forced refreshes are limited to a burst of {FORCED_BURST} then one per {}s",
                self.name,
                FORCED_REFILL.as_secs()
            ),
        )
        .with("profile", self.name.clone())
        .with_retry_after(FORCED_REFILL)
    }

    pub fn status(&self) -> ProfileStatus {
        let now = self.clock.now();
        let st = self.state.lock();
        let cur = st.current.as_ref();
        ProfileStatus {
            name: self.name.clone(),
            eager: self.eager,
            source: self.source.describe(),
            state: cur.map(|t| t.state_at(now)),
            usable: cur.is_some_and(|t| t.expires_at > now),
            obtained_at: cur.map(|t| t.obtained_at),
            expires_at: cur.map(|t| t.expires_at),
            consecutive_failures: st.failures,
            last_error: st.last_error.clone(),
            next_attempt_at: match (st.hard_gate_until, st.backoff_until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            fetching: st.inflight.is_some(),
            waiting: self.waiting.load(Ordering::SeqCst),
        }
    }

    /// Updates the remaining-lifetime gauge (called before metrics are rendered).
    pub fn update_gauges(&self) {
        let now = self.clock.now();
        let remaining = self
            .state
            .lock()
            .current
            .as_ref()
            .map_or(0.0, |t| t.expires_in(now).as_secs_f64());
        metrics::gauge!(METRIC_REMAINING, "profile" => self.name.clone()).set(remaining);
    }

    /// Background loop: refresh at `refresh_at`, retry after backoff. Idempotent.
    pub fn ensure_refresher(self: &Arc<Self>) {
        if !self.background || self.refresher_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                let wait = this.refresher_wait();
                // Holding only a weak reference while asleep lets a dropped profile end its loop.
                drop(this);
                let notified = wake.notified();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = notified => {}
                }
                let Some(this) = weak.upgrade() else { return };
                this.refresher_tick().await;
            }
        });
    }

    fn refresher_wait(&self) -> Duration {
        let now = self.clock.now();
        let st = self.state.lock();
        let gate = Self::background_gate(&st);
        let due = match &st.current {
            Some(t) => t.refresh_at.max(gate.unwrap_or(t.refresh_at)),
            None => gate.unwrap_or(now),
        };
        now.until(due)
            .clamp(Duration::from_millis(10), MAX_REFRESHER_SLEEP)
    }

    async fn refresher_tick(self: &Arc<Self>) {
        let now = self.clock.now();
        let fut = {
            let mut st = self.state.lock();
            let due = st.current.as_ref().is_none_or(|t| now >= t.refresh_at);
            if !due || !Self::background_may_attempt(&st, now) {
                return;
            }
            match st.inflight.clone() {
                Some((_, f)) => f,
                None => self.start_fetch(&mut st, now),
            }
        };
        // The outcome is recorded in the state by the fetch itself.
        let _ = fut.await;
    }

    fn start_fetch(self: &Arc<Self>, st: &mut State, now: UnixTime) -> SharedFetch {
        let id = self.fetch_ids.fetch_add(1, Ordering::Relaxed);
        st.last_attempt_at = Some(now);
        let this = self.clone();
        // A task of its own, so a caller giving up (timeout, disconnect) never cancels the fetch
        // everyone else is waiting for.
        let handle = tokio::spawn(async move { this.run_fetch(id).await });
        let name = self.name.clone();
        let fut: SharedFetch = async move {
            handle.await.unwrap_or_else(|e| {
                Err(
                    Error::internal("fetch_task_failed", format!("token fetch task failed: {e}"))
                        .with("profile", name),
                )
            })
        }
        .boxed()
        .shared();
        st.inflight = Some((id, fut.clone()));
        fut
    }

    async fn run_fetch(self: Arc<Self>, id: u64) -> Result<Arc<IssuedToken>, Error> {
        let sent_at = self.clock.now();
        let started = std::time::Instant::now();
        let span = tracing::info_span!("token_fetch", profile = %self.name);
        let result = tracing::Instrument::instrument(self.source.fetch(sent_at), span).await;
        metrics::histogram!(METRIC_FETCH_SECONDS, "profile" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        let now = self.clock.now();
        let outcome = {
            let mut st = self.state.lock();
            if st.inflight.as_ref().is_some_and(|(i, _)| *i == id) {
                st.inflight = None;
            }
            match result {
                Ok(resp) => {
                    let tok = Arc::new(self.issued(resp, sent_at));
                    if let Some(old) = st.current.replace(tok.clone()) {
                        st.replaced.push_back(old.fingerprint);
                        if st.replaced.len() > REMEMBERED_REPLACED_TOKENS {
                            st.replaced.pop_front();
                        }
                    }
                    if st.forced_fetch == Some(id) {
                        st.forced_token = Some((tok.fingerprint, now));
                    }
                    st.failures = 0;
                    st.backoff_until = None;
                    st.hard_gate_until = None;
                    st.last_error = None;
                    Ok(tok)
                }
                Err(e) => Err(self.record_failure(&mut st, e, now)),
            }
        };
        match &outcome {
            Ok(tok) => {
                metrics::counter!(METRIC_FETCHES, "profile" => self.name.clone(), "outcome" => "ok").increment(1);
                tracing::info!(
                    profile = %self.name,
                    token = ?tok.fingerprint,
                    expires_in_s = tok.obtained_at.until(tok.expires_at).as_secs(),
                    lifetime_assumed = tok.lifetime_assumed,
                    "obtained token"
                );
                self.updates.send_replace(Some(tok.clone()));
                self.update_gauges();
            }
            Err(e) => {
                metrics::counter!(METRIC_FETCHES, "profile" => self.name.clone(), "outcome" => e.code()).increment(1);
            }
        }
        self.wake.notify_one();
        outcome
    }

    fn issued(&self, resp: TokenResponse, sent_at: UnixTime) -> IssuedToken {
        let lifetime = resp.expires_in.unwrap_or(self.timing.default_lifetime);
        let jitter = rand::random::<f64>() * 2.0 - 1.0;
        let l = Lifetime::compute(
            sent_at,
            lifetime,
            self.timing.refresh_fraction,
            self.timing.jitter_fraction,
            jitter,
        );
        IssuedToken {
            fingerprint: resp.access_token.fingerprint(),
            access_token: resp.access_token,
            token_type: resp.token_type,
            obtained_at: l.obtained_at,
            refresh_at: l.refresh_at,
            expires_at: l.expires_at,
            scope: resp.scope,
            lifetime_assumed: resp.expires_in.is_none(),
        }
    }

    fn record_failure(&self, st: &mut State, e: Error, now: UnixTime) -> Error {
        let e = e.with("profile", self.name.clone());
        st.failures = st.failures.saturating_add(1);
        let retry_after = e.retry_after();
        if e.is_retryable() {
            let delay = self.backoff.delay(st.failures, retry_after, rand::random());
            st.backoff_until = Some(now.plus(delay));
            st.hard_gate_until = retry_after.map(|ra| now.plus(ra));
            tracing::warn!(
                profile = %self.name, code = e.code(), error = %e.message(),
                failures = st.failures, retry_in_s = delay.as_secs_f64(),
                "token fetch failed; will retry"
            );
        } else {
            let delay = self.backoff.max.max(retry_after.unwrap_or_default());
            st.backoff_until = Some(now.plus(delay));
            st.hard_gate_until = Some(now.plus(delay));
            tracing::error!(
                profile = %self.name, code = e.code(), error = %e.message(),
                retry_in_s = delay.as_secs(),
                "token fetch rejected; not retrying before the pause ends (fix the configuration or the IdP client)"
            );
        }
        st.last_error = Some(e.clone());
        e
    }

    fn background_gate(st: &State) -> Option<UnixTime> {
        match (st.backoff_until, st.hard_gate_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn background_may_attempt(st: &State, now: UnixTime) -> bool {
        Self::background_gate(st).is_none_or(|g| now >= g)
    }

    fn hard_gate(&self, st: &State, now: UnixTime) -> Option<Error> {
        let until = st.hard_gate_until.filter(|g| now < *g)?;
        Some(self.gated_error(st, now, until))
    }

    /// Why a caller without a usable token cannot trigger a fetch now, if it cannot.
    fn demand_gate(&self, st: &State, now: UnixTime) -> Option<Error> {
        if let Some(e) = self.hard_gate(st, now) {
            return Some(e);
        }
        st.last_error.as_ref()?;
        let next_probe = st.last_attempt_at?.plus(DEMAND_PROBE_INTERVAL);
        (now < next_probe).then(|| self.gated_error(st, now, next_probe))
    }

    fn gated_error(&self, st: &State, now: UnixTime, until: UnixTime) -> Error {
        let wait = now.until(until);
        match &st.last_error {
            // A permanent failure stays what it is: the caller must see invalid_client etc.
            Some(e) if !e.is_retryable() => e.clone().with_retry_after(wait),
            last => Error::new(
                ErrorKind::TokenUnavailable,
                "token_unavailable",
                format!(
                    "profile `{}` has no valid token; the last attempt failed ({}); next attempt in {}s",
                    self.name,
                    last.as_ref().map_or("unknown error", |e| e.message()),
                    wait.as_secs_f64().ceil()
                ),
            )
            .with("profile", self.name.clone())
            .with_retry_after(wait.max(Duration::from_secs(1))),
        }
    }

    fn take_forced_budget(st: &mut State, now: UnixTime) -> bool {
        if let Some(at) = st.forced_budget_at {
            let refill = at.until(now).as_secs_f64() / FORCED_REFILL.as_secs_f64();
            st.forced_budget = (st.forced_budget + refill).min(FORCED_BURST);
        }
        st.forced_budget_at = Some(now);
        if st.forced_budget >= 1.0 {
            st.forced_budget -= 1.0;
            true
        } else {
            false
        }
    }

    async fn await_fetch(&self, fut: SharedFetch) -> Result<Arc<IssuedToken>, Error> {
        /// Counts this caller in [`ProfileStatus::waiting`] until it has its outcome or gives up.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.timing.wait_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::TokenUnavailable,
                "token_wait_timeout",
                format!(
                    "profile `{}`: no token within {}s; the IdP is slow or unreachable",
                    self.name,
                    self.timing.wait_timeout.as_secs_f64()
                ),
            )
            .with("profile", self.name.clone())
            .with_retry_after(Duration::from_secs(1))),
        }
    }

    fn min_ttl_error(&self, min_ttl: Duration, tok: &IssuedToken) -> Error {
        Error::bad_request(
            "min_ttl_unsatisfiable",
            format!(
                "profile `{}`: a remaining lifetime of {}s was requested but this IdP issues tokens valid for {}s",
                self.name,
                min_ttl.as_secs(),
                tok.obtained_at.until(tok.expires_at).as_secs()
            ),
        )
        .with("profile", self.name.clone())
    }
}
