//! The deactivation guard's store on DynamoDB, in the holds table [`crate::schema`] describes.
//!
//! Per app, one *guard* item keeps what the guard must decide on atomically: the deactivations
//! admitted within the window, the jobs an admin released, and which job each hold belongs to.
//! It is written conditionally on its version (read, decide, write; again on a lost race).
//! Each held job is an item of its own, written in the same transaction as the guard item.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use userprov_core::guard::{Admission, Hold};
use userprov_core::ports::{HoldStore, StoreError};

use crate::schema::{HOLDS_APP, HOLDS_DOCUMENT, HOLDS_KEY, HOLDS_VERSION};
use crate::sdk_error::{describe, error_code};

type Item = HashMap<String, AttributeValue>;

/// How many times a decision is made again after losing a race on the guard item.
const TRIES: usize = 8;

const GUARD_PREFIX: &str = "guard#";
const HOLD_PREFIX: &str = "hold#";

/// The guard item's document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GuardState {
    /// Job id → when it was admitted (epoch ms), within the window.
    #[serde(default)]
    admitted: BTreeMap<String, i64>,
    /// Job id → when an admin released its hold (epoch ms): it passes once.
    #[serde(default)]
    released: BTreeMap<String, i64>,
    /// Job id → its hold id: a job redelivered while held is the same hold.
    #[serde(default)]
    held: BTreeMap<String, String>,
}

