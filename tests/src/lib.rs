//! Support for userprov's integration and end-to-end suites: starting real peers on free
//! loopback ports and stopping them when a test ends.
//!
//! Peers come from the project's virtual environment (`.venv` at the repository root, made by
//! `infra/scripts/install-test-peers.sh`). A missing peer fails the test with the command that
//! installs it; no test skips itself.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod auth_gate;
pub mod aws_fixtures;
pub mod browser;
pub mod chaos;
pub mod conformance;
pub mod fault_proxy;
pub mod lambda_probe;
pub mod peers;
pub mod pipeline;
pub mod scim_contract;
