//! The circuit breaker, one per app and per process: when too many calls to an app's target
//! fail transiently within a window, the app is paused. Its jobs wait on the queue (delayed,
//! not counted as attempts) until a cool-down has passed; then one job goes through as a probe
//! (half-open). The probe's success closes the circuit; its failure opens it again.
//!
//! Without it, a target that is down for an hour burns every job's attempts and fills the
//! dead-letter queue; with it, the jobs simply wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::{AppConfig, ConfigIssue};

/// `[apps.circuit_breaker]`. On by default: a target that is down should pause its app, not
/// dead-letter every job.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// `false` turns the breaker off: every job is tried whatever the target's state.
    pub enabled: bool,
    /// The share of calls within the window that failed transiently (5xx, timeouts, dropped
    /// connections; not 429) at which the app is paused, from 0.01 to 1.0.
    pub failure_rate: f64,
    /// Calls within the window before the rate is judged at all.
    pub min_calls: u32,
    /// The window over which calls are counted.
    pub window_secs: u64,
    /// How long the app stays paused before one job probes the target.
    pub cool_down_secs: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_rate: 0.5,
            min_calls: 10,
            window_secs: 60,
            cool_down_secs: 30,
        }
    }
}

impl CircuitBreakerConfig {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
    pub fn cool_down(&self) -> Duration {
        Duration::from_secs(self.cool_down_secs)
    }

    /// What is wrong with these settings, located under `at` (e.g. `apps[slack]`).
    pub(crate) fn issues(&self, at: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut problem = |key: &str, message: &str| {
            issues.push(ConfigIssue {
                location: format!("{at}.circuit_breaker.{key}"),
                message: message.to_owned(),
            });
        };
        if !(self.failure_rate.is_finite() && (0.01..=1.0).contains(&self.failure_rate)) {
            problem("failure_rate", "must be a number between 0.01 and 1.0");
        }
        if self.min_calls == 0 {
            problem("min_calls", "must be at least 1");
        }
        if !(1..=24 * 3600).contains(&self.window_secs) {
            problem("window_secs", "must be between 1 and 86400");
        }
        if !(1..=3600).contains(&self.cool_down_secs) {
            problem("cool_down_secs", "must be between 1 and 3600");
        }
        issues
    }
}

/// Whether a job may call its app's target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead. `probe`: this job is the half-open probe; its outcome closes or re-opens the
    /// circuit.
    Call { probe: bool },
    /// The app is paused: put the job back for this long (the rest of the cool-down).
    Wait(Duration),
}

/// What a job's call to the target came to, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The target answered (a refusal such as 400 or 409 counts: the target is up).
    Answered,
    /// A transient failure of the target: 5xx, a timeout, a dropped connection.
    Failed,
    /// The job never reached the target (a noop, a skip, a store error, throttling).
    NoCall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: OffsetDateTime,
    },
    /// The cool-down is over; `probe_since` is when the probe was let through, if one is out.
    HalfOpen {
        probe_since: Option<OffsetDateTime>,
    },
}

#[derive(Debug)]
struct Breaker {
    settings: CircuitBreakerConfig,
    /// (time, failed) of the calls within the window, oldest first.
    calls: VecDeque<(OffsetDateTime, bool)>,
    state: State,
}

impl Breaker {
    fn new(settings: CircuitBreakerConfig) -> Self {
        Self {
            settings,
            calls: VecDeque::new(),
            state: State::Closed,
        }
    }

    fn admit(&mut self, app: &str, now: OffsetDateTime) -> Admission {
        let cool_down = self.settings.cool_down();
        match self.state {
            State::Closed => Admission::Call { probe: false },
            State::Open { until } if now < until => Admission::Wait(until_then(now, until)),
            State::Open { .. } | State::HalfOpen { probe_since: None } => {
                tracing::info!(app, "circuit half-open: one job probes the target");
                self.state = State::HalfOpen {
                    probe_since: Some(now),
                };
                Admission::Call { probe: true }
            }
            // A probe that never reported (its worker died) is replaced after a cool-down.
            State::HalfOpen {
                probe_since: Some(since),
            } => {
                let deadline = since + cool_down;
                if now >= deadline {
                    self.state = State::HalfOpen {
                        probe_since: Some(now),
                    };
                    Admission::Call { probe: true }
                } else {
                    Admission::Wait(until_then(now, deadline))
                }
            }
        }
    }

