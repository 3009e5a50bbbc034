//! Salesforce Outbound Messages: the SOAP 1.1 request Salesforce sends, and the answers it expects.
//!
//! [`outbound`] turns a request body into an [`outbound::OutboundMessage`]; [`soap`] holds the
//! acknowledgement and the fault envelopes the webhook sends back.

pub mod events;
pub mod outbound;
pub mod soap;

/// SOAP 1.1 envelope namespace (`Envelope`, `Body`, `Fault`).
pub const SOAP_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Outbound Message namespace (`notifications`, `Notification`, `Id`, `sObject`, `Ack`, …).
pub const OUTBOUND_NS: &str = "http://soap.sforce.com/2005/09/outbound";
/// Enterprise sObject namespace: the record's field elements and the `User` type name.
pub const ENTERPRISE_SOBJECT_NS: &str = "urn:sobject.enterprise.soap.sforce.com";
/// XML Schema instance namespace (`xsi:type`, `xsi:nil`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
