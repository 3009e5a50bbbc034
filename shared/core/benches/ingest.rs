//! The cost of reading what Salesforce sends, side by side with the bare parse of the same bytes:
//! a 100-notification Outbound Message against a quick-xml event scan (goal: at most 2×), and a
//! 100-event JSON batch against `serde_json::from_slice::<Value>` (goal: at most 1.5×).
//!
//! `cargo bench -p userprov-core --bench ingest`. A plain timing loop, like `benches/expr.rs`;
//! it prints the mean time per message and the ratios, each ratio also on a `ratio <name> <x>`
//! line for scripts.
//!
//! Options after `--`: `--iterations N` (default 2000 per round); `--only OPERATION --iterations
//! N` runs one operation N times and prints nothing else, for an instruction count under
//! callgrind (`infra/scripts/bench-parsers.sh`). Operations: `xml-parse` (owned output, what
//! `parse_outbound_message` returns), `xml-read` (borrowed output), `xml-bare-attributes` (the
//! XML baseline: every event and every attribute of every start tag, which the parser must read
//! too), `xml-bare` (events only, attributes not parsed), `xml-webhook` (what the webhook runs
//! between the request body and the queue: the borrowed read, then one job message per user
//! written from it, for one app), `xml-webhook-owned` (the same jobs as the webhook wrote them
//! before: the owned parse, a `Job` per user, its message), `json-parse`, `json-bare`.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::{Value, json};
use time::OffsetDateTime;
use userprov_core::ids::SalesforceId;
use userprov_core::ingest::outbound_jobs;
use userprov_core::job::Job;
use userprov_core::salesforce::events::{EventFormat, parse_events};
use userprov_core::salesforce::outbound::{parse_outbound_message, read_outbound_message};
use userprov_core::source::{EventSource, SourceEvent};

const MESSAGES: usize = 100;
const EVENTS_ONLY: &str = "bare quick-xml event scan, attributes not read";

/// A user id for index `i` (15 characters; the parser adds the case suffix).
fn user_id(i: usize) -> Result<SalesforceId, Box<dyn Error>> {
    Ok(SalesforceId::parse(&format!("0058a00000L{i:04}"))?)
}

fn outbound_message() -> Result<String, Box<dyn Error>> {
    let mut notifications = String::new();
    for i in 0..MESSAGES {
        let id = user_id(i)?;
        let fields = [
            ("Username", format!("user.{i}@acme.example")),
            ("FirstName", format!("Firstname{i}")),
            ("LastName", "Fernández Søgaard".to_owned()),
            ("Email", format!("user.{i}@acme.example")),
            ("Alias", format!("u{i}")),
            ("Title", "Senior Account Executive".to_owned()),
            ("Department", "Sales &amp; Marketing".to_owned()),
            ("Division", "EMEA".to_owned()),
            ("EmployeeNumber", format!("E-{i:05}")),
            ("FederationIdentifier", format!("user.{i}@acme.example")),
            ("IsActive", "true".to_owned()),
            ("LastModifiedDate", "2025-03-14T16:02:11.000Z".to_owned()),
            ("SystemModstamp", "2025-03-14T16:02:11.000Z".to_owned()),
        ];
        let mut body = format!("<sf:Id>{id}</sf:Id>");
        for (name, value) in fields {
            body.push_str(&format!("<sf:{name}>{value}</sf:{name}>"));
        }
        body.push_str("<sf:ManagerId xsi:nil=\"true\"/>");
        notifications.push_str(&format!(
            "<Notification><Id>04l8a000000{i:04}</Id><sObject xsi:type=\"sf:User\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">{body}</sObject></Notification>"
        ));
    }
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>00D8a000002bQxTEAU</OrganizationId><ActionId>04k8a000000CkPzAAK</ActionId><SessionId xsi:nil="true"/><EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/62.0/00D8a000002bQxT</EnterpriseUrl><PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/62.0/00D8a000002bQxT</PartnerUrl>{notifications}</notifications></soapenv:Body></soapenv:Envelope>"#
    ))
}

