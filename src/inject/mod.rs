//! Prepares a recording for `perf inject --jit` so that it writes only the functions the
//! samples can reach: `perf inject` writes one ELF file per jitdump record, so its time and
//! memory grow with every function the program ever ran; ours grow with the samples.
//!
//! The jitdumps the recording maps are read, each function whose code holds a value some
//! sample carries is kept (see `reach.rs`), and filtered copies of the dumps (each kept load
//! with the unwinding record before it) go to a directory with a copy of the recording that
//! names them (see `rewrite.rs`). `perf inject --jit` on that copy writes its `jitted-*.so`
//! files beside the filtered dumps, in that directory, and gives the same call chains.

mod reach;
mod rewrite;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::perfdata::Error;
use crate::registry::jitdump_format::PREFIX_SIZE;
use crate::registry::jitdump_read::{self, Record};
use crate::registry::{DEFAULT_DIR, OutputKind};

/// Where the pid lies in a jitdump's header: after magic, version, size, machine, padding.
const HEADER_PID_AT: usize = 20;

/// One jitdump of the recording and its filtered copy.
#[derive(Debug)]
pub struct Filtered {
    /// The dump the recording names.
    pub original: PathBuf,
    /// Its copy with the reachable functions only.
    pub copy: PathBuf,
    /// Functions kept, of all the dump holds.
    pub kept: usize,
    /// Functions in the dump.
    pub total: usize,
}

/// What `prepare` made.
#[derive(Debug)]
pub struct Prepared {
    /// The copy of the recording that names the filtered dumps: give it to `perf inject --jit`.
    pub perf_data: PathBuf,
    /// One entry per dump found and read.
    pub dumps: Vec<Filtered>,
    /// Dumps the recording names that could not be read, with why.
    pub notes: Vec<String>,
    /// Samples read.
    pub samples: u64,
}

/// A dump read, with where its functions lie.
struct Loaded {
    original: PathBuf,
    pid: u32,
    bytes: Vec<u8>,
    dump: jitdump_read::Dump,
    /// Global function id of each record that is a `CODE_LOAD`.
    ids: HashMap<usize, usize>,
}

/// Filters the jitdumps of the recording at `perf_data` into `dir` (which must exist and be
/// ours alone), with a copy of the recording naming them, and each other file process `pid`
/// maps at `path` by `moved[(pid, path)]` where that is given. `tick` gets the samples read.
pub fn prepare<E>(
    perf_data: &Path,
    dir: &Path,
    moved: &HashMap<(u32, PathBuf), PathBuf>,
    tick: impl FnMut(u64) -> Result<(), E>,
) -> Result<Prepared, Error<E>> {
    let mut notes = Vec::new();
    let mut loaded = Vec::new();
    let mut ranges: HashMap<u32, reach::Ranges> = HashMap::new();
    let mut functions = 0usize;
    // (process, recorded path) -> index in `loaded`: one dump may be read for several.
    let mut read_as: HashMap<(u32, PathBuf), usize> = HashMap::new();
    let mut sources: HashMap<(PathBuf, u32), Option<usize>> = HashMap::new();
    for found in reach::dumps(perf_data).map_err(Error::Read)? {
        let (source, pid) = source(&found);
        if let Some(&known) = sources.get(&(source.clone(), pid)) {
            if let Some(n) = known {
                read_as.insert((found.mapped_by, found.path), n);
            }
            continue;
        }
        sources.insert((source.clone(), pid), None);
        let bytes = match std::fs::read(&source) {
            Ok(b) => b,
            Err(e) => {
                notes.push(format!("{}: {e}", source.display()));
                continue;
            }
        };
        let dump = match jitdump_read::parse(&bytes) {
            Ok(d) if source != found.path && d.header.pid != found.pid => {
                notes.push(format!(
                    "{}: written by process {}, not a copy of {} (process {} of the recording)",
                    source.display(),
                    d.header.pid,
                    found.path.display(),
                    found.mapped_by
                ));
                continue;
            }
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("{}: {e}", source.display()));
                continue;
            }
        };
        let mut ids = HashMap::new();
        let pid_ranges = ranges.entry(pid).or_default();
        for (i, record) in dump.records.iter().enumerate() {
            if let Record::CodeLoad {
                code_addr, code, ..
            } = record
            {
                pid_ranges.push((*code_addr, code_addr + code.len() as u64, functions));
                ids.insert(i, functions);
                functions += 1;
            }
        }
        sources.insert((source, pid), Some(loaded.len()));
        read_as.insert((found.mapped_by, found.path.clone()), loaded.len());
        loaded.push(Loaded {
            original: found.path,
            pid,
            bytes,
            dump,
            ids,
        });
    }
    for r in ranges.values_mut() {
        r.sort_unstable();
    }
    let (marked, samples) = reach::mark(perf_data, &ranges, functions, tick)?;

    let mut dumps = Vec::new();
    let mut copies = Vec::new();
    for (n, l) in loaded.iter().enumerate() {
        // perf inject writes jitted-<pid>-<index>.so beside the dump: a directory per dump
        // keeps two dumps of one pid (from two directories) apart.
        let sub = dir.join(n.to_string());
        std::fs::create_dir(&sub).map_err(|e| Error::Read(format!("{}: {e}", sub.display())))?;
        let copy = OutputKind::JitDump.path(&sub, l.pid);
        let (bytes, kept) = filtered(l, &marked);
        std::fs::write(&copy, bytes)
            .map_err(|e| Error::Read(format!("{}: {e}", copy.display())))?;
        copies.push(copy.as_os_str().as_bytes().to_vec());
        dumps.push(Filtered {
            original: l.original.clone(),
            copy,
            kept,
            total: l.ids.len(),
        });
    }
    let copy = dir.join("perf.data");
    let renames: HashMap<(u32, Vec<u8>), usize> = read_as
        .into_iter()
        .map(|((pid, path), n)| ((pid, path.as_os_str().as_bytes().to_vec()), n))
        .collect();
    let moved: HashMap<(u32, Vec<u8>), Vec<u8>> = moved
        .iter()
        .map(|((pid, from), to)| {
            let bytes = |p: &PathBuf| p.as_os_str().as_bytes().to_vec();
            ((*pid, bytes(from)), bytes(to))
        })
        .collect();
    rewrite::rename_mappings(perf_data, &copy, |pid, name| {
        let key = (pid, name.to_vec());
        match renames.get(&key) {
            Some(&n) => Some(copies[n].clone()),
            None => moved.get(&key).cloned(),
        }
    })
    .map_err(Error::Read)?;
    Ok(Prepared {
        perf_data: copy,
        dumps,
        notes,
        samples,
    })
}

