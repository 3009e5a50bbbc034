//! Reading user snapshots from files an admin writes or exports, for preview and tooling.

use serde_json::Value;

use crate::ids::SalesforceId;
use crate::salesforce::outbound::parse_outbound_message;
use crate::source::SourceUser;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceFileError {
    #[error("the user file is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the user file must be a JSON object of Salesforce fields, e.g. {{\"Id\": \"005...\", \"Username\": \"...\"}}"
    )]
    NotAnObject,
    #[error("the user has no valid Id: {0}")]
    BadId(String),
    #[error("the event file is not an Outbound Message: {0}")]
    NotAnEvent(String),
}

impl crate::error::Classify for SourceFileError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::BadInput
    }
}

/// A user snapshot from a JSON object of field API names to values.
pub fn user_from_json(value: &Value) -> Result<SourceUser, SourceFileError> {
    let Value::Object(map) = value else {
        return Err(SourceFileError::NotAnObject);
    };
    let id = map
        .get("Id")
        .and_then(Value::as_str)
        .ok_or_else(|| SourceFileError::BadId("missing".into()))?;
    let id = SalesforceId::parse(id).map_err(|e| SourceFileError::BadId(e.to_string()))?;
    let mut user = SourceUser::new(id);
    user.fields = map
        .iter()
        .filter(|(k, _)| k.as_str() != "Id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(user)
}

/// A user snapshot from JSON text.
pub fn user_from_json_text(text: &str) -> Result<SourceUser, SourceFileError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| SourceFileError::NotJson(e.to_string()))?;
    user_from_json(&value)
}

/// The users of an Outbound Message (notifications that are not users are left out).
pub fn users_from_event(body: &[u8]) -> Result<Vec<SourceUser>, SourceFileError> {
    let message =
        parse_outbound_message(body).map_err(|e| SourceFileError::NotAnEvent(e.to_string()))?;
    Ok(message
        .notifications
        .into_iter()
        .filter_map(|n| n.object.ok())
        .collect())
}
