//! Worker metrics as CloudWatch Embedded Metric Format (EMF): one JSON line per job attempt on
//! stdout, which CloudWatch Logs turns into metrics without an API call. Off unless the function
//! is told to print them (`USERPROV_EMF_METRICS=true`, set by template.yaml); `userprov serve`
//! never prints them.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::error::ErrorClass;
use crate::log::{LogEntry, LogStatus, Operation};

/// The CloudWatch namespace of userprov's metrics.
pub const NAMESPACE: &str = "userprov";

/// What one job attempt counts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMetrics {
    pub app: String,
    /// The attempt succeeded (status `success`).
    pub successes: u32,
    /// The job ended failed or dead-lettered.
    pub failures: u32,
    /// The attempt failed and will be retried.
    pub retries: u32,
    /// The job was sent to the dead-letter queue.
    pub dead_letters: u32,
    /// A deactivation was held by the guard.
    pub holds: u32,
    /// The class of the failure or retry.
    pub error_class: Option<ErrorClass>,
    /// From the change in Salesforce to the write in the target, for successful writes.
    pub latency_ms: Option<u64>,
}

impl JobMetrics {
    /// The metrics of an attempt from its log entry; `dead_lettered` when the queue is told to
    /// dead-letter the message, `source_time` when the event says when the change happened.
    pub fn of(entry: &LogEntry, dead_lettered: bool, source_time: Option<OffsetDateTime>) -> Self {
        let wrote = entry.status == LogStatus::Success
            && !matches!(entry.operation, Operation::Noop | Operation::Skip);
        let latency_ms = source_time.filter(|_| wrote).map(|changed| {
            let millis = (entry.time - changed).whole_milliseconds().max(0);
            u64::try_from(millis).unwrap_or(u64::MAX)
        });
        Self {
            app: entry.app.clone(),
            successes: u32::from(entry.status == LogStatus::Success),
            failures: u32::from(matches!(
                entry.status,
                LogStatus::Failed | LogStatus::DeadLettered
            )),
            retries: u32::from(entry.status == LogStatus::Retrying),
            dead_letters: u32::from(dead_lettered),
            holds: u32::from(entry.status == LogStatus::Held),
            error_class: entry.error.as_ref().map(|e| e.class),
            latency_ms,
        }
    }

    /// The EMF record: counts by app and in all, failures and retries also by error class.
    pub fn to_emf(&self, now: OffsetDateTime) -> Value {
        let timestamp = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let count = |name: &str| json!({"Name": name, "Unit": "Count"});
        let mut metrics = vec![
            count("Successes"),
            count("Failures"),
            count("Retries"),
            count("DeadLetters"),
            count("Holds"),
        ];
        let mut record = Map::new();
        record.insert("App".into(), json!(self.app));
        record.insert("Successes".into(), json!(self.successes));
        record.insert("Failures".into(), json!(self.failures));
        record.insert("Retries".into(), json!(self.retries));
        record.insert("DeadLetters".into(), json!(self.dead_letters));
        record.insert("Holds".into(), json!(self.holds));
        // 0 or 100 per finished job: its average over a period is the failure rate, which an
        // alarm can watch without metric math (not every CloudWatch implementation has it).
        if self.successes + self.failures > 0 {
            metrics.push(json!({"Name": "FailedPercent", "Unit": "Percent"}));
            let failed_percent = if self.failures > 0 { 100 } else { 0 };
            record.insert("FailedPercent".into(), json!(failed_percent));
        }
        if let Some(latency) = self.latency_ms {
            metrics.push(json!({"Name": "ProvisioningLatency", "Unit": "Milliseconds"}));
            record.insert("ProvisioningLatency".into(), json!(latency));
        }
        let mut directives = vec![json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["App"], []],
            "Metrics": metrics,
        })];
        if let Some(class) = self
            .error_class
            .filter(|_| self.failures + self.retries > 0)
        {
            record.insert("ErrorClass".into(), json!(class.as_str()));
            directives.push(json!({
                "Namespace": NAMESPACE,
                "Dimensions": [["ErrorClass"], ["App", "ErrorClass"]],
                "Metrics": [count("Failures"), count("Retries")],
            }));
        }
        record.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp, "CloudWatchMetrics": directives}),
        );
        Value::Object(record)
    }
}

/// Where EMF records go: stdout on Lambda, a buffer in tests.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, record: &Value);
}

/// Prints each record as one line on stdout, where the Lambda runtime hands it to CloudWatch.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutEmf;

