//! The process-wide symbol registry: tells every output sink which name lives at which address.

pub mod appender;
pub mod jitdump;
pub mod jitdump_format;
pub mod jitdump_read;
pub mod name;
pub mod perf_map;
pub mod stale;

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

/// The kinds of output file a sink writes. The registry only tells them apart; which sink
/// writes each is chosen above it (`compose/backend.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `perf-<pid>.map`, read by `perf report` and `perf script`.
    PerfMap,
    /// `jit-<pid>.dump`, read by `perf inject --jit`.
    JitDump,
}

impl OutputKind {
    /// Where the output of process `pid` lives in `dir`: the names perf looks for.
    pub fn path(self, dir: &Path, pid: u32) -> PathBuf {
        dir.join(format!("{}{pid}{}", self.prefix(), self.suffix()))
    }

    /// Every kind, for callers that look for any of our files.
    pub const ALL: [OutputKind; 2] = [OutputKind::PerfMap, OutputKind::JitDump];

    /// The kind and pid a file name such as `perf-123.map` stands for, if it is one of ours.
    pub fn parse_file_name(name: &str) -> Option<(OutputKind, u32)> {
        Self::ALL.into_iter().find_map(|kind| {
            let digits = name
                .strip_prefix(kind.prefix())?
                .strip_suffix(kind.suffix())?;
            // u32's parser also takes a leading '+', which no name of ours has.
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((kind, digits.parse().ok()?))
        })
    }

    fn prefix(self) -> &'static str {
        match self {
            OutputKind::PerfMap => "perf-",
            OutputKind::JitDump => "jit-",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            OutputKind::PerfMap => ".map",
            OutputKind::JitDump => ".dump",
        }
    }
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputKind::PerfMap => "perf map",
            OutputKind::JitDump => "jitdump",
        })
    }
}

/// A sink's file could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// What the file is.
    pub kind: OutputKind,
    /// Where it is.
    pub path: PathBuf,
    /// Why it could not be opened.
    pub error: io::Error,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot open {} {}: {}",
            self.kind,
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// One function for perf: `size` bytes of code at `addr`, called `name`.
#[derive(Clone, Copy, Debug)]
pub struct Symbol<'a> {
    /// Where the code starts.
    pub addr: usize,
    /// Bytes of code.
    pub size: usize,
    /// Raw name bytes; sinks clean them with [`name::clean`].
    pub name: &'a [u8],
}

/// A [`Symbol`] that owns its name (read back from a file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedSymbol {
    /// Where the code starts.
    pub addr: usize,
    /// Bytes of code.
    pub size: usize,
    /// Raw name bytes.
    pub name: Vec<u8>,
}

impl OwnedSymbol {
    /// The same symbol, borrowing the name.
    pub fn as_symbol(&self) -> Symbol<'_> {
        Symbol {
            addr: self.addr,
            size: self.size,
            name: &self.name,
        }
    }
}

/// Refuses a file we opened that is not ours to write: in a shared directory such as /tmp
/// another user may have created it first (we must not write into it, nor truncate it), and
/// one of ours that is not a regular file (a FIFO, a device) is no output file. Returns its
/// metadata.
fn check_ours(file: &std::fs::File) -> io::Result<std::fs::Metadata> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    let owner = meta.uid();
    let me = crate::os::euid();
    if owner != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("it belongs to uid {owner}, not to us (uid {me}); refusing to write into it"),
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file; refusing to write into it (remove it)",
        ));
    }
    Ok(meta)
}

/// Who writes our output files besides us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writers {
    /// Nobody in this process: a file last written before this process began is a dead
    /// process's (with our pid), and it is started over before our first record.
    OnlyUs,
    /// CPython's own trampoline may write the same files (`activate(stack_on_cpython=True)`):
    /// whatever they hold is kept.
    WithCpython,
}

