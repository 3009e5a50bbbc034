//! Builds the connector of each configured app.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::rate_limit::RateLimiter;
use super::scim::{ScimConnector, ScimSettings, http_client};
use super::{Connector, ConnectorError};
use crate::config::Config;
use crate::credentials::SecretCredentials;
use crate::ports::SecretStore;

/// One connector per app, sharing one HTTP client (and so its connection pool).
pub fn build_connectors(
    config: &Config,
    secrets: Arc<dyn SecretStore>,
) -> Result<BTreeMap<String, Arc<dyn Connector>>, ConnectorError> {
    let http = http_client(config.worker.request_timeout())?;
    let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for app in &config.apps {
        let limiter = app
            .rate_limit
            .as_ref()
            .map(RateLimiter::new)
            .transpose()?
            .map(Arc::new);
        let connector: Arc<dyn Connector> = match app.connector.as_str() {
            "scim2" => Arc::new(with_limit(
                ScimConnector::new(
                    http.clone(),
                    ScimSettings {
                        base_url: app.base_url.clone(),
                        timeout: config.worker.request_timeout(),
                    },
                    Arc::new(SecretCredentials::new(
                        secrets.clone(),
                        &app.secret,
                        http.clone(),
                    )),
                ),
                limiter,
            )),
            other => {
                return Err(ConnectorError::Config(format!(
                    "app {}: unknown connector {other:?}",
                    app.name
                )));
            }
        };
        connectors.insert(app.name.clone(), connector);
    }
    Ok(connectors)
}

fn with_limit(connector: ScimConnector, limiter: Option<Arc<RateLimiter>>) -> ScimConnector {
    match limiter {
        Some(limiter) => connector.with_rate_limit(limiter),
        None => connector,
    }
}
