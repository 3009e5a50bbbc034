//! Builds the connector of each configured app from its `connector` kind.
//!
//! A kind is a name (`connector = "scim2"` in `[[apps]]`) and a [`ConnectorFactory`]. The
//! built-in kinds are in [`ConnectorKinds::builtin`]; a custom connector adds one line there
//! and its name to [`crate::config::CONNECTORS`] (docs/connectors.md walks through it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::rate_limit::RateLimiter;
use super::rest::RestConnector;
use super::scim::{ScimConnector, ScimSettings, http_client};
use super::{Connector, ConnectorError};
use crate::config::{AppConfig, Config};
use crate::credentials::{AuthProvider, SecretCredentials};
use crate::ports::SecretStore;

/// What a factory gets besides the app's own configuration: shared by every app.
#[derive(Clone)]
pub struct BuildContext {
    /// Rustls, no redirects followed, userprov's User-Agent; one pool for every app.
    pub http: reqwest::Client,
    pub secrets: Arc<dyn SecretStore>,
    /// `[worker] request_timeout_secs`: the limit for one HTTP exchange.
    pub timeout: Duration,
    /// The app's `[apps.rate_limit]` bucket, if it has one; a connector sends every request
    /// through it.
    pub rate_limit: Option<Arc<RateLimiter>>,
}

impl BuildContext {
    /// The app's credentials from its `secret` (every kind: bearer, OAuth2 client credentials,
    /// refresh token), giving an Authorization header value.
    pub fn credentials(&self, app: &AppConfig) -> Arc<dyn AuthProvider> {
        Arc::new(SecretCredentials::new(
            self.secrets.clone(),
            &app.secret,
            self.http.clone(),
        ))
    }
}

/// Makes the connector of one app.
pub type ConnectorFactory =
    fn(&AppConfig, &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError>;

/// Connector kinds by name.
#[derive(Clone, Default)]
pub struct ConnectorKinds {
    factories: BTreeMap<&'static str, ConnectorFactory>,
}

impl ConnectorKinds {
    /// The kinds userprov ships. Add yours here (and to `config::CONNECTORS`).
    pub fn builtin() -> Self {
        Self::default()
            .register("scim2", scim2)
            .register("rest", rest)
    }

    /// Adds (or replaces) the kind `name`.
    pub fn register(mut self, name: &'static str, factory: ConnectorFactory) -> Self {
        self.factories.insert(name, factory);
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }

    pub fn get(&self, name: &str) -> Option<ConnectorFactory> {
        self.factories.get(name).copied()
    }
}

fn scim2(app: &AppConfig, context: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    let connector = ScimConnector::new(
        context.http.clone(),
        ScimSettings {
            base_url: app.base_url.clone(),
            timeout: context.timeout,
        },
        context.credentials(app),
    );
    Ok(Arc::new(match &context.rate_limit {
        Some(limiter) => connector.with_rate_limit(limiter.clone()),
        None => connector,
    }))
}

fn rest(app: &AppConfig, context: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    let Some(settings) = &app.rest else {
        return Err(ConnectorError::Config(format!(
            "app {}: connector \"rest\" needs an [apps.rest] table",
            app.name
        )));
    };
    let connector = RestConnector::new(
        context.http.clone(),
        &app.base_url,
        context.timeout,
        settings.clone(),
        context.credentials(app),
    )?;
    Ok(Arc::new(match &context.rate_limit {
        Some(limiter) => connector.with_rate_limit(limiter.clone()),
        None => connector,
    }))
}

/// One connector per app from the built-in kinds, sharing one HTTP client (and so its
/// connection pool).
pub fn build_connectors(
    config: &Config,
    secrets: Arc<dyn SecretStore>,
) -> Result<BTreeMap<String, Arc<dyn Connector>>, ConnectorError> {
    build_connectors_with(&ConnectorKinds::builtin(), config, secrets)
}

/// One connector per app from `kinds`.
pub fn build_connectors_with(
    kinds: &ConnectorKinds,
    config: &Config,
    secrets: Arc<dyn SecretStore>,
) -> Result<BTreeMap<String, Arc<dyn Connector>>, ConnectorError> {
    let http = http_client(config.worker.request_timeout())?;
    let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for app in &config.apps {
        let Some(factory) = kinds.get(&app.connector) else {
            let known: Vec<&str> = kinds.names().collect();
            return Err(ConnectorError::Config(format!(
                "app {}: unknown connector {:?}; known: {}",
                app.name,
                app.connector,
                known.join(", ")
            )));
        };
        let rate_limit = app
            .rate_limit
            .as_ref()
            .map(RateLimiter::new)
            .transpose()?
            .map(Arc::new);
        let context = BuildContext {
            http: http.clone(),
            secrets: secrets.clone(),
            timeout: config.worker.request_timeout(),
            rate_limit,
        };
        connectors.insert(app.name.clone(), factory(app, &context)?);
    }
    Ok(connectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_is_accepted_by_the_config_and_no_other() {
        let built: Vec<&str> = ConnectorKinds::builtin().names().collect();
        let mut accepted = crate::config::CONNECTORS.to_vec();
        accepted.sort_unstable();
        assert_eq!(built, accepted);
    }
}
