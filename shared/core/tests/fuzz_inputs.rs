//! A time-boxed mutation fuzzer for everything Salesforce can send: the SOAP parser, the JSON
//! events parser and both webhook routes, fed mutants of the fixtures.
//!
//! Stable Rust has no libFuzzer, so this is a small fuzzer of its own: byte mutations (flips,
//! inserts, deletes, repeats, splices of two inputs, tokens both formats care about) and
//! structure mutations (an XML element or a JSON value duplicated, dropped, nested or swapped).
//! An input whose answer is one not seen before joins the corpus, a cheap stand-in for
//! coverage feedback. For every input it checks that nothing panics, that every answer is
//! bounded, and that every refusal carries a classified, machine-readable reason.
//!
//! `FUZZ_SECONDS` (default 8) bounds the run and `FUZZ_SEED` repeats one; CI runs the default,
//! `infra/scripts/fuzz.sh` runs longer. A failing input is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-failure-<seed>.bin`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use userprov_core::config::Config;
use userprov_core::error::{Classify, ErrorClass};
use userprov_core::http::event_auth::{API_KEY_HEADER, EventAuthConfig, EventAuthMode};
use userprov_core::http::webhook::{EventsEndpoint, WebhookState, router};
use userprov_core::ingest::Ingest;
use userprov_core::job::Job;
use userprov_core::ports::{
    JobQueue, QueueError, SecretError, SecretStore, SecretValue, SystemClock,
};
use userprov_core::salesforce::events::{EventFormat, MAX_USERS, parse_events};
use userprov_core::salesforce::outbound::{MAX_NOTIFICATIONS, parse_outbound_message};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/salesforce/", $name)).as_slice()
    };
}

const SEEDS: &[&[u8]] = &[
    fixture!("outbound-3-users.xml"),
    fixture!("outbound-default-namespace.xml"),
    fixture!("outbound-weird-prefixes.xml"),
    fixture!("outbound-mixed-sobjects.xml"),
    fixture!("outbound-soap12.xml"),
    fixture!("outbound-doctype-billion-laughs.xml"),
    fixture!("outbound-doctype-external-entity.xml"),
    fixture!("platform-event-streaming.json"),
    fixture!("eventbridge-user-provisioning-event.json"),
    fixture!("eventbridge-user-change-event.json"),
    fixture!("flow-callout.json"),
    fixture!("batch-mixed.json"),
    fixture!("cdc-user-update-cometd.json"),
    fixture!("cdc-user-create-pubsub.json"),
    fixture!("cdc-user-deactivate-cometd.json"),
    fixture!("cdc-user-deactivate-pubsub.json"),
    fixture!("cdc-user-gap-two-users.json"),
];

/// Fragments either parser gives meaning to.
const TOKENS: &[&str] = &[
    "<!DOCTYPE x [<!ENTITY a \"b\">]>",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x1F600;",
    "&#xFFFE;",
    "&undefined;",
    "<![CDATA[",
    "]]>",
    "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
    " xsi:nil=\"true\"",
    " xsi:type=\"sf:Account\"",
    " xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"",
    " xmlns=\"\"",
    "<sf:Id>0058a00000LmN2pAAF</sf:Id>",
    "<Id>04l8a00000Dq8AaAAJ</Id>",
    "</",
    "/>",
    "\u{FEFF}",
    "\r\n",
    "\u{0}",
    "\u{FFFF}",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\u0000",
    "\\ud800",
    ":null",
    ":1e999",
    ":-0",
    ":18446744073709551616",
    "\"ChangeEventHeader\":{}",
    "\"changeType\":\"GAP_OVERFLOW\"",
    "\"recordIds\":[\"0058a00000LmN2pAAF\",\"0058a00000LmN3qAAF\"]",
    "\"Id\":\"001000000000001\"",
    "\"events\":[]",
];

const CONTENT_TYPES: &[&str] = &[
    "text/xml; charset=utf-8",
    "application/json",
    "application/soap+xml",
    "text/plain",
    "application/cloudevents+json",
];

const TOKEN: &str = "fuzz-token-5e1a";
const EVENTS_KEY: &str = "fuzz-events-key-9c2f";
const MAX_BODY_BYTES: usize = 256 * 1024;
/// No answer, fault or problem document, is longer than this.
const MAX_ANSWER_BYTES: usize = 8 * 1024;

/// xorshift64*: enough randomness for mutation, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(11) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(len + 1);
                out.insert(at, rng.next() as u8);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                out.drain(at..end);
            }
            3 if len > 0 => {
                // Repeat a range: long values, many notifications, deep nesting.
                let at = rng.below(len);
                let end = (at + 1 + rng.below(256)).min(len);
                let piece = out[at..end].to_vec();
                let most = if rng.chance(5) { 2000 } else { 8 };
                let times = 1 + rng.below(most);
                let tail = out.split_off(end);
                for _ in 0..times {
                    out.extend_from_slice(&piece);
                }
                out.extend_from_slice(&tail);
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            5 | 6 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(len + 1);
                out.splice(at..at, token.iter().copied());
            }
            7 => out.truncate(rng.below(len + 1)),
            8 => out = mutate_xml_structure(rng, &out),
            _ => out = mutate_json_structure(rng, &out),
        }
    }
    out.truncate(MAX_BODY_BYTES + 1024);
    out
}

