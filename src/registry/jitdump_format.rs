//! The jitdump format, as the writer (`jitdump.rs`) and the reader (`jitdump_read.rs`) both
//! know it: record ids, the file header, and how each record is laid out (Linux
//! `tools/perf/Documentation/jitdump-specification.txt`). Every number is in the writing
//! machine's byte order.

/// The header's first word, `JiTD`.
pub const MAGIC: u32 = 0x4A69_5444;
/// The format version we write.
pub const VERSION: u32 = 1;
/// Bytes in the file header: magic, version, total size, ELF machine, padding, pid
/// (4 bytes each), timestamp and flags (8 each).
pub const HEADER_SIZE: u32 = 40;
/// Record id: a function's code and name.
pub const CODE_LOAD: u32 = 0;
/// Record id: the end of the dump.
pub const CODE_CLOSE: u32 = 3;
/// Record id: `.eh_frame` and `.eh_frame_hdr` for the next `CODE_LOAD`.
pub const CODE_UNWINDING_INFO: u32 = 4;
/// Bytes in every record's prefix: id and total size (4 bytes each), timestamp (8).
pub const PREFIX_SIZE: usize = 16;
/// Bytes of `CODE_LOAD`'s fields after the prefix: pid, tid (4 each), vma, code address,
/// code size, code index (8 each); the name (NUL-terminated) and the code follow.
pub const CODE_LOAD_FIELDS: usize = 40;
/// Bytes of `CODE_UNWINDING_INFO`'s fields after the prefix: unwind data size,
/// `.eh_frame_hdr` size, mapped size (8 each); the data follows, padded to 8 bytes.
pub const UNWINDING_INFO_FIELDS: usize = 24;

/// The file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// ELF machine number of the code.
    pub elf_mach: u32,
    /// The process whose code the dump names.
    pub pid: u32,
    /// When the dump began (the clock the flags say; CLOCK_MONOTONIC when 0).
    pub timestamp: u64,
    /// Flags; 0 for ours.
    pub flags: u64,
}

impl Header {
    /// Appends the header: `HEADER_SIZE` bytes.
    pub fn write(&self, b: &mut Vec<u8>) {
        for v in [MAGIC, self.version, HEADER_SIZE, self.elf_mach, 0, self.pid] {
            put_u32(b, v);
        }
        put_u64(b, self.timestamp);
        put_u64(b, self.flags);
    }
}

/// Appends a record prefix.
pub fn put_prefix(b: &mut Vec<u8>, id: u32, total_size: usize, timestamp: u64) {
    put_u32(b, id);
    put_u32(b, total_size as u32);
    put_u64(b, timestamp);
}

/// Appends `v` in native byte order.
pub fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_ne_bytes());
}

/// Appends `v` in native byte order.
pub fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_ne_bytes());
}
