//! The Salesforce setup kit in `infra/salesforce/`: every file is well-formed, and the metadata
//! agrees with what userprov reads (the Outbound Message's fields with the example
//! configuration, the platform event's fields with the built-in event field map).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use userprov_core::config::Config;
use userprov_core::salesforce::events::{DEFAULT_FIELD_MAP, EventsConfig};

const METADATA_NAMESPACE: &str = "http://soap.sforce.com/2006/04/metadata";

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/salesforce")
}

fn metadata() -> PathBuf {
    kit().join("force-app/main/default")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A parsed XML file: the root element's name and namespace, and every element's text by
/// element name, in document order.
struct Xml {
    root: String,
    namespace: Option<String>,
    texts: Vec<(String, String)>,
}

impl Xml {
    fn all(&self, name: &str) -> Vec<&str> {
        self.texts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> &str {
        let all = self.all(name);
        assert_eq!(all.len(), 1, "exactly one <{name}>: {all:?}");
        all[0]
    }
}

/// Reads the whole file; a mismatched tag, a bad entity or text after the root fails.
fn parse(path: &Path) -> Xml {
    let source = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&source);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    let mut namespace = None;
    let mut texts = Vec::new();
    let mut text = String::new();
    let mut roots = 0;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("{}: not well-formed XML: {e}", path.display()));
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Start(start) | Event::Empty(start) if stack.is_empty() => {
                roots += 1;
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                namespace = start
                    .attributes()
                    .map(|a| a.unwrap())
                    .find(|a| a.key.as_ref() == b"xmlns")
                    .map(|a| String::from_utf8(a.value.to_vec()).unwrap());
                root = Some(name.clone());
                if opens {
                    stack.push(name);
                }
            }
            Event::Start(start) => {
                stack.push(String::from_utf8(start.name().as_ref().to_vec()).unwrap());
                text.clear();
            }
            Event::End(_) => {
                let owner = stack.pop().unwrap();
                let value = text.trim();
                if !value.is_empty() {
                    texts.push((owner, value.to_owned()));
                }
                text.clear();
            }
            Event::Text(content) => {
                let content = content.xml10_content().unwrap();
                assert!(
                    !stack.is_empty() || content.trim().is_empty(),
                    "{}: text outside the root element",
                    path.display()
                );
                text.push_str(&content);
            }
            Event::GeneralRef(reference) => {
                if let Some(c) = reference.resolve_char_ref().unwrap() {
                    text.push(c);
                    continue;
                }
                let name = reference.decode().unwrap();
                let resolved = quick_xml::escape::resolve_xml_entity(&name)
                    .unwrap_or_else(|| panic!("{}: undeclared entity &{name};", path.display()));
                text.push_str(resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(roots, 1, "{}: one root element", path.display());
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", path.display());
    Xml {
        root: root.unwrap(),
        namespace,
        texts,
    }
}

/// The root element each kind of metadata file must have.
fn expected_root(path: &Path) -> &'static str {
    let name = path.file_name().unwrap().to_str().unwrap();
    let kinds = [
        (".flow-meta.xml", "Flow"),
        (".object-meta.xml", "CustomObject"),
        (".field-meta.xml", "CustomField"),
        (".workflow-meta.xml", "Workflow"),
        (".cls-meta.xml", "ApexClass"),
        (".trigger-meta.xml", "ApexTrigger"),
        (".namedCredential-meta.xml", "NamedCredential"),
        (".externalCredential-meta.xml", "ExternalCredential"),
        (".permissionset-meta.xml", "PermissionSet"),
    ];
    kinds
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, root)| *root)
        .unwrap_or_else(|| panic!("{name}: a file of a kind this test does not know"))
}

#[test]
fn every_metadata_file_is_well_formed_with_the_root_its_kind_needs() {
    let files = files_under(&metadata());
    let mut xml_files = 0;
    for path in &files {
        let name = path.to_str().unwrap();
        if name.ends_with(".xml") {
            let xml = parse(path);
            assert_eq!(xml.root, expected_root(path), "{name}");
            assert_eq!(xml.namespace.as_deref(), Some(METADATA_NAMESPACE), "{name}");
            xml_files += 1;
        } else if name.ends_with(".cls") || name.ends_with(".trigger") {
            let meta = PathBuf::from(format!("{name}-meta.xml"));
            assert!(meta.exists(), "{name} has no {}", meta.display());
        } else {
            panic!("{name}: a file of a kind this test does not know");
        }
    }
    assert!(xml_files >= 25, "only {xml_files} metadata files found");

    let project: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kit().join("sfdx-project.json")).unwrap())
            .unwrap();
    assert_eq!(project["packageDirectories"][0]["path"], "force-app");
    assert!(
        project["sourceApiVersion"]
            .as_str()
            .unwrap()
            .ends_with(".0")
    );
}

