//! The embedded job queue: SQS FIFO semantics with a redrive policy, in the embedded database.
//!
//! Messages are kept in enqueue order under a sequence number. A message is *hidden* while
//! its `visible_at` is in the future: after a receive (in flight) or after a
//! [`Disposition::RetryAfter`] (delayed). A hidden message blocks the rest of its group, which
//! is how a user's changes are applied in order while other users proceed.
//!
//! Two indexes keep a receive from reading the whole queue: [`READY`] lists the messages that
//! were visible when last looked at, by sequence number, and [`HIDDEN`] the others by the time
//! they become visible ([`HIDDEN_BY_GROUP`] answers "is this group blocked?"). Every message is
//! in exactly one of the two; a receive first moves the hidden messages whose time has come to
//! [`READY`], then reads [`READY`] in order, decoding only the messages it delivers.
//!
//! Durability: an enqueue, a redrive and a requeue are synced to disk before they return (the
//! webhook acknowledges Salesforce after the enqueue); an enqueue shares its sync with the
//! writes waiting at the same time ([`EmbeddedDb::sync`], group commit). A receive and a settle
//! are not synced (`Durability::None`): redb keeps commits in order, and the worker's own store
//! writes (the account link, the log entry) are synced, which also syncs every queue commit
//! before them. A crash can only lose the latest receives and settles, and then the message is
//! delivered again: at least once still holds, and the worker's planning makes the repeat a
//! no-op.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::db::{EmbeddedDb, Failure, begin_unsynced, duration_ms, from_unix_ms, unix_ms};
use crate::job::{Job, JobMessage};
use crate::ports::{
    Clock, Disposition, JobQueue, QueueConsumer, QueueError, ReceivedMessage, StoreError,
};

/// Sequence number → [`StoredMessage`] (JSON), in enqueue order.
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_messages");
/// Sequence number → [`StoredDeadLetter`] (JSON), in dead-lettering order.
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_dead_letters");
/// Message id → its sequence number in [`DEAD_LETTERS`].
const DEAD_LETTER_IDS: TableDefinition<&str, u64> = TableDefinition::new("queue_dead_letter_ids");
/// Deduplication id → when it was first enqueued (ms).
const DEDUP_IDS: TableDefinition<&str, i64> = TableDefinition::new("queue_dedup_ids");
/// (first enqueued ms, deduplication id): lets an enqueue forget expired ids cheaply.
const DEDUP_BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("queue_dedup_by_time");
/// Named counters: the next sequence numbers.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("queue_counters");
/// Sequence number → group id of the messages visible when last looked at.
const READY: TableDefinition<u64, &str> = TableDefinition::new("queue_ready");
/// (visible at ms, sequence number) → group id of the received and delayed messages.
const HIDDEN: TableDefinition<(i64, u64), &str> = TableDefinition::new("queue_hidden");
/// (group id, sequence number) of every message in [`HIDDEN`].
const HIDDEN_BY_GROUP: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("queue_hidden_by_group");

const NEXT_MESSAGE: &str = "next_message";
const NEXT_DEAD_LETTER: &str = "next_dead_letter";
/// Present once [`READY`] and [`HIDDEN`] index every message (queues written by a version
/// without the indexes are indexed when opened).
const INDEXED: &str = "indexed";

/// The largest message body accepted, as SQS accepted before 2025: jobs must stay small.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The reason recorded when a message runs out of receives.
const MAX_RECEIVES_REASON: &str = "maxReceiveCount exceeded";

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), Failure> {
    txn.open_table(MESSAGES)?;
    txn.open_table(DEAD_LETTERS)?;
    txn.open_table(DEAD_LETTER_IDS)?;
    txn.open_table(DEDUP_IDS)?;
    txn.open_table(DEDUP_BY_TIME)?;
    txn.open_table(READY)?;
    txn.open_table(HIDDEN)?;
    txn.open_table(HIDDEN_BY_GROUP)?;
    let mut counters = txn.open_table(COUNTERS)?;
    if counters.get(INDEXED)?.is_none() {
        index_every_message(txn)?;
        counters.insert(INDEXED, 1)?;
    }
    Ok(())
}

/// Indexes every message as hidden until its `visible_at`: the next receive moves those whose
/// time has come to [`READY`].
fn index_every_message(txn: &WriteTransaction) -> Result<(), Failure> {
    let messages = txn.open_table(MESSAGES)?;
    let mut index = Index::open(txn)?;
    for item in messages.iter()? {
        let (key, value) = item?;
        let message: StoredMessage = decode(value.value())?;
        index.hide(key.value(), &message.group_id, message.visible_at_ms)?;
    }
    Ok(())
}

/// The queue's indexes, open in one write transaction.
struct Index<'txn> {
    ready: Table<'txn, u64, &'static str>,
    hidden: Table<'txn, (i64, u64), &'static str>,
    hidden_by_group: Table<'txn, (&'static str, u64), ()>,
}

impl<'txn> Index<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, Failure> {
        Ok(Self {
            ready: txn.open_table(READY)?,
            hidden: txn.open_table(HIDDEN)?,
            hidden_by_group: txn.open_table(HIDDEN_BY_GROUP)?,
        })
    }

    fn make_ready(&mut self, seq: u64, group_id: &str) -> Result<(), Failure> {
        self.ready.insert(seq, group_id)?;
        Ok(())
    }

    fn hide(&mut self, seq: u64, group_id: &str, until_ms: i64) -> Result<(), Failure> {
        self.hidden.insert((until_ms, seq), group_id)?;
        self.hidden_by_group.insert((group_id, seq), ())?;
        Ok(())
    }

    /// Takes a message out of whichever index holds it.
    fn forget(&mut self, seq: u64, group_id: &str, visible_at_ms: i64) -> Result<(), Failure> {
        self.ready.remove(seq)?;
        self.hidden.remove((visible_at_ms, seq))?;
        self.hidden_by_group.remove((group_id, seq))?;
        Ok(())
    }

    /// Moves the messages visible at `now_ms` to [`READY`]; says whether any moved.
    fn reveal(&mut self, now_ms: i64) -> Result<bool, Failure> {
        let due: Vec<(i64, u64, String)> = self
            .hidden
            .range(..=(now_ms, u64::MAX))?
            .map(|item| {
                item.map(|(key, group)| {
                    let (at, seq) = key.value();
                    (at, seq, group.value().to_owned())
                })
            })
            .collect::<Result<_, _>>()?;
        for (at, seq, group_id) in &due {
            self.hidden.remove((*at, *seq))?;
            self.hidden_by_group.remove((group_id.as_str(), *seq))?;
            self.ready.insert(*seq, group_id.as_str())?;
        }
        Ok(!due.is_empty())
    }

    /// Whether a message of the group earlier than `seq` is hidden (after [`Index::reveal`]).
    fn group_blocked(&self, group_id: &str, seq: u64) -> Result<bool, Failure> {
        Ok(self
            .hidden_by_group
            .range((group_id, 0)..(group_id, seq))?
            .next()
            .is_some())
    }

    /// When the next hidden message becomes visible.
    fn next_visible(&self) -> Result<Option<i64>, Failure> {
        Ok(self.hidden.first()?.map(|(key, _)| key.value().0))
    }
}

