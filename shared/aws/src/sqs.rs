//! The job queue on SQS FIFO.
//!
//! Jobs go out in `SendMessageBatch` requests of ten. SQS answers a batch request per entry, so
//! a request that succeeded may still have refused some of its entries: every entry of every
//! answer is checked, the refused ones are sent again (a few times, briefly), and anything still
//! refused is reported as [`QueueError::Partial`], so that the webhook does not acknowledge
//! Salesforce. Sending an entry again is safe: its deduplication id makes it one message.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use userprov_core::job::{Job, JobMessage};
use userprov_core::log::truncate_response;
use userprov_core::ports::{Disposition, JobQueue, QueueConsumer, QueueError, ReceivedMessage};

use crate::sdk_error::{describe, error_code};

/// SQS takes at most ten entries per batch request.
const BATCH_SIZE: usize = 10;
/// Tries per batch entry that SQS refused through no fault of ours (throttling, internal errors).
const ENTRY_TRIES: u32 = 3;
/// The first pause before sending refused entries again; each later pause is four times longer.
const ENTRY_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest retry delay: SQS refuses to hide a message for more than 12 hours counted from
/// its receipt, and the worker may have held it for up to a Lambda's 15 minutes by then.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60 - 15 * 60);
/// SQS's longest receive batch and long-poll wait.
const MAX_RECEIVE: usize = 10;
const MAX_WAIT: Duration = Duration::from_secs(20);

/// Message attributes of a dead-lettered message.
pub const REASON_ATTRIBUTE: &str = "userprov-dead-letter-reason";
pub const SOURCE_MESSAGE_ID_ATTRIBUTE: &str = "userprov-source-message-id";
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "userprov-receive-count";
/// How much of a dead-letter reason travels with the message.
const MAX_REASON_BYTES: usize = 1024;

/// Error codes that mean the request itself is wrong: sending it again cannot help.
const REJECTED_CODES: &[&str] = &[
    "InvalidParameterValue",
    "InvalidMessageContents",
    "BatchRequestTooLong",
    "MissingParameter",
    "InvalidAttributeValue",
    "InvalidBatchEntryId",
    "BatchEntryIdsNotDistinct",
    "TooManyEntriesInBatchRequest",
    "EmptyBatchRequest",
];
const NO_QUEUE_CODES: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];
const BAD_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "InvalidIdFormat",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// An SQS queue (FIFO for jobs) and, optionally, its dead-letter queue. Clones share the
/// client and the request counter.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: Option<String>,
    send_batch_calls: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("queue_url", &self.queue_url)
            .field("dlq_url", &self.dlq_url)
            .finish()
    }
}

/// How [`SqsQueue::postpone`] put a message back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postponed {
    /// Hidden for the delay: report it as a batch item failure so SQS keeps it.
    Hidden,
    /// Replaced by a fresh copy and deleted: the original is done.
    Replaced,
}

