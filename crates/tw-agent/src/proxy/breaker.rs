//! A circuit breaker per upstream: after `failure_threshold` consecutive failed requests the
//! upstream gets no traffic for `open_for`; then one trial request decides whether it recovered.
//! Time comes from the [`Clock`], so tests move it by hand.

use crate::metrics_names::METRIC_PROXY_BREAKER_STATE;
use crate::settings::CircuitBreakerConfig;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Clock, UnixTime};

/// While a trial is in flight, others are told to come back after this.
const TRIAL_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: UnixTime,
    },
    /// One trial request is in flight.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    upstream: String,
    config: CircuitBreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

/// Admission to send one request. Report the outcome with [`Permit::record`]; a permit dropped
/// without an outcome (caller went away) releases a trial slot so the breaker cannot get stuck.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    trial: bool,
    recorded: bool,
}

impl Breaker {
    pub fn new(upstream: String, config: CircuitBreakerConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        let b = Arc::new(Self {
            upstream,
            config,
            clock,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        });
        b.publish(BreakerState::Closed);
        b
    }

    pub fn state(&self) -> BreakerState {
        match *self.inner.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// A permit, or how long until the upstream may be tried again.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Duration> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let trial = match *inner {
            Inner::Closed { .. } => false,
            Inner::HalfOpen => return Err(TRIAL_RETRY_AFTER),
            Inner::Open { until } if now < until => return Err(now.until(until)),
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen;
                drop(inner);
                self.publish(BreakerState::HalfOpen);
                tracing::info!(upstream = %self.upstream, "circuit half-open: sending one trial request");
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            trial,
            recorded: false,
        })
    }

    fn on_outcome(&self, trial: bool, success: bool) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let next = match (&mut *inner, success) {
            (Inner::Closed { failures }, true) => {
                *failures = 0;
                None
            }
            (Inner::Closed { failures }, false) => {
                *failures += 1;
                (*failures >= self.config.failure_threshold).then_some(false)
            }
            (Inner::HalfOpen, ok) if trial => Some(ok),
            // Late answers to requests admitted before the circuit opened change nothing.
            _ => None,
        };
        match next {
            None => {}
            Some(true) => {
                *inner = Inner::Closed { failures: 0 };
                drop(inner);
                self.publish(BreakerState::Closed);
                tracing::info!(upstream = %self.upstream, "circuit closed: upstream recovered");
            }
            Some(false) => {
                *inner = Inner::Open {
                    until: now.plus(self.config.open_for),
                };
                drop(inner);
                self.publish(BreakerState::Open);
                tracing::warn!(
                    upstream = %self.upstream,
                    open_for_s = self.config.open_for.as_secs_f64(),
                    "circuit open: upstream failing, requests are refused for a while"
                );
            }
        }
    }

    fn release_trial(&self) {
        let mut inner = self.inner.lock();
        if matches!(*inner, Inner::HalfOpen) {
            // Let the next request be the trial at once.
            *inner = Inner::Open {
                until: self.clock.now(),
            };
        }
    }

    fn publish(&self, state: BreakerState) {
        metrics::gauge!(METRIC_PROXY_BREAKER_STATE, "upstream" => self.upstream.clone())
            .set(state.gauge());
    }
}

impl Permit {
    /// `success`: the upstream answered with anything but a 502/503/504.
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        self.breaker.on_outcome(self.trial, success);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.trial && !self.recorded {
            self.breaker.release_trial();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tw_core::ManualClock;

    fn breaker(threshold: u32, open_for: u64) -> (Arc<Breaker>, ManualClock) {
        let clock = ManualClock::new(UnixTime::from_secs(1000));
        let b = Breaker::new(
            "http://up".into(),
            CircuitBreakerConfig {
                failure_threshold: threshold,
                open_for: Duration::from_secs(open_for),
            },
            Arc::new(clock.clone()),
        );
        (b, clock)
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let (b, _) = breaker(3, 30);
        b.admit().expect("closed").record(false);
        b.admit().expect("closed").record(false);
        b.admit().expect("closed").record(true);
        b.admit().expect("closed").record(false);
        b.admit().expect("closed").record(false);
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().expect("closed").record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit().expect_err("open"), Duration::from_secs(30));
    }

    #[test]
    fn one_trial_after_open_for_then_closes_or_reopens() {
        let (b, clock) = breaker(1, 30);
        b.admit().expect("closed").record(false);
        clock.advance(Duration::from_secs(29));
        assert_eq!(b.admit().expect_err("open"), Duration::from_secs(1));
        clock.advance(Duration::from_secs(1));
        let trial = b.admit().expect("trial");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit().expect_err("trial in flight"), TRIAL_RETRY_AFTER);
        trial.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit().expect_err("reopened"), Duration::from_secs(30));

        clock.advance(Duration::from_secs(30));
        b.admit().expect("trial").record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().expect("closed").record(true);
    }

    #[test]
    fn abandoned_trial_frees_the_slot() {
        let (b, clock) = breaker(1, 5);
        b.admit().expect("closed").record(false);
        clock.advance(Duration::from_secs(5));
        drop(b.admit().expect("trial"));
        b.admit().expect("next trial").record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn late_outcomes_of_requests_admitted_while_closed_do_not_reopen_or_close() {
        let (b, clock) = breaker(1, 5);
        let early = b.admit().expect("closed");
        b.admit().expect("closed").record(false);
        early.record(true);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(5));
        let trial = b.admit().expect("trial");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        trial.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
