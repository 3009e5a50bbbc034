//! Configuration: one TOML file, parsed and validated once at start.
//!
//! Every problem found is reported together, each naming the file, the app and the key, so an
//! admin fixes a config in one pass instead of one error at a time.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::ids::SalesforceId;
use crate::mapping::{Mapping, MappingRule};

/// The example configuration shipped in `infra/`, used when no file is given.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../infra/userprov.example.toml");
pub const EXAMPLE_CONFIG_NAME: &str = "infra/userprov.example.toml (built in)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: `apps[slack].mapping."name.givenName"`, or `line 12, column 3`.
    pub location: String,
    pub message: String,
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(
            f,
            "{}: {} problem{} found",
            self.origin,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            writeln!(f, "  - {}: {}", issue.location, issue.message)?;
        }
        Ok(())
    }
}

impl crate::error::Classify for ConfigError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Create,
    Update,
    Deactivate,
    Reactivate,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Self::Create,
        Self::Update,
        Self::Deactivate,
        Self::Reactivate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Deactivate => "deactivate",
            Self::Reactivate => "reactivate",
        }
    }
}

/// How a leaver's account is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeactivateMode {
    /// PATCH `active: false` (the account can be reactivated).
    #[default]
    PatchActive,
    /// DELETE the account.
    Delete,
}

/// How a returning user's account is brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReactivateMode {
    /// PUT the account with `active: true`. An account gone from the target (404) is created
    /// again and re-linked. The default with `deactivate = "patch_active"`.
    ActiveTrue,
    /// Find (by `match_on`) or create the account afresh and re-link it, without first trying
    /// the old id: for targets whose removed accounts cannot come back. The default with
    /// `deactivate = "delete"`.
    Recreate,
}

/// userprov configuration: the Salesforce source, the webhook, the worker and the connected apps.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "userprov configuration")]
struct RawConfig {
    source: RawSource,
    #[serde(default)]
    webhook: WebhookConfig,
    #[serde(default)]
    worker: WorkerConfig,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    log_api: LogApiConfig,
}

/// The log API's keys (`[log_api]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogApiConfig {
    /// The secret whose value keys the signatures on page cursors. Every process serving the
    /// same log must read the same secret (on AWS the template passes a generated one). Unset:
    /// `userprov serve` creates `userprov/log-cursor-key` in its secret store on first start.
    pub cursor_secret: Option<String>,
    /// The secret holding a bearer token that `userprov serve` requires on the log API. Unset:
    /// no token (the server binds loopback by default). On AWS, API Gateway authorises with IAM.
    pub token_secret: Option<String>,
    /// Days `userprov serve` keeps a log entry in its data directory; older entries are
    /// deleted hourly. Default 90. On AWS the stack's `LogRetentionDays` parameter sets the
    /// log table's TTL instead.
    pub retention_days: Option<u32>,
}

impl LogApiConfig {
    pub const DEFAULT_RETENTION_DAYS: u32 = 90;

    /// How long a log entry is kept by the embedded store.
    pub fn retention(&self) -> std::time::Duration {
        let days = self
            .retention_days
            .unwrap_or(Self::DEFAULT_RETENTION_DAYS)
            .max(1);
        std::time::Duration::from_secs(u64::from(days) * 86_400)
    }
}

