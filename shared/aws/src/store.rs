//! Account links and the provisioning log on DynamoDB, in the tables [`crate::schema`] describes.
//!
//! Records are stored as JSON documents beside the few attributes that keys and indexes need,
//! so that the model can grow without a table migration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;
use time::macros::format_description;
use userprov_core::ids::SalesforceId;
use userprov_core::link::AccountLink;
use userprov_core::log::{LogCursor, LogEntry, LogPage, LogQuery};
use userprov_core::ports::{Clock, LinkStore, LogStore, StoreError, SystemClock};

use crate::schema::{
    BY_APP, BY_APP_STATUS, BY_DAY, BY_EVENT, BY_STATUS, BY_USER, BY_USERNAME, LINK_DOCUMENT,
    LINK_USERNAME, LINK_VERSION, LINKS_PARTITION_KEY, LINKS_SORT_KEY, LOG_APP, LOG_APP_STATUS,
    LOG_DAY, LOG_DOCUMENT, LOG_EVENT_ID, LOG_EXPIRES_AT, LOG_KEY, LOG_STATUS, LOG_USER_ID,
    LOG_USERNAME,
};
use crate::sdk_error::{describe, error_code};

type Item = HashMap<String, AttributeValue>;

/// Items asked for per Query or Scan request; DynamoDB also stops a page at 1 MB.
const PAGE_ITEMS: i32 = 200;

fn store_error<E, R>(table: &str, action: &str, err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = describe(err);
    match error_code(err) {
        Some("ValidationException") => {
            StoreError::BadRequest(format!("{action} on {table}: {detail}"))
        }
        _ => StoreError::Unavailable(format!("{action} on {table}: {detail}")),
    }
}

/// Reads the JSON document an item keeps in `attribute`.
fn decode_document<T: serde::de::DeserializeOwned>(
    item: &Item,
    attribute: &str,
    what: &str,
    table: &str,
) -> Result<T, StoreError> {
    let document = string(item, attribute).ok_or_else(|| {
        StoreError::Corrupt(format!("{what} in {table} has no {attribute} attribute"))
    })?;
    serde_json::from_str(document)
        .map_err(|e| StoreError::Corrupt(format!("{what} in {table} cannot be read: {e}")))
}

fn string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|value| value.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Account links: one item per (app, Salesforce user id), written conditionally on its version.
#[derive(Debug, Clone)]
pub struct DynamoLinkStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLinkStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    fn decode(&self, item: &Item) -> Result<AccountLink, StoreError> {
        decode_document(item, LINK_DOCUMENT, "a link", &self.table)
    }

    /// Every link after `after`, in (app, user id) order, at most `limit`. Items come from a
    /// Scan, in no order, so the whole table is read; listing all apps at once is for operators'
    /// tools, not for the request path.
    async fn list_all_apps(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<AccountLink>, StoreError> {
        let mut request = self.client.scan().table_name(&self.table).limit(PAGE_ITEMS);
        if let Some((app, user_id)) = after {
            request = request
                .filter_expression("#app > :app OR (#app = :app AND #user > :user)")
                .expression_attribute_names("#app", LINKS_PARTITION_KEY)
                .expression_attribute_names("#user", LINKS_SORT_KEY)
                .expression_attribute_values(":app", s(app))
                .expression_attribute_values(":user", s(user_id));
        }
        let mut kept: Vec<((String, String), AccountLink)> = Vec::new();
        let mut start_key = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| store_error(&self.table, "Scan", &e))?;
            for item in page.items() {
                let link = self.decode(item)?;
                let sort_key = (link.app.clone(), link.user_id.as_str().to_owned());
                kept.push((sort_key, link));
            }
            // Keep only the smallest `limit` so far, so memory stays bounded by the page size.
            if kept.len() > 2 * limit.max(PAGE_ITEMS as usize) {
                kept.sort_by(|a, b| a.0.cmp(&b.0));
                kept.truncate(limit);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                break;
            }
        }
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        kept.truncate(limit);
        Ok(kept.into_iter().map(|(_, link)| link).collect())
    }
}

