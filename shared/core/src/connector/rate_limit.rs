//! A per-app pacer that every call to the app from this process goes through.
//!
//! Permits are slots on a fixed grid, one every `1 / requests_per_second`, reserved by each call
//! when it asks (not when it wakes up): a call that wakes a few milliseconds after its slot does
//! not push the later slots back, so the achieved rate stays at the configured one however late
//! the wake-ups are. After a quiet spell up to `burst` slots may be taken at once.
//!
//! Targets count requests per second (a sliding or a fixed window), so on top of the grid no more
//! than `requests_per_second` permits are handed out in any window of one second plus a small
//! margin: a burst never adds to a full second's worth, and the margin absorbs the few
//! milliseconds by which requests reach the target later than their permit. A burst larger
//! than a second's worth (a per-minute quota that allows bursts) is allowed as configured, and
//! then counts against the time its permits stand for.
//!
//! A call waits for its permit only as long as `max_wait`: when its slot is further away than
//! that, it fails with [`ConnectorError::RateLimited`] and the worker puts the job back on the
//! queue for when the permit is due, rather than sleeping past a Lambda's deadline.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ConnectorError;
use crate::config::RateLimitConfig;

/// The share of the window kept free for the lateness between a permit and the target's count.
const WINDOW_MARGIN_DIVISOR: u32 = 50;
/// Permits remembered for the window check; beyond this rate the window is shortened
/// proportionally (no target counts that finely).
const MAX_WINDOW_PERMITS: usize = 10_000;

/// The grid of permits; pure, driven by the instants it is given, so tests choose the time.
#[derive(Debug)]
pub struct Schedule {
    period: Duration,
    /// How far behind `now` a slot may be taken after a quiet spell: `(burst - 1)` periods.
    burst_credit: Duration,
    /// At most `window_permits` permits in any `window` (one second for rates of 1/s and more).
    window: Duration,
    window_permits: usize,
    next_slot: Option<Instant>,
    /// When the latest permits (up to `window_permits`) were due to be used, oldest first.
    recent: VecDeque<Instant>,
}

impl Schedule {
    pub fn new(config: &RateLimitConfig) -> Result<Self, ConnectorError> {
        let rate = config.requests_per_second;
        if !rate.is_finite() || rate <= 0.0 {
            return Err(ConnectorError::Config(
                "rate_limit.requests_per_second must be a positive number".into(),
            ));
        }
        if rate > 1_000_000.0 {
            return Err(ConnectorError::Config(
                "rate_limit.requests_per_second is too high".into(),
            ));
        }
        let burst = config.burst();
        if burst == 0 {
            return Err(ConnectorError::Config(
                "rate_limit.burst must be at least 1".into(),
            ));
        }
        let period = config.period();
        // Whole permits per second, or the burst when it is larger (a target that allows
        // bursts above its per-second rate, like a per-minute quota); below 1/s and burst 1
        // the window is one period.
        let burst_permits = usize::try_from(burst).unwrap_or(MAX_WINDOW_PERMITS);
        let window_permits = (rate.floor() as usize)
            .clamp(1, MAX_WINDOW_PERMITS)
            .max(burst_permits.min(MAX_WINDOW_PERMITS));
        let counted = u32::try_from(window_permits).unwrap_or(u32::MAX);
        let window = period.saturating_mul(counted);
        Ok(Self {
            period,
            burst_credit: period.saturating_mul(burst - 1),
            window: window + window / WINDOW_MARGIN_DIVISOR,
            window_permits,
            next_slot: None,
            recent: VecDeque::with_capacity(window_permits),
        })
    }

