//! A per-app pacer that every call to the app from this process goes through.
//!
//! Targets count a request at some instant between when it is sent and when its answer comes
//! back, in windows of one second (sliding or fixed). The pacer works in two steps:
//!
//! 1. **Booking.** Permits are slots on a fixed grid, one every `1 / requests_per_second`,
//!    reserved by each call when it asks (not when it wakes up): a call that wakes a few
//!    milliseconds after its slot does not push the later slots back. After a quiet spell up to
//!    `burst` slots may be taken at once.
//! 2. **Sending.** Right before the request is written, the caller takes its permit, stamped
//!    with the actual instant, and drops it when the answer (or a failure) comes back. A permit
//!    is handed out only a full window after the answer to the permit `requests_per_second`
//!    before it (or `burst`, when larger): whenever the target counted that earlier request, it
//!    was before its answer, and whenever it counts this one, it is after the stamp, so no
//!    window of one second at the target holds more than the rate, however late the requests
//!    reach it (a loaded machine, a connection pool). The cost is one round trip per window
//!    instead of a guessed margin. Only a round trip longer than a quarter window (a hung
//!    request) is capped: such a request is taken as counted 250 ms after it went, so one hung
//!    request does not stall the app.
//!
//! The window also has a margin: 1 ms at first, and after the target answers 429 anyway (it
//! counts in some other way), at least 2% of the window, doubled at each 429 up to a quarter
//! window, and narrowing again slowly while no 429 comes. A burst larger than a second's worth
//! (a per-minute quota that allows bursts) is allowed as configured, and then counts against
//! the time its permits stand for.
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

