//! The fault-injection driver: a realistic Salesforce event stream for N users, sent as Outbound
//! Messages to a real `userprov serve` process that is killed (SIGKILL) and restarted at random
//! points, provisioning into scim2-server behind a proxy that injects faults at a given rate.
//! At the end it compares the target with the expected final state of every user.
//!
//! The stream: each user is created, then changes 0 to 4 times (attribute changes,
//! deactivations, reactivations), each change a full snapshot with a later `SystemModstamp`.
//! On delivery, 20% of a user's consecutive changes are swapped (reordered), 20% of
//! notifications are delivered twice (same notification id), and some users get an older
//! snapshot again at the end under a new notification id (stale). A few users are designed to
//! fail permanently: they have no Email, which the mapping requires.
//!
//! The expected final state of a user is their newest snapshot: userprov must apply it and
//! recognise every older one as stale, whatever the delivery order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use userprov_core::embedded::{EmbeddedDb, EmbeddedQueue, QueueSettings};
use userprov_core::ids::SalesforceId;
use userprov_core::job::Job;
use userprov_core::ports::SystemClock;

use crate::fault_proxy::{FaultCounts, FaultMix, FaultProxy};
use crate::peers::scim2_server::Scim2Server;
use crate::peers::{PeerProcess, free_port, repo_root};
use crate::pipeline::{Notified, ORG_ID, outbound_message};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosSettings {
    /// Users with a normal life cycle.
    pub users: usize,
    /// Users designed to fail permanently (no Email); they must end in the dead-letter queue.
    pub failing_users: usize,
    /// The share of target requests the proxy faults (0.0 to 1.0).
    pub fault_rate: f64,
    /// How many times the serve process is killed with SIGKILL and restarted.
    pub kills: usize,
    /// `userprov serve --workers`.
    pub workers: usize,
    /// Outbound Messages in flight at once (Salesforce delivers in parallel too).
    pub senders: usize,
    pub seed: u64,
    /// How long to wait for the worker to catch up once everything is sent.
    pub drain_timeout: Duration,
}

impl ChaosSettings {
    /// The CI run: 500 users, 30% faults.
    pub fn ci() -> Self {
        Self {
            users: 500,
            failing_users: 5,
            fault_rate: 0.3,
            kills: 4,
            workers: 8,
            senders: 8,
            seed: 7,
            drain_timeout: Duration::from_secs(600),
        }
    }
}

/// What happened, and what the target looks like compared with what it should.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub settings: ChaosSettings,
    /// Distinct notifications (events), and deliveries including duplicates.
    pub events: usize,
    pub deliveries: usize,
    pub messages: usize,
    /// Webhook posts that failed (the process was down) and were sent again.
    pub webhook_resends: u64,
    pub kills: usize,
    pub faults: FaultCounts,
    /// Whether the queue emptied within the drain timeout.
    pub quiescent: bool,
    /// Log entries with status `retrying`.
    pub retries: usize,
    pub log_entries: usize,
    /// Users whose account differs from their newest snapshot, with what differs.
    pub differing: Vec<String>,
    /// userNames with more than one account.
    pub duplicate_accounts: Vec<String>,
    /// Notification ids with no terminal log entry.
    pub events_without_terminal_entry: Vec<String>,
    /// Usernames of the jobs in the dead-letter queue, sorted.
    pub dead_lettered: Vec<String>,
    /// Usernames of the users designed to fail, sorted.
    pub designed_failures: Vec<String>,
    pub elapsed: Duration,
    /// From the last acknowledged Outbound Message to an empty queue.
    pub drain: Duration,
}

impl ChaosReport {
    pub fn dead_letters_are_the_designed_failures(&self) -> bool {
        self.dead_lettered == self.designed_failures
    }
}

