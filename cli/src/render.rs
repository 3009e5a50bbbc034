//! Human-readable tables for terminals: colored when stdout is a terminal, plain when it is
//! not (a pipe, a file) or when `NO_COLOR` is set.

use std::io::IsTerminal;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table};
use time::macros::format_description;
use userprov_core::link::{AccountLink, ManagedBy};
use userprov_core::log::{LogEntry, LogStatus};

const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z");

/// Whether tables are colored: stdout is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
pub fn color_enabled() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

fn new_table(header: Vec<&str>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if color_enabled() {
        table.enforce_styling();
        // A terminal that reports no size (a pseudo-terminal nobody sized) would squeeze
        // every column to one character: lay the table out at its natural width instead.
        if table.width().is_none_or(|width| width < 40) {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
        table.set_header(
            header
                .into_iter()
                .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
        );
    } else {
        table.force_no_tty();
        table.set_header(header);
    }
    table
}

fn status_color(status: LogStatus) -> Option<Color> {
    match status {
        LogStatus::Success => Some(Color::Green),
        LogStatus::Failed | LogStatus::DeadLettered => Some(Color::Red),
        LogStatus::Retrying | LogStatus::Held => Some(Color::Yellow),
        LogStatus::Skipped | LogStatus::DryRun => Some(Color::DarkGrey),
    }
}

fn colored(text: &str, color: Option<Color>) -> Cell {
    match color {
        Some(color) if color_enabled() => Cell::new(text).fg(color),
        _ => Cell::new(text),
    }
}

/// The provisioning log as a table, in the order given.
pub fn log_table(entries: &[LogEntry]) -> Table {
    let mut table = new_table(vec![
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
            Cell::new(entry.time.format(TIME_FORMAT).unwrap_or_default()),
            Cell::new(&entry.app),
            Cell::new(
                entry
                    .username
                    .clone()
                    .unwrap_or_else(|| entry.user_id.clone()),
            ),
            Cell::new(entry.operation.as_str()),
            colored(entry.status.as_str(), status_color(entry.status)),
            Cell::new(entry.attempt),
            Cell::new(entry.http_status.map(|s| s.to_string()).unwrap_or_default()),
            Cell::new(entry.target_id.clone().unwrap_or_default()),
            Cell::new(detail),
        ]);
    }
    table
}

/// The account links as a table, in the order given.
pub fn accounts_table(links: &[AccountLink]) -> Table {
    let mut table = new_table(vec![
        "app",
        "user id",
        "username",
        "target id",
        "state",
        "managed by",
        "groups",
        "updated",
    ]);
    for link in links {
        let (state, color) = match (&link.target_id, link.active) {
            (None, _) => ("no account", Some(Color::DarkGrey)),
            (Some(_), true) => ("active", Some(Color::Green)),
            (Some(_), false) => ("inactive", Some(Color::Yellow)),
        };
        table.add_row(vec![
            Cell::new(&link.app),
            Cell::new(link.user_id.as_str()),
            Cell::new(link.username.as_deref().unwrap_or("-")),
            Cell::new(link.target_id.as_deref().unwrap_or("-")),
            colored(state, color),
            Cell::new(match link.managed_by {
                Some(ManagedBy::Created) => "created",
                Some(ManagedBy::Adopted) => "adopted",
                None => "-",
            }),
            Cell::new(link.last_groups.join(", ")),
            Cell::new(link.updated_at.format(TIME_FORMAT).unwrap_or_default()),
        ]);
    }
    table
}
