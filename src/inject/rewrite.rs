//! A copy of a perf.data file whose MMAP records name other files: how `perf inject --jit` is
//! pointed at our filtered jitdumps without touching the originals. No kept library writes
//! perf.data (linux-perf-data only reads it), so this walks the file's layout itself: the
//! header, the data section record by record, and the feature sections' table after it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"PERFILE2";
const HEADER_LEN: usize = 104;
const DATA_SECTION_AT: usize = 40;
const FEATURES_AT: usize = 72;
const RECORD_MMAP: u32 = 1;
const RECORD_MMAP2: u32 = 10;
/// Where the file name starts in each: after pid, tid, addr, len, pgoff (and, for MMAP2,
/// the device/inode or build id, prot and flags).
const MMAP_NAME_AT: usize = 40;
const MMAP2_NAME_AT: usize = 72;
/// The mapping process's pid, right after the record header in both.
const PID_AT: usize = 8;
/// Features whose bodies hold offsets into the data section, or that make perf.data a
/// directory: a copy with moved records would be wrong for them.
const HEADER_AUXTRACE: u32 = 18;
const HEADER_DIR_FORMAT: u32 = 24;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn err(path: &Path, what: impl std::fmt::Display) -> String {
    format!("{}: {what}", path.display())
}

/// Copies the perf.data at `src` to `dst`, with each MMAP/MMAP2 file name for which
/// `rename(pid, name)` gives a new one replaced by it. Returns how many records it changed.
pub fn rename_mappings(
    src: &Path,
    dst: &Path,
    rename: impl Fn(u32, &[u8]) -> Option<Vec<u8>>,
) -> Result<u64, String> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(src).map_err(|e| err(src, e))?);
    let mut header = [0u8; HEADER_LEN];
    input
        .read_exact(&mut header)
        .map_err(|e| err(src, format!("no perf.data header ({e})")))?;
    if &header[..8] != MAGIC || (u64_at(&header, 8) as usize) < HEADER_LEN {
        return Err(err(
            src,
            "not a perf.data file of this machine's byte order",
        ));
    }
    let data_at = u64_at(&header, DATA_SECTION_AT);
    let data_len = u64_at(&header, DATA_SECTION_AT + 8);
    let data_end = data_at + data_len;
    let features: Vec<u32> = (0..256u32)
        .filter(|&bit| {
            u64_at(&header, FEATURES_AT + 8 * (bit / 64) as usize) & (1 << (bit % 64)) != 0
        })
        .collect();
    if features.contains(&HEADER_AUXTRACE) || features.contains(&HEADER_DIR_FORMAT) {
        return Err(err(
            src,
            "AUX trace data or directory format: not rewritten",
        ));
    }
    // Everything but the features lies before the data section in what perf record writes
    // (attributes and their ids): copied as it is.
    for at in [16, 56] {
        let (offset, len) = (u64_at(&header, at), u64_at(&header, at + 8));
        if len != 0 && offset + len > data_at {
            return Err(err(src, "a section after the data section: not rewritten"));
        }
    }

    let mut out = BufWriter::with_capacity(1 << 20, File::create(dst).map_err(|e| err(dst, e))?);
    let mut before = vec![0u8; data_at as usize - HEADER_LEN];
    input.read_exact(&mut before).map_err(|e| err(src, e))?;
    out.write_all(&header).map_err(|e| err(dst, e))?;
    out.write_all(&before).map_err(|e| err(dst, e))?;

    let (mut read, mut written, mut changed) = (0u64, 0u64, 0u64);
    let mut record = Vec::new();
    while read < data_len {
        let mut prefix = [0u8; 8];
        input
            .read_exact(&mut prefix)
            .map_err(|e| err(src, format!("data section cut short ({e})")))?;
        let kind = u32::from_ne_bytes(prefix[..4].try_into().expect("4 bytes"));
        let size = u16::from_ne_bytes(prefix[6..8].try_into().expect("2 bytes")) as usize;
        if size < 8 || read + size as u64 > data_len {
            return Err(err(src, format!("a broken record at data offset {read}")));
        }
        record.clear();
        record.extend_from_slice(&prefix);
        record.resize(size, 0);
        input
            .read_exact(&mut record[8..])
            .map_err(|e| err(src, format!("data section cut short ({e})")))?;
        read += size as u64;
        let renamed = match kind {
            RECORD_MMAP => with_name(&record, MMAP_NAME_AT, &rename),
            RECORD_MMAP2 => with_name(&record, MMAP2_NAME_AT, &rename),
            _ => None,
        };
        let bytes = match &renamed {
            Some(new) => {
                changed += 1;
                new.as_slice()
            }
            None => record.as_slice(),
        };
        out.write_all(bytes).map_err(|e| err(dst, e))?;
        written += bytes.len() as u64;
    }

    // The feature table: one (offset, size) per feature, its bodies after it, all moved by
    // the change in the data section's length.
    let delta = written as i64 - data_len as i64;
    for _ in &features {
        let mut entry = [0u8; 16];
        input
            .read_exact(&mut entry)
            .map_err(|e| err(src, format!("feature table cut short ({e})")))?;
        let offset = u64_at(&entry, 0);
        if offset < data_end {
            return Err(err(src, "a feature section inside the data section"));
        }
        entry[..8].copy_from_slice(&offset.wrapping_add_signed(delta).to_ne_bytes());
        out.write_all(&entry).map_err(|e| err(dst, e))?;
    }
    std::io::copy(&mut input, &mut out).map_err(|e| err(dst, e))?;
    let mut file = out.into_inner().map_err(|e| err(dst, e.error()))?;
    file.seek(SeekFrom::Start(DATA_SECTION_AT as u64 + 8))
        .and_then(|_| file.write_all(&written.to_ne_bytes()))
        .map_err(|e| err(dst, e))?;
    Ok(changed)
}

