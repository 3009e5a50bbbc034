//! Reading a Salesforce Outbound Message: a SOAP 1.1 envelope holding 1 to 100 notifications,
//! each a snapshot of one record.
//!
//! Namespaces are matched by URI, never by prefix: senders choose their prefixes, and a default
//! namespace is as good as a prefixed one. The parser is a single forward pass with an explicit
//! stack (no recursion), refuses any DOCTYPE (so no entity can be declared, expanded or fetched),
//! and bounds nesting, attributes, namespace declarations, field names and field values.
//!
//! `SessionId` is a credential: its content is never decoded, stored or quoted in an error.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesRef, BytesStart, Event};
use quick_xml::name::{PrefixDeclaration, QName};
use quick_xml::reader::Reader;
use serde_json::Value;

use super::soap::is_xml_char;
use super::{ENTERPRISE_SOBJECT_NS, OUTBOUND_NS, SOAP_ENVELOPE_NS, XSI_NS};
use crate::error::{Classify, ErrorClass};
use crate::ids::{IdError, SalesforceId};
use crate::source::{Completeness, Fields, SourceUser};

/// The most notifications Salesforce puts in one message.
pub const MAX_NOTIFICATIONS: usize = 100;
/// The largest field value accepted, in bytes of text after unescaping. Salesforce's long text
/// areas hold at most 131,072 characters, but no user attribute worth provisioning is that long.
pub const MAX_FIELD_BYTES: usize = 32 * 1024;
/// The deepest element nesting accepted. A real message nests about seven deep.
pub const MAX_DEPTH: usize = 32;
/// The longest field name (nested names included) accepted. API names have at most 40 characters.
pub const MAX_FIELD_NAME_BYTES: usize = 255;
/// Attributes on one element. Each is checked against the others for duplicates, so unbounded
/// counts would cost quadratic time.
const MAX_ATTRIBUTES: usize = 64;
/// Namespace declarations in scope at once. Resolving a prefix scans them, so unbounded counts
/// would cost quadratic time. A real message has five.
const MAX_NAMESPACES_IN_SCOPE: usize = 64;
/// Error details quote the input; keep the quote short.
const MAX_ERROR_DETAIL_CHARS: usize = 200;
const MAX_TYPE_NAME_CHARS: usize = 64;

const USER_KEY_PREFIX: &[u8; 3] = b"005";
const ORGANIZATION_KEY_PREFIX: &[u8; 3] = b"00D";

/// One Outbound Message, as sent by one org for one outbound message action.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The sending org, 18-character form. The caller must check it is a configured org.
    pub organization_id: SalesforceId,
    /// The outbound message action that fired, when the sender named it.
    pub action_id: Option<SalesforceId>,
    /// 1 to [`MAX_NOTIFICATIONS`] notifications, in document order, with distinct ids.
    pub notifications: Vec<Notification>,
}

/// One record snapshot of the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The notification id (`04l…`), 18-character form: the dedupe key. Salesforce redelivers the
    /// same notification with the same id.
    pub id: String,
    /// The user, or why this notification carries none. One refused notification does not
    /// refuse its neighbours.
    pub object: Result<SourceUser, NotificationError>,
}

/// An Outbound Message as read, before it is copied out of the request body: the same checks
/// and the same content as [`OutboundMessage`], with names and values borrowed from the body
/// where no unescaping was needed. [`OutboundMessageRef::into_owned`] gives the owned message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessageRef<'a> {
    pub organization_id: SalesforceId,
    pub action_id: Option<SalesforceId>,
    pub notifications: Vec<NotificationRef<'a>>,
}

/// One notification of an [`OutboundMessageRef`].
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRef<'a> {
    pub id: SalesforceId,
    pub object: Result<UserRef<'a>, NotificationError>,
}

/// One User snapshot of an [`OutboundMessageRef`].
#[derive(Debug, Clone, PartialEq)]
pub struct UserRef<'a> {
    pub id: SalesforceId,
    /// Field name and text in document order, names distinct, `Id` not among them; `None` is
    /// `xsi:nil`.
    pub fields: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
}

impl OutboundMessageRef<'_> {
    pub fn into_owned(self) -> OutboundMessage {
        OutboundMessage {
            organization_id: self.organization_id,
            action_id: self.action_id,
            notifications: self
                .notifications
                .into_iter()
                .map(NotificationRef::into_owned)
                .collect(),
        }
    }
}

impl NotificationRef<'_> {
    pub fn into_owned(self) -> Notification {
        Notification {
            id: self.id.as_str().to_owned(),
            object: self.object.map(UserRef::into_owned),
        }
    }
}

impl UserRef<'_> {
    /// The fields sorted by name, as the normalised user's map keeps them, still lent: what a
    /// [`LentUser`](crate::job::LentUser) holds.
    pub fn fields_by_name(&self) -> Vec<(&str, Option<&str>)> {
        fn lent<'f>(
            (name, text): &'f (Cow<'_, str>, Option<Cow<'_, str>>),
        ) -> (&'f str, Option<&'f str>) {
            (name.as_ref(), text.as_deref())
        }
        match name_order(&self.fields) {
            Some(order) => order[..self.fields.len()]
                .iter()
                .filter_map(|&entry| self.fields.get(order_index(entry)).map(lent))
                .collect(),
            None => {
                let mut sorted: Vec<_> = self.fields.iter().map(lent).collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                sorted
            }
        }
    }

    /// The normalised user: every value a string, `xsi:nil` as null.
    pub fn into_owned(self) -> SourceUser {
        SourceUser {
            id: self.id,
            fields: owned_fields(self.fields),
            completeness: Completeness::Full,
        }
    }
}

/// Past this many fields, [`owned_fields`] leaves the ordering to the map.
const FIELDS_ORDERED: usize = 32;

/// The fields as a map. `BTreeMap`'s `FromIterator` sorts what it is given, comparing names as
/// strings and moving whole entries; it is handed them already in order (one pass to check).
fn owned_fields(mut fields: Vec<(Cow<'_, str>, Option<Cow<'_, str>>)>) -> Fields {
    let owned = |name: Cow<'_, str>, text: Option<Cow<'_, str>>| {
        let value = text.map_or(Value::Null, |text| Value::String(text.into_owned()));
        (name.into_owned(), value)
    };
    let Some(order) = name_order(&fields) else {
        return fields
            .into_iter()
            .map(|(name, text)| owned(name, text))
            .collect();
    };
    let mut sorted = Vec::with_capacity(fields.len());
    for &entry in &order[..fields.len()] {
        if let Some((name, text)) = fields.get_mut(order_index(entry)) {
            sorted.push(owned(std::mem::take(name), text.take()));
        }
    }
    sorted.into_iter().collect()
}

/// The order of `fields` by name, as [`Fields`] keeps them: entry `i` of the first
/// `fields.len()` has the index of the `i`-th field in its low 64 bits ([`order_index`]). The
/// order is found on integers: each name's first eight bytes with its index, a string
/// comparison only breaking a tie. `None` past [`FIELDS_ORDERED`] fields.
fn name_order(fields: &[(Cow<'_, str>, Option<Cow<'_, str>>)]) -> Option<[u128; FIELDS_ORDERED]> {
    if fields.len() > FIELDS_ORDERED {
        return None;
    }
    let mut all = [0u128; FIELDS_ORDERED];
    let order = &mut all[..fields.len()];
    for (index, (slot, (name, _))) in order.iter_mut().zip(fields).enumerate() {
        *slot = u128::from(name_key(name)) << 64 | index as u128;
    }
    order.sort_unstable();
    // Names that share their first eight bytes: ordered by the whole name.
    for i in 1..order.len() {
        let mut j = i;
        while j > 0 && order[j - 1] >> 64 == order[j] >> 64 && {
            let (a, b) = (order_index(order[j - 1]), order_index(order[j]));
            fields.get(a).map(|f| &f.0) > fields.get(b).map(|f| &f.0)
        } {
            order.swap(j - 1, j);
            j -= 1;
        }
    }
    Some(all)
}

#[inline]
fn order_index(entry: u128) -> usize {
    (entry & u128::from(u64::MAX)) as usize
}

/// The first eight bytes of a name as a big-endian integer, zero-padded: integers in the order of
/// the names (names hold no NUL), equal only when those bytes are.
#[inline]
fn name_key(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &name.as_bytes()[..name.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

/// Why one notification of an otherwise good message carries no usable user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("the sObject has xsi:type {xsi_type:?}, not an enterprise User")]
    NotAUser { xsi_type: String },
    #[error("the User sObject has no sf:Id")]
    MissingUserId,
    #[error("the User's sf:Id is not a Salesforce id: {0}")]
    BadUserId(IdError),
    #[error("the User's sf:Id {0} is not a user id (005…)")]
    NotAUserId(String),
}

impl NotificationError {
    /// A machine-readable reason, stable across releases.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAUser { .. } => "not_a_user",
            Self::MissingUserId => "missing_user_id",
            Self::BadUserId(_) => "bad_user_id",
            Self::NotAUserId(_) => "not_a_user_id",
        }
    }
}

impl Classify for NotificationError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Why a whole message is refused. Salesforce redelivers a refused message for up to 24 hours,
/// and its delivery status shows the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("the message has a DOCTYPE; document type and entity declarations are refused")]
    Doctype,
    #[error("the message is not well-formed: {0}")]
    Malformed(String),
    #[error("the message is not a SOAP 1.1 envelope with a Body")]
    NotSoapEnvelope,
    #[error("the SOAP Body holds no Outbound Message notification")]
    NoNotifications,
    #[error("the message holds {0} notifications; at most {MAX_NOTIFICATIONS} are allowed")]
    TooManyNotifications(usize),
    #[error("the message has no OrganizationId")]
    MissingOrganizationId,
    #[error("the OrganizationId is not an organization id: {0}")]
    BadOrganizationId(String),
    #[error("the ActionId is not a Salesforce id: {0}")]
    BadActionId(String),
    #[error("a notification Id is not a Salesforce id: {0}")]
    BadNotificationId(String),
    #[error("the notification Id {0} appears more than once in the message")]
    DuplicateNotificationId(String),
    #[error("the field {field} appears more than once in one sObject")]
    DuplicateField { field: String },
    #[error("the value of {field} is longer than {MAX_FIELD_BYTES} bytes")]
    FieldTooLarge { field: String },
    #[error("the message is not UTF-8")]
    NotUtf8,
}

impl OutboundError {
    /// A machine-readable reason, stable across releases.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Doctype => "doctype_refused",
            Self::Malformed(_) => "malformed_xml",
            Self::NotSoapEnvelope => "not_soap_envelope",
            Self::NoNotifications => "no_notifications",
            Self::TooManyNotifications(_) => "too_many_notifications",
            Self::MissingOrganizationId => "missing_organization_id",
            Self::BadOrganizationId(_) => "bad_organization_id",
            Self::BadActionId(_) => "bad_action_id",
            Self::BadNotificationId(_) => "bad_notification_id",
            Self::DuplicateNotificationId(_) => "duplicate_notification_id",
            Self::DuplicateField { .. } => "duplicate_field",
            Self::FieldTooLarge { .. } => "field_too_large",
            Self::NotUtf8 => "not_utf8",
        }
    }
}

impl Classify for OutboundError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Parses the body of an Outbound Message request.
///
/// Whole-message problems (not XML, not SOAP, no or too many notifications, a bad organization or
/// notification id) refuse the message; a notification whose sObject is not a usable User is
/// kept with its [`NotificationError`] so the caller can log it and still acknowledge the rest.
pub fn parse_outbound_message(body: &[u8]) -> Result<OutboundMessage, OutboundError> {
    read_outbound_message(body).map(OutboundMessageRef::into_owned)
}

/// Reads the body of an Outbound Message like [`parse_outbound_message`], with every check, but
/// lends names and values from `body` instead of copying them.
pub fn read_outbound_message(body: &[u8]) -> Result<OutboundMessageRef<'_>, OutboundError> {
    let text = std::str::from_utf8(body).map_err(|_| OutboundError::NotUtf8)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let scan = scan_characters(text);
    if let Some(c) = scan.first_illegal {
        return Err(malformed(format_args!(
            "the body contains U+{:04X}, which XML does not allow",
            u32::from(c)
        )));
    }

    // A plain reader: the parser resolves namespaces itself, in the same pass over each start
    // tag's attributes that finds `xsi:type` and `xsi:nil` (an `NsReader` makes a pass of its
    // own and resolves every name to a URI the parser would then compare again).
    let mut reader = Reader::from_str(text);
    // Whitespace is data: a textarea value keeps its spaces and newlines as sent.
    reader.config_mut().trim_text(false);
    let mut parser = Parser::new(text, scan.carriage_return);
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => parser.open(&start)?,
            Ok(Event::Empty(start)) => {
                parser.open(&start)?;
                parser.close()?;
            }
            Ok(Event::End(_)) => parser.close()?,
            Ok(Event::Text(text)) => parser.text_event(&text, || text.xml10_content())?,
            Ok(Event::CData(data)) => parser.text_event(&data, || data.xml10_content())?,
            Ok(Event::GeneralRef(reference)) => {
                let resolved = parser.resolve_reference(&reference)?;
                parser.text(resolved)?;
            }
            Ok(Event::DocType(_)) => return Err(OutboundError::Doctype),
            Ok(Event::Decl(declaration)) => check_declared_encoding(&declaration)?,
            Ok(Event::Comment(_) | Event::PI(_)) => {}
            Ok(Event::Eof) => return parser.finish(),
            Err(error) => return Err(parser.xml_error(&error, reader.error_position())),
        }
    }
}