/// Duplicates, drops or doubles the nesting of one element, found by its start and end tags.
fn mutate_xml_structure(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(input) else {
        return input.to_vec();
    };
    let starts: Vec<usize> = text
        .match_indices('<')
        .map(|(i, _)| i)
        .filter(|&i| text[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic()))
        .collect();
    if starts.is_empty() {
        return input.to_vec();
    }
    let start = starts[rng.below(starts.len())];
    let name_end = text[start + 1..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .map_or(text.len(), |i| start + 1 + i);
    let name = &text[start + 1..name_end];
    let close = format!("</{name}>");
    let Some(end) = text[start..].find(&close).map(|i| start + i + close.len()) else {
        return input.to_vec();
    };
    let element = &text[start..end];
    let mut out = String::with_capacity(text.len() + element.len());
    out.push_str(&text[..start]);
    match rng.below(3) {
        0 => {
            let most = if rng.chance(10) { 120 } else { 3 };
            for _ in 0..(2 + rng.below(most)) {
                out.push_str(element);
            }
        }
        1 => {}
        _ => {
            out.push_str(&text[start..name_end]);
            out.push('>');
            out.push_str(element);
            out.push_str(&close);
        }
    }
    out.push_str(&text[end..]);
    out.into_bytes()
}

/// A random node at most `depth` levels down.
fn pick<'v>(
    node: &'v mut serde_json::Value,
    rng: &mut Rng,
    depth: usize,
) -> &'v mut serde_json::Value {
    use serde_json::Value;
    let len = match &*node {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if depth == 0 || len == 0 {
        return node;
    }
    let index = rng.below(len);
    match node {
        Value::Object(map) => pick(map.values_mut().nth(index).unwrap(), rng, depth - 1),
        Value::Array(items) => pick(&mut items[index], rng, depth - 1),
        other => other,
    }
}

/// Replaces, drops, duplicates or wraps one value of a JSON document.
fn mutate_json_structure(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    use serde_json::Value;
    let Ok(mut value) = serde_json::from_slice::<Value>(input) else {
        return input.to_vec();
    };
    let depth = rng.below(6);
    let node = pick(&mut value, rng, depth);
    match rng.below(6) {
        0 => *node = Value::Null,
        1 => *node = serde_json::json!(rng.next() as i64),
        2 => {
            let copy = node.clone();
            *node = serde_json::json!([copy.clone(), copy]);
        }
        3 => {
            let copy = node.clone();
            *node = serde_json::json!({ "payload": copy });
        }
        4 => {
            if let Value::Object(map) = node
                && !map.is_empty()
            {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                map.remove(&key);
            }
        }
        _ => {
            if let Value::Array(items) = node
                && !items.is_empty()
            {
                let item = items[rng.below(items.len())].clone();
                let most = if rng.chance(10) { 150 } else { 3 };
                for _ in 0..(1 + rng.below(most)) {
                    items.push(item.clone());
                }
            }
        }
    }
    serde_json::to_vec(&value).unwrap()
}

/// What one input did, as a short signature; a new one is new behaviour worth keeping.
fn check_parsers(input: &[u8]) -> (String, String) {
    let soap = match parse_outbound_message(input) {
        Ok(message) => {
            assert!(message.notifications.len() <= MAX_NOTIFICATIONS);
            assert!(!message.notifications.is_empty());
            let ids: BTreeSet<&str> = message
                .notifications
                .iter()
                .map(|n| n.id.as_str())
                .collect();
            assert_eq!(
                ids.len(),
                message.notifications.len(),
                "duplicate notification ids"
            );
            let refused = message
                .notifications
                .iter()
                .filter(|n| n.object.is_err())
                .count();
            format!("ok:{}:{refused}", message.notifications.len().min(4))
        }
        Err(error) => {
            assert_eq!(error.class(), ErrorClass::BadInput);
            check_reason(error.code());
            assert!(error.to_string().len() < 600, "unbounded error: {error}");
            error.code().to_owned()
        }
    };
    let json = match parse_events(input, &EventFormat::default()) {
        Ok(message) => {
            assert!(!message.events.is_empty() || !message.overflows.is_empty());
            assert!(message.events.len() <= MAX_USERS);
            let ids: BTreeSet<&str> = message.events.iter().map(|e| e.event_id.as_str()).collect();
            assert_eq!(ids.len(), message.events.len(), "duplicate event ids");
            for event in &message.events {
                assert_eq!(event.user.id.key_prefix(), "005");
            }
            format!("ok:{}", message.events.len().min(4))
        }
        Err(error) => {
            assert_eq!(error.class(), ErrorClass::BadInput);
            check_reason(error.code());
            assert!(error.to_string().len() < 600, "unbounded error: {error}");
            error.code().to_owned()
        }
    };
    (soap, json)
}

