//! The embedded all-in-one stack behind `userprov serve`: webhook, worker and log API in one
//! process on one port, with the embedded queue and store under a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use userprov_core::config::{Config, ConfigError};
use userprov_core::connector::mock::MockTarget;
use userprov_core::connector::registry::build_connectors;
use userprov_core::embedded::{
    EmbeddedDb, EmbeddedHoldStore, EmbeddedQueue, EmbeddedStore, LocalSecretStore, QueueSettings,
};
use userprov_core::http::{log_api, webhook};
use userprov_core::ingest::Ingest;
use userprov_core::ports::{
    Clock, QueueConsumer, SecretError, SecretStore, SecretValue, SystemClock,
};
use userprov_core::worker::{RetryPolicy, Worker};

/// The secret keying page cursors when `[log_api] cursor_secret` is not set.
pub const DEFAULT_CURSOR_SECRET: &str = "userprov/log-cursor-key";

/// Where the mock target is mounted on the local server.
pub const MOCK_TARGET_PATH: &str = "/mock-target/v2";

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub bind: SocketAddr,
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub mock_target: bool,
    /// Concurrent worker loops, each handling a batch of up to 10 messages.
    pub workers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot open the data directory {path}: {reason}")]
    Data { path: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("cannot read or create a secret (webhook token, events key or log API key): {0}")]
    Token(SecretError),
    #[error("cannot set up the connectors: {0}")]
    Connectors(String),
}

/// A running stack. Dropping it does not stop it: call [`RunningStack::shutdown`].
pub struct RunningStack {
    pub addr: SocketAddr,
    pub config: Arc<Config>,
    pub queue: EmbeddedQueue,
    pub store: EmbeddedStore,
    pub mock: Option<MockTarget>,
    token: SecretValue,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningStack {
    pub async fn start(options: StackOptions) -> Result<Self, StackError> {
        let mut config = match &options.config {
            Some(path) => Config::load(path)?,
            None => Config::example()?,
        };
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|e| StackError::Listen {
                addr: options.bind,
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| StackError::Listen {
            addr: options.bind,
            reason: e.to_string(),
        })?;

        let data_error = |reason: String| StackError::Data {
            path: options.data_dir.display().to_string(),
            reason,
        };
        let db = EmbeddedDb::open(&options.data_dir).map_err(|e| data_error(e.to_string()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let queue = EmbeddedQueue::new(
            db.clone(),
            QueueSettings {
                max_receives: config.worker.max_attempts,
                visibility_timeout: config.worker.visibility_timeout(),
                ..QueueSettings::default()
            },
            clock.clone(),
        );
        let holds = EmbeddedHoldStore::new(db.clone());
        let store = EmbeddedStore::new(db);
        let secrets: Arc<dyn SecretStore> =
            Arc::new(LocalSecretStore::new(options.data_dir.join("secrets")));

        let token = secret_or_generate(secrets.as_ref(), &config.webhook.token_secret)
            .await
            .map_err(StackError::Token)?;

        let mock = if options.mock_target {
            let mock = MockTarget::new();
            for app in &mut config.apps {
                app.base_url = format!("http://{addr}{MOCK_TARGET_PATH}");
                secret_or_generate(secrets.as_ref(), &app.secret)
                    .await
                    .map_err(StackError::Token)?;
            }
            Some(mock)
        } else {
            None
        };
        let config = Arc::new(config);

        let connectors = build_connectors(&config, secrets.clone())
            .map_err(|e| StackError::Connectors(e.to_string()))?;
        let worker = Arc::new(
            Worker::new(
                config.clone(),
                connectors,
                Arc::new(store.clone()),
                Arc::new(store.clone()),
                clock.clone(),
                RetryPolicy::from_config(&config),
            )
            .with_holds(Arc::new(holds)),
        );
        // The key that authenticates JSON events, created on first start like the token.
        secret_or_generate(secrets.as_ref(), &config.webhook.events.secret)
            .await
            .map_err(StackError::Token)?;
        let events = webhook::EventsEndpoint {
            auth: config.webhook.events.clone(),
            secrets: secrets.clone(),
            clock: clock.clone(),
        };
        let ingest = Arc::new(Ingest::new(config.clone(), Arc::new(queue.clone()), clock));

        // Cursors stay valid across restarts: the key lives in the secret store.
        let cursor_key = secret_or_generate(
            secrets.as_ref(),
            config
                .log_api
                .cursor_secret
                .as_deref()
                .unwrap_or(DEFAULT_CURSOR_SECRET),
        )
        .await
        .map_err(StackError::Token)?;

        let log_api_token = match &config.log_api.token_secret {
            Some(name) => Some(
                secret_or_generate(secrets.as_ref(), name)
                    .await
                    .map_err(StackError::Token)?,
            ),
            None => None,
        };

        let mut app = webhook::router(webhook::WebhookState {
            ingest,
            token: token.clone(),
            max_body_bytes: config.webhook.max_body_bytes,
            events: Some(events),
        })
        .merge(log_api::router(log_api::LogApiState {
            log: Arc::new(store.clone()),
            links: Arc::new(store.clone()),
            config: config.clone(),
            cursors: userprov_core::log::CursorSigner::from_secret(cursor_key.expose().as_bytes()),
            token: log_api_token,
        }));
        app = app.merge(queue_status_router(queue.clone()));
        if let Some(mock) = &mock {
            app = app.nest(MOCK_TARGET_PATH, mock.router());
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut server_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "the HTTP server stopped");
            }
        }));
        tasks.push(tokio::spawn(prune_log_hourly(
            store.clone(),
            config.log_api.retention(),
            shutdown_rx.clone(),
        )));
        for _ in 0..options.workers.max(1) {
            tasks.push(tokio::spawn(run_worker(
                queue.clone(),
                worker.clone(),
                shutdown_rx.clone(),
            )));
        }
        Ok(Self {
            addr,
            config,
            queue,
            store,
            mock,
            token,
            shutdown,
            tasks,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL to paste into the Salesforce Outbound Message. It contains the webhook token.
    pub fn webhook_url(&self) -> String {
        format!(
            "{}/salesforce/outbound/{}",
            self.base_url(),
            self.token.expose()
        )
    }

    /// The URL Salesforce posts JSON events to (authenticated by `[webhook.events]`).
    pub fn events_url(&self) -> String {
        format!("{}/salesforce/events", self.base_url())
    }

    pub fn log_api_url(&self) -> String {
        format!("{}/logs", self.base_url())
    }

    /// Waits until the queue has nothing visible, in flight or waiting for a retry.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(depth) = self.queue.depth().await
                && depth.visible + depth.in_flight + depth.delayed == 0
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Reads a secret, creating a random one if it does not exist yet.
async fn secret_or_generate(
    secrets: &dyn SecretStore,
    name: &str,
) -> Result<SecretValue, SecretError> {
    match secrets.get_secret(name).await {
        Ok(value) => Ok(value),
        Err(SecretError::NotFound { .. }) => {
            let mut bytes = [0u8; 24];
            rand::rng().fill_bytes(&mut bytes);
            let value = SecretValue::new(hex::encode(bytes));
            secrets.put_secret(name, &value).await?;
            Ok(value)
        }
        Err(other) => Err(other),
    }
}

/// `GET /queue`: how many messages the embedded queue holds, by state. Operators (and the
/// fault-injection suite) use it to see that the worker has caught up.
fn queue_status_router(queue: EmbeddedQueue) -> axum::Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/queue",
        axum::routing::get(move || {
            let queue = queue.clone();
            async move {
                match queue.depth().await {
                    Ok(depth) => axum::Json(serde_json::json!({
                        "visible": depth.visible,
                        "in_flight": depth.in_flight,
                        "delayed": depth.delayed,
                        "dead_lettered": depth.dead_lettered,
                    }))
                    .into_response(),
                    Err(error) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"error": error.to_string()})),
                    )
                        .into_response(),
                }
            }
        }),
    )
}

