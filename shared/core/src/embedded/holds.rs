//! The deactivation guard's store: held jobs and the deactivations admitted per app, in the
//! embedded database.

use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use time::OffsetDateTime;

use super::db::{EmbeddedDb, Failure, duration_ms, unix_ms};
use crate::guard::{Admission, Hold};
use crate::ports::{HoldStore, StoreError};

/// Hold id (a ULID, so id order is time order) → [`Hold`] (JSON).
const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("guard_holds");
/// Job id → hold id: a job redelivered while held is the same hold.
const HOLD_BY_JOB: TableDefinition<&str, &str> = TableDefinition::new("guard_hold_by_job");
/// (app, admitted at in ms, job id): the deactivations the guard let through.
const ADMITTED: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("guard_admitted");
/// Job id → released at (ms): released by an admin, so the guard lets it through once.
const RELEASED: TableDefinition<&str, i64> = TableDefinition::new("guard_released");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), Failure> {
    txn.open_table(HOLDS)?;
    txn.open_table(HOLD_BY_JOB)?;
    txn.open_table(ADMITTED)?;
    txn.open_table(RELEASED)?;
    Ok(())
}

/// Held jobs and admitted deactivations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedHoldStore {
    db: EmbeddedDb,
}

impl EmbeddedHoldStore {
    pub fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }
}

fn decode_hold(bytes: &[u8]) -> Result<Hold, Failure> {
    serde_json::from_slice(bytes).map_err(|e| Failure::corrupt("a stored hold is unreadable", e))
}

#[async_trait]
impl HoldStore for EmbeddedHoldStore {
    async fn admit_deactivation(
        &self,
        now: OffsetDateTime,
        window: Duration,
        max: u32,
        hold: &Hold,
    ) -> Result<Admission, StoreError> {
        let hold = hold.clone();
        let now_ms = unix_ms(now);
        let since_ms = now_ms.saturating_sub(duration_ms(window));
        let admission = self
            .db
            .run(move |db| {
                let txn = db.begin_write()?;
                let admission = {
                    let mut admitted = txn.open_table(ADMITTED)?;
                    let mut released = txn.open_table(RELEASED)?;
                    let mut holds = txn.open_table(HOLDS)?;
                    let mut by_job = txn.open_table(HOLD_BY_JOB)?;
                    let app = hold.app.as_str();
                    // Forget admissions that left the window.
                    let expired: Vec<(i64, String)> = admitted
                        .range((app, i64::MIN, "")..(app, since_ms, ""))?
                        .map(|item| item.map(|(k, _)| (k.value().1, k.value().2.to_owned())))
                        .collect::<Result<_, _>>()?;
                    for (at, job_id) in &expired {
                        admitted.remove((app, *at, job_id.as_str()))?;
                    }
                    let in_window: Vec<String> = admitted
                        .range((app, since_ms, "")..=(app, i64::MAX, "\u{10FFFF}"))?
                        .map(|item| item.map(|(k, _)| k.value().2.to_owned()))
                        .collect::<Result<_, _>>()?;
                    let was_released = released.remove(hold.job_id.as_str())?.is_some();
                    if was_released
                        || in_window.contains(&hold.job_id)
                        || in_window.len() < usize::try_from(max).unwrap_or(usize::MAX)
                    {
                        if !in_window.contains(&hold.job_id) {
                            admitted.insert((app, now_ms, hold.job_id.as_str()), ())?;
                        }
                        Admission::Admitted
                    } else {
                        let existing = by_job
                            .get(hold.job_id.as_str())?
                            .map(|v| v.value().to_owned());
                        match existing {
                            Some(hold_id) => Admission::Held { hold_id },
                            None => {
                                let bytes = serde_json::to_vec(&hold)
                                    .map_err(|e| Failure::corrupt("a hold cannot be encoded", e))?;
                                holds.insert(hold.id.as_str(), bytes.as_slice())?;
                                by_job.insert(hold.job_id.as_str(), hold.id.as_str())?;
                                Admission::Held {
                                    hold_id: hold.id.clone(),
                                }
                            }
                        }
                    }
                };
                txn.commit()?;
                Ok(admission)
            })
            .await?;
        Ok(admission)
    }

