//! A custom connector, the worked example of docs/connectors.md: an imaginary "Acme Directory"
//! whose search is a POST with a JSON body, which the declarative REST connector cannot say.
//!
//!     cargo run -p userprov-core --example custom_connector
//!
//! builds the connector from a config file that names it, the way `userprov serve` builds the
//! built-in ones.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use userprov_core::config::{AppConfig, CONNECTORS, Config};
use userprov_core::connector::registry::{BuildContext, ConnectorKinds, build_connectors_with};
use userprov_core::connector::{Connector, ConnectorError, MatchKey, Reply, TargetAccount};
use userprov_core::credentials::AuthProvider;
use userprov_core::embedded::LocalSecretStore;

/// Acme Directory: `POST /search`, `POST /accounts`, `GET|PUT|DELETE /accounts/{id}`, and
/// `POST /accounts/{id}/lock` and `/unlock`.
struct AcmeDirectory {
    http: reqwest::Client,
    base_url: String,
    auth: Arc<dyn AuthProvider>,
}

impl AcmeDirectory {
    /// One call. Every failure becomes a classified `ConnectorError`: the worker retries the
    /// transient ones, fails the permanent ones and never logs a credential.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ConnectorError> {
        let authorization = self.auth.authorization().await?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(AUTHORIZATION, authorization.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                ConnectorError::Timeout
            } else {
                ConnectorError::Network(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| ConnectorError::Network(e.to_string()))?;
        match status {
            200..=299 => Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null))),
            404 => Ok((status, Value::Null)),
            401 => Err(ConnectorError::Unauthorized),
            409 => Err(ConnectorError::Conflict { detail: text }),
            429 => Err(ConnectorError::Throttled {
                status,
                retry_after: None,
            }),
            500..=599 => Err(ConnectorError::ServerError {
                status,
                detail: text,
                retry_after: None,
            }),
            _ => Err(ConnectorError::Rejected {
                status,
                scim_type: None,
                detail: text.clone(),
                body: text,
            }),
        }
    }

    fn account(user: Value) -> Result<TargetAccount, ConnectorError> {
        let id = user["id"]
            .as_str()
            .ok_or_else(|| ConnectorError::BadResponse("an account without an id".into()))?
            .to_owned();
        let active = user["locked"].as_bool().map(|locked| !locked);
        Ok(TargetAccount {
            id,
            active,
            resource: user,
        })
    }

    fn changed(id: &str, (status, _): (u16, Value)) -> Result<Reply<()>, ConnectorError> {
        if status == 404 {
            return Err(ConnectorError::NotFound { id: id.to_owned() });
        }
        Ok(Reply {
            value: (),
            http_status: Some(status),
        })
    }
}

#[async_trait]
impl Connector for AcmeDirectory {
    async fn find(
        &self,
        keys: &[MatchKey],
    ) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
        let query: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.attribute.clone(), Value::String(k.value.clone())))
            .collect();
        let (status, found) = self
            .call(
                reqwest::Method::POST,
                "/search",
                Some(&Value::Object(query)),
            )
            .await?;
        // Verify the hits: a target that ignores part of the query must not make userprov
        // adopt someone else's account.
        let mut hits = found["results"].as_array().cloned().unwrap_or_default();
        hits.retain(|hit| keys.iter().all(|k| hit[&k.attribute] == k.value.as_str()));
        if hits.len() > 1 {
            return Err(ConnectorError::Rejected {
                status,
                scim_type: Some("ambiguous".into()),
                detail: "several accounts match".into(),
                body: String::new(),
            });
        }
        Ok(Reply {
            value: hits.pop().map(Self::account).transpose()?,
            http_status: Some(status),
        })
    }

    async fn get(&self, id: &str) -> Result<Reply<Option<TargetAccount>>, ConnectorError> {
        let (status, user) = self
            .call(reqwest::Method::GET, &format!("/accounts/{id}"), None)
            .await?;
        let value = if status == 404 {
            None
        } else {
            Some(Self::account(user)?)
        };
        Ok(Reply {
            value,
            http_status: Some(status),
        })
    }

    async fn create(&self, resource: &Value) -> Result<Reply<TargetAccount>, ConnectorError> {
        let (status, user) = self
            .call(reqwest::Method::POST, "/accounts", Some(resource))
            .await?;
        Ok(Reply {
            value: Self::account(user)?,
            http_status: Some(status),
        })
    }

    async fn update(&self, id: &str, resource: &Value) -> Result<Reply<()>, ConnectorError> {
        let answer = self
            .call(
                reqwest::Method::PUT,
                &format!("/accounts/{id}"),
                Some(resource),
            )
            .await?;
        Self::changed(id, answer)
    }

    async fn set_active(&self, id: &str, active: bool) -> Result<Reply<()>, ConnectorError> {
        let action = if active { "unlock" } else { "lock" };
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/accounts/{id}/{action}"),
                Some(&json!({})),
            )
            .await?;
        Self::changed(id, answer)
    }

    async fn delete(&self, id: &str) -> Result<Reply<()>, ConnectorError> {
        let answer = self
            .call(reqwest::Method::DELETE, &format!("/accounts/{id}"), None)
            .await?;
        Self::changed(id, answer)
    }
}

/// The factory: how userprov makes the connector of one `[[apps]]` entry.
fn acme_directory(
    app: &AppConfig,
    context: &BuildContext,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(AcmeDirectory {
        http: context.http.clone(),
        base_url: app.base_url.clone(),
        auth: context.credentials(app),
    }))
}

const CONFIG: &str = r#"
[source]
org_ids = ["00D8a000002bQxTEAU"]

[[apps]]
name = "directory"
connector = "acme-directory"
base_url = "https://directory.acme.example/api"
secret = "userprov/directory"
match_on = ["login"]

[apps.mapping]
login = { from = "Username", required = true }
display_name = "Name"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kinds = ConnectorKinds::builtin().register("acme-directory", acme_directory);
    let mut accepted: Vec<&str> = CONNECTORS.to_vec();
    accepted.push("acme-directory");
    let config = Config::parse_with_kinds(CONFIG, "example", &accepted)?;
    let secrets = Arc::new(LocalSecretStore::new(std::env::temp_dir()));
    let connectors = build_connectors_with(&kinds, &config, secrets)?;
    for (app, _) in connectors {
        println!("app {app}: connector built");
    }
    Ok(())
}
