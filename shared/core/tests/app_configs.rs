//! App configurations as admins write them: every profile in docs/connect-an-app.md (each
//! `toml` block of the guide, parsed by the real loader) and the REST connector's table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use userprov_core::config::Config;

const GUIDE: &str = include_str!("../../../docs/connect-an-app.md");

/// The guide's ```toml blocks, in order.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```toml block in the guide");
    blocks
}

#[test]
fn every_profile_in_the_connect_an_app_guide_is_a_valid_config() {
    let blocks = toml_blocks(GUIDE);
    let mut names = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let text = format!("[source]\norg_ids = [\"00D8a000002bQxTEAU\"]\n\n{block}");
        let config = Config::parse(&text, &format!("docs/connect-an-app.md, block {}", i + 1))
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(config.apps.len(), 1, "one app per profile");
        names.push(config.apps[0].name.clone());
    }
    assert_eq!(names, ["slack", "zoom", "github", "aws", "atlassian"]);
}

#[test]
fn the_aws_profile_sends_groups_in_chunks_of_a_hundred() {
    let aws = toml_blocks(GUIDE)
        .into_iter()
        .find(|b| b.contains("name = \"aws\""))
        .unwrap();
    let config = Config::parse(
        &format!("[source]\norg_ids = [\"00D8a000002bQxTEAU\"]\n{aws}"),
        "aws",
    )
    .unwrap();
    let groups = config.apps[0].groups.as_ref().unwrap();
    assert_eq!(groups.chunk_size, 100);
}

const REST_APP: &str = r#"
[source]
org_ids = ["00D8a000002bQxTEAU"]

[[apps]]
name = "crm"
connector = "rest"
base_url = "https://crm.example.com/api"
secret = "userprov/crm"
match_on = ["email"]

[apps.mapping]
email = { from = "Email", required = true }

[apps.rest]
active = { pointer = "/status", active = "ACTIVE", inactive = "SUSPENDED" }
create = { method = "POST", path = "/users", wrap = "user" }
find = { path = "/users?email={value}", results_pointer = "/users" }
get = { method = "GET", path = "/users/{id}" }
update = { method = "PUT", path = "/users/{id}" }
deactivate = { method = "POST", path = "/users/{id}/suspend", body = "none" }
reactivate = { method = "POST", path = "/users/{id}/unsuspend", body = "none" }
"#;

#[test]
fn a_rest_app_is_configured_by_its_rest_table_without_a_user_name() {
    let config = Config::parse(REST_APP, "rest").unwrap_or_else(|e| panic!("{e}"));
    let rest = config.apps[0].rest.as_ref().unwrap();
    assert_eq!(rest.find.results_pointer, "/users");
    assert_eq!(rest.active.inactive, serde_json::json!("SUSPENDED"));
}

#[test]
fn rest_mistakes_are_reported_with_the_app_and_key() {
    let no_table = REST_APP.split("[apps.rest]").next().unwrap();
    let error = Config::parse(no_table, "rest").unwrap_err().to_string();
    assert!(
        error.contains("apps[crm].rest: connector \"rest\" needs an [apps.rest] table"),
        "{error}"
    );

    let bad_path = REST_APP.replace("/users/{id}/suspend", "/users/suspend");
    let error = Config::parse(&bad_path, "rest").unwrap_err().to_string();
    assert!(error.contains("apps[crm].rest.deactivate.path"), "{error}");
    assert!(error.contains("must contain {id}"), "{error}");

    let unknown_key = REST_APP.replace("wrap = \"user\"", "wrapper = \"user\"");
    assert!(
        Config::parse(&unknown_key, "rest").is_err(),
        "a misspelt key is refused"
    );

    let scim_with_rest = REST_APP.replace("connector = \"rest\"", "connector = \"scim2\"");
    let error = Config::parse(&scim_with_rest, "rest")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("only apps with connector = \"rest\" use [apps.rest]"),
        "{error}"
    );
}

const PSG_GROUPS: &str = r#"
[apps.groups]
from = "PermissionSetGroups__c"
[apps.groups.map]
Sales_Cloud = "sales"
"#;

const REST_GROUPS: &str = r#"
[apps.rest.groups]
find = { path = "/groups?name={name}", results_pointer = "/groups" }
create = { method = "POST", path = "/groups" }
add_members = { method = "POST", path = "/groups/{group_id}/members", member_pointer = "/user_id" }
remove_members = { method = "DELETE", path = "/groups/{group_id}/members/{member_id}" }
"#;

