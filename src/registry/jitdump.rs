//! The jitdump sink: `jit-<pid>.dump` for `perf inject --jit`, with unwind info per function.
//!
//! Written by hand: the format is a 40-byte header and a few fixed records (Linux
//! `tools/perf/Documentation/jitdump-specification.txt`), and no maintained Rust crate writes
//! it (the ones that exist only read it).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::appender::{Appender, Order};
use super::jitdump_format::{
    CODE_CLOSE, CODE_LOAD, CODE_LOAD_FIELDS, CODE_UNWINDING_INFO, HEADER_SIZE, Header, PREFIX_SIZE,
    UNWINDING_INFO_FIELDS, VERSION, put_prefix, put_u32, put_u64,
};
use super::{OpenError, OutputKind, OwnedSymbol, Sink, Symbol, Writers, jitdump_read, name};
use crate::jit_template::{JitTemplate, JitUnwind};
use crate::os::{monotonic_ns, thread_id};

/// Bytes of salt appended to each dumped copy of the code (never to the live code): newer
/// perf derives each jitted image's build-id from its code bytes alone, and identical
/// trampolines would collapse into one symbol (CPython gh-139544).
pub const SALT_LEN: usize = 8;

/// Code bytes per `CODE_LOAD` of a template of `code_len` bytes: the code plus its salt.
pub fn dumped_code_size(code_len: usize) -> u64 {
    (code_len + SALT_LEN) as u64
}

/// The smallest slot stride that keeps perf's synthetic per-function ranges
/// (`align8(code_size) + mapped_size`) from overlapping.
pub fn min_stride(template: &JitTemplate) -> usize {
    let size = dumped_code_size(template.code.len());
    (size.next_multiple_of(8) + template.unwind.mapped_size) as usize
}

/// Writes `jit-<pid>.dump`: one `CODE_UNWINDING_INFO` and one `CODE_LOAD` per symbol.
pub struct JitDump {
    out: Appender,
    path: PathBuf,
    pid: u32,
    code: Vec<u8>,
    unwind: JitUnwind,
    next_index: u64,
    buf: Vec<u8>,
}

impl JitDump {
    /// Opens the dump at `path` (perf wants it named `jit-<pid>.dump`; mode 0600, never
    /// through a symlink), writes the header and maps the first page executable. A dead
    /// process's dump with our pid is started over (see [`Writers`]); one this process wrote
    /// before an exec goes on after its last record.
    pub fn open(
        path: &Path,
        pid: u32,
        template: &JitTemplate,
        writers: Writers,
    ) -> Result<JitDump, OpenError> {
        let path = path.to_path_buf();
        let fail = |error: io::Error| OpenError {
            kind: OutputKind::JitDump,
            path: path.clone(),
            error,
        };
        let elf_mach = template.arch.elf_machine();
        let unwind = template.unwind.clone();
        // The read access it is opened with serves the marker mapping too.
        let mut file = super::open_output(OutputKind::JitDump, &path, writers)?;
        let next_index = match file.metadata().map_err(fail)?.len() {
            0 => {
                let mut header = Vec::with_capacity(HEADER_SIZE as usize);
                // flags 0: timestamps are CLOCK_MONOTONIC, not the arch's
                Header {
                    version: VERSION,
                    elf_mach,
                    pid,
                    timestamp: monotonic_ns(),
                    flags: 0,
                }
                .write(&mut header);
                if let Err(e) = file.write_all(&header).and_then(|()| map_marker(&file)) {
                    // A dump perf can never find is only litter.
                    let _ = std::fs::remove_file(&path);
                    return Err(fail(e));
                }
                0
            }
            _ => continue_dump(&file, pid, elf_mach)
                .and_then(|next| map_marker(&file).map(|()| next))
                .map_err(fail)?,
        };
        Ok(JitDump {
            // Zeros past the last record: a record header of size 0 ends perf's reading, and
            // each record's first header is stored last.
            out: Appender::new(file, 0, Order::HeadLast(8)),
            path,
            pid,
            code: template.code.clone(),
            unwind,
            next_index,
            buf: Vec::with_capacity(512),
        })
    }
}

