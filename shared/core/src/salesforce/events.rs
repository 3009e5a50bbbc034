//! Reading JSON events: platform events (as the streaming API delivers them, or relayed to Amazon
//! EventBridge by Event Relay), the Flow / Apex callout contract, Change Data Capture
//! `UserChangeEvent`s (CometD and Pub/Sub-decoded forms), and a JSON array of any of these.
//!
//! Every shape becomes the same [`SourceEvent`]s an Outbound Message produces, so the fan-out to
//! apps is shared. The parser is hostile-input first: it checks UTF-8 and nesting depth before
//! building anything, bounds the number of events, fields and field sizes, validates every id,
//! refuses duplicate event ids, and names the place of each problem (`[2].data.payload`).
//!
//! The Flow callout contract (`POST /salesforce/events`, `Content-Type: application/json`):
//!
//! ```json
//! {
//!   "org_id": "00D8a000002bQxTEAU",
//!   "events": [
//!     {
//!       "id": "a1b2c3-unique-per-change",
//!       "operation": "deactivate",
//!       "occurred_at": "2025-03-14T16:02:13Z",
//!       "user": { "Id": "0058a00000LmN3qAAF", "Username": "...", "IsActive": false,
//!                 "PermissionSetGroups__c": ["Sales_Manager", "Support_Tier_2"] }
//!     }
//!   ]
//! }
//! ```
//!
//! `org_id` is optional (checked against `[source] org_ids` when present); `operation`
//! (`create`, `update`, `deactivate`, `reactivate`) is optional; `occurred_at` is an ISO 8601
//! string or epoch milliseconds; `user` holds User fields by their API names, `Id` required. No
//! other keys are accepted.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::ascii::{self, LETTER, NAME_CHARACTER};
use crate::error::{Classify, ErrorClass};
use crate::ids::{IdError, SalesforceId};
use crate::source::{Completeness, EventSource, Fields, SourceEvent, SourceUser, parse_datetime};

/// The most events one message may hold (top-level entries, or entries of a Flow contract).
pub const MAX_EVENTS: usize = 100;
/// The most users one message may name, after change events with several `recordIds` fan out.
pub const MAX_USERS: usize = 500;
/// The deepest JSON nesting accepted. The deepest real shape (a change event's compound field
/// in an EventBridge envelope in a batch) nests six deep.
pub const MAX_DEPTH: usize = 32;
/// The largest string field value accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 32 * 1024;
/// The most fields one event may carry. The User object has about 200.
pub const MAX_FIELDS: usize = 500;
/// The longest field name accepted (API names have at most 40 characters, plus `__c`).
pub const MAX_FIELD_NAME_BYTES: usize = 80;
/// The longest event id accepted.
pub const MAX_EVENT_ID_BYTES: usize = 200;
const MAX_QUOTE_CHARS: usize = 60;

/// How Salesforce writes a date-time in an Outbound Message and in CometD events.
const SALESFORCE_DATETIME: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

const USER_KEY_PREFIX: &str = "005";
const ORGANIZATION_KEY_PREFIX: &str = "00D";
pub(crate) const EVENT_RELAY_SOURCE_PREFIX: &str = "aws.partner/salesforce.com/";
/// Platform event fields that describe the event, not the user.
const EVENT_METADATA_FIELDS: &[&str] = &["CreatedDate", "CreatedById", "EventUuid", "ReplayId"];

/// The built-in map from platform event fields to User fields. Both `Snake_Case__c` and
/// `CamelCase__c` spellings are common in orgs, so both are listed.
pub const DEFAULT_FIELD_MAP: &[(&str, &str)] = &[
    ("User_Id__c", "Id"),
    ("UserId__c", "Id"),
    ("Username__c", "Username"),
    ("User_Name__c", "Username"),
    ("Email__c", "Email"),
    ("First_Name__c", "FirstName"),
    ("FirstName__c", "FirstName"),
    ("Last_Name__c", "LastName"),
    ("LastName__c", "LastName"),
    ("Alias__c", "Alias"),
    ("Title__c", "Title"),
    ("Department__c", "Department"),
    ("Division__c", "Division"),
    ("Company_Name__c", "CompanyName"),
    ("CompanyName__c", "CompanyName"),
    ("Employee_Number__c", "EmployeeNumber"),
    ("EmployeeNumber__c", "EmployeeNumber"),
    ("Is_Active__c", "IsActive"),
    ("IsActive__c", "IsActive"),
    ("Federation_Identifier__c", "FederationIdentifier"),
    ("FederationIdentifier__c", "FederationIdentifier"),
    ("Manager_Id__c", "ManagerId"),
    ("ManagerId__c", "ManagerId"),
    ("Profile_Id__c", "ProfileId"),
    ("ProfileId__c", "ProfileId"),
    ("Time_Zone_Sid_Key__c", "TimeZoneSidKey"),
    ("TimeZoneSidKey__c", "TimeZoneSidKey"),
    ("Phone__c", "Phone"),
    ("Mobile_Phone__c", "MobilePhone"),
    ("MobilePhone__c", "MobilePhone"),
    ("City__c", "City"),
    ("Country__c", "Country"),
    ("Source_Last_Modified__c", "LastModifiedDate"),
    ("Last_Modified_Date__c", "LastModifiedDate"),
    ("LastModifiedDate__c", "LastModifiedDate"),
    // The User field the setup kit adds (infra/salesforce), which `[apps.groups] from` reads, so
    // a platform event and an Outbound Message name a user's groups the same way. An event field
    // already called `PermissionSetGroups__c` keeps its name.
    ("Permission_Set_Groups__c", "PermissionSetGroups__c"),
];

/// What to do with a change event for a user userprov holds no snapshot of, when the changed
/// fields alone cannot be provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartialWithoutSnapshot {
    /// Log the event as skipped (`partial_event_without_snapshot`); a resync brings the user in.
    #[default]
    Skip,
    /// Log it as failed and dead-letter the job, so it can be redriven after a resync.
    Fail,
}

/// `[source.events]`: how JSON events are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Start from [`DEFAULT_FIELD_MAP`]; `fields` adds to it and overrides it.
    pub default_fields: bool,
    /// Platform event field → User field.
    pub fields: BTreeMap<String, String>,
    /// The platform event field holding an explicit operation (`create`, `update`, `deactivate`,
    /// `reactivate`); empty to ignore operations.
    pub operation_field: String,
    /// User fields holding several values (Permission Set Groups), sent as a JSON array of strings
    /// or as one string joined by `list_separator`. Either way the user gets one string joined by
    /// `list_separator`.
    pub list_fields: Vec<String>,
    pub list_separator: String,
    pub partial_without_snapshot: PartialWithoutSnapshot,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            default_fields: true,
            fields: BTreeMap::new(),
            operation_field: "Operation__c".into(),
            list_fields: vec!["PermissionSetGroups__c".into()],
            list_separator: ";".into(),
            partial_without_snapshot: PartialWithoutSnapshot::Skip,
        }
    }
}

impl EventsConfig {
    /// Validates and compiles the configuration; problems come as (key, message) pairs.
    pub fn compile(&self) -> Result<EventFormat, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut fields = FieldMap::default();
        if self.default_fields {
            for (from, to) in DEFAULT_FIELD_MAP {
                fields.insert((*from).to_owned(), (*to).to_owned());
            }
        }
        for (from, to) in &self.fields {
            if !is_field_name(from) {
                problems.push((
                    format!("fields.{from:?}"),
                    "an event field is a Salesforce API name (letters, digits, '_')".to_owned(),
                ));
            }
            if !is_field_name(to) {
                problems.push((
                    format!("fields.{from:?}"),
                    format!("{to:?} is not a User field API name"),
                ));
            }
            fields.insert(from.clone(), to.clone());
        }
        let operation_field = if self.operation_field.is_empty() {
            None
        } else {
            if !is_field_name(&self.operation_field) {
                problems.push((
                    "operation_field".to_owned(),
                    "must be a Salesforce API name, or empty to ignore operations".to_owned(),
                ));
            }
            if self.fields.contains_key(&self.operation_field) {
                problems.push((
                    "operation_field".to_owned(),
                    "is also mapped in fields; a field is either the operation or a User field"
                        .to_owned(),
                ));
            }
            Some(self.operation_field.clone())
        };
        for field in &self.list_fields {
            if !is_field_name(field) {
                problems.push((
                    "list_fields".to_owned(),
                    format!("{field:?} is not a User field API name"),
                ));
            }
        }
        let separator_ok = !self.list_separator.is_empty()
            && self.list_separator.chars().count() <= 4
            && !self
                .list_separator
                .chars()
                .any(|c| c.is_alphanumeric() || c.is_whitespace());
        if !separator_ok {
            problems.push((
                "list_separator".to_owned(),
                "must be 1 to 4 punctuation characters, such as \";\"".to_owned(),
            ));
        }
        if problems.is_empty() {
            Ok(EventFormat {
                fields,
                operation_field,
                list_fields: self.list_fields.clone(),
                list_separator: self.list_separator.clone(),
                partial_without_snapshot: self.partial_without_snapshot,
            })
        } else {
            Err(problems)
        }
    }
}

