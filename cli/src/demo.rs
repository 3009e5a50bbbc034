//! `userprov demo`: the whole pipeline on one machine, with the mock target.

use std::path::PathBuf;
use std::time::Duration;

use userprov_core::log::{LogEntry, LogQuery, LogStatus};
use userprov_core::ports::LogStore;

use crate::render::log_table;
use crate::stack::{RunningStack, StackOptions};

/// The sample Outbound Messages, in the order they are sent.
pub const DEMO_MESSAGES: &[(&str, &str)] = &[
    (
        "three joiners",
        include_str!("../../infra/events/outbound/01-joiners.xml"),
    ),
    (
        "a mover (new department and title)",
        include_str!("../../infra/events/outbound/02-mover.xml"),
    ),
    (
        "a leaver",
        include_str!("../../infra/events/outbound/03-leaver.xml"),
    ),
    (
        "the leaver returns",
        include_str!("../../infra/events/outbound/04-returner.xml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Stack(#[from] crate::stack::StackError),
    #[error("the webhook refused {step}: HTTP {status}: {body}")]
    Refused {
        step: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach the webhook: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the worker did not finish within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the provisioning log: {0}")]
    Log(String),
    #[error("{0} job(s) did not succeed; see the table above")]
    Failures(usize),
}

/// Runs the demo against a fresh data directory and prints what happened.
pub async fn run(data_dir: PathBuf) -> Result<(), DemoError> {
    let stack = RunningStack::start(StackOptions {
        bind: ([127, 0, 0, 1], 0).into(),
        config: None,
        data_dir,
        mock_target: true,
        workers: 2,
    })
    .await?;
    println!(
        "userprov demo: webhook, worker and log API on {}, mock SCIM target at {}{}",
        stack.base_url(),
        stack.base_url(),
        crate::stack::MOCK_TARGET_PATH
    );
    let result = send_and_report(&stack).await;
    stack.shutdown().await;
    result
}

async fn send_and_report(stack: &RunningStack) -> Result<(), DemoError> {
    let http = reqwest::Client::new();
    let wait = Duration::from_secs(60);
    for (step, body) in DEMO_MESSAGES {
        let response = http
            .post(stack.webhook_url())
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(*body)
            .send()
            .await?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Err(DemoError::Refused {
                step: (*step).to_owned(),
                status,
                body,
            });
        }
        println!("  sent {step}: Salesforce acknowledged (HTTP {status})");
        if !stack.wait_idle(wait).await {
            return Err(DemoError::Timeout(wait));
        }
    }

    let mut entries = all_entries(stack).await?;
    entries.reverse();
    println!("\nProvisioning log (oldest first):");
    println!("{}", log_table(&entries));

    if let Some(mock) = &stack.mock {
        println!("\nAccounts in the mock target:");
        for user in mock.users() {
            println!(
                "  {:<32} active={}",
                user.get("userName").and_then(|v| v.as_str()).unwrap_or("?"),
                user.get("active")
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into())
            );
        }
    }
    println!(
        "\nNext: `userprov serve --mock-target` keeps this running; post a message with\n  \
         curl -H 'content-type: text/xml' --data-binary @infra/events/outbound/01-joiners.xml <Outbound Message URL>\n\
         and query the log with curl 'http://127.0.0.1:8787/logs?user=james.okafor@acme.example'"
    );
    let failures = entries
        .iter()
        .filter(|e| !matches!(e.status, LogStatus::Success | LogStatus::Skipped))
        .count();
    if failures > 0 {
        return Err(DemoError::Failures(failures));
    }
    Ok(())
}

async fn all_entries(stack: &RunningStack) -> Result<Vec<LogEntry>, DemoError> {
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = stack
            .store
            .query(&LogQuery {
                limit: 500,
                cursor,
                ..LogQuery::default()
            })
            .await
            .map_err(|e| DemoError::Log(e.to_string()))?;
        entries.extend(page.entries);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(entries),
        }
    }
}
