//! The admin commands against a deployed stack: the queue, the account links and the log are
//! found from the CloudFormation stack's outputs (the names `template.yaml` gives them), or
//! named one by one when there is no stack to read (a test account, a hand-made setup).

use std::time::Duration;

use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use userprov_aws::aws_config::{self, BehaviorVersion, Region, SdkConfig};
use userprov_aws::{DynamoHoldStore, DynamoLinkStore, DynamoLogStore, SqsQueue};

use crate::import::Failure;

pub use aws_sdk_cloudformation;

/// The stack outputs the commands read (see `Outputs:` in `template.yaml`).
pub const OUTPUT_QUEUE_URL: &str = "QueueUrl";
pub const OUTPUT_DLQ_URL: &str = "DlqUrl";
pub const OUTPUT_LINKS_TABLE: &str = "LinksTableName";
pub const OUTPUT_LOG_TABLE: &str = "LogTableName";
pub const OUTPUT_HOLDS_TABLE: &str = "HoldsTableName";
/// The stack parameter giving how long log entries are kept.
pub const PARAMETER_LOG_RETENTION_DAYS: &str = "LogRetentionDays";
const DEFAULT_LOG_RETENTION_DAYS: u64 = 90;

/// Where the AWS resources are, as the operator gave them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "On AWS (a deployed stack)")]
pub struct AwsArgs {
    /// Work against this deployed CloudFormation stack (its outputs name the queue and tables)
    /// instead of the local data directory.
    #[arg(long)]
    pub stack: Option<String>,
    /// The AWS profile (from ~/.aws/config) to sign requests with.
    #[arg(long)]
    pub profile: Option<String>,
    /// The AWS region, when the profile does not give it.
    #[arg(long)]
    pub region: Option<String>,
    /// The job queue URL, instead of the stack's QueueUrl output.
    #[arg(long)]
    pub queue_url: Option<String>,
    /// The account links table, instead of the stack's LinksTableName output.
    #[arg(long)]
    pub links_table: Option<String>,
    /// The provisioning log table, instead of the stack's LogTableName output.
    #[arg(long)]
    pub log_table: Option<String>,
}

/// A resource option of [`AwsArgs`] that some commands do not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceOption {
    QueueUrl,
    LinksTable,
    LogTable,
}

impl ResourceOption {
    /// The clap id of the option (the field name), for `Command::mut_arg`.
    pub const fn id(self) -> &'static str {
        match self {
            Self::QueueUrl => "queue_url",
            Self::LinksTable => "links_table",
            Self::LogTable => "log_table",
        }
    }

    pub const fn flag(self) -> &'static str {
        match self {
            Self::QueueUrl => "--queue-url",
            Self::LinksTable => "--links-table",
            Self::LogTable => "--log-table",
        }
    }
}

impl AwsArgs {
    /// Refuses the resource options a command does not use (its `--help` hides them): a name
    /// the operator gave is never silently ignored.
    pub fn refuse_unused(&self, command: &str, unused: &[ResourceOption]) -> Result<(), String> {
        for option in unused {
            let given = match option {
                ResourceOption::QueueUrl => self.queue_url.is_some(),
                ResourceOption::LinksTable => self.links_table.is_some(),
                ResourceOption::LogTable => self.log_table.is_some(),
            };
            if given {
                return Err(format!(
                    "`userprov {command}` does not use {}: see `userprov {command} --help`",
                    option.flag()
                ));
            }
        }
        Ok(())
    }

    /// True when the command should work against AWS rather than the data directory.
    pub fn selected(&self) -> bool {
        self.stack.is_some()
            || self.queue_url.is_some()
            || self.links_table.is_some()
            || self.log_table.is_some()
    }
}

/// The resources of one deployment and the SDK configuration to reach them.
#[derive(Debug, Clone)]
pub struct AwsResources {
    pub sdk: SdkConfig,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub links_table: Option<String>,
    pub log_table: Option<String>,
    pub holds_table: Option<String>,
    pub log_retention: Duration,
    /// Where the names came from, for messages: `stack NAME` or `the command line`.
    pub origin: String,
}

