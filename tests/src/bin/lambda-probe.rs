//! Measures the Lambda functions' cold init and peak memory on this machine; see
//! `userprov_tests::lambda_probe`. `infra/scripts/bench-lambdas.sh` runs it on the stripped
//! release binaries and writes the figures into `docs/performance.md`.
//!
//! ```sh
//! lambda-probe --spawns 20 --webhook W/bootstrap --worker K/bootstrap --log-api L/bootstrap
//! ```
//!
//! Progress goes to stderr; the Markdown table of results to stdout. Any failed invocation
//! stops it with the function's output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use clap::Parser;
use userprov_tests::lambda_probe::{Function, ProbeEnv, markdown_table};

#[derive(Parser)]
#[command(
    about = "Cold init and peak memory of userprov's Lambda binaries, behind a local Runtime API"
)]
struct Args {
    /// Spawns per function; each handles one fresh event.
    #[arg(long, default_value_t = 20)]
    spawns: usize,
    /// The webhook binary.
    #[arg(long)]
    webhook: Option<PathBuf>,
    /// The worker binary.
    #[arg(long)]
    worker: Option<PathBuf>,
    /// The log API binary (run last, so it reads what the worker logged).
    #[arg(long)]
    log_api: Option<PathBuf>,
    /// NAME=VALUE set on every function, over the environment Lambda gives it (repeatable): to
    /// measure a setting, e.g. `--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt`.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let functions: Vec<(Function, PathBuf)> = [
        (Function::Webhook, args.webhook),
        (Function::Worker, args.worker),
        (Function::LogApi, args.log_api),
    ]
    .into_iter()
    .filter_map(|(function, path)| path.map(|p| (function, p)))
    .collect();
    assert!(
        !functions.is_empty(),
        "give at least one of --webhook, --worker, --log-api"
    );
    assert!(args.spawns > 0, "--spawns must be at least 1");
    eprintln!("lambda-probe: starting moto (and scim2-server for the worker)");
    let wanted: Vec<Function> = functions.iter().map(|(f, _)| *f).collect();
    let mut env = ProbeEnv::start(&wanted).await;
    for (name, value) in &args.env {
        env.set_env(name, value);
    }
    let mut measurements = Vec::new();
    for (function, binary) in functions {
        eprintln!(
            "lambda-probe: {} ({}), {} spawns, each handling: {}",
            function.name(),
            binary.display(),
            args.spawns,
            function.event_description()
        );
        measurements.push(env.measure(function, &binary, args.spawns).await);
    }
    print!("{}", markdown_table(&measurements));
}
