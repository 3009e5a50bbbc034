//! The deactivation guard: per app, more than `max` deactivations (or deletes) within a window
//! are held instead of applied, until an admin releases or discards them. A released job goes
//! back through the queue and is re-planned against the account link as it is then, so a user
//! reactivated in the meantime is not deactivated.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::AppConfig;
use crate::error::{Classify, ErrorClass};
use crate::job::Job;
use crate::ports::{HoldStore, StoreError};

/// A held job, as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// A ULID.
    pub id: String,
    pub app: String,
    pub user_id: String,
    #[serde(default)]
    pub username: Option<String>,
    pub job_id: String,
    pub event_id: String,
    /// The queue message body, to send the job again on release.
    pub job: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub held_at: OffsetDateTime,
}

/// The guard's answer for one deactivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Held; the hold's id (the same one when the job is held again).
    Held {
        hold_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "app {app} has a deactivation_guard, but this deployment has no store for held jobs; \
         remove the guard or run with a hold store"
    )]
    NoHoldStore { app: String },
    #[error("the held job cannot be stored: {0}")]
    Job(String),
    #[error("the deactivation guard's store failed: {0}")]
    Store(#[from] StoreError),
}

impl Classify for GuardError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NoHoldStore { .. } => ErrorClass::Config,
            Self::Job(_) => ErrorClass::Permanent,
            Self::Store(e) => e.class(),
        }
    }
}

impl GuardError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoHoldStore { .. } => "no_hold_store",
            Self::Job(_) => "hold_encoding",
            Self::Store(_) => "store",
        }
    }
}

/// Called before a deactivation is applied: `Some(reason)` when the job is held instead.
pub async fn hold_if_over_limit(
    holds: Option<&Arc<dyn HoldStore>>,
    app: &AppConfig,
    job: &Job,
    now: OffsetDateTime,
) -> Result<Option<String>, GuardError> {
    let Some(guard) = app.deactivation_guard else {
        return Ok(None);
    };
    let Some(holds) = holds else {
        return Err(GuardError::NoHoldStore {
            app: app.name.clone(),
        });
    };
    let reason = format!(
        "held by the deactivation guard: more than {} deactivations within {} s in app {}",
        guard.max, guard.window_secs, app.name
    );
    let hold = Hold {
        id: ulid::Ulid::new().to_string(),
        app: app.name.clone(),
        user_id: job.user.id.to_string(),
        username: job.user.username().map(str::to_owned),
        job_id: job.job_id.clone(),
        event_id: job.event_id.clone(),
        job: job.to_body().map_err(|e| GuardError::Job(e.to_string()))?,
        reason: reason.clone(),
        held_at: now,
    };
    match holds
        .admit_deactivation(now, guard.window(), guard.max, &hold)
        .await?
    {
        Admission::Admitted => Ok(None),
        Admission::Held { hold_id } => Ok(Some(format!(
            "{reason}; hold {hold_id}: release with `userprov holds release {hold_id}` or discard it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::config::{Config, DeactivationGuard};

    fn config(guard: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(
            &format!(
                r#"
                [source]
                org_ids = ["00D8a000002bQxTEAU"]
                [[apps]]
                name = "slack"
                base_url = "https://scim.example.com/v2"
                secret = "s"
                [apps.mapping]
                userName = "Username"
                {guard}
                "#
            ),
            "test",
        )
    }

    #[test]
    fn a_deactivation_guard_is_read_per_app_and_its_window_is_checked() {
        let guarded = config("[apps.deactivation_guard]\nmax = 10\nwindow_secs = 3600").unwrap();
        assert_eq!(
            guarded.apps[0].deactivation_guard,
            Some(DeactivationGuard {
                max: 10,
                window_secs: 3600
            })
        );
        assert_eq!(config("").unwrap().apps[0].deactivation_guard, None);
        let error = config("[apps.deactivation_guard]\nmax = 10\nwindow_secs = 0").unwrap_err();
        assert!(
            error.to_string().contains("deactivation_guard.window_secs"),
            "{error}"
        );
        assert!(config("[apps.deactivation_guard]\nmax = 10").is_err());
    }
}
