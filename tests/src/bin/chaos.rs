//! The fault-injection run from the command line, for runs bigger than CI's:
//!
//! ```sh
//! cargo build --release -p userprov-cli --bin userprov
//! USERPROV_BINARY=target/release/userprov \
//!   cargo run -p userprov-tests --bin chaos -- --users 10000 --fault-rate 0.3 --kills 8
//! ```
//!
//! The driver runs in either profile (`cargo build --release -p userprov-tests --bin chaos` for
//! a release one). It drives the `userprov` that `USERPROV_BINARY` names (by default the one of
//! its own profile, built first).
//!
//! Options: `--users N` (500), `--failing N` (5), `--fault-rate R` (0.3), `--kills N` (4),
//! `--workers N` (8), `--senders N` (8), `--seed N` (7), `--drain-timeout-secs N` (600).
//! Exits 1 when any guarantee is broken.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;
use std::time::Duration;

use userprov_tests::chaos::{ChaosSettings, run};

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
    let value = value.unwrap_or_else(|| panic!("{flag} needs a value"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{flag}: {value:?} is not a valid value"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut settings = ChaosSettings::ci();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--users" => settings.users = parse(&flag, args.next()),
            "--failing" => settings.failing_users = parse(&flag, args.next()),
            "--fault-rate" => settings.fault_rate = parse(&flag, args.next()),
            "--kills" => settings.kills = parse(&flag, args.next()),
            "--workers" => settings.workers = parse(&flag, args.next()),
            "--senders" => settings.senders = parse(&flag, args.next()),
            "--seed" => settings.seed = parse(&flag, args.next()),
            "--drain-timeout-secs" => {
                settings.drain_timeout = Duration::from_secs(parse(&flag, args.next()));
            }
            other => {
                eprintln!(
                    "unknown option {other}; see the comment at the top of tests/src/bin/chaos.rs"
                );
                return ExitCode::from(2);
            }
        }
    }
    let report = run(settings).await;
    println!("{report}");
    let ok = report.quiescent
        && report.differing.is_empty()
        && report.duplicate_accounts.is_empty()
        && report.events_without_terminal_entry.is_empty()
        && report.dead_letters_are_the_designed_failures();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
