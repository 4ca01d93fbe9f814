//! The cache state machine, driven through `Profile`'s public API with a scripted token source
//! and a clock moved by hand. (Behaviour against a real IdP is in `idp_integration.rs`.)

use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tw_broker::source::TokenSource;
use tw_broker::{FORCED_REFRESH_COALESCE, Freshness, Profile, TokenRequest};
use tw_config::TimingConfig;
use tw_core::{Clock, Error, ErrorKind, ManualClock, Secret, UnixTime};
use tw_idp::TokenResponse;

/// Answers from a script; optionally holds every answer until the test opens the gate.
struct Scripted {
    calls: AtomicUsize,
    script: Mutex<VecDeque<Result<TokenResponse, Error>>>,
    gate: Option<Arc<Semaphore>>,
}

impl Scripted {
    fn new(script: Vec<Result<TokenResponse, Error>>) -> Arc<Self> {
        Self::with_gate(script, None)
    }
    fn gated(script: Vec<Result<TokenResponse, Error>>, gate: Arc<Semaphore>) -> Arc<Self> {
        Self::with_gate(script, Some(gate))
    }
    fn with_gate(
        script: Vec<Result<TokenResponse, Error>>,
        gate: Option<Arc<Semaphore>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            script: Mutex::new(script.into()),
            gate,
        })
    }
    /// `t1` then `t2` (300 s each), every answer held until the returned gate gets a permit
    /// (it starts with one: the first answer goes through).
    fn gated_t1_then_t2() -> (Arc<Semaphore>, Arc<Self>) {
        let gate = Arc::new(Semaphore::new(1));
        let src = Self::gated(
            vec![Ok(token("t1", Some(300))), Ok(token("t2", Some(300)))],
            gate.clone(),
        );
        (gate, src)
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

struct Handle(Arc<Scripted>);

impl TokenSource for Handle {
    fn fetch(&self, _now: UnixTime) -> BoxFuture<'_, Result<TokenResponse, Error>> {
        Box::pin(async move {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(g) = &self.0.gate {
                g.acquire().await.expect("gate").forget();
            }
            self.0
                .script
                .lock()
                .pop_front()
                .unwrap_or_else(|| Ok(token("default", Some(300))))
        })
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

fn token(value: &str, expires_in: Option<u64>) -> TokenResponse {
    TokenResponse {
        access_token: Secret::new(value),
        token_type: "Bearer".into(),
        expires_in: expires_in.map(Duration::from_secs),
        refresh_token: None,
        scope: None,
    }
}

fn transient(retry_after: Option<u64>) -> Error {
    let e = Error::new(ErrorKind::IdpUnavailable, "idp_unavailable", "503 from IdP");
    match retry_after {
        Some(s) => e.with_retry_after(Duration::from_secs(s)),
        None => e,
    }
}

fn permanent() -> Error {
    Error::new(
        ErrorKind::IdpRejected,
        "idp_invalid_client",
        "invalid_client",
    )
}

fn timing() -> TimingConfig {
    TimingConfig {
        jitter_fraction: 0.0,
        ..TimingConfig::default()
    }
}

fn profile(source: &Arc<Scripted>, clock: &ManualClock) -> Arc<Profile> {
    Profile::new(
        "p",
        true,
        timing(),
        Box::new(Handle(source.clone())),
        Arc::new(clock.clone()),
        false,
    )
}

async fn get(p: &Arc<Profile>) -> Result<tw_broker::Served, Error> {
    p.token(TokenRequest::default()).await
}

/// Lets spawned fetch tasks run to completion.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn fresh_then_stale_with_one_background_refresh_then_new_token() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![Ok(token("t1", Some(300))), Ok(token("t2", Some(300)))]);
    let p = profile(&src, &clock);

    let s = get(&p).await.unwrap();
    assert_eq!(s.token.access_token.expose(), "t1");
    assert_eq!(s.freshness, Freshness::Fresh);
    assert_eq!(src.calls(), 1);

    clock.advance(Duration::from_secs(200));
    assert_eq!(get(&p).await.unwrap().freshness, Freshness::Fresh);
    assert_eq!(src.calls(), 1, "no refresh before 75 % of the lifetime");

    clock.advance(Duration::from_secs(30)); // 230 s: stale
    let s = get(&p).await.unwrap();
    assert_eq!(s.freshness, Freshness::Stale);
    assert_eq!(
        s.token.access_token.expose(),
        "t1",
        "stale token served at once"
    );
    for _ in 0..10 {
        let _ = get(&p).await.unwrap();
    }
    settle().await;
    assert_eq!(
        src.calls(),
        2,
        "exactly one background refresh for many stale reads"
    );
    let s = get(&p).await.unwrap();
    assert_eq!(s.token.access_token.expose(), "t2");
    assert_eq!(s.freshness, Freshness::Fresh);
}

#[tokio::test]
async fn expired_token_is_never_handed_out() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![
        Ok(token("t1", Some(60))),
        Err(transient(None)),
        Err(transient(None)),
    ]);
    let p = profile(&src, &clock);
    get(&p).await.unwrap();
    clock.advance(Duration::from_secs(60));
    let err = get(&p).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IdpUnavailable);
    assert_eq!(err.context_value("profile"), Some("p"));
    // Within the probe interval: no new IdP request, a clear 503-class error with Retry-After.
    let err = get(&p).await.unwrap_err();
    assert_eq!(err.code(), "token_unavailable");
    assert_eq!(err.http_status(), 503);
    assert!(err.retry_after().is_some());
    assert_eq!(src.calls(), 2);
}