/// Event field → User field. Looked up once per field of every event, so it hashes with FNV-1a
/// rather than SipHash: its keys come from the configuration, so an attacker who picks the
/// looked-up names can only miss, never fill a bucket.
type FieldMap = HashMap<String, String, BuildHasherDefault<Fnv1a>>;

/// The 64-bit FNV-1a hash.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A validated `[source.events]`: how to read platform event fields as User fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    fields: FieldMap,
    operation_field: Option<String>,
    list_fields: Vec<String>,
    list_separator: String,
    pub partial_without_snapshot: PartialWithoutSnapshot,
}

impl Default for EventFormat {
    fn default() -> Self {
        // The default configuration always compiles; this fallback only keeps the type total.
        EventsConfig::default().compile().unwrap_or_else(|_| Self {
            fields: FieldMap::default(),
            operation_field: None,
            list_fields: Vec::new(),
            list_separator: ";".into(),
            partial_without_snapshot: PartialWithoutSnapshot::Skip,
        })
    }
}

impl EventFormat {
    /// The User field an event field is read into.
    pub fn user_field<'a>(&'a self, event_field: &'a str) -> &'a str {
        self.fields
            .get(event_field)
            .map_or(event_field, String::as_str)
    }

    pub fn list_separator(&self) -> &str {
        &self.list_separator
    }
}

/// What one JSON message held.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMessage {
    /// One per user: a change event naming several users gives one each.
    pub events: Vec<SourceEvent>,
    /// Organization ids the message names (Event Relay sources, the Flow contract's `org_id`).
    /// The caller must check each is a configured org.
    pub org_ids: Vec<SalesforceId>,
    /// Ids of `GAP_OVERFLOW` change events: too many changes to list, so every user needs a resync.
    pub overflows: Vec<String>,
}

/// Why a JSON message is refused. Nothing of a refused message is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error("the message is not UTF-8")]
    NotUtf8,
    #[error("the message is not JSON: {0}")]
    Malformed(String),
    #[error("the JSON nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error(
        "{at}: not a known event shape (expected data.payload, detail.payload, events, or ChangeEventHeader)"
    )]
    UnknownShape { at: String },
    #[error("the message holds no event")]
    NoEvents,
    #[error("the message holds {0} events; at most {MAX_EVENTS} are allowed")]
    TooManyEvents(usize),
    #[error("the message names {0} users; at most {MAX_USERS} are allowed")]
    TooManyUsers(usize),
    #[error("{at}: the event has no id")]
    MissingEventId { at: String },
    #[error(
        "{at}: the event id is not 1 to {MAX_EVENT_ID_BYTES} characters of letters, digits and ._:/-"
    )]
    BadEventId { at: String },
    #[error("the event id {0} appears more than once in the message")]
    DuplicateEventId(String),
    #[error("{at}: the event names no user id")]
    MissingUserId { at: String },
    #[error("{at}: the user id is not a Salesforce id: {error}")]
    BadUserId { at: String, error: IdError },
    #[error("{at}: {id} is not a user id (005…)")]
    NotAUserId { at: String, id: String },
    #[error("{at}: the event is about a {entity}, not a User")]
    NotAUser { at: String, entity: String },
    #[error("{at}: the source is not a Salesforce Event Relay ({EVENT_RELAY_SOURCE_PREFIX}…)")]
    NotSalesforceSource { at: String },
    #[error("{at}: not an organization id (00D…)")]
    BadOrganizationId { at: String },
    #[error("{at}: unknown key {key:?}")]
    UnknownField { at: String, key: String },
    #[error("{at}: {field:?} is not a Salesforce field API name")]
    BadFieldName { at: String, field: String },
    #[error("{at}: the user field {field} is given twice")]
    DuplicateField { at: String, field: String },
    #[error("{at}: the value of {field} is longer than {MAX_FIELD_BYTES} bytes")]
    FieldTooLarge { at: String, field: String },
    #[error("{at}: the event has more than {MAX_FIELDS} fields")]
    TooManyFields { at: String },
    #[error("{at}: {field} must be {expected}")]
    BadFieldValue {
        at: String,
        field: String,
        expected: &'static str,
    },
    #[error("{at}: unknown operation {value:?} (create, update, deactivate, reactivate)")]
    UnknownOperation { at: String, value: String },
    #[error("{at}: the operation {operation} contradicts IsActive")]
    OperationConflict { at: String, operation: &'static str },
    #[error("{at}: bad ChangeEventHeader: {detail}")]
    BadChangeHeader { at: String, detail: &'static str },
    #[error("{at}: unknown changeType {value:?}")]
    UnknownChangeType { at: String, value: String },
}

impl EventsError {
    /// A machine-readable reason, stable across releases.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::Malformed(_) => "malformed_json",
            Self::TooDeep => "too_deep",
            Self::UnknownShape { .. } => "unknown_shape",
            Self::NoEvents => "no_events",
            Self::TooManyEvents(_) => "too_many_events",
            Self::TooManyUsers(_) => "too_many_users",
            Self::MissingEventId { .. } => "missing_event_id",
            Self::BadEventId { .. } => "bad_event_id",
            Self::DuplicateEventId(_) => "duplicate_event_id",
            Self::MissingUserId { .. } => "missing_user_id",
            Self::BadUserId { .. } => "bad_user_id",
            Self::NotAUserId { .. } => "not_a_user_id",
            Self::NotAUser { .. } => "not_a_user",
            Self::NotSalesforceSource { .. } => "not_salesforce_source",
            Self::BadOrganizationId { .. } => "bad_organization_id",
            Self::UnknownField { .. } => "unknown_field",
            Self::BadFieldName { .. } => "bad_field_name",
            Self::DuplicateField { .. } => "duplicate_field",
            Self::FieldTooLarge { .. } => "field_too_large",
            Self::TooManyFields { .. } => "too_many_fields",
            Self::BadFieldValue { .. } => "bad_field_value",
            Self::UnknownOperation { .. } => "unknown_operation",
            Self::OperationConflict { .. } => "operation_conflicts_with_is_active",
            Self::BadChangeHeader { .. } => "bad_change_event_header",
            Self::UnknownChangeType { .. } => "unknown_change_type",
        }
    }
}

impl Classify for EventsError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Parses a JSON message of any accepted shape.
pub fn parse_events(body: &[u8], format: &EventFormat) -> Result<EventMessage, EventsError> {
    let text = std::str::from_utf8(body).map_err(|_| EventsError::NotUtf8)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    // The depth is checked while the tree is built, which costs no pass of its own. A body that
    // does not parse (or goes too deep) gets the byte pass, so a too-deep body is refused as
    // such even when it is also broken.
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = DepthBounded { depth: 1 }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    let value = match parsed {
        Ok(value) => value,
        Err(error) => {
            check_depth(text.as_bytes())?;
            // serde_json's messages name a position and a kind, never the input's content.
            return Err(EventsError::Malformed(error.to_string()));
        }
    };
    let mut reader = Reader {
        format,
        out: EventMessage {
            events: Vec::new(),
            org_ids: Vec::new(),
            overflows: Vec::new(),
        },
        entries: 0,
        seen_ids: HashSet::new(),
    };
    match value {
        Value::Array(items) => {
            if items.len() > MAX_EVENTS {
                return Err(EventsError::TooManyEvents(items.len()));
            }
            for (index, item) in items.into_iter().enumerate() {
                let at = index_place(index);
                match item {
                    Value::Object(map) => reader.entry(map, &at)?,
                    _ => return Err(EventsError::UnknownShape { at }),
                }
            }
        }
        Value::Object(map) => reader.entry(map, "$")?,
        _ => return Err(EventsError::UnknownShape { at: "$".into() }),
    }
    if reader.entries == 0 {
        return Err(EventsError::NoEvents);
    }
    Ok(reader.out)
}

