//! The perf map sink: `/tmp/perf-<pid>.map`, one `"<addr> <size> <name>\n"` line per symbol.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{OpenError, Sink, Symbol, name};

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
        Ok(PerfMap {
            file,
            path,
            line: Vec::with_capacity(256),
        })
    }
}

/// Formats one map line into `out` (hex without `0x`, as perf's reader expects).
pub fn format_line(out: &mut Vec<u8>, sym: &Symbol) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = writeln!(out, "{:x} {:x} {}", sym.addr, sym.size, name::clean(sym.name));
}

impl Sink for PerfMap {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, sym: &Symbol) -> io::Result<()> {
        format_line(&mut self.line, sym);
        // One write(2) on an O_APPEND file: other writers in this process (CPython's own map
        // writer, other JITs) can never land in the middle of our line.
        let n = (&self.file).write(&self.line)?;
        if n != self.line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", self.line.len()),
            ));
        }
        Ok(())
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
