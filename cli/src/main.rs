//! `userprov`: provision accounts in connected apps from Salesforce, on one machine or on AWS.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use userprov_cli::admin;
use userprov_cli::aws::ResourceOption::{self, LinksTable, LogTable, QueueUrl};
use userprov_cli::stack::{RunningStack, StackOptions};
use userprov_core::config::Config;
use userprov_core::source_file;

/// Exit codes scripts can rely on, printed in `--help` (and in the README).
macro_rules! exit_codes {
    () => {
        "Exit codes:\n  0  done\n  1  failed: a store, queue, stack or app could not be read or written, a job or a\n     preview failed, a hold id was not found\n  2  bad input: unknown option, bad file or configuration, unknown app or stack, a time\n     or user id that does not parse (nothing was changed)"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "userprov",
    version,
    about = "Make Salesforce the identity authority for your other apps",
    long_about = "userprov turns Salesforce user changes (joiners, movers, leavers) into SCIM 2.0 \
                  create, update, deactivate and reactivate calls in each connected app, and logs \
                  every attempt.",
    after_help = concat!("Examples:\n  userprov demo\n  userprov serve --mock-target\n  userprov serve --config userprov.toml --port 8787\n  userprov validate userprov.toml\n  userprov logs --url http://127.0.0.1:8787 --follow\n  userprov accounts --stack userprov --profile prod --app slack\n\n", exit_codes!())
)]
struct Cli {
    /// Log format for the service log on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the webhook, the worker and the log API in one process on this machine.
    #[command(
        after_help = "Examples:\n  userprov serve --mock-target\n  userprov serve --config userprov.toml --data-dir /var/lib/userprov"
    )]
    Serve {
        /// Address to listen on. Keep it on loopback unless a TLS proxy is in front.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        #[arg(long, short, default_value_t = 8787)]
        port: u16,
        /// Configuration file; without it the built-in example (infra/userprov.example.toml) is used.
        #[arg(long, short, env = "USERPROV_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Where the queue, the account links, the log and local secrets are kept.
        #[arg(long, default_value = ".userprov")]
        data_dir: PathBuf,
        /// Point every app at a built-in mock SCIM target instead of its base_url (pilots, demos).
        #[arg(long)]
        mock_target: bool,
        /// Concurrent worker loops.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Send sample Outbound Messages through the whole pipeline to the mock target and show the log.
    #[command(
        after_help = "Examples:\n  userprov demo\n  userprov demo --data-dir /tmp/userprov-demo"
    )]
    Demo {
        /// Keep the demo's data in this directory instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Show the exact requests an app would receive for a user, without calling the app.
    #[command(
        after_help = "Examples:\n  userprov preview --app slack --user marta.json\n  userprov preview --app slack --event infra/events/outbound/01-joiners.xml\n  userprov preview --config userprov.toml --app slack --user marta.json --json\n\nA user file is a JSON object of Salesforce fields: {\"Id\": \"0058a00000LmN2pAAF\", \"Username\": \"...\", \"IsActive\": true}.\nThe preview assumes a first sync (no account linked yet)."
    )]
    Preview {
        /// The app to preview.
        #[arg(long)]
        app: String,
        /// A JSON file with one user's Salesforce fields.
        #[arg(long, conflicts_with = "event", required_unless_present = "event")]
        user: Option<PathBuf>,
        /// A Salesforce Outbound Message (SOAP XML) file: every user in it is previewed.
        #[arg(long)]
        event: Option<PathBuf>,
        /// Configuration file; without it the built-in example.
        #[arg(long, short, env = "USERPROV_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and list every problem found.
    #[command(
        after_help = concat!("Examples:\n  userprov validate userprov.toml\n  userprov validate userprov.toml --json\n\n--json prints {\"file\", \"valid\", \"apps\": [...]} or {\"file\", \"valid\": false, \"problems\": [{\"location\", \"message\"}]}.\n\n", exit_codes!())
    )]
    Validate {
        /// The file to check; without it, the built-in example.
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the configuration file, for editors and tools.
    #[command(
        after_help = "Examples:\n  userprov schema > userprov.schema.json\n\nWith the Even Better TOML extension (Taplo), start your config with:\n  #:schema ./userprov.schema.json"
    )]
    Schema,
    /// List, release or discard the deactivations held by an app's deactivation guard.
    #[command(
        after_help = concat!("Examples:\n  userprov holds list\n  userprov holds release 01J9Z3...\n  userprov holds release --all --app slack\n  userprov holds discard 01J9Z3...\n  userprov holds list --stack userprov --profile prod --json\n\nLocally, stop `userprov serve` first: these commands open its data directory. On AWS\n(--stack, or --holds-table/--queue-url/--log-table) they use the stack's holds table, job\nqueue and log table.\n\n", exit_codes!())
    )]
    Holds {
        #[command(subcommand)]
        action: HoldsAction,
    },
    /// Move jobs from the dead-letter queue back to the queue (listing them first).
    #[command(
        after_help = concat!("Examples:\n  userprov redrive --dry-run\n  userprov redrive --app slack --user 0058a00000LmN2pAAF\n  userprov redrive --log-id 01J9Z3... --log-id 01J9Z4...\n  userprov redrive --dry-run --stack userprov --profile prod --json\n  userprov redrive --dry-run --queue-url URL --dlq-url URL --region eu-west-1\n\nLocally, stop `userprov serve` first: this command opens its data directory. On AWS\n(--stack, or --queue-url and --dlq-url) the queues come from the stack's QueueUrl and DlqUrl\noutputs, and the log table for --log-id from LogTableName. --json prints one document:\n{\"dry_run\", \"messages\": [...], \"unreadable\": [...], \"moved\", \"errors\", \"truncated\"}.\n\n", exit_codes!())
    )]
    #[command(mut_arg("links_table", |arg| arg.hide(true)))]
    Redrive {
        /// Only this app (as named in the configuration).
        #[arg(long)]
        app: Option<String>,
        /// A Salesforce user id (15 or 18 characters) or a username.
        #[arg(long)]
        user: Option<String>,
        /// Only the jobs of these provisioning log entries (repeat for several).
        #[arg(long = "log-id")]
        log_ids: Vec<String>,
        /// List what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON document (the listing and the result) instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = ".userprov")]
        data_dir: PathBuf,
        #[command(flatten)]
        aws: userprov_cli::aws::AwsArgs,
        /// The dead-letter queue, instead of the stack's DlqUrl output.
        #[arg(
            long,
            env = "USERPROV_DLQ_URL",
            help_heading = "On AWS (a deployed stack)"
        )]
        dlq_url: Option<String>,
    },
    /// Provision one user now: re-plan from the last snapshot (or a supplied one) and apply it.
    #[command(
        after_help = "Examples:\n  userprov resync --app slack --user 0058a00000LmN2pAAF\n  userprov resync --app slack --user 0058a00000LmN2pAAF --snapshot marta.json\n\nStop `userprov serve` first: this command opens its data directory."
    )]
    Resync {
        /// The app, as named in the configuration.
        #[arg(long)]
        app: String,
        /// The Salesforce user id.
        #[arg(long, value_parser = salesforce_user_id)]
        user: String,
        /// A JSON file with the user's Salesforce fields, instead of the last snapshot applied.
        #[arg(long)]
        snapshot: Option<PathBuf>,
        #[arg(long, short, env = "USERPROV_CONFIG_FILE")]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".userprov")]
        data_dir: PathBuf,
    },
    /// Query the provisioning log (like GET /logs), or follow it as entries are written.
    #[command(
        after_help = concat!("Examples:\n  userprov logs\n  userprov logs --app slack --status failed --since 2h\n  userprov logs --user marta@example.com --json | jq .reason\n  userprov logs --url http://127.0.0.1:8787 --follow\n  userprov logs --stack userprov --profile prod --since 2025-03-14T00:00:00Z --until 1d\n\nThe log is read from the data directory of a stopped `userprov serve` (--data-dir), from a\nrunning one (--url), or from a deployed stack's log table (--stack). Entries print oldest\nfirst; --json prints one JSON object per line (JSON Lines). Times are RFC 3339 or an age\n(30s, 15m, 2h, 7d). --follow polls for new entries until Ctrl-C.\n\n", exit_codes!())
    )]
    #[command(mut_arg("queue_url", |arg| arg.hide(true)))]
    Logs {
        /// A Salesforce user id (15 or 18 characters) or a username.
        #[arg(long)]
        user: Option<String>,
        /// Only this app (as named in the configuration).
        #[arg(long)]
        app: Option<String>,
        /// Only entries with this status.
        #[arg(long, value_parser = ["success", "failed", "retrying", "dead_lettered", "skipped", "held", "dry_run"])]
        status: Option<String>,
        /// Only entries of this operation.
        #[arg(long, value_parser = ["create", "adopt", "update", "deactivate", "reactivate", "noop", "skip"])]
        operation: Option<String>,
        /// The Salesforce notification or event id the entries came from.
        #[arg(long)]
        event_id: Option<String>,
        /// Entries at or after this time (RFC 3339, or an age: 30s, 15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Entries before this time (RFC 3339, or an age).
        #[arg(long)]
        until: Option<String>,
        /// The most recent entries printed (before following).
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Keep running and print new entries as they are written.
        #[arg(long, short)]
        follow: bool,
        /// Seconds between polls with --follow.
        #[arg(long, default_value_t = 2.0, requires = "follow")]
        interval: f64,
        /// One JSON object per entry and line, instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        from: ReadFrom,
    },
    /// List the account links: which Salesforce user has which account in which app.
    #[command(
        after_help = concat!("Examples:\n  userprov accounts\n  userprov accounts --app slack --json\n  userprov accounts --url http://127.0.0.1:8787 --app slack\n  userprov accounts --stack userprov --profile prod --app slack --limit 5000\n\n--json prints one JSON array of links (the shape GET /accounts gives).\n\n", exit_codes!())
    )]
    #[command(mut_arg("queue_url", |arg| arg.hide(true)))]
    Accounts {
        /// Only this app (as named in the configuration).
        #[arg(long)]
        app: Option<String>,
        /// The most links printed.
        #[arg(long, short = 'n', default_value_t = 1000)]
        limit: usize,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        from: ReadFrom,
    },
    /// Open a deployed stack's failures dashboard and log API on this machine.
    #[command(
        after_help = concat!("Examples:\n  userprov dashboard --stack userprov --profile prod\n  userprov dashboard --stack userprov --config userprov.toml --port 8790\n\nOn AWS the log API is IAM-authorised, and a browser cannot sign its requests: this serves the\nsame dashboard and API on 127.0.0.1, reading the stack's tables with your AWS credentials\n(read access to the log and links tables is enough). Open the printed URL; Ctrl-C stops it.\nGive --config (the configuration you deployed) so that POST /preview uses your mappings.\n\n", exit_codes!())
    )]
    #[command(mut_arg("queue_url", |arg| arg.hide(true)))]
    Dashboard {
        /// The port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8788)]
        port: u16,
        /// The configuration deployed (for POST /preview); the example configuration otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        aws: userprov_cli::aws::AwsArgs,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  userprov completions bash > ~/.local/share/bash-completion/completions/userprov\n  userprov completions zsh > \"${fpath[1]}/_userprov\"\n  userprov completions fish > ~/.config/fish/completions/userprov.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Queue one job per user of a Salesforce User export (CSV), after checking every row.
    #[command(
        after_help = concat!("Examples:\n  userprov import --app slack users.csv --dry-run\n  userprov import --app slack users.csv --dry-run --check-target\n  userprov import --app slack users.csv --rate 200\n  userprov import --app slack users.csv --skip-invalid\n  userprov import --app slack users.csv --stack userprov --profile prod\n\nThe first line names the columns with field API names (a report or a Data Loader export):\nId and IsActive, plus the fields the app's mapping requires. Nothing is queued unless every\nrow is valid (or --skip-invalid). An interrupted import resumes where it stopped: run it again.\nWith --stack, the jobs go to the stack's SQS queue (the checkpoint stays in --data-dir).\nLocally, stop `userprov serve` first: this command opens its data directory.\n\n", exit_codes!())
    )]
    #[command(mut_arg("log_table", |arg| arg.hide(true)))]
    Import {
        /// The app, as named in the configuration.
        #[arg(long)]
        app: String,
        /// The CSV export of User records.
        file: PathBuf,
        /// Print what would be done (create, adopt, update, skip...), queue nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: look each new user up in the app to tell adopt from create.
        #[arg(long, requires = "dry_run")]
        check_target: bool,
        /// Queue the valid rows and report the invalid ones, instead of refusing the file.
        #[arg(long)]
        skip_invalid: bool,
        /// Jobs queued per second (0: no limit).
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, short, env = "USERPROV_CONFIG_FILE")]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".userprov")]
        data_dir: PathBuf,
        #[command(flatten)]
        aws: userprov_cli::aws::AwsArgs,
    },
    /// Compare an app's accounts with the Salesforce users: linked, drift, matchable, duplicates, orphaned.
    #[command(
        after_help = concat!("Examples:\n  userprov reconcile --app slack\n  userprov reconcile --app slack --users users.csv --json\n  userprov reconcile --app slack --users users.csv --apply\n\nThe Salesforce users are the snapshots in the account links, and the export given with --users.\n--apply links the matchable accounts (managed by adoption); nothing is ever deleted.\nStop `userprov serve` first: this command opens its data directory.\n\n", exit_codes!())
    )]
    Reconcile {
        /// The app, as named in the configuration.
        #[arg(long)]
        app: String,
        /// A Salesforce User export (CSV), newer than the snapshots in the account links.
        #[arg(long)]
        users: Option<PathBuf>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
        /// Link the matchable accounts.
        #[arg(long)]
        apply: bool,
        #[arg(long, short, env = "USERPROV_CONFIG_FILE")]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".userprov")]
        data_dir: PathBuf,
    },
}