/// Refuses JSON nested deeper than [`MAX_DEPTH`] before any of it is built: one pass over the
/// bytes, skipping strings.
fn check_depth(bytes: &[u8]) -> Result<(), EventsError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(EventsError::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Builds a [`Value`] as `Value`'s own `Deserialize` does, but refuses an array or object at a
/// depth past [`MAX_DEPTH`] (the top level is depth 1) as soon as it opens.
struct DepthBounded {
    depth: usize,
}

impl DepthBounded {
    fn enter<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "the JSON nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for DepthBounded {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DepthBounded {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_EVENTS));
        while let Some(item) = seq.next_element_seed(DepthBounded { depth: child.depth })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let child = self.enter()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(DepthBounded { depth: child.depth })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

struct Reader<'f> {
    format: &'f EventFormat,
    out: EventMessage,
    /// Events seen (top-level entries and Flow contract events), against [`MAX_EVENTS`].
    entries: usize,
    seen_ids: HashSet<String>,
}

/// One user's event before it is checked for duplicates.
struct Draft {
    event_id: String,
    source: EventSource,
    user: SourceUser,
    event_time: Option<OffsetDateTime>,
}

impl Reader<'_> {
    fn count_entry(&mut self) -> Result<(), EventsError> {
        self.entries += 1;
        if self.entries > MAX_EVENTS {
            return Err(EventsError::TooManyEvents(self.entries));
        }
        Ok(())
    }

    fn push(&mut self, draft: Draft) -> Result<(), EventsError> {
        if !self.seen_ids.insert(draft.event_id.clone()) {
            return Err(EventsError::DuplicateEventId(draft.event_id));
        }
        if self.out.events.len() >= MAX_USERS {
            return Err(EventsError::TooManyUsers(self.out.events.len() + 1));
        }
        self.out.events.push(SourceEvent {
            event_id: draft.event_id,
            source: draft.source,
            user: draft.user,
            event_time: draft.event_time,
        });
        Ok(())
    }

    /// One object of the message: a streaming API message, an EventBridge envelope, a Flow
    /// contract, or a Pub/Sub-decoded change event.
    fn entry(&mut self, mut map: Map<String, Value>, at: &str) -> Result<(), EventsError> {
        if has_object_with(&map, "data", "payload") {
            self.count_entry()?;
            return self.streaming(map, at);
        }
        if has_object_with(&map, "detail", "payload") {
            self.count_entry()?;
            return self.event_relay(map, at);
        }
        if matches!(map.get("events"), Some(Value::Array(_))) {
            return self.flow_contract(map, at);
        }
        if map.contains_key("ChangeEventHeader") {
            self.count_entry()?;
            return self.change_event(&mut map, at, None);
        }
        Err(EventsError::UnknownShape { at: at.to_owned() })
    }

    /// `{"data": {"payload": {...}, "event": {"replayId": N, "EventUuid": "..."}}, "channel": "..."}`
    fn streaming(&mut self, mut map: Map<String, Value>, at: &str) -> Result<(), EventsError> {
        let channel = map
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(Value::Object(mut data)) = map.remove("data") else {
            return Err(EventsError::UnknownShape { at: at.to_owned() });
        };
        let event = match data.remove("event") {
            Some(Value::Object(event)) => event,
            _ => Map::new(),
        };
        let Some(Value::Object(mut payload)) = data.remove("payload") else {
            return Err(EventsError::UnknownShape { at: at.to_owned() });
        };
        let at = [at, ".data.payload"].concat();
        let uuid = event.get("EventUuid").or_else(|| payload.get("EventUuid"));
        // Only needed, and so only written, when the event has no EventUuid.
        let replay = || {
            event
                .get("replayId")
                .filter(|v| v.is_number() || v.is_string())
                .map(|replay| {
                    let replay = scalar_text(replay);
                    match &channel {
                        Some(channel) => format!("{channel}:{replay}"),
                        None => replay,
                    }
                })
        };
        if payload.contains_key("ChangeEventHeader") {
            let fallback = match uuid {
                Some(uuid) => Some(event_id(uuid, &at)?),
                None => replay(),
            };
            return self.change_event(&mut payload, &at, fallback);
        }
        let id = match uuid {
            Some(uuid) => event_id(uuid, &at)?,
            None => {
                let replay =
                    replay().ok_or_else(|| EventsError::MissingEventId { at: at.clone() })?;
                event_id(&Value::String(replay), &at)?
            }
        };
        let event_time = payload.get("CreatedDate").and_then(parse_datetime);
        let user = self.platform_event_user(payload, &at)?;
        self.push(Draft {
            event_id: id,
            source: EventSource::PlatformEvent,
            user,
            event_time,
        })
    }

    /// The EventBridge envelope of Event Relay: `{"id", "source", "time", "detail": {"payload", "id"}}`.
    fn event_relay(&mut self, mut map: Map<String, Value>, at: &str) -> Result<(), EventsError> {
        let source = map.get("source").and_then(Value::as_str).unwrap_or("");
        let org = source
            .strip_prefix(EVENT_RELAY_SOURCE_PREFIX)
            .ok_or_else(|| EventsError::NotSalesforceSource {
                at: format!("{at}.source"),
            })?;
        let org = org.split('/').next().unwrap_or("");
        self.org_id(org, &format!("{at}.source"))?;
        let envelope_time = map.get("time").and_then(parse_datetime);
        let envelope_id = map.remove("id");
        let Some(Value::Object(mut detail)) = map.remove("detail") else {
            return Err(EventsError::UnknownShape { at: at.to_owned() });
        };
        let Some(Value::Object(mut payload)) = detail.remove("payload") else {
            return Err(EventsError::UnknownShape { at: at.to_owned() });
        };
        let at = [at, ".detail.payload"].concat();
        // Dedupe on Salesforce's id of the event, which survives a re-relay, before
        // EventBridge's own id.
        let id_value = payload
            .get("EventUuid")
            .or_else(|| detail.get("EventUuid"))
            .or_else(|| detail.get("id"))
            .or(envelope_id.as_ref());
        let id = id_value.map(|v| event_id(v, &at)).transpose()?;
        if payload.contains_key("ChangeEventHeader") {
            return self.change_event(&mut payload, &at, id);
        }
        let id = id.ok_or_else(|| EventsError::MissingEventId { at: at.clone() })?;
        let event_time = payload
            .get("CreatedDate")
            .and_then(parse_datetime)
            .or(envelope_time);
        let user = self.platform_event_user(payload, &at)?;
        self.push(Draft {
            event_id: id,
            source: EventSource::EventRelay,
            user,
            event_time,
        })
    }

    fn org_id(&mut self, raw: &str, at: &str) -> Result<(), EventsError> {
        match SalesforceId::parse(raw) {
            Ok(id) if id.key_prefix() == ORGANIZATION_KEY_PREFIX => {
                if !self.out.org_ids.contains(&id) {
                    self.out.org_ids.push(id);
                }
                Ok(())
            }
            _ => Err(EventsError::BadOrganizationId { at: at.to_owned() }),
        }
    }

    /// The documented contract for Flow and Apex callouts.
    fn flow_contract(&mut self, mut map: Map<String, Value>, at: &str) -> Result<(), EventsError> {
        if let Some(key) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "events" | "org_id"))
        {
            return Err(EventsError::UnknownField {
                at: at.to_owned(),
                key: quote(key),
            });
        }
        match map.remove("org_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(org)) => self.org_id(&org, &format!("{at}.org_id"))?,
            Some(_) => {
                return Err(EventsError::BadOrganizationId {
                    at: format!("{at}.org_id"),
                });
            }
        }
        let Some(Value::Array(events)) = map.remove("events") else {
            return Err(EventsError::UnknownShape { at: at.to_owned() });
        };
        if self.entries + events.len() > MAX_EVENTS {
            return Err(EventsError::TooManyEvents(self.entries + events.len()));
        }
        for (index, event) in events.into_iter().enumerate() {
            self.count_entry()?;
            let at = format!("{at}.events[{index}]");
            let Value::Object(mut event) = event else {
                return Err(EventsError::UnknownShape { at });
            };
            if let Some(key) = event
                .keys()
                .find(|k| !matches!(k.as_str(), "id" | "operation" | "occurred_at" | "user"))
            {
                return Err(EventsError::UnknownField {
                    at,
                    key: quote(key),
                });
            }
            let id = event
                .get("id")
                .ok_or_else(|| EventsError::MissingEventId { at: at.clone() })
                .and_then(|id| event_id(id, &format!("{at}.id")))?;
            let operation = match event.get("operation") {
                None | Some(Value::Null) => None,
                Some(value) => Some(operation(value, &at)?),
            };
            let event_time = match event.get("occurred_at") {
                None | Some(Value::Null) => None,
                Some(value) => {
                    Some(
                        parse_datetime(value).ok_or_else(|| EventsError::BadFieldValue {
                            at: at.clone(),
                            field: "occurred_at".into(),
                            expected: "an ISO 8601 date-time or epoch milliseconds",
                        })?,
                    )
                }
            };
            let Some(Value::Object(user_fields)) = event.remove("user") else {
                return Err(EventsError::BadFieldValue {
                    at,
                    field: "user".into(),
                    expected: "an object of User fields",
                });
            };
            let at = format!("{at}.user");
            let mut builder = UserBuilder::new(self.format, &at);
            for (name, value) in user_fields {
                builder.field(name, value)?;
            }
            let user = builder.finish(operation)?;
            self.push(Draft {
                event_id: id,
                source: EventSource::FlowCallout,
                user,
                event_time,
            })?;
        }
        Ok(())
    }

    /// A platform event's payload: fields renamed through the field map.
    fn platform_event_user(
        &self,
        payload: Map<String, Value>,
        at: &str,
    ) -> Result<SourceUser, EventsError> {
        let mut builder = UserBuilder::new(self.format, at);
        let mut operation_value = None;
        for (name, value) in payload {
            if self.format.operation_field.as_deref() == Some(name.as_str()) {
                operation_value = Some(value);
                continue;
            }
            if EVENT_METADATA_FIELDS.contains(&name.as_str()) {
                continue;
            }
            let mut user_field = name;
            if let Some(renamed) = self.format.fields.get(&user_field) {
                // Reuses the key's buffer: API names shrink when renamed.
                user_field.clear();
                user_field.push_str(renamed);
            }
            builder.field(user_field, value)?;
        }
        let operation = match operation_value {
            None | Some(Value::Null) => None,
            Some(value) => Some(operation(&value, at)?),
        };
        builder.finish(operation)
    }

    /// A `UserChangeEvent`: `ChangeEventHeader` plus fields, in either form.
    fn change_event(
        &mut self,
        payload: &mut Map<String, Value>,
        at: &str,
        fallback_id: Option<String>,
    ) -> Result<(), EventsError> {
        let header_at = format!("{at}.ChangeEventHeader");
        let Some(Value::Object(header)) = payload.remove("ChangeEventHeader") else {
            return Err(EventsError::BadChangeHeader {
                at: header_at,
                detail: "it must be an object",
            });
        };
        let bad = |detail| EventsError::BadChangeHeader {
            at: header_at.clone(),
            detail,
        };
        match header.get("entityName") {
            Some(Value::String(entity)) if entity == "User" => {}
            Some(Value::String(entity)) => {
                return Err(EventsError::NotAUser {
                    at: header_at.clone(),
                    entity: quote(entity),
                });
            }
            _ => return Err(bad("entityName must be \"User\"")),
        }
        let change_type = match header.get("changeType") {
            Some(Value::String(kind)) => kind.as_str(),
            _ => return Err(bad("changeType is missing")),
        };
        let change =
            ChangeType::parse(change_type).ok_or_else(|| EventsError::UnknownChangeType {
                at: header_at.clone(),
                value: quote(change_type),
            })?;
        let record_ids = match header.get("recordIds") {
            Some(Value::Array(ids)) => ids,
            _ => return Err(bad("recordIds must be an array")),
        };
        let mut users = Vec::with_capacity(record_ids.len());
        for (index, raw) in record_ids.iter().enumerate() {
            let at = format!("{header_at}.recordIds[{index}]");
            let Value::String(raw) = raw else {
                return Err(EventsError::MissingUserId { at });
            };
            users.push(user_id(raw, &at)?);
        }
        if users.len() + self.out.events.len() > MAX_USERS {
            return Err(EventsError::TooManyUsers(
                users.len() + self.out.events.len(),
            ));
        }
        let commit_time = match header.get("commitTimestamp") {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse_datetime(value).ok_or_else(|| {
                bad("commitTimestamp must be epoch milliseconds or an ISO 8601 date-time")
            })?),
        };
        // The transaction key and sequence number name the change itself, whichever channel
        // (CometD, Pub/Sub, Event Relay) delivered it.
        let base_id = match (header.get("transactionKey"), header.get("sequenceNumber")) {
            (Some(Value::String(key)), Some(sequence)) if sequence.is_number() => {
                Some(format!("{key}:{}", scalar_text(sequence)))
            }
            _ => fallback_id,
        }
        .ok_or_else(|| EventsError::MissingEventId { at: at.to_owned() })?;
        check_event_id(&base_id, at)?;

        if change == ChangeType::GapOverflow || (change.is_gap() && users.is_empty()) {
            self.out.overflows.push(base_id);
            return Ok(());
        }
        if users.is_empty() {
            return Err(bad("recordIds is empty"));
        }
        let fields = if change.is_gap() {
            Fields::new()
        } else if change == ChangeType::Delete {
            // A User cannot be deleted in Salesforce; should one ever be, the account goes.
            Fields::from([("IsActive".to_owned(), Value::Bool(false))])
        } else {
            self.changed_fields(&header, payload, at, &header_at)?
        };
        let completeness = if change.is_gap() {
            Completeness::Gap
        } else {
            Completeness::Partial
        };
        for id in users {
            let event_id = format!("{base_id}:{id}");
            check_event_id(&event_id, at)?;
            self.push(Draft {
                event_id,
                source: EventSource::ChangeDataCapture,
                user: SourceUser {
                    id,
                    fields: fields.clone(),
                    completeness,
                },
                event_time: commit_time,
            })?;
        }
        Ok(())
    }

    /// The fields a change event sets. With `changedFields` (an update), exactly those and the
    /// `nulledFields`, a listed field missing from the payload being cleared; without (a
    /// create), every field the payload carries.
    fn changed_fields(
        &self,
        header: &Map<String, Value>,
        payload: &mut Map<String, Value>,
        at: &str,
        header_at: &str,
    ) -> Result<Fields, EventsError> {
        let names = |key: &str| -> Result<Vec<&str>, EventsError> {
            match header.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str().ok_or(EventsError::BadChangeHeader {
                            at: header_at.to_owned(),
                            detail: "changedFields and nulledFields list field names",
                        })
                    })
                    .collect(),
                Some(_) => Err(EventsError::BadChangeHeader {
                    at: header_at.to_owned(),
                    detail: "changedFields and nulledFields must be arrays",
                }),
            }
        };
        let changed = names("changedFields")?;
        let nulled = names("nulledFields")?;
        let mut builder = UserBuilder::new(self.format, at);
        // Compound fields (Name, Address) arrive as objects; their parts are User fields.
        let mut flat: Map<String, Value> = Map::new();
        for (name, value) in std::mem::take(payload) {
            match value {
                Value::Object(parts) => {
                    for (part, value) in parts {
                        flat.insert(part, value);
                    }
                }
                other => {
                    flat.insert(name, other);
                }
            }
        }
        if changed.is_empty() && nulled.is_empty() {
            for (name, value) in flat {
                builder.field(name, value)?;
            }
        } else {
            let mut listed: Vec<&str> = Vec::with_capacity(changed.len() + nulled.len());
            for name in changed.iter().chain(nulled.iter()) {
                // `Name.FirstName` names a part of a compound field.
                let name = name.rsplit('.').next().unwrap_or(name);
                if !listed.contains(&name) {
                    listed.push(name);
                }
            }
            for name in listed {
                if name == "Name" || name == "Address" {
                    // The whole compound changed: its parts are in the payload, already flat.
                    continue;
                }
                let value = if nulled.iter().any(|n| n.rsplit('.').next() == Some(name)) {
                    Value::Null
                } else {
                    flat.remove(name).unwrap_or(Value::Null)
                };
                builder.field(name.to_owned(), value)?;
            }
        }
        Ok(builder.fields)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeType {
    Create,
    Update,
    Delete,
    Undelete,
    GapCreate,
    GapUpdate,
    GapDelete,
    GapUndelete,
    GapOverflow,
}