/// 100 platform events as the streaming API delivers them, in one batch.
fn json_batch() -> Result<String, Box<dyn Error>> {
    let mut events = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        events.push(json!({
            "data": {
                "schema": "Vq3XnL0bTg2fKc8wYp1sHA",
                "payload": {
                    "CreatedDate": 1_741_968_132_000_i64,
                    "CreatedById": "0058a00000IntG9AAJ",
                    "Operation__c": "UPDATE",
                    "User_Id__c": user_id(i)?.as_str(),
                    "Username__c": format!("user.{i}@acme.example"),
                    "Email__c": format!("user.{i}@acme.example"),
                    "First_Name__c": format!("Firstname{i}"),
                    "Last_Name__c": "Fernández Søgaard",
                    "Title__c": "Senior Account Executive",
                    "Department__c": "Sales & Marketing",
                    "Employee_Number__c": format!("E-{i:05}"),
                    "Federation_Identifier__c": format!("user.{i}@acme.example"),
                    "Is_Active__c": true,
                    "Manager_Id__c": null,
                    "Permission_Set_Groups__c": "Sales_Manager;Support_Tier_2",
                    "Source_Last_Modified__c": 1_741_968_132_000_i64
                },
                "event": {"replayId": 4711 + i, "EventUuid": format!("2f5c1a3e-6f2d-4b8e-9a1c-{i:012}")}
            },
            "channel": "/event/User_Provisioning__e"
        }));
    }
    Ok(Value::Array(events).to_string())
}

/// Every event of the document, and nothing else: the issue's baseline.
fn bare_xml_scan(xml: &str) -> usize {
    let mut reader = Reader::from_str(xml);
    let mut events = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) | Err(_) => return events,
            Ok(_) => events += 1,
        }
    }
}

/// Every event and every attribute of every start tag, as any namespace-aware reader must read
/// them (a declaration or an `xsi:nil` can be on any element): the baseline of the goal. Each
/// attribute is parsed (with quick-xml's duplicate check) and its key and value touched.
fn bare_xml_scan_with_attributes(xml: &str) -> usize {
    let mut reader = Reader::from_str(xml);
    let mut seen = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) | Err(_) => return seen,
            Ok(Event::Start(start) | Event::Empty(start)) => {
                seen += 1;
                for attribute in start.attributes().flatten() {
                    seen += black_box(attribute.key.as_ref().len() + attribute.value.len());
                }
            }
            Ok(_) => seen += 1,
        }
    }
}

/// The webhook's work on an Outbound Message for one app: read it borrowed, then write each
/// user's job message from the body. Returns the number of jobs.
fn webhook_jobs(xml: &str, received_at: OffsetDateTime) -> Result<usize, Box<dyn Error>> {
    let message = read_outbound_message(xml.as_bytes())?;
    let (jobs, _refused) = outbound_jobs(&message, &["app"], "bench", received_at)?;
    Ok(black_box(jobs).len())
}

/// The same jobs as [`webhook_jobs`], written the way the webhook did before it wrote them from
/// the borrowed parse: each user copied into an owned event, a [`Job`] built from it, then its
/// message. Returns the number of jobs.
fn owned_webhook_jobs(xml: &str, received_at: OffsetDateTime) -> Result<usize, Box<dyn Error>> {
    let message = parse_outbound_message(xml.as_bytes())?;
    let mut messages = Vec::with_capacity(message.notifications.len());
    for notification in message.notifications {
        let Ok(user) = notification.object else {
            continue;
        };
        let event = SourceEvent {
            event_id: notification.id,
            source: EventSource::OutboundMessage,
            user,
            event_time: None,
        };
        messages.push(Job::new("app", &event, "bench", received_at).to_message()?);
    }
    Ok(black_box(messages).len())
}

/// Mean time per call over `iterations`, after a warm-up. Each measurement is the best of five
/// rounds, so a neighbour's burst on a shared machine disturbs it less.
fn time(iterations: u32, mut operation: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        operation();
    }
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                operation();
            }
            start.elapsed() / iterations
        })
        .min()
        .unwrap_or_default()
}

fn report(
    name: &str,
    label: &str,
    ours: Duration,
    baseline_label: &str,
    baseline: Duration,
    goal: Option<f64>,
) {
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    println!("{label:<52} {ours:>10.2?}");
    println!("{baseline_label:<52} {baseline:>10.2?}");
    match goal {
        Some(goal) => println!(
            "{:<52} {ratio:>10.2}× (goal ≤ {goal}×{})",
            "  ratio",
            if ratio <= goal { "" } else { ", MISSED" }
        ),
        None => println!("{:<52} {ratio:>10.2}× (reference)", "  ratio"),
    }
    println!("ratio {name} {ratio:.3}");
}