/// The namespaces the parser cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    SoapEnvelope,
    Outbound,
    Enterprise,
    Xsi,
    Other,
}

impl Ns {
    fn of_uri(uri: &[u8]) -> Self {
        if uri == SOAP_ENVELOPE_NS.as_bytes() {
            Self::SoapEnvelope
        } else if uri == OUTBOUND_NS.as_bytes() {
            Self::Outbound
        } else if uri == ENTERPRISE_SOBJECT_NS.as_bytes() {
            Self::Enterprise
        } else if uri == XSI_NS.as_bytes() {
            Self::Xsi
        } else {
            Self::Other
        }
    }
}

/// What an open element is, and what it has gathered so far.
enum Frame<'a> {
    Envelope,
    Body,
    Notifications,
    /// A Notification, gathered in [`Parser::notification`] (only one is open at a time).
    Notification,
    /// A User sObject, gathered in [`Parser::user`] (only one is open at a time).
    UserSObject,
    Value(ValueDraft<'a>),
    /// An element whose content does not matter, and everything inside it.
    Ignored,
    /// `SessionId` and everything inside it: a credential, never read.
    Secret,
}

struct OpenElement<'a> {
    frame: Frame<'a>,
    /// Bindings this element added to [`Parser::bindings`], removed when it closes.
    namespace_declarations: usize,
}

/// A namespace prefix in scope (empty for the default namespace), and what it is bound to. The
/// URI is classified once, where it is declared.
struct Binding<'a> {
    prefix: &'a [u8],
    /// [`short_key`] of the prefix, so that looking a short prefix up compares integers.
    key: Option<u64>,
    namespace: Ns,
}

impl Binding<'_> {
    fn binds(&self, prefix: &[u8], key: Option<u64>) -> bool {
        match key {
            Some(key) => self.key == Some(key),
            None => self.prefix == prefix,
        }
    }
}

/// A prefix of at most 7 bytes (all real ones) packed into an integer with its length, which
/// tells prefixes apart exactly; `None` for a longer one.
#[inline]
fn short_key(prefix: &[u8]) -> Option<u64> {
    if prefix.len() > 7 {
        return None;
    }
    Some(
        prefix
            .iter()
            .fold(prefix.len() as u64, |key, &byte| key << 8 | u64::from(byte)),
    )
}

/// A qualified name's local part and prefix, split at its first colon as quick-xml's
/// `QName::decompose` does; names are short, so a plain loop beats its `memchr` call.
#[inline]
fn split_name(name: &[u8]) -> (&[u8], Option<&[u8]>) {
    match name.iter().position(|&byte| byte == b':') {
        Some(colon) => (
            name.get(colon + 1..).unwrap_or_default(),
            Some(name.get(..colon).unwrap_or_default()),
        ),
        None => (name, None),
    }
}

/// Slots of the resolved-prefix cache.
const RESOLVED_SLOTS: usize = 4;

/// The cache slot of a short prefix's key: its last two bytes mixed, so that the empty prefix and
/// the usual `sf`, `xsi`, `soapenv` land apart.
#[inline]
fn cache_slot(key: u64) -> usize {
    ((key ^ key >> 8) as usize) % RESOLVED_SLOTS
}

/// The namespace `prefix` is bound to by the innermost of `bindings` that binds it.
#[inline]
fn resolve_in(bindings: &[Binding<'_>], prefix: &[u8]) -> Ns {
    let key = short_key(prefix);
    bindings
        .iter()
        .rev()
        .find(|binding| binding.binds(prefix, key))
        .map_or(Ns::Other, |binding| binding.namespace)
}

/// The namespaces XML reserves; binding them other than as XML says is an error.
const XML_NS: &[u8] = b"http://www.w3.org/XML/1998/namespace";
const XMLNS_NS: &[u8] = b"http://www.w3.org/2000/xmlns/";

#[derive(Default)]
struct NotificationDraft<'a> {
    id_seen: bool,
    id: Option<SalesforceId>,
    object: Option<Result<UserRef<'a>, NotificationError>>,
}

/// Past this many fields, duplicate names are found with a hash set instead of a scan.
const FIELDS_SCANNED: usize = 16;

#[derive(Default)]
struct UserDraft<'a> {
    /// `None`: no `sf:Id` yet; `Some(None)`: a nil `sf:Id`.
    id: Option<Option<Cow<'a, str>>>,
    fields: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    /// The field names, once there are more than [`FIELDS_SCANNED`], so that a hostile sObject
    /// with many fields costs linear time, not quadratic.
    names: Option<HashSet<Cow<'a, str>>>,
    /// The [`name_bit`] of every field name added: a name whose bit is clear cannot be a
    /// duplicate, and needs no scan.
    name_bits: u128,
}

/// One of 128 bits for a field name, from its length and its first and last bytes: the names of
/// one sObject (`FirstName`, `LastName`, `Email`, `Title`...) seldom share one, where many share
/// a length.
#[inline]
fn name_bit(name: &str) -> u128 {
    let bytes = name.as_bytes();
    let first = bytes.first().copied().unwrap_or_default();
    let last = bytes.last().copied().unwrap_or_default();
    let key = (bytes.len() as u64) | u64::from(first) << 16 | u64::from(last) << 24;
    1u128 << (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57)
}

impl<'a> UserDraft<'a> {
    /// Adds a field, refusing a name already given.
    #[inline(always)]
    fn add(&mut self, name: Cow<'a, str>, text: Option<Cow<'a, str>>) -> Result<(), OutboundError> {
        let bit = name_bit(&name);
        let taken = match &mut self.names {
            Some(names) => !names.insert(name.clone()),
            None => self.name_bits & bit != 0 && self.fields.iter().any(|(seen, _)| *seen == name),
        };
        self.name_bits |= bit;
        if taken {
            return Err(OutboundError::DuplicateField {
                field: name.into_owned(),
            });
        }
        if self.names.is_none() && self.fields.len() >= FIELDS_SCANNED {
            let mut names: HashSet<Cow<'a, str>> =
                self.fields.iter().map(|(seen, _)| seen.clone()).collect();
            names.insert(name.clone());
            self.names = Some(names);
        }
        self.fields.push((name, text));
        Ok(())
    }

    fn into_object(self) -> Result<UserRef<'a>, NotificationError> {
        let raw = self.id.flatten().ok_or(NotificationError::MissingUserId)?;
        let id = SalesforceId::parse(&raw).map_err(NotificationError::BadUserId)?;
        if !id.has_key_prefix(USER_KEY_PREFIX) {
            return Err(NotificationError::NotAUserId(id.to_string()));
        }
        Ok(UserRef {
            id,
            fields: self.fields,
        })
    }
}

/// An element whose text is a value the parser keeps.
struct ValueDraft<'a> {
    target: Target<'a>,
    /// Borrowed from the body while the value is one piece of text without references.
    text: Cow<'a, str>,
    nil: bool,
    has_children: bool,
}

impl<'a> ValueDraft<'a> {
    /// A value with no text yet.
    fn new(target: Target<'a>, nil: bool) -> Self {
        Self {
            target,
            text: Cow::Borrowed(""),
            nil,
            has_children: false,
        }
    }

    /// Adds a piece of the value's text (`input` is the body, which pieces are lent from).
    #[inline(always)]
    fn append(&mut self, text: Cow<'a, str>, input: &'a str) -> Result<(), OutboundError> {
        if self.text.len() + text.len() > MAX_FIELD_BYTES {
            return Err(OutboundError::FieldTooLarge {
                field: self.target.name().to_string(),
            });
        }
        if self.text.is_empty() {
            self.text = text;
        } else {
            self.join(&text, input);
        }
        Ok(())
    }

    /// Adds a piece to text that already has one.
    #[inline(never)]
    fn join(&mut self, text: &str, input: &'a str) {
        match &mut self.text {
            Cow::Owned(joined) => joined.push_str(text),
            Cow::Borrowed(first) => {
                let mut joined = String::with_capacity(joined_capacity(input, first, text));
                joined.push_str(first);
                joined.push_str(text);
                self.text = Cow::Owned(joined);
            }
        }
    }
}

/// Room for a value's text once a reference splits it (`first` and `next` are its first two
/// pieces). All its pieces lie before the next `<` of the body (a reference never holds one), and
/// none is longer than the markup it comes from: room for the raw text up to there means the
/// pieces that follow do not reallocate. A CDATA section after it may still grow the text.
fn joined_capacity(input: &str, first: &str, next: &str) -> usize {
    let raw_run = |piece: &str| {
        let rest = input
            .as_bytes()
            .get(offset_in(input, piece.as_bytes())?..)?;
        let rest = rest.get(..MAX_FIELD_BYTES).unwrap_or(rest);
        Some(rest.iter().position(|&b| b == b'<').unwrap_or(rest.len()))
    };
    let pieces = first.len() + next.len();
    let run = match (raw_run(first), raw_run(next)) {
        (Some(from_first), _) => from_first,
        (None, Some(from_next)) => first.len() + from_next,
        (None, None) => pieces * 2,
    };
    run.min(MAX_FIELD_BYTES).max(pieces)
}

enum Target<'a> {
    OrganizationId,
    ActionId,
    NotificationId,
    /// A field of the User: its local name, or `Parent.Child` for a nested element.
    Field(Cow<'a, str>),
}

impl Target<'_> {
    fn name(&self) -> &str {
        match self {
            Self::OrganizationId => "OrganizationId",
            Self::ActionId => "ActionId",
            Self::NotificationId => "Notification.Id",
            Self::Field(key) => key,
        }
    }
}

/// Bytes of body per notification when room is made for the notifications at the start: a real
/// User notification takes 500 to 2,000; fewer bytes than it takes just grow the collections.
const BYTES_PER_NOTIFICATION: usize = 500;

/// Room for the notifications a body of `length` bytes may hold (at most [`MAX_NOTIFICATIONS`]),
/// so that a full message fills its collections without growing them.
fn notifications_expected(length: usize) -> usize {
    (length / BYTES_PER_NOTIFICATION).clamp(1, MAX_NOTIFICATIONS)
}