impl ChangeType {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "CREATE" => Self::Create,
            "UPDATE" => Self::Update,
            "DELETE" => Self::Delete,
            "UNDELETE" => Self::Undelete,
            "GAP_CREATE" => Self::GapCreate,
            "GAP_UPDATE" => Self::GapUpdate,
            "GAP_DELETE" => Self::GapDelete,
            "GAP_UNDELETE" => Self::GapUndelete,
            "GAP_OVERFLOW" => Self::GapOverflow,
            _ => return None,
        })
    }

    fn is_gap(self) -> bool {
        matches!(
            self,
            Self::GapCreate
                | Self::GapUpdate
                | Self::GapDelete
                | Self::GapUndelete
                | Self::GapOverflow
        )
    }
}

/// An explicit operation of a platform event or Flow callout. The worker still decides from
/// state; an operation only says what `IsActive` is when the event does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Update,
    Deactivate,
    Reactivate,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Deactivate => "deactivate",
            Self::Reactivate => "reactivate",
        }
    }

    fn implied_active(self) -> Option<bool> {
        match self {
            Self::Create | Self::Reactivate => Some(true),
            Self::Deactivate => Some(false),
            Self::Update => None,
        }
    }
}

/// The operation `value` names; `at` is the place of the event, whose `operation` it is.
fn operation(value: &Value, at: &str) -> Result<Operation, EventsError> {
    let text = value.as_str().unwrap_or("").trim();
    let is = |name: &str| text.eq_ignore_ascii_case(name);
    if is("create") || is("insert") {
        Ok(Operation::Create)
    } else if is("update") {
        Ok(Operation::Update)
    } else if is("deactivate") {
        Ok(Operation::Deactivate)
    } else if is("reactivate") || is("activate") {
        Ok(Operation::Reactivate)
    } else {
        Err(EventsError::UnknownOperation {
            at: [at, ".operation"].concat(),
            value: quote(&scalar_text(value)),
        })
    }
}

