//! The embedded store: account links and the provisioning log, in the embedded database.
//!
//! Log entries are kept under their id (a ULID, so id order is time order) with one index
//! table per access pattern, each keyed by (field value, entry id): the entries of one user,
//! app, status or event are a contiguous, id-ordered range that is read backwards for newest
//! first.

use std::iter::Peekable;

use async_trait::async_trait;
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use time::OffsetDateTime;
use ulid::Ulid;

use super::db::{EmbeddedDb, Failure};
use crate::ids::SalesforceId;
use crate::link::AccountLink;
use crate::log::{LogCursor, LogEntry, LogPage, LogQuery};
use crate::ports::{LinkStore, LogStore, StoreError};

/// (app, 18-character user id) → [`AccountLink`] (JSON).
const LINKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("links");

/// Entry id → [`LogEntry`] (JSON).
const LOG_ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("log_entries");
/// (user id, entry id).
const LOG_BY_USER_ID: TableDefinition<(&str, &str), ()> = TableDefinition::new("log_by_user_id");
/// (username in ASCII lower case, entry id): `LogQuery::matches` compares ignoring ASCII case.
const LOG_BY_USERNAME: TableDefinition<(&str, &str), ()> = TableDefinition::new("log_by_username");
/// (app, entry id).
const LOG_BY_APP: TableDefinition<(&str, &str), ()> = TableDefinition::new("log_by_app");
/// (status, entry id).
const LOG_BY_STATUS: TableDefinition<(&str, &str), ()> = TableDefinition::new("log_by_status");
/// (event id, entry id).
const LOG_BY_EVENT_ID: TableDefinition<(&str, &str), ()> = TableDefinition::new("log_by_event_id");

/// Ids of the entries whose id was made further than [`LOG_ID_TIME_TOLERANCE_MS`] from their
/// `time`: time-range queries, which read ids near the range, read these as well.
const LOG_TIME_OUTLIERS: TableDefinition<&str, ()> = TableDefinition::new("log_time_outliers");

type IndexDefinition = TableDefinition<'static, (&'static str, &'static str), ()>;

/// How far an entry's id time may be from its `time` and still be found by reading ids near a
/// time range (entries further off are listed in [`LOG_TIME_OUTLIERS`]). Ids made from the
/// entry's time, or at about the same moment, are well within it.
pub const LOG_ID_TIME_TOLERANCE_MS: u64 = 60 * 60 * 1000;

/// Above every ULID string (which use `0-9A-Z`).
const ABOVE_ALL_IDS: &str = "~";

/// At most this many candidate entries are read for one page. A query that filters out most
/// entries returns a short (even empty) page with a cursor, so no single call reads the whole
/// log; callers follow `next_cursor` until it is absent.
pub const LOG_MAX_SCANNED_PER_PAGE: usize = 10_000;

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), Failure> {
    txn.open_table(LINKS)?;
    txn.open_table(LOG_ENTRIES)?;
    txn.open_table(LOG_TIME_OUTLIERS)?;
    for index in [
        LOG_BY_USER_ID,
        LOG_BY_USERNAME,
        LOG_BY_APP,
        LOG_BY_STATUS,
        LOG_BY_EVENT_ID,
    ] {
        txn.open_table(index)?;
    }
    Ok(())
}

/// Account links and the provisioning log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: EmbeddedDb,
}

impl EmbeddedStore {
    pub fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }

    /// Writes log entries in one transaction (all or none); an id written again replaces its
    /// entry. Loading many entries this way is far faster than one `append` each.
    pub async fn append_many(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        let mut prepared = Vec::with_capacity(entries.len());
        for entry in entries {
            let time_outlier = check_entry_id(entry)?;
            let encoded = serde_json::to_vec(entry).map_err(|e| {
                StoreError::BadRequest(format!("the log entry cannot be encoded: {e}"))
            })?;
            prepared.push((entry.clone(), encoded, time_outlier));
        }
        self.db
            .write_shared(move |txn| {
                for (entry, encoded, time_outlier) in &prepared {
                    write_entry(txn, entry, encoded, *time_outlier)?;
                }
                Ok(())
            })
            .await?;
        self.db.sync().await?;
        Ok(())
    }
}

/// Entries deleted per write transaction by [`EmbeddedStore::prune_log_before`], so pruning a
/// large backlog never holds the write lock for long.
const PRUNE_BATCH: usize = 1_000;

impl EmbeddedStore {
    /// Deletes the log entries whose `time` is before `cutoff`, with their index keys; returns
    /// how many. The retention of `userprov serve` (`[log_api] retention_days`).
    pub async fn prune_log_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff_ms = u64::try_from(super::db::unix_ms(cutoff)).unwrap_or(0);
        // Ids at or above this bound were made within the tolerance of a time after the cutoff.
        let id_bound =
            Ulid::from_parts(cutoff_ms.saturating_add(LOG_ID_TIME_TOLERANCE_MS), 0).to_string();
        let mut pruned = 0u64;
        let mut resume_after: Option<String> = None;
        let mut outliers_done = false;
        loop {
            let bound = id_bound.clone();
            let after = resume_after.clone();
            let scan_outliers = !outliers_done;
            let (deleted, last_scanned, more) = self
                .db
                .run(move |db| {
                    let txn = db.begin_write()?;
                    let mut victims: Vec<LogEntry> = Vec::new();
                    let mut last_scanned: Option<String> = None;
                    let mut more = false;
                    {
                        let entries = txn.open_table(LOG_ENTRIES)?;
                        let candidates: Vec<String> = if scan_outliers {
                            let outliers = txn.open_table(LOG_TIME_OUTLIERS)?;
                            outliers
                                .iter()?
                                .map(|item| item.map(|(key, _)| key.value().to_owned()))
                                .collect::<Result<_, _>>()?
                        } else {
                            let start = after.as_deref().unwrap_or("");
                            let mut ids = Vec::new();
                            for item in entries.range::<&str>(start..bound.as_str())? {
                                let (key, _) = item?;
                                if after.as_deref() == Some(key.value()) {
                                    continue;
                                }
                                if ids.len() == PRUNE_BATCH {
                                    more = true;
                                    break;
                                }
                                ids.push(key.value().to_owned());
                            }
                            ids
                        };
                        for id in candidates {
                            if let Some(stored) = entries.get(id.as_str())? {
                                let entry = decode_entry(stored.value())?;
                                if entry.time < cutoff {
                                    victims.push(entry);
                                }
                            }
                            last_scanned = Some(id);
                        }
                    }
                    for entry in &victims {
                        delete_entry(&txn, entry)?;
                    }
                    txn.commit()?;
                    Ok((victims.len() as u64, last_scanned, more))
                })
                .await?;
            pruned += deleted;
            if scan_outliers {
                outliers_done = true;
                continue;
            }
            if !more {
                return Ok(pruned);
            }
            resume_after = last_scanned;
        }
    }
}

