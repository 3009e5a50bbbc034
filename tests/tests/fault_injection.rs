//! The proof of the reliability guarantees: 500 users' life cycles through a real `userprov
//! serve` process that is killed and restarted, into scim2-server behind a proxy faulting 30% of
//! requests. Nothing is lost, nothing is duplicated, every user ends in their newest state, and
//! only the users designed to fail are in the dead-letter queue.
//!
//! The same driver runs bigger: `USERPROV_BINARY=target/release/userprov cargo run -p userprov-tests
//! --bin chaos -- --users 10000 --kills 8` (see `tests/src/bin/chaos.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use userprov_tests::chaos::{ChaosSettings, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_faults_and_kills_every_user_converges_once_and_only_designed_failures_dead_letter() {
    let report = run(ChaosSettings::ci()).await;
    println!("{report}");

    assert!(report.quiescent, "the queue did not empty:\n{report}");
    assert!(
        report.kills > 0 && report.faults.total() > 0,
        "no fault was injected:\n{report}"
    );
    assert_eq!(
        report.differing,
        Vec::<String>::new(),
        "users whose final state differs:\n{report}"
    );
    assert_eq!(
        report.duplicate_accounts,
        Vec::<String>::new(),
        "duplicate accounts:\n{report}"
    );
    assert_eq!(
        report.events_without_terminal_entry,
        Vec::<String>::new(),
        "events without a terminal log entry:\n{report}"
    );
    assert_eq!(
        report.dead_lettered, report.designed_failures,
        "the dead-letter queue must hold exactly the jobs designed to fail:\n{report}"
    );
}
