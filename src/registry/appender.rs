//! Appends records to an output file through a shared mapping of its tail: no system call per
//! record, yet every record is in the file the moment it is copied.
//!
//! A store into a `MAP_SHARED` file mapping lands in the page cache, which outlives the
//! process: a SIGKILL right after a record was appended loses nothing, and `perf inject` or
//! `perf report` reading the file while the program runs sees every record so far. The room
//! ahead of the records is written to the file as `fill` bytes before it is mapped, so a full
//! disk is an error at that point (never a SIGBUS on a later store), and a reader of the file
//! meets only fill past the last record: blank lines, which perf's map reader skips, or
//! zeros, whose record header (size 0) ends perf's jitdump reader.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{Ordering, compiler_fence, fence};

/// The first window of room; every next one doubles, up to [`MAX_WINDOW`]. Small at first
/// because a process that ends without running exit handlers (`os._exit`, as multiprocessing's
/// children do) leaves its unused room in the file, and because every process pays for
/// writing it at start-up: an empty script names about 75 functions (6 KB of map lines), and
/// 64 KiB of room cost it some 30-90 µs more than 16 KiB.
const FIRST_WINDOW: usize = 16 << 10;
const MAX_WINDOW: usize = 1 << 20;

/// In which order a record's bytes are stored, so that a process killed in the middle of a
/// copy leaves nothing a reader would take for a wrong record.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    /// Front to back, 16 bytes at a time: a cut-off map line is a prefix of the real one, and
    /// perf skips a line without a name (a line cut inside its name still has the right address).
    Forward,
    /// Everything after the first `n` bytes, then those: a jitdump record header (id and size)
    /// still zero means "end of file" to perf until the whole record is there.
    HeadLast(usize),
}

/// The mapped room at the end of the file.
struct Window {
    base: *mut u8,
    len: usize,
    /// File offset of `base` (a page boundary).
    offset: u64,
    /// Bytes from `base` on that hold records (or precede the first of ours in the page).
    used: usize,
}

pub struct Appender {
    file: File,
    fill: u8,
    order: Order,
    window: Option<Window>,
    next_window: usize,
    /// Set when the file cannot be mapped (or after `finish`): records go out with `write(2)`.
    direct: bool,
    /// Where our last record ends in the file when there is no window (before the first
    /// record: the file's length then).
    end: u64,
}

// SAFETY: the window is a mapping owned by this appender alone; moving it between threads is
// no different from moving the file descriptor.
unsafe impl Send for Appender {}

impl Appender {
    /// Appends to `file`, which must be open for reading and appending (`O_RDWR | O_APPEND`:
    /// a shared writable mapping needs read access, and other writers of the same file, such
    /// as CPython's own map writer, append after our room instead of into it). `fill` is what
    /// readers find past the last record; `order`, how each record is stored.
    pub fn new(file: File, fill: u8, order: Order) -> Appender {
        let end = file.metadata().map_or(0, |m| m.len());
        Appender {
            file,
            fill,
            order,
            window: None,
            next_window: FIRST_WINDOW,
            direct: false,
            end,
        }
    }

    /// Where the records stored so far end in the file.
    fn records_end(&self) -> u64 {
        match &self.window {
            Some(w) => w.offset + w.used as u64,
            None => self.end,
        }
    }

    /// The file's bytes up to the end of our last record, read through our own descriptor
    /// (the path may name another file by now). In a forked child that is the parent's file
    /// as of the fork: what lies beyond was appended by the parent afterwards, for code the
    /// child never had.
    pub fn read_records(&self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let len = self.records_end().min(self.file.metadata()?.len());
        let mut bytes = vec![0; len as usize];
        self.file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// Appends `record`; when this returns Ok the record is in the file.
    pub fn append(&mut self, record: &[u8]) -> io::Result<()> {
        if self.direct {
            return self.write_direct(record);
        }
        let fits = self
            .window
            .as_ref()
            .is_some_and(|w| w.len - w.used >= record.len());
        if !fits && !self.grow(record.len())? {
            self.direct = true;
            return self.write_direct(record);
        }
        let w = self.window.as_mut().expect("grow maps a window");
        // SAFETY: `used + record.len() <= len`: the bytes are inside our writable mapping.
        unsafe { store(w.base.add(w.used), record, self.order) };
        w.used += record.len();
        Ok(())
    }

    /// Maps new room for at least `need` bytes at the end of the file. Returns false if the
    /// file cannot be mapped (then records go out with `write(2)`).
    fn grow(&mut self, need: usize) -> io::Result<bool> {
        let page = crate::os::page_size() as u64;
        // Where our records stop, and where the room we had mapped for them stops.
        let ends = self
            .window
            .as_ref()
            .map(|w| (w.offset + w.used as u64, w.offset + w.len as u64));
        let at_least = need.next_multiple_of(page as usize);
        let size = self.next_window.max(at_least);
        // A nearly full disk may still hold what this record needs.
        let (room, size) = match self.add_room(size) {
            Err(e) if e.kind() == io::ErrorKind::StorageFull && size > at_least => {
                (self.add_room(at_least)?, at_least)
            }
            other => (other?, size),
        };
        let end = room + size as u64;
        // Records continue where they stopped unless someone else appended after our old
        // room; then its rest stays fill and records go on after their bytes.
        let start = match ends {
            Some((records_end, room_end)) if room_end == room => records_end,
            _ => room,
        };
        let offset = start / page * page;
        let len = (end - offset) as usize;
        // SAFETY: a fresh shared mapping of our own file, inside its size.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            // A file system without shared mappings: take the new room back, cut the old
            // room off, and write instead.
            if self.file.metadata()?.len() == end {
                self.file.set_len(room)?;
            }
            self.finish()?;
            return Ok(false);
        }
        self.unmap();
        self.window = Some(Window {
            base: base.cast(),
            len,
            offset,
            used: (start - offset) as usize,
        });
        self.next_window = (size * 2).min(MAX_WINDOW);
        Ok(true)
    }