/// The Salesforce org(s) that may send events.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSource {
    org_ids: Vec<String>,
    /// The fields the Outbound Message (or event) sends; when listed, every field a mapping or
    /// scope filter reads must be among them.
    #[serde(default)]
    fields: Option<Vec<String>>,
    /// How JSON events (platform events, Event Relay, Flow callouts, CDC) are read.
    #[serde(default)]
    events: crate::salesforce::events::EventsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The secret holding the token that ends the Outbound Message URL.
    pub token_secret: String,
    /// Requests larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// How `POST /salesforce/events` authenticates senders.
    pub events: crate::http::event_auth::EventAuthConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            token_secret: "userprov/webhook-token".into(),
            max_body_bytes: 1024 * 1024,
            events: crate::http::event_auth::EventAuthConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Deliveries of a job before it goes to the dead-letter queue (SQS maxReceiveCount).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with full jitter.
    pub base_delay_ms: u64,
    /// The longest retry delay.
    pub max_delay_secs: u64,
    /// Timeout of one request to a target.
    pub request_timeout_secs: u64,
    /// Failed attempts, throttling (HTTP 429, the app's rate limit) not counted, before a job is
    /// dead-lettered; at most `max_attempts`, which counts every delivery. Default: `max_attempts`.
    /// Set `max_attempts = 25, max_failed_attempts = 5` to let a throttled job wait its turn
    /// many times while a broken one still stops after 5 tries.
    pub max_failed_attempts: Option<u32>,
    /// How long a job being worked on stays hidden from other workers of the embedded queue
    /// (`userprov serve`); after a crash it is delivered again once this has passed. On AWS the
    /// queue's VisibilityTimeout in template.yaml plays this part.
    pub visibility_timeout_secs: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 1000,
            max_delay_secs: 900,
            request_timeout_secs: 10,
            max_failed_attempts: None,
            visibility_timeout_secs: 30,
        }
    }
}

impl WorkerConfig {
    pub fn base_delay(&self) -> Duration {
        Duration::from_millis(self.base_delay_ms)
    }
    pub fn max_delay(&self) -> Duration {
        Duration::from_secs(self.max_delay_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs)
    }
}

/// One connected app.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawApp {
    /// 1 to 40 lowercase letters, digits, '-' and '_'; unique.
    name: String,
    #[serde(default = "default_connector")]
    connector: String,
    base_url: String,
    secret: String,
    #[serde(default = "default_triggers")]
    triggers: Vec<Trigger>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    deactivate: DeactivateMode,
    /// How a returning user's account is brought back; default: `active_true`, or `recreate`
    /// when `deactivate = "delete"`.
    #[serde(default)]
    reactivate: Option<ReactivateMode>,
    #[serde(default = "default_match_on")]
    match_on: Vec<String>,
    /// SCIM attribute path → an expression over Salesforce fields, or a rule table.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, MappingRule>")]
    mapping: toml::Table,
    /// Lookup tables for `lookup(value, "table")` in mapping expressions.
    #[serde(default)]
    tables: crate::expr::Tables,
    #[serde(default)]
    scope: crate::scope::RawScope,
    /// Permission Set Groups to target groups or a role attribute.
    #[serde(default)]
    groups: Option<crate::groups::RawGroups>,
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    deactivation_guard: Option<DeactivationGuard>,
    /// Pauses the app while its target keeps failing; on by default.
    #[serde(default)]
    circuit_breaker: crate::breaker::CircuitBreakerConfig,
    /// With `connector = "rest"`: how the app's REST/JSON user API is called.
    #[serde(default)]
    rest: Option<crate::connector::rest::RestSettings>,
}

/// `[apps.rate_limit]`: a token bucket shared by every call to the app from this process.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate; fractions allowed (Slack's 180 writes a minute is 3).
    pub requests_per_second: f64,
    /// Calls allowed at once after a quiet spell; default: one second's worth, at least 1.
    #[serde(default)]
    pub burst: Option<u32>,
    /// The longest a call waits for its turn; beyond that the job is put back on the queue
    /// for later instead (a Lambda must not sleep past its deadline).
    #[serde(default = "default_rate_limit_max_wait_ms")]
    pub max_wait_ms: u64,
}

fn default_rate_limit_max_wait_ms() -> u64 {
    2_000
}

impl RateLimitConfig {
    pub fn burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.requests_per_second.ceil().clamp(1.0, 1_000_000.0) as u32)
    }
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
    /// The time one request's permit takes to come back.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.requests_per_second)
    }
}

/// `[apps.deactivation_guard]`: more than `max` deactivations (or deletes) within `window_secs`
/// are held for an admin instead of applied (a bad mapping or scope must not lock a company out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivationGuard {
    pub max: u32,
    pub window_secs: u64,
}

impl DeactivationGuard {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
}

