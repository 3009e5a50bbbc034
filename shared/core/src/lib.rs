//! userprov's domain. It knows nothing of AWS or Lambda: adapters for the outside world
//! implement the traits in [`ports`].

mod ascii;
pub mod breaker;
pub mod config;
pub mod connector;
pub mod credentials;
pub mod embedded;
pub mod error;
pub mod expr;
pub mod groups;
pub mod guard;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod job;
pub mod link;
pub mod log;
pub mod mapping;
pub mod merge;
pub mod metrics;
pub mod plan;
pub mod ports;
pub mod preview;
pub mod salesforce;
pub mod scope;
pub mod source;
pub mod source_file;
pub mod synthetic_log;
pub mod worker;