    /// Adds `len` bytes of fill at the end of the file with one `writev(2)`; returns where
    /// they start. O_APPEND places them after anything another writer added. One small
    /// buffer is repeated, so the copy reads from cache (a buffer the size of the room took
    /// half the time of a record; reserving zeros with `fallocate` was slower still, its
    /// pages fault in one by one).
    fn add_room(&self, len: usize) -> io::Result<u64> {
        // At most 1024 pieces (IOV_MAX): a forked child's first room can be large.
        let piece = (16 << 10).max(len.div_ceil(1024));
        let chunk = vec![self.fill; piece.min(len)];
        let slices: Vec<io::IoSlice> = (0..len)
            .step_by(piece)
            .map(|at| io::IoSlice::new(&chunk[..piece.min(len - at)]))
            .collect();
        let n = (&self.file).write_vectored(&slices)?;
        if n != len {
            return Err(undo_short_write(&self.file, n, len));
        }
        // O_APPEND left the offset at the end of what we just wrote.
        Ok((&self.file).stream_position()? - len as u64)
    }

    /// One `write(2)` of `record`, then notes where it ended (O_APPEND leaves the offset there).
    fn write_direct(&mut self, record: &[u8]) -> io::Result<()> {
        write_once(&self.file, record)?;
        self.end = (&self.file).stream_position()?;
        Ok(())
    }

    fn unmap(&mut self) {
        if let Some(w) = self.window.take() {
            // SAFETY: the window was mapped by us with this length and nothing refers into it.
            unsafe { libc::munmap(w.base.cast(), w.len) };
        }
    }

    /// At the end of the output: cuts the unused room off the file (unless someone else
    /// appended after it) and writes any later record with `write(2)`.
    pub fn finish(&mut self) -> io::Result<()> {
        let Some(w) = self.window.as_ref() else {
            return Ok(());
        };
        let (records_end, room_end) = (w.offset + w.used as u64, w.offset + w.len as u64);
        self.unmap();
        self.direct = true;
        self.end = records_end;
        if self.file.metadata()?.len() == room_end {
            self.file.set_len(records_end)?;
        }
        Ok(())
    }
}

impl Drop for Appender {
    /// Unmaps only: a forked child dropping its copy of the parent's appender must leave the
    /// parent's file as it is.
    fn drop(&mut self) {
        self.unmap();
    }
}

/// Stores `record` at `dst` in the given order. Fences keep the compiler (and, for the head,
/// the CPU) from reordering the stores that order depends on.
///
/// # Safety
/// `dst` must be valid for `record.len()` bytes of writes.
unsafe fn store(dst: *mut u8, record: &[u8], order: Order) {
    match order {
        Order::Forward => {
            // One 16-byte store per chunk, each kept after the one before it (a memcpy call,
            // or one per chunk, cost more than the copy and may store out of order).
            let mut at = dst;
            let mut chunks = record.chunks_exact(16);
            for chunk in &mut chunks {
                // SAFETY: `at` stays within the record's `record.len()` bytes at `dst`.
                unsafe {
                    at.cast::<[u8; 16]>()
                        .write_unaligned(chunk.try_into().expect("16 bytes"));
                    at = at.add(16);
                }
                compiler_fence(Ordering::SeqCst);
            }
            let mut rest = chunks.remainder();
            if let Some((word, tail)) = rest.split_first_chunk::<8>() {
                // SAFETY: as above.
                unsafe {
                    at.cast::<[u8; 8]>().write_unaligned(*word);
                    at = at.add(8);
                }
                compiler_fence(Ordering::SeqCst);
                rest = tail;
            }
            for (i, &b) in rest.iter().enumerate() {
                // SAFETY: as above.
                unsafe { at.add(i).write(b) };
            }
        }
        Order::HeadLast(n) => head_last(record, n, |at, bytes| {
            // SAFETY: `head_last` hands out pieces of `record`, at their offsets in it, and
            // `dst` is valid for `record.len()` bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(at), bytes.len()) }
        }),
    }
}