    fn record(&mut self, app: &str, probe: bool, outcome: CallOutcome, now: OffsetDateTime) {
        match self.state {
            State::Closed => {
                if outcome == CallOutcome::NoCall {
                    return;
                }
                self.calls.push_back((now, outcome == CallOutcome::Failed));
                let since = now - self.settings.window();
                while self.calls.front().is_some_and(|(at, _)| *at < since) {
                    self.calls.pop_front();
                }
                let calls = self.calls.len();
                let failed = self.calls.iter().filter(|(_, failed)| *failed).count();
                #[allow(clippy::cast_precision_loss)] // call counts are far below 2^52
                let rate = failed as f64 / calls.max(1) as f64;
                if outcome == CallOutcome::Failed
                    && calls >= self.settings.min_calls as usize
                    && rate >= self.settings.failure_rate
                {
                    tracing::warn!(
                        app,
                        calls,
                        failed,
                        cool_down_secs = self.settings.cool_down_secs,
                        "circuit open: the app's target keeps failing; its jobs wait on the queue"
                    );
                    self.open(now);
                }
            }
            // Calls let through before the circuit opened report late: they change nothing.
            State::Open { .. } => {}
            State::HalfOpen { .. } if !probe => {}
            State::HalfOpen { .. } => match outcome {
                CallOutcome::Answered => {
                    tracing::info!(app, "circuit closed: the probe succeeded; the app resumes");
                    self.state = State::Closed;
                    self.calls.clear();
                }
                CallOutcome::Failed => {
                    tracing::warn!(
                        app,
                        cool_down_secs = self.settings.cool_down_secs,
                        "circuit open again: the probe failed"
                    );
                    self.open(now);
                }
                // The probe did not reach the target: the next job probes.
                CallOutcome::NoCall => self.state = State::HalfOpen { probe_since: None },
            },
        }
    }

    fn open(&mut self, now: OffsetDateTime) {
        self.state = State::Open {
            until: now + self.settings.cool_down(),
        };
        self.calls.clear();
    }
}

fn until_then(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    Duration::try_from(then - now).unwrap_or(Duration::ZERO)
}

/// The breakers of every app of a process. Apps whose breaker is off are always admitted.
#[derive(Debug, Default)]
pub struct CircuitBreakers {
    breakers: HashMap<String, Mutex<Breaker>>,
}

impl CircuitBreakers {
    pub fn new<'a>(apps: impl IntoIterator<Item = &'a AppConfig>) -> Self {
        Self {
            breakers: apps
                .into_iter()
                .filter(|app| app.circuit_breaker.enabled)
                .map(|app| {
                    (
                        app.name.clone(),
                        Mutex::new(Breaker::new(app.circuit_breaker)),
                    )
                })
                .collect(),
        }
    }

    /// Asked before a job of `app` may call its target.
    pub fn admit(&self, app: &str, now: OffsetDateTime) -> Admission {
        match self.breakers.get(app) {
            Some(breaker) => lock(breaker).admit(app, now),
            None => Admission::Call { probe: false },
        }
    }

    /// Told what an admitted job's call came to.
    pub fn record(&self, app: &str, probe: bool, outcome: CallOutcome, now: OffsetDateTime) {
        if let Some(breaker) = self.breakers.get(app) {
            lock(breaker).record(app, probe, outcome, now);
        }
    }

    /// Whether the app is paused now (open, or half-open with its probe out).
    pub fn is_paused(&self, app: &str) -> bool {
        self.breakers
            .get(app)
            .is_some_and(|b| lock(b).state != State::Closed)
    }
}

