//! Backend names (`perf`, `perf_jit`, both) as users write them, and the sinks they open.

use std::io;
use std::path::{Path, PathBuf};

use super::UnknownName;
use crate::jit_template::JitTemplate;
use crate::registry::jitdump::{self, JitDump};
use crate::registry::perf_map::PerfMap;
use crate::registry::{OpenError, OutputKind, Sink, Writers};

/// Which outputs to write: `perf` is the perf map, `perf_jit` the jitdump (CPython's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backends {
    /// Whether to write the perf map.
    pub perf_map: bool,
    /// Whether to write the jitdump.
    pub jitdump: bool,
}

/// The names accepted wherever backends are chosen (API, command line, environment).
pub const NAMES: &[&str] = &["perf", "perf_jit", "perf,perf_jit"];

impl Backends {
    /// Parses `perf`, `perf_jit`, or a comma-separated list of them (both at once).
    pub fn parse(s: &str) -> Result<Backends, UnknownName> {
        let mut b = Backends {
            perf_map: false,
            jitdump: false,
        };
        for part in s.split(',') {
            match part.trim() {
                "perf" => b.perf_map = true,
                "perf_jit" => b.jitdump = true,
                _ => {
                    return Err(UnknownName {
                        what: "backend",
                        given: s.to_string(),
                        accepted: NAMES,
                    });
                }
            }
        }
        Ok(b)
    }

    /// The smallest slot stride these outputs need for `template`.
    pub fn min_stride(self, template: &JitTemplate) -> usize {
        if self.jitdump {
            jitdump::min_stride(template)
        } else {
            0
        }
    }

    /// The kind and path of each output for process `pid` in `dir`.
    pub fn outputs(self, dir: &Path, pid: u32) -> Vec<(OutputKind, PathBuf)> {
        let kinds = [
            (self.perf_map, OutputKind::PerfMap),
            (self.jitdump, OutputKind::JitDump),
        ];
        kinds
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, k)| (k, k.path(dir, pid)))
            .collect()
    }
}

/// Opens the sink of `kind` at `path`, for process `pid`; `writers`: who else writes it. A
/// jitdump needs the `template` (for its code and unwind info), a perf map does not.
pub fn open_sink(
    kind: OutputKind,
    path: &Path,
    pid: u32,
    template: Option<&JitTemplate>,
    writers: Writers,
) -> Result<Box<dyn Sink>, OpenError> {
    Ok(match kind {
        OutputKind::JitDump => {
            let template = template.ok_or_else(|| OpenError {
                kind,
                path: path.to_path_buf(),
                error: io::Error::other("a jitdump needs the template"),
            })?;
            Box::new(JitDump::open(path, pid, template, writers)?)
        }
        OutputKind::PerfMap => Box::new(PerfMap::open(path, writers)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_parses_and_others_are_refused_with_the_list() {
        for n in NAMES {
            assert!(Backends::parse(n).is_ok(), "{n}");
        }
        assert_eq!(
            Backends::parse("perf_jit,perf"),
            Backends::parse("perf,perf_jit")
        );
        assert_eq!(
            Backends::parse("perf,perf_jit").unwrap(),
            Backends {
                perf_map: true,
                jitdump: true
            }
        );
        let e = Backends::parse("perff").unwrap_err().to_string();
        assert!(
            e.contains("\"perff\"") && e.contains("accepted: perf, perf_jit, perf,perf_jit"),
            "{e}"
        );
        for bad in ["", ",", "perf,", "perf,nope"] {
            assert!(Backends::parse(bad).is_err(), "{bad:?}");
        }
    }
}
