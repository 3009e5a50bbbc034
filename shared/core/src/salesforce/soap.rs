//! The SOAP 1.1 answers to an Outbound Message: the acknowledgement and the fault.
//!
//! Salesforce treats anything but `Ack` `true` as a failed delivery and retries the whole message
//! (up to 24 hours), so the webhook answers [`ACK`] only once every notification is queued, and a
//! [`fault`] otherwise.

use crate::error::ErrorClass;

/// The `Content-Type` of both answers.
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The acknowledgement of a whole Outbound Message (send it with HTTP 200). One ack covers every
/// notification of the message; there is no partial ack.
pub const ACK: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
    "<soapenv:Body>",
    r#"<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#,
    "<Ack>true</Ack>",
    "</notificationsResponse>",
    "</soapenv:Body>",
    "</soapenv:Envelope>",
);

/// Who a SOAP 1.1 fault blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// The request was wrong (`soapenv:Client`); send with HTTP 400.
    Client,
    /// The receiver failed (`soapenv:Server`); send with HTTP 500 or 503.
    Server,
}

impl FaultCode {
    /// The `faultcode` text, a QName in the envelope namespace.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "soapenv:Client",
            Self::Server => "soapenv:Server",
        }
    }

    /// Bad input is the sender's fault; everything else, our configuration included, is ours.
    pub fn for_class(class: ErrorClass) -> Self {
        match class {
            ErrorClass::BadInput => Self::Client,
            ErrorClass::Transient | ErrorClass::Permanent | ErrorClass::Config => Self::Server,
        }
    }
}

/// A SOAP 1.1 `Fault` envelope carrying `message` as its `faultstring`.
///
/// The message is XML-escaped; characters XML cannot carry at all (most C0 controls, U+FFFE,
/// U+FFFF) become U+FFFD so the answer is always well-formed.
pub fn fault(code: FaultCode, message: &str) -> String {
    let mut xml = String::with_capacity(320 + message.len());
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    xml.push_str(r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#);
    xml.push_str("<soapenv:Body><soapenv:Fault><faultcode>");
    xml.push_str(code.as_str());
    xml.push_str("</faultcode><faultstring>");
    push_escaped(&mut xml, message);
    xml.push_str("</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    xml
}

/// Appends `text` escaped for XML character data or attribute values.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A raw CR would be read back as LF (end-of-line normalisation).
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push(char::REPLACEMENT_CHARACTER),
        }
    }
}