fn check_reason(reason: &str) {
    assert!(
        !reason.is_empty()
            && reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "not a machine-readable reason: {reason:?}"
    );
}

/// A queue that keeps what it is given; the fuzzer only needs `enqueue` to succeed.
#[derive(Default)]
struct CountingQueue(Mutex<usize>);

#[async_trait]
impl JobQueue for CountingQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        *self.0.lock().unwrap() += jobs.len();
        Ok(())
    }
}

struct FixedKey;

#[async_trait]
impl SecretStore for FixedKey {
    async fn get_secret(&self, _: &str) -> Result<SecretValue, SecretError> {
        Ok(SecretValue::new(EVENTS_KEY))
    }
    async fn put_secret(&self, _: &str, _: &SecretValue) -> Result<(), SecretError> {
        Ok(())
    }
}

fn webhook() -> axum::Router {
    let config = Config::parse(
        r#"
        [source]
        org_ids = ["00D8a000002bQxTEAU"]
        [[apps]]
        name = "app"
        base_url = "https://scim.example.com/v2"
        secret = "s"
        [apps.mapping]
        userName = { from = "Username", required = true }
        "#,
        "fuzz",
    )
    .unwrap();
    let ingest = Ingest::new(
        Arc::new(config),
        Arc::new(CountingQueue::default()),
        Arc::new(SystemClock),
    );
    router(WebhookState {
        ingest: Arc::new(ingest),
        token: SecretValue::new(TOKEN),
        max_body_bytes: MAX_BODY_BYTES,
        events: Some(EventsEndpoint {
            auth: EventAuthConfig {
                auth: EventAuthMode::ApiKey,
                ..EventAuthConfig::default()
            },
            secrets: Arc::new(FixedKey),
            clock: Arc::new(SystemClock),
        }),
    })
}

/// Sends the input to one route and checks the answer: a known status, a bounded body, and a
/// reason on every refusal.
async fn check_route(app: &axum::Router, rng: &mut Rng, input: &[u8]) -> String {
    let events = rng.chance(50);
    let content_type = if rng.chance(85) {
        if events {
            "application/json"
        } else {
            "text/xml; charset=utf-8"
        }
    } else {
        CONTENT_TYPES[rng.below(CONTENT_TYPES.len())]
    };
    let mut request = Request::post(if events {
        "/salesforce/events".to_owned()
    } else if rng.chance(95) {
        format!("/salesforce/outbound/{TOKEN}")
    } else {
        "/salesforce/outbound/not-the-token".to_owned()
    })
    .header("content-type", content_type);
    if events && rng.chance(95) {
        request = request.header(API_KEY_HEADER, EVENTS_KEY);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(input.to_vec())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let reason = response
        .headers()
        .get("x-userprov-reason")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = to_bytes(response.into_body(), MAX_ANSWER_BYTES)
        .await
        .expect("the answer is bounded");
    match status {
        StatusCode::OK => assert!(reason.is_none()),
        StatusCode::BAD_REQUEST
        | StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            let reason = reason.as_deref().expect("a refusal names its reason");
            check_reason(reason);
            let text = String::from_utf8(body.to_vec()).unwrap();
            if events {
                assert!(
                    text.contains(reason),
                    "the problem document repeats the reason"
                );
            } else {
                assert!(
                    text.contains("<faultcode>soapenv:Client</faultcode>"),
                    "{text}"
                );
            }
        }
        other => panic!("unexpected status {other} ({reason:?})"),
    }
    format!(
        "{}:{}",
        if events { "events" } else { "outbound" },
        reason.unwrap_or_default()
    )
}

#[test]
fn no_input_makes_a_parser_or_the_webhook_panic_and_every_refusal_is_classified() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("fuzzing for {seconds} s with FUZZ_SEED={seed}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = webhook();
    let mut rng = Rng(seed);
    let mut corpus: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.to_vec()).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    // Seeds first, unmutated, then mutants until the deadline.
    let mut pending: Vec<Vec<u8>> = corpus.clone();
    while Instant::now() < deadline || !pending.is_empty() {
        let input = pending.pop().unwrap_or_else(|| {
            let parent = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, parent, &corpus)
        });
        let mut route_rng = Rng(rng.next() | 1);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let (soap, json) = check_parsers(&input);
            let route = runtime.block_on(check_route(&app, &mut route_rng, &input));
            format!("{soap}|{json}|{route}")
        }));
        runs += 1;
        match outcome {
            Ok(signature) => {
                if seen.insert(signature) && input.len() <= 64 * 1024 {
                    corpus.push(input);
                }
            }
            Err(panic) => {
                let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("fuzz-failure-{seed}.bin"));
                std::fs::write(&path, &input).unwrap();
                panic!(
                    "{}",
                    format_args!(
                        "input {} (run {runs}, FUZZ_SEED={seed}) failed: {:?}",
                        path.display(),
                        panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                    )
                );
            }
        }
    }
    println!(
        "{runs} inputs, {} distinct answers, corpus of {}",
        seen.len(),
        corpus.len()
    );
    assert!(runs >= SEEDS.len() as u64);
}
