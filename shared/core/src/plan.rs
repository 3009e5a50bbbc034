//! Operation from state: what to do for a user in an app, decided from the account link and the
//! user's snapshot alone (level-triggered: whatever the event was, converge to the current state).

use crate::config::{AppConfig, Trigger};
use crate::link::AccountLink;
use crate::log::Operation;
use crate::scope::OutOfScope;
use crate::source::SourceUser;

/// The planner's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No account yet and the user is active: find one to adopt, else create.
    CreateOrAdopt,
    /// Push the mapped attributes to the linked account.
    Update,
    /// Deactivate the linked account; the reason when it is not the user leaving (out of scope).
    Deactivate(Option<String>),
    Reactivate,
    /// Nothing to do, with the reason.
    Noop(String),
    /// Deliberately not done, with the reason (disabled trigger, stale event, no data...).
    Skip(String),
}

impl Plan {
    pub fn operation(&self) -> Operation {
        match self {
            Self::CreateOrAdopt => Operation::Create,
            Self::Update => Operation::Update,
            Self::Deactivate(_) => Operation::Deactivate,
            Self::Reactivate => Operation::Reactivate,
            Self::Noop(_) => Operation::Noop,
            Self::Skip(_) => Operation::Skip,
        }
    }

    fn trigger(&self) -> Option<Trigger> {
        match self {
            Self::CreateOrAdopt => Some(Trigger::Create),
            Self::Update => Some(Trigger::Update),
            Self::Deactivate(_) => Some(Trigger::Deactivate),
            Self::Reactivate => Some(Trigger::Reactivate),
            Self::Noop(_) | Self::Skip(_) => None,
        }
    }
}

/// Why a snapshot cannot be planned at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the scope filter cannot be evaluated for this user: {0}")]
    Scope(crate::expr::EvalError),
    #[error(
        "the snapshot has no IsActive field, so userprov cannot tell a joiner from a leaver; \
         add IsActive to the fields the Outbound Message (or event) sends"
    )]
    MissingIsActive,
}

impl crate::error::Classify for PlanError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            Self::Scope(_) => crate::error::ErrorClass::Permanent,
            Self::MissingIsActive => crate::error::ErrorClass::BadInput,
        }
    }
}

impl PlanError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Scope(_) => "scope_filter_error",
            Self::MissingIsActive => "missing_is_active",
        }
    }
}

/// Decides the operation for one (app, user).
///
/// `source_time` is the event's ordering timestamp; an event older than the last one applied to
/// the link is stale and skipped.
pub fn plan(
    app: &AppConfig,
    link: Option<&AccountLink>,
    user: &SourceUser,
    source_time: Option<time::OffsetDateTime>,
) -> Result<Plan, PlanError> {
    if let (Some(link), Some(event_time)) = (link, source_time)
        && let Some(applied) = link.last_source_time
        && event_time < applied
    {
        return Ok(Plan::Skip(format!(
            "stale event: changed at {}, older than the last change applied ({})",
            fmt_time(event_time),
            fmt_time(applied)
        )));
    }
    if !user.has_data() {
        return Ok(Plan::Skip(
            "the notification carries no field data (the record was deleted before delivery)"
                .into(),
        ));
    }
    let active = user.is_active().ok_or(PlanError::MissingIsActive)?;
    // A link without an account only orders events; for planning it is no account.
    let account = link.filter(|l| l.account().is_some());
    let verdict = app.scope.check(user).map_err(PlanError::Scope)?;
    if !verdict.in_scope {
        let reason = format!("out of scope: {}", verdict.rule);
        let plan = match account {
            Some(link) if link.active && app.scope.out_of_scope == OutOfScope::Deactivate => {
                Plan::Deactivate(Some(reason))
            }
            _ => Plan::Skip(reason),
        };
        return Ok(with_trigger(app, plan));
    }
    let plan = match (account, active) {
        (None, true) => Plan::CreateOrAdopt,
        (None, false) => Plan::Noop("the user is inactive and has no account in this app".into()),
        (Some(link), true) if link.active => Plan::Update,
        (Some(_), true) => Plan::Reactivate,
        (Some(link), false) if link.active => Plan::Deactivate(None),
        (Some(_), false) => {
            Plan::Noop("the user is inactive and the account is already deactivated".into())
        }
    };
    Ok(with_trigger(app, plan))
}

/// The plan, or a skip when its trigger is disabled for the app.
fn with_trigger(app: &AppConfig, plan: Plan) -> Plan {
    match plan.trigger() {
        Some(trigger) if !app.allows(trigger) => Plan::Skip(format!(
            "the {} trigger is disabled for app {}",
            trigger.as_str(),
            app.name
        )),
        _ => plan,
    }
}