/// Held jobs and admitted deactivations in one DynamoDB table (partition key `pk`).
#[derive(Debug, Clone)]
pub struct DynamoHoldStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn unix_ms(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a failed write lost a race (a condition was not met).
fn lost_race<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> bool {
    matches!(
        error_code(err),
        Some("ConditionalCheckFailedException" | "TransactionCanceledException")
    )
}

impl DynamoHoldStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        action: &str,
        err: &SdkError<E, R>,
    ) -> StoreError {
        StoreError::Unavailable(format!("{action} on {}: {}", self.table, describe(err)))
    }

    /// The app's guard state and its version (0: no item yet).
    async fn guard(&self, app: &str) -> Result<(GuardState, i64), StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(HOLDS_KEY, s(format!("{GUARD_PREFIX}{app}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        let Some(item) = item.item() else {
            return Ok((GuardState::default(), 0));
        };
        let version = item
            .get(HOLDS_VERSION)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.corrupt("the guard item of app", app))?;
        let state = document(item)
            .and_then(|d| serde_json::from_str(d).ok())
            .ok_or_else(|| self.corrupt("the guard item of app", app))?;
        Ok((state, version))
    }

    fn corrupt(&self, what: &str, which: &str) -> StoreError {
        StoreError::Corrupt(format!("{what} {which} in {} cannot be read", self.table))
    }

    /// The write of the guard item, conditional on the version read.
    fn put_guard(
        &self,
        app: &str,
        state: &GuardState,
        version: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let document = serde_json::to_string(state)
            .map_err(|e| StoreError::Corrupt(format!("the guard state cannot be encoded: {e}")))?;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item(HOLDS_KEY, s(format!("{GUARD_PREFIX}{app}")))
            .item(HOLDS_APP, s(app))
            .item(HOLDS_DOCUMENT, s(document))
            .item(HOLDS_VERSION, AttributeValue::N((version + 1).to_string()));
        // DynamoDB refuses expression names the condition does not use.
        put = if version == 0 {
            put.condition_expression("attribute_not_exists(#key)")
                .expression_attribute_names("#key", HOLDS_KEY)
        } else {
            put.condition_expression("#version = :version")
                .expression_attribute_names("#version", HOLDS_VERSION)
                .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
        };
        let put = put
            .build()
            .map_err(|e| StoreError::BadRequest(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes these items in one transaction; `Ok(false)` when a condition failed (a race).
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) => Ok(false),
            Err(e) => Err(self.error("TransactWriteItems", &e)),
        }
    }

    async fn get_hold(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(HOLDS_KEY, s(format!("{HOLD_PREFIX}{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        item.item()
            .map(|item| self.decode_hold(item, id))
            .transpose()
    }

    fn decode_hold(&self, item: &Item, id: &str) -> Result<Hold, StoreError> {
        document(item)
            .and_then(|d| serde_json::from_str(d).ok())
            .ok_or_else(|| self.corrupt("hold", id))
    }
}

fn document(item: &Item) -> Option<&str> {
    item.get(HOLDS_DOCUMENT)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

#[async_trait]
impl HoldStore for DynamoHoldStore {
    async fn admit_deactivation(
        &self,
        now: OffsetDateTime,
        window: Duration,
        max: u32,
        hold: &Hold,
    ) -> Result<Admission, StoreError> {
        let now_ms = unix_ms(now);
        let since_ms = now_ms.saturating_sub(duration_ms(window));
        let app = hold.app.as_str();
        for _ in 0..TRIES {
            let (mut state, version) = self.guard(app).await?;
            state.admitted.retain(|_, at| *at >= since_ms);
            let was_released = state.released.remove(&hold.job_id).is_some();
            let already_admitted = state.admitted.contains_key(&hold.job_id);
            if already_admitted && !was_released {
                return Ok(Admission::Admitted);
            }
            if was_released || state.admitted.len() < usize::try_from(max).unwrap_or(usize::MAX) {
                state.admitted.entry(hold.job_id.clone()).or_insert(now_ms);
                if self
                    .transact(vec![self.put_guard(app, &state, version)?])
                    .await?
                {
                    return Ok(Admission::Admitted);
                }
                continue;
            }
            if let Some(hold_id) = state.held.get(&hold.job_id) {
                return Ok(Admission::Held {
                    hold_id: hold_id.clone(),
                });
            }
            state.held.insert(hold.job_id.clone(), hold.id.clone());
            let document = serde_json::to_string(hold)
                .map_err(|e| StoreError::Corrupt(format!("a hold cannot be encoded: {e}")))?;
            let put_hold = Put::builder()
                .table_name(&self.table)
                .item(HOLDS_KEY, s(format!("{HOLD_PREFIX}{}", hold.id)))
                .item(HOLDS_APP, s(app))
                .item(HOLDS_DOCUMENT, s(document))
                .build()
                .map_err(|e| StoreError::BadRequest(e.to_string()))?;
            let items = vec![
                self.put_guard(app, &state, version)?,
                TransactWriteItem::builder().put(put_hold).build(),
            ];
            if self.transact(items).await? {
                return Ok(Admission::Held {
                    hold_id: hold.id.clone(),
                });
            }
        }
        Err(StoreError::Conflict { expected: None })
    }

    async fn list_holds(&self, app: Option<&str>) -> Result<Vec<Hold>, StoreError> {
        let mut request = self
            .client
            .scan()
            .table_name(&self.table)
            .expression_attribute_names("#key", HOLDS_KEY)
            .expression_attribute_values(":prefix", s(HOLD_PREFIX));
        request = match app {
            Some(app) => request
                .filter_expression("begins_with(#key, :prefix) AND #app = :app")
                .expression_attribute_names("#app", HOLDS_APP)
                .expression_attribute_values(":app", s(app)),
            None => request.filter_expression("begins_with(#key, :prefix)"),
        };
        let mut holds = Vec::new();
        let mut start_key = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| self.error("Scan", &e))?;
            for item in page.items() {
                let key = item
                    .get(HOLDS_KEY)
                    .and_then(|v| v.as_s().ok())
                    .map_or("", String::as_str);
                holds.push(self.decode_hold(item, key)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                break;
            }
        }
        // Oldest first; hold ids (ULIDs) break ties within one timestamp.
        holds.sort_by(|a, b| a.held_at.cmp(&b.held_at).then_with(|| a.id.cmp(&b.id)));
        Ok(holds)
    }

    async fn take_hold(&self, id: &str, release: bool) -> Result<Option<Hold>, StoreError> {
        for _ in 0..TRIES {
            let Some(hold) = self.get_hold(id).await? else {
                return Ok(None);
            };
            let (mut state, version) = self.guard(&hold.app).await?;
            state.held.remove(&hold.job_id);
            if release {
                state
                    .released
                    .insert(hold.job_id.clone(), unix_ms(OffsetDateTime::now_utc()));
            }
            let delete_hold = Delete::builder()
                .table_name(&self.table)
                .key(HOLDS_KEY, s(format!("{HOLD_PREFIX}{id}")))
                .condition_expression("attribute_exists(#key)")
                .expression_attribute_names("#key", HOLDS_KEY)
                .build()
                .map_err(|e| StoreError::BadRequest(e.to_string()))?;
            let items = vec![
                self.put_guard(&hold.app, &state, version)?,
                TransactWriteItem::builder().delete(delete_hold).build(),
            ];
            if self.transact(items).await? {
                return Ok(Some(hold));
            }
        }
        Err(StoreError::Conflict { expected: None })
    }
}