fn sample<T: fmt::Debug>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(10).map(|i| format!("{i:?}")).collect();
    let more = items.len().saturating_sub(10);
    if more > 0 {
        format!("[{} … and {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        let c = &self.faults;
        writeln!(
            f,
            "fault-injection run: {} users + {} designed to fail, fault rate {:.0}%, {} kills, {} workers, seed {}",
            s.users,
            s.failing_users,
            s.fault_rate * 100.0,
            self.kills,
            s.workers,
            s.seed
        )?;
        writeln!(
            f,
            "  sent:     {} events in {} deliveries ({} duplicates) in {} Outbound Messages; {} webhook resends",
            self.events,
            self.deliveries,
            self.deliveries - self.events,
            self.messages,
            self.webhook_resends
        )?;
        writeln!(
            f,
            "  faults:   {} of {} target requests: {} 429, {} 500, {} 503, {} slow, {} dropped before, {} dropped after",
            c.total(),
            c.requests,
            c.throttled,
            c.server_errors,
            c.unavailable,
            c.slow,
            c.dropped_before,
            c.dropped_after
        )?;
        writeln!(
            f,
            "  users whose final state differs: {} {}",
            self.differing.len(),
            sample(&self.differing)
        )?;
        writeln!(
            f,
            "  duplicate accounts:              {} {}",
            self.duplicate_accounts.len(),
            sample(&self.duplicate_accounts)
        )?;
        writeln!(
            f,
            "  events without a terminal entry: {} {}",
            self.events_without_terminal_entry.len(),
            sample(&self.events_without_terminal_entry)
        )?;
        writeln!(
            f,
            "  jobs in the dead-letter queue:   {} (designed to fail: {}; {})",
            self.dead_lettered.len(),
            self.designed_failures.len(),
            if self.dead_letters_are_the_designed_failures() {
                "exactly those".to_owned()
            } else {
                format!("DIFFERENT: {}", sample(&self.dead_lettered))
            }
        )?;
        writeln!(
            f,
            "  retries: {} (log entries: {}); queue emptied: {}",
            self.retries,
            self.log_entries,
            if self.quiescent { "yes" } else { "NO" }
        )?;
        write!(
            f,
            "  elapsed: {:.1} s (drain after the last acknowledged message: {:.1} s)",
            self.elapsed.as_secs_f64(),
            self.drain.as_secs_f64()
        )
    }
}

/// One user's snapshot at one point in time.
#[derive(Debug, Clone)]
struct Snapshot {
    active: bool,
    first_name: String,
    last_name: String,
    title: String,
    /// `None` for the users designed to fail.
    email: Option<String>,
    modified: OffsetDateTime,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    username: String,
    versions: Vec<Snapshot>,
    designed_to_fail: bool,
}

#[derive(Debug, Clone)]
struct Delivery {
    /// 15-character notification id.
    notification_id: String,
    user: usize,
    version: usize,
}

