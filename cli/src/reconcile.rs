//! `userprov reconcile`: compares the accounts a target has with the Salesforce users userprov
//! knows (account link snapshots and/or an export), like Salesforce's "collect and analyze":
//! linked, drift, matchable (would be adopted), duplicates, orphaned, and unmatched (would be
//! created). `--apply` links the matchable accounts; nothing is ever deleted or changed in the
//! target.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;
use serde_json::Value;
use userprov_core::config::AppConfig;
use userprov_core::connector::rate_limit::RateLimiter;
use userprov_core::connector::scim::{ScimConnector, ScimSettings, http_client};
use userprov_core::connector::{MatchKey, TargetAccount};
use userprov_core::credentials::SecretCredentials;
use userprov_core::embedded::{EmbeddedStore, LocalSecretStore};
use userprov_core::ids::SalesforceId;
use userprov_core::link::{AccountLink, ManagedBy};
use userprov_core::mapping::TargetPath;
use userprov_core::ports::LinkStore;
use userprov_core::source::SourceUser;
use userprov_core::worker::match_keys;

use crate::import::{Failure, find_app, load_config, open_db};
use crate::user_csv::{Row, UserCsv};

/// Users per page read from the target.
pub const PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    pub app: String,
    pub format: Format,
    pub apply: bool,
    pub users: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Linked, and the account holds what the mapping gives.
    Linked,
    /// Linked, but the account differs from the mapping (or is gone).
    Drift,
    /// One unlinked account matches the user on `match_on`: it would be adopted.
    Matchable,
    /// Several unlinked accounts match the user: userprov will not pick one.
    Duplicate,
    /// No account matches: one would be created.
    Unmatched,
    /// An account that matches no Salesforce user: left alone.
    Orphaned,
    /// The user cannot be mapped (a required attribute is empty...).
    Unmappable,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Drift => "drift",
            Self::Matchable => "matchable",
            Self::Duplicate => "duplicate",
            Self::Unmatched => "unmatched",
            Self::Orphaned => "orphaned",
            Self::Unmappable => "unmappable",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub category: Category,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub target_ids: Vec<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub app: String,
    pub target_accounts: usize,
    pub salesforce_users: usize,
    pub summary: BTreeMap<&'static str, usize>,
    /// Links written by `--apply`.
    pub adopted: usize,
    pub findings: Vec<Finding>,
}

/// SCIM compares `userName` and `emails` without regard to case (RFC 7643 `caseExact: false`).
fn ignores_case(attribute: &str) -> bool {
    let first = attribute.split(['.', '[']).next().unwrap_or_default();
    first.eq_ignore_ascii_case("userName") || first.eq_ignore_ascii_case("emails")
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// The value as compared: text, lowercased where SCIM ignores case.
fn comparable(attribute: &str, value: &Value) -> Option<Value> {
    match as_text(value) {
        Some(text) if ignores_case(attribute) => Some(Value::String(text.to_lowercase())),
        Some(text) => Some(Value::String(text)),
        None => Some(value.clone()),
    }
}

/// The mapped attributes whose value in the account differs from the mapped payload.
/// Attributes the mapping leaves empty for this user are not compared.
pub fn drifted(paths: &[TargetPath], payload: &Value, resource: &Value) -> Vec<String> {
    paths
        .iter()
        .filter_map(|path| {
            let want = path.read(payload)?;
            let have = path.read(resource);
            let same =
                have.is_some_and(|have| comparable(&path.raw, want) == comparable(&path.raw, have));
            (!same).then(|| {
                format!(
                    "{}: target has {}, mapping gives {}",
                    path.raw,
                    have.map_or("nothing".to_owned(), Value::to_string),
                    want
                )
            })
        })
        .collect()
}

fn connector(
    app: &AppConfig,
    config: &userprov_core::config::Config,
    options: &ReconcileOptions,
) -> Result<ScimConnector, Failure> {
    let bad = |e: userprov_core::connector::ConnectorError| Failure::bad_input(e.to_string());
    let http = http_client(config.worker.request_timeout()).map_err(bad)?;
    let secrets = Arc::new(LocalSecretStore::new(options.data_dir.join("secrets")));
    let scim = ScimConnector::new(
        http.clone(),
        ScimSettings {
            base_url: app.base_url.clone(),
            timeout: config.worker.request_timeout(),
        },
        Arc::new(SecretCredentials::new(secrets, &app.secret, http)),
    );
    Ok(
        match app
            .rate_limit
            .as_ref()
            .map(RateLimiter::new)
            .transpose()
            .map_err(bad)?
        {
            Some(limiter) => scim.with_rate_limit(Arc::new(limiter)),
            None => scim,
        },
    )
}

/// The users of an export, keyed by id; any invalid row fails the command (exit 2).
fn users_from_csv(path: &std::path::Path) -> Result<Vec<SourceUser>, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", path.display())))?;
    let mut csv = UserCsv::new(BufReader::new(file), &[]).map_err(|e| {
        if e.is_bad_input() {
            Failure::bad_input(e.at(path))
        } else {
            Failure::other(e.at(path))
        }
    })?;
    let mut users = Vec::new();
    let mut errors = String::new();
    while let Some(next) = csv.next_row() {
        match next.map_err(|e| Failure::other(format!("{}: {e}", path.display())))? {
            Row::Valid { user, .. } => users.push(user),
            Row::Invalid { line, problems, .. } => {
                let _ = writeln!(errors, "{}:{line}: {}", path.display(), problems.join("; "));
            }
        }
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(Failure::bad_input(format!(
            "{errors}the user file has invalid rows; nothing was reconciled"
        )))
    }
}

