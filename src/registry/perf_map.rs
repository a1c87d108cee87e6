//! The perf map sink: `/tmp/perf-<pid>.map`, one `"<addr> <size> <name>\n"` line per symbol.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{OpenError, OwnedSymbol, Sink, Symbol, check_owner, name};

/// What this sink is called in messages, and its key in the registry.
pub const KIND: &str = "perf map";

pub struct PerfMap {
    file: File,
    path: PathBuf,
    line: Vec<u8>,
}

impl PerfMap {
    /// Opens (creating if needed, mode 0600) the map at `path` (perf looks for
    /// `/tmp/perf-<pid>.map`) for appending. Never follows a symlink planted there.
    pub fn open(path: &Path) -> Result<PerfMap, OpenError> {
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|error| OpenError { kind: KIND, path: path.clone(), error })?;
        check_owner(&file).map_err(|error| OpenError { kind: KIND, path: path.clone(), error })?;
        Ok(PerfMap {
            file,
            path,
            line: Vec::with_capacity(256),
        })
    }
}

/// Appends one map line to `out` (hex without `0x`, as perf's reader expects).
pub fn format_line(out: &mut Vec<u8>, sym: &Symbol) {
    // Writing into a Vec cannot fail.
    let _ = writeln!(out, "{:x} {:x} {}", sym.addr, sym.size, name::clean(sym.name));
}

/// Parses one map line (without its newline) back into a symbol.
pub fn parse_line(line: &[u8]) -> Option<OwnedSymbol> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let addr = usize::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let size = usize::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    Some(OwnedSymbol { addr, size, name: parts.next()?.to_vec() })
}

/// One `write(2)`: on an O_APPEND file other writers in this process (CPython's own map
/// writer, other JITs) can never land in the middle of our records, and a record is in the
/// file (page cache) as soon as this returns.
pub fn write_once(file: &File, buf: &[u8]) -> io::Result<()> {
    let n = (&*file).write(buf)?;
    if n != buf.len() {
        return Err(undo_short_write(file, n, buf.len()));
    }
    Ok(())
}

/// A short write (a full disk) leaves a piece of a record at the end of the file; perf would
/// read it as a record. Cut it off again, and report the disk as full.
pub fn undo_short_write(file: &File, written: usize, wanted: usize) -> io::Error {
    let undone = file
        .metadata()
        .and_then(|m| file.set_len(m.len().saturating_sub(written as u64)))
        .map_or("could not be undone", |()| "undone");
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("No space left on device (wrote {written} of {wanted} bytes, {undone})"),
    )
}

impl Sink for PerfMap {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, sym: &Symbol) -> io::Result<()> {
        self.line.clear();
        format_line(&mut self.line, sym);
        write_once(&self.file, &self.line)
    }

    fn record_many(&mut self, syms: &[Symbol]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(syms.len() * 64);
        syms.iter().for_each(|s| format_line(&mut buf, s));
        write_once(&self.file, &buf)
    }

    fn read_back(&self) -> io::Result<Vec<OwnedSymbol>> {
        // The whole file: stacked on CPython's trampoline it holds CPython's lines too, and
        // those name inherited code just as well.
        let text = std::fs::read(&self.path)?;
        Ok(text.split(|&b| b == b'\n').filter_map(parse_line).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pt-map-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lines_have_perfs_format_and_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmpdir("fmt");
        let mut m = PerfMap::open(&dir.join("perf-4242.map")).unwrap();
        m.record(&Symbol { addr: 0x7f00_dead_b000, size: 11, name: b"py::f:/a.py" }).unwrap();
        m.record(&Symbol { addr: 0x10, size: 0x20, name: b"py::g\n:/b.py" }).unwrap();
        let text = std::fs::read_to_string(dir.join("perf-4242.map")).unwrap();
        assert_eq!(text, "7f00deadb000 b py::f:/a.py\n10 20 py::g\\x0a:/b.py\n");
        let mode = std::fs::metadata(dir.join("perf-4242.map")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tmpdir("link");
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("perf-77.map")).unwrap();
        let err = PerfMap::open(&dir.join("perf-77.map")).err().expect("must refuse the symlink");
        assert!(err.to_string().contains("perf-77.map"), "{err}");
        assert_eq!(err.error.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn unwritable_directory_gives_a_message_naming_the_path() {
        let err = PerfMap::open(Path::new("/proc/self/no-such-dir/perf-1.map")).err().unwrap();
        assert!(err.to_string().contains("/proc/self/no-such-dir/perf-1.map"), "{err}");
    }
}