/// A multiply-rotate hash of the notification ids, cheaper than the default SipHash. The ids
/// come from the request, but a message holds at most [`MAX_NOTIFICATIONS`] of them, so even
/// ids chosen to collide cost at most a hundred probes each.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Parser<'a> {
    /// The whole body: names and text of the reader's events are slices of it.
    input: &'a str,
    /// Whether the body has a CR anywhere; without one, no text needs its line ends normalised.
    carriage_return: bool,
    open: Vec<OpenElement<'a>>,
    /// Namespace declarations in scope, innermost last.
    bindings: Vec<Binding<'a>>,
    /// Short prefixes resolved under the current `bindings` (key and namespace), each in the slot
    /// [`cache_slot`] gives it: a message uses a handful of prefixes, and the fields of an
    /// sObject all share one. A declaration that comes into or goes out of scope forgets its
    /// own prefix only.
    resolved: [Option<(u64, Ns)>; RESOLVED_SLOTS],
    root_seen: bool,
    body_seen: bool,
    notifications_seen: bool,
    organization_id_seen: bool,
    organization_id: Option<SalesforceId>,
    action_id_seen: bool,
    action_id: Option<SalesforceId>,
    notification_count: usize,
    /// The open Notification.
    notification: NotificationDraft<'a>,
    /// The open User sObject.
    user: UserDraft<'a>,
    notification_ids: HashSet<[u8; 18], BuildHasherDefault<IdHasher>>,
    notifications: Vec<NotificationRef<'a>>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, carriage_return: bool) -> Self {
        let notifications = notifications_expected(input.len());
        Self {
            input,
            carriage_return,
            // A real message nests about seven deep; a deeper one grows the stack.
            open: Vec::with_capacity(8),
            bindings: Vec::new(),
            resolved: [None; RESOLVED_SLOTS],
            root_seen: false,
            body_seen: false,
            notifications_seen: false,
            organization_id_seen: false,
            organization_id: None,
            action_id_seen: false,
            action_id: None,
            notification_count: 0,
            notification: NotificationDraft::default(),
            user: UserDraft::default(),
            notification_ids: HashSet::with_capacity_and_hasher(
                notifications,
                BuildHasherDefault::default(),
            ),
            notifications: Vec::with_capacity(notifications),
        }
    }

    fn top(&self) -> Option<&Frame<'a>> {
        self.open.last().map(|element| &element.frame)
    }

    fn top_mut(&mut self) -> Option<&mut Frame<'a>> {
        self.open.last_mut().map(|element| &mut element.frame)
    }

    fn in_secret(&self) -> bool {
        matches!(self.top(), Some(Frame::Secret))
    }

    /// An error whose detail may quote the input: inside `SessionId` it says only where it is.
    fn detail_error(&self, detail: &dyn std::fmt::Display) -> OutboundError {
        if self.in_secret() {
            malformed("bad content inside SessionId")
        } else {
            malformed(detail)
        }
    }

    fn xml_error(&self, error: &quick_xml::Error, position: u64) -> OutboundError {
        if self.in_secret() {
            malformed(format_args!(
                "bad content inside SessionId (at byte {position})"
            ))
        } else {
            malformed(format_args!("{error} (at byte {position})"))
        }
    }

    /// A start tag. Most are a field of the open User sObject, with no attribute and in the
    /// enterprise namespace: they take a short path to the frame [`Parser::open_element`] gives
    /// them; every other tag takes that general path.
    #[inline]
    fn open(&mut self, start: &BytesStart<'_>) -> Result<(), OutboundError> {
        if start.attributes_raw().is_empty()
            && self.open.len() < MAX_DEPTH
            && matches!(self.top(), Some(Frame::UserSObject))
        {
            let (local, prefix) = split_name(start.name().into_inner());
            if self.resolve(prefix.unwrap_or_default()) == Ns::Enterprise
                && let Some(local) = within(self.input, local)
            {
                let key = field_name(Cow::Borrowed(local))?;
                self.open.push(OpenElement {
                    frame: Frame::Value(ValueDraft::new(Target::Field(key), false)),
                    namespace_declarations: 0,
                });
                return Ok(());
            }
        }
        self.open_element(start)
    }

    #[inline(never)]
    fn open_element(&mut self, start: &BytesStart<'_>) -> Result<(), OutboundError> {
        if self.open.len() >= MAX_DEPTH {
            return Err(malformed(format_args!(
                "elements nest deeper than {MAX_DEPTH}"
            )));
        }
        let attributes = self.read_attributes(start)?;
        let namespace_declarations = attributes.namespace_declarations;
        let (local, prefix) = split_name(start.name().into_inner());
        let namespace = self.resolve(prefix.unwrap_or_default());
        let local = self.local_name(local)?;
        let frame = self.frame_for(namespace, local, attributes)?;
        self.open.push(OpenElement {
            frame,
            namespace_declarations,
        });
        Ok(())
    }

    /// The element's local name, lent from the body.
    fn local_name(&self, local_name: &[u8]) -> Result<Cow<'a, str>, OutboundError> {
        match within(self.input, local_name) {
            Some(local) => Ok(Cow::Borrowed(local)),
            None => std::str::from_utf8(local_name)
                .map(|local| Cow::Owned(local.to_owned()))
                .map_err(|_| OutboundError::NotUtf8),
        }
    }

    /// The namespace a prefix (empty: none) stands for here. An element without a prefix is in
    /// the default namespace; an unknown prefix, like no namespace, is [`Ns::Other`].
    /// Short prefixes resolved are remembered until a declaration of theirs comes into or goes
    /// out of scope.
    #[inline]
    fn resolve(&mut self, prefix: &[u8]) -> Ns {
        let Some(key) = short_key(prefix) else {
            return resolve_in(&self.bindings, prefix);
        };
        let slot = cache_slot(key);
        if let Some(Some((cached, namespace))) = self.resolved.get(slot)
            && *cached == key
        {
            return *namespace;
        }
        let namespace = resolve_in(&self.bindings, prefix);
        if let Some(entry) = self.resolved.get_mut(slot) {
            *entry = Some((key, namespace));
        }
        namespace
    }

    /// Forgets what the prefix of `key` resolved to, when a declaration of it comes into or goes
    /// out of scope: no other prefix resolves differently then. A long prefix is never cached.
    fn forget_resolved(&mut self, key: Option<u64>) {
        if let Some(key) = key
            && let Some(entry) = self.resolved.get_mut(cache_slot(key))
        {
            *entry = None;
        }
    }

    /// True when the `xsi:type` value is a QName for `User` in the enterprise sObject namespace.
    /// The value's prefix is resolved like an element's, with the declarations in scope on the
    /// sObject.
    fn is_enterprise_user_type(&mut self, type_name: &str) -> bool {
        let (local, prefix) = split_name(trim_xml_space(type_name).as_bytes());
        local == b"User" && self.resolve(prefix.unwrap_or_default()) == Ns::Enterprise
    }

    /// Brings a namespace declaration into scope, refusing the bindings XML forbids. False when
    /// the declaration changes nothing (`xml` bound to its own namespace).
    fn bind(
        &mut self,
        declaration: PrefixDeclaration<'_>,
        uri: &[u8],
    ) -> Result<bool, OutboundError> {
        let prefix: &[u8] = match declaration {
            PrefixDeclaration::Default => b"",
            PrefixDeclaration::Named(b"xml") if uri == XML_NS => return Ok(false),
            PrefixDeclaration::Named(b"xml") => {
                return Err(malformed("the xml prefix is bound to another namespace"));
            }
            PrefixDeclaration::Named(b"xmlns") => {
                return Err(malformed("the xmlns prefix is declared"));
            }
            PrefixDeclaration::Named(_) if uri == XML_NS || uri == XMLNS_NS => {
                return Err(malformed("a prefix is bound to a reserved namespace"));
            }
            PrefixDeclaration::Named(prefix) => prefix,
        };
        if self.bindings.len() >= MAX_NAMESPACES_IN_SCOPE {
            return Err(malformed(format_args!(
                "more than {MAX_NAMESPACES_IN_SCOPE} namespace declarations in scope"
            )));
        }
        // Named prefixes are slices of the body, which the reader lends them from.
        let prefix: &'a [u8] = if prefix.is_empty() {
            b""
        } else {
            within(self.input, prefix)
                .ok_or_else(|| malformed("a namespace prefix outside the body"))?
                .as_bytes()
        };
        let key = short_key(prefix);
        self.bindings.push(Binding {
            prefix,
            key,
            namespace: Ns::of_uri(uri),
        });
        self.forget_resolved(key);
        Ok(true)
    }

    /// A text or CDATA event: the content of the open value, or text the parser does not keep.
    /// The content is lent from the body unless its line ends need normalising (`normalised`
    /// does that, as XML 1.0 says).
    fn text_event<E: std::fmt::Display>(
        &mut self,
        raw: &[u8],
        normalised: impl FnOnce() -> Result<Cow<'a, str>, E>,
    ) -> Result<(), OutboundError> {
        let input = self.input;
        let carriage_return = self.carriage_return;
        let Some(OpenElement {
            frame: Frame::Value(value),
            ..
        }) = self.open.last_mut()
        else {
            return self.check_stray_text(raw);
        };
        let content = match within(input, raw) {
            Some(text) if !carriage_return || !raw.contains(&b'\r') => Cow::Borrowed(text),
            // Inside a value, so not inside SessionId: the detail may quote the input.
            _ => normalised().map_err(malformed)?,
        };
        value.append(content, input)
    }

    /// Decides what a newly opened element is, from its parent, namespace and local name.
    fn frame_for(
        &mut self,
        namespace: Ns,
        local: Cow<'a, str>,
        attributes: ElementAttributes<'a>,
    ) -> Result<Frame<'a>, OutboundError> {
        let nil = attributes.nil;
        let value = |target| Frame::Value(ValueDraft::new(target, nil));
        let Some(parent) = self.open.last_mut().map(|element| &mut element.frame) else {
            if self.root_seen {
                return Err(malformed("more than one document element"));
            }
            self.root_seen = true;
            return match (namespace, local.as_ref()) {
                (Ns::SoapEnvelope, "Envelope") => Ok(Frame::Envelope),
                _ => Err(OutboundError::NotSoapEnvelope),
            };
        };
        let frame = match (parent, namespace, local.as_ref()) {
            (Frame::Envelope, Ns::SoapEnvelope, "Body") => {
                if std::mem::replace(&mut self.body_seen, true) {
                    return Err(malformed("more than one SOAP Body"));
                }
                Frame::Body
            }
            (Frame::Body, Ns::Outbound, "notifications") => {
                if std::mem::replace(&mut self.notifications_seen, true) {
                    return Err(malformed("more than one notifications element"));
                }
                Frame::Notifications
            }
            (Frame::Notifications, Ns::Outbound, "OrganizationId") => {
                if std::mem::replace(&mut self.organization_id_seen, true) {
                    return Err(malformed("more than one OrganizationId"));
                }
                value(Target::OrganizationId)
            }
            (Frame::Notifications, Ns::Outbound, "ActionId") => {
                if std::mem::replace(&mut self.action_id_seen, true) {
                    return Err(malformed("more than one ActionId"));
                }
                value(Target::ActionId)
            }
            (Frame::Notifications, Ns::Outbound, "SessionId") => Frame::Secret,
            (Frame::Notifications, Ns::Outbound, "Notification") => {
                self.notification_count += 1;
                if self.notification_count > MAX_NOTIFICATIONS {
                    // Only counted, for the error that will refuse the message.
                    Frame::Ignored
                } else {
                    self.notification = NotificationDraft::default();
                    Frame::Notification
                }
            }
            (Frame::Notification, Ns::Outbound, "Id") => {
                if std::mem::replace(&mut self.notification.id_seen, true) {
                    return Err(malformed("a Notification with more than one Id"));
                }
                value(Target::NotificationId)
            }
            (Frame::Notification, Ns::Outbound, "sObject") => {
                if self.notification.object.is_some() {
                    return Err(malformed("a Notification with more than one sObject"));
                }
                let type_name = attributes.xsi_type.unwrap_or_default();
                let is_user = self.is_enterprise_user_type(&type_name);
                let draft = &mut self.notification;
                if !is_user {
                    draft.object = Some(Err(NotificationError::NotAUser {
                        xsi_type: truncate(&type_name, MAX_TYPE_NAME_CHARS),
                    }));
                    Frame::Ignored
                } else if nil {
                    draft.object = Some(Err(NotificationError::MissingUserId));
                    Frame::Ignored
                } else {
                    // Marks the sObject as seen; replaced by the user when it closes.
                    draft.object = Some(Err(NotificationError::MissingUserId));
                    // The last sObject's draft was taken when it closed; only a draft that is
                    // somehow not empty is dropped and replaced.
                    let user = &mut self.user;
                    if user.id.is_some()
                        || !user.fields.is_empty()
                        || user.names.is_some()
                        || user.name_bits != 0
                    {
                        *user = UserDraft::default();
                    }
                    user.fields.reserve(FIELDS_SCANNED);
                    Frame::UserSObject
                }
            }
            (Frame::UserSObject, Ns::Enterprise, _) => value(Target::Field(field_name(local)?)),
            (Frame::Value(parent), Ns::Enterprise, _) => match &parent.target {
                Target::Field(parent_key) => {
                    let key = field_name(Cow::Owned(format!("{parent_key}.{local}")))?;
                    parent.has_children = true;
                    value(Target::Field(key))
                }
                _ => Frame::Ignored,
            },
            (Frame::Secret, _, _) => Frame::Secret,
            _ => Frame::Ignored,
        };
        Ok(frame)
    }

    /// One pass over the attributes: namespace declarations come into scope, and whether the
    /// element has any `type` or `nil` attribute with a prefix is noted. Only then, with every
    /// declaration of the element known (one may follow the attribute it binds), are those few
    /// resolved, in a second pass that only such elements make.
    fn read_attributes(
        &mut self,
        start: &BytesStart<'_>,
    ) -> Result<ElementAttributes<'a>, OutboundError> {
        let mut found = ElementAttributes::default();
        // Most elements (every field) have none: nothing after the name, no iterator to set up.
        if start.attributes_raw().is_empty() {
            return Ok(found);
        }
        // The attributes that may be `xsi:type` or `xsi:nil`: the first few are kept, so that
        // only an element with more of them reads its attributes a second time.
        // Key and value, as slices: nothing to drop.
        let mut candidates: [Option<(&[u8], &[u8])>; 2] = [None, None];
        let mut candidate_count = 0;
        let mut keys = AttributeKeys::default();
        // quick-xml's duplicate check keeps the keys in a vector it allocates for each element;
        // `keys` makes the same check without allocating for a real element's few attributes.
        for (index, attribute) in start.attributes().with_checks(false).enumerate() {
            if index >= MAX_ATTRIBUTES {
                return Err(malformed(format_args!(
                    "an element has more than {MAX_ATTRIBUTES} attributes"
                )));
            }
            let attribute = attribute.map_err(|e| self.detail_error(&e))?;
            if !keys.insert(attribute.key.into_inner()) {
                return Err(self.detail_error(&format_args!(
                    "an element has the attribute {} twice",
                    String::from_utf8_lossy(attribute.key.as_ref())
                )));
            }
            if let Some(declaration) = attribute.key.as_namespace_binding() {
                if self.bind(declaration, &attribute.value)? {
                    found.namespace_declarations += 1;
                }
                continue;
            }
            let (local, prefix) = split_name(attribute.key.as_ref());
            if prefix.is_some() && matches!(local, b"type" | b"nil") {
                match (candidates.get_mut(candidate_count), &attribute.value) {
                    (Some(slot), Cow::Borrowed(value)) => {
                        *slot = Some((attribute.key.into_inner(), value));
                        candidate_count += 1;
                    }
                    // Not kept: the attributes are read again.
                    _ => candidate_count = usize::MAX,
                }
            }
        }
        if candidate_count <= candidates.len() {
            for &(key, value) in candidates.iter().flatten() {
                let attribute = Attribute {
                    key: QName(key),
                    value: Cow::Borrowed(value),
                };
                self.read_xsi_attribute(&attribute, &mut found)?;
            }
        } else {
            for attribute in start.attributes().with_checks(false) {
                let attribute = attribute.map_err(|e| self.detail_error(&e))?;
                self.read_xsi_attribute(&attribute, &mut found)?;
            }
        }
        Ok(found)
    }

    /// Notes the attribute if it is `xsi:type` or `xsi:nil`, with every declaration of its
    /// element in scope.
    fn read_xsi_attribute(
        &mut self,
        attribute: &Attribute<'_>,
        found: &mut ElementAttributes<'a>,
    ) -> Result<(), OutboundError> {
        let (local, prefix) = split_name(attribute.key.as_ref());
        let Some(prefix) = prefix else {
            return Ok(());
        };
        let is_type = match local {
            b"type" => true,
            b"nil" => false,
            _ => return Ok(()),
        };
        if prefix == b"xmlns" || self.resolve(prefix) != Ns::Xsi {
            return Ok(());
        }
        // A value without a reference is its own text, lent from the body.
        let value = match within(self.input, &attribute.value) {
            Some(lent) if !lent.bytes().any(|b| b == b'&') => Cow::Borrowed(lent),
            _ => attribute
                .unescape_value_with(resolve_xml_entity)
                .map_err(|e| self.detail_error(&e))?,
        };
        if is_type {
            found.xsi_type = Some(match within(self.input, value.as_bytes()) {
                Some(lent) => Cow::Borrowed(lent),
                None => Cow::Owned(value.into_owned()),
            });
        } else {
            found.nil = match trim_xml_space(&value) {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(malformed("xsi:nil is neither true nor false")),
            };
        }
        Ok(())
    }

    /// An end tag. Most close a field with text and no child, nil or namespace declaration:
    /// they go straight to the user's fields, as [`Parser::close_element`] would add them;
    /// every other element takes that general path.
    #[inline]
    fn close(&mut self) -> Result<(), OutboundError> {
        let Some(closed) = self.open.pop() else {
            return Err(malformed("an end tag without a start tag"));
        };
        match closed {
            OpenElement {
                frame:
                    Frame::Value(ValueDraft {
                        target: Target::Field(key),
                        text,
                        nil: false,
                        has_children: false,
                    }),
                namespace_declarations: 0,
            } if key != "Id" => self.user.add(key, Some(text)),
            closed => self.close_element(closed),
        }
    }

    #[inline(never)]
    fn close_element(&mut self, closed: OpenElement<'a>) -> Result<(), OutboundError> {
        if closed.namespace_declarations > 0 {
            let in_scope = self.bindings.len();
            let out_of_scope = in_scope.saturating_sub(closed.namespace_declarations);
            for index in out_of_scope..in_scope {
                let key = self.bindings.get(index).and_then(|binding| binding.key);
                self.forget_resolved(key);
            }
            self.bindings.truncate(out_of_scope);
        }
        match closed.frame {
            Frame::Notification => {
                let draft = std::mem::take(&mut self.notification);
                self.finish_notification(draft)
            }
            Frame::UserSObject => {
                // An sObject's parent is always its Notification.
                let user = std::mem::take(&mut self.user);
                self.notification.object = Some(user.into_object());
                Ok(())
            }
            Frame::Value(value) => self.finish_value(value),
            Frame::Envelope
            | Frame::Body
            | Frame::Notifications
            | Frame::Ignored
            | Frame::Secret => Ok(()),
        }
    }

    fn finish_value(&mut self, value: ValueDraft<'a>) -> Result<(), OutboundError> {
        let ValueDraft {
            target,
            text,
            nil,
            has_children,
        } = value;
        if nil && (has_children || !is_blank(&text)) {
            return Err(malformed(format_args!(
                "{} is nil but has content",
                target.name()
            )));
        }
        match target {
            Target::OrganizationId => {
                self.organization_id = if nil {
                    None
                } else {
                    Some(parse_organization_id(&text)?)
                };
            }
            Target::ActionId => {
                self.action_id = if nil {
                    None
                } else {
                    Some(
                        SalesforceId::parse(&text)
                            .map_err(|e| OutboundError::BadActionId(e.to_string()))?,
                    )
                };
            }
            Target::NotificationId => {
                let id = if nil {
                    None
                } else {
                    Some(
                        SalesforceId::parse(&text)
                            .map_err(|e| OutboundError::BadNotificationId(e.to_string()))?,
                    )
                };
                // The Id's parent is always its Notification.
                self.notification.id = id;
            }
            Target::Field(key) => {
                let value = if nil {
                    None
                } else if has_children && is_blank(&text) {
                    // A container: its children are the values, the whitespace between them is layout.
                    return Ok(());
                } else {
                    Some(text)
                };
                // A field is always inside the one open User sObject.
                let user = &mut self.user;
                if key == "Id" {
                    if user.id.is_some() {
                        return Err(OutboundError::DuplicateField {
                            field: key.into_owned(),
                        });
                    }
                    user.id = Some(value);
                } else {
                    user.add(key, value)?;
                }
            }
        }
        Ok(())
    }

    fn finish_notification(&mut self, draft: NotificationDraft<'a>) -> Result<(), OutboundError> {
        let Some(id) = draft.id else {
            return Err(OutboundError::BadNotificationId(
                "a Notification has no Id".into(),
            ));
        };
        if !self.notification_ids.insert(*id.as_bytes()) {
            return Err(OutboundError::DuplicateNotificationId(id.to_string()));
        }
        self.notifications.push(NotificationRef {
            id,
            object: draft
                .object
                .unwrap_or(Err(NotificationError::MissingUserId)),
        });
        Ok(())
    }

    /// The text of a resolved reference.
    fn text(&mut self, text: Cow<'a, str>) -> Result<(), OutboundError> {
        let input = self.input;
        match self.top_mut() {
            Some(Frame::Value(value)) => value.append(text, input),
            None if !is_blank(&text) => Err(self.stray_text_error()),
            _ => Ok(()),
        }
    }

    /// Text outside the document element: before it, the body is something else than SOAP (JSON,
    /// a form); after it, the XML is broken.
    fn stray_text_error(&self) -> OutboundError {
        if self.root_seen {
            malformed("text after the document element")
        } else {
            OutboundError::NotSoapEnvelope
        }
    }

    /// Text the parser does not keep: only refused outside the document element.
    fn check_stray_text(&self, raw: &[u8]) -> Result<(), OutboundError> {
        if self.open.is_empty()
            && !raw
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return Err(self.stray_text_error());
        }
        Ok(())
    }

    /// The text of `&name;` or `&#n;`. Only XML's five predefined entities exist: with no DOCTYPE,
    /// nothing else can be declared.
    fn resolve_reference(
        &self,
        reference: &BytesRef<'_>,
    ) -> Result<Cow<'static, str>, OutboundError> {
        if reference.is_char_ref() {
            return match reference.resolve_char_ref() {
                Ok(Some(c)) if is_xml_char(c) => Ok(Cow::Owned(c.to_string())),
                Ok(_) | Err(_) => {
                    Err(self
                        .detail_error(&"a character reference to a character XML does not allow"))
                }
            };
        }
        let name = reference.decode().map_err(|e| self.detail_error(&e))?;
        match resolve_xml_entity(&name) {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => Err(self.detail_error(&format_args!("undeclared entity &{name};"))),
        }
    }

    fn finish(self) -> Result<OutboundMessageRef<'a>, OutboundError> {
        if !self.open.is_empty() {
            return Err(malformed("the document ends inside an element"));
        }
        if !self.root_seen || !self.body_seen {
            return Err(OutboundError::NotSoapEnvelope);
        }
        if !self.notifications_seen {
            return Err(OutboundError::NoNotifications);
        }
        if self.notification_count > MAX_NOTIFICATIONS {
            return Err(OutboundError::TooManyNotifications(self.notification_count));
        }
        if self.notifications.is_empty() {
            return Err(OutboundError::NoNotifications);
        }
        let organization_id = self
            .organization_id
            .ok_or(OutboundError::MissingOrganizationId)?;
        Ok(OutboundMessageRef {
            organization_id,
            action_id: self.action_id,
            notifications: self.notifications,
        })
    }
}

