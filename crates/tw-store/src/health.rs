//! The store's reachability for readiness probes, kept by a background task that pings the
//! database every second: a probe reads the last answer and never waits on the database (a
//! database that hangs would otherwise hang every probe with it, and a probe storm would load it).
//!
//! The store counts as unreachable after [`FAILED_PINGS_FOR_DOWN`] failed pings in a row (one
//! is a blip: a pool busy for a second fails a ping too), and reachable at the first answer.
//! The same verdict guards the registry port of the pinged [`Store`] (and of every clone of it):
//! while it is unreachable, [`tw_authz::RegistrySource`] lookups and provisioning answer
//! `storage_unavailable` (503, retryable, `Retry-After`) at once instead of each waiting for the
//! pool's connect timeout; the registry cache keeps serving what it holds for its TTL. Only the
//! pings decide (they always go to the database), so the first ping that answers lets lookups
//! through again; a pinger that stops takes its verdict with it.

use crate::store::Store;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the store is pinged, and how long one ping may take before it counts as a failure.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// Failed pings in a row that make the store unreachable.
pub const FAILED_PINGS_FOR_DOWN: u32 = 2;

/// The last ping's outcome, as probes show it (`{"backend", "reachable", "error"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReadiness {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub reachable: bool,
    /// Why the last ping failed (a store error message: never a password); `None` when it did not.
    pub error: Option<String>,
}

impl StoreReadiness {
    /// The JSON a probe shows.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "backend": self.backend,
            "reachable": self.reachable,
            "error": self.error,
        })
    }
}

/// A handle on the pinger. Cheap to clone; the pinger stops once every handle is dropped.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    /// The last ping's failure (`None`: it answered). One lock, so a probe never sees a
    /// reachability and an error from two different pings.
    last_error: Arc<Mutex<Option<String>>>,
    backend: &'static str,
}

impl StoreHealth {
    /// Starts pinging `store` on the current tokio runtime. Until the first answer the store
    /// counts as reachable: it was opened (which took a round trip) just before.
    pub fn start(store: Store) -> Self {
        let last_error = Arc::new(Mutex::new(None));
        let weak = Arc::downgrade(&last_error);
        let backend = store.backend().as_str();
        tokio::spawn(async move {
            let mut report = DownReport { store, down: false };
            let mut tick = tokio::time::interval(PING_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failed_in_a_row = 0u32;
            loop {
                tick.tick().await;
                let failure = match tokio::time::timeout(PING_EVERY, report.store.ping()).await {
                    Ok(answer) => answer.err().map(|e| e.message().to_owned()),
                    Err(_) => Some(format!("no answer within {}s", PING_EVERY.as_secs())),
                };
                let Some(last_error) = weak.upgrade() else {
                    return;
                };
                failed_in_a_row = if failure.is_some() {
                    failed_in_a_row.saturating_add(1)
                } else {
                    0
                };
                // One failed ping is not an outage (a pool busy for a second looks the same);
                // two in a row are.
                if failure.is_some() && failed_in_a_row < FAILED_PINGS_FOR_DOWN {
                    continue;
                }
                // The store's gate first: whoever sees the new readiness also sees lookups
                // follow it.
                report.set(failure.is_some());
                if let Ok(mut slot) = last_error.lock() {
                    *slot = failure;
                }
            }
        });
        Self {
            last_error,
            backend,
        }
    }

    /// The last ping's outcome (no I/O). While it is unreachable, the store's registry lookups
    /// fail fast (see the module documentation).
    pub fn readiness(&self) -> StoreReadiness {
        // A poisoned lock (a panic while holding it: none is possible) reads as unreachable.
        let error = match self.last_error.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => Some("the storage health state is unavailable".to_owned()),
        };
        StoreReadiness {
            backend: self.backend,
            reachable: error.is_none(),
            error,
        }
    }
}

/// A pinger's verdict as the store's registry port sees it: marked down while its last ping
/// failed, and taken back when a ping answers or the pinger stops (its task returns, or is
/// dropped with its runtime), so no store stays marked down by a pinger that no longer runs.
struct DownReport {
    store: Store,
    down: bool,
}

impl DownReport {
    fn set(&mut self, down: bool) {
        if down != self.down {
            self.store.report_health(down);
            self.down = down;
        }
    }
}

impl Drop for DownReport {
    fn drop(&mut self) {
        self.set(false);
    }
}