impl AwsResources {
    /// Reads the stack's outputs (when a stack is named); names given explicitly win.
    pub async fn resolve(args: &AwsArgs) -> Result<Self, Failure> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(userprov_aws::http_client());
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &args.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Failure::bad_input(
                "no AWS region: give --region, or a profile that sets one (or AWS_REGION)",
            ));
        }
        let mut resources = Self {
            sdk,
            queue_url: None,
            dlq_url: None,
            links_table: None,
            log_table: None,
            holds_table: None,
            log_retention: Duration::from_secs(DEFAULT_LOG_RETENTION_DAYS * 24 * 3600),
            origin: "the command line".to_owned(),
        };
        if let Some(stack) = &args.stack {
            resources.read_stack(stack).await?;
        }
        for (given, slot) in [
            (&args.queue_url, &mut resources.queue_url),
            (&args.links_table, &mut resources.links_table),
            (&args.log_table, &mut resources.log_table),
        ] {
            if given.is_some() {
                slot.clone_from(given);
            }
        }
        Ok(resources)
    }

    async fn read_stack(&mut self, stack: &str) -> Result<(), Failure> {
        let client = aws_sdk_cloudformation::Client::new(&self.sdk);
        let answer = client
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|error| {
                // CloudFormation answers a missing stack with a ValidationError.
                if error.code() == Some("ValidationError") {
                    Failure::bad_input(format!(
                        "no stack named {stack:?} in this account and region ({})",
                        error.message().unwrap_or("ValidationError")
                    ))
                } else {
                    Failure::other(format!(
                        "cannot read stack {stack:?}: {}",
                        DisplayErrorContext(&error)
                    ))
                }
            })?;
        let Some(description) = answer.stacks().first() else {
            return Err(Failure::bad_input(format!("no stack named {stack:?}")));
        };
        let output = |key: &str| {
            description
                .outputs()
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_owned)
        };
        self.queue_url = output(OUTPUT_QUEUE_URL);
        self.dlq_url = output(OUTPUT_DLQ_URL);
        self.links_table = output(OUTPUT_LINKS_TABLE);
        self.log_table = output(OUTPUT_LOG_TABLE);
        self.holds_table = output(OUTPUT_HOLDS_TABLE);
        if let Some(days) = description
            .parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(PARAMETER_LOG_RETENTION_DAYS))
            .and_then(|p| p.parameter_value())
            .and_then(|v| v.parse::<u64>().ok())
        {
            self.log_retention = Duration::from_secs(days * 24 * 3600);
        }
        self.origin = format!("stack {stack}");
        Ok(())
    }

    fn missing(&self, what: &str, output: &str, flag: &str) -> Failure {
        Failure::bad_input(format!(
            "{what} is not known: {} has no {output} output; give {flag}",
            self.origin
        ))
    }

    pub fn log_store(&self) -> Result<DynamoLogStore, Failure> {
        let table = self
            .log_table
            .clone()
            .ok_or_else(|| self.missing("the log table", OUTPUT_LOG_TABLE, "--log-table"))?;
        Ok(DynamoLogStore::new(
            userprov_aws::aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
            self.log_retention,
        ))
    }

    pub fn link_store(&self) -> Result<DynamoLinkStore, Failure> {
        let table = self
            .links_table
            .clone()
            .ok_or_else(|| self.missing("the links table", OUTPUT_LINKS_TABLE, "--links-table"))?;
        Ok(DynamoLinkStore::new(
            userprov_aws::aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
        ))
    }

    pub fn queue(&self) -> Result<SqsQueue, Failure> {
        let url = self
            .queue_url
            .clone()
            .ok_or_else(|| self.missing("the job queue", OUTPUT_QUEUE_URL, "--queue-url"))?;
        Ok(SqsQueue::new(
            userprov_aws::aws_sdk_sqs::Client::new(&self.sdk),
            url,
            self.dlq_url.clone(),
        ))
    }

    pub fn hold_store(&self) -> Result<DynamoHoldStore, Failure> {
        let table = self
            .holds_table
            .clone()
            .ok_or_else(|| self.missing("the holds table", OUTPUT_HOLDS_TABLE, "--holds-table"))?;
        Ok(DynamoHoldStore::new(
            userprov_aws::aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
        ))
    }

    /// The job queue with its dead-letter queue, both required.
    pub fn queue_with_dlq(&self) -> Result<SqsQueue, Failure> {
        if self.dlq_url.is_none() {
            return Err(self.missing("the dead-letter queue", OUTPUT_DLQ_URL, "--dlq-url"));
        }
        self.queue()
    }
}