/// Where `logs` and `accounts` read from.
#[derive(Debug, clap::Args)]
struct ReadFrom {
    /// The data directory of a stopped `userprov serve`.
    #[arg(long, default_value = ".userprov")]
    data_dir: PathBuf,
    /// A running `userprov serve`, read through its log API (http://127.0.0.1:8787).
    #[arg(long, conflicts_with_all = ["stack", "queue_url", "links_table", "log_table"])]
    url: Option<String>,
    /// The log API token, when `[log_api] token_secret` is set.
    #[arg(long, env = "USERPROV_LOG_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    aws: userprov_cli::aws::AwsArgs,
}

impl ReadFrom {
    fn into_source(self) -> userprov_cli::query::SourceArgs {
        userprov_cli::query::SourceArgs {
            data_dir: self.data_dir,
            url: self.url,
            token: self.token,
            aws: self.aws,
        }
    }
}

/// A Salesforce user id of 15 or 18 characters, checked before anything is opened.
fn salesforce_user_id(text: &str) -> Result<String, String> {
    userprov_core::ids::SalesforceId::parse(text)
        .map(|id| id.to_string())
        .map_err(|e| format!("not a Salesforce user id: {e}"))
}

#[derive(Debug, Subcommand)]
enum HoldsAction {
    /// The held jobs, oldest first.
    #[command(
        after_help = concat!("Examples:\n  userprov holds list --app slack\n  userprov holds list --stack userprov --profile prod --json\n\n--json prints one JSON array of holds (id, app, user_id, username, job_id, event_id, job,\nreason, held_at).\n\n", exit_codes!())
    )]
    #[command(mut_arg("links_table", |arg| arg.hide(true)))]
    List {
        /// Only this app (as named in the configuration).
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        from: HoldsFrom,
    },
    /// Send held jobs back to the queue; each is re-planned against the current account link.
    #[command(
        after_help = concat!("Examples:\n  userprov holds release 01J9Z3...\n  userprov holds release --all --app slack --stack userprov --profile prod\n\n--json prints {\"action\": \"release\", \"settled\": [holds], \"missing\": [ids]}.\n\n", exit_codes!())
    )]
    #[command(mut_arg("links_table", |arg| arg.hide(true)))]
    Release {
        /// Hold ids.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every hold of --app.
        #[arg(long, requires = "app", conflicts_with = "ids")]
        all: bool,
        /// Only this app (as named in the configuration).
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        from: HoldsFrom,
    },
    /// Drop held jobs without applying them (logged as skipped).
    #[command(
        after_help = concat!("Examples:\n  userprov holds discard 01J9Z3...\n  userprov holds discard --all --app slack --stack userprov --json\n\n--json prints {\"action\": \"discard\", \"settled\": [holds], \"missing\": [ids]}.\n\n", exit_codes!())
    )]
    #[command(mut_arg("links_table", |arg| arg.hide(true)))]
    Discard {
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        #[arg(long, requires = "app", conflicts_with = "ids")]
        all: bool,
        /// Only this app (as named in the configuration).
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        from: HoldsFrom,
    },
}