#[tokio::test]
async fn concurrent_callers_at_expiry_cause_one_fetch() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let (gate, src) = Scripted::gated_t1_then_t2();
    let p = profile(&src, &clock);
    get(&p).await.unwrap();
    clock.advance(Duration::from_secs(301));

    let callers: Vec<_> = (0..500)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { get(&p).await })
        })
        .collect();
    settle().await;
    assert_eq!(src.calls(), 2, "one fetch in flight for 500 callers");
    gate.add_permits(1);
    for c in callers {
        let s = c.await.unwrap().unwrap();
        assert_eq!(s.token.access_token.expose(), "t2");
    }
    assert_eq!(src.calls(), 2);
}

#[tokio::test]
async fn permanent_rejection_is_not_retried_until_the_pause_ends() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![Err(permanent()), Ok(token("t1", Some(300)))]);
    let p = profile(&src, &clock);
    for _ in 0..100 {
        let e = get(&p).await.unwrap_err();
        assert_eq!(
            e.code(),
            "idp_invalid_client",
            "the cause stays visible to callers"
        );
        assert!(!e.is_retryable());
    }
    clock.advance(Duration::from_secs(60));
    assert!(get(&p).await.is_err());
    assert!(
        p.force_refresh(None).await.is_err(),
        "forcing does not bypass the pause either"
    );
    assert_eq!(src.calls(), 1, "invalid_client must not hammer the IdP");
    clock.advance(Duration::from_secs(241)); // backoff_max (300 s) has passed
    assert_eq!(get(&p).await.unwrap().token.access_token.expose(), "t1");
    assert_eq!(src.calls(), 2);
}

#[tokio::test]
async fn transient_failures_probe_at_most_once_per_second_and_honour_retry_after() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![
        Err(transient(None)),
        Err(transient(Some(7))),
        Ok(token("t1", Some(300))),
    ]);
    let p = profile(&src, &clock);
    assert!(get(&p).await.is_err());
    for _ in 0..50 {
        assert!(get(&p).await.is_err());
    }
    assert_eq!(src.calls(), 1);
    clock.advance(Duration::from_millis(1000));
    let e = get(&p).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(src.calls(), 2);
    clock.advance(Duration::from_secs(6));
    let e = get(&p).await.unwrap_err();
    assert_eq!(e.code(), "token_unavailable");
    assert!(e.retry_after().unwrap() <= Duration::from_secs(1));
    assert_eq!(src.calls(), 2, "Retry-After is honoured");
    clock.advance(Duration::from_secs(1));
    assert_eq!(get(&p).await.unwrap().token.access_token.expose(), "t1");
    assert_eq!(src.calls(), 3);
}

