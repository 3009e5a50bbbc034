//! Salesforce record ids.
//!
//! Salesforce ids come in a 15-character case-sensitive form and an 18-character form whose last
//! three characters encode the case of the first fifteen. userprov stores and compares ids only in
//! their 18-character form, so `0058a00000LmN2p` and `0058a00000LmN2pAAF` name the same user.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ascii::{self, ALPHANUMERIC, UPPER_CASE};

/// Why a string is not a Salesforce id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("a Salesforce id has 15 or 18 characters, this one has {0}")]
    Length(usize),
    #[error("a Salesforce id has only letters and digits")]
    Character,
    #[error("the last three characters of the 18-character id do not match its first fifteen")]
    Checksum,
}

/// An 18-character Salesforce id, held inline: parsing one (twice per Outbound Message
/// notification, once per event) allocates nothing. Its bytes are ASCII letters and digits, and
/// compare and order as the text does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SalesforceId([u8; 18]);

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

impl SalesforceId {
    /// Parses a 15- or 18-character id into its 18-character form.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let raw = raw.trim();
        let bytes = raw.as_bytes();
        if bytes.len() != 15 && bytes.len() != 18 {
            return Err(IdError::Length(raw.chars().count()));
        }
        let (first15, given_suffix) = bytes.split_at(15);
        // One pass, no early exit: ids are short and almost always valid. Each character's class
        // (one table lookup) says whether it may be in an id and, for the first fifteen, gives
        // its case bit.
        let mut every = ALPHANUMERIC;
        let mut suffix = [0u8; 3];
        for (slot, chunk) in suffix.iter_mut().zip(first15.chunks_exact(5)) {
            // Bit i is set when the chunk's i-th character is upper case.
            let mut bits = 0;
            for (i, &byte) in chunk.iter().enumerate() {
                let class = ascii::class(byte);
                every &= class;
                bits |= usize::from(class & UPPER_CASE != 0) << i;
            }
            *slot = SUFFIX_ALPHABET[bits & 31];
        }
        for &byte in given_suffix {
            every &= ascii::class(byte);
        }
        if every & ALPHANUMERIC == 0 {
            return Err(IdError::Character);
        }
        if !given_suffix.is_empty() && !given_suffix.eq_ignore_ascii_case(&suffix) {
            return Err(IdError::Checksum);
        }
        let mut canonical = [0u8; 18];
        canonical[..15].copy_from_slice(first15);
        canonical[15..].copy_from_slice(&suffix);
        Ok(Self(canonical))
    }

    /// Whether the id's three-character key prefix is `prefix` (`b"005"` for users): the test
    /// [`key_prefix`](Self::key_prefix) makes, on the bytes.
    pub fn has_key_prefix(&self, prefix: &[u8; 3]) -> bool {
        self.0[..3] == prefix[..]
    }

    /// The 18-character form.
    pub fn as_str(&self) -> &str {
        // Always ASCII (checked by `parse`), so never the fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The 18-character form's bytes (ASCII letters and digits).
    pub fn as_bytes(&self) -> &[u8; 18] {
        &self.0
    }

    /// The case-sensitive 15-character form.
    pub fn short(&self) -> &str {
        &self.as_str()[..15]
    }

    /// The three-character key prefix (`005` for users, `00D` for organisations).
    pub fn key_prefix(&self) -> &str {
        &self.as_str()[..3]
    }
}

impl fmt::Display for SalesforceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SalesforceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SalesforceId").field(&self.as_str()).finish()
    }
}

impl std::str::FromStr for SalesforceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SalesforceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SalesforceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_15_character_id_gains_its_case_suffix() {
        let id = SalesforceId::parse("70130000001tcyI").unwrap();
        assert_eq!(id.as_str(), "70130000001tcyIAAQ");
        assert_eq!(id.short(), "70130000001tcyI");
    }

    #[test]
    fn the_sample_org_id_round_trips_between_forms() {
        let long = SalesforceId::parse("00D8a000002bQxTEAU").unwrap();
        let short = SalesforceId::parse("00D8a000002bQxT").unwrap();
        assert_eq!(long, short);
        assert_eq!(long.key_prefix(), "00D");
    }

    #[test]
    fn ids_that_differ_only_in_case_are_different_records() {
        let a = SalesforceId::parse("0058a00000LmN2p").unwrap();
        let b = SalesforceId::parse("0058a00000lmN2p").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_ids_are_refused_with_the_reason() {
        assert_eq!(SalesforceId::parse("005"), Err(IdError::Length(3)));
        assert_eq!(
            SalesforceId::parse("0058a00000LmN2-"),
            Err(IdError::Character)
        );
        assert_eq!(
            SalesforceId::parse("0058a00000LmN2pZZZ"),
            Err(IdError::Checksum)
        );
    }

    #[test]
    fn a_lowercased_suffix_is_accepted() {
        let id = SalesforceId::parse("0058a00000LmN2paaf").unwrap();
        assert_eq!(id.as_str(), "0058a00000LmN2pAAF");
    }
}
