//! Our own unwinder over `perf record --call-graph dwarf` recordings: each sample's copied
//! user stack unwound with framehop (DWARF CFI of the mapped ELF files, frame pointers
//! through our trampolines), native frames named from ELF symbols, Python frames from the
//! perf maps, kernel frames from perf's own callchain. No `perf inject`, no jitdump: the
//! cost grows with samples, not with the number of Python functions.

mod elf;
mod process;
mod state;
pub(crate) mod stream;
mod symbols;

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use linux_perf_data::linux_perf_event_reader::SampleFormat;
use linux_perf_data::{PerfFileReader, PerfFileRecord};

use state::State;
pub(crate) use state::{Moved, Unwound};

/// Whether `path` is a recording whose samples carry user stack copies (made with
/// `--call-graph dwarf`).
pub fn has_user_stacks(path: &Path) -> Result<bool, String> {
    let reader = open(path, Rc::default())?;
    Ok(reader.perf_file.event_attributes().iter().any(|a| {
        a.attributes()
            .sample_format
            .contains(SampleFormat::STACK_USER)
    }))
}

/// The recording at `path` (a perf.data file, or perf's pipe format saved to a file), opened
/// for reading its records, with the bytes read counted in `read`; an error says why it cannot be.
pub(crate) fn open(
    path: &Path,
    read: Rc<Cell<u64>>,
) -> Result<PerfFileReader<Counted<BufReader<File>>>, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pipe_format = is_pipe_format(&mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    let counted = Counted {
        inner: BufReader::with_capacity(1 << 20, file),
        read,
    };
    // `--keep` of a streamed recording is perf's pipe format, as `perf record -o - > file`.
    let parsed = if pipe_format {
        PerfFileReader::parse_pipe(counted)
    } else {
        PerfFileReader::parse_file(counted)
    };
    let reader = parsed.map_err(|e| {
        format!(
            "{}: not a perf.data file perf-trampoline can read ({e})",
            path.display()
        )
    })?;
    // Built without a zstd decoder (a C library to build for one perf option).
    if let Ok(Some(_)) = reader.perf_file.compression_info() {
        return Err(format!(
            "{}: recorded compressed (perf record -z); record it without -z",
            path.display()
        ));
    }
    Ok(reader)
}

/// Whether `file` starts with perf's pipe header (magic, then its own size, 16), leaving the
/// file at its start.
fn is_pipe_format(file: &mut File) -> std::io::Result<bool> {
    let mut header = [0u8; 16];
    let n = file.read(&mut header)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(n == 16
        && &header[..8] == b"PERFILE2"
        && u64::from_le_bytes(header[8..].try_into().unwrap()) == 16)
}

/// A reader that counts the bytes it hands out, for progress reports.
pub(crate) struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counted<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// How far the work has come, for the `tick` callbacks.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub samples: u64,
    /// Bytes of perf.data read so far.
    pub bytes: u64,
}

/// Unwinds every sample of the recording at `path`. `tick` is called every few hundred
/// records with the progress so far; an error from it stops the work and is returned.
/// `moved` names where to read a file process `pid` maps at `path` instead: `(pid, path)`
/// -> the same file through `/proc/<pid>/root`, for a process in a container.
pub fn unwind_file<E>(
    path: &Path,
    moved: Moved,
    tick: impl FnMut(Progress) -> Result<(), E>,
) -> Result<Unwound, Error<E>> {
    let read = Rc::default();
    let reader = open(path, Rc::clone(&read)).map_err(Error::Read)?;
    unwind_records(reader, &path.display().to_string(), &read, moved, tick)
}

/// Unwinds the records `reader` yields, in the order perf meant them (its rounds sorted by
/// time). Each sample's stack copy is dropped once unwound; what stays is each distinct stack
/// once and 32 bytes per sample (its time, thread and stack, for the formats with timelines).
fn unwind_records<R: Read, E>(
    reader: PerfFileReader<R>,
    source: &str,
    read: &Cell<u64>,
    moved: Moved,
    mut tick: impl FnMut(Progress) -> Result<(), E>,
) -> Result<Unwound, Error<E>> {
    let PerfFileReader {
        mut perf_file,
        mut record_iter,
    } = reader;
    let mut state = State::new(&perf_file, moved);
    let mut records = 0u64;
    loop {
        let record = match record_iter.next_record(&mut perf_file) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                // A recording cut short (perf killed): keep what came before.
                state.note(format!(
                    "{source}: stopped reading at a broken record ({e})"
                ));
                break;
            }
        };
        records += 1;
        if records.is_multiple_of(512) {
            tick(Progress {
                samples: state.samples(),
                bytes: read.get(),
            })
            .map_err(Error::Stopped)?;
        }
        let PerfFileRecord::EventRecord { record, .. } = record else {
            continue;
        };
        if let Ok(record) = record.parse() {
            state.record(record);
        }
    }
    tick(Progress {
        samples: state.samples(),
        bytes: read.get(),
    })
    .map_err(Error::Stopped)?;
    Ok(state.finish())
}

#[derive(Debug)]
pub enum Error<E> {
    /// The file cannot be read as a perf.data file (the message says why).
    Read(String),
    /// `tick` asked to stop.
    Stopped(E),
}
