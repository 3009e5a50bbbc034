//! AWS resources for tests, made in moto the way the SAM template makes them.

use serde_json::json;
use userprov_aws::SqsQueue;
use userprov_aws::aws_sdk_sqs::types::QueueAttributeName;

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A FIFO job queue with a FIFO dead-letter queue behind a redrive policy, as the template makes
/// them. `max_message_bytes` lowers the queue's message size limit.
pub async fn fifo_queue_pair(
    client: &userprov_aws::aws_sdk_sqs::Client,
    max_message_bytes: Option<u32>,
) -> SqsQueue {
    let name = unique("jobs");
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let mut request = client
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string(),
        );
    if let Some(bytes) = max_message_bytes {
        request = request.attributes(QueueAttributeName::MaximumMessageSize, bytes.to_string());
    }
    let queue_url = request
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    SqsQueue::new(client.clone(), queue_url, Some(dlq_url))
}
