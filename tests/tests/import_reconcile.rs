//! `userprov import` and `userprov reconcile` run as processes (the built binary) against a
//! real scim2-server tenant preloaded with accounts: some matching Salesforce users, some
//! duplicates, some orphans. Exit codes: 0 done, 2 bad input or configuration, 1 other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use userprov_core::embedded::{EmbeddedDb, EmbeddedQueue, QueueSettings};
use userprov_core::ids::SalesforceId;
use userprov_core::ports::SystemClock;
use userprov_tests::chaos::userprov_binary;
use userprov_tests::peers::scim2_server::Scim2Server;

const HEADER: &str = "Id,Username,FirstName,LastName,Email,Title,IsActive";

fn user_id(n: u32) -> String {
    SalesforceId::parse(&format!("0058a00000Imp{n:02}"))
        .unwrap()
        .to_string()
}

struct Setup {
    _work: tempfile::TempDir,
    dir: PathBuf,
    data_dir: PathBuf,
    config: PathBuf,
    base_url: String,
    server: Arc<Scim2Server>,
}

impl Setup {
    fn new() -> Self {
        let server = Scim2Server::shared();
        let base_url = server.tenant_url(&format!("import-{}", ulid::Ulid::new()).to_lowercase());
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().to_path_buf();
        let data_dir = dir.join("data");
        let config = dir.join("userprov.toml");
        write(
            &config,
            &format!(
                r#"
[source]
org_ids = ["00D8a000002bQxTEAU"]

[worker]
request_timeout_secs = 10

[[apps]]
name = "wiki"
base_url = "{base_url}"
secret = "userprov/wiki"
match_on = ['emails[type eq "work"].value']

[apps.mapping]
userName = {{ from = "Username", required = true }}
"name.givenName" = "FirstName"
"name.familyName" = {{ from = "LastName", required = true }}
'emails[type eq "work"].value' = {{ from = "Email", required = true }}
title = "Title"
"#
            ),
        );
        write(&data_dir.join("secrets/userprov/wiki"), &server.token);
        Self {
            _work: work,
            dir,
            data_dir,
            config,
            base_url,
            server,
        }
    }