    async fn list_holds(&self, app: Option<&str>) -> Result<Vec<Hold>, StoreError> {
        let app = app.map(str::to_owned);
        let holds = self
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(HOLDS)?;
                let mut holds = Vec::new();
                for item in table.iter()? {
                    let (_, value) = item?;
                    let hold = decode_hold(value.value())?;
                    if app.as_deref().is_none_or(|a| a == hold.app) {
                        holds.push(hold);
                    }
                }
                Ok(holds)
            })
            .await?;
        Ok(holds)
    }

    async fn take_hold(&self, id: &str, release: bool) -> Result<Option<Hold>, StoreError> {
        let id = id.to_owned();
        let taken = self
            .db
            .run(move |db| {
                let txn = db.begin_write()?;
                let hold = {
                    let mut holds = txn.open_table(HOLDS)?;
                    let mut by_job = txn.open_table(HOLD_BY_JOB)?;
                    let mut released = txn.open_table(RELEASED)?;
                    let Some(bytes) = holds.remove(id.as_str())? else {
                        return Ok(None);
                    };
                    let hold = decode_hold(bytes.value())?;
                    drop(bytes);
                    by_job.remove(hold.job_id.as_str())?;
                    if release {
                        released
                            .insert(hold.job_id.as_str(), unix_ms(OffsetDateTime::now_utc()))?;
                    }
                    hold
                };
                txn.commit()?;
                Ok(Some(hold))
            })
            .await?;
        Ok(taken)
    }

    async fn release_hold(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let id = id.to_owned();
        let hold = self
            .db
            .run(move |db| {
                let txn = db.begin_write()?;
                let hold = {
                    let holds = txn.open_table(HOLDS)?;
                    let mut released = txn.open_table(RELEASED)?;
                    let Some(bytes) = holds.get(id.as_str())? else {
                        return Ok(None);
                    };
                    let hold = decode_hold(bytes.value())?;
                    drop(bytes);
                    released.insert(hold.job_id.as_str(), unix_ms(OffsetDateTime::now_utc()))?;
                    hold
                };
                txn.commit()?;
                Ok(Some(hold))
            })
            .await?;
        Ok(hold)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn hold(job_id: &str) -> Hold {
        Hold {
            id: ulid::Ulid::new().to_string(),
            app: "slack".into(),
            user_id: "0058a00000LmN2pAAF".into(),
            username: Some("ana@acme.example".into()),
            job_id: job_id.into(),
            event_id: format!("ev-{job_id}"),
            job: "{}".into(),
            reason: "too many".into(),
            held_at: OffsetDateTime::now_utc(),
        }
    }

    #[tokio::test]
    async fn deactivations_beyond_the_limit_in_the_window_are_held_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHoldStore::new(EmbeddedDb::open(dir.path()).unwrap());
        let now = OffsetDateTime::now_utc();
        let window = Duration::from_secs(60);
        for job in ["a", "b"] {
            let admission = store.admit_deactivation(now, window, 2, &hold(job)).await;
            assert_eq!(admission.unwrap(), Admission::Admitted);
        }
        assert_eq!(
            store
                .admit_deactivation(now, window, 2, &hold("a"))
                .await
                .unwrap(),
            Admission::Admitted,
            "a retried admitted job is not counted twice"
        );
        let first = store
            .admit_deactivation(now, window, 2, &hold("c"))
            .await
            .unwrap();
        let again = store
            .admit_deactivation(now, window, 2, &hold("c"))
            .await
            .unwrap();
        assert!(matches!(first, Admission::Held { .. }));
        assert_eq!(first, again, "a redelivered held job is the same hold");
        assert_eq!(store.list_holds(Some("slack")).await.unwrap().len(), 1);
        assert!(store.list_holds(Some("other")).await.unwrap().is_empty());

        let later = now + Duration::from_secs(61);
        assert_eq!(
            store
                .admit_deactivation(later, window, 2, &hold("d"))
                .await
                .unwrap(),
            Admission::Admitted,
            "the window moved on"
        );
    }

    #[tokio::test]
    async fn a_released_hold_passes_the_guard_and_a_discarded_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHoldStore::new(EmbeddedDb::open(dir.path()).unwrap());
        let now = OffsetDateTime::now_utc();
        let window = Duration::from_secs(60);
        let Admission::Held { hold_id } = store
            .admit_deactivation(now, window, 0, &hold("a"))
            .await
            .unwrap()
        else {
            unreachable!("max 0 holds everything")
        };
        let Admission::Held { hold_id: other } = store
            .admit_deactivation(now, window, 0, &hold("b"))
            .await
            .unwrap()
        else {
            unreachable!("max 0 holds everything")
        };
        assert_eq!(
            store
                .take_hold(&hold_id, true)
                .await
                .unwrap()
                .unwrap()
                .job_id,
            "a"
        );
        assert_eq!(
            store
                .admit_deactivation(now, window, 0, &hold("a"))
                .await
                .unwrap(),
            Admission::Admitted
        );
        assert!(store.take_hold(&other, false).await.unwrap().is_some());
        assert!(store.take_hold(&other, false).await.unwrap().is_none());
        assert!(store.list_holds(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_job_released_in_two_steps_passes_while_its_hold_is_still_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedHoldStore::new(EmbeddedDb::open(dir.path()).unwrap());
        let now = OffsetDateTime::now_utc();
        let window = Duration::from_secs(60);
        let Admission::Held { hold_id } = store
            .admit_deactivation(now, window, 0, &hold("a"))
            .await
            .unwrap()
        else {
            unreachable!("max 0 holds everything")
        };
        assert_eq!(
            store.release_hold(&hold_id).await.unwrap().unwrap().job_id,
            "a"
        );
        assert_eq!(store.list_holds(None).await.unwrap().len(), 1);
        // The queued job runs before the hold is taken: it passes, once.
        assert_eq!(
            store
                .admit_deactivation(now, window, 0, &hold("a"))
                .await
                .unwrap(),
            Admission::Admitted
        );
        assert!(store.take_hold(&hold_id, false).await.unwrap().is_some());
        assert!(store.list_holds(None).await.unwrap().is_empty());
        assert!(store.release_hold(&hold_id).await.unwrap().is_none());
    }
}
