//! Turning SDK errors into words for our own error types.
//!
//! Our errors keep only text, never the SDK error: its `Debug` output carries the raw HTTP
//! response, and nothing guarantees what a raw response holds.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The service's error code, when the service answered with one.
pub(crate) fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// "Code: message" for a service error; the error chain for a failure to reach the service.
pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            match (inner.code(), inner.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => DisplayErrorContext(inner).to_string(),
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".to_owned(),
        other => DisplayErrorContext(other).to_string(),
    }
}