/// A message read from the dead-letter queue, with the reason it was put there (absent when SQS
/// moved it by its redrive policy rather than userprov).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message: ReceivedMessage,
    pub reason: Option<String>,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String, dlq_url: Option<String>) -> Self {
        Self {
            client,
            queue_url,
            dlq_url,
            send_batch_calls: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    /// How many `SendMessageBatch` requests this queue (and its clones) has made, retries
    /// included.
    pub fn send_batch_calls(&self) -> u64 {
        self.send_batch_calls.load(Ordering::Relaxed)
    }

    /// The dead-letter queue as a queue of its own, to settle what [`Self::dead_letters`] read.
    pub fn dead_letter_queue(&self) -> Option<SqsQueue> {
        self.dlq_url
            .as_ref()
            .map(|url| SqsQueue::new(self.client.clone(), url.clone(), None))
    }

    /// Makes a received message visible again after `delay`, at most 11¾ hours (SQS allows 12
    /// from the receipt).
    pub async fn change_visibility(
        &self,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let delay = delay.min(MAX_VISIBILITY);
        // Round up: a retry must not come back before the delay asked for.
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        let seconds = i32::try_from(seconds).unwrap_or(i32::MAX);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| self.error("ChangeMessageVisibility", &e))?;
        Ok(())
    }

    /// Deletes a received message: it has been handled for good.
    pub async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.error("DeleteMessage", &e))?;
        Ok(())
    }

    /// Moves a message to the dead-letter queue now: the same body and message group, the
    /// reason as a message attribute; then deletes it from this queue.
    pub async fn send_to_dlq(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let Some(dlq_url) = &self.dlq_url else {
            return Err(QueueError::Unavailable(format!(
                "no dead-letter queue is configured for {}",
                self.queue_url
            )));
        };
        let reason = if reason.trim().is_empty() {
            "no reason given"
        } else {
            reason
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(dlq_url)
            .message_body(&message.body)
            .message_attributes(
                REASON_ATTRIBUTE,
                string_attribute(&truncate_response(reason, MAX_REASON_BYTES))?,
            )
            .message_attributes(
                SOURCE_MESSAGE_ID_ATTRIBUTE,
                string_attribute(&message.message_id)?,
            )
            .message_attributes(
                RECEIVE_COUNT_ATTRIBUTE,
                number_attribute(message.receive_count)?,
            );
        if dlq_url.ends_with(".fifo") {
            let group_id = if message.group_id.is_empty() {
                "userprov"
            } else {
                message.group_id.as_str()
            };
            // Not the job's deduplication id: that id may still be inside the 5-minute window
            // of a redrive. The source message id is fresh, and stays the same if this message
            // is dead-lettered twice because the delete below failed.
            request = request
                .message_group_id(group_id)
                .message_deduplication_id(&message.message_id);
        }
        request.send().await.map_err(|e| {
            let error = queue_error(dlq_url, "SendMessage", &e);
            tracing::error!(queue = %dlq_url, error = %error, "cannot dead-letter a message");
            error
        })?;
        self.delete(&message.receipt).await
    }

    /// Sends a copy of a received message (from this queue or its dead-letter queue) to this
    /// queue: the same body and message group, under a fresh deduplication id, so that SQS
    /// neither drops it as a duplicate of the original nor carries over its receive count.
    pub async fn send_copy(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&message.body);
        if self.queue_url.ends_with(".fifo") {
            let group_id = if message.group_id.is_empty() {
                "userprov"
            } else {
                message.group_id.as_str()
            };
            request = request
                .message_group_id(group_id)
                .message_deduplication_id(ulid::Ulid::new().to_string());
        }
        request
            .send()
            .await
            .map_err(|e| self.error("SendMessage", &e))?;
        Ok(())
    }

    /// Puts a message back without using up its receives (the app's circuit is open). SQS
    /// counts every receive and a FIFO queue cannot delay one message, so: on its first
    /// receive the message is hidden for `delay`; on a later one it is replaced by a fresh copy
    /// (receive count 0), which the next receive hides for the delay. A paused job thus never
    /// counts more than one receive, at the price of going behind the later messages of its
    /// group, which the planner orders by their Salesforce time anyway.
    pub async fn postpone(
        &self,
        message: &ReceivedMessage,
        delay: Duration,
    ) -> Result<Postponed, QueueError> {
        if message.receive_count <= 1 {
            self.change_visibility(&message.receipt, delay).await?;
            return Ok(Postponed::Hidden);
        }
        self.send_copy(message).await?;
        self.delete(&message.receipt).await?;
        Ok(Postponed::Replaced)
    }

    /// Reads up to `max` messages from the dead-letter queue, waiting up to `wait` for the first.
    pub async fn dead_letters(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let Some(dlq_url) = &self.dlq_url else {
            return Ok(Vec::new());
        };
        self.receive_from(dlq_url, max, wait, true).await
    }

    async fn receive_from(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        with_reason: bool,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i32::try_from(max.min(MAX_RECEIVE)).unwrap_or(1);
        let wait = i32::try_from(wait.min(MAX_WAIT).as_secs()).unwrap_or(0);
        let mut request = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::MessageDeduplicationId);
        if with_reason {
            request = request.message_attribute_names(REASON_ATTRIBUTE);
        }
        let output = request
            .send()
            .await
            .map_err(|e| queue_error(queue_url, "ReceiveMessage", &e))?;
        let mut received = Vec::new();
        for message in output.messages() {
            let (Some(message_id), Some(receipt)) =
                (message.message_id(), message.receipt_handle())
            else {
                return Err(QueueError::Unavailable(format!(
                    "ReceiveMessage on {queue_url} answered a message without an id or receipt handle"
                )));
            };
            let system = |name: MessageSystemAttributeName| {
                message
                    .attributes()
                    .and_then(|attributes| attributes.get(&name))
                    .cloned()
            };
            let receive_count = system(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            let reason = message
                .message_attributes()
                .and_then(|attributes| attributes.get(REASON_ATTRIBUTE))
                .and_then(|value| value.string_value())
                .map(str::to_owned);
            received.push(DeadLetter {
                message: ReceivedMessage {
                    message_id: message_id.to_owned(),
                    receipt: receipt.to_owned(),
                    group_id: system(MessageSystemAttributeName::MessageGroupId)
                        .unwrap_or_default(),
                    dedup_id: system(MessageSystemAttributeName::MessageDeduplicationId)
                        .unwrap_or_default(),
                    body: message.body().unwrap_or_default().to_owned(),
                    receive_count,
                },
                reason,
            });
        }
        Ok(received)
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        action: &str,
        err: &SdkError<E, R>,
    ) -> QueueError {
        queue_error(&self.queue_url, action, err)
    }
}