const FIRST_NAMES: [&str; 8] = [
    "Ana", "Ben", "Chloé", "Dmitri", "Esi", "Farid", "Grace", "Hiro",
];
const LAST_NAMES: [&str; 8] = [
    "Okafor",
    "Nair",
    "Fernandes",
    "Müller",
    "O'Brien",
    "Kowalski",
    "Tanaka",
    "Silva",
];
const TITLES: [&str; 6] = [
    "Engineer",
    "Account Executive",
    "Support Lead",
    "Analyst",
    "Designer",
    "Recruiter",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn generate_users(settings: &ChaosSettings, rng: &mut StdRng) -> Vec<User> {
    let start = OffsetDateTime::now_utc() - time::Duration::days(2);
    let mut users = Vec::new();
    for index in 0..settings.users + settings.failing_users {
        let designed_to_fail = index >= settings.users;
        let username = format!("user{index:05}@chaos.example");
        let mut snapshot = Snapshot {
            active: true,
            first_name: pick(rng, &FIRST_NAMES).to_owned(),
            last_name: pick(rng, &LAST_NAMES).to_owned(),
            title: pick(rng, &TITLES).to_owned(),
            email: (!designed_to_fail).then(|| username.clone()),
            modified: start + time::Duration::seconds(rng.random_range(0..3600)),
        };
        let mut versions = vec![snapshot.clone()];
        let changes = if designed_to_fail {
            0
        } else {
            rng.random_range(0..=4)
        };
        for _ in 0..changes {
            snapshot.modified += time::Duration::seconds(rng.random_range(1..7200));
            match rng.random_range(0..10) {
                // A leaver, or a returning leaver.
                0..4 => snapshot.active = !snapshot.active,
                4..7 => snapshot.title = pick(rng, &TITLES).to_owned(),
                7..9 => snapshot.last_name = pick(rng, &LAST_NAMES).to_owned(),
                _ => snapshot.first_name = pick(rng, &FIRST_NAMES).to_owned(),
            }
            versions.push(snapshot.clone());
        }
        users.push(User {
            id: format!("0058a{index:010}"),
            username,
            versions,
            designed_to_fail,
        });
    }
    users
}

/// The delivery order: chronological, then reordered, duplicated and with stale snapshots.
fn plan_deliveries(users: &[User], rng: &mut StdRng) -> Vec<Delivery> {
    let mut next_id = 0u64;
    let mut new_id = || {
        next_id += 1;
        format!("04l8a{next_id:010}")
    };
    let mut chronological: Vec<(OffsetDateTime, Delivery)> = Vec::new();
    for (user, u) in users.iter().enumerate() {
        for (version, snapshot) in u.versions.iter().enumerate() {
            chronological.push((
                snapshot.modified,
                Delivery {
                    notification_id: new_id(),
                    user,
                    version,
                },
            ));
        }
    }
    chronological.sort_by_key(|(at, d)| (*at, d.user, d.version));
    let mut order: Vec<Delivery> = chronological.into_iter().map(|(_, d)| d).collect();

    // 20%: a change overtakes the one before it.
    let mut position: HashMap<(usize, usize), usize> = order
        .iter()
        .enumerate()
        .map(|(i, d)| ((d.user, d.version), i))
        .collect();
    for (user, u) in users.iter().enumerate() {
        for version in 0..u.versions.len().saturating_sub(1) {
            if rng.random_bool(0.2) {
                let a = position[&(user, version)];
                let b = position[&(user, version + 1)];
                order.swap(a, b);
                position.insert((user, version), b);
                position.insert((user, version + 1), a);
            }
        }
    }

    // Some users: an older snapshot arrives again at the very end, under a new notification.
    let mut stale = Vec::new();
    for (user, u) in users.iter().enumerate() {
        if u.versions.len() > 1 && rng.random_bool(0.1) {
            stale.push(Delivery {
                notification_id: new_id(),
                user,
                version: rng.random_range(0..u.versions.len() - 1),
            });
        }
    }

    // 20%: delivered twice, the second time a little later.
    let originals = order.clone();
    for delivery in originals {
        if rng.random_bool(0.2) {
            let from = order
                .iter()
                .position(|d| d.notification_id == delivery.notification_id)
                .unwrap_or(0);
            let at = (from + rng.random_range(1..=200)).min(order.len());
            order.insert(at, delivery);
        }
    }
    order.extend(stale);
    order
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Splits deliveries into Outbound Messages of 1 to 5 notifications, never the same
/// notification twice in one message (Salesforce never does that).
fn batch_messages(users: &[User], deliveries: &[Delivery], rng: &mut StdRng) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current: Vec<&Delivery> = Vec::new();
    let mut size = rng.random_range(1..=5);
    for delivery in deliveries {
        if current.len() >= size
            || current
                .iter()
                .any(|d| d.notification_id == delivery.notification_id)
        {
            messages.push(render(users, &current));
            current.clear();
            size = rng.random_range(1..=5);
        }
        current.push(delivery);
    }
    if !current.is_empty() {
        messages.push(render(users, &current));
    }
    messages
}

fn render(users: &[User], deliveries: &[&Delivery]) -> String {
    let fields: Vec<Vec<(&str, String)>> = deliveries
        .iter()
        .map(|d| {
            let user = &users[d.user];
            let s = &user.versions[d.version];
            let stamp = rfc3339(s.modified);
            let mut fields = vec![
                ("Username", user.username.clone()),
                ("FirstName", s.first_name.clone()),
                ("LastName", s.last_name.clone()),
                ("Alias", s.first_name.to_lowercase()),
                ("Title", s.title.clone()),
                ("IsActive", s.active.to_string()),
                ("LastModifiedDate", stamp.clone()),
                ("SystemModstamp", stamp),
            ];
            if let Some(email) = &s.email {
                fields.push(("Email", email.clone()));
            }
            fields
        })
        .collect();
    let borrowed: Vec<Vec<(&str, &str)>> = fields
        .iter()
        .map(|f| f.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let notified: Vec<Notified<'_>> = deliveries
        .iter()
        .zip(&borrowed)
        .map(|(d, fields)| Notified {
            notification_id: &d.notification_id,
            user_id: &users[d.user].id,
            fields,
        })
        .collect();
    outbound_message(ORG_ID, &notified)
}

/// The `userprov` binary next to the running test or bin, built first (`cargo build -p
/// userprov-cli --bin userprov`, a no-op when it is up to date) so a stale one is never used;
/// or the one `USERPROV_BINARY` names (the 10,000-user run: the driver in the dev profile,
/// whose tasks may panic and unwind, against a release `userprov`).
pub fn userprov_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(given) = std::env::var_os("USERPROV_BINARY") {
                return PathBuf::from(given);
            }
            let exe = std::env::current_exe().expect("the running program has a path");
            let mut profile_dir = exe.parent().expect("a program lives in a directory");
            if profile_dir.file_name().is_some_and(|n| n == "deps") {
                profile_dir = profile_dir.parent().expect("deps has a parent");
            }
            let target_dir = profile_dir.parent().expect("a profile directory has a parent");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(&cargo);
            build
                .current_dir(repo_root())
                .args(["build", "--quiet", "-p", "userprov-cli", "--bin", "userprov"])
                .env("CARGO_TARGET_DIR", target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().unwrap_or_else(|e| {
                panic!(
                    "cannot run {cargo:?} to build the userprov binary ({e}); build it with \
                     `cargo build -p userprov-cli` and run again"
                )
            });
            let binary = profile_dir.join("userprov");
            assert!(
                status.success() && binary.exists(),
                "the userprov binary was not built at {}; build it with `cargo build -p userprov-cli`",
                binary.display()
            );
            binary
        })
        .clone()
}