/// Hands `copy` everything of `record` after its first `n` bytes, then (after a release
/// fence) those, each with its offset in the record.
#[inline(always)]
fn head_last(record: &[u8], n: usize, mut copy: impl FnMut(usize, &[u8])) {
    let n = n.min(record.len());
    copy(n, &record[n..]);
    fence(Ordering::Release);
    copy(0, &record[..n]);
}

/// One `write(2)`: on an O_APPEND file other writers in this process (CPython's own map
/// writer, other JITs) can never land in the middle of our bytes, and they are in the file
/// (page cache) as soon as this returns.
fn write_once(file: &File, buf: &[u8]) -> io::Result<()> {
    let n = (&*file).write(buf)?;
    if n != buf.len() {
        return Err(undo_short_write(file, n, buf.len()));
    }
    Ok(())
}

/// A short write (a full disk) leaves a piece of a record at the end of the file; perf would
/// read it as a record. Cut it off again, and report the disk as full.
fn undo_short_write(file: &File, written: usize, wanted: usize) -> io::Error {
    let undone = file
        .metadata()
        .and_then(|m| file.set_len(m.len().saturating_sub(written as u64)))
        .map_or("could not be undone", |()| "undone");
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("No space left on device (wrote {written} of {wanted} bytes, {undone})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    /// A new file in a scratch directory that is removed when the returned guard drops.
    fn open(tag: &str) -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pt-appender-{tag}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().join("out");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .unwrap();
        (dir, path, file)
    }

    #[test]
    fn records_are_in_the_file_before_finish_and_the_room_is_cut_at_finish() {
        let (_dir, path, file) = open("basic");
        let mut a = Appender::new(file, b'\n', Order::Forward);
        let mut expected = Vec::new();
        for i in 0..20_000u32 {
            let line = format!("{i:x} 10 name-{i}\n");
            a.append(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        let live = std::fs::read(&path).unwrap();
        assert!(live.len() > expected.len(), "room is preallocated");
        assert_eq!(&live[..expected.len()], &expected[..]);
        assert!(
            live[expected.len()..].iter().all(|&b| b == b'\n'),
            "room reads as fill"
        );
        a.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        // After finish, records are still appended (with write(2)).
        a.append(b"late\n").unwrap();
        expected.extend_from_slice(b"late\n");
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn another_writer_appending_in_between_is_kept_and_never_overwritten() {
        let (_dir, path, file) = open("other");
        let other = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut a = Appender::new(file, b'\n', Order::Forward);
        a.append(b"ours-1\n").unwrap();
        write_once(&other, b"theirs\n").unwrap();
        // Fill the first window so the next record needs new room after their line.
        let mut filler = vec![b'x'; FIRST_WINDOW];
        filler[FIRST_WINDOW - 1] = b'\n';
        a.append(&filler).unwrap();
        a.append(b"ours-2\n").unwrap();
        a.finish().unwrap();
        let text = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.iter().filter(|l| **l == b"theirs").count(), 1);
        assert_eq!(lines.iter().filter(|l| **l == b"ours-1").count(), 1);
        assert_eq!(lines.iter().filter(|l| **l == b"ours-2").count(), 1);
        let theirs_at = text.windows(7).position(|w| w == b"theirs\n").unwrap();
        let ours_2_at = text.windows(7).position(|w| w == b"ours-2\n").unwrap();
        assert!(
            theirs_at < ours_2_at,
            "our new room starts after their bytes"
        );
    }

    #[test]
    fn head_last_leaves_zeros_where_the_head_goes_until_the_end() {
        let record: Vec<u8> = (1..=24).collect();
        let mut buf = [0u8; 24];
        // What the destination held when each piece was copied, before the piece landed.
        let mut seen = Vec::new();
        head_last(&record, 8, |at, bytes| {
            seen.push(buf);
            buf[at..at + bytes.len()].copy_from_slice(bytes);
        });
        assert_eq!(buf.to_vec(), record);
        // The head was still zero while the rest was written, and the rest was all there
        // before the head went in.
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], [0; 24]);
        assert_eq!(seen[1][..8], [0; 8]);
        assert_eq!(seen[1][8..], record[8..]);
    }

    #[test]
    fn store_head_last_writes_the_whole_record() {
        let mut buf = [0u8; 24];
        let record: Vec<u8> = (1..=24).collect();
        // SAFETY: buf has room for the record.
        unsafe { store(buf.as_mut_ptr(), &record, Order::HeadLast(8)) };
        assert_eq!(buf.to_vec(), record);
    }
}
