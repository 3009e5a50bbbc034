//! A per-app token bucket (GCRA, from `governor`) that every call to the app from this process
//! goes through.
//!
//! A call waits for its permit only as long as `max_wait`: when the bucket is further behind
//! than that, it fails with [`ConnectorError::RateLimited`] and the worker puts the job back on
//! the queue for when the permit is due, rather than sleeping past a Lambda's deadline.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter as Gcra};

use super::ConnectorError;
use crate::config::RateLimitConfig;

pub struct RateLimiter {
    bucket: DefaultDirectRateLimiter,
    clock: DefaultClock,
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
        let burst = NonZeroU32::new(config.burst())
            .ok_or_else(|| ConnectorError::Config("rate_limit.burst must be at least 1".into()))?;
        let quota = Quota::with_period(config.period())
            .ok_or_else(|| {
                ConnectorError::Config("rate_limit.requests_per_second is too high".into())
            })?
            .allow_burst(burst);
        let clock = DefaultClock::default();
        Ok(Self {
            bucket: Gcra::direct_with_clock(quota, clock.clone()),
            clock,
            max_wait: config.max_wait(),
        })
    }

    /// Waits for a permit, or fails when it would take longer than `max_wait`.
    pub async fn acquire(&self) -> Result<(), ConnectorError> {
        loop {
            let wait = match self.bucket.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(self.clock.now()),
            };
            if wait > self.max_wait {
                tracing::info!(
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "the app's rate limit is reached; putting the job back for later"
                );
                return Err(ConnectorError::RateLimited { retry_after: wait });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn limiter(rate: f64, burst: u32, max_wait_ms: u64) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_second: rate,
            burst: Some(burst),
            max_wait_ms,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_burst_passes_at_once_then_calls_wait_their_turn() {
        let limiter = limiter(1000.0, 3, 1000);
        for _ in 0..5 {
            limiter.acquire().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_wait_longer_than_allowed_is_rate_limited_with_the_time_to_come_back() {
        // One call a minute: after the first, the next permit is a minute away.
        let limiter = limiter(1.0 / 60.0, 1, 100);
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
