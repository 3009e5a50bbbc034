//! The `userprov` command as operators and scripts use it, run as a process: `logs` (with
//! `--follow`) and `accounts` over a data directory and over a running `userprov serve`, tables
//! on a terminal and JSON for scripts, exit codes (0 done, 1 failed, 2 bad input) for every
//! command, `--help` examples and shell completions. The stack runs in-process with the built-in
//! mock target; the commands are the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use userprov_cli::stack::{RunningStack, StackOptions};
use userprov_tests::chaos::userprov_binary;
use userprov_tests::pipeline::{Notified, ORG_ID, outbound_message};

const ANA: &str = "0058a00000LmN2pAAF";
const BEN: &str = "0058a00000LmN3qAAF";
const CLEO: &str = "0058a00000LmN4rAAF";

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn data(&self) -> String {
        self.data_dir().to_str().unwrap().to_owned()
    }

    /// The built-in example configuration (app `slack`) against the built-in mock target.
    async fn start(&self) -> RunningStack {
        RunningStack::start(StackOptions {
            bind: ([127, 0, 0, 1], 0).into(),
            config: None,
            data_dir: self.data_dir(),
            mock_target: true,
            workers: 2,
        })
        .await
        .unwrap_or_else(|e| panic!("the stack did not start: {e}"))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(userprov_binary());
    command
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("USERPROV_CONFIG_FILE")
        .env_remove("USERPROV_LOG_API_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null());
    command
}

fn userprov(args: &[&str]) -> Output {
    let output = command(args).output().unwrap();
    eprintln!(
        "$ userprov {}\n-- exit {:?}\n-- stdout\n{}-- stderr\n{}",
        args.join(" "),
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// One Outbound Message notifying the given users; `minute` orders the changes.
fn users_changed(users: &[(&str, &str, bool, &str)], minute: u32) -> String {
    let stamp = format!("2025-03-01T10:{minute:02}:00.000Z");
    let owned: Vec<(String, String, String)> = users
        .iter()
        .map(|(_, name, active, _)| {
            (
                format!("{name}@acme.example"),
                name.to_string(),
                active.to_string(),
            )
        })
        .collect();
    let fields: Vec<Vec<(&str, &str)>> = users
        .iter()
        .zip(&owned)
        .map(|((_, _, _, title), (username, name, active))| {
            vec![
                ("Username", username.as_str()),
                ("FirstName", name.as_str()),
                ("LastName", "Tester"),
                ("Email", username.as_str()),
                ("Title", *title),
                ("IsActive", active.as_str()),
                ("SystemModstamp", stamp.as_str()),
            ]
        })
        .collect();
    let ids: Vec<String> = (0..users.len())
        .map(|i| format!("04l8a00000{minute:02}{i:03}"))
        .collect();
    let notified: Vec<Notified<'_>> = users
        .iter()
        .zip(&fields)
        .zip(&ids)
        .map(|(((user_id, _, _, _), fields), id)| Notified {
            notification_id: id.as_str(),
            user_id,
            fields,
        })
        .collect();
    outbound_message(ORG_ID, &notified)
}

async fn send(stack: &RunningStack, body: String) {
    let response = reqwest::Client::new()
        .post(stack.webhook_url())
        .header("content-type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(
        stack.wait_idle(Duration::from_secs(60)).await,
        "the worker did not become idle"
    );
}

/// Three joiners provisioned, then the stack stopped (the data directory is free).
async fn three_joiners(site: &Site) {
    let stack = site.start().await;
    send(
        &stack,
        users_changed(
            &[
                (ANA, "ana", true, "Engineer"),
                (BEN, "ben", true, "Analyst"),
                (CLEO, "cleo", true, "Designer"),
            ],
            1,
        ),
    )
    .await;
    stack.shutdown().await;
    wait_until_released(&site.data_dir()).await;
}

/// Blocking tasks of the stopped in-process stack can hold the database a moment after
/// `shutdown` returns (a stopped `userprov serve` process releases it on exit): wait for its
/// lock, as an operator would stop serve before using the data directory.
async fn wait_until_released(data_dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match userprov_core::embedded::EmbeddedDb::open(data_dir) {
            Ok(db) => {
                drop(db);
                return;
            }
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the stopped stack still holds {} after 10 s: {error}",
                    data_dir.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn logs_read_a_stopped_stacks_data_directory_filtered_like_the_api() {
    let site = Site::new();
    three_joiners(&site).await;
    let data = site.data();

    let all = userprov(&["logs", "--data-dir", &data, "--json"]);
    assert_eq!(all.status.code(), Some(0));
    let entries = json_lines(&all);
    assert_eq!(entries.len(), 3, "one entry per joiner");
    for entry in &entries {
        assert_eq!(entry["app"], "slack");
        assert_eq!(entry["operation"], "create");
        assert_eq!(entry["status"], "success");
        assert!(entry["target_id"].is_string());
    }
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first");

    let ana = json_lines(&userprov(&[
        "logs",
        "--data-dir",
        &data,
        "--user",
        "ana@acme.example",
        "--json",
    ]));
    assert_eq!(ana.len(), 1);
    assert_eq!(ana[0]["user_id"], ANA);
    let by_id = json_lines(&userprov(&[
        "logs",
        "--data-dir",
        &data,
        "--user",
        &ANA[..15],
        "--json",
    ]));
    assert_eq!(by_id, ana, "a 15-character id names the same user");

    let failed = userprov(&["logs", "--data-dir", &data, "--status", "failed", "--json"]);
    assert_eq!(failed.status.code(), Some(0));
    assert_eq!(stdout(&failed), "", "no failed entries");

    let newest_two = json_lines(&userprov(&[
        "logs",
        "--data-dir",
        &data,
        "--since",
        "1h",
        "--operation",
        "create",
        "-n",
        "2",
        "--json",
    ]));
    assert_eq!(
        newest_two,
        entries[1..].to_vec(),
        "the two newest, oldest first"
    );
    let none_yet = userprov(&[
        "logs",
        "--data-dir",
        &data,
        "--until",
        "2000-01-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(stdout(&none_yet), "");

    // Piped, the table is plain: no color codes.
    let table = userprov(&["logs", "--data-dir", &data]);
    assert_eq!(table.status.code(), Some(0));
    let text = stdout(&table);
    for expected in [
        "operation",
        "status",
        "ana@acme.example",
        "create",
        "success",
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "color codes in a pipe:\n{text}");
}

#[tokio::test]
async fn accounts_list_the_links_per_app_as_a_table_or_as_json() {
    let site = Site::new();
    three_joiners(&site).await;
    let data = site.data();

    let listed = userprov(&["accounts", "--data-dir", &data, "--json"]);
    assert_eq!(listed.status.code(), Some(0));
    let links: Vec<Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    let users: Vec<&str> = links
        .iter()
        .map(|l| l["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, [ANA, BEN, CLEO], "by app, then user id");
    for link in &links {
        assert_eq!(link["app"], "slack");
        assert_eq!(link["active"], true);
        assert_eq!(link["managed_by"], "created");
        assert!(link["target_id"].is_string());
    }

    let two = userprov(&[
        "accounts",
        "--data-dir",
        &data,
        "--app",
        "slack",
        "-n",
        "2",
        "--json",
    ]);
    let two: Vec<Value> = serde_json::from_str(&stdout(&two)).unwrap();
    assert_eq!(two, links[..2].to_vec());
    let other = userprov(&["accounts", "--data-dir", &data, "--app", "wiki", "--json"]);
    assert_eq!(other.status.code(), Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&other)).unwrap(),
        serde_json::json!([])
    );

    let table = stdout(&userprov(&["accounts", "--data-dir", &data]));
    for expected in [
        "username",
        "target id",
        "ben@acme.example",
        "active",
        "created",
    ] {
        assert!(table.contains(expected), "{expected} missing in:\n{table}");
    }
}

#[tokio::test]
async fn tables_are_colored_on_a_terminal_unless_no_color_is_set() {
    let site = Site::new();
    three_joiners(&site).await;
    let line = format!(
        "{} logs --data-dir {}",
        userprov_binary().display(),
        site.data()
    );
    let run = |no_color: Option<&str>| {
        let mut script = Command::new("script");
        script
            .args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        let output = script.output().expect(
            "`script` (util-linux) runs a command under a pseudo-terminal: apt-get install bsdutils",
        );
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let colored = run(None);
    assert!(colored.contains("success"), "{colored}");
    assert!(
        colored.contains("\u{1b}["),
        "no color on a terminal:\n{colored}"
    );
    let plain = run(Some("1"));
    assert!(plain.contains("success"), "{plain}");
    assert!(
        !plain.contains("\u{1b}["),
        "color despite NO_COLOR:\n{plain}"
    );
}

// The stack serves on other threads while the test blocks reading the follower's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_each_new_entry_once_as_it_is_written() {
    let site = Site::new();
    let stack = site.start().await;
    let url = stack.base_url();

    // While serve holds the data directory, the data directory cannot be read: say how.
    let busy = userprov(&["logs", "--data-dir", &site.data()]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("--url"), "{}", stderr(&busy));

    // History: two joiners; the follower prints the newest (-n 1), and never the other.
    send(
        &stack,
        users_changed(
            &[
                (BEN, "ben", true, "Analyst"),
                (CLEO, "cleo", true, "Designer"),
            ],
            1,
        ),
    )
    .await;
    let mut follower = command(&[
        "logs",
        "--url",
        &url,
        "--follow",
        "--json",
        "--interval",
        "0.2",
        "-n",
        "1",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let (lines, received) = mpsc::channel::<String>();
    let out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> Value {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .expect("no entry printed by logs --follow within 60 s");
        serde_json::from_str(&line).unwrap()
    };

    let history = next();
    assert_eq!(history["operation"], "create");
    assert!([BEN, CLEO].contains(&history["user_id"].as_str().unwrap()));

    send(&stack, users_changed(&[(ANA, "ana", true, "Engineer")], 2)).await;
    let created = next();
    send(
        &stack,
        users_changed(&[(ANA, "ana", true, "Lead Engineer")], 3),
    )
    .await;
    let updated = next();
    send(
        &stack,
        users_changed(&[(ANA, "ana", false, "Lead Engineer")], 4),
    )
    .await;
    let deactivated = next();
    follower.kill().unwrap();
    let _ = follower.wait();

    // Each entry came once, in order: no entry from an earlier poll was printed again in between.
    let operations: Vec<&str> = [&created, &updated, &deactivated]
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["create", "update", "deactivate"]);
    assert!(
        [&created, &updated, &deactivated]
            .iter()
            .all(|e| e["status"] == "success" && e["user_id"] == ANA)
    );
    assert_eq!(
        received.try_iter().count(),
        0,
        "an entry printed twice, or one that does not exist"
    );

    // The accounts command reads a running serve the same way.
    let accounts = userprov(&["accounts", "--url", &url, "--json"]);
    assert_eq!(accounts.status.code(), Some(0));
    let links: Vec<Value> = serde_json::from_str(&stdout(&accounts)).unwrap();
    let states: Vec<(&str, bool)> = links
        .iter()
        .map(|l| {
            (
                l["user_id"].as_str().unwrap(),
                l["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [(ANA, false), (BEN, true), (CLEO, true)]);
    stack.shutdown().await;
}

fn assert_exit(args: &[&str], code: i32, says: &str) {
    let output = userprov(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "userprov {}",
        args.join(" ")
    );
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        said.to_lowercase().contains(&says.to_lowercase()),
        "userprov {} should say {says:?}:\n{said}",
        args.join(" ")
    );
}

#[tokio::test]
async fn bad_input_exits_2_and_says_what_is_wrong_for_every_command() {
    let site = Site::new();
    three_joiners(&site).await;
    let data = site.data();
    let missing_dir = site.dir.path().join("nothing-here");
    let missing = missing_dir.to_str().unwrap();

    assert_exit(
        &["logs", "--data-dir", &data, "--since", "yesterday"],
        2,
        "--since",
    );
    assert_exit(
        &["logs", "--data-dir", &data, "--status", "bogus"],
        2,
        "possible values",
    );
    assert_exit(&["logs", "--data-dir", missing], 2, "no userprov data");
    assert!(
        !missing_dir.exists(),
        "a read command created the data directory"
    );
    assert_exit(
        &["logs", "--data-dir", &data, "--follow", "--until", "1h"],
        2,
        "--until",
    );
    assert_exit(
        &[
            "logs",
            "--data-dir",
            &data,
            "--since",
            "1h",
            "--until",
            "2h",
        ],
        2,
        "before",
    );
    assert_exit(&["logs", "--url", "ftp://example.invalid"], 2, "--url");
    assert_exit(
        &[
            "logs",
            "--url",
            "http://127.0.0.1:8787",
            "--stack",
            "userprov",
        ],
        2,
        "cannot be used with",
    );
    assert_exit(
        &["accounts", "--data-dir", &data, "--limit", "0"],
        2,
        "--limit",
    );
    assert_exit(
        &["accounts", "--data-dir", &data, "--nope"],
        2,
        "unexpected argument",
    );
    assert_exit(&["completions", "tcsh"], 2, "invalid value");
    assert_exit(
        &["resync", "--app", "slack", "--user", "not-an-id"],
        2,
        "not a salesforce user id",
    );
    assert_exit(
        &["preview", "--app", "nope", "--user", "x.json"],
        2,
        "no app named",
    );
    assert_exit(
        &[
            "import",
            "--app",
            "slack",
            "--data-dir",
            &data,
            &site.file("bad.csv", "Id,IsActive\nnope,true\n"),
        ],
        2,
        "bad.csv:1: missing required columns",
    );
    assert_exit(
        &["reconcile", "--app", "nope", "--data-dir", &data],
        2,
        "no app named",
    );
    assert_exit(&["holds", "release", "--data-dir", &data], 2, "required");
    assert_exit(
        &["redrive", "--data-dir", &data, "--bogus"],
        2,
        "unexpected argument",
    );
    assert_exit(&["serve", "--port", "http"], 2, "invalid value");
    assert_exit(&["frobnicate"], 2, "unrecognized subcommand");

    // A failure that is not the input's: 1.
    assert_exit(&["logs", "--url", "http://127.0.0.1:1"], 1, "cannot reach");
    assert_exit(
        &[
            "holds",
            "release",
            "01JXXXXXXXXXXXXXXXXXXXXXXX",
            "--data-dir",
            &data,
        ],
        1,
        "no hold",
    );
}

#[test]
fn validate_prints_its_verdict_as_json_for_scripts() {
    let site = Site::new();
    let good = userprov(&["validate", "--json"]);
    assert_eq!(good.status.code(), Some(0));
    let verdict: Value = serde_json::from_str(&stdout(&good)).unwrap();
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["apps"], serde_json::json!(["slack"]));

    let bad_file = site.file(
        "bad.toml",
        "[source]\norg_ids = [\"00D8a000002bQxTEAU\"]\n[[apps]]\nname = \"x\"\nbase_url = \"not a url\"\nsecret = \"s\"\n",
    );
    let bad = userprov(&["validate", &bad_file, "--json"]);
    assert_eq!(bad.status.code(), Some(2));
    let verdict: Value = serde_json::from_str(&stdout(&bad)).unwrap();
    assert_eq!(verdict["valid"], false);
    let problems = verdict["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| p["location"].is_string() && p["message"].is_string())
    );
}

/// The subcommands `userprov --help` lists.
fn subcommands() -> Vec<String> {
    let help = stdout(&userprov(&["--help"]));
    let section = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands: section");
    section
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_has_examples_in_its_help_and_read_commands_document_exit_codes() {
    let top = stdout(&userprov(&["--help"]));
    assert!(
        top.contains("Exit codes:") && top.contains("  2  bad input"),
        "{top}"
    );
    let commands = subcommands();
    for expected in [
        "logs",
        "accounts",
        "completions",
        "import",
        "reconcile",
        "holds",
        "redrive",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} not in {commands:?}"
        );
    }
    for name in &commands {
        let help = userprov(&[name, "--help"]);
        assert_eq!(help.status.code(), Some(0));
        let text = stdout(&help);
        assert!(
            text.contains("Examples:\n  userprov "),
            "userprov {name} --help has no examples:\n{text}"
        );
        if ["logs", "accounts", "import", "reconcile", "validate"].contains(&name.as_str()) {
            assert!(
                text.contains("Exit codes:"),
                "userprov {name} --help has no exit codes"
            );
        }
    }
}

#[test]
fn aws_options_a_command_does_not_use_are_hidden_from_its_help_and_refused() {
    // (command, an AWS resource option it uses, one it does not use)
    for (command, used, unused) in [
        (vec!["redrive"], "--queue-url", "--links-table"),
        (vec!["logs"], "--log-table", "--queue-url"),
        (vec!["accounts"], "--links-table", "--queue-url"),
        (vec!["dashboard"], "--log-table", "--queue-url"),
        (vec!["import"], "--queue-url", "--log-table"),
        // The holds commands share their options (release needs the queue, discard the log).
        (vec!["holds", "list"], "--queue-url", "--links-table"),
        (vec!["holds", "release"], "--queue-url", "--links-table"),
        (vec!["holds", "discard"], "--log-table", "--links-table"),
    ] {
        let name = command.join(" ");
        let mut args = command.clone();
        args.push("--help");
        let help = stdout(&userprov(&args));
        assert!(help.contains(used), "userprov {name} --help lacks {used}");
        assert!(
            !help.contains(unused),
            "userprov {name} --help lists {unused}, which it does not use:\n{help}"
        );

        let mut args = command.clone();
        args.extend(["--stack", "userprov", unused, "x"]);
        if name == "import" {
            args.extend(["--app", "slack", "users.csv"]);
        }
        if name == "holds release" || name == "holds discard" {
            args.push("01J9Z3AAAAAAAAAAAAAAAAAAAA");
        }
        let refused = userprov(&args);
        assert_eq!(refused.status.code(), Some(2), "userprov {name} {unused}");
        assert!(
            stderr(&refused).contains(&format!("`userprov {name}` does not use {unused}")),
            "{}",
            stderr(&refused)
        );
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _userprov"),
        ("zsh", "#compdef userprov"),
        ("fish", "complete -c userprov"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = userprov(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0));
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(
            script.contains("logs") && script.contains("--follow"),
            "{shell}: commands missing"
        );
    }
}
