//! The webhook binary as Lambda runs it: started behind a local Runtime API, with moto as AWS,
//! it handles a 100-notification Outbound Message and queues one job per notification. This
//! keeps the benchmark probe (`infra/scripts/bench-lambdas.sh`) working; the figures it prints
//! here are for a debug build and are not asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use userprov_tests::lambda_probe::{Function, ProbeEnv, markdown_table};

#[tokio::test]
async fn the_webhook_binary_acknowledges_a_100_notification_message_behind_the_runtime_api() {
    let env = ProbeEnv::start(&[Function::Webhook]).await;
    // The probe checks the answer itself (HTTP 200, a SOAP ack, 100 jobs in the queue) and
    // panics with the function's output otherwise.
    let measurement = env
        .measure(
            Function::Webhook,
            Path::new(env!("CARGO_BIN_EXE_userprov-webhook")),
            1,
        )
        .await;
    assert_eq!(measurement.samples.len(), 1);
    let sample = measurement.samples[0];
    assert!(sample.peak_hwm_kib > 0, "{sample:?}");
    println!("{}", markdown_table(&[measurement]));
}