/// Where the holds commands work: the data directory, or a deployed stack.
#[derive(Debug, clap::Args)]
struct HoldsFrom {
    #[arg(long, default_value = ".userprov")]
    data_dir: PathBuf,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    aws: userprov_cli::aws::AwsArgs,
    /// The holds table, instead of the stack's HoldsTableName output.
    #[arg(long, help_heading = "On AWS (a deployed stack)")]
    holds_table: Option<String>,
}

impl HoldsFrom {
    fn into_options(self) -> userprov_cli::holds::HoldsOptions {
        userprov_cli::holds::HoldsOptions {
            data_dir: self.data_dir,
            aws: self.aws,
            holds_table: self.holds_table,
            json: self.json,
        }
    }
}

/// Refuses the AWS resource options a command hides from its `--help` (exit 2).
fn refuse_unused(
    aws: &userprov_cli::aws::AwsArgs,
    command: &str,
    unused: &[ResourceOption],
) -> Result<(), ExitCode> {
    aws.refuse_unused(command, unused).map_err(|message| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    })
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            bind,
            port,
            config,
            data_dir,
            mock_target,
            workers,
        } => {
            init_tracing(cli.log_format, "info");
            let options = StackOptions {
                bind: SocketAddr::new(bind, port),
                config,
                data_dir,
                mock_target,
                workers,
            };
            serve(options).await
        }
        Command::Demo { data_dir } => {
            init_tracing(cli.log_format, "warn");
            let (dir, temporary) = match data_dir {
                Some(dir) => (dir, false),
                None => (
                    std::env::temp_dir().join(format!("userprov-demo-{}", ulid::Ulid::new())),
                    true,
                ),
            };
            let result = userprov_cli::demo::run(dir.clone()).await;
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Preview {
            app,
            user,
            event,
            config,
            json,
        } => preview(&app, user, event, config, json),
        Command::Schema => {
            let schema = userprov_core::config::json_schema();
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: cannot print the schema: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Holds { action } => {
            init_tracing(cli.log_format, "warn");
            use userprov_cli::holds;
            match action {
                HoldsAction::List { app, from } => {
                    // The holds commands take the same options (a script names the deployment
                    // once for all three); only the links table is foreign to them.
                    if let Err(code) = refuse_unused(&from.aws, "holds list", &[LinksTable]) {
                        return code;
                    }
                    finish_with_code(holds::list(&from.into_options(), app.as_deref()).await)
                }
                HoldsAction::Release {
                    ids,
                    all,
                    app,
                    from,
                } => {
                    if let Err(code) = refuse_unused(&from.aws, "holds release", &[LinksTable]) {
                        return code;
                    }
                    let all_of = if all { app.as_deref() } else { None };
                    finish_outcome(holds::settle(&from.into_options(), &ids, all_of, true).await)
                }
                HoldsAction::Discard {
                    ids,
                    all,
                    app,
                    from,
                } => {
                    if let Err(code) = refuse_unused(&from.aws, "holds discard", &[LinksTable]) {
                        return code;
                    }
                    let all_of = if all { app.as_deref() } else { None };
                    finish_outcome(holds::settle(&from.into_options(), &ids, all_of, false).await)
                }
            }
        }
        Command::Redrive {
            app,
            user,
            log_ids,
            dry_run,
            json,
            data_dir,
            mut aws,
            dlq_url,
        } => {
            init_tracing(cli.log_format, "warn");
            if let Err(code) = refuse_unused(&aws, "redrive", &[LinksTable]) {
                return code;
            }
            // Older scripts name the queue and log table by the worker's variables.
            if aws.queue_url.is_none() {
                aws.queue_url = std::env::var("USERPROV_QUEUE_URL").ok();
            }
            if aws.log_table.is_none() && (aws.queue_url.is_some() || dlq_url.is_some()) {
                aws.log_table = std::env::var("USERPROV_LOG_TABLE").ok();
            }
            let options = userprov_cli::redrive::RedriveOptions {
                filter: userprov_cli::redrive::RedriveFilter {
                    app,
                    user,
                    log_ids,
                    dry_run,
                },
                data_dir,
                aws,
                dlq_url,
                json,
            };
            finish_outcome(userprov_cli::redrive::run(&options).await)
        }
        Command::Resync {
            app,
            user,
            snapshot,
            config,
            data_dir,
        } => {
            init_tracing(cli.log_format, "warn");
            finish(admin::resync(config.as_deref(), &data_dir, &app, &user, snapshot).await)
        }
        Command::Logs {
            user,
            app,
            status,
            operation,
            event_id,
            since,
            until,
            limit,
            follow,
            interval,
            json,
            from,
        } => {
            init_tracing(cli.log_format, "warn");
            if let Err(code) = refuse_unused(&from.aws, "logs", &[QueueUrl]) {
                return code;
            }
            if !(interval.is_finite() && interval > 0.0) {
                eprintln!("error: --interval must be a positive number of seconds");
                return ExitCode::from(2);
            }
            let options = userprov_cli::query::LogsOptions {
                source: from.into_source(),
                user,
                app,
                status,
                operation,
                event_id,
                since,
                until,
                limit,
                json,
                follow,
                interval: std::time::Duration::from_secs_f64(interval),
            };
            finish_streamed(userprov_cli::query::logs(&options).await)
        }
        Command::Accounts {
            app,
            limit,
            json,
            from,
        } => {
            init_tracing(cli.log_format, "warn");
            if let Err(code) = refuse_unused(&from.aws, "accounts", &[QueueUrl]) {
                return code;
            }
            let options = userprov_cli::query::AccountsOptions {
                source: from.into_source(),
                app,
                limit,
                json,
            };
            finish_streamed(userprov_cli::query::accounts(&options).await)
        }
        Command::Dashboard { port, config, aws } => {
            init_tracing(cli.log_format, "warn");
            if let Err(code) = refuse_unused(&aws, "dashboard", &[QueueUrl]) {
                return code;
            }
            let options = userprov_cli::dashboard::DashboardOptions { aws, config, port };
            match userprov_cli::dashboard::bind(&options).await {
                Ok(dashboard) => {
                    // A closed stdout (a script that read the URL and went) must not stop it.
                    write_stdout(&format!(
                        "the dashboard of {}: {}\nCtrl-C stops it.\n",
                        options.aws.stack.as_deref().unwrap_or("the given tables"),
                        dashboard.url
                    ));
                    finish_streamed(dashboard.serve().await)
                }
                Err(failure) => finish_streamed(Err(failure)),
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "userprov", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Import {
            app,
            file,
            dry_run,
            check_target,
            skip_invalid,
            rate,
            config,
            data_dir,
            aws,
        } => {
            init_tracing(cli.log_format, "warn");
            if let Err(code) = refuse_unused(&aws, "import", &[LogTable]) {
                return code;
            }
            let options = userprov_cli::import::ImportOptions {
                app,
                file,
                dry_run,
                check_target,
                skip_invalid,
                rate,
                data_dir,
                config,
                aws,
            };
            finish_with_code(userprov_cli::import::run(&options).await)
        }
        Command::Reconcile {
            app,
            users,
            json,
            csv,
            apply,
            config,
            data_dir,
        } => {
            init_tracing(cli.log_format, "warn");
            use userprov_cli::reconcile::{Format, ReconcileOptions, run};
            let format = match (json, csv) {
                (true, _) => Format::Json,
                (_, true) => Format::Csv,
                _ => Format::Table,
            };
            let options = ReconcileOptions {
                app,
                format,
                apply,
                users,
                data_dir,
                config,
            };
            finish_with_code(run(&options).await)
        }
        Command::Validate { config, json } if json => validate_json(config.as_deref()),
        Command::Validate { config, .. } => {
            let result = match &config {
                Some(path) => Config::load(path),
                None => Config::example(),
            };
            match result {
                Ok(config) => {
                    println!(
                        "{}: valid ({} app{})",
                        config.origin,
                        config.apps.len(),
                        if config.apps.len() == 1 { "" } else { "s" }
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprint!("{error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

async fn serve(options: StackOptions) -> ExitCode {
    let mock = options.mock_target;
    let stack = match RunningStack::start(options).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "userprov is running ({}; {} app(s){})",
        stack.config.origin,
        stack.config.apps.len(),
        if mock { ", mock target" } else { "" }
    );
    println!("  Outbound Message URL: {}", stack.webhook_url());
    println!(
        "  Events URL (JSON):    {} ({} from secret {})",
        stack.events_url(),
        match stack.config.webhook.events.auth {
            userprov_core::http::event_auth::EventAuthMode::Hmac => "HMAC-signed",
            userprov_core::http::event_auth::EventAuthMode::ApiKey => "API key",
        },
        stack.config.webhook.events.secret
    );
    println!("  Log API:              {}", stack.log_api_url());
    if mock {
        println!(
            "  Mock SCIM target:     {}{}",
            stack.base_url(),
            userprov_cli::stack::MOCK_TARGET_PATH
        );
    }
    println!(
        "Keep the Outbound Message URL secret: its last part is the webhook token. Stop with Ctrl-C."
    );
    wait_for_stop_signal().await;
    eprintln!("stopping: waiting for jobs in progress");
    stack.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn preview(
    app: &str,
    user: Option<PathBuf>,
    event: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let config = match config
        .as_deref()
        .map(Config::load)
        .unwrap_or_else(Config::example)
    {
        Ok(config) => config,
        Err(error) => return fail(error.to_string()),
    };
    let Some(app_config) = config.app(app) else {
        let known: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
        return fail(format!(
            "no app named {app:?} in {}; apps: {}",
            config.origin,
            known.join(", ")
        ));
    };
    let users = match (user, event) {
        (Some(path), _) => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                source_file::user_from_json_text(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .map(|user| vec![user]),
        (None, Some(path)) => std::fs::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|bytes| {
                source_file::users_from_event(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }),
        (None, None) => Err("give --user FILE or --event FILE".to_owned()),
    };
    let users = match users {
        Ok(users) => users,
        Err(message) => return fail(message),
    };
    let previews: Vec<_> = users
        .iter()
        .map(|user| userprov_core::preview::preview(app_config, user, None, &Default::default()))
        .collect();
    let text = if json {
        match serde_json::to_string_pretty(&previews) {
            Ok(text) => text + "\n",
            Err(error) => return fail(error.to_string()),
        }
    } else {
        previews
            .iter()
            .map(userprov_core::preview::render)
            .collect::<Vec<_>>()
            .join("\n")
    };
    write_stdout(&text);
    if previews.iter().any(|p| p.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints an admin command's output; a failure goes to stderr with exit code 1.
fn finish(result: admin::CommandResult) -> ExitCode {
    match result {
        Ok(text) => {
            write_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what a command did, then its failure (if any) on stderr with the failure's exit code.
fn finish_outcome(outcome: userprov_cli::holds::Outcome) -> ExitCode {
    write_stdout(&outcome.stdout);
    match outcome.failure {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit)
        }
    }
}

/// Prints a command's output, or its failure on stderr with the failure's exit code.
fn finish_with_code(result: Result<String, userprov_cli::import::Failure>) -> ExitCode {
    match result {
        Ok(text) => {
            write_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit)
        }
    }
}

/// For commands that print as they go: only the failure is left to report.
fn finish_streamed(result: Result<(), userprov_cli::import::Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) ends the output: not a failure.
        Err(failure) if failure.exit == 0 => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit)
        }
    }
}

/// `validate --json`: the verdict as one JSON object; exit 2 when the file is not valid.
fn validate_json(path: Option<&std::path::Path>) -> ExitCode {
    let file = path.map_or_else(
        || "(built-in example)".to_owned(),
        |p| p.display().to_string(),
    );
    let (verdict, code) = match path.map(Config::load).unwrap_or_else(Config::example) {
        Ok(config) => (
            serde_json::json!({
                "file": file,
                "valid": true,
                "apps": config.apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            }),
            ExitCode::SUCCESS,
        ),
        Err(error) => (
            serde_json::json!({
                "file": file,
                "valid": false,
                "problems": error
                    .issues
                    .iter()
                    .map(|issue| serde_json::json!({
                        "location": issue.location,
                        "message": issue.message,
                    }))
                    .collect::<Vec<_>>(),
            }),
            ExitCode::from(2),
        ),
    };
    write_stdout(&format!("{verdict:#}\n"));
    code
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn write_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