fn delete_entry(txn: &WriteTransaction, entry: &LogEntry) -> Result<(), Failure> {
    txn.open_table(LOG_ENTRIES)?.remove(entry.id.as_str())?;
    for (index, value) in index_keys(entry) {
        txn.open_table(index)?
            .remove((value.as_str(), entry.id.as_str()))?;
    }
    txn.open_table(LOG_TIME_OUTLIERS)?
        .remove(entry.id.as_str())?;
    Ok(())
}

fn write_entry(
    txn: &WriteTransaction,
    entry: &LogEntry,
    encoded: &[u8],
    time_outlier: bool,
) -> Result<(), Failure> {
    let mut entries = txn.open_table(LOG_ENTRIES)?;
    let previous = entries
        .insert(entry.id.as_str(), encoded)?
        .map(|v| decode_entry(v.value()))
        .transpose()?;
    // Writing an id again replaces the entry: its old index keys must go.
    if let Some(previous) = previous {
        for (index, value) in index_keys(&previous) {
            txn.open_table(index)?
                .remove((value.as_str(), previous.id.as_str()))?;
        }
    }
    for (index, value) in index_keys(entry) {
        txn.open_table(index)?
            .insert((value.as_str(), entry.id.as_str()), ())?;
    }
    let mut outliers = txn.open_table(LOG_TIME_OUTLIERS)?;
    if time_outlier {
        outliers.insert(entry.id.as_str(), ())?;
    } else {
        outliers.remove(entry.id.as_str())?;
    }
    Ok(())
}

fn decode_link(bytes: &[u8]) -> Result<AccountLink, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::corrupt("a stored account link is unreadable", e))
}

fn decode_entry(bytes: &[u8]) -> Result<LogEntry, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::corrupt("a stored log entry is unreadable", e))
}