#[tokio::test]
async fn stale_token_survives_an_outage_until_expiry() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![
        Ok(token("t1", Some(300))),
        Err(transient(None)),
        Err(transient(None)),
        Err(transient(None)),
    ]);
    let p = profile(&src, &clock);
    get(&p).await.unwrap();
    clock.advance(Duration::from_secs(230));
    assert_eq!(get(&p).await.unwrap().token.access_token.expose(), "t1");
    settle().await;
    assert_eq!(src.calls(), 2);
    // Background backoff (1 s): another stale read right away does not refetch.
    assert_eq!(get(&p).await.unwrap().freshness, Freshness::Stale);
    settle().await;
    assert_eq!(src.calls(), 2);
    clock.advance(Duration::from_secs(69)); // 299 s: still valid
    assert_eq!(get(&p).await.unwrap().token.access_token.expose(), "t1");
    settle().await;
    assert_eq!(src.calls(), 3, "background retry after its backoff");
    clock.advance(Duration::from_secs(1)); // 300 s: expired
    let e = get(&p).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IdpUnavailable);
    assert_eq!(src.calls(), 4);
}

#[tokio::test]
async fn missing_expires_in_uses_the_default_lifetime_never_forever() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![Ok(token("t1", None)), Ok(token("t2", None))]);
    let p = profile(&src, &clock);
    let s = get(&p).await.unwrap();
    assert!(s.token.lifetime_assumed);
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(300));
    clock.advance(Duration::from_secs(300));
    assert_eq!(get(&p).await.unwrap().token.access_token.expose(), "t2");
}

#[tokio::test]
async fn forced_refresh_for_a_rejected_token_is_coalesced() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let (gate, src) = Scripted::gated_t1_then_t2();
    let p = profile(&src, &clock);
    let t1 = get(&p).await.unwrap().token;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let p = p.clone();
            let fp = t1.fingerprint;
            tokio::spawn(async move { p.force_refresh(Some(fp)).await })
        })
        .collect();
    settle().await;
    gate.add_permits(1);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().access_token.expose(), "t2");
    }
    assert_eq!(src.calls(), 2);
    // A late 401 for the old token gets the new one without another fetch.
    assert_eq!(
        p.force_refresh(Some(t1.fingerprint))
            .await
            .unwrap()
            .access_token
            .expose(),
        "t2"
    );
    assert_eq!(src.calls(), 2);
}

#[tokio::test]
async fn forced_refreshes_are_rate_limited() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![]);
    let p = profile(&src, &clock);
    // Each names the token it wants replaced (an unnamed one would share a token just forced).
    let mut named = None;
    for _ in 0..3 {
        named = Some(p.force_refresh(named).await.unwrap().fingerprint);
    }
    let e = p.force_refresh(named).await.unwrap_err();
    assert_eq!(e.code(), "forced_refresh_limited");
    assert_eq!(src.calls(), 3);
    clock.advance(Duration::from_secs(10));
    p.force_refresh(None).await.unwrap();
    assert_eq!(src.calls(), 4);
}