#[test]
fn a_rest_app_gets_groups_through_its_group_templates() {
    let config = Config::parse(&format!("{REST_APP}{REST_GROUPS}{PSG_GROUPS}"), "rest")
        .unwrap_or_else(|e| panic!("{e}"));
    let groups = config.apps[0].rest.as_ref().unwrap().groups.as_ref();
    assert_eq!(groups.unwrap().find.results_pointer, "/groups");
    assert!(config.apps[0].groups.is_some());
}

#[test]
fn groups_for_a_rest_app_without_group_templates_are_a_precise_config_error() {
    let error = Config::parse(&format!("{REST_APP}{PSG_GROUPS}"), "rest")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "apps[crm].groups: connector \"rest\" changes group memberships only as [apps.rest.groups] describes"
        ),
        "{error}"
    );
    // Groups sent as a user attribute need no group templates.
    let as_attribute = PSG_GROUPS.replace(
        "[apps.groups.map]",
        "deliver_as = \"attribute\"\n[apps.groups.map]",
    );
    Config::parse(&format!("{REST_APP}{as_attribute}"), "rest").unwrap_or_else(|e| panic!("{e}"));

    let without_create =
        REST_GROUPS.replace("create = { method = \"POST\", path = \"/groups\" }\n", "");
    let error = Config::parse(&format!("{REST_APP}{without_create}{PSG_GROUPS}"), "rest")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("apps[crm].groups.create_missing: is true (the default), but [apps.rest.groups] has no create template"),
        "{error}"
    );
    let no_creating = PSG_GROUPS.replace(
        "[apps.groups.map]",
        "create_missing = false\n[apps.groups.map]",
    );
    Config::parse(&format!("{REST_APP}{without_create}{no_creating}"), "rest")
        .unwrap_or_else(|e| panic!("{e}"));

    // SCIM's removal dialect is refused rather than silently ignored.
    let scim_dialect = PSG_GROUPS.replace(
        "[apps.groups.map]",
        "member_removal = \"value_list\"\n[apps.groups.map]",
    );
    let error = Config::parse(&format!("{REST_APP}{REST_GROUPS}{scim_dialect}"), "rest")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("apps[crm].groups.member_removal: is a SCIM dialect and does nothing for connector \"rest\""),
        "{error}"
    );
}

#[test]
fn group_template_mistakes_are_reported_with_the_app_and_key() {
    let bad = REST_GROUPS
        .replace("/groups?name={name}", "/groups?name={value}")
        .replace(
            "path = \"/groups/{group_id}/members\", member_pointer = \"/user_id\"",
            "path = \"/groups/{group_id}/members\", members_pointer = \"/user_ids\", member_pointer = \"/user_id\"",
        )
        .replace("/groups/{group_id}/members/{member_id}", "/groups/members/{member_id}");
    let error = Config::parse(&format!("{REST_APP}{bad}{PSG_GROUPS}"), "rest")
        .unwrap_err()
        .to_string();
    for expected in [
        "apps[crm].rest.groups.find.path: \"/groups?name={value}\" uses {value}; the placeholders are {name}",
        "apps[crm].rest.groups.add_members: send one member per request ({member_id} in the path, or member_pointer) or a list per request (members_pointer), not both",
        "apps[crm].rest.groups.remove_members.path: \"/groups/members/{member_id}\" must contain {group_id}",
    ] {
        assert!(error.contains(expected), "{expected}\nin\n{error}");
    }
    let replacing = REST_GROUPS.replace(
        "add_members = { method = \"POST\", path = \"/groups/{group_id}/members\", member_pointer = \"/user_id\" }",
        "add_members = { method = \"PUT\", path = \"/groups/{group_id}/members\", members_pointer = \"/members\" }",
    );
    let error = Config::parse(&format!("{REST_APP}{replacing}{PSG_GROUPS}"), "rest")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("apps[crm].rest.groups.add_members.method: a PUT with a member list usually replaces the group's whole member list"),
        "{error}"
    );
}

const CONNECTORS_GUIDE: &str = include_str!("../../../docs/connectors.md");

#[test]
fn every_group_template_example_in_the_connectors_guide_is_a_valid_config() {
    let examples: Vec<String> = toml_blocks(CONNECTORS_GUIDE)
        .into_iter()
        .filter(|b| b.contains("[apps.rest.groups]"))
        .collect();
    assert_eq!(examples.len(), 2, "the one-by-one and the list examples");
    for example in examples {
        let config = Config::parse(&format!("{REST_APP}{example}{PSG_GROUPS}"), "guide")
            .unwrap_or_else(|e| panic!("{e}\n{example}"));
        assert!(config.apps[0].rest.as_ref().unwrap().groups.is_some());
    }
}