fn default_connector() -> String {
    "scim2".into()
}
fn default_triggers() -> Vec<Trigger> {
    Trigger::ALL.to_vec()
}
fn default_match_on() -> Vec<String> {
    vec!["userName".into()]
}

/// One connected app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: String,
    pub connector: String,
    pub base_url: String,
    /// Secret name (Secrets Manager name or ARN; locally a file or environment variable).
    pub secret: String,
    pub triggers: BTreeSet<Trigger>,
    pub dry_run: bool,
    pub deactivate: DeactivateMode,
    pub reactivate: ReactivateMode,
    pub match_on: Vec<String>,
    pub mapping: Mapping,
    pub scope: crate::scope::Scope,
    pub groups: Option<crate::groups::GroupMapping>,
    pub rate_limit: Option<RateLimitConfig>,
    pub deactivation_guard: Option<DeactivationGuard>,
    pub circuit_breaker: crate::breaker::CircuitBreakerConfig,
    /// `[apps.rest]`, for `connector = "rest"`.
    pub rest: Option<crate::connector::rest::RestSettings>,
}

impl AppConfig {
    pub fn allows(&self, trigger: Trigger) -> bool {
        self.triggers.contains(&trigger)
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub origin: String,
    pub org_ids: Vec<SalesforceId>,
    /// How JSON events are read (`[source.events]`).
    pub events: crate::salesforce::events::EventFormat,
    pub webhook: WebhookConfig,
    pub worker: WorkerConfig,
    pub apps: Vec<AppConfig>,
    pub log_api: LogApiConfig,
}

pub const CONNECTORS: &[&str] = &["scim2", "rest"];

impl Config {
    /// The built-in example configuration.
    pub fn example() -> Result<Self, ConfigError> {
        Self::parse(EXAMPLE_CONFIG, EXAMPLE_CONFIG_NAME)
    }