/// The XML 1.0 `Char` production: what a document may contain, literally or as a reference.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::salesforce::{OUTBOUND_NS, SOAP_ENVELOPE_NS};
    use proptest::prelude::*;
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    const ACK_FIXTURE: &str =
        include_str!("../../../../tests/fixtures/salesforce/outbound-ack.xml");

    /// What a document means, prefixes and layout aside: elements as (namespace, local name),
    /// their ends, and non-blank text with references resolved.
    #[derive(Debug, PartialEq)]
    enum Item {
        Open(String, String),
        Close,
        Text(String),
    }

    fn meaning(xml: &str) -> Vec<Item> {
        let mut reader = NsReader::from_str(xml);
        let mut items = Vec::new();
        let mut text = String::new();
        loop {
            let (ns, event) = reader.read_resolved_event().unwrap();
            let ns = match ns {
                ResolveResult::Bound(ns) => String::from_utf8(ns.0.to_vec()).unwrap(),
                _ => String::new(),
            };
            if !matches!(event, Event::Text(_) | Event::GeneralRef(_)) && !text.trim().is_empty() {
                items.push(Item::Text(std::mem::take(&mut text)));
            }
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    text.clear();
                    let local = String::from_utf8(e.local_name().as_ref().to_vec()).unwrap();
                    items.push(Item::Open(ns, local));
                    if matches!(event, Event::Empty(_)) {
                        items.push(Item::Close);
                    }
                }
                Event::End(_) => {
                    text.clear();
                    items.push(Item::Close);
                }
                Event::Text(t) => text.push_str(&t.xml10_content().unwrap()),
                Event::GeneralRef(r) => match r.resolve_char_ref().unwrap() {
                    Some(c) => text.push(c),
                    None => text.push_str(
                        quick_xml::escape::resolve_xml_entity(&r.decode().unwrap()).unwrap(),
                    ),
                },
                Event::Eof => return items,
                _ => {}
            }
        }
    }

    fn fault_parts(xml: &str) -> (String, String) {
        let items = meaning(xml);
        let open = |ns: &str, local: &str| Item::Open(ns.to_string(), local.to_string());
        assert_eq!(items[0], open(SOAP_ENVELOPE_NS, "Envelope"));
        assert_eq!(items[1], open(SOAP_ENVELOPE_NS, "Body"));
        assert_eq!(items[2], open(SOAP_ENVELOPE_NS, "Fault"));
        assert_eq!(items[3], open("", "faultcode"));
        let Item::Text(code) = &items[4] else {
            panic!("no faultcode text: {items:?}")
        };
        assert_eq!(items[5], Item::Close);
        assert_eq!(items[6], open("", "faultstring"));
        let message = match &items[7] {
            Item::Text(message) => message.clone(),
            Item::Close => String::new(),
            other => panic!("unexpected {other:?}"),
        };
        (code.clone(), message)
    }

    #[test]
    fn the_ack_means_exactly_what_the_reference_ack_means() {
        assert_eq!(meaning(ACK), meaning(ACK_FIXTURE));
        let open = |ns: &str, local: &str| Item::Open(ns.to_string(), local.to_string());
        assert_eq!(
            meaning(ACK),
            vec![
                open(SOAP_ENVELOPE_NS, "Envelope"),
                open(SOAP_ENVELOPE_NS, "Body"),
                open(OUTBOUND_NS, "notificationsResponse"),
                open(OUTBOUND_NS, "Ack"),
                Item::Text("true".into()),
                Item::Close,
                Item::Close,
                Item::Close,
                Item::Close,
            ]
        );
    }

    #[test]
    fn the_ack_is_not_the_wrong_notifications_variant_seen_in_public_code() {
        assert!(!ACK.contains("<notifications>") && !ACK.contains("<notifications "));
        assert!(ACK.contains("<notificationsResponse"));
    }

    #[test]
    fn a_client_fault_names_soapenv_client_and_carries_the_escaped_message() {
        let xml = fault(
            FaultCode::Client,
            r#"OrganizationId <00D> is "not" ours & 'so' refused"#,
        );
        assert!(xml.contains("&lt;00D&gt;"));
        let (code, message) = fault_parts(&xml);
        assert_eq!(code, "soapenv:Client");
        assert_eq!(
            message,
            r#"OrganizationId <00D> is "not" ours & 'so' refused"#
        );
    }

    #[test]
    fn a_server_fault_names_soapenv_server() {
        let (code, message) = fault_parts(&fault(FaultCode::Server, "queue unavailable"));
        assert_eq!(code, "soapenv:Server");
        assert_eq!(message, "queue unavailable");
    }

    #[test]
    fn the_fault_code_prefix_is_bound_to_the_soap_envelope_namespace() {
        let xml = fault(FaultCode::Client, "x");
        assert!(xml.contains(r#"xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#));
    }

    #[test]
    fn characters_xml_cannot_carry_are_replaced_not_sent() {
        let (_, message) = fault_parts(&fault(FaultCode::Client, "nul\u{0} bell\u{7} cr\r tab\t"));
        assert_eq!(message, "nul\u{FFFD} bell\u{FFFD} cr\r tab\t");
    }

    #[test]
    fn bad_input_is_the_client_fault_and_the_rest_is_ours() {
        assert_eq!(
            FaultCode::for_class(ErrorClass::BadInput),
            FaultCode::Client
        );
        assert_eq!(
            FaultCode::for_class(ErrorClass::Transient),
            FaultCode::Server
        );
        assert_eq!(FaultCode::for_class(ErrorClass::Config), FaultCode::Server);
        assert_eq!(
            FaultCode::for_class(ErrorClass::Permanent),
            FaultCode::Server
        );
    }

    proptest! {
        #[test]
        fn any_message_gives_a_well_formed_fault_that_reads_back(message in any::<String>()) {
            let (_, read_back) = fault_parts(&fault(FaultCode::Client, &message));
            let expected: String = message
                .chars()
                .map(|c| if is_xml_char(c) { c } else { char::REPLACEMENT_CHARACTER })
                .collect();
            // Blank messages disappear in `meaning`, which skips blank text.
            if expected.trim().is_empty() {
                prop_assert!(read_back.is_empty() || read_back.trim().is_empty());
            } else {
                prop_assert_eq!(read_back, expected);
            }
        }
    }
}
