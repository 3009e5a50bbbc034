//! `userprov dashboard`: the failures dashboard and the log API of a deployed stack, served on
//! this machine. On AWS the log API is IAM-authorised (SigV4), which a browser cannot sign; this
//! serves the same router as `userprov serve` and the log API function, over the stack's
//! DynamoDB tables, read with the operator's own AWS credentials, on loopback only.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use userprov_core::http::log_api;
use userprov_core::log::CursorSigner;

use crate::aws::{AwsArgs, AwsResources};
use crate::import::{Failure, load_config};

#[derive(Debug, Clone)]
pub struct DashboardOptions {
    pub aws: AwsArgs,
    /// The configuration deployed, for `POST /preview`; the example when absent.
    pub config: Option<PathBuf>,
    /// 0 picks a free port.
    pub port: u16,
}

/// A dashboard bound and ready: `url` is what to open.
pub struct BoundDashboard {
    pub url: String,
    listener: tokio::net::TcpListener,
    app: axum::Router,
}

/// Reads the stack's outputs, opens its tables and binds the loopback port.
pub async fn bind(options: &DashboardOptions) -> Result<BoundDashboard, Failure> {
    if !options.aws.selected() {
        return Err(Failure::bad_input(
            "give --stack NAME (or --log-table and --links-table): the dashboard of a local \
             `userprov serve` is its own address, http://127.0.0.1:8787/",
        ));
    }
    let config = load_config(options.config.as_deref())?;
    let resources = AwsResources::resolve(&options.aws).await?;
    // A fresh key per run: cursors are only ever handed to this process's own pages.
    let key: [u8; 32] = rand::random();
    let app = log_api::router(log_api::LogApiState {
        log: Arc::new(resources.log_store()?),
        links: Arc::new(resources.link_store()?),
        config: Arc::new(config),
        cursors: CursorSigner::from_secret(&key),
        token: None,
    });
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Failure::other(format!("cannot listen on {address}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::other(e.to_string()))?;
    Ok(BoundDashboard {
        url: format!("http://{bound}/"),
        listener,
        app,
    })
}

impl BoundDashboard {
    /// Serves until Ctrl-C.
    pub async fn serve(self) -> Result<(), Failure> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Failure::other(format!("the dashboard server stopped: {e}")))
    }
}
