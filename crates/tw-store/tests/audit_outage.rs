//! The audit log through a PostgreSQL outage, on a real PostgreSQL behind a loopback relay that
//! can cut and restore the connection (the server keeps its data): decisions made while the
//! database is unreachable go to the writer's local spool and arrive once each, in order, when it
//! is back — also when the writer is restarted during the outage, or replays a spool the
//! database has already taken (a crash before the spool noted it).
//!
//! The waits below are bounded polls for the writer's progress; no assertion depends on timing.

// Helpers are plain fns, so clippy's allowance for #[test] fns does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::audit::{decision, stored};
use common::relay::{Relay, open_through};

use common::Target;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tw_authz::{AuditEvent, AuditOutcome, AuditQueue, AuditSettings, AuditSink, SpoolSettings};
use tw_store::health::StoreHealth;
use tw_store::{Store, StoreAuditSink};

/// How long the writer may take to get somewhere (spool, replay).
const PATIENCE: Duration = Duration::from_secs(60);

fn subjects(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("s{n:05}")).collect()
}

fn settings(spool: &Path, capacity: usize, max_bytes: u64) -> AuditSettings {
    AuditSettings {
        spool: Some(SpoolSettings {
            path: spool.to_owned(),
            max_bytes,
        }),
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(250),
        ..AuditSettings::new(capacity, Duration::from_secs(60))
    }
}

fn start(store: &Store, settings: AuditSettings) -> (AuditQueue, tokio::task::JoinHandle<()>) {
    let sink = Arc::new(StoreAuditSink::new(store.clone(), "gw-test"));
    AuditQueue::start_with(sink, settings, Arc::new(tw_core::SystemClock)).unwrap()
}

fn spool_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pushes `range`, a few at a time, as requests would (about 20 per millisecond: the queue
/// never fills).
async fn push(q: &AuditQueue, range: std::ops::Range<usize>) {
    for n in range {
        q.push(decision(n, AuditOutcome::Allow));
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_made_during_an_outage_are_stored_once_in_order() {
    let target = common::postgres().await;
    let mut relay = Relay::start(target.pg.as_ref().unwrap().port());
    let store = open_through(&target, &relay).await;
    let _health = StoreHealth::start(store.clone());
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("audit.spool");
    // A queue far smaller than the outage's decisions.
    let (q, task) = start(&store, settings(&spool, 500, 256 << 20));
    push(&q, 0..100).await;
    eventually("the first 100 stored", async || {
        stored(&store).await.len() == 100
    })
    .await;

    relay.cut().await;
    push(&q, 100..3100).await;
    eventually("the outage's decisions spooled", async || {
        spool_lines(&spool) == 3000
    })
    .await;
    assert_eq!(q.dropped(), 0);

    relay.restore();
    eventually("everything stored", async || {
        stored(&store).await.len() >= 3100
    })
    .await;
    eventually("the spool removed", async || !spool.exists()).await;
    push(&q, 3100..3110).await;
    drop(q);
    task.await.unwrap();
    assert_eq!(
        stored(&store).await,
        subjects(0..3110),
        "once each, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_the_outage_and_a_repeated_replay_add_nothing_twice() {
    let mut target = common::postgres().await;
    // No health pinger here: each write waits for the pool's connect timeout, then fails.
    target.cfg.connect_timeout = Duration::from_millis(500);
    let mut relay = Relay::start(target.pg.as_ref().unwrap().port());
    let store = open_through(&target, &relay).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("audit.spool");
    let (q, task) = start(&store, settings(&spool, 200, 256 << 20));
    push(&q, 0..50).await;
    eventually("the first 50 stored", async || {
        stored(&store).await.len() == 50
    })
    .await;

    relay.cut().await;
    push(&q, 50..1050).await;
    // The gateway stops while the database is unreachable.
    assert_eq!(q.dropped(), 0);
    drop(q);
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert_eq!(
        spool_lines(&spool),
        1000,
        "the outage's decisions are on disk"
    );
    let copy = std::fs::read(&spool).unwrap();

    // And starts again, over the same spool, before the database is back.
    let (q, task) = start(&store, settings(&spool, 200, 256 << 20));
    push(&q, 1050..1100).await;
    relay.restore();
    assert_eq!(q.dropped(), 0);
    eventually("everything stored", async || {
        stored(&store).await.len() >= 1100
    })
    .await;
    eventually("the spool removed", async || !spool.exists()).await;
    drop(q);
    task.await.unwrap();
    assert_eq!(
        stored(&store).await,
        subjects(0..1100),
        "once each, in order"
    );

    // A crash after the database took the replay, before the spool noted it: the next start
    // replays it again, and the database keeps one row per decision.
    std::fs::write(&spool, &copy).unwrap();
    let (q, task) = start(&store, settings(&spool, 200, 256 << 20));
    eventually("the repeated replay done", async || !spool.exists()).await;
    drop(q);
    task.await.unwrap();
    assert_eq!(stored(&store).await, subjects(0..1100), "nothing twice");
}

async fn a_batch_written_twice_is_stored_once(target: Target) {
    let store = target.open().await;
    let sink = StoreAuditSink::new(store.clone(), "gw-test");
    let mut events: Vec<AuditEvent> = (0..5).map(|n| decision(n, AuditOutcome::Allow)).collect();
    for (n, e) in events.iter_mut().enumerate() {
        e.id = Some(format!("00000000-0000-4000-8000-{n:012}"));
    }
    sink.write(&events).await.unwrap();
    sink.write(&events[2..]).await.unwrap();
    let mut without_id = decision(5, AuditOutcome::Allow);
    without_id.id = None;
    sink.write(std::slice::from_ref(&without_id)).await.unwrap();
    sink.write(std::slice::from_ref(&without_id)).await.unwrap();
    let mut expected = subjects(0..5);
    expected.extend(["s00005".to_owned(), "s00005".to_owned()]);
    assert_eq!(
        stored(&store).await,
        expected,
        "by id once; rows without an id as written"
    );
}
both!(batch_written_twice, a_batch_written_twice_is_stored_once);
