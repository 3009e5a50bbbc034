//! The `userprov` command as a library, so the end-to-end tests drive exactly what users run.

pub mod admin;
pub mod aws;
pub mod demo;
pub mod import;
pub mod query;
pub mod reconcile;
pub mod redrive;
pub mod render;
pub mod stack;
pub mod user_csv;