/// Opens (creating if needed, mode 0600) an output file for reading and appending, as the
/// appender needs; never through a symlink planted at `path`, never one that is not ours. A
/// file left by a dead process with our pid is emptied first (see [`Writers`]): nothing of
/// it may name our code.
pub fn open_output(
    kind: OutputKind,
    path: &Path,
    writers: Writers,
) -> Result<std::fs::File, OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |error| OpenError {
        kind,
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(fail)?;
    let meta = check_ours(&file).map_err(fail)?;
    if writers == Writers::OnlyUs && meta.len() > 0 && stale::written_before_us(&meta) {
        file.set_len(0).map_err(fail)?;
    }
    Ok(file)
}

/// One output format.
pub trait Sink: Send {
    /// What this sink writes (its name in messages, with its `Display`).
    fn kind(&self) -> OutputKind;
    /// The file this sink writes.
    fn path(&self) -> &Path;
    /// Records one symbol; the record must be complete in the file when this returns Ok.
    fn record(&mut self, sym: &Symbol) -> io::Result<()>;
    /// Records many symbols at once (a forked child copying its parent's); sinks that can
    /// write them all with one system call do.
    fn record_many(&mut self, syms: &[Symbol]) -> io::Result<()> {
        syms.iter().try_for_each(|s| self.record(s))
    }
    /// Every symbol this sink's file names, up to the end of this sink's last record (in a
    /// forked child: the parent's records as of the fork, none it added after).
    fn read_back(&self) -> io::Result<Vec<OwnedSymbol>>;
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
    /// A registry without sinks.
    pub const fn empty() -> Registry {
        Registry { sinks: Vec::new() }
    }