async fn run_worker(
    queue: EmbeddedQueue,
    worker: Arc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            received = queue.receive(10, Duration::from_secs(1)) => received,
        };
        match received {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => {
                let dispositions = handle_keeping_hidden(&queue, &worker, &messages).await;
                let settlements: Vec<_> = messages.into_iter().zip(dispositions).collect();
                // One commit for the batch. A message that is not settled becomes visible
                // again when its timeout passes: not lost.
                match queue.settle_many(&settlements).await {
                    Ok(results) => {
                        for ((message, _), result) in settlements.iter().zip(results) {
                            if let Err(error) = result {
                                tracing::warn!(%error, message_id = %message.message_id, "cannot settle a message");
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot settle a batch of messages"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot receive from the queue; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Handles a batch while keeping its messages hidden: every third of the visibility timeout
/// they get a new one, so a batch slowed by a slow target or by its users' earlier jobs is not
/// delivered again meanwhile and only real attempts count. A worker that dies stops keeping
/// them, and they return after one timeout.
async fn handle_keeping_hidden(
    queue: &EmbeddedQueue,
    worker: &Worker,
    messages: &[userprov_core::ports::ReceivedMessage],
) -> Vec<userprov_core::ports::Disposition> {
    let period = (queue.visibility_timeout() / 3).max(Duration::from_millis(100));
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let handling = worker.handle_batch(messages);
    tokio::pin!(handling);
    loop {
        tokio::select! {
            dispositions = &mut handling => return dispositions,
            _ = renew.tick() => {
                if let Err(error) = queue.keep_hidden(messages).await {
                    tracing::warn!(%error, "cannot keep a batch in progress hidden; its messages may be delivered again");
                }
            }
        }
    }
}

/// The embedded log's retention: entries older than `retention` are deleted at start and then
/// every hour. A failed pass is logged and tried again at the next hour.
async fn prune_log_hourly(
    store: EmbeddedStore,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let cutoff = time::OffsetDateTime::now_utc() - retention;
        match store.prune_log_before(cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, %cutoff, "deleted log entries past the retention"),
            Err(error) => tracing::warn!(%error, "pruning the log failed; trying again in an hour"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
