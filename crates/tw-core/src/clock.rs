//! Wall-clock time as a parameter.
//!
//! Token lifetimes are wall-clock facts (an `expires_at` we report to callers), so the clock speaks
//! in Unix milliseconds. Production code uses [`SystemClock`]; tests use [`ManualClock`] and move
//! time explicitly instead of sleeping. Code that waits for a point in time waits on the clock
//! ([`Clock::sleep_until`]): on a [`ManualClock`] it wakes when the test advances the clock past
//! that point, without real sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

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

/// What [`Clock::sleep_until`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> UnixTime;

    /// Completes once `deadline` is reached (at once if it has). The default, for clocks that
    /// follow real time, measures the time left by `now()` once and waits that long on Tokio's
    /// monotonic timer, so a wall-clock step backwards (NTP, a restored VM) cannot stretch the
    /// wait; [`ManualClock`] wakes its sleepers when moved.
    fn sleep_until(&self, deadline: UnixTime) -> Sleep<'_> {
        let left = self.now().until(deadline);
        Box::pin(async move {
            if !left.is_zero() {
                tokio::time::sleep(left).await;
            }
        })
    }
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

/// A clock that only moves when told to. Cloning shares the same time. [`Clock::sleep_until`]
/// completes when [`ManualClock::advance`] or [`ManualClock::set`] reaches the deadline.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<watch::Sender<i64>>);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self(Arc::new(watch::Sender::new(start.0)))
    }
    /// Starts at the real current time, so tokens from a real IdP look plausible.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }
    pub fn advance(&self, d: Duration) {
        self.0
            .send_modify(|t| *t = t.wrapping_add(duration_millis(d)));
    }
    pub fn set(&self, t: UnixTime) {
        self.0.send_modify(|now| *now = t.0);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(*self.0.borrow())
    }

    fn sleep_until(&self, deadline: UnixTime) -> Sleep<'_> {
        let mut time = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which this future borrows: never an error.
            let _ = time.wait_for(|now| *now >= deadline.0).await;
        })
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
    fn a_manual_clock_wakes_its_sleepers_when_it_reaches_their_deadline() {
        let c = ManualClock::new(UnixTime::from_secs(100));
        let mut early = polled(c.sleep_until(UnixTime::from_millis(100_500)));
        let mut late = polled(c.sleep_until(UnixTime::from_secs(102)));
        assert!(!early.poll(), "not before its time");
        assert!(!late.poll());
        c.advance(Duration::from_millis(499));
        assert!(!early.poll(), "1 ms short");
        c.advance(Duration::from_millis(1));
        assert!(early.poll(), "woken at its deadline");
        assert!(!late.poll());
        c.set(UnixTime::from_secs(103));
        assert!(late.poll(), "woken by a jump past it");
        assert!(
            polled(c.sleep_until(UnixTime::from_secs(1))).poll(),
            "a deadline in the past completes at once"
        );
    }

    /// A future polled by hand (no runtime timer involved: only the clock can wake it).
    struct Polled<'a>(Sleep<'a>, bool);

    fn polled(f: Sleep<'_>) -> Polled<'_> {
        Polled(f, false)
    }

    impl Polled<'_> {
        /// Whether the future has completed (polling it once more if not yet).
        fn poll(&mut self) -> bool {
            if !self.1 {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                self.1 = self.0.as_mut().poll(&mut cx).is_ready();
            }
            self.1
        }
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_until_its_deadline() {
        let deadline = SystemClock.now().plus(Duration::from_millis(30));
        SystemClock.sleep_until(deadline).await;
        assert!(SystemClock.now() >= deadline);
    }

    #[test]
    fn until_never_goes_negative() {
        let a = UnixTime::from_secs(10);
        let b = UnixTime::from_secs(5);
        assert_eq!(a.until(b), Duration::ZERO);
        assert_eq!(b.until(a), Duration::from_secs(5));
    }
}
