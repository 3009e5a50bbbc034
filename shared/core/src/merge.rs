//! Change Data Capture semantics in the worker: a change event carries only the fields that
//! changed, so it is merged into the last snapshot kept on the account link before anything is
//! planned. A user userprov holds no snapshot of is provisioned from a change event only when
//! the changed fields alone satisfy the app's mapping; a half-empty user is never pushed.

use std::borrow::Cow;

use crate::config::AppConfig;
use crate::job::Job;
use crate::link::AccountLink;
use crate::salesforce::events::PartialWithoutSnapshot;
use crate::source::{Completeness, SourceUser};
use crate::worker::desired_resource;

/// The log reason code for a change event that cannot be provisioned on its own.
pub const PARTIAL_WITHOUT_SNAPSHOT: &str = "partial_event_without_snapshot";
/// The log reason code for a gap event: the user needs a resync.
pub const GAP_RESYNC_NEEDED: &str = "gap_event_resync_needed";

/// What the worker does with a job before planning.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared<'a> {
    /// Plan and apply this job: the original, or a copy whose user is the merged snapshot.
    Ready(Cow<'a, Job>),
    /// Log as skipped with this reason, change nothing.
    Skip(String),
    /// Log as failed (permanent) with this reason, so the job can be redriven after a resync.
    Fail(String),
}

/// Merges a partial job into the link's snapshot, or says why it cannot be applied.
pub fn prepare<'a>(
    app: &AppConfig,
    policy: PartialWithoutSnapshot,
    link: Option<&AccountLink>,
    job: &'a Job,
) -> Prepared<'a> {
    match job.user.completeness {
        Completeness::Full => Prepared::Ready(Cow::Borrowed(job)),
        Completeness::Gap => Prepared::Skip(format!(
            "{GAP_RESYNC_NEEDED}: Salesforce reported a gap in the change events of user {}, so \
             its changes are unknown; resync this user",
            job.user.id
        )),
        Completeness::Partial => {
            let snapshot = link
                .and_then(|l| l.snapshot.as_ref())
                .filter(|s| s.id == job.user.id);
            let user = merge(snapshot, &job.user);
            if user.completeness == Completeness::Full {
                return Prepared::Ready(Cow::Owned(with_user(job, user)));
            }
            // Leaving needs no attributes: deactivating (or recording an inactive user) is safe.
            let missing = match user.is_active() {
                Some(false) => None,
                None => Some("IsActive is not among the changed fields".to_owned()),
                Some(true) => desired_resource(app, &user, &Default::default())
                    .err()
                    .map(|e| e.to_string()),
            };
            match missing {
                None => Prepared::Ready(Cow::Owned(with_user(job, user))),
                Some(why) => {
                    let reason = format!(
                        "{PARTIAL_WITHOUT_SNAPSHOT}: the change event carries only the fields \
                         that changed, userprov has no full snapshot of user {} yet, and {why}; \
                         resync this user",
                        job.user.id
                    );
                    tracing::warn!(user_id = %job.user.id, app = %app.name, "{reason}");
                    match policy {
                        PartialWithoutSnapshot::Skip => Prepared::Skip(reason),
                        PartialWithoutSnapshot::Fail => Prepared::Fail(reason),
                    }
                }
            }
        }
    }
}

/// The snapshot with the changed fields laid over it (a null value clears a field). Without a
/// snapshot, the changed fields alone, still partial.
pub fn merge(snapshot: Option<&SourceUser>, change: &SourceUser) -> SourceUser {
    match snapshot {
        Some(snapshot) => {
            let mut merged = snapshot.clone();
            for (name, value) in &change.fields {
                merged.fields.insert(name.clone(), value.clone());
            }
            merged
        }
        None => change.clone(),
    }
}