fn queue_error<E, R>(queue_url: &str, action: &str, err: &SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = describe(err);
    match error_code(err) {
        Some(code) if NO_QUEUE_CODES.contains(&code) => QueueError::Unavailable(format!(
            "the queue {queue_url} does not exist ({action}: {detail})"
        )),
        Some(code) if REJECTED_CODES.contains(&code) => {
            QueueError::Rejected(format!("{action}: {detail}"))
        }
        Some(code) if BAD_RECEIPT_CODES.contains(&code) => {
            QueueError::UnknownReceipt(format!("{action}: {detail}"))
        }
        _ => QueueError::Unavailable(format!("{action} on {queue_url}: {detail}")),
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| QueueError::Rejected(e.to_string()))
}

fn number_attribute(value: u32) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(value.to_string())
        .build()
        .map_err(|e| QueueError::Rejected(e.to_string()))
}

/// One job ready to send: its batch entry id is its index in the enqueued slice.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OutgoingJob {
    entry_id: String,
    body: String,
    group_id: String,
    dedup_id: String,
}

/// SQS's answer to one batch request.
#[derive(Debug, Default)]
struct BatchAnswer {
    accepted: HashSet<String>,
    refused: Vec<RefusedEntry>,
}

#[derive(Debug, Clone)]
struct RefusedEntry {
    entry_id: String,
    /// SQS's flag: the entry itself is at fault, sending it again cannot help.
    sender_fault: bool,
    reason: String,
}

/// Sends one batch request. The queue implements it; the unit tests script it.
trait BatchSender {
    async fn send_batch(&self, jobs: &[OutgoingJob]) -> Result<BatchAnswer, QueueError>;
}

