//! Backend names (`perf`, ...) as users write them, and the sinks each one opens.

use std::fmt;
use std::path::Path;

use crate::registry::{OpenError, Sink, perf_map::PerfMap};

/// Which outputs to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `/tmp/perf-<pid>.map`, read by `perf report` and `perf script`.
    PerfMap,
}

/// The names accepted wherever a backend is chosen (API, command line, environment).
pub const NAMES: &[&str] = &["perf"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend(pub String);

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown backend {:?}; accepted: {}", self.0, NAMES.join(", "))
    }
}

impl std::error::Error for UnknownBackend {}

impl Backend {
    pub fn parse(s: &str) -> Result<Backend, UnknownBackend> {
        match s {
            "perf" => Ok(Backend::PerfMap),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }

    /// Opens this backend's sinks in `dir` for process `pid`.
    pub fn open_sinks(self, dir: &Path, pid: u32) -> Result<Vec<Box<dyn Sink>>, OpenError> {
        match self {
            Backend::PerfMap => Ok(vec![Box::new(PerfMap::open(dir, pid)?)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_parses_and_others_are_refused_with_the_list() {
        for n in NAMES {
            assert!(Backend::parse(n).is_ok(), "{n}");
        }
        let e = Backend::parse("perff").unwrap_err().to_string();
        assert!(e.contains("\"perff\"") && e.contains("accepted: perf"), "{e}");
        assert!(Backend::parse("").is_err());
    }
}