fn with_user(job: &Job, user: SourceUser) -> Job {
    Job {
        user,
        ..job.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ids::SalesforceId;
    use crate::link::ManagedBy;
    use crate::source::{EventSource, SourceEvent};
    use serde_json::{Value, json};
    use time::macros::datetime;

    const ID: &str = "0058a00000LmN2pAAF";

    fn app() -> AppConfig {
        let text = r#"
            [source]
            org_ids = ["00D8a000002bQxTEAU"]
            [[apps]]
            name = "slack"
            base_url = "https://scim.example.com/v2"
            secret = "userprov/slack"
            [apps.mapping]
            userName = { from = "Username", required = true }
            title = "Title"
            "#;
        Config::parse(text, "test").unwrap().apps.remove(0)
    }

    fn user(completeness: Completeness, fields: Value) -> SourceUser {
        let mut u = SourceUser::new(SalesforceId::parse(ID).unwrap());
        u.completeness = completeness;
        if let Value::Object(map) = fields {
            u.fields = map.into_iter().collect();
        }
        u
    }

    fn job(user: SourceUser) -> Job {
        let event = SourceEvent {
            event_id: "t:1:x".into(),
            source: EventSource::ChangeDataCapture,
            user,
            event_time: None,
        };
        Job::new("slack", &event, "corr", datetime!(2025-03-14 16:00 UTC))
    }

    fn link(snapshot: Option<SourceUser>) -> AccountLink {
        AccountLink {
            app: "slack".into(),
            user_id: SalesforceId::parse(ID).unwrap(),
            username: None,
            target_id: Some("t-1".into()),
            active: true,
            last_source_time: None,
            last_event_id: None,
            last_payload_hash: None,
            last_groups: vec![],
            snapshot,
            managed_by: Some(ManagedBy::Created),
            version: 1,
            updated_at: datetime!(2025-03-14 16:02:12 UTC),
        }
    }

    fn ready_fields(prepared: Prepared<'_>) -> (Completeness, Value) {
        match prepared {
            Prepared::Ready(job) => (
                job.user.completeness,
                Value::Object(job.user.fields.clone().into_iter().collect()),
            ),
            other => panic!("not ready: {other:?}"),
        }
    }

    #[test]
    fn a_full_snapshot_passes_through_untouched() {
        let job = job(user(Completeness::Full, json!({"Username": "m"})));
        assert!(matches!(
            prepare(&app(), PartialWithoutSnapshot::Skip, None, &job),
            Prepared::Ready(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_change_is_merged_into_the_snapshot_and_a_null_clears_a_field() {
        let snapshot = user(
            Completeness::Full,
            json!({"Username": "m", "Title": "Rep", "ManagerId": "0058a00000IntG9AAJ", "IsActive": true}),
        );
        let change = job(user(
            Completeness::Partial,
            json!({"Title": "Lead", "ManagerId": null}),
        ));
        let prepared = prepare(
            &app(),
            PartialWithoutSnapshot::Skip,
            Some(&link(Some(snapshot))),
            &change,
        );
        assert_eq!(
            ready_fields(prepared),
            (
                Completeness::Full,
                json!({"Username": "m", "Title": "Lead", "ManagerId": null, "IsActive": true})
            )
        );
    }

    #[test]
    fn without_a_snapshot_a_change_missing_required_attributes_is_skipped_or_failed_as_configured()
    {
        let change = job(user(
            Completeness::Partial,
            json!({"Title": "Lead", "IsActive": true}),
        ));
        match prepare(&app(), PartialWithoutSnapshot::Skip, None, &change) {
            Prepared::Skip(reason) => {
                assert!(reason.starts_with(PARTIAL_WITHOUT_SNAPSHOT), "{reason}");
                assert!(reason.contains("userName"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            prepare(
                &app(),
                PartialWithoutSnapshot::Fail,
                Some(&link(None)),
                &change
            ),
            Prepared::Fail(_)
        ));
        let no_is_active = job(user(Completeness::Partial, json!({"Username": "m"})));
        assert!(matches!(
            prepare(&app(), PartialWithoutSnapshot::Skip, None, &no_is_active),
            Prepared::Skip(reason) if reason.contains("IsActive")
        ));
    }

    #[test]
    fn without_a_snapshot_a_complete_enough_change_or_a_leaver_goes_ahead_still_partial() {
        let created = job(user(
            Completeness::Partial,
            json!({"Username": "m", "IsActive": true}),
        ));
        assert_eq!(
            ready_fields(prepare(
                &app(),
                PartialWithoutSnapshot::Skip,
                None,
                &created
            ))
            .0,
            Completeness::Partial
        );
        let leaver = job(user(Completeness::Partial, json!({"IsActive": false})));
        assert_eq!(
            ready_fields(prepare(&app(), PartialWithoutSnapshot::Skip, None, &leaver)).1,
            json!({"IsActive": false})
        );
    }

    #[test]
    fn a_gap_event_is_skipped_for_a_resync() {
        let gap = job(user(Completeness::Gap, json!({})));
        match prepare(
            &app(),
            PartialWithoutSnapshot::Skip,
            Some(&link(None)),
            &gap,
        ) {
            Prepared::Skip(reason) => {
                assert!(reason.starts_with(GAP_RESYNC_NEEDED), "{reason}");
                assert!(reason.contains(ID), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_partial_snapshot_stays_partial_after_merging() {
        let stored = user(Completeness::Partial, json!({"IsActive": false}));
        let change = job(user(Completeness::Partial, json!({"Title": "Lead"})));
        let prepared = prepare(
            &app(),
            PartialWithoutSnapshot::Skip,
            Some(&link(Some(stored))),
            &change,
        );
        assert_eq!(
            ready_fields(prepared),
            (
                Completeness::Partial,
                json!({"IsActive": false, "Title": "Lead"})
            )
        );
    }

    #[test]
    fn a_job_written_before_change_events_existed_reads_as_full() {
        let job = job(user(Completeness::Full, json!({"Username": "m"})));
        let body = job.to_body().unwrap();
        assert!(!body.contains("completeness"), "{body}");
        let partial = Job {
            user: user(Completeness::Partial, json!({})),
            ..job.clone()
        };
        let read = Job::from_body(&partial.to_body().unwrap()).unwrap();
        assert_eq!(read.user.completeness, Completeness::Partial);
        assert_eq!(
            Job::from_body(&body).unwrap().user.completeness,
            Completeness::Full
        );
    }
}