#[tokio::test]
async fn min_ttl_beyond_the_token_lifetime_fails_without_fetching_again() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![Ok(token("t1", Some(60)))]);
    let p = profile(&src, &clock);
    let e = p
        .token(TokenRequest {
            min_ttl: Duration::from_secs(120),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "min_ttl_unsatisfiable");
    assert_eq!(e.http_status(), 400);
    for _ in 0..10 {
        assert!(
            p.token(TokenRequest {
                min_ttl: Duration::from_secs(120)
            })
            .await
            .is_err()
        );
    }
    assert_eq!(src.calls(), 1);
    // A satisfiable demand on an ageing token triggers a fetch of a longer-lived one.
    clock.advance(Duration::from_secs(40));
    let s = p
        .token(TokenRequest {
            min_ttl: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(300));
    assert_eq!(src.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_idp_gives_a_bounded_wait_then_a_clear_error() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let gate = Arc::new(Semaphore::new(0));
    let src = Scripted::gated(vec![], gate);
    let p = profile(&src, &clock);
    let e = get(&p).await.unwrap_err();
    assert_eq!(e.code(), "token_wait_timeout");
    assert_eq!(e.http_status(), 503);
}

#[tokio::test]
async fn status_and_updates_reflect_the_cache() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![Ok(token("t1", Some(300)))]);
    let p = profile(&src, &clock);
    let mut rx = p.subscribe();
    assert!(!p.status().usable);
    get(&p).await.unwrap();
    assert!(p.status().usable);
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().as_ref().unwrap().access_token.expose(), "t1");
    let dbg = format!("{:?}", p.status());
    assert!(
        !dbg.contains("t1\""),
        "status must not leak the token: {dbg}"
    );
}

/// `n` forced refreshes of the current token, spawned at once.
fn spawn_forced_refreshes(
    p: &Arc<Profile>,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<Arc<tw_broker::IssuedToken>, Error>>> {
    (0..n)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.force_refresh(None).await })
        })
        .collect()
}

#[tokio::test]
async fn a_thousand_concurrent_forced_refreshes_of_the_current_token_share_one_fetch() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let (gate, src) = Scripted::gated_t1_then_t2();
    let p = profile(&src, &clock);
    let t1 = get(&p).await.unwrap().token;

    let tasks = spawn_forced_refreshes(&p, 1000);
    settle().await;
    assert_eq!(
        src.calls(),
        2,
        "one fetch in flight for 1,000 forced refreshes"
    );
    assert_eq!(
        p.status().waiting,
        1000,
        "every caller waits for that fetch"
    );
    gate.add_permits(1);
    for t in tasks {
        let tok = t.await.unwrap().unwrap();
        assert_eq!(tok.access_token.expose(), "t2");
        assert_ne!(tok.fingerprint, t1.fingerprint);
    }
    assert_eq!(src.calls(), 2);
    assert_eq!(p.status().waiting, 0);
}

#[tokio::test]
async fn concurrent_forced_refreshes_share_one_failure() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let gate = Arc::new(Semaphore::new(1));
    let src = Scripted::gated(
        vec![
            Ok(token("t1", Some(300))),
            Err(transient(None)),
            Ok(token("t2", Some(300))),
        ],
        gate.clone(),
    );
    let p = profile(&src, &clock);
    get(&p).await.unwrap();

    let tasks = spawn_forced_refreshes(&p, 1000);
    settle().await;
    assert_eq!(p.status().waiting, 1000);
    gate.add_permits(1);
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(
            e.code(),
            "idp_unavailable",
            "every caller gets the one error"
        );
    }
    assert_eq!(src.calls(), 2, "one IdP request for all");
    // Asked for afterwards, with the old token still current: a fetch of its own.
    gate.add_permits(1);
    let tok = p.force_refresh(None).await.unwrap();
    assert_eq!(tok.access_token.expose(), "t2");
    assert_eq!(src.calls(), 3);
}

