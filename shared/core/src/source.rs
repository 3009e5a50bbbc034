//! The normalised picture of a Salesforce user that every input format is turned into.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ids::SalesforceId;

/// Field API name to value. Strings for Outbound Message text; JSON inputs keep their types.
/// `Value::Null` means "known to be null" (`xsi:nil`, or a nulled CDC field).
pub type Fields = BTreeMap<String, Value>;

/// A snapshot of one Salesforce user: its id and the fields the sender included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceUser {
    pub id: SalesforceId,
    #[serde(default)]
    pub fields: Fields,
    /// Whether `fields` is the whole record or only what changed. Absent in jobs written
    /// before change events existed, which were all full snapshots.
    #[serde(default, skip_serializing_if = "Completeness::is_full")]
    pub completeness: Completeness,
}

/// How much of the record an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Every field the sender includes, at its current value (Outbound Message, platform event).
    #[default]
    Full,
    /// Only the fields that changed, `Value::Null` for a cleared one (Change Data Capture): merge
    /// it into the last snapshot before use.
    Partial,
    /// A Change Data Capture gap event: the user changed but the event has no field values, so
    /// the user needs a resync.
    Gap,
}

impl Completeness {
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }
}

impl SourceUser {
    pub fn new(id: SalesforceId) -> Self {
        Self {
            id,
            fields: Fields::new(),
            completeness: Completeness::Full,
        }
    }

    /// The field's value, or `None` when it is absent or null.
    pub fn field(&self, name: &str) -> Option<&Value> {
        if name == "Id" {
            return None;
        }
        self.fields.get(name).filter(|v| !v.is_null())
    }

    /// The field as text: strings as they are, numbers and booleans printed. `Id` is the
    /// 18-character id.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        if name == "Id" {
            return Some(Cow::Borrowed(self.id.as_str()));
        }
        match self.field(name)? {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            other => Some(Cow::Owned(other.to_string())),
        }
    }

    pub fn username(&self) -> Option<&str> {
        self.field("Username").and_then(Value::as_str)
    }

    /// `IsActive` as a boolean, from a JSON boolean or the text `true` / `false`.
    pub fn is_active(&self) -> Option<bool> {
        match self.field("IsActive")? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// When Salesforce last changed the record: the first of [`MODIFIED_AT_FIELDS`] that holds a
    /// date and time.
    pub fn modified_at(&self) -> Option<OffsetDateTime> {
        MODIFIED_AT_FIELDS
            .iter()
            .find_map(|name| self.field(name).and_then(parse_datetime))
    }

    /// True when the sender included at least one field besides `Id`. A notification for a
    /// record deleted before delivery carries no field data.
    pub fn has_data(&self) -> bool {
        self.fields.iter().any(|(k, v)| k != "Id" && !v.is_null())
    }
}

/// The fields that say when Salesforce last changed a record, the preferred one first.
pub const MODIFIED_AT_FIELDS: [&str; 2] = ["SystemModstamp", "LastModifiedDate"];

/// The timestamp that orders an event against others for the same user. A change event's
/// commit time (`event_time`) orders it exactly; a snapshot's own modification time comes first
/// otherwise.
pub fn ordering_time(
    source: EventSource,
    event_time: Option<OffsetDateTime>,
    modified_at: impl FnOnce() -> Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    match source {
        EventSource::ChangeDataCapture => event_time.or_else(modified_at),
        _ => modified_at().or(event_time),
    }
}

/// Parses a Salesforce datetime given as an ISO 8601 / RFC 3339 string or as epoch milliseconds.
pub fn parse_datetime(value: &Value) -> Option<OffsetDateTime> {
    match value {
        Value::String(s) => parse_datetime_text(s),
        Value::Number(n) => n.as_i64().and_then(from_epoch_millis),
        _ => None,
    }
}

/// A date and time written as text, as [`parse_datetime`] reads a string.
pub fn parse_datetime_text(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .or_else(|| s.trim().parse::<i64>().ok().and_then(from_epoch_millis))
}

fn from_epoch_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    OutboundMessage,
    PlatformEvent,
    EventRelay,
    ChangeDataCapture,
    Import,
    Resync,
    /// The JSON contract for Flow and Apex HTTP callouts.
    FlowCallout,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutboundMessage => "outbound_message",
            Self::PlatformEvent => "platform_event",
            Self::EventRelay => "event_relay",
            Self::ChangeDataCapture => "change_data_capture",
            Self::Import => "import",
            Self::Resync => "resync",
            Self::FlowCallout => "flow_callout",
        }
    }
}

/// One user change as received, before it is fanned out to apps.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEvent {
    /// The dedupe key: the Outbound Message notification id, or the platform event's id.
    pub event_id: String,
    pub source: EventSource,
    pub user: SourceUser,
    /// When the change happened according to the event itself (commit time), used when the
    /// snapshot has neither `SystemModstamp` nor `LastModifiedDate`.
    pub event_time: Option<OffsetDateTime>,
}

impl SourceEvent {
    /// The timestamp that orders this event against others for the same user
    /// ([`ordering_time`]).
    pub fn source_time(&self) -> Option<OffsetDateTime> {
        ordering_time(self.source, self.event_time, || self.user.modified_at())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(fields: Value) -> SourceUser {
        let mut u = SourceUser::new(SalesforceId::parse("0058a00000LmN2pAAF").unwrap());
        if let Value::Object(map) = fields {
            u.fields = map.into_iter().collect();
        }
        u
    }

    #[test]
    fn is_active_reads_text_and_booleans() {
        assert_eq!(user(json!({"IsActive": "true"})).is_active(), Some(true));
        assert_eq!(user(json!({"IsActive": false})).is_active(), Some(false));
        assert_eq!(user(json!({"IsActive": null})).is_active(), None);
    }

    #[test]
    fn system_modstamp_wins_over_last_modified_date() {
        let u = user(json!({
            "LastModifiedDate": "2025-03-14T16:00:00.000Z",
            "SystemModstamp": "2025-03-14T16:02:11.000Z"
        }));
        assert_eq!(u.modified_at().unwrap().unix_timestamp(), 1_741_968_131);
    }

    #[test]
    fn datetimes_may_be_epoch_milliseconds() {
        let u = user(json!({"LastModifiedDate": 1_741_968_132_000_i64}));
        assert_eq!(u.modified_at().unwrap().unix_timestamp(), 1_741_968_132);
    }

    #[test]
    fn a_snapshot_with_only_nulls_has_no_data() {
        assert!(!user(json!({"Email": null})).has_data());
        assert!(user(json!({"Email": "a@b.c"})).has_data());
    }
}