fn finding(
    category: Category,
    user: Option<&SourceUser>,
    target_ids: Vec<String>,
    detail: String,
) -> Finding {
    Finding {
        category,
        user_id: user.map(|u| u.id.to_string()),
        username: user.and_then(|u| u.username().map(str::to_owned)),
        target_ids,
        detail,
    }
}

pub async fn run(options: &ReconcileOptions) -> Result<String, Failure> {
    let config = load_config(options.config.as_deref())?;
    let app = find_app(&config, &options.app)?;
    let csv_users = match &options.users {
        Some(path) => users_from_csv(path)?,
        None => Vec::new(),
    };
    let scim = connector(app, &config, options)?;
    let db = open_db(&options.data_dir)?;
    let store = EmbeddedStore::new(db);

    let mut links: BTreeMap<SalesforceId, AccountLink> = BTreeMap::new();
    loop {
        let after = links
            .keys()
            .next_back()
            .map(|id| (app.name.clone(), id.to_string()));
        let page = store
            .list_links(
                Some(&app.name),
                after.as_ref().map(|(a, u)| (a.as_str(), u.as_str())),
                500,
            )
            .await
            .map_err(|e| Failure::other(e.to_string()))?;
        let done = page.len() < 500;
        links.extend(page.into_iter().map(|l| (l.user_id.clone(), l)));
        if done {
            break;
        }
    }
    // The export is newer than the snapshots userprov last applied.
    let mut users: BTreeMap<SalesforceId, SourceUser> = links
        .values()
        .filter_map(|l| l.snapshot.clone())
        .map(|u| (u.id.clone(), u))
        .collect();
    users.extend(csv_users.into_iter().map(|u| (u.id.clone(), u)));

    let accounts = scim
        .list_users(PAGE_SIZE)
        .await
        .map_err(|e| Failure::other(format!("cannot list the users of app {}: {e}", app.name)))?;
    let by_id: HashMap<&str, &TargetAccount> =
        accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let linked_accounts: BTreeMap<SalesforceId, String> = links
        .values()
        .filter_map(|l| l.target_id.clone().map(|t| (l.user_id.clone(), t)))
        .collect();
    let linked_ids: HashSet<&str> = linked_accounts.values().map(String::as_str).collect();
    // Unlinked accounts by their value of the first match_on attribute.
    let first_key = app
        .match_on
        .first()
        .and_then(|a| app.mapping.target_path(a).map(|p| (a, p)));
    let mut candidates: HashMap<String, Vec<&TargetAccount>> = HashMap::new();
    if let Some((attribute, path)) = first_key {
        for account in accounts
            .iter()
            .filter(|a| !linked_ids.contains(a.id.as_str()))
        {
            if let Some(value) = path.read(&account.resource).and_then(as_text) {
                let value = if ignores_case(attribute) {
                    value.to_lowercase()
                } else {
                    value
                };
                candidates.entry(value).or_default().push(account);
            }
        }
    }
    let paths: Vec<TargetPath> = app.mapping.target_paths().cloned().collect();

    let mut findings = Vec::new();
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut adoptable: Vec<(&SourceUser, &TargetAccount)> = Vec::new();
    for user in users.values() {
        let link = links.get(&user.id);
        if let Some(target_id) = link.and_then(AccountLink::account) {
            let Some(account) = by_id.get(target_id) else {
                findings.push(finding(
                    Category::Drift,
                    Some(user),
                    vec![target_id.to_owned()],
                    "the linked account is not in the target any more".into(),
                ));
                continue;
            };
            let finding_for = match app.mapping.apply_linked(user, &linked_accounts) {
                Err(error) => finding(
                    Category::Unmappable,
                    Some(user),
                    vec![target_id.to_owned()],
                    error.to_string(),
                ),
                Ok(payload) => {
                    let differences = drifted(&paths, &payload, &account.resource);
                    if differences.is_empty() {
                        finding(
                            Category::Linked,
                            Some(user),
                            vec![target_id.to_owned()],
                            String::new(),
                        )
                    } else {
                        finding(
                            Category::Drift,
                            Some(user),
                            vec![target_id.to_owned()],
                            differences.join("; "),
                        )
                    }
                }
            };
            findings.push(finding_for);
            continue;
        }
        let payload = match app.mapping.apply(user) {
            Ok(payload) => payload,
            Err(error) => {
                findings.push(finding(
                    Category::Unmappable,
                    Some(user),
                    Vec::new(),
                    error.to_string(),
                ));
                continue;
            }
        };
        let keys = match_keys(app, &payload);
        let Some(first) = keys.first() else {
            findings.push(finding(
                Category::Unmatched,
                Some(user),
                Vec::new(),
                format!(
                    "no value for match_on ({}): an account would be created",
                    app.match_on.join(", ")
                ),
            ));
            continue;
        };
        let wanted = if ignores_case(&first.attribute) {
            first.value.to_lowercase()
        } else {
            first.value.clone()
        };
        let matches: Vec<&TargetAccount> = candidates
            .get(&wanted)
            .map(|found| {
                found
                    .iter()
                    .copied()
                    .filter(|account| keys.iter().all(|key| holds(app, &account.resource, key)))
                    .collect()
            })
            .unwrap_or_default();
        let described: Vec<String> = keys
            .iter()
            .map(|k| format!("{} = {:?}", k.attribute, k.value))
            .collect();
        let ids: Vec<String> = matches.iter().map(|a| a.id.clone()).collect();
        claimed.extend(matches.iter().map(|a| a.id.as_str()));
        match matches.as_slice() {
            [] => findings.push(finding(
                Category::Unmatched,
                Some(user),
                ids,
                if user.is_active() == Some(false) {
                    format!(
                        "no account has {}; the user is inactive: nothing to do",
                        described.join(" and ")
                    )
                } else {
                    format!(
                        "no account has {}: one would be created",
                        described.join(" and ")
                    )
                },
            )),
            [account] => {
                let inactive = if user.is_active() == Some(false) {
                    "; the user is inactive in Salesforce"
                } else {
                    ""
                };
                findings.push(finding(
                    Category::Matchable,
                    Some(user),
                    ids,
                    format!("matches on {}{inactive}", described.join(" and ")),
                ));
                adoptable.push((user, account));
            }
            _ => findings.push(finding(
                Category::Duplicate,
                Some(user),
                ids,
                format!(
                    "{} accounts have {}: resolve it in the app",
                    matches.len(),
                    described.join(" and ")
                ),
            )),
        }
    }
    for account in &accounts {
        if linked_ids.contains(account.id.as_str()) || claimed.contains(account.id.as_str()) {
            continue;
        }
        findings.push(Finding {
            category: Category::Orphaned,
            user_id: None,
            username: userprov_core::connector::scim::listing::user_name(&account.resource)
                .map(str::to_owned),
            target_ids: vec![account.id.clone()],
            detail: "matches no Salesforce user: left alone".into(),
        });
    }

    let mut adopted = 0;
    if options.apply {
        for (user, account) in &adoptable {
            let link = AccountLink {
                app: app.name.clone(),
                user_id: user.id.clone(),
                username: user.username().map(str::to_owned),
                target_id: Some(account.id.clone()),
                active: account.active.unwrap_or(true),
                last_source_time: None,
                last_event_id: None,
                last_payload_hash: None,
                last_groups: Vec::new(),
                snapshot: Some((*user).clone()),
                managed_by: Some(ManagedBy::Adopted),
                version: 1,
                updated_at: time::OffsetDateTime::now_utc(),
            };
            store.put_link(&link, None).await.map_err(|e| {
                Failure::other(format!(
                    "cannot link user {} to account {}: {e}",
                    user.id, account.id
                ))
            })?;
            adopted += 1;
        }
    }

    findings.sort_by(|a, b| {
        (a.category, &a.username, &a.target_ids).cmp(&(b.category, &b.username, &b.target_ids))
    });
    let mut summary: BTreeMap<&'static str, usize> = BTreeMap::new();
    for category in [
        Category::Linked,
        Category::Drift,
        Category::Matchable,
        Category::Duplicate,
        Category::Unmatched,
        Category::Orphaned,
        Category::Unmappable,
    ] {
        summary.insert(
            category.as_str(),
            findings.iter().filter(|f| f.category == category).count(),
        );
    }
    let report = Report {
        app: app.name.clone(),
        target_accounts: accounts.len(),
        salesforce_users: users.len(),
        summary,
        adopted,
        findings,
    };
    render(&report, options)
}