#[async_trait]
impl LinkStore for DynamoLinkStore {
    async fn get_link(
        &self,
        app: &str,
        user_id: &SalesforceId,
    ) -> Result<Option<AccountLink>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(LINKS_PARTITION_KEY, s(app))
            .key(LINKS_SORT_KEY, s(user_id.as_str()))
            // Plans are made from what was read, and writes are conditional on it: read the
            // latest.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(&self.table, "GetItem", &e))?;
        output.item().map(|item| self.decode(item)).transpose()
    }

    async fn put_link(
        &self,
        link: &AccountLink,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let document = serde_json::to_string(link).map_err(|e| {
            StoreError::BadRequest(format!("the link cannot be written as JSON: {e}"))
        })?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(LINKS_PARTITION_KEY, s(&link.app))
            .item(LINKS_SORT_KEY, s(link.user_id.as_str()))
            .item(LINK_DOCUMENT, s(document))
            .item(LINK_VERSION, n(link.version));
        if let Some(username) = link.username.as_deref().filter(|name| !name.is_empty()) {
            request = request.item(LINK_USERNAME, s(username));
        }
        request = match expected_version {
            None => request
                .condition_expression("attribute_not_exists(#app)")
                .expression_attribute_names("#app", LINKS_PARTITION_KEY),
            Some(version) => request
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", LINK_VERSION)
                .expression_attribute_values(":expected", n(version)),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                Err(StoreError::Conflict {
                    expected: expected_version,
                })
            }
            Err(e) => Err(store_error(&self.table, "PutItem", &e)),
        }
    }

    async fn list_links(
        &self,
        app: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<AccountLink>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(app) = app else {
            return self.list_all_apps(after, limit).await;
        };
        let after_user = match after {
            Some((after_app, _)) if after_app > app => return Ok(Vec::new()),
            Some((after_app, user_id)) if after_app == app => Some(user_id),
            _ => None,
        };
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_names("#app", LINKS_PARTITION_KEY)
            .expression_attribute_values(":app", s(app));
        request = match after_user {
            Some(user_id) => request
                .key_condition_expression("#app = :app AND #user > :user")
                .expression_attribute_names("#user", LINKS_SORT_KEY)
                .expression_attribute_values(":user", s(user_id)),
            None => request.key_condition_expression("#app = :app"),
        };
        let mut links = Vec::new();
        let mut start_key = None;
        loop {
            let wanted = i32::try_from(limit - links.len())
                .unwrap_or(i32::MAX)
                .min(PAGE_ITEMS);
            let page = request
                .clone()
                .limit(wanted)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| store_error(&self.table, "Query", &e))?;
            for item in page.items() {
                links.push(self.decode(item)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if links.len() >= limit || start_key.is_none() {
                break;
            }
        }
        links.truncate(limit);
        Ok(links)
    }
}

/// How far an entry's id (a ULID, which carries a time) may be from the entry's own time. Ids
/// are made when entries are written, so the two are close; the slack only lets queries bound
/// their reads by id without ever missing an entry.
const ID_TIME_SLACK: time::Duration = time::Duration::DAY;

/// The provisioning log: one item per entry, found through one index per access pattern.
///
/// Entry ids must be ULIDs made at (within a day of) the entry's time: pages are read in id
/// order and time bounds become id bounds.
#[derive(Clone)]
pub struct DynamoLogStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DynamoLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoLogStore")
            .field("table", &self.table)
            .field("retention", &self.retention)
            .finish()
    }
}

/// Which index a query reads, and which of its partitions, newest first.
struct ReadPlan {
    index: &'static str,
    key_attribute: &'static str,
    partitions: Vec<String>,
}

