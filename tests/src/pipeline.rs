//! Drives the embedded stack (`userprov serve`) over HTTP, the way Salesforce and admins do.

use std::time::Duration;

use serde_json::Value;
use userprov_cli::stack::{RunningStack, StackOptions};

pub const ORG_ID: &str = "00D8a000002bQxTEAU";

/// A configuration with one SCIM app named `scim` pointed at `base_url`; `app_extra` is appended
/// to the app's table (before its mapping), `worker_extra` to `[worker]`.
pub fn config_for(base_url: &str, app_extra: &str, worker_extra: &str) -> String {
    format!(
        r#"
[source]
org_ids = ["{ORG_ID}"]

[worker]
max_attempts = 4
base_delay_ms = 20
max_delay_secs = 1
request_timeout_secs = 5
{worker_extra}

[[apps]]
name = "scim"
base_url = "{base_url}"
secret = "userprov/scim"
match_on = ["userName"]
{app_extra}

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

pub struct TestStack {
    pub stack: RunningStack,
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl TestStack {
    /// Starts the stack with this configuration; `secrets` are written to the local secret store first.
    pub async fn start(config_toml: &str, secrets: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config_path = data.path().join("userprov.toml");
        std::fs::write(&config_path, config_toml).unwrap();
        for (name, value) in secrets {
            let path = data.path().join("data").join("secrets").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, value).unwrap();
        }
        let stack = RunningStack::start(StackOptions {
            bind: ([127, 0, 0, 1], 0).into(),
            config: Some(config_path),
            data_dir: data.path().join("data"),
            mock_target: false,
            workers: 2,
        })
        .await
        .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
        Self {
            stack,
            http: reqwest::Client::new(),
            _data: data,
        }
    }

    pub fn webhook_url(&self) -> String {
        self.stack.webhook_url()
    }

    /// Posts an Outbound Message the way Salesforce does; returns the status and body.
    pub async fn post_outbound(&self, body: &str) -> (u16, String) {
        self.post(
            &self.webhook_url(),
            "text/xml; charset=utf-8",
            body.as_bytes().to_vec(),
        )
        .await
    }

    pub async fn post(&self, url: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Waits until the worker has nothing left to do.
    pub async fn wait_idle(&self) {
        assert!(
            self.stack.wait_idle(Duration::from_secs(60)).await,
            "the worker did not become idle within 60 s"
        );
    }

    /// GET on the log API (path and query, e.g. `/logs?app=scim`).
    pub async fn get_json(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{}", self.stack.base_url(), path_and_query))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Log entries for a query, oldest first.
    pub async fn log_entries(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get_json(&format!("/logs?limit=500&{query}")).await;
        assert_eq!(status, 200, "log API answered {body}");
        let mut entries = body["entries"].as_array().cloned().unwrap_or_default();
        entries.reverse();
        entries
    }

    pub async fn queue_is_empty(&self) -> bool {
        let depth = self.stack.queue.depth().await.unwrap();
        depth.visible + depth.in_flight + depth.delayed + depth.dead_lettered == 0
    }

    pub async fn shutdown(self) {
        self.stack.shutdown().await;
    }
}

/// One user in an Outbound Message: the notification id, the user id and its fields.
pub struct Notified<'a> {
    pub notification_id: &'a str,
    pub user_id: &'a str,
    pub fields: &'a [(&'a str, &'a str)],
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders an Outbound Message as Salesforce sends it.
pub fn outbound_message(org_id: &str, users: &[Notified<'_>]) -> String {
    let mut notifications = String::new();
    for user in users {
        let mut fields = format!("<sf:Id>{}</sf:Id>", user.user_id);
        for (name, value) in user.fields {
            fields.push_str(&format!("<sf:{name}>{}</sf:{name}>", escape(value)));
        }
        notifications.push_str(&format!(
            "<Notification><Id>{}</Id><sObject xsi:type=\"sf:User\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">{fields}</sObject></Notification>",
            user.notification_id
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org_id}</OrganizationId><ActionId>04k8a000000CkPzAAK</ActionId><SessionId xsi:nil="true"/><EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/62.0/00D8a000002bQxT</EnterpriseUrl><PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/62.0/00D8a000002bQxT</PartnerUrl>{notifications}</notifications></soapenv:Body></soapenv:Envelope>"#
    )
}

/// Every group of a SCIM server and its members' ids, both sorted: (displayName, [member id]).
pub async fn scim_group_memberships(base_url: &str, token: &str) -> Vec<(String, Vec<String>)> {
    let list: Value = reqwest::Client::new()
        .get(format!("{base_url}/Groups"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut groups: Vec<(String, Vec<String>)> = list["Resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let mut members: Vec<String> = g["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect();
            members.sort();
            (g["displayName"].as_str().unwrap().to_owned(), members)
        })
        .collect();
    groups.sort();
    groups
}

/// Reads users straight from a SCIM server (for assertions), filtered by userName when given.
pub async fn scim_users(base_url: &str, token: &str, user_name: Option<&str>) -> Vec<Value> {
    let mut request = reqwest::Client::new()
        .get(format!("{base_url}/Users"))
        .bearer_auth(token);
    if let Some(name) = user_name {
        request = request.query(&[("filter", format!("userName eq \"{name}\""))]);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    body["Resources"].as_array().cloned().unwrap_or_default()
}