fn holds(app: &AppConfig, resource: &Value, key: &MatchKey) -> bool {
    let Some(path) = app.mapping.target_path(&key.attribute) else {
        return false;
    };
    path.read(resource).and_then(as_text).is_some_and(|found| {
        if ignores_case(&key.attribute) {
            found.to_lowercase() == key.value.to_lowercase()
        } else {
            found == key.value
        }
    })
}

fn render(report: &Report, options: &ReconcileOptions) -> Result<String, Failure> {
    match options.format {
        Format::Json => serde_json::to_string_pretty(report)
            .map(|text| text + "\n")
            .map_err(|e| Failure::other(e.to_string())),
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let fail = |e: csv::Error| Failure::other(e.to_string());
            writer
                .write_record(["category", "user_id", "username", "target_ids", "detail"])
                .map_err(fail)?;
            for f in &report.findings {
                writer
                    .write_record([
                        f.category.as_str(),
                        f.user_id.as_deref().unwrap_or_default(),
                        f.username.as_deref().unwrap_or_default(),
                        &f.target_ids.join(" "),
                        &f.detail,
                    ])
                    .map_err(fail)?;
            }
            let bytes = writer
                .into_inner()
                .map_err(|e| Failure::other(e.to_string()))?;
            String::from_utf8(bytes).map_err(|e| Failure::other(e.to_string()))
        }
        Format::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(vec!["category", "user", "username", "target id", "detail"]);
            for f in &report.findings {
                table.add_row(vec![
                    f.category.as_str().to_owned(),
                    f.user_id.clone().unwrap_or_default(),
                    f.username.clone().unwrap_or_default(),
                    f.target_ids.join(" "),
                    f.detail.clone(),
                ]);
            }
            let mut out = format!("{table}\n");
            let _ = writeln!(
                out,
                "app {}: {} account(s) in the target, {} Salesforce user(s) known",
                report.app, report.target_accounts, report.salesforce_users
            );
            let counts: Vec<String> = report
                .summary
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "{}", counts.join(", "));
            if options.apply {
                let _ = writeln!(
                    out,
                    "linked {} matchable account(s) (managed_by adopted); nothing deleted",
                    report.adopted
                );
            } else if report.summary.get("matchable").copied().unwrap_or(0) > 0 {
                out.push_str("give --apply to link the matchable accounts\n");
            }
            Ok(out)
        }
    }
}
