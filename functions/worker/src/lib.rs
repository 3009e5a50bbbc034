//! The worker Lambda's handler: an SQS batch in, the core worker run on it, and a partial batch
//! response out. Backoff is a visibility change; dead-lettering is an explicit send to the DLQ.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use userprov_aws::{Postponed, SqsQueue};
use userprov_core::ports::{Disposition, ReceivedMessage};
use userprov_core::worker::Worker;

/// Turns an SQS record into the core's message; a record without an id cannot be reported and
/// is left to the queue's own retry.
pub fn received(record: &SqsMessage) -> Option<ReceivedMessage> {
    let attribute = |name: &str| record.attributes.get(name).cloned().unwrap_or_default();
    Some(ReceivedMessage {
        message_id: record.message_id.clone()?,
        receipt: record.receipt_handle.clone().unwrap_or_default(),
        group_id: attribute("MessageGroupId"),
        dedup_id: attribute("MessageDeduplicationId"),
        body: record.body.clone().unwrap_or_default(),
        receive_count: attribute("ApproximateReceiveCount").parse().unwrap_or(1),
    })
}

pub struct Handler {
    pub worker: Arc<Worker>,
    pub queue: SqsQueue,
}

impl Handler {
    /// Handles one SQS batch. Messages reported as failures come back after their visibility
    /// timeout (set here for backoff); every later message of a failed group is reported too.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let messages: Vec<ReceivedMessage> = event.records.iter().filter_map(received).collect();
        let dispositions = self.worker.handle_batch(&messages).await;
        let mut response = SqsBatchResponse::default();
        for (message, disposition) in messages.iter().zip(dispositions) {
            let failed = match disposition {
                Disposition::Done => false,
                Disposition::RetryAfter(delay) => {
                    if let Err(error) = self.queue.change_visibility(&message.receipt, delay).await
                    {
                        tracing::warn!(%error, message_id = %message.message_id, "cannot set the retry delay; the queue's visibility timeout applies");
                    }
                    true
                }
                Disposition::Postpone(delay) => match self.queue.postpone(message, delay).await {
                    Ok(Postponed::Hidden) => true,
                    Ok(Postponed::Replaced) => false,
                    Err(error) => {
                        tracing::warn!(%error, message_id = %message.message_id, "cannot postpone the message; the queue's visibility timeout applies");
                        true
                    }
                },
                Disposition::DeadLetter { reason } => {
                    match self.queue.send_to_dlq(message, &reason).await {
                        Ok(()) => false,
                        Err(error) => {
                            // Reported as failed: it comes back, and the redrive policy moves it to
                            // the DLQ once it has used up its receives.
                            tracing::error!(%error, message_id = %message.message_id, "cannot move the message to the dead-letter queue");
                            true
                        }
                    }
                }
            };
            if failed {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}
