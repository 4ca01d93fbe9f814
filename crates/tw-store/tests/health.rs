//! The background pinger: readiness reads its last answer, which follows the database going away.

mod common;

use std::time::Duration;
use tw_store::health::StoreHealth;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let mut target = common::postgres().await;
    let health = StoreHealth::start(target.open().await);
    let ready = health.readiness();
    assert!(ready.reachable, "{ready:?}");
    assert_eq!(ready.backend, "postgres");
    assert_eq!(
        ready.detail(),
        serde_json::json!({ "backend": "postgres", "reachable": true, "error": null })
    );

    // The server stops: within a few pings the health says so, with the store's reason.
    drop(target.pg.take());
    let mut last = health.readiness();
    for _ in 0..200 {
        if !last.reachable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = health.readiness();
    }
    assert!(!last.reachable, "{last:?}");
    let error = last.error.clone().expect("a reason");
    assert!(!error.is_empty());
    assert_eq!(last.detail()["reachable"], false);
    assert_eq!(last.detail()["error"], error.as_str());
}