#[tokio::test]
async fn a_forced_refresh_after_the_shared_one_finished_gets_its_own_token_within_the_limit() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let gate = Arc::new(Semaphore::new(1));
    let src = Scripted::gated(
        vec![
            Ok(token("t1", Some(300))),
            Ok(token("t2", Some(300))),
            Ok(token("t3", Some(300))),
            Ok(token("t4", Some(300))),
            Ok(token("t5", Some(300))),
        ],
        gate.clone(),
    );
    let p = profile(&src, &clock);
    let t1 = get(&p).await.unwrap().token;
    let tasks = spawn_forced_refreshes(&p, 100);
    settle().await;
    gate.add_permits(1);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().access_token.expose(), "t2");
    }
    assert_eq!(src.calls(), 2);

    // A late refresh for the token the shared one replaced: that result, no IdP request.
    let late = p.force_refresh(Some(t1.fingerprint)).await.unwrap();
    assert_eq!(late.access_token.expose(), "t2");
    assert_eq!(src.calls(), 2);

    // Naming no token, within the coalescing window: the token just forced, no IdP request.
    assert_eq!(
        p.force_refresh(None).await.unwrap().access_token.expose(),
        "t2"
    );
    assert_eq!(src.calls(), 2);

    // Sequential refreshes naming the current token: each its own, the shared one took one unit
    // of the burst of three.
    gate.add_permits(2);
    let t3 = p.force_refresh(Some(late.fingerprint)).await.unwrap();
    assert_eq!(t3.access_token.expose(), "t3");
    let t4 = p.force_refresh(Some(t3.fingerprint)).await.unwrap();
    assert_eq!(t4.access_token.expose(), "t4");
    let e = p.force_refresh(Some(t4.fingerprint)).await.unwrap_err();
    assert_eq!(e.code(), "forced_refresh_limited");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(src.calls(), 4);
    clock.advance(Duration::from_secs(10));
    gate.add_permits(1);
    assert_eq!(
        p.force_refresh(None).await.unwrap().access_token.expose(),
        "t5"
    );
    assert_eq!(src.calls(), 5);
}

#[tokio::test]
async fn an_unnamed_forced_refresh_shares_a_token_forced_less_than_the_window_ago() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![
        Ok(token("t1", Some(300))),
        Ok(token("t2", Some(300))),
        Ok(token("t3", Some(300))),
    ]);
    let p = profile(&src, &clock);
    get(&p).await.unwrap();
    // The current token came from an ordinary fetch: an unnamed forced refresh replaces it.
    let forced = |p: &Arc<Profile>| {
        let p = p.clone();
        async move {
            let t = p.force_refresh(None).await.unwrap();
            t.access_token.expose().to_owned()
        }
    };
    assert_eq!(forced(&p).await, "t2");
    // The late callers of the same burst share it, up to the end of the window.
    assert_eq!(forced(&p).await, "t2");
    clock.advance(FORCED_REFRESH_COALESCE - Duration::from_millis(1));
    assert_eq!(forced(&p).await, "t2");
    assert_eq!(src.calls(), 2);
    clock.advance(Duration::from_millis(1));
    assert_eq!(forced(&p).await, "t3");
    assert_eq!(src.calls(), 3);
}

#[tokio::test]
async fn a_named_token_the_profile_never_held_counts_as_unnamed() {
    let clock = ManualClock::new(UnixTime::from_secs(1_000_000));
    let src = Scripted::new(vec![Ok(token("t1", Some(300))), Ok(token("t2", Some(300)))]);
    let p = profile(&src, &clock);
    let t1 = get(&p).await.unwrap().token;
    // Another instance's token, or one from before a restart: not "already replaced".
    let stranger = tw_core::TokenFingerprint::of("a token this agent never issued");
    let t2 = p.force_refresh(Some(stranger)).await.unwrap();
    assert_eq!(t2.access_token.expose(), "t2");
    assert_eq!(src.calls(), 2);
    // The token it replaced is remembered: naming it gets the current one, no IdP request.
    clock.advance(FORCED_REFRESH_COALESCE);
    let again = p.force_refresh(Some(t1.fingerprint)).await.unwrap();
    assert_eq!(again.access_token.expose(), "t2");
    assert_eq!(src.calls(), 2);
}