impl JitDump {
    /// Appends `CODE_UNWINDING_INFO` and `CODE_LOAD` for `sym` to `b`.
    fn append_records(&mut self, b: &mut Vec<u8>, sym: &Symbol) {
        let now = monotonic_ns();
        let u = &self.unwind;
        let unwind_total = (PREFIX_SIZE + UNWINDING_INFO_FIELDS + u.data.len()).next_multiple_of(8);
        let start = b.len();
        put_prefix(b, CODE_UNWINDING_INFO, unwind_total, now);
        put_u64(b, u.data.len() as u64);
        put_u64(b, u.eh_frame_hdr_size);
        put_u64(b, u.mapped_size);
        b.extend_from_slice(&u.data);
        b.resize(start + unwind_total, 0);

        let name = name::clean(sym.name);
        let code_size = self.code.len() + SALT_LEN;
        let load_total = PREFIX_SIZE + CODE_LOAD_FIELDS + name.len() + 1 + code_size;
        put_prefix(b, CODE_LOAD, load_total, now);
        put_u32(b, self.pid);
        put_u32(b, thread_id());
        put_u64(b, sym.addr as u64); // vma
        put_u64(b, sym.addr as u64); // code_addr
        put_u64(b, code_size as u64);
        put_u64(b, self.next_index);
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        // perf reads the code from the record's end; nothing may follow it.
        b.extend_from_slice(&self.code);
        put_u64(b, self.next_index);
        self.next_index += 1;
    }
}

/// Prepares a dump written since this process began (by its image before an exec) for our
/// records: cuts what follows its last record (the unused room of a writer that never exited,
/// which would end perf's reading, and a `CODE_CLOSE`). Returns the next free code index:
/// `perf inject` names each function's image by it. Refuses a dump of another process.
fn continue_dump(file: &File, pid: u32, elf_mach: u32) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{why}; refusing to write into it"),
        )
    };
    let dump = jitdump_read::parse(&bytes)
        .map_err(|e| refuse(format!("written since this process began, and {e}")))?;
    if dump.header.pid != pid || dump.header.elf_mach != elf_mach {
        return Err(refuse(format!(
            "it is the dump of process {} (machine {})",
            dump.header.pid, dump.header.elf_mach
        )));
    }
    let close = match dump.records.last() {
        Some(jitdump_read::Record::Close { .. }) => PREFIX_SIZE as u64,
        _ => 0,
    };
    file.set_len(len - dump.trailing as u64 - close)?;
    let last = dump.records.iter().filter_map(|r| match r {
        jitdump_read::Record::CodeLoad { code_index, .. } => Some(code_index + 1),
        _ => None,
    });
    Ok(last.max().unwrap_or(0))
}

/// Maps the dump's first page executable and leaves it mapped for the life of the process:
/// the mmap event in perf.data is how `perf inject --jit` finds the dump.
fn map_marker(file: &File) -> io::Result<()> {
    let page = crate::os::page_size();
    // SAFETY: a private read-only mapping of our own file; nothing reads or writes it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "cannot map it executable ({e}); perf inject --jit finds dumps through that \
                 mapping: is the directory on a noexec mount? Set PERF_TRAMPOLINE_DIR to \
                 another directory"
            ),
        ));
    }
    Ok(())
}

impl Sink for JitDump {
    fn kind(&self) -> OutputKind {
        OutputKind::JitDump
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `CODE_UNWINDING_INFO` then `CODE_LOAD`, the first header last: a record is in
    /// the file (page cache) as soon as this returns, so `perf inject` can read a running
    /// program's dump and nothing is lost if the process is killed.
    fn record(&mut self, sym: &Symbol) -> io::Result<()> {
        self.record_many(std::slice::from_ref(sym))
    }

    fn record_many(&mut self, syms: &[Symbol]) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for sym in syms {
            self.append_records(&mut buf, sym);
        }
        let written = self.out.append(&buf);
        self.buf = buf;
        written
    }

    fn read_back(&self) -> io::Result<Vec<OwnedSymbol>> {
        let bytes = self.out.read_records()?;
        let dump = jitdump_read::parse(&bytes).map_err(io::Error::other)?;
        Ok(dump
            .records
            .into_iter()
            .filter_map(|r| match r {
                jitdump_read::Record::CodeLoad {
                    code_addr,
                    name,
                    code,
                    ..
                } => Some(OwnedSymbol {
                    addr: code_addr as usize,
                    size: code.len() - SALT_LEN,
                    name,
                }),
                _ => None,
            })
            .collect())
    }

    fn close(&mut self) -> io::Result<()> {
        let mut b = Vec::with_capacity(PREFIX_SIZE);
        put_prefix(&mut b, CODE_CLOSE, PREFIX_SIZE, monotonic_ns());
        self.out.append(&b)?;
        self.out.finish()
    }
}