/// The queue's attributes, as on an SQS queue and its redrive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// Deliveries before a message goes to the dead-letter queue (`maxReceiveCount`); at least 1.
    pub max_receives: u32,
    /// How long a deduplication id is remembered after its first enqueue.
    pub dedup_window: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
            dedup_window: Duration::from_secs(5 * 60),
        }
    }
}

/// How many messages the queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Visible now (some may wait behind their group's message in flight).
    pub visible: u64,
    /// Received and not yet settled, within their visibility timeout.
    pub in_flight: u64,
    /// Waiting for a retry delay.
    pub delayed: u64,
    /// In the dead-letter queue.
    pub dead_lettered: u64,
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub group_id: String,
    pub body: String,
    pub reason: String,
    pub receive_count: u32,
    pub dead_lettered_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MessageState {
    /// Never received, or redriven.
    Ready,
    /// Received; hidden until `visible_at` unless settled first.
    InFlight,
    /// Settled with a retry delay; hidden until `visible_at`.
    Delayed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMessage {
    message_id: String,
    group_id: String,
    dedup_id: String,
    body: String,
    receive_count: u32,
    state: MessageState,
    visible_at_ms: i64,
    /// The receipt of the latest delivery; only it can settle the message.
    receipt: Option<String>,
    enqueued_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDeadLetter {
    message_id: String,
    group_id: String,
    dedup_id: String,
    body: String,
    reason: String,
    receive_count: u32,
    dead_lettered_at_ms: i64,
}

impl StoredDeadLetter {
    fn of(message: StoredMessage, reason: &str, now_ms: i64) -> Self {
        Self {
            message_id: message.message_id,
            group_id: message.group_id,
            dedup_id: message.dedup_id,
            body: message.body,
            reason: reason.to_owned(),
            receive_count: message.receive_count,
            dead_lettered_at_ms: now_ms,
        }
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(record).map_err(|e| Failure::corrupt("a queue record cannot be encoded", e))
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::corrupt("a stored queue record is unreadable", e))
}

/// A job as it will be stored.
struct Outgoing {
    job_id: String,
    group_id: String,
    dedup_id: String,
    body: String,
}

/// The durable embedded queue. Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct EmbeddedQueue {
    db: EmbeddedDb,
    settings: QueueSettings,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("db", &self.db)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EmbeddedQueue {
    pub fn new(db: EmbeddedDb, settings: QueueSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            settings,
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    pub async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let now_ms = self.now_ms();
        let depth = self
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let messages = txn.open_table(MESSAGES)?;
                let hidden = txn.open_table(HIDDEN)?;
                let mut depth = QueueDepth {
                    dead_lettered: txn.open_table(DEAD_LETTERS)?.len()?,
                    visible: txn.open_table(READY)?.len()?,
                    ..QueueDepth::default()
                };
                // Only hidden messages are read: the ready ones are counted by their index.
                for item in hidden.iter()? {
                    let (key, _) = item?;
                    let (visible_at_ms, seq) = key.value();
                    if visible_at_ms <= now_ms {
                        depth.visible += 1;
                        continue;
                    }
                    let Some(value) = messages.get(seq)? else {
                        return Err(Failure::Corrupt(format!(
                            "queue message {seq} is indexed but missing"
                        )));
                    };
                    let message: StoredMessage = decode(value.value())?;
                    if message.state == MessageState::Delayed {
                        depth.delayed += 1;
                    } else {
                        depth.in_flight += 1;
                    }
                }
                Ok(depth)
            })
            .await?;
        Ok(depth)
    }

    /// The oldest `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let letters = self
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(DEAD_LETTERS)?;
                let mut letters = Vec::new();
                for item in table.iter()?.take(limit) {
                    let (_, value) = item?;
                    let stored: StoredDeadLetter = decode(value.value())?;
                    letters.push(DeadLetter {
                        message_id: stored.message_id,
                        group_id: stored.group_id,
                        body: stored.body,
                        reason: stored.reason,
                        receive_count: stored.receive_count,
                        dead_lettered_at: from_unix_ms(stored.dead_lettered_at_ms)?,
                    });
                }
                Ok(letters)
            })
            .await?;
        Ok(letters)
    }

    /// Moves the named dead letters back to the end of the queue, in their groups, with a
    /// fresh deduplication id and a receive count of zero. Unknown ids are ignored; returns how
    /// many messages moved.
    pub async fn redrive(&self, message_ids: &[String]) -> Result<usize, StoreError> {
        let message_ids = message_ids.to_vec();
        let now_ms = self.now_ms();
        let moved = self
            .db
            .run(move |db| {
                let txn = db.begin_write()?;
                let mut moved = 0;
                {
                    let mut messages = txn.open_table(MESSAGES)?;
                    let mut letters = txn.open_table(DEAD_LETTERS)?;
                    let mut letter_ids = txn.open_table(DEAD_LETTER_IDS)?;
                    let mut counters = txn.open_table(COUNTERS)?;
                    let mut index = Index::open(&txn)?;
                    let mut next_seq = counter(&counters, NEXT_MESSAGE)?;
                    for message_id in &message_ids {
                        let Some(letter_seq) =
                            letter_ids.remove(message_id.as_str())?.map(|v| v.value())
                        else {
                            continue;
                        };
                        let Some(stored) = letters.remove(letter_seq)? else {
                            return Err(Failure::Corrupt(format!(
                                "dead letter {message_id} is indexed but missing"
                            )));
                        };
                        let letter: StoredDeadLetter = decode(stored.value())?;
                        drop(stored);
                        let message = StoredMessage {
                            message_id: letter.message_id,
                            group_id: letter.group_id,
                            dedup_id: redrive_dedup_id(&letter.dedup_id),
                            body: letter.body,
                            receive_count: 0,
                            state: MessageState::Ready,
                            visible_at_ms: now_ms,
                            receipt: None,
                            enqueued_at_ms: now_ms,
                        };
                        messages.insert(next_seq, encode(&message)?.as_slice())?;
                        index.make_ready(next_seq, &message.group_id)?;
                        next_seq += 1;
                        moved += 1;
                    }
                    counters.insert(NEXT_MESSAGE, next_seq)?;
                }
                if moved > 0 {
                    txn.commit()?;
                }
                Ok(moved)
            })
            .await?;
        if moved > 0 {
            self.db.queue_changed().notify_waiters();
        }
        Ok(moved)
    }

    /// Sends a job body again at the end of its group with a fresh deduplication id (a job
    /// released from a hold, whose first message was consumed). Returns the new message id.
    pub async fn requeue(&self, group_id: &str, body: &str) -> Result<String, StoreError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(StoreError::BadRequest(format!(
                "the message is {} bytes, more than the {MAX_BODY_BYTES} a queue message may hold",
                body.len()
            )));
        }
        let now_ms = self.now_ms();
        let message_id = ulid::Ulid::new().to_string();
        let message = StoredMessage {
            message_id: message_id.clone(),
            group_id: group_id.to_owned(),
            dedup_id: format!("requeued-{message_id}"),
            body: body.to_owned(),
            receive_count: 0,
            state: MessageState::Ready,
            visible_at_ms: now_ms,
            receipt: None,
            enqueued_at_ms: now_ms,
        };
        self.db
            .run(move |db| {
                let txn = db.begin_write()?;
                {
                    let mut messages = txn.open_table(MESSAGES)?;
                    let mut counters = txn.open_table(COUNTERS)?;
                    let seq = counter(&counters, NEXT_MESSAGE)?;
                    messages.insert(seq, encode(&message)?.as_slice())?;
                    Index::open(&txn)?.make_ready(seq, &message.group_id)?;
                    counters.insert(NEXT_MESSAGE, seq + 1)?;
                }
                txn.commit()?;
                Ok(())
            })
            .await?;
        self.db.queue_changed().notify_waiters();
        Ok(message_id)
    }

    /// One attempt at receiving: delivers what is available now. When nothing is, also says
    /// when the next hidden message becomes visible.
    async fn receive_now(
        &self,
        max: usize,
    ) -> Result<(Vec<ReceivedMessage>, Option<i64>), Failure> {
        let now_ms = self.now_ms();
        let settings = self.settings.clone();
        self.db
            .run(move |db| deliver(db, &settings, now_ms, max))
            .await
    }
}