impl DynamoLogStore {
    /// `retention`: how long entries are kept; DynamoDB deletes them some time after that.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, retention: Duration) -> Self {
        Self {
            client,
            table,
            retention,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads "now" from `clock` instead of the machine's clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Writes many entries with BatchWriteItem, 25 per call, re-sending what DynamoDB leaves
    /// unprocessed (throttling) after a short, growing pause. For backfills and benchmarks; the
    /// worker writes one entry per job with [`LogStore::append`].
    pub async fn append_many(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        const BATCH: usize = 25;
        const MAX_ROUNDS: u32 = 8;
        for chunk in entries.chunks(BATCH) {
            let mut requests = Vec::with_capacity(chunk.len());
            for entry in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(self.item(entry)?))
                    .build()
                    .map_err(|e| StoreError::BadRequest(format!("a log entry item: {e}")))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            let mut round = 0;
            while !requests.is_empty() {
                if round == MAX_ROUNDS {
                    return Err(StoreError::Unavailable(format!(
                        "BatchWriteItem on {}: {} items still unprocessed after {MAX_ROUNDS} tries",
                        self.table,
                        requests.len()
                    )));
                }
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << round)).await;
                }
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(self.table.clone(), requests)
                    .send()
                    .await
                    .map_err(|e| store_error(&self.table, "BatchWriteItem", &e))?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                round += 1;
            }
        }
        Ok(())
    }

    fn retention(&self) -> time::Duration {
        time::Duration::try_from(self.retention).unwrap_or(time::Duration::MAX)
    }

    fn expires_at(&self, entry: &LogEntry) -> i64 {
        entry
            .time
            .checked_add(self.retention())
            .map_or(i64::MAX, OffsetDateTime::unix_timestamp)
    }

    fn item(&self, entry: &LogEntry) -> Result<Item, StoreError> {
        let document = serde_json::to_string(entry).map_err(|e| {
            StoreError::BadRequest(format!("the log entry cannot be written as JSON: {e}"))
        })?;
        let mut item = Item::new();
        item.insert(LOG_KEY.to_owned(), s(&entry.id));
        item.insert(LOG_DOCUMENT.to_owned(), s(document));
        item.insert(LOG_EXPIRES_AT.to_owned(), n(self.expires_at(entry)));
        let username = entry
            .username
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        // Index keys cannot be empty strings: an empty one is left out, and the entry is simply
        // not in that index.
        for (name, value) in [
            (LOG_USER_ID, entry.user_id.clone()),
            (LOG_USERNAME, username),
            (LOG_APP, entry.app.clone()),
            (LOG_STATUS, entry.status.as_str().to_owned()),
            (
                LOG_APP_STATUS,
                app_status(&entry.app, entry.status.as_str()),
            ),
            (LOG_EVENT_ID, entry.event_id.clone()),
            (LOG_DAY, day_of(entry.time)?),
        ] {
            if !value.is_empty() {
                item.insert(name.to_owned(), s(value));
            }
        }
        Ok(item)
    }

    fn decode(&self, item: &Item) -> Result<LogEntry, StoreError> {
        decode_document(item, LOG_DOCUMENT, "a log entry", &self.table)
    }

    /// DynamoDB deletes expired items days late: until then they are hidden here.
    fn expired(item: &Item, now: OffsetDateTime) -> bool {
        number(item, LOG_EXPIRES_AT).is_some_and(|expires_at| expires_at <= now.unix_timestamp())
    }

    fn plan(
        &self,
        query: &LogQuery,
        now: OffsetDateTime,
        upper: Option<OffsetDateTime>,
    ) -> Result<ReadPlan, StoreError> {
        let single = |index, key_attribute, value: String| ReadPlan {
            index,
            key_attribute,
            partitions: vec![value],
        };
        if let Some(event_id) = &query.event_id {
            return Ok(single(BY_EVENT, LOG_EVENT_ID, event_id.clone()));
        }
        if let Some(user) = &query.user {
            return Ok(match SalesforceId::parse(user) {
                Ok(id) => single(BY_USER, LOG_USER_ID, id.as_str().to_owned()),
                Err(_) => single(BY_USERNAME, LOG_USERNAME, user.to_ascii_lowercase()),
            });
        }
        if let (Some(app), Some(status)) = (&query.app, query.status) {
            return Ok(single(
                BY_APP_STATUS,
                LOG_APP_STATUS,
                app_status(app, status.as_str()),
            ));
        }
        if let Some(app) = &query.app {
            return Ok(single(BY_APP, LOG_APP, app.clone()));
        }
        if let Some(status) = query.status {
            return Ok(single(BY_STATUS, LOG_STATUS, status.as_str().to_owned()));
        }
        // No key to go by: walk the days, newest first, from the upper bound down to the
        // lower bound; nothing older than the retention is visible anyway.
        let tomorrow = later(now, time::Duration::DAY);
        let newest = upper.map_or(tomorrow, |upper| upper.min(tomorrow));
        let oldest = earlier(now, self.retention());
        let oldest = query.since.map_or(oldest, |since| since.max(oldest));
        let mut partitions = Vec::new();
        let mut day = newest.to_offset(time::UtcOffset::UTC).date();
        let last = oldest.to_offset(time::UtcOffset::UTC).date();
        while day >= last {
            partitions.push(format_day(day)?);
            match day.previous_day() {
                Some(previous) => day = previous,
                None => break,
            }
        }
        Ok(ReadPlan {
            index: BY_DAY,
            key_attribute: LOG_DAY,
            partitions,
        })
    }
}

/// The `app_status` key: `APP#STATUS`, or nothing (the entry stays out of the index) without
/// an app.
fn app_status(app: &str, status: &str) -> String {
    if app.is_empty() {
        String::new()
    } else {
        format!("{app}#{status}")
    }
}

/// `time + by`, or `time` itself past the end of the calendar.
fn later(time: OffsetDateTime, by: time::Duration) -> OffsetDateTime {
    time.checked_add(by).unwrap_or(time)
}