    /// A registry with these sinks, all enabled.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Registry {
        Registry {
            sinks: sinks.into_iter().map(|s| (s, true)).collect(),
        }
    }

    /// Enables exactly the sinks writing `wanted` (kind, path) pairs, opening the missing ones
    /// with `open`. All or nothing: if one cannot be opened, nothing changes.
    pub fn select(
        &mut self,
        wanted: &[(OutputKind, PathBuf)],
        mut open: impl FnMut(OutputKind, &Path) -> Result<Box<dyn Sink>, OpenError>,
    ) -> Result<(), OpenError> {
        let has = |s: &[(Box<dyn Sink>, bool)], kind: OutputKind, path: &Path| {
            s.iter()
                .any(|(sink, _)| sink.kind() == kind && sink.path() == path)
        };
        let mut opened = Vec::new();
        for &(kind, ref path) in wanted {
            if !has(&self.sinks, kind, path) {
                opened.push((open(kind, path)?, false));
            }
        }
        self.sinks.extend(opened);
        for (sink, enabled) in &mut self.sinks {
            *enabled = wanted
                .iter()
                .any(|(k, p)| sink.kind() == *k && sink.path() == p.as_path());
        }
        Ok(())
    }

    /// Whether no sink is enabled.
    pub fn is_empty(&self) -> bool {
        !self.sinks.iter().any(|(_, enabled)| *enabled)
    }

    /// The files being written, for messages and for tests.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.sinks
            .iter()
            .filter(|(_, on)| *on)
            .map(|(s, _)| s.path().to_path_buf())
            .collect()
    }

    /// After `fork()`, in the child: every enabled output moves to a file of the child's own
    /// (`path_for(kind, directory)`), so parent and child never write into one file. With
    /// `persist`, the child's files start with everything the parent's named (the child runs
    /// the same trampolines); otherwise they name only what the child creates itself. Returns
    /// one message per output the child could not open (that output is off in the child).
    pub fn after_fork(
        &mut self,
        persist: bool,
        path_for: impl Fn(OutputKind, &Path) -> PathBuf,
        mut open: impl FnMut(OutputKind, &Path) -> Result<Box<dyn Sink>, OpenError>,
    ) -> Vec<String> {
        let mut messages = Vec::new();
        let inherited = std::mem::take(&mut self.sinks);
        let history = if persist {
            // Every enabled sink names the same symbols: the first one readable will do.
            inherited
                .iter()
                .filter(|(_, on)| *on)
                .find_map(|(s, _)| s.read_back().ok())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let symbols: Vec<Symbol> = history.iter().map(OwnedSymbol::as_symbol).collect();
        for (old, enabled) in inherited {
            if !enabled {
                continue;
            }
            let dir = old.path().parent().unwrap_or(Path::new("/"));
            let mut sink = match open(old.kind(), &path_for(old.kind(), dir)) {
                Ok(sink) => sink,
                Err(e) => {
                    messages.push(format!(
                        "after fork: {e}; {} output off in this process",
                        old.kind()
                    ));
                    continue;
                }
            };
            if let Err(e) = sink.record_many(&symbols) {
                messages.push(format!(
                    "after fork: copying the parent's {} failed ({e})",
                    old.kind()
                ));
            }
            self.sinks.push((sink, true));
        }
        messages
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
        // A plain loop: this runs at the first call of every code object, and `retain_mut`'s
        // bookkeeping cost more than the loop itself. Failures are the rare case.
        let mut failed = Vec::new();
        for (i, (sink, enabled)) in self.sinks.iter_mut().enumerate() {
            if *enabled && let Err(e) = sink.record(sym) {
                failed.push((i, e));
            }
        }
        if failed.is_empty() {
            return Vec::new();
        }
        self.drop_failed(failed)
    }

    /// Drops the sinks that failed (indices in increasing order); one message each, in order.
    #[cold]
    fn drop_failed(&mut self, failed: Vec<(usize, io::Error)>) -> Vec<String> {
        let mut messages: Vec<String> = failed
            .into_iter()
            .rev()
            .map(|(i, e)| {
                let (sink, _) = self.sinks.remove(i);
                format!(
                    "writing {} {} failed ({e}); {} output disabled, the program continues",
                    sink.kind(),
                    sink.path().display(),
                    sink.kind()
                )
            })
            .collect();
        messages.reverse();
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails every record when made with `fails`, and counts the ones it took.
    struct Counting {
        path: PathBuf,
        fails: bool,
        taken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Sink for Counting {
        fn kind(&self) -> OutputKind {
            OutputKind::PerfMap
        }
        fn path(&self) -> &Path {
            &self.path
        }
        fn record(&mut self, _: &Symbol) -> io::Result<()> {
            if self.fails {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.taken
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        fn read_back(&self) -> io::Result<Vec<OwnedSymbol>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn failing_sinks_are_dropped_with_one_message_each_in_order() {
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sink = |name: &str, fails| -> Box<dyn Sink> {
            Box::new(Counting {
                path: PathBuf::from(name),
                fails,
                taken: taken.clone(),
            })
        };
        let mut reg = Registry::new(vec![sink("a", true), sink("b", false), sink("c", true)]);
        let sym = Symbol {
            addr: 0x1000,
            size: 16,
            name: b"py::f:/x.py",
        };
        let messages = reg.record(&sym);
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with("writing perf map a failed")
                && messages[1].starts_with("writing perf map c failed")
        );
        assert_eq!(reg.paths(), vec![PathBuf::from("b")]);
        assert!(reg.record(&sym).is_empty());
        assert_eq!(taken.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn file_names_read_back_as_the_kind_and_pid_they_were_made_for() {
        for kind in OutputKind::ALL {
            for pid in [1, 4_194_304, u32::MAX] {
                let path = kind.path(Path::new("/x"), pid);
                let name = path.file_name().unwrap().to_str().unwrap();
                assert_eq!(OutputKind::parse_file_name(name), Some((kind, pid)));
            }
        }
        for other in [
            "perf-.map",
            "perf-+1.map",
            "perf-1.map.tmp",
            "jit-1.map",
            "perf-4294967296.map",
            "x",
        ] {
            assert_eq!(OutputKind::parse_file_name(other), None, "{other}");
        }
    }
}