#[async_trait]
impl LinkStore for EmbeddedStore {
    async fn get_link(
        &self,
        app: &str,
        user_id: &SalesforceId,
    ) -> Result<Option<AccountLink>, StoreError> {
        let app = app.to_owned();
        let user_id = user_id.as_str().to_owned();
        let link = self
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let links = txn.open_table(LINKS)?;
                let stored = links.get((app.as_str(), user_id.as_str()))?;
                stored.map(|v| decode_link(v.value())).transpose()
            })
            .await?;
        Ok(link)
    }

    async fn put_link(
        &self,
        link: &AccountLink,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_link_unsynced(link, expected_version).await?;
        self.db.sync().await?;
        Ok(())
    }

    /// Committed without a sync: the next synced write of this database (the job's log entry,
    /// written after the link) makes it durable too, since redb keeps commits in order.
    async fn put_link_unsynced(
        &self,
        link: &AccountLink,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let wanted_version = expected_version.map_or(1, |v| v.saturating_add(1));
        if link.version != wanted_version {
            return Err(StoreError::BadRequest(format!(
                "a link written over version {expected_version:?} must have version {wanted_version}, not {}",
                link.version
            )));
        }
        let encoded = serde_json::to_vec(link).map_err(|e| {
            StoreError::BadRequest(format!("the account link cannot be encoded: {e}"))
        })?;
        let app = link.app.clone();
        let user_id = link.user_id.as_str().to_owned();
        self.db
            .write_shared(move |txn| {
                let mut links = txn.open_table(LINKS)?;
                let key = (app.as_str(), user_id.as_str());
                let stored_version = match links.get(key)? {
                    Some(stored) => Some(decode_link(stored.value())?.version),
                    None => None,
                };
                if stored_version != expected_version {
                    return Err(Failure::Conflict {
                        expected: expected_version,
                    });
                }
                links.insert(key, encoded.as_slice())?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn sync_links(&self) -> Result<(), StoreError> {
        self.db.sync_shared_writes().await?;
        Ok(())
    }

    async fn list_links(
        &self,
        app: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<AccountLink>, StoreError> {
        let app = app.map(str::to_owned);
        let after = after.map(|(a, u)| (a.to_owned(), u.to_owned()));
        let links = self
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(LINKS)?;
                // Start after `after`, or at the app's first key, whichever is later.
                let range = match (&app, &after) {
                    (Some(app), Some((after_app, after_user)))
                        if after_app.as_str() >= app.as_str() =>
                    {
                        table.range::<(&str, &str)>((
                            std::ops::Bound::Excluded((after_app.as_str(), after_user.as_str())),
                            std::ops::Bound::Unbounded,
                        ))?
                    }
                    (Some(app), _) => table.range::<(&str, &str)>((app.as_str(), "")..)?,
                    (None, Some((after_app, after_user))) => table.range::<(&str, &str)>((
                        std::ops::Bound::Excluded((after_app.as_str(), after_user.as_str())),
                        std::ops::Bound::Unbounded,
                    ))?,
                    (None, None) => table.iter()?,
                };
                let mut links = Vec::new();
                for item in range {
                    if links.len() >= limit {
                        break;
                    }
                    let (key, value) = item?;
                    if app.as_deref().is_some_and(|app| key.value().0 != app) {
                        break;
                    }
                    links.push(decode_link(value.value())?);
                }
                Ok(links)
            })
            .await?;
        Ok(links)
    }
}

/// The index entries of one log entry.
fn index_keys(entry: &LogEntry) -> Vec<(IndexDefinition, String)> {
    let mut keys = vec![
        (LOG_BY_USER_ID, entry.user_id.clone()),
        (LOG_BY_APP, entry.app.clone()),
        (LOG_BY_STATUS, entry.status.as_str().to_owned()),
        (LOG_BY_EVENT_ID, entry.event_id.clone()),
    ];
    if let Some(username) = &entry.username {
        keys.push((LOG_BY_USERNAME, username.to_ascii_lowercase()));
    }
    keys
}

/// Checks the id is a ULID in canonical form; says whether it is a time outlier.
fn check_entry_id(entry: &LogEntry) -> Result<bool, StoreError> {
    let id = Ulid::from_string(&entry.id).map_err(|e| {
        StoreError::BadRequest(format!("log entry id {:?} is not a ULID: {e}", entry.id))
    })?;
    if id.to_string() != entry.id {
        return Err(StoreError::BadRequest(format!(
            "log entry id {:?} is not in canonical (uppercase) ULID form",
            entry.id
        )));
    }
    let entry_ms = i128::from(super::db::unix_ms(entry.time));
    let id_ms = i128::from(id.timestamp_ms());
    Ok((entry_ms - id_ms).unsigned_abs() > u128::from(LOG_ID_TIME_TOLERANCE_MS))
}

#[async_trait]
impl LogStore for EmbeddedStore {
    async fn append(&self, entry: &LogEntry) -> Result<(), StoreError> {
        self.append_many(std::slice::from_ref(entry)).await
    }

    async fn get_entry(&self, id: &str) -> Result<Option<LogEntry>, StoreError> {
        let id = id.to_owned();
        let entry = self
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let entries = txn.open_table(LOG_ENTRIES)?;
                let stored = entries.get(id.as_str())?;
                stored.map(|v| decode_entry(v.value())).transpose()
            })
            .await?;
        Ok(entry)
    }

    async fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let before_id = match &query.cursor {
            Some(raw) => {
                let cursor =
                    LogCursor::decode(raw).map_err(|e| StoreError::BadRequest(e.to_string()))?;
                // The cursor checked it is a ULID; compare in canonical form.
                Some(
                    Ulid::from_string(&cursor.before_id)
                        .map_err(|e| StoreError::BadRequest(e.to_string()))?
                        .to_string(),
                )
            }
            None => None,
        };
        let query = query.clone();
        let page = self
            .db
            .run(move |db| run_query(&db.begin_read()?, &query, before_id))
            .await?;
        Ok(page)
    }
}

/// Entry ids to consider, newest first.
type Candidates = Box<dyn Iterator<Item = Result<String, Failure>>>;

/// The ids of one index range `(value, lowest..highest)`, newest first.
fn index_ids(
    txn: &ReadTransaction,
    index: IndexDefinition,
    value: &str,
    lowest: &str,
    highest: &str,
) -> Result<Candidates, Failure> {
    let table: ReadOnlyTable<(&str, &str), ()> = txn.open_table(index)?;
    let range = table.range::<(&str, &str)>((value, lowest)..(value, highest))?;
    Ok(Box::new(range.rev().map(|item| {
        item.map(|(key, _)| key.value().1.to_owned())
            .map_err(Failure::from)
    })))
}

/// Two newest-first id streams as one, without repeats.
struct MergedNewestFirst {
    left: Peekable<Candidates>,
    right: Peekable<Candidates>,
}

impl Iterator for MergedNewestFirst {
    type Item = Result<String, Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        let (take_left, same) = match (self.left.peek(), self.right.peek()) {
            (None, None) => return None,
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, false),
            // Errors first, so they are not lost.
            (Some(Err(_)), _) => (true, false),
            (_, Some(Err(_))) => (false, false),
            (Some(Ok(left)), Some(Ok(right))) => (left >= right, left == right),
        };
        if same {
            self.right.next();
        }
        if take_left {
            self.left.next()
        } else {
            self.right.next()
        }
    }
}