/// One of the measured operations, run `iterations` times and nothing else.
fn run_only(operation: &str, iterations: u32) -> Result<(), Box<dyn Error>> {
    let xml = outbound_message()?;
    let batch = json_batch()?;
    let format = EventFormat::default();
    for _ in 0..iterations {
        match operation {
            "xml-parse" => {
                let _ = black_box(parse_outbound_message(black_box(xml.as_bytes())));
            }
            "xml-read" => {
                let _ = black_box(read_outbound_message(black_box(xml.as_bytes())));
            }
            "xml-bare" => {
                black_box(bare_xml_scan(black_box(&xml)));
            }
            "xml-webhook" => {
                let _ = black_box(webhook_jobs(black_box(&xml), OffsetDateTime::UNIX_EPOCH));
            }
            "xml-webhook-owned" => {
                let _ = black_box(owned_webhook_jobs(
                    black_box(&xml),
                    OffsetDateTime::UNIX_EPOCH,
                ));
            }
            "xml-bare-attributes" => {
                black_box(bare_xml_scan_with_attributes(black_box(&xml)));
            }
            "json-parse" => {
                let _ = black_box(parse_events(black_box(batch.as_bytes()), &format));
            }
            "json-bare" => {
                let _ = black_box(serde_json::from_slice::<Value>(black_box(batch.as_bytes())));
            }
            other => return Err(format!("unknown operation {other:?}").into()),
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut iterations = 2_000;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                iterations = args.next().ok_or("--iterations needs a number")?.parse()?;
            }
            "--only" => only = Some(args.next().ok_or("--only needs an operation")?),
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    if let Some(operation) = only {
        return run_only(&operation, iterations);
    }

    let xml = outbound_message()?;
    let message = parse_outbound_message(xml.as_bytes())?;
    assert_eq!(message.notifications.len(), MESSAGES);
    println!(
        "Outbound Message: {} notifications, {} bytes",
        MESSAGES,
        xml.len()
    );
    assert_eq!(read_outbound_message(xml.as_bytes())?.into_owned(), message);
    let ours = time(iterations, || {
        let _ = black_box(parse_outbound_message(black_box(xml.as_bytes())));
    });
    let borrowed = time(iterations, || {
        let _ = black_box(read_outbound_message(black_box(xml.as_bytes())));
    });
    let bare = time(iterations, || {
        black_box(bare_xml_scan_with_attributes(black_box(&xml)));
    });
    let events_only = time(iterations, || {
        black_box(bare_xml_scan(black_box(&xml)));
    });
    assert_eq!(webhook_jobs(&xml, OffsetDateTime::UNIX_EPOCH)?, MESSAGES);
    let webhook = time(iterations, || {
        let _ = black_box(webhook_jobs(black_box(&xml), OffsetDateTime::UNIX_EPOCH));
    });
    assert_eq!(
        owned_webhook_jobs(&xml, OffsetDateTime::UNIX_EPOCH)?,
        MESSAGES
    );
    let owned_webhook = time(iterations, || {
        let _ = black_box(owned_webhook_jobs(
            black_box(&xml),
            OffsetDateTime::UNIX_EPOCH,
        ));
    });
    report(
        "outbound_owned",
        "parse + normalise, owned users (parse_outbound_message)",
        ours,
        "bare quick-xml scan of every event and attribute",
        bare,
        Some(2.0),
    );
    report(
        "outbound_borrowed",
        "parse + normalise, borrowed (read_outbound_message)",
        borrowed,
        "bare quick-xml scan of every event and attribute",
        bare,
        Some(2.0),
    );
    report(
        "outbound_borrowed_vs_events_only",
        "parse + normalise, borrowed (read_outbound_message)",
        borrowed,
        EVENTS_ONLY,
        events_only,
        Some(2.0),
    );
    // References, no goal: parsing plus writing every job's JSON, which a bare scan does not do.
    report(
        "outbound_webhook_vs_events_only",
        "the webhook's work: read + one job message per user",
        webhook,
        EVENTS_ONLY,
        events_only,
        None,
    );
    report(
        "outbound_webhook_owned_vs_events_only",
        "the same jobs through owned users (the old way)",
        owned_webhook,
        EVENTS_ONLY,
        events_only,
        None,
    );

    let batch = json_batch()?;
    let format = EventFormat::default();
    let parsed = parse_events(batch.as_bytes(), &format)?;
    assert_eq!(parsed.events.len(), MESSAGES);
    println!(
        "\nJSON batch: {} platform events, {} bytes",
        MESSAGES,
        batch.len()
    );
    let ours = time(iterations, || {
        let _ = black_box(parse_events(black_box(batch.as_bytes()), &format));
    });
    let bare = time(iterations, || {
        let _ = black_box(serde_json::from_slice::<Value>(black_box(batch.as_bytes())));
    });
    report(
        "json",
        "parse + normalise the JSON batch",
        ours,
        "serde_json::from_slice::<Value> of the same bytes",
        bare,
        Some(1.5),
    );
    Ok(())
}
