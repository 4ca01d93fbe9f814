//! Registry lookups during a PostgreSQL outage, on a real PostgreSQL: once the health pinger has
//! seen the store down, a lookup that misses the registry cache answers 503
//! `storage_unavailable` (with `Retry-After`) at once instead of waiting for the pool's connect
//! timeout, while the cache keeps serving what it holds; lookups reach the database again as soon
//! as a ping answers, and a pinger that stops leaves nothing marked down.
//!
//! The registry cache's TTL is set far beyond a test's run, so no answer here depends on time
//! passing; the waits below only wait for the pinger (which pings every second) to notice.

// Helpers are plain fns, so clippy's allowance for #[test] fns does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::relay::{Relay, open_through};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tw_authz::{AccountKey, CachedRegistry, ProvisionRequest, RegistryAccount, RegistrySource};
use tw_core::{Error, ErrorKind};
use tw_store::health::StoreHealth;
use tw_store::{NewAccount, Store};

const ISS: &str = "https://kc.example/realms/dls";
/// Long enough that no cached answer expires during a test.
const CACHE_TTL: Duration = Duration::from_secs(600);
/// How long a cache-missing lookup may take once the store is known to be down: the issue's
/// "within milliseconds", far below the pool's connect timeout (5 s by default).
const FAST_FAIL: Duration = Duration::from_millis(50);
/// How long the pinger may take to notice a change (it pings every second).
const NOTICE: Duration = Duration::from_secs(30);

fn key(subject: &str) -> AccountKey {
    AccountKey::user(ISS, Some(subject))
}

fn cached(store: &Store) -> CachedRegistry {
    CachedRegistry::new(Arc::new(store.clone()), CACHE_TTL, 100, Some(store.watch()))
}

/// Two accounts: `sub-cached` (role `reader`, `attributes:read`) and `sub-uncached`.
async fn seed(store: &Store) -> (RegistryAccount, RegistryAccount) {
    store
        .upsert_role("reader", None, &["attributes:read".to_owned()])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for subject in ["sub-cached", "sub-uncached"] {
        let mut new = NewAccount::with_subject(ISS, subject, "test");
        new.roles = vec!["reader".to_owned()];
        ids.push(store.create_account(new).await.unwrap().id);
    }
    let account = |id: &String| RegistryAccount {
        id: id.clone(),
        enabled: true,
        permissions: vec!["attributes:read".to_owned()],
        roles: vec!["reader".to_owned()],
    };
    (account(&ids[0]), account(&ids[1]))
}

/// Waits until the pinger's last answer says `reachable`.
async fn wait_for_readiness(health: &StoreHealth, reachable: bool) {
    let deadline = Instant::now() + NOTICE;
    while health.readiness().reachable != reachable {
        assert!(
            Instant::now() < deadline,
            "the health task did not see the store {} within {NOTICE:?}: {:?}",
            if reachable { "back" } else { "down" },
            health.readiness()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The store-unavailable error of today's slow path: 503, retryable, with `Retry-After`.
fn assert_unavailable(e: &Error) {
    assert_eq!(e.kind(), ErrorKind::StorageUnavailable, "{e:?}");
    assert_eq!(e.code(), "storage_unavailable", "{e:?}");
    assert_eq!(e.http_status(), 503, "{e:?}");
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)), "{e:?}");
}

