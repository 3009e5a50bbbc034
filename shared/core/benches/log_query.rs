//! Log queries over a large embedded store: the first page of one user's entries, and of one
//! app's failures in one day, against 1,000,000 entries (goal: each at most 50 ms).
//!
//! `cargo bench -p userprov-core --bench log_query` builds the store once in a temporary
//! directory (a few minutes), then times each query. `USERPROV_BENCH_ENTRIES=20000` runs a
//! quick version. A plain timing loop, like the other benches; it prints the figures.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use userprov_core::embedded::{EmbeddedDb, EmbeddedStore};
use userprov_core::log::{LogEntry, LogQuery};
use userprov_core::ports::LogStore;
use userprov_core::synthetic_log::{entry, queries};

async fn time_query(
    store: &EmbeddedStore,
    name: &str,
    query: &LogQuery,
) -> Result<(), Box<dyn Error>> {
    let first = store.query(query).await?;
    let runs = 50;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        black_box(store.query(black_box(query)).await?);
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[runs / 2];
    let worst = times[runs - 1];
    println!(
        "{name}: {} entries on the first page; median {:.2} ms, slowest {:.2} ms ({runs} runs)",
        first.entries.len(),
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let total: u64 = std::env::var("USERPROV_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::new(EmbeddedDb::open(dir.path())?);

    let started = Instant::now();
    let batch = 10_000;
    let mut n = 0;
    while n < total {
        let end = (n + batch).min(total);
        let entries: Vec<LogEntry> = (n..end).map(|i| entry(i, total)).collect();
        store.append_many(&entries).await?;
        n = end;
    }
    let size = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>();
    println!(
        "built a store of {total} entries in {:.1} s ({:.0} MB on disk)",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    for (name, query) in queries() {
        time_query(&store, name, &query).await?;
    }
    Ok(())
}
