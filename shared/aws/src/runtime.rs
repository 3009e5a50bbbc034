//! Start-up of the Lambda functions: the environment is read once, here, and turned into typed
//! settings; nothing deeper in the code reads the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use userprov_core::config::{Config, ConfigError};
use userprov_core::error::{Classify, ErrorClass};

/// Where the config file is mounted when it ships in the stack's config layer.
pub const LAYER_CONFIG_PATH: &str = "/opt/userprov.toml";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("environment variable {0} must be set (the SAM template sets it)")]
    Missing(&'static str),
    #[error("environment variable {name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "no configuration: set USERPROV_CONFIG_FILE, or USERPROV_CONFIG to the TOML text, or ship {LAYER_CONFIG_PATH} in the config layer"
    )]
    NoConfig,
    #[error("cannot read the webhook token secret: {0}")]
    Token(String),
}

impl Classify for StartupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

/// The settings every function may need; each function reads the ones it uses.
#[derive(Debug, Clone)]
pub struct FunctionEnv {
    pub config: Arc<Config>,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub links_table: Option<String>,
    pub log_table: Option<String>,
    /// The deactivation guard's table; without it, a guarded app's deactivations fail.
    pub holds_table: Option<String>,
    pub log_retention: Duration,
    /// The queue's maxReceiveCount; overrides `worker.max_attempts` so the worker knows its last try.
    pub max_receives: Option<u32>,
    /// Overrides `webhook.token_secret` (the template passes the generated secret's ARN).
    pub webhook_token_secret: Option<String>,
    /// Overrides `webhook.events.secret` (the template passes the generated key's ARN).
    pub events_key_secret: Option<String>,
    /// Overrides `log_api.cursor_secret` (the template passes a generated secret's ARN).
    pub log_cursor_secret: Option<String>,
    pub secrets_cache_ttl: Duration,
    /// `USERPROV_EMF_METRICS=true`: the worker prints CloudWatch EMF metrics on stdout.
    pub emf_metrics: bool,
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl FunctionEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<Self, StartupError> {
        Self::from_lookup(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(env: Lookup<'_>) -> Result<Self, StartupError> {
        let config = load_config(env)?;
        let retention_days = parse_number(env, "USERPROV_LOG_RETENTION_DAYS")?.unwrap_or(90);
        let max_receives = parse_number(env, "USERPROV_MAX_RECEIVES")?
            .map(|n| u32::try_from(n).map_err(|_| invalid("USERPROV_MAX_RECEIVES", "too large")))
            .transpose()?;
        let ttl_secs = parse_number(env, "USERPROV_SECRETS_CACHE_SECONDS")?.unwrap_or(300);
        Ok(Self {
            config: Arc::new(config),
            queue_url: env("USERPROV_QUEUE_URL"),
            dlq_url: env("USERPROV_DLQ_URL"),
            links_table: env("USERPROV_LINKS_TABLE"),
            log_table: env("USERPROV_LOG_TABLE"),
            holds_table: env("USERPROV_HOLDS_TABLE"),
            log_retention: Duration::from_secs(retention_days * 24 * 60 * 60),
            max_receives,
            webhook_token_secret: env("USERPROV_WEBHOOK_TOKEN_SECRET"),
            events_key_secret: env("USERPROV_EVENTS_KEY_SECRET"),
            log_cursor_secret: env("USERPROV_LOG_CURSOR_SECRET"),
            secrets_cache_ttl: Duration::from_secs(ttl_secs),
            emf_metrics: parse_switch(env, "USERPROV_EMF_METRICS")?,
        })
    }

    pub fn require<'a>(
        value: &'a Option<String>,
        name: &'static str,
    ) -> Result<&'a str, StartupError> {
        value.as_deref().ok_or(StartupError::Missing(name))
    }
}

fn invalid(name: &'static str, reason: &str) -> StartupError {
    StartupError::Invalid {
        name,
        reason: reason.to_owned(),
    }
}

fn parse_number(env: Lookup<'_>, name: &'static str) -> Result<Option<u64>, StartupError> {
    env(name)
        .map(|raw| {
            raw.trim()
                .parse::<u64>()
                .map_err(|_| invalid(name, "expected a whole number"))
        })
        .transpose()
}

fn parse_switch(env: Lookup<'_>, name: &'static str) -> Result<bool, StartupError> {
    match env(name).as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(invalid(name, "expected true or false")),
    }
}

fn load_config(env: Lookup<'_>) -> Result<Config, StartupError> {
    if let Some(path) = env("USERPROV_CONFIG_FILE") {
        return Ok(Config::load(&PathBuf::from(path))?);
    }
    if let Some(text) = env("USERPROV_CONFIG") {
        return Ok(Config::parse(&text, "USERPROV_CONFIG")?);
    }
    if Path::new(LAYER_CONFIG_PATH).exists() {
        return Ok(Config::load(Path::new(LAYER_CONFIG_PATH))?);
    }
    Err(StartupError::NoConfig)
}

/// JSON logs on stdout, as Lambda's JSON log format expects; `RUST_LOG` filters.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_env_filter(filter)
        .init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    const CONFIG: &str = r#"
        [source]
        org_ids = ["00D8a000002bQxTEAU"]
    "#;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn settings_are_read_from_the_environment() {
        let vars = env(&[
            ("USERPROV_CONFIG", CONFIG),
            ("USERPROV_QUEUE_URL", "https://sqs/q.fifo"),
            ("USERPROV_MAX_RECEIVES", "7"),
            ("USERPROV_LOG_RETENTION_DAYS", "30"),
        ]);
        let parsed = FunctionEnv::from_lookup(&|name| vars.get(name).cloned()).unwrap();
        assert_eq!(parsed.queue_url.as_deref(), Some("https://sqs/q.fifo"));
        assert_eq!(parsed.max_receives, Some(7));
        assert_eq!(parsed.log_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(parsed.config.org_ids.len(), 1);
        assert!(!parsed.emf_metrics, "metrics are off unless asked for");
    }

    #[test]
    fn emf_metrics_are_switched_on_by_true_only() {
        let on = env(&[
            ("USERPROV_CONFIG", CONFIG),
            ("USERPROV_EMF_METRICS", "true"),
        ]);
        assert!(
            FunctionEnv::from_lookup(&|name| on.get(name).cloned())
                .unwrap()
                .emf_metrics
        );
        let bad = env(&[("USERPROV_CONFIG", CONFIG), ("USERPROV_EMF_METRICS", "yes")]);
        let error = FunctionEnv::from_lookup(&|name| bad.get(name).cloned()).unwrap_err();
        assert!(
            error.to_string().contains("USERPROV_EMF_METRICS"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_number_names_the_variable() {
        let vars = env(&[
            ("USERPROV_CONFIG", CONFIG),
            ("USERPROV_MAX_RECEIVES", "five"),
        ]);
        let error = FunctionEnv::from_lookup(&|name| vars.get(name).cloned()).unwrap_err();
        assert!(error.to_string().contains("USERPROV_MAX_RECEIVES"));
    }

    #[test]
    fn an_invalid_config_refuses_to_start() {
        let vars = env(&[("USERPROV_CONFIG", "[source]\norg_ids = []\n")]);
        let error = FunctionEnv::from_lookup(&|name| vars.get(name).cloned()).unwrap_err();
        assert!(matches!(error, StartupError::Config(_)), "{error}");
    }
}