/// One cache-missing lookup, timed: it fails at once with the unavailable error.
async fn assert_miss_fails_fast(registry: &CachedRegistry, key: &AccountKey) {
    let started = Instant::now();
    let answer = registry.find(key).await;
    let elapsed = started.elapsed();
    let e = answer.expect_err("a cache miss while the store is down");
    assert_unavailable(&e);
    assert!(
        elapsed < FAST_FAIL,
        "a cache miss took {elapsed:?} to fail while the health task knew the store was down \
         (at most {FAST_FAIL:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_misses_fail_fast_while_health_sees_postgres_stopped() {
    let mut target = common::postgres().await;
    let store = target.open().await;
    let (cached_account, _) = seed(&store).await;
    let registry = cached(&store);
    assert_eq!(
        registry.find(&key("sub-cached")).await.unwrap(),
        Some(cached_account.clone())
    );
    let health = StoreHealth::start(store.clone());

    // PostgreSQL stops; once the health task has seen it, a cache miss does not wait for the pool.
    drop(target.pg.take());
    wait_for_readiness(&health, false).await;
    assert_miss_fails_fast(&registry, &key("sub-uncached")).await;
    // A name the registry never answered for fails the same way (nothing is cached for it).
    assert_miss_fails_fast(&registry, &key("sub-unknown")).await;

    // The cached answer is still served, though the store itself does not answer for it.
    assert_eq!(
        registry.find(&key("sub-cached")).await.unwrap(),
        Some(cached_account)
    );
    let started = Instant::now();
    let direct = RegistrySource::find(&store, &key("sub-cached")).await;
    assert_unavailable(&direct.expect_err("the store is down"));
    assert!(started.elapsed() < FAST_FAIL, "{:?}", started.elapsed());

    // Auto-provisioning of an unknown principal fails at once too.
    let request = ProvisionRequest {
        key: key("sub-new"),
        username: None,
        service_account: false,
        role: "reader".to_owned(),
    };
    let started = Instant::now();
    let provisioned = registry.provision(&request).await;
    assert_unavailable(&provisioned.expect_err("the store is down"));
    assert!(started.elapsed() < FAST_FAIL, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_reach_postgres_again_once_health_sees_it_back() {
    let target = common::postgres().await;
    let mut relay = Relay::start(target.pg.as_ref().unwrap().port());
    let store = open_through(&target, &relay).await;
    let (cached_account, uncached_account) = seed(&store).await;
    let registry = cached(&store);
    assert_eq!(
        registry.find(&key("sub-cached")).await.unwrap(),
        Some(cached_account.clone())
    );
    let health = StoreHealth::start(store.clone());

    relay.cut().await;
    wait_for_readiness(&health, false).await;
    assert_miss_fails_fast(&registry, &key("sub-uncached")).await;
    assert_eq!(
        registry.find(&key("sub-cached")).await.unwrap(),
        Some(cached_account.clone())
    );
    // Many failed lookups later, the store is still only as down as the pings say.
    for _ in 0..50 {
        assert_unavailable(&registry.find(&key("sub-uncached")).await.unwrap_err());
    }

    // PostgreSQL is reachable again: once a ping answers, lookups go to the database.
    relay.restore();
    wait_for_readiness(&health, true).await;
    assert_eq!(
        registry.find(&key("sub-uncached")).await.unwrap(),
        Some(uncached_account),
        "the lookup that failed during the outage now reads the database"
    );
    let mut new = NewAccount::with_subject(ISS, "sub-after", "test");
    new.roles = vec!["reader".to_owned()];
    let after = store.create_account(new).await.unwrap();
    assert_eq!(
        registry
            .find(&key("sub-after"))
            .await
            .unwrap()
            .map(|a| a.id),
        Some(after.id),
        "an account created after the outage is found"
    );
    let provisioned = registry
        .provision(&ProvisionRequest {
            key: key("sub-provisioned"),
            username: None,
            service_account: false,
            role: "reader".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(provisioned.roles, vec!["reader".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_health_task_leaves_no_store_marked_down() {
    let target = common::postgres().await;
    let mut relay = Relay::start(target.pg.as_ref().unwrap().port());
    let store = open_through(&target, &relay).await;
    let (_, uncached_account) = seed(&store).await;
    let health = StoreHealth::start(store.clone());
    relay.cut().await;
    wait_for_readiness(&health, false).await;
    assert_unavailable(
        &RegistrySource::find(&store, &key("sub-uncached"))
            .await
            .unwrap_err(),
    );

    // The last handle goes while the store is marked down. The pinger stops at its next tick
    // without ever seeing the store answer, and takes its verdict with it: lookups go to the
    // database again (rather than failing fast forever with nobody left to clear the mark).
    drop(health);
    relay.restore();
    let deadline = Instant::now() + NOTICE;
    loop {
        match RegistrySource::find(&store, &key("sub-uncached")).await {
            Ok(found) => {
                assert_eq!(found, Some(uncached_account));
                break;
            }
            Err(e) => {
                assert_unavailable(&e);
                assert!(
                    Instant::now() < deadline,
                    "lookups still fail {NOTICE:?} after the health task was dropped: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