/// `time - by`, or the Unix epoch.
fn earlier(time: OffsetDateTime, by: time::Duration) -> OffsetDateTime {
    time.checked_sub(by)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .max(OffsetDateTime::UNIX_EPOCH)
}

fn format_day(date: time::Date) -> Result<String, StoreError> {
    date.format(format_description!("[year]-[month]-[day]"))
        .map_err(|e| StoreError::BadRequest(format!("the date cannot be formatted: {e}")))
}

fn day_of(time: OffsetDateTime) -> Result<String, StoreError> {
    format_day(time.to_offset(time::UtcOffset::UTC).date())
}

/// The smallest ULID of a millisecond: every id made at or after `time` sorts at or above it.
fn id_floor(time: OffsetDateTime) -> String {
    let millis = u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    ulid::Ulid::from_parts(millis, 0).to_string()
}

#[async_trait]
impl LogStore for DynamoLogStore {
    async fn append(&self, entry: &LogEntry) -> Result<(), StoreError> {
        // Unconditional: writing the same entry twice (an SDK retry) leaves one item.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(entry)?))
            .send()
            .await
            .map_err(|e| store_error(&self.table, "PutItem", &e))?;
        Ok(())
    }

    async fn get_entry(&self, id: &str) -> Result<Option<LogEntry>, StoreError> {
        if id.is_empty() {
            return Ok(None);
        }
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(LOG_KEY, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(&self.table, "GetItem", &e))?;
        match output.item() {
            Some(item) if !Self::expired(item, self.clock.now()) => Ok(Some(self.decode(item)?)),
            _ => Ok(None),
        }
    }

    async fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let limit = query.effective_limit();
        let now = self.clock.now();
        let cursor = query
            .cursor
            .as_deref()
            .map(LogCursor::decode)
            .transpose()
            .map_err(|e| StoreError::BadRequest(e.to_string()))?;
        // Ids below `before` (the cursor's, or the `until` bound widened by the slack) and not
        // far below `since`: entries outside are not read at all.
        let until_bound = query
            .until
            .map(|until| id_floor(later(until, ID_TIME_SLACK)));
        let before = match (cursor.map(|c| c.before_id), until_bound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let floor = query
            .since
            .map(|since| id_floor(earlier(since, ID_TIME_SLACK)));
        // The newest day worth reading: no entry below `before` is from a later day.
        let upper = before
            .as_deref()
            .and_then(|id| ulid::Ulid::from_string(id).ok())
            .and_then(|id| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(id.timestamp_ms()) * 1_000_000)
                    .ok()
            })
            .map(|time| later(time, ID_TIME_SLACK));
        let upper = match (upper, query.until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let plan = self.plan(query, now, upper)?;

        let mut entries: Vec<LogEntry> = Vec::new();
        // Set when the page filled up before everything in range was read.
        let mut more = false;
        'partitions: for partition in &plan.partitions {
            if entries.len() == limit {
                more = true;
                break;
            }
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(plan.index)
                .scan_index_forward(false)
                .limit(PAGE_ITEMS)
                .expression_attribute_names("#key", plan.key_attribute)
                .expression_attribute_values(":key", s(partition));
            request = match &before {
                Some(before) => request
                    .key_condition_expression("#key = :key AND #id < :before")
                    .expression_attribute_names("#id", LOG_KEY)
                    .expression_attribute_values(":before", s(before)),
                None => request.key_condition_expression("#key = :key"),
            };
            let mut start_key = None;
            loop {
                let page = request
                    .clone()
                    .set_exclusive_start_key(start_key)
                    .send()
                    .await
                    .map_err(|e| store_error(&self.table, "Query", &e))?;
                for item in page.items() {
                    if entries.len() == limit {
                        more = true;
                        break 'partitions;
                    }
                    let id = string(item, LOG_KEY).unwrap_or_default();
                    if floor.as_deref().is_some_and(|floor| id < floor) {
                        // Ids only go down from here, in this partition and in the older ones.
                        break 'partitions;
                    }
                    if Self::expired(item, now) {
                        continue;
                    }
                    let entry = self.decode(item)?;
                    if query.matches(&entry) {
                        entries.push(entry);
                    }
                }
                start_key = page.last_evaluated_key().cloned();
                if start_key.is_none() {
                    break;
                }
                if entries.len() == limit {
                    more = true;
                    break 'partitions;
                }
            }
        }
        let next_cursor = if more {
            entries.last().map(|last| {
                LogCursor {
                    before_id: last.id.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(LogPage {
            entries,
            next_cursor,
        })
    }
}