fn fmt_time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ids::SalesforceId;
    use crate::link::ManagedBy;
    use serde_json::json;
    use time::macros::datetime;

    fn app(triggers: &str) -> AppConfig {
        let text = format!(
            r#"
            [source]
            org_ids = ["00D8a000002bQxTEAU"]
            [[apps]]
            name = "slack"
            base_url = "https://scim.example.com/v2"
            secret = "userprov/slack"
            triggers = {triggers}
            [apps.mapping]
            userName = "Username"
            "#
        );
        Config::parse(&text, "test").unwrap().apps.remove(0)
    }

    fn user(active: bool) -> SourceUser {
        let mut u = SourceUser::new(SalesforceId::parse("0058a00000LmN2pAAF").unwrap());
        u.fields
            .insert("Username".into(), json!("marta@acme.example"));
        u.fields
            .insert("IsActive".into(), json!(active.to_string()));
        u
    }

    fn link(active: bool) -> AccountLink {
        AccountLink {
            app: "slack".into(),
            user_id: SalesforceId::parse("0058a00000LmN2pAAF").unwrap(),
            username: None,
            target_id: Some("t-1".into()),
            active,
            last_source_time: Some(datetime!(2025-03-14 16:02:11 UTC)),
            last_event_id: None,
            last_payload_hash: None,
            last_groups: vec![],
            snapshot: None,
            managed_by: Some(ManagedBy::Created),
            version: 1,
            updated_at: datetime!(2025-03-14 16:02:12 UTC),
        }
    }

    const ALL: &str = r#"["create", "update", "deactivate", "reactivate"]"#;

    #[test]
    fn the_operation_follows_from_link_and_user_state() {
        let a = app(ALL);
        assert_eq!(
            plan(&a, None, &user(true), None).unwrap(),
            Plan::CreateOrAdopt
        );
        assert!(matches!(
            plan(&a, None, &user(false), None).unwrap(),
            Plan::Noop(_)
        ));
        assert_eq!(
            plan(&a, Some(&link(true)), &user(true), None).unwrap(),
            Plan::Update
        );
        assert_eq!(
            plan(&a, Some(&link(true)), &user(false), None).unwrap(),
            Plan::Deactivate(None)
        );
        assert_eq!(
            plan(&a, Some(&link(false)), &user(true), None).unwrap(),
            Plan::Reactivate
        );
        assert!(matches!(
            plan(&a, Some(&link(false)), &user(false), None).unwrap(),
            Plan::Noop(_)
        ));
    }

    #[test]
    fn an_event_older_than_the_last_applied_is_skipped_as_stale() {
        let p = plan(
            &app(ALL),
            Some(&link(true)),
            &user(false),
            Some(datetime!(2025-03-14 16:00:00 UTC)),
        )
        .unwrap();
        assert!(matches!(p, Plan::Skip(reason) if reason.starts_with("stale event")));
    }

    #[test]
    fn a_disabled_trigger_is_skipped_with_the_reason() {
        let p = plan(
            &app(r#"["create", "update"]"#),
            Some(&link(true)),
            &user(false),
            None,
        )
        .unwrap();
        assert_eq!(
            p,
            Plan::Skip("the deactivate trigger is disabled for app slack".into())
        );
    }

    #[test]
    fn a_snapshot_without_is_active_cannot_be_planned() {
        let mut u = user(true);
        u.fields.remove("IsActive");
        assert_eq!(
            plan(&app(ALL), None, &u, None),
            Err(PlanError::MissingIsActive)
        );
    }

    fn scoped_app(scope: &str) -> AppConfig {
        let text = format!(
            r#"
            [source]
            org_ids = ["00D8a000002bQxTEAU"]
            [[apps]]
            name = "slack"
            base_url = "https://scim.example.com/v2"
            secret = "userprov/slack"
            [apps.scope]
            {scope}
            [apps.mapping]
            userName = "Username"
            "#
        );
        Config::parse(&text, "test").unwrap().apps.remove(0)
    }

    #[test]
    fn a_user_outside_the_pilot_is_skipped_naming_the_rule() {
        let a = scoped_app(r#"usernames = ["someone.else@acme.example"]"#);
        let p = plan(&a, None, &user(true), None).unwrap();
        assert_eq!(
            p,
            Plan::Skip("out of scope: not in the pilot list (scope.usernames, scope.ids)".into())
        );
    }

    #[test]
    fn falling_out_of_scope_deactivates_only_when_configured() {
        let ignore = scoped_app(r#"filter = 'Username == "nobody"'"#);
        assert!(matches!(
            plan(&ignore, Some(&link(true)), &user(true), None).unwrap(),
            Plan::Skip(_)
        ));
        let deactivate = scoped_app(
            r#"filter = 'Username == "nobody"'
            out_of_scope = "deactivate""#,
        );
        let p = plan(&deactivate, Some(&link(true)), &user(true), None).unwrap();
        assert!(
            matches!(p, Plan::Deactivate(Some(reason)) if reason.starts_with("out of scope: scope.filter"))
        );
    }

    #[test]
    fn a_filter_that_cannot_be_evaluated_is_an_error_not_a_guess() {
        let a = scoped_app(r#"filter = 'Username'"#);
        assert!(matches!(
            plan(&a, None, &user(true), None),
            Err(PlanError::Scope(_))
        ));
    }
}