fn counter(table: &Table<&str, u64>, name: &str) -> Result<u64, Failure> {
    Ok(table.get(name)?.map(|v| v.value()).unwrap_or(0))
}

/// A redriven message must not be taken for a duplicate of itself, yet should still say which
/// event it came from.
fn redrive_dedup_id(original: &str) -> String {
    let base = original.split(".redrive.").next().unwrap_or(original);
    format!("{base}.redrive.{}", ulid::Ulid::new())
}

fn new_receipt(seq: u64) -> String {
    format!("{seq}-{:032x}", rand::random::<u128>())
}

fn receipt_seq(receipt: &str) -> Option<u64> {
    receipt
        .split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
}

/// Picks, marks and returns up to `max` deliverable messages in one write transaction.
fn deliver(
    db: &Database,
    settings: &QueueSettings,
    now_ms: i64,
    max: usize,
) -> Result<(Vec<ReceivedMessage>, Option<i64>), Failure> {
    if max == 0 {
        return Ok((Vec::new(), None));
    }
    let max_receives = settings.max_receives.max(1);
    let hidden_until = now_ms.saturating_add(duration_ms(settings.visibility_timeout));
    let mut txn = db.begin_write()?;
    // Not synced: losing it in a crash only means the message is delivered again.
    txn.set_durability(Durability::None);
    let mut delivered = Vec::new();
    let next_visible;
    let mut changed;
    {
        let mut messages = txn.open_table(MESSAGES)?;
        let mut index = Index::open(&txn)?;
        changed = index.reveal(now_ms)?;
        let mut deliveries: Vec<(u64, StoredMessage)> = Vec::new();
        let mut exhausted: Vec<(u64, StoredMessage)> = Vec::new();
        for item in index.ready.iter()? {
            let (key, group) = item?;
            let seq = key.value();
            // Messages delivered in this batch do not block their group: a batch may hold
            // several of a group's messages, in order.
            if index.group_blocked(group.value(), seq)? {
                continue;
            }
            let Some(value) = messages.get(seq)? else {
                return Err(Failure::Corrupt(format!(
                    "queue message {seq} is indexed but missing"
                )));
            };
            let mut message: StoredMessage = decode(value.value())?;
            if message.receive_count >= max_receives {
                // Out of receives: it leaves the queue, and its group moves on.
                exhausted.push((seq, message));
                continue;
            }
            message.receive_count += 1;
            message.state = MessageState::InFlight;
            message.visible_at_ms = hidden_until;
            message.receipt = Some(new_receipt(seq));
            deliveries.push((seq, message));
            if deliveries.len() >= max {
                break;
            }
        }

        if !exhausted.is_empty() {
            let mut letters = txn.open_table(DEAD_LETTERS)?;
            let mut letter_ids = txn.open_table(DEAD_LETTER_IDS)?;
            let mut counters = txn.open_table(COUNTERS)?;
            let mut next_letter = counter(&counters, NEXT_DEAD_LETTER)?;
            for (seq, message) in exhausted {
                messages.remove(seq)?;
                index.forget(seq, &message.group_id, message.visible_at_ms)?;
                tracing::warn!(
                    message_id = %message.message_id,
                    group_id = %message.group_id,
                    receive_count = message.receive_count,
                    "queue message moved to the dead-letter queue: {MAX_RECEIVES_REASON}"
                );
                let letter = StoredDeadLetter::of(message, MAX_RECEIVES_REASON, now_ms);
                letter_ids.insert(letter.message_id.as_str(), next_letter)?;
                letters.insert(next_letter, encode(&letter)?.as_slice())?;
                next_letter += 1;
            }
            counters.insert(NEXT_DEAD_LETTER, next_letter)?;
            changed = true;
        }

        for (seq, message) in deliveries {
            messages.insert(seq, encode(&message)?.as_slice())?;
            index.ready.remove(seq)?;
            index.hide(seq, &message.group_id, hidden_until)?;
            delivered.push(ReceivedMessage {
                receipt: message.receipt.unwrap_or_default(),
                message_id: message.message_id,
                group_id: message.group_id,
                dedup_id: message.dedup_id,
                body: message.body,
                receive_count: message.receive_count,
            });
            changed = true;
        }
        next_visible = index.next_visible()?;
    }
    if changed {
        txn.commit()?;
    }
    Ok((delivered, next_visible))
}

