//! Per-principal rate limits (GCRA, `governor`) over [`tw_core::Clock`] time, so tests move time
//! by hand.

use crate::settings::PrincipalRateLimit;
use governor::clock::{Clock as GovClock, Reference};
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tw_core::Clock;

/// `governor`'s clock over a [`tw_core::Clock`] (millisecond resolution).
#[derive(Debug, Clone)]
pub struct TwClock(pub Arc<dyn Clock>);

impl GovClock for TwClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ms = u64::try_from(self.0.now().as_millis()).unwrap_or(0);
        Nanos::from(ms.saturating_mul(1_000_000))
    }
}

/// Every this many checks, principals whose bucket is full again are forgotten.
const RETAIN_EVERY: u32 = 4096;

type Keyed = RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    TwClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// The default limit for every principal, and specific ones by client id or subject.
pub struct PrincipalLimiter {
    clock: TwClock,
    /// Checks since the last [`Self::retain_recent`].
    checks: std::sync::atomic::AtomicU32,
    default: Option<Keyed>,
    specific: HashMap<String, Keyed>,
}

fn quota(l: &PrincipalRateLimit) -> Quota {
    let per_second = NonZeroU32::new(l.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = l.burst.and_then(NonZeroU32::new).unwrap_or(per_second);
    Quota::per_second(per_second).allow_burst(burst)
}

impl PrincipalLimiter {
    pub fn new(
        default: Option<&PrincipalRateLimit>,
        specific: &std::collections::BTreeMap<String, PrincipalRateLimit>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let clock = TwClock(clock);
        let make = |l: &PrincipalRateLimit| {
            RateLimiter::new(quota(l), DefaultKeyedStateStore::default(), clock.clone())
        };
        Self {
            default: default.map(make),
            specific: specific.iter().map(|(k, l)| (k.clone(), make(l))).collect(),
            clock,
            checks: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Whether any limit is configured.
    pub fn is_active(&self) -> bool {
        self.default.is_some() || !self.specific.is_empty()
    }

    /// `Ok` to go on, or how long to wait. `names` are the principal's client id and subject
    /// (first configured one wins); `key` identifies the principal for the default limit.
    pub fn check(&self, key: &str, names: &[Option<&str>]) -> Result<(), Duration> {
        let specific = names
            .iter()
            .flatten()
            .find_map(|n| self.specific.get(*n).map(|l| (l, *n)));
        let (limiter, k) = match specific {
            Some((l, n)) => (l, n),
            None => match &self.default {
                Some(l) => (l, key),
                None => return Ok(()),
            },
        };
        // Bound the per-principal state: forget full buckets now and then.
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % RETAIN_EVERY
            == RETAIN_EVERY - 1
        {
            limiter.retain_recent();
        }
        limiter.check_key(&k.to_owned()).map_err(|not_until| {
            let now = self.clock.now();
            let wait = not_until.earliest_possible().duration_since(now);
            Duration::from(wait).max(Duration::from_millis(1))
        })
    }

    /// Forgets principals whose limit is back to full (bounds memory; call now and then).
    pub fn retain_recent(&self) {
        if let Some(d) = &self.default {
            d.retain_recent();
        }
        for l in self.specific.values() {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tw_core::ManualClock;

    #[test]
    fn limits_by_principal_with_a_manual_clock() {
        let clock = Arc::new(ManualClock::starting_now());
        let mut specific = BTreeMap::new();
        specific.insert(
            "bulk-client".to_owned(),
            PrincipalRateLimit {
                per_second: 10,
                burst: Some(5),
            },
        );
        let l = PrincipalLimiter::new(
            Some(&PrincipalRateLimit {
                per_second: 1,
                burst: Some(2),
            }),
            &specific,
            clock.clone(),
        );
        assert!(l.check("a", &[Some("a")]).is_ok());
        assert!(l.check("a", &[Some("a")]).is_ok());
        let wait = l.check("a", &[Some("a")]).expect_err("burst used");
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            l.check("b", &[Some("b")]).is_ok(),
            "keyed: b has its own bucket"
        );
        clock.advance(Duration::from_secs(1));
        assert!(l.check("a", &[Some("a")]).is_ok(), "refilled");
        assert!(l.check("a", &[Some("a")]).is_err());
        for _ in 0..5 {
            assert!(l.check("x", &[Some("bulk-client")]).is_ok());
        }
        let wait = l
            .check("x", &[Some("bulk-client")])
            .expect_err("specific burst");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        clock.advance(Duration::from_millis(100));
        assert!(l.check("x", &[Some("bulk-client")]).is_ok());
    }
}
