//! The vault's metrics (own test binary: a thread-local recorder on a current-thread runtime).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, Harness};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::time::Duration;

#[tokio::test]
async fn mints_consents_and_rotations_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let h = Harness::start(Db::Sqlite).await;
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let mut reused = h.browser_consent(&h.alice, "alice", &[]).await;
    h.vault.complete_consent(reused.clone()).await.unwrap();
    reused.code = None;
    h.vault.complete_consent(reused).await.unwrap_err();
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    h.clock.advance(Duration::from_secs(31));
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    h.vault.mint(&h.bob, &entry.id).await.unwrap_err();

    let mut counters = std::collections::BTreeMap::new();
    let mut refresh_timings = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(n) => {
                counters.insert(name, n);
            }
            DebugValue::Histogram(v) if key.name() == tw_vault::METRIC_IDP_REFRESH_SECONDS => {
                refresh_timings += v.len();
            }
            _ => {}
        }
    }
    let count = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(
        count("tokenwarden_vault_consents_total{outcome=stored}"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        count("tokenwarden_vault_consents_total{outcome=vault_state_used}"),
        1
    );
    assert_eq!(count("tokenwarden_vault_mints_total{outcome=refreshed}"), 2);
    assert_eq!(count("tokenwarden_vault_mints_total{outcome=cached}"), 1);
    assert_eq!(
        count("tokenwarden_vault_mints_total{outcome=vault_entry_not_found}"),
        1
    );
    assert_eq!(count("tokenwarden_vault_rotations_total{}"), 2);
    assert_eq!(refresh_timings, 2);
}