/// Picks the most selective index the query allows and reads entries newest first.
fn run_query(
    txn: &ReadTransaction,
    query: &LogQuery,
    before_id: Option<String>,
) -> Result<LogPage, Failure> {
    let limit = query.effective_limit();
    // Entry ids within [lowest, highest) can match the cursor and the time range.
    let lowest = query
        .since
        .map(|since| {
            let ms = u64::try_from(super::db::unix_ms(since)).unwrap_or(0);
            Ulid::from_parts(ms.saturating_sub(LOG_ID_TIME_TOLERANCE_MS), 0).to_string()
        })
        .unwrap_or_default();
    let until_bound = query.until.map(|until| {
        let ms = u64::try_from(super::db::unix_ms(until)).unwrap_or(0);
        Ulid::from_parts(ms.saturating_add(LOG_ID_TIME_TOLERANCE_MS + 1), 0).to_string()
    });
    let below_cursor = before_id.unwrap_or_else(|| ABOVE_ALL_IDS.to_owned());
    let time_bounded = !lowest.is_empty() || until_bound.is_some();
    let highest = match until_bound {
        Some(bound) => bound.min(below_cursor.clone()),
        None => below_cursor.clone(),
    };

    let near_range: Candidates = if lowest >= highest {
        Box::new(std::iter::empty())
    } else if let Some(event_id) = &query.event_id {
        index_ids(txn, LOG_BY_EVENT_ID, event_id, &lowest, &highest)?
    } else if let Some(user) = &query.user {
        // A user is named by id or by username; read both indexes when the text could be either.
        let by_name = index_ids(
            txn,
            LOG_BY_USERNAME,
            &user.to_ascii_lowercase(),
            &lowest,
            &highest,
        )?;
        match SalesforceId::parse(user) {
            Ok(id) => Box::new(MergedNewestFirst {
                left: index_ids(txn, LOG_BY_USER_ID, id.as_str(), &lowest, &highest)?.peekable(),
                right: by_name.peekable(),
            }),
            Err(_) => by_name,
        }
    } else if let Some(app) = &query.app {
        index_ids(txn, LOG_BY_APP, app, &lowest, &highest)?
    } else if let Some(status) = query.status {
        index_ids(txn, LOG_BY_STATUS, status.as_str(), &lowest, &highest)?
    } else {
        let table: ReadOnlyTable<&str, &[u8]> = txn.open_table(LOG_ENTRIES)?;
        let range = table.range::<&str>(lowest.as_str()..highest.as_str())?;
        Box::new(range.rev().map(|item| {
            item.map(|(key, _)| key.value().to_owned())
                .map_err(Failure::from)
        }))
    };

    let candidates: Candidates = if time_bounded {
        let outliers: ReadOnlyTable<&str, ()> = txn.open_table(LOG_TIME_OUTLIERS)?;
        let outlier_ids = outliers
            .range::<&str>(..below_cursor.as_str())?
            .rev()
            .map(|item| {
                item.map(|(key, _)| key.value().to_owned())
                    .map_err(Failure::from)
            });
        Box::new(MergedNewestFirst {
            left: near_range.peekable(),
            right: (Box::new(outlier_ids) as Candidates).peekable(),
        })
    } else {
        near_range
    };

    let entries_table: ReadOnlyTable<&str, &[u8]> = txn.open_table(LOG_ENTRIES)?;
    let mut candidates = candidates.peekable();
    let mut entries = Vec::new();
    let mut scanned = 0usize;
    let mut last_scanned: Option<String> = None;
    while entries.len() < limit && scanned < LOG_MAX_SCANNED_PER_PAGE {
        let Some(id) = candidates.next().transpose()? else {
            return Ok(LogPage {
                entries,
                next_cursor: None,
            });
        };
        scanned += 1;
        let entry = match entries_table.get(id.as_str())? {
            Some(stored) => decode_entry(stored.value())?,
            None => {
                return Err(Failure::Corrupt(format!(
                    "log entry {id} is indexed but missing"
                )));
            }
        };
        if query.matches(&entry) {
            entries.push(entry);
        }
        last_scanned = Some(id);
    }
    let next_cursor = match (candidates.peek(), last_scanned) {
        (Some(_), Some(before_id)) => Some(LogCursor { before_id }.encode()),
        _ => None,
    };
    Ok(LogPage {
        entries,
        next_cursor,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashSet;

    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::link::ManagedBy;
    use crate::log::{LogStatus, Operation};
    use crate::source::EventSource;

    fn open() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::new(EmbeddedDb::open(dir.path()).unwrap());
        (dir, store)
    }

    fn user(short: &str) -> SalesforceId {
        SalesforceId::parse(short).unwrap()
    }

    fn link(app: &str, user_id: &str, version: u64) -> AccountLink {
        AccountLink {
            app: app.to_owned(),
            user_id: user(user_id),
            username: Some("ada@example.com".to_owned()),
            target_id: Some(format!("target-{user_id}")),
            active: true,
            last_source_time: None,
            last_event_id: None,
            last_payload_hash: None,
            last_groups: Vec::new(),
            snapshot: None,
            managed_by: Some(ManagedBy::Created),
            version,
            updated_at: datetime!(2025-03-01 09:00:00 UTC),
        }
    }

    #[tokio::test]
    async fn a_new_link_is_written_when_none_is_expected() {
        let (_dir, store) = open();
        assert_eq!(
            store
                .get_link("slack", &user("005000000000001"))
                .await
                .unwrap(),
            None
        );
        let new = link("slack", "005000000000001", 1);
        store.put_link(&new, None).await.unwrap();
        assert_eq!(
            store
                .get_link("slack", &user("005000000000001"))
                .await
                .unwrap(),
            Some(new)
        );
    }

    #[tokio::test]
    async fn a_link_is_updated_over_the_version_read() {
        let (_dir, store) = open();
        store
            .put_link(&link("slack", "005000000000001", 1), None)
            .await
            .unwrap();
        let mut updated = link("slack", "005000000000001", 2);
        updated.active = false;
        store.put_link(&updated, Some(1)).await.unwrap();
        assert_eq!(
            store
                .get_link("slack", &user("005000000000001"))
                .await
                .unwrap(),
            Some(updated)
        );
    }

    #[tokio::test]
    async fn a_write_over_a_stale_version_conflicts_and_changes_nothing() {
        let (_dir, store) = open();
        store
            .put_link(&link("slack", "005000000000001", 1), None)
            .await
            .unwrap();
        store
            .put_link(&link("slack", "005000000000001", 2), Some(1))
            .await
            .unwrap();
        let mut stale = link("slack", "005000000000001", 2);
        stale.target_id = Some("other".to_owned());
        let error = store.put_link(&stale, Some(1)).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict { expected: Some(1) }),
            "{error}"
        );
        let stored = store
            .get_link("slack", &user("005000000000001"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.target_id.as_deref(), Some("target-005000000000001"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_transactions_and_a_conflict_fails_only_its_own_write() {
        let (_dir, store) = open();
        store
            .put_link(&link("slack", "005000000000999", 1), None)
            .await
            .unwrap();
        // 200 new links, 200 log entries, and one stale write, all at once: whichever shared
        // transaction the stale write lands in, only it fails.
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..200u32 {
            let links = store.clone();
            writes.spawn(async move {
                let id = format!("005000000{n:06}");
                links
                    .put_link(&link("slack", &id, 1), None)
                    .await
                    .map(|()| "link")
            });
            let log = store.clone();
            writes.spawn(async move {
                let entry = entry_at(T0, u128::from(n));
                log.append(&entry).await.map(|()| "entry")
            });
        }
        let stale_store = store.clone();
        writes.spawn(async move {
            stale_store
                .put_link(&link("slack", "005000000000999", 1), None)
                .await
                .map(|()| "stale")
        });
        let mut done = Vec::new();
        let mut conflicts = 0;
        while let Some(result) = writes.join_next().await {
            match result.unwrap() {
                Ok(kind) => done.push(kind),
                Err(StoreError::Conflict { expected: None }) => conflicts += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(conflicts, 1);
        assert_eq!(done.iter().filter(|k| **k == "link").count(), 200);
        assert_eq!(done.iter().filter(|k| **k == "entry").count(), 200);
        assert_eq!(
            store
                .list_links(Some("slack"), None, 1000)
                .await
                .unwrap()
                .len(),
            201
        );
        let mut ids = HashSet::new();
        let mut query = LogQuery::default();
        loop {
            let page = store.query(&query).await.unwrap();
            ids.extend(page.entries.into_iter().map(|e| e.id));
            let Some(cursor) = page.next_cursor else {
                break;
            };
            query.cursor = Some(cursor);
        }
        assert_eq!(ids.len(), 200);
    }

    #[tokio::test]
    async fn creating_a_link_that_exists_conflicts() {
        let (_dir, store) = open();
        store
            .put_link(&link("slack", "005000000000001", 1), None)
            .await
            .unwrap();
        let error = store
            .put_link(&link("slack", "005000000000001", 1), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict { expected: None }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn updating_a_link_that_does_not_exist_conflicts() {
        let (_dir, store) = open();
        let error = store
            .put_link(&link("slack", "005000000000001", 4), Some(3))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict { expected: Some(3) }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_link_must_carry_the_next_version() {
        let (_dir, store) = open();
        let error = store
            .put_link(&link("slack", "005000000000001", 3), None)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::BadRequest(_)), "{error}");
    }

    #[tokio::test]
    async fn links_are_listed_by_app_then_user_after_a_key() {
        let (_dir, store) = open();
        for (app, id) in [
            ("slack", "005000000000003"),
            ("github", "005000000000002"),
            ("slack", "005000000000001"),
            ("github", "005000000000001"),
            ("zoom", "005000000000001"),
        ] {
            store.put_link(&link(app, id, 1), None).await.unwrap();
        }
        let keys = |links: Vec<AccountLink>| -> Vec<(String, String)> {
            links
                .into_iter()
                .map(|l| (l.app, l.user_id.short().to_owned()))
                .collect()
        };
        let k = |app: &str, id: &str| (app.to_owned(), id.to_owned());

        let all = keys(store.list_links(None, None, 100).await.unwrap());
        assert_eq!(
            all,
            [
                k("github", "005000000000001"),
                k("github", "005000000000002"),
                k("slack", "005000000000001"),
                k("slack", "005000000000003"),
                k("zoom", "005000000000001"),
            ]
        );
        let slack = keys(store.list_links(Some("slack"), None, 100).await.unwrap());
        assert_eq!(
            slack,
            [k("slack", "005000000000001"), k("slack", "005000000000003")]
        );

        let after_id = user("005000000000001");
        let page = keys(
            store
                .list_links(None, Some(("github", after_id.as_str())), 2)
                .await
                .unwrap(),
        );
        assert_eq!(
            page,
            [
                k("github", "005000000000002"),
                k("slack", "005000000000001")
            ]
        );
        let page = keys(
            store
                .list_links(Some("slack"), Some(("slack", after_id.as_str())), 10)
                .await
                .unwrap(),
        );
        assert_eq!(page, [k("slack", "005000000000003")]);
        // A key before the app starts the app from its beginning.
        let page = keys(
            store
                .list_links(Some("slack"), Some(("github", after_id.as_str())), 1)
                .await
                .unwrap(),
        );
        assert_eq!(page, [k("slack", "005000000000001")]);
        assert!(
            store
                .list_links(Some("nope"), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    const T0: OffsetDateTime = datetime!(2025-03-01 09:00:00 UTC);

    fn entry_at(time: OffsetDateTime, seq: u128) -> LogEntry {
        let ms = u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap();
        LogEntry {
            id: Ulid::from_parts(ms, seq).to_string(),
            time,
            app: "slack".to_owned(),
            user_id: user("005000000000001").as_str().to_owned(),
            username: Some("Ada@Example.com".to_owned()),
            event_id: format!("04l{seq}"),
            source: EventSource::OutboundMessage,
            correlation_id: format!("corr-{seq}"),
            operation: Operation::Update,
            status: LogStatus::Success,
            attempt: 1,
            http_status: Some(200),
            target_id: Some("t-1".to_owned()),
            reason: None,
            error: None,
            request: None,
            response: None,
            groups: None,
            changes: Vec::new(),
            duration_ms: 12,
        }
    }

    /// 60 entries a minute apart, spread over two users, three apps, three statuses.
    async fn seeded() -> (tempfile::TempDir, EmbeddedStore, Vec<LogEntry>) {
        let (dir, store) = open();
        let mut entries = Vec::new();
        for i in 0..60u32 {
            let mut entry = entry_at(T0 + time::Duration::minutes(i64::from(i)), u128::from(i));
            if i % 2 == 1 {
                entry.user_id = user("005000000000002").as_str().to_owned();
                entry.username = Some("grace@example.com".to_owned());
            }
            entry.app = ["slack", "github", "zoom"][i as usize % 3].to_owned();
            entry.status = [
                LogStatus::Success,
                LogStatus::Failed,
                LogStatus::Retrying,
                LogStatus::Success,
            ][i as usize % 4];
            if i % 10 == 0 {
                entry.operation = Operation::Create;
            }
            if i >= 50 {
                entry.event_id = "04lSHARED".to_owned();
            }
            store.append(&entry).await.unwrap();
            entries.push(entry);
        }
        (dir, store, entries)
    }

    /// What a query should return: the matching entries, newest first.
    fn expected(entries: &[LogEntry], query: &LogQuery) -> Vec<String> {
        let mut ids: Vec<String> = entries
            .iter()
            .filter(|e| query.matches(e))
            .map(|e| e.id.clone())
            .collect();
        ids.sort();
        ids.reverse();
        ids
    }

    /// Follows cursors to the end, checking each page's size.
    async fn all_pages(store: &EmbeddedStore, mut query: LogQuery) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let page = store.query(&query).await.unwrap();
            assert!(page.entries.len() <= query.effective_limit());
            ids.extend(page.entries.into_iter().map(|e| e.id));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return ids,
            }
        }
    }

    #[tokio::test]
    async fn each_filter_returns_exactly_its_entries_newest_first() {
        let (_dir, store, entries) = seeded().await;
        let queries = [
            LogQuery::default(),
            LogQuery {
                user: Some("005000000000002".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                user: Some(user("005000000000001").as_str().to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                user: Some("ADA@example.COM".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                app: Some("github".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                status: Some(LogStatus::Failed),
                ..LogQuery::default()
            },
            LogQuery {
                operation: Some(Operation::Create),
                ..LogQuery::default()
            },
            LogQuery {
                event_id: Some("04lSHARED".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                event_id: Some("04l7".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                app: Some("zoom".to_owned()),
                status: Some(LogStatus::Success),
                user: Some("grace@example.com".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                app: Some("nope".to_owned()),
                ..LogQuery::default()
            },
        ];
        for query in queries {
            let query = LogQuery {
                limit: 100,
                ..query
            };
            let want = expected(&entries, &query);
            let page = store.query(&query).await.unwrap();
            let got: Vec<String> = page.entries.iter().map(|e| e.id.clone()).collect();
            assert_eq!(got, want, "{query:?}");
            assert_eq!(page.next_cursor, None, "{query:?}");
        }
        // The filters are not vacuous.
        assert_eq!(
            expected(
                &entries,
                &LogQuery {
                    status: Some(LogStatus::Failed),
                    ..LogQuery::default()
                }
            )
            .len(),
            15
        );
        assert_eq!(
            expected(
                &entries,
                &LogQuery {
                    event_id: Some("04lSHARED".to_owned()),
                    ..LogQuery::default()
                }
            )
            .len(),
            10
        );
    }

    #[tokio::test]
    async fn a_page_holds_the_default_number_of_entries_and_a_cursor_when_more_exist() {
        let (_dir, store, entries) = seeded().await;
        let page = store.query(&LogQuery::default()).await.unwrap();
        assert_eq!(page.entries.len(), crate::log::DEFAULT_PAGE_SIZE);
        assert_eq!(page.entries[0], entries[59]);
        let cursor = LogCursor::decode(page.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(cursor.before_id, page.entries[49].id);
    }

    #[tokio::test]
    async fn a_time_range_returns_the_entries_from_since_until_before_until() {
        let (_dir, store, entries) = seeded().await;
        let query = LogQuery {
            since: Some(T0 + time::Duration::minutes(10)),
            until: Some(T0 + time::Duration::minutes(20)),
            ..LogQuery::default()
        };
        let got: Vec<String> = store
            .query(&query)
            .await
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got.len(), 10);
        assert_eq!(got, expected(&entries, &query));
        assert_eq!(got.first(), Some(&entries[19].id));
        assert_eq!(got.last(), Some(&entries[10].id));

        let with_app = LogQuery {
            app: Some("slack".to_owned()),
            ..query
        };
        let got: Vec<String> = store
            .query(&with_app)
            .await
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, expected(&entries, &with_app));
        assert!(!got.is_empty());
    }

    #[tokio::test]
    async fn entries_whose_id_time_differs_slightly_from_their_time_are_still_found_by_time() {
        let (_dir, store) = open();
        // The id made 30 minutes after the entry's time: inside the tolerance.
        let mut late_id = entry_at(T0, 1);
        late_id.id = entry_at(T0 + time::Duration::minutes(30), 1).id;
        store.append(&late_id).await.unwrap();
        let query = LogQuery {
            since: Some(T0),
            until: Some(T0 + time::Duration::seconds(1)),
            ..LogQuery::default()
        };
        assert_eq!(store.query(&query).await.unwrap().entries, [late_id]);
    }

    #[tokio::test]
    async fn entries_whose_id_time_is_far_from_their_time_are_found_by_time_too() {
        let (_dir, store) = open();
        // Ids made from another clock than the entry time, days apart either way.
        let mut old_id = entry_at(T0, 1);
        old_id.id = entry_at(T0 - time::Duration::days(3), 1).id;
        let mut new_id = entry_at(T0 + time::Duration::seconds(1), 2);
        new_id.id = entry_at(T0 + time::Duration::days(3), 2).id;
        let near = entry_at(T0 + time::Duration::seconds(2), 3);
        for entry in [&old_id, &new_id, &near] {
            store.append(entry).await.unwrap();
        }
        let query = LogQuery {
            since: Some(T0),
            until: Some(T0 + time::Duration::minutes(1)),
            ..LogQuery::default()
        };
        let got = store.query(&query).await.unwrap().entries;
        assert_eq!(
            got,
            [new_id.clone(), near.clone(), old_id.clone()],
            "newest id first"
        );
        let paged = all_pages(
            &store,
            LogQuery {
                limit: 1,
                ..query.clone()
            },
        )
        .await;
        assert_eq!(
            paged,
            [new_id.id.clone(), near.id.clone(), old_id.id.clone()]
        );
        // Outside the range, nothing; and an entry rewritten with a close time is no outlier.
        let later = LogQuery {
            since: Some(T0 + time::Duration::hours(5)),
            ..LogQuery::default()
        };
        assert!(store.query(&later).await.unwrap().entries.is_empty());
        let mut fixed = new_id.clone();
        fixed.time = T0 + time::Duration::days(3);
        store.append(&fixed).await.unwrap();
        assert_eq!(store.query(&query).await.unwrap().entries, [near, old_id]);
    }

    #[tokio::test]
    async fn pages_follow_one_another_without_duplicates_or_gaps() {
        let (_dir, store, entries) = seeded().await;
        for query in [
            LogQuery {
                limit: 7,
                ..LogQuery::default()
            },
            LogQuery {
                limit: 4,
                user: Some("grace@example.com".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                limit: 3,
                app: Some("zoom".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                limit: 5,
                status: Some(LogStatus::Success),
                ..LogQuery::default()
            },
            LogQuery {
                limit: 2,
                operation: Some(Operation::Create),
                ..LogQuery::default()
            },
            LogQuery {
                limit: 3,
                event_id: Some("04lSHARED".to_owned()),
                ..LogQuery::default()
            },
        ] {
            let want = expected(&entries, &query);
            let got = all_pages(&store, query.clone()).await;
            assert_eq!(got, want, "{query:?}");
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
        }
        let first = store
            .query(&LogQuery {
                limit: 60,
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(first.entries.len(), 60);
        assert_eq!(
            first.next_cursor, None,
            "no cursor when the last page ends the log"
        );
    }

    #[tokio::test]
    async fn a_cursor_not_handed_out_by_the_api_is_a_bad_request() {
        let (_dir, store, _entries) = seeded().await;
        for cursor in ["not-a-cursor", "djE6bm9wZQ", ""] {
            let query = LogQuery {
                cursor: Some(cursor.to_owned()),
                ..LogQuery::default()
            };
            let error = store.query(&query).await.unwrap_err();
            assert!(
                matches!(error, StoreError::BadRequest(_)),
                "{cursor:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn an_entry_is_found_by_its_id() {
        let (_dir, store, entries) = seeded().await;
        assert_eq!(
            store.get_entry(&entries[42].id).await.unwrap().as_ref(),
            Some(&entries[42])
        );
        assert_eq!(
            store.get_entry("01JNMZ0000000000000000000Z").await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_entry_written_again_under_its_id_is_reindexed() {
        let (_dir, store) = open();
        let mut entry = entry_at(T0, 1);
        entry.status = LogStatus::Retrying;
        store.append(&entry).await.unwrap();
        entry.status = LogStatus::Success;
        store.append(&entry).await.unwrap();
        let retrying = LogQuery {
            status: Some(LogStatus::Retrying),
            ..LogQuery::default()
        };
        assert!(store.query(&retrying).await.unwrap().entries.is_empty());
        let success = LogQuery {
            status: Some(LogStatus::Success),
            ..LogQuery::default()
        };
        assert_eq!(store.query(&success).await.unwrap().entries, [entry]);
    }

    #[tokio::test]
    async fn retention_deletes_entries_older_than_the_cutoff_and_their_index_keys() {
        let (_dir, store, entries) = seeded().await;
        // An entry whose id was made long after its time is pruned by its time.
        let mut outlier = entry_at(T0 - time::Duration::days(3), 99);
        outlier.id = Ulid::from_parts(
            u64::try_from((T0 + time::Duration::days(5)).unix_timestamp()).unwrap() * 1000,
            7,
        )
        .to_string();
        store.append(&outlier).await.unwrap();

        let cutoff = T0 + time::Duration::minutes(45);
        assert_eq!(store.prune_log_before(cutoff).await.unwrap(), 46);

        let kept: Vec<LogEntry> = entries
            .iter()
            .filter(|e| e.time >= cutoff)
            .cloned()
            .collect();
        for query in [
            LogQuery::default(),
            LogQuery {
                app: Some("slack".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                user: Some("grace@example.com".to_owned()),
                ..LogQuery::default()
            },
            LogQuery {
                status: Some(LogStatus::Failed),
                ..LogQuery::default()
            },
            LogQuery {
                since: Some(T0 - time::Duration::days(4)),
                ..LogQuery::default()
            },
        ] {
            assert_eq!(
                all_pages(&store, query.clone()).await,
                expected(&kept, &query),
                "{query:?}"
            );
        }
        assert_eq!(store.get_entry(&outlier.id).await.unwrap(), None);
        // Nothing older is left: pruning again deletes nothing.
        assert_eq!(store.prune_log_before(cutoff).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn retention_prunes_a_backlog_larger_than_one_batch() {
        let (_dir, store) = open();
        let backlog: Vec<LogEntry> = (0..(PRUNE_BATCH as u128 * 2 + 5))
            .map(|i| entry_at(T0 + time::Duration::milliseconds(i as i64), i))
            .collect();
        store.append_many(&backlog).await.unwrap();
        let newest = entry_at(T0 + time::Duration::days(1), 1);
        store.append(&newest).await.unwrap();
        assert_eq!(
            store
                .prune_log_before(T0 + time::Duration::hours(1))
                .await
                .unwrap(),
            backlog.len() as u64
        );
        assert_eq!(
            store.query(&LogQuery::default()).await.unwrap().entries,
            [newest]
        );
    }

    #[tokio::test]
    async fn an_entry_whose_id_is_not_a_canonical_ulid_is_refused() {
        let (_dir, store) = open();
        let mut not_ulid = entry_at(T0, 1);
        not_ulid.id = "entry-1".to_owned();
        let mut lowercase = entry_at(T0, 2);
        lowercase.id = lowercase.id.to_lowercase();
        for entry in [not_ulid, lowercase] {
            let error = store.append(&entry).await.unwrap_err();
            assert!(
                matches!(error, StoreError::BadRequest(_)),
                "{}: {error}",
                entry.id
            );
        }
    }

    #[tokio::test]
    async fn a_query_that_matches_little_returns_short_pages_with_a_cursor_rather_than_reading_everything()
     {
        let (_dir, store) = open();
        // Written in one transaction to keep the test quick; append is tested elsewhere.
        let total = LOG_MAX_SCANNED_PER_PAGE + 500;
        let rare = [3usize, LOG_MAX_SCANNED_PER_PAGE + 100];
        let entries: Vec<LogEntry> = (0..total)
            .map(|i| {
                let mut entry = entry_at(T0 + time::Duration::seconds(i as i64), i as u128);
                if rare.contains(&i) {
                    entry.operation = Operation::Reactivate;
                }
                entry
            })
            .collect();
        let batch = entries.clone();
        store
            .db
            .run(move |db| {
                let txn = db.begin_write()?;
                {
                    let mut table = txn.open_table(LOG_ENTRIES)?;
                    for entry in &batch {
                        table.insert(
                            entry.id.as_str(),
                            serde_json::to_vec(entry).unwrap().as_slice(),
                        )?;
                    }
                }
                txn.commit()?;
                Ok(())
            })
            .await
            .unwrap();

        let query = LogQuery {
            operation: Some(Operation::Reactivate),
            ..LogQuery::default()
        };
        let first = store.query(&query).await.unwrap();
        assert_eq!(
            first.entries.len(),
            1,
            "only the rare entry among the first pages' reads"
        );
        assert!(first.next_cursor.is_some());
        let got = all_pages(&store, query.clone()).await;
        assert_eq!(got, expected(&entries, &query));
    }

    // The worker writes a job's links unsynced and its log entry synced, and settles the job
    // after both: these say what a crash at each point leaves.

    fn crashed(store: &EmbeddedStore, dir: &tempfile::TempDir) -> EmbeddedStore {
        EmbeddedStore::new(store.db.after_a_crash(&dir.path().join("after-crash")))
    }

    #[tokio::test]
    async fn a_link_written_unsynced_is_lost_in_a_crash_before_anything_syncs_it() {
        let (dir, store) = open();
        let written = link("slack", "005000000000001", 1);
        store.put_link_unsynced(&written, None).await.unwrap();
        assert_eq!(
            store.get_link("slack", &written.user_id).await.unwrap(),
            Some(written.clone()),
            "visible at once"
        );
        let after = crashed(&store, &dir);
        assert_eq!(
            after.get_link("slack", &written.user_id).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_link_written_unsynced_is_durable_with_the_log_entry_written_after_it() {
        let (dir, store) = open();
        let written = link("slack", "005000000000001", 1);
        let entry = entry_at(OffsetDateTime::now_utc(), 1);
        store.put_link_unsynced(&written, None).await.unwrap();
        store.append(&entry).await.unwrap();
        let after = crashed(&store, &dir);
        assert_eq!(
            after.get_link("slack", &written.user_id).await.unwrap(),
            Some(written)
        );
        assert_eq!(after.get_entry(&entry.id).await.unwrap(), Some(entry));
    }

    #[tokio::test]
    async fn a_link_written_unsynced_is_durable_once_the_links_are_synced() {
        let (dir, store) = open();
        let first = link("slack", "005000000000001", 1);
        store.put_link_unsynced(&first, None).await.unwrap();
        // Nothing left to sync: returns without a sync, the link stays durable.
        store
            .append(&entry_at(OffsetDateTime::now_utc(), 1))
            .await
            .unwrap();
        store.sync_links().await.unwrap();
        let second = link("github", "005000000000001", 1);
        store.put_link_unsynced(&second, None).await.unwrap();
        store.sync_links().await.unwrap();
        let after = crashed(&store, &dir);
        assert_eq!(
            after.get_link("slack", &first.user_id).await.unwrap(),
            Some(first)
        );
        assert_eq!(
            after.get_link("github", &second.user_id).await.unwrap(),
            Some(second)
        );
    }

    #[tokio::test]
    async fn a_link_put_is_durable_when_put_returns() {
        let (dir, store) = open();
        let written = link("slack", "005000000000001", 1);
        store.put_link(&written, None).await.unwrap();
        let after = crashed(&store, &dir);
        assert_eq!(
            after.get_link("slack", &written.user_id).await.unwrap(),
            Some(written)
        );
    }

    #[tokio::test]
    async fn an_unsynced_link_write_still_checks_the_version() {
        let (_dir, store) = open();
        store
            .put_link_unsynced(&link("slack", "005000000000001", 1), None)
            .await
            .unwrap();
        let error = store
            .put_link_unsynced(&link("slack", "005000000000001", 1), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict { expected: None }),
            "{error}"
        );
    }
}