/// Where the dump of the recording's process `found` is read, and the pid its functions
/// belong to. A process in another pid namespace (a container) names its dump by its own pid,
/// in its own /tmp, where perf on the host cannot open it: `fix-maps` and `record -p` copy it
/// to the host's /tmp under the pid the recording knows, and that copy is read when it is
/// there, unless the recording names a file of its own pid that we can read.
fn source(found: &reach::DumpRef) -> (PathBuf, u32) {
    if found.mapped_by != found.pid || !found.path.exists() {
        let copy = OutputKind::JitDump.path(Path::new(DEFAULT_DIR), found.mapped_by);
        if copy.is_file() {
            return (copy, found.mapped_by);
        }
    }
    (found.path.clone(), found.pid)
}

/// The dump's bytes with only the marked functions (each with the unwinding record just
/// before it), and how many it kept. Other records (the close) stay. A dump written under
/// another pid than the recording's (in a container) gets the recording's: `perf inject`
/// places each function in the process its record names.
fn filtered(l: &Loaded, marked: &[bool]) -> (Vec<u8>, usize) {
    let mut out = l.bytes[..l.dump.header_len].to_vec();
    let repid = l.dump.header.pid != l.pid;
    if repid {
        out[HEADER_PID_AT..HEADER_PID_AT + 4].copy_from_slice(&l.pid.to_ne_bytes());
    }
    let mut kept = 0;
    let records = &l.dump.records;
    for (i, (record, span)) in records.iter().zip(&l.dump.spans).enumerate() {
        let keep = match record {
            Record::CodeLoad { .. } => marked[l.ids[&i]],
            // perf applies an unwinding record to the load that follows it.
            Record::UnwindingInfo { .. } => l.ids.get(&(i + 1)).is_some_and(|&id| marked[id]),
            Record::Close { .. } | Record::Other { .. } => true,
        };
        if keep {
            let at = out.len();
            out.extend_from_slice(&l.bytes[span.clone()]);
            if let Record::CodeLoad { .. } = record {
                kept += 1;
                if repid {
                    // pid, then tid: the thread is the process's, the maps are per process.
                    for field in [at + PREFIX_SIZE, at + PREFIX_SIZE + 4] {
                        out[field..field + 4].copy_from_slice(&l.pid.to_ne_bytes());
                    }
                }
            }
        }
    }
    (out, kept)
}