/// A `userprov serve` process over a data directory that outlives it.
struct Serve {
    binary: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    port: u16,
    workers: usize,
    starts: usize,
    process: Option<PeerProcess>,
}

impl Serve {
    fn start(&mut self) {
        self.starts += 1;
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--port", &self.port.to_string()])
            .args(["--workers", &self.workers.to_string()])
            .env("RUST_LOG", "warn");
        self.process = Some(PeerProcess::start(
            &format!("userprov-serve-{}", self.starts),
            command,
            self.port,
            Duration::from_secs(120),
        ));
    }

    /// SIGKILL: no graceful shutdown, jobs in progress are cut off wherever they are.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a file has a parent")).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The configuration of a chaos run: one app, `base_url` through the fault proxy, its token in
/// the secret `secret`.
pub fn config(base_url: &str, secret: &str) -> String {
    format!(
        r#"
[source]
org_ids = ["{ORG_ID}"]

# Many attempts: at a 30% fault rate a job needing two requests fails an attempt about half the
# time, and only the users designed to fail may reach the dead-letter queue.
[worker]
max_attempts = 30
base_delay_ms = 50
max_delay_secs = 2
request_timeout_secs = 1
# A job in flight when its worker is killed is delivered again after this.
visibility_timeout_secs = 5

[[apps]]
name = "scim"
base_url = "{base_url}"
secret = "{secret}"
match_on = ["userName"]

# The proxy fails 30% of requests at random, and a job makes several, so most windows show a
# failure rate the default breaker (0.5) reads as an outage and the app would spend the run
# paused. The breaker stays on, tripping only on bursts, so paused jobs still meet the kills;
# its outage behaviour has its own suite (tests/tests/circuit_breaker.rs).
[apps.circuit_breaker]
failure_rate = 0.9
cool_down_secs = 2

[apps.mapping]
userName = {{ from = "Username", required = true }}
"name.givenName" = "FirstName"
"name.familyName" = {{ from = "LastName", required = true }}
displayName = "Alias"
'emails[type eq "work"].value' = {{ from = "Email", required = true }}
externalId = "Id"
title = "Title"
"#
    )
}

/// Posts an Outbound Message until the webhook acknowledges it, as Salesforce retries for 24 h.
/// Returns how many posts failed first.
async fn deliver(http: &reqwest::Client, url: &str, body: &str, give_up: Instant) -> u64 {
    let mut failures = 0;
    loop {
        let outcome = http
            .post(url)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(body.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match outcome {
            Ok(response) if response.status().is_success() => return failures,
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                panic!("the webhook refused a well-formed Outbound Message with {status}: {text}");
            }
            _ => {}
        }
        failures += 1;
        assert!(
            Instant::now() < give_up,
            "the webhook did not acknowledge an Outbound Message in time"
        );
        tokio::time::sleep(Duration::from_millis(100 + 50 * failures.min(10))).await;
    }
}

async fn queue_depth(http: &reqwest::Client, base: &str) -> Option<Value> {
    let response = http
        .get(format!("{base}/queue"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Every log entry, through the log API's pages (`authorization`: the header to send, if any).
pub async fn all_log_entries(
    http: &reqwest::Client,
    base: &str,
    authorization: Option<&str>,
) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http
            .get(format!("{base}/logs"))
            .query(&[("limit", "500")])
            .timeout(Duration::from_secs(120));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return entries,
        }
    }
}

/// Every user in a SCIM tenant, through its pages.
async fn all_scim_users(http: &reqwest::Client, base_url: &str, token: &str) -> Vec<Value> {
    let mut users = Vec::new();
    loop {
        let page: Value = http
            .get(format!("{base_url}/Users"))
            .bearer_auth(token)
            .query(&[
                ("startIndex", (users.len() + 1).to_string()),
                ("count", "500".to_owned()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        let total = page["totalResults"].as_u64().unwrap_or(0);
        let got = resources.len();
        users.extend(resources);
        if got == 0 || users.len() as u64 >= total {
            return users;
        }
    }
}

/// What differs between an account and the snapshot it should reflect.
fn differences(account: &Value, expected: &Snapshot) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, actual: &Value, wanted: &str| {
        if actual.as_str() != Some(wanted) {
            diffs.push(format!("{what} is {actual}, expected {wanted:?}"));
        }
    };
    check(
        "name.givenName",
        &account["name"]["givenName"],
        &expected.first_name,
    );
    check(
        "name.familyName",
        &account["name"]["familyName"],
        &expected.last_name,
    );
    check("title", &account["title"], &expected.title);
    if let Some(email) = &expected.email {
        check("emails[0].value", &account["emails"][0]["value"], email);
    }
    diffs
}

/// The event stream of a run: the users, the deliveries in their (disordered, duplicated) order,
/// and the Outbound Messages carrying them.
pub struct Scenario {
    users: Vec<User>,
    deliveries: Vec<Delivery>,
    messages: Vec<String>,
    /// Distinct notification ids, 18-character.
    events: BTreeSet<String>,
}

impl Scenario {
    /// The stream for `settings`, and the random source the rest of the run draws from.
    pub fn generate(settings: &ChaosSettings) -> (Self, StdRng) {
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let users = generate_users(settings, &mut rng);
        let deliveries = plan_deliveries(&users, &mut rng);
        let messages = batch_messages(&users, &deliveries, &mut rng);
        let events = deliveries
            .iter()
            .map(|d| canonical(&d.notification_id))
            .collect();
        (
            Self {
                users,
                deliveries,
                messages,
                events,
            },
            rng,
        )
    }

    pub fn messages(&self) -> &[String] {
        &self.messages
    }
}

/// The target app: a scim2-server tenant behind the fault proxy, faulting at the run's rate.
pub struct FaultyTarget {
    pub scim: Scim2Server,
    pub proxy: FaultProxy,
    pub tenant: String,
}

impl FaultyTarget {
    pub async fn start(settings: &ChaosSettings) -> Self {
        let scim = Scim2Server::start();
        let tenant = format!("chaos-{}", ulid::Ulid::new().to_string().to_lowercase());
        let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", scim.port())).await;
        proxy.set_random_faults(Some(FaultMix {
            rate: settings.fault_rate,
            retry_after_secs: 1,
            slow_by: Duration::from_millis(1300),
        }));
        Self {
            scim,
            proxy,
            tenant,
        }
    }

    /// The SCIM base URL userprov is configured with: through the proxy.
    pub fn base_url(&self) -> String {
        format!("{}/{}/v2", self.proxy.url(), self.tenant)
    }
}

/// What the judge reads from the system under test once it is quiet.
pub struct Observed {
    /// Every log entry (the log API's JSON).
    pub log: Vec<Value>,
    /// The usernames of the jobs in the dead-letter queue (or what made a body unreadable).
    pub dead_lettered: Vec<String>,
    pub quiescent: bool,
    pub kills: usize,
    pub webhook_resends: u64,
    pub drain: Duration,
}

/// The username of a dead-lettered job body, or why it cannot be read.
pub fn dead_letter_username(message_id: &str, body: &str) -> String {
    match Job::from_body(body) {
        Ok(job) => job.user.username().unwrap_or("?").to_owned(),
        Err(error) => format!("unreadable dead letter {message_id}: {error}"),
    }
}

/// A deployed system under test: how to tell it is quiet and what it recorded.
pub trait DeployedSystem {
    /// Messages visible, in flight or delayed; `None` when it cannot be read now.
    fn busy(&self) -> impl std::future::Future<Output = Option<u64>> + Send;
    fn log_entries(&self) -> impl std::future::Future<Output = Vec<Value>> + Send;
    fn dead_lettered(&self) -> impl std::future::Future<Output = Vec<String>> + Send;
}

/// The same scenario and judge as [`run`], against a deployment (no process to kill): the
/// messages go to `webhook_url`, the target is `target` (which the deployment's configuration
/// must point at, see [`FaultyTarget::base_url`]).
pub async fn run_deployed<S: DeployedSystem>(
    settings: ChaosSettings,
    webhook_url: &str,
    target: &FaultyTarget,
    system: &S,
) -> ChaosReport {
    let started = Instant::now();
    let (scenario, _rng) = Scenario::generate(&settings);
    let http = reqwest::Client::new();
    let give_up = Instant::now() + Duration::from_secs(1800);
    let resends = send_all(
        &http,
        webhook_url,
        scenario.messages(),
        settings.senders,
        give_up,
    )
    .await;
    let all_sent = Instant::now();

    let drain_deadline = Instant::now() + settings.drain_timeout;
    let mut idle_looks = 0;
    let quiescent = loop {
        if Instant::now() > drain_deadline {
            break false;
        }
        idle_looks = if system.busy().await == Some(0) {
            idle_looks + 1
        } else {
            0
        };
        if idle_looks >= 3 {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drain = all_sent.elapsed();
    let observed = Observed {
        log: system.log_entries().await,
        dead_lettered: system.dead_lettered().await,
        quiescent,
        kills: 0,
        webhook_resends: resends,
        drain,
    };
    target.proxy.set_random_faults(None);
    judge(settings, &scenario, target, observed, started).await
}

/// Sends every message with `senders` in parallel, each until acknowledged; returns the resends.
async fn send_all(
    http: &reqwest::Client,
    url: &str,
    messages: &[String],
    senders: usize,
    give_up: Instant,
) -> u64 {
    let next = AtomicUsize::new(0);
    let resends = AtomicU64::new(0);
    let sender = || async {
        while let Some(body) = messages.get(next.fetch_add(1, Ordering::SeqCst)) {
            let failed = deliver(http, url, body, give_up).await;
            resends.fetch_add(failed, Ordering::SeqCst);
        }
    };
    futures::future::join_all((0..senders.max(1)).map(|_| sender())).await;
    resends.load(Ordering::SeqCst)
}

/// Runs the whole scenario and reports; the caller asserts.
pub async fn run(settings: ChaosSettings) -> ChaosReport {
    let started = Instant::now();
    let (scenario, mut rng) = Scenario::generate(&settings);
    let messages = scenario.messages.clone();
    let target = FaultyTarget::start(&settings).await;
    let scim = &target.scim;

    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let config_path = work.path().join("userprov.toml");
    write_file(&config_path, &config(&target.base_url(), "userprov/scim"));
    write_file(&data_dir.join("secrets/userprov/scim"), &scim.token);
    let webhook_token = format!("chaos-token-{}", ulid::Ulid::new());
    write_file(
        &data_dir.join("secrets/userprov/webhook-token"),
        &webhook_token,
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let webhook_url = format!("{base}/salesforce/outbound/{webhook_token}");
    let serve = Arc::new(tokio::sync::Mutex::new(Serve {
        binary: userprov_binary(),
        config: config_path,
        data_dir: data_dir.clone(),
        port,
        workers: settings.workers,
        starts: 0,
        process: None,
    }));
    serve.lock().await.start();

    // Kills at random points of the sending, and one more while the worker drains the queue.
    let mut kill_points: BTreeSet<usize> = BTreeSet::new();
    let sending_kills = settings.kills.saturating_sub(1);
    while kill_points.len() < sending_kills.min(messages.len()) {
        kill_points.insert(rng.random_range(1..messages.len()));
    }
    let kills_done = Arc::new(AtomicUsize::new(0));

    let http = reqwest::Client::new();
    let give_up = Instant::now() + Duration::from_secs(1800);
    let messages = Arc::new(messages);
    let next = Arc::new(AtomicUsize::new(0));
    let resends = Arc::new(AtomicU64::new(0));
    let kill_points = Arc::new(kill_points);
    let senders: Vec<_> = (0..settings.senders.max(1))
        .map(|_| {
            let (messages, next, resends, http, url, serve, kill_points, kills_done) = (
                messages.clone(),
                next.clone(),
                resends.clone(),
                http.clone(),
                webhook_url.clone(),
                serve.clone(),
                kill_points.clone(),
                kills_done.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(body) = messages.get(index) else {
                        return;
                    };
                    if kill_points.contains(&index) {
                        let mut serve = serve.lock().await;
                        serve.kill();
                        kills_done.fetch_add(1, Ordering::SeqCst);
                        serve.start();
                    }
                    let failed = deliver(&http, &url, body, give_up).await;
                    resends.fetch_add(failed, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let all_sent = Instant::now();

    if settings.kills > 0 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        let mut serve = serve.lock().await;
        serve.kill();
        kills_done.fetch_add(1, Ordering::SeqCst);
        serve.start();
    }

    // Quiescence: nothing visible, in flight or delayed, three looks in a row.
    let drain_deadline = Instant::now() + settings.drain_timeout;
    let mut idle_looks = 0;
    let quiescent = loop {
        if Instant::now() > drain_deadline {
            break false;
        }
        let depth = queue_depth(&http, &base).await;
        let busy = depth.as_ref().map_or(u64::MAX, |d| {
            ["visible", "in_flight", "delayed"]
                .iter()
                .map(|k| d[*k].as_u64().unwrap_or(u64::MAX))
                .fold(0, u64::saturating_add)
        });
        idle_looks = if busy == 0 { idle_looks + 1 } else { 0 };
        if idle_looks >= 3 {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drain = all_sent.elapsed();

    let log = all_log_entries(&http, &base, None).await;
    serve.lock().await.kill();
    target.proxy.set_random_faults(None);

    // The dead-letter queue, read from the data directory the process left behind.
    let db = EmbeddedDb::open(&data_dir).unwrap();
    let queue = EmbeddedQueue::new(db, QueueSettings::default(), Arc::new(SystemClock));
    let dead_lettered: Vec<String> = queue
        .dead_letters(usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|letter| dead_letter_username(&letter.message_id, &letter.body))
        .collect();
    let observed = Observed {
        log,
        dead_lettered,
        quiescent,
        kills: kills_done.load(Ordering::SeqCst),
        webhook_resends: resends.load(Ordering::SeqCst),
        drain,
    };
    judge(settings, &scenario, &target, observed, started).await
}

/// Compares what the system recorded and what the target holds with the scenario.
async fn judge(
    settings: ChaosSettings,
    scenario: &Scenario,
    target: &FaultyTarget,
    observed: Observed,
    started: Instant,
) -> ChaosReport {
    let Scenario {
        users,
        deliveries,
        messages,
        events,
    } = scenario;
    let scim = &target.scim;
    let tenant = &target.tenant;
    let http = reqwest::Client::new();
    let log = &observed.log;
    let mut dead_lettered = observed.dead_lettered.clone();
    dead_lettered.sort();
    // Terminal entries, by event.
    let mut terminal: BTreeSet<String> = BTreeSet::new();
    let mut retries = 0;
    for entry in log {
        match entry["status"].as_str() {
            Some("retrying") => retries += 1,
            Some(_) => {
                if let Some(event) = entry["event_id"].as_str() {
                    terminal.insert(event.to_owned());
                }
            }
            None => {}
        }
    }
    let events_without_terminal_entry: Vec<String> =
        events.difference(&terminal).cloned().collect();

    // The target against the newest snapshot of every user.
    let accounts = all_scim_users(&http, &scim.tenant_url(tenant), &scim.token).await;
    let mut by_username: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for account in &accounts {
        by_username
            .entry(account["userName"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(account);
    }
    let duplicate_accounts: Vec<String> = by_username
        .iter()
        .filter(|(_, accounts)| accounts.len() > 1)
        .map(|(name, accounts)| format!("{name} ×{}", accounts.len()))
        .collect();
    let mut differing = Vec::new();
    let known: BTreeSet<&str> = users.iter().map(|u| u.username.as_str()).collect();
    for name in by_username.keys() {
        if !known.contains(name.as_str()) {
            differing.push(format!("{name}: an account for a user never sent"));
        }
    }
    for user in users {
        let newest = user
            .versions
            .last()
            .expect("every user has a first snapshot");
        let found = by_username.get(&user.username);
        let account = found.and_then(|a| a.first());
        let problem = match (account, user.designed_to_fail) {
            (Some(_), true) => Some("has an account but was designed to fail".to_owned()),
            (None, true) => None,
            (None, false) if newest.active => Some("active, but has no account".to_owned()),
            (None, false) => None,
            (Some(account), false) => {
                let active = account["active"].as_bool().unwrap_or(true);
                if active != newest.active {
                    Some(format!(
                        "account active={active}, newest snapshot IsActive={}",
                        newest.active
                    ))
                } else if newest.active {
                    let diffs = differences(account, newest);
                    (!diffs.is_empty()).then(|| diffs.join("; "))
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            differing.push(format!("{}: {problem}", user.username));
        }
    }
    let designed_failures: Vec<String> = users
        .iter()
        .filter(|u| u.designed_to_fail)
        .map(|u| u.username.clone())
        .collect();

    ChaosReport {
        events: events.len(),
        deliveries: deliveries.len(),
        messages: messages.len(),
        webhook_resends: observed.webhook_resends,
        kills: observed.kills,
        faults: target.proxy.fault_counts(),
        quiescent: observed.quiescent,
        retries,
        log_entries: log.len(),
        differing,
        duplicate_accounts,
        events_without_terminal_entry,
        dead_lettered,
        designed_failures,
        elapsed: started.elapsed(),
        drain: observed.drain,
        settings,
    }
}

/// The 18-character form of an id, as the log records it.
fn canonical(id: &str) -> String {
    SalesforceId::parse(id)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_else(|_| id.to_owned())
}