    /// Reads and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            issues: vec![ConfigIssue {
                location: "file".into(),
                message: format!("cannot read it: {e}"),
            }],
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with_kinds(text, origin, CONNECTORS)
    }

    /// [`Config::parse`] for a build that registers connector kinds of its own
    /// (`connector::registry::ConnectorKinds`): `kinds` are the accepted `connector` names.
    pub fn parse_with_kinds(text: &str, origin: &str, kinds: &[&str]) -> Result<Self, ConfigError> {
        let fail = |issues| ConfigError {
            origin: origin.to_owned(),
            issues,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(vec![toml_issue(text, &e)]))?;
        let mut issues = Vec::new();

        let mut org_ids = Vec::new();
        if raw.source.org_ids.is_empty() {
            issues.push(issue(
                "source.org_ids",
                "list at least one Salesforce org id (00D...)",
            ));
        }
        for (i, raw_id) in raw.source.org_ids.iter().enumerate() {
            match SalesforceId::parse(raw_id) {
                Ok(id) if id.key_prefix() == "00D" => org_ids.push(id),
                Ok(_) => issues.push(issue(
                    &format!("source.org_ids[{i}]"),
                    &format!("{raw_id:?} is not an organization id (they start with 00D)"),
                )),
                Err(e) => issues.push(issue(
                    &format!("source.org_ids[{i}]"),
                    &format!("{raw_id:?}: {e}"),
                )),
            }
        }
        let events = raw.source.events.compile().unwrap_or_else(|problems| {
            for (key, message) in problems {
                issues.push(issue(&format!("source.events.{key}"), &message));
            }
            crate::salesforce::events::EventFormat::default()
        });
        for (key, message) in raw.webhook.events.validate() {
            issues.push(issue(&format!("webhook.events.{key}"), &message));
        }
        if raw.log_api.retention_days == Some(0) {
            issues.push(issue(
                "log_api.retention_days",
                "must be at least 1 (days a log entry is kept)",
            ));
        }
        if raw.webhook.max_body_bytes < 1024 {
            issues.push(issue("webhook.max_body_bytes", "must be at least 1024"));
        }
        if raw.worker.max_attempts == 0 || raw.worker.max_attempts > 1000 {
            issues.push(issue(
                "worker.max_attempts",
                "must be between 1 and 1000 (the SQS maxReceiveCount range)",
            ));
        }
        if let Some(failed) = raw.worker.max_failed_attempts
            && (failed == 0 || failed > raw.worker.max_attempts)
        {
            issues.push(issue(
                "worker.max_failed_attempts",
                "must be between 1 and worker.max_attempts",
            ));
        }
        if raw.worker.visibility_timeout_secs < raw.worker.request_timeout_secs.saturating_mul(2)
            || raw.worker.visibility_timeout_secs > 12 * 3600
        {
            issues.push(issue(
                "worker.visibility_timeout_secs",
                "must be at least twice request_timeout_secs (a job makes several requests) and at most 43200 (12 hours)",
            ));
        }
        if raw.worker.request_timeout_secs == 0 {
            issues.push(issue("worker.request_timeout_secs", "must be at least 1"));
        }

        let mut names = BTreeSet::new();
        let mut apps = Vec::new();
        for raw_app in raw.apps {
            let at = format!("apps[{}]", raw_app.name);
            if !valid_app_name(&raw_app.name) {
                issues.push(issue(
                    &at,
                    "the name must be 1 to 40 characters of lowercase letters, digits, '-' and '_'",
                ));
            }
            if !names.insert(raw_app.name.clone()) {
                issues.push(issue(&at, "another app has the same name"));
            }
            if !kinds.contains(&raw_app.connector.as_str()) {
                issues.push(issue(
                    &format!("{at}.connector"),
                    &format!(
                        "unknown connector {:?}; known: {}",
                        raw_app.connector,
                        kinds.join(", ")
                    ),
                ));
            }
            match reqwest::Url::parse(&raw_app.base_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(_) => issues.push(issue(
                    &format!("{at}.base_url"),
                    "must be an http or https URL",
                )),
                Err(e) => issues.push(issue(&format!("{at}.base_url"), &format!("not a URL: {e}"))),
            }
            if raw_app.secret.trim().is_empty() {
                issues.push(issue(
                    &format!("{at}.secret"),
                    "name the secret holding the app's credentials",
                ));
            }
            if raw_app.match_on.is_empty() {
                issues.push(issue(
                    &format!("{at}.match_on"),
                    "list at least one attribute (usually userName)",
                ));
            }
            let mapping = match Mapping::compile(&raw_app.mapping, &raw_app.tables) {
                Ok(m) => m,
                Err(errors) => {
                    for e in errors {
                        issues.push(issue(
                            &format!("{at}.mapping.{:?}", e.attribute),
                            &e.message,
                        ));
                    }
                    Mapping::default()
                }
            };
            if let Some(sent) = &raw.source.fields {
                let sent: BTreeSet<String> = sent.iter().map(|f| f.to_ascii_lowercase()).collect();
                let read = mapping.source_fields().into_iter().map(|f| ("mapping", f));
                let filtered = scope_fields(&raw_app)
                    .into_iter()
                    .map(|f| ("scope.filter", f));
                let grouped = raw_app
                    .groups
                    .iter()
                    .map(|g| ("groups.from", g.from.clone()));
                for (place, field) in read.chain(filtered).chain(grouped) {
                    if field != "Id" && !sent.contains(&field.to_ascii_lowercase()) {
                        issues.push(issue(
                            &format!("{at}.{place}"),
                            &format!(
                                "reads the field {field:?}, which source.fields does not list: the Outbound Message never sends it"
                            ),
                        ));
                    }
                }
            }
            for attribute in &raw_app.match_on {
                if !mapping.targets(attribute) {
                    issues.push(issue(
                        &format!("{at}.match_on"),
                        &format!("{attribute:?} is not mapped, so it cannot identify an account"),
                    ));
                }
            }
            if !mapping.targets("userName") && raw_app.connector == "scim2" {
                issues.push(issue(
                    &format!("{at}.mapping"),
                    "SCIM requires userName: map it",
                ));
            }
            let scope = match crate::scope::Scope::compile(&raw_app.scope, &raw_app.tables) {
                Ok(scope) => scope,
                Err(errors) => {
                    for (key, message) in errors {
                        issues.push(issue(&format!("{at}.scope.{key}"), &message));
                    }
                    crate::scope::Scope::default()
                }
            };
            let groups = match &raw_app.groups {
                None => None,
                Some(raw_groups) => match crate::groups::GroupMapping::compile(raw_groups) {
                    Ok(groups) => Some(groups),
                    Err(errors) => {
                        for (key, message) in errors {
                            issues.push(issue(&format!("{at}.groups.{key}"), &message));
                        }
                        None
                    }
                },
            };
            if let Some(groups) = &groups
                && groups.deliver_as == crate::groups::DeliverAs::Attribute
                && mapping.targets(&groups.attribute)
            {
                issues.push(issue(
                    &format!("{at}.groups.attribute"),
                    &format!(
                        "{:?} is also written by the mapping; let one of them own it",
                        groups.attribute
                    ),
                ));
            }
            if let Some(limit) = &raw_app.rate_limit {
                let rate = limit.requests_per_second;
                if !(rate.is_finite() && (0.001..=100_000.0).contains(&rate)) {
                    issues.push(issue(
                        &format!("{at}.rate_limit.requests_per_second"),
                        "must be a number between 0.001 and 100000",
                    ));
                }
                if limit.burst == Some(0) {
                    issues.push(issue(
                        &format!("{at}.rate_limit.burst"),
                        "must be at least 1",
                    ));
                }
                if limit.max_wait_ms > 60_000 {
                    issues.push(issue(
                        &format!("{at}.rate_limit.max_wait_ms"),
                        "must be at most 60000: longer waits belong on the queue",
                    ));
                }
            }
            match (&raw_app.rest, raw_app.connector.as_str()) {
                (None, "rest") => issues.push(issue(
                    &format!("{at}.rest"),
                    "connector \"rest\" needs an [apps.rest] table describing the API",
                )),
                (Some(_), connector) if connector != "rest" => issues.push(issue(
                    &format!("{at}.rest"),
                    "only apps with connector = \"rest\" use [apps.rest]",
                )),
                (Some(rest), _) => {
                    for (key, message) in rest.validate() {
                        issues.push(issue(&format!("{at}.rest.{key}"), &message));
                    }
                    for (key, message) in rest.issues_with_groups(groups.as_ref()) {
                        issues.push(issue(&format!("{at}.{key}"), &message));
                    }
                }
                (None, _) => {}
            }
            if let Some(guard) = &raw_app.deactivation_guard
                && !(1..=30 * 24 * 3600).contains(&guard.window_secs)
            {
                issues.push(issue(
                    &format!("{at}.deactivation_guard.window_secs"),
                    "must be between 1 and 2592000 (30 days)",
                ));
            }
            issues.extend(raw_app.circuit_breaker.issues(&at));
            apps.push(AppConfig {
                name: raw_app.name,
                connector: raw_app.connector,
                base_url: raw_app.base_url.trim_end_matches('/').to_owned(),
                secret: raw_app.secret,
                triggers: raw_app.triggers.into_iter().collect(),
                dry_run: raw_app.dry_run,
                deactivate: raw_app.deactivate,
                reactivate: raw_app.reactivate.unwrap_or(match raw_app.deactivate {
                    DeactivateMode::PatchActive => ReactivateMode::ActiveTrue,
                    DeactivateMode::Delete => ReactivateMode::Recreate,
                }),
                match_on: raw_app.match_on,
                mapping,
                scope,
                groups,
                rate_limit: raw_app.rate_limit,
                deactivation_guard: raw_app.deactivation_guard,
                circuit_breaker: raw_app.circuit_breaker,
                rest: raw_app.rest,
            });
        }

        if issues.is_empty() {
            Ok(Config {
                origin: origin.to_owned(),
                org_ids,
                events,
                webhook: raw.webhook,
                log_api: raw.log_api,
                worker: raw.worker,
                apps,
            })
        } else {
            Err(fail(issues))
        }
    }

    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn accepts_org(&self, org: &SalesforceId) -> bool {
        self.org_ids.contains(org)
    }
}