/// Collects one user's fields with every check.
struct UserBuilder<'a> {
    format: &'a EventFormat,
    at: &'a str,
    id: Option<SalesforceId>,
    fields: Fields,
}

impl<'a> UserBuilder<'a> {
    fn new(format: &'a EventFormat, at: &'a str) -> Self {
        Self {
            format,
            at,
            id: None,
            fields: Fields::new(),
        }
    }

    fn field(&mut self, name: String, value: Value) -> Result<(), EventsError> {
        if !is_field_name(&name) {
            return Err(EventsError::BadFieldName {
                at: self.at.to_owned(),
                field: quote(&name),
            });
        }
        if name == "Id" {
            let Value::String(raw) = &value else {
                return Err(EventsError::MissingUserId {
                    at: self.at.to_owned(),
                });
            };
            let id = user_id(raw, self.at)?;
            if self.id.as_ref().is_some_and(|seen| *seen != id) {
                return Err(EventsError::DuplicateField {
                    at: self.at.to_owned(),
                    field: name,
                });
            }
            self.id = Some(id);
            return Ok(());
        }
        if self.fields.len() >= MAX_FIELDS {
            return Err(EventsError::TooManyFields {
                at: self.at.to_owned(),
            });
        }
        let value = self.normalise(&name, value)?;
        match self.fields.entry(name) {
            Entry::Vacant(free) => {
                free.insert(value);
                Ok(())
            }
            // Two event fields mapped to one User field: fine while they agree.
            Entry::Occupied(taken)
                if !taken.get().is_null() && !value.is_null() && *taken.get() != value =>
            {
                Err(EventsError::DuplicateField {
                    at: self.at.to_owned(),
                    field: taken.key().clone(),
                })
            }
            Entry::Occupied(taken) if !taken.get().is_null() => Ok(()),
            Entry::Occupied(mut taken) => {
                taken.insert(value);
                Ok(())
            }
        }
    }

    fn normalise(&self, name: &str, value: Value) -> Result<Value, EventsError> {
        let is_list = self.format.list_fields.iter().any(|f| f == name);
        let too_large = || EventsError::FieldTooLarge {
            at: self.at.to_owned(),
            field: name.to_owned(),
        };
        match value {
            Value::String(text) if text.len() > MAX_FIELD_BYTES => Err(too_large()),
            Value::String(text) if is_list => Ok(Value::String(normalise_list(
                text,
                &self.format.list_separator,
            ))),
            Value::Array(items) if is_list => {
                let mut parts = Vec::with_capacity(items.len());
                for item in &items {
                    match item {
                        Value::String(part) => parts.push(part.as_str()),
                        _ => {
                            return Err(EventsError::BadFieldValue {
                                at: self.at.to_owned(),
                                field: name.to_owned(),
                                expected: "a list of strings",
                            });
                        }
                    }
                }
                let joined = join_list(parts.into_iter(), &self.format.list_separator);
                if joined.len() > MAX_FIELD_BYTES {
                    return Err(too_large());
                }
                Ok(Value::String(joined))
            }
            Value::Number(number) if is_datetime_field(name) => {
                let text = number
                    .as_i64()
                    .and_then(|ms| {
                        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                    })
                    .and_then(salesforce_datetime);
                Ok(text.map_or(Value::Number(number), Value::String))
            }
            Value::Array(_) | Value::Object(_) => Err(EventsError::BadFieldValue {
                at: self.at.to_owned(),
                field: name.to_owned(),
                expected: if is_list {
                    "a list of strings or one delimited string"
                } else {
                    "a string, number, boolean or null"
                },
            }),
            scalar => Ok(scalar),
        }
    }

    fn finish(mut self, operation: Option<Operation>) -> Result<SourceUser, EventsError> {
        let id = self.id.ok_or_else(|| EventsError::MissingUserId {
            at: self.at.to_owned(),
        })?;
        if let Some(operation) = operation
            && let Some(active) = operation.implied_active()
        {
            let stated = match self.fields.get("IsActive") {
                Some(Value::Bool(b)) => Some(*b),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            };
            match stated {
                Some(stated) if stated != active => {
                    return Err(EventsError::OperationConflict {
                        at: self.at.to_owned(),
                        operation: operation.as_str(),
                    });
                }
                Some(_) => {}
                None => {
                    self.fields.insert("IsActive".into(), Value::Bool(active));
                }
            }
        }
        Ok(SourceUser {
            id,
            fields: self.fields,
            completeness: Completeness::Full,
        })
    }
}

/// A delimited list as [`join_list`] writes it: the text itself when it already is (no blank,
/// padded or repeated part), which is the usual case and costs no copy.
fn normalise_list(text: String, separator: &str) -> String {
    let parts = split_list(&text, separator);
    let clean = parts.iter().enumerate().all(|(index, part)| {
        !part.is_empty()
            && part.trim().len() == part.len()
            && !parts.iter().take(index).any(|earlier| earlier == part)
    });
    if clean {
        return text;
    }
    join_list(parts.into_iter(), separator)
}

/// The parts of a delimited list; a one-character separator (the usual ";") is found with a
/// byte search rather than a substring search.
fn split_list<'s>(text: &'s str, separator: &str) -> Vec<&'s str> {
    let mut chars = separator.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => text.split(c).collect(),
        _ => text.split(separator).collect(),
    }
}

/// `[index]`, the place of a batch entry in error messages, written without the formatting
/// machinery: one is made for every entry.
fn index_place(index: usize) -> String {
    let mut place = String::with_capacity(8);
    place.push('[');
    let mut rest = index;
    loop {
        let digit = u32::try_from(rest % 10)
            .ok()
            .and_then(|d| char::from_digit(d, 10));
        place.insert(1, digit.unwrap_or('0'));
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    place.push(']');
    place
}

fn join_list<'s>(parts: impl Iterator<Item = &'s str>, separator: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
        if !seen.contains(&part) {
            seen.push(part);
        }
    }
    seen.join(separator)
}