    fn userprov(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        eprintln!(
            "$ userprov {}\n-- exit {:?}\n-- stdout\n{}-- stderr\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(userprov_binary());
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("USERPROV_CONFIG_FILE")
            .stdin(Stdio::null());
        command
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }

    async fn preload(
        &self,
        user_name: &str,
        email: &str,
        name: (&str, &str),
        title: &str,
    ) -> String {
        let answer = reqwest::Client::new()
            .post(format!("{}/Users", self.base_url))
            .bearer_auth(&self.server.token)
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "name": {"givenName": name.0, "familyName": name.1},
                "emails": [{"type": "work", "value": email, "primary": true}],
                "title": title,
                "active": true
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            201,
            "{}",
            answer.text().await.unwrap()
        );
        let created: Value = answer.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    async fn target_count(&self) -> u64 {
        let list: Value = reqwest::Client::new()
            .get(format!("{}/Users", self.base_url))
            .bearer_auth(&self.server.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["totalResults"].as_u64().unwrap()
    }

    /// Messages in the embedded queue (the command that wrote them has exited).
    async fn queued(&self) -> u64 {
        let db = EmbeddedDb::open(&self.data_dir).unwrap();
        let queue = EmbeddedQueue::new(db, QueueSettings::default(), Arc::new(SystemClock));
        let depth = queue.depth().await.unwrap();
        depth.visible + depth.in_flight + depth.delayed + depth.dead_lettered
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Salesforce users 1..=4: Marta (one matching account, same attributes), Ana (one matching
/// account, another title), Joe (two accounts with his email), Nina (no account), and Old (an
/// inactive user with no account).
fn org_export() -> String {
    format!(
        "{HEADER}\n\
         {},marta@acme.example,Marta,Fernandes,marta@acme.example,Engineer,true\n\
         {},ana@acme.example,Ana,Silva,ana@acme.example,Director,true\n\
         {},joe@acme.example,Joe,Bloggs,joe@acme.example,,true\n\
         {},nina@acme.example,Nina,Park,nina@acme.example,,true\n\
         {},old@acme.example,Old,User,old@acme.example,,false\n",
        user_id(1),
        user_id(2),
        user_id(3),
        user_id(4),
        user_id(5)
    )
}

/// The accounts the app had before userprov: two matching, two duplicates, one orphan.
async fn preload_app(setup: &Setup) -> (String, String, Vec<String>, String) {
    let marta = setup
        .preload(
            "Marta@acme.example",
            "marta@acme.example",
            ("Marta", "Fernandes"),
            "Engineer",
        )
        .await;
    let ana = setup
        .preload("ana.silva", "ana@acme.example", ("Ana", "Silva"), "Manager")
        .await;
    let joe = vec![
        setup
            .preload("joe", "joe@acme.example", ("Joe", "Bloggs"), "")
            .await,
        setup
            .preload("joe.bloggs", "joe@acme.example", ("Joe", "Bloggs"), "")
            .await,
    ];
    let orphan = setup
        .preload(
            "contractor",
            "someone@elsewhere.example",
            ("Tem", "Porary"),
            "",
        )
        .await;
    (marta, ana, joe, orphan)
}

fn category_of<'a>(report: &'a Value, target_id: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["target_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == target_id)
        })
        .map(|f| f["category"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn reconcile_reports_each_kind_of_account_and_apply_links_only_the_matchable_ones() {
    let setup = Setup::new();
    let (marta, ana, joe, orphan) = preload_app(&setup).await;
    let users = setup.file("users.csv", org_export().as_bytes());

    let table = setup.userprov(&["reconcile", "--app", "wiki", "--users", &users]);
    assert_eq!(table.status.code(), Some(0));
    let text = stdout(&table);
    for word in [
        "matchable",
        "duplicate",
        "orphaned",
        "unmatched",
        "give --apply",
    ] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }

    let before = setup.userprov(&["reconcile", "--app", "wiki", "--users", &users, "--json"]);
    assert_eq!(before.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&before.stdout).unwrap();
    assert_eq!(report["target_accounts"], 5);
    assert_eq!(report["salesforce_users"], 5);
    assert_eq!(category_of(&report, &marta), ["matchable"]);
    assert_eq!(category_of(&report, &ana), ["matchable"]);
    assert_eq!(category_of(&report, &joe[0]), ["duplicate"]);
    assert_eq!(category_of(&report, &joe[1]), ["duplicate"]);
    assert_eq!(category_of(&report, &orphan), ["orphaned"]);
    assert_eq!(
        report["summary"]["unmatched"], 2,
        "Nina and Old have no account"
    );
    assert_eq!(report["summary"]["linked"], 0);

    let applied = setup.userprov(&["reconcile", "--app", "wiki", "--users", &users, "--apply"]);
    assert_eq!(applied.status.code(), Some(0));
    assert!(stdout(&applied).contains("linked 2 matchable account(s)"));

    // Without the export: the users come from the snapshots of the links just written.
    let after = setup.userprov(&["reconcile", "--app", "wiki", "--json"]);
    assert_eq!(after.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(report["salesforce_users"], 2);
    assert_eq!(category_of(&report, &marta), ["linked"]);
    assert_eq!(category_of(&report, &ana), ["drift"]);
    let drift = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["category"] == "drift")
        .unwrap();
    let detail = drift["detail"].as_str().unwrap();
    assert!(detail.contains("title"), "{detail}");
    assert!(detail.contains("userName"), "{detail}");
    assert!(!detail.contains("emails"), "the email matches: {detail}");
    assert_eq!(category_of(&report, &orphan), ["orphaned"]);
    assert_eq!(category_of(&report, &joe[0]), ["orphaned"]);

    let csv = setup.userprov(&["reconcile", "--app", "wiki", "--users", &users, "--csv"]);
    assert_eq!(csv.status.code(), Some(0));
    let csv = stdout(&csv);
    assert!(
        csv.starts_with("category,user_id,username,target_ids,detail\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 6, "one line per finding: {csv}");
    assert!(csv.contains("old@acme.example,,\"no account has"), "{csv}");
    assert!(csv.contains("the user is inactive: nothing to do"), "{csv}");

    assert_eq!(
        setup.target_count().await,
        5,
        "reconcile never deletes or creates"
    );
}

#[tokio::test]
async fn reconcile_of_an_unknown_app_or_a_bad_export_exits_2() {
    let setup = Setup::new();
    let unknown = setup.userprov(&["reconcile", "--app", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no app named \"nope\""));
    let bad = setup.file("bad.csv", b"Username,IsActive\nx,true\n");
    let refused = setup.userprov(&["reconcile", "--app", "wiki", "--users", &bad]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("bad.csv:1: missing required column Id"));
}

#[tokio::test]
async fn a_bad_csv_is_refused_with_errors_by_line_and_nothing_is_queued() {
    let setup = Setup::new();
    let missing = setup.file(
        "missing.csv",
        format!(
            "Id,Username,LastName,IsActive\n{},a@x.example,A,true\n",
            user_id(1)
        )
        .as_bytes(),
    );
    let refused = setup.userprov(&["import", "--app", "wiki", &missing]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("missing.csv:1: missing required column Email"),
        "{}",
        stderr(&refused)
    );

    let mut bytes = format!("{HEADER}\n").into_bytes();
    bytes.extend(format!("{},a@x.example,A,A,a@x.example,,true\n", user_id(1)).as_bytes());
    bytes.extend(
        format!(
            "{},b@x.example,B,B,b@x.example,Ing\u{e9}nieur,true\n",
            user_id(2)
        )
        .as_bytes(),
    );
    // Latin-1 "é" in a UTF-8 file.
    bytes.extend(format!("{},c@x.example,C,C,c@x.example,Caf", user_id(3)).as_bytes());
    bytes.extend(b"\xe9,true\n");
    // The 15-character form of line 2's id.
    bytes.extend(format!("{},d@x.example,D,D,d@x.example,,true\n", &user_id(1)[..15]).as_bytes());
    bytes.extend(b"0010000000001AB,e@x.example,E,E,e@x.example,,true\n");
    bytes.extend(format!("{},f@x.example,F,,f@x.example,,true\n", user_id(6)).as_bytes());
    let bad = setup.file("bad.csv", &bytes);

    let refused = setup.userprov(&["import", "--app", "wiki", &bad]);
    assert_eq!(refused.status.code(), Some(2));
    let errors = stderr(&refused);
    assert!(
        errors.contains("bad.csv:4: column Title is not UTF-8"),
        "{errors}"
    );
    assert!(
        errors.contains(&format!(
            "bad.csv:5: duplicate user: {} is the user of line 2",
            &user_id(1)[..15]
        )),
        "{errors}"
    );
    assert!(
        errors.contains("bad.csv:6: Id \"0010000000001AB\" is not a User id"),
        "{errors}"
    );
    assert!(
        errors.contains("bad.csv:7: required column LastName is empty"),
        "{errors}"
    );
    assert!(
        errors.contains("4 of 6 row(s) are invalid; nothing was queued"),
        "{errors}"
    );
    assert!(
        !errors.contains("bad.csv:2:") && !errors.contains("bad.csv:3:"),
        "{errors}"
    );
    assert_eq!(setup.queued().await, 0);

    let skipped = setup.userprov(&["import", "--app", "wiki", &bad, "--skip-invalid"]);
    assert_eq!(skipped.status.code(), Some(0));
    assert!(stdout(&skipped).contains("skipping 4 invalid row(s) of 6"));
    assert!(stderr(&skipped).contains("bad.csv:5: duplicate user"));
    assert_eq!(setup.queued().await, 2, "only the two valid rows");
}

#[tokio::test]
async fn an_interrupted_import_resumes_where_it_stopped_without_duplicating_jobs() {
    let setup = Setup::new();
    let mut text = format!("{HEADER}\n");
    for n in 0..300u32 {
        let id = SalesforceId::parse(&format!("0058a0000{n:06}")).unwrap();
        text.push_str(&format!(
            "{id},u{n}@acme.example,U,N{n},u{n}@acme.example,,true\n"
        ));
    }
    let file = setup.file("org.csv", text.as_bytes());

    let mut first = setup
        .command(&["import", "--app", "wiki", &file, "--rate", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let imports = setup.data_dir.join("imports");
    let give_up = Instant::now() + Duration::from_secs(60);
    let checkpointed = loop {
        let checkpoint = std::fs::read_dir(&imports)
            .ok()
            .and_then(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .find(|path| path.extension().is_some_and(|e| e == "json"))
            })
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|checkpoint| checkpoint["last_row"].as_u64());
        if checkpoint.is_some_and(|row| row >= 100) || Instant::now() >= give_up {
            break checkpoint;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let interrupted_after = checkpointed.expect("the import never wrote a checkpoint");
    assert!(
        interrupted_after < 300,
        "the import finished before it was interrupted"
    );

    let resumed = setup.userprov(&["import", "--app", "wiki", &file, "--rate", "0"]);
    assert_eq!(resumed.status.code(), Some(0));
    let out = stdout(&resumed);
    assert!(out.contains("resuming after row"), "{out}");
    assert_eq!(setup.queued().await, 300, "every row once");

    let again = setup.userprov(&["import", "--app", "wiki", &file]);
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).contains("already imported"));
    assert_eq!(setup.queued().await, 300);
}

#[tokio::test]
async fn a_dry_run_with_check_target_tells_create_from_adopt_and_queues_nothing() {
    let setup = Setup::new();
    preload_app(&setup).await;
    let users = setup.file("users.csv", org_export().as_bytes());
    let dry = setup.userprov(&[
        "import",
        "--app",
        "wiki",
        &users,
        "--dry-run",
        "--check-target",
    ]);
    assert_eq!(dry.status.code(), Some(0));
    let out = stdout(&dry);
    let count = |kind: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("would {kind} ")))
            .map(|rest| rest.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no 'would {kind}' in:\n{out}"))
    };
    assert_eq!(count("adopt"), 2, "Marta and Ana");
    assert_eq!(count("create"), 1, "Nina");
    assert_eq!(count("skip"), 2, "Joe (two accounts) and Old (inactive)");
    assert!(
        out.contains("the user is inactive and has no account"),
        "{out}"
    );
    assert!(out.contains("2 accounts match"), "{out}");
    assert!(out.contains("nothing queued"));
    assert_eq!(setup.queued().await, 0);

    let plain = setup.userprov(&["import", "--app", "wiki", &users, "--dry-run"]);
    assert!(stdout(&plain).contains("would create or adopt"));
}

#[tokio::test]
async fn the_progress_bar_is_drawn_on_a_terminal_and_not_in_a_pipe() {
    let setup = Setup::new();
    let mut text = format!("{HEADER}\n");
    for n in 0..60u32 {
        let id = SalesforceId::parse(&format!("0058a0001{n:06}")).unwrap();
        text.push_str(&format!(
            "{id},p{n}@acme.example,P,N,p{n}@acme.example,,true\n"
        ));
    }
    let file = setup.file("org.csv", text.as_bytes());
    let piped = setup.userprov(&["import", "--app", "wiki", &file, "--rate", "30"]);
    assert_eq!(piped.status.code(), Some(0));
    assert!(!stderr(&piped).contains("rows ("), "{}", stderr(&piped));

    // `script` runs the command under a pseudo-terminal.
    let line = format!(
        "{} import --app wiki {file} --rate 30 --config {} --data-dir {}",
        userprov_binary().display(),
        setup.config.display(),
        setup.dir.join("tty-data").display()
    );
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("`script` (util-linux) runs a command under a pseudo-terminal: apt-get install bsdutils");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(shown.contains("/60 rows ("), "no progress bar in:\n{shown}");
    assert!(shown.contains("queued 60 job(s)"), "{shown}");
}
