//! The process-wide symbol registry: tells every output sink which name lives at which address.

pub mod jitdump;
pub mod jitdump_read;
pub mod name;
pub mod perf_map;

use std::io;
use std::path::{Path, PathBuf};

/// The directory perf looks in for `perf-<pid>.map`, and our default output directory.
pub const DEFAULT_DIR: &str = "/tmp";

/// Environment variable that overrides [`DEFAULT_DIR`] for everything we write.
pub const DIR_ENV: &str = "PERF_TRAMPOLINE_DIR";

/// The output directory: `$PERF_TRAMPOLINE_DIR` when set and not empty, else `/tmp`.
pub fn output_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

/// A sink's file could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// What the file is, e.g. "perf map".
    pub kind: &'static str,
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot open {} {}: {}", self.kind, self.path.display(), self.error)
    }
}

impl std::error::Error for OpenError {}

/// One function for perf: `size` bytes of code at `addr`, called `name`.
#[derive(Clone, Copy, Debug)]
pub struct Symbol<'a> {
    pub addr: usize,
    pub size: usize,
    /// Raw name bytes; sinks clean them with [`name::clean`].
    pub name: &'a [u8],
}

/// One output format.
pub trait Sink: Send {
    /// Short name used in messages, e.g. "perf map".
    fn kind(&self) -> &'static str;
    /// The file this sink writes.
    fn path(&self) -> &Path;
    /// Records one symbol; the record must be complete in the file when this returns Ok.
    fn record(&mut self, sym: &Symbol) -> io::Result<()>;
    /// Marks the end of the output (at process exit); no record follows.
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fans every symbol out to its enabled sinks; a sink that fails is dropped, the others go
/// on. Sinks stay open while disabled, so turning an output off and on again appends to the
/// same file instead of starting it over.
#[derive(Default)]
pub struct Registry {
    sinks: Vec<(Box<dyn Sink>, bool)>,
}

impl Registry {
    pub const fn empty() -> Registry {
        Registry { sinks: Vec::new() }
    }

    /// A registry with these sinks, all enabled.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Registry {
        Registry { sinks: sinks.into_iter().map(|s| (s, true)).collect() }
    }

    /// Enables exactly the sinks writing `wanted` (kind, path) pairs, opening the missing ones
    /// with `open`. All or nothing: if one cannot be opened, nothing changes.
    pub fn select(
        &mut self,
        wanted: &[(&'static str, PathBuf)],
        mut open: impl FnMut(&'static str, &Path) -> Result<Box<dyn Sink>, OpenError>,
    ) -> Result<(), OpenError> {
        let has = |s: &[(Box<dyn Sink>, bool)], kind: &str, path: &Path| {
            s.iter().any(|(sink, _)| sink.kind() == kind && sink.path() == path)
        };
        let mut opened = Vec::new();
        for (kind, path) in wanted {
            if !has(&self.sinks, kind, path) {
                opened.push((open(kind, path)?, false));
            }
        }
        self.sinks.extend(opened);
        for (sink, enabled) in &mut self.sinks {
            *enabled = wanted.iter().any(|(k, p)| sink.kind() == *k && sink.path() == p.as_path());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        !self.sinks.iter().any(|(_, enabled)| *enabled)
    }

    /// The files being written, for messages and for tests.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.sinks.iter().filter(|(_, on)| *on).map(|(s, _)| s.path().to_path_buf()).collect()
    }

    /// Closes every sink (at exit); failures are of no use to anyone by then.
    pub fn close(&mut self) {
        for (sink, _) in &mut self.sinks {
            let _ = sink.close();
        }
    }

    /// Records `sym` in every enabled sink. Returns one message per sink that failed now;
    /// those sinks are dropped so a full disk costs one warning, not one per function.
    pub fn record(&mut self, sym: &Symbol) -> Vec<String> {
        let mut failures = Vec::new();
        self.sinks.retain_mut(|(sink, enabled)| {
            if !*enabled {
                return true;
            }
            match sink.record(sym) {
                Ok(()) => true,
                Err(e) => {
                    failures.push(format!(
                        "writing {} {} failed ({e}); {} output disabled, the program continues",
                        sink.kind(),
                        sink.path().display(),
                        sink.kind()
                    ));
                    false
                }
            }
        });
        failures
    }
}