/// Forgets deduplication ids first enqueued at or before `expired_at_ms`.
fn forget_expired_dedup_ids(
    ids: &mut Table<&str, i64>,
    by_time: &mut Table<(i64, &str), ()>,
    expired_at_ms: i64,
) -> Result<(), Failure> {
    let expired: Vec<(i64, String)> = by_time
        .range(..=(expired_at_ms, "\u{10FFFF}"))?
        .map(|item| item.map(|(key, _)| (key.value().0, key.value().1.to_owned())))
        .collect::<Result<_, _>>()?;
    for (first_seen_ms, dedup_id) in expired {
        by_time.remove((first_seen_ms, dedup_id.as_str()))?;
        // The id may have been enqueued again since, under a newer time: keep that one.
        let current = ids.get(dedup_id.as_str())?.map(|v| v.value());
        if current == Some(first_seen_ms) {
            ids.remove(dedup_id.as_str())?;
        }
    }
    Ok(())
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let messages = jobs
            .iter()
            .map(|job| {
                job.to_message().map_err(|e| {
                    QueueError::Rejected(format!("job {} cannot be serialised: {e}", job.job_id))
                })
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        self.enqueue_messages(messages).await
    }

    async fn enqueue_messages(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let outgoing: Vec<Outgoing> = messages
            .into_iter()
            .map(|message| Outgoing {
                job_id: message.job_id,
                group_id: message.group_id,
                dedup_id: message.dedup_id,
                body: message.body,
            })
            .collect();
        let now_ms = self.now_ms();
        let window_ms = duration_ms(self.settings.dedup_window);
        let (enqueued, duplicates) = self
            .db
            .run(move |db| {
                let txn = begin_unsynced(db)?;
                let mut enqueued = 0usize;
                let mut duplicates = 0usize;
                {
                    let mut messages = txn.open_table(MESSAGES)?;
                    let mut dedup_ids = txn.open_table(DEDUP_IDS)?;
                    let mut dedup_by_time = txn.open_table(DEDUP_BY_TIME)?;
                    let mut counters = txn.open_table(COUNTERS)?;
                    let mut index = Index::open(&txn)?;
                    forget_expired_dedup_ids(
                        &mut dedup_ids,
                        &mut dedup_by_time,
                        now_ms.saturating_sub(window_ms),
                    )?;
                    let mut next_seq = counter(&counters, NEXT_MESSAGE)?;
                    for job in outgoing {
                        // Returning an error drops the transaction uncommitted: none of the
                        // batch is enqueued.
                        if job.body.len() > MAX_BODY_BYTES {
                            return Err(Failure::BadRequest(format!(
                                "job {} is {} bytes, more than the {MAX_BODY_BYTES} a queue message may hold",
                                job.job_id,
                                job.body.len()
                            )));
                        }
                        let first_seen = dedup_ids.get(job.dedup_id.as_str())?.map(|v| v.value());
                        if first_seen.is_some_and(|at| now_ms.saturating_sub(at) < window_ms) {
                            duplicates += 1;
                            continue;
                        }
                        dedup_ids.insert(job.dedup_id.as_str(), now_ms)?;
                        dedup_by_time.insert((now_ms, job.dedup_id.as_str()), ())?;
                        let message = StoredMessage {
                            message_id: ulid::Ulid::new().to_string(),
                            group_id: job.group_id,
                            dedup_id: job.dedup_id,
                            body: job.body,
                            receive_count: 0,
                            state: MessageState::Ready,
                            visible_at_ms: now_ms,
                            receipt: None,
                            enqueued_at_ms: now_ms,
                        };
                        messages.insert(next_seq, encode(&message)?.as_slice())?;
                        index.make_ready(next_seq, &message.group_id)?;
                        next_seq += 1;
                        enqueued += 1;
                    }
                    counters.insert(NEXT_MESSAGE, next_seq)?;
                }
                txn.commit()?;
                Ok((enqueued, duplicates))
            })
            .await?;
        // Durable before the caller (the webhook, then Salesforce) is told it is queued.
        self.db.sync().await?;
        if duplicates > 0 {
            tracing::debug!(
                enqueued,
                duplicates,
                "duplicate jobs accepted without enqueuing them again"
            );
        }
        if enqueued > 0 {
            self.db.queue_changed().notify_waiters();
        }
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for EmbeddedQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an enqueue between the look and the wait still
            // wakes this receiver.
            let changed = self.db.queue_changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let (batch, next_visible_ms) = self.receive_now(max).await?;
            if !batch.is_empty() || max == 0 {
                return Ok(batch);
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Ok(batch);
            }
            let until_visible = next_visible_ms.map(|at| {
                let ms = at.saturating_sub(self.now_ms()).max(1);
                Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
            });
            let nap = until_visible.map_or(remaining, |d| d.min(remaining));
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        let mut results = self
            .settle_many(&[(message.clone(), disposition.clone())])
            .await?;
        results.pop().unwrap_or(Ok(()))
    }
}

impl EmbeddedQueue {
    /// Settles a batch of received messages in one transaction: the worker's batch costs one
    /// commit instead of one per message. Each message gets its own result (an unknown or
    /// outdated receipt fails only that message); the outer error is the database's.
    pub async fn settle_many(
        &self,
        settlements: &[(ReceivedMessage, Disposition)],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let unknown = |message_id: &str| {
            QueueError::UnknownReceipt(format!(
                "message {message_id} was received again, settled, or never existed"
            ))
        };
        let now_ms = self.now_ms();
        let wanted: Vec<(Option<u64>, String, String, Disposition)> = settlements
            .iter()
            .map(|(message, disposition)| {
                (
                    receipt_seq(&message.receipt),
                    message.receipt.clone(),
                    message.message_id.clone(),
                    disposition.clone(),
                )
            })
            .collect();
        let settled = self
            .db
            .run(move |db| {
                let mut txn = db.begin_write()?;
                // Not synced: losing it in a crash only means the message is delivered again.
                txn.set_durability(Durability::None);
                let mut settled = Vec::with_capacity(wanted.len());
                for (seq, receipt, message_id, disposition) in wanted {
                    let done = match seq {
                        Some(seq) => {
                            settle_one(&txn, seq, &receipt, &message_id, disposition, now_ms)?
                        }
                        None => false,
                    };
                    settled.push((done, message_id));
                }
                if settled.iter().any(|(done, _)| *done) {
                    txn.commit()?;
                }
                Ok(settled)
            })
            .await?;
        if settled.iter().any(|(done, _)| *done) {
            // Groups are free again (or a zero delay made a message visible).
            self.db.queue_changed().notify_waiters();
        }
        Ok(settled
            .into_iter()
            .map(|(done, message_id)| {
                if done {
                    Ok(())
                } else {
                    Err(unknown(&message_id))
                }
            })
            .collect())
    }
}

impl EmbeddedQueue {
    /// How long a received message stays hidden.
    pub fn visibility_timeout(&self) -> Duration {
        self.settings.visibility_timeout
    }

    /// Keeps received messages hidden for another visibility timeout from now, as a consumer
    /// still working on them does on SQS with ChangeMessageVisibility, so a slow job is not
    /// delivered a second time (and charged a second attempt) while it runs. Returns how many it
    /// kept; one received again or settled since is left alone.
    pub async fn keep_hidden(&self, messages: &[ReceivedMessage]) -> Result<usize, QueueError> {
        let until_ms = self
            .now_ms()
            .saturating_add(duration_ms(self.settings.visibility_timeout));
        let wanted: Vec<(u64, String, String)> = messages
            .iter()
            .filter_map(|message| {
                receipt_seq(&message.receipt)
                    .map(|seq| (seq, message.receipt.clone(), message.message_id.clone()))
            })
            .collect();
        let kept = self
            .db
            .run(move |db| {
                let mut txn = db.begin_write()?;
                // Not synced: losing it in a crash only means the message is delivered again.
                txn.set_durability(Durability::None);
                let mut kept = 0;
                {
                    let mut stored_messages = txn.open_table(MESSAGES)?;
                    let mut index = Index::open(&txn)?;
                    for (seq, receipt, message_id) in wanted {
                        let Some(bytes) = stored_messages.get(seq)?.map(|v| v.value().to_vec())
                        else {
                            continue;
                        };
                        let mut stored: StoredMessage = decode(&bytes)?;
                        if stored.state != MessageState::InFlight
                            || stored.receipt.as_deref() != Some(receipt.as_str())
                            || stored.message_id != message_id
                        {
                            continue;
                        }
                        // Its timeout may have passed already: it is still ours until another
                        // receive takes it, so it leaves the ready index too.
                        index.forget(seq, &stored.group_id, stored.visible_at_ms)?;
                        stored.visible_at_ms = until_ms;
                        stored_messages.insert(seq, encode(&stored)?.as_slice())?;
                        index.hide(seq, &stored.group_id, until_ms)?;
                        kept += 1;
                    }
                }
                if kept > 0 {
                    txn.commit()?;
                }
                Ok(kept)
            })
            .await?;
        Ok(kept)
    }
}

/// Applies one disposition in `txn`; false when the receipt is not the message's current one.
fn settle_one(
    txn: &WriteTransaction,
    seq: u64,
    receipt: &str,
    message_id: &str,
    disposition: Disposition,
    now_ms: i64,
) -> Result<bool, Failure> {
    let mut messages = txn.open_table(MESSAGES)?;
    let Some(stored) = messages.get(seq)?.map(|v| v.value().to_vec()) else {
        return Ok(false);
    };
    let mut stored: StoredMessage = decode(&stored)?;
    if stored.receipt.as_deref() != Some(receipt) || stored.message_id != message_id {
        return Ok(false);
    }
    let mut index = Index::open(txn)?;
    index.forget(seq, &stored.group_id, stored.visible_at_ms)?;
    match disposition {
        Disposition::Done => {
            messages.remove(seq)?;
        }
        Disposition::RetryAfter(delay) => {
            stored.state = MessageState::Delayed;
            stored.visible_at_ms = now_ms.saturating_add(duration_ms(delay));
            stored.receipt = None;
            messages.insert(seq, encode(&stored)?.as_slice())?;
            index.hide(seq, &stored.group_id, stored.visible_at_ms)?;
        }
        Disposition::Postpone(delay) => {
            stored.state = MessageState::Delayed;
            stored.visible_at_ms = now_ms.saturating_add(duration_ms(delay));
            stored.receipt = None;
            // This delivery does not count towards maxReceiveCount.
            stored.receive_count = stored.receive_count.saturating_sub(1);
            messages.insert(seq, encode(&stored)?.as_slice())?;
            index.hide(seq, &stored.group_id, stored.visible_at_ms)?;
        }
        Disposition::DeadLetter { reason } => {
            messages.remove(seq)?;
            let mut letters = txn.open_table(DEAD_LETTERS)?;
            let mut letter_ids = txn.open_table(DEAD_LETTER_IDS)?;
            let mut counters = txn.open_table(COUNTERS)?;
            let letter_seq = counter(&counters, NEXT_DEAD_LETTER)?;
            let letter = StoredDeadLetter::of(stored, &reason, now_ms);
            letter_ids.insert(letter.message_id.as_str(), letter_seq)?;
            letters.insert(letter_seq, encode(&letter)?.as_slice())?;
            counters.insert(NEXT_DEAD_LETTER, letter_seq + 1)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashSet;

    use super::*;
    use crate::embedded::test_support::ManualClock;
    use crate::ids::SalesforceId;
    use crate::source::{EventSource, SourceUser};

    const NO_WAIT: Duration = Duration::ZERO;

    fn job(app: &str, user: &str, event_id: &str) -> Job {
        Job {
            v: crate::job::JOB_FORMAT_VERSION,
            job_id: ulid::Ulid::new().to_string(),
            app: app.to_owned(),
            event_id: event_id.to_owned(),
            source: EventSource::OutboundMessage,
            correlation_id: format!("corr-{event_id}"),
            received_at: time::macros::datetime!(2025-03-01 09:00:00 UTC),
            source_time: None,
            user: SourceUser::new(SalesforceId::parse(user).unwrap()),
        }
    }

    const ALICE: &str = "005000000000001";
    const BOB: &str = "005000000000002";

    struct Fixture {
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        queue: EmbeddedQueue,
    }

    impl Fixture {
        fn new() -> Self {
            Self::with(QueueSettings::default())
        }

        fn with(settings: QueueSettings) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new();
            let db = EmbeddedDb::open(dir.path()).unwrap();
            let queue = EmbeddedQueue::new(db, settings, clock.clone());
            Self { dir, clock, queue }
        }

        /// Drops the queue and its database, then opens the same directory again.
        fn restart(self) -> Self {
            let Self { dir, clock, queue } = self;
            let settings = queue.settings.clone();
            drop(queue);
            let db = EmbeddedDb::open(dir.path()).unwrap();
            let queue = EmbeddedQueue::new(db, settings, clock.clone());
            Self { dir, clock, queue }
        }

        async fn receive(&self, max: usize) -> Vec<ReceivedMessage> {
            self.queue.receive(max, NO_WAIT).await.unwrap()
        }

        async fn settle(&self, message: &ReceivedMessage, disposition: Disposition) {
            self.queue.settle(message, &disposition).await.unwrap();
        }
    }

    fn events(messages: &[ReceivedMessage]) -> Vec<String> {
        messages
            .iter()
            .map(|m| Job::from_body(&m.body).unwrap().event_id)
            .collect()
    }

    #[tokio::test]
    async fn an_enqueued_job_is_received_once_and_gone_once_done() {
        let f = Fixture::new();
        let sent = job("slack", ALICE, "04l1");
        f.queue.enqueue(std::slice::from_ref(&sent)).await.unwrap();

        let received = f.receive(10).await;
        assert_eq!(received.len(), 1);
        let message = &received[0];
        assert_eq!(Job::from_body(&message.body).unwrap(), sent);
        assert_eq!(message.group_id, sent.group_id());
        assert_eq!(message.dedup_id, sent.dedup_id());
        assert_eq!(message.receive_count, 1);
        assert!(
            f.receive(10).await.is_empty(),
            "an in-flight message is hidden"
        );

        f.settle(message, Disposition::Done).await;
        f.clock.advance(Duration::from_secs(60));
        assert!(f.receive(10).await.is_empty());
        assert_eq!(f.queue.depth().await.unwrap(), QueueDepth::default());
    }

    #[tokio::test]
    async fn a_duplicate_within_the_dedup_window_is_one_message() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "04l1")])
            .await
            .unwrap();
        f.clock.advance(Duration::from_secs(4 * 60));
        f.queue
            .enqueue(&[job("slack", ALICE, "04l1"), job("slack", ALICE, "04l1")])
            .await
            .unwrap();

        assert_eq!(f.queue.depth().await.unwrap().visible, 1);
    }

    #[tokio::test]
    async fn the_same_event_for_two_apps_is_two_messages() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "04l1"), job("github", ALICE, "04l1")])
            .await
            .unwrap();
        assert_eq!(f.queue.depth().await.unwrap().visible, 2);
    }

    #[tokio::test]
    async fn a_duplicate_after_the_dedup_window_is_a_second_message() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "04l1")])
            .await
            .unwrap();
        f.clock.advance(Duration::from_secs(5 * 60));
        f.queue
            .enqueue(&[job("slack", ALICE, "04l1")])
            .await
            .unwrap();
        assert_eq!(f.queue.depth().await.unwrap().visible, 2);
        // The window restarts from the second enqueue.
        f.clock.advance(Duration::from_secs(60));
        f.queue
            .enqueue(&[job("slack", ALICE, "04l1")])
            .await
            .unwrap();
        assert_eq!(f.queue.depth().await.unwrap().visible, 2);
    }

    #[tokio::test]
    async fn a_group_delivers_nothing_more_while_its_message_is_in_flight() {
        let f = Fixture::new();
        f.queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        let first = f.receive(10).await;
        assert_eq!(events(&first), ["a1"]);

        f.queue
            .enqueue(&[job("slack", ALICE, "a2"), job("slack", BOB, "b1")])
            .await
            .unwrap();
        // Alice's second change waits for her first; Bob's proceeds.
        assert_eq!(events(&f.receive(10).await), ["b1"]);
        assert!(f.receive(10).await.is_empty());

        f.settle(&first[0], Disposition::Done).await;
        assert_eq!(events(&f.receive(10).await), ["a2"]);
    }

    #[tokio::test]
    async fn one_batch_holds_a_groups_messages_in_order_and_interleaves_groups_in_enqueue_order() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[
                job("slack", ALICE, "a1"),
                job("slack", BOB, "b1"),
                job("slack", ALICE, "a2"),
                job("slack", BOB, "b2"),
                job("slack", ALICE, "a3"),
            ])
            .await
            .unwrap();
        assert_eq!(events(&f.receive(4).await), ["a1", "b1", "a2", "b2"]);
        // a3 waits behind a1 and a2, which are in flight.
        assert!(f.receive(10).await.is_empty());
    }

    #[tokio::test]
    async fn an_expired_visibility_timeout_delivers_the_message_again_with_receive_count_2() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        let first = f.receive(1).await;
        assert_eq!(first[0].receive_count, 1);

        f.clock.advance(Duration::from_secs(29));
        assert!(f.receive(10).await.is_empty());
        f.clock.advance(Duration::from_secs(1));
        let again = f.receive(1).await;
        assert_eq!(
            events(&again),
            ["a1"],
            "the group's order holds across redelivery"
        );
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt, first[0].receipt);
    }

    #[tokio::test]
    async fn a_message_kept_hidden_is_not_delivered_again_while_its_consumer_works_on_it() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", BOB, "b1")])
            .await
            .unwrap();
        let received = f.receive(10).await;
        assert_eq!(received.len(), 2);

        f.clock.advance(Duration::from_secs(20));
        assert_eq!(f.queue.keep_hidden(&received).await.unwrap(), 2);
        f.clock.advance(Duration::from_secs(20));
        assert!(
            f.receive(10).await.is_empty(),
            "40 s after the receive, 20 s after being kept hidden for 30 s more"
        );

        f.settle(&received[0], Disposition::Done).await;
        f.clock.advance(Duration::from_secs(10));
        let again = f.receive(10).await;
        assert_eq!(
            events(&again),
            ["b1"],
            "the unsettled one returns once its new timeout passes"
        );
        assert_eq!(again[0].receive_count, 2);
    }

    #[tokio::test]
    async fn keeping_hidden_reclaims_a_timed_out_message_only_until_it_is_received_again() {
        let f = Fixture::new();
        f.queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        let first = f.receive(1).await;

        f.clock.advance(Duration::from_secs(31));
        assert_eq!(
            f.queue.keep_hidden(&first).await.unwrap(),
            1,
            "timed out but not yet taken by another receive: still the consumer's"
        );
        assert!(f.receive(10).await.is_empty());

        f.clock.advance(Duration::from_secs(31));
        let second = f.receive(1).await;
        assert_eq!(second[0].receive_count, 2);
        assert_eq!(
            f.queue.keep_hidden(&first).await.unwrap(),
            0,
            "the first receipt no longer holds the message"
        );
        f.settle(&second[0], Disposition::Done).await;
        assert_eq!(f.queue.keep_hidden(&second).await.unwrap(), 0, "settled");
    }

    #[tokio::test]
    async fn retry_after_hides_the_message_and_its_group_for_the_delay() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        let first = f.receive(1).await;
        f.settle(&first[0], Disposition::RetryAfter(Duration::from_secs(120)))
            .await;
        assert_eq!(
            f.queue.depth().await.unwrap(),
            QueueDepth {
                visible: 1,
                delayed: 1,
                ..QueueDepth::default()
            }
        );

        f.clock.advance(Duration::from_secs(119));
        assert!(
            f.receive(10).await.is_empty(),
            "neither a1 nor a2 before the delay ends"
        );
        f.clock.advance(Duration::from_secs(1));
        let retried = f.receive(1).await;
        assert_eq!(events(&retried), ["a1"]);
        assert_eq!(
            retried[0].receive_count, 2,
            "a retry keeps the receive count"
        );
    }

    #[tokio::test]
    async fn a_postponed_message_waits_without_using_up_its_receives() {
        let f = Fixture::with(QueueSettings {
            max_receives: 2,
            ..QueueSettings::default()
        });
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        for _ in 0..5 {
            let received = f.receive(1).await;
            assert_eq!(events(&received), ["a1"]);
            assert_eq!(received[0].receive_count, 1);
            f.settle(&received[0], Disposition::Postpone(Duration::from_secs(60)))
                .await;
            f.clock.advance(Duration::from_secs(59));
            assert!(f.receive(10).await.is_empty(), "the group waits too");
            f.clock.advance(Duration::from_secs(1));
        }
        assert!(f.queue.dead_letters(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_batch_is_settled_in_one_call_and_an_outdated_receipt_fails_only_its_message() {
        let f = Fixture::new();
        let carol = "005000000000003";
        f.queue
            .enqueue(&[
                job("slack", ALICE, "a1"),
                job("slack", BOB, "b1"),
                job("slack", carol, "c1"),
            ])
            .await
            .unwrap();
        let received = f.receive(10).await;
        assert_eq!(events(&received), ["a1", "b1", "c1"]);
        let mut outdated = received[2].clone();
        outdated.receipt = format!("{}-0", receipt_seq(&outdated.receipt).unwrap());

        let results = f
            .queue
            .settle_many(&[
                (received[0].clone(), Disposition::Done),
                (
                    received[1].clone(),
                    Disposition::RetryAfter(Duration::from_secs(10)),
                ),
                (outdated, Disposition::Done),
            ])
            .await
            .unwrap();

        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(matches!(results[2], Err(QueueError::UnknownReceipt(_))));
        let depth = f.queue.depth().await.unwrap();
        assert_eq!((depth.in_flight, depth.delayed), (1, 1), "{depth:?}");
        f.clock.advance(Duration::from_secs(31));
        assert_eq!(events(&f.receive(10).await), ["b1", "c1"]);
    }

    #[tokio::test]
    async fn a_message_received_max_receives_times_goes_to_the_dead_letter_queue() {
        let f = Fixture::with(QueueSettings {
            max_receives: 3,
            ..QueueSettings::default()
        });
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        for attempt in 1..=3 {
            let received = f.receive(1).await;
            assert_eq!(events(&received), ["a1"]);
            assert_eq!(received[0].receive_count, attempt);
            f.clock.advance(Duration::from_secs(30));
        }
        // The fourth time a1 would be delivered, it is dead-lettered and its group moves on.
        assert_eq!(events(&f.receive(10).await), ["a2"]);
        let letters = f.queue.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(Job::from_body(&letters[0].body).unwrap().event_id, "a1");
        assert_eq!(letters[0].reason, "maxReceiveCount exceeded");
        assert_eq!(letters[0].receive_count, 3);
        assert_eq!(letters[0].group_id, job("slack", ALICE, "a1").group_id());
        assert_eq!(letters[0].dead_lettered_at, f.clock.now());
        assert_eq!(f.queue.depth().await.unwrap().dead_lettered, 1);
    }

    #[tokio::test]
    async fn settling_as_dead_letter_moves_the_message_now_with_the_reason() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        let first = f.receive(1).await;
        f.settle(
            &first[0],
            Disposition::DeadLetter {
                reason: "http_400: bad userName".to_owned(),
            },
        )
        .await;

        let letters = f.queue.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].message_id, first[0].message_id);
        assert_eq!(letters[0].reason, "http_400: bad userName");
        assert_eq!(letters[0].receive_count, 1);
        assert_eq!(
            events(&f.receive(10).await),
            ["a2"],
            "the group is free again"
        );
    }

    #[tokio::test]
    async fn redrive_puts_dead_letters_back_in_their_group_with_a_fresh_dedup_id() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", BOB, "b1")])
            .await
            .unwrap();
        for message in f.receive(10).await {
            f.settle(
                &message,
                Disposition::DeadLetter {
                    reason: "target down".to_owned(),
                },
            )
            .await;
        }
        let letters = f.queue.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 2);

        let alice_letter = letters
            .iter()
            .find(|l| l.group_id == job("slack", ALICE, "x").group_id())
            .unwrap();
        let moved = f
            .queue
            .redrive(&[
                alice_letter.message_id.clone(),
                "no-such-message".to_owned(),
            ])
            .await
            .unwrap();
        assert_eq!(moved, 1);
        assert_eq!(f.queue.dead_letters(10).await.unwrap().len(), 1);

        let redriven = f.receive(10).await;
        assert_eq!(events(&redriven), ["a1"]);
        assert_eq!(redriven[0].group_id, alice_letter.group_id);
        assert_eq!(redriven[0].receive_count, 1);
        assert_ne!(redriven[0].dedup_id, job("slack", ALICE, "a1").dedup_id());
        assert!(
            redriven[0]
                .dedup_id
                .starts_with(&job("slack", ALICE, "a1").dedup_id())
        );
        assert_eq!(
            f.queue
                .redrive(std::slice::from_ref(&alice_letter.message_id))
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn messages_survive_a_restart_and_in_flight_ones_return_after_their_timeout() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[
                job("slack", ALICE, "a1"),
                job("slack", BOB, "b1"),
                job("slack", BOB, "b2"),
            ])
            .await
            .unwrap();
        let in_flight = f.receive(1).await;
        assert_eq!(events(&in_flight), ["a1"]);
        let b1 = f.receive(1).await;
        f.settle(
            &b1[0],
            Disposition::DeadLetter {
                reason: "kept".to_owned(),
            },
        )
        .await;

        let f = f.restart();
        assert_eq!(
            f.queue.depth().await.unwrap(),
            QueueDepth {
                visible: 1,
                in_flight: 1,
                delayed: 0,
                dead_lettered: 1
            }
        );
        let b2 = f.receive(10).await;
        assert_eq!(events(&b2), ["b2"]);
        f.settle(&b2[0], Disposition::Done).await;
        f.clock.advance(Duration::from_secs(30));
        let again = f.receive(10).await;
        assert_eq!(events(&again), ["a1"]);
        assert_eq!(again[0].receive_count, 2);

        // Deduplication ids survive too.
        f.queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        assert_eq!(f.queue.depth().await.unwrap().visible, 0);
    }

    #[tokio::test]
    async fn a_queue_written_without_the_indexes_is_indexed_when_opened() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[
                job("slack", ALICE, "a1"),
                job("slack", ALICE, "a2"),
                job("slack", BOB, "b1"),
            ])
            .await
            .unwrap();
        let in_flight = f.receive(1).await;
        assert_eq!(events(&in_flight), ["a1"]);
        // What an earlier version left on disk: the messages, no indexes, no marker.
        f.queue
            .db
            .run(|db| {
                let txn = db.begin_write()?;
                txn.delete_table(READY)?;
                txn.delete_table(HIDDEN)?;
                txn.delete_table(HIDDEN_BY_GROUP)?;
                txn.open_table(COUNTERS)?.remove(INDEXED)?;
                txn.commit()?;
                Ok(())
            })
            .await
            .unwrap();

        let f = f.restart();
        assert_eq!(
            f.queue.depth().await.unwrap(),
            QueueDepth {
                visible: 2,
                in_flight: 1,
                ..QueueDepth::default()
            }
        );
        let b1 = f.receive(10).await;
        assert_eq!(events(&b1), ["b1"], "a2 waits behind a1");
        f.settle(&b1[0], Disposition::Done).await;
        f.clock.advance(Duration::from_secs(30));
        let again = f.receive(10).await;
        assert_eq!(events(&again), ["a1", "a2"]);
        assert_eq!(again[0].receive_count, 2);
    }

    #[tokio::test]
    async fn a_settled_message_whose_timeout_had_passed_leaves_no_trace_in_the_indexes() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        let first = f.receive(1).await;
        f.clock.advance(Duration::from_secs(31));
        // The timeout passed, but nobody received a1 again: its receipt still settles it.
        f.settle(&first[0], Disposition::Done).await;
        assert_eq!(events(&f.receive(10).await), ["a2"]);
        assert_eq!(
            f.queue.depth().await.unwrap(),
            QueueDepth {
                in_flight: 1,
                ..QueueDepth::default()
            }
        );
    }

    #[tokio::test]
    async fn a_stale_receipt_cannot_settle_the_message() {
        let f = Fixture::new();
        f.queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        let first = f.receive(1).await.remove(0);
        f.clock.advance(Duration::from_secs(30));
        let second = f.receive(1).await.remove(0);

        let error = f
            .queue
            .settle(&first, &Disposition::Done)
            .await
            .unwrap_err();
        assert!(matches!(error, QueueError::UnknownReceipt(_)), "{error}");
        f.settle(&second, Disposition::Done).await;
        let error = f
            .queue
            .settle(&second, &Disposition::Done)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QueueError::UnknownReceipt(_)),
            "settled twice: {error}"
        );
        let forged = ReceivedMessage {
            receipt: "garbage".to_owned(),
            ..second
        };
        assert!(matches!(
            f.queue.settle(&forged, &Disposition::Done).await,
            Err(QueueError::UnknownReceipt(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_receivers_never_get_the_same_message() {
        let f = Fixture::new();
        let jobs: Vec<Job> = (0..40)
            .map(|i| job("slack", &format!("0050000000{i:05}"), &format!("e{i}")))
            .collect();
        f.queue.enqueue(&jobs).await.unwrap();

        let mut tasks = Vec::new();
        for _ in 0..6 {
            let queue = f.queue.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = queue.receive(3, NO_WAIT).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| m.message_id));
                }
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!(all.len(), 40);
        assert_eq!(distinct.len(), 40);
    }

    #[tokio::test]
    async fn a_batch_with_one_unacceptable_job_enqueues_nothing() {
        let f = Fixture::new();
        let mut too_big = job("slack", BOB, "b1");
        too_big
            .user
            .fields
            .insert("AboutMe".to_owned(), "x".repeat(MAX_BODY_BYTES).into());
        let error = f
            .queue
            .enqueue(&[
                job("slack", ALICE, "a1"),
                too_big,
                job("slack", ALICE, "a2"),
            ])
            .await
            .unwrap_err();
        assert!(matches!(error, QueueError::Rejected(_)), "{error}");
        assert_eq!(f.queue.depth().await.unwrap(), QueueDepth::default());
        // Nor were the accepted jobs' dedup ids remembered.
        f.queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        assert_eq!(f.queue.depth().await.unwrap().visible, 1);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_an_enqueue() {
        let f = Fixture::new();
        let queue = f.queue.clone();
        let waiting = tokio::spawn(async move { queue.receive(10, Duration::from_secs(20)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        f.queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        let received = waiting.await.unwrap().unwrap();
        assert_eq!(events(&received), ["a1"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_when_the_group_is_settled() {
        let f = Fixture::new();
        f.queue
            .enqueue(&[job("slack", ALICE, "a1"), job("slack", ALICE, "a2")])
            .await
            .unwrap();
        let first = f.receive(1).await;
        let queue = f.queue.clone();
        let waiting = tokio::spawn(async move { queue.receive(10, Duration::from_secs(20)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        f.settle(&first[0], Disposition::Done).await;
        assert_eq!(events(&waiting.await.unwrap().unwrap()), ["a2"]);
    }

    #[tokio::test]
    async fn a_receiver_with_nothing_to_receive_returns_empty_after_the_wait() {
        let f = Fixture::new();
        let started = std::time::Instant::now();
        let received = f
            .queue
            .receive(10, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(received.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_waiting_receiver_gets_a_message_whose_visibility_expires_during_the_wait() {
        // The system clock: the wait must wake at the expiry, not at the end of the wait.
        let dir = tempfile::tempdir().unwrap();
        let settings = QueueSettings {
            visibility_timeout: Duration::from_millis(300),
            ..QueueSettings::default()
        };
        let queue = EmbeddedQueue::new(
            EmbeddedDb::open(dir.path()).unwrap(),
            settings,
            Arc::new(crate::ports::SystemClock),
        );
        queue.enqueue(&[job("slack", ALICE, "a1")]).await.unwrap();
        let first = queue.receive(1, NO_WAIT).await.unwrap();
        assert_eq!(first.len(), 1);
        let started = std::time::Instant::now();
        let again = queue.receive(1, Duration::from_secs(20)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
