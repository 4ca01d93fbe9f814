//! Request rates for benchmarks that compare a path against a baseline in the same run.
//!
//! Criterion measures each benchmark on its own; a `RateBook` also adds up, per benchmark id, the
//! iterations and time criterion asked for, so the bench can print ratios at the end.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct RateBook(Mutex<BTreeMap<String, (u64, Duration)>>);

impl RateBook {
    pub const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    /// Runs `iteration` `iters` times in a row (for criterion's `iter_custom`), books the time
    /// under `id` and returns it.
    pub async fn time<F, Fut>(&self, id: &str, iters: u64, mut iteration: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let start = Instant::now();
        for _ in 0..iters {
            iteration().await;
        }
        let took = start.elapsed();
        let mut book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = book.entry(id.to_owned()).or_default();
        entry.0 += iters;
        entry.1 += took;
        took
    }

    /// Requests per second under `id`, each iteration being `per_iteration` requests.
    pub fn per_second(&self, id: &str, per_iteration: u64) -> f64 {
        let book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (iters, took) = book.get(id).copied().unwrap_or_default();
        (iters as f64 * per_iteration as f64) / took.as_secs_f64().max(f64::EPSILON)
    }
}

/// The runtime benches drive their servers and clients on: two workers, like the CI machines.
pub fn bench_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A keep-alive client for `concurrency` requests at a time, never through a proxy.
pub fn bench_client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency * 2)
        .build()
        .expect("HTTP client")
}
