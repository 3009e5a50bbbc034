//! A per-app pacer that every call to the app from this process goes through.
//!
//! Targets count requests when they arrive, per second (a sliding or a fixed window). The pacer
//! works in two steps, both under one lock:
//!
//! 1. **Booking.** Permits are slots on a fixed grid, one every `1 / requests_per_second`,
//!    reserved by each call when it asks (not when it wakes up): a call that wakes a few
//!    milliseconds after its slot does not push the later slots back. After a quiet spell up to
//!    `burst` slots may be taken at once.
//! 2. **Sending.** Right before the request is written, the caller stamps its permit with the
//!    actual instant, and the guard lets it go only if that keeps at most `requests_per_second`
//!    sends (or `burst`, when larger) in any window of one second plus a margin, counted over
//!    the stamped instants, not the booked ones: a caller that woke late counts from when it
//!    really sent, so the next one waits for it. A burst never adds to a full second's worth.
//!
//! The margin covers what the pacer cannot see: the time from the stamp to the target's count
//! (connection pool, the target's own scheduling), which varies by more when the machine is
//! loaded. It is the widest of: 2% of the window; twice the worst lateness the pacer has seen
//! lately in its own wake-ups (how late a caller got to send after the instant it was told to
//! go at), a measure of how busy the machine is; and, after the target answered 429, twice the
//! margin that was not enough (narrowing again slowly while no 429 comes, "additive decrease").
//! A burst larger than a second's worth (a per-minute quota that allows bursts) is allowed as
//! configured, and then counts against the time its permits stand for.
//!
//! A call waits for its permit only as long as `max_wait`: when its slot is further away than
//! that, it fails with [`ConnectorError::RateLimited`] and the worker puts the job back on the
//! queue for when the permit is due, rather than sleeping past a Lambda's deadline. A 429 from
//! the target is still reported with its `Retry-After` (the job waits that long).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ConnectorError;
use crate::config::RateLimitConfig;

/// The least margin, as a share of the window: 1 s + 20 ms at rates of 1/s and more.
const MIN_MARGIN_DIVISOR: u32 = 50;
/// The widest margin the lateness alone may set, as a share of the window (100 ms in 1 s).
const MAX_LATENESS_MARGIN_DIVISOR: u32 = 10;
/// The widest margin after 429s, as a share of the window (250 ms in 1 s).
const MAX_MARGIN_DIVISOR: u32 = 4;
/// The margin is this many times the worst recent lateness: the way from the stamp to the
/// target's count goes through more scheduling than the wake-up the lateness measures.
const LATENESS_FACTOR: u32 = 2;
/// Permits remembered for the window check; beyond this rate the window is shortened
/// proportionally (no target counts that finely).
const MAX_WINDOW_PERMITS: usize = 10_000;

/// A duration that fades linearly with time: `value` at `at`, less `fade` per window since.
#[derive(Debug, Clone, Copy)]
struct Fading {
    value: Duration,
    at: Option<Instant>,
}

impl Fading {
    const NONE: Self = Self {
        value: Duration::ZERO,
        at: None,
    };

    fn at(&self, now: Instant, fade_per_window: Duration, window: Duration) -> Duration {
        let Some(at) = self.at else {
            return Duration::ZERO;
        };
        let windows = now.saturating_duration_since(at).as_secs_f64() / window.as_secs_f64();
        self.value
            .saturating_sub(fade_per_window.mul_f64(windows.min(1e6)))
    }
}