    /// Reserves the next permit for a call made at `now`: the instant to go at (`now` or later).
    /// When that is more than `max_wait` away, nothing is reserved and the wait is the error.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Instant, Duration> {
        let earliest = now.checked_sub(self.burst_credit).unwrap_or(now);
        let mut slot = self.next_slot.map_or(earliest, |next| next.max(earliest));
        if self.recent.len() >= self.window_permits
            && let Some(oldest) = self.recent.front()
        {
            slot = slot.max(*oldest + self.window);
        }
        let go_at = slot.max(now);
        let wait = go_at.duration_since(now);
        if wait > max_wait {
            return Err(wait);
        }
        // The grid moves on from the slot, not from when the caller will wake up.
        self.next_slot = Some(slot + self.period);
        if self.recent.len() >= self.window_permits {
            self.recent.pop_front();
        }
        // A slot taken from the burst credit is used now, and counts from now.
        self.recent.push_back(go_at);
        Ok(go_at)
    }
}

pub struct RateLimiter {
    schedule: Mutex<Schedule>,
    max_wait: Duration,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Result<Self, ConnectorError> {
        Ok(Self {
            schedule: Mutex::new(Schedule::new(config)?),
            max_wait: config.max_wait(),
        })
    }

    /// Waits for a permit, or fails when it would take longer than `max_wait`.
    pub async fn acquire(&self) -> Result<(), ConnectorError> {
        let now = Instant::now();
        let reserved = self
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(now, self.max_wait);
        match reserved {
            Ok(go_at) => {
                if go_at > now {
                    tokio::time::sleep_until(go_at.into()).await;
                }
                Ok(())
            }
            Err(wait) => {
                tracing::info!(
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "the app's rate limit is reached; putting the job back for later"
                );
                Err(ConnectorError::RateLimited { retry_after: wait })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn config(rate: f64, burst: u32, max_wait_ms: u64) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: rate,
            burst: Some(burst),
            max_wait_ms,
        }
    }

    fn schedule(rate: f64, burst: u32) -> Schedule {
        Schedule::new(&config(rate, burst, 0)).unwrap()
    }

    const LONG: Duration = Duration::from_secs(3600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The most instants in any window `[t, t + length)`.
    fn busiest(times: &[Instant], length: Duration) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        let mut start = 0;
        let mut most = 0;
        for end in 0..sorted.len() {
            while sorted[end].duration_since(sorted[start]) >= length {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    #[test]
    fn permits_asked_for_together_are_spaced_one_period_apart() {
        let mut pacer = schedule(50.0, 1);
        let t0 = Instant::now();
        let slots: Vec<_> = (0..5).map(|_| pacer.reserve(t0, LONG).unwrap()).collect();
        let offsets: Vec<_> = slots.iter().map(|s| s.duration_since(t0)).collect();
        assert_eq!(offsets, [ms(0), ms(20), ms(40), ms(60), ms(80)]);
    }

    #[test]
    fn a_caller_that_comes_back_late_does_not_push_the_later_slots_back() {
        let mut pacer = schedule(50.0, 1);
        let t0 = Instant::now();
        // One caller asks for its next permit 3 ms after its previous one was due.
        let mut asked_at = t0;
        let mut offsets = Vec::new();
        for _ in 0..5 {
            let slot = pacer.reserve(asked_at, LONG).unwrap();
            offsets.push(slot.duration_since(t0));
            asked_at = slot + ms(3);
        }
        assert_eq!(offsets, [ms(0), ms(20), ms(40), ms(60), ms(80)]);
    }

    #[test]
    fn with_burst_one_a_quiet_spell_earns_no_credit() {
        let mut pacer = schedule(50.0, 1);
        let t0 = Instant::now();
        pacer.reserve(t0, LONG).unwrap();
        let back = t0 + ms(500);
        assert_eq!(pacer.reserve(back, LONG), Ok(back));
        assert_eq!(pacer.reserve(back, LONG), Ok(back + ms(20)));
    }

    #[test]
    fn at_full_demand_the_rate_is_the_configured_one_less_the_margin_and_never_more() {
        let mut pacer = schedule(50.0, 1);
        let t0 = Instant::now();
        // Sixteen callers always waiting: each asks again when its permit comes, 3 ms late.
        let mut asks: Vec<Instant> = vec![t0; 16];
        let mut granted = Vec::new();
        while granted.len() < 1000 {
            asks.sort();
            let asked = asks.remove(0);
            let slot = pacer.reserve(asked, LONG).unwrap();
            granted.push(slot);
            asks.push(slot + ms(3));
        }
        assert!(busiest(&granted, Duration::from_secs(1)) <= 50);
        let last = *granted.iter().max().unwrap();
        let span = last.duration_since(t0).as_secs_f64();
        let rate = (granted.len() - 1) as f64 / span;
        assert!(rate >= 0.97 * 50.0, "{rate}/s");
        assert!(rate <= 50.0, "{rate}/s");
    }

    #[test]
    fn after_a_quiet_spell_a_burst_passes_at_once_then_calls_wait_their_turn() {
        let mut pacer = schedule(10.0, 3);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        let slots: Vec<_> = (0..5)
            .map(|_| pacer.reserve(later, LONG).unwrap().duration_since(later))
            .collect();
        assert_eq!(slots, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
    }

    #[test]
    fn no_one_second_window_holds_more_than_the_rate_even_with_a_full_burst() {
        // A burst of a whole second's worth, then demand at every instant.
        let mut pacer = schedule(20.0, 20);
        let t0 = Instant::now();
        let mut granted = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            if let Ok(slot) = pacer.reserve(now, Duration::ZERO) {
                granted.push(slot);
            }
            now += ms(1);
        }
        assert_eq!(busiest(&granted, Duration::from_secs(1)), 20);
        // And the margin leaves room for the lateness of the count at the target.
        assert_eq!(busiest(&granted, ms(1015)), 20);
        assert!(granted.len() >= 190, "{}", granted.len());
    }

    #[test]
    fn a_burst_larger_than_a_seconds_worth_passes_and_is_paid_back_before_the_next() {
        // A per-minute quota: 3 a second sustained, bursts of 20.
        let mut pacer = schedule(3.0, 20);
        let t0 = Instant::now();
        let burst: Vec<_> = (0..20).map(|_| pacer.reserve(t0, LONG).unwrap()).collect();
        assert!(burst.iter().all(|slot| *slot == t0));
        let next = pacer.reserve(t0, LONG).unwrap().duration_since(t0);
        // Twenty permits stand for 20/3 s; the next waits that long (plus the margin).
        let paid_back = Duration::from_secs_f64(1.0 / 3.0) * 20;
        assert_eq!(next, paid_back + paid_back / 50);
    }

    #[test]
    fn a_call_whose_slot_is_too_far_reserves_nothing_and_says_when_to_come_back() {
        let mut pacer = schedule(1.0, 1);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(t0, ms(100)), Ok(t0));
        assert_eq!(pacer.reserve(t0, ms(100)), Err(ms(1020)));
        // Nothing was taken: at the due time the permit is there.
        let due = t0 + ms(1020);
        assert_eq!(pacer.reserve(due, ms(100)), Ok(due));
    }

    #[test]
    fn slow_rates_space_permits_by_their_period() {
        // Three a minute.
        let mut pacer = schedule(0.05, 1);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(t0, LONG), Ok(t0));
        assert_eq!(
            pacer.reserve(t0, LONG).unwrap().duration_since(t0),
            Duration::from_secs(20) + Duration::from_secs(20) / 50
        );
    }

    #[test]
    fn nonsense_settings_are_configuration_errors() {
        for (rate, burst) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (2e6, 1), (10.0, 0)] {
            let error = Schedule::new(&config(rate, burst, 0)).unwrap_err();
            assert!(
                matches!(error, ConnectorError::Config(_)),
                "{rate} {burst}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_wait_longer_than_allowed_is_rate_limited_with_the_time_to_come_back() {
        // One call a minute: after the first, the next permit is a minute away.
        let limiter = RateLimiter::new(&config(1.0 / 60.0, 1, 100)).unwrap();
        limiter.acquire().await.unwrap();
        let error = limiter.acquire().await.unwrap_err();
        let ConnectorError::RateLimited { retry_after } = error else {
            panic!("{error:?}")
        };
        assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
        assert_eq!(error.code(), "rate_limited");
        assert_eq!(error.retry_after(), Some(retry_after));
        assert_eq!(error.http_status(), None);
        assert!(crate::error::Classify::class(&error).is_retryable());
    }
}
