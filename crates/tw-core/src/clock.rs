//! Wall-clock time as a parameter.
//!
//! Token lifetimes are wall-clock facts (an `expires_at` we report to callers), so the clock speaks
//! in Unix milliseconds. Production code uses [`SystemClock`]; tests use [`ManualClock`] and move
//! time explicitly instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in wall-clock time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(i64);

impl UnixTime {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub const fn from_secs(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    /// Whole seconds, rounded down.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(d)))
    }
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_millis(d)))
    }
    /// Time from `self` until `later`, zero if `later` is not after `self`.
    pub fn until(self, later: UnixTime) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> UnixTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(duration_millis)
            .unwrap_or(0);
        UnixTime(ms)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(start.0)))
    }
    /// Starts at the real current time, so tokens from a real IdP look plausible.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(duration_millis(d), Ordering::SeqCst);
    }
    pub fn set(&self, t: UnixTime) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UnixTime::from_secs(100));
        assert_eq!(c.now().as_secs(), 100);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now().as_millis(), 101_500);
        let shared = c.clone();
        shared.advance(Duration::from_secs(1));
        assert_eq!(c.now().as_millis(), 102_500);
    }

    #[test]
    fn until_never_goes_negative() {
        let a = UnixTime::from_secs(10);
        let b = UnixTime::from_secs(5);
        assert_eq!(a.until(b), Duration::ZERO);
        assert_eq!(b.until(a), Duration::from_secs(5));
    }
}
