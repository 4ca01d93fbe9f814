//! The audit spool's limit during a PostgreSQL outage (a real PostgreSQL behind a loopback relay
//! that can cut and restore the connection): what goes beyond it is dropped, and every dropped
//! decision is counted in `tokenwarden_audit_dropped_total{reason}`: rows stored + counted drops
//! = decisions, exactly. Its own test binary: it installs the process's metrics recorder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::audit::{decision, stored};
use common::relay::{Relay, open_through};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tw_authz::{AuditOutcome, AuditQueue, AuditSettings, SpoolSettings};
use tw_store::StoreAuditSink;
use tw_store::health::StoreHealth;

const PATIENCE: Duration = Duration::from_secs(60);
const DECISIONS: usize = 600;
/// About 40 decisions' lines.
const SPOOL_MAX_BYTES: u64 = 12_000;

/// The value of the metric line starting with `name` (`0` when it is not there).
fn metric(handle: &PrometheusHandle, name: &str) -> u64 {
    handle
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_spool_limit_every_dropped_decision_is_counted() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let target = common::postgres().await;
    let mut relay = Relay::start(target.pg.as_ref().unwrap().port());
    let store = open_through(&target, &relay).await;
    let _health = StoreHealth::start(store.clone());
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("audit.spool");
    let settings = AuditSettings {
        spool: Some(SpoolSettings {
            path: spool.clone(),
            max_bytes: SPOOL_MAX_BYTES,
        }),
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(250),
        ..AuditSettings::new(100, Duration::from_secs(60))
    };
    let sink = Arc::new(StoreAuditSink::new(store.clone(), "gw-test"));
    let (q, task) = AuditQueue::start_with(sink, settings, Arc::new(tw_core::SystemClock)).unwrap();

    relay.cut().await;
    for n in 0..DECISIONS {
        q.push(decision(n, AuditOutcome::Deny));
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    eventually("the spool full, drops counted", || q.dropped() > 0).await;
    let spooled = "tokenwarden_audit_spooled_rows";
    assert!(metric(&handle, spooled) > 0, "{}", handle.render());
    assert!(std::fs::metadata(&spool).unwrap().len() <= SPOOL_MAX_BYTES);

    relay.restore();
    let deadline = Instant::now() + PATIENCE;
    let rows = loop {
        let rows = stored(&store).await;
        let dropped = usize::try_from(q.dropped()).unwrap();
        if rows.len() + dropped >= DECISIONS && !spool.exists() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} rows + {dropped} dropped",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dropped = q.dropped();
    drop(q);
    task.await.unwrap();
    assert_eq!(
        rows.len() + usize::try_from(dropped).unwrap(),
        DECISIONS,
        "rows + counted drops = decisions"
    );
    assert!(
        rows.len() >= 40,
        "the spool's worth was kept: {}",
        rows.len()
    );
    // In order, no duplicates.
    let mut sorted = rows.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(rows, sorted);
    let by_reason = |r: &str| {
        metric(
            &handle,
            &format!("tokenwarden_audit_dropped_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(by_reason("spool_full"), dropped, "{}", handle.render());
    assert_eq!(by_reason("queue_full"), 0);
    assert_eq!(metric(&handle, spooled), 0, "nothing left in the spool");
}
