//! The perf map sink: `/tmp/perf-<pid>.map`, one `"<addr> <size> <name>\n"` line per symbol.

use std::io;
use std::path::{Path, PathBuf};

use super::appender::{Appender, Order};
use super::{OpenError, OutputKind, OwnedSymbol, Sink, Symbol, Writers, name};

/// Writes `perf-<pid>.map`: one line per symbol.
pub struct PerfMap {
    out: Appender,
    path: PathBuf,
    line: Vec<u8>,
}

impl PerfMap {
    /// Opens (creating if needed, mode 0600) the map at `path` (perf looks for
    /// `/tmp/perf-<pid>.map`) for appending; a dead process's map with our pid is started
    /// over (see [`Writers`]). Never follows a symlink planted there. Past the last record
    /// the file holds blank lines while the program runs (see appender.rs); they are cut off
    /// at a normal exit, and perf skips them after a SIGKILL.
    pub fn open(path: &Path, writers: Writers) -> Result<PerfMap, OpenError> {
        let file = super::open_output(OutputKind::PerfMap, path, writers)?;
        Ok(PerfMap {
            out: Appender::new(file, b'\n', Order::Forward),
            path: path.to_path_buf(),
            line: Vec::with_capacity(256),
        })
    }
}

/// Appends one map line to `out` (hex without `0x`, as perf's reader expects).
pub fn format_line(out: &mut Vec<u8>, sym: &Symbol) {
    let name = name::clean(sym.name);
    // "<addr> <size> " is at most 16 + 1 + 16 + 1 bytes; built on the stack, then copied once.
    let mut head = [b' '; 34];
    let mut len = put_hex(&mut head, 0, sym.addr as u64) + 1;
    len = put_hex(&mut head, len, sym.size as u64) + 1;
    out.reserve(len + name.len() + 1);
    out.extend_from_slice(&head[..len]);
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

/// Writes the lower-case hex digits of `v` (no leading zeros) at `buf[at..]`; returns where
/// they end. By hand: `write!` through `fmt` was most of the cost of a record. (A loop-free
/// form that computes all 16 digits cost more: sizes have one or two.)
fn put_hex(buf: &mut [u8; 34], at: usize, v: u64) -> usize {
    let digits = (64 - (v | 1).leading_zeros()).div_ceil(4) as usize;
    for (i, d) in buf[at..at + digits].iter_mut().rev().enumerate() {
        *d = b"0123456789abcdef"[(v >> (i * 4)) as usize & 15];
    }
    at + digits
}

/// Parses one map line (without its newline) back into a symbol.
pub fn parse_line(line: &[u8]) -> Option<OwnedSymbol> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let addr = usize::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let size = usize::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    Some(OwnedSymbol {
        addr,
        size,
        name: parts.next()?.to_vec(),
    })
}

impl Sink for PerfMap {
    fn kind(&self) -> OutputKind {
        OutputKind::PerfMap
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, sym: &Symbol) -> io::Result<()> {
        self.line.clear();
        format_line(&mut self.line, sym);
        self.out.append(&self.line)
    }

    fn record_many(&mut self, syms: &[Symbol]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(syms.len() * 64);
        syms.iter().for_each(|s| format_line(&mut buf, s));
        self.out.append(&buf)
    }

    fn read_back(&self) -> io::Result<Vec<OwnedSymbol>> {
        // Every line up to our last record, CPython's too when stacked on its trampoline
        // (they name inherited code just as well).
        let text = self.out.read_records()?;
        Ok(text.split(|&b| b == b'\n').filter_map(parse_line).collect())
    }

    fn close(&mut self) -> io::Result<()> {
        self.out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when the guard drops (a failed test's too).
    fn tmpdir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("pt-map-{tag}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn lines_have_perfs_format_and_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tmpdir("fmt");
        let dir = tmp.path();
        let mut m = PerfMap::open(&dir.join("perf-4242.map"), Writers::OnlyUs).unwrap();
        m.record(&Symbol {
            addr: 0x7f00_dead_b000,
            size: 11,
            name: b"py::f:/a.py",
        })
        .unwrap();
        m.record(&Symbol {
            addr: 0x10,
            size: 0x20,
            name: b"py::g\n:/b.py",
        })
        .unwrap();
        m.record(&Symbol {
            addr: 0,
            size: 0xffff_ffff_ffff_ffff,
            name: b"z",
        })
        .unwrap();
        m.close().unwrap();
        let text = std::fs::read_to_string(dir.join("perf-4242.map")).unwrap();
        assert_eq!(
            text,
            "7f00deadb000 b py::f:/a.py\n10 20 py::g\\x0a:/b.py\n0 ffffffffffffffff z\n"
        );
        let mode = std::fs::metadata(dir.join("perf-4242.map"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    proptest::proptest! {
        /// Addresses and sizes of every width, from 0 to all ones.
        #[test]
        fn numbers_are_plain_lower_case_hex(bits in 0u32..=64, raw: u64, size: u64) {
            let addr = if bits == 64 { raw } else { raw & ((1u64 << bits) - 1) };
            let mut line = Vec::new();
            format_line(&mut line, &Symbol { addr: addr as usize, size: size as usize, name: b"py::f:/a.py" });
            proptest::prop_assert_eq!(String::from_utf8(line).unwrap(), format!("{addr:x} {size:x} py::f:/a.py\n"));
        }
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let tmp = tmpdir("link");
        let dir = tmp.path();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("perf-77.map")).unwrap();
        let err = PerfMap::open(&dir.join("perf-77.map"), Writers::OnlyUs)
            .err()
            .expect("must refuse the symlink");
        assert!(err.to_string().contains("perf-77.map"), "{err}");
        assert_eq!(err.error.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn unwritable_directory_gives_a_message_naming_the_path() {
        let err = PerfMap::open(
            Path::new("/proc/self/no-such-dir/perf-1.map"),
            Writers::OnlyUs,
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .contains("/proc/self/no-such-dir/perf-1.map"),
            "{err}"
        );
    }
}
