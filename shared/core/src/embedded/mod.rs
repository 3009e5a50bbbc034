//! Embedded adapters: the ports implemented on one machine, durable on disk under a data
//! directory, with the same semantics as the AWS services they stand in for.
//!
//! - [`EmbeddedDb`]: one `redb` file, `<data dir>/userprov.redb`, shared by the adapters below.
//! - [`EmbeddedQueue`]: a FIFO queue with message groups, deduplication, visibility timeouts,
//!   receive counts and a dead-letter queue (SQS FIFO with a redrive policy).
//! - [`EmbeddedStore`]: account links with conditional writes, and the provisioning log with
//!   secondary indexes (DynamoDB tables with their GSIs).
//! - [`EmbeddedHoldStore`]: jobs held by the deactivation guard.
//! - [`LocalSecretStore`]: secrets in files, overridable by environment variables (Secrets
//!   Manager).

mod db;
mod holds;
mod queue;
mod secrets;
mod store;

pub use db::{DATABASE_FILE_NAME, EmbeddedDb};
pub use holds::EmbeddedHoldStore;
pub use queue::{DeadLetter, EmbeddedQueue, MAX_BODY_BYTES, QueueDepth, QueueSettings};
pub use secrets::{LocalSecretStore, SECRET_ENV_PREFIX, secret_env_var};
pub use store::{EmbeddedStore, LOG_ID_TIME_TOLERANCE_MS, LOG_MAX_SCANNED_PER_PAGE};

#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use time::OffsetDateTime;
    use time::macros::datetime;

    use crate::ports::Clock;

    /// A clock that moves only when a test says so.
    #[derive(Debug)]
    pub(crate) struct ManualClock(Mutex<OffsetDateTime>);

    impl ManualClock {
        pub(crate) fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(datetime!(2025-03-01 09:00:00 UTC))))
        }

        pub(crate) fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }
}
