//! When a token is fresh, stale or expired, and how long to back off. Pure functions of time.
//!
//! - `expires_at` = local time when the request was sent + `expires_in` (not the JWT's `exp`:
//!   the IdP's clock may be skewed against ours; measuring from the send time errs on the safe side).
//! - `refresh_at` = `obtained_at + refresh_fraction × lifetime ± jitter`, but never later than
//!   `expires_at − floor margin`, with margin = max(10 s, min(60 s, 10 % of lifetime)) capped at half
//!   the lifetime (so very short test tokens still have a fresh phase).
//! - fresh before `refresh_at`, stale until `expires_at`, expired after.

use std::time::Duration;
use tw_core::UnixTime;

/// How a cached token stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Fresh,
    /// Usable, but a refresh should be under way.
    Stale,
    /// Never handed out.
    Expired,
}

/// The moments that matter for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub obtained_at: UnixTime,
    pub refresh_at: UnixTime,
    pub expires_at: UnixTime,
}

impl Lifetime {
    /// `jitter_sample` is uniform in [-1, 1]; pass 0 for a deterministic result.
    pub fn compute(
        sent_at: UnixTime,
        lifetime: Duration,
        refresh_fraction: f64,
        jitter_fraction: f64,
        jitter_sample: f64,
    ) -> Self {
        let expires_at = sent_at.plus(lifetime);
        let life = lifetime.as_secs_f64();
        let offset = life * (refresh_fraction + jitter_fraction * jitter_sample.clamp(-1.0, 1.0));
        let by_fraction = sent_at.plus(Duration::from_secs_f64(offset.max(0.0)));
        let latest = expires_at.minus(floor_margin(lifetime));
        Self {
            obtained_at: sent_at,
            refresh_at: by_fraction.min(latest).max(sent_at),
            expires_at,
        }
    }

    pub fn state_at(&self, now: UnixTime) -> TokenState {
        if now >= self.expires_at {
            TokenState::Expired
        } else if now >= self.refresh_at {
            TokenState::Stale
        } else {
            TokenState::Fresh
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.obtained_at.until(self.expires_at)
    }
}

/// The latest a refresh may start before expiry.
pub fn floor_margin(lifetime: Duration) -> Duration {
    let tenth = lifetime / 10;
    let margin = tenth.clamp(Duration::from_secs(10), Duration::from_secs(60));
    margin.min(lifetime / 2)
}

/// Exponential backoff after consecutive transient failures: `initial × 2^(n−1)`, capped at
/// `max`, minus up to 25 % at random (so a fleet restarted together does not retry in step).
/// A `Retry-After` from the IdP is honoured when longer (capped at one hour). The delays are
/// the shared policy's, [`tw_core::backoff::Backoff`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

/// The part of a backoff delay taken off at random, at most.
const BACKOFF_JITTER: f64 = 0.25;
/// The longest `Retry-After` honoured.
const RETRY_AFTER_CAP: Duration = tw_idp::classify::MAX_RETRY_AFTER;

impl Backoff {
    /// Delay before the next attempt after `failures` (≥ 1) consecutive failures.
    /// `random` is uniform in [0, 1).
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, random: f64) -> Duration {
        let jittered = tw_core::backoff::Backoff::exponential(self.initial, self.max)
            .with_jitter(BACKOFF_JITTER)
            .jittered(failures, random);
        match retry_after {
            Some(ra) => jittered.max(ra.min(RETRY_AFTER_CAP)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = UnixTime::from_secs(1_000_000);

    #[test]
    fn keycloak_300s_token_refreshes_at_three_quarters() {
        let l = Lifetime::compute(T0, Duration::from_secs(300), 0.75, 0.05, 0.0);
        assert_eq!(l.refresh_at, T0.plus(Duration::from_secs(225)));
        assert_eq!(l.expires_at, T0.plus(Duration::from_secs(300)));
        assert_eq!(
            l.state_at(T0.plus(Duration::from_secs(224))),
            TokenState::Fresh
        );
        assert_eq!(
            l.state_at(T0.plus(Duration::from_secs(225))),
            TokenState::Stale
        );
        assert_eq!(
            l.state_at(T0.plus(Duration::from_secs(299))),
            TokenState::Stale
        );
        assert_eq!(
            l.state_at(T0.plus(Duration::from_secs(300))),
            TokenState::Expired
        );
    }

    #[test]
    fn floor_margin_wins_over_a_late_fraction() {
        // 0.95 of 3600 s would leave 180 s; fine. 0.99 would leave 36 s < the 60 s floor.
        let l = Lifetime::compute(T0, Duration::from_secs(3600), 0.99, 0.0, 0.0);
        assert_eq!(l.refresh_at, T0.plus(Duration::from_secs(3540)));
        // 300 s token: floor is 30 s, so never later than 270 s.
        let l = Lifetime::compute(T0, Duration::from_secs(300), 0.95, 0.0, 0.0);
        assert_eq!(l.refresh_at, T0.plus(Duration::from_secs(270)));
    }

    #[test]
    fn floor_margin_bounds() {
        assert_eq!(
            floor_margin(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
        assert_eq!(
            floor_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            floor_margin(Duration::from_secs(86400)),
            Duration::from_secs(60)
        );
        // Short tokens keep a fresh phase.
        assert_eq!(floor_margin(Duration::from_secs(4)), Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_refresh_within_bounds() {
        let early = Lifetime::compute(T0, Duration::from_secs(300), 0.75, 0.05, -1.0);
        let late = Lifetime::compute(T0, Duration::from_secs(300), 0.75, 0.05, 1.0);
        assert_eq!(early.refresh_at, T0.plus(Duration::from_secs(210)));
        assert_eq!(late.refresh_at, T0.plus(Duration::from_secs(240)));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        };
        assert_eq!(b.delay(1, None, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, None, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(5, None, 0.0), Duration::from_secs(16));
        assert_eq!(b.delay(30, None, 0.0), Duration::from_secs(300));
        assert_eq!(b.delay(1000, None, 0.0), Duration::from_secs(300));
        let j = b.delay(3, None, 0.999);
        assert!(
            j > Duration::from_secs(3) && j <= Duration::from_secs(4),
            "{j:?}"
        );
    }

    #[test]
    fn backoff_honours_a_longer_retry_after() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        };
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.delay(6, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(32)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(100_000)), 0.0),
            Duration::from_secs(3600)
        );
    }
}