impl MetricsSink for StdoutEmf {
    fn emit(&self, record: &Value) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A lost metric line must never fail a job.
        let _ = writeln!(out, "{record}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::ErrorInfo;
    use time::macros::datetime;

    fn entry(status: LogStatus, operation: Operation, error: Option<ErrorClass>) -> LogEntry {
        serde_json::from_value::<LogEntry>(json!({
            "id": "01JQ0000000000000000000000", "time": "2025-03-17T09:30:02.500Z", "app": "slack",
            "user_id": "0058a00000LmN2pAAF", "username": null, "event_id": "e-1",
            "source": "outbound_message", "correlation_id": "c-1",
            "operation": operation.as_str(), "status": status.as_str(), "attempt": 1,
            "http_status": null, "target_id": null, "reason": null, "error": null,
            "request": null, "response": null, "duration_ms": 12
        }))
        .map(|mut e| {
            e.error = error.map(|class| ErrorInfo {
                class,
                code: "http_503".into(),
                message: "unavailable".into(),
            });
            e
        })
        .unwrap()
    }

    const CHANGED: OffsetDateTime = datetime!(2025-03-17 09:30:00 UTC);
    const NOW: OffsetDateTime = datetime!(2025-03-17 09:30:03 UTC);

    #[test]
    fn a_successful_write_counts_once_with_its_latency_from_the_salesforce_change() {
        let metrics = JobMetrics::of(
            &entry(LogStatus::Success, Operation::Update, None),
            false,
            Some(CHANGED),
        );
        let record = metrics.to_emf(NOW);
        assert_eq!(
            record,
            json!({
                "_aws": {
                    "Timestamp": 1_742_203_803_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "userprov",
                        "Dimensions": [["App"], []],
                        "Metrics": [
                            {"Name": "Successes", "Unit": "Count"},
                            {"Name": "Failures", "Unit": "Count"},
                            {"Name": "Retries", "Unit": "Count"},
                            {"Name": "DeadLetters", "Unit": "Count"},
                            {"Name": "Holds", "Unit": "Count"},
                            {"Name": "FailedPercent", "Unit": "Percent"},
                            {"Name": "ProvisioningLatency", "Unit": "Milliseconds"}
                        ]
                    }]
                },
                "App": "slack", "Successes": 1, "Failures": 0, "Retries": 0,
                "DeadLetters": 0, "Holds": 0, "FailedPercent": 0, "ProvisioningLatency": 2500
            })
        );
    }

    #[test]
    fn every_metric_named_in_a_directive_is_a_number_at_the_root() {
        for (status, dead) in [
            (LogStatus::Success, false),
            (LogStatus::Retrying, false),
            (LogStatus::DeadLettered, true),
            (LogStatus::Failed, true),
            (LogStatus::Held, false),
        ] {
            let class = (status != LogStatus::Success && status != LogStatus::Held)
                .then_some(ErrorClass::Transient);
            let record = JobMetrics::of(
                &entry(status, Operation::Create, class),
                dead,
                Some(CHANGED),
            )
            .to_emf(NOW);
            for directive in record["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                for metric in directive["Metrics"].as_array().unwrap() {
                    let name = metric["Name"].as_str().unwrap();
                    assert!(record[name].is_number(), "{status:?}: {name} in {record}");
                }
                for set in directive["Dimensions"].as_array().unwrap() {
                    for dimension in set.as_array().unwrap() {
                        let name = dimension.as_str().unwrap();
                        assert!(record[name].is_string(), "{status:?}: {name} in {record}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_failure_counts_by_error_class_and_a_dead_letter_send_is_counted() {
        let metrics = JobMetrics::of(
            &entry(
                LogStatus::DeadLettered,
                Operation::Update,
                Some(ErrorClass::Transient),
            ),
            true,
            Some(CHANGED),
        );
        assert_eq!(
            (metrics.failures, metrics.dead_letters, metrics.latency_ms),
            (1, 1, None)
        );
        let record = metrics.to_emf(NOW);
        assert_eq!(record["ErrorClass"], "transient");
        assert_eq!(
            record["_aws"]["CloudWatchMetrics"][1]["Dimensions"],
            json!([["ErrorClass"], ["App", "ErrorClass"]])
        );
    }

    #[test]
    fn retries_holds_and_noops_count_as_what_they_are() {
        let retry = JobMetrics::of(
            &entry(
                LogStatus::Retrying,
                Operation::Create,
                Some(ErrorClass::Transient),
            ),
            false,
            None,
        );
        assert_eq!((retry.retries, retry.failures, retry.successes), (1, 0, 0));
        let held = JobMetrics::of(
            &entry(LogStatus::Held, Operation::Deactivate, None),
            false,
            None,
        );
        assert_eq!((held.holds, held.successes), (1, 0));
        let noop = JobMetrics::of(
            &entry(LogStatus::Skipped, Operation::Noop, None),
            false,
            Some(CHANGED),
        );
        assert_eq!(
            noop,
            JobMetrics {
                app: "slack".into(),
                ..JobMetrics::default()
            }
        );
        assert!(noop.to_emf(NOW).get("ErrorClass").is_none());
    }
}