/// The margin before any 429: the target's clock may tick a little differently.
const FIRST_MARGIN: Duration = Duration::from_millis(1);
/// The least margin after a 429, as a share of the window (20 ms in 1 s).
const MIN_MARGIN_AFTER_429_DIVISOR: u32 = 50;
/// The widest margin after 429s, as a share of the window (250 ms in 1 s).
const MAX_MARGIN_DIVISOR: u32 = 4;
/// How long after it went a request is taken as counted when its answer is slower, as a share
/// of the window (250 ms in 1 s; 50 ms let a loaded machine see 429s).
const MAX_ARRIVAL_DIVISOR: u32 = 4;
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
    /// The latest permits taken, oldest first (stamped under the lock, so in order).
    sent: VecDeque<Sent>,
    /// The number of the permit at the front of `sent`.
    first_sent: u64,
    /// The margin the target's latest 429 asked for.
    after_429: Fading,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    answered: Option<Instant>,
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
            first_sent: 0,
            after_429: Fading::NONE,
        })
    }

    /// What is kept free on top of the window at `now` (see the module's documentation).
    pub fn margin(&self, now: Instant) -> Duration {
        // After a 429 it narrows by a tenth of 2% of the window per window (2 ms a second).
        let fade = self.window / MIN_MARGIN_AFTER_429_DIVISOR / 10;
        FIRST_MARGIN.max(self.after_429.at(now, fade, self.window))
    }

    /// Books the next permit for a call made at `now`: the instant to go at (`now` or later).
    /// When that is more than `max_wait` away, nothing is booked and the wait is the error.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Instant, Duration> {
        let earliest = now.checked_sub(self.burst_credit).unwrap_or(now);
        let mut slot = self.next_slot.map_or(earliest, |next| next.max(earliest));
        if self.booked.len() >= self.window_permits
            && let Some(oldest) = self.booked.front()
        {
            // Booked 2% apart at least, so that most callers find the guard open.
            let margin = self
                .margin(now)
                .max(self.window / MIN_MARGIN_AFTER_429_DIVISOR);
            slot = slot.max(*oldest + self.window + margin);
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

    /// A caller is about to send, at `now`: the permit is stamped with `now` and its number
    /// returned when that keeps the window's count (see the module's documentation); otherwise
    /// nothing is recorded and the error is the instant to come back at.
    pub fn send(&mut self, now: Instant) -> Result<u64, Instant> {
        if self.sent.len() >= self.window_permits
            && let Some(oldest) = self.sent.front()
        {
            let arrived_by = oldest.at + self.window / MAX_ARRIVAL_DIVISOR;
            let counted_by = oldest.answered.map_or(arrived_by, |at| at.min(arrived_by));
            let open = counted_by + self.window + self.margin(now);
            if now < open {
                return Err(open);
            }
            self.sent.pop_front();
            self.first_sent += 1;
        }
        self.sent.push_back(Sent {
            at: now,
            answered: None,
        });
        Ok(self.first_sent + self.sent.len() as u64 - 1)
    }

    /// The answer to permit `number` (or its failure) came back at `now`: the target has
    /// counted that request, if at all, by then.
    pub fn answered(&mut self, number: u64, now: Instant) {
        let Some(index) = number.checked_sub(self.first_sent) else {
            return;
        };
        if let Some(sent) = usize::try_from(index)
            .ok()
            .and_then(|i| self.sent.get_mut(i))
        {
            sent.answered = Some(now);
        }
    }

    /// The target answered 429 at `now`: the margin was not enough, so it doubles (at least
    /// 2% and at most a quarter of the window) and narrows again slowly. Returns the new margin.
    pub fn throttled(&mut self, now: Instant) -> Duration {
        let widened = self
            .margin(now)
            .saturating_mul(2)
            .max(self.window / MIN_MARGIN_AFTER_429_DIVISOR)
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
    /// Take it right before the request is written (the instant it is taken is the one
    /// counted) and drop it when the answer or a failure comes back.
    pub async fn acquire(&self) -> Result<Permit<'_>, ConnectorError> {
        let asked = Instant::now();
        let booked = self.schedule().reserve(asked, self.max_wait);
        let mut due = booked.map_err(too_long)?;
        loop {
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let taken = {
                let mut schedule = self.schedule();
                let now = Instant::now();
                schedule.send(now).map_err(|open| (now, open))
            };
            match taken {
                Ok(number) => {
                    return Ok(Permit {
                        limiter: self,
                        number,
                    });
                }
                Err((now, open)) => {
                    if open.duration_since(asked) > self.max_wait {
                        return Err(too_long(open.duration_since(now)));
                    }
                    due = open;
                }
            }
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

/// A permit taken: dropping it records that the answer (or a failure) came back.
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    number: u64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter
            .schedule()
            .answered(self.number, Instant::now());
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

    /// A small pseudo-random spread: 1 to `most` ms, irregular in `i`.
    fn spread(i: usize, most: u64) -> Duration {
        ms(1 + (i as u64 * 7919) % most)
    }

    /// Sixteen callers always asking: each wakes 1 to 12 ms after it is due, takes its
    /// permit (again, when the guard names a later instant), and gets its answer 1 to 30 ms
    /// later. Returns, per request, when it was sent and when it was answered.
    fn drive(pacer: &mut Schedule, permits: usize) -> Vec<(Instant, Instant)> {
        let t0 = Instant::now();
        // Each caller: the instant it wakes at.
        let mut waking: Vec<Instant> = (0..16)
            .map(|i| pacer.reserve(t0, LONG).unwrap() + spread(i, 12))
            .collect();
        let mut requests = Vec::new();
        while requests.len() < permits {
            waking.sort();
            let now = waking.remove(0);
            let i = requests.len();
            match pacer.send(now) {
                Ok(number) => {
                    let answered = now + spread(i * 31, 30);
                    pacer.answered(number, answered);
                    requests.push((now, answered));
                    let next = pacer.reserve(answered, LONG).unwrap();
                    waking.push(next + spread(i, 12));
                }
                Err(open) => {
                    assert!(open > now);
                    waking.push(open + spread(i, 12));
                }
            }
        }
        requests
    }

    #[test]
    fn a_permit_waits_a_window_after_the_answer_to_the_one_a_windows_worth_before() {
        let mut pacer = schedule(20.0, 1);
        let t0 = Instant::now();
        let booked: Vec<_> = (0..20).map(|_| pacer.reserve(t0, LONG).unwrap()).collect();
        for (i, due) in booked.iter().enumerate() {
            let number = pacer.send(*due).unwrap();
            assert_eq!(number, i as u64);
            // The first answer is slow to come back: 30 ms; the others take 2 ms.
            let took = if i == 0 { ms(30) } else { ms(2) };
            pacer.answered(number, *due + took);
        }
        // The 21st is booked a window and 2% after the first booking...
        let next = pacer.reserve(booked[19], LONG).unwrap();
        assert_eq!(next, t0 + ms(1020));
        // ...but the target may have counted the first as late as its answer, so the guard
        // holds the 21st until a window (and the 1 ms margin) after that.
        let open = pacer.send(next).unwrap_err();
        assert_eq!(open, t0 + ms(30) + Duration::from_secs(1) + ms(1));
        assert_eq!(pacer.send(open), Ok(20));
    }

    #[test]
    fn a_send_the_guard_holds_back_is_not_counted() {
        let mut pacer = schedule(1.0, 1);
        let t0 = Instant::now();
        let first = pacer.send(t0).unwrap();
        pacer.answered(first, t0 + ms(10));
        let open = pacer.send(t0 + ms(500)).unwrap_err();
        assert_eq!(open, t0 + ms(1011));
        // Asked again before it opens: still held back, to the same instant.
        assert_eq!(pacer.send(t0 + ms(900)), Err(open));
        assert_eq!(pacer.send(open), Ok(1));
    }

    #[test]
    fn a_request_answered_slowly_or_not_at_all_is_taken_as_counted_250_ms_after_it_went() {
        let mut pacer = schedule(1.0, 1);
        let t0 = Instant::now();
        pacer.send(t0).unwrap();
        assert_eq!(pacer.send(t0 + ms(1000)), Err(t0 + ms(1251)));
        let second = pacer.send(t0 + ms(1251)).unwrap();
        // An answer to a permit gone from the window, or to none, changes nothing.
        pacer.answered(0, t0 + ms(1300));
        pacer.answered(99, t0 + ms(1300));
        // An answer after 400 ms counts as 250 ms.
        pacer.answered(second, t0 + ms(1651));
        assert_eq!(pacer.send(t0 + ms(2000)), Err(t0 + ms(2502)));
    }

    #[test]
    fn wherever_between_send_and_answer_the_target_counts_no_second_holds_more_than_the_rate() {
        for rate in [20.0, 50.0, 100.0] {
            let mut pacer = schedule(rate, 1);
            let requests = drive(&mut pacer, 20 * rate as usize);
            // The target counts each request at its send, at its answer, or anywhere between
            // (here: alternately early and late, the worst for a window).
            for pick in [0.0, 1.0, 0.5] {
                let counted: Vec<Instant> = requests
                    .iter()
                    .enumerate()
                    .map(|(i, (sent, answered))| {
                        let share = if pick == 0.5 { (i % 2) as f64 } else { pick };
                        *sent + answered.duration_since(*sent).mul_f64(share)
                    })
                    .collect();
                assert!(
                    busiest(&counted, Duration::from_secs(1)) <= rate as usize,
                    "{rate}/s, counted at {pick}"
                );
            }
            let first = requests[0].0;
            let last = requests.last().unwrap().0;
            let achieved = (requests.len() - 1) as f64 / last.duration_since(first).as_secs_f64();
            assert!(achieved >= 0.95 * rate, "{rate}/s: {achieved}/s");
            assert!(achieved <= rate, "{rate}/s: {achieved}/s");
        }
    }

    #[test]
    fn a_429_widens_the_margin_to_2_percent_then_doubles_it_up_to_a_quarter_window() {
        let mut pacer = schedule(50.0, 1);
        let t0 = Instant::now();
        assert_eq!(pacer.margin(t0), ms(1));
        assert_eq!(pacer.throttled(t0), ms(20));
        assert_eq!(pacer.margin(t0), ms(20));
        assert_eq!(pacer.throttled(t0), ms(40));
        assert_eq!(pacer.throttled(t0), ms(80));
        assert_eq!(pacer.throttled(t0), ms(160));
        assert_eq!(
            pacer.throttled(t0),
            ms(250),
            "at most a quarter of the window"
        );
        // The window the guard keeps grows with it.
        for i in 0..50 {
            let at = t0 + ms(20 * i);
            let number = pacer.send(at).unwrap();
            pacer.answered(number, at);
        }
        let next = t0 + ms(1000);
        let margin = pacer.margin(next);
        assert!(margin > ms(240), "{margin:?}");
        assert_eq!(pacer.send(next), Err(t0 + Duration::from_secs(1) + margin));
        // Without another 429 it narrows by 2 ms a second, back to 1 ms in two minutes.
        let margin_later = pacer.margin(t0 + Duration::from_secs(50));
        assert!(
            margin_later > ms(149) && margin_later <= ms(150),
            "{margin_later:?}"
        );
        assert_eq!(pacer.margin(t0 + Duration::from_secs(130)), ms(1));
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
