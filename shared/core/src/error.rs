//! Error classes shared by every module.
//!
//! Each module has its own `thiserror` enum; each enum says which class its variants belong to, and
//! only the edges (HTTP answers, queue outcomes, log entries) turn a class into behaviour.

use serde::{Deserialize, Serialize};

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// May succeed if tried again later: timeouts, throttling, 5xx, a store briefly unavailable.
    Transient,
    /// Will fail the same way every time until someone changes something outside the input.
    Permanent,
    /// The input itself is wrong; retrying the same input cannot help.
    BadInput,
    /// userprov is configured wrongly (missing secret, bad URL, unknown app).
    Config,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::BadInput => "bad_input",
            Self::Config => "config",
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every error enum of the crate.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}