/// A UTC `time` as Salesforce writes datetimes (`2025-03-14T16:02:11.000Z`), exactly as
/// [`SALESFORCE_DATETIME`] formats it. The years 0 to 9999 are written digit by digit, at a
/// fraction of the general formatter's cost; others go through it.
fn salesforce_datetime(time: OffsetDateTime) -> Option<String> {
    let Ok(year) = u32::try_from(time.year()) else {
        return time.format(SALESFORCE_DATETIME).ok();
    };
    if year > 9999 {
        return time.format(SALESFORCE_DATETIME).ok();
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let parts = [
        (0, 4, year),
        (5, 2, u32::from(u8::from(time.month()))),
        (8, 2, u32::from(time.day())),
        (11, 2, u32::from(time.hour())),
        (14, 2, u32::from(time.minute())),
        (17, 2, u32::from(time.second())),
        (20, 3, u32::from(time.millisecond())),
    ];
    for (start, width, mut value) in parts {
        for digit in text.iter_mut().skip(start).take(width).rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    String::from_utf8(text.to_vec()).ok()
}

/// Date-time fields given as epoch milliseconds are stored as ISO 8601, the way an Outbound
/// Message gives them, so mappings see one format.
fn is_datetime_field(name: &str) -> bool {
    let base = name.strip_suffix("__c").unwrap_or(name);
    base.ends_with("Date") || base.ends_with("Modstamp") || base.ends_with("DateTime")
}

fn has_object_with(map: &Map<String, Value>, outer: &str, inner: &str) -> bool {
    matches!(map.get(outer), Some(Value::Object(o)) if matches!(o.get(inner), Some(Value::Object(_))))
}

fn user_id(raw: &str, at: &str) -> Result<SalesforceId, EventsError> {
    let id = SalesforceId::parse(raw).map_err(|error| EventsError::BadUserId {
        at: at.to_owned(),
        error,
    })?;
    if id.key_prefix() != USER_KEY_PREFIX {
        return Err(EventsError::NotAUserId {
            at: at.to_owned(),
            id: id.to_string(),
        });
    }
    Ok(id)
}

fn event_id(value: &Value, at: &str) -> Result<String, EventsError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(EventsError::BadEventId { at: at.to_owned() }),
    };
    check_event_id(&text, at)?;
    Ok(text)
}

fn check_event_id(id: &str, at: &str) -> Result<(), EventsError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_EVENT_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EventsError::BadEventId { at: at.to_owned() })
    }
}

/// A Salesforce API name, or `Parent.Child` for a related field: one or two parts, each an ASCII
/// letter followed by letters, digits and '_'. Checked for every field of every event: one table
/// lookup per byte.
fn is_field_name(name: &str) -> bool {
    if name.len() > MAX_FIELD_NAME_BYTES {
        return false;
    }
    match name.split_once('.') {
        Some((parent, child)) => is_name_part(parent) && is_name_part(child),
        None => is_name_part(name),
    }
}

