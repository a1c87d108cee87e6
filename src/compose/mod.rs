//! Composition at the top: what the names a user chooses (backends, strategies) open and
//! build. The parts below know nothing of each other: the registry no format, the slot
//! sources no strategy.

pub mod backend;
pub mod strategy;

use std::fmt;

/// A name the user gave that is not one of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named, e.g. "backend".
    pub what: &'static str,
    /// The name as given.
    pub given: String,
    /// The names that would have been accepted.
    pub accepted: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; accepted: {}",
            self.what,
            self.given,
            self.accepted.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}