/// The MMAP-like `record` with the NUL-terminated, 8-byte padded name at `at` renamed, or
/// None when `rename` keeps it (or the record is too short to hold a name).
fn with_name(
    record: &[u8],
    at: usize,
    rename: &impl Fn(u32, &[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let pid = u32::from_ne_bytes(record.get(PID_AT..PID_AT + 4)?.try_into().ok()?);
    let tail = record.get(at..)?;
    let len = tail.iter().position(|&b| b == 0)?;
    let new = rename(pid, &tail[..len])?;
    let padded = |n: usize| (n + 1).next_multiple_of(8);
    // What follows the name: the sample fields perf adds to every record (sample_id_all).
    let rest = tail.get(padded(len)..)?;
    let mut out = Vec::with_capacity(at + padded(new.len()) + rest.len());
    out.extend_from_slice(&record[..at]);
    out.extend_from_slice(&new);
    out.resize(at + padded(new.len()), 0);
    out.extend_from_slice(rest);
    let size = u16::try_from(out.len()).ok()?;
    out[6..8].copy_from_slice(&size.to_ne_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mmap2(name: &[u8], trailer: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; MMAP2_NAME_AT];
        r[..4].copy_from_slice(&RECORD_MMAP2.to_ne_bytes());
        r.extend_from_slice(name);
        r.resize(MMAP2_NAME_AT + (name.len() + 1).next_multiple_of(8), 0);
        r.extend_from_slice(trailer);
        let size = r.len() as u16;
        r[6..8].copy_from_slice(&size.to_ne_bytes());
        r
    }

    #[test]
    fn a_renamed_record_keeps_its_fields_and_sample_trailer() {
        let trailer = [7u8; 16];
        let before = mmap2(b"/tmp/jit-12.dump", &trailer);
        let longer = b"/some/longer/directory/jit-12.dump".to_vec();
        let after = with_name(&before, MMAP2_NAME_AT, &|pid, n: &[u8]| {
            (pid == 0 && n == b"/tmp/jit-12.dump").then(|| longer.clone())
        })
        .expect("renamed");
        assert_eq!(after, mmap2(&longer, &trailer));
        assert_eq!(
            with_name(&before, MMAP2_NAME_AT, &|_, _: &[u8]| None::<Vec<u8>>),
            None
        );
    }
}