/// Attributes kept inline by [`AttributeKeys`]; more go to a vector.
const ATTRIBUTE_KEYS_INLINE: usize = 8;

/// The attribute names of one start tag seen so far, as written.
#[derive(Default)]
struct AttributeKeys<'k> {
    inline: [&'k [u8]; ATTRIBUTE_KEYS_INLINE],
    count: usize,
    more: Vec<&'k [u8]>,
}

impl<'k> AttributeKeys<'k> {
    /// Adds `key`; false when the tag already has it.
    fn insert(&mut self, key: &'k [u8]) -> bool {
        let inline = self.inline.get(..self.count).unwrap_or_default();
        if inline.contains(&key) || self.more.contains(&key) {
            return false;
        }
        match self.inline.get_mut(self.count) {
            Some(slot) => {
                *slot = key;
                self.count += 1;
            }
            None => self.more.push(key),
        }
        true
    }
}

#[derive(Default)]
struct ElementAttributes<'a> {
    namespace_declarations: usize,
    /// Lent from the body unless it had a reference to resolve.
    xsi_type: Option<Cow<'a, str>>,
    nil: bool,
}

fn parse_organization_id(text: &str) -> Result<SalesforceId, OutboundError> {
    let id =
        SalesforceId::parse(text).map_err(|e| OutboundError::BadOrganizationId(e.to_string()))?;
    if !id.has_key_prefix(ORGANIZATION_KEY_PREFIX) {
        return Err(OutboundError::BadOrganizationId(format!(
            "{id} does not start with 00D"
        )));
    }
    Ok(id)
}

#[inline]
fn field_name(key: Cow<'_, str>) -> Result<Cow<'_, str>, OutboundError> {
    if key.len() > MAX_FIELD_NAME_BYTES {
        return Err(malformed(format_args!(
            "a field name is longer than {MAX_FIELD_NAME_BYTES} bytes"
        )));
    }
    Ok(key)
}

/// `part` as a slice of `input`, with `input`'s lifetime, when it lies inside it. The reader lends
/// names and text from the body it reads, so they do; anything else gets `None`.
#[inline]
fn within<'a>(input: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = offset_in(input, part)?;
    input.get(start..start.checked_add(part.len())?)
}

/// Where `part` starts in `input`, when it lies inside it.
#[inline]
fn offset_in(input: &str, part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= input.len()).then_some(start)
}

/// Only UTF-8 (and its subset ASCII) is accepted; the parser reads bytes as UTF-8.
fn check_declared_encoding(declaration: &BytesDecl<'_>) -> Result<(), OutboundError> {
    match declaration.encoding() {
        None => Ok(()),
        Some(Ok(name)) => {
            let utf8 = ["utf-8", "utf8", "us-ascii", "ascii"]
                .iter()
                .any(|accepted| name.eq_ignore_ascii_case(accepted.as_bytes()));
            if utf8 {
                Ok(())
            } else {
                Err(OutboundError::NotUtf8)
            }
        }
        Some(Err(error)) => Err(malformed(error)),
    }
}

/// What one pass over the body's bytes found.
struct CharacterScan {
    /// The first character XML 1.0 does not allow.
    first_illegal: Option<char>,
    /// Whether there is a CR (before the first illegal character).
    carriage_return: bool,
}

/// Finds the first character XML 1.0 does not allow and whether there is any CR: in valid UTF-8
/// only the C0 controls (bar tab, LF, CR) and U+FFFE / U+FFFF (EF BF BE, EF BF BF) are outside
/// `Char`. Most of a body is printable ASCII, which a block of 32 bytes shows with four words
/// and no branch per word; a block with anything else is tested word by word, and only a word
/// that may hold a control or an 0xEF is looked at byte by byte.
fn scan_characters(text: &str) -> CharacterScan {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const EF: u64 = u64::from_ne_bytes([0xEF; 8]);
    // The high bit of each byte below 0x20 or above 0x7F, and of no byte of a word of printable
    // ASCII (a borrow only starts at a byte below 0x20, so the lowest such byte is always marked).
    let outside_printable_ascii = |word: u64| (word.wrapping_sub(ONES * 0x20) | word) & HIGHS;
    // The high bit of each byte that may be below 0x20 or be 0xEF: never clear when one is.
    let suspects = |word: u64| {
        let ef = word ^ EF;
        (word.wrapping_sub(ONES * 0x20) & !word | ef.wrapping_sub(ONES) & !ef) & HIGHS
    };
    let mut scan = CharacterScan {
        first_illegal: None,
        carriage_return: false,
    };
    let (blocks, _) = text.as_bytes().as_chunks::<32>();
    for (block_index, block) in blocks.iter().enumerate() {
        let (words, _) = block.as_chunks::<8>();
        let printable = words.iter().fold(0, |all, word| {
            all | outside_printable_ascii(u64::from_ne_bytes(*word))
        }) == 0;
        if printable {
            continue;
        }
        for (word_index, word) in words.iter().enumerate() {
            if suspects(u64::from_ne_bytes(*word)) != 0 {
                let from = block_index * 32 + word_index * 8;
                if scan_bytes(text, from..from + 8, &mut scan) {
                    return scan;
                }
            }
        }
    }
    let tail = blocks.len() * 32..text.len();
    scan_bytes(text, tail, &mut scan);
    scan
}