impl BatchSender for SqsQueue {
    async fn send_batch(&self, jobs: &[OutgoingJob]) -> Result<BatchAnswer, QueueError> {
        self.send_batch_calls.fetch_add(1, Ordering::Relaxed);
        let entries = jobs
            .iter()
            .map(|job| {
                SendMessageBatchRequestEntry::builder()
                    .id(&job.entry_id)
                    .message_body(&job.body)
                    .message_group_id(&job.group_id)
                    .message_deduplication_id(&job.dedup_id)
                    .build()
                    .map_err(|e| QueueError::Rejected(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error("SendMessageBatch", &e))?;
        Ok(BatchAnswer {
            accepted: output
                .successful()
                .iter()
                .map(|entry| entry.id().to_owned())
                .collect(),
            refused: output
                .failed()
                .iter()
                .map(|entry| RefusedEntry {
                    entry_id: entry.id().to_owned(),
                    sender_fault: entry.sender_fault(),
                    reason: match entry.message() {
                        Some(message) => format!("{}: {message}", entry.code()),
                        None => entry.code().to_owned(),
                    },
                })
                .collect(),
        })
    }
}

/// Sends every job, ten per request, and sends refused entries again while that can help.
async fn send_all(sender: &impl BatchSender, jobs: &[OutgoingJob]) -> Result<(), QueueError> {
    let total = jobs.len();
    let mut accepted = 0;
    for chunk in jobs.chunks(BATCH_SIZE) {
        let mut pending = chunk.to_vec();
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = match sender.send_batch(&pending).await {
                Ok(answer) => answer,
                // The SDK has already retried what is worth retrying. Earlier batches are in
                // the queue, so the caller must hear that only some jobs were accepted.
                Err(error) if accepted > 0 => {
                    return Err(QueueError::Partial {
                        accepted,
                        total,
                        reason: error.to_string(),
                    });
                }
                Err(error) => return Err(error),
            };
            // Every entry sent must come back accepted; one missing from both lists of the
            // answer counts as refused, for a reason SQS did not give.
            let mut refused = Vec::new();
            for job in &pending {
                if answer.accepted.contains(&job.entry_id) {
                    accepted += 1;
                    continue;
                }
                let why = answer
                    .refused
                    .iter()
                    .find(|r| r.entry_id == job.entry_id)
                    .cloned()
                    .unwrap_or_else(|| RefusedEntry {
                        entry_id: job.entry_id.clone(),
                        sender_fault: false,
                        reason: "missing from the SendMessageBatch answer".to_owned(),
                    });
                refused.push((job.clone(), why));
            }
            let Some((first_job, first_reason)) = refused.first() else {
                break;
            };
            let hopeless = refused.iter().any(|(_, why)| why.sender_fault);
            if hopeless || tries >= ENTRY_TRIES {
                let reason = format!(
                    "{} job(s) refused after {tries} tries; job {} (group {}): {}",
                    refused.len(),
                    first_job.entry_id,
                    first_job.group_id,
                    first_reason.reason
                );
                tracing::warn!(accepted, total, reason = %reason, "the queue refused some jobs");
                return Err(QueueError::Partial {
                    accepted,
                    total,
                    reason,
                });
            }
            tokio::time::sleep(ENTRY_RETRY_PAUSE * 4u32.pow(tries - 1)).await;
            pending = refused.into_iter().map(|(job, _)| job).collect();
        }
    }
    Ok(())
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let messages = jobs
            .iter()
            .enumerate()
            .map(|(index, job)| {
                job.to_message().map_err(|e| {
                    QueueError::Rejected(format!("job {index} cannot be written as JSON: {e}"))
                })
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        self.enqueue_messages(messages).await
    }

    async fn enqueue_messages(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        let outgoing: Vec<OutgoingJob> = messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| OutgoingJob {
                entry_id: index.to_string(),
                body: message.body,
                group_id: message.group_id,
                dedup_id: message.dedup_id,
            })
            .collect();
        send_all(self, &outgoing).await
    }
}

#[async_trait]
impl QueueConsumer for SqsQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let received = self.receive_from(&self.queue_url, max, wait, false).await?;
        Ok(received.into_iter().map(|letter| letter.message).collect())
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        match disposition {
            Disposition::Done => self.delete(&message.receipt).await,
            Disposition::RetryAfter(delay) => {
                self.change_visibility(&message.receipt, *delay).await
            }
            Disposition::DeadLetter { reason } => self.send_to_dlq(message, reason).await,
            Disposition::Postpone(delay) => self.postpone(message, *delay).await.map(|_| ()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// What the scripted queue does with one request: refuse these entry ids (with SQS's
    /// sender-fault flag), or fail the whole request.
    enum Step {
        Refuse(Vec<(&'static str, bool)>),
        Drop(Vec<&'static str>),
        Fail,
    }

    #[derive(Default)]
    struct ScriptedQueue {
        script: Mutex<VecDeque<Step>>,
        requests: Mutex<Vec<Vec<String>>>,
    }

    impl ScriptedQueue {
        fn new(steps: Vec<Step>) -> Self {
            Self {
                script: Mutex::new(steps.into()),
                requests: Mutex::default(),
            }
        }
        fn requests(&self) -> Vec<Vec<String>> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl BatchSender for ScriptedQueue {
        async fn send_batch(&self, jobs: &[OutgoingJob]) -> Result<BatchAnswer, QueueError> {
            let ids: Vec<String> = jobs.iter().map(|j| j.entry_id.clone()).collect();
            self.requests.lock().unwrap().push(ids.clone());
            let step = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Refuse(vec![]));
            let mut answer = BatchAnswer::default();
            match step {
                Step::Fail => return Err(QueueError::Unavailable("throttled".into())),
                Step::Refuse(refused) => {
                    for id in ids {
                        match refused.iter().find(|(r, _)| *r == id) {
                            Some((_, sender_fault)) => answer.refused.push(RefusedEntry {
                                entry_id: id,
                                sender_fault: *sender_fault,
                                reason: "InternalError".into(),
                            }),
                            None => {
                                answer.accepted.insert(id);
                            }
                        }
                    }
                }
                Step::Drop(dropped) => {
                    answer.accepted = ids
                        .into_iter()
                        .filter(|id| !dropped.contains(&id.as_str()))
                        .collect();
                }
            }
            Ok(answer)
        }
    }

    fn jobs(n: usize) -> Vec<OutgoingJob> {
        (0..n)
            .map(|i| OutgoingJob {
                entry_id: i.to_string(),
                body: format!("{{\"n\":{i}}}"),
                group_id: format!("app.user{i}"),
                dedup_id: format!("dedup{i}"),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_five_jobs_take_three_requests() {
        let queue = ScriptedQueue::new(vec![]);
        send_all(&queue, &jobs(25)).await.unwrap();
        let sizes: Vec<usize> = queue.requests().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_refused_entries_are_sent_again() {
        let queue = ScriptedQueue::new(vec![Step::Refuse(vec![("3", false), ("7", false)])]);
        send_all(&queue, &jobs(10)).await.unwrap();
        let requests = queue.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1], vec!["3".to_owned(), "7".to_owned()]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_missing_from_the_answer_counts_as_refused() {
        let queue = ScriptedQueue::new(vec![Step::Drop(vec!["5"])]);
        send_all(&queue, &jobs(10)).await.unwrap();
        assert_eq!(queue.requests()[1], vec!["5".to_owned()]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_refused_three_times_makes_the_enqueue_partial() {
        let refuse_4 = || Step::Refuse(vec![("4", false)]);
        let queue = ScriptedQueue::new(vec![refuse_4(), refuse_4(), refuse_4()]);
        let error = send_all(&queue, &jobs(12)).await.unwrap_err();
        match error {
            QueueError::Partial {
                accepted,
                total,
                reason,
            } => {
                assert_eq!((accepted, total), (9, 12));
                assert!(reason.contains("job 4"), "{reason}");
            }
            other => panic!("expected Partial, got {other:?}"),
        }
        // Three tries of the first batch; the second batch is never sent.
        assert_eq!(queue.requests().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_at_fault_is_not_sent_again() {
        let queue = ScriptedQueue::new(vec![Step::Refuse(vec![("2", true)])]);
        let error = send_all(&queue, &jobs(10)).await.unwrap_err();
        assert!(
            matches!(
                error,
                QueueError::Partial {
                    accepted: 9,
                    total: 10,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(queue.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_after_accepted_batches_is_partial() {
        let queue = ScriptedQueue::new(vec![Step::Refuse(vec![]), Step::Fail]);
        let error = send_all(&queue, &jobs(25)).await.unwrap_err();
        assert!(
            matches!(
                error,
                QueueError::Partial {
                    accepted: 10,
                    total: 25,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_first_request_is_the_queue_error_itself() {
        let queue = ScriptedQueue::new(vec![Step::Fail]);
        let error = send_all(&queue, &jobs(3)).await.unwrap_err();
        assert!(matches!(error, QueueError::Unavailable(_)), "{error:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_jobs_make_no_request() {
        let queue = ScriptedQueue::new(vec![]);
        send_all(&queue, &[]).await.unwrap();
        assert!(queue.requests().is_empty());
    }
}
