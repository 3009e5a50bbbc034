//! Benchmark: the log queries of `benches/log_query.rs` on the DynamoDB log store, against a
//! moto server holding the same synthetic log (`userprov_core::synthetic_log`).
//!
//!   cargo run --release -p userprov-tests --bin log_query_dynamo -- [entries] [runs]
//!
//! Defaults: 100,000 entries, 5 runs per query. It loads the table with BatchWriteItem, then
//! times the first page of each query through `DynamoLogStore::query`, the code the log API
//! runs. moto answers a query on a global secondary index by reading every item of the table
//! in Python, so its times grow with the table: they measure moto, not DynamoDB, which reads
//! only the key range. What a page costs on DynamoDB is the number of Query requests it takes
//! (each reads at most 200 items of one index key range), printed per query.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use userprov_aws::aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use userprov_aws::aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
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

/// Counts the requests sent to DynamoDB.
#[derive(Debug, Clone, Default)]
struct RequestCounter(Arc<AtomicU64>);

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "request-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(100_000, |a| a.parse().expect("entries"));
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("runs"));

    let moto = Moto::start();
    let requests = RequestCounter::default();
    let client = userprov_aws::aws_sdk_dynamodb::Client::from_conf(
        userprov_aws::aws_sdk_dynamodb::config::Builder::from(&moto.sdk_config().await)
            .interceptor(requests.clone())
            .build(),
    );
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
        let before = requests.0.load(Ordering::SeqCst);
        let first = store.query(&query).await.unwrap();
        let calls = requests.0.load(Ordering::SeqCst) - before;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            std::hint::black_box(store.query(&query).await.unwrap());
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "{name}: {} entries on the first page from {calls} Query request(s); median {:.1} ms, slowest {:.1} ms ({runs} runs)",
            first.entries.len(),
            times[runs / 2].as_secs_f64() * 1000.0,
            times[runs - 1].as_secs_f64() * 1000.0
        );
    }
}
