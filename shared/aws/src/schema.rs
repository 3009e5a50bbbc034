//! The DynamoDB tables, as `template.yaml` must declare them and as [`create_tables`] makes them
//! for tests and local stacks.
//!
//! **Links table**: partition key `app` (S), sort key `user_id` (S, the 18-character Salesforce
//! id). Attributes: `link` (S, the [`AccountLink`](userprov_core::link::AccountLink) as JSON),
//! `version` (N), `username` (S, absent when unknown).
//!
//! **Log table**: partition key `id` (S, a ULID). Attributes: `entry` (S, the
//! [`LogEntry`](userprov_core::log::LogEntry) as JSON), `user_id`, `username_lc` (lower-cased),
//! `app`, `status`, `event_id`, `day` (`YYYY-MM-DD` of the entry's time, UTC), all S, and
//! `expires_at` (N, epoch seconds: the entry's time plus the retention; the TTL attribute).
//! Global secondary indexes, each with sort key `id` (S) and projection ALL: `by_user`
//! (`user_id`), `by_username` (`username_lc`), `by_app` (`app`), `by_status` (`status`),
//! `by_event` (`event_id`), `by_day` (`day`). An attribute left empty is not written, so the
//! entry is simply absent from that index. Both tables bill on demand.
//!
//! **Holds table** (the deactivation guard): partition key `pk` (S): `guard#APP` for an app's
//! guard state, `hold#ID` for a held job. Attributes: `doc` (S, JSON), `app` (S), `version` (N,
//! on guard items). Bills on demand.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use crate::sdk_error::{describe, error_code};

pub const LINKS_PARTITION_KEY: &str = "app";
pub const LINKS_SORT_KEY: &str = "user_id";
pub const LINK_DOCUMENT: &str = "link";
pub const LINK_VERSION: &str = "version";
pub const LINK_USERNAME: &str = "username";

pub const HOLDS_KEY: &str = "pk";
pub const HOLDS_DOCUMENT: &str = "doc";
pub const HOLDS_APP: &str = "app";
pub const HOLDS_VERSION: &str = "version";

pub const LOG_KEY: &str = "id";
pub const LOG_DOCUMENT: &str = "entry";
pub const LOG_EXPIRES_AT: &str = "expires_at";
pub const LOG_USER_ID: &str = "user_id";
pub const LOG_USERNAME: &str = "username_lc";
pub const LOG_APP: &str = "app";
pub const LOG_STATUS: &str = "status";
pub const LOG_EVENT_ID: &str = "event_id";
pub const LOG_DAY: &str = "day";

pub const BY_USER: &str = "by_user";
pub const BY_USERNAME: &str = "by_username";
pub const BY_APP: &str = "by_app";
pub const BY_STATUS: &str = "by_status";
pub const BY_EVENT: &str = "by_event";
pub const BY_DAY: &str = "by_day";

/// The log table's indexes: (index name, partition key attribute). Each sorts by `id`.
pub const LOG_INDEXES: [(&str, &str); 6] = [
    (BY_USER, LOG_USER_ID),
    (BY_USERNAME, LOG_USERNAME),
    (BY_APP, LOG_APP),
    (BY_STATUS, LOG_STATUS),
    (BY_EVENT, LOG_EVENT_ID),
    (BY_DAY, LOG_DAY),
];

/// How long [`create_tables`] waits for a new table to become active.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot create table {table}: {reason}")]
    Create { table: String, reason: String },
    #[error("table {table} did not become active: {reason}")]
    NotActive { table: String, reason: String },
    #[error("cannot enable expiry on table {table}: {reason}")]
    TimeToLive { table: String, reason: String },
}

impl userprov_core::error::Classify for SchemaError {
    fn class(&self) -> userprov_core::error::ErrorClass {
        userprov_core::error::ErrorClass::Config
    }
}

/// Creates both tables (a table that already exists is left as it is) and enables expiry on
/// the log table.
pub async fn create_tables(
    client: &aws_sdk_dynamodb::Client,
    links_table: &str,
    log_table: &str,
) -> Result<(), SchemaError> {
    create_links_table(client, links_table).await?;
    create_log_table(client, log_table).await?;
    wait_until_active(client, links_table).await?;
    wait_until_active(client, log_table).await?;
    let specification = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(LOG_EXPIRES_AT)
        .build()
        .map_err(|e| SchemaError::TimeToLive {
            table: log_table.to_owned(),
            reason: e.to_string(),
        })?;
    let enabled = client
        .update_time_to_live()
        .table_name(log_table)
        .time_to_live_specification(specification)
        .send()
        .await;
    match enabled {
        Ok(_) => {}
        // Asking twice is refused with this message; the setting is what we want either way.
        Err(e)
            if error_code(&e) == Some("ValidationException")
                && describe(&e).contains("already enabled") => {}
        Err(e) => {
            return Err(SchemaError::TimeToLive {
                table: log_table.to_owned(),
                reason: describe(&e),
            });
        }
    }
    Ok(())
}

/// Creates the deactivation guard's holds table (left as it is when it exists).
pub async fn create_holds_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SchemaError> {
    let create_error = |reason: String| SchemaError::Create {
        table: table.to_owned(),
        reason,
    };
    let request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(HOLDS_KEY).map_err(create_error)?)
        .key_schema(key(HOLDS_KEY, KeyType::Hash).map_err(create_error)?);
    send_create(request.send().await, table)?;
    wait_until_active(client, table).await
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, String> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| e.to_string())
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, String> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| e.to_string())
}

async fn create_links_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SchemaError> {
    let create_error = |reason: String| SchemaError::Create {
        table: table.to_owned(),
        reason,
    };
    let request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(LINKS_PARTITION_KEY).map_err(create_error)?)
        .attribute_definitions(string_attribute(LINKS_SORT_KEY).map_err(create_error)?)
        .key_schema(key(LINKS_PARTITION_KEY, KeyType::Hash).map_err(create_error)?)
        .key_schema(key(LINKS_SORT_KEY, KeyType::Range).map_err(create_error)?);
    send_create(request.send().await, table)
}

async fn create_log_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SchemaError> {
    let create_error = |reason: String| SchemaError::Create {
        table: table.to_owned(),
        reason,
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(LOG_KEY).map_err(create_error)?)
        .key_schema(key(LOG_KEY, KeyType::Hash).map_err(create_error)?);
    for (index, partition_key) in LOG_INDEXES {
        request = request
            .attribute_definitions(string_attribute(partition_key).map_err(create_error)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .key_schema(key(partition_key, KeyType::Hash).map_err(create_error)?)
                    .key_schema(key(LOG_KEY, KeyType::Range).map_err(create_error)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| create_error(e.to_string()))?,
            );
    }
    send_create(request.send().await, table)
}

fn send_create<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    table: &str,
) -> Result<(), SchemaError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ResourceInUseException") => Ok(()),
        Err(e) => Err(SchemaError::Create {
            table: table.to_owned(),
            reason: describe(&e),
        }),
    }
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SchemaError> {
    let deadline = Instant::now() + ACTIVE_WITHIN;
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| SchemaError::NotActive {
                table: table.to_owned(),
                reason: describe(&e),
            })?;
        let status = described.table().and_then(|t| t.table_status()).cloned();
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SchemaError::NotActive {
                table: table.to_owned(),
                reason: format!("still {status:?} after {ACTIVE_WITHIN:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