#[test]
fn a_custom_field_file_is_named_after_its_field() {
    for path in files_under(&metadata()) {
        let name = path.file_name().unwrap().to_str().unwrap();
        if let Some(field) = name.strip_suffix(".field-meta.xml") {
            assert_eq!(parse(&path).one("fullName"), field, "{}", path.display());
        }
    }
}

fn outbound_message() -> Xml {
    parse(&metadata().join("workflows/User.workflow-meta.xml"))
}

/// `[source] fields` of the example configuration, read from the file itself.
fn example_source_fields() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(kit().join("../userprov.example.toml")).expect("the example");
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["source"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_outbound_message_sends_exactly_the_fields_the_example_configuration_lists() {
    let sent: BTreeSet<String> = outbound_message()
        .all("fields")
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(sent, example_source_fields());
}

#[test]
fn the_outbound_message_carries_every_field_the_example_mappings_read() {
    let sent: BTreeSet<String> = outbound_message()
        .all("fields")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let config = Config::example().unwrap();
    for app in &config.apps {
        let mut read = app.mapping.source_fields();
        read.extend(app.mapping.required_fields());
        if let Some(groups) = &app.groups {
            read.push(groups.field.clone());
        }
        for field in read {
            assert!(
                sent.contains(&field),
                "app {} reads {field}, which the Outbound Message does not send",
                app.name
            );
        }
    }
    assert!(sent.contains("Id") && sent.contains("IsActive"));
}

#[test]
fn the_flow_sends_the_kits_outbound_message_when_a_field_userprov_reads_changes() {
    let om = outbound_message();
    let flow = parse(&metadata().join("flows/Userprov_User_Outbound_Message.flow-meta.xml"));
    assert_eq!(flow.one("actionType"), "outboundMessage");
    assert_eq!(
        flow.one("actionName"),
        format!("User.{}", om.one("fullName"))
    );
    assert_eq!(flow.one("object"), "User");
    assert_eq!(flow.one("triggerType"), "RecordAfterSave");
    assert_eq!(flow.one("recordTriggerType"), "CreateAndUpdate");
    let formula = flow.one("filterFormula");
    assert!(formula.starts_with("ISNEW()"), "{formula}");
    // Fields that change on every save, or never, need no condition.
    for field in om.all("fields") {
        if ["Id", "SystemModstamp", "LastModifiedDate"].contains(&field) {
            continue;
        }
        assert!(
            formula.contains(&format!("ISCHANGED({{!$Record.{field}}})")),
            "a change of {field} does not send the Outbound Message: {formula}"
        );
    }
}

#[test]
fn every_platform_event_field_is_read_as_a_user_field_or_is_the_operation() {
    let config = Config::example().unwrap();
    let operation_field = EventsConfig::default().operation_field;
    let dir = metadata().join("objects/User_Provisioning__e/fields");
    let mut seen = 0;
    for path in files_under(&dir) {
        let field = parse(&path).one("fullName").to_owned();
        seen += 1;
        if field == operation_field {
            continue;
        }
        assert!(
            DEFAULT_FIELD_MAP.iter().any(|(event, _)| *event == field),
            "{field} is not in the built-in event field map"
        );
        let user_field = config.events.user_field(&field);
        assert_ne!(
            user_field, field,
            "the example configuration reads {field} as a User field named {field}"
        );
    }
    assert!(seen >= 10);
    // The relay names the channel of the event the kit defines.
    let trigger =
        std::fs::read_to_string(metadata().join("triggers/UserProvisioningRelay.trigger")).unwrap();
    assert!(trigger.contains("on User_Provisioning__e"));
    assert!(trigger.contains("'/event/User_Provisioning__e'"));
}

#[test]
fn the_named_credential_uses_the_kits_external_credential_and_the_api_key_header() {
    let named =
        parse(&metadata().join("namedCredentials/Userprov_Events.namedCredential-meta.xml"));
    let external =
        parse(&metadata().join("externalCredentials/Userprov.externalCredential-meta.xml"));
    assert_eq!(named.one("externalCredential"), external.one("label"));
    assert!(named.all("parameterName").contains(&"X-Userprov-Api-Key"));
    assert!(
        named
            .all("parameterValue")
            .contains(&"{!$Credential.Userprov.ApiKey}")
    );
    let callout = std::fs::read_to_string(metadata().join("classes/UserprovCallout.cls")).unwrap();
    assert!(callout.contains("callout:Userprov_Events/salesforce/events"));
}
