//! Human-readable tables for terminals.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use time::macros::format_description;
use userprov_core::log::LogEntry;

const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z");

/// The provisioning log as a table, in the order given.
pub fn log_table(entries: &[LogEntry]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "time",
            "app",
            "user",
            "operation",
            "status",
            "try",
            "http",
            "target id",
            "detail",
        ]);
    for entry in entries {
        let detail = match (&entry.error, &entry.reason) {
            (Some(error), _) => format!("{}: {}", error.code, error.message),
            (None, Some(reason)) => reason.clone(),
            (None, None) => String::new(),
        };
        table.add_row(vec![
            entry.time.format(TIME_FORMAT).unwrap_or_default(),
            entry.app.clone(),
            entry
                .username
                .clone()
                .unwrap_or_else(|| entry.user_id.clone()),
            entry.operation.as_str().to_owned(),
            entry.status.as_str().to_owned(),
            entry.attempt.to_string(),
            entry.http_status.map(|s| s.to_string()).unwrap_or_default(),
            entry.target_id.clone().unwrap_or_default(),
            detail,
        ]);
    }
    table
}