/// Tests the bytes of `text` in `range` one by one, noting a CR; true (with the character in
/// `scan`) at the first character XML does not allow.
fn scan_bytes(text: &str, range: std::ops::Range<usize>, scan: &mut CharacterScan) -> bool {
    let bytes = text.as_bytes();
    let start = range.start;
    for (i, &b) in bytes.get(range).unwrap_or_default().iter().enumerate() {
        let at = start + i;
        let illegal = (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
            || (b == 0xEF
                && bytes.get(at + 1) == Some(&0xBF)
                && matches!(bytes.get(at + 2), Some(0xBE | 0xBF)));
        if illegal {
            scan.first_illegal = text.get(at..).and_then(|rest| rest.chars().next());
            return true;
        }
        scan.carriage_return |= b == b'\r';
    }
    false
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// `text` without XML white space (space, tab, LF, CR) at either end.
fn trim_xml_space(text: &str) -> &str {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |last| last + 1);
    // Both ends are next to ASCII bytes, so on character boundaries.
    text.get(start..end).unwrap_or_default()
}

fn is_blank(text: &str) -> bool {
    text.chars().all(is_xml_space)
}

fn malformed(detail: impl std::fmt::Display) -> OutboundError {
    OutboundError::Malformed(truncate(&detail.to_string(), MAX_ERROR_DETAIL_CHARS))
}

/// At most `max` characters of `text`, controls replaced, for error messages.
fn truncate(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../../tests/fixtures/salesforce/", $name))
        };
    }

    const THREE_USERS: &str = fixture!("outbound-3-users.xml");
    const DEFAULT_NAMESPACE: &str = fixture!("outbound-default-namespace.xml");
    const WEIRD_PREFIXES: &str = fixture!("outbound-weird-prefixes.xml");
    const MIXED: &str = fixture!("outbound-mixed-sobjects.xml");
    const BILLION_LAUGHS: &str = fixture!("outbound-doctype-billion-laughs.xml");
    const EXTERNAL_ENTITY: &str = fixture!("outbound-doctype-external-entity.xml");
    const SOAP12: &str = fixture!("outbound-soap12.xml");

    const LEAKED_SESSION: &str = "LeakedSessionTokenMustNeverBeStored";

    fn parse(xml: &str) -> Result<OutboundMessage, OutboundError> {
        parse_outbound_message(xml.as_bytes())
    }

    fn sf_id(raw: &str) -> SalesforceId {
        SalesforceId::parse(raw).unwrap()
    }

    fn user(notification: &Notification) -> &SourceUser {
        notification.object.as_ref().unwrap()
    }

    fn text(value: &str) -> Value {
        Value::String(value.to_string())
    }

    /// A message from the sample org holding `notifications`; `sf` is bound on each sObject.
    fn envelope(notifications: &str) -> String {
        envelope_with_org(
            "<OrganizationId>00D8a000002bQxTEAU</OrganizationId>",
            notifications,
        )
    }

    fn envelope_with_org(organization: &str, notifications: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE_NS}" xmlns:xsi="{XSI_NS}"><soapenv:Body><notifications xmlns="{OUTBOUND_NS}">{organization}{notifications}</notifications></soapenv:Body></soapenv:Envelope>"#
        )
    }

    fn sobject_notification(notification_id: &str, sobject_body: &str) -> String {
        format!(
            r#"<Notification><Id>{notification_id}</Id><sObject xsi:type="sf:User" xmlns:sf="{ENTERPRISE_SOBJECT_NS}">{sobject_body}</sObject></Notification>"#
        )
    }

    fn user_notification(notification_id: &str, fields: &str) -> String {
        sobject_notification(
            notification_id,
            &format!("<sf:Id>0058a00000LmN2pAAF</sf:Id>{fields}"),
        )
    }

    /// One user notification whose sObject holds `fields` after its sf:Id.
    fn one_user(fields: &str) -> String {
        envelope(&user_notification("04l8a00000Dq4RsAAJ", fields))
    }

    /// The i-th of a series of distinct notification ids, in 15-character form.
    fn nth_notification_id(i: usize) -> String {
        format!("04l8a00000D{i:04}")
    }

    fn notifications(count: usize) -> String {
        (0..count)
            .map(|i| user_notification(&nth_notification_id(i), ""))
            .collect()
    }

    fn malformed_detail(result: Result<OutboundMessage, OutboundError>) -> String {
        match result {
            Err(OutboundError::Malformed(detail)) => detail,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    // The reference message.

    #[test]
    fn the_three_user_fixture_gives_three_users_in_document_order() {
        let message = parse(THREE_USERS).unwrap();
        assert_eq!(message.organization_id, sf_id("00D8a000002bQxTEAU"));
        assert_eq!(message.action_id, Some(sf_id("04k8a000000CkPzAAK")));
        let ids: Vec<_> = message
            .notifications
            .iter()
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "04l8a00000Dq4RsAAJ",
                "04l8a00000Dq4RtAAJ",
                "04l8a00000Dq4RuAAJ"
            ]
        );
        let users: Vec<_> = message
            .notifications
            .iter()
            .map(|n| user(n).id.as_str())
            .collect();
        assert_eq!(
            users,
            [
                "0058a00000LmN2pAAF",
                "0058a00000LmN3qAAF",
                "0058a00000LmN4rAAF"
            ]
        );
    }

    #[test]
    fn martas_28_elements_are_her_id_and_27_text_fields_with_entities_unescaped() {
        let message = parse(THREE_USERS).unwrap();
        let marta = user(&message.notifications[0]);
        assert_eq!(marta.id.as_str(), "0058a00000LmN2pAAF");
        assert_eq!(marta.fields.len(), 27);
        assert_eq!(
            marta.fields["CompanyName"],
            text("Acme Research & Development")
        );
        assert_eq!(marta.fields["Email"], text("marta.fernandes@acme.example"));
        assert_eq!(marta.fields["IsActive"], text("true"));
        assert_eq!(marta.fields["ManagerId"], text("0058a00000LmN5sAAF"));
        assert_eq!(
            marta.fields["SystemModstamp"],
            text("2025-03-14T16:02:11.000Z")
        );
        assert_eq!(marta.username(), Some("marta.fernandes@acme.example"));
        assert_eq!(marta.modified_at().unwrap().unix_timestamp(), 1_741_968_131);
    }

    #[test]
    fn james_is_inactive_as_the_text_false() {
        let message = parse(THREE_USERS).unwrap();
        let james = user(&message.notifications[1]);
        assert_eq!(james.fields["IsActive"], text("false"));
        assert_eq!(james.is_active(), Some(false));
        assert_eq!(james.fields.len(), 16);
    }

    #[test]
    fn the_user_id_is_the_source_user_id_and_never_a_field() {
        let message = parse(THREE_USERS).unwrap();
        for notification in &message.notifications {
            assert!(!user(notification).fields.contains_key("Id"));
        }
    }

    #[test]
    fn a_nil_session_id_and_the_callback_urls_are_ignored() {
        let message = parse(THREE_USERS).unwrap();
        let debug = format!("{message:?}");
        assert!(!debug.contains("SessionId"));
        assert!(!debug.contains("services/Soap"));
    }

    #[test]
    fn a_default_namespace_variant_gives_the_same_message() {
        assert_eq!(
            parse(DEFAULT_NAMESPACE).unwrap(),
            parse(THREE_USERS).unwrap()
        );
    }

    #[test]
    fn misleading_prefixes_give_the_same_message_because_namespaces_are_matched_by_uri() {
        assert_eq!(parse(WEIRD_PREFIXES).unwrap(), parse(THREE_USERS).unwrap());
    }

    // Edge cases of real messages.

    #[test]
    fn fifteen_character_ids_are_normalised_to_eighteen() {
        let message = parse(MIXED).unwrap();
        assert_eq!(message.organization_id.as_str(), "00D8a000002bQxTEAU");
        assert_eq!(
            message.action_id.as_ref().unwrap().as_str(),
            "04k8a000000CkPzAAK"
        );
        assert_eq!(message.notifications[0].id, "04l8a00000Dq4S1AAJ");
        assert_eq!(
            user(&message.notifications[0]).id.as_str(),
            "0058a00000LmN6tAAF"
        );
    }

    #[test]
    fn a_non_user_sobject_is_refused_for_its_notification_only() {
        let message = parse(MIXED).unwrap();
        assert_eq!(message.notifications.len(), 6);
        assert!(message.notifications[0].object.is_ok());
        assert_eq!(
            message.notifications[1].object,
            Err(NotificationError::NotAUser {
                xsi_type: "sf:Contact".into()
            })
        );
        assert!(message.notifications[2].object.is_ok());
    }

    #[test]
    fn references_in_xsi_type_and_xsi_nil_values_are_resolved() {
        let xml = envelope(&format!(
            r#"<Notification><Id>04l8a00000Dq4RsAAJ</Id><sObject xsi:type="sf:&#85;ser" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Id>0058a00000LmN2pAAF</sf:Id><sf:ManagerId xsi:nil="tr&#117;e"/></sObject></Notification><Notification><Id>04l8a00000Dq4RtAAJ</Id><sObject xsi:type="sf:C&#x6F;ntact" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Id>0038a00000LmN2pAAF</sf:Id></sObject></Notification>"#
        ));
        let message = parse(&xml).unwrap();
        let user = user(&message.notifications[0]);
        assert_eq!(user.fields.get("ManagerId"), Some(&Value::Null));
        assert_eq!(
            message.notifications[1].object,
            Err(NotificationError::NotAUser {
                xsi_type: "sf:Contact".into()
            })
        );
    }

    #[test]
    fn a_user_deleted_before_delivery_has_only_its_id() {
        let message = parse(MIXED).unwrap();
        let deleted = user(&message.notifications[2]);
        assert_eq!(deleted.id.as_str(), "0058a00000LmN7uAAF");
        assert!(deleted.fields.is_empty());
        assert!(!deleted.has_data());
    }

    #[test]
    fn a_user_without_sf_id_is_refused_for_its_notification_only() {
        let message = parse(MIXED).unwrap();
        assert_eq!(
            message.notifications[3].object,
            Err(NotificationError::MissingUserId)
        );
    }

    #[test]
    fn a_user_whose_sf_id_is_not_a_user_id_is_refused() {
        let message = parse(MIXED).unwrap();
        assert_eq!(
            message.notifications[4].object,
            Err(NotificationError::NotAUserId("0038a00000Xy7QaAAJ".into()))
        );
    }

    #[test]
    fn a_user_of_the_partner_namespace_is_not_an_enterprise_user() {
        let message = parse(MIXED).unwrap();
        assert_eq!(
            message.notifications[5].object,
            Err(NotificationError::NotAUser {
                xsi_type: "p:User".into()
            })
        );
    }

    #[test]
    fn xsi_nil_is_null_and_absent_fields_stay_absent() {
        let message = parse(MIXED).unwrap();
        let ana = user(&message.notifications[0]);
        assert_eq!(ana.fields["Title"], Value::Null);
        assert_eq!(ana.field("Title"), None);
        assert!(!ana.fields.contains_key("Department"));
    }

    #[test]
    fn textarea_newlines_and_character_references_are_kept() {
        let message = parse(MIXED).unwrap();
        let ana = user(&message.notifications[0]);
        assert_eq!(ana.fields["Street"], text("Rua Augusta 100\n3.º andar"));
        assert_eq!(ana.fields["AboutMe"], text("Line one\r\nLine two"));
    }

    #[test]
    fn cdata_is_text() {
        let message = parse(MIXED).unwrap();
        assert_eq!(
            user(&message.notifications[0]).fields["CommunityNickname"],
            text("ana <admin> & co")
        );
    }

    #[test]
    fn a_nested_element_is_stored_as_parent_dot_child() {
        let message = parse(MIXED).unwrap();
        let ana = user(&message.notifications[0]);
        assert_eq!(ana.fields["Manager.Email"], text("boss@acme.example"));
        assert_eq!(ana.fields["Manager.Id"], text("0058a00000LmN5sAAF"));
        assert!(!ana.fields.contains_key("Manager"));
    }

    #[test]
    fn a_prefix_means_what_the_declarations_in_scope_say_element_by_element() {
        let xml = one_user(concat!(
            "<sf:Title>kept</sf:Title>",
            // `sf` bound to another namespace on the element itself, then back in scope.
            r#"<sf:Department xmlns:sf="urn:example:other">ignored</sf:Department>"#,
            "<sf:Email>kept</sf:Email>",
            // `x` bound to the enterprise namespace for one element only.
            r#"<x:Division xmlns:x="urn:sobject.enterprise.soap.sforce.com">kept</x:Division>"#,
            "<x:Alias>ignored: x is no longer declared</x:Alias>",
            // A nested redeclaration: the child is in another namespace, its parent is not.
            r#"<sf:Manager><sf:Email xmlns:sf="urn:example:other">ignored</sf:Email><sf:Id>0058a00000LmN2qAAF</sf:Id></sf:Manager>"#,
            "<sf:FirstName>kept</sf:FirstName>",
        ));
        let message = parse(&xml).unwrap();
        let names: Vec<_> = user(&message.notifications[0])
            .fields
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            ["Division", "Email", "FirstName", "Manager.Id", "Title"]
        );
    }

    #[test]
    fn elements_of_other_namespaces_and_unknown_elements_are_ignored() {
        let message = parse(MIXED).unwrap();
        let ana = user(&message.notifications[0]);
        assert!(!ana.fields.contains_key("Extra"));
        let names: Vec<_> = ana.fields.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "AboutMe",
                "CommunityNickname",
                "Email",
                "FirstName",
                "IsActive",
                "Manager.Email",
                "Manager.Id",
                "Street",
                "Title"
            ]
        );
    }

    #[test]
    fn the_session_id_is_never_stored() {
        let message = parse(MIXED).unwrap();
        assert!(!format!("{message:?}").contains(LEAKED_SESSION));
    }

    #[test]
    fn an_error_inside_the_session_id_does_not_quote_it() {
        for session in [
            format!("00D!AQ&{LEAKED_SESSION};"),
            format!("00D!AQ{LEAKED_SESSION}<"),
            format!("00D!AQ{LEAKED_SESSION}&#0;"),
        ] {
            let xml = envelope_with_org(
                &format!(
                    "<OrganizationId>00D8a000002bQxTEAU</OrganizationId><SessionId>{session}</SessionId>"
                ),
                &notifications(1),
            );
            let error = parse(&xml).unwrap_err();
            assert_eq!(error.code(), "malformed_xml");
            assert!(!error.to_string().contains(LEAKED_SESSION), "{error}");
        }
    }

    #[test]
    fn whitespace_around_a_value_is_kept() {
        let message = parse(&one_user("<sf:Title>  Staff\tEngineer \n</sf:Title>")).unwrap();
        assert_eq!(
            user(&message.notifications[0]).fields["Title"],
            text("  Staff\tEngineer \n")
        );
    }

    #[test]
    fn raw_line_ends_in_a_value_are_read_as_line_feeds() {
        let message = parse(&one_user(
            "<sf:AboutMe>one\r\ntwo\rthree\nfour</sf:AboutMe><sf:Title>a\r\n</sf:Title>",
        ))
        .unwrap();
        let fields = &user(&message.notifications[0]).fields;
        assert_eq!(fields["AboutMe"], text("one\ntwo\nthree\nfour"));
        assert_eq!(fields["Title"], text("a\n"));
    }

    #[test]
    fn a_carriage_return_between_tags_changes_no_value() {
        let message = parse(&one_user("\r\n<sf:Title>Staff</sf:Title>\r\n")).unwrap();
        assert_eq!(
            user(&message.notifications[0]).fields["Title"],
            text("Staff")
        );
    }

    #[test]
    fn an_empty_element_is_an_empty_string() {
        let message = parse(&one_user("<sf:Title/><sf:Division></sf:Division>")).unwrap();
        let fields = &user(&message.notifications[0]).fields;
        assert_eq!(fields["Title"], text(""));
        assert_eq!(fields["Division"], text(""));
    }

    #[test]
    fn xsi_nil_accepts_the_schema_boolean_forms() {
        let message = parse(&one_user(
            r#"<sf:A xsi:nil="1"/><sf:B xsi:nil=" true "/><sf:C xsi:nil="false">c</sf:C><sf:D nil="true"/>"#,
        ))
        .unwrap();
        let fields = &user(&message.notifications[0]).fields;
        assert_eq!(fields["A"], Value::Null);
        assert_eq!(fields["B"], Value::Null);
        assert_eq!(fields["C"], text("c"));
        // `nil` without the XML Schema instance namespace is an ordinary attribute.
        assert_eq!(fields["D"], text(""));
    }

    #[test]
    fn a_nil_sf_id_is_a_missing_user_id() {
        let xml = envelope(&sobject_notification(
            "04l8a00000Dq4RsAAJ",
            r#"<sf:Id xsi:nil="true"/>"#,
        ));
        assert_eq!(
            parse(&xml).unwrap().notifications[0].object,
            Err(NotificationError::MissingUserId)
        );
    }

    #[test]
    fn a_malformed_sf_id_is_a_bad_user_id() {
        let xml = envelope(&sobject_notification(
            "04l8a00000Dq4RsAAJ",
            "<sf:Id>005-nope</sf:Id>",
        ));
        assert_eq!(
            parse(&xml).unwrap().notifications[0].object,
            Err(NotificationError::BadUserId(IdError::Length(8)))
        );
    }

    #[test]
    fn a_notification_without_sobject_is_a_missing_user_id() {
        let xml = envelope("<Notification><Id>04l8a00000Dq4RsAAJ</Id></Notification>");
        assert_eq!(
            parse(&xml).unwrap().notifications[0].object,
            Err(NotificationError::MissingUserId)
        );
    }

    #[test]
    fn xsi_type_is_read_by_namespace_not_by_the_name_xsi() {
        let unqualified = envelope(&format!(
            r#"<Notification><Id>04l8a00000Dq4RsAAJ</Id><sObject type="sf:User" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Id>0058a00000LmN2pAAF</sf:Id></sObject></Notification>"#
        ));
        assert_eq!(
            parse(&unqualified).unwrap().notifications[0].object,
            Err(NotificationError::NotAUser {
                xsi_type: String::new()
            })
        );
        let other_prefix = envelope(&format!(
            r#"<Notification><Id>04l8a00000Dq4RsAAJ</Id><sObject i:type="e:User" xmlns:i="{XSI_NS}" xmlns:e="{ENTERPRISE_SOBJECT_NS}"><e:Id>0058a00000LmN2pAAF</e:Id></sObject></Notification>"#
        ));
        assert!(
            parse(&other_prefix).unwrap().notifications[0]
                .object
                .is_ok()
        );
    }

    #[test]
    fn an_unprefixed_user_type_outside_the_enterprise_default_namespace_is_refused() {
        let xml = envelope(&format!(
            r#"<Notification><Id>04l8a00000Dq4RsAAJ</Id><sObject xsi:type="User" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Id>0058a00000LmN2pAAF</sf:Id></sObject></Notification>"#
        ));
        assert_eq!(
            parse(&xml).unwrap().notifications[0].object,
            Err(NotificationError::NotAUser {
                xsi_type: "User".into()
            })
        );
    }

    #[test]
    fn the_action_id_is_optional() {
        let message = parse(&envelope(&notifications(1))).unwrap();
        assert_eq!(message.action_id, None);
    }

    #[test]
    fn elements_may_come_in_any_order() {
        let xml = envelope_with_org(
            "",
            &format!(
                r#"<Notification><sObject xsi:type="sf:User" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Email>a@b.c</sf:Email><sf:Id>0058a00000LmN2p</sf:Id></sObject><Id>04l8a00000Dq4Rs</Id></Notification><OrganizationId>00D8a000002bQxT</OrganizationId>"#
            ),
        );
        let message = parse(&xml).unwrap();
        assert_eq!(message.notifications[0].id, "04l8a00000Dq4RsAAJ");
        assert_eq!(
            user(&message.notifications[0]).fields["Email"],
            text("a@b.c")
        );
    }

    #[test]
    fn a_utf8_byte_order_mark_is_accepted() {
        let with_bom = format!("\u{FEFF}{THREE_USERS}");
        assert_eq!(parse(&with_bom).unwrap(), parse(THREE_USERS).unwrap());
    }

    #[test]
    fn exactly_one_hundred_notifications_are_accepted() {
        let message = parse(&envelope(&notifications(100))).unwrap();
        assert_eq!(message.notifications.len(), MAX_NOTIFICATIONS);
    }

    #[test]
    fn a_field_of_exactly_32_kib_is_accepted() {
        let value = "a".repeat(MAX_FIELD_BYTES);
        let message = parse(&one_user(&format!("<sf:AboutMe>{value}</sf:AboutMe>"))).unwrap();
        assert_eq!(
            user(&message.notifications[0]).fields["AboutMe"],
            text(&value)
        );
    }

    // Refused messages.

    #[test]
    fn a_doctype_with_the_billion_laughs_is_refused_before_any_expansion() {
        assert_eq!(parse(BILLION_LAUGHS), Err(OutboundError::Doctype));
    }

    #[test]
    fn a_doctype_with_external_entities_is_refused() {
        assert_eq!(parse(EXTERNAL_ENTITY), Err(OutboundError::Doctype));
    }

    #[test]
    fn even_a_harmless_doctype_is_refused() {
        let xml = THREE_USERS.replacen(
            "<soapenv:Envelope",
            "<!DOCTYPE soapenv:Envelope>\n<soapenv:Envelope",
            1,
        );
        let error = parse(&xml).unwrap_err();
        assert_eq!(error, OutboundError::Doctype);
        assert_eq!(error.code(), "doctype_refused");
    }

    #[test]
    fn an_entity_declaration_outside_a_doctype_is_refused() {
        let xml = one_user(r#"<!ENTITY x "y"><sf:Title>&x;</sf:Title>"#);
        assert!(matches!(
            parse(&xml),
            Err(OutboundError::Doctype | OutboundError::Malformed(_))
        ));
    }

    #[test]
    fn an_undeclared_entity_is_malformed() {
        let detail = malformed_detail(parse(&one_user("<sf:Title>&secret;</sf:Title>")));
        assert!(detail.contains("secret"), "{detail}");
    }

    #[test]
    fn zero_notifications_are_refused() {
        assert_eq!(parse(&envelope("")), Err(OutboundError::NoNotifications));
    }

    #[test]
    fn a_body_without_notifications_is_refused() {
        let xml = format!(
            r#"<soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE_NS}"><soapenv:Body><other/></soapenv:Body></soapenv:Envelope>"#
        );
        assert_eq!(parse(&xml), Err(OutboundError::NoNotifications));
    }

    #[test]
    fn notifications_outside_the_outbound_namespace_are_not_notifications() {
        let xml = envelope(&notifications(1)).replace(&format!(r#" xmlns="{OUTBOUND_NS}""#), "");
        assert_eq!(parse(&xml), Err(OutboundError::NoNotifications));
    }

    #[test]
    fn one_hundred_and_one_notifications_are_refused() {
        assert_eq!(
            parse(&envelope(&notifications(101))),
            Err(OutboundError::TooManyNotifications(101))
        );
    }

    #[test]
    fn a_body_that_is_not_soap_is_refused() {
        assert_eq!(parse(SOAP12), Err(OutboundError::NotSoapEnvelope));
        assert_eq!(
            parse(r#"{"notifications": []}"#),
            Err(OutboundError::NotSoapEnvelope)
        );
        assert_eq!(parse(""), Err(OutboundError::NotSoapEnvelope));
        let bare = format!(r#"<notifications xmlns="{OUTBOUND_NS}"/>"#);
        assert_eq!(parse(&bare), Err(OutboundError::NotSoapEnvelope));
        let no_body = format!(r#"<soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE_NS}"/>"#);
        assert_eq!(parse(&no_body), Err(OutboundError::NotSoapEnvelope));
        // The right local names with an undeclared prefix are in no namespace.
        let undeclared = THREE_USERS.replace(&format!(r#"xmlns:soapenv="{SOAP_ENVELOPE_NS}""#), "");
        assert_eq!(parse(&undeclared), Err(OutboundError::NotSoapEnvelope));
    }

    #[test]
    fn malformed_xml_is_refused() {
        let half = &THREE_USERS[..THREE_USERS.len() / 2];
        let broken = [
            half.to_string(),
            THREE_USERS.replace("</sf:City>", "</sf:Town>"),
            THREE_USERS.replace("Research &amp; Development", "Research & Development"),
            THREE_USERS.replace(r#"xsi:type="sf:User""#, r#"xsi:type=sf:User"#),
            THREE_USERS.replacen("<sObject ", r#"<sObject xsi:type="sf:Contact" "#, 1),
            format!("{THREE_USERS}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENVELOPE_NS}\"/>"),
            format!("{THREE_USERS}trailing text"),
            THREE_USERS.replace("Lisbon", "Lis\u{0}bon"),
            THREE_USERS.replace("Lisbon", "Lis&#0;bon"),
            THREE_USERS.replace("Lisbon", "Lis&#xD800;bon"),
            THREE_USERS.replace("Lisbon", "Lis&#x110000;bon"),
        ];
        for xml in broken {
            let error = parse(&xml).unwrap_err();
            assert_eq!(error.code(), "malformed_xml", "{error:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused() {
        let latin1 = THREE_USERS
            .replace("Lisbon", "Lisb\u{F4}a")
            .replace('\u{F4}', "");
        let mut latin1 = latin1.into_bytes();
        let at = latin1.windows(4).position(|w| w == b"Lisb").unwrap() + 4;
        latin1.insert(at, 0xF4);
        assert_eq!(parse_outbound_message(&latin1), Err(OutboundError::NotUtf8));

        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(THREE_USERS.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(parse_outbound_message(&utf16), Err(OutboundError::NotUtf8));

        let declared = THREE_USERS.replace(r#"encoding="UTF-8""#, r#"encoding="ISO-8859-1""#);
        assert_eq!(parse(&declared), Err(OutboundError::NotUtf8));
        let lower_case = THREE_USERS.replace(r#"encoding="UTF-8""#, r#"encoding="utf-8""#);
        assert!(parse(&lower_case).is_ok());
    }

    #[test]
    fn a_duplicate_notification_id_refuses_the_message() {
        let twice = format!(
            "{}{}",
            user_notification("04l8a00000Dq4RsAAJ", ""),
            user_notification("04l8a00000Dq4RsAAJ", "")
        );
        assert_eq!(
            parse(&envelope(&twice)),
            Err(OutboundError::DuplicateNotificationId(
                "04l8a00000Dq4RsAAJ".into()
            ))
        );
    }

    #[test]
    fn the_15_and_18_character_forms_of_one_notification_id_are_duplicates() {
        let twice = format!(
            "{}{}",
            user_notification("04l8a00000Dq4Rs", ""),
            user_notification("04l8a00000Dq4RsAAJ", "")
        );
        assert_eq!(
            parse(&envelope(&twice)),
            Err(OutboundError::DuplicateNotificationId(
                "04l8a00000Dq4RsAAJ".into()
            ))
        );
    }

    #[test]
    fn a_missing_or_malformed_notification_id_refuses_the_message() {
        let missing = envelope(&format!(
            r#"<Notification><sObject xsi:type="sf:User" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Id>0058a00000LmN2p</sf:Id></sObject></Notification>"#
        ));
        assert!(matches!(
            parse(&missing),
            Err(OutboundError::BadNotificationId(_))
        ));
        let malformed = envelope(&user_notification("04l-nope", ""));
        assert!(matches!(
            parse(&malformed),
            Err(OutboundError::BadNotificationId(_))
        ));
        let nil = envelope(&format!(
            r#"<Notification><Id xsi:nil="true"/><sObject xsi:type="sf:User" xmlns:sf="{ENTERPRISE_SOBJECT_NS}"><sf:Id>0058a00000LmN2p</sf:Id></sObject></Notification>"#
        ));
        assert_eq!(
            parse(&nil),
            Err(OutboundError::BadNotificationId(
                "a Notification has no Id".into()
            ))
        );
        let two_ids = envelope(&user_notification(
            "04l8a00000Dq4Rs</Id><Id>04l8a00000Dq4Rt",
            "",
        ));
        assert!(malformed_detail(parse(&two_ids)).contains("more than one Id"));
    }

    #[test]
    fn a_missing_organization_id_refuses_the_message() {
        assert_eq!(
            parse(&envelope_with_org("", &notifications(1))),
            Err(OutboundError::MissingOrganizationId)
        );
        assert_eq!(
            parse(&envelope_with_org(
                r#"<OrganizationId xsi:nil="true"/>"#,
                &notifications(1)
            )),
            Err(OutboundError::MissingOrganizationId)
        );
    }

    #[test]
    fn an_organization_id_that_is_not_an_org_id_refuses_the_message() {
        for organization in [
            "00D8a000002",
            "0058a00000LmN2pAAF",
            "00D8a000002bQxTZZZ",
            "",
        ] {
            let xml = envelope_with_org(
                &format!("<OrganizationId>{organization}</OrganizationId>"),
                &notifications(1),
            );
            let error = parse(&xml).unwrap_err();
            assert!(
                matches!(error, OutboundError::BadOrganizationId(_)),
                "{organization}: {error:?}"
            );
            assert_eq!(error.code(), "bad_organization_id");
        }
    }

    #[test]
    fn two_organization_ids_are_ambiguous_and_refused() {
        let xml = envelope_with_org(
            "<OrganizationId>00D8a000002bQxT</OrganizationId><OrganizationId>00D000000000001</OrganizationId>",
            &notifications(1),
        );
        assert_eq!(parse(&xml).unwrap_err().code(), "malformed_xml");
    }

    #[test]
    fn a_malformed_action_id_refuses_the_message() {
        let xml = envelope_with_org(
            "<OrganizationId>00D8a000002bQxT</OrganizationId><ActionId>04k</ActionId>",
            &notifications(1),
        );
        assert!(matches!(parse(&xml), Err(OutboundError::BadActionId(_))));
    }

    #[test]
    fn a_field_over_32_kib_refuses_the_message() {
        let value = "a".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            parse(&one_user(&format!("<sf:AboutMe>{value}</sf:AboutMe>"))),
            Err(OutboundError::FieldTooLarge {
                field: "AboutMe".into()
            })
        );
        // Counted after unescaping: 6,554 × "&amp;" is only 6,554 bytes.
        let escaped = "&amp;".repeat(6_554);
        assert!(parse(&one_user(&format!("<sf:AboutMe>{escaped}</sf:AboutMe>"))).is_ok());
        let many_refs = "&#x1F600;".repeat(MAX_FIELD_BYTES / 4 + 1);
        assert_eq!(
            parse(&one_user(&format!(
                "<sf:Manager><sf:AboutMe>{many_refs}</sf:AboutMe></sf:Manager>"
            ))),
            Err(OutboundError::FieldTooLarge {
                field: "Manager.AboutMe".into()
            })
        );
    }

    #[test]
    fn a_field_given_twice_refuses_the_message() {
        assert_eq!(
            parse(&one_user(
                "<sf:Email>a@b.c</sf:Email><sf:Email>evil@b.c</sf:Email>"
            )),
            Err(OutboundError::DuplicateField {
                field: "Email".into()
            })
        );
        assert_eq!(
            parse(&one_user("<sf:Id>0058a00000LmN3qAAF</sf:Id>")),
            Err(OutboundError::DuplicateField { field: "Id".into() })
        );
        assert_eq!(
            parse(&one_user("<sf:A><sf:B>1</sf:B></sf:A><sf:A.B>2</sf:A.B>")),
            Err(OutboundError::DuplicateField {
                field: "A.B".into()
            })
        );
    }

    #[test]
    fn a_nil_field_with_content_is_malformed() {
        let detail = malformed_detail(parse(&one_user(
            r#"<sf:Title xsi:nil="true">Boss</sf:Title>"#,
        )));
        assert!(detail.contains("Title"), "{detail}");
        let bad_boolean = parse(&one_user(r#"<sf:Title xsi:nil="yes"/>"#));
        assert_eq!(bad_boolean.unwrap_err().code(), "malformed_xml");
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let depth = 100_000;
        let deep = format!("{}x{}", "<sf:A>".repeat(depth), "</sf:A>".repeat(depth));
        let detail = malformed_detail(parse(&one_user(&deep)));
        assert!(detail.contains("deeper"), "{detail}");
    }

    #[test]
    fn an_element_with_too_many_attributes_is_refused() {
        let attributes: String = (0..1_000).map(|i| format!(" a{i}=\"v\"")).collect();
        let detail = malformed_detail(parse(&one_user(&format!("<sf:Title{attributes}/>"))));
        assert!(detail.contains("attributes"), "{detail}");
    }

    #[test]
    fn too_many_namespace_declarations_in_scope_are_refused() {
        let mut xml = String::new();
        for i in 0..20 {
            let declarations: String = (0..5)
                .map(|j| format!(" xmlns:p{i}x{j}=\"urn:x:{i}:{j}\""))
                .collect();
            xml.push_str(&format!("<sf:A{i}{declarations}>"));
        }
        for i in (0..20).rev() {
            xml.push_str(&format!("</sf:A{i}>"));
        }
        let detail = malformed_detail(parse(&one_user(&xml)));
        assert!(detail.contains("namespace"), "{detail}");
    }

    #[test]
    fn an_attribute_given_twice_on_one_element_is_refused_wherever_it_comes() {
        // The second of two, and the twelfth of twelve (past the keys kept inline).
        let mut many: String = (0..11).map(|i| format!(" a{i}=\"{i}\"")).collect();
        many.push_str(" a9=\"again\"");
        for attributes in [" a=\"1\" a=\"2\"", many.as_str()] {
            let detail = malformed_detail(parse(&one_user(&format!(
                "<sf:Title{attributes}>x</sf:Title>"
            ))));
            assert!(detail.contains("twice"), "{detail}");
        }
        // The same local name under two prefixes is two attributes.
        let message = parse(&one_user(r#"<sf:Title a:x="1" b:x="2">x</sf:Title>"#)).unwrap();
        assert_eq!(user(&message.notifications[0]).fields["Title"], text("x"));
    }

    #[test]
    fn a_very_long_field_name_is_refused() {
        let name = "N".repeat(MAX_FIELD_NAME_BYTES + 1);
        let detail = malformed_detail(parse(&one_user(&format!("<sf:{name}>x</sf:{name}>"))));
        assert!(detail.contains("field name"), "{detail}");
    }

    #[test]
    fn error_details_are_short() {
        let name = "N".repeat(10_000);
        let detail = malformed_detail(parse(&one_user(&format!("<sf:T>&{name};</sf:T>"))));
        assert!(
            detail.chars().count() <= MAX_ERROR_DETAIL_CHARS + 1,
            "{}",
            detail.len()
        );
    }

    #[test]
    fn every_refusal_is_bad_input_with_its_own_code() {
        let errors = [
            OutboundError::Doctype,
            OutboundError::Malformed(String::new()),
            OutboundError::NotSoapEnvelope,
            OutboundError::NoNotifications,
            OutboundError::TooManyNotifications(101),
            OutboundError::MissingOrganizationId,
            OutboundError::BadOrganizationId(String::new()),
            OutboundError::BadActionId(String::new()),
            OutboundError::BadNotificationId(String::new()),
            OutboundError::DuplicateNotificationId(String::new()),
            OutboundError::DuplicateField {
                field: String::new(),
            },
            OutboundError::FieldTooLarge {
                field: String::new(),
            },
            OutboundError::NotUtf8,
        ];
        let codes: HashSet<_> = errors.iter().map(OutboundError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(errors.iter().all(|e| e.class() == ErrorClass::BadInput));
        let notification_errors = [
            NotificationError::NotAUser {
                xsi_type: String::new(),
            },
            NotificationError::MissingUserId,
            NotificationError::BadUserId(IdError::Character),
            NotificationError::NotAUserId(String::new()),
        ];
        let codes: HashSet<_> = notification_errors
            .iter()
            .map(NotificationError::code)
            .collect();
        assert_eq!(codes.len(), notification_errors.len());
        assert!(
            notification_errors
                .iter()
                .all(|e| e.class() == ErrorClass::BadInput)
        );
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    use super::*;

    const FIXTURES: [&str; 5] = [
        include_str!("../../../../tests/fixtures/salesforce/outbound-3-users.xml"),
        include_str!("../../../../tests/fixtures/salesforce/outbound-mixed-sobjects.xml"),
        include_str!("../../../../tests/fixtures/salesforce/outbound-weird-prefixes.xml"),
        include_str!("../../../../tests/fixtures/salesforce/outbound-default-namespace.xml"),
        include_str!("../../../../tests/fixtures/salesforce/outbound-doctype-billion-laughs.xml"),
    ];

    /// Byte strings likely to break XML in interesting ways.
    fn xmlish_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(any::<u8>(), 0..8),
            select(vec![
                "<",
                ">",
                "/>",
                "</",
                "&",
                ";",
                "&amp;",
                "&lt;",
                "&#0;",
                "&#65;",
                "&#x10FFFF;",
                "&#xD800;",
                "&#99999999999;",
                "&unknown;",
                "<!DOCTYPE x>",
                "<!ENTITY e \"v\">",
                "<![CDATA[",
                "]]>",
                "<!--",
                "-->",
                "<?pi x?>",
                "\"",
                "'",
                "=",
                ":",
                " xmlns=\"\"",
                " xmlns:sf=\"\"",
                " xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"",
                " xsi:nil=\"true\"",
                " xsi:nil=\"maybe\"",
                " xsi:type=\"sf:User\"",
                " xsi:type=\"\"",
                " xsi:type=\":\"",
                "<?xml version=\"1.0\" encoding=\"latin1\"?>",
                "<Notification>",
                "</Notification>",
                "<Id>04l8a00000Dq4Rs</Id>",
                "<sf:Id>",
                "</sf:Id>",
                "<sObject>",
                "<OrganizationId/>",
                "\u{FEFF}",
                "\u{0}",
                "\u{1F600}",
                "\u{FFFF}",
                "\r\n",
            ])
            .prop_map(|token: &str| token.as_bytes().to_vec()),
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace {
            at: Index,
            length: usize,
            with: Vec<u8>,
        },
        Duplicate {
            at: Index,
            length: usize,
            to: Index,
        },
        Truncate {
            at: Index,
        },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<Index>(), 0usize..16, xmlish_bytes())
                .prop_map(|(at, length, with)| Mutation::Replace { at, length, with }),
            2 => (any::<Index>(), 0usize..400, any::<Index>())
                .prop_map(|(at, length, to)| Mutation::Duplicate { at, length, to }),
            1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        ]
    }

    fn mutate(base: &str, mutations: &[Mutation]) -> Vec<u8> {
        let mut bytes = base.as_bytes().to_vec();
        for mutation in mutations {
            let size = bytes.len() + 1;
            match mutation {
                Mutation::Replace { at, length, with } => {
                    let start = at.index(size);
                    let end = (start + length).min(bytes.len());
                    bytes.splice(start..end, with.iter().copied());
                }
                Mutation::Duplicate { at, length, to } => {
                    let start = at.index(size);
                    let end = (start + length).min(bytes.len());
                    let chunk = bytes[start..end].to_vec();
                    let to = to.index(size);
                    bytes.splice(to..to, chunk);
                }
                Mutation::Truncate { at } => bytes.truncate(at.index(size)),
            }
        }
        bytes
    }

    /// What every accepted message guarantees, whatever the input.
    fn check_guarantees(
        result: &Result<OutboundMessage, OutboundError>,
    ) -> Result<(), TestCaseError> {
        let Ok(message) = result else { return Ok(()) };
        prop_assert!((1..=MAX_NOTIFICATIONS).contains(&message.notifications.len()));
        prop_assert_eq!(message.organization_id.key_prefix(), "00D");
        let ids: HashSet<_> = message
            .notifications
            .iter()
            .map(|n| n.id.as_str())
            .collect();
        prop_assert_eq!(ids.len(), message.notifications.len());
        for notification in &message.notifications {
            prop_assert!(
                SalesforceId::parse(&notification.id)
                    .is_ok_and(|id| id.as_str() == notification.id)
            );
            if let Ok(user) = &notification.object {
                prop_assert_eq!(user.id.key_prefix(), "005");
                prop_assert!(!user.fields.contains_key("Id"));
                for value in user.fields.values() {
                    prop_assert!(
                        value
                            .as_str()
                            .is_none_or(|text| text.len() <= MAX_FIELD_BYTES)
                    );
                }
            }
        }
        Ok(())
    }

    /// The characters of `text` one at a time: what [`scan_characters`] finds word by word.
    fn scan_characters_one_by_one(text: &str) -> (Option<char>, bool) {
        let mut carriage_return = false;
        for c in text.chars() {
            if !is_xml_char(c) {
                return (Some(c), carriage_return);
            }
            carriage_return |= c == '\r';
        }
        (None, carriage_return)
    }

    /// Text that puts printable ASCII, controls, CRs, other characters and U+FFFE / U+FFFF (and
    /// their neighbours U+FFFD, U+EFBF) at any offset, across word and block boundaries.
    fn scanned_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            6 => "[ -~]{0,40}",
            1 => select(vec![
                "\t", "\n", "\r", "\r\n", "\u{0}", "\u{1}", "\u{1F}", "\u{7F}", "\u{80}",
                "é", "ø", "\u{FEFF}", "\u{FFFD}", "\u{FFFE}", "\u{FFFF}", "\u{EFBF}",
                "\u{1F600}",
            ])
            .prop_map(str::to_owned),
        ];
        vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_character_scan_finds_what_a_character_by_character_scan_finds(text in scanned_text()) {
            let scan = scan_characters(&text);
            prop_assert_eq!((scan.first_illegal, scan.carriage_return), scan_characters_one_by_one(&text));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
            check_guarantees(&parse_outbound_message(&bytes))?;
        }

        #[test]
        fn random_xml_token_soup_never_panics(tokens in vec(xmlish_bytes(), 0..64)) {
            check_guarantees(&parse_outbound_message(&tokens.concat()))?;
        }

        #[test]
        fn mutated_fixtures_never_panic(base in select(FIXTURES.to_vec()), mutations in vec(mutation(), 1..6)) {
            check_guarantees(&parse_outbound_message(&mutate(base, &mutations)))?;
        }
    }

    // The round trip: render generated messages as Salesforce could, with any prefixes, and read
    // the same users back.

    #[derive(Debug, Clone)]
    enum Style {
        Entities,
        CharacterReferences,
        CData,
    }

    #[derive(Debug, Clone)]
    struct GeneratedField {
        value: Option<String>,
        style: Style,
        self_closing: bool,
    }

    #[derive(Debug, Clone)]
    struct GeneratedUser {
        user_id: String,
        id_last: bool,
        fields: BTreeMap<String, GeneratedField>,
    }

    #[derive(Debug, Clone)]
    struct Layout {
        /// `None`: the namespace is the default namespace where it is used.
        soap_prefix: Option<String>,
        outbound_prefix: Option<String>,
        enterprise_prefix: Option<String>,
        xsi_prefix: String,
        xsi_on_envelope: bool,
        short_ids: bool,
        newline: &'static str,
    }

    #[derive(Debug, Clone)]
    struct GeneratedMessage {
        organization_id: String,
        action_id: Option<String>,
        session_id: Option<String>,
        users: Vec<GeneratedUser>,
        layout: Layout,
    }

    fn value_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => any::<char>().prop_filter("a character XML allows", |c| is_xml_char(*c)),
            3 => select(vec!['&', '<', '>', '"', '\'', '\n', '\r', '\t', ' ', ']', 'é', '😀', '\u{FFFD}', '\u{85}']),
            3 => proptest::char::range('a', 'z'),
        ]
    }

    fn field() -> impl Strategy<Value = GeneratedField> {
        let value =
            proptest::option::weighted(0.85, vec(value_char(), 0..40).prop_map(String::from_iter));
        let style = prop_oneof![
            Just(Style::Entities),
            Just(Style::CharacterReferences),
            Just(Style::CData)
        ];
        (value, style, any::<bool>()).prop_map(|(value, style, self_closing)| GeneratedField {
            value,
            style,
            self_closing,
        })
    }

    fn prefix(last: char) -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_.-]{0,6}"
            .prop_filter("xml prefixes are reserved", |p| {
                !p.to_ascii_lowercase().starts_with("xml")
            })
            // The last character keeps the prefixes of different namespaces distinct.
            .prop_map(move |p| format!("{p}{last}"))
    }

    fn layout() -> impl Strategy<Value = Layout> {
        (
            proptest::option::of(prefix('s')),
            proptest::option::of(prefix('o')),
            proptest::option::of(prefix('e')),
            prefix('i'),
            any::<bool>(),
            any::<bool>(),
            select(vec!["", "\n", "\n   ", "\r\n\t"]),
        )
            .prop_map(
                |(
                    soap_prefix,
                    outbound_prefix,
                    enterprise_prefix,
                    xsi_prefix,
                    xsi_on_envelope,
                    short_ids,
                    newline,
                )| Layout {
                    soap_prefix,
                    outbound_prefix,
                    enterprise_prefix,
                    xsi_prefix,
                    xsi_on_envelope,
                    short_ids,
                    newline,
                },
            )
    }

    fn user() -> impl Strategy<Value = GeneratedUser> {
        let name =
            "[A-Za-z_][A-Za-z0-9_.-]{0,15}".prop_filter("Id is the record id", |n| n != "Id");
        (
            "005[a-zA-Z0-9]{12}",
            any::<bool>(),
            btree_map(name, field(), 0..6),
        )
            .prop_map(|(user_id, id_last, fields)| GeneratedUser {
                user_id,
                id_last,
                fields,
            })
    }

    fn message() -> impl Strategy<Value = GeneratedMessage> {
        (
            "00D[a-zA-Z0-9]{12}",
            proptest::option::of("04k[a-zA-Z0-9]{12}"),
            proptest::option::of("00D[a-zA-Z0-9]{12}![a-zA-Z0-9._]{20,40}"),
            vec(user(), 1..5),
            layout(),
        )
            .prop_map(|(organization_id, action_id, session_id, users, layout)| {
                GeneratedMessage {
                    organization_id,
                    action_id,
                    session_id,
                    users,
                    layout,
                }
            })
    }

    /// The id as written: the 15-character form or the 18-character one.
    fn written_id(raw: &str, short: bool) -> String {
        if short {
            raw.to_string()
        } else {
            SalesforceId::parse(raw).unwrap().to_string()
        }
    }

    /// A notification id unique within the message (the index is part of its 15 characters).
    fn notification_id(index: usize) -> String {
        format!("04l8a00000Q{index:04}")
    }

    fn with_entities(value: &str) -> String {
        let mut out = String::new();
        for c in value.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                '\r' => out.push_str("&#13;"),
                c => out.push(c),
            }
        }
        out
    }

    fn with_character_references(value: &str) -> String {
        value
            .chars()
            .enumerate()
            .map(|(i, c)| match c {
                c if c.is_ascii_alphanumeric() => c.to_string(),
                c if i % 2 == 0 => format!("&#x{:x};", u32::from(c)),
                c => format!("&#{};", u32::from(c)),
            })
            .collect()
    }

    fn render_value(field: &GeneratedField, value: &str) -> String {
        match field.style {
            Style::CData if !value.contains("]]>") && !value.contains('\r') => {
                format!("<![CDATA[{value}]]>")
            }
            Style::CharacterReferences => with_character_references(value),
            Style::Entities | Style::CData => with_entities(value),
        }
    }

    fn qualified(prefix: &Option<String>) -> String {
        prefix.as_ref().map(|p| format!("{p}:")).unwrap_or_default()
    }

    fn declaration(prefix: &Option<String>, uri: &str) -> String {
        match prefix {
            Some(p) => format!(r#" xmlns:{p}="{uri}""#),
            None => format!(r#" xmlns="{uri}""#),
        }
    }

    fn render(message: &GeneratedMessage) -> String {
        let layout = &message.layout;
        let nl = layout.newline;
        let s = qualified(&layout.soap_prefix);
        let o = qualified(&layout.outbound_prefix);
        let e = qualified(&layout.enterprise_prefix);
        let x = &layout.xsi_prefix;
        let xsi_declaration = format!(r#" xmlns:{x}="{XSI_NS}""#);
        let (envelope_xsi, sobject_xsi) = if layout.xsi_on_envelope {
            (xsi_declaration.as_str(), "")
        } else {
            ("", xsi_declaration.as_str())
        };
        let short = layout.short_ids;

        let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        xml += &format!(
            "{nl}<{s}Envelope{}{envelope_xsi}>{nl}<{s}Body>",
            declaration(&layout.soap_prefix, SOAP_ENVELOPE_NS)
        );
        xml += &format!(
            "{nl}<{o}notifications{}>",
            declaration(&layout.outbound_prefix, OUTBOUND_NS)
        );
        xml += &format!(
            "{nl}<{o}OrganizationId>{}</{o}OrganizationId>",
            written_id(&message.organization_id, short)
        );
        if let Some(action_id) = &message.action_id {
            xml += &format!(
                "{nl}<{o}ActionId>{}</{o}ActionId>",
                written_id(action_id, short)
            );
        }
        match &message.session_id {
            Some(session) => xml += &format!("{nl}<{o}SessionId>{session}</{o}SessionId>"),
            None => xml += &format!(r#"{nl}<{o}SessionId {x}:nil="true"/>"#),
        }
        for (index, user) in message.users.iter().enumerate() {
            // With the enterprise namespace as default, sObject itself needs an outbound prefix.
            let (sobject, sobject_declarations, user_type) =
                match (&layout.enterprise_prefix, &layout.outbound_prefix) {
                    (Some(p), _) => (
                        format!("{o}sObject"),
                        format!(r#" xmlns:{p}="{ENTERPRISE_SOBJECT_NS}""#),
                        format!("{p}:User"),
                    ),
                    (None, Some(p)) => (
                        format!("{p}:sObject"),
                        format!(r#" xmlns="{ENTERPRISE_SOBJECT_NS}""#),
                        "User".to_string(),
                    ),
                    (None, None) => (
                        "q:sObject".to_string(),
                        format!(r#" xmlns:q="{OUTBOUND_NS}" xmlns="{ENTERPRISE_SOBJECT_NS}""#),
                        "User".to_string(),
                    ),
                };
            let id_element = format!("{nl}<{e}Id>{}</{e}Id>", written_id(&user.user_id, short));
            xml += &format!(
                "{nl}<{o}Notification>{nl}<{o}Id>{}</{o}Id>",
                written_id(&notification_id(index), short)
            );
            xml += &format!(
                r#"{nl}<{sobject}{sobject_xsi}{sobject_declarations} {x}:type="{user_type}">"#
            );
            if !user.id_last {
                xml += &id_element;
            }
            for (name, field) in &user.fields {
                xml += nl;
                match &field.value {
                    None => xml += &format!(r#"<{e}{name} {x}:nil="true"/>"#),
                    Some(value) if value.is_empty() && field.self_closing => {
                        xml += &format!("<{e}{name}/>")
                    }
                    Some(value) => {
                        xml += &format!("<{e}{name}>{}</{e}{name}>", render_value(field, value))
                    }
                }
            }
            if user.id_last {
                xml += &id_element;
            }
            xml += &format!("{nl}</{sobject}>{nl}</{o}Notification>");
        }
        xml += &format!("{nl}</{o}notifications>{nl}</{s}Body>{nl}</{s}Envelope>{nl}");
        xml
    }

    fn expected(message: &GeneratedMessage) -> OutboundMessage {
        OutboundMessage {
            organization_id: SalesforceId::parse(&message.organization_id).unwrap(),
            action_id: message
                .action_id
                .as_deref()
                .map(|id| SalesforceId::parse(id).unwrap()),
            notifications: message
                .users
                .iter()
                .enumerate()
                .map(|(index, user)| Notification {
                    id: SalesforceId::parse(&notification_id(index))
                        .unwrap()
                        .to_string(),
                    object: Ok(SourceUser {
                        id: SalesforceId::parse(&user.user_id).unwrap(),
                        fields: user
                            .fields
                            .iter()
                            .map(|(name, field)| {
                                (
                                    name.clone(),
                                    field.value.clone().map_or(Value::Null, Value::String),
                                )
                            })
                            .collect(),
                        completeness: crate::source::Completeness::Full,
                    }),
                })
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn rendered_messages_read_back_as_the_same_users(message in message()) {
            let xml = render(&message);
            let parsed = parse_outbound_message(xml.as_bytes());
            prop_assert_eq!(parsed.as_ref(), Ok(&expected(&message)), "{}", xml);
            if let (Some(session), Ok(parsed)) = (&message.session_id, &parsed) {
                let debug = format!("{parsed:?}");
                prop_assert!(!debug.contains(session.as_str()));
            }
        }
    }
}