/// One part of an API name: a letter, then letters, digits and '_' (no dot).
fn is_name_part(part: &str) -> bool {
    let Some((&first, rest)) = part.as_bytes().split_first() else {
        return false;
    };
    let rest = rest
        .iter()
        .fold(NAME_CHARACTER, |all, &byte| all & ascii::class(byte));
    ascii::class(first) & LETTER != 0 && rest & NAME_CHARACTER != 0
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A short, printable quote of input for an error message.
fn quote(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .take(MAX_QUOTE_CHARS)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if text.chars().count() > MAX_QUOTE_CHARS {
        quoted.push('…');
    }
    quoted
}

/// The table-driven checks and writers agree with their plain definitions.
#[cfg(test)]
mod fast_paths {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn epoch_milliseconds_are_written_as_the_general_formatter_writes_them(
            ms in prop_oneof![
                // Around now, the whole representable range, and years 0 to 9999.
                1_600_000_000_000i64..1_900_000_000_000,
                -377_705_116_800_000i64..253_402_300_800_000,
                -62_167_219_200_000i64..-62_135_596_800_000,
            ]
        ) {
            let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            prop_assert_eq!(salesforce_datetime(time), time.format(SALESFORCE_DATETIME).ok());
        }
    }

    /// An API name as the grammar says it, character by character.
    fn is_field_name_by_the_grammar(name: &str) -> bool {
        let part = |part: &str| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let parts: Vec<&str> = name.split('.').collect();
        name.len() <= MAX_FIELD_NAME_BYTES && parts.len() <= 2 && parts.iter().all(|p| part(p))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn a_field_name_is_checked_as_the_grammar_says(name in "[a-zA-Z0-9_.é -]{0,12}") {
            prop_assert_eq!(is_field_name(&name), is_field_name_by_the_grammar(&name));
        }
    }

    #[test]
    fn a_datetime_is_written_in_utc_with_milliseconds() {
        let time = OffsetDateTime::from_unix_timestamp_nanos(1_741_968_131_007_000_000).unwrap();
        assert_eq!(
            salesforce_datetime(time).unwrap(),
            "2025-03-14T16:02:11.007Z"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../../tests/fixtures/salesforce/", $name))
        };
    }

    fn parse(body: &str) -> Result<EventMessage, EventsError> {
        parse_events(body.as_bytes(), &EventFormat::default())
    }

    fn parse_value(value: Value) -> Result<EventMessage, EventsError> {
        parse(&value.to_string())
    }

    fn code(body: Value) -> &'static str {
        match parse_value(body) {
            Ok(message) => panic!("accepted: {message:?}"),
            Err(error) => error.code(),
        }
    }

    fn fields(event: &SourceEvent) -> Value {
        Value::Object(event.user.fields.clone().into_iter().collect())
    }

    fn millis(ms: i64) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    }

    #[test]
    fn a_streaming_platform_event_becomes_a_full_snapshot_through_the_field_map() {
        let message = parse(fixture!("platform-event-streaming.json")).unwrap();
        let [event] = message.events.as_slice() else {
            panic!("{message:?}")
        };
        assert_eq!(event.event_id, "2f5c1a3e-6f2d-4b8e-9a1c-1f2e3d4c5b6a");
        assert_eq!(event.source, EventSource::PlatformEvent);
        assert_eq!(event.user.id.as_str(), "0058a00000LmN4rAAF");
        assert_eq!(event.user.completeness, Completeness::Full);
        assert_eq!(
            fields(event),
            json!({
                "Username": "priya.nair@acme.example",
                "Email": "priya.nair@acme.example",
                "FirstName": "Priya",
                "LastName": "Nair",
                "Alias": "pnair",
                "Title": "Account Executive",
                "IsActive": true,
                "Department": "Sales",
                "PermissionSetGroups__c": "Sales_Manager;Support_Tier_2",
                "LastModifiedDate": "2025-03-14T16:01:02.000Z",
            })
        );
        assert_eq!(
            event.event_time,
            OffsetDateTime::parse(
                "2025-03-14T16:01:02Z",
                &time::format_description::well_known::Rfc3339
            )
            .ok()
        );
    }

    #[test]
    fn without_an_event_uuid_the_replay_id_and_channel_name_the_event() {
        let mut body: Value =
            serde_json::from_str(fixture!("platform-event-streaming.json")).unwrap();
        body["data"]["event"]
            .as_object_mut()
            .unwrap()
            .remove("EventUuid");
        let message = parse_value(body).unwrap();
        assert_eq!(
            message.events[0].event_id,
            "/event/User_Provisioning__e:4711"
        );
    }

    #[test]
    fn an_event_relay_envelope_dedupes_on_the_salesforce_event_id_and_names_its_org() {
        let message = parse(fixture!("eventbridge-user-provisioning-event.json")).unwrap();
        let [event] = message.events.as_slice() else {
            panic!("{message:?}")
        };
        assert_eq!(event.event_id, "fe76ab9c-c4df-4431-a4ad-17b56240dabf");
        assert_eq!(event.source, EventSource::EventRelay);
        assert_eq!(message.org_ids[0].as_str(), "00D8a000002bQxTEAU");
        assert_eq!(event.user.is_active(), Some(false));
        assert_eq!(event.user.fields["ManagerId"], Value::Null);
        assert_eq!(
            event.user.fields["LastModifiedDate"],
            json!("2025-03-14T16:02:12.000Z")
        );
        assert!(!event.user.fields.contains_key("Operation__c"));
        assert!(!event.user.fields.contains_key("CreatedById"));
    }

    #[test]
    fn the_flow_contract_reads_user_fields_and_an_operation() {
        let message = parse(fixture!("flow-callout.json")).unwrap();
        let [event] = message.events.as_slice() else {
            panic!("{message:?}")
        };
        assert_eq!(event.source, EventSource::FlowCallout);
        assert_eq!(event.event_id, "flow-0058a00000LmN5sAAF-1741968200");
        assert_eq!(
            event.user.is_active(),
            Some(true),
            "operation create implies IsActive"
        );
        assert_eq!(
            event.user.fields["PermissionSetGroups__c"],
            json!("Support_Tier_2")
        );
        assert_eq!(event.user.fields["FirstName"], json!("Tomás"));
        assert_eq!(message.org_ids.len(), 1);
    }

    #[test]
    fn a_batch_mixes_shapes() {
        let message = parse(fixture!("batch-mixed.json")).unwrap();
        let summary: Vec<(EventSource, &str)> = message
            .events
            .iter()
            .map(|e| (e.source, e.user.id.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (EventSource::PlatformEvent, "0058a00000LmN6tAAF"),
                (EventSource::EventRelay, "0058a00000LmN7uAAF"),
                (EventSource::FlowCallout, "0058a00000LmN2pAAF"),
            ]
        );
        assert_eq!(message.events[2].event_time, millis(1_741_968_302_000));
    }

    #[test]
    fn a_cometd_change_event_carries_changed_fields_and_clears_the_missing_ones() {
        let message = parse(fixture!("cdc-user-deactivate-cometd.json")).unwrap();
        let [event] = message.events.as_slice() else {
            panic!("{message:?}")
        };
        assert_eq!(event.source, EventSource::ChangeDataCapture);
        assert_eq!(event.user.completeness, Completeness::Partial);
        assert_eq!(
            event.event_id,
            "0001b3c2-7e55-41d0-9a4f-2c8d11e0a7b1:1:0058a00000LmN3qAAF"
        );
        assert_eq!(
            fields(event),
            json!({"IsActive": false, "ManagerId": null, "LastModifiedDate": "2025-03-14T16:05:47.000Z"})
        );
        assert_eq!(event.event_time, millis(1_741_968_347_000));
        assert_eq!(event.source_time(), millis(1_741_968_347_000));
    }

    #[test]
    fn the_pubsub_form_of_a_change_event_reads_the_same_as_the_cometd_form() {
        let cometd = parse(fixture!("cdc-user-deactivate-cometd.json")).unwrap();
        let pubsub = parse(fixture!("cdc-user-deactivate-pubsub.json")).unwrap();
        assert_eq!(pubsub.events, cometd.events);
    }

    #[test]
    fn a_create_change_event_keeps_every_field_with_compound_parts_flattened() {
        let message = parse(fixture!("cdc-user-create-pubsub.json")).unwrap();
        let event = &message.events[0];
        assert_eq!(event.user.fields["FirstName"], json!("Tomás"));
        assert_eq!(event.user.fields["LastName"], json!("Lindqvist"));
        assert_eq!(event.user.fields["Salutation"], Value::Null);
        assert_eq!(event.user.fields["IsActive"], json!(true));
        assert!(!event.user.fields.contains_key("Name"));
        assert_eq!(event.user.completeness, Completeness::Partial);
    }

    #[test]
    fn a_gap_event_fans_out_to_each_named_user_without_fields() {
        let message = parse(fixture!("cdc-user-gap-two-users.json")).unwrap();
        let users: Vec<(&str, Completeness, usize)> = message
            .events
            .iter()
            .map(|e| (e.user.id.as_str(), e.user.completeness, e.user.fields.len()))
            .collect();
        assert_eq!(
            users,
            vec![
                ("0058a00000LmN2pAAF", Completeness::Gap, 0),
                ("0058a00000LmN4rAAF", Completeness::Gap, 0),
            ]
        );
        assert_ne!(message.events[0].event_id, message.events[1].event_id);
    }

    #[test]
    fn a_gap_overflow_is_reported_for_a_full_resync() {
        let body = json!({"ChangeEventHeader": {"entityName": "User", "recordIds": [],
            "changeType": "GAP_OVERFLOW", "transactionKey": "t1", "sequenceNumber": 1}});
        let message = parse_value(body).unwrap();
        assert!(message.events.is_empty());
        assert_eq!(message.overflows, vec!["t1:1".to_owned()]);
    }

    #[test]
    fn the_field_map_is_configurable() {
        let config = EventsConfig {
            fields: BTreeMap::from([("Badge__c".into(), "EmployeeNumber".into())]),
            operation_field: "Action__c".into(),
            ..EventsConfig::default()
        };
        let format = config.compile().unwrap();
        let body = json!({"data": {"payload": {"UserId__c": "0058a00000LmN2pAAF",
            "Badge__c": "E-7", "Action__c": "deactivate"}, "event": {"EventUuid": "e-1"}}});
        let message = parse_events(body.to_string().as_bytes(), &format).unwrap();
        assert_eq!(
            fields(&message.events[0]),
            json!({"EmployeeNumber": "E-7", "IsActive": false})
        );
    }

    #[test]
    fn a_bad_events_configuration_names_each_key() {
        let config = EventsConfig {
            fields: BTreeMap::from([("Bad Name".into(), "Email".into())]),
            list_separator: String::new(),
            ..EventsConfig::default()
        };
        let keys: Vec<String> = config
            .compile()
            .unwrap_err()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["fields.\"Bad Name\"", "list_separator"]);
    }

    fn flow_event(id: &str, user_id: &str) -> Value {
        json!({"id": id, "user": {"Id": user_id, "Username": "u@acme.example", "IsActive": true}})
    }

    #[test]
    fn hostile_bytes_are_refused_with_a_precise_reason() {
        assert_eq!(
            parse_events(b"{\"events\": [\xff]}", &EventFormat::default()).unwrap_err(),
            EventsError::NotUtf8
        );
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(parse(&deep).unwrap_err(), EventsError::TooDeep);
        // Brackets inside strings do not count.
        let quoted = json!({"events": [flow_event("a", "0058a00000LmN2pAAF")], "org_id": null});
        let mut text = quoted.to_string();
        text.insert_str(1, &format!("\"x{}\": 1, ", "[".repeat(40)));
        assert_eq!(parse(&text).unwrap_err().code(), "unknown_field");
        assert_eq!(
            parse("{\"events\": [").unwrap_err().code(),
            "malformed_json"
        );
        assert_eq!(parse("").unwrap_err().code(), "malformed_json");
        assert_eq!(code(json!(42)), "unknown_shape");
        assert_eq!(code(json!({"hello": "world"})), "unknown_shape");
        assert_eq!(code(json!([[]])), "unknown_shape");
        assert_eq!(code(json!([])), "no_events");
        assert_eq!(code(json!({"events": []})), "no_events");
    }

    #[test]
    fn more_than_a_hundred_events_are_refused() {
        let events: Vec<Value> = (0..101)
            .map(|i| flow_event(&format!("e{i}"), "0058a00000LmN2pAAF"))
            .collect();
        assert_eq!(code(json!({"events": events})), "too_many_events");
        let batch: Vec<Value> = (0..101)
            .map(|i| json!({"events": [flow_event(&format!("e{i}"), "0058a00000LmN2pAAF")]}))
            .collect();
        assert_eq!(code(Value::Array(batch)), "too_many_events");
    }

    #[test]
    fn a_duplicate_event_id_refuses_the_whole_message() {
        let body = json!({"events": [
            flow_event("same", "0058a00000LmN2pAAF"),
            flow_event("same", "0058a00000LmN3qAAF"),
        ]});
        assert_eq!(
            parse_value(body).unwrap_err(),
            EventsError::DuplicateEventId("same".into())
        );
    }

    #[test]
    fn ids_of_the_wrong_shape_are_refused() {
        let cases = [
            (flow_event("e1", "0058a00000LmN2p-"), "bad_user_id"),
            (flow_event("e1", "0058a00000LmN2pZZZ"), "bad_user_id"),
            (flow_event("e1", "0018a00000AbC1dAAF"), "not_a_user_id"),
            (
                flow_event("has space", "0058a00000LmN2pAAF"),
                "bad_event_id",
            ),
            (
                flow_event(&"x".repeat(201), "0058a00000LmN2pAAF"),
                "bad_event_id",
            ),
            (
                json!({"id": 1.5e300, "user": {"Id": "0058a00000LmN2pAAF"}}),
                "bad_event_id",
            ),
            (
                json!({"user": {"Id": "0058a00000LmN2pAAF"}}),
                "missing_event_id",
            ),
            (
                json!({"id": "e", "user": {"Username": "u"}}),
                "missing_user_id",
            ),
            (json!({"id": "e", "user": {"Id": 5}}), "missing_user_id"),
        ];
        for (event, expected) in cases {
            assert_eq!(code(json!({"events": [event]})), expected, "{event}");
        }
        assert_eq!(
            code(
                json!({"org_id": "0058a00000LmN2pAAF", "events": [flow_event("e", "0058a00000LmN2pAAF")]})
            ),
            "bad_organization_id"
        );
    }

    #[test]
    fn unknown_keys_in_the_flow_contract_are_refused() {
        assert_eq!(
            code(json!({"events": [flow_event("e", "0058a00000LmN2pAAF")], "extra": 1})),
            "unknown_field"
        );
        let mut event = flow_event("e", "0058a00000LmN2pAAF");
        event["priority"] = json!("high");
        assert_eq!(code(json!({"events": [event]})), "unknown_field");
    }

    #[test]
    fn field_names_and_values_are_checked() {
        let with_user = |user: Value| json!({"events": [{"id": "e", "user": user}]});
        let id = "0058a00000LmN2pAAF";
        assert_eq!(
            code(with_user(json!({"Id": id, "bad name": 1}))),
            "bad_field_name"
        );
        assert_eq!(code(with_user(json!({"Id": id, "": 1}))), "bad_field_name");
        assert_eq!(
            code(with_user(
                json!({"Id": id, "Title": "x".repeat(MAX_FIELD_BYTES + 1)})
            )),
            "field_too_large"
        );
        assert_eq!(
            code(with_user(json!({"Id": id, "Title": {"a": 1}}))),
            "bad_field_value"
        );
        assert_eq!(
            code(with_user(json!({"Id": id, "Title": ["a"]}))),
            "bad_field_value"
        );
        assert_eq!(
            code(with_user(
                json!({"Id": id, "PermissionSetGroups__c": [1, 2]})
            )),
            "bad_field_value"
        );
        let many: Map<String, Value> = (0..=MAX_FIELDS)
            .map(|i| (format!("F{i}__c"), json!(i)))
            .chain([("Id".to_owned(), json!(id))])
            .collect();
        assert_eq!(code(with_user(Value::Object(many))), "too_many_fields");
    }

    #[test]
    fn two_event_fields_for_one_user_field_must_agree() {
        let body = |other: &str| {
            json!({"data": {"payload": {"User_Id__c": "0058a00000LmN2pAAF",
                "UserId__c": other}, "event": {"EventUuid": "e"}}})
        };
        assert!(parse_value(body("0058a00000LmN2pAAF")).is_ok());
        assert_eq!(code(body("0058a00000LmN3qAAF")), "duplicate_field");
    }

    #[test]
    fn an_operation_must_be_known_and_agree_with_is_active() {
        let event = |op: &str, active: Value| {
            json!({"events": [{"id": "e", "operation": op,
                "user": {"Id": "0058a00000LmN2pAAF", "IsActive": active}}]})
        };
        assert_eq!(code(event("purge", json!(null))), "unknown_operation");
        assert_eq!(
            code(event("deactivate", json!(true))),
            "operation_conflicts_with_is_active"
        );
        assert_eq!(
            code(event("reactivate", json!("false"))),
            "operation_conflicts_with_is_active"
        );
        let ok = parse_value(event("Deactivate", json!(null))).unwrap();
        assert_eq!(ok.events[0].user.is_active(), Some(false));
    }

    #[test]
    fn a_change_event_for_another_object_or_of_an_unknown_type_is_refused() {
        let header = |entity: &str, kind: &str| {
            json!({"ChangeEventHeader": {"entityName": entity, "recordIds": ["0058a00000LmN2pAAF"],
                "changeType": kind, "transactionKey": "t", "sequenceNumber": 1, "changedFields": ["Title"]},
                "Title": "x"})
        };
        assert_eq!(code(header("Account", "UPDATE")), "not_a_user");
        assert_eq!(code(header("User", "MERGE")), "unknown_change_type");
        assert!(parse_value(header("User", "UPDATE")).is_ok());
        let mut no_key = header("User", "UPDATE");
        no_key["ChangeEventHeader"]
            .as_object_mut()
            .unwrap()
            .remove("transactionKey");
        assert_eq!(code(no_key), "missing_event_id");
        let mut bad_ids = header("User", "UPDATE");
        bad_ids["ChangeEventHeader"]["recordIds"] = json!(["0018a00000AbC1dAAF"]);
        assert_eq!(code(bad_ids), "not_a_user_id");
        let mut bad_time = header("User", "UPDATE");
        bad_time["ChangeEventHeader"]["commitTimestamp"] = json!("yesterday");
        assert_eq!(code(bad_time), "bad_change_event_header");
        assert_eq!(
            code(json!({"ChangeEventHeader": 5})),
            "bad_change_event_header"
        );
    }

    #[test]
    fn a_change_event_naming_several_users_fans_out_and_the_same_change_twice_is_a_duplicate() {
        let event = json!({"ChangeEventHeader": {"entityName": "User",
            "recordIds": ["0058a00000LmN2pAAF", "0058a00000LmN3qAAF"], "changeType": "UPDATE",
            "transactionKey": "t", "sequenceNumber": 3, "changedFields": ["Department"],
            "commitTimestamp": 1741968347000_i64}, "Department": "Finance"});
        let message = parse_value(event.clone()).unwrap();
        assert_eq!(message.events.len(), 2);
        assert!(
            message
                .events
                .iter()
                .all(|e| e.user.fields["Department"] == json!("Finance"))
        );
        assert_eq!(code(json!([event.clone(), event])), "duplicate_event_id");
    }

    #[test]
    fn an_event_relay_envelope_from_elsewhere_is_refused() {
        let mut body: Value =
            serde_json::from_str(fixture!("eventbridge-user-provisioning-event.json")).unwrap();
        body["source"] = json!("aws.partner/example.com/00D8a000002bQxTEAU/x");
        assert_eq!(code(body.clone()), "not_salesforce_source");
        body["source"] = json!("aws.partner/salesforce.com/0058a00000LmN2pAAF/x");
        assert_eq!(code(body), "bad_organization_id");
    }

    #[test]
    fn error_messages_quote_input_briefly() {
        let long_key = "k".repeat(5000);
        let error = parse_value(json!({"events": [], long_key: 1})).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
    }

    #[test]
    fn a_batch_entry_is_named_by_its_index() {
        for index in [0, 7, 10, 99, 100, 12_345] {
            assert_eq!(index_place(index), format!("[{index}]"));
        }
    }

    #[test]
    fn field_names_are_api_names_with_at_most_one_dot() {
        for good in ["Email", "Email__c", "Manager.Email", "a1_b"] {
            assert!(is_field_name(good), "{good}");
        }
        for bad in ["", ".", "a.", ".a", "a.b.c", "1a", "a.1b", "a-b", "É", "_a"] {
            assert!(!is_field_name(bad), "{bad}");
        }
        assert!(!is_field_name(&"a".repeat(MAX_FIELD_NAME_BYTES + 1)));
    }

    #[test]
    fn a_clean_delimited_list_is_kept_and_a_messy_one_is_tidied() {
        assert_eq!(normalise_list("A;B".into(), ";"), "A;B");
        assert_eq!(normalise_list(" A;;B;A ".into(), ";"), "A;B");
        assert_eq!(normalise_list("A, B".into(), ", "), "A, B");
        assert_eq!(normalise_list("A, B, A".into(), ", "), "A, B");
        assert_eq!(normalise_list(String::new(), ";"), "");
    }
}