/// The JSON Schema of the configuration file, for editors (completion and checks as you type)
/// and for tools. `infra/userprov.schema.json` is this, written out; a test keeps them equal.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default()
}

/// The fields an app's scope filter reads (empty when it does not parse: that is reported
/// elsewhere).
fn scope_fields(app: &RawApp) -> Vec<String> {
    crate::scope::Scope::compile(&app.scope, &app.tables)
        .map(|s| s.fields())
        .unwrap_or_default()
}

fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn issue(location: &str, message: &str) -> ConfigIssue {
    ConfigIssue {
        location: location.to_owned(),
        message: message.to_owned(),
    }
}

fn toml_issue(text: &str, error: &toml::de::Error) -> ConfigIssue {
    let location = match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}")
        }
        None => "file".to_owned(),
    };
    ConfigIssue {
        location,
        message: error.message().to_owned(),
    }
}

/// Rules that are not yet compiled, as written in the file; re-exported for tooling.
pub type RawMappingRule = MappingRule;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_location() {
        let text = r#"
[source]
org_ids = ["00D8a000002bQxTEAU", "0058a00000LmN2pAAF"]

[[apps]]
name = "slack"
connector = "ldap"
base_url = "not a url"
secret = "userprov/slack"
match_on = ["externalId"]
[apps.scope]
filter = 'Department =='
[apps.mapping]
userName = "Username"
displayName = 'concatt(FirstName, LastName)'

[[apps]]
name = "slack"
base_url = "https://scim.example.com/v2"
secret = "userprov/slack2"
[apps.mapping]
userName = "Username"
"#;
        let error = Config::parse(text, "userprov.toml").unwrap_err();
        let locations: Vec<&str> = error.issues.iter().map(|i| i.location.as_str()).collect();
        assert_eq!(
            locations,
            vec![
                "source.org_ids[1]",
                "apps[slack].connector",
                "apps[slack].base_url",
                "apps[slack].mapping.\"displayName\"",
                "apps[slack].match_on",
                "apps[slack].scope.filter",
                "apps[slack]",
            ],
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("userprov.toml: 7 problems found")
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_line() {
        let error = Config::parse(
            "[source]\norg_ids = [\"00D8a000002bQxTEAU\"]\norgs = 1\n",
            "u.toml",
        )
        .unwrap_err();
        assert_eq!(error.issues[0].location, "line 3, column 1");
        assert!(
            error.issues[0].message.contains("unknown field `orgs`"),
            "{}",
            error.issues[0].message
        );
    }

    #[test]
    fn a_field_the_source_never_sends_is_reported() {
        let text = r#"
[source]
org_ids = ["00D8a000002bQxTEAU"]
fields = ["Username", "Email", "IsActive"]
[[apps]]
name = "slack"
base_url = "https://scim.example.com/v2"
secret = "s"
[apps.scope]
filter = 'Department != "Contractors"'
[apps.mapping]
userName = "Username"
displayName = 'concat(FirstName, " ", email_local(Email))'
externalId = "Id"
"#;
        let error = Config::parse(text, "u.toml").unwrap_err();
        let found: Vec<(String, bool)> = error
            .issues
            .iter()
            .map(|i| (i.location.clone(), i.message.contains("never sends")))
            .collect();
        assert_eq!(
            found,
            vec![
                ("apps[slack].mapping".to_owned(), true),
                ("apps[slack].scope.filter".to_owned(), true)
            ]
        );
        assert!(error.issues[0].message.contains("\"FirstName\""));
    }

    #[test]
    fn the_published_json_schema_is_the_one_the_types_give() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/userprov.schema.json"
        );
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == generated,
            "infra/userprov.schema.json is out of date: run `UPDATE_GOLDEN=1 cargo test -p userprov-core json_schema` and commit it"
        );
    }

    #[test]
    fn the_json_schema_refuses_unknown_keys_and_knows_every_section() {
        let schema = json_schema();
        assert_eq!(schema["additionalProperties"], false);
        let sections: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            sections,
            vec!["apps", "log_api", "source", "webhook", "worker"]
        );
        let app = &schema["$defs"]["RawApp"];
        assert_eq!(app["additionalProperties"], false);
        for key in ["mapping", "scope", "groups", "triggers", "deactivate"] {
            assert!(app["properties"].get(key).is_some(), "apps.{key} missing");
        }
    }

    #[test]
    fn the_json_schema_accepts_the_example_and_refuses_what_the_parser_refuses() {
        let validator = jsonschema::validator_for(&json_schema()).unwrap();
        let as_json = |text: &str| {
            serde_json::to_value(toml::from_str::<toml::Table>(text).unwrap()).unwrap()
        };
        let example = as_json(EXAMPLE_CONFIG);
        let problems: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{problems:#?}");
        let misspelt = as_json(&EXAMPLE_CONFIG.replace("match_on =", "match_onn ="));
        assert!(!validator.is_valid(&misspelt));
        let bad_trigger = as_json(&EXAMPLE_CONFIG.replace("\"reactivate\"]", "\"reactivated\"]"));
        assert!(!validator.is_valid(&bad_trigger));
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let config = Config::example().unwrap();
        assert_eq!(config.apps[0].name, "slack");
    }

    #[test]
    fn a_rate_limit_is_read_and_checked() {
        let app = |limit: &str| {
            format!(
                "[source]\norg_ids = [\"00D8a000002bQxTEAU\"]\n[[apps]]\nname = \"slack\"\nbase_url = \"https://scim.example.com/v2\"\nsecret = \"userprov/slack\"\n{limit}\n[apps.mapping]\nuserName = \"Username\"\n"
            )
        };
        let config = Config::parse(
            &app("rate_limit = { requests_per_second = 3, burst = 10 }"),
            "t",
        )
        .unwrap();
        let limit = config.apps[0].rate_limit.unwrap();
        assert_eq!(
            (limit.burst(), limit.max_wait()),
            (10, Duration::from_secs(2))
        );
        assert_eq!(limit.period(), Duration::from_secs_f64(1.0 / 3.0));
        let fractional =
            Config::parse(&app("rate_limit = { requests_per_second = 0.5 }"), "t").unwrap();
        assert_eq!(fractional.apps[0].rate_limit.unwrap().burst(), 1);
        assert!(
            Config::parse(&app(""), "t").unwrap().apps[0]
                .rate_limit
                .is_none()
        );

        let error = Config::parse(
            &app("rate_limit = { requests_per_second = 0, burst = 0, max_wait_ms = 900000 }"),
            "t",
        )
        .unwrap_err();
        let locations: Vec<&str> = error.issues.iter().map(|i| i.location.as_str()).collect();
        assert_eq!(
            locations,
            vec![
                "apps[slack].rate_limit.requests_per_second",
                "apps[slack].rate_limit.burst",
                "apps[slack].rate_limit.max_wait_ms",
            ]
        );
    }

    #[test]
    fn reactivation_follows_the_deprovision_mode_unless_it_is_set() {
        let reactivate = |keys: &str| {
            let text = format!(
                "[source]\norg_ids = [\"00D8a000002bQxTEAU\"]\n[[apps]]\nname = \"slack\"\nbase_url = \"https://scim.example.com/v2\"\nsecret = \"userprov/slack\"\n{keys}\n[apps.mapping]\nuserName = \"Username\"\n"
            );
            Config::parse(&text, "t").unwrap().apps[0].reactivate
        };
        assert_eq!(reactivate(""), ReactivateMode::ActiveTrue);
        assert_eq!(
            reactivate("deactivate = \"delete\""),
            ReactivateMode::Recreate
        );
        assert_eq!(
            reactivate("deactivate = \"delete\"\nreactivate = \"active_true\""),
            ReactivateMode::ActiveTrue
        );
        assert_eq!(
            reactivate("reactivate = \"recreate\""),
            ReactivateMode::Recreate
        );
    }
}
