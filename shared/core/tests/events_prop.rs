//! Property tests of the JSON event parser: no input makes it panic, every refusal has a reason,
//! and any message it accepts reads back the users that were rendered into it, whatever the shape.
//!
//! 256 cases per property by default; run longer with `PROPTEST_CASES=100000 cargo test -p
//! userprov-core --test events_prop`. (The SOAP parser's equivalents live in
//! `src/salesforce/outbound.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use userprov_core::ids::SalesforceId;
use userprov_core::salesforce::events::{
    EventFormat, EventMessage, EventsError, MAX_USERS, parse_events,
};
use userprov_core::source::Fields;

const FIXTURES: &[&str] = &[
    include_str!("../../../tests/fixtures/salesforce/platform-event-streaming.json"),
    include_str!("../../../tests/fixtures/salesforce/eventbridge-user-provisioning-event.json"),
    include_str!("../../../tests/fixtures/salesforce/flow-callout.json"),
    include_str!("../../../tests/fixtures/salesforce/batch-mixed.json"),
    include_str!("../../../tests/fixtures/salesforce/cdc-user-update-cometd.json"),
    include_str!("../../../tests/fixtures/salesforce/cdc-user-create-pubsub.json"),
    include_str!("../../../tests/fixtures/salesforce/cdc-user-deactivate-cometd.json"),
    include_str!("../../../tests/fixtures/salesforce/cdc-user-deactivate-pubsub.json"),
    include_str!("../../../tests/fixtures/salesforce/cdc-user-gap-two-users.json"),
];

/// What holds for every answer, accepted or not.
fn check(result: &Result<EventMessage, EventsError>) -> Result<(), TestCaseError> {
    match result {
        Ok(message) => {
            prop_assert!(message.events.len() <= MAX_USERS);
            let ids: HashSet<&str> = message.events.iter().map(|e| e.event_id.as_str()).collect();
            prop_assert_eq!(ids.len(), message.events.len(), "event ids are unique");
            for event in &message.events {
                prop_assert_eq!(event.user.id.key_prefix(), "005");
            }
        }
        Err(error) => {
            prop_assert!(!error.code().is_empty());
            prop_assert!(error.to_string().len() < 400, "{}", error);
        }
    }
    Ok(())
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        select(vec![
            "User",
            "UPDATE",
            "GAP_UPDATE",
            "0058a00000LmN2pAAF",
            "00D8a000002bQxTEAU",
            "aws.partner/salesforce.com/00D8a000002bQxTEAU/x",
            "deactivate",
        ])
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    let keys = select(vec![
        "data",
        "payload",
        "event",
        "detail",
        "events",
        "id",
        "user",
        "Id",
        "ChangeEventHeader",
        "entityName",
        "recordIds",
        "changeType",
        "changedFields",
        "transactionKey",
        "sequenceNumber",
        "source",
        "EventUuid",
        "User_Id__c",
        "Operation__c",
        "Name",
    ]);
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        check(&parse_events(&bytes, &EventFormat::default()))?;
    }

    #[test]
    fn random_json_of_the_right_vocabulary_never_panics(value in any_json()) {
        check(&parse_events(value.to_string().as_bytes(), &EventFormat::default()))?;
    }

    #[test]
    fn mutated_fixtures_never_panic(
        base in select(FIXTURES.to_vec()),
        cuts in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte) in cuts {
            let i = at.index(bytes.len());
            match byte % 3 {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        check(&parse_events(&bytes, &EventFormat::default()))?;
    }
}

// The round trip: users rendered into every shape read back as the same users.

#[derive(Debug, Clone)]
struct User {
    id: SalesforceId,
    fields: Fields,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Flow,
    Streaming,
    EventRelay,
    ChangeCreate,
}

const FIELD_NAMES: &[&str] = &[
    "Username",
    "Email",
    "FirstName",
    "LastName",
    "Title",
    "Department",
    "IsActive",
    "EmployeeNumber",
    "Custom_Field__c",
    "ManagerId",
];

fn user() -> impl Strategy<Value = User> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,40}".prop_map(Value::String),
    ];
    (
        "[a-zA-Z0-9]{12}",
        btree_map(select(FIELD_NAMES.to_vec()), value, 0..8),
    )
        .prop_map(|(tail, fields)| User {
            id: SalesforceId::parse(&format!("005{tail}")).unwrap(),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    select(vec![
        Shape::Flow,
        Shape::Streaming,
        Shape::EventRelay,
        Shape::ChangeCreate,
    ])
}

fn fields_object(user: &User) -> Map<String, Value> {
    user.fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn render(shape: Shape, index: usize, user: &User) -> Value {
    let event_id = format!("event-{index}");
    match shape {
        Shape::Flow => {
            let mut fields = fields_object(user);
            fields.insert("Id".into(), json!(user.id.as_str()));
            json!({"events": [{"id": event_id, "user": fields}]})
        }
        Shape::Streaming => {
            let mut payload = fields_object(user);
            payload.insert("User_Id__c".into(), json!(user.id.short()));
            payload.insert("CreatedDate".into(), json!("2025-03-14T16:01:02.000Z"));
            json!({"data": {"payload": payload, "event": {"replayId": index, "EventUuid": event_id}},
                   "channel": "/event/User_Provisioning__e"})
        }
        Shape::EventRelay => {
            let mut payload = fields_object(user);
            payload.insert("UserId__c".into(), json!(user.id.as_str()));
            json!({"version": "0", "id": "eb-id", "source": "aws.partner/salesforce.com/00D8a000002bQxTEAU/0YL",
                   "time": "2025-03-14T16:02:13Z",
                   "detail": {"payload": payload, "id": event_id}})
        }
        Shape::ChangeCreate => {
            let mut payload = fields_object(user);
            payload.insert(
                "ChangeEventHeader".into(),
                json!({"entityName": "User", "recordIds": [user.id.as_str()], "changeType": "CREATE",
                       "changedFields": [], "nulledFields": [], "transactionKey": event_id,
                       "sequenceNumber": 1, "commitTimestamp": 1_741_968_600_000_i64}),
            );
            Value::Object(payload)
        }
    }
}

proptest! {
    #[test]
    fn any_rendered_message_reads_back_the_same_users(
        entries in vec((shape(), user()), 1..12),
        as_batch in any::<bool>(),
    ) {
        let rendered: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (shape, user))| render(*shape, i, user))
            .collect();
        let body = if as_batch || rendered.len() > 1 {
            Value::Array(rendered)
        } else {
            rendered.into_iter().next().unwrap()
        };
        let message = parse_events(body.to_string().as_bytes(), &EventFormat::default())
            .map_err(|e| TestCaseError::fail(format!("refused: {e} ({})", e.code())))?;
        prop_assert_eq!(message.events.len(), entries.len());
        for (event, (_, user)) in message.events.iter().zip(&entries) {
            prop_assert_eq!(&event.user.id, &user.id);
            prop_assert_eq!(&event.user.fields, &user.fields);
        }
    }
}
