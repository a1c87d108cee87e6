//! Reads a jitdump back: for our tests and for checking dumps in the field.

use std::fmt;

pub use super::jitdump_format::Header;
use super::jitdump_format::{
    CODE_CLOSE, CODE_LOAD, CODE_UNWINDING_INFO, HEADER_SIZE, MAGIC, PREFIX_SIZE,
};

/// One record, its fields as the format names them (see `jitdump_format.rs`).
#[allow(missing_docs)] // the fields are the format's, named as it names them
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A function's code and name.
    CodeLoad {
        timestamp: u64,
        pid: u32,
        tid: u32,
        vma: u64,
        code_addr: u64,
        code_index: u64,
        name: Vec<u8>,
        code: Vec<u8>,
    },
    /// Unwind sections for the next `CODE_LOAD`.
    UnwindingInfo {
        timestamp: u64,
        eh_frame_hdr_size: u64,
        mapped_size: u64,
        /// `unwind_data_size` bytes: `.eh_frame` then `.eh_frame_hdr`.
        data: Vec<u8>,
    },
    /// The end of the dump.
    Close { timestamp: u64 },
    /// A record we do not write (its id).
    Other { id: u32, timestamp: u64 },
}

/// A whole dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The file header.
    pub header: Header,
    /// The whole records, in file order.
    pub records: Vec<Record>,
    /// Where each record lies in the file (same order), for copying records as they are.
    pub spans: Vec<std::ops::Range<usize>>,
    /// The header's length in the file.
    pub header_len: usize,
    /// Bytes after the last whole record: unused room (zeros) of a writer that did not end
    /// normally, or a record cut short.
    pub trailing: usize,
}

/// What is wrong with a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jitdump: {}", self.0)
    }
}

impl std::error::Error for ReadError {}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
    }
}

fn bad(what: &str) -> ReadError {
    ReadError(what.to_string())
}

/// Parses a dump written on this machine (native byte order, as every writer uses).
pub fn parse(bytes: &[u8]) -> Result<Dump, ReadError> {
    let mut c = Cursor(bytes);
    let short = || bad("file shorter than its header");
    if c.u32().ok_or_else(short)? != MAGIC {
        return Err(bad(
            "bad magic (not a jitdump, or written on another byte order)",
        ));
    }
    let version = c.u32().ok_or_else(short)?;
    let total = c.u32().ok_or_else(short)?;
    if total < HEADER_SIZE {
        return Err(bad("header size below 40"));
    }
    let elf_mach = c.u32().ok_or_else(short)?;
    let _pad = c.u32().ok_or_else(short)?;
    let pid = c.u32().ok_or_else(short)?;
    let timestamp = c.u64().ok_or_else(short)?;
    let flags = c.u64().ok_or_else(short)?;
    c.take(total as usize - HEADER_SIZE as usize)
        .ok_or_else(short)?;
    let header = Header {
        version,
        elf_mach,
        pid,
        timestamp,
        flags,
    };

    let header_len = total as usize;
    let (mut records, mut spans) = (Vec::new(), Vec::new());
    let trailing = loop {
        let rest = c.0;
        let mut p = Cursor(rest);
        let (Some(id), Some(size), Some(timestamp)) = (p.u32(), p.u32(), p.u64()) else {
            break rest.len();
        };
        if id == 0 && size == 0 {
            // Room a writer had not used yet (see appender.rs): perf stops here too.
            break rest.len();
        }
        if (size as usize) < PREFIX_SIZE {
            return Err(bad("record smaller than its prefix"));
        }
        let Some(body) = p.take(size as usize - PREFIX_SIZE) else {
            break rest.len();
        };
        c.0 = p.0;
        let start = bytes.len() - rest.len();
        spans.push(start..start + size as usize);
        let mut b = Cursor(body);
        let trunc = || bad("record body shorter than its fields");
        records.push(match id {
            CODE_LOAD => {
                let (pid, tid) = (b.u32().ok_or_else(trunc)?, b.u32().ok_or_else(trunc)?);
                let (vma, code_addr) = (b.u64().ok_or_else(trunc)?, b.u64().ok_or_else(trunc)?);
                let code_size = b.u64().ok_or_else(trunc)? as usize;
                let code_index = b.u64().ok_or_else(trunc)?;
                let rest = b.0;
                let nul = rest
                    .iter()
                    .position(|&x| x == 0)
                    .ok_or_else(|| bad("name without NUL"))?;
                if rest.len() != nul + 1 + code_size {
                    return Err(bad("CODE_LOAD: code is not exactly at the record's end"));
                }
                Record::CodeLoad {
                    timestamp,
                    pid,
                    tid,
                    vma,
                    code_addr,
                    code_index,
                    name: rest[..nul].to_vec(),
                    code: rest[nul + 1..].to_vec(),
                }
            }
            CODE_UNWINDING_INFO => {
                let data_size = b.u64().ok_or_else(trunc)? as usize;
                let eh_frame_hdr_size = b.u64().ok_or_else(trunc)?;
                let mapped_size = b.u64().ok_or_else(trunc)?;
                let data = b.take(data_size).ok_or_else(trunc)?.to_vec();
                if eh_frame_hdr_size as usize > data.len() {
                    return Err(bad("eh_frame_hdr larger than the unwind data"));
                }
                Record::UnwindingInfo {
                    timestamp,
                    eh_frame_hdr_size,
                    mapped_size,
                    data,
                }
            }
            CODE_CLOSE => Record::Close { timestamp },
            id => Record::Other { id, timestamp },
        });
    };
    Ok(Dump {
        header,
        records,
        spans,
        header_len,
        trailing,
    })
}