fn lock(breaker: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    // The state is a few counters: after a panic elsewhere it is still usable.
    breaker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2025-03-01 09:00:00 UTC);

    /// A manual clock: the breaker takes the time from its caller.
    struct Clock(OffsetDateTime);
    impl Clock {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
        fn advance(&mut self, secs: u64) {
            self.0 += Duration::from_secs(secs);
        }
    }

    fn settings() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            enabled: true,
            failure_rate: 0.5,
            min_calls: 4,
            window_secs: 60,
            cool_down_secs: 30,
        }
    }

    fn call(breaker: &mut Breaker, clock: &Clock, outcome: CallOutcome) -> Admission {
        let admission = breaker.admit("slack", clock.now());
        if let Admission::Call { probe } = admission {
            breaker.record("slack", probe, outcome, clock.now());
        }
        admission
    }

    #[test]
    fn failures_below_the_minimum_number_of_calls_do_not_open_the_circuit() {
        let clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..3 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        assert_eq!(breaker.state, State::Closed);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Call { probe: false }
        );
    }

    #[test]
    fn a_failure_rate_at_the_threshold_opens_the_circuit_and_jobs_wait_the_cool_down() {
        let mut clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        call(&mut breaker, &clock, CallOutcome::Answered);
        call(&mut breaker, &clock, CallOutcome::Answered);
        call(&mut breaker, &clock, CallOutcome::Failed);
        assert_eq!(breaker.state, State::Closed, "1 of 3 failed");
        call(&mut breaker, &clock, CallOutcome::Failed);
        assert!(matches!(breaker.state, State::Open { .. }), "2 of 4 failed");
        clock.advance(10);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Wait(Duration::from_secs(20))
        );
    }

    #[test]
    fn calls_older_than_the_window_are_forgotten() {
        let mut clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..3 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        clock.advance(61);
        call(&mut breaker, &clock, CallOutcome::Failed);
        assert_eq!(
            breaker.state,
            State::Closed,
            "only 1 call within the window"
        );
    }

    #[test]
    fn throttling_and_jobs_that_never_called_the_target_do_not_count() {
        let clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..10 {
            call(&mut breaker, &clock, CallOutcome::NoCall);
        }
        for _ in 0..3 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        assert_eq!(breaker.state, State::Closed);
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_its_success_closes_the_circuit() {
        let mut clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        clock.advance(30);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Call { probe: true }
        );
        // While the probe is out, the others keep waiting.
        clock.advance(1);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Wait(Duration::from_secs(29))
        );
        // A job admitted before the circuit opened reports late: it is not the probe.
        breaker.record("slack", false, CallOutcome::Answered, clock.now());
        assert!(matches!(breaker.state, State::HalfOpen { .. }));
        breaker.record("slack", true, CallOutcome::Answered, clock.now());
        assert_eq!(breaker.state, State::Closed);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Call { probe: false }
        );
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_for_another_cool_down() {
        let mut clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        clock.advance(30);
        assert_eq!(
            call(&mut breaker, &clock, CallOutcome::Failed),
            Admission::Call { probe: true }
        );
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Wait(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_probe_that_never_reached_the_target_lets_the_next_job_probe() {
        let mut clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        clock.advance(30);
        call(&mut breaker, &clock, CallOutcome::NoCall);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Call { probe: true }
        );
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cool_down() {
        let mut clock = Clock(T0);
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, &clock, CallOutcome::Failed);
        }
        clock.advance(30);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Call { probe: true }
        );
        clock.advance(30);
        assert_eq!(
            breaker.admit("slack", clock.now()),
            Admission::Call { probe: true }
        );
    }

    #[test]
    fn breakers_are_per_app_and_an_app_without_one_is_always_admitted() {
        let config = crate::config::Config::parse(
            r#"
            [source]
            org_ids = ["00D8a000002bQxTEAU"]
            [[apps]]
            name = "slack"
            base_url = "https://scim.example.com/v2"
            secret = "s"
            circuit_breaker = { min_calls = 2, failure_rate = 1.0 }
            [apps.mapping]
            userName = "Username"
            [[apps]]
            name = "zoom"
            base_url = "https://scim.example.com/v2"
            secret = "s"
            circuit_breaker = { enabled = false }
            [apps.mapping]
            userName = "Username"
            "#,
            "test",
        )
        .unwrap();
        let breakers = CircuitBreakers::new(&config.apps);
        for app in ["slack", "zoom"] {
            for _ in 0..5 {
                breakers.record(app, false, CallOutcome::Failed, T0);
            }
        }
        assert!(breakers.is_paused("slack"));
        assert!(matches!(breakers.admit("slack", T0), Admission::Wait(_)));
        assert_eq!(breakers.admit("zoom", T0), Admission::Call { probe: false });
        assert_eq!(
            breakers.admit("unknown", T0),
            Admission::Call { probe: false }
        );
    }

    #[test]
    fn the_breaker_is_on_by_default_and_its_settings_are_checked() {
        let parse = |extra: &str| {
            crate::config::Config::parse(
                &format!(
                    r#"
                    [source]
                    org_ids = ["00D8a000002bQxTEAU"]
                    [[apps]]
                    name = "slack"
                    base_url = "https://scim.example.com/v2"
                    secret = "s"
                    {extra}
                    [apps.mapping]
                    userName = "Username"
                    "#
                ),
                "test",
            )
        };
        let config = parse("").unwrap();
        assert_eq!(
            config.apps[0].circuit_breaker,
            CircuitBreakerConfig::default()
        );
        assert!(config.apps[0].circuit_breaker.enabled);
        let error = parse(
            "circuit_breaker = { failure_rate = 0, min_calls = 0, window_secs = 0, cool_down_secs = 7200 }",
        )
        .unwrap_err()
        .to_string();
        for key in ["failure_rate", "min_calls", "window_secs", "cool_down_secs"] {
            assert!(
                error.contains(&format!("apps[slack].circuit_breaker.{key}")),
                "{key}: {error}"
            );
        }
        assert!(parse("circuit_breaker = { threshold = 3 }").is_err());
    }
}
