//! The one exponential backoff: every wait between attempts in tokenwarden (the broker's
//! transient IdP failures, the agent's file sinks and proxy connect retries, the audit writer's
//! failed writes) is a [`Backoff`] policy whose delays come from `backon`'s
//! [`ExponentialBuilder`].
//!
//! A policy is `min`, multiplied by `factor` per attempt, capped at `max` (if any). Delays are
//! rounded to whole milliseconds (the resolution of [`UnixTime`](crate::UnixTime), which the
//! waits are measured against; `backon` computes in `f32` seconds, so 100 ms doubled would
//! otherwise be 200.000003 ms) and are at least 1 ms. An optional jitter takes up to a
//! fraction of a delay off, by a random sample the caller passes in (so tests choose it).

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// An exponential backoff policy (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Option<Duration>,
    factor: f32,
    jitter: f64,
}

/// The attempts after which any delay has reached its cap (factor ≥ 2 from 1 ms: 2^64 ms).
const MAX_STEPS: u32 = 64;

impl Backoff {
    /// `min`, doubling per attempt up to `max`; a `min` above `max` is `max`.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Self {
            min: min.min(max),
            max: Some(max),
            factor: 2.0,
            jitter: 0.0,
        }
    }

    /// `min`, doubling per attempt without a cap (for a bounded number of attempts).
    pub fn unbounded(min: Duration) -> Self {
        Self {
            min,
            max: None,
            factor: 2.0,
            jitter: 0.0,
        }
    }

    /// Multiplies by `factor` (> 1) per attempt instead of 2.
    pub fn with_factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// [`Backoff::jittered`] takes up to `fraction` (0 to 1) of each delay off.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    pub fn min(&self) -> Duration {
        self.min
    }

    pub fn max(&self) -> Option<Duration> {
        self.max
    }

    fn builder(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::new()
            .with_min_delay(self.min)
            .with_factor(self.factor)
            .without_max_times();
        match self.max {
            Some(max) => b.with_max_delay(max),
            None => b.without_max_delay(),
        }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (≥ 1; 0 counts as 1)
    /// consecutive failures: `min × factor^(attempt−1)`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let steps = attempt.saturating_sub(1).min(MAX_STEPS);
        let delay = self
            .builder()
            .build()
            .nth(steps as usize)
            .unwrap_or(Duration::MAX);
        round(delay)
    }

    /// [`Backoff::delay`] minus up to the jitter fraction of it: `sample` is uniform in [0, 1)
    /// (clamped to [0, 1]); 0 takes nothing off.
    pub fn jittered(&self, attempt: u32, sample: f64) -> Duration {
        let delay = self.delay(attempt);
        let kept = 1.0 - self.jitter * sample.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(delay.as_secs_f64() * kept).unwrap_or(delay)
    }

    /// The delays of consecutive attempts, from the first (endless; start again with a new
    /// iterator after a success).
    pub fn delays(&self) -> Delays {
        Delays(self.builder().build())
    }
}

/// The delays of a [`Backoff`], attempt after attempt.
#[derive(Debug)]
pub struct Delays(<ExponentialBuilder as BackoffBuilder>::Backoff);

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(round(self.0.next().unwrap_or(Duration::MAX)))
    }
}

/// To the nearest millisecond, at least 1 ms.
fn round(d: Duration) -> Duration {
    if d == Duration::MAX {
        return d;
    }
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_from_min_to_max_in_whole_milliseconds() {
        let b = Backoff::exponential(ms(100), Duration::from_secs(5));
        let got: Vec<Duration> = b.delays().take(8).collect();
        assert_eq!(
            got,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
                .map(ms)
                .to_vec()
        );
        for (n, want) in got.iter().enumerate() {
            assert_eq!(b.delay(u32::try_from(n).unwrap() + 1), *want, "attempt {n}");
        }
        assert_eq!(b.delay(0), ms(100));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn a_min_above_the_max_is_the_max() {
        let b = Backoff::exponential(Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(b.delay(1), Duration::from_secs(3));
        assert_eq!(b.delay(4), Duration::from_secs(3));
    }

    #[test]
    fn unbounded_keeps_doubling() {
        let b = Backoff::unbounded(ms(50));
        assert_eq!(
            b.delays().take(5).collect::<Vec<_>>(),
            [50, 100, 200, 400, 800].map(ms).to_vec()
        );
        assert_eq!(b.delay(11), ms(51_200));
    }

    #[test]
    fn another_factor() {
        let b = Backoff::exponential(ms(1000), Duration::from_secs(60)).with_factor(1.5);
        assert_eq!(
            b.delays().take(4).collect::<Vec<_>>(),
            [1000, 1500, 2250, 3375].map(ms).to_vec()
        );
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff::exponential(ms(1000), Duration::from_secs(300)).with_jitter(0.25);
        assert_eq!(b.jittered(3, 0.0), ms(4000));
        assert_eq!(b.jittered(3, 1.0), ms(3000));
        assert_eq!(b.jittered(3, 7.0), ms(3000), "samples are clamped");
        let j = b.jittered(3, 0.5);
        assert_eq!(j, ms(3500));
        assert_eq!(
            Backoff::exponential(ms(1000), ms(1000)).jittered(1, 0.9),
            ms(1000),
            "no jitter unless asked"
        );
    }

    #[test]
    fn delays_are_at_least_a_millisecond() {
        let b = Backoff::exponential(Duration::from_micros(10), Duration::from_secs(1));
        assert_eq!(b.delay(1), ms(1));
    }
}