/// The pacer's state; pure, driven by the instants it is given, so tests choose the time.
#[derive(Debug)]
pub struct Schedule {
    period: Duration,
    /// How far behind `now` a slot may be taken after a quiet spell: `(burst - 1)` periods.
    burst_credit: Duration,
    /// At most `window_permits` permits in any `window` plus the margin (one second for rates
    /// of 1/s and more).
    window: Duration,
    window_permits: usize,
    next_slot: Option<Instant>,
    /// When the latest booked permits (up to `window_permits`) were due, oldest first.
    booked: VecDeque<Instant>,
    /// When the latest permits were actually used, oldest first (stamped under the lock, so
    /// in order).
    sent: VecDeque<Instant>,
    /// The worst recent lateness of a send after the instant it was due.
    lateness: Fading,
    /// The margin the target's latest 429 asked for.
    after_429: Fading,
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
        Ok(Self {
            period,
            burst_credit: period.saturating_mul(burst - 1),
            window: period.saturating_mul(counted),
            window_permits,
            next_slot: None,
            booked: VecDeque::with_capacity(window_permits),
            sent: VecDeque::with_capacity(window_permits),
            lateness: Fading::NONE,
            after_429: Fading::NONE,
        })
    }

    fn min_margin(&self) -> Duration {
        self.window / MIN_MARGIN_DIVISOR
    }

    /// What is kept free on top of the window at `now` (see the module's documentation).
    pub fn margin(&self, now: Instant) -> Duration {
        let least = self.min_margin();
        // The lateness fades by half the least margin per window, the 429's margin by a tenth.
        let lateness = self.lateness.at(now, least / 2, self.window);
        let from_lateness = lateness
            .saturating_mul(LATENESS_FACTOR)
            .min(self.window / MAX_LATENESS_MARGIN_DIVISOR);
        let from_429 = self.after_429.at(now, least / 10, self.window);
        least
            .max(from_lateness)
            .max(from_429)
            .min(self.window / MAX_MARGIN_DIVISOR)
    }

    /// Books the next permit for a call made at `now`: the instant to go at (`now` or later).
    /// When that is more than `max_wait` away, nothing is booked and the wait is the error.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Instant, Duration> {
        let earliest = now.checked_sub(self.burst_credit).unwrap_or(now);
        let mut slot = self.next_slot.map_or(earliest, |next| next.max(earliest));
        if self.booked.len() >= self.window_permits
            && let Some(oldest) = self.booked.front()
        {
            slot = slot.max(*oldest + self.window + self.margin(now));
        }
        let go_at = slot.max(now);
        let wait = go_at.duration_since(now);
        if wait > max_wait {
            return Err(wait);
        }
        // The grid moves on from the slot, not from when the caller will wake up.
        self.next_slot = Some(slot + self.period);
        if self.booked.len() >= self.window_permits {
            self.booked.pop_front();
        }
        // A slot taken from the burst credit is used now, and counts from now.
        self.booked.push_back(go_at);
        Ok(go_at)
    }

    /// A caller told to go at `due` is about to send, at `now`: the permit is stamped with
    /// `now` when that keeps the window's count over the actual sends; otherwise nothing is
    /// recorded and the error is the instant to come back at.
    pub fn send(&mut self, now: Instant, due: Instant) -> Result<(), Instant> {
        let late = now.saturating_duration_since(due);
        let worst = self.lateness.at(now, self.min_margin() / 2, self.window);
        if late >= worst {
            self.lateness = Fading {
                value: late,
                at: Some(now),
            };
        }
        if self.sent.len() >= self.window_permits
            && let Some(oldest) = self.sent.front()
        {
            let open = *oldest + self.window + self.margin(now);
            if now < open {
                return Err(open);
            }
            self.sent.pop_front();
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// The target answered 429 at `now`: the margin was not enough, so it doubles (up to a
    /// quarter of the window) and narrows again slowly. Returns the new margin.
    pub fn throttled(&mut self, now: Instant) -> Duration {
        let widened = self
            .margin(now)
            .saturating_mul(2)
            .min(self.window / MAX_MARGIN_DIVISOR);
        self.after_429 = Fading {
            value: widened,
            at: Some(now),
        };
        widened
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

    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a permit and takes it, or fails when it would take longer than `max_wait`.
    /// Call it right before the request is written: the instant it returns is the one counted.
    pub async fn acquire(&self) -> Result<(), ConnectorError> {
        let asked = Instant::now();
        let booked = self.schedule().reserve(asked, self.max_wait);
        let mut due = booked.map_err(too_long)?;
        loop {
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let refused = {
                let mut schedule = self.schedule();
                let now = Instant::now();
                schedule.send(now, due).err().map(|open| (now, open))
            };
            let Some((now, open)) = refused else {
                return Ok(());
            };
            if open.duration_since(asked) > self.max_wait {
                return Err(too_long(open.duration_since(now)));
            }
            due = open;
        }
    }

    /// The margin kept on top of the window now (for figures and logs).
    pub fn margin(&self) -> Duration {
        self.schedule().margin(Instant::now())
    }

    /// The target answered 429 to a call that had its permit: keep a wider margin for a while.
    pub fn throttled(&self) {
        let margin = self.schedule().throttled(Instant::now());
        tracing::info!(
            margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX),
            "the target answered 429 within the app's rate limit; keeping a wider margin"
        );
    }
}

fn too_long(wait: Duration) -> ConnectorError {
    tracing::info!(
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        "the app's rate limit is reached; putting the job back for later"
    );
    ConnectorError::RateLimited { retry_after: wait }
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

    /// Sends every permit: each caller sleeps until it is due and wakes `late` after, then
    /// asks the guard (again, when the guard names a later instant). Returns the send instants.
    fn drive(
        pacer: &mut Schedule,
        callers: usize,
        permits: usize,
        mut late: impl FnMut(usize) -> Duration,
    ) -> Vec<Instant> {
        let t0 = Instant::now();
        // Each caller: (the instant it wakes at, the instant it was told to go at).
        let mut waiting: Vec<(Instant, Instant)> = Vec::new();
        for _ in 0..callers {
            let due = pacer.reserve(t0, LONG).unwrap();
            waiting.push((due + late(0), due));
        }
        let mut sent = Vec::new();
        while sent.len() < permits {
            waiting.sort();
            let (now, due) = waiting.remove(0);
            match pacer.send(now, due) {
                Ok(()) => {
                    sent.push(now);
                    // The answer comes back at once and the caller asks for its next permit.
                    let next = pacer.reserve(now, LONG).unwrap();
                    waiting.push((next.max(now) + late(sent.len()), next.max(now)));
                }
                Err(open) => {
                    assert!(open > now);
                    waiting.push((open + late(sent.len()), open));
                }
            }
        }
        sent
    }

    #[test]
    fn a_late_callers_send_still_keeps_n_per_guard_window() {
        let mut pacer = schedule(20.0, 1);
        let t0 = Instant::now();
        let booked: Vec<_> = (0..20).map(|_| pacer.reserve(t0, LONG).unwrap()).collect();
        // The first caller gets to send 30 ms after its slot; the others right on theirs.
        pacer.send(booked[0] + ms(30), booked[0]).unwrap();
        for due in &booked[1..] {
            pacer.send(*due, *due).unwrap();
        }
        // The 21st caller, asking when the last of those went, is booked a window and the
        // margin (widened by that lateness) after the first booking...
        let next = pacer.reserve(booked[19], LONG).unwrap();
        assert!(next >= t0 + Duration::from_secs(1) + ms(40), "{next:?}");
        // ...but the first really went 30 ms late, so the guard holds it until a window and
        // the margin after that send.
        let open = pacer.send(next, next).unwrap_err();
        assert!(open > next);
        let margin = pacer.margin(next);
        assert!(margin > ms(20), "{margin:?}");
        assert_eq!(open, booked[0] + ms(30) + Duration::from_secs(1) + margin);
        assert_eq!(pacer.send(open, open), Ok(()));
    }

    #[test]
    fn a_send_the_guard_holds_back_is_not_counted() {
        let mut pacer = schedule(1.0, 1);
        let t0 = Instant::now();
        pacer.send(t0, t0).unwrap();
        let open = pacer.send(t0 + ms(500), t0 + ms(500)).unwrap_err();
        assert_eq!(open, t0 + ms(1020));
        // Asked again before it opens: still held back, to the same instant.
        assert_eq!(pacer.send(t0 + ms(900), t0 + ms(900)), Err(open));
        assert_eq!(pacer.send(open, open), Ok(()));
    }

    #[test]
    fn callers_waking_late_by_varying_amounts_keep_n_per_window_and_most_of_the_rate() {
        for rate in [20.0, 50.0, 100.0] {
            let mut pacer = schedule(rate, 1);
            // Sixteen callers waking 1 to 12 ms late, in an irregular pattern.
            let late = |i: usize| ms(1 + (i as u64 * 7919) % 12);
            let sent = drive(&mut pacer, 16, 20 * rate as usize, late);
            // The margin stays near twice the worst lateness (12 ms), and is kept between the
            // actual sends: a target that sees each request up to 20 ms after it was sent
            // still counts at most `rate` in any second.
            let margin = pacer.margin(*sent.last().unwrap());
            assert!(margin >= ms(20) && margin <= ms(24), "{rate}/s: {margin:?}");
            assert!(busiest(&sent, Duration::from_secs(1) + ms(20)) <= rate as usize);
            let span = sent.last().unwrap().duration_since(sent[0]).as_secs_f64();
            let achieved = (sent.len() - 1) as f64 / span;
            assert!(achieved >= 0.95 * rate, "{rate}/s: {achieved}/s");
            assert!(achieved <= rate, "{rate}/s: {achieved}/s");
        }
    }

    #[test]
    fn lateness_widens_the_margin_within_bounds_and_the_widening_fades() {
        let mut pacer = schedule(10.0, 1);
        let t0 = Instant::now();
        assert_eq!(pacer.margin(t0), ms(20), "2% of the window at first");
        pacer.send(t0 + ms(15), t0).unwrap();
        assert_eq!(pacer.margin(t0 + ms(15)), ms(30));
        // A far worse wake-up widens it only to a tenth of the window.
        pacer.send(t0 + ms(500), t0 + ms(100)).unwrap();
        assert_eq!(pacer.margin(t0 + ms(500)), ms(100));
        // The lateness fades by 10 ms a second: 400 ms of it is gone 40 s later.
        assert_eq!(pacer.margin(t0 + Duration::from_secs(41)), ms(20));
    }

    #[test]
    fn a_429_doubles_the_margin_up_to_a_quarter_window_and_it_narrows_slowly() {
        let mut pacer = schedule(50.0, 1);
        let t0 = Instant::now();
        assert_eq!(pacer.throttled(t0), ms(40));
        assert_eq!(pacer.margin(t0), ms(40));
        assert_eq!(pacer.throttled(t0), ms(80));
        assert_eq!(pacer.throttled(t0), ms(160));
        assert_eq!(
            pacer.throttled(t0),
            ms(250),
            "at most a quarter of the window"
        );
        // The window the guard keeps grows with it.
        let sent: Vec<_> = (0..50)
            .map(|i| {
                let at = t0 + ms(20 * i);
                pacer.send(at, at).unwrap();
                at
            })
            .collect();
        let next = sent[49] + ms(20);
        let margin = pacer.margin(next);
        assert!(margin > ms(240), "{margin:?}");
        assert_eq!(
            pacer.send(next, next),
            Err(t0 + Duration::from_secs(1) + margin)
        );
        // Without another 429 it narrows by 2 ms a second, back to 2% after 115 s.
        let margin_later = pacer.margin(t0 + Duration::from_secs(50));
        assert!(
            margin_later > ms(149) && margin_later <= ms(150),
            "{margin_later:?}"
        );
        assert_eq!(pacer.margin(t0 + Duration::from_secs(120)), ms(20));
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
