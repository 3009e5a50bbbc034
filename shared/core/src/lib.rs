//! userprov's domain. It knows nothing of AWS or Lambda: adapters for the outside world
//! implement the traits in [`ports`].

pub mod config;
pub mod connector;
pub mod embedded;
pub mod error;
pub mod ids;
pub mod job;
pub mod link;
pub mod log;
pub mod mapping;
pub mod ports;
pub mod source;
