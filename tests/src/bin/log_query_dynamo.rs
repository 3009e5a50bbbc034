//! Benchmark: the log queries of `benches/log_query.rs` on the DynamoDB log store, against a
//! moto server holding the same synthetic log (`userprov_core::synthetic_log`).
//!
//!   cargo run --release -p userprov-tests --bin log_query_dynamo -- [entries] [runs]
//!
//! Defaults: 100,000 entries, 5 runs per query. It loads the table with BatchWriteItem, then
//! times the first page of each query through `DynamoLogStore::query`, the code the log API
//! runs. moto answers a query on a global secondary index by reading every item of the table
//! in Python, so its times grow with the table: they measure moto, not DynamoDB, which reads
//! only the key range (the printed "items on the page" is what a page costs there).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use userprov_aws::{DynamoLogStore, schema};
use userprov_core::log::LogEntry;
use userprov_core::ports::{Clock, LogStore};
use userprov_core::synthetic_log::{SPAN, START, entry, queries};
use userprov_tests::peers::moto::Moto;

/// "Now" just after the synthetic log's last entry, so the retention hides none of it.
struct AfterTheLog;

impl Clock for AfterTheLog {
    fn now(&self) -> OffsetDateTime {
        START + SPAN + Duration::from_secs(3600)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(100_000, |a| a.parse().expect("entries"));
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("runs"));

    let moto = Moto::start();
    let client = userprov_aws::aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    schema::create_tables(&client, "bench-links", "bench-log")
        .await
        .unwrap();
    // 100 days: the 90-day log, all visible.
    let store = Arc::new(
        DynamoLogStore::new(
            client,
            "bench-log".into(),
            Duration::from_secs(100 * 86_400),
        )
        .with_clock(Arc::new(AfterTheLog)),
    );

    let started = Instant::now();
    let chunk = 2_500u64;
    let writers = 4u64;
    let mut n = 0;
    while n < total {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let from = n + w * chunk;
            let to = (from + chunk).min(total);
            if from >= to {
                break;
            }
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let entries: Vec<LogEntry> = (from..to).map(|i| entry(i, total)).collect();
                store.append_many(&entries).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        n = (n + writers * chunk).min(total);
        eprint!("\rloaded {n}/{total}");
    }
    eprintln!();
    println!(
        "loaded {total} entries into moto in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for (name, query) in queries() {
        let first = store.query(&query).await.unwrap();
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            std::hint::black_box(store.query(&query).await.unwrap());
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "{name}: {} items on the first page; median {:.1} ms, slowest {:.1} ms ({runs} runs)",
            first.entries.len(),
            times[runs / 2].as_secs_f64() * 1000.0,
            times[runs - 1].as_secs_f64() * 1000.0
        );
    }
}
